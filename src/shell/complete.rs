//! Tab completion from the live descriptors: commands and services at the start of a line,
//! methods after `service.`, keyword arguments inside a call's parentheses, sources and event
//! types after `tail`.

use super::catalogue::Catalogue;
use super::parse::COMMANDS;
use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;

/// The line editor's helper: completion, nothing else.
pub struct Completion {
    catalogue: Catalogue,
}

impl Completion {
    /// Completion from what `catalogue` has heard.
    pub fn new(catalogue: Catalogue) -> Self {
        Self { catalogue }
    }

    /// Where the word before `pos` in `line` starts (a byte offset), and what it may become.
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = line.get(..pos).unwrap_or(line);
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || "_-.".contains(*c)))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &before[start..];
        let head = before[..start].trim();
        let (offset, mut candidates) = match (head, word.split_once('.')) {
            ("" | "help", Some((service, partial))) => (
                service.len() + 1,
                prefixed(
                    self.catalogue.methods(service).into_iter().map(|m| m.name),
                    partial,
                ),
            ),
            ("tail", Some((source, partial))) => (
                source.len() + 1,
                prefixed(self.catalogue.event_types(source), partial),
            ),
            ("", None) => {
                let names = COMMANDS
                    .iter()
                    .map(|c| (*c).to_owned())
                    .chain(self.catalogue.services());
                (0, prefixed(names, word))
            }
            ("help" | "tail", None) => (0, prefixed(self.catalogue.services(), word)),
            (head, None) => (0, self.keywords(head, word)),
            _ => (0, Vec::new()),
        };
        candidates.sort_unstable();
        candidates.dedup();
        (start + offset, candidates)
    }

    /// `name=` for each keyword argument of the call `head` opens, when the cursor is where an
    /// argument starts.
    fn keywords(&self, head: &str, word: &str) -> Vec<String> {
        if !(head.ends_with('(') || head.ends_with(',')) {
            return Vec::new();
        }
        let Some((service, method)) = head
            .split_once('(')
            .and_then(|(call, _)| call.trim().split_once('.'))
        else {
            return Vec::new();
        };
        let names = self
            .catalogue
            .parameters(service, method.trim())
            .into_iter()
            .map(|(name, _, _)| name);
        prefixed(names, word)
            .into_iter()
            .map(|name| format!("{name}="))
            .collect()
    }
}

fn prefixed(names: impl IntoIterator<Item = String>, prefix: &str) -> Vec<String> {
    names
        .into_iter()
        .filter(|name| name.starts_with(prefix))
        .collect()
}

impl Completer for Completion {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(self.candidates(line, pos))
    }
}

impl Hinter for Completion {
    type Hint = String;
}

impl Highlighter for Completion {}

impl Validator for Completion {}

impl rustyline::Helper for Completion {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::catalogue::tests::heard;

    fn complete(line: &str) -> (usize, Vec<String>) {
        Completion::new(heard()).candidates(line, line.len())
    }

    #[test]
    fn services_methods_and_commands() {
        assert_eq!(complete("gree"), (0, vec!["greeting_service".to_owned()]));
        assert_eq!(
            complete("he"),
            (0, vec!["help".to_owned()]),
            "a command; no service starts so"
        );
        assert_eq!(
            complete("greeting_service.he"),
            (17, vec!["hello".to_owned(), "help_me".to_owned()])
        );
        assert_eq!(complete("  indexer."), (10, vec!["search".to_owned()]));
        assert_eq!(
            complete("help gr"),
            (5, vec!["greeting_service".to_owned()])
        );
        assert_eq!(
            complete("help greeting_service.hel"),
            (22, vec!["hello".to_owned(), "help_me".to_owned()])
        );
        assert_eq!(complete("nobody.x").1, Vec::<String>::new());
    }

    #[test]
    fn keyword_arguments_and_event_types() {
        assert_eq!(
            complete("greeting_service.hello(n"),
            (23, vec!["name=".to_owned()])
        );
        assert_eq!(
            complete("greeting_service.hello(name='x', "),
            (33, vec!["name=".to_owned()])
        );
        assert_eq!(
            complete("greeting_service.hello(name=").1,
            Vec::<String>::new()
        );
        assert_eq!(
            complete("tail lib").1,
            Vec::<String>::new(),
            "not a live service"
        );
        assert_eq!(
            complete("tail library.bo"),
            (13, vec!["book_added".to_owned()])
        );
        assert_eq!(complete("tail ind"), (5, vec!["indexer".to_owned()]));
    }
}
