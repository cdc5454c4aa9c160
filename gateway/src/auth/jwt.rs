//! [`JwtVerifier`]: bearer JWTs signed with HS256 (a shared secret) or RS256 (an RSA key pair;
//! the gateway holds only the public key). The signature, `exp` (required), `nbf`, and, when
//! configured, `iss` and `aud` (then required) are checked, with a small leeway for clock skew.
//! The identity is the `sub` claim (required, a non-empty string).

use super::AuthConfigError;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// The shortest HS256 secret accepted: 256 bits, the size of the hash (RFC 7518 §3.2).
const MIN_SECRET_LEN: usize = 32;
/// The longest token looked at.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The longest `sub` accepted as a user id.
const MAX_SUB_LEN: usize = 256;

/// Verifies bearer JWTs. Built with at least one key: [`JwtVerifier::hs256_secret`] or
/// [`JwtVerifier::rs256_public_key_pem`].
#[derive(Clone)]
pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
}

impl Default for JwtVerifier {
    fn default() -> Self {
        Self {
            hs256: None,
            rs256: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Which algorithms, never the keys.
        f.debug_struct("JwtVerifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    /// Optional here so that a missing `sub` is reported as such by the validation.
    #[serde(default)]
    sub: Option<String>,
}

impl JwtVerifier {
    /// A verifier with no key yet and a leeway of 30 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts HS256 tokens signed with `secret` (at least 32 bytes; a key file's trailing
    /// line break is not part of it).
    pub fn hs256_secret(mut self, secret: &[u8]) -> Result<Self, AuthConfigError> {
        let secret = secret.trim_ascii_end();
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthConfigError::WeakSecret(secret.len()));
        }
        self.hs256 = Some(DecodingKey::from_secret(secret));
        Ok(self)
    }

    /// Accepts RS256 tokens whose signature verifies with this RSA public key (PEM:
    /// `BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`). A private key is refused: the gateway
    /// needs only the public half.
    pub fn rs256_public_key_pem(mut self, pem: &[u8]) -> Result<Self, AuthConfigError> {
        if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
            return Err(AuthConfigError::PrivateKey);
        }
        let key = DecodingKey::from_rsa_pem(pem)
            .map_err(|e| AuthConfigError::InvalidPublicKey(e.to_string()))?;
        // The PEM parser does not check the key itself; a verification does.
        match jsonwebtoken::crypto::verify("AAAA", b"probe", &key, Algorithm::RS256) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
            Err(e) => return Err(AuthConfigError::InvalidPublicKey(e.to_string())),
        }
        self.rs256 = Some(key);
        Ok(self)
    }

    /// Requires the `iss` claim to be `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires the `aud` claim to name `audience`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Tolerates this much clock skew on `exp` and `nbf` (30 s by default).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Whether a key is configured (a verifier without one accepts nothing).
    pub fn has_key(&self) -> bool {
        self.hs256.is_some() || self.rs256.is_some()
    }

    /// Whether `iss` and `aud` are both checked.
    pub fn checks_issuer_and_audience(&self) -> bool {
        self.issuer.is_some() && self.audience.is_some()
    }

    /// The token's `sub` when it is valid; otherwise why not, as a fixed text that never
    /// contains any part of the token.
    pub(super) fn verify(&self, token: &str) -> Result<String, &'static str> {
        if token.len() > MAX_TOKEN_LEN {
            return Err("the token is too long");
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or("the token's algorithm is not accepted")?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| reason(e.kind()))?;
        let sub = data.claims.sub.unwrap_or_default();
        if sub.is_empty() || sub.len() > MAX_SUB_LEN || sub.chars().any(char::is_control) {
            return Err("the token's sub claim is not a usable user id");
        }
        Ok(sub)
    }
}

/// A credential-free reason for each way a token fails.
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
        ErrorKind::InvalidAudience => "the token is not meant for this audience",
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "the token has no exp claim",
            "sub" => "the token has no sub claim",
            "iss" => "the token has no iss claim",
            "aud" => "the token has no aud claim",
            _ => "the token lacks a required claim",
        },
        _ => "malformed token",
    }
}

/// Three dot-separated base64url parts: a compact JWS.
pub(super) fn looks_like_jwt(credential: &str) -> bool {
    credential.split('.').count() == 3
        && credential
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> i64 {
        i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX)
    }

    fn hs256(claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode")
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new()
            .hs256_secret(SECRET)
            .expect("secret")
            .issuer("https://issuer.example")
            .audience("warren")
    }

    fn claims(extra: Value) -> Value {
        let mut base = json!({
            "sub": "alice", "iss": "https://issuer.example", "aud": "warren", "exp": now() + 60,
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                if v.is_null() {
                    base.remove(k);
                } else {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        base
    }

    #[test]
    fn a_good_token_gives_its_sub() {
        assert_eq!(
            verifier().verify(&hs256(claims(json!({})))),
            Ok("alice".into())
        );
        // An audience list naming this one is fine; expiry within the leeway too.
        let token = hs256(claims(
            json!({"aud": ["other", "warren"], "exp": now() - 5}),
        ));
        assert_eq!(verifier().verify(&token), Ok("alice".into()));
    }

    #[test]
    fn each_bad_token_has_its_reason() {
        let v = verifier();
        let check = |extra: Value, expected: &str| {
            assert_eq!(
                v.verify(&hs256(claims(extra.clone()))),
                Err(expected),
                "{extra}"
            );
        };
        check(json!({"exp": now() - 120}), "the token has expired");
        check(json!({"nbf": now() + 120}), "the token is not valid yet");
        check(
            json!({"aud": "someone-else"}),
            "the token is not meant for this audience",
        );
        check(
            json!({"iss": "https://evil.example"}),
            "the token's issuer is not accepted",
        );
        check(json!({"exp": null}), "the token has no exp claim");
        check(json!({"sub": null}), "the token has no sub claim");
        check(json!({"iss": null}), "the token has no iss claim");
        check(json!({"aud": null}), "the token has no aud claim");
        check(
            json!({"sub": ""}),
            "the token's sub claim is not a usable user id",
        );
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({})),
            &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
        )
        .expect("encode");
        assert_eq!(
            v.verify(&forged),
            Err("the token's signature does not verify")
        );
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims(json!({})),
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode");
        assert_eq!(
            v.verify(&hs384),
            Err("the token's algorithm is not accepted")
        );
        // RS256 is not configured here, so an RS256 header is refused before any key is used.
        let mut parts: Vec<&str> = forged.split('.').collect();
        let rs_header = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9";
        parts[0] = rs_header;
        assert_eq!(
            v.verify(&parts.join(".")),
            Err("the token's algorithm is not accepted")
        );
        // alg "none" is never accepted.
        parts[0] = "eyJhbGciOiJub25lIn0";
        assert_eq!(
            v.verify(&format!("{}.{}.", parts[0], parts[1])),
            Err("malformed token")
        );
        assert_eq!(v.verify("a.b.c"), Err("malformed token"));
        assert_eq!(v.verify(&"a".repeat(9000)), Err("the token is too long"));
    }

    #[test]
    fn without_issuer_and_audience_only_signature_and_expiry_count() {
        let v = JwtVerifier::new().hs256_secret(SECRET).expect("secret");
        assert!(!v.checks_issuer_and_audience());
        let token = hs256(json!({"sub": "bob", "exp": now() + 60, "aud": "anything"}));
        assert_eq!(v.verify(&token), Ok("bob".into()));
    }

    #[test]
    fn key_material_is_checked_when_loaded() {
        assert!(matches!(
            JwtVerifier::new().hs256_secret(b"short\n"),
            Err(AuthConfigError::WeakSecret(5))
        ));
        // A trailing line break is not part of the secret.
        let mut with_newline = SECRET.to_vec();
        with_newline.push(b'\n');
        let v = JwtVerifier::new()
            .hs256_secret(&with_newline)
            .expect("secret");
        assert!(
            v.verify(&hs256(json!({"sub": "a", "exp": now() + 60})))
                .is_ok()
        );
        assert!(matches!(
            JwtVerifier::new().rs256_public_key_pem(
                b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
            ),
            Err(AuthConfigError::PrivateKey)
        ));
        assert!(matches!(
            JwtVerifier::new().rs256_public_key_pem(b"not a pem"),
            Err(AuthConfigError::InvalidPublicKey(_))
        ));
        let shown = format!("{v:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJ.eyJ.sig-_"));
        assert!(!looks_like_jwt("plain-api-key-0123456789"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c d"));
    }
}
