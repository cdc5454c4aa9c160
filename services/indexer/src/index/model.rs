//! What the index takes and returns: the books it indexes, the outcome of a change, search hits
//! and its stats. Plain data, kept apart from the tantivy code that produces it.

#[cfg(doc)]
use super::COMMIT_DELAY;
use serde::{Deserialize, Serialize};

/// A book as the index takes it (the fields of the library's `get_book` it uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedBook {
    /// The book's id.
    pub id: i64,
    /// Its version.
    pub version: i64,
    /// The title.
    pub title: String,
    /// The author.
    pub author: String,
    /// The full text.
    pub text: String,
}

/// What applying a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The book was (re)indexed.
    Indexed,
    /// The index already had this version or a newer one; nothing changed.
    Stale,
    /// The book was deleted (here or in the library); nothing changed.
    Deleted,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hit {
    /// The book's id.
    pub id: i64,
    /// The indexed version.
    pub version: i64,
    /// The title.
    pub title: String,
    /// The author.
    pub author: String,
    /// The relevance (BM25).
    pub score: f32,
    /// A fragment of the text, HTML-escaped, with the matching terms in `<b>`…`</b>`.
    pub snippet: String,
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResults {
    /// The hits, best first.
    pub hits: Vec<Hit>,
    /// How many books match in all.
    pub total: usize,
}

/// The index's size and progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IndexStats {
    /// Books in the index (changes applied; searchable within [`COMMIT_DELAY`]).
    pub documents: u64,
    /// The size of the index directory, in bytes.
    pub index_bytes: u64,
    /// The highest library version among the changes this index has applied (added, updated or
    /// deleted books), 0 before any. Library versions come from one library-wide sequence, so
    /// this is a high-water mark: how far the index has got. It is not a promise that every
    /// lower version is in (events are handled concurrently, so they can be applied out of
    /// order); the catch-up is what guarantees convergence.
    pub last_applied_version: i64,
}
