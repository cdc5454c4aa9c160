//! [`LibraryConfig`]: where the catalogue lives and how big a book may be.

use std::path::PathBuf;

/// The largest book text accepted by default: 8 MiB.
pub const DEFAULT_MAX_BOOK_BYTES: usize = 8 * 1024 * 1024;

/// The data directory used when none is given (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "warren-data";

/// How the library stores its books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryConfig {
    /// The directory holding `library.sqlite3` when no `database_url` is given.
    pub data_dir: PathBuf,
    /// A `postgres://` (or `sqlite:`) URL; SQLite under `data_dir` when `None`.
    pub database_url: Option<String>,
    /// The largest book text accepted, in bytes of UTF-8.
    pub max_book_bytes: usize,
    /// The most database connections the store opens (for reads, on SQLite).
    pub max_connections: u32,
}

impl Default for LibraryConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_url: None,
            max_book_bytes: DEFAULT_MAX_BOOK_BYTES,
            max_connections: 8,
        }
    }
}

impl LibraryConfig {
    /// The defaults with SQLite under `data_dir`.
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }
}
