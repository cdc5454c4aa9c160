//! The `/rpc/{service}/{method}` route's entry points: a request taken apart, then answered
//! synchronously ([`rpc`]) or, with `Prefer: respond-async`, asynchronously ([`async_call`]).

use crate::AppState;
use crate::async_call;
use crate::rpc::{self, BoxFuture};
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::FutureExt;
use std::convert::Infallible;
use std::net::SocketAddr;

/// `POST /rpc/{service}/{method}` as a tower service (`service_fn`), not an axum handler: the
/// request is taken apart here (its headers moved, not cloned), and the future axum boxes is
/// [`rpc::call`]'s alone, without an extractor state machine around it.
///
/// The router sends here the calls [`crate::request::plain_names`] leaves to it (names with percent-escapes,
/// which axum's `Path` decodes), and every call when CORS is on (see `crate::service`).
pub(crate) fn serve(
    app: AppState,
    request: axum::extract::Request,
) -> BoxFuture<Result<Response, Infallible>> {
    let (mut parts, body) = request.into_parts();
    // The router matched the route and put its parameters in the request: reading them never
    // waits.
    let names = Path::<(String, String)>::from_request_parts(&mut parts, &())
        .now_or_never()
        .and_then(Result::ok)
        .map(|Path(names)| names);
    // The connection's peer, put there by `HttpService` (for the rate limits).
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    route(app, names, parts.headers, body, peer)
}

/// A call whose names [`crate::request::plain_names`] read, from `peer`, served without the router: the future
/// hyper keeps per request is this one, with nothing of the router's around it.
pub(crate) fn serve_plain<B>(
    app: AppState,
    names: (String, String),
    request: axum::http::Request<B>,
    peer: Option<SocketAddr>,
) -> BoxFuture<Result<Response, Infallible>>
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (parts, body) = request.into_parts();
    route(app, Some(names), parts.headers, Body::new(body), peer)
}

/// The synchronous call, or the asynchronous one when the request prefers it.
fn route(
    app: AppState,
    names: Option<(String, String)>,
    headers: HeaderMap,
    body: Body,
    peer: Option<SocketAddr>,
) -> BoxFuture<Result<Response, Infallible>> {
    if async_call::wants_async(&headers) {
        async_call::accept(app, names, headers, body, peer)
    } else {
        rpc::call(app, names, headers, body, peer)
    }
}
