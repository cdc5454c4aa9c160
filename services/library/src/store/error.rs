//! [`StoreError`]: why the store failed, and how each failure reaches a caller as an RPC error.
//! Separate so opening, reads and writes share one error type without depending on one
//! another.

use mesh::RpcError;
use std::path::PathBuf;

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

#[cfg(test)]
mod tests {
    use super::*;

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
