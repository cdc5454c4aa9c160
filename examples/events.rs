//! Events: `shop.order(item)` dispatches `order_placed`; `mailer` handles each such event (one
//! instance of `mailer` gets each, nameko's service pool) and keeps what it sent, which
//! `mailer.sent()` returns. A failed `order_placed` is tried again 1 s, 10 s and 60 s later
//! (kept meanwhile by the broker), then dead-lettered (`warren dead-letters list --queue
//! evt-shop-order_placed--mailer.on_order_placed`).
//!
//! ```sh
//! cargo run --example events
//! curl --json '{"item": "teapot"}' http://127.0.0.1:8080/rpc/shop/order
//! curl --json '{}' http://127.0.0.1:8080/rpc/mailer/sent     # ["Your teapot is on its way"]
//! ```

use mesh::{Args, Ctx, Payload, RpcError, Service, State, Subscription};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_runtime::Runner;

/// An order of one item.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
struct Order {
    item: String,
}

/// Takes the order, then tells whoever listens: `order_placed`, confirmed by the broker before
/// this returns.
async fn order(ctx: Ctx, Args(order): Args<Order>) -> Result<String, RpcError> {
    let payload = serde_json::json!({ "item": order.item });
    ctx.dispatch("order_placed", payload).await?;
    Ok(format!("ordered {}", order.item))
}

/// What the mailer has sent.
#[derive(Clone, Default)]
struct Outbox(Arc<Mutex<Vec<String>>>);

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The `order_placed` handler: writes to the customer. An error here would have the event
/// delivered again on the subscription's schedule, then moved to a dead-letter queue.
async fn on_order_placed(
    State(outbox): State<Outbox>,
    Payload(order): Payload<Order>,
) -> Result<(), RpcError> {
    outbox
        .lock()
        .push(format!("Your {} is on its way", order.item));
    Ok(())
}

/// Everything sent so far.
async fn sent(State(outbox): State<Outbox>) -> Result<Vec<String>, RpcError> {
    Ok(outbox.lock().clone())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let shop = Service::new("shop").rpc("order", order);
    let mailer = Service::new("mailer")
        .subscribe(
            Subscription::new("shop", "order_placed")
                .retry_after([1, 10, 60].map(Duration::from_secs)),
            on_order_placed,
        )
        .rpc("sent", sent)
        .with_state(Outbox::default());
    Runner::from_args()
        .with_gateway()
        .serve(shop)
        .serve(mailer)
        .run()
        .await
}
