//! What the shell prints: results as pretty JSON, errors as the problem documents the gateway
//! would answer with (docs/architecture.md §3), and the text of `help` and `services`.

use super::catalogue::Catalogue;
use mesh::CallError;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::Write as _;
use warren_gateway::{CallInfo, ErrorMap, GatewayError, ServiceOverview};

/// The commands, as `help` lists them.
const HELP: &str = "\
service.method(a=1, b=\"x\")   call with keyword arguments
service.method(1, \"x\")       call with positional arguments
service.method({\"a\": 1})     one JSON object alone is the keyword arguments
service.method {\"a\": 1}      the arguments as `warren call` takes them: a JSON object or array
n.rpc.service.method(...)    nameko shell's form, the same call
                             values are JSON, or Python's True, False, None and 'strings'
services                     the services heard of (each announces itself every 5 s)
help service[.method]        a service's methods, or a method's arguments
tail source.event_type [N]   print source's events as they come: N of them, or until Ctrl-C
exit                         leave (Ctrl-D too)";

/// Writes `text` and a newline to standard output; an error means no one reads it any more.
pub fn out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()
}

/// A result, pretty-printed.
pub fn result(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The problem document of a failed call of `service.method` that was given `timeout_ms`.
pub fn problem(error: CallError, service: &str, method: &str, timeout_ms: u64) -> String {
    let call = CallInfo {
        service: Some(service.to_owned()),
        method: Some(method.to_owned()),
        request_id: None,
    };
    let problem = GatewayError::of_call(error, timeout_ms).to_problem(&ErrorMap::default(), &call);
    serde_json::to_string_pretty(&problem).unwrap_or_else(|_| problem.detail.clone())
}

/// What `help`, `help service` or `help service.method` prints.
pub fn help(catalogue: &Catalogue, service: Option<&str>, method: Option<&str>) -> String {
    let Some(service) = service else {
        return HELP.to_owned();
    };
    let Some(descriptor) = catalogue.descriptor(service) else {
        return format!(
            "no live instance of `{service}` has announced itself (each does every 5 s); \
             it can be called all the same"
        );
    };
    let mut text = String::new();
    match method {
        None => {
            let _ = write!(text, "{service} {}", descriptor.version);
            for m in &descriptor.methods {
                let _ = write!(text, "\n  {}", m.name);
                if let Some(description) = &m.description {
                    let _ = write!(text, ": {description}");
                }
            }
        }
        Some(method) => {
            let Some(m) = descriptor.methods.iter().find(|m| m.name == method) else {
                return format!("`{service}` has no method `{method}`");
            };
            let _ = write!(text, "{service}.{method}");
            if let Some(description) = &m.description {
                let _ = write!(text, ": {description}");
            }
            let parameters = catalogue.parameters(service, method);
            if parameters.is_empty() {
                text.push_str("\n  no arguments");
            }
            for (name, schema, required) in parameters {
                let kind = match &schema["type"] {
                    Value::String(kind) => kind.clone(),
                    // `["integer", "null"]`: an optional field's type.
                    Value::Array(kinds) => kinds
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" or "),
                    _ => "any".to_owned(),
                };
                let need = if required { "required" } else { "optional" };
                let _ = write!(text, "\n  {name} ({kind}, {need})");
                if let Some(description) = schema["description"].as_str() {
                    let _ = write!(text, ": {description}");
                }
            }
        }
    }
    text
}

/// What `services` prints: one line a service, its live instances and its methods.
pub fn services(services: &[ServiceOverview]) -> String {
    if services.is_empty() {
        return "no service has announced itself yet (each does every 5 s)".to_owned();
    }
    let width = services.iter().map(|s| s.name.len()).max().unwrap_or(0);
    services
        .iter()
        .map(|s| {
            let live = match s.instances.len() {
                1 => "1 instance".to_owned(),
                n => format!("{n} instances"),
            };
            format!("{:width$}  {live:11}  {}", s.name, s.methods.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::catalogue::tests::heard;

    #[test]
    fn problems_are_the_gateways() {
        let text = problem(CallError::DeadlineExceeded(3), "s", "m", 500);
        let problem: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(problem["type"], "urn:warren:problem:deadline-exceeded");
        assert_eq!(problem["status"], 504);
        assert_eq!(problem["detail"], "no reply within the deadline of 500 ms");
        assert_eq!(problem["service"], "s");
        assert_eq!(problem["method"], "m");
    }

    #[test]
    fn help_describes_from_the_descriptors() {
        let catalogue = heard();
        assert!(help(&catalogue, None, None).contains("tail source.event_type [N]"));
        assert_eq!(
            help(&catalogue, Some("greeting_service"), None),
            "greeting_service 1.0.0\n  hello: hellos\n  help_me: help_mes"
        );
        assert_eq!(
            help(&catalogue, Some("greeting_service"), Some("hello")),
            "greeting_service.hello: hellos\n  name (string, required): Who to greet."
        );
        assert!(help(&catalogue, Some("greeting_service"), Some("x")).contains("no method"));
        assert!(help(&catalogue, Some("nobody"), None).contains("called all the same"));
        let listed = services(&catalogue.overview());
        assert!(
            listed.starts_with("greeting_service  1 instance   hello, help_me"),
            "{listed}"
        );
    }
}
