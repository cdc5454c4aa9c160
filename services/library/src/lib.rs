//! `library`: the e-library's catalogue. Books (title, author, year, language, full text) are
//! stored durably, in SQLite by default or PostgreSQL, and every change is announced as an
//! event for followers such as the `indexer`.
//!
//! - `add_book(title, author, year?, language?, text)` → `{id, version}`
//! - `update_book(id, version, title?, author?, year?, language?, text?)` → `{id, version}`;
//!   a stale `version` is a `Conflict` (HTTP 409)
//! - `get_book(id)` → the book with its text and version, or `NotFound`
//! - `delete_book(id, version?)` → `{id, version}` (the delete's own version)
//! - `list_books(cursor?, limit=50)` → `{books, next_cursor, catalog_id}`: summaries without
//!   text, by id; `next_cursor` is `null` on the last page
//!
//! Versions are drawn from one library-wide sequence: every add, update and delete takes the
//! next number, so a book's version only grows and a newer change always has a higher number.
//! Treat them as opaque and send back the one you last read.
//!
//! A write is acknowledged only after its transaction committed. Then the service dispatches
//! `book_added`, `book_updated` or `book_deleted` with `{id, version}`. If that dispatch fails
//! the call still succeeds (the write happened) and the failure is logged: followers converge
//! anyway through their catch-up, which compares their copy with `list_books`.

#![warn(missing_docs)]

mod config;
mod model;
mod store;

pub use config::{DEFAULT_DATA_DIR, DEFAULT_MAX_BOOK_BYTES, LibraryConfig};
pub use model::{
    AddBook, Book, BookEvent, BookId, BookPatch, BookSummary, DEFAULT_PAGE, DeleteBook, Limits,
    ListBooks, MAX_LANGUAGE_CHARS, MAX_NAME_CHARS, MAX_PAGE, MIN_YEAR, NewBook, Page, UpdateBook,
    Written, current_year, decode_cursor, encode_cursor,
};
pub use store::{BackendKind, SQLITE_FILE, Store, StoreError};

use mesh::{Args, BoxError, Ctx, Dependency, RpcError, Service, State};

/// The service's usual name.
pub const NAME: &str = "library";

/// The event dispatched after a book was added.
pub const BOOK_ADDED: &str = "book_added";
/// The event dispatched after a book was updated.
pub const BOOK_UPDATED: &str = "book_updated";
/// The event dispatched after a book was deleted.
pub const BOOK_DELETED: &str = "book_deleted";

/// What the library's handlers share: the store.
#[derive(Clone)]
pub struct LibraryState {
    store: Store,
}

impl LibraryState {
    /// The state of a library on `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// The library's dependency is its store, as configured: opened (migrations run) when the
/// service starts, closed once it has stopped.
impl Dependency for LibraryConfig {
    type State = LibraryState;

    async fn open(&self) -> Result<LibraryState, BoxError> {
        Ok(LibraryState::new(Store::open(self).await?))
    }

    async fn close(&self, state: LibraryState) {
        state.store.close().await;
    }
}

/// The service under its usual name; its state comes from a [`LibraryConfig`] (its
/// [`Dependency`]) or [`LibraryState::new`].
pub fn service() -> Service<LibraryState> {
    service_named(NAME)
}

/// The service under another name (tests run several meshes on one broker).
pub fn service_named(name: &str) -> Service<LibraryState> {
    Service::new(name)
        .rpc("add_book", add_book)
        .rpc("update_book", update_book)
        .rpc("get_book", get_book)
        .rpc("delete_book", delete_book)
        .rpc("list_books", list_books)
        // Reads. (A write done twice answers 409 or adds a second book.)
        .idempotent("get_book")
        .idempotent("list_books")
}

/// Adds a book; answers once it is committed, then dispatches `book_added`.
pub async fn add_book(
    ctx: Ctx,
    State(state): State<LibraryState>,
    Args(args): Args<AddBook>,
) -> Result<Written, RpcError> {
    let book = args.validate(state.store.limits())?;
    let written = state.store.add(&book).await?;
    announce(&ctx, BOOK_ADDED, written).await;
    Ok(written)
}

/// Changes some fields of a book at the version the caller read; then dispatches
/// `book_updated`.
pub async fn update_book(
    ctx: Ctx,
    State(state): State<LibraryState>,
    Args(args): Args<UpdateBook>,
) -> Result<Written, RpcError> {
    let (id, version, patch) = args.validate(state.store.limits())?;
    let written = state.store.update(id, version, &patch).await?;
    announce(&ctx, BOOK_UPDATED, written).await;
    Ok(written)
}

/// The book with its text and version.
pub async fn get_book(
    State(state): State<LibraryState>,
    Args(args): Args<BookId>,
) -> Result<Book, RpcError> {
    let id = model::book_id(args.id)?;
    state
        .store
        .get(id)
        .await?
        .ok_or_else(|| StoreError::NotFound(id).into())
}

/// Deletes a book (at `version`, when given); then dispatches `book_deleted`.
pub async fn delete_book(
    ctx: Ctx,
    State(state): State<LibraryState>,
    Args(args): Args<DeleteBook>,
) -> Result<Written, RpcError> {
    let id = model::book_id(args.id)?;
    let written = state.store.delete(id, args.version).await?;
    announce(&ctx, BOOK_DELETED, written).await;
    Ok(written)
}

/// One page of summaries (no text), by id.
pub async fn list_books(
    State(state): State<LibraryState>,
    Args(args): Args<ListBooks>,
) -> Result<Page, RpcError> {
    let (after, limit) = args.validate()?;
    let (books, more) = state.store.list(after, limit).await?;
    let next_cursor = match books.last() {
        Some(last) if more => Some(encode_cursor(last.id)),
        _ => None,
    };
    Ok(Page {
        books,
        next_cursor,
        catalog_id: state.store.catalog_id().to_owned(),
    })
}

/// Dispatches `event` for a committed write. A failure does not fail the call: the write is
/// durable, and followers converge through their catch-up.
async fn announce(ctx: &Ctx, event: &str, written: Written) {
    let payload = serde_json::json!({"id": written.id, "version": written.version});
    if let Err(error) = ctx.dispatch(event, payload).await {
        tracing::warn!(
            service = ctx.service(),
            event,
            id = written.id,
            version = written.version,
            %error,
            "committed, but the event could not be dispatched; followers catch up later"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh::{CallContext, ErrorKind};

    async fn store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("library-unit-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&LibraryConfig {
            max_book_bytes: 1_000,
            ..LibraryConfig::in_dir(&dir)
        })
        .await
        .expect("open");
        (store, dir)
    }

    fn ctx(method: &str) -> Ctx {
        // No transport: every dispatch fails, as when the broker is gone after the commit.
        Ctx::new(NAME, method, CallContext::default())
    }

    fn state(store: &Store) -> State<LibraryState> {
        State(LibraryState {
            store: store.clone(),
        })
    }

    #[tokio::test]
    async fn a_failed_dispatch_does_not_fail_the_write() {
        let (store, dir) = store().await;
        let added = add_book(
            ctx("add_book"),
            state(&store),
            Args(AddBook {
                title: "Walden".into(),
                author: "Thoreau".into(),
                year: Some(1854),
                language: Some("en".into()),
                text: "I went to the woods".into(),
            }),
        )
        .await
        .expect("the write is acknowledged");
        let book = get_book(state(&store), Args(BookId { id: added.id }))
            .await
            .expect("stored");
        assert_eq!(book.version, added.version);
        assert_eq!(book.text_bytes, 19);

        let stale = update_book(
            ctx("update_book"),
            state(&store),
            Args(UpdateBook {
                id: added.id,
                version: added.version + 1,
                title: Some("Walden; or, Life in the Woods".into()),
                author: None,
                year: None,
                language: None,
                text: None,
            }),
        )
        .await;
        assert_eq!(stale.map_err(|e| e.kind()), Err(ErrorKind::Conflict));

        let deleted = delete_book(
            ctx("delete_book"),
            state(&store),
            Args(DeleteBook {
                id: added.id,
                version: None,
            }),
        )
        .await
        .expect("deleted");
        assert!(deleted.version > added.version);
        let gone = get_book(state(&store), Args(BookId { id: added.id })).await;
        assert_eq!(gone.map_err(|e| e.kind()), Err(ErrorKind::NotFound));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn pages_end_with_a_null_cursor() {
        let (store, dir) = store().await;
        for n in 0..5 {
            let book = AddBook {
                title: format!("Book {n}"),
                author: "A".into(),
                year: None,
                language: None,
                text: String::new(),
            };
            add_book(ctx("add_book"), state(&store), Args(book))
                .await
                .expect("add");
        }
        let mut cursor = None;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = list_books(
                state(&store),
                Args(ListBooks {
                    cursor: cursor.clone(),
                    limit: Some(2),
                }),
            )
            .await
            .expect("page");
            pages += 1;
            seen.extend(page.books.iter().map(|b| b.title.clone()));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, ["Book 0", "Book 1", "Book 2", "Book 3", "Book 4"]);
        // A page that ends exactly at the last book has no next cursor.
        let exact = list_books(
            state(&store),
            Args(ListBooks {
                cursor: None,
                limit: Some(5),
            }),
        )
        .await
        .expect("page");
        assert_eq!(exact.books.len(), 5);
        assert_eq!(exact.next_cursor, None);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
