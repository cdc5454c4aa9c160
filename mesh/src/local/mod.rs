//! The in-process transport: services of one process talking over channels, with the same
//! observable behaviour as AMQP (checked by one conformance suite run against both).
//!
//! The model follows the broker's. A service's RPC queue is a multi-consumer channel created
//! when the service is first served and kept afterwards, as `rpc-<service>` is durable: calls
//! to a stopped service wait in it until their deadline, calls to a service never served fail
//! at once with `UnknownService`. Every instance of a service competes for the queue, taking a
//! request only when it has a free worker (prefetch = `max_workers`). Event queues are named and
//! bound exactly as the AMQP ones, so the three handler types, delivery after a restart, the
//! retry schedule (kept by timers where the broker keeps retry queues) and dead-lettering behave
//! the same.

mod client;
mod consume;
mod events;
mod lease;
mod rpc;

use crate::call_context::CallContext;
use crate::client::Client;
use crate::config::MeshConfig;
use crate::detached::Collected;
use crate::error::{CallError, ConnectError};
use crate::future::BoxFuture;
use crate::protocol::Arguments;
use crate::routes::Routes;
use crate::running::{RunningService, ServiceStats};
use crate::shutdown::Shutdown;
use crate::transport::Transport;
use client::{ClientCounters, LocalOutbound};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// An RPC request waiting in a service's queue.
pub(crate) struct Request {
    method: String,
    body: Arguments,
    context: CallContext,
    reply: oneshot::Sender<Result<Value, crate::protocol::RemoteError>>,
    caller: Arc<ClientCounters>,
}

/// An event waiting in a subscription's queue.
#[derive(Clone)]
pub(crate) struct EventMessage {
    payload: Value,
    context: CallContext,
    /// Which attempt this delivery is (1 for the first), as AMQP's `x-warren-attempt` says.
    attempt: u32,
}

/// An event whose handler failed on every attempt of its subscription's schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The event's payload.
    pub payload: Value,
    /// The handler's last error.
    pub reason: String,
    /// How many times the handler ran for it.
    pub attempts: u32,
}

/// Both ends of a queue; the registry keeps them so a queue outlives its consumers.
pub(crate) struct Queue<T> {
    tx: flume::Sender<T>,
    rx: flume::Receiver<T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
        }
    }
}

impl<T> Queue<T> {
    fn new() -> Self {
        let (tx, rx) = flume::unbounded();
        Self { tx, rx }
    }
}

/// Every queue and binding of one in-process mesh, shared by all its instances.
#[derive(Default)]
pub(crate) struct Registry {
    rpc_queues: Mutex<HashMap<String, Queue<Request>>>,
    event_queues: Mutex<HashMap<String, Queue<EventMessage>>>,
    /// (source, event type) -> the names of the queues bound to it.
    bindings: Mutex<HashMap<(String, String), Vec<String>>>,
    dead_letters: Mutex<HashMap<String, Vec<DeadLetter>>>,
    /// Detached calls' result queues: `None` while the call runs.
    results: Mutex<HashMap<String, Option<Result<Value, CallError>>>>,
    /// Once-per-service timers' leases: name -> the holder.
    leases: Mutex<HashMap<String, u64>>,
    closed: AtomicBool,
}

/// Locks a registry map. Each operation on them is a single insert or lookup, so a panic
/// cannot leave one half-updated and a poisoned lock is safe to keep using.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    fn rpc_queue(&self, service: &str) -> Option<Queue<Request>> {
        lock(&self.rpc_queues).get(service).cloned()
    }

    fn declare_rpc_queue(&self, service: &str) -> Queue<Request> {
        lock(&self.rpc_queues)
            .entry(service.to_owned())
            .or_insert_with(Queue::new)
            .clone()
    }

    fn declare_event_queue(
        &self,
        name: &str,
        source: &str,
        event_type: &str,
    ) -> Queue<EventMessage> {
        let queue = lock(&self.event_queues)
            .entry(name.to_owned())
            .or_insert_with(Queue::new)
            .clone();
        let mut bindings = lock(&self.bindings);
        let bound = bindings
            .entry((source.to_owned(), event_type.to_owned()))
            .or_default();
        if !bound.iter().any(|q| q == name) {
            bound.push(name.to_owned());
        }
        queue
    }

    /// Makes a result queue, removed `keep_for` from now (as the broker expires one).
    fn declare_result(self: &Arc<Self>, name: &str, keep_for: std::time::Duration) {
        lock(&self.results).entry(name.to_owned()).or_insert(None);
        let (registry, name) = (Arc::downgrade(self), name.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(keep_for).await;
            if let Some(registry) = registry.upgrade() {
                lock(&registry.results).remove(&name);
            }
        });
    }

    /// Keeps a detached call's outcome in its result queue, if the queue is still there.
    fn store_result(&self, name: &str, outcome: Result<Value, CallError>) {
        if let Some(slot) = lock(&self.results).get_mut(name) {
            *slot = Some(outcome);
        }
    }

    /// What a result queue holds.
    fn result(&self, name: &str) -> Collected {
        match lock(&self.results).get(name) {
            None => Collected::Gone,
            Some(None) => Collected::Running,
            Some(Some(outcome)) => Collected::Done(outcome.clone()),
        }
    }

    /// Removes an event queue and its bindings.
    fn delete_event_queue(&self, name: &str) {
        lock(&self.event_queues).remove(name);
        for bound in lock(&self.bindings).values_mut() {
            bound.retain(|q| q != name);
        }
    }

    fn bound_queues(&self, source: &str, event_type: &str) -> Vec<Queue<EventMessage>> {
        let names = lock(&self.bindings)
            .get(&(source.to_owned(), event_type.to_owned()))
            .cloned()
            .unwrap_or_default();
        let queues = lock(&self.event_queues);
        names
            .iter()
            .filter_map(|n| queues.get(n).cloned())
            .collect()
    }

    fn dead_letter(&self, queue: &str, letter: DeadLetter) {
        lock(&self.dead_letters)
            .entry(queue.to_owned())
            .or_default()
            .push(letter);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// An [`crate::Outbound`] on `local`'s queues (for test clients).
#[cfg(feature = "testing")]
pub(crate) fn client_for(local: &InProcess) -> crate::client::SharedOutbound {
    Arc::new(LocalOutbound::new(
        local.registry.clone(),
        local.config.default_timeout,
    ))
}

/// The in-process [`Transport`]: one instance's handle on a shared [`Registry`].
#[derive(Clone)]
pub(crate) struct InProcess {
    registry: Arc<Registry>,
    config: MeshConfig,
}

impl InProcess {
    /// An empty mesh; this instance runs with `config` (its `max_workers`, grace period,
    /// default timeout and instance id apply as on AMQP; its URL is unused).
    pub(crate) fn new(config: MeshConfig) -> Self {
        Self {
            registry: Arc::default(),
            config,
        }
    }

    /// Another instance on the same mesh, with its own `config`, as another process joining
    /// the same broker would be.
    pub(crate) fn another_instance(&self, config: MeshConfig) -> Self {
        Self {
            registry: self.registry.clone(),
            config,
        }
    }

    /// The events moved to `queue`'s dead-letter list, oldest first.
    #[cfg(feature = "testing")]
    pub(crate) fn dead_letters(&self, queue: &str) -> Vec<DeadLetter> {
        lock(&self.registry.dead_letters)
            .get(queue)
            .cloned()
            .unwrap_or_default()
    }

    /// How many event queues are bound to `source`'s `event_type`: the deliveries one dispatch
    /// makes.
    #[cfg(feature = "testing")]
    pub(crate) fn bound_queue_count(&self, source: &str, event_type: &str) -> usize {
        self.registry.bound_queues(source, event_type).len()
    }

    fn serve_routes(&self, routes: Routes) -> RunningService {
        let registry = &self.registry;
        let config = &self.config;
        let name = routes.service().to_owned();
        let outbound = LocalOutbound::new(registry.clone(), config.default_timeout);
        let routes = routes.with_outbound(Arc::new(outbound));
        let stop = Shutdown::new();
        let stats = Arc::new(ServiceStats::new(&name));
        let limits = consume::Limits {
            max_workers: usize::from(config.max_workers.max(1)),
            grace: config.shutdown_grace,
        };
        let mut tasks = Vec::new();
        if routes.has_methods() {
            let queue = registry.declare_rpc_queue(&name);
            let worker = rpc::RpcWorker::new(routes.clone(), stats.clone());
            tasks.push(tokio::spawn(consume::run(
                queue.rx,
                worker,
                limits,
                stats.clone(),
                stop.clone(),
            )));
        }
        for (subscription, handler) in routes.subscriptions() {
            let queue_name = subscription.queue(&name, &config.instance_id);
            let queue = registry.declare_event_queue(
                &queue_name,
                &subscription.source,
                &subscription.event_type,
            );
            let worker = events::EventWorker::new(
                registry.clone(),
                routes.clone(),
                subscription.clone(),
                handler.clone(),
                queue_name,
                queue.tx.clone(),
                stats.clone(),
            );
            let limits = consume::Limits {
                max_workers: if subscription.in_order {
                    1
                } else {
                    limits.max_workers
                },
                ..limits
            };
            tasks.push(tokio::spawn(consume::run(
                queue.rx,
                worker,
                limits,
                stats.clone(),
                stop.clone(),
            )));
            if subscription.transient {
                // Auto-deleted, as the broker deletes an exclusive queue with its consumer.
                let queue = subscription.queue(&name, &config.instance_id);
                let (registry, stop) = (registry.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    stop.triggered().await;
                    registry.delete_event_queue(&queue);
                }));
            }
        }
        let leases = |name: String| -> Box<dyn crate::lease::Lease> {
            Box::new(lease::LocalLease::new(registry.clone(), name))
        };
        tasks.extend(crate::ticking::spawn_all(
            &routes,
            &stats,
            &stop,
            config.shutdown_grace,
            &leases,
        ));
        tasks.push(crate::announce::spawn(
            routes.clone(),
            config.instance_id.clone(),
            config.heartbeat,
            stop.clone(),
        ));
        tracing::info!(service = %name, transport = "in-process", "serving");
        RunningService::new(name, stop, stats, tasks)
    }
}

impl Transport for InProcess {
    fn serve(&self, routes: Routes) -> BoxFuture<Result<RunningService, ConnectError>> {
        let running = self.serve_routes(routes);
        Box::pin(std::future::ready(Ok(running)))
    }

    fn client(&self, owner: &str) -> BoxFuture<Result<Client, ConnectError>> {
        let outbound = LocalOutbound::new(self.registry.clone(), self.config.default_timeout);
        let client = Client::new(Arc::new(outbound), owner);
        Box::pin(std::future::ready(Ok(client)))
    }

    fn is_ready(&self) -> bool {
        !self.registry.is_closed()
    }

    fn describe(&self) -> String {
        "in-process".to_owned()
    }

    fn close(&self) -> BoxFuture<()> {
        self.registry.closed.store(true, Ordering::Release);
        Box::pin(std::future::ready(()))
    }

    fn another_instance(
        &self,
        config: MeshConfig,
    ) -> BoxFuture<Result<Arc<dyn Transport>, ConnectError>> {
        let sibling: Arc<dyn Transport> = Arc::new(InProcess::another_instance(self, config));
        Box::pin(std::future::ready(Ok(sibling)))
    }
}
