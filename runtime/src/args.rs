//! The flags (with their environment variables) a Warren process takes, as clap arguments a
//! program can flatten into its own command line: [`MeshArgs`] for the broker and the service
//! runtime, [`GatewayArgs`] for the HTTP gateway, [`ProcessArgs`] for everything a
//! [`crate::Runner`] reads. Each turns into the configuration it stands for, its files read
//! and checked.

use crate::error::ConfigError;
use clap::Args;
use mesh::MeshConfig;
use mesh::amqp::{DEFAULT_AMQP_URL, split_urls};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warren_gateway::{
    ApiKeys, Auth, AuthConfigError, ErrorMap, GatewayConfig, JwtVerifier, StatusCode,
};

/// Everything [`crate::Runner::from_args`] reads: the broker, the service runtime, the gateway,
/// the ops listener and the log format.
#[derive(clap::Parser, Debug, Clone)]
#[command(version, about = None, long_about = None)]
pub struct ProcessArgs {
    /// The broker and the service runtime.
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// The gateway (when the program serves one).
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// Where to serve /healthz, /readyz and /metrics for probes (none when not given; a process
    /// running a gateway serves them on the gateway's port).
    #[arg(long, env = "WARREN_OPS_LISTEN")]
    pub ops_listen: Option<String>,
    /// Log format: `pretty` for people, `json` for log collectors (filter with RUST_LOG).
    #[arg(long, env = "WARREN_LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    pub log_format: String,
}

/// The broker and the service runtime's settings: `--amqp`, `--max-workers`, ...
#[derive(Args, Debug, Clone)]
pub struct MeshArgs {
    /// The RabbitMQ URL, or a cluster's nodes: several URLs separated by commas or `;`, or the
    /// flag repeated (a process connects to one, in an order of its own, and to the next when
    /// it loses it). Without one, `warren run` and `warren gateway` use
    /// amqp://guest:guest@127.0.0.1:5672/%2f, and a process serving the gateway with its services
    /// (`warren dev`, an example) runs in process.
    #[arg(
        long = "amqp",
        env = "AMQP_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub amqp_urls: Vec<String>,
    /// The kind of queue declared for this process's services: `classic`, as nameko declares
    /// them, or `quorum`, replicated over a cluster's nodes (nameko peers cannot declare those).
    #[arg(long, env = "WARREN_QUEUE_TYPE", default_value = "classic", value_parser = ["classic", "quorum"])]
    pub queue_type: String,
    /// CA certificates (PEM) to trust for an amqps:// broker, besides the system's.
    #[arg(long, env = "AMQP_CA_FILE")]
    pub amqp_ca_file: Option<std::path::PathBuf>,
    /// Handlers each service runs at once (also its prefetch).
    #[arg(long, env = "WARREN_MAX_WORKERS", default_value_t = 10)]
    pub max_workers: u16,
    /// How long a stopping service waits for in-flight handlers, in milliseconds.
    #[arg(long, env = "WARREN_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// This instance's id, naming its broadcast event queues (random when not given; give a
    /// stable one, e.g. the pod name, to receive the broadcasts missed during a restart).
    #[arg(long, env = "WARREN_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

impl MeshArgs {
    /// The mesh's settings, the brokers' URLs the ones given or the local default.
    pub fn config(&self) -> MeshConfig {
        let mut config = MeshConfig::with_url(DEFAULT_AMQP_URL);
        if self.names_a_broker() {
            config.amqp.urls = self.amqp_urls.iter().flat_map(|u| split_urls(u)).collect();
        }
        config.amqp.queue_type = self.queue_type.parse().unwrap_or_default();
        config.amqp.tls_ca_file = self.amqp_ca_file.clone();
        config.max_workers = self.max_workers.max(1);
        config.shutdown_grace = Duration::from_millis(self.shutdown_grace_ms);
        if let Some(instance_id) = &self.instance_id {
            config.instance_id = instance_id.clone();
        }
        config
    }

    /// Whether a broker was named (`--amqp` or `AMQP_URL`).
    pub fn names_a_broker(&self) -> bool {
        self.amqp_urls.iter().any(|url| !url.trim().is_empty())
    }
}

/// The HTTP gateway's settings: `--listen`, `--timeout-ms`, authentication, ...
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// The address the gateway listens on.
    #[arg(long, env = "WARREN_LISTEN", default_value = warren_gateway::DEFAULT_LISTEN)]
    pub listen: String,
    /// The deadline of a call without X-Timeout-Ms, in milliseconds.
    #[arg(long, env = "WARREN_TIMEOUT_MS", default_value_t = 30_000)]
    timeout_ms: u64,
    /// The longest deadline a client may ask for with X-Timeout-Ms, in milliseconds.
    #[arg(long, env = "WARREN_MAX_TIMEOUT_MS", default_value_t = 300_000)]
    max_timeout_ms: u64,
    /// The largest request body accepted, in bytes.
    #[arg(long, env = "WARREN_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,
    /// A browser origin allowed to call the gateway (CORS), e.g. `https://app.example.com`;
    /// repeatable; `*` allows any. None by default.
    #[arg(
        long = "cors-origin",
        env = "WARREN_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// Which methods to serve: `<service>.<method>` patterns with `*` (repeatable), e.g.
    /// `kv.get`, `greeting_service.*`; every public method by default. Names starting with `_`
    /// are never served.
    #[arg(
        long = "expose",
        env = "WARREN_EXPOSE",
        value_delimiter = ',',
        default_value = "*.*"
    )]
    expose: Vec<String>,
    /// Calls in flight above which the gateway answers 503 with Retry-After at once.
    #[arg(long, env = "WARREN_MAX_IN_FLIGHT", default_value_t = 10_000)]
    max_in_flight: usize,
    /// The URL clients reach the gateway at, named in the OpenAPI document.
    #[arg(long, env = "WARREN_PUBLIC_URL", default_value = "/")]
    public_url: String,
    /// How long a client may take to send a request's line and headers, in milliseconds; also
    /// how long an idle keep-alive connection stays open. Then the connection is closed.
    #[arg(long, env = "WARREN_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    header_read_timeout_ms: u64,
    /// The largest request line plus headers, in bytes (431 above).
    #[arg(long, env = "WARREN_MAX_HEADER_BYTES", default_value_t = warren_gateway::ServeConfig::DEFAULT_MAX_HEADER_BYTES)]
    max_header_bytes: usize,
    /// The most headers a request may carry (431 above).
    #[arg(long, env = "WARREN_MAX_HEADERS", default_value_t = warren_gateway::ServeConfig::DEFAULT_MAX_HEADERS)]
    max_headers: usize,
    /// The most requests one HTTP/2 (h2c) connection carries at once.
    #[arg(long, env = "WARREN_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = warren_gateway::ServeConfig::DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS)]
    http2_max_concurrent_streams: u32,
    /// Map a remote error type to an HTTP status, e.g. `InsufficientFunds=402` (repeatable).
    #[arg(long = "error-status", value_name = "EXC_TYPE=STATUS", value_parser = ErrorMap::parse_entry)]
    error_status: Vec<(String, StatusCode)>,
    #[command(flatten)]
    auth: AuthArgs,
}

/// Authentication: off unless an API key file or a JWT key is given.
#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// Require credentials on /rpc: accept the API keys in this file, one
    /// `<user_id> <key> [<service>.<method>...]` per line (`#` comments), sent as
    /// `Authorization: Bearer <key>` or `X-Api-Key: <key>`.
    #[arg(long, env = "WARREN_API_KEY_FILE", value_name = "PATH")]
    api_key_file: Option<PathBuf>,
    /// Require credentials on /rpc: accept HS256 JWTs signed with the secret in this file (at
    /// least 32 bytes; a trailing line break is ignored).
    #[arg(long, env = "WARREN_JWT_HS256_SECRET_FILE", value_name = "PATH")]
    jwt_hs256_secret_file: Option<PathBuf>,
    /// Require credentials on /rpc: accept RS256 JWTs verified with the RSA public key (PEM)
    /// in this file.
    #[arg(long, env = "WARREN_JWT_RS256_PUBLIC_KEY_FILE", value_name = "PATH")]
    jwt_rs256_public_key_file: Option<PathBuf>,
    /// The `iss` a JWT must carry.
    #[arg(long, env = "WARREN_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// The `aud` a JWT must name.
    #[arg(long, env = "WARREN_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Clock skew tolerated on a JWT's `exp` and `nbf`, in seconds.
    #[arg(long, env = "WARREN_JWT_LEEWAY_SECS", default_value_t = 30)]
    jwt_leeway_secs: u64,
    /// Require credentials on /openapi.json, /docs and /services too (public by default; the
    /// probes /healthz, /readyz and /metrics always are).
    #[arg(long, env = "WARREN_AUTH_PROTECT_DOCS")]
    auth_protect_docs: bool,
}

impl AuthArgs {
    /// The authentication configuration, with each file read and checked.
    pub fn auth(&self) -> Result<Auth, ConfigError> {
        let mut auth = Auth::off();
        if let Some(path) = &self.api_key_file {
            let keys = ApiKeys::load(path).map_err(key_file("--api-key-file", path))?;
            auth = auth.with_api_keys(keys);
        }
        let mut jwt = JwtVerifier::new().leeway(Duration::from_secs(self.jwt_leeway_secs));
        if let Some(path) = &self.jwt_hs256_secret_file {
            let error = key_file("--jwt-hs256-secret-file", path);
            let secret = warren_gateway::read_key_file(path).map_err(&error)?;
            jwt = jwt.hs256_secret(&secret).map_err(error)?;
        }
        if let Some(path) = &self.jwt_rs256_public_key_file {
            let error = key_file("--jwt-rs256-public-key-file", path);
            let pem = warren_gateway::read_key_file(path).map_err(&error)?;
            jwt = jwt.rs256_public_key_pem(&pem).map_err(error)?;
        }
        if let Some(issuer) = &self.jwt_issuer {
            jwt = jwt.issuer(issuer);
        }
        if let Some(audience) = &self.jwt_audience {
            jwt = jwt.audience(audience);
        }
        if jwt.has_key() {
            if !jwt.checks_issuer_and_audience() {
                tracing::warn!(
                    "JWTs are accepted without --jwt-issuer and --jwt-audience: any token signed \
                     with the key is accepted, whoever it was issued for"
                );
            }
            auth = auth.with_jwt(jwt);
        } else if self.jwt_issuer.is_some() || self.jwt_audience.is_some() {
            return Err(ConfigError::IssuerWithoutKey);
        }
        if self.auth_protect_docs && !auth.is_on() {
            return Err(ConfigError::ProtectDocsWithoutAuth);
        }
        Ok(auth.protecting_docs(self.auth_protect_docs))
    }
}

impl GatewayArgs {
    /// The gateway's configuration, with its files read and checked.
    pub fn config(&self) -> Result<GatewayConfig, ConfigError> {
        let mut error_map = ErrorMap::default();
        for (exc_type, status) in &self.error_status {
            error_map.insert(exc_type.clone(), *status);
        }
        Ok(GatewayConfig {
            default_timeout: Duration::from_millis(self.timeout_ms.max(1)),
            max_timeout: Duration::from_millis(self.max_timeout_ms.max(1)),
            max_body_bytes: self.max_body_bytes,
            error_map,
            cors_origins: self.cors_origins.clone(),
            document: warren_gateway::DocumentInfo {
                server_url: self.public_url.clone(),
                ..warren_gateway::DocumentInfo::default()
            },
            exposure: warren_gateway::Exposure::parse(&self.expose).map_err(ConfigError::Expose)?,
            max_in_flight: self.max_in_flight.max(1),
            auth: self.auth.auth()?,
        })
    }
}

impl GatewayArgs {
    /// The HTTP server's limits.
    pub fn serve_config(&self) -> warren_gateway::ServeConfig {
        warren_gateway::ServeConfig {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            max_header_bytes: self.max_header_bytes.max(1024),
            max_headers: self.max_headers.max(1),
            http2_max_concurrent_streams: self.http2_max_concurrent_streams.max(1),
        }
    }
}

/// The error of a key file flag: the flag and the path, then what is wrong with the file.
fn key_file<'a>(
    flag: &'static str,
    path: &'a Path,
) -> impl Fn(AuthConfigError) -> ConfigError + 'a {
    move |source| ConfigError::KeyFile {
        flag,
        path: path.to_owned(),
        source,
    }
}
