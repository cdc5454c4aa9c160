//! What the library's methods take and return, and the rules a book must follow.
//!
//! Arguments arrive as [`AddBook`], [`UpdateBook`], ... and are checked into [`NewBook`] and
//! [`BookPatch`] before anything touches the store; every rule that fails says which field and
//! why, as a `BadRequest`.

use mesh::RpcError;
use serde::{Deserialize, Deserializer, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest title or author accepted, in characters.
pub const MAX_NAME_CHARS: usize = 1_000;

/// The longest language tag accepted, in characters (BCP 47 tags fit in 35).
pub const MAX_LANGUAGE_CHARS: usize = 35;

/// The earliest publication year accepted.
pub const MIN_YEAR: i32 = -3000;

/// The latest publication year accepted. A fixed bound, so the schema can state it.
pub const MAX_YEAR: i32 = 2100;

/// The page size of `list_books` when none is given.
pub const DEFAULT_PAGE: u32 = 50;

/// The largest page `list_books` serves.
pub const MAX_PAGE: u32 = 500;

/// Limits that depend on configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest book text accepted, in bytes of UTF-8.
    pub max_book_bytes: usize,
}

/// A stored book, as `get_book` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Book {
    /// The book's id; never reused, even after a delete.
    pub id: i64,
    /// The book's current version: send it back with `update_book` or `delete_book`.
    pub version: i64,
    /// The title.
    pub title: String,
    /// The author.
    pub author: String,
    /// The publication year (negative before the common era).
    pub year: Option<i32>,
    /// A language tag such as `en` or `pt-BR`.
    pub language: Option<String>,
    /// The full text.
    pub text: String,
    /// The text's size in bytes of UTF-8.
    pub text_bytes: i64,
}

/// A book without its text, as `list_books` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BookSummary {
    /// The book's id.
    pub id: i64,
    /// The book's current version.
    pub version: i64,
    /// The title.
    pub title: String,
    /// The author.
    pub author: String,
    /// The publication year.
    pub year: Option<i32>,
    /// The language tag.
    pub language: Option<String>,
    /// The text's size in bytes of UTF-8.
    pub text_bytes: i64,
}

/// One page of `list_books`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page {
    /// The books of this page, by ascending id.
    pub books: Vec<BookSummary>,
    /// The cursor of the next page, or `None` (JSON `null`) when this is the last one.
    pub next_cursor: Option<String>,
    /// This catalogue's id, random and fixed when its database was created: a follower whose
    /// copy came from another catalogue (a database that was recreated) must start over.
    pub catalog_id: String,
}

/// The outcome of a write: the book and the version the write gave it. For a delete, the
/// version is the delete's own, newer than any the book had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Written {
    /// The book's id.
    pub id: i64,
    /// The version the write produced.
    pub version: i64,
}

/// The payload of `book_added`, `book_updated` and `book_deleted`.
pub type BookEvent = Written;

/// Arguments of `add_book`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddBook {
    /// The title (not blank).
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x1f\\x7f-\\x9f\\s][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub title: String,
    /// The author (not blank).
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x1f\\x7f-\\x9f\\s][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub author: String,
    /// The publication year, from -3000 to 2100.
    #[serde(default)]
    #[schema(minimum = -3000, maximum = 2100)]
    pub year: Option<i32>,
    /// A language tag such as `en` or `pt-BR`.
    #[serde(default)]
    #[schema(max_length = 35, pattern = "^[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,8})*$")]
    pub language: Option<String>,
    /// The full text, at most the configured size, without NUL characters.
    #[schema(pattern = "^[^\\x00]*$")]
    pub text: String,
}

/// Arguments of `update_book`: the fields to change, any subset. For `year` and `language`,
/// JSON `null` clears the field and leaving the key out keeps it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 3)]
pub struct UpdateBook {
    /// The book.
    #[schema(minimum = 1)]
    pub id: i64,
    /// The version the caller last read; a stale one is a `Conflict`.
    #[schema(minimum = 1)]
    pub version: i64,
    /// A new title (leave it out to keep the current one; `null` is refused).
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x1f\\x7f-\\x9f\\s][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub title: Option<String>,
    /// A new author (leave it out to keep the current one; `null` is refused).
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x1f\\x7f-\\x9f\\s][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub author: Option<String>,
    /// A new year, or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(minimum = -3000, maximum = 2100)]
    pub year: Option<Option<i32>>,
    /// A new language, or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(max_length = 35, pattern = "^[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,8})*$")]
    pub language: Option<Option<String>>,
    /// A new text (leave it out to keep the current one; `null` is refused).
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, pattern = "^[^\\x00]*$")]
    pub text: Option<String>,
}

/// Arguments naming one book (`get_book`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookId {
    /// The book.
    #[schema(minimum = 1)]
    pub id: i64,
}

/// Arguments of `delete_book`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteBook {
    /// The book.
    #[schema(minimum = 1)]
    pub id: i64,
    /// When given, the delete happens only at this version (else `Conflict`).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub version: Option<i64>,
}

/// Arguments of `list_books`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListBooks {
    /// Where to go on: the `next_cursor` of the previous page; the first page when absent.
    #[serde(default)]
    #[schema(pattern = "^[0-7][0-9a-f]{15}$")]
    pub cursor: Option<String>,
    /// The page size, 1 to 500 (50 when absent).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A present key, even when its value is `null`: `Some(None)`. A missing key stays `None`
/// through `#[serde(default)]`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A field that may be left out (`#[serde(default)]` gives `None`) but not sent as `null`: for
/// fields where leaving out already means "keep", a `null` would only be ambiguous.
fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A book that passed the rules, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBook {
    /// The title, trimmed.
    pub title: String,
    /// The author, trimmed.
    pub author: String,
    /// The year.
    pub year: Option<i32>,
    /// The language tag, trimmed.
    pub language: Option<String>,
    /// The text, as given.
    pub text: String,
}

/// Checked changes to a book; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookPatch {
    /// A new title.
    pub title: Option<String>,
    /// A new author.
    pub author: Option<String>,
    /// A new year (`Some(None)` clears it).
    pub year: Option<Option<i32>>,
    /// A new language (`Some(None)` clears it).
    pub language: Option<Option<String>>,
    /// A new text.
    pub text: Option<String>,
}

impl BookPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.author.is_none()
            && self.year.is_none()
            && self.language.is_none()
            && self.text.is_none()
    }
}

impl AddBook {
    /// Checks every field.
    pub fn validate(self, limits: &Limits) -> Result<NewBook, RpcError> {
        Ok(NewBook {
            title: name("title", &self.title)?,
            author: name("author", &self.author)?,
            year: self.year.map(year).transpose()?,
            language: self.language.as_deref().map(language).transpose()?,
            text: text(self.text, limits)?,
        })
    }
}

impl UpdateBook {
    /// Checks the id and every field given; at least one must be.
    pub fn validate(self, limits: &Limits) -> Result<(i64, i64, BookPatch), RpcError> {
        let id = book_id(self.id)?;
        if self.version < 1 {
            return Err(RpcError::bad_request("version must be a positive integer"));
        }
        let patch = BookPatch {
            title: self
                .title
                .as_deref()
                .map(|t| name("title", t))
                .transpose()?,
            author: self
                .author
                .as_deref()
                .map(|a| name("author", a))
                .transpose()?,
            year: self.year.map(|y| y.map(year).transpose()).transpose()?,
            language: self
                .language
                .map(|l| l.as_deref().map(language).transpose())
                .transpose()?,
            text: self.text.map(|t| text(t, limits)).transpose()?,
        };
        if patch.is_empty() {
            return Err(RpcError::bad_request(
                "nothing to update: give at least one of title, author, year, language, text",
            ));
        }
        Ok((id, self.version, patch))
    }
}

impl ListBooks {
    /// The id to list after (`None` for the first page) and the page size.
    pub fn validate(&self) -> Result<(Option<i64>, u32), RpcError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(RpcError::bad_request(format!(
                "limit must be from 1 to {MAX_PAGE}, not {limit}"
            )));
        }
        let after = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok((after, limit))
    }
}

/// Checks a book id: a positive integer.
pub fn book_id(id: i64) -> Result<i64, RpcError> {
    if id < 1 {
        return Err(RpcError::bad_request("id must be a positive integer"));
    }
    Ok(id)
}

fn name(field: &str, value: &str) -> Result<String, RpcError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(RpcError::bad_request(format!("{field} must not be blank")));
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(RpcError::bad_request(format!(
            "{field} must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(RpcError::bad_request(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value.to_owned())
}

fn year(year: i32) -> Result<i32, RpcError> {
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        return Err(RpcError::bad_request(format!(
            "year must be from {MIN_YEAR} to {MAX_YEAR}, not {year}"
        )));
    }
    Ok(year)
}

fn language(tag: &str) -> Result<String, RpcError> {
    let well_formed = !tag.is_empty()
        && tag.len() <= MAX_LANGUAGE_CHARS
        && tag.split('-').all(|part| {
            !part.is_empty() && part.len() <= 8 && part.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if !well_formed {
        return Err(RpcError::bad_request(format!(
            "language must be a language tag such as `en` or `pt-BR`, not `{}`",
            tag.chars().take(40).collect::<String>()
        )));
    }
    Ok(tag.to_owned())
}

fn text(text: String, limits: &Limits) -> Result<String, RpcError> {
    if text.len() > limits.max_book_bytes {
        return Err(RpcError::bad_request(format!(
            "text is {} bytes; the limit is {} bytes",
            text.len(),
            limits.max_book_bytes
        )));
    }
    // PostgreSQL cannot store NUL in text; refuse it on every backend alike.
    if text.contains('\0') {
        return Err(RpcError::bad_request(
            "text must not contain NUL characters",
        ));
    }
    Ok(text)
}

/// The cursor that continues after book `id`: 16 hex digits. Callers treat it as opaque.
pub fn encode_cursor(id: i64) -> String {
    format!("{id:016x}")
}

/// The id a cursor continues after; anything but a cursor from [`encode_cursor`] is refused.
pub fn decode_cursor(cursor: &str) -> Result<i64, RpcError> {
    let invalid = || RpcError::bad_request("invalid cursor: pass a next_cursor back unchanged");
    if cursor.len() != 16 || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    u64::from_str_radix(cursor, 16)
        .ok()
        .and_then(|id| i64::try_from(id).ok())
        .ok_or_else(invalid)
}

/// The current year (UTC), from the system clock.
pub fn current_year() -> i32 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    year_of_day(i64::try_from(seconds / 86_400).unwrap_or(0))
}

/// The year of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn year_of_day(days: i64) -> i32 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    i32::try_from(year).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh::ErrorKind;

    const LIMITS: Limits = Limits {
        max_book_bytes: 100,
    };

    fn add(title: &str, author: &str) -> AddBook {
        AddBook {
            title: title.into(),
            author: author.into(),
            year: None,
            language: None,
            text: "Call me Ishmael.".into(),
        }
    }

    fn refused<T: std::fmt::Debug>(result: Result<T, RpcError>) -> String {
        let error = result.expect_err("should be refused");
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
        error.message().to_owned()
    }

    fn update() -> UpdateBook {
        UpdateBook {
            id: 1,
            version: 1,
            title: None,
            author: None,
            year: None,
            language: None,
            text: None,
        }
    }

    #[test]
    fn a_good_book_is_trimmed_and_kept() {
        let book = AddBook {
            year: Some(1851),
            language: Some("en-GB".into()),
            ..add("  Moby-Dick ", "Herman Melville")
        }
        .validate(&LIMITS)
        .expect("valid");
        assert_eq!(book.title, "Moby-Dick");
        assert_eq!(book.language.as_deref(), Some("en-GB"));
        assert_eq!(book.year, Some(1851));
        // A language tag is exact (the schema's pattern says so): no padding.
        let padded = AddBook {
            language: Some(" en-GB ".into()),
            ..add("t", "a")
        };
        assert!(refused(padded.validate(&LIMITS)).contains("language must be a language tag"));
    }

    #[test]
    fn blank_names_are_refused() {
        assert!(refused(add(" ", "x").validate(&LIMITS)).contains("title must not be blank"));
        assert!(refused(add("x", "").validate(&LIMITS)).contains("author must not be blank"));
        let long = "a".repeat(MAX_NAME_CHARS + 1);
        assert!(refused(add(&long, "x").validate(&LIMITS)).contains("at most"));
        assert!(refused(add("a\u{7}b", "x").validate(&LIMITS)).contains("control"));
    }

    #[test]
    fn text_size_and_nul_are_checked() {
        let exact = AddBook {
            text: "é".repeat(50),
            ..add("t", "a")
        };
        assert!(exact.validate(&LIMITS).is_ok(), "100 bytes is allowed");
        let over = AddBook {
            text: "x".repeat(101),
            ..add("t", "a")
        };
        assert!(refused(over.validate(&LIMITS)).contains("101 bytes; the limit is 100"));
        let nul = AddBook {
            text: "a\0b".into(),
            ..add("t", "a")
        };
        assert!(refused(nul.validate(&LIMITS)).contains("NUL"));
    }

    #[test]
    fn years_and_languages_are_checked() {
        for good in [MIN_YEAR, 0, 1851, MAX_YEAR] {
            let book = AddBook {
                year: Some(good),
                ..add("t", "a")
            };
            assert!(book.validate(&LIMITS).is_ok(), "{good}");
        }
        for bad in [MIN_YEAR - 1, MAX_YEAR + 1] {
            let book = AddBook {
                year: Some(bad),
                ..add("t", "a")
            };
            assert!(refused(book.validate(&LIMITS)).contains("year must be from -3000"));
        }
        for bad in ["", "en_GB", "en--GB", "toolongsubtag", "é"] {
            let book = AddBook {
                language: Some(bad.into()),
                ..add("t", "a")
            };
            assert!(
                refused(book.validate(&LIMITS)).contains("language"),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused_by_serde() {
        let err = serde_json::from_value::<AddBook>(serde_json::json!({
            "title": "t", "author": "a", "text": "x", "isbn": "123"
        }));
        assert!(err.is_err());
    }

    #[test]
    fn updates_distinguish_null_from_absent() {
        let parsed: UpdateBook =
            serde_json::from_value(serde_json::json!({"id": 3, "version": 7, "year": null}))
                .expect("parses");
        assert_eq!(parsed.year, Some(None));
        assert_eq!(parsed.language, None);
        let (id, version, patch) = parsed.validate(&LIMITS).expect("valid");
        assert_eq!((id, version), (3, 7));
        assert_eq!(patch.year, Some(None));
        assert!(!patch.is_empty());
    }

    #[test]
    fn updates_are_checked() {
        assert!(refused(update().validate(&LIMITS)).contains("nothing to update"));
        let bad_id = UpdateBook {
            id: 0,
            title: Some("t".into()),
            ..update()
        };
        assert!(refused(bad_id.validate(&LIMITS)).contains("id must be"));
        let bad_version = UpdateBook {
            version: 0,
            title: Some("t".into()),
            ..update()
        };
        assert!(refused(bad_version.validate(&LIMITS)).contains("version must be"));
        let blank = UpdateBook {
            title: Some("  ".into()),
            ..update()
        };
        assert!(refused(blank.validate(&LIMITS)).contains("title must not be blank"));
        let big = UpdateBook {
            text: Some("x".repeat(101)),
            ..update()
        };
        assert!(refused(big.validate(&LIMITS)).contains("limit is 100"));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for id in [1, 42, i64::MAX] {
            let cursor = encode_cursor(id);
            assert_eq!(cursor.len(), 16);
            assert_eq!(decode_cursor(&cursor), Ok(id));
        }
        for bad in [
            "",
            "42",
            "zzzzzzzzzzzzzzzz",
            "ffffffffffffffff",
            "000000000000002a0",
        ] {
            assert!(
                refused(decode_cursor(bad)).contains("invalid cursor"),
                "{bad}"
            );
        }
    }

    #[test]
    fn page_limits_are_checked() {
        let list = |limit: Option<u32>| ListBooks {
            cursor: None,
            limit,
        };
        assert_eq!(list(None).validate(), Ok((None, DEFAULT_PAGE)));
        assert_eq!(list(Some(MAX_PAGE)).validate(), Ok((None, MAX_PAGE)));
        assert!(refused(list(Some(0)).validate()).contains("limit must be from 1 to 500"));
        assert!(refused(list(Some(MAX_PAGE + 1)).validate()).contains("not 501"));
        let next = ListBooks {
            cursor: Some(encode_cursor(9)),
            limit: Some(2),
        };
        assert_eq!(next.validate(), Ok((Some(9), 2)));
    }

    #[test]
    fn years_come_from_the_calendar() {
        assert_eq!(year_of_day(0), 1970);
        assert_eq!(year_of_day(-1), 1969);
        assert_eq!(year_of_day(11_016), 2000); // 2000-02-29
        assert_eq!(year_of_day(19_722), 2023); // 2023-12-31
        assert_eq!(year_of_day(19_723), 2024); // 2024-01-01
        assert!(current_year() >= 2024);
    }
}
