//! `warren`: run the gateway and the bundled services, or call a service.

mod bench;
mod bundled;
mod ops;
#[cfg(feature = "otel")]
mod otel;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use mesh::{Broker, CallContext, Deadline, Mesh, MeshConfig, RpcClient};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use warren_gateway::{ApiKeys, Auth, ErrorMap, GatewayConfig, JwtVerifier, StatusCode};

/// mimalloc: the gateway's hot path allocates per request (HTTP, JSON, AMQP frames), and glibc's
/// malloc/free were a tenth of its CPU in a profile under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "warren",
    version,
    about = "HTTP/JSON gateway and services on a nameko-compatible AMQP RPC mesh"
)]
struct Cli {
    /// Log format: `pretty` for people, `json` for log collectors (filter with RUST_LOG).
    #[arg(long, global = true, env = "WARREN_LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    log_format: String,
    /// Threads running requests and handlers [default: one per CPU core]. On a small machine
    /// shared with the broker, fewer threads mean fewer cross-thread wake-ups.
    #[arg(long, global = true, env = "WARREN_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway and every bundled service in one process: in-process (no broker needed)
    /// unless --amqp or AMQP_URL names a RabbitMQ.
    Dev {
        #[command(flatten)]
        mesh: MeshArgs,
        #[command(flatten)]
        gateway: GatewayArgs,
        #[command(flatten)]
        services: ServiceArgs,
    },
    /// Run the HTTP gateway.
    Gateway {
        #[command(flatten)]
        mesh: MeshArgs,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Run one or more bundled services (greeting_service, kv, library, indexer).
    Run {
        /// The services to run.
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
        /// Where to serve /healthz, /readyz and /metrics for probes (none when not given).
        #[arg(long, env = "WARREN_OPS_LISTEN")]
        ops_listen: Option<String>,
        #[command(flatten)]
        mesh: MeshArgs,
        #[command(flatten)]
        settings: ServiceArgs,
    },
    /// Measure the broker's RPC ceiling and the gateway on top of it (needs RabbitMQ).
    Bench(bench::BenchArgs),
    /// The bench's HTTP floor: a bare HTTP/1.1 server answering every request at once.
    #[command(hide = true)]
    HttpFloor {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Make mesh's call of `greeting_service.hello` over this RabbitMQ for every request and
        /// answer with its reply (the bench's ideal front).
        #[arg(long)]
        call_over: Option<String>,
    },
    /// Print the OpenAPI document of the bundled services (what `openapi/openapi.json` holds).
    Openapi {
        /// The server URL the document names.
        #[arg(long, default_value = "/")]
        public_url: String,
    },
    /// Dispatch an event from SOURCE, as that service would.
    Dispatch {
        /// The dispatching service (the event goes out on `<source>.events`).
        source: String,
        /// The event type.
        event_type: String,
        /// The payload, any JSON value (`null` when omitted).
        payload: Option<String>,
        #[command(flatten)]
        mesh: MeshArgs,
    },
    /// Call a method and print its result as JSON.
    Call {
        /// The service.
        service: String,
        /// The method.
        method: String,
        /// The arguments: a JSON object (keyword) or array (positional). None when omitted.
        args: Option<String>,
        #[command(flatten)]
        mesh: MeshArgs,
        /// How long to wait for the reply, in milliseconds.
        #[arg(long, env = "WARREN_TIMEOUT_MS", default_value_t = 30_000)]
        timeout_ms: u64,
    },
}

#[derive(Args)]
struct MeshArgs {
    /// The RabbitMQ URL [default: amqp://guest:guest@127.0.0.1:5672/%2f; `dev` runs in-process
    /// when it is not given].
    #[arg(long = "amqp", env = "AMQP_URL", hide_env_values = true)]
    amqp_url: Option<String>,
    /// CA certificates (PEM) to trust for an amqps:// broker, besides the system's.
    #[arg(long, env = "AMQP_CA_FILE")]
    amqp_ca_file: Option<std::path::PathBuf>,
    /// Handlers each service runs at once (also its prefetch).
    #[arg(long, env = "WARREN_MAX_WORKERS", default_value_t = 10)]
    max_workers: u16,
    /// How long a stopping service waits for in-flight handlers, in milliseconds.
    #[arg(long, env = "WARREN_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    /// This instance's id, naming its broadcast event queues (random when not given; give a
    /// stable one, e.g. the pod name, to receive the broadcasts missed during a restart).
    #[arg(long, env = "WARREN_INSTANCE_ID")]
    instance_id: Option<String>,
}

impl MeshArgs {
    fn config(&self) -> MeshConfig {
        let url = self.amqp_url.as_deref().unwrap_or(mesh::DEFAULT_AMQP_URL);
        let defaults = MeshConfig::with_url(url);
        MeshConfig {
            max_workers: self.max_workers.max(1),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            instance_id: self
                .instance_id
                .clone()
                .unwrap_or(defaults.instance_id.clone()),
            tls_ca_file: self.amqp_ca_file.clone(),
            ..defaults
        }
    }
}

#[derive(Args)]
struct ServiceArgs {
    /// Where the library's SQLite file (library.sqlite3) and the indexer's index (indexer/) live.
    #[arg(long, env = "WARREN_DATA_DIR", default_value = library::DEFAULT_DATA_DIR)]
    data_dir: std::path::PathBuf,
    /// The library's database: a postgres:// URL (SQLite under --data-dir when not given).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The largest book text the library accepts, in bytes.
    #[arg(long, env = "WARREN_MAX_BOOK_BYTES", default_value_t = library::DEFAULT_MAX_BOOK_BYTES)]
    max_book_bytes: usize,
}

impl ServiceArgs {
    fn settings(&self) -> bundled::Settings {
        bundled::Settings {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone().filter(|url| !url.is_empty()),
            max_book_bytes: self.max_book_bytes,
        }
    }
}

#[derive(Args)]
struct GatewayArgs {
    /// The address the gateway listens on.
    #[arg(long, env = "WARREN_LISTEN", default_value = warren_gateway::DEFAULT_LISTEN)]
    listen: String,
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
#[derive(Args)]
struct AuthArgs {
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
    fn auth(&self) -> Result<Auth> {
        let mut auth = Auth::off();
        if let Some(path) = &self.api_key_file {
            let keys = ApiKeys::load(path)
                .with_context(|| format!("--api-key-file {}", path.display()))?;
            auth = auth.with_api_keys(keys);
        }
        let mut jwt = JwtVerifier::new().leeway(Duration::from_secs(self.jwt_leeway_secs));
        if let Some(path) = &self.jwt_hs256_secret_file {
            let context = || format!("--jwt-hs256-secret-file {}", path.display());
            let secret = warren_gateway::read_key_file(path).with_context(context)?;
            jwt = jwt.hs256_secret(&secret).with_context(context)?;
        }
        if let Some(path) = &self.jwt_rs256_public_key_file {
            let context = || format!("--jwt-rs256-public-key-file {}", path.display());
            let pem = warren_gateway::read_key_file(path).with_context(context)?;
            jwt = jwt.rs256_public_key_pem(&pem).with_context(context)?;
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
            bail!(
                "--jwt-issuer and --jwt-audience need --jwt-hs256-secret-file or \
                 --jwt-rs256-public-key-file"
            );
        }
        if self.auth_protect_docs && !auth.is_on() {
            bail!("--auth-protect-docs needs --api-key-file or a JWT key");
        }
        Ok(auth.protecting_docs(self.auth_protect_docs))
    }
}

impl GatewayArgs {
    fn config(&self) -> Result<GatewayConfig> {
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
            exposure: warren_gateway::Exposure::parse(&self.expose)
                .map_err(|e| anyhow::anyhow!("invalid --expose {e}"))?,
            max_in_flight: self.max_in_flight.max(1),
            auth: self.auth.auth()?,
        })
    }
}

impl GatewayArgs {
    /// The HTTP server's limits.
    fn serve_config(&self) -> warren_gateway::ServeConfig {
        warren_gateway::ServeConfig {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            max_header_bytes: self.max_header_bytes.max(1024),
            max_headers: self.max_headers.max(1),
            http2_max_concurrent_streams: self.http2_max_concurrent_streams.max(1),
        }
    }
}

/// What the process is called in exported traces (unless `OTEL_SERVICE_NAME` says).
#[cfg(feature = "otel")]
fn process_name(command: &Command) -> String {
    match command {
        Command::Gateway { .. } => "warren-gateway".to_owned(),
        Command::Run { services, .. } => services.join("+"),
        _ => "warren".to_owned(),
    }
}

/// The process's telemetry, kept until it exits.
struct Telemetry {
    #[cfg(feature = "otel")]
    export: Option<otel::Export>,
}

impl Telemetry {
    /// Exports the spans still buffered (`otel` feature); call it once the runtime stopped.
    fn finish(self) {
        #[cfg(feature = "otel")]
        if let Some(export) = self.export {
            export.shutdown();
        }
    }
}

/// Logs to stderr (`RUST_LOG`, `info` by default) in `format`; with the `otel` feature, also
/// exports spans when the environment asks for it.
fn init_telemetry(cli: &Cli) -> Telemetry {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if cli.log_format == "json" {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    let registry = tracing_subscriber::registry().with(logs.with_filter(filter));
    #[cfg(feature = "otel")]
    {
        let (spans, export) = match otel::layer(&process_name(&cli.command)) {
            Ok(Some((layer, export))) => (Some(layer), Some(export)),
            Ok(None) => (None, None),
            Err(error) => {
                eprintln!("warning: no OpenTelemetry export: {error:#}");
                (None, None)
            }
        };
        registry.with(spans).init();
        Telemetry { export }
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        Telemetry {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = init_telemetry(&cli);
    let code = run_cli(cli);
    telemetry.finish();
    code
}

fn run_cli(cli: Cli) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.worker_threads {
        builder.worker_threads(usize::from(threads));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Dev {
            mesh,
            gateway,
            services,
        } => {
            let names: Vec<String> = bundled::BUNDLED
                .iter()
                .map(|(n, _)| (*n).to_owned())
                .collect();
            // Configuration errors (a bad key file) first, before any connection.
            let config = gateway.config()?;
            // Zero setup: in-process unless a broker is named; never a silent fallback.
            let transport = match mesh.amqp_url {
                None => Mesh::in_process(mesh.config()),
                Some(_) => Mesh::amqp(mesh.config()).await?,
            };
            serve(
                &transport,
                Serve::Gateway(&gateway, Box::new(config)),
                &names,
                &services.settings(),
            )
            .await?;
        }
        Command::Gateway { mesh, gateway } => {
            let config = gateway.config()?;
            serve(
                &Mesh::amqp(mesh.config()).await?,
                Serve::Gateway(&gateway, Box::new(config)),
                &[],
                &bundled::Settings::default(),
            )
            .await?
        }
        Command::Run {
            services,
            mesh,
            settings,
            ops_listen,
        } => {
            for name in &services {
                if bundled::canonical(name).is_none() {
                    let known: Vec<&str> = bundled::BUNDLED.iter().map(|(n, _)| *n).collect();
                    bail!(
                        "unknown service `{name}`; bundled services: {}",
                        known.join(", ")
                    );
                }
            }
            serve(
                &Mesh::amqp(mesh.config()).await?,
                Serve::Services {
                    ops_listen: ops_listen.as_deref(),
                },
                &services,
                &settings.settings(),
            )
            .await?;
        }
        Command::Bench(args) => bench::run(args).await?,
        Command::HttpFloor { listen, call_over } => {
            bench::floor::serve(listen, call_over.as_deref()).await?
        }
        Command::Openapi { public_url } => {
            let descriptors = bundled::descriptors().await?;
            let info = warren_gateway::DocumentInfo {
                server_url: public_url,
                ..warren_gateway::DocumentInfo::default()
            };
            let document = warren_gateway::document(&descriptors, &info);
            let text = serde_json::to_string_pretty(&document)?;
            // A reader that stops early (`| head`) is not an error.
            match writeln!(std::io::stdout(), "{text}") {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
        Command::Dispatch {
            source,
            event_type,
            payload,
            mesh,
        } => dispatch(&mesh, &source, &event_type, payload.as_deref()).await?,
        Command::Call {
            service,
            method,
            args,
            mesh,
            timeout_ms,
        } => {
            return call(&mesh, &service, &method, args.as_deref(), timeout_ms).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the gateway (when given) and `services` until SIGINT/SIGTERM, then shuts down in order:
/// the gateway stops accepting and drains, then the services finish in-flight work.
/// What `serve` puts in front of the services.
enum Serve<'a> {
    /// The HTTP gateway: its arguments and the configuration made from them.
    Gateway(&'a GatewayArgs, Box<GatewayConfig>),
    /// Nothing but an optional ops port.
    Services { ops_listen: Option<&'a str> },
}

async fn serve(
    mesh: &Mesh,
    front: Serve<'_>,
    services: &[String],
    settings: &bundled::Settings,
) -> Result<()> {
    // The Prometheus recorder must exist before the first measurement.
    let _ = mesh::telemetry::prometheus();
    // The gateway follows descriptors before any service announces itself, so its registry
    // and document are complete from the start.
    let gateway = match &front {
        Serve::Gateway(_, config) => {
            Some(warren_gateway::Gateway::start(mesh, (**config).clone()).await?)
        }
        Serve::Services { .. } => None,
    };
    let mut running: Vec<bundled::Started> = Vec::new();
    for name in services {
        match bundled::start(mesh, name, settings).await {
            Ok(started) => running.push(started),
            Err(error) => {
                for service in running {
                    service.stop().await;
                }
                mesh.close().await;
                return Err(error);
            }
        }
    }
    let names: Vec<String> = running.iter().map(|r| r.name().to_owned()).collect();
    let transport = match mesh.broker() {
        Some(_) => mesh.describe(),
        None => {
            "the in-process transport (no broker; --amqp URL or AMQP_URL for RabbitMQ)".to_owned()
        }
    };
    let services_note = if names.is_empty() {
        String::new()
    } else {
        format!("; services: {}", names.join(", "))
    };
    let running = std::sync::Arc::new(running);
    match front {
        Serve::Gateway(args, _) => {
            let gateway = gateway.context("the gateway was not started")?;
            let listener = tokio::net::TcpListener::bind(&args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let address = listener.local_addr()?;
            let app = gateway.service();
            println!("warren: gateway on http://{address} over {transport}{services_note}");
            let limits = args.serve_config();
            warren_gateway::serve_with(listener, app, &limits, mesh::terminate_signal()).await?;
            gateway.stop().await;
        }
        Serve::Services { ops_listen } => {
            let ops = match ops_listen {
                Some(address) => {
                    let listener = tokio::net::TcpListener::bind(address)
                        .await
                        .with_context(|| format!("cannot listen on {address}"))?;
                    let bound = listener.local_addr()?;
                    let app = ops::router(mesh.clone(), running.clone());
                    println!(
                        "warren: serving {} over {transport}; ops on http://{bound}",
                        names.join(", ")
                    );
                    Some(tokio::spawn(async move {
                        let _ = warren_gateway::serve(listener, app, std::future::pending()).await;
                    }))
                }
                None => {
                    println!("warren: serving {} over {transport}", names.join(", "));
                    None
                }
            };
            mesh::terminate_signal().await;
            if let Some(ops) = ops {
                // Awaited so the task, and its handle on the services, is gone before they stop.
                ops.abort();
                let _ = ops.await;
            }
        }
    }
    tracing::info!("shutting down");
    if let Ok(running) = std::sync::Arc::try_unwrap(running) {
        for service in running {
            service.stop().await;
        }
    }
    mesh.close().await;
    Ok(())
}

/// `warren call`: prints the result as JSON; on an error prints it and exits 1.
async fn call(
    mesh: &MeshArgs,
    service: &str,
    method: &str,
    args: Option<&str>,
    timeout_ms: u64,
) -> Result<ExitCode> {
    let arguments = match args {
        None => mesh::protocol::RequestBody::default(),
        Some(text) => {
            let value: serde_json::Value =
                serde_json::from_str(text).context("the arguments are not valid JSON")?;
            mesh::protocol::RequestBody::from_json(value).map_err(|v| {
                anyhow::anyhow!("the arguments must be a JSON object or array, not `{v}`")
            })?
        }
    };
    let broker = Broker::connect(mesh.config()).await?;
    let client = RpcClient::start(&broker, "cli").await?;
    let context = CallContext::default()
        .with_deadline(Deadline::after(Duration::from_millis(timeout_ms.max(1))));
    let outcome = client.call(service, method, &arguments, context).await;
    broker.close().await;
    match outcome {
        Ok(result) => {
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `warren dispatch`: publishes one event and returns once the broker has confirmed it.
async fn dispatch(
    mesh: &MeshArgs,
    source: &str,
    event_type: &str,
    payload: Option<&str>,
) -> Result<()> {
    let payload: serde_json::Value = match payload {
        None => serde_json::Value::Null,
        Some(text) => serde_json::from_str(text).context("the payload is not valid JSON")?,
    };
    for name in [source, event_type] {
        mesh::protocol::validate_name(name).with_context(|| format!("invalid name `{name}`"))?;
    }
    let broker = Broker::connect(mesh.config()).await?;
    let outcome = broker.dispatch(source, event_type, &payload).await;
    broker.close().await;
    outcome?;
    println!("dispatched {event_type} from {source}");
    Ok(())
}
