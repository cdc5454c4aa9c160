//! The e-library end to end, through the gateway and the real RabbitMQ: the library stores books
//! and dispatches events, the indexer follows them and serves search. Books are added, found,
//! edited, deleted; 500 generated books are searched for known words; an indexer that was down
//! catches up; a library that restarts keeps every acknowledged book.

mod common;

use common::{Harness, QueueCleanup, assert_problem, mesh_config, unique, wait_until};
use futures_util::{StreamExt, stream};
use indexer::Index;
use library::{LibraryConfig, Store};
use mesh::{Mesh, MeshConfig, RunningService, Subscription};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("warren-elibrary-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes the queues the indexer `name` following `library` declared as instance `instance`.
fn indexer_queues(cleanup: &mut QueueCleanup, library: &str, name: &str, instance: &str) {
    for event in indexer::EVENTS {
        cleanup.queue(
            &Subscription::new(library, event)
                .broadcast()
                .queue(name, instance),
        );
    }
}

/// A gateway, a library on SQLite in a fresh directory and (optionally) an indexer.
struct Elibrary {
    h: Harness,
    library: String,
    indexer: String,
    data: TempDir,
    config: LibraryConfig,
    store: Store,
}

impl Elibrary {
    async fn start(config: impl FnOnce(PathBuf) -> LibraryConfig) -> Self {
        let mut h = Harness::start().await;
        let library = unique("lib");
        let indexer = unique("idx");
        h.cleanup.events_of(&library);
        let data = TempDir::new();
        let config = config(data.path().join("library"));
        let store = Store::open(&config).await.expect("open the store");
        h.serve(
            library::service_named(&library).with_state(library::LibraryState::new(store.clone())),
        )
        .await;
        Self {
            h,
            library,
            indexer,
            data,
            config,
            store,
        }
    }

    fn index_dir(&self) -> PathBuf {
        self.data.path().join("indexer")
    }

    /// Serves an indexer as instance `instance` on its own connection, then catches up.
    async fn start_indexer(&mut self, instance: &str) -> (Mesh, RunningService, Index) {
        let (mesh, running, index, _) = self.start_indexer_reporting(instance).await;
        (mesh, running, index)
    }

    /// [`Elibrary::start_indexer`], with what its catch-up did.
    async fn start_indexer_reporting(
        &mut self,
        instance: &str,
    ) -> (Mesh, RunningService, Index, indexer::CatchUpReport) {
        indexer_queues(&mut self.h.cleanup, &self.library, &self.indexer, instance);
        self.h.cleanup.service(&self.indexer);
        let mesh = Mesh::amqp(MeshConfig {
            instance_id: instance.to_owned(),
            ..mesh_config()
        })
        .await
        .expect("broker");
        let dir = self.index_dir();
        let index = tokio::task::spawn_blocking(move || Index::open(dir))
            .await
            .expect("task")
            .expect("open the index");
        let state = indexer::IndexerState::new(index.clone(), &self.library);
        let service = indexer::service_named(&self.indexer, &self.library).with_state(state);
        let running = mesh.serve(service).await.expect("serve");
        let client = mesh.client(&self.indexer).await.expect("client");
        let report = indexer::catch_up(&client, &self.library, &index)
            .await
            .expect("catch up");
        (mesh, running, index, report)
    }

    async fn call(&self, service: &str, method: &str, body: Value) -> (u16, Value) {
        let r = self.h.post(service, method, body).await;
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    async fn lib(&self, method: &str, body: Value) -> Value {
        let (status, value) = self.call(&self.library, method, body).await;
        assert_eq!(status, 200, "library.{method}: {value}");
        value
    }

    async fn search(&self, query: &str, limit: usize) -> Value {
        let body = json!({"query": query, "limit": limit});
        let (status, value) = self.call(&self.indexer, "search", body).await;
        assert_eq!(status, 200, "search {query}: {value}");
        value
    }

    /// The ids `query` finds (first page of up to 100).
    async fn found(&self, query: &str) -> BTreeSet<i64> {
        ids(&self.search(query, 100).await["hits"])
    }

    /// Waits until `query` finds exactly `expected`.
    async fn wait_found(&self, query: &str, expected: &BTreeSet<i64>) {
        let ok = wait_until(Duration::from_secs(10), || async {
            &self.found(query).await == expected
        })
        .await;
        assert!(
            ok,
            "{query}: found {:?}, expected {expected:?}",
            self.found(query).await
        );
    }

    /// Every book in the library, id → version, through `list_books`.
    async fn catalogue(&self) -> BTreeMap<i64, i64> {
        let mut books = BTreeMap::new();
        let mut cursor = Value::Null;
        loop {
            let page = self
                .lib("list_books", json!({"cursor": cursor, "limit": 37}))
                .await;
            for book in page["books"].as_array().expect("books") {
                assert!(book.get("text").is_none(), "summaries carry no text");
                books.insert(int(&book["id"]), int(&book["version"]));
            }
            if page["next_cursor"].is_null() {
                return books;
            }
            cursor = page["next_cursor"].clone();
        }
    }
}

fn int(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("not an integer: {value}"))
}

fn ids(hits: &Value) -> BTreeSet<i64> {
    hits.as_array()
        .expect("hits")
        .iter()
        .map(|h| int(&h["id"]))
        .collect()
}

#[tokio::test]
async fn a_book_is_added_found_edited_and_deleted_through_the_gateway() {
    let mut e = Elibrary::start(LibraryConfig::in_dir).await;
    let (_broker, _indexer, _index) = e.start_indexer(&unique("inst")).await;

    let added = e
        .lib(
            "add_book",
            json!({
                "title": "Moby-Dick", "author": "Herman Melville", "year": 1851, "language": "en",
                "text": "Call me Ishmael. I went to sea, and met the leviathan zanzibarquux."
            }),
        )
        .await;
    let id = int(&added["id"]);
    let v1 = int(&added["version"]);
    let only = BTreeSet::from([id]);
    e.wait_found("zanzibarquux", &only).await;
    let hit = &e.search("leviathan", 10).await["hits"][0];
    assert_eq!(hit["title"], "Moby-Dick");
    assert_eq!(hit["author"], "Herman Melville");
    assert!(hit["score"].as_f64().unwrap_or(0.0) > 0.0, "{hit}");
    let snippet = hit["snippet"].as_str().unwrap_or("");
    assert!(snippet.contains("<b>leviathan</b>"), "{snippet}");
    assert_eq!(e.found("melville").await, only, "the author is searchable");

    // Edit the text: the new word is found, the old one is not.
    let updated = e
        .lib(
            "update_book",
            json!({"id": id, "version": v1, "text": "Now the whale is called quokkabrill."}),
        )
        .await;
    let v2 = int(&updated["version"]);
    assert!(v2 > v1);
    e.wait_found("quokkabrill", &only).await;
    e.wait_found("zanzibarquux", &BTreeSet::new()).await;
    let book = e.lib("get_book", json!({"id": id})).await;
    assert_eq!(book["text"], "Now the whale is called quokkabrill.");
    assert_eq!(book["title"], "Moby-Dick", "untouched fields stay");
    assert_eq!(int(&book["version"]), v2);

    // A stale version is a conflict.
    let r =
        e.h.post(
            &e.library,
            "update_book",
            json!({"id": id, "version": v1, "title": "Stale"}),
        )
        .await;
    let problem = assert_problem(r, 409, "conflict").await;
    assert_eq!(problem["exc_type"], "Conflict");

    // Delete: gone from search and from the library.
    let deleted = e.lib("delete_book", json!({"id": id})).await;
    assert!(int(&deleted["version"]) > v2);
    e.wait_found("quokkabrill", &BTreeSet::new()).await;
    let r = e.h.post(&e.library, "get_book", json!({"id": id})).await;
    assert_problem(r, 404, "not-found").await;
    let stats = e.call(&e.indexer, "stats", json!({})).await.1;
    assert_eq!(stats["documents"], 0, "{stats}");
    assert!(int(&stats["last_applied_version"]) >= int(&deleted["version"]));
    assert!(int(&stats["index_bytes"]) > 0);
}

#[tokio::test]
async fn invalid_requests_are_400_problems() {
    let mut e = Elibrary::start(|dir| LibraryConfig {
        max_book_bytes: 64 * 1024,
        ..LibraryConfig::in_dir(dir)
    })
    .await;
    let (_broker, _indexer, _index) = e.start_indexer(&unique("inst")).await;
    let book = |patch: Value| {
        let mut body = json!({"title": "T", "author": "A", "text": "x"});
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (
            "add_book",
            book(json!({"title": "   "})),
            "title must not be blank",
        ),
        (
            "add_book",
            book(json!({"author": ""})),
            "author must not be blank",
        ),
        (
            "add_book",
            book(json!({"year": 99999})),
            "year must be from -3000",
        ),
        (
            "add_book",
            book(json!({"language": "english language"})),
            "language",
        ),
        (
            "add_book",
            book(json!({"text": "y".repeat(64 * 1024 + 1)})),
            "the limit is 65536 bytes",
        ),
        ("add_book", book(json!({"isbn": "0-14-243724-7"})), "isbn"),
        ("add_book", json!({"title": "T"}), "missing field"),
        (
            "update_book",
            json!({"id": 1, "version": 1}),
            "nothing to update",
        ),
        (
            "list_books",
            json!({"limit": 501}),
            "limit must be from 1 to 500",
        ),
        ("list_books", json!({"cursor": "page-2"}), "invalid cursor"),
        (
            "get_book",
            json!({"id": -4}),
            "id must be a positive integer",
        ),
    ];
    for (method, body, needle) in cases {
        let r = e.h.post(&e.library, method, body).await;
        let problem = assert_problem(r, 400, "bad-request").await;
        let detail = problem["detail"].as_str().unwrap_or("");
        assert!(detail.contains(needle), "{method}: {detail}");
    }
    for (query, needle) in [
        ("title:(whale", "invalid query"),
        ("nosuchfield:whale", "invalid query"),
        ("   ", "blank"),
    ] {
        let r =
            e.h.post(&e.indexer, "search", json!({"query": query}))
                .await;
        let problem = assert_problem(r, 400, "bad-request").await;
        let detail = problem["detail"].as_str().unwrap_or("");
        assert!(detail.contains(needle), "{query}: {detail}");
    }
    let r =
        e.h.post(&e.indexer, "search", json!({"query": "x", "limit": 1000}))
            .await;
    assert_problem(r, 400, "bad-request").await;
    let r =
        e.h.post(&e.library, "get_book", json!({"id": 424242}))
            .await;
    assert_problem(r, 404, "not-found").await;
    let r =
        e.h.post(&e.library, "delete_book", json!({"id": 424242}))
            .await;
    assert_problem(r, 404, "not-found").await;
}

#[tokio::test]
async fn an_eight_mib_book_fits_through_the_gateway() {
    let e = Elibrary::start(LibraryConfig::in_dir).await;
    // 8 MiB of ordinary text, with quotes and newlines to escape, at exactly the default limit.
    let line = "\"Whale!\" cried the lookout, and the crew ran to the rail.\n";
    let mut text = line.repeat(library::DEFAULT_MAX_BOOK_BYTES / line.len() + 1);
    text.truncate(library::DEFAULT_MAX_BOOK_BYTES);
    let added = e
        .lib(
            "add_book",
            json!({"title": "Big", "author": "Anon", "text": text}),
        )
        .await;
    let book = e.lib("get_book", json!({"id": added["id"]})).await;
    assert_eq!(
        int(&book["text_bytes"]),
        library::DEFAULT_MAX_BOOK_BYTES as i64
    );
    assert_eq!(book["text"].as_str().map(str::len), Some(text.len()));
    text.push('!');
    let r =
        e.h.post(
            &e.library,
            "add_book",
            json!({"title": "Big", "author": "Anon", "text": text}),
        )
        .await;
    assert_problem(r, 400, "bad-request").await;
}

/// The text of generated book `n`: filler, a word only it has, and words it shares with the
/// books of the same residue mod 7 and mod 5.
fn generated_text(n: usize) -> String {
    const FILLER: [&str; 16] = [
        "the", "ship", "sailed", "north", "under", "grey", "skies", "while", "sailors", "sang",
        "about", "home", "and", "harbour", "lights", "again",
    ];
    let mut words: Vec<String> = (0..300)
        .map(|i| FILLER[(n * 7 + i * 13) % FILLER.len()].to_owned())
        .collect();
    words.insert(40, format!("uniq{n}word"));
    words.insert(120, format!("sept{}", n % 7));
    words.insert(200, format!("quint{}", n % 5));
    words.join(" ")
}

#[tokio::test]
async fn five_hundred_books_are_found_by_their_known_words() {
    let mut e = Elibrary::start(LibraryConfig::in_dir).await;
    let (_broker, _indexer, index) = e.start_indexer(&unique("inst")).await;

    let started = Instant::now();
    let adds = stream::iter(0..500)
        .map(|n| {
            let body = json!({
                "title": format!("Voyage {n}"),
                "author": format!("Captain{}", n % 10),
                "text": generated_text(n),
            });
            let e = &e;
            async move { (n, int(&e.lib("add_book", body).await["id"])) }
        })
        .buffer_unordered(8)
        .collect::<Vec<(usize, i64)>>()
        .await;
    let added_in = started.elapsed();
    let id_of: BTreeMap<usize, i64> = adds.into_iter().collect();
    assert_eq!(id_of.len(), 500);
    let indexed = wait_until(Duration::from_secs(60), || async {
        index.stats().documents == 500
    })
    .await;
    assert!(indexed, "indexed {} of 500", index.stats().documents);
    // Searches see a change once its group commit lands; the last book's commit may land before
    // an earlier book's (the adds run eight at a time), so wait for each probed one.
    let probes = [0, 1, 77, 250, 498, 499];
    for n in probes {
        let id = *id_of.get(&n).expect("a probed book");
        e.wait_found(&format!("uniq{n}word"), &BTreeSet::from([id]))
            .await;
    }
    let indexed_in = started.elapsed();

    let expect = |pred: &dyn Fn(usize) -> bool| -> BTreeSet<i64> {
        id_of
            .iter()
            .filter(|(n, _)| pred(**n))
            .map(|(_, id)| *id)
            .collect()
    };
    let mut latencies = Vec::new();
    for n in probes {
        let t = Instant::now();
        let result = e.search(&format!("uniq{n}word"), 10).await;
        latencies.push(t.elapsed());
        assert_eq!(result["total"], 1);
        assert_eq!(int(&result["hits"][0]["id"]), id_of[&n]);
        let snippet = result["hits"][0]["snippet"].as_str().unwrap_or("");
        assert!(
            snippet.contains(&format!("<b>uniq{n}word</b>")),
            "{snippet}"
        );
    }
    for k in 0..7 {
        let t = Instant::now();
        let result = e.search(&format!("sept{k}"), 100).await;
        latencies.push(t.elapsed());
        let expected = expect(&|n| n % 7 == k);
        assert_eq!(int(&result["total"]) as usize, expected.len());
        assert_eq!(ids(&result["hits"]), expected, "sept{k}");
    }
    // Every term must match: the intersection of two groups.
    let result = e.search("sept3 quint2", 100).await;
    assert_eq!(ids(&result["hits"]), expect(&|n| n % 7 == 3 && n % 5 == 2));
    // Field queries and OR.
    assert_eq!(
        e.found("author:captain4 AND sept1").await,
        expect(&|n| n % 10 == 4 && n % 7 == 1)
    );
    assert_eq!(
        e.found("uniq3word OR uniq4word").await,
        expect(&|n| n == 3 || n == 4)
    );
    // Paging: offset walks the same ranking.
    let first = e.search("quint0", 50).await;
    let (status, second) = e
        .call(
            &e.indexer,
            "search",
            json!({"query": "quint0", "limit": 50, "offset": 50}),
        )
        .await;
    assert_eq!(status, 200);
    let mut paged = ids(&first["hits"]);
    paged.extend(ids(&second["hits"]));
    assert_eq!(paged, expect(&|n| n % 5 == 0));

    latencies.sort();
    eprintln!(
        "500 books: added through the gateway in {added_in:?}, all searchable after \
         {indexed_in:?}; search latency median {:?}, max {:?} (debug build)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

#[tokio::test]
async fn an_indexer_that_was_down_catches_up() {
    let mut e = Elibrary::start(LibraryConfig::in_dir).await;
    let first_instance = unique("inst");
    let (broker, running, index) = e.start_indexer(&first_instance).await;
    let mut written = BTreeMap::new();
    for n in 0..20 {
        let body = json!({"title": format!("Early {n}"), "author": "A", "text": generated_text(n)});
        let w = e.lib("add_book", body).await;
        written.insert(int(&w["id"]), int(&w["version"]));
    }
    assert!(
        wait_until(Duration::from_secs(10), || async {
            index.stats().documents == 20
        })
        .await
    );
    running.stop().await;
    index.close().await.expect("close");
    drop(index);
    broker.close().await;

    // While it is down: 50 added, 10 edited, 3 deleted.
    for n in 20..70 {
        let body = json!({"title": format!("Late {n}"), "author": "B", "text": generated_text(n)});
        let w = e.lib("add_book", body).await;
        written.insert(int(&w["id"]), int(&w["version"]));
    }
    let early: Vec<(i64, i64)> = written.iter().take(13).map(|(i, v)| (*i, *v)).collect();
    for (id, version) in &early[..10] {
        let w = e
            .lib(
                "update_book",
                json!({"id": id, "version": version, "text": format!("edited{id}later")}),
            )
            .await;
        written.insert(*id, int(&w["version"]));
    }
    for (id, _) in &early[10..] {
        e.lib("delete_book", json!({"id": id})).await;
        written.remove(id);
    }

    // Back as a new instance (a new pod): its broadcast queues are new and empty, so only the
    // catch-up can bring it up to date.
    let (_broker, _running, index, report) = e.start_indexer_reporting(&unique("inst")).await;
    assert_eq!(report.listed, 67);
    assert_eq!(report.fetched, 60, "50 added and 10 edited: {report:?}");
    assert_eq!(report.indexed, 60);
    assert_eq!(report.removed, 3, "{report:?}");
    assert!(!report.reset);
    eprintln!("catch-up after downtime: {report:?}");
    let catalogue = e.catalogue().await;
    assert_eq!(catalogue, written);
    let indexed: BTreeMap<i64, i64> = index.versions().into_iter().collect();
    assert_eq!(indexed, catalogue, "the index converged to the library");
    let (edited, _) = early[0];
    e.wait_found(&format!("edited{edited}later"), &BTreeSet::from([edited]))
        .await;
    let (deleted, _) = early[12];
    e.wait_found(&format!("uniq{}word", 12), &BTreeSet::new())
        .await;
    assert!(!indexed.contains_key(&deleted));

    // Another catch-up has nothing to do.
    let (status, report) = e.call(&e.indexer, "resync", json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["listed"], 67);
    assert_eq!(report["fetched"], 0);
    assert_eq!(report["removed"], 0);
}

#[tokio::test]
async fn the_catch_up_of_a_new_indexer_fetches_and_removes() {
    let mut e = Elibrary::start(LibraryConfig::in_dir).await;
    for n in 0..12 {
        let body = json!({"title": format!("Book {n}"), "author": "A", "text": generated_text(n)});
        e.lib("add_book", body).await;
    }
    // An index left from an older copy: a book the library deleted, and one at an old version.
    let dir = e.index_dir();
    let stale = tokio::task::spawn_blocking(move || Index::open(dir))
        .await
        .expect("task")
        .expect("open");
    let ghost = indexer::IndexedBook {
        id: 9_999,
        version: 1,
        title: "Ghost".into(),
        author: "Nobody".into(),
        text: "phantomword".into(),
    };
    stale.apply(ghost).await.expect("apply");
    stale.set_catalog_id(e.store.catalog_id());
    stale.close().await.expect("close");
    drop(stale);

    let (_broker, _running, index) = e.start_indexer(&unique("inst")).await;
    assert_eq!(index.stats().documents, 12);
    assert_eq!(index.version_of(9_999), None, "the ghost was removed");
    e.wait_found("phantomword", &BTreeSet::new()).await;
    assert_eq!(e.found("sept2").await.len(), 2, "books 2 and 9");
}

#[tokio::test]
async fn a_restarted_library_keeps_every_acknowledged_book() {
    let mut e = Elibrary::start(LibraryConfig::in_dir).await;
    let mut acked = BTreeMap::new();
    for n in 0..30 {
        let text = format!("{} — №{n}", generated_text(n));
        let body =
            json!({"title": format!("Kept {n}"), "author": "K", "year": 1900 + n, "text": text});
        let w = e.lib("add_book", body).await;
        acked.insert(int(&w["id"]), (int(&w["version"]), text));
    }
    for (id, (version, text)) in acked.iter_mut().take(5) {
        *text = format!("rewritten {id}");
        let w = e
            .lib(
                "update_book",
                json!({"id": id, "version": *version, "text": text.clone()}),
            )
            .await;
        *version = int(&w["version"]);
    }

    // Stop the service, close the pool, reopen the same SQLite file.
    let running = e.h.services.pop().expect("the library");
    running.stop().await;
    e.store.close().await;
    let store = Store::open(&e.config).await.expect("reopen");
    assert_eq!(store.catalog_id(), e.store.catalog_id());
    e.store = store.clone();
    e.h.serve(library::service_named(&e.library).with_state(library::LibraryState::new(store)))
        .await;
    // The old instance said `down`; calls are 503 until the gateway hears the new one's `up`.
    let registry = e.h.gateway.registry().clone();
    let library_name = e.library.clone();
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            let live = matches!(
                registry.liveness(&library_name),
                warren_gateway::Liveness::Live(_)
            );
            async move { live }
        })
        .await,
        "the restarted library never showed up"
    );

    for (id, (version, text)) in &acked {
        let book = e.lib("get_book", json!({"id": id})).await;
        assert_eq!(int(&book["version"]), *version, "book {id}");
        assert_eq!(book["text"].as_str(), Some(text.as_str()), "book {id}");
    }
    let catalogue = e.catalogue().await;
    assert_eq!(catalogue.len(), 30);
    let after = e
        .lib(
            "add_book",
            json!({"title": "After", "author": "K", "text": "x"}),
        )
        .await;
    let newest = acked.values().map(|(v, _)| *v).max().unwrap_or(0);
    assert!(int(&after["version"]) > newest);
    assert!(e.config.data_dir.join(library::SQLITE_FILE).exists());
}
