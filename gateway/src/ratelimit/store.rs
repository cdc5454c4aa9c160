//! [`CappedStore`]: governor's per-client state (one 8-byte GCRA time per client) in a map that
//! never holds more than a set number of clients, however many distinct ones appear.
//!
//! Why a cap and a shared overflow bucket, not eviction of the oldest: clients whose bucket is
//! full again are dropped by every sweep at no loss (their state is the same as a new
//! client's), so the cap is reached only by more clients active at once than it allows, which
//! is what a flood of made-up clients looks like. Evicting then would let the flood push out
//! the clients being limited, each coming back with a full bucket: the flood would lift the
//! limits it should hit. With the cap, clients already tracked keep their own buckets, and new
//! ones share one bucket until sweeps free room: they are limited together, never unlimited,
//! and memory stays bounded.

use super::ClientKey;
use governor::nanos::Nanos;
use governor::state::keyed::{HashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many independently locked shards the clients are spread over, so calls from different
/// clients seldom wait for one another's lock.
const SHARDS: usize = 16;

/// Per-client GCRA state, at most `max_clients` clients (see the module documentation).
pub(crate) struct CappedStore {
    shards: Box<[HashMapStateStore<ClientKey>]>,
    /// Keyed with a random seed: clients cannot pick keys that land in one shard.
    hasher: RandomState,
    /// The most clients a shard holds; the shards' caps add up to at most `max_clients`.
    shard_cap: usize,
    /// The bucket new clients share while their shard is full.
    overflow: InMemoryState,
    /// Set when a new client was sent to the overflow bucket: a hint to sweep.
    overflowed: Arc<AtomicBool>,
}

impl CappedStore {
    /// A store for at most `max_clients` clients (at least 1); `overflowed` is set whenever a
    /// new client has to share the overflow bucket.
    pub(crate) fn new(max_clients: usize, overflowed: Arc<AtomicBool>) -> Self {
        let max_clients = max_clients.max(1);
        let shards = SHARDS.min(max_clients);
        Self {
            shards: (0..shards)
                .map(|_| HashMapStateStore::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
            shard_cap: max_clients / shards,
            overflow: InMemoryState::default(),
            overflowed,
        }
    }

    fn shard(&self, key: &ClientKey) -> &HashMapStateStore<ClientKey> {
        // The modulo keeps the index in range whatever the hash; `shards` is never empty.
        let index = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        &self.shards[index]
    }
}

impl StateStore for CappedStore {
    type Key = ClientKey;

    fn measure_and_replace<T, F, E>(&self, key: &ClientKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut clients = self.shard(key).lock();
        if let Some(state) = clients.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if clients.len() >= self.shard_cap {
            drop(clients);
            self.overflowed.store(true, Ordering::Relaxed);
            return self.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        clients
            .entry(key.clone())
            .or_default()
            .measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<ClientKey> for CappedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        for shard in &self.shards {
            shard.retain_recent(drop_below);
        }
    }

    fn shrink_to_fit(&self) {
        for shard in &self.shards {
            ShrinkableKeyedStateStore::shrink_to_fit(shard);
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    fn is_empty(&self) -> bool {
        self.shards.iter().all(|shard| shard.lock().is_empty())
    }
}
