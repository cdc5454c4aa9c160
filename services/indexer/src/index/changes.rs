//! Applying and removing books: the version check and tombstones that make changes idempotent,
//! and the writer calls they guard. Separate from the front, which only moves this work onto a
//! blocking thread.

use super::Inner;
use super::error::IndexError;
use super::model::{Applied, IndexedBook};
use tantivy::{TantivyDocument, Term};

impl Inner {
    pub(super) fn apply(&self, book: IndexedBook) -> Result<Applied, IndexError> {
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

    pub(super) fn remove(&self, id: i64, version: Option<i64>) -> Result<bool, IndexError> {
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
}
