//! [`CallContext`]: what travels with a call besides its arguments, nameko's context data plus
//! Warren's deadline and trace context.

use crate::deadline::Deadline;
use crate::protocol::{
    AUTH_TOKEN_KEY, CALL_ID_STACK_LIMIT, LANGUAGE_KEY, USER_AGENT_KEY, USER_ID_KEY,
};
use std::collections::BTreeMap;
use std::fmt;

/// Context data carried with a request: nameko's `nameko.*` headers and Warren's deadline.
///
/// Its `Debug` output never shows the `auth_token` (a credential), only that one is present.
#[derive(Clone, Default, PartialEq)]
pub struct CallContext {
    /// The ids of the calls that led here, oldest first, ending with the caller's own id.
    pub call_id_stack: Vec<String>,
    /// Other context data (`user_id`, `auth_token`, `language`, `user_agent`, ...), by key
    /// without the `nameko.` prefix.
    pub data: BTreeMap<String, String>,
    /// When the caller stops waiting.
    pub deadline: Option<Deadline>,
    /// The W3C `traceparent` of the caller's span.
    pub traceparent: Option<String>,
}

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data: BTreeMap<&str, &str> = self
            .data
            .iter()
            .map(|(key, value)| {
                let shown = if key == AUTH_TOKEN_KEY {
                    "<redacted>"
                } else {
                    value.as_str()
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("CallContext")
            .field("call_id_stack", &self.call_id_stack)
            .field("data", &data)
            .field("deadline", &self.deadline)
            .field("traceparent", &self.traceparent)
            .finish()
    }
}

impl CallContext {
    /// A context whose stack is rooted at `call_id` (the gateway passes its request id).
    pub fn rooted_at(call_id: impl Into<String>) -> Self {
        Self {
            call_id_stack: vec![call_id.into()],
            ..Self::default()
        }
    }

    /// Sets the deadline.
    pub fn with_deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets one context value (`user_id`, `auth_token`, ...).
    pub fn with_data(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }

    /// Sets the caller's user id (nameko's `nameko.user_id`).
    pub fn with_user_id(self, user_id: impl Into<String>) -> Self {
        self.with_data(USER_ID_KEY, user_id)
    }

    /// Sets the caller's bearer token (nameko's `nameko.auth_token`); never shown by `Debug`.
    pub fn with_auth_token(self, token: impl Into<String>) -> Self {
        self.with_data(AUTH_TOKEN_KEY, token)
    }

    /// Sets the caller's preferred languages (nameko's `nameko.language`), as an
    /// `Accept-Language` value.
    pub fn with_language(self, language: impl Into<String>) -> Self {
        self.with_data(LANGUAGE_KEY, language)
    }

    /// Sets the caller's user agent (nameko's `nameko.user_agent`).
    pub fn with_user_agent(self, user_agent: impl Into<String>) -> Self {
        self.with_data(USER_AGENT_KEY, user_agent)
    }

    /// The caller's preferred languages, when set.
    pub fn language(&self) -> Option<&str> {
        self.data.get(LANGUAGE_KEY).map(String::as_str)
    }

    /// The caller's user agent, when set.
    pub fn user_agent(&self) -> Option<&str> {
        self.data.get(USER_AGENT_KEY).map(String::as_str)
    }

    /// The caller's user id, when one is set.
    pub fn user_id(&self) -> Option<&str> {
        self.data.get(USER_ID_KEY).map(String::as_str)
    }

    /// The caller's bearer token, when one is set.
    pub fn auth_token(&self) -> Option<&str> {
        self.data.get(AUTH_TOKEN_KEY).map(String::as_str)
    }

    /// The stack extended with `call_id`, keeping the newest 11 entries (nameko's 10 parent calls
    /// and the call itself), as
    /// nameko does.
    pub fn stack_with(&self, call_id: &str) -> Vec<String> {
        let mut stack = self.call_id_stack.clone();
        stack.push(call_id.to_owned());
        let excess = stack.len().saturating_sub(CALL_ID_STACK_LIMIT);
        stack.drain(..excess);
        stack
    }
}
