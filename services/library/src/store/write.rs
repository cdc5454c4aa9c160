//! Writes: adding, updating and deleting books, each in one transaction that draws the next
//! library-wide version and checks the version the caller read. Separate from the reads
//! because only writes touch the version sequence and report conflicts.

use super::error::StoreError;
use super::{Backend, BackendKind, Store, on_backend};
use crate::model::{BookPatch, NewBook, Written};

/// The statement that draws the next library-wide version, inside a write transaction.
fn next_version_sql(kind: BackendKind) -> &'static str {
    match kind {
        // The counter row is written in the transaction, so a rolled-back write gives its
        // version back; SQLite has one writer at a time, so this is no bottleneck.
        BackendKind::Sqlite => {
            "UPDATE library_version SET value = value + 1 WHERE id = 1 RETURNING value"
        }
        // A sequence never blocks concurrent writers (a rolled-back write leaves a gap).
        BackendKind::Postgres => "SELECT nextval('book_versions')",
    }
}

const SELECT_VERSION: &str = "SELECT version FROM books WHERE id = $1";
const INSERT_BOOK: &str = "INSERT INTO books (version, title, author, year, language, text, text_bytes) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
const UPDATE_BOOK: &str = "UPDATE books SET version = $1, \
     title = COALESCE($2, title), author = COALESCE($3, author), \
     year = CASE WHEN $4 THEN $5 ELSE year END, \
     language = CASE WHEN $6 THEN $7 ELSE language END, \
     text = COALESCE($8, text), text_bytes = COALESCE($9, text_bytes) \
     WHERE id = $10 AND version = $11";
const DELETE_BOOK: &str = "DELETE FROM books WHERE id = $1 AND version = $2";

impl Store {
    /// Stores a new book; returns its id and version once committed.
    pub async fn add(&self, book: &NewBook) -> Result<Written, StoreError> {
        let text_bytes = byte_len(&book.text);
        on_backend!(&self.inner.backend, write, |pool, kind| {
            let mut tx = pool.begin().await?;
            let version: i64 = sqlx::query_scalar(next_version_sql(kind))
                .fetch_one(&mut *tx)
                .await?;
            let id: i64 = sqlx::query_scalar(INSERT_BOOK)
                .bind(version)
                .bind(&book.title)
                .bind(&book.author)
                .bind(book.year)
                .bind(book.language.as_deref())
                .bind(&book.text)
                .bind(text_bytes)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Written { id, version })
        })
    }

    /// Applies `patch` to book `id` if it is at `expected` version; returns its new version once
    /// committed. `NotFound` when there is no such book, `Conflict` when its version differs.
    pub async fn update(
        &self,
        id: i64,
        expected: i64,
        patch: &BookPatch,
    ) -> Result<Written, StoreError> {
        let text_bytes = patch.text.as_deref().map(byte_len);
        on_backend!(&self.inner.backend, write, |pool, kind| {
            let mut tx = pool.begin().await?;
            let version: i64 = sqlx::query_scalar(next_version_sql(kind))
                .fetch_one(&mut *tx)
                .await?;
            let current: Option<i64> = sqlx::query_scalar(SELECT_VERSION)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            check_version(id, expected, current)?;
            let updated = sqlx::query(UPDATE_BOOK)
                .bind(version)
                .bind(patch.title.as_deref())
                .bind(patch.author.as_deref())
                .bind(patch.year.is_some())
                .bind(patch.year.flatten())
                .bind(patch.language.is_some())
                .bind(patch.language.clone().flatten())
                .bind(patch.text.as_deref())
                .bind(text_bytes)
                .bind(id)
                .bind(expected)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                // Another writer changed it between the read and the update (PostgreSQL).
                drop(tx);
                return Err(self.conflict_now(id, expected).await);
            }
            tx.commit().await?;
            Ok(Written { id, version })
        })
    }

    /// Deletes book `id` (only at version `expected`, when given); returns the delete's own
    /// version, newer than any the book had, once committed.
    pub async fn delete(&self, id: i64, expected: Option<i64>) -> Result<Written, StoreError> {
        on_backend!(&self.inner.backend, write, |pool, kind| {
            let mut tx = pool.begin().await?;
            let version: i64 = sqlx::query_scalar(next_version_sql(kind))
                .fetch_one(&mut *tx)
                .await?;
            let current: Option<i64> = sqlx::query_scalar(SELECT_VERSION)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let current = match expected {
                Some(expected) => check_version(id, expected, current)?,
                None => current.ok_or(StoreError::NotFound(id))?,
            };
            let deleted = sqlx::query(DELETE_BOOK)
                .bind(id)
                .bind(current)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                drop(tx);
                return Err(self.conflict_now(id, current).await);
            }
            tx.commit().await?;
            Ok(Written { id, version })
        })
    }

    /// The conflict to report when a guarded write touched no row: the book moved on (or went).
    async fn conflict_now(&self, id: i64, expected: i64) -> StoreError {
        let current: Result<Option<i64>, sqlx::Error> =
            on_backend!(&self.inner.backend, read, |pool, _| {
                sqlx::query_scalar(SELECT_VERSION)
                    .bind(id)
                    .fetch_optional(pool)
                    .await
            });
        match current {
            Ok(Some(current)) => StoreError::Conflict {
                id,
                expected,
                current,
            },
            Ok(None) => StoreError::NotFound(id),
            Err(e) => StoreError::Database(e),
        }
    }
}

/// Checks a book's `current` version (`None`: no such book) against `expected`.
fn check_version(id: i64, expected: i64, current: Option<i64>) -> Result<i64, StoreError> {
    match current {
        None => Err(StoreError::NotFound(id)),
        Some(current) if current != expected => Err(StoreError::Conflict {
            id,
            expected,
            current,
        }),
        Some(current) => Ok(current),
    }
}

fn byte_len(text: &str) -> i64 {
    i64::try_from(text.len()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked() {
        assert_eq!(check_version(1, 3, Some(3)).ok(), Some(3));
        assert!(matches!(
            check_version(1, 3, None),
            Err(StoreError::NotFound(1))
        ));
        assert!(matches!(
            check_version(1, 3, Some(5)),
            Err(StoreError::Conflict {
                id: 1,
                expected: 3,
                current: 5
            })
        ));
    }
}
