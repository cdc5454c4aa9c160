//! [`Registry`]: the services the gateway has heard of, from their descriptors, with the
//! liveness of each instance. An instance is live from an `up` descriptor until three
//! heartbeats pass without another, or until it says `down`.

use axum::Json;
use axum::extract::State;
use mesh::describe::{InstanceState, ServiceDescriptor};
use mesh::{Payload, RpcError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many heartbeats an instance may miss before it counts as gone.
pub const MISSED_HEARTBEATS: u64 = 3;

/// What the gateway knows of one service's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Never described: maybe a nameko service; call it and see.
    Unknown,
    /// This many live instances.
    Live(usize),
    /// Described before, but no instance is live now: one was heard `up` and none is now, or
    /// the gateway has listened for a heartbeat and heard of none (a gateway that has only heard
    /// an instance say `down` may not have heard yet from another, live one).
    NoLiveInstance,
}

#[derive(Debug, Default)]
struct Known {
    /// The latest descriptor from any instance.
    latest: Option<ServiceDescriptor>,
    /// Live instances: id -> (version, live until, epoch ms).
    instances: BTreeMap<String, (String, u64)>,
    /// The newest incarnation heard of each instance (its start, epoch ms): after a restart
    /// under the same instance id, the old process's late `down` must not remove the new one.
    incarnations: BTreeMap<String, u64>,
}

/// The services the gateway knows, shared by its handlers.
#[derive(Debug)]
pub struct Registry {
    services: RwLock<BTreeMap<String, Known>>,
    /// When the registry started listening, epoch ms.
    listening_since_ms: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Self::listening_since(now_ms())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Registry {
    /// An empty registry that started listening at `ms` (epoch ms).
    fn listening_since(ms: u64) -> Self {
        Self {
            services: RwLock::default(),
            listening_since_ms: ms,
        }
    }

    /// Takes in a descriptor.
    pub fn apply(&self, descriptor: ServiceDescriptor) {
        let mut services = self.services.write().unwrap_or_else(|e| e.into_inner());
        let known = services.entry(descriptor.service.clone()).or_default();
        // Word from an older incarnation than one already heard is stale. Within one
        // incarnation descriptors come in the order they were sent (one publisher).
        let newest = known
            .incarnations
            .get(&descriptor.instance)
            .copied()
            .unwrap_or(0);
        if descriptor.started_at_ms < newest {
            return;
        }
        known
            .incarnations
            .insert(descriptor.instance.clone(), descriptor.started_at_ms);
        match descriptor.state {
            InstanceState::Up => {
                let until = descriptor
                    .sent_at_ms
                    .saturating_add(descriptor.heartbeat_ms.saturating_mul(MISSED_HEARTBEATS));
                known.instances.insert(
                    descriptor.instance.clone(),
                    (descriptor.version.clone(), until),
                );
            }
            InstanceState::Down => {
                known.instances.remove(&descriptor.instance);
            }
        }
        known.latest = Some(descriptor);
    }

    /// How `service` stands.
    pub fn liveness(&self, service: &str) -> Liveness {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        match services.get(service) {
            None => Liveness::Unknown,
            Some(known) => {
                let now = now_ms();
                let live = known
                    .instances
                    .values()
                    .filter(|(_, until)| *until > now)
                    .count();
                // Every live instance announces itself each heartbeat: after one, silence means
                // none is live. Not before: having heard one instance come and go says nothing
                // of another that has not announced itself to this gateway yet.
                let heartbeat = known.latest.as_ref().map_or(0, |d| d.heartbeat_ms);
                let heard_all = now >= self.listening_since_ms.saturating_add(heartbeat);
                match live {
                    0 if heard_all => Liveness::NoLiveInstance,
                    0 => Liveness::Unknown,
                    n => Liveness::Live(n),
                }
            }
        }
    }

    /// Whether a descriptor ever listed `service.method`.
    pub fn describes(&self, service: &str, method: &str) -> bool {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        services
            .get(service)
            .and_then(|k| k.latest.as_ref())
            .is_some_and(|d| d.methods.iter().any(|m| m.name == method))
    }

    /// Whether the latest descriptor of `service` declares `method` idempotent (safe to publish
    /// again when a lost connection leaves a request's fate unknown).
    pub fn is_idempotent(&self, service: &str, method: &str) -> bool {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        services
            .get(service)
            .and_then(|k| k.latest.as_ref())
            .is_some_and(|d| d.methods.iter().any(|m| m.name == method && m.idempotent))
    }

    /// The latest descriptor of every service with a live instance, by name.
    pub fn live_descriptors(&self) -> Vec<ServiceDescriptor> {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        services
            .values()
            .filter(|k| k.instances.values().any(|(_, until)| *until > now))
            .filter_map(|k| k.latest.clone())
            .collect()
    }

    /// Every known service, for `GET /services`.
    pub fn overview(&self) -> Vec<ServiceOverview> {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        services
            .iter()
            .map(|(name, known)| ServiceOverview {
                name: name.clone(),
                version: known.latest.as_ref().map(|d| d.version.clone()),
                methods: known
                    .latest
                    .as_ref()
                    .map(|d| d.methods.iter().map(|m| m.name.clone()).collect())
                    .unwrap_or_default(),
                instances: known
                    .instances
                    .iter()
                    .filter(|(_, (_, until))| *until > now)
                    .map(|(id, (version, _))| InstanceOverview {
                        id: id.clone(),
                        version: version.clone(),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// One service in `GET /services`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceOverview {
    /// Its name.
    pub name: String,
    /// The version its latest descriptor gave.
    pub version: Option<String>,
    /// Its RPC methods.
    pub methods: Vec<String>,
    /// Its live instances.
    pub instances: Vec<InstanceOverview>,
}

/// One live instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceOverview {
    /// The instance id.
    pub id: String,
    /// The version it runs.
    pub version: String,
}

/// The event handler that feeds the registry (a transient broadcast subscription: every gateway
/// instance hears every descriptor).
pub(crate) async fn on_descriptor(
    mesh::State(registry): mesh::State<Arc<Registry>>,
    Payload(descriptor): Payload<ServiceDescriptor>,
) -> Result<(), RpcError> {
    registry.apply(descriptor);
    Ok(())
}

/// `GET /services`: every known service, its methods and its live instances.
pub(crate) async fn services(State(app): State<crate::AppState>) -> Json<Vec<ServiceOverview>> {
    Json(app.registry.overview())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(instance: &str, state: InstanceState, sent_at_ms: u64) -> ServiceDescriptor {
        ServiceDescriptor {
            service: "s".into(),
            instance: instance.into(),
            version: "1.0.0".into(),
            sent_at_ms,
            started_at_ms: 1,
            heartbeat_ms: 1000,
            state,
            methods: vec![],
            components: BTreeMap::new(),
            subscriptions: vec![],
        }
    }

    #[test]
    fn instances_live_until_missed_heartbeats_or_down() {
        let r = Registry::default();
        assert_eq!(r.liveness("s"), Liveness::Unknown);
        r.apply(descriptor("a", InstanceState::Up, now_ms()));
        r.apply(descriptor("b", InstanceState::Up, now_ms()));
        assert_eq!(r.liveness("s"), Liveness::Live(2));
        assert!(
            !r.describes("s", "m"),
            "the test descriptor lists no method"
        );
        assert!(!r.describes("other", "m"));
        r.apply(descriptor("a", InstanceState::Down, now_ms()));
        assert_eq!(r.liveness("s"), Liveness::Live(1));
        // A restart under the same id: the new incarnation's `up` may arrive before the old
        // one's `down`, which must then be ignored.
        let incarnation = |started_at_ms, state| ServiceDescriptor {
            started_at_ms,
            ..descriptor("c", state, now_ms())
        };
        r.apply(incarnation(200, InstanceState::Up));
        r.apply(incarnation(100, InstanceState::Down));
        assert_eq!(r.liveness("s"), Liveness::Live(2));
        r.apply(incarnation(200, InstanceState::Down));
        assert_eq!(r.liveness("s"), Liveness::Live(1));
        // b's heartbeats stopped long ago (and this gateway has listened since).
        let r = Registry::listening_since(now_ms() - 10_000);
        r.apply(descriptor("b", InstanceState::Up, now_ms() - 10_000));
        assert_eq!(r.liveness("s"), Liveness::NoLiveInstance);
        assert!(r.live_descriptors().is_empty());
        let overview = r.overview();
        assert_eq!(overview.len(), 1);
        assert!(overview[0].instances.is_empty());
    }

    #[test]
    fn no_live_instance_needs_a_whole_heartbeat_of_listening() {
        // A gateway that just started hears one instance leave: another may be live and not
        // have announced itself yet.
        let r = Registry::default();
        r.apply(descriptor("gone", InstanceState::Down, now_ms()));
        assert_eq!(r.liveness("s"), Liveness::Unknown);
        // After a heartbeat (1 s here) of listening, every live instance would have spoken.
        let r = Registry::listening_since(now_ms() - 1_500);
        r.apply(descriptor("gone", InstanceState::Down, now_ms()));
        assert_eq!(r.liveness("s"), Liveness::NoLiveInstance);
        // One heard up, then down: still too early. (Two benchmarks at once showed it: a fresh
        // gateway heard the other run's greeter start and stop, and answered 503 while its own
        // greeter, not yet heard, was live.)
        let r = Registry::default();
        r.apply(descriptor("a", InstanceState::Up, now_ms()));
        r.apply(descriptor("a", InstanceState::Down, now_ms()));
        assert_eq!(r.liveness("s"), Liveness::Unknown);
        let r = Registry::listening_since(now_ms() - 1_500);
        r.apply(descriptor("a", InstanceState::Up, now_ms()));
        r.apply(descriptor("a", InstanceState::Down, now_ms()));
        assert_eq!(r.liveness("s"), Liveness::NoLiveInstance);
    }
}
