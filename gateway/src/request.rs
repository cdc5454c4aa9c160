//! Reading a call out of an HTTP request: the request id, the deadline, the content type and the
//! body, each refused with a precise [`GatewayError`].

use crate::error::GatewayError;
use crate::headers::{REQUEST_ID, TIMEOUT_MS};
use axum::body::Body;
use axum::http::{HeaderMap, header};
use futures_util::StreamExt;
use mesh::Arguments;
use serde_json::Value;
use std::time::Duration;

/// The longest request id kept as sent.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The client's request id when it is 1-128 visible ASCII characters, else a fresh uuid.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID_LEN
                && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(fresh_request_id, str::to_owned)
}

/// A fresh uuid, hyphenated: encoded into a buffer, without `Display`'s formatter (this runs
/// for every call that came without an id).
fn fresh_request_id() -> String {
    let mut buffer = uuid::Uuid::encode_buffer();
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut buffer)
        .to_owned()
}

/// The longest `Accept-Language` or `User-Agent` passed on to a service.
const MAX_CONTEXT_HEADER_LEN: usize = 512;

/// A header passed on as context data (`Accept-Language`, `User-Agent`): its value when it is
/// printable text of at most 512 bytes; anything else is not passed on (a service should not
/// receive half a language list, nor a client grow every AMQP message without bound).
pub fn context_header(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_CONTEXT_HEADER_LEN)
        .map(str::to_owned)
}

/// The call's timeout: `X-Timeout-Ms` when given (a positive integer), capped at `max`; else
/// `default`.
pub fn timeout(
    headers: &HeaderMap,
    default: Duration,
    max: Duration,
) -> Result<Duration, GatewayError> {
    let Some(value) = headers.get(&TIMEOUT_MS) else {
        return Ok(default.min(max));
    };
    let invalid = |reason: &str| GatewayError::InvalidHeader {
        header: "X-Timeout-Ms",
        reason: reason.to_owned(),
    };
    let text = value.to_str().unwrap_or("").trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("expected a whole number of milliseconds"));
    }
    // More digits than a u64 holds is still a number: longer than any cap.
    let ms: u64 = text.parse().unwrap_or(u64::MAX);
    if ms == 0 {
        return Err(invalid("must be at least 1"));
    }
    Ok(Duration::from_millis(ms).min(max))
}

/// Accepts `application/json`, `application/<x>+json` (with any parameters) or no content type.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), GatewayError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    // What nearly every client sends, settled by one comparison.
    if value.as_bytes() == b"application/json" {
        return Ok(());
    }
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim();
    // Compared without case and without a lowercased copy (this runs on every call).
    let part_is =
        |part: Option<&str>, expected: &str| part.is_some_and(|p| p.eq_ignore_ascii_case(expected));
    let is_json = essence.eq_ignore_ascii_case("application/json")
        || (part_is(essence.get(..12), "application/")
            && part_is(essence.get(essence.len().saturating_sub(5)..), "+json"));
    if is_json {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedMediaType(
            text.chars().take(100).collect(),
        ))
    }
}

/// The body's declared length (`Content-Length`), refused when over `limit`: a body seen to be
/// too large from the head is refused before it is read.
pub fn declared_length(headers: &HeaderMap, limit: usize) -> Result<Option<usize>, GatewayError> {
    // hyper has checked a `Content-Length` to be digits alone before the request got here.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| parse_decimal(v.as_bytes()));
    match declared {
        Some(n) if n > limit as u64 => Err(GatewayError::PayloadTooLarge(limit)),
        Some(n) => Ok(usize::try_from(n).ok()),
        None => Ok(None),
    }
}

/// A decimal number that fits a `u64`, read from the bytes (no UTF-8 check, no `str::parse`
/// machinery); anything else, an overflow included, is `None`.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

/// Reads at most `limit` bytes of body (`declared` long, when the head said: see
/// [`declared_length`]); a larger one is refused as soon as it is seen to be larger.
pub async fn read_body(
    declared: Option<usize>,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, GatewayError> {
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| GatewayError::BodyRead(e.to_string()))?;
        if bytes.len() + chunk.len() > limit {
            return Err(GatewayError::PayloadTooLarge(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Decodes the body into call arguments: empty is none, an object keyword arguments, an array
/// positional ones.
pub fn arguments(bytes: &[u8]) -> Result<Arguments, GatewayError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Arguments::default());
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| GatewayError::MalformedJson(e.to_string()))?;
    let kind = match value {
        Value::Object(kwargs) => return Ok(Arguments::kwargs(kwargs)),
        Value::Array(args) => return Ok(Arguments::args(args)),
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
    };
    Err(GatewayError::NotArguments(kind))
}

/// The names of a `POST /rpc/{service}/{method}` that the router would route to [`crate::call_route::serve`] with
/// the same names: two non-empty segments without percent-escapes (nothing to decode). `None`
/// for any other request, which the router then answers as before (405, 400, 404 or a decoded
/// call).
pub fn plain_names<B>(request: &axum::http::Request<B>) -> Option<(String, String)> {
    if request.method() != axum::http::Method::POST {
        return None;
    }
    let names = request.uri().path().strip_prefix("/rpc/")?;
    // One pass over the bytes: the one '/' between the names, and no '%' anywhere.
    let mut slash = None;
    for (at, byte) in names.bytes().enumerate() {
        match byte {
            b'%' => return None,
            b'/' if slash.is_some() => return None,
            b'/' => slash = Some(at),
            _ => {}
        }
    }
    let (service, method) = names.split_at(slash?);
    let method = &method[1..];
    (!service.is_empty() && !method.is_empty()).then(|| (service.to_owned(), method.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};
    use serde_json::json;

    fn with(name: HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn request_ids_are_kept_or_made() {
        assert_eq!(request_id(&with(REQUEST_ID, "abc-1")), "abc-1");
        let made = request_id(&HeaderMap::new());
        assert_eq!(made.len(), 36);
        assert_ne!(request_id(&with(REQUEST_ID, &"x".repeat(129))).len(), 129);
    }

    #[test]
    fn timeouts_are_parsed_and_capped() {
        let d = Duration::from_secs(30);
        let max = Duration::from_secs(60);
        assert_eq!(timeout(&HeaderMap::new(), d, max), Ok(d));
        assert_eq!(
            timeout(&with(TIMEOUT_MS, "250"), d, max),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(timeout(&with(TIMEOUT_MS, "999999999"), d, max), Ok(max));
        assert_eq!(
            timeout(&with(TIMEOUT_MS, "18446744073709551616"), d, max),
            Ok(max)
        );
        for bad in ["0", "-5", "soon", "1.5", "", "+5"] {
            assert!(timeout(&with(TIMEOUT_MS, bad), d, max).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(&HeaderMap::new()).is_ok());
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.x+json",
            " APPLICATION/Problem+JSON ",
        ] {
            assert!(
                check_content_type(&with(header::CONTENT_TYPE, ok)).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
            "text/x+json",
            "+json",
            "applicatio",
        ] {
            assert!(
                check_content_type(&with(header::CONTENT_TYPE, bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bodies_become_arguments() {
        assert_eq!(arguments(b""), Ok(Arguments::default()));
        assert_eq!(arguments(b"  \n"), Ok(Arguments::default()));
        assert_eq!(arguments(b"[1]"), Ok(Arguments::args(vec![json!(1)])));
        let kw = arguments(br#"{"a":1}"#).expect("object");
        assert_eq!(kw.kwargs.get("a"), Some(&json!(1)));
        assert_eq!(arguments(b"5"), Err(GatewayError::NotArguments("a number")));
        assert_eq!(arguments(b"null"), Err(GatewayError::NotArguments("null")));
        assert!(matches!(
            arguments(b"{\"a\":"),
            Err(GatewayError::MalformedJson(_))
        ));
        assert!(matches!(
            arguments(b"\xff\xfe"),
            Err(GatewayError::MalformedJson(_))
        ));
        let deep = "[".repeat(10_000);
        assert!(matches!(
            arguments(deep.as_bytes()),
            Err(GatewayError::MalformedJson(_))
        ));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        assert_eq!(
            read_body(None, Body::from("12345"), 5).await,
            Ok(b"12345".to_vec())
        );
        assert_eq!(
            read_body(None, Body::from("123456"), 5).await,
            Err(GatewayError::PayloadTooLarge(5))
        );
        // A body longer than it declared is still cut at the limit.
        assert_eq!(
            read_body(Some(1), Body::from("123456"), 5).await,
            Err(GatewayError::PayloadTooLarge(5))
        );
        assert_eq!(declared_length(&HeaderMap::new(), 5), Ok(None));
        assert_eq!(
            declared_length(&with(header::CONTENT_LENGTH, "5"), 5),
            Ok(Some(5))
        );
        assert_eq!(
            declared_length(&with(header::CONTENT_LENGTH, "1000000"), 5),
            Err(GatewayError::PayloadTooLarge(5))
        );
    }

    #[test]
    fn decimals_are_read_from_bytes() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"1234"), Some(1234));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(
            parse_decimal(b"10000000000000000000"),
            Some(10_000_000_000_000_000_000)
        );
        for bad in [
            &b""[..],
            b"12a",
            b"-1",
            b"+1",
            b" 1",
            b"1.0",
            b"18446744073709551616",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fresh_request_ids_are_hyphenated_uuids() {
        let id = fresh_request_id();
        assert_eq!(
            uuid::Uuid::parse_str(&id).map(|u| u.to_string()),
            Ok(id.clone())
        );
        assert_ne!(fresh_request_id(), id);
    }
}

#[cfg(test)]
mod plain_name_tests {
    use super::plain_names;
    use axum::http::{Method, Request};

    fn names(method: Method, uri: &str) -> Option<(String, String)> {
        let request = Request::builder().method(method).uri(uri).body(()).ok()?;
        plain_names(&request)
    }

    #[test]
    fn plain_names_are_two_segments_without_escapes() {
        let named = |s: &str, m: &str| Some((s.to_owned(), m.to_owned()));
        assert_eq!(names(Method::POST, "/rpc/kv/inc"), named("kv", "inc"));
        assert_eq!(names(Method::POST, "/rpc/kv/inc?x=1"), named("kv", "inc"));
        // Invalid names are the handler's to refuse (400 invalid-name), as through the router.
        assert_eq!(names(Method::POST, "/rpc/a.b/x*"), named("a.b", "x*"));
        // Everything else is the router's: other methods, escapes, other shapes.
        for (method, uri) in [
            (Method::GET, "/rpc/kv/inc"),
            (Method::PUT, "/rpc/kv/inc"),
            (Method::POST, "/rpc/kv/%69nc"),
            (Method::POST, "/rpc/k%2Fv/inc"),
            (Method::POST, "/rpc/kv/inc/"),
            (Method::POST, "/rpc/kv/inc/x"),
            (Method::POST, "/rpc//inc"),
            (Method::POST, "/rpc/kv/"),
            (Method::POST, "/rpc/kv"),
            (Method::POST, "/rpc"),
            (Method::POST, "/rpcs/kv/inc"),
            (Method::POST, "/healthz"),
        ] {
            assert_eq!(names(method.clone(), uri), None, "{method} {uri}");
        }
    }
}
