//! The exposure policy: which `service.method` the gateway serves. Patterns are
//! `<service>.<method>` with `*` matching any run of characters within a part (`kv.*`,
//! `*.get`, `greeting_service.hello`); the default exposes every public method. A service or
//! method whose name starts with `_` is private and never exposed, whatever the patterns say.

/// A set of exposure patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    patterns: Vec<(String, String)>,
}

impl Default for Exposure {
    fn default() -> Self {
        Self {
            patterns: vec![("*".to_owned(), "*".to_owned())],
        }
    }
}

impl Exposure {
    /// Parses patterns such as `kv.*`; an empty list exposes nothing.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let patterns = patterns
            .iter()
            .map(|p| parse_pattern(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether `service.method` is served.
    pub fn allows(&self, service: &str, method: &str) -> bool {
        !service.starts_with('_')
            && !method.starts_with('_')
            && self.patterns.iter().any(|(s, m)| {
                glob(s.as_bytes(), service.as_bytes()) && glob(m.as_bytes(), method.as_bytes())
            })
    }
}

/// One `<service>.<method>` pattern (`kv.*`), as its two parts; also the syntax of the rate
/// limits' patterns (`crate::ratelimit`).
pub(crate) fn parse_pattern(pattern: &str) -> Result<(String, String), String> {
    let p = pattern.trim();
    let (service, method) = p
        .split_once('.')
        .ok_or_else(|| format!("`{p}`: expected <service>.<method>, e.g. kv.*"))?;
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'*')
    };
    if valid(service) && valid(method) {
        Ok((service.to_owned(), method.to_owned()))
    } else {
        Err(format!(
            "`{p}`: parts may hold letters, digits, `_`, `-` and `*`"
        ))
    }
}

/// `*` matches any run of bytes; everything else matches itself.
pub(crate) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        // A last `*` matches whatever is left (the default `*.*` on every request): no need to
        // try each split.
        Some((b'*', [])) => true,
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_private_names() {
        let all = Exposure::default();
        assert!(all.allows("kv", "get"));
        assert!(!all.allows("kv", "_compact"));
        assert!(!all.allows("_internal", "get"));
        let some = Exposure::parse(&["kv.get", "greeting_*.h*", "*.ping"]).expect("patterns");
        assert!(some.allows("kv", "get"));
        assert!(!some.allows("kv", "put"));
        assert!(some.allows("greeting_service", "hello"));
        assert!(!some.allows("greeting_service", "slow"));
        assert!(some.allows("anything", "ping"));
        assert!(
            some.allows("greeting_", "h"),
            "a `*` matches an empty run too"
        );
        assert!(!some.allows("anything", "_ping"));
        assert!(Exposure::parse(&["nodot"]).is_err());
        assert!(Exposure::parse(&["a.b#"]).is_err());
        assert!(
            !Exposure::parse::<&str>(&[])
                .expect("empty")
                .allows("kv", "get")
        );
    }
}
