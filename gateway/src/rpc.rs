//! `POST /rpc/{service}/{method}`: one HTTP request, one RPC call.

use crate::AppState;
use crate::auth::Identity;
use crate::error::{CallInfo, GatewayError};
use crate::headers::{REQUEST_ID, TRACEPARENT};
use crate::metrics::CallTimer;
use crate::ratelimit::{ClientKey, RateState};
use crate::registry::Liveness;
use crate::request;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use mesh::{CallContext, Deadline, validate_call_names, validate_name};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

/// A boxed, sendable future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The least time a request's body gets to arrive, whatever its deadline (see [`call`]).
const BODY_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Calls `service.method` with the body's arguments and answers with its result.
///
/// Everything that can be checked locally is checked before anything is published: the names
/// (so no `*`, `#` or `.` reaches a routing key), the headers, the content type, the size and
/// the JSON of the body.
///
/// A plain function returning the future, not an `async fn`, so that what a request holds is
/// short-lived (a gateway may hold a hundred thousand of them, and in a burst most have not yet
/// been polled): every check the head allows ([`check`]) is made here, when hyper hands over the
/// request, and the head is dropped at once; the body is read in a boxed future of its own
/// ([`admit`]), freed once the call is admitted; and a call pending for its reply keeps only what
/// it needs to wait and to answer: the state as one `Arc`, the span once, 224 bytes in all
/// (release build), which keeps it in mimalloc's 224-byte size class.
///
/// Boxed here, in one of two shapes: a call no rate limit applies to keeps nothing for its
/// headers (the 224 bytes above); one a limit applies to keeps its `RateLimit` headers, boxed
/// (8 bytes more), and adds them to whatever answers it.
pub(crate) fn call(
    app: AppState,
    names: Option<(String, String)>,
    headers: HeaderMap,
    body: Body,
    peer: Option<SocketAddr>,
) -> BoxFuture<Result<Response, Infallible>> {
    let timer = CallTimer::start();
    let request_id = request::request_id(&headers);
    let mut info = CallInfo {
        request_id: Some(request_id.clone()),
        ..CallInfo::default()
    };
    // With spans exported (a span linker installed), each call is a span of the caller's trace.
    let span = if warren_telemetry::trace::linking() {
        tracing::info_span!(
            "rpc",
            otel.name = "POST /rpc/{service}/{method}",
            otel.kind = "server",
            request_id = %request_id,
            service = tracing::field::Empty,
            method = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
    } else {
        tracing::Span::none()
    };
    // The caller's trace, when it sent one; the service's span then joins it (as the child of
    // the gateway's own span when spans are exported: linked before the span is entered).
    let caller = headers
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(warren_telemetry::trace::TraceParent::parse);
    let traceparent = warren_telemetry::trace::link_span(&span, caller.as_ref())
        .or(caller)
        .map(|t| t.to_string());
    let mut rate = None;
    let checked = names
        .ok_or(GatewayError::BadRpcPath)
        .and_then(|(service, method)| {
            info.service = Some(service.clone());
            info.method = Some(method.clone());
            let cap = app.config.max_timeout;
            span.in_scope(|| check(&app, service, method, &headers, peer, &span, &mut rate, cap))
        });
    drop(headers);
    let admitted: BoxFuture<Result<Admitted, GatewayError>> = match checked {
        Ok(checked) => {
            let admit = admit(app.clone(), checked, body, request_id, traceparent);
            Box::pin(admit.instrument(span.clone()))
        }
        Err(error) => Box::pin(std::future::ready(Err(error))),
    };
    // The span is held once, by `Instrumented`: the answer is made inside it, and finds it as
    // the current span (a second copy in the future would cost 40 bytes a pending call).
    let respond = async move {
        let outcome = async {
            let Admitted {
                call,
                permit,
                requested_ms,
            } = admitted.await?;
            let result = call
                .await
                .map_err(|e| GatewayError::of_call(e, requested_ms));
            drop(permit);
            result
        }
        .await;
        answer(&app, outcome, &info, &tracing::Span::current(), timer)
    };
    match rate {
        None => Box::pin(respond.instrument(span).map(Ok)),
        Some(rate) => {
            let rate = Box::new(rate);
            let respond = respond.map(move |mut response| {
                rate.write_to(response.headers_mut());
                Ok(response)
            });
            Box::pin(respond.instrument(span))
        }
    }
}

/// A call whose head passed every check: what reading its body and sending it needs.
pub(crate) struct Checked {
    pub(crate) service: String,
    pub(crate) method: String,
    pub(crate) identity: Option<Identity>,
    /// Its place among the calls in flight, held until it is answered.
    permit: OwnedSemaphorePermit,
    pub(crate) deadline: Deadline,
    /// The deadline it asked for, ms (for a 504's detail).
    pub(crate) requested_ms: u64,
    /// The body's length, as the head declared it.
    declared_length: Option<usize>,
    /// `Accept-Language` and `User-Agent`, passed on as `nameko.language`/`nameko.user_agent`.
    language: Option<String>,
    user_agent: Option<String>,
}

/// A call that passed every local check, on its way.
struct Admitted {
    /// The call: published when first polled, then waiting for its reply.
    call: BoxFuture<Result<serde_json::Value, mesh::CallError>>,
    /// Its place among the calls in flight, held until it is answered.
    permit: OwnedSemaphorePermit,
    /// The deadline it asked for, ms (for a 504's detail).
    requested_ms: u64,
}

/// Checks a call's head, in this order: credentials, names, rate limits, exposure,
/// permissions, the in-flight limit, liveness, the deadline, the content type, the declared
/// length. `rate` gets the rate limits' headers when a limit applies (refused or not); `cap`
/// is the longest deadline the call may ask for.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check(
    app: &AppState,
    service: String,
    method: String,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    span: &tracing::Span,
    rate: &mut Option<RateState>,
    cap: std::time::Duration,
) -> Result<Checked, GatewayError> {
    // Credentials first: a caller without them learns nothing else about the call.
    let identity = app
        .config
        .auth
        .authenticate(headers)
        .map_err(GatewayError::Unauthenticated)?;
    for (what, name) in [("service", &service), ("method", &method)] {
        validate_name(name).map_err(|reason| GatewayError::InvalidName {
            what,
            name: name.chars().take(200).collect(),
            reason,
        })?;
    }
    validate_call_names(&service, &method).map_err(|reason| GatewayError::InvalidName {
        what: "service and method",
        name: format!("{service}.{method}").chars().take(200).collect(),
        reason,
    })?;
    span.record("service", service.as_str());
    span.record("method", method.as_str());
    // Counted once the caller and the names are known, and before anything else: a client
    // over its limit cannot probe the policy or hold a place among the calls in flight.
    if app.rate_limiter.is_on() {
        let client = ClientKey::of(
            identity.as_ref(),
            peer,
            headers,
            &app.config.trusted_proxies,
        );
        app.rate_limiter.count(&client, &service, &method, rate)?;
    }
    if !app.config.exposure.allows(&service, &method) {
        return Err(GatewayError::NotExposed(service, method));
    }
    if let Some(identity) = identity.as_ref().filter(|i| !i.allows(&service, &method)) {
        return Err(GatewayError::Forbidden {
            user: identity.user_id().to_owned(),
            service,
            method,
        });
    }
    // Bounded work: above the limit, refuse at once rather than queue without end.
    let permit = app
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| GatewayError::Overloaded(app.config.max_in_flight))?;
    // A service whose instances all stopped would only queue the call until its deadline.
    if app.registry.liveness(&service) == Liveness::NoLiveInstance {
        return Err(GatewayError::NoLiveInstance(service));
    }
    let config = &app.config;
    let timeout = request::timeout(headers, config.default_timeout, cap)?;
    request::check_content_type(headers)?;
    let declared_length = request::declared_length(headers, config.max_body_bytes)?;
    Ok(Checked {
        service,
        method,
        identity,
        permit,
        deadline: Deadline::after(timeout),
        requested_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        declared_length,
        language: request::context_header(headers, header::ACCEPT_LANGUAGE),
        user_agent: request::context_header(headers, header::USER_AGENT),
    })
}

/// Reads a checked call's body within its deadline, decodes it as arguments, and makes the
/// call (published when first polled).
async fn admit(
    app: AppState,
    checked: Checked,
    body: Body,
    request_id: String,
    traceparent: Option<String>,
) -> Result<Admitted, GatewayError> {
    let ready = read_call(&app, checked, body, request_id, traceparent).await?;
    Ok(Admitted {
        call: Box::pin(ready.proxy.call(&ready.method, ready.arguments)),
        permit: ready.permit,
        requested_ms: ready.requested_ms,
    })
}

/// A call read in full: to whom, what, and its place among the calls in flight.
pub(crate) struct ReadCall {
    /// The service, with the call's context and idempotency.
    pub(crate) proxy: mesh::ServiceProxy,
    pub(crate) method: String,
    pub(crate) arguments: mesh::Arguments,
    pub(crate) permit: OwnedSemaphorePermit,
    pub(crate) requested_ms: u64,
}

/// Reads a checked call's body within its deadline and decodes it as arguments; the proxy
/// carries the call's context (request id, deadline, identity, language, user agent, trace).
pub(crate) async fn read_call(
    app: &AppState,
    checked: Checked,
    body: Body,
    request_id: String,
    traceparent: Option<String>,
) -> Result<ReadCall, GatewayError> {
    let Checked {
        service,
        method,
        identity,
        permit,
        deadline,
        requested_ms,
        declared_length,
        language,
        user_agent,
    } = checked;
    // A client trickling its body (slow loris past the headers) gets the call's deadline,
    // but at least BODY_GRACE: a body sent with its head is read even when the deadline is
    // a millisecond away, and the call then answers 504 like any call out of time.
    let body_deadline = deadline
        .instant()
        .max(tokio::time::Instant::now() + BODY_GRACE);
    let limit = app.config.max_body_bytes;
    let bytes = tokio::time::timeout_at(
        body_deadline,
        request::read_body(declared_length, body, limit),
    )
    .await
    .map_err(|_| GatewayError::BodyTimeout(requested_ms))??;
    let arguments = request::arguments(&bytes)?;
    let mut context = CallContext::rooted_at(request_id).with_deadline(deadline);
    if let Some(identity) = &identity {
        context = identity.annotate(context);
    }
    if let Some(language) = language {
        context = context.with_language(language);
    }
    if let Some(user_agent) = user_agent {
        context = context.with_user_agent(user_agent);
    }
    context.traceparent = traceparent;
    let proxy = app
        .client
        .rpc(&service)
        .with_context(context)
        .idempotent(app.registry.is_idempotent(&service, &method));
    Ok(ReadCall {
        proxy,
        method,
        arguments,
        permit,
        requested_ms,
    })
}

/// The HTTP answer to a call's `outcome`, with its metrics and span fields.
fn answer(
    app: &AppState,
    outcome: Result<serde_json::Value, GatewayError>,
    info: &CallInfo,
    span: &tracing::Span,
    timer: CallTimer,
) -> Response {
    let request_id = info.request_id.as_deref().unwrap_or_default();
    // Names become labels only once proven real (a reply came back from the method, or a
    // descriptor lists it): any other failure with a made-up name must not grow the label set.
    let (service, method) = (info.service.as_deref(), info.method.as_deref());
    let proven = match (&outcome, service, method) {
        (Err(GatewayError::Remote(w)), Some(s), _) if w.exc_type == "MethodNotFound" => {
            Some((s, "_unknown"))
        }
        (Ok(_) | Err(GatewayError::Remote(_)), Some(s), Some(m)) => Some((s, m)),
        (_, Some(s), Some(m)) if app.registry.describes(s, m) => Some((s, m)),
        _ => None,
    };
    let (service_label, method_label) = proven.unwrap_or(("_unknown", "_unknown"));
    // Each error's problem is built once: its status labels the metrics and answers the client.
    let answer = outcome.map_err(|error| {
        let problem = error.to_problem(&app.config.error_map, info);
        (error, problem)
    });
    let status = answer.as_ref().map_or_else(|(_, p)| p.status, |_| 200);
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
    timer.finish(service_label, method_label, status);
    match answer {
        Ok(result) => result_response(result, request_id),
        Err((error, problem)) => {
            if problem.status >= 500 {
                tracing::warn!(request_id = %request_id, %error, "call failed");
            } else {
                tracing::debug!(request_id = %request_id, %error, "call refused");
            }
            problem.into_response()
        }
    }
}

/// A call's result as `200 application/json`, with the request's id: its two headers in a map
/// made for two (axum's `Json` grows an empty one, then ours grows it again).
pub(crate) fn result_response(result: serde_json::Value, request_id: &str) -> Response {
    // A `Value` always serialises (its keys are strings); `Json` answers 500 if it ever did not.
    let Ok(bytes) = serde_json::to_vec(&result) else {
        return Json(result).into_response();
    };
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.reserve(2);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, id);
    }
    response
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

/// The problem response of `error`, with the request's id.
pub(crate) fn problem(app: &AppState, error: GatewayError, headers: &HeaderMap) -> Response {
    let info = CallInfo {
        request_id: Some(request::request_id(headers)),
        ..CallInfo::default()
    };
    error
        .to_problem(&app.config.error_map, &info)
        .into_response()
}
