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

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::directory::error::OpenDirectoryError;
use tantivy::query::QueryParser;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, TantivyError, Term};

/// How long after the first uncommitted change the index commits (and searches see it).
pub const COMMIT_DELAY: Duration = Duration::from_millis(50);

/// The most hits one search returns.
pub const MAX_LIMIT: usize = 100;

/// How deep results can be paged (`offset`).
pub const MAX_OFFSET: usize = 10_000;

/// The longest snippet, in characters.
pub const SNIPPET_CHARS: usize = 200;

/// The writer's memory budget: enough for one 8 MiB book between flushes.
const WRITER_MEMORY: usize = 64 * 1024 * 1024;

/// The name under which the index's analyzer is registered.
const ANALYZER: &str = "folded";

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

/// What the index records in each commit.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CommitPayload {
    last_applied_version: i64,
    catalog_id: Option<String>,
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    version: Field,
    title: Field,
    author: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text_options = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        id: builder.add_i64_field("id", INDEXED | STORED | FAST),
        version: builder.add_i64_field("version", STORED | FAST),
        title: builder.add_text_field("title", text_options.clone()),
        author: builder.add_text_field("author", text_options.clone()),
        text: builder.add_text_field("text", text_options),
    };
    (builder.build(), fields)
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

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

    fn apply(&self, book: IndexedBook) -> Result<Applied, IndexError> {
        let mut state = self.lock();
        if state.tombstones.contains(&book.id) {
            return Ok(Applied::Deleted);
        }
        if state
            .versions
            .get(&book.id)
            .is_some_and(|v| *v >= book.version)
        {
            return Ok(Applied::Stale);
        }
        let writer = state.writer.as_ref().ok_or(IndexError::Closed)?;
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_i64(f.id, book.id);
        doc.add_i64(f.version, book.version);
        doc.add_text(f.title, &book.title);
        doc.add_text(f.author, &book.author);
        doc.add_text(f.text, &book.text);
        // Delete and add under one lock: no commit can fall between them.
        writer.delete_term(Term::from_field_i64(f.id, book.id));
        writer.add_document(doc)?;
        state.versions.insert(book.id, book.version);
        state.last_applied_version = state.last_applied_version.max(book.version);
        self.changed(&mut state);
        Ok(Applied::Indexed)
    }

    fn remove(&self, id: i64, version: Option<i64>) -> Result<bool, IndexError> {
        let mut state = self.lock();
        let writer = state.writer.as_ref().ok_or(IndexError::Closed)?;
        let was_indexed = state.versions.contains_key(&id);
        if was_indexed {
            writer.delete_term(Term::from_field_i64(self.fields.id, id));
            state.versions.remove(&id);
        }
        state.tombstones.insert(id);
        if let Some(version) = version {
            state.last_applied_version = state.last_applied_version.max(version);
        }
        if was_indexed || version.is_some() {
            self.changed(&mut state);
        }
        Ok(was_indexed)
    }

    fn commit(&self, state: &mut State) -> Result<(), IndexError> {
        if !state.dirty {
            return Ok(());
        }
        let payload = serde_json::to_string(&CommitPayload {
            last_applied_version: state.last_applied_version,
            catalog_id: state.catalog_id.clone(),
        })
        .map_err(|e| IndexError::Task(e.to_string()))?;
        let writer = state.writer.as_mut().ok_or(IndexError::Closed)?;
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        state.dirty = false;
        self.reader.reload()?;
        Ok(())
    }

    fn search(
        &self,
        query: &str,
        limit: usize,
        offset: usize,
    ) -> Result<SearchResults, IndexError> {
        let f = self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.title, f.author, f.text]);
        parser.set_conjunction_by_default();
        parser.set_field_boost(f.title, 2.0);
        parser.set_field_boost(f.author, 1.5);
        let query = parser
            .parse_query(query)
            .map_err(|e| IndexError::Query(e.to_string()))?;
        let searcher = self.reader.searcher();
        let limit = limit.clamp(1, MAX_LIMIT);
        let top = TopDocs::with_limit(limit)
            .and_offset(offset.min(MAX_OFFSET))
            .order_by_score();
        let (top, total) = searcher.search(&query, &(top, Count))?;
        let mut snippets = SnippetGenerator::create(&searcher, &*query, f.text)?;
        snippets.set_max_num_chars(SNIPPET_CHARS);
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            let int = |field: Field| doc.get_first(field).and_then(|v| v.as_i64()).unwrap_or(0);
            let snippet = snippets.snippet_from_doc(&doc);
            let snippet = if snippet.is_empty() {
                // The match was in the title or author: show the text's beginning instead.
                lead(&text(f.text), SNIPPET_CHARS)
            } else {
                snippet.to_html()
            };
            hits.push(Hit {
                id: int(f.id),
                version: int(f.version),
                title: text(f.title),
                author: text(f.author),
                score,
                snippet,
            });
        }
        Ok(SearchResults { hits, total })
    }
}

/// Commits in the background: waits for a change, lets more gather for [`COMMIT_DELAY`], then
/// commits them all. Ends when the index is closed or dropped.
fn committer(index: Weak<Inner>) {
    loop {
        let Some(inner) = index.upgrade() else { return };
        {
            let state = inner.lock();
            let (state, _) = inner
                .wake
                .wait_timeout_while(state, Duration::from_millis(500), |s| {
                    !s.dirty && s.writer.is_some()
                })
                .unwrap_or_else(|e| e.into_inner());
            if state.writer.is_none() {
                return;
            }
            if !state.dirty {
                // Woke by the timeout: let go of the index, so dropping it ends this thread.
                continue;
            }
        }
        std::thread::sleep(COMMIT_DELAY);
        let outcome = {
            let mut state = inner.lock();
            inner.commit(&mut state)
        };
        if let Err(error) = outcome {
            tracing::error!(%error, dir = %inner.dir.display(), "index commit failed; retrying");
            drop(inner);
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The ids and versions of the committed documents.
fn committed_versions(reader: &IndexReader) -> Result<HashMap<i64, i64>, IndexError> {
    let searcher = reader.searcher();
    let mut versions = HashMap::new();
    for segment in searcher.segment_readers() {
        let ids = segment.fast_fields().i64("id")?;
        let vers = segment.fast_fields().i64("version")?;
        for doc in segment.doc_ids_alive() {
            if let (Some(id), Some(version)) = (ids.first(doc), vers.first(doc)) {
                let entry = versions.entry(id).or_insert(version);
                *entry = (*entry).max(version);
            }
        }
    }
    Ok(versions)
}

/// The first `max_chars` characters of `text`, HTML-escaped, ending at a word boundary when it
/// is cut.
pub fn lead(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    let cut = match text.char_indices().nth(max_chars) {
        None => text,
        Some((end, _)) => {
            let head = &text[..end];
            match head.rfind(char::is_whitespace) {
                Some(space) if space > 0 => &head[..space],
                _ => head,
            }
        }
    };
    escape_html(cut)
}

/// Escapes `&`, `<`, `>`, `"` and `'`.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The total size of the files in `dir` (tantivy keeps its files in one flat directory).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn leads_are_cut_at_words_and_escaped() {
        assert_eq!(lead("  short  ", 10), "short");
        assert_eq!(lead("one two three", 9), "one two");
        assert_eq!(lead("a<b & c", 20), "a&lt;b &amp; c");
        assert_eq!(lead("ééééé", 3), "ééé");
    }
}
