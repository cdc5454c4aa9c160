//! [`IndexError`]: why an index operation failed, and how each failure reaches a caller as an
//! RPC error. Separate so the front, the committer and the searches share one error type
//! without depending on one another.

use std::path::PathBuf;
use tantivy::TantivyError;

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The query could not be parsed (the caller's fault).
    #[error("invalid query: {0}")]
    Query(String),
    /// The index directory cannot be used.
    #[error("cannot open the index directory {path}: {reason}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// tantivy failed.
    #[error("index error: {0}")]
    Tantivy(TantivyError),
    /// The index was closed.
    #[error("the index is closed")]
    Closed,
    /// A blocking index task panicked or was cancelled.
    #[error("index task failed: {0}")]
    Task(String),
}

// The message includes the cause, so it is not chained as a source (it would print twice).
impl From<TantivyError> for IndexError {
    fn from(error: TantivyError) -> Self {
        Self::Tantivy(error)
    }
}

impl From<IndexError> for mesh::RpcError {
    fn from(error: IndexError) -> Self {
        match error {
            IndexError::Query(_) => mesh::RpcError::bad_request(error.to_string()),
            IndexError::Closed => mesh::RpcError::unavailable(error.to_string()),
            _ => mesh::RpcError::internal(error.to_string()),
        }
    }
}
