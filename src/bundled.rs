//! The services shipped with Warren, by name, for `warren run` and `warren dev`: each declared
//! by its crate, with its dependency made from the flags here.

use clap::Args;
use mesh::describe::{InstanceState, ServiceDescriptor};
use std::path::PathBuf;
use warren_runtime::Runner;

/// The bundled services: (name, aliases), in the order `warren dev` starts them.
pub const BUNDLED: &[(&str, &[&str])] = &[
    (greeter::NAME, &["greeter"]),
    (kv::NAME, &[]),
    (library::NAME, &[]),
    (indexer::NAME, &[]),
];

/// What the bundled services need to know besides the broker.
#[derive(Args, Debug, Clone)]
pub struct ServiceArgs {
    /// Where the library's SQLite file (library.sqlite3) and the indexer's index (indexer/) live.
    #[arg(long, env = "WARREN_DATA_DIR", default_value = library::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The library's database: a postgres:// URL (SQLite under --data-dir when not given).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The largest book text the library accepts, in bytes.
    #[arg(long, env = "WARREN_MAX_BOOK_BYTES", default_value_t = library::DEFAULT_MAX_BOOK_BYTES)]
    max_book_bytes: usize,
}

impl ServiceArgs {
    /// The library's store, as its dependency opens it.
    fn library(&self) -> library::LibraryConfig {
        library::LibraryConfig {
            database_url: self.database_url.clone().filter(|url| !url.is_empty()),
            max_book_bytes: self.max_book_bytes,
            ..library::LibraryConfig::in_dir(&self.data_dir)
        }
    }

    /// The indexer's index, as its dependency opens it.
    fn indexer(&self) -> indexer::IndexerConfig {
        indexer::IndexerConfig {
            dir: self.data_dir.join("indexer"),
            library: indexer::LIBRARY.to_owned(),
        }
    }
}

/// The canonical name of a bundled service, accepting aliases.
pub fn canonical(name: &str) -> Option<&'static str> {
    BUNDLED
        .iter()
        .find(|(canonical, aliases)| *canonical == name || aliases.contains(&name))
        .map(|(canonical, _)| *canonical)
}

/// The names of every bundled service, for messages.
pub fn names() -> Vec<&'static str> {
    BUNDLED.iter().map(|(name, _)| *name).collect()
}

/// `runner` with the bundled service `name` (canonical, see [`canonical`]) added.
pub fn serve(runner: Runner, name: &str, args: &ServiceArgs) -> Runner {
    match name {
        greeter::NAME => runner.serve(greeter::service()),
        kv::NAME => runner.serve(kv::service().with_state(kv::Store::default())),
        library::NAME => runner.serve_with(library::service(), args.library()),
        indexer::NAME => runner.serve_with(indexer::service(), args.indexer()),
        _ => runner,
    }
}

/// The descriptors of every bundled service, as one instance of each would announce them, for
/// `warren openapi`: no transport, no timestamps, nothing opened, the same output every time.
pub fn descriptors() -> Vec<ServiceDescriptor> {
    let describe = |mut descriptor: ServiceDescriptor| {
        descriptor.sent_at_ms = 0;
        descriptor
    };
    vec![
        describe(greeter::service().descriptor("document", 0, InstanceState::Up)),
        describe(kv::service().descriptor("document", 0, InstanceState::Up)),
        describe(library::service().descriptor("document", 0, InstanceState::Up)),
        describe(indexer::service().descriptor("document", 0, InstanceState::Up)),
    ]
}
