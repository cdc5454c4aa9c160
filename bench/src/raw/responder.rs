//! The minimal responder: per [`Routing`], a non-durable queue consumed with prefetch 256 on a
//! channel of its own; per request, on a task of its own, the constant reply published to
//! `reply_to` through the routing's reply exchange, then the ack (after the reply, as mesh
//! acks: a request whose responder dies is redelivered).

use super::{Routing, declare_exchange};
use anyhow::Result;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use tokio::task::JoinHandle;

/// The reply, as the greeter gives it for `hello` with `{"name": "Matt"}`.
const REPLY: &[u8] = br#"{"result":"Hello, Matt!","error":null}"#;

/// The responder's prefetch: more than the 64 calls in flight of the bench's levels, so that
/// the broker never waits for an ack to deliver the next request.
const PREFETCH: u16 = 256;

/// The running responders, one per routing; they stop when this is dropped.
pub struct Responders {
    tasks: Vec<JoinHandle<()>>,
    channels: Vec<Channel>,
}

impl Responders {
    /// Closes the responders' channels (their queues go with them).
    pub async fn close(self) {
        for channel in &self.channels {
            let _ = channel.close(200, "done".into()).await;
        }
    }
}

impl Drop for Responders {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts a responder per routing on `connection`, for run `run`; they are consuming when this
/// returns.
pub async fn serve_responders(connection: &Connection, run: &str) -> Result<Responders> {
    let mut tasks = Vec::new();
    let mut channels = Vec::new();
    for routing in Routing::ALL {
        let channel = connection.create_channel().await?;
        declare_exchange(&channel).await?;
        let queue = routing.queue(run);
        let options = QueueDeclareOptions {
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.as_str().into(), options, FieldTable::default())
            .await?;
        if let Some(binding) = routing.binding(run) {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    super::EXCHANGE.into(),
                    binding.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "raw-responder".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tasks.push(tokio::spawn(respond(channel.clone(), consumer, routing)));
        channels.push(channel);
    }
    Ok(Responders { tasks, channels })
}

async fn respond(channel: Channel, mut consumer: lapin::Consumer, routing: Routing) {
    while let Some(Ok(delivery)) = consumer.next().await {
        // A task per request, as mesh runs its handlers: awaiting each publish and ack in
        // turn would make the responder, not the broker, the limit.
        tokio::spawn(answer(channel.clone(), delivery, routing.reply_exchange()));
    }
}

async fn answer(channel: Channel, delivery: lapin::message::Delivery, exchange: &'static str) {
    let properties = &delivery.properties;
    let Some(reply_to) = properties.reply_to().clone() else {
        return;
    };
    let mut reply = BasicProperties::default();
    if let Some(id) = properties.correlation_id().clone() {
        reply = reply.with_correlation_id(id);
    }
    let published = channel
        .basic_publish(
            exchange.into(),
            reply_to,
            BasicPublishOptions::default(),
            REPLY,
            reply,
        )
        .await;
    if published.is_ok() {
        let _ = delivery.acker.ack(BasicAckOptions::default()).await;
    }
}

/// `warren-bench raw-responder`: serves the responders for `run` until the process is
/// stopped; prints a line once they consume, for the bench to wait on.
pub async fn serve_until_stopped(amqp: &str, run: &str) -> Result<()> {
    let connection = super::connect(amqp).await?;
    let _responders = serve_responders(&connection, run).await?;
    println!("warren: raw responders ready");
    std::future::pending::<()>().await;
    Ok(())
}
