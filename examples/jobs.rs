//! Background and heavy work: a job that runs once per interval for the whole service however
//! many instances run it, and a method that computes on the blocking pool so that the rest of
//! the process goes on meanwhile.
//!
//! ```sh
//! cargo run --example jobs          # start it twice with AMQP_URL: one instance runs the job
//! curl --json '{"below": 100000}' http://127.0.0.1:8080/rpc/reports/primes   # 9592
//! curl --json '{}' http://127.0.0.1:8080/rpc/reports/tallies                 # runs here so far
//! ```

use mesh::{Args, Ctx, RpcError, Service, State, Timer};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use warren_runtime::Runner;

/// How many times this instance ran the job.
type Tallies = Arc<AtomicU64>;

/// The job: once a second in one instance of `reports`, whichever holds the timer's lease.
async fn tally(State(tallies): State<Tallies>) -> Result<(), RpcError> {
    tallies.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn tallies(State(tallies): State<Tallies>) -> Result<u64, RpcError> {
    Ok(tallies.load(Ordering::Relaxed))
}

/// Count the primes below a number.
#[derive(serde::Deserialize, utoipa::ToSchema)]
struct Primes {
    /// At most ten million.
    below: u64,
}

/// Seconds of CPU for large numbers: on the blocking pool, not the async runtime.
async fn primes(ctx: Ctx, Args(p): Args<Primes>) -> Result<usize, RpcError> {
    if p.below > 10_000_000 {
        return Err(RpcError::bad_request("below must be at most 10000000"));
    }
    ctx.blocking(move || count_primes(p.below)).await
}

/// A plain function: the work itself knows nothing of the mesh.
fn count_primes(below: u64) -> usize {
    (2..below)
        .filter(|n| (2..).take_while(|d| d * d <= *n).all(|d| n % d != 0))
        .count()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let job = Timer::every("tally", Duration::from_secs(1)).once_per_service();
    let service = Service::new("reports")
        .timer(job, tally)
        .rpc("tallies", tallies)
        .rpc("primes", primes)
        .with_state(Tallies::default());
    Runner::from_args()
        .with_gateway()
        .serve(service)
        .run()
        .await
}
