//! Asynchronous calls (docs/http.md, "Asynchronous calls"): `POST /rpc/{service}/{method}` with
//! `Prefer: respond-async` answers `202 Accepted` once the broker has the request, and
//! `GET /calls/{id}` answers for it: 202 while it runs, then exactly what the synchronous call
//! would have answered, on every GET until the result expires.
//!
//! The reply goes to a queue of the call's own (a detached call, [`mesh::ResultQueue`]), which
//! the broker keeps, so any gateway replica can answer the GET: the id names everything a
//! replica needs (the queue, the deadline, the expiry, the request id), and the replica keeps
//! no state of its own but a count of the calls it took. The queue's name also holds a hash of
//! the caller's identity, so another caller, who computes another name from the same id, finds
//! nothing. (The id can be read by whoever holds it; the hash only keeps it from being
//! collected by another identity.)

use crate::AppState;
use crate::auth::Identity;
use crate::error::{CallInfo, GatewayError};
use crate::request;
use crate::rpc::{self, BoxFuture};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mesh::{Collected, ResultQueue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a result queue outlives the call's expiry, so that the broker never removes it
/// before the gateway stops serving it (x-expires counts from the declaration).
const QUEUE_MARGIN: Duration = Duration::from_secs(60);

/// The longest id accepted: a longer one names nothing this gateway made.
const MAX_ID_LEN: usize = 2048;

/// Whether the request asks to be answered asynchronously (RFC 7240 `Prefer: respond-async`,
/// among other preferences, in any case).
pub(crate) fn wants_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            let token = p.split(';').next().unwrap_or("").trim();
            token.eq_ignore_ascii_case("respond-async")
        })
}

/// What a call id holds (base64url JSON): the names, the request id, and when it stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Ticket {
    /// The call's uuid (32 hex digits), which names its result queue.
    #[serde(rename = "u")]
    uuid: String,
    #[serde(rename = "s")]
    service: String,
    #[serde(rename = "m")]
    method: String,
    #[serde(rename = "r")]
    request_id: String,
    /// The deadline, unix ms.
    #[serde(rename = "d")]
    deadline_ms: u64,
    /// The deadline it asked for, ms (a 504's detail).
    #[serde(rename = "t")]
    requested_ms: u64,
    /// When the result is no longer served, unix ms.
    #[serde(rename = "e")]
    expires_ms: u64,
}

impl Ticket {
    /// The id: the ticket as base64url JSON.
    fn id(&self) -> String {
        // A struct of strings and numbers always serialises.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The ticket an id holds; `None` for anything this gateway did not make.
    fn from_id(id: &str) -> Option<Self> {
        if id.len() > MAX_ID_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
        let ticket: Self = serde_json::from_slice(&bytes).ok()?;
        let valid = ticket.uuid.len() == 32 && ticket.uuid.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then_some(ticket)
    }

    /// The result queue of this call made by `identity`: `warren.call.<uuid>.<owner>`. Its
    /// name is its routing key on the RPC exchange, and four words long so that no request's
    /// (`<service>.<method>`, two words) can ever be routed to it.
    fn queue(&self, identity: Option<&Identity>) -> String {
        let mut hash = Sha256::new();
        hash.update(b"warren.call.owner\0");
        hash.update(identity.map_or("", Identity::user_id).as_bytes());
        let owner: String = hash.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("warren.call.{}.{owner}", self.uuid)
    }

    fn info(&self) -> CallInfo {
        CallInfo {
            service: Some(self.service.clone()),
            method: Some(self.method.clone()),
            request_id: Some(self.request_id.clone()),
        }
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `POST /rpc/{service}/{method}` with `Prefer: respond-async`: the checks of a synchronous
/// call (the deadline capped by `--max-async-timeout-ms`), a place among the asynchronous
/// calls, then the request published with its reply to the call's queue.
pub(crate) fn accept(
    app: AppState,
    names: Option<(String, String)>,
    headers: HeaderMap,
    body: Body,
    peer: Option<SocketAddr>,
) -> BoxFuture<Result<Response, Infallible>> {
    let request_id = request::request_id(&headers);
    let mut info = CallInfo {
        request_id: Some(request_id.clone()),
        ..CallInfo::default()
    };
    let mut rate = None;
    let cap = app.config.max_async_timeout;
    let checked = names
        .ok_or(GatewayError::BadRpcPath)
        .and_then(|(service, method)| {
            info.service = Some(service.clone());
            info.method = Some(method.clone());
            let span = tracing::Span::none();
            rpc::check(&app, service, method, &headers, peer, &span, &mut rate, cap)
        });
    let traceparent = headers
        .get(crate::headers::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    drop(headers);
    Box::pin(async move {
        let outcome: Result<Ticket, GatewayError> = async {
            let checked = checked?;
            let place = app
                .async_calls
                .clone()
                .try_acquire_owned()
                .map_err(|_| GatewayError::TooManyAsyncCalls(app.config.max_async_calls))?;
            let now = SystemTime::now();
            let timeout = Duration::from_millis(checked.requested_ms);
            let ttl = app.config.async_result_ttl;
            let ticket = Ticket {
                uuid: uuid::Uuid::new_v4().simple().to_string(),
                service: checked.service.clone(),
                method: checked.method.clone(),
                request_id: request_id.clone(),
                deadline_ms: unix_ms(now + timeout),
                requested_ms: checked.requested_ms,
                expires_ms: unix_ms(now + timeout + ttl),
            };
            let queue = ResultQueue::new(
                ticket.queue(checked.identity.as_ref()),
                timeout + ttl + QUEUE_MARGIN,
            );
            let call = rpc::read_call(&app, checked, body, request_id.clone(), traceparent).await?;
            call.proxy
                .call_detached(&call.method, call.arguments, queue)
                .await
                .map_err(|e| GatewayError::of_call(e, call.requested_ms))?;
            drop(call.permit);
            // The place is this gateway's until the result expires: the bound counts results
            // kept as well as calls running.
            tokio::spawn(async move {
                tokio::time::sleep(timeout + ttl).await;
                drop(place);
            });
            Ok(ticket)
        }
        .await;
        let mut response = match outcome {
            Ok(ticket) => accepted(&ticket),
            Err(error) => {
                tracing::debug!(request_id = %info.request_id.as_deref().unwrap_or(""), %error, "asynchronous call refused");
                error
                    .to_problem(&app.config.error_map, &info)
                    .into_response()
            }
        };
        if let Some(rate) = rate {
            rate.write_to(response.headers_mut());
        }
        Ok(response)
    })
}

/// `202 Accepted`, `Location: /calls/{id}`, `Preference-Applied: respond-async`.
fn accepted(ticket: &Ticket) -> Response {
    let location = format!("/calls/{}", ticket.id());
    let body = serde_json::json!({"id": ticket.id(), "location": location});
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    headers.insert(
        "preference-applied",
        HeaderValue::from_static("respond-async"),
    );
    if let Ok(id) = HeaderValue::from_str(&ticket.request_id) {
        headers.insert(crate::headers::REQUEST_ID, id);
    }
    response
}

/// `GET /calls/{id}`: 202 while the call runs, then the synchronous call's answer, until the
/// result expires; 404 for any id that names no result of this caller's.
pub(crate) async fn collect(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let identity = match app.config.auth.authenticate(&headers) {
        Ok(identity) => identity,
        Err(error) => return rpc::problem(&app, GatewayError::Unauthenticated(error), &headers),
    };
    let no_such_call = || {
        let shown: String = id.chars().take(64).collect();
        rpc::problem(&app, GatewayError::NoSuchCall(shown), &headers)
    };
    let Some(ticket) = Ticket::from_id(&id) else {
        return no_such_call();
    };
    let now = unix_ms(SystemTime::now());
    if now >= ticket.expires_ms {
        return no_such_call();
    }
    let queue = ticket.queue(identity.as_ref());
    let info = ticket.info();
    let map = &app.config.error_map;
    match app.client.collect(&queue).await {
        Ok(Collected::Gone) => no_such_call(),
        Ok(Collected::Running) if now < ticket.deadline_ms => running(&ticket),
        // No reply by its deadline: what the synchronous call answered then.
        Ok(Collected::Running) => GatewayError::DeadlineExceeded(ticket.requested_ms)
            .to_problem(map, &info)
            .into_response(),
        Ok(Collected::Done(Ok(result))) => rpc::result_response(result, &ticket.request_id),
        Ok(Collected::Done(Err(error))) => GatewayError::of_call(error, ticket.requested_ms)
            .to_problem(map, &info)
            .into_response(),
        Err(error) => GatewayError::from(error)
            .to_problem(map, &info)
            .into_response(),
    }
}

/// `202` with `Retry-After: 1` (a poll a second: a call's answer is collected at most a
/// second after it is in).
fn running(ticket: &Ticket) -> Response {
    let body = serde_json::json!({"status": "running", "service": ticket.service, "method": ticket.method});
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    if let Ok(id) = HeaderValue::from_str(&ticket.request_id) {
        headers.insert(crate::headers::REQUEST_ID, id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket {
            uuid: "0123456789abcdef0123456789abcdef".into(),
            service: "greeting_service".into(),
            method: "slow".into(),
            request_id: "req-1".into(),
            deadline_ms: 10,
            requested_ms: 5,
            expires_ms: 20,
        }
    }

    #[test]
    fn an_id_holds_its_ticket_and_nothing_else_is_one() {
        let t = ticket();
        assert_eq!(Ticket::from_id(&t.id()), Some(t.clone()));
        for bad in ["", "x", "!!!!", &"A".repeat(MAX_ID_LEN + 1)] {
            assert_eq!(Ticket::from_id(bad), None, "{bad}");
        }
        let mut bad_uuid = t.clone();
        bad_uuid.uuid = "../../etc".into();
        assert_eq!(Ticket::from_id(&bad_uuid.id()), None);
    }

    #[test]
    fn each_caller_has_its_own_queue_name() {
        let t = ticket();
        let anonymous = t.queue(None);
        assert!(anonymous.starts_with("warren.call.0123456789abcdef0123456789abcdef."));
        assert_eq!(anonymous.len(), "warren.call.".len() + 32 + 1 + 16);
        assert_eq!(anonymous, t.queue(None), "stable");
    }

    #[test]
    fn prefer_respond_async_among_other_preferences() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("prefer", HeaderValue::from_str(v).expect("value"));
            wants_async(&h)
        };
        assert!(with("respond-async"));
        assert!(with("return=minimal, Respond-Async; wait=10"));
        assert!(!with("return=minimal"));
        assert!(!with("respond-asynchronously"));
        assert!(!wants_async(&HeaderMap::new()));
    }
}
