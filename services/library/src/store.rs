//! [`Store`]: the catalogue in SQLite (the default, one file under the data directory) or in
//! PostgreSQL (when `DATABASE_URL` is a `postgres://` URL), through sqlx.
//!
//! Both backends run the same SQL (sqlx binds `$1`-style parameters on SQLite too); only the
//! migrations and the statement that draws the next version differ. Every write runs in one
//! transaction and returns only after it committed.
//!
//! SQLite runs in WAL mode with `synchronous = FULL`: each commit syncs the WAL to disk before it
//! returns, so an acknowledged write survives a crash of the process *and* of the machine (with
//! `NORMAL`, WAL mode stays consistent but may lose the last commits on a power cut, which would
//! break "acknowledged means stored"). Writes go through a pool of one connection (SQLite has one
//! writer at a time anyway, and this queues writers fairly instead of spinning on
//! `SQLITE_BUSY`); reads go through their own pool and never wait for writes (WAL).

use crate::config::LibraryConfig;
use crate::model::{Book, BookPatch, BookSummary, Limits, NewBook, Written};
use mesh::RpcError;
use sqlx::Connection;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ColumnIndex, Decode, Row, SqlStr, Type};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The SQLite file's name inside the data directory.
pub const SQLITE_FILE: &str = "library.sqlite3";

/// How long a request waits for a database connection before it fails as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long SQLite waits on a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No book has this id.
    #[error("no book with id {0}")]
    NotFound(i64),
    /// The book is at another version than the caller said.
    #[error(
        "book {id} is at version {current}, not {expected}: get it again, then retry with its version"
    )]
    Conflict {
        /// The book.
        id: i64,
        /// The version the caller sent.
        expected: i64,
        /// The version the book is at.
        current: i64,
    },
    /// `DATABASE_URL` names no backend the library supports.
    #[error("unsupported DATABASE_URL `{0}`: use postgres://... or sqlite:...")]
    UnsupportedUrl(String),
    /// The data directory cannot be made.
    #[error("cannot create the data directory {path}: {error}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the file system said.
        error: std::io::Error,
    },
    /// Connecting failed.
    #[error("cannot open the database {url}: {error}")]
    Open {
        /// The database (password hidden).
        url: String,
        /// What sqlx said.
        error: sqlx::Error,
    },
    /// The migrations failed.
    #[error("cannot migrate the database: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

// The messages above already include the cause, so the causes are not chained as sources
// (which would print them twice).
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error)
    }
}

impl From<StoreError> for RpcError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotFound(_) => RpcError::not_found(error.to_string()),
            StoreError::Conflict { .. } => RpcError::conflict(error.to_string()),
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            ) => RpcError::unavailable(error.to_string()),
            _ => RpcError::internal(error.to_string()),
        }
    }
}

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

/// The statement that draws the next library-wide version, inside a write transaction.
fn next_version_sql(kind: BackendKind) -> &'static str {
    match kind {
        // The counter row is written in the transaction, so a rolled-back write gives its
        // version back; SQLite has one writer at a time, so this is no bottleneck.
        BackendKind::Sqlite => {
            "UPDATE library_version SET value = value + 1 WHERE id = 1 RETURNING value"
        }
        // A sequence never blocks concurrent writers (a rolled-back write leaves a gap).
        BackendKind::Postgres => "SELECT nextval('book_versions')",
    }
}

const SELECT_BOOK: &str =
    "SELECT id, version, title, author, year, language, text, text_bytes FROM books WHERE id = $1";
const SELECT_PAGE: &str = "SELECT id, version, title, author, year, language, text_bytes \
     FROM books WHERE id > $1 ORDER BY id LIMIT $2";
const SELECT_VERSION: &str = "SELECT version FROM books WHERE id = $1";
const INSERT_BOOK: &str = "INSERT INTO books (version, title, author, year, language, text, text_bytes) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
const UPDATE_BOOK: &str = "UPDATE books SET version = $1, \
     title = COALESCE($2, title), author = COALESCE($3, author), \
     year = CASE WHEN $4 THEN $5 ELSE year END, \
     language = CASE WHEN $6 THEN $7 ELSE language END, \
     text = COALESCE($8, text), text_bytes = COALESCE($9, text_bytes) \
     WHERE id = $10 AND version = $11";
const DELETE_BOOK: &str = "DELETE FROM books WHERE id = $1 AND version = $2";
const INSERT_CATALOG_ID: &str =
    "INSERT INTO library_meta (key, value) VALUES ('catalog_id', $1) ON CONFLICT (key) DO NOTHING";
const SELECT_CATALOG_ID: &str = "SELECT value FROM library_meta WHERE key = 'catalog_id'";

fn migrator(kind: BackendKind) -> Migrator {
    let sql = match kind {
        BackendKind::Sqlite => include_str!("../migrations/sqlite/0001_books.sql"),
        BackendKind::Postgres => include_str!("../migrations/postgres/0001_books.sql"),
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

    /// Stores a new book; returns its id and version once committed.
    pub async fn add(&self, book: &NewBook) -> Result<Written, StoreError> {
        let text_bytes = byte_len(&book.text);
        on_backend!(&self.inner.backend, write, |pool, kind| {
            let mut tx = pool.begin().await?;
            let version: i64 = sqlx::query_scalar(next_version_sql(kind))
                .fetch_one(&mut *tx)
                .await?;
            let id: i64 = sqlx::query_scalar(INSERT_BOOK)
                .bind(version)
                .bind(&book.title)
                .bind(&book.author)
                .bind(book.year)
                .bind(book.language.as_deref())
                .bind(&book.text)
                .bind(text_bytes)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Written { id, version })
        })
    }

    /// The book `id`, if there is one.
    pub async fn get(&self, id: i64) -> Result<Option<Book>, StoreError> {
        on_backend!(&self.inner.backend, read, |pool, _| {
            let row = sqlx::query(SELECT_BOOK)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(book_from_row).transpose()?)
        })
    }

    /// Applies `patch` to book `id` if it is at `expected` version; returns its new version once
    /// committed. `NotFound` when there is no such book, `Conflict` when its version differs.
    pub async fn update(
        &self,
        id: i64,
        expected: i64,
        patch: &BookPatch,
    ) -> Result<Written, StoreError> {
        let text_bytes = patch.text.as_deref().map(byte_len);
        on_backend!(&self.inner.backend, write, |pool, kind| {
            let mut tx = pool.begin().await?;
            let version: i64 = sqlx::query_scalar(next_version_sql(kind))
                .fetch_one(&mut *tx)
                .await?;
            let current: Option<i64> = sqlx::query_scalar(SELECT_VERSION)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            check_version(id, expected, current)?;
            let updated = sqlx::query(UPDATE_BOOK)
                .bind(version)
                .bind(patch.title.as_deref())
                .bind(patch.author.as_deref())
                .bind(patch.year.is_some())
                .bind(patch.year.flatten())
                .bind(patch.language.is_some())
                .bind(patch.language.clone().flatten())
                .bind(patch.text.as_deref())
                .bind(text_bytes)
                .bind(id)
                .bind(expected)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                // Another writer changed it between the read and the update (PostgreSQL).
                drop(tx);
                return Err(self.conflict_now(id, expected).await);
            }
            tx.commit().await?;
            Ok(Written { id, version })
        })
    }

    /// Deletes book `id` (only at version `expected`, when given); returns the delete's own
    /// version, newer than any the book had, once committed.
    pub async fn delete(&self, id: i64, expected: Option<i64>) -> Result<Written, StoreError> {
        on_backend!(&self.inner.backend, write, |pool, kind| {
            let mut tx = pool.begin().await?;
            let version: i64 = sqlx::query_scalar(next_version_sql(kind))
                .fetch_one(&mut *tx)
                .await?;
            let current: Option<i64> = sqlx::query_scalar(SELECT_VERSION)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let current = match expected {
                Some(expected) => check_version(id, expected, current)?,
                None => current.ok_or(StoreError::NotFound(id))?,
            };
            let deleted = sqlx::query(DELETE_BOOK)
                .bind(id)
                .bind(current)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                drop(tx);
                return Err(self.conflict_now(id, current).await);
            }
            tx.commit().await?;
            Ok(Written { id, version })
        })
    }

    /// Up to `limit` books with ids above `after` (from the first when `None`), by id, and
    /// whether more follow.
    pub async fn list(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<BookSummary>, bool), StoreError> {
        let after = after.unwrap_or(0);
        let fetch = i64::from(limit) + 1;
        let mut books = on_backend!(&self.inner.backend, read, |pool, _| {
            let rows = sqlx::query(SELECT_PAGE)
                .bind(after)
                .bind(fetch)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(summary_from_row)
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        let more = books.len() > limit as usize;
        books.truncate(limit as usize);
        Ok((books, more))
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

    /// The conflict to report when a guarded write touched no row: the book moved on (or went).
    async fn conflict_now(&self, id: i64, expected: i64) -> StoreError {
        let current: Result<Option<i64>, sqlx::Error> =
            on_backend!(&self.inner.backend, read, |pool, _| {
                sqlx::query_scalar(SELECT_VERSION)
                    .bind(id)
                    .fetch_optional(pool)
                    .await
            });
        match current {
            Ok(Some(current)) => StoreError::Conflict {
                id,
                expected,
                current,
            },
            Ok(None) => StoreError::NotFound(id),
            Err(e) => StoreError::Database(e),
        }
    }
}

/// Checks a book's `current` version (`None`: no such book) against `expected`.
fn check_version(id: i64, expected: i64, current: Option<i64>) -> Result<i64, StoreError> {
    match current {
        None => Err(StoreError::NotFound(id)),
        Some(current) if current != expected => Err(StoreError::Conflict {
            id,
            expected,
            current,
        }),
        Some(current) => Ok(current),
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

fn byte_len(text: &str) -> i64 {
    i64::try_from(text.len()).unwrap_or(i64::MAX)
}

fn book_from_row<R>(row: &R) -> Result<Book, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Book {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        title: row.try_get("title")?,
        author: row.try_get("author")?,
        year: row.try_get("year")?,
        language: row.try_get("language")?,
        text: row.try_get("text")?,
        text_bytes: row.try_get("text_bytes")?,
    })
}

fn summary_from_row<R>(row: &R) -> Result<BookSummary, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(BookSummary {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        title: row.try_get("title")?,
        author: row.try_get("author")?,
        year: row.try_get("year")?,
        language: row.try_get("language")?,
        text_bytes: row.try_get("text_bytes")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked() {
        assert_eq!(check_version(1, 3, Some(3)).ok(), Some(3));
        assert!(matches!(
            check_version(1, 3, None),
            Err(StoreError::NotFound(1))
        ));
        assert!(matches!(
            check_version(1, 3, Some(5)),
            Err(StoreError::Conflict {
                id: 1,
                expected: 3,
                current: 5
            })
        ));
    }

    #[test]
    fn errors_map_to_rpc_kinds() {
        use mesh::ErrorKind;
        let kind = |e: StoreError| RpcError::from(e).kind();
        assert_eq!(kind(StoreError::NotFound(1)), ErrorKind::NotFound);
        let conflict = StoreError::Conflict {
            id: 1,
            expected: 2,
            current: 3,
        };
        assert_eq!(kind(conflict), ErrorKind::Conflict);
        assert_eq!(
            kind(StoreError::Database(sqlx::Error::PoolTimedOut)),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(StoreError::Database(sqlx::Error::RowNotFound)),
            ErrorKind::Internal
        );
    }
}
