//! `POST /rpc/{service}/{method}`: one HTTP request, one RPC call.

use crate::AppState;
use crate::error::{CallInfo, GatewayError};
use crate::metrics::CallTimer;
use crate::registry::Liveness;
use crate::request::{self, REQUEST_ID};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use mesh::protocol::validate_name;
use mesh::{CallContext, Deadline};

/// Calls `service.method` with the body's arguments and answers with its result.
///
/// Everything that can be checked locally is checked before anything is published: the names
/// (so no `*`, `#` or `.` reaches a routing key), the headers, the content type, the size and
/// the JSON of the body.
pub async fn call(
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let timer = CallTimer::start();
    let request_id = request::request_id(&headers);
    let mut info = CallInfo {
        request_id: Some(request_id.clone()),
        ..CallInfo::default()
    };
    let outcome = async {
        let Path((service, method)) = path.map_err(|_| GatewayError::BadRpcPath)?;
        info.service = Some(service.clone());
        info.method = Some(method.clone());
        for (what, name) in [("service", &service), ("method", &method)] {
            validate_name(name).map_err(|reason| GatewayError::InvalidName {
                what,
                name: name.chars().take(200).collect(),
                reason,
            })?;
        }
        if !app.config.exposure.allows(&service, &method) {
            return Err(GatewayError::NotExposed(service.clone(), method.clone()));
        }
        // Bounded work: above the limit, refuse at once rather than queue without end.
        let _permit = app
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| GatewayError::Overloaded(app.config.max_in_flight))?;
        // A service whose instances all stopped would only queue the call until its deadline.
        if app.registry.liveness(&service) == Liveness::NoLiveInstance {
            return Err(GatewayError::NoLiveInstance(service.clone()));
        }
        let config = &app.config;
        let timeout = request::timeout(&headers, config.default_timeout, config.max_timeout)?;
        let deadline = Deadline::after(timeout);
        request::check_content_type(&headers)?;
        let bytes = request::read_body(&headers, body, config.max_body_bytes).await?;
        let arguments = request::arguments(&bytes)?;
        let mut context = CallContext::rooted_at(request_id.clone()).with_deadline(deadline);
        // The caller's trace, when it sent one; the service's span then joins it.
        context.traceparent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(mesh::trace::TraceParent::parse)
            .map(|t| t.to_string());
        let requested_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let result = app
            .client
            .call(&service, &method, arguments, context)
            .await
            .map_err(|e| match e {
                mesh::CallError::DeadlineExceeded(_) => {
                    GatewayError::DeadlineExceeded(requested_ms)
                }
                other => other.into(),
            })?;
        Ok::<_, GatewayError>(result)
    }
    .await;

    // Label with names only once they proved real: no client can grow the label set.
    let (service_label, method_label) = match &outcome {
        Err(GatewayError::InvalidName { .. } | GatewayError::BadRpcPath) => {
            ("_invalid", "_invalid")
        }
        Err(GatewayError::UnknownService(_)) => ("_unknown", "_unknown"),
        _ => (
            info.service.as_deref().unwrap_or("_invalid"),
            info.method.as_deref().unwrap_or("_invalid"),
        ),
    };
    let method_label = match &outcome {
        Err(GatewayError::Remote(wire)) if wire.exc_type == "MethodNotFound" => "_unknown",
        _ => method_label,
    };
    let status = match &outcome {
        Ok(_) => 200,
        Err(error) => error.classify(&app.config.error_map).0.as_u16(),
    };
    timer.finish(service_label, method_label, status);
    match outcome {
        Ok(result) => {
            let mut response = Json(result).into_response();
            if let Ok(id) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID, id);
            }
            response
        }
        Err(error) => {
            let problem = error.to_problem(&app.config.error_map, &info);
            if problem.status >= 500 {
                tracing::warn!(request_id = %request_id, %error, "call failed");
            } else {
                tracing::debug!(request_id = %request_id, %error, "call refused");
            }
            problem.into_response()
        }
    }
}

/// Any method but POST on `/rpc/{service}/{method}`: 405 with `Allow: POST`.
pub async fn method_not_allowed(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    problem(
        &app,
        GatewayError::MethodNotAllowed(method.to_string()),
        &headers,
    )
}

/// Any other path: a malformed `/rpc/...` path is 400, anything else 404.
pub async fn no_route(State(app): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let error = if path == "/rpc" || path.starts_with("/rpc/") {
        GatewayError::BadRpcPath
    } else {
        GatewayError::NoRoute(path.chars().take(200).collect())
    };
    problem(&app, error, &headers)
}

fn problem(app: &AppState, error: GatewayError, headers: &HeaderMap) -> Response {
    let info = CallInfo {
        request_id: Some(request::request_id(headers)),
        ..CallInfo::default()
    };
    error
        .to_problem(&app.config.error_map, &info)
        .into_response()
}
