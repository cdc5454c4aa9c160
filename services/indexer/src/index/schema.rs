//! The tantivy schema of a book document and the analyzer its text fields use (tokenising,
//! lower-casing, accent folding), plus reading the committed ids and versions back from the
//! schema's fast fields. Separate so the layout of a document is defined in one place.

use super::error::IndexError;
use std::collections::HashMap;
use tantivy::IndexReader;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};

/// The name under which the index's analyzer is registered.
pub(super) const ANALYZER: &str = "folded";

#[derive(Clone, Copy)]
pub(super) struct Fields {
    pub(super) id: Field,
    pub(super) version: Field,
    pub(super) title: Field,
    pub(super) author: Field,
    pub(super) text: Field,
}

pub(super) fn schema() -> (Schema, Fields) {
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

pub(super) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The ids and versions of the committed documents.
pub(super) fn committed_versions(reader: &IndexReader) -> Result<HashMap<i64, i64>, IndexError> {
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
