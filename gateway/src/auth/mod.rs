//! Optional authentication of callers: static API keys ([`ApiKeys`]) and bearer JWTs
//! ([`JwtVerifier`], HS256 and RS256). [`Auth`] is off by default: every caller is anonymous.
//!
//! When it is on, `/rpc/...` needs a credential:
//! - `Authorization: Bearer <credential>`, where the credential is an API key or a JWT (a
//!   credential that matches no API key and looks like a JWT is verified as one), or
//! - `X-Api-Key: <key>` (API keys only).
//!
//! Sending both headers is refused. A request without a credential, or with a bad one, is
//! answered 401 with `WWW-Authenticate: Bearer realm="warren"` (plus `error="invalid_token"`
//! when a credential was presented, RFC 6750); an API key limited to some methods gets 403 for
//! the others. The caller's [`Identity`] travels to the service as nameko's `nameko.user_id`
//! context header, and a JWT as `nameko.auth_token` (an API key never leaves the gateway).
//! No error message and no log line ever contains a credential.

mod api_keys;
mod jwt;

pub use api_keys::ApiKeys;
pub use jwt::JwtVerifier;

use crate::policy::Exposure;
use axum::http::{HeaderMap, HeaderName, header};
use mesh::CallContext;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// `X-Api-Key`: an API key, as an alternative to `Authorization: Bearer <key>`.
pub const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The realm named in `WWW-Authenticate` challenges.
pub const REALM: &str = "warren";

/// Who may call the gateway. Off by default.
#[derive(Clone, Default)]
pub struct Auth {
    api_keys: Option<Arc<ApiKeys>>,
    jwt: Option<Arc<JwtVerifier>>,
    protect_docs: bool,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts and settings only: never a key.
        f.debug_struct("Auth")
            .field("api_keys", &self.api_keys.as_ref().map(|k| k.len()))
            .field("jwt", &self.jwt)
            .field("protect_docs", &self.protect_docs)
            .finish()
    }
}

impl Auth {
    /// No authentication: every caller is anonymous (the default).
    pub fn off() -> Self {
        Self::default()
    }

    /// Accepts these API keys.
    pub fn with_api_keys(mut self, keys: ApiKeys) -> Self {
        self.api_keys = Some(Arc::new(keys));
        self
    }

    /// Accepts JWTs this verifier accepts.
    pub fn with_jwt(mut self, jwt: JwtVerifier) -> Self {
        self.jwt = Some(Arc::new(jwt));
        self
    }

    /// Whether `/openapi.json`, `/docs` and `/services` need credentials too (they are public
    /// by default; `/healthz`, `/readyz` and `/metrics` always are).
    pub fn protecting_docs(mut self, protect: bool) -> Self {
        self.protect_docs = protect;
        self
    }

    /// Whether any credential is required.
    pub fn is_on(&self) -> bool {
        self.api_keys.is_some() || self.jwt.is_some()
    }

    /// Whether the documentation endpoints need credentials.
    pub fn protects_docs(&self) -> bool {
        self.is_on() && self.protect_docs
    }

    /// Whether API keys are accepted.
    pub fn accepts_api_keys(&self) -> bool {
        self.api_keys.is_some()
    }

    /// Whether JWTs are accepted.
    pub fn accepts_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// The caller's identity: `Ok(None)` when authentication is off, an [`AuthError`] when a
    /// credential is required and missing or not valid.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Identity>, AuthError> {
        if !self.is_on() {
            return Ok(None);
        }
        let authorization = headers.get(header::AUTHORIZATION);
        let api_key = headers.get(&API_KEY);
        let identity = match (authorization, api_key) {
            (None, None) => return Err(AuthError::Missing),
            (Some(_), Some(_)) => return Err(AuthError::Ambiguous),
            (None, Some(key)) => {
                let key = key
                    .to_str()
                    .map_err(|_| AuthError::Rejected("the API key is not valid"))?;
                self.api_key(key.trim())
                    .ok_or(AuthError::Rejected("the API key is not valid"))?
            }
            (Some(value), None) => {
                let value = value.to_str().map_err(|_| AuthError::NotBearer)?;
                let value = value.trim();
                let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(AuthError::NotBearer);
                }
                self.bearer(credential.trim())?
            }
        };
        Ok(Some(identity))
    }

    fn api_key(&self, key: &str) -> Option<Identity> {
        let entry = self.api_keys.as_ref()?.find(key)?;
        Some(Identity {
            user_id: entry.user_id.clone(),
            token: None,
            allowed: entry.allowed.clone(),
        })
    }

    fn bearer(&self, credential: &str) -> Result<Identity, AuthError> {
        if credential.is_empty() {
            return Err(AuthError::Missing);
        }
        if let Some(identity) = self.api_key(credential) {
            return Ok(identity);
        }
        match &self.jwt {
            Some(jwt) if jwt::looks_like_jwt(credential) => {
                let user_id = jwt.verify(credential).map_err(AuthError::Rejected)?;
                Ok(Identity {
                    user_id,
                    token: Some(credential.to_owned()),
                    allowed: None,
                })
            }
            Some(_) if self.api_keys.is_none() => Err(AuthError::Rejected("malformed token")),
            _ => Err(AuthError::Rejected("the credential is not valid")),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, PartialEq)]
pub struct Identity {
    user_id: String,
    /// The JWT presented, passed on as `auth_token`; `None` for API keys.
    token: Option<String>,
    /// The methods this caller may call, when its API key limits them.
    allowed: Option<Exposure>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("user_id", &self.user_id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allowed", &self.allowed)
            .finish()
    }
}

impl Identity {
    /// The user id: the API key's user, or the JWT's `sub` claim.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Whether this caller may call `service.method` (the exposure policy applies besides).
    pub fn allows(&self, service: &str, method: &str) -> bool {
        self.allowed
            .as_ref()
            .is_none_or(|allowed| allowed.allows(service, method))
    }

    /// `context` with this identity's `user_id` and, for a JWT, its `auth_token`.
    pub fn annotate(&self, context: CallContext) -> CallContext {
        let context = context.with_user_id(self.user_id.as_str());
        match &self.token {
            Some(token) => context.with_auth_token(token.as_str()),
            None => context,
        }
    }
}

/// Why a request was not authenticated (401). Messages are fixed texts: they never contain
/// the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential was sent.
    #[error("credentials are required: send `Authorization: Bearer <token>` or `X-Api-Key: <key>`")]
    Missing,
    /// `Authorization` uses another scheme than `Bearer`.
    #[error("the Authorization header must use the Bearer scheme")]
    NotBearer,
    /// Both `Authorization` and `X-Api-Key` were sent.
    #[error("send one credential: Authorization or X-Api-Key, not both")]
    Ambiguous,
    /// The credential was not accepted, for this reason.
    #[error("{0}")]
    Rejected(&'static str),
}

impl AuthError {
    /// The `WWW-Authenticate` challenge answering this error (RFC 6750 §3).
    pub fn challenge(&self) -> String {
        match self {
            Self::Missing | Self::NotBearer => format!("Bearer realm=\"{REALM}\""),
            Self::Ambiguous => format!("Bearer realm=\"{REALM}\", error=\"invalid_request\""),
            Self::Rejected(reason) => format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{reason}\""
            ),
        }
    }
}

/// The `WWW-Authenticate` challenge of a 403: the credential is good, the method not allowed.
pub fn insufficient_scope() -> String {
    format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\"")
}

/// Why the authentication configuration could not be loaded. Messages name files and lines,
/// never their contents.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A key file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the API key file is not `<user_id> <key> [<service>.<method>...]`.
    #[error("line {line}: {reason}")]
    ApiKeyLine {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The API key file holds no key.
    #[error("no API key in the file (lines are `<user_id> <key> [<service>.<method>...]`)")]
    NoApiKeys,
    /// The HS256 secret is shorter than 32 bytes (RFC 7518 §3.2).
    #[error("the HS256 secret is {0} bytes long; at least 32 are required")]
    WeakSecret(usize),
    /// A private key was given where the public key belongs.
    #[error("this is a private key; give the RS256 public key (BEGIN PUBLIC KEY) instead")]
    PrivateKey,
    /// The RS256 public key could not be used.
    #[error("not a usable RSA public key in PEM form: {0}")]
    InvalidPublicKey(String),
}

/// Reads a key file.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, AuthConfigError> {
    std::fs::read(path).map_err(|source| AuthConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const KEY: &str = "k-0123456789abcdef-alice";

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(name.clone(), HeaderValue::from_str(value).expect("value"));
        }
        h
    }

    fn keys() -> Auth {
        let file = format!("alice {KEY}\nbob k-0123456789abcdef-bob kv.get\n");
        Auth::off().with_api_keys(ApiKeys::parse(&file).expect("keys"))
    }

    #[test]
    fn off_lets_everyone_in_anonymously() {
        let auth = Auth::off();
        assert!(!auth.is_on());
        assert_eq!(auth.authenticate(&HeaderMap::new()), Ok(None));
        assert!(!Auth::off().protecting_docs(true).protects_docs());
    }

    #[test]
    fn api_keys_by_bearer_or_header() {
        let auth = keys();
        let bearer = format!("Bearer {KEY}");
        for h in [
            headers(&[(header::AUTHORIZATION, &bearer)]),
            headers(&[(header::AUTHORIZATION, &format!("bearer  {KEY} "))]),
            headers(&[(API_KEY, KEY)]),
        ] {
            let id = auth.authenticate(&h).expect("accepted").expect("identity");
            assert_eq!(id.user_id(), "alice");
            assert!(id.allows("kv", "put"));
            // An API key is never passed on.
            let context = id.annotate(CallContext::default());
            assert_eq!(
                context.data.get("user_id").map(String::as_str),
                Some("alice")
            );
            assert!(!context.data.contains_key("auth_token"));
        }
        let bob = auth
            .authenticate(&headers(&[(API_KEY, "k-0123456789abcdef-bob")]))
            .expect("accepted")
            .expect("identity");
        assert!(bob.allows("kv", "get"));
        assert!(!bob.allows("kv", "put"));
    }

    #[test]
    fn refusals_and_their_challenges() {
        let auth = keys();
        let refuse = |h: HeaderMap| auth.authenticate(&h).expect_err("refused");
        let missing = refuse(HeaderMap::new());
        assert_eq!(missing, AuthError::Missing);
        assert_eq!(missing.challenge(), "Bearer realm=\"warren\"");
        assert_eq!(
            refuse(headers(&[(header::AUTHORIZATION, "Basic YWxpY2U6eA==")])),
            AuthError::NotBearer
        );
        assert_eq!(
            refuse(headers(&[(header::AUTHORIZATION, "Bearer ")])),
            AuthError::Missing
        );
        assert_eq!(
            refuse(headers(&[
                (API_KEY, KEY),
                (header::AUTHORIZATION, "Bearer x")
            ])),
            AuthError::Ambiguous
        );
        let wrong = refuse(headers(&[(API_KEY, "k-0123456789abcdef-eve")]));
        assert!(wrong.challenge().contains("error=\"invalid_token\""));
        assert!(!wrong.to_string().contains("eve"));
        let wrong = refuse(headers(&[(header::AUTHORIZATION, "Bearer nope-nope")]));
        assert!(!wrong.to_string().contains("nope"));
        assert!(insufficient_scope().contains("insufficient_scope"));
    }

    #[test]
    fn debug_output_shows_no_key() {
        let shown = format!("{:?}", keys());
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }
}
