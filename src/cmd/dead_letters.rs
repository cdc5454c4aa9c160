//! `warren dead-letters`: list, replay and purge the events subscriptions gave up on
//! (docs/operations.md, "Dead letters").
//!
//! Over AMQP 0-9-1 alone a broker cannot be asked for its queues (that takes the management
//! plugin, which a broker need not run), so `list` without `--queue` finds the dead-letter
//! queues of the subscriptions that live services announce in their descriptors, listening for
//! one heartbeat.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use mesh::amqp::{DEAD_LETTER_SUFFIX, DeadLetterError, DeadLetterQueues, dead_letter_queue};
use mesh::describe::{DESCRIPTOR_EVENT, DESCRIPTOR_SOURCE, ServiceDescriptor};
use mesh::{Mesh, MeshConfig, Payload, RpcError, Service, State, Subscription};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_runtime::args::MeshArgs;

/// Flags of `warren dead-letters`.
#[derive(Args)]
pub struct DeadLetters {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Without --queue: every dead-letter queue of the subscriptions live services announce,
    /// with its count. With --queue: that queue's count and its first dead letters (source,
    /// event type, error, attempts, size, first bytes), left in the queue.
    List(List),
    /// Publish dead letters back to their subscription's queue (the name without
    /// `.dead-letter`), their attempts counted from one again; each is acked from the
    /// dead-letter queue only once the broker confirmed its copy.
    Replay(Replay),
    /// Remove every dead letter of a queue.
    Purge(Purge),
}

/// Flags of `warren dead-letters list`.
#[derive(Args)]
struct List {
    /// The dead-letter queue, or the subscription queue it belongs to.
    #[arg(long)]
    queue: Option<String>,
    /// How many dead letters to show.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// How long to listen for services' descriptors, in milliseconds (a heartbeat or more).
    #[arg(long, default_value_t = 6_000)]
    listen_ms: u64,
    #[command(flatten)]
    mesh: MeshArgs,
}

/// Flags of `warren dead-letters replay`.
#[derive(Args)]
struct Replay {
    /// The dead-letter queue, or the subscription queue it belongs to.
    #[arg(long)]
    queue: String,
    /// Say how many would be replayed, and replay none.
    #[arg(long)]
    dry_run: bool,
    /// Replay at most this many (the oldest first).
    #[arg(long)]
    limit: Option<u32>,
    #[command(flatten)]
    mesh: MeshArgs,
}

/// Flags of `warren dead-letters purge`.
#[derive(Args)]
struct Purge {
    /// The dead-letter queue, or the subscription queue it belongs to.
    #[arg(long)]
    queue: String,
    /// Say how many would be removed, and remove none.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    mesh: MeshArgs,
}

impl DeadLetters {
    /// Runs the action and prints what it did.
    pub async fn run(self) -> Result<()> {
        let config = match &self.action {
            Action::List(list) => list.mesh.config(),
            Action::Replay(replay) => replay.mesh.config(),
            Action::Purge(purge) => purge.mesh.config(),
        };
        if let Action::List(List {
            queue: None,
            listen_ms,
            ..
        }) = &self.action
        {
            let queues = announced_dead_letter_queues(&config, *listen_ms).await?;
            let store = DeadLetterQueues::connect(config).await?;
            let outcome = print_counts(&store, &queues).await;
            store.close().await;
            return outcome;
        }
        let store = DeadLetterQueues::connect(config).await?;
        let outcome = act(&store, self.action).await;
        store.close().await;
        outcome
    }
}

async fn act(store: &DeadLetterQueues, action: Action) -> Result<()> {
    match action {
        Action::List(List { queue, limit, .. }) => {
            // Without a queue, `DeadLetters::run` lists the counts instead.
            let queue = named(queue.as_deref().unwrap_or_default());
            let listing = store.list(&queue, limit).await?;
            println!("{queue}: {} dead letter(s)", listing.count);
            for (n, letter) in listing.letters.iter().enumerate() {
                let event = match (&letter.source, &letter.event_type) {
                    (Some(source), Some(event)) => format!("{source}.{event}"),
                    _ => "(event unknown)".to_owned(),
                };
                println!(
                    "#{} {event} attempts={} size={}B error={:?}",
                    n + 1,
                    letter.attempts,
                    letter.size,
                    letter.error.as_deref().unwrap_or("")
                );
                println!("    {}", letter.preview);
            }
        }
        Action::Replay(Replay {
            queue,
            dry_run,
            limit,
            ..
        }) => {
            let queue = named(&queue);
            let replay = store
                .replay(&queue, limit.unwrap_or(u32::MAX), dry_run)
                .await?;
            let verb = if dry_run {
                "dry run: would replay"
            } else {
                "replayed"
            };
            println!(
                "{verb} {} of {} dead letter(s) from {queue} to {}",
                replay.replayed, replay.count, replay.to
            );
        }
        Action::Purge(Purge { queue, dry_run, .. }) => {
            let queue = named(&queue);
            let count = store.purge(&queue, dry_run).await?;
            let verb = if dry_run {
                "dry run: would purge"
            } else {
                "purged"
            };
            println!("{verb} {count} dead letter(s) from {queue}");
        }
    }
    Ok(())
}

/// The dead-letter queue `queue` names: itself, or the one of the subscription queue it is.
fn named(queue: &str) -> String {
    if queue.ends_with(DEAD_LETTER_SUFFIX) {
        queue.to_owned()
    } else {
        dead_letter_queue(queue)
    }
}

async fn print_counts(store: &DeadLetterQueues, queues: &BTreeSet<String>) -> Result<()> {
    if queues.is_empty() {
        println!("no live service announced a subscription with a dead-letter queue");
        return Ok(());
    }
    let mut total = 0u64;
    for queue in queues {
        match store.count(queue).await {
            Ok(count) => {
                total += u64::from(count);
                println!("{count:>8}  {queue}");
            }
            // Announced but not declared (yet, or any more): nothing waits in it.
            Err(DeadLetterError::NoSuchQueue(_)) => println!("{:>8}  {queue} (absent)", 0),
            Err(error) => return Err(error.into()),
        }
    }
    println!("{total:>8}  in {} queue(s)", queues.len());
    Ok(())
}

#[derive(Clone, Default)]
struct Announced(Arc<Mutex<BTreeSet<String>>>);

async fn remember(
    State(announced): State<Announced>,
    Payload(descriptor): Payload<ServiceDescriptor>,
) -> Result<(), RpcError> {
    let queues = descriptor
        .subscriptions
        .into_iter()
        .filter_map(|s| s.dead_letter_queue);
    announced
        .0
        .lock()
        .map_err(|_| RpcError::internal("poisoned"))?
        .extend(queues);
    Ok(())
}

/// The dead-letter queues named in the descriptors heard within `listen_ms`.
async fn announced_dead_letter_queues(
    config: &MeshConfig,
    listen_ms: u64,
) -> Result<BTreeSet<String>> {
    let mesh = Mesh::amqp(config.clone()).await?;
    let announced = Announced::default();
    let listener = Service::new(format!("warren-dead-letters-{}", std::process::id()))
        .subscribe(
            Subscription::new(DESCRIPTOR_SOURCE, DESCRIPTOR_EVENT).transient(),
            remember,
        )
        .with_state(announced.clone());
    let running = mesh
        .serve(listener)
        .await
        .context("cannot listen for services' descriptors")?;
    eprintln!("listening {listen_ms} ms for live services' descriptors...");
    tokio::time::sleep(Duration::from_millis(listen_ms)).await;
    running.stop().await;
    mesh.close().await;
    let queues = announced.0.lock().map(|q| q.clone()).unwrap_or_default();
    Ok(queues)
}
