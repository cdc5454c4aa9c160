//! The services a [`crate::Runner`] runs, each with its dependency, behind one object-safe
//! interface whatever their state type: [`Unit`] starts one (opens its dependency, serves it),
//! [`Started`] stops it and then closes the dependency.

use crate::error::RunError;
use mesh::{Dependency, Mesh, RunningService, Service};
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future borrowing for `'a`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A service waiting to be started.
pub(crate) trait Unit: Send {
    /// The service's name.
    fn name(&self) -> &str;

    /// Opens its dependency and serves it on `mesh`; on failure, whatever it opened is closed.
    fn start(self: Box<Self>, mesh: &Mesh) -> BoxFuture<'_, Result<Box<dyn Started>, RunError>>;
}

/// A service being served.
pub(crate) trait Started: Send {
    /// The service's name.
    fn name(&self) -> &str;

    /// Stops it gracefully (within its grace period); the dependency stays open.
    fn stop(&mut self) -> BoxFuture<'_, ()>;

    /// Closes its dependency; call it after [`Started::stop`].
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A service whose state is given already (or that has none).
pub(crate) struct Ready(pub(crate) Service);

impl Unit for Ready {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn start(self: Box<Self>, mesh: &Mesh) -> BoxFuture<'_, Result<Box<dyn Started>, RunError>> {
        Box::pin(async move {
            let name = self.0.name().to_owned();
            let running = mesh.serve(self.0).await.map_err(|source| RunError::Serve {
                service: name.clone(),
                source,
            })?;
            let started: Box<dyn Started> = Box::new(Serving {
                name,
                running: Some(running),
                dependency: None::<Opened<NoDependency>>,
            });
            Ok(started)
        })
    }
}

/// A service with a dependency to open first.
pub(crate) struct WithDependency<D: Dependency> {
    pub(crate) service: Service<D::State>,
    pub(crate) dependency: D,
}

impl<D: Dependency> Unit for WithDependency<D> {
    fn name(&self) -> &str {
        self.service.name()
    }

    fn start(self: Box<Self>, mesh: &Mesh) -> BoxFuture<'_, Result<Box<dyn Started>, RunError>> {
        Box::pin(async move {
            let Self {
                service,
                dependency,
            } = *self;
            let name = service.name().to_owned();
            let state = dependency
                .open()
                .await
                .map_err(|source| RunError::Dependency {
                    service: name.clone(),
                    source,
                })?;
            match mesh.serve(service.with_state(state.clone())).await {
                Ok(running) => {
                    let started: Box<dyn Started> = Box::new(Serving {
                        name,
                        running: Some(running),
                        dependency: Some(Opened { dependency, state }),
                    });
                    Ok(started)
                }
                Err(source) => {
                    dependency.close(state).await;
                    Err(RunError::Serve {
                        service: name,
                        source,
                    })
                }
            }
        })
    }
}

/// An open dependency and its state.
struct Opened<D: Dependency> {
    dependency: D,
    state: D::State,
}

/// The dependency of a service that has none.
struct NoDependency;

impl Dependency for NoDependency {
    type State = ();

    async fn open(&self) -> Result<(), mesh::BoxError> {
        Ok(())
    }
}

/// A running service and its open dependency.
struct Serving<D: Dependency> {
    name: String,
    running: Option<RunningService>,
    dependency: Option<Opened<D>>,
}

impl<D: Dependency> Started for Serving<D> {
    fn name(&self) -> &str {
        &self.name
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(running) = self.running.take() {
                running.stop().await;
            }
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Some(Opened { dependency, state }) = self.dependency {
                dependency.close(state).await;
            }
        })
    }
}
