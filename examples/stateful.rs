//! A service whose state comes from a dependency with a lifecycle: a visit counter kept in a
//! file (`COUNTER_FILE`, `visits.count` by default), read when the service starts and written
//! back once it has stopped, so the count goes on across restarts.
//!
//! ```sh
//! cargo run --example stateful
//! curl --json '{}' http://127.0.0.1:8080/rpc/visits/visit    # 1, then 2, 3...
//! ```

use mesh::{BoxError, Dependency, RpcError, Service, State};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use warren_runtime::Runner;

/// The count, shared by the handlers.
type Count = Arc<AtomicU64>;

/// The counter's file: the service's dependency.
struct CounterFile(PathBuf);

impl Dependency for CounterFile {
    type State = Count;

    /// Reads the count; a missing file is a count of 0.
    async fn open(&self) -> Result<Count, BoxError> {
        let count = match std::fs::read_to_string(&self.0) {
            Ok(text) => text.trim().parse()?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => return Err(error.into()),
        };
        tracing::info!(file = %self.0.display(), count, "counter opened");
        Ok(Arc::new(AtomicU64::new(count)))
    }

    /// Writes the count back: the runtime calls this once the service's last handler is done.
    async fn close(&self, count: Count) {
        let count = count.load(Ordering::SeqCst);
        match std::fs::write(&self.0, count.to_string()) {
            Ok(()) => tracing::info!(file = %self.0.display(), count, "counter closed"),
            Err(error) => tracing::error!(file = %self.0.display(), %error, "counter not saved"),
        }
    }
}

/// Counts a visit and returns the count.
async fn visit(State(count): State<Count>) -> Result<u64, RpcError> {
    Ok(count.fetch_add(1, Ordering::SeqCst) + 1)
}

/// The count so far.
async fn visits(State(count): State<Count>) -> Result<u64, RpcError> {
    Ok(count.load(Ordering::SeqCst))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let file = std::env::var_os("COUNTER_FILE").unwrap_or_else(|| "visits.count".into());
    let service = Service::new("visits")
        .rpc("visit", visit)
        .rpc("visits", visits);
    Runner::from_args()
        .with_gateway()
        .serve_with(service, CounterFile(file.into()))
        .run()
        .await
}
