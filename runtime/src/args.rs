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
    ApiKeys, Auth, AuthConfigError, ErrorMap, GatewayConfig, JwtVerifier, PatternLimit, Rate,
    RateLimits, StatusCode, TrustedProxies,
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
    /// Publish this process's requests straight to `rpc-<service>` (the method in a header)
    /// instead of through nameko-rpc's topic routing: less broker work per call, for meshes
    /// where no nameko instance consumes a called service's queue (it would answer
    /// MethodNotFound). Replies and calls from nameko are unaffected.
    #[arg(long, env = "WARREN_DIRECT_REQUESTS")]
    pub direct_requests: bool,
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
    /// Pieces of CPU-bound work (`Ctx::blocking`) the process's services run at once (by
    /// default the machine's cores less one, at least one, so the async runtime keeps a core).
    #[arg(long, env = "WARREN_BLOCKING_THREADS")]
    pub blocking_threads: Option<usize>,
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
        config.amqp.direct_requests = self.direct_requests;
        config.max_workers = self.max_workers.max(1);
        config.shutdown_grace = Duration::from_millis(self.shutdown_grace_ms);
        if let Some(instance_id) = &self.instance_id {
            config.instance_id = instance_id.clone();
        }
        if let Some(threads) = self.blocking_threads {
            config.blocking_threads = threads.max(1);
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
    /// Event streams (`GET /events/...`) open at once above which the gateway answers 503.
    #[arg(long, env = "WARREN_MAX_EVENT_STREAMS", default_value_t = 10_000)]
    max_event_streams: usize,
    /// How many events an event stream's client may fall behind before it is ended.
    #[arg(long, env = "WARREN_EVENT_BUFFER", default_value_t = 256)]
    event_buffer: usize,
    /// How long an asynchronous call's result (`Prefer: respond-async`) is kept, in ms.
    #[arg(long, env = "WARREN_ASYNC_RESULT_TTL_MS", default_value_t = 600_000)]
    async_result_ttl_ms: u64,
    /// Asynchronous calls this gateway holds at once (running or kept); 503 above.
    #[arg(long, env = "WARREN_MAX_ASYNC_CALLS", default_value_t = 10_000)]
    max_async_calls: usize,
    /// The longest deadline of an asynchronous call, in ms (RabbitMQ's `consumer_timeout`,
    /// 30 minutes by default, bounds how long a service may work on one message).
    #[arg(long, env = "WARREN_MAX_ASYNC_TIMEOUT_MS", default_value_t = 900_000)]
    max_async_timeout_ms: u64,
    /// Map a remote error type to an HTTP status, e.g. `InsufficientFunds=402` (repeatable).
    #[arg(long = "error-status", value_name = "EXC_TYPE=STATUS", value_parser = ErrorMap::parse_entry)]
    error_status: Vec<(String, StatusCode)>,
    #[command(flatten)]
    rate_limits: RateLimitArgs,
    #[command(flatten)]
    auth: AuthArgs,
}

/// Rate limits per client on /rpc: off unless a limit is given.
#[derive(Args, Debug, Clone)]
pub struct RateLimitArgs {
    /// Limit every call, per client (the authenticated user, else the IP address): RATE
    /// requests a second on average, BURST at once, e.g. `100/200`; 429 with Retry-After
    /// above. None by default.
    #[arg(long, env = "WARREN_RATE_LIMIT", value_name = "RATE/BURST")]
    rate_limit: Option<Rate>,
    /// Limit the calls matching a `<service>.<method>` pattern (the --expose syntax), per
    /// client, e.g. `kv.*=5/10` (repeatable; the first match applies, besides --rate-limit).
    #[arg(
        long = "rate-limit-for",
        env = "WARREN_RATE_LIMIT_FOR",
        value_name = "PATTERN=RATE/BURST",
        value_delimiter = ','
    )]
    rate_limit_for: Vec<PatternLimit>,
    /// A proxy whose X-Forwarded-For names the client: an IP address or a CIDR block, e.g.
    /// `10.0.0.0/8` (repeatable). None by default: the client is the connection's peer.
    #[arg(
        long = "trusted-proxy",
        env = "WARREN_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<String>,
}

impl RateLimitArgs {
    /// The rate limits, and the proxies whose `X-Forwarded-For` is believed.
    pub fn config(&self) -> Result<(RateLimits, TrustedProxies), ConfigError> {
        let limits = RateLimits {
            global: self.rate_limit,
            patterns: self.rate_limit_for.clone(),
            ..RateLimits::off()
        };
        let proxies =
            TrustedProxies::parse(&self.trusted_proxies).map_err(ConfigError::TrustedProxy)?;
        Ok((limits, proxies))
    }
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
        let (rate_limits, trusted_proxies) = self.rate_limits.config()?;
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
            rate_limits,
            trusted_proxies,
            max_event_streams: self.max_event_streams,
            event_buffer: self.event_buffer.max(1),
            async_result_ttl: Duration::from_millis(self.async_result_ttl_ms.max(1)),
            max_async_calls: self.max_async_calls,
            max_async_timeout: Duration::from_millis(self.max_async_timeout_ms.max(1)),
            ..GatewayConfig::default()
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
            // Calls in flight at the shutdown are answered, by their deadline at the latest.
            shutdown_limit: Duration::from_millis(
                self.max_timeout_ms
                    .max(self.max_async_timeout_ms)
                    .saturating_add(self.header_read_timeout_ms),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<ProcessArgs, String> {
        ProcessArgs::try_parse_from(std::iter::once("warren").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn direct_requests_are_opt_in() {
        let off = parse(&[]).expect("no flags").mesh.config();
        assert!(!off.amqp.direct_requests);
        let on = parse(&["--direct-requests"]).expect("flag").mesh.config();
        assert!(on.amqp.direct_requests);
    }

    #[test]
    fn blocking_threads_default_to_the_cores_less_one() {
        let default = parse(&[]).expect("no flags").mesh.config();
        assert_eq!(default.blocking_threads, mesh::default_blocking_threads());
        let three = parse(&["--blocking-threads", "3"]).expect("flag");
        assert_eq!(three.mesh.config().blocking_threads, 3);
        let zero = parse(&["--blocking-threads", "0"]).expect("flag");
        assert_eq!(zero.mesh.config().blocking_threads, 1);
    }

    #[test]
    fn rate_limit_flags_become_the_gateway_config() {
        let args = parse(&[
            "--rate-limit",
            "100/200",
            "--rate-limit-for",
            "kv.*=5/10",
            "--rate-limit-for",
            "*.get=1/1",
            "--trusted-proxy",
            "10.0.0.0/8",
        ])
        .expect("flags");
        let config = args.gateway.config().expect("config");
        let limits = &config.rate_limits;
        assert_eq!(
            limits.global.map(|r| (r.per_second(), r.burst())),
            Some((100.0, 200))
        );
        let patterns: Vec<&str> = limits.patterns.iter().map(|p| p.pattern()).collect();
        assert_eq!(patterns, ["kv.*", "*.get"]);
        assert!(
            config
                .trusted_proxies
                .contains("10.1.2.3".parse().expect("ip"))
        );
        let off = parse(&[])
            .expect("no flags")
            .gateway
            .config()
            .expect("config");
        assert!(!off.rate_limits.is_on());
        assert!(off.trusted_proxies.is_empty());
    }

    #[test]
    fn bad_rate_limits_are_refused_with_the_reason() {
        for (args, reason) in [
            (
                &["--rate-limit", "10/0"][..],
                "the burst must be a whole number",
            ),
            (
                &["--rate-limit", "0/5"],
                "the rate must be a positive number",
            ),
            (&["--rate-limit", "abc"], "expected RATE/BURST"),
            (&["--rate-limit-for", "kv.*"], "expected PATTERN=RATE/BURST"),
            (
                &["--rate-limit-for", "kv=1/1"],
                "expected <service>.<method>",
            ),
        ] {
            let error = parse(args).map(|_| ()).expect_err("refused");
            assert!(error.contains(reason), "{args:?}: {error}");
        }
        let args = parse(&["--trusted-proxy", "10.0.0.0/33"]).expect("parsed later");
        let error = args.gateway.config().map(|_| ()).expect_err("refused");
        assert_eq!(
            crate::error::one_line(&error),
            "invalid --trusted-proxy: `10.0.0.0/33`: expected an IP address or a CIDR block, \
             e.g. 10.0.0.0/8 or fd00::/8"
        );
    }
}
