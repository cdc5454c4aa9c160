//! Call context <-> AMQP headers: nameko's `nameko.*` context headers and Warren's
//! `warren.deadline`; Warren's routing headers on a request (`warren.method`,
//! `warren.reply_direct`); and the headers Warren puts on the copies of an event it retries or
//! dead-letters (docs/architecture.md §6).

use crate::call_context::CallContext;
use crate::deadline::Deadline;
use crate::protocol::{
    CALL_ID_STACK_KEY, CONTEXT_HEADER_PREFIX, DEADLINE_HEADER, METHOD_HEADER, REPLY_DIRECT_HEADER,
    TRACEPARENT_HEADER,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};

/// Which attempt a delivery of an event is: absent on the first, `2` on the first retry, and
/// so on; on a dead letter, the attempt that failed last. Set only on the copies Warren
/// publishes to a subscription's own queues, which nameko peers never consume.
pub const ATTEMPT_HEADER: &str = "x-warren-attempt";

/// A dead letter's last error.
pub const ERROR_HEADER: &str = "x-warren-error";

/// A dead letter's source service (its event arrived on `<source>.events`).
pub const SOURCE_HEADER: &str = "x-warren-source";

/// A dead letter's event type.
pub const EVENT_TYPE_HEADER: &str = "x-warren-event-type";

/// The attempt `headers` say a delivery is (1 when they do not say, or say nonsense).
pub(crate) fn attempt(headers: Option<&FieldTable>) -> u32 {
    headers
        .and_then(|h| h.inner().get(ATTEMPT_HEADER))
        .and_then(as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// The text of header `name`, when it is a string.
pub(crate) fn text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    headers
        .and_then(|h| h.inner().get(name))
        .and_then(as_string)
}

/// The headers carrying `context`.
pub(crate) fn write(context: &CallContext) -> FieldTable {
    let mut table = FieldTable::default();
    let stack: Vec<AMQPValue> = context
        .call_id_stack
        .iter()
        .map(|id| AMQPValue::LongString(LongString::from(id.as_str())))
        .collect();
    table.insert(
        format!("{CONTEXT_HEADER_PREFIX}{CALL_ID_STACK_KEY}").into(),
        AMQPValue::FieldArray(FieldArray::from(stack)),
    );
    for (key, value) in &context.data {
        table.insert(
            format!("{CONTEXT_HEADER_PREFIX}{key}").into(),
            AMQPValue::LongString(LongString::from(value.as_str())),
        );
    }
    if let Some(traceparent) = &context.traceparent {
        table.insert(
            TRACEPARENT_HEADER.into(),
            AMQPValue::LongString(LongString::from(traceparent.as_str())),
        );
    }
    if let Some(deadline) = context.deadline {
        let epoch_ms = i64::try_from(deadline.to_epoch_ms()).unwrap_or(i64::MAX);
        table.insert(DEADLINE_HEADER.into(), AMQPValue::LongLongInt(epoch_ms));
    }
    table
}

/// The context carried by `headers`. Values of unexpected types are ignored: a peer's odd header
/// must never fail a call.
pub(crate) fn read(headers: Option<&FieldTable>) -> CallContext {
    let mut context = CallContext::default();
    let Some(headers) = headers else {
        return context;
    };
    for (key, value) in headers.inner() {
        let key = key.as_str();
        if key == DEADLINE_HEADER {
            context.deadline = as_u64(value).map(Deadline::from_epoch_ms);
        } else if key == TRACEPARENT_HEADER {
            context.traceparent = as_string(value);
        } else if let Some(name) = key.strip_prefix(CONTEXT_HEADER_PREFIX) {
            if name == CALL_ID_STACK_KEY {
                if let AMQPValue::FieldArray(items) = value {
                    context.call_id_stack = items.as_slice().iter().filter_map(as_string).collect();
                }
            } else if let Some(text) = as_string(value) {
                context.data.insert(name.to_owned(), text);
            }
        }
    }
    context
}

/// The method a request names in its [`METHOD_HEADER`] (a direct request's), if any.
pub(crate) fn method(headers: Option<&FieldTable>) -> Option<String> {
    as_string(headers?.inner().get(METHOD_HEADER)?)
}

/// Whether a request says its reply may go straight to its `reply_to` queue
/// ([`REPLY_DIRECT_HEADER`]).
pub(crate) fn reply_direct(headers: Option<&FieldTable>) -> bool {
    headers
        .and_then(|h| h.inner().get(REPLY_DIRECT_HEADER))
        .is_some_and(|v| matches!(v, AMQPValue::Boolean(true)))
}

fn as_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn as_u64(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::Timestamp(v) => Some(*v),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn context_round_trips() {
        let context = CallContext::rooted_at("req-1")
            .with_data("user_id", "u1")
            .with_deadline(Deadline::after(Duration::from_secs(3)));
        let back = read(Some(&write(&context)));
        assert_eq!(back.call_id_stack, vec!["req-1".to_owned()]);
        assert_eq!(back.data.get("user_id").map(String::as_str), Some("u1"));
        let left = back.deadline.map(Deadline::remaining_ms).unwrap_or(0);
        assert!((2_900..=3_001).contains(&left), "{left}");
    }

    #[test]
    fn odd_headers_are_ignored() {
        let mut table = FieldTable::default();
        table.insert("nameko.call_id_stack".into(), AMQPValue::Boolean(true));
        table.insert("nameko.user_id".into(), AMQPValue::Void);
        table.insert("warren.deadline".into(), AMQPValue::Boolean(true));
        table.insert("other".into(), AMQPValue::LongString("x".into()));
        assert_eq!(read(Some(&table)), CallContext::default());
        assert_eq!(read(None), CallContext::default());
    }

    #[test]
    fn attempts_are_read_from_any_integer() {
        let mut table = FieldTable::default();
        assert_eq!(attempt(Some(&table)), 1);
        table.insert(ATTEMPT_HEADER.into(), AMQPValue::ShortShortUInt(3));
        assert_eq!(attempt(Some(&table)), 3);
        table.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(0));
        assert_eq!(attempt(Some(&table)), 1);
        table.insert(ATTEMPT_HEADER.into(), AMQPValue::Boolean(true));
        assert_eq!(attempt(None), 1);
        assert_eq!(attempt(Some(&table)), 1);
    }
}
