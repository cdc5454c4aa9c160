//! Calls between services: `frontdesk.welcome(name)` calls `directory.lookup(name)` with its own
//! context, so the caller's deadline, identity and call id stack travel on. The answer shows
//! the stack the directory saw: the request's id, then one id per hop.
//!
//! ```sh
//! cargo run --example calls
//! curl -H 'X-Request-Id: r1' --json '{"name": "Ada"}' http://127.0.0.1:8080/rpc/frontdesk/welcome
//! # {"message":"Welcome, Ada: desk 3","call_id_stack":["r1","frontdesk.welcome.…","directory.lookup.…"]}
//! ```

use mesh::{Args, Ctx, RpcError, Service};
use serde::{Deserialize, Serialize};
use warren_runtime::Runner;

/// Someone to look up.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
struct Name {
    name: String,
}

/// Where someone sits, and the call id stack of the call that asked.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
struct Desk {
    desk: u32,
    call_id_stack: Vec<String>,
}

/// The directory: a desk per name (here, from the name's length).
async fn lookup(ctx: Ctx, Args(who): Args<Name>) -> Result<Desk, RpcError> {
    let desk = u32::try_from(who.name.chars().count()).unwrap_or(u32::MAX);
    let call_id_stack = ctx.call_id_stack().to_vec();
    Ok(Desk {
        desk,
        call_id_stack,
    })
}

/// A welcome, and the stack the directory saw.
#[derive(Serialize, utoipa::ToSchema)]
struct Welcome {
    message: String,
    call_id_stack: Vec<String>,
}

/// Asks the directory, with this call's context, where `name` sits.
async fn welcome(ctx: Ctx, Args(who): Args<Name>) -> Result<Welcome, RpcError> {
    let desk: Desk = ctx.rpc("directory").call_typed("lookup", &who).await?;
    Ok(Welcome {
        message: format!("Welcome, {}: desk {}", who.name, desk.desk),
        call_id_stack: desk.call_id_stack,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let directory = Service::new("directory").rpc("lookup", lookup);
    let frontdesk = Service::new("frontdesk").rpc("welcome", welcome);
    Runner::from_args()
        .with_gateway()
        .serve(directory)
        .serve(frontdesk)
        .run()
        .await
}
