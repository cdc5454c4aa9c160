//! Authentication (docs/architecture.md §7): API keys and HS256/RS256 JWTs on `/rpc`, 401 with
//! `WWW-Authenticate` and 403, the caller's identity as nameko's `user_id`/`auth_token` context
//! data, probes and (by default) docs open, credentials never echoed.

use crate::common::{Harness, Kind, assert_problem, unique};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mesh::{Ctx, RpcError, Service};
use serde_json::{Value, json};
use warren_gateway::{ApiKeys, Auth, GatewayConfig, JwtVerifier};

const ALICE_KEY: &str = "ak-alice-7f3c9e1d2b4a6058";
const READER_KEY: &str = "ak-reader-0c1d2e3f4a5b6c7d";
const SECRET: &[u8] = b"hs256-test-secret-0123456789abcdef";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "warren-tests";

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the service saw of its caller.
async fn whoami(ctx: Ctx) -> Result<Value, RpcError> {
    Ok(json!({"user_id": ctx.user_id(), "auth_token": ctx.auth_token()}))
}

async fn ping() -> Result<&'static str, RpcError> {
    Ok("pong")
}

/// API keys for `alice` (any method) and `reader` (only `*.ping`), and HS256 and RS256 JWTs
/// for issuer `ISSUER` and audience `AUDIENCE`.
fn auth() -> Auth {
    let keys = ApiKeys::parse(&format!(
        "# test keys\nalice {ALICE_KEY}\nreader {READER_KEY} *.ping\n"
    ))
    .expect("keys");
    let jwt = JwtVerifier::new()
        .hs256_secret(SECRET)
        .expect("secret")
        .rs256_public_key_pem(&fixture("jwt-rs256-public.pem"))
        .expect("public key")
        .issuer(ISSUER)
        .audience(AUDIENCE);
    Auth::off().with_api_keys(keys).with_jwt(jwt)
}

/// A gateway with `auth` and a service `t_auth_*` (whoami, ping).
async fn harness(kind: Kind, auth: Auth) -> (Harness, String) {
    let config = GatewayConfig {
        auth,
        cors_origins: vec!["https://app.example".to_owned()],
        ..GatewayConfig::default()
    };
    let mut h = Harness::on(kind, config).await;
    let svc = unique("auth");
    h.serve(
        Service::new(svc.clone())
            .rpc("whoami", whoami)
            .rpc("ping", ping),
    )
    .await;
    (h, svc)
}

fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).expect("time")
}

/// Claims for `sub`, valid for a minute, with `changes` applied (`null` removes a claim).
fn claims(sub: &str, changes: Value) -> Value {
    let mut claims = json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 60});
    if let (Some(claims), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
        for (key, value) in changes {
            if value.is_null() {
                claims.remove(key);
            } else {
                claims.insert(key.clone(), value.clone());
            }
        }
    }
    claims
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encode")
}

fn rs256(claims: &Value, private_key: &str) -> String {
    let key = EncodingKey::from_rsa_pem(&fixture(private_key)).expect("private key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("encode")
}

/// `POST /rpc/{svc}/{method}` with `header: value`.
async fn post_with(
    h: &Harness,
    svc: &str,
    method: &str,
    header: &str,
    value: &str,
) -> reqwest::Response {
    h.http
        .post(format!("{}/rpc/{svc}/{method}", h.base))
        .header(header, value)
        .json(&json!({}))
        .send()
        .await
        .expect("send")
}

async fn bearer(h: &Harness, svc: &str, method: &str, token: &str) -> reqwest::Response {
    post_with(h, svc, method, "authorization", &format!("Bearer {token}")).await
}

/// Asserts a 401 with an `invalid_token` challenge whose body does not contain `credential`;
/// returns the body's detail.
async fn assert_rejected(response: reqwest::Response, credential: &str) -> String {
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"warren\", error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(!challenge.contains(credential), "{challenge}");
    let body = assert_problem(response, 401, "unauthenticated").await;
    assert!(
        !body.to_string().contains(credential),
        "credential echoed: {body}"
    );
    body["detail"].as_str().unwrap_or("").to_owned()
}

pub async fn without_credentials_rpc_is_401_and_probes_and_docs_stay_open(kind: Kind) {
    let (h, svc) = harness(kind, auth()).await;
    let r = h.post(&svc, "whoami", json!({})).await;
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"warren\"");
    let body = assert_problem(r, 401, "unauthenticated").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("credentials are required"),
        "{body}"
    );
    // Nothing else is looked at before the credential: a bad name, another scheme, an unknown
    // service are all 401.
    for path in ["/rpc/a.b/x", &format!("/rpc/{}/x", unique("nobody"))] {
        let r = h
            .http
            .post(format!("{}{path}", h.base))
            .send()
            .await
            .expect("send");
        assert_problem(r, 401, "unauthenticated").await;
    }
    let r = post_with(&h, &svc, "whoami", "authorization", "Basic YWxpY2U6cHc=").await;
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"warren\"");
    assert_problem(r, 401, "unauthenticated").await;

    // Probes, metrics and (by default) the documentation need no credential.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/services",
        "/docs/",
    ] {
        let r = h
            .http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{path}");
    }
    // A CORS preflight carries no credential and must pass.
    let r = h
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/rpc/{svc}/whoami", h.base),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, x-api-key")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-api-key"),
        "{allowed}"
    );

    // The document declares how to authenticate.
    let doc: Value = h
        .http
        .get(format!("{}/openapi.json", h.base))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["apiKeyAuth"]["name"], "X-Api-Key", "{schemes}");
    assert_eq!(
        doc["security"],
        json!([{"bearerAuth": []}, {"apiKeyAuth": []}])
    );
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
    assert!(
        doc["components"]["responses"]["Unauthorized"]["headers"]["WWW-Authenticate"].is_object()
    );
}

pub async fn api_keys_identify_the_caller_to_the_service(kind: Kind) {
    let (h, svc) = harness(kind, auth()).await;
    for r in [
        bearer(&h, &svc, "whoami", ALICE_KEY).await,
        post_with(&h, &svc, "whoami", "x-api-key", ALICE_KEY).await,
    ] {
        assert_eq!(r.status(), 200);
        // The service sees the user; an API key never leaves the gateway.
        assert_eq!(
            r.json::<Value>().await.expect("json"),
            json!({"user_id": "alice", "auth_token": null})
        );
    }

    let wrong = "ak-alice-7f3c9e1d2b4a6059";
    let detail = assert_rejected(
        post_with(&h, &svc, "whoami", "x-api-key", wrong).await,
        wrong,
    )
    .await;
    assert_eq!(detail, "the API key is not valid");
    assert_rejected(bearer(&h, &svc, "whoami", wrong).await, wrong).await;

    // Both headers at once are refused, whatever they hold.
    let r = h
        .http
        .post(format!("{}/rpc/{svc}/whoami", h.base))
        .header("x-api-key", ALICE_KEY)
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .send()
        .await
        .expect("send");
    let body = assert_problem(r, 401, "unauthenticated").await;
    assert!(!body.to_string().contains(ALICE_KEY), "{body}");

    // `reader` may call `*.ping` only: other methods are 403.
    let r = post_with(&h, &svc, "ping", "x-api-key", READER_KEY).await;
    assert_eq!(r.status(), 200);
    let r = post_with(&h, &svc, "whoami", "x-api-key", READER_KEY).await;
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"warren\", error=\"insufficient_scope\""
    );
    let body = assert_problem(r, 403, "forbidden").await;
    assert_eq!(
        body["detail"],
        format!("user `reader` may not call `{svc}.whoami`")
    );
    assert!(!body.to_string().contains(READER_KEY), "{body}");
}

pub async fn hs256_jwts_are_checked_and_passed_on(kind: Kind) {
    let (h, svc) = harness(kind, auth()).await;
    let token = hs256(&claims("carol", json!({})), SECRET);
    let r = bearer(&h, &svc, "whoami", &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"user_id": "carol", "auth_token": token})
    );

    for (changes, secret, reason) in [
        (
            json!({"exp": now() - 3600}),
            SECRET,
            "the token has expired",
        ),
        (
            json!({"aud": "another-api"}),
            SECRET,
            "the token is not meant for this audience",
        ),
        (
            json!({"iss": "https://evil.test"}),
            SECRET,
            "the token's issuer is not accepted",
        ),
        (json!({"iss": null}), SECRET, "the token has no iss claim"),
        (json!({"exp": null}), SECRET, "the token has no exp claim"),
        (
            json!({}),
            b"another-secret-another-secret-0123".as_slice(),
            "the token's signature does not verify",
        ),
    ] {
        let token = hs256(&claims("carol", changes.clone()), secret);
        let detail = assert_rejected(bearer(&h, &svc, "whoami", &token).await, &token).await;
        assert_eq!(detail, reason, "{changes}");
        // No piece of the token either (its payload holds the claims).
        let payload = token.split('.').nth(1).unwrap_or("-");
        assert!(!detail.contains(payload), "{detail}");
    }
    // A token whose signature was tampered with is refused too.
    let detail = assert_rejected(
        bearer(&h, &svc, "whoami", &format!("{token}x")).await,
        &token,
    )
    .await;
    assert_eq!(detail, "the token's signature does not verify");
}

pub async fn rs256_jwts_are_checked_against_the_public_key(kind: Kind) {
    let (h, svc) = harness(kind, auth()).await;
    let token = rs256(&claims("dave", json!({})), "jwt-rs256-private.pem");
    let r = bearer(&h, &svc, "whoami", &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"user_id": "dave", "auth_token": token})
    );

    let forged = rs256(&claims("dave", json!({})), "jwt-rs256-other-private.pem");
    let detail = assert_rejected(bearer(&h, &svc, "whoami", &forged).await, &forged).await;
    assert_eq!(detail, "the token's signature does not verify");
    let expired = rs256(
        &claims("dave", json!({"exp": now() - 3600})),
        "jwt-rs256-private.pem",
    );
    let detail = assert_rejected(bearer(&h, &svc, "whoami", &expired).await, &expired).await;
    assert_eq!(detail, "the token has expired");

    // With only RS256 configured, an HS256 token (even one signed with the public key's bytes,
    // the classic algorithm confusion) is refused.
    let rs_only = Auth::off().with_jwt(
        JwtVerifier::new()
            .rs256_public_key_pem(&fixture("jwt-rs256-public.pem"))
            .expect("public key")
            .issuer(ISSUER)
            .audience(AUDIENCE),
    );
    let (h, svc) = harness(kind, rs_only).await;
    let confused = hs256(
        &claims("mallory", json!({})),
        &fixture("jwt-rs256-public.pem"),
    );
    let detail = assert_rejected(bearer(&h, &svc, "whoami", &confused).await, &confused).await;
    assert_eq!(detail, "the token's algorithm is not accepted");
    // Without API keys, a credential that is no JWT is simply malformed.
    let detail = assert_rejected(bearer(&h, &svc, "whoami", ALICE_KEY).await, ALICE_KEY).await;
    assert_eq!(detail, "malformed token");
    assert_eq!(bearer(&h, &svc, "whoami", &token).await.status(), 200);
}

pub async fn protected_docs_need_credentials_and_probes_never_do(kind: Kind) {
    let (h, svc) = harness(kind, auth().protecting_docs(true)).await;
    for path in ["/openapi.json", "/services", "/docs/"] {
        let r = h
            .http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .expect("send");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"warren\"");
        assert_problem(r, 401, "unauthenticated").await;
        let r = h
            .http
            .get(format!("{}{path}", h.base))
            .header("x-api-key", ALICE_KEY)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{path}");
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = h
            .http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{path}");
    }
    let doc: Value = h
        .http
        .get(format!("{}/openapi.json", h.base))
        .bearer_auth(ALICE_KEY)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(doc["paths"]["/openapi.json"]["get"]["security"].is_null());
    assert_eq!(doc["paths"]["/readyz"]["get"]["security"], json!([]));
    assert_eq!(bearer(&h, &svc, "ping", ALICE_KEY).await.status(), 200);
}

pub async fn without_auth_no_identity_reaches_the_service(kind: Kind) {
    let (h, svc) = harness(kind, Auth::off()).await;
    // Anonymous, as before; a client's Authorization header is not passed on as identity.
    let r = bearer(&h, &svc, "whoami", "whatever-token").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"user_id": null, "auth_token": null})
    );
    let doc: Value = h
        .http
        .get(format!("{}/openapi.json", h.base))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["security"], json!([]));
    assert!(doc["components"]["securitySchemes"].is_null());
}
