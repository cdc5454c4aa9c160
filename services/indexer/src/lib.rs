//! `indexer`: the e-library's full-text search, a tantivy index of the library's books that
//! follows the library's events.
//!
//! - `search(query, limit=10, offset=0)` → `{hits: [{id, version, title, author, score,
//!   snippet}], total}`: tantivy query syntax over title, author and text, every term required
//!   unless `OR` says otherwise; the snippet is HTML with the matching terms in `<b>`…`</b>`. A
//!   malformed query is a `BadRequest`; `limit` is 1 to 100.
//! - `stats()` → `{documents, index_bytes, last_applied_version}` (see [`IndexStats`]).
//! - `resync()` → runs a catch-up now and returns its [`CatchUpReport`].
//!
//! Every instance keeps its own index and so subscribes to `book_added`, `book_updated` and
//! `book_deleted` as BROADCAST handlers: each instance gets every event. On an event it fetches
//! the book with `get_book` and indexes it if its version is newer than the indexed one (a
//! `NotFound` means the book was deleted); events can thus arrive twice or out of order without
//! harm. On start, once the subscriptions consume, [`catch_up`] compares the index with
//! `list_books` and fetches or removes what differs, so an indexer that was down, or is new,
//! converges; events that failed twice (and were dead-lettered) are repaired the same way.

#![warn(missing_docs)]

mod index;
mod sync;

pub use index::{
    Applied, COMMIT_DELAY, Hit, Index, IndexError, IndexStats, IndexedBook, MAX_LIMIT, MAX_OFFSET,
    SNIPPET_CHARS, SearchResults, escape_html, lead,
};
pub use sync::{CatchUpReport, SyncError, catch_up, catch_up_with, sync_book};

use mesh::{
    Args, BoxError, Ctx, Dependency, Payload, RpcError, Service, State, Subscription, Timer,
};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The service's usual name.
pub const NAME: &str = "indexer";

/// The library's usual name.
pub const LIBRARY: &str = "library";

/// The library's events this service follows.
pub const EVENTS: [&str; 3] = ["book_added", "book_updated", "book_deleted"];

/// The default number of hits.
pub const DEFAULT_LIMIT: usize = 10;

/// How often each instance reconciles its index with the library (the first time as it starts).
pub const CATCH_UP_EVERY: Duration = Duration::from_secs(600);

/// What the indexer's handlers share.
#[derive(Clone)]
pub struct IndexerState {
    index: Index,
    library: String,
}

/// The indexer's dependency: its index in `dir`, following the library service `library`.
/// Opened when the service starts, closed (its last changes committed) once it has stopped.
#[derive(Debug, Clone)]
pub struct IndexerConfig {
    /// The index's directory (created when missing).
    pub dir: PathBuf,
    /// The library service to follow.
    pub library: String,
}

impl Dependency for IndexerConfig {
    type State = IndexerState;

    async fn open(&self) -> Result<IndexerState, BoxError> {
        let dir = self.dir.clone();
        let index = tokio::task::spawn_blocking(move || Index::open(dir)).await??;
        Ok(IndexerState::new(index, &self.library))
    }

    async fn close(&self, state: IndexerState) {
        if let Err(error) = state.index.close().await {
            tracing::error!(%error, "closing the index");
        }
    }
}

impl IndexerState {
    /// The state of an indexer on `index`, following the library service `library`.
    pub fn new(index: Index, library: &str) -> Self {
        Self {
            index,
            library: library.to_owned(),
        }
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The library service this indexer follows.
    pub fn library(&self) -> &str {
        &self.library
    }
}

/// The service under its usual name, following the library under its usual name, reconciling
/// its index with the library as it starts and every [`CATCH_UP_EVERY`].
pub fn service() -> Service<IndexerState> {
    // In every instance, not once per service: each instance keeps an index of its own, and
    // each must converge with the library.
    service_named(NAME, LIBRARY).timer(
        Timer::every("catch_up", CATCH_UP_EVERY).eager(),
        catch_up_until_done,
    )
}

/// The service called `name`, following the library service called `library`, without the
/// periodic catch-up (tests run several meshes on one broker, and catch up when they choose).
pub fn service_named(name: &str, library: &str) -> Service<IndexerState> {
    Service::new(name)
        .rpc("search", search)
        .rpc("stats", stats)
        .rpc("resync", resync)
        // Reads, and a catch-up, which converges to the same index however often it runs.
        .idempotent("search")
        .idempotent("stats")
        .idempotent("resync")
        .subscribe(
            Subscription::new(library, "book_added").broadcast(),
            on_book_changed,
        )
        .subscribe(
            Subscription::new(library, "book_updated").broadcast(),
            on_book_changed,
        )
        .subscribe(
            Subscription::new(library, "book_deleted").broadcast(),
            on_book_deleted,
        )
}

/// Arguments of `search`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// The query, in tantivy's syntax; a syntax error is a `BadRequest`.
    #[schema(min_length = 1, pattern = "\\S")]
    pub query: String,
    /// How many hits, 1 to 100.
    #[serde(default = "default_limit")]
    #[schema(minimum = 1, maximum = 100)]
    pub limit: usize,
    /// How many hits to skip, at most 10000.
    #[serde(default)]
    #[schema(maximum = 10000)]
    pub offset: usize,
}

fn default_limit() -> usize {
    DEFAULT_LIMIT
}

impl Search {
    /// Checks the query and the bounds.
    pub fn validate(&self) -> Result<(), RpcError> {
        if self.query.trim().is_empty() {
            return Err(RpcError::bad_request("query must not be blank"));
        }
        if !(1..=MAX_LIMIT).contains(&self.limit) {
            return Err(RpcError::bad_request(format!(
                "limit must be from 1 to {MAX_LIMIT}, not {}",
                self.limit
            )));
        }
        if self.offset > MAX_OFFSET {
            return Err(RpcError::bad_request(format!(
                "offset must be at most {MAX_OFFSET}, not {}",
                self.offset
            )));
        }
        Ok(())
    }
}

/// The payload of the library's book events.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
pub struct BookEvent {
    /// The book.
    pub id: i64,
    /// The version the change produced.
    pub version: i64,
}

/// Full-text search.
pub async fn search(
    State(state): State<IndexerState>,
    Args(args): Args<Search>,
) -> Result<SearchResults, RpcError> {
    args.validate()?;
    Ok(state
        .index
        .search(args.query, args.limit, args.offset)
        .await?)
}

/// The index's size and progress.
pub async fn stats(State(state): State<IndexerState>) -> Result<IndexStats, RpcError> {
    Ok(state.index.stats())
}

/// Runs a catch-up with the library now.
pub async fn resync(
    ctx: Ctx,
    State(state): State<IndexerState>,
) -> Result<CatchUpReport, RpcError> {
    Ok(catch_up_with(&ctx.rpc(&state.library), &state.index).await?)
}

/// The `catch_up` timer: reconciles the index with the library, retrying with backoff (up to
/// 30 s apart) while the library cannot be reached, until it succeeds or the service stops.
pub async fn catch_up_until_done(
    ctx: Ctx,
    State(state): State<IndexerState>,
) -> Result<Option<CatchUpReport>, RpcError> {
    let library = ctx.rpc(&state.library);
    let mut backoff = Duration::from_secs(1);
    loop {
        match catch_up_with(&library, &state.index).await {
            Ok(report) => return Ok(Some(report)),
            Err(SyncError::Index(IndexError::Closed)) => return Ok(None),
            Err(error) => {
                tracing::warn!(%error, retry_in_s = backoff.as_secs(), "catch-up failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// `book_added` and `book_updated`: fetch the book and index it if newer.
pub async fn on_book_changed(
    ctx: Ctx,
    State(state): State<IndexerState>,
    Payload(event): Payload<BookEvent>,
) -> Result<(), RpcError> {
    let library = ctx.rpc(&state.library);
    let applied = sync_book(&library, &state.index, event.id, Some(event.version)).await?;
    tracing::debug!(
        id = event.id,
        version = event.version,
        ?applied,
        "book event applied"
    );
    Ok(())
}

/// `book_deleted`: remove the book.
pub async fn on_book_deleted(
    State(state): State<IndexerState>,
    Payload(event): Payload<BookEvent>,
) -> Result<(), RpcError> {
    state.index.remove(event.id, Some(event.version)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh::ErrorKind;

    fn search_args(query: &str, limit: usize, offset: usize) -> Search {
        Search {
            query: query.into(),
            limit,
            offset,
        }
    }

    #[test]
    fn search_arguments_are_checked() {
        assert!(search_args("whale", 10, 0).validate().is_ok());
        assert!(
            search_args("whale", MAX_LIMIT, MAX_OFFSET)
                .validate()
                .is_ok()
        );
        for (args, needle) in [
            (search_args("  ", 10, 0), "blank"),
            (search_args("whale", 0, 0), "limit must be from 1 to 100"),
            (search_args("whale", MAX_LIMIT + 1, 0), "not 101"),
            (search_args("whale", 10, MAX_OFFSET + 1), "offset"),
        ] {
            let error = args.validate().expect_err("refused");
            assert_eq!(error.kind(), ErrorKind::BadRequest);
            assert!(error.message().contains(needle), "{error}");
        }
        let defaults: Search =
            serde_json::from_value(serde_json::json!({"query": "x"})).expect("parses");
        assert_eq!((defaults.limit, defaults.offset), (DEFAULT_LIMIT, 0));
    }

    #[test]
    fn subscribes_to_the_library_as_broadcast() {
        let dir = std::env::temp_dir().join(format!("indexer-svc-{}", uuid::Uuid::new_v4()));
        let service = service_named("idx", "lib");
        assert_eq!(service.methods(), ["resync", "search", "stats"]);
        let queues: Vec<String> = service
            .subscriptions()
            .map(|s| s.queue("idx", "i1"))
            .collect();
        assert_eq!(
            queues,
            [
                "evt-lib-book_added--idx.on_book_added-i1",
                "evt-lib-book_updated--idx.on_book_updated-i1",
                "evt-lib-book_deleted--idx.on_book_deleted-i1",
            ]
        );
        assert!(service.validate().is_ok());
        assert!(self::service().validate().is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn query_errors_are_bad_requests() {
        let dir = std::env::temp_dir().join(format!("indexer-q-{}", uuid::Uuid::new_v4()));
        let index = Index::open(&dir).expect("open");
        let state = State(IndexerState::new(index.clone(), "lib"));
        for bad in ["title:(whale", "nosuchfield:whale", "\"unclosed"] {
            let error = search(state.clone(), Args(search_args(bad, 10, 0)))
                .await
                .expect_err("refused");
            assert_eq!(error.kind(), ErrorKind::BadRequest, "{bad}: {error}");
        }
        drop(index);
        let _ = std::fs::remove_dir_all(dir);
    }
}
