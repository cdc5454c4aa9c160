//! The services shipped with Warren, by name, for `warren run` and `warren dev`.

use anyhow::{Context, Result, bail};
use mesh::{Broker, RunningService, serve};
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

/// Starts the bundled service `name` on `broker`.
pub async fn start(broker: &Broker, name: &str, settings: &Settings) -> Result<Started> {
    let (service, resources) = match canonical(name) {
        Some(greeter::NAME) => (serve(broker, greeter::service()).await?, Resources::None),
        Some(kv::NAME) => (serve(broker, kv::service()).await?, Resources::None),
        Some(library::NAME) => {
            let store = library::Store::open(&settings.library())
                .await
                .context("cannot start the library")?;
            let service = serve(broker, library::service(store.clone())).await?;
            (service, Resources::Library(store))
        }
        Some(indexer::NAME) => {
            let dir = settings.index_dir();
            let index = tokio::task::spawn_blocking(move || indexer::Index::open(dir))
                .await?
                .context("cannot start the indexer")?;
            // Serve first, so the event subscriptions consume; then catch up in the background.
            let service = serve(broker, indexer::service(index.clone())).await?;
            let catch_up = indexer::spawn_catch_up(
                broker.client(indexer::NAME),
                indexer::LIBRARY.to_owned(),
                index.clone(),
            );
            (service, Resources::Indexer { index, catch_up })
        }
        _ => bail!("no bundled service `{name}`"),
    };
    Ok(Started { service, resources })
}
