//! # warren-gateway
//!
//! The HTTP/JSON front of a Warren mesh: `POST /rpc/{service}/{method}` with a JSON body becomes a
//! call through one shared [`mesh::Client`] (over AMQP: a nameko-compatible request on one
//! callback queue), and the outcome comes back as the method's JSON result or an RFC 9457 problem
//! document (see [`GatewayError`] for the status of each failure).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mesh = mesh::Mesh::amqp(mesh::MeshConfig::from_env()).await?;
//! let gateway = warren_gateway::Gateway::start(&mesh, warren_gateway::GatewayConfig::default()).await?;
//! let app = gateway.service();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let stop = async { tokio::signal::ctrl_c().await.unwrap_or(()) };
//! warren_gateway::serve(listener, app, stop).await?;
//! gateway.stop().await;
//! # Ok(()) }
//! ```
//!
//! A program that runs services and the gateway together uses the `warren-runtime` crate,
//! which does this (and the shutdown order, the probes, the configuration) for it.

mod async_call;
mod auth;
mod call_route;
mod error;
mod event_stream;
mod headers;
mod health;
mod metrics;
mod openapi;
mod policy;
mod preface;
mod problem;
mod ratelimit;
mod registry;
mod request;
mod rpc;
mod server;
mod service;

pub use auth::{
    API_KEY, ApiKeys, Auth, AuthConfigError, AuthError, Identity, JwtVerifier,
    read_file as read_key_file,
};
pub use axum::http::StatusCode;
pub use error::{CallInfo, ErrorMap, GatewayError};
pub use headers::{REQUEST_ID, TIMEOUT_MS};
pub use openapi::{DocumentInfo, DocumentSecurity, document};
pub use policy::Exposure;
pub use problem::{PROBLEM_JSON, Problem};
pub use ratelimit::{PatternLimit, Rate, RateLimitError, RateLimits, TrustedProxies};
pub use registry::{InstanceOverview, Liveness, Registry, ServiceOverview};
pub use server::{ServeConfig, serve, serve_with};
pub use service::HttpService;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post_service};
use mesh::{Client, ConnectError, Mesh, RunningService, Service};
use std::sync::Arc;
use std::time::Duration;
use tower::service_fn;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How the gateway treats calls.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The deadline of a call without `X-Timeout-Ms`.
    pub default_timeout: Duration,
    /// The longest deadline a client may ask for with `X-Timeout-Ms`.
    pub max_timeout: Duration,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// Statuses of remote errors by `exc_type`.
    pub error_map: ErrorMap,
    /// Browser origins allowed to call (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// How the OpenAPI document presents the gateway.
    pub document: DocumentInfo,
    /// Which methods the gateway serves.
    pub exposure: Exposure,
    /// Calls in flight above which the gateway answers 503 at once.
    pub max_in_flight: usize,
    /// Who may call: off by default (every caller anonymous).
    pub auth: Auth,
    /// Rate limits per client on `/rpc/...`: off by default.
    pub rate_limits: RateLimits,
    /// Proxies whose `X-Forwarded-For` names the client (for the rate limits); none by default.
    pub trusted_proxies: TrustedProxies,
    /// Event streams (`GET /events/...`) open at once above which the gateway answers 503.
    pub max_event_streams: usize,
    /// How many events an event stream's client may fall behind before it is ended.
    pub event_buffer: usize,
    /// How often an idle event stream sends a keep-alive comment.
    pub event_keep_alive: Duration,
    /// How long an asynchronous call's result is kept once it is in.
    pub async_result_ttl: Duration,
    /// Asynchronous calls held at once (running, or with a result kept) above which the
    /// gateway answers 503.
    pub max_async_calls: usize,
    /// The longest deadline an asynchronous call may ask for with `X-Timeout-Ms`.
    pub max_async_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(300),
            max_body_bytes: 16 * 1024 * 1024,
            error_map: ErrorMap::default(),
            cors_origins: Vec::new(),
            document: DocumentInfo::default(),
            exposure: Exposure::default(),
            max_in_flight: 10_000,
            auth: Auth::off(),
            rate_limits: RateLimits::off(),
            trusted_proxies: TrustedProxies::default(),
            max_event_streams: 10_000,
            event_buffer: 256,
            event_keep_alive: Duration::from_secs(15),
            async_result_ttl: Duration::from_secs(600),
            max_async_calls: 10_000,
            max_async_timeout: Duration::from_secs(900),
        }
    }
}

/// What every handler shares, behind one `Arc`: a request clones it once (one atomic
/// increment), and a pending call keeps 8 bytes of it.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
pub(crate) struct Shared {
    client: Client,
    registry: Arc<Registry>,
    config: GatewayConfig,
    in_flight: Arc<tokio::sync::Semaphore>,
    rate_limiter: Arc<ratelimit::RateLimiter>,
    events: Arc<event_stream::EventStreams>,
    /// Places for asynchronous calls, each held until its result expires.
    async_calls: Arc<tokio::sync::Semaphore>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// A gateway on a mesh: its client, its registry of services (fed by their descriptors) and
/// its configuration.
pub struct Gateway {
    state: AppState,
    registry_feed: RunningService,
}

impl Gateway {
    /// Starts a gateway on `mesh`: a client for calls, and a transient broadcast subscription
    /// to service descriptors for the registry.
    pub async fn start(mesh: &Mesh, config: GatewayConfig) -> Result<Self, ConnectError> {
        // Install the process's Prometheus recorder before the first measurement.
        let _ = warren_telemetry::prometheus();
        let registry = Arc::new(Registry::default());
        // After the recorder: the limiter registers its counters now.
        let rate_limiter = Arc::new(ratelimit::RateLimiter::new(&config.rate_limits));
        rate_limiter.sweep_in_background(ratelimit::SWEEP_EVERY);
        let client = mesh.client("gateway").await?;
        let feed = Service::new("gateway")
            .subscribe(
                mesh::describe::descriptor_subscription(),
                registry::on_descriptor,
            )
            .with_state(registry.clone());
        let registry_feed = mesh.serve(feed).await?;
        Ok(Self {
            state: AppState(Arc::new(Shared {
                client,
                registry,
                in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight)),
                rate_limiter,
                async_calls: Arc::new(tokio::sync::Semaphore::new(config.max_async_calls)),
                events: event_stream::EventStreams::new(
                    mesh.clone(),
                    config.max_event_streams,
                    config.event_buffer,
                ),
                config,
            })),
            registry_feed,
        })
    }

    /// The client the gateway calls through (its counters: pending calls, timeouts...).
    pub fn client(&self) -> &Client {
        &self.state.client
    }

    /// The registry of services.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.state.registry
    }

    /// The gateway's HTTP service, for [`serve`] or [`serve_with`]: its routes, with calls
    /// taken straight to their handler (see [`HttpService`]).
    pub fn service(&self) -> HttpService {
        HttpService::gateway(self.state.clone(), router(self.state.clone()))
    }

    /// Ends the event streams and stops their subscriptions, and stops following descriptors.
    pub async fn stop(self) {
        self.state.events.stop().await;
        self.registry_feed.stop().await;
    }
}

fn router(state: AppState) -> Router {
    let cors = cors(&state.config.cors_origins);
    let docs: Router<AppState> = SwaggerUi::new("/docs")
        // No external validator badge: the page loads nothing from outside the gateway.
        .config(Config::from("/openapi.json").validator_url("none"))
        .into();
    // The documentation: public unless configured otherwise.
    let mut documentation = Router::new()
        .route("/services", get(registry::services))
        .route("/openapi.json", get(openapi_json))
        .merge(docs);
    if state.config.auth.protects_docs() {
        documentation = documentation.route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_credentials,
        ));
    }
    // `/rpc` authenticates in its handler (the call's metrics count refusals too); the probes
    // never need credentials.
    let router = Router::new()
        .route(
            "/rpc/{service}/{method}",
            post_service(service_fn({
                let app = state.clone();
                move |request| call_route::serve(app.clone(), request)
            }))
            .fallback(rpc::method_not_allowed),
        )
        .route("/events/{source}/{event_type}", get(event_stream::stream))
        .route("/calls/{id}", get(async_call::collect))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(documentation)
        .fallback(rpc::no_route)
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Answers 401 unless the request carries a valid credential (for protected documentation).
async fn require_credentials(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match app.config.auth.authenticate(request.headers()) {
        Ok(_) => next.run(request).await,
        Err(error) => rpc::problem(
            &app,
            GatewayError::Unauthenticated(error),
            request.headers(),
        ),
    }
}

/// `GET /openapi.json`: the document of every service with a live instance, built now.
async fn openapi_json(State(app): State<AppState>) -> Response {
    // Only what the policy exposes is documented.
    let exposure = &app.config.exposure;
    let mut services = app.registry.live_descriptors();
    for service in &mut services {
        let name = service.service.clone();
        service.methods.retain(|m| exposure.allows(&name, &m.name));
    }
    let auth = &app.config.auth;
    let info = DocumentInfo {
        security: DocumentSecurity {
            api_keys: auth.accepts_api_keys(),
            jwt: auth.accepts_jwt(),
            docs_protected: auth.protects_docs(),
        },
        ..app.config.document.clone()
    };
    let document = document(&services, &info);
    axum::Json(document).into_response()
}

/// CORS for the configured origins (`*` allows any); none when no origin is configured.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                axum::http::header::CONTENT_TYPE,
                axum::http::header::AUTHORIZATION,
                API_KEY,
                REQUEST_ID,
                TIMEOUT_MS,
                HeaderName::from_static("prefer"),
            ])
            .expose_headers([
                REQUEST_ID,
                HeaderName::from_static("retry-after"),
                headers::RATELIMIT,
                headers::RATELIMIT_POLICY,
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::header::LOCATION,
                HeaderName::from_static("preference-applied"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}
