//! [`ApiKeys`]: static API keys from a file, compared in constant time.
//!
//! The file holds one key per line: `<user_id> <key> [<service>.<method>...]`, separated by
//! spaces or tabs. Blank lines and lines starting with `#` are ignored. The optional patterns
//! (the `--expose` syntax, `*` wildcards) limit the methods the key may call; without them it
//! may call every exposed method. A user may have several keys (to rotate them); a key must be
//! 16-512 visible ASCII characters and appear once.
//!
//! ```text
//! # user     key                                  allowed methods (optional)
//! alice      3q2+7w-4ZlZf8uH1bGq0Ck9JtQxY
//! reporting  Vd8sE1mXr0aQ2pT5nW7yL4kC           kv.get  library.list_books
//! ```

use super::AuthConfigError;
use crate::policy::Exposure;
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

/// The shortest key accepted.
const MIN_KEY_LEN: usize = 16;
/// The longest key accepted.
const MAX_KEY_LEN: usize = 512;
/// The longest user id accepted.
const MAX_USER_ID_LEN: usize = 128;

/// A set of API keys. Only SHA-256 digests of the keys are kept.
#[derive(Clone)]
pub struct ApiKeys {
    entries: Vec<Entry>,
}

#[derive(Clone)]
pub(super) struct Entry {
    digest: [u8; 32],
    pub(super) user_id: String,
    pub(super) allowed: Option<Exposure>,
}

impl ApiKeys {
    /// Reads and parses the key file at `path`.
    pub fn load(path: &Path) -> Result<Self, AuthConfigError> {
        let bytes = super::read_file(path)?;
        let text = String::from_utf8(bytes).map_err(|_| AuthConfigError::ApiKeyLine {
            line: 0,
            reason: "the file is not UTF-8 text".to_owned(),
        })?;
        Self::parse(&text)
    }

    /// Parses the text of a key file.
    pub fn parse(text: &str) -> Result<Self, AuthConfigError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let fail = |reason: &str| AuthConfigError::ApiKeyLine {
                line: line_no,
                reason: reason.to_owned(),
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_ascii_whitespace();
            let (Some(user_id), Some(key)) = (fields.next(), fields.next()) else {
                return Err(fail("expected `<user_id> <key> [<service>.<method>...]`"));
            };
            if user_id.len() > MAX_USER_ID_LEN || !user_id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(fail("the user id must be 1-128 visible ASCII characters"));
            }
            if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len())
                || !key.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(fail("the key must be 16-512 visible ASCII characters"));
            }
            let patterns: Vec<&str> = fields.collect();
            let allowed = if patterns.is_empty() {
                None
            } else {
                // The pattern is the file's own text, not the key: safe to show.
                Some(Exposure::parse(&patterns).map_err(|e| fail(&format!("pattern {e}")))?)
            };
            let digest = digest(key);
            if entries.iter().any(|e| e.digest == digest) {
                return Err(fail("this key appears on an earlier line"));
            }
            entries.push(Entry {
                digest,
                user_id: user_id.to_owned(),
                allowed,
            });
        }
        if entries.is_empty() {
            return Err(AuthConfigError::NoApiKeys);
        }
        Ok(Self { entries })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no key (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `key`. Every entry is compared, in constant time, whichever matches: the
    /// time taken says nothing about which key, or how much of one, was right.
    pub(super) fn find(&self, key: &str) -> Option<&Entry> {
        let digest = digest(key);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        found
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_error(text: &str) -> (usize, String) {
        match ApiKeys::parse(text) {
            Err(AuthConfigError::ApiKeyLine { line, reason }) => (line, reason),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("accepted {text:?}"),
        }
    }

    #[test]
    fn the_documented_format() {
        let keys = ApiKeys::parse(
            "# comment\n\n  alice   aaaaaaaaaaaaaaaa-1\t\n\
             reporting bbbbbbbbbbbbbbbb-2 kv.get library.*\n\
             alice aaaaaaaaaaaaaaaa-3\r\n",
        )
        .expect("keys");
        assert_eq!(keys.len(), 3);
        let alice = keys.find("aaaaaaaaaaaaaaaa-1").expect("alice");
        assert_eq!(alice.user_id, "alice");
        assert!(alice.allowed.is_none());
        assert_eq!(
            keys.find("aaaaaaaaaaaaaaaa-3").map(|e| e.user_id.as_str()),
            Some("alice")
        );
        let reporting = keys.find("bbbbbbbbbbbbbbbb-2").expect("reporting");
        let allowed = reporting.allowed.as_ref().expect("patterns");
        assert!(allowed.allows("kv", "get"));
        assert!(allowed.allows("library", "list_books"));
        assert!(!allowed.allows("kv", "put"));
        assert!(keys.find("aaaaaaaaaaaaaaaa-").is_none());
        assert!(keys.find("").is_none());
    }

    #[test]
    fn bad_files_name_the_line_never_the_key() {
        let secret = "s3cr3t-s3cr3t-s3cr3t";
        for (text, line) in [
            (format!("# c\n{secret}\n"), 2),
            ("alice short\n".to_owned(), 1),
            (format!("alice {secret}\nbob {secret}\n"), 2),
            (format!("alice {secret} nodot\n"), 1),
            (format!("alice {}\n", "x".repeat(513)), 1),
        ] {
            let (at, reason) = line_error(&text);
            assert_eq!(at, line, "{text:?}: {reason}");
            assert!(!reason.contains(secret), "{reason}");
        }
        assert!(matches!(
            ApiKeys::parse("# only comments\n\n"),
            Err(AuthConfigError::NoApiKeys)
        ));
    }
}
