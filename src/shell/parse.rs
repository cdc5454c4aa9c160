//! Reading a line of the shell: a call, `service.method(a=1, b="x")` in Python's way or
//! `service.method {"a": 1}` in `warren call`'s, or one of the shell's own commands.

use super::value::{ParseError, Reader, describe};
use mesh::Arguments;
use serde_json::{Map, Value};

/// One line of the shell, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A blank line or a comment.
    Nothing,
    /// A call of `service.method`.
    Call {
        /// The service.
        service: String,
        /// The method.
        method: String,
        /// Its arguments.
        arguments: Arguments,
    },
    /// `help`, `help service` or `help service.method`.
    Help {
        /// The service asked about, if any.
        service: Option<String>,
        /// The method asked about, if any.
        method: Option<String>,
    },
    /// `services`: the services heard of.
    Services,
    /// `tail source.event_type [count]`: print events as they come.
    Tail {
        /// The dispatching service.
        source: String,
        /// The event type.
        event_type: String,
        /// How many events to print before stopping (until Ctrl-C when not given).
        count: Option<u64>,
    },
    /// `exit` or `quit`.
    Exit,
}

/// The shell's own commands, as typed (for completion and `help`).
pub const COMMANDS: &[&str] = &["help", "services", "tail", "exit", "quit"];

/// Reads one line.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let mut reader = Reader::new(line);
    if reader.at_end() {
        return Ok(Command::Nothing);
    }
    let Some(first) = reader.name() else {
        return Err(reader.error(format!(
            "expected service.method(...) or a command, found {}",
            describe(reader.peek())
        )));
    };
    let command = if reader.peek() == Some('.') {
        reader.bump();
        let mut service = first;
        let mut method = method_name(&mut reader, "a method name")?;
        // nameko shell's `n.rpc.service.method(...)`, pasted as it is.
        if service == "n" && method == "rpc" && reader.peek() == Some('.') {
            reader.bump();
            service = method_name(&mut reader, "a service name")?;
            if reader.peek() != Some('.') {
                return Err(reader.error("expected `.` and a method name"));
            }
            reader.bump();
            method = method_name(&mut reader, "a method name")?;
        }
        let arguments = arguments(&mut reader)?;
        check_names(&reader, &service, &method)?;
        Command::Call {
            service,
            method,
            arguments,
        }
    } else {
        match first.as_str() {
            "help" => help(&mut reader)?,
            "services" => Command::Services,
            "tail" => tail(&mut reader)?,
            "exit" | "quit" => Command::Exit,
            _ => {
                return Err(ParseError {
                    column: 1,
                    message: format!(
                        "unknown command `{first}`: a call is service.method(...); `help` lists the commands"
                    ),
                });
            }
        }
    };
    if reader.at_end() {
        Ok(command)
    } else {
        Err(reader.error(format!("unexpected {}", describe(reader.peek()))))
    }
}

/// The name after a `.`.
fn method_name(reader: &mut Reader, what: &str) -> Result<String, ParseError> {
    if reader.peek().is_some_and(char::is_whitespace) {
        return Err(reader.error(format!("expected {what} right after `.`")));
    }
    reader.name().ok_or_else(|| {
        reader.error(format!(
            "expected {what}, found {}",
            describe(reader.peek())
        ))
    })
}

/// Names that could not make a routing key are refused here, before anything is sent.
fn check_names(reader: &Reader, service: &str, method: &str) -> Result<(), ParseError> {
    for name in [service, method] {
        mesh::validate_name(name).map_err(|e| ParseError {
            column: 1,
            message: format!("invalid name `{name}`: {e}"),
        })?;
    }
    mesh::validate_call_names(service, method).map_err(|e| reader.error(e.to_string()))
}

/// A call's arguments: none, a parenthesised list, or one JSON object or array.
fn arguments(reader: &mut Reader) -> Result<Arguments, ParseError> {
    if reader.at_end() {
        return Ok(Arguments::default());
    }
    match reader.peek() {
        Some('(') => {
            reader.bump();
            argument_list(reader)
        }
        Some('{' | '[') => {
            let value = reader.value()?;
            Ok(Arguments::from_json(value).unwrap_or_default())
        }
        found => Err(reader.error(format!(
            "expected `(` or a JSON object or array, found {}",
            describe(found)
        ))),
    }
}

/// `a, b, key=c)`, as Python binds them; one object alone is the keyword arguments.
fn argument_list(reader: &mut Reader) -> Result<Arguments, ParseError> {
    let mut args = Vec::new();
    let mut kwargs = Map::new();
    reader.items(')', |reader| {
        if reader.at_keyword() {
            reader.skip_space();
            let column = reader.column();
            let name = reader.name().unwrap_or_default();
            reader.expect('=')?;
            let value = reader.value()?;
            if kwargs.insert(name.clone(), value).is_some() {
                return Err(ParseError {
                    column,
                    message: format!("keyword argument `{name}` given twice"),
                });
            }
        } else {
            if !kwargs.is_empty() {
                reader.skip_space();
                return Err(reader.error("a positional argument follows a keyword argument"));
            }
            args.push(reader.value()?);
        }
        Ok(())
    })?;
    Ok(match (args.as_slice(), kwargs.is_empty()) {
        ([Value::Object(object)], true) => Arguments::kwargs(object.clone()),
        _ => Arguments { args, kwargs },
    })
}

/// `help`, `help service`, `help service.method`.
fn help(reader: &mut Reader) -> Result<Command, ParseError> {
    if reader.at_end() {
        return Ok(Command::Help {
            service: None,
            method: None,
        });
    }
    let service = reader
        .name()
        .ok_or_else(|| reader.error("expected a service name"))?;
    let method = if reader.peek() == Some('.') {
        reader.bump();
        Some(method_name(reader, "a method name")?)
    } else {
        None
    };
    Ok(Command::Help {
        service: Some(service),
        method,
    })
}

/// `tail source.event_type [count]`.
fn tail(reader: &mut Reader) -> Result<Command, ParseError> {
    let usage = "expected tail source.event_type [count]";
    let source = reader.name().ok_or_else(|| reader.error(usage))?;
    if reader.peek() != Some('.') {
        return Err(reader.error(usage));
    }
    reader.bump();
    let event_type = method_name(reader, "an event type")?;
    for name in [&source, &event_type] {
        mesh::validate_name(name).map_err(|e| ParseError {
            column: 1,
            message: format!("invalid name `{name}`: {e}"),
        })?;
    }
    let count = if reader.at_end() {
        None
    } else {
        let column = reader.column();
        match reader.value() {
            Ok(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => n.as_u64(),
            _ => {
                return Err(ParseError {
                    column,
                    message: "the count must be a whole number above 0".to_owned(),
                });
            }
        }
    };
    Ok(Command::Tail {
        source,
        event_type,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(line: &str) -> (String, String, Value, Value) {
        match parse(line) {
            Ok(Command::Call {
                service,
                method,
                arguments,
            }) => (
                service,
                method,
                Value::Array(arguments.args),
                Value::Object(arguments.kwargs),
            ),
            other => panic!("{line}: {other:?}"),
        }
    }

    fn error(line: &str) -> String {
        match parse(line) {
            Err(e) => e.to_string(),
            Ok(other) => panic!("{line}: parsed as {other:?}"),
        }
    }

    #[test]
    fn calls_in_every_form() {
        let hello =
            |args: Value, kwargs: Value| ("greeting_service".into(), "hello".into(), args, kwargs);
        assert_eq!(
            call(r#"greeting_service.hello(name="Matt")"#),
            hello(json!([]), json!({"name": "Matt"}))
        );
        assert_eq!(
            call("  greeting_service.hello( 'Matt' )  # a comment"),
            hello(json!(["Matt"]), json!({}))
        );
        assert_eq!(
            call(r#"greeting_service.hello({"name": "Matt"})"#),
            hello(json!([]), json!({"name": "Matt"}))
        );
        assert_eq!(
            call(r#"greeting_service.hello {"name": "Matt"}"#),
            hello(json!([]), json!({"name": "Matt"}))
        );
        assert_eq!(
            call(r#"greeting_service.hello ["Matt"]"#),
            hello(json!(["Matt"]), json!({}))
        );
        assert_eq!(call("greeting_service.hello"), hello(json!([]), json!({})));
        assert_eq!(
            call("greeting_service.hello()"),
            hello(json!([]), json!({}))
        );
        assert_eq!(
            call(r#"n.rpc.greeting_service.hello(name="Matt")"#),
            hello(json!([]), json!({"name": "Matt"})),
            "nameko shell's form"
        );
        assert_eq!(call("n.rpc(1)").0, "n", "a service called n");
        assert_eq!(
            call("kv.put('a', value={'n': [1, True, None]},)"),
            (
                "kv".into(),
                "put".into(),
                json!(["a"]),
                json!({"value": {"n": [1, true, null]}})
            )
        );
        // Two objects are two positional arguments; `==` is no keyword.
        assert_eq!(call("s.m({}, {})").2, json!([{}, {}]));
        assert!(error("s.m(a==1)").contains("unknown name `a`"));
    }

    #[test]
    fn commands() {
        assert_eq!(parse(""), Ok(Command::Nothing));
        assert_eq!(parse("   # nothing"), Ok(Command::Nothing));
        assert_eq!(parse("services"), Ok(Command::Services));
        assert_eq!(parse(" exit "), Ok(Command::Exit));
        assert_eq!(parse("quit"), Ok(Command::Exit));
        assert_eq!(
            parse("help kv.get"),
            Ok(Command::Help {
                service: Some("kv".into()),
                method: Some("get".into())
            })
        );
        assert_eq!(
            parse("help"),
            Ok(Command::Help {
                service: None,
                method: None
            })
        );
        assert_eq!(
            parse("tail library.book_added 3"),
            Ok(Command::Tail {
                source: "library".into(),
                event_type: "book_added".into(),
                count: Some(3)
            })
        );
        assert_eq!(
            parse("tail library.book_added"),
            Ok(Command::Tail {
                source: "library".into(),
                event_type: "book_added".into(),
                count: None
            })
        );
    }

    #[test]
    fn errors_are_one_line_and_say_where() {
        assert_eq!(
            error("greeting_service.hello(name=Matt)"),
            "column 29: unknown name `Matt` (a string needs quotes: \"Matt\")"
        );
        assert_eq!(
            error("greeting_service.hello(name='Matt'"),
            "column 35: expected `)`, found the end of the line"
        );
        assert_eq!(
            error("s.m(a=1, 2)"),
            "column 10: a positional argument follows a keyword argument"
        );
        assert_eq!(
            error("s.m(a=1, a=2)"),
            "column 10: keyword argument `a` given twice"
        );
        assert_eq!(
            error("s.m 5"),
            "column 5: expected `(` or a JSON object or array, found `5`"
        );
        assert_eq!(error("s.m() x"), "column 7: unexpected `x`");
        assert_eq!(
            error("s. m()"),
            "column 3: expected a method name right after `.`"
        );
        assert!(error("hello").starts_with("column 1: unknown command `hello`"));
        assert!(error("tail library").contains("expected tail source.event_type [count]"));
        assert!(error("tail a.b 0").contains("whole number above 0"));
        assert!(error("tail a.b x").contains("whole number above 0"));
        assert!(error("42").contains("expected service.method(...) or a command"));
        let long = "a".repeat(200);
        assert!(error(&format!("{long}.m()")).contains("invalid name"));
        assert!(error(&format!("{}.{}()", "a".repeat(128), "b".repeat(128))).contains("254"));
        assert!(error("tail a.b 1 2").contains("unexpected `2`"));
        assert_eq!(
            error("n.rpc.kv(1)"),
            "column 9: expected `.` and a method name"
        );
    }
}
