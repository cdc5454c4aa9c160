//! Detached calls over AMQP (see [`crate::detached`]): the result queue declared and bound
//! before the request is published, and read with `basic.get` without an ack, so the reply goes
//! back to the queue for the next collect when the channel closes.

use super::broker::{Broker, unavailable};
use crate::detached::{Collected, ResultQueue};
use crate::error::CallError;
use crate::protocol::ReplyBody;
use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

/// Declares `queue` (classic, not durable, whatever `--queue-type` says: a quorum queue per
/// call is a Raft group per call, and RabbitMQ 4 drops a quorum queue's message after 20
/// returns, where a result is returned on every collect) with its `x-expires`, and binds it on
/// the RPC exchange with its name as the routing key, where a service's reply to it goes.
pub(crate) async fn declare(broker: &Broker, queue: &ResultQueue) -> Result<(), CallError> {
    let (_, channel) = broker
        .open_channel()
        .await
        .map_err(|e| CallError::Unavailable(e.to_string()))?;
    let declared = async {
        broker
            .declare_rpc_exchange(&channel)
            .await
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        let mut arguments = FieldTable::default();
        let expires = i64::try_from(queue.keep_for().as_millis()).unwrap_or(i64::MAX);
        arguments.insert("x-expires".into(), AMQPValue::LongLongInt(expires.max(1)));
        let options = QueueDeclareOptions::default();
        channel
            .queue_declare(queue.name().into(), options, arguments)
            .await
            .map_err(unavailable)?;
        channel
            .queue_bind(
                queue.name().into(),
                broker.rpc_exchange().into(),
                queue.name().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)
    }
    .await;
    let _ = channel.close(200, "declared".into()).await;
    declared
}

/// What `queue` holds: no queue, no reply yet, or the reply (left in the queue).
pub(crate) async fn collect(broker: &Broker, queue: &str) -> Result<Collected, CallError> {
    let (_, channel) = broker
        .open_channel()
        .await
        .map_err(|e| CallError::Unavailable(e.to_string()))?;
    let got = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await;
    let collected = match got {
        // The broker closes the channel on a missing queue: nothing to close then.
        Err(error) if error.to_string().contains("NOT_FOUND") => return Ok(Collected::Gone),
        Err(error) => Err(unavailable(error)),
        Ok(None) => Ok(Collected::Running),
        Ok(Some(message)) => Ok(Collected::Done(
            serde_json::from_slice::<ReplyBody>(&message.delivery.data)
                .map_err(|e| CallError::MalformedReply(format!("reply is not valid: {e}")))
                .and_then(|reply| reply.into_result().map_err(CallError::Remote)),
        )),
    };
    // Unacknowledged, the reply goes back to the queue as the channel closes.
    let _ = channel.close(200, "collected".into()).await;
    collected
}
