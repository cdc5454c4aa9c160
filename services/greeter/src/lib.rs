//! `greeting_service`: the smallest Warren service, nameko's hello example.
//!
//! - `hello(name)` → `"Hello, <name>!"`
//! - `fib(n)` → the `n`th Fibonacci number, computed the slow way on the blocking pool
//!   ([`mesh::Ctx::blocking`]): seconds of CPU for `n` in the forties, while the other handlers,
//!   the heartbeats and the ops port of the process go on.
//! - `slow(ms)` sleeps `ms` milliseconds (at most ten minutes), then returns `ms`: a method for
//!   deadline tests.

use mesh::{Args, Ctx, RpcError, Service};
use serde::Deserialize;
use std::time::Duration;
use utoipa::ToSchema;

/// The service's usual name.
pub const NAME: &str = "greeting_service";

/// The longest `slow` will sleep.
pub const MAX_SLOW_MS: u64 = 600_000;

/// The service under its usual name.
pub fn service() -> Service {
    service_named(NAME)
}

/// The service under another name (tests run several meshes on one broker).
pub fn service_named(name: &str) -> Service {
    Service::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .rpc("hello", hello)
        .rpc("fib", fib)
        .rpc("slow", slow)
        // Pure functions: safe to run twice.
        .idempotent("hello")
        .idempotent("fib")
        .idempotent("slow")
}

/// Greets someone: `"Hello, <name>!"`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Hello {
    /// Who to greet.
    pub name: String,
}

/// Greets `name`.
pub async fn hello(Args(h): Args<Hello>) -> Result<String, RpcError> {
    Ok(format!("Hello, {}!", h.name))
}

/// Computes the `n`th Fibonacci number the slow way (recursively, as the RabbitMQ tutorial's
/// RPC server does): a CPU-heavy method for scaling runs. `n` is at most 45 (44 is about
/// 1.5 s of CPU, 45 about 2.5 s).
#[derive(Debug, Deserialize, ToSchema)]
pub struct Fib {
    /// Which Fibonacci number.
    #[schema(maximum = 45)]
    pub n: u32,
}

/// The largest `n` `fib` accepts.
pub const MAX_FIB: u32 = 45;

/// The `n`th Fibonacci number, recursively, on the blocking pool: it computes for seconds, and
/// on the async runtime it would hold up every other handler of the process.
pub async fn fib(ctx: Ctx, Args(f): Args<Fib>) -> Result<u64, RpcError> {
    if f.n > MAX_FIB {
        return Err(RpcError::bad_request(format!(
            "n must be at most {MAX_FIB}"
        )));
    }
    ctx.blocking(move || fib_of(f.n)).await
}

/// The `n`th Fibonacci number, recursively: about 1.6^n calls.
pub fn fib_of(n: u32) -> u64 {
    if n < 2 {
        u64::from(n)
    } else {
        fib_of(n - 1) + fib_of(n - 2)
    }
}

/// Sleeps `ms` milliseconds (at most ten minutes), then returns `ms`: for deadline tests.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Slow {
    /// How long to sleep, in milliseconds.
    #[schema(maximum = 600000)]
    pub ms: u64,
}

/// Sleeps, then returns how long it slept.
pub async fn slow(Args(s): Args<Slow>) -> Result<u64, RpcError> {
    if s.ms > MAX_SLOW_MS {
        return Err(RpcError::bad_request(format!(
            "ms must be at most {MAX_SLOW_MS}"
        )));
    }
    tokio::time::sleep(Duration::from_millis(s.ms)).await;
    Ok(s.ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn greets() {
        let reply = hello(Args(Hello {
            name: "Matt".into(),
        }))
        .await;
        assert_eq!(reply, Ok("Hello, Matt!".to_owned()));
    }

    #[tokio::test]
    async fn fib_is_fibonacci() {
        use mesh::testing::call_handler;
        use serde_json::json;
        assert_eq!(fib_of(10), 55);
        assert_eq!(call_handler(fib, (), json!({"n": 10})).await, Ok(json!(55)));
        let refused = call_handler(fib, (), json!({"n": MAX_FIB + 1})).await;
        assert_eq!(
            refused.map_err(|e| e.kind()),
            Err(mesh::ErrorKind::BadRequest)
        );
    }

    #[tokio::test]
    async fn slow_refuses_absurd_sleeps() {
        assert_eq!(slow(Args(Slow { ms: 0 })).await, Ok(0));
        let err = slow(Args(Slow {
            ms: MAX_SLOW_MS + 1,
        }))
        .await;
        assert_eq!(err.map_err(|e| e.kind()), Err(mesh::ErrorKind::BadRequest));
    }

    #[tokio::test]
    async fn handlers_called_directly() {
        use mesh::testing::call_handler;
        use serde_json::json;
        assert_eq!(
            call_handler(hello, (), json!({"name": "Ann"})).await,
            Ok(json!("Hello, Ann!"))
        );
        assert_eq!(
            call_handler(hello, (), json!(["Bo"])).await,
            Ok(json!("Hello, Bo!"))
        );
        let wrong = call_handler(hello, (), json!({"nom": "x"})).await;
        assert_eq!(
            wrong.map_err(|e| e.kind()),
            Err(mesh::ErrorKind::IncorrectSignature)
        );
    }

    #[tokio::test]
    async fn the_whole_service_in_process() {
        use serde_json::json;
        let mut mesh = mesh::testing::TestMesh::new();
        mesh.serve(service()).await;
        let hello = mesh.call(NAME, "hello", json!({"name": "Matt"})).await;
        assert_eq!(hello, Ok(json!("Hello, Matt!")));
        let missing = mesh.call(NAME, "nope", json!({})).await;
        assert!(
            matches!(missing, Err(mesh::CallError::Remote(ref e)) if e.exc_type == "MethodNotFound"),
            "{missing:?}"
        );
        assert_eq!(
            mesh.call(NAME, "slow", json!({"ms": 1})).await,
            Ok(json!(1))
        );
        mesh.stop().await;
    }

    #[test]
    fn declares_its_methods() {
        assert_eq!(service().methods(), ["fib", "hello", "slow"]);
        assert!(service().validate().is_ok());
    }
}
