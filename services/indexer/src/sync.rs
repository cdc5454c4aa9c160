//! Keeping the index a copy of the library: applying one book's change ([`sync_book`]) and
//! catching up with the whole catalogue ([`catch_up`]).

use crate::index::{Applied, Index, IndexError, IndexedBook};
use futures_util::{StreamExt, stream};
use mesh::{CallError, Client, ServiceProxy};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;
use std::time::Instant;

/// Books fetched at once during a catch-up.
const FETCH_CONCURRENCY: usize = 4;

/// The page size the catch-up asks `list_books` for.
const PAGE: u32 = 500;

/// Why a catch-up or a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Calling the library failed.
    #[error("calling the library failed: {0}")]
    Library(CallError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

// The message includes the cause, so it is not chained as a source (it would print twice).
impl From<CallError> for SyncError {
    fn from(error: CallError) -> Self {
        Self::Library(error)
    }
}

impl From<SyncError> for mesh::RpcError {
    fn from(error: SyncError) -> Self {
        match error {
            SyncError::Library(e) => e.into(),
            SyncError::Index(e) => e.into(),
        }
    }
}

/// What a catch-up did.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct CatchUpReport {
    /// Books the library listed.
    pub listed: usize,
    /// Books fetched because the index lacked them or had an older version.
    pub fetched: usize,
    /// Books (re)indexed.
    pub indexed: usize,
    /// Indexed books removed because the library no longer has them.
    pub removed: usize,
    /// Whether the index was emptied first because it copied another catalogue.
    pub reset: bool,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
}

/// A page of the library's `list_books`, the fields the catch-up uses.
#[derive(Debug, Deserialize)]
struct Page {
    books: Vec<Summary>,
    next_cursor: Option<String>,
    catalog_id: String,
}

#[derive(Debug, Deserialize)]
struct Summary {
    id: i64,
    version: i64,
}

/// Brings book `id` up to date from the library through `library`: fetches it and indexes it
/// if newer; a book the library no longer has is removed. `version` is what the caller knows
/// of it (from an event or a listing): when the index has it already, nothing is fetched.
pub async fn sync_book(
    library: &ServiceProxy,
    index: &Index,
    id: i64,
    version: Option<i64>,
) -> Result<Applied, SyncError> {
    if version.is_some_and(|v| index.is_current(id, v)) {
        return Ok(Applied::Stale);
    }
    match library
        .call_typed::<_, IndexedBook>("get_book", &json!({"id": id}))
        .await
    {
        Ok(book) => Ok(index.apply(book).await?),
        Err(CallError::Remote(error)) if error.exc_type == "NotFound" => {
            index.remove(id, None).await?;
            Ok(Applied::Deleted)
        }
        Err(error) => Err(error.into()),
    }
}

/// Makes `index` converge to `library`'s catalogue: pages through `list_books`, fetches the
/// books the index lacks or has at an older version, and removes the indexed books the library
/// no longer has. Run it once the event subscriptions consume, so nothing falls between the
/// two: a change after a book's page was read arrives as an event.
pub async fn catch_up(
    client: &Client,
    library: &str,
    index: &Index,
) -> Result<CatchUpReport, SyncError> {
    catch_up_with(&client.rpc(library), index).await
}

/// [`catch_up`] through a proxy (a handler's `ctx.rpc(library)`, say).
pub async fn catch_up_with(
    library: &ServiceProxy,
    index: &Index,
) -> Result<CatchUpReport, SyncError> {
    let started = Instant::now();
    let mut report = CatchUpReport::default();
    let mut before = index.versions();
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let page: Page = library
            .call_typed("list_books", &json!({"cursor": cursor, "limit": PAGE}))
            .await?;
        if cursor.is_none() {
            match index.catalog_id() {
                Some(known) if known != page.catalog_id => {
                    tracing::warn!(
                        was = %known,
                        now = %page.catalog_id,
                        "the library is another catalogue now; rebuilding the index"
                    );
                    index.reset(page.catalog_id.clone()).await?;
                    before.clear();
                    report.reset = true;
                }
                Some(_) => {}
                None => index.set_catalog_id(&page.catalog_id),
            }
        }
        report.listed += page.books.len();
        let stale: Vec<(i64, i64)> = page
            .books
            .iter()
            .inspect(|b| {
                seen.insert(b.id);
            })
            .filter(|b| !index.is_current(b.id, b.version))
            .map(|b| (b.id, b.version))
            .collect();
        report.fetched += stale.len();
        let outcomes: Vec<Result<Applied, SyncError>> = stream::iter(stale)
            .map(|(id, version)| sync_book(library, index, id, Some(version)))
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        for outcome in outcomes {
            if outcome? == Applied::Indexed {
                report.indexed += 1;
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    // An id indexed before the listing and absent from it was deleted before its page was
    // read (ids are never reused). Ids indexed since (from events) are not in `before`.
    for id in before.keys().filter(|id| !seen.contains(id)) {
        if index.remove(*id, None).await? {
            report.removed += 1;
        }
    }
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        listed = report.listed,
        fetched = report.fetched,
        indexed = report.indexed,
        removed = report.removed,
        reset = report.reset,
        elapsed_ms = report.elapsed_ms,
        "caught up with the library"
    );
    Ok(report)
}
