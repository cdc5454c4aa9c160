//! Reads: one book with its text, or a page of summaries, from the read pool. Separate from
//! the writes because reads take no transaction and draw no version.

use super::error::StoreError;
use super::{Backend, BackendKind, Store, on_backend};
use crate::model::{Book, BookSummary};
use sqlx::{ColumnIndex, Decode, Row, Type};

const SELECT_BOOK: &str =
    "SELECT id, version, title, author, year, language, text, text_bytes FROM books WHERE id = $1";
const SELECT_PAGE: &str = "SELECT id, version, title, author, year, language, text_bytes \
     FROM books WHERE id > $1 ORDER BY id LIMIT $2";

impl Store {
    /// The book `id`, if there is one.
    pub async fn get(&self, id: i64) -> Result<Option<Book>, StoreError> {
        on_backend!(&self.inner.backend, read, |pool, _| {
            let row = sqlx::query(SELECT_BOOK)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(book_from_row).transpose()?)
        })
    }

    /// Up to `limit` books with ids above `after` (from the first when `None`), by id, and
    /// whether more follow.
    pub async fn list(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<BookSummary>, bool), StoreError> {
        let after = after.unwrap_or(0);
        let fetch = i64::from(limit) + 1;
        let mut books = on_backend!(&self.inner.backend, read, |pool, _| {
            let rows = sqlx::query(SELECT_PAGE)
                .bind(after)
                .bind(fetch)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(summary_from_row)
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        let more = books.len() > limit as usize;
        books.truncate(limit as usize);
        Ok((books, more))
    }
}

fn book_from_row<R>(row: &R) -> Result<Book, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Book {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        title: row.try_get("title")?,
        author: row.try_get("author")?,
        year: row.try_get("year")?,
        language: row.try_get("language")?,
        text: row.try_get("text")?,
        text_bytes: row.try_get("text_bytes")?,
    })
}

fn summary_from_row<R>(row: &R) -> Result<BookSummary, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(BookSummary {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        title: row.try_get("title")?,
        author: row.try_get("author")?,
        year: row.try_get("year")?,
        language: row.try_get("language")?,
        text_bytes: row.try_get("text_bytes")?,
    })
}
