//! The services shipped with Warren, by name, for `warren run` and `warren dev`.

use anyhow::{Context, Result, bail};
use mesh::{Mesh, RunningService};
use std::path::PathBuf;
use tokio::task::JoinHandle;

/// The bundled services: (name, aliases), in the order `warren dev` starts them.
pub const BUNDLED: &[(&str, &[&str])] = &[
    (greeter::NAME, &["greeter"]),
    (kv::NAME, &[]),
    (library::NAME, &[]),
    (indexer::NAME, &[]),
];

/// What the bundled services need to know besides the broker.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the library's SQLite file and the indexer's index live.
    pub data_dir: PathBuf,
    /// The library's database, when not SQLite under `data_dir`.
    pub database_url: Option<String>,
    /// The largest book text the library accepts, in bytes.
    pub max_book_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: library::DEFAULT_DATA_DIR.into(),
            database_url: None,
            max_book_bytes: library::DEFAULT_MAX_BOOK_BYTES,
        }
    }
}

impl Settings {
    fn library(&self) -> library::LibraryConfig {
        library::LibraryConfig {
            database_url: self.database_url.clone(),
            max_book_bytes: self.max_book_bytes,
            ..library::LibraryConfig::in_dir(&self.data_dir)
        }
    }

    fn index_dir(&self) -> PathBuf {
        self.data_dir.join("indexer")
    }
}

/// The canonical name of a bundled service, accepting aliases.
pub fn canonical(name: &str) -> Option<&'static str> {
    BUNDLED
        .iter()
        .find(|(canonical, aliases)| *canonical == name || aliases.contains(&name))
        .map(|(canonical, _)| *canonical)
}

/// A bundled service being served, with what it must release when it stops.
pub struct Started {
    service: RunningService,
    resources: Resources,
}

enum Resources {
    None,
    Library(library::Store),
    Indexer {
        index: indexer::Index,
        catch_up: JoinHandle<Option<indexer::CatchUpReport>>,
    },
}

impl Started {
    /// The service's name.
    pub fn name(&self) -> &str {
        self.service.name()
    }

    /// The running service (its counters, its gauges).
    pub fn running(&self) -> &RunningService {
        &self.service
    }

    /// Stops the service gracefully, then closes its store or index.
    pub async fn stop(self) {
        self.service.stop().await;
        match self.resources {
            Resources::None => {}
            Resources::Library(store) => store.close().await,
            Resources::Indexer { index, catch_up } => {
                catch_up.abort();
                if let Err(error) = index.close().await {
                    tracing::error!(%error, "closing the index");
                }
            }
        }
    }
}

/// Starts the bundled service `name` on `mesh`.
pub async fn start(mesh: &Mesh, name: &str, settings: &Settings) -> Result<Started> {
    let (service, resources) = match canonical(name) {
        Some(greeter::NAME) => (mesh.serve(greeter::service()).await?, Resources::None),
        Some(kv::NAME) => (mesh.serve(kv::service()).await?, Resources::None),
        Some(library::NAME) => {
            let store = library::Store::open(&settings.library())
                .await
                .context("cannot start the library")?;
            let service = mesh.serve(library::service(store.clone())).await?;
            (service, Resources::Library(store))
        }
        Some(indexer::NAME) => {
            let dir = settings.index_dir();
            let index = tokio::task::spawn_blocking(move || indexer::Index::open(dir))
                .await?
                .context("cannot start the indexer")?;
            // Serve first, so the event subscriptions consume; then catch up in the background.
            let service = mesh.serve(indexer::service(index.clone())).await?;
            let catch_up = indexer::spawn_catch_up(
                mesh.client(indexer::NAME).await?,
                indexer::LIBRARY.to_owned(),
                index.clone(),
            );
            (service, Resources::Indexer { index, catch_up })
        }
        _ => bail!("no bundled service `{name}`"),
    };
    Ok(Started { service, resources })
}

/// The descriptors of every bundled service, as one instance of each would announce them
/// (for `warren openapi`: no transport, no timestamps, the same output every time). The library
/// and indexer need a store and an index to exist; throwaway ones under a temporary folder
/// serve.
pub async fn descriptors() -> Result<Vec<mesh::describe::ServiceDescriptor>> {
    use mesh::describe::InstanceState;
    let scratch = std::env::temp_dir().join(format!("warren-openapi-{}", std::process::id()));
    let settings = Settings {
        data_dir: scratch.clone(),
        ..Settings::default()
    };
    let store = library::Store::open(&settings.library()).await?;
    let dir = settings.index_dir();
    let index = tokio::task::spawn_blocking(move || indexer::Index::open(dir)).await??;
    let mut descriptors = vec![
        greeter::service().descriptor("document", 0, InstanceState::Up),
        kv::service().descriptor("document", 0, InstanceState::Up),
        library::service(store.clone()).descriptor("document", 0, InstanceState::Up),
        indexer::service(index.clone()).descriptor("document", 0, InstanceState::Up),
    ];
    store.close().await;
    let _ = index.close().await;
    let _ = std::fs::remove_dir_all(&scratch);
    for d in &mut descriptors {
        d.sent_at_ms = 0;
    }
    Ok(descriptors)
}
