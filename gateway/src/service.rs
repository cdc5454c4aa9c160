//! The HTTP service every connection runs: a call goes straight to [`crate::rpc`], anything else
//! through the axum router.
//!
//! Why not the router for everything: hyper keeps one future per request, on HTTP/2 in a task of
//! its own, for as long as the call is pending. Through the router that future holds the
//! request (head and all, ~250 bytes) next to the router's boxed future, because a tower service
//! is called only once polled; here the call's boxed future is made at once, and the request is
//! taken apart into it. A hundred thousand pending calls are ~30 MB lighter, and a call skips the
//! route lookup. The router keeps whatever needs it: the other routes, any method but POST,
//! names that need percent-decoding, and every request when CORS is on (its layer is on the
//! routes).

use crate::AppState;
use crate::call_route;
use crate::event_stream::EventStreams;
use crate::rpc::BoxFuture;
use axum::Router;
use axum::response::Response;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tower::Service as _;

/// What [`crate::serve`] runs for each request: the router's routes, with calls to
/// `/rpc/{service}/{method}` taken straight to their handler when the gateway's are.
#[derive(Clone)]
pub struct HttpService {
    /// The gateway's state, when calls may skip the router.
    calls: Option<AppState>,
    /// The gateway's event streams, ended when the server shuts down.
    events: Option<Arc<EventStreams>>,
    router: Router,
    /// The connection's peer, once [`crate::serve`] accepted one (the rate limits' client).
    peer: Option<SocketAddr>,
}

impl HttpService {
    /// The gateway's routes, calls taken straight to their handler unless CORS needs the router.
    pub(crate) fn gateway(state: AppState, router: Router) -> Self {
        let events = Some(state.events.clone());
        let calls = state.config.cors_origins.is_empty().then_some(state);
        Self {
            calls,
            events,
            router,
            peer: None,
        }
    }

    /// This service for the connection from `peer`.
    pub(crate) fn for_peer(&self, peer: SocketAddr) -> Self {
        Self {
            peer: Some(peer),
            ..self.clone()
        }
    }

    /// Ends the gateway's event streams (the server is shutting down: an open stream would
    /// hold its connection, and the shutdown, for ever).
    pub(crate) fn close_event_streams(&self) {
        if let Some(events) = &self.events {
            events.close();
        }
    }
}

impl From<Router> for HttpService {
    /// Any router, every request through it.
    fn from(router: Router) -> Self {
        Self {
            calls: None,
            events: None,
            router,
            peer: None,
        }
    }
}

impl hyper::service::Service<hyper::Request<Incoming>> for HttpService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        if let Some(app) = &self.calls
            && let Some(names) = crate::request::plain_names(&request)
        {
            // Boxed by `serve_plain` itself (its shape depends on the rate limits).
            return call_route::serve_plain(app.clone(), names, request, self.peer);
        }
        // Where handlers behind the router find the peer (axum's `ConnectInfo` extractor).
        if let Some(peer) = self.peer {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        // A router is always ready (axum's documentation): no `poll_ready` first.
        Box::pin(self.router.clone().call(request))
    }
}
