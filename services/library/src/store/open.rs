//! Opening the store: choosing the backend from `DATABASE_URL` (or the SQLite file under the
//! data directory), connecting, running the migrations and reading the catalogue's id.
//! Separate because it runs once, before any read or write.
//!
//! SQLite runs in WAL mode with `synchronous = FULL`: each commit syncs the WAL to disk before it
//! returns, so an acknowledged write survives a crash of the process *and* of the machine (with
//! `NORMAL`, WAL mode stays consistent but may lose the last commits on a power cut, which would
//! break "acknowledged means stored"). Writes go through a pool of one connection (SQLite has one
//! writer at a time anyway, and this queues writers fairly instead of spinning on
//! `SQLITE_BUSY`); reads go through their own pool and never wait for writes (WAL).

use super::error::StoreError;
use super::{Backend, BackendKind, Inner, Store, on_backend};
use crate::config::LibraryConfig;
use crate::model::Limits;
use sqlx::Connection;
use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The SQLite file's name inside the data directory.
pub const SQLITE_FILE: &str = "library.sqlite3";

/// How long a request waits for a database connection before it fails as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long SQLite waits on a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const INSERT_CATALOG_ID: &str =
    "INSERT INTO library_meta (key, value) VALUES ('catalog_id', $1) ON CONFLICT (key) DO NOTHING";
const SELECT_CATALOG_ID: &str = "SELECT value FROM library_meta WHERE key = 'catalog_id'";

fn migrator(kind: BackendKind) -> Migrator {
    let sql = match kind {
        BackendKind::Sqlite => include_str!("../../migrations/sqlite/0001_books.sql"),
        BackendKind::Postgres => include_str!("../../migrations/postgres/0001_books.sql"),
    };
    Migrator::with_migrations(vec![Migration::new(
        1,
        "books".into(),
        MigrationType::Simple,
        SqlStr::from_static(sql),
        false,
    )])
}

impl Store {
    /// Opens the catalogue `config` names, creating it (and the data directory) when missing,
    /// and runs the migrations.
    pub async fn open(config: &LibraryConfig) -> Result<Self, StoreError> {
        let limits = Limits {
            max_book_bytes: config.max_book_bytes,
        };
        let (backend, description) = match config.database_url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let description = mesh::redact_url(url);
                let open_error = |error| StoreError::Open {
                    url: description.clone(),
                    error,
                };
                let options = PgConnectOptions::from_str(url).map_err(open_error)?;
                // One connection first: a server that is down or refuses us fails at once with
                // its own reason, where the pool would retry until its timeout.
                let probe =
                    tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
                        .await
                        .map_err(|_| open_error(sqlx::Error::PoolTimedOut))?
                        .map_err(open_error)?;
                let _ = probe.close().await;
                let pool = PgPoolOptions::new()
                    .max_connections(config.max_connections.max(1))
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(open_error)?;
                (Backend::Postgres(pool), description)
            }
            Some(url) if url.starts_with("sqlite:") => {
                let options =
                    SqliteConnectOptions::from_str(url).map_err(|error| StoreError::Open {
                        url: url.to_owned(),
                        error,
                    })?;
                open_sqlite(options, url.to_owned(), config.max_connections).await?
            }
            Some(url) => return Err(StoreError::UnsupportedUrl(mesh::redact_url(url))),
            None => {
                let dir = &config.data_dir;
                std::fs::create_dir_all(dir).map_err(|error| StoreError::DataDir {
                    path: dir.clone(),
                    error,
                })?;
                let path = dir.join(SQLITE_FILE);
                let options = SqliteConnectOptions::new().filename(&path);
                open_sqlite(options, path.display().to_string(), config.max_connections).await?
            }
        };
        let mut store = Inner {
            backend,
            limits,
            catalog_id: String::new(),
            description,
        };
        let kind = match &store.backend {
            Backend::Sqlite { .. } => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        };
        let migrations = migrator(kind);
        match &store.backend {
            Backend::Sqlite { write, .. } => migrations.run(write).await?,
            Backend::Postgres(pool) => migrations.run(pool).await?,
        }
        store.catalog_id = catalog_id(&store.backend).await?;
        tracing::info!(database = %store.description, catalog_id = %store.catalog_id, "library store open");
        Ok(Self {
            inner: Arc::new(store),
        })
    }
}

async fn open_sqlite(
    options: SqliteConnectOptions,
    description: String,
    max_connections: u32,
) -> Result<(Backend, String), StoreError> {
    let open_error = |error| StoreError::Open {
        url: description.clone(),
        error,
    };
    let options = options
        .create_if_missing(true)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    // The writer sets WAL (which the file then keeps) and FULL sync for its commits.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(
            options
                .clone()
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full),
        )
        .await
        .map_err(open_error)?;
    let read = SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.read_only(true))
        .await
        .map_err(open_error)?;
    Ok((Backend::Sqlite { read, write }, description))
}

/// The catalogue's id, made on first open.
async fn catalog_id(backend: &Backend) -> Result<String, StoreError> {
    let fresh = uuid::Uuid::new_v4().simple().to_string();
    on_backend!(backend, write, |pool, _| {
        sqlx::query(INSERT_CATALOG_ID)
            .bind(&fresh)
            .execute(pool)
            .await?;
        let id: String = sqlx::query_scalar(SELECT_CATALOG_ID)
            .fetch_one(pool)
            .await?;
        Ok(id)
    })
}
