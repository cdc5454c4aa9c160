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
use crate::rpc;
use crate::rpc::BoxFuture;
use axum::Router;
use axum::response::Response;
use hyper::body::Incoming;
use std::convert::Infallible;
use tower::Service as _;

/// What [`crate::serve`] runs for each request: the router's routes, with calls to
/// `/rpc/{service}/{method}` taken straight to their handler when the gateway's are.
#[derive(Clone)]
pub struct HttpService {
    /// The gateway's state, when calls may skip the router.
    calls: Option<AppState>,
    router: Router,
}

impl HttpService {
    /// The gateway's routes, calls taken straight to their handler unless CORS needs the router.
    pub(crate) fn gateway(state: AppState, router: Router) -> Self {
        let calls = state.config.cors_origins.is_empty().then_some(state);
        Self { calls, router }
    }
}

impl From<Router> for HttpService {
    /// Any router, every request through it.
    fn from(router: Router) -> Self {
        Self {
            calls: None,
            router,
        }
    }
}

impl hyper::service::Service<hyper::Request<Incoming>> for HttpService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        if let Some(app) = &self.calls
            && let Some(names) = rpc::plain_names(&request)
        {
            return Box::pin(rpc::serve_plain(app.clone(), names, request));
        }
        // A router is always ready (axum's documentation): no `poll_ready` first.
        Box::pin(self.router.clone().call(request))
    }
}
