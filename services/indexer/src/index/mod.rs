//! [`Index`]: the tantivy full-text index of the library's books, on disk.
//!
//! Each book is one document: `id` and `version` (stored, fast), `title`, `author` and `text`
//! (tokenised with lower-casing and ASCII folding, stored so hits can show snippets). The index
//! also keeps, in memory, every indexed id with its version (rebuilt from the index on open):
//! the version check that makes applying changes idempotent, and what the catch-up compares
//! with the library.
//!
//! Changes go to the tantivy writer at once and are committed by a background thread within
//! [`COMMIT_DELAY`] of the first uncommitted change (group commit: one commit covers every change
//! made meanwhile), after which searches see them. A crash before the commit loses those
//! changes from the index, not from the library: on start the catch-up sees the older (or
//! missing) versions and fetches the books again.
//!
//! This module is the async front, [`Index`], with the state its parts share; the schema, the
//! changes, the committer, the searches, the snippets and the size on disk each have their own
//! module.

mod changes;
mod committer;
mod error;
mod model;
mod schema;
mod search;
mod size;
mod snippet;

pub use committer::COMMIT_DELAY;
pub use error::IndexError;
pub use model::{Applied, Hit, IndexStats, IndexedBook, SearchResults};
pub use search::{MAX_LIMIT, MAX_OFFSET};
pub use snippet::{SNIPPET_CHARS, escape_html, lead};

use committer::{CommitPayload, committer};
use schema::{ANALYZER, Fields, analyzer, committed_versions, schema};
use size::dir_bytes;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tantivy::directory::MmapDirectory;
use tantivy::directory::error::OpenDirectoryError;
use tantivy::{IndexReader, IndexWriter, ReloadPolicy, TantivyError};

/// The writer's memory budget: enough for one 8 MiB book between flushes.
const WRITER_MEMORY: usize = 64 * 1024 * 1024;

/// The full-text index. Cheap to clone; clones share one writer.
#[derive(Clone)]
pub struct Index {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    index: tantivy::Index,
    reader: IndexReader,
    fields: Fields,
    state: Mutex<State>,
    /// Wakes the committer when a change arrives or the index closes.
    wake: Condvar,
}

struct State {
    /// `None` once closed.
    writer: Option<IndexWriter>,
    versions: HashMap<i64, i64>,
    /// Ids deleted while this process runs. Library ids are never reused, so a deleted id
    /// never comes back; this stops a fetch that raced with the delete from re-adding it.
    tombstones: HashSet<i64>,
    last_applied_version: i64,
    catalog_id: Option<String>,
    dirty: bool,
}

impl Index {
    /// Opens the index in `dir`, creating the directory and an empty index when missing, and
    /// starts its committer. Only one process (one `Index`) can have a directory open.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, IndexError> {
        let dir = dir.as_ref().to_path_buf();
        let directory_error = |reason: String| IndexError::Directory {
            path: dir.clone(),
            reason,
        };
        std::fs::create_dir_all(&dir).map_err(|e| directory_error(e.to_string()))?;
        let directory = MmapDirectory::open(&dir)
            .map_err(|e: OpenDirectoryError| directory_error(e.to_string()))?;
        let (schema, fields) = schema();
        let index = tantivy::Index::open_or_create(directory, schema)?;
        index.tokenizers().register(ANALYZER, analyzer());
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(|e| match e {
                TantivyError::LockFailure(..) => {
                    directory_error(format!("another indexer has it open ({e})"))
                }
                other => IndexError::Tantivy(other),
            })?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let payload: CommitPayload = index
            .load_metas()?
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default();
        let versions = committed_versions(&reader)?;
        let last_applied_version = versions
            .values()
            .copied()
            .max()
            .unwrap_or(0)
            .max(payload.last_applied_version);
        tracing::info!(
            dir = %dir.display(),
            documents = versions.len(),
            last_applied_version,
            "index open"
        );
        let inner = Arc::new(Inner {
            dir,
            index,
            reader,
            fields,
            state: Mutex::new(State {
                writer: Some(writer),
                versions,
                tombstones: HashSet::new(),
                last_applied_version,
                catalog_id: payload.catalog_id,
                dirty: false,
            }),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("index-committer".into())
            .spawn(move || committer(weak))
            .map_err(|e| IndexError::Task(format!("cannot start the committer: {e}")))?;
        Ok(Self { inner })
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The indexed version of book `id`.
    pub fn version_of(&self, id: i64) -> Option<i64> {
        self.inner.lock().versions.get(&id).copied()
    }

    /// Every indexed book id with its version.
    pub fn versions(&self) -> HashMap<i64, i64> {
        self.inner.lock().versions.clone()
    }

    /// Whether a change to `id` at `version` has nothing to add: the index has that version or
    /// a newer one, or the book was deleted.
    pub fn is_current(&self, id: i64, version: i64) -> bool {
        let state = self.inner.lock();
        state.tombstones.contains(&id) || state.versions.get(&id).is_some_and(|v| *v >= version)
    }

    /// The library catalogue this index copies, once known.
    pub fn catalog_id(&self) -> Option<String> {
        self.inner.lock().catalog_id.clone()
    }

    /// Indexes `book` unless the index has its version or a newer one, or it was deleted.
    pub async fn apply(&self, book: IndexedBook) -> Result<Applied, IndexError> {
        self.blocking(move |inner| inner.apply(book)).await
    }

    /// Removes book `id` (deleted in the library at `version`, when known); returns whether it
    /// was indexed.
    pub async fn remove(&self, id: i64, version: Option<i64>) -> Result<bool, IndexError> {
        self.blocking(move |inner| inner.remove(id, version)).await
    }

    /// Empties the index and makes it a copy of catalogue `catalog_id` (whose books the
    /// catch-up then fetches).
    pub async fn reset(&self, catalog_id: String) -> Result<(), IndexError> {
        self.blocking(move |inner| {
            let mut state = inner.lock();
            let writer = state.writer.as_ref().ok_or(IndexError::Closed)?;
            writer.delete_all_documents()?;
            state.versions.clear();
            state.tombstones.clear();
            state.last_applied_version = 0;
            state.catalog_id = Some(catalog_id);
            inner.changed(&mut state);
            Ok(())
        })
        .await
    }

    /// Records which catalogue the index copies (the first time it learns it).
    pub fn set_catalog_id(&self, catalog_id: &str) {
        let mut state = self.inner.lock();
        if state.catalog_id.as_deref() != Some(catalog_id) {
            state.catalog_id = Some(catalog_id.to_owned());
            self.inner.changed(&mut state);
        }
    }

    /// Up to `limit` hits (1 to [`MAX_LIMIT`]) after skipping `offset`, best first, with the
    /// total number of matches. `query` uses tantivy's syntax (`whale`, `title:whale`,
    /// `"white whale"`, `whale -ahab`, ...); every term must match unless `OR` says otherwise.
    pub async fn search(
        &self,
        query: String,
        limit: usize,
        offset: usize,
    ) -> Result<SearchResults, IndexError> {
        self.blocking(move |inner| inner.search(&query, limit, offset))
            .await
    }

    /// Counts and progress.
    pub fn stats(&self) -> IndexStats {
        let (documents, last_applied_version) = {
            let state = self.inner.lock();
            (state.versions.len() as u64, state.last_applied_version)
        };
        IndexStats {
            documents,
            index_bytes: dir_bytes(&self.inner.dir),
            last_applied_version,
        }
    }

    /// Commits now, if anything changed, and makes the changes searchable.
    pub async fn flush(&self) -> Result<(), IndexError> {
        self.blocking(|inner| {
            let mut state = inner.lock();
            inner.commit(&mut state)
        })
        .await
    }

    /// Commits, waits for background merges and releases the directory, so another `Index`
    /// can open it. Later changes fail with [`IndexError::Closed`]; searches still work.
    pub async fn close(&self) -> Result<(), IndexError> {
        self.blocking(|inner| {
            let writer = {
                let mut state = inner.lock();
                inner.commit(&mut state)?;
                state.writer.take()
            };
            inner.wake.notify_all();
            if let Some(writer) = writer {
                writer.wait_merging_threads()?;
            }
            Ok(())
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<T, IndexError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| IndexError::Task(e.to_string()))?
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a few map operations next to a writer call; a panic
        // between them leaves at worst a version the catch-up corrects.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks uncommitted changes and wakes the committer.
    fn changed(&self, state: &mut State) {
        if !state.dirty {
            state.dirty = true;
            self.wake.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("indexer-unit-{}", uuid::Uuid::new_v4()))
    }

    fn book(id: i64, version: i64, title: &str, text: &str) -> IndexedBook {
        IndexedBook {
            id,
            version,
            title: title.into(),
            author: "Herman Melville".into(),
            text: text.into(),
        }
    }

    #[tokio::test]
    async fn snippets_highlight_matches_and_escape_html() {
        let dir = temp_dir();
        let index = Index::open(&dir).expect("open");
        let text = "Call me Ishmael. Some years ago <never mind how long> I went to sea \
                    and saw the white Whale.";
        index
            .apply(book(1, 1, "Moby-Dick", text))
            .await
            .expect("apply");
        index
            .apply(book(2, 2, "Whale songs", "Nothing to see."))
            .await
            .expect("apply");
        index.flush().await.expect("flush");

        let results = index.search("whale".into(), 10, 0).await.expect("search");
        assert_eq!(results.total, 2);
        let moby = results
            .hits
            .iter()
            .find(|h| h.id == 1)
            .expect("book 1 found");
        assert!(moby.snippet.contains("<b>Whale</b>"), "{}", moby.snippet);
        assert!(
            moby.snippet.contains("&lt;never mind how long&gt;"),
            "{}",
            moby.snippet
        );
        // A title-only match shows the text's beginning, unhighlighted.
        let songs = results.hits.iter().find(|h| h.id == 2).expect("book 2");
        assert_eq!(songs.snippet, "Nothing to see.");
        assert_eq!(songs.title, "Whale songs");

        // Folding and lower-casing: "ISHMAËL" finds "Ishmael".
        let folded = index.search("ISHMAËL".into(), 10, 0).await.expect("search");
        assert_eq!(folded.hits.len(), 1);
        // Every term must match.
        let both = index
            .search("whale sea".into(), 10, 0)
            .await
            .expect("search");
        assert_eq!(both.total, 1);
        let err = index.search("title:(".into(), 10, 0).await;
        assert!(matches!(err, Err(IndexError::Query(_))), "{err:?}");
        drop(index);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn changes_apply_by_version_and_survive_a_reopen() {
        let dir = temp_dir();
        let index = Index::open(&dir).expect("open");
        assert_eq!(
            index
                .apply(book(7, 5, "Old", "alpha"))
                .await
                .expect("apply"),
            Applied::Indexed
        );
        assert_eq!(
            index
                .apply(book(7, 5, "Same", "beta"))
                .await
                .expect("apply"),
            Applied::Stale
        );
        assert_eq!(
            index
                .apply(book(7, 3, "Older", "gamma"))
                .await
                .expect("apply"),
            Applied::Stale
        );
        assert_eq!(
            index
                .apply(book(7, 9, "New", "delta"))
                .await
                .expect("apply"),
            Applied::Indexed
        );
        assert!(index.is_current(7, 9));
        assert!(!index.is_current(7, 10));
        index
            .apply(book(8, 10, "Gone", "omega"))
            .await
            .expect("apply");
        assert!(index.remove(8, Some(11)).await.expect("remove"));
        // A fetch that raced with the delete cannot bring it back.
        assert_eq!(
            index
                .apply(book(8, 10, "Gone", "omega"))
                .await
                .expect("apply"),
            Applied::Deleted
        );
        index.set_catalog_id("cat-1");
        index.close().await.expect("close");
        assert!(matches!(
            index.apply(book(9, 12, "Late", "x")).await,
            Err(IndexError::Closed)
        ));

        let reopened = Index::open(&dir).expect("reopen");
        assert_eq!(reopened.versions(), HashMap::from([(7, 9)]));
        assert_eq!(reopened.catalog_id().as_deref(), Some("cat-1"));
        let stats = reopened.stats();
        assert_eq!(stats.documents, 1);
        assert_eq!(stats.last_applied_version, 11);
        assert!(stats.index_bytes > 0);
        let found = reopened.search("delta".into(), 5, 0).await.expect("search");
        assert_eq!(found.hits.len(), 1);
        assert_eq!(found.hits[0].version, 9);
        assert_eq!(
            reopened
                .search("alpha".into(), 5, 0)
                .await
                .expect("search")
                .total,
            0
        );
        reopened.reset("cat-2".into()).await.expect("reset");
        reopened.flush().await.expect("flush");
        assert_eq!(reopened.stats().documents, 0);
        assert_eq!(
            reopened
                .search("delta".into(), 5, 0)
                .await
                .expect("search")
                .total,
            0
        );
        drop(reopened);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_second_writer_on_one_directory_is_refused() {
        let dir = temp_dir();
        let first = Index::open(&dir).expect("open");
        let second = Index::open(&dir);
        assert!(
            matches!(second, Err(IndexError::Directory { .. })),
            "{:?}",
            second.err()
        );
        first.close().await.expect("close");
        assert!(Index::open(&dir).is_ok(), "free again after close");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn changes_become_searchable_without_a_flush() {
        let dir = temp_dir();
        let index = Index::open(&dir).expect("open");
        index
            .apply(book(1, 1, "Bartleby", "I would prefer not to"))
            .await
            .expect("apply");
        let started = std::time::Instant::now();
        loop {
            let found = index.search("prefer".into(), 5, 0).await.expect("search");
            if found.total == 1 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "not searchable in time"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(index);
        let _ = std::fs::remove_dir_all(dir);
    }
}
