//! [`Runner`]: a process's services, optionally the gateway, started in order and shut down in
//! order.
//!
//! Start: the listeners are bound (so a taken port fails before anything else), the transport
//! is chosen (in process, or RabbitMQ), the gateway starts following the services' descriptors,
//! then each service's dependency is opened and the service served. The first failure stops
//! everything already started, in reverse, and is reported as one line.
//!
//! Stop, on SIGINT or SIGTERM: HTTP intake stops and the calls in flight are answered; the
//! services stop, last started first (each finishes its work in progress within its grace
//! period, the rest goes back to its queue); their dependencies close, last opened first; the
//! gateway stops following descriptors; the broker connection closes.

use crate::args::ProcessArgs;
use crate::error::{ConfigError, RunError, one_line};
use crate::logging::{self, LogFormat};
use crate::unit::{Ready, Started, Unit, WithDependency};
use clap::Parser;
use mesh::{Dependency, Mesh, MeshConfig, Service};
use std::process::ExitCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warren_gateway::{Gateway, GatewayConfig, ServeConfig};

/// Where a process's services talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Channels inside the process: zero setup, no broker (needs the gateway in the process,
    /// or nothing could reach the services).
    InProcess,
    /// RabbitMQ at the mesh configuration's broker.
    Amqp,
}

/// What a [`Runner`] needs to know, from flags ([`Settings::from_args`]) or set in code.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The service runtime's settings, the broker's among them.
    pub mesh: MeshConfig,
    /// In process or over RabbitMQ.
    pub transport: Transport,
    /// Where the gateway listens (when the process runs one).
    pub listen: String,
    /// The gateway's configuration.
    pub gateway: GatewayConfig,
    /// The gateway's HTTP server limits.
    pub http: ServeConfig,
    /// Where to serve `/healthz`, `/readyz` and `/metrics` besides the gateway's port.
    pub ops_listen: Option<String>,
    /// How log lines look.
    pub log_format: LogFormat,
    /// What the process is called in its first line and in exported traces.
    pub process_name: String,
}

impl Settings {
    /// The settings `args` stand for: over RabbitMQ when they name a broker, in process
    /// otherwise.
    pub fn from_args(args: &ProcessArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            mesh: args.mesh.config(),
            transport: if args.mesh.names_a_broker() {
                Transport::Amqp
            } else {
                Transport::InProcess
            },
            listen: args.gateway.listen.clone(),
            gateway: args.gateway.config()?,
            http: args.gateway.serve_config(),
            ops_listen: args.ops_listen.clone(),
            log_format: LogFormat::parse(&args.log_format),
            process_name: program_name(),
        })
    }
}

/// The name the program was started as (its file name), or `warren`.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|path| {
            std::path::Path::new(&path)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "warren".to_owned())
}

/// Runs a process's services, and optionally the gateway, until SIGINT or SIGTERM.
///
/// ```no_run
/// use mesh::{Args, RpcError, Service};
///
/// #[derive(serde::Deserialize, utoipa::ToSchema)]
/// struct Hello {
///     name: String,
/// }
///
/// async fn hello(Args(h): Args<Hello>) -> Result<String, RpcError> {
///     Ok(format!("Hello, {}!", h.name))
/// }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     let service = Service::new("greeting_service").rpc("hello", hello);
///     warren_runtime::Runner::from_args()
///         .serve(service)
///         .with_gateway()
///         .run()
///         .await
/// }
/// ```
pub struct Runner {
    settings: Result<Settings, ConfigError>,
    units: Vec<Box<dyn Unit>>,
    gateway: bool,
}

impl Runner {
    /// A runner with `settings`.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings: Ok(settings),
            units: Vec::new(),
            gateway: false,
        }
    }

    /// A runner configured by the command line and the environment ([`ProcessArgs`]: `--amqp`
    /// / `AMQP_URL`, `--listen` / `WARREN_LISTEN`, `--ops-listen` / `WARREN_OPS_LISTEN`, the
    /// gateway's and the service runtime's flags). `--help` lists them; a flag that cannot be
    /// parsed exits with clap's message, a file that cannot be used is reported by
    /// [`Runner::run`].
    pub fn from_args() -> Self {
        let args = ProcessArgs::parse();
        Self {
            settings: Settings::from_args(&args),
            units: Vec::new(),
            gateway: false,
        }
    }

    /// Serves `service`, whose state is given (or that has none).
    pub fn serve(mut self, service: Service) -> Self {
        self.units.push(Box::new(Ready(service)));
        self
    }

    /// Serves `service` with the state `dependency` opens when the service starts; the
    /// dependency is closed after the service has stopped.
    pub fn serve_with<D: Dependency>(mut self, service: Service<D::State>, dependency: D) -> Self {
        self.units.push(Box::new(WithDependency {
            service,
            dependency,
        }));
        self
    }

    /// Serves the HTTP gateway in this process too, on the settings' `listen` address, with
    /// the probes and `/metrics` on the same port.
    pub fn with_gateway(mut self) -> Self {
        self.gateway = true;
        self
    }

    /// Runs until SIGINT or SIGTERM, then shuts down in order; returns the process's exit code.
    /// A failure is printed to standard error as one line (`error: ...`) and is
    /// [`ExitCode::FAILURE`]. Installs the process's logging unless the program did.
    pub async fn run(self) -> ExitCode {
        let telemetry = match &self.settings {
            Ok(settings) => {
                let (format, name) = (settings.log_format, settings.process_name.clone());
                // Made on a thread of its own: a span exporter's blocking HTTP client must not
                // be made on the async runtime.
                std::thread::spawn(move || logging::init(format, &name))
                    .join()
                    .ok()
                    .flatten()
            }
            Err(_) => None,
        };
        let outcome = self.try_run().await;
        if let Some(telemetry) = telemetry {
            let _ = tokio::task::spawn_blocking(move || telemetry.finish()).await;
        }
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {}", one_line(&error));
                ExitCode::FAILURE
            }
        }
    }

    /// [`Runner::run`], returning the error instead of printing it.
    pub async fn try_run(self) -> Result<(), RunError> {
        self.try_run_until(crate::signal::terminate_signal()).await
    }

    /// [`Runner::try_run`] until `shutdown` resolves instead of a signal (a program with a
    /// shutdown of its own, a test), then shuts down in the same order.
    pub async fn try_run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), RunError> {
        let settings = self.settings?;
        if self.units.is_empty() && !self.gateway {
            return Err(RunError::NothingToRun);
        }
        if settings.transport == Transport::InProcess && !self.gateway {
            return Err(RunError::NoBroker);
        }
        let listener = match self.gateway {
            true => Some(bind(&settings.listen).await?),
            false => None,
        };
        let ops_listener = match &settings.ops_listen {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        // The Prometheus recorder must exist before the first measurement.
        let _ = warren_telemetry::prometheus();
        let mesh = match settings.transport {
            Transport::InProcess => Mesh::in_process(settings.mesh.clone()),
            Transport::Amqp => Mesh::amqp(settings.mesh.clone()).await?,
        };
        let mut process = Process {
            mesh,
            gateway: None,
            started: Vec::new(),
        };
        if let Err(error) = process.start(self.gateway, self.units, &settings).await {
            process.stop().await;
            return Err(error);
        }
        let (stop_intake, intake_stopped) = watch::channel(false);
        let line = first_line(
            &settings,
            &process,
            listener.as_ref(),
            ops_listener.as_ref(),
        );
        let mut servers: Vec<JoinHandle<()>> = Vec::new();
        if let (Some(listener), Some(gateway)) = (listener, &process.gateway) {
            let (app, limits) = (gateway.service(), settings.http.clone());
            let stopped = wait_for(intake_stopped.clone());
            servers.push(tokio::spawn(async move {
                if let Err(error) =
                    warren_gateway::serve_with(listener, app, &limits, stopped).await
                {
                    tracing::error!(%error, "the gateway's HTTP server failed");
                }
            }));
        }
        if let Some(listener) = ops_listener {
            let app = crate::ops::router(process.mesh.clone());
            let stopped = wait_for(intake_stopped.clone());
            servers.push(tokio::spawn(async move {
                if let Err(error) = warren_gateway::serve(listener, app, stopped).await {
                    tracing::error!(%error, "the ops listener failed");
                }
            }));
        }
        println!("{line}");
        shutdown.await;
        tracing::info!("shutting down");
        // HTTP intake first: no new calls, and the ones in flight are answered.
        let _ = stop_intake.send(true);
        for server in servers {
            let _ = server.await;
        }
        process.stop().await;
        Ok(())
    }
}

/// What a process has started, stopped in reverse.
struct Process {
    mesh: Mesh,
    gateway: Option<Gateway>,
    started: Vec<Box<dyn Started>>,
}

impl Process {
    /// Starts the gateway (when asked), then every unit in order.
    async fn start(
        &mut self,
        gateway: bool,
        units: Vec<Box<dyn Unit>>,
        settings: &Settings,
    ) -> Result<(), RunError> {
        // The gateway follows descriptors before any service announces itself, so its registry
        // and document are complete from the start.
        if gateway {
            let config = settings.gateway.clone();
            self.gateway = Some(Gateway::start(&self.mesh, config).await?);
        }
        for unit in units {
            tracing::debug!(service = unit.name(), "starting");
            let started = unit.start(&self.mesh).await?;
            self.started.push(started);
        }
        Ok(())
    }

    /// Stops the services, last started first, each within its grace period; closes their
    /// dependencies, last opened first; stops the gateway's descriptor feed, then closes the
    /// transport.
    ///
    /// One by one and in reverse, because a service may call those started before it: the
    /// indexer's catch-up calls the library, and a library stopped at the same moment would
    /// leave that call waiting in its queue until the indexer's grace period ran out.
    async fn stop(mut self) {
        for started in self.started.iter_mut().rev() {
            started.stop().await;
        }
        while let Some(started) = self.started.pop() {
            tracing::debug!(service = started.name(), "closing its dependency");
            started.close().await;
        }
        if let Some(gateway) = self.gateway.take() {
            gateway.stop().await;
        }
        self.mesh.close().await;
    }
}

async fn bind(address: &str) -> Result<TcpListener, RunError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Listen {
            address: address.to_owned(),
            source,
        })
}

/// Resolves once `stop` is true.
async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// The line a started process prints: where its gateway listens, over which transport, which
/// services it serves and where its ops listener is.
fn first_line(
    settings: &Settings,
    process: &Process,
    gateway: Option<&TcpListener>,
    ops: Option<&TcpListener>,
) -> String {
    let transport = if process.mesh.is_amqp() {
        process.mesh.describe()
    } else {
        "the in-process transport (no broker; --amqp URL or AMQP_URL for RabbitMQ)".to_owned()
    };
    let names: Vec<&str> = process.started.iter().map(|s| s.name()).collect();
    let address = |listener: &TcpListener| {
        listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string())
    };
    let mut line = match gateway {
        Some(listener) => {
            let mut line = format!(
                "{}: gateway on http://{} over {transport}",
                settings.process_name,
                address(listener)
            );
            if !names.is_empty() {
                line.push_str(&format!("; services: {}", names.join(", ")));
            }
            line
        }
        None => format!(
            "{}: serving {} over {transport}",
            settings.process_name,
            names.join(", ")
        ),
    };
    if let Some(listener) = ops {
        line.push_str(&format!("; ops on http://{}", address(listener)));
    }
    line
}
