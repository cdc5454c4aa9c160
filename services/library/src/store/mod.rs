//! [`Store`]: the catalogue in SQLite (the default, one file under the data directory) or in
//! PostgreSQL (when `DATABASE_URL` is a `postgres://` URL), through sqlx.
//!
//! Both backends run the same SQL (sqlx binds `$1`-style parameters on SQLite too); only the
//! migrations and the statement that draws the next version differ. Every write runs in one
//! transaction and returns only after it committed.
//!
//! The handle and the backend it dispatches on live here; opening, reads, writes and the
//! errors each have their own module.

mod error;
mod open;
mod read;
mod write;

pub use error::StoreError;
pub use open::SQLITE_FILE;

use crate::model::Limits;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use std::sync::Arc;

/// Which database holds the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

enum Backend {
    Sqlite { read: SqlitePool, write: SqlitePool },
    Postgres(PgPool),
}

/// The catalogue. Cheap to clone; clones share the connection pools.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    limits: Limits,
    catalog_id: String,
    description: String,
}

/// Runs `$body` with `$pool` bound to the pool for `$access` (`read` or `write`) of whichever
/// backend this is, and `$kind` to its [`BackendKind`]: the same code, typed for each driver.
macro_rules! on_backend {
    ($backend:expr, $access:ident, |$pool:ident, $kind:pat_param| $body:expr) => {
        match $backend {
            Backend::Sqlite { $access: $pool, .. } => {
                let $kind = BackendKind::Sqlite;
                $body
            }
            Backend::Postgres($pool) => {
                let $kind = BackendKind::Postgres;
                $body
            }
        }
    };
}

pub(super) use on_backend;

impl Store {
    /// Which database this is.
    pub fn kind(&self) -> BackendKind {
        match &self.inner.backend {
            Backend::Sqlite { .. } => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// The database, for logs (a path, or a URL without its password).
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// The limits books are checked against.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// This catalogue's id: random, fixed when the database was created.
    pub fn catalog_id(&self) -> &str {
        &self.inner.catalog_id
    }

    /// Closes the connection pools (waiting for connections in use to come back).
    pub async fn close(&self) {
        match &self.inner.backend {
            Backend::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}
