//! OpenTelemetry export (the `otel` feature): a call through the gateway exports the gateway's
//! span and the service's span, in the trace of the `traceparent` the client sent, to an OTLP/HTTP
//! receiver played by this test. Run with `cargo nextest run --features otel --test otel`.

#![cfg(feature = "otel")]

mod common;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use common::process::{spawn_with_env, terminate};
use common::unique;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::time::Duration;
use tokio::sync::mpsc;

/// An OTLP/HTTP receiver on a free port: `POST /v1/traces` with a protobuf body. Returns its
/// address and the decoded requests.
async fn receiver() -> (String, mpsc::UnboundedReceiver<ExportTraceServiceRequest>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) => {
                        let _ = tx.send(request);
                        StatusCode::OK
                    }
                    Err(_) => StatusCode::BAD_REQUEST,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let _ = warren_gateway::serve(listener, app, std::future::pending()).await;
    });
    (address, rx)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_gateway_exports_its_spans_in_the_callers_trace() {
    let (collector, mut exports) = receiver().await;
    let data_dir = std::env::temp_dir().join(unique("otel"));
    let endpoint = format!("http://{collector}");
    let args = [
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
    ];
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "warren-otel-test"),
    ];
    let (child, first) = tokio::task::block_in_place(|| spawn_with_env(&args, &env));
    let address = common::process::http_address(&first);

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = "00f067aa0ba902b7";
    let r = reqwest::Client::new()
        .post(format!("http://{address}/rpc/greeting_service/hello"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&serde_json::json!({"name": "otel"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    // Stopping flushes the batch: the spans arrive by then.
    let status = tokio::task::spawn_blocking(move || terminate(child, Duration::from_secs(15)))
        .await
        .expect("task");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&data_dir);

    let mut spans: Vec<Span> = Vec::new();
    let mut service_names = Vec::new();
    while let Ok(Some(export)) = tokio::time::timeout(Duration::from_secs(5), exports.recv()).await
    {
        for resource_spans in export.resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            for attribute in resource.attributes {
                if attribute.key == "service.name" {
                    service_names.push(format!("{:?}", attribute.value));
                }
            }
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans);
            }
        }
        let ours = spans
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .count();
        if ours >= 2 {
            break;
        }
    }
    let ours: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == trace_id)
        .collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let gateway = ours
        .iter()
        .find(|s| s.name == "POST /rpc/{service}/{method}")
        .unwrap_or_else(|| panic!("no gateway span in the trace; spans: {names:?}"));
    let service = ours
        .iter()
        .find(|s| s.name == "greeting_service.hello")
        .unwrap_or_else(|| panic!("no service span in the trace; spans: {names:?}"));
    // The gateway's span is the caller's child; the service's span is the gateway's child.
    assert_eq!(hex(&gateway.parent_span_id), caller_span);
    assert_eq!(service.parent_span_id, gateway.span_id);
    assert_ne!(gateway.span_id, service.span_id);
    // The answer is recorded on the gateway's span (made inside it, which it finds as current).
    let status = gateway
        .attributes
        .iter()
        .find(|a| a.key == "http.response.status_code")
        .map(|a| format!("{:?}", a.value));
    assert!(
        status
            .as_deref()
            .is_some_and(|v| v.contains("StringValue(\"200\")")),
        "{status:?} in {:?}",
        gateway.attributes
    );
    assert!(
        service_names.iter().all(|n| n.contains("warren-otel-test")),
        "{service_names:?}"
    );
}
