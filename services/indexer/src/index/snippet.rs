//! Snippets: the HTML fragment of a book's text shown with each hit. Separate because it is
//! pure text handling, independent of tantivy and of the index's state.

/// The longest snippet, in characters.
pub const SNIPPET_CHARS: usize = 200;

/// The first `max_chars` characters of `text`, HTML-escaped, ending at a word boundary when it
/// is cut.
pub fn lead(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    let cut = match text.char_indices().nth(max_chars) {
        None => text,
        Some((end, _)) => {
            let head = &text[..end];
            match head.rfind(char::is_whitespace) {
                Some(space) if space > 0 => &head[..space],
                _ => head,
            }
        }
    };
    escape_html(cut)
}

/// Escapes `&`, `<`, `>`, `"` and `'`.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leads_are_cut_at_words_and_escaped() {
        assert_eq!(lead("  short  ", 10), "short");
        assert_eq!(lead("one two three", 9), "one two");
        assert_eq!(lead("a<b & c", 20), "a&lt;b &amp; c");
        assert_eq!(lead("ééééé", 3), "ééé");
    }
}
