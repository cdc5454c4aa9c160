//! Property tests (a fuzz target for the decoders): whatever bytes or JSON a peer sends, request
//! decoding, argument binding and reply decoding answer with a value or an error, never a panic,
//! and binding errors are always `IncorrectSignature`.

use crate::ErrorKind;
use crate::args::bind;
use crate::protocol::{Arguments, ReplyBody, validate_name};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Any JSON value, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Inc {
    key: String,
    #[serde(default)]
    by: i64,
    tags: Option<Vec<String>>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn request_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Arguments::decode(&bytes);
    }

    #[test]
    fn request_decoding_of_json_never_panics(value in json()) {
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let _ = Arguments::decode(&bytes);
    }

    #[test]
    fn binding_fails_only_with_incorrect_signature(args in prop::collection::vec(json(), 0..4), kwargs in json()) {
        let kwargs = match kwargs {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let body = Arguments { args, kwargs };
        for outcome in [
            bind::<Inc>(body.clone()).map(|_| ()),
            bind::<Value>(body.clone()).map(|_| ()),
            bind::<(String, i64)>(body.clone()).map(|_| ()),
            bind::<Vec<u8>>(body).map(|_| ()),
        ] {
            if let Err(e) = outcome {
                prop_assert_eq!(e.kind(), ErrorKind::IncorrectSignature);
            }
        }
    }

    #[test]
    fn reply_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256), value in json()) {
        let _ = serde_json::from_slice::<ReplyBody>(&bytes).map(ReplyBody::into_result);
        let encoded = serde_json::to_vec(&value).unwrap_or_default();
        let _ = serde_json::from_slice::<ReplyBody>(&encoded).map(ReplyBody::into_result);
    }

    #[test]
    fn names_are_never_routing_patterns(name in ".{0,140}") {
        if validate_name(&name).is_ok() {
            prop_assert!(!name.contains(['.', '*', '#', ' ', '/']));
            prop_assert!(!name.is_empty() && name.len() <= 128);
        }
    }
}
