//! Values as the shell reads them: JSON, plus what a nameko shell user types out of habit —
//! Python's `True`, `False` and `None`, single-quoted strings, and trailing commas.

use serde_json::{Map, Value};
use thiserror::Error;

/// Why a line could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// The column (1-based, in characters) where reading stopped.
    pub column: usize,
    /// What was expected or wrong there.
    pub message: String,
}

/// A cursor over one line of input.
pub struct Reader {
    chars: Vec<char>,
    position: usize,
}

impl Reader {
    /// A reader at the start of `line`.
    pub fn new(line: &str) -> Self {
        Self {
            chars: line.chars().collect(),
            position: 0,
        }
    }

    /// The current column (1-based).
    pub fn column(&self) -> usize {
        self.position + 1
    }

    /// An error at the current position.
    pub fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            column: self.column(),
            message: message.into(),
        }
    }

    /// The next character, if any, without taking it.
    pub fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    /// The character after the next one.
    fn peek_second(&self) -> Option<char> {
        self.chars.get(self.position + 1).copied()
    }

    /// Takes the next character.
    pub fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.position += 1;
        Some(c)
    }

    /// Skips whitespace.
    pub fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.position += 1;
        }
    }

    /// Whether only whitespace (or a `#` comment) is left.
    pub fn at_end(&mut self) -> bool {
        self.skip_space();
        matches!(self.peek(), None | Some('#'))
    }

    /// Takes `expected` (after whitespace), or fails saying what was found instead.
    pub fn expect(&mut self, expected: char) -> Result<(), ParseError> {
        self.skip_space();
        match self.peek() {
            Some(c) if c == expected => {
                self.position += 1;
                Ok(())
            }
            found => Err(self.error(format!("expected `{expected}`, found {}", describe(found)))),
        }
    }

    /// Takes `c` if it comes next (after whitespace).
    pub fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    /// A name: a letter or `_`, then letters, digits, `_` or `-` (what a service or method
    /// name may hold; a keyword argument's name is checked further by its caller).
    pub fn name(&mut self) -> Option<String> {
        self.skip_space();
        let first = self.peek()?;
        if !(first.is_ascii_alphabetic() || first == '_') {
            return None;
        }
        let start = self.position;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.position += 1;
        }
        Some(self.chars[start..self.position].iter().collect())
    }

    /// Whether a keyword argument (`name=`, not `name==`) starts here; the position is kept.
    pub fn at_keyword(&mut self) -> bool {
        let start = self.position;
        let keyword = self.name().is_some() && {
            self.skip_space();
            self.peek() == Some('=') && self.peek_second() != Some('=')
        };
        self.position = start;
        keyword
    }

    /// A value: JSON, Python's literals, single-quoted strings, trailing commas.
    pub fn value(&mut self) -> Result<Value, ParseError> {
        self.skip_space();
        match self.peek() {
            Some('"' | '\'') => self.string().map(Value::String),
            Some('[') => self.array(),
            Some('{') => self.object(),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let start = self.position;
                let word = self.name().unwrap_or_default();
                match word.as_str() {
                    "true" | "True" => Ok(Value::Bool(true)),
                    "false" | "False" => Ok(Value::Bool(false)),
                    "null" | "None" => Ok(Value::Null),
                    _ => {
                        self.position = start;
                        Err(self.error(format!(
                            "unknown name `{word}` (a string needs quotes: \"{word}\")"
                        )))
                    }
                }
            }
            found => Err(self.error(format!("expected a value, found {}", describe(found)))),
        }
    }

    /// Items up to `close` (the opening bracket already taken), separated by commas, a trailing
    /// one allowed: each read by `item`.
    pub fn items(
        &mut self,
        close: char,
        mut item: impl FnMut(&mut Self) -> Result<(), ParseError>,
    ) -> Result<(), ParseError> {
        loop {
            if self.eat(close) {
                return Ok(());
            }
            item(self)?;
            if !self.eat(',') {
                return self.expect(close);
            }
        }
    }

    fn array(&mut self) -> Result<Value, ParseError> {
        self.expect('[')?;
        let mut items = Vec::new();
        self.items(']', |reader| {
            items.push(reader.value()?);
            Ok(())
        })?;
        Ok(Value::Array(items))
    }

    fn object(&mut self) -> Result<Value, ParseError> {
        self.expect('{')?;
        let mut members = Map::new();
        self.items('}', |reader| {
            reader.skip_space();
            if !matches!(reader.peek(), Some('"' | '\'')) {
                return Err(reader.error(format!(
                    "expected a quoted key, found {}",
                    describe(reader.peek())
                )));
            }
            let key = reader.string()?;
            reader.expect(':')?;
            members.insert(key, reader.value()?);
            Ok(())
        })?;
        Ok(Value::Object(members))
    }

    /// A JSON number, read by serde_json so its value is exactly what JSON would make of it.
    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.position;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(c))
        {
            self.position += 1;
        }
        let token: String = self.chars[start..self.position].iter().collect();
        serde_json::from_str::<serde_json::Number>(&token)
            .map(Value::Number)
            .map_err(|_| ParseError {
                column: start + 1,
                message: format!("`{token}` is not a number"),
            })
    }

    /// A string in double or single quotes, with JSON's escapes (and `\'`).
    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.position;
        let quote = self.bump().unwrap_or('"');
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(ParseError {
                        column: start + 1,
                        message: "this string is not closed".to_owned(),
                    });
                }
                Some(c) if c == quote => return Ok(text),
                Some('\\') => text.push(self.escape()?),
                Some(c) => text.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, ParseError> {
        let escaped = match self.bump() {
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some(c @ ('"' | '\'' | '\\' | '/')) => c,
            Some('u') => return self.unicode_escape(),
            found => {
                self.position = self.position.saturating_sub(1);
                return Err(self.error(format!("unknown escape `\\{}`", found.unwrap_or(' '))));
            }
        };
        Ok(escaped)
    }

    /// `\uXXXX`, a surrogate pair taken whole.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let high = self.hex4()?;
        if !(0xD800..0xDC00).contains(&high) {
            return char::from_u32(high).ok_or_else(|| self.error("not a character"));
        }
        if !(self.bump() == Some('\\') && self.bump() == Some('u')) {
            return Err(self.error("a high surrogate must be followed by a low one"));
        }
        let low = self.hex4()?;
        if !(0xDC00..0xE000).contains(&low) {
            return Err(self.error("a high surrogate must be followed by a low one"));
        }
        char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
            .ok_or_else(|| self.error("not a character"))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self
                .bump()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.error("`\\u` needs four hex digits"))?;
            code = code * 16 + digit;
        }
        Ok(code)
    }
}

/// What was found, for an error message.
pub fn describe(found: Option<char>) -> String {
    match found {
        None => "the end of the line".to_owned(),
        Some(c) => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(text: &str) -> Result<Value, ParseError> {
        let mut reader = Reader::new(text);
        let value = reader.value()?;
        if reader.at_end() {
            Ok(value)
        } else {
            Err(reader.error("trailing input"))
        }
    }

    #[test]
    fn json_reads_as_json() {
        let text =
            r#"{"a": [1, -2.5, 3e2, true, false, null], "b": {"c": "d\n\u00e9\ud83d\ude00"}}"#;
        assert_eq!(value(text), Ok(serde_json::from_str(text).expect("json")));
        assert_eq!(
            value("12345678901234567890"),
            Ok(json!(12345678901234567890u64))
        );
    }

    #[test]
    fn python_literals_and_quotes() {
        assert_eq!(
            value("{'a': True, 'b': [False, None,], 'c': 'it\\'s \"x\"',}"),
            Ok(json!({"a": true, "b": [false, null], "c": "it's \"x\""}))
        );
    }

    #[test]
    fn errors_say_where_and_what() {
        for (text, expected) in [
            (
                "[1, matt]",
                "column 5: unknown name `matt` (a string needs quotes: \"matt\")",
            ),
            ("'abc", "column 1: this string is not closed"),
            ("{a: 1}", "column 2: expected a quoted key, found `a`"),
            ("[1 2]", "column 4: expected `]`, found `2`"),
            ("1.2.3", "column 1: `1.2.3` is not a number"),
            ("\"\\q\"", "column 3: unknown escape `\\q`"),
            (
                "[1,",
                "column 4: expected a value, found the end of the line",
            ),
        ] {
            let error = value(text).err().map(|e| e.to_string());
            assert_eq!(error.as_deref(), Some(expected), "{text}");
        }
    }
}
