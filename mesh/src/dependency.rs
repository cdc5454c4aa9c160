//! [`Dependency`]: where a service's state comes from, with a lifecycle, as nameko's dependency
//! providers have one: opened when the service starts (nameko's `setup`), closed once it has
//! stopped (nameko's `stop`).
//!
//! A service is declared apart from its state ([`crate::Service<S>`]), so its descriptor (its
//! methods and their schemas) exists without opening anything; the runtime opens the
//! dependency when it starts the service, hands the state to its handlers through
//! [`crate::State`], and closes it after the service's last handler has finished.

use std::future::Future;

/// The error a dependency reports when it cannot open: any error, shown to the operator as one
/// line with its causes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service's dependency: a store, an index, a connection pool.
///
/// ```
/// use mesh::{BoxError, Dependency};
/// use std::sync::Arc;
/// use std::sync::atomic::AtomicU64;
///
/// /// A counter that starts at `start`.
/// struct Counter {
///     start: u64,
/// }
///
/// impl Dependency for Counter {
///     type State = Arc<AtomicU64>;
///
///     async fn open(&self) -> Result<Self::State, BoxError> {
///         Ok(Arc::new(AtomicU64::new(self.start)))
///     }
///
///     async fn close(&self, counter: Self::State) {
///         println!("closing at {counter:?}");
///     }
/// }
/// ```
pub trait Dependency: Send + Sync + 'static {
    /// What handlers receive through `State<_>`; cheap to clone (an `Arc`, a pool handle).
    type State: Clone + Send + Sync + 'static;

    /// Opens the dependency as the service starts: connect, migrate, load. An error stops the
    /// start (what had started is stopped again, and the process reports this error).
    fn open(&self) -> impl Future<Output = Result<Self::State, BoxError>> + Send;

    /// Closes the dependency once its service has stopped and no handler holds the state any
    /// more: flush, close connections. By default the state is dropped.
    fn close(&self, state: Self::State) -> impl Future<Output = ()> + Send {
        async move { drop(state) }
    }
}
