//! Binding a request's `args` and `kwargs` to a Rust type, the way Python binds them to a
//! function's parameters: positional arguments fill fields in declaration order, keyword arguments
//! fill them by name, and any mismatch is nameko's `IncorrectSignature`.
//!
//! Field order comes from serde itself: a derived `Deserialize` for a struct passes its field
//! names to `deserialize_struct`, and [`struct_fields`] reads them from there without decoding
//! anything.

use crate::error::{ErrorKind, RpcError};
use crate::protocol::Arguments;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::{Map, Value};

/// Binds a request body to `T`.
///
/// For a struct (the usual case), positional arguments are matched to fields in order and merged
/// with the keyword arguments; too many positional arguments, an argument given twice or an
/// unknown keyword is refused before decoding. Other types (tuples, vectors, maps, `Value`) take
/// the positional arguments as an array or the keyword arguments as an object, not both.
pub(crate) fn bind<T: DeserializeOwned>(body: Arguments) -> Result<T, RpcError> {
    let Arguments {
        mut args,
        mut kwargs,
    } = body;
    args.iter_mut().for_each(integral_floats_as_integers);
    kwargs.values_mut().for_each(integral_floats_as_integers);
    let value = match struct_fields::<T>() {
        Some(fields) => Value::Object(merge(fields, args, kwargs)?),
        None if kwargs.is_empty() => Value::Array(args),
        None if args.is_empty() => Value::Object(kwargs),
        None => {
            return Err(signature(
                "takes either positional or keyword arguments, not both",
            ));
        }
    };
    serde_json::from_value(value).map_err(|e| signature(e.to_string()))
}

/// JSON has one number type: `2.0` is the integer 2 to a JSON Schema validator and to a Python
/// caller, so it must bind to an integer field too. Floats with no fractional part become
/// integers (a float field still accepts them).
fn integral_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            // Only below 2^53 is a float an exact integer: beyond, `-9223372036854775809` would
            // round to i64::MIN and slip through as a number it is not.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < EXACT) {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

fn merge(
    fields: &'static [&'static str],
    args: Vec<Value>,
    mut kwargs: Map<String, Value>,
) -> Result<Map<String, Value>, RpcError> {
    if args.len() > fields.len() {
        return Err(signature(format!(
            "takes {} positional argument{} but {} were given",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" },
            args.len()
        )));
    }
    if let Some(unknown) = kwargs.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(signature(format!(
            "got an unexpected keyword argument `{unknown}`"
        )));
    }
    for (name, value) in fields.iter().zip(args) {
        if kwargs.contains_key(*name) {
            return Err(signature(format!(
                "got multiple values for argument `{name}`"
            )));
        }
        kwargs.insert((*name).to_owned(), value);
    }
    Ok(kwargs)
}

fn signature(message: impl Into<String>) -> RpcError {
    RpcError::new(ErrorKind::IncorrectSignature, message)
}

/// The field names of `T` in declaration order, when `T` deserializes as a struct.
pub(crate) fn struct_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut fields = None;
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that records the field list a struct asks for, then stops.
struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("field names recorded"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inc {
        key: String,
        #[serde(default = "one")]
        by: i64,
    }

    fn one() -> i64 {
        1
    }

    fn body(args: Value, kwargs: Value) -> Arguments {
        Arguments {
            args: args.as_array().cloned().unwrap_or_default(),
            kwargs: kwargs.as_object().cloned().unwrap_or_default(),
        }
    }

    fn inc(key: &str, by: i64) -> Inc {
        Inc {
            key: key.into(),
            by,
        }
    }

    #[test]
    fn reads_struct_fields_in_order() {
        assert_eq!(struct_fields::<Inc>(), Some(&["key", "by"][..]));
        assert_eq!(struct_fields::<(String, i64)>(), None);
        assert_eq!(struct_fields::<Value>(), None);
    }

    #[test]
    fn keyword_positional_and_mixed() {
        assert_eq!(
            bind::<Inc>(body(json!([]), json!({"key": "a"}))),
            Ok(inc("a", 1))
        );
        assert_eq!(
            bind::<Inc>(body(json!(["a", 5]), json!({}))),
            Ok(inc("a", 5))
        );
        assert_eq!(
            bind::<Inc>(body(json!(["a"]), json!({"by": 3}))),
            Ok(inc("a", 3))
        );
    }

    #[test]
    fn mismatches_are_incorrect_signature() {
        let cases = [
            (json!([]), json!({})),                   // missing key
            (json!(["a", 1, 2]), json!({})),          // too many positional
            (json!(["a"]), json!({"key": "b"})),      // given twice
            (json!([]), json!({"key": "a", "x": 1})), // unknown keyword
            (json!([]), json!({"key": 5})),           // wrong type
        ];
        for (args, kwargs) in cases {
            let err = bind::<Inc>(body(args.clone(), kwargs.clone()))
                .expect_err(&format!("{args} {kwargs}"));
            assert_eq!(err.kind(), ErrorKind::IncorrectSignature, "{err}");
        }
    }

    #[test]
    fn integral_floats_bind_to_integers() {
        assert_eq!(
            bind::<Inc>(body(json!([]), json!({"key": "a", "by": 2.0}))),
            Ok(inc("a", 2))
        );
        let err = bind::<Inc>(body(json!([]), json!({"key": "a", "by": 2.5})));
        assert_eq!(
            err.map_err(|e| e.kind()),
            Err(ErrorKind::IncorrectSignature)
        );
        #[derive(Debug, Deserialize, PartialEq)]
        struct Ratio {
            r: f64,
        }
        assert_eq!(
            bind::<Ratio>(body(json!([1.0]), json!({}))),
            Ok(Ratio { r: 1.0 })
        );
    }

    #[test]
    fn non_struct_types_take_one_form() {
        assert_eq!(
            bind::<(String, i64)>(body(json!(["a", 2]), json!({}))),
            Ok(("a".to_owned(), 2))
        );
        assert_eq!(
            bind::<Value>(body(json!([]), json!({"a": 1}))),
            Ok(json!({"a": 1}))
        );
        assert!(bind::<Value>(body(json!([1]), json!({"a": 1}))).is_err());
    }
}
