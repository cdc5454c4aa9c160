//! How requests and replies are routed on the broker (docs/architecture.md §2): replies
//! straight to the caller's queue when the request allows it, the opt-in direct requests, and
//! requests without a publisher confirm once a service is known routed. Against the real
//! RabbitMQ, peers played by hand with raw AMQP where the routing itself is what is checked.

mod common;

use common::{QueueCleanup, kwargs, mesh_config, unique, wait_until};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use mesh::amqp::{DEFAULT_RPC_EXCHANGE, QueueType};
use mesh::{Args, CallContext, CallError, Deadline, Mesh, RpcError, Service};
use serde_json::json;
use std::time::Duration;

#[derive(serde::Deserialize, utoipa::ToSchema)]
struct Hello {
    name: String,
}

async fn hello(Args(h): Args<Hello>) -> Result<String, RpcError> {
    Ok(format!("Hello, {}!", h.name))
}

fn greeter(name: &str) -> Service {
    Service::new(name).rpc("hello", hello)
}

/// An exclusive server-named queue on `channel`, consumed with no-ack.
async fn reply_queue(channel: &lapin::Channel, tag: &str) -> (String, lapin::Consumer) {
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare("".into(), exclusive, FieldTable::default())
        .await
        .expect("declare");
    let name = queue.name().as_str().to_owned();
    let consumer = channel
        .basic_consume(
            name.as_str().into(),
            tag.into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    (name, consumer)
}

/// Publishes a `hello` request to `service` through nameko-rpc, its reply to `reply_to`,
/// asking for a direct reply when `direct`.
async fn request(channel: &lapin::Channel, service: &str, reply_to: &str, id: &str, direct: bool) {
    let mut headers = FieldTable::default();
    if direct {
        headers.insert("warren.reply_direct".into(), AMQPValue::Boolean(true));
    }
    let properties = lapin::BasicProperties::default()
        .with_reply_to(reply_to.into())
        .with_correlation_id(id.into())
        .with_headers(headers);
    channel
        .basic_publish(
            DEFAULT_RPC_EXCHANGE.into(),
            format!("{service}.hello").as_str().into(),
            BasicPublishOptions::default(),
            br#"{"args": [], "kwargs": {"name": "Matt"}}"#,
            properties,
        )
        .await
        .expect("publish");
}

async fn next_reply(consumer: &mut lapin::Consumer) -> (String, serde_json::Value) {
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a reply within 10 s")
        .expect("consumer open")
        .expect("delivery");
    let id = delivery
        .properties
        .correlation_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    let body = serde_json::from_slice(&delivery.data).expect("reply json");
    (id, body)
}

#[tokio::test]
async fn a_warren_service_replies_straight_to_the_queue_a_request_names_when_it_may() {
    let svc = unique("direct_reply");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&svc);
    let mesh = Mesh::amqp(mesh_config()).await.expect("connect");
    let running = mesh.serve(greeter(&svc)).await.expect("serve");
    let channel = common::raw_channel().await;
    // `direct`: a queue nothing binds to nameko-rpc, reachable only by its name through the
    // default exchange. `spy`: bound to nameko-rpc under `direct`'s name, where a reply
    // through the topic exchange to reply_to = `direct` lands.
    let (direct, mut direct_replies) = reply_queue(&channel, "direct").await;
    let (spy, mut spy_replies) = reply_queue(&channel, "spy").await;
    channel
        .queue_bind(
            spy.as_str().into(),
            DEFAULT_RPC_EXCHANGE.into(),
            direct.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");

    request(&channel, &svc, &direct, "asked-direct", true).await;
    let (id, body) = next_reply(&mut direct_replies).await;
    assert_eq!(id, "asked-direct");
    assert_eq!(body["result"], "Hello, Matt!");

    // Without the header (a nameko caller's request), the reply goes through nameko-rpc.
    request(&channel, &svc, &direct, "nameko-style", false).await;
    let (id, body) = next_reply(&mut spy_replies).await;
    assert_eq!(
        id, "nameko-style",
        "the direct reply went through the topic exchange too"
    );
    assert_eq!(body["result"], "Hello, Matt!");
    // The replies are published in order on one channel: had the first gone through the
    // topic exchange, the spy would have had it first.
    let more = channel
        .basic_get(direct.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get");
    assert!(
        more.is_none(),
        "the topic-routed reply reached the direct queue"
    );
    running.stop().await;
    mesh.close().await;
}

#[tokio::test]
async fn direct_requests_reach_a_service_its_topic_binding_no_longer_reaches() {
    let svc = unique("direct_req");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&svc);
    let server = Mesh::amqp(mesh_config()).await.expect("connect");
    let running = server.serve(greeter(&svc)).await.expect("serve");
    // With its binding gone, only a request addressed to `rpc-<svc>` by name reaches it.
    let channel = common::raw_channel().await;
    channel
        .queue_unbind(
            mesh::amqp::service_queue(&svc).as_str().into(),
            DEFAULT_RPC_EXCHANGE.into(),
            format!("{svc}.*").as_str().into(),
            FieldTable::default(),
        )
        .await
        .expect("unbind");
    let topic = server.client("topic").await.expect("client");
    let routed = topic
        .rpc(&svc)
        .call("hello", kwargs(json!({"name": "Matt"})))
        .await;
    assert!(
        matches!(routed, Err(CallError::UnknownService(_))),
        "{routed:?}"
    );

    let mut config = mesh_config();
    config.amqp.direct_requests = true;
    let caller = Mesh::amqp(config).await.expect("connect");
    let client = caller.client("direct").await.expect("client");
    let answer = client
        .rpc(&svc)
        .call("hello", kwargs(json!({"name": "Matt"})))
        .await;
    assert_eq!(answer, Ok(json!("Hello, Matt!")));
    // A service with no queue is still UnknownService at once: the default exchange returns
    // a mandatory request for a queue that does not exist.
    let started = std::time::Instant::now();
    let missing = client
        .rpc(&unique("nobody"))
        .call("hello", kwargs(json!({"name": "Matt"})))
        .await;
    assert!(
        matches!(missing, Err(CallError::UnknownService(_))),
        "{missing:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "not at once");
    running.stop().await;
    caller.close().await;
    server.close().await;
}

#[tokio::test]
async fn requests_to_a_known_service_go_unconfirmed_and_a_deleted_queue_is_unknown_again() {
    let svc = unique("unconfirmed");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&svc);
    let mesh = Mesh::amqp(mesh_config()).await.expect("connect");
    let running = mesh.serve(greeter(&svc)).await.expect("serve");
    let client = mesh.client("caller").await.expect("client");
    for _ in 0..20 {
        let answer = client
            .rpc(&svc)
            .call("hello", kwargs(json!({"name": "Matt"})))
            .await;
        assert_eq!(answer, Ok(json!("Hello, Matt!")));
    }
    // The first was confirmed (and so any after a second had passed); the rest were not.
    let stats = client.stats();
    assert!(stats.unconfirmed >= 15, "{stats:?}");

    // The service goes and its queue is deleted: within a reconfirm period, its calls are
    // UnknownService again (those sent unconfirmed meanwhile wait for their deadline).
    running.stop().await;
    let channel = common::raw_channel().await;
    channel
        .queue_delete(
            mesh::amqp::service_queue(&svc).as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .expect("delete");
    let svc_name = svc.clone();
    let unknown_again = wait_until(Duration::from_secs(10), || {
        let client = client.clone();
        let svc = svc_name.clone();
        async move {
            let outcome = client
                .rpc(&svc)
                .with_context(
                    CallContext::default()
                        .with_deadline(Deadline::after(Duration::from_millis(300))),
                )
                .call("hello", kwargs(json!({"name": "Matt"})))
                .await;
            matches!(outcome, Err(CallError::UnknownService(_)))
        }
    })
    .await;
    assert!(
        unknown_again,
        "calls to a deleted queue never became UnknownService"
    );
    mesh.close().await;
}

#[tokio::test]
async fn with_quorum_queues_every_request_is_confirmed() {
    let svc = unique("quorum_confirms");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&svc);
    let mut config = mesh_config();
    config.amqp.queue_type = QueueType::Quorum;
    let mesh = Mesh::amqp(config).await.expect("connect");
    let running = mesh.serve(greeter(&svc)).await.expect("serve");
    let client = mesh.client("caller").await.expect("client");
    for _ in 0..5 {
        let answer = client
            .rpc(&svc)
            .call("hello", kwargs(json!({"name": "Matt"})))
            .await;
        assert_eq!(answer, Ok(json!("Hello, Matt!")));
    }
    assert_eq!(client.stats().unconfirmed, 0);
    running.stop().await;
    mesh.close().await;
}
