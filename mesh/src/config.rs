//! [`MeshConfig`]: how services and clients behave, whatever the transport, and the broker's
//! settings for AMQP.

use crate::amqp::AmqpConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Settings shared by clients and services.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// The broker, for [`crate::Mesh::amqp`] (unused in process).
    pub amqp: AmqpConfig,
    /// Handlers run at once per service; also the consumer's prefetch. nameko's default is 10.
    pub max_workers: u16,
    /// How long a stopping service waits for in-flight handlers.
    pub shutdown_grace: Duration,
    /// The deadline of a call whose caller set none.
    pub default_timeout: Duration,
    /// This process's instance id; it names broadcast event queues. Give a stable one (a pod
    /// name, say) for an instance to get the broadcasts it missed while restarting.
    pub instance_id: String,
    /// How often each service instance announces its descriptor.
    pub heartbeat: Duration,
    /// How many pieces of CPU-bound work ([`crate::Ctx::blocking`]) the services of this mesh
    /// run at once; by default one fewer than the machine has cores, at least one, so the async
    /// runtime keeps a core.
    pub blocking_threads: usize,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            amqp: AmqpConfig::default(),
            max_workers: 10,
            shutdown_grace: Duration::from_secs(10),
            default_timeout: Duration::from_secs(30),
            instance_id: uuid::Uuid::new_v4().simple().to_string(),
            heartbeat: Duration::from_secs(5),
            blocking_threads: crate::blocking::default_blocking_threads(),
        }
    }
}

impl MeshConfig {
    /// The defaults with the broker at `amqp_url` (one URL, or several separated by commas or
    /// `;`: a cluster's nodes).
    pub fn with_url(amqp_url: impl AsRef<str>) -> Self {
        Self {
            amqp: AmqpConfig::with_url(amqp_url),
            ..Self::default()
        }
    }

    /// The defaults, with `AMQP_URL`, `AMQP_CA_FILE`, `WARREN_QUEUE_TYPE` and
    /// `WARREN_BLOCKING_THREADS` taken from the environment when set (a value that is not one
    /// is left at its default).
    pub fn from_env() -> Self {
        let set = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
        let mut config = match set("AMQP_URL") {
            Some(url) => Self::with_url(url),
            None => Self::default(),
        };
        config.amqp.tls_ca_file = set("AMQP_CA_FILE").map(PathBuf::from);
        if let Some(queue_type) = set("WARREN_QUEUE_TYPE").and_then(|t| t.parse().ok()) {
            config.amqp.queue_type = queue_type;
        }
        if let Some(threads) = set("WARREN_BLOCKING_THREADS").and_then(|n| n.parse().ok()) {
            config.blocking_threads = usize::max(threads, 1);
        }
        config
    }
}
