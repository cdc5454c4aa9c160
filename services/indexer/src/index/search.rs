//! Searching: parsing a query, ranking, paging and building each hit with its snippet. Separate
//! from the front, which only moves this work onto a blocking thread.

use super::Inner;
use super::error::IndexError;
use super::model::{Hit, SearchResults};
use super::snippet::{SNIPPET_CHARS, lead};
use tantivy::TantivyDocument;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::QueryParser;
use tantivy::schema::{Field, Value};
use tantivy::snippet::SnippetGenerator;

/// The most hits one search returns.
pub const MAX_LIMIT: usize = 100;

/// How deep results can be paged (`offset`).
pub const MAX_OFFSET: usize = 10_000;

impl Inner {
    pub(super) fn search(
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
