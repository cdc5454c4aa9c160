//! The library's store against both backends: a SQLite file in a fresh directory, and a fresh
//! PostgreSQL database per test (created on the server `WARREN_TEST_POSTGRES_URL` names,
//! default `postgres://postgres@127.0.0.1:5432/test`, and dropped afterwards).

use library::{BookPatch, LibraryConfig, NewBook, Store, StoreError};
use sqlx::Connection;
use std::collections::HashSet;
use std::path::PathBuf;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn postgres_admin_url() -> String {
    std::env::var("WARREN_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned())
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{database}?{query}"),
        None => format!("{root}/{database}"),
    }
}

/// A store's configuration and what to remove when the test ends (also when it panics).
struct TestDb {
    config: LibraryConfig,
    dir: PathBuf,
    postgres: Option<String>,
}

impl TestDb {
    async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("library-store-{}", uuid::Uuid::new_v4()));
        Self {
            config: LibraryConfig::in_dir(&dir),
            dir,
            postgres: None,
        }
    }

    async fn postgres() -> Self {
        let admin = postgres_admin_url();
        let name = format!("t_lib_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL must be running at {admin} (scripts/test.sh starts it): {e}")
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let _ = conn.close().await;
        let dir = std::env::temp_dir().join(format!("library-store-{}", uuid::Uuid::new_v4()));
        Self {
            config: LibraryConfig {
                database_url: Some(with_database(&admin, &name)),
                ..LibraryConfig::in_dir(&dir)
            },
            dir,
            postgres: Some(name),
        }
    }

    async fn open(&self) -> Store {
        Store::open(&self.config).await.expect("open the store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let Some(name) = self.postgres.take() else {
            return;
        };
        // Drop cannot await: a short-lived thread with its own runtime drops the database.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

fn new_book(title: &str, text: &str) -> NewBook {
    NewBook {
        title: title.into(),
        author: "Mary Shelley".into(),
        year: Some(1818),
        language: Some("en".into()),
        text: text.into(),
    }
}

/// Runs each case against SQLite and against PostgreSQL.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = super::TestDb::sqlite().await;
                    super::$case(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = super::TestDb::postgres().await;
                    super::$case(&db).await;
                }
            )*
        }
    };
}

on_both_backends!(
    books_round_trip_and_versions_grow,
    stale_versions_conflict_and_missing_books_are_not_found,
    pages_follow_ids_and_end,
    one_of_many_concurrent_updates_wins,
    everything_acknowledged_survives_a_reopen,
);

async fn books_round_trip_and_versions_grow(db: &TestDb) {
    let store = db.open().await;
    let text = "It was on a dreary night of November 🌩 — «Frankenstein»\n\tend";
    let added = store
        .add(&new_book("Frankenstein", text))
        .await
        .expect("add");
    let book = store.get(added.id).await.expect("get").expect("stored");
    assert_eq!(book.version, added.version);
    assert_eq!(book.title, "Frankenstein");
    assert_eq!(book.text, text, "the text comes back byte for byte");
    assert_eq!(book.text_bytes, text.len() as i64);
    assert_eq!(
        (book.year, book.language.as_deref()),
        (Some(1818), Some("en"))
    );

    // A partial update leaves the other fields alone.
    let renamed = store
        .update(
            added.id,
            added.version,
            &BookPatch {
                title: Some("Frankenstein; or, The Modern Prometheus".into()),
                year: Some(None),
                ..BookPatch::default()
            },
        )
        .await
        .expect("update");
    assert!(renamed.version > added.version);
    let book = store.get(added.id).await.expect("get").expect("stored");
    assert_eq!(book.title, "Frankenstein; or, The Modern Prometheus");
    assert_eq!(book.year, None, "null clears the year");
    assert_eq!(book.language.as_deref(), Some("en"), "absent keeps it");
    assert_eq!(book.text, text);

    let retexted = store
        .update(
            added.id,
            renamed.version,
            &BookPatch {
                text: Some("short".into()),
                language: Some(Some("en-GB".into())),
                ..BookPatch::default()
            },
        )
        .await
        .expect("update");
    let book = store.get(added.id).await.expect("get").expect("stored");
    assert_eq!((book.text.as_str(), book.text_bytes), ("short", 5));
    assert_eq!(book.language.as_deref(), Some("en-GB"));
    assert_eq!(book.version, retexted.version);

    // A big text, exactly.
    let big: String = (0..200_000).map(|i| format!("{i} ")).collect();
    let stored = store.add(&new_book("Big", &big)).await.expect("add big");
    let back = store.get(stored.id).await.expect("get").expect("stored");
    assert_eq!(back.text, big);
    assert!(
        stored.version > retexted.version,
        "versions are library-wide"
    );
    store.close().await;
}

async fn stale_versions_conflict_and_missing_books_are_not_found(db: &TestDb) {
    let store = db.open().await;
    let added = store.add(&new_book("Mathilda", "x")).await.expect("add");
    let patch = BookPatch {
        author: Some("M. W. Shelley".into()),
        ..BookPatch::default()
    };
    let next = store
        .update(added.id, added.version, &patch)
        .await
        .expect("update");
    match store.update(added.id, added.version, &patch).await {
        Err(StoreError::Conflict {
            id,
            expected,
            current,
        }) => assert_eq!(
            (id, expected, current),
            (added.id, added.version, next.version)
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        store.update(added.id + 1000, 1, &patch).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete(added.id, Some(added.version)).await,
        Err(StoreError::Conflict { .. })
    ));
    let deleted = store
        .delete(added.id, Some(next.version))
        .await
        .expect("delete");
    assert!(
        deleted.version > next.version,
        "a delete has its own version"
    );
    assert_eq!(store.get(added.id).await.expect("get"), None);
    assert!(matches!(
        store.delete(added.id, None).await,
        Err(StoreError::NotFound(_))
    ));
    // Ids are never reused.
    let again = store.add(&new_book("Mathilda", "x")).await.expect("add");
    assert!(again.id > added.id);
    store.close().await;
}

async fn pages_follow_ids_and_end(db: &TestDb) {
    let store = db.open().await;
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(
            store
                .add(&new_book(&format!("Book {n}"), "text"))
                .await
                .expect("add")
                .id,
        );
    }
    let gone = ids.remove(3);
    store.delete(gone, None).await.expect("delete");

    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let (books, more) = store.list(after, 2).await.expect("list");
        pages += 1;
        assert!(books.len() <= 2);
        seen.extend(books.iter().map(|b| b.id));
        after = books.last().map(|b| b.id);
        if !more {
            break;
        }
    }
    assert_eq!(seen, ids, "every book once, by id, without the deleted one");
    assert_eq!(pages, 3);
    let (all, more) = store.list(None, 6).await.expect("list");
    assert_eq!(
        (all.len(), more),
        (6, false),
        "an exact last page has no more"
    );
    assert_eq!(all[0].text_bytes, 4);
    store.close().await;
}

async fn one_of_many_concurrent_updates_wins(db: &TestDb) {
    let store = db.open().await;
    let added = store.add(&new_book("Lodore", "x")).await.expect("add");
    let attempts: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let patch = BookPatch {
                    title: Some(format!("Lodore {n}")),
                    ..BookPatch::default()
                };
                store.update(added.id, added.version, &patch).await
            })
        })
        .collect();
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.expect("task") {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(won, 1, "exactly one update at a version wins");
    store.close().await;
}

async fn everything_acknowledged_survives_a_reopen(db: &TestDb) {
    let store = db.open().await;
    let catalog = store.catalog_id().to_owned();
    let mut written = Vec::new();
    for n in 0..20 {
        written.push(
            store
                .add(&new_book(&format!("Tale {n}"), &format!("text {n}")))
                .await
                .expect("add"),
        );
    }
    store.close().await;
    drop(store);

    let store = db.open().await;
    assert_eq!(store.catalog_id(), catalog, "the same catalogue");
    for w in &written {
        let book = store.get(w.id).await.expect("get").expect("kept");
        assert_eq!(book.version, w.version);
    }
    let (books, _) = store.list(None, 100).await.expect("list");
    let ids: HashSet<i64> = books.iter().map(|b| b.id).collect();
    assert_eq!(ids.len(), written.len());
    let newest = written.iter().map(|w| w.version).max().unwrap_or(0);
    let after = store.add(&new_book("Later", "x")).await.expect("add");
    assert!(
        after.version > newest,
        "versions go on growing after a reopen"
    );
    store.close().await;
}

#[test]
fn database_names_are_swapped_in_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "t_x"),
        "postgres://postgres@127.0.0.1:5432/t_x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "t_x"),
        "postgres://u:p@h/t_x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "t_x"),
        "postgres://h:5432/t_x"
    );
}
