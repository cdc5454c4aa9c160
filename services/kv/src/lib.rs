//! `kv`: a key-value store shared by every caller of one instance.
//!
//! - `get(key)` → the value, or `NotFound`
//! - `put(key, value)` → `null`
//! - `inc(key, by=1)` → the new value; a missing key counts from 0; a stored value that is not an
//!   integer, or one that would overflow, is `Conflict` (the request is fine, the state is not)
//! - `delete(key)` → whether the key existed
//!
//! Every operation takes one lock around one map operation, so concurrent increments are never
//! lost. The store lives in memory: it is for demos and tests, not for data that must survive.

use mesh::{Args, RpcError, Service, State};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use utoipa::ToSchema;

/// The service's usual name.
pub const NAME: &str = "kv";

/// The store: values by key.
#[derive(Debug, Clone, Default)]
pub struct Store(Arc<Mutex<HashMap<String, Value>>>);

impl Store {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Value>> {
        // Each operation is a single map call, so a panic cannot leave the map inconsistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The service under its usual name; its state is the [`Store`] (`.with_state(Store::default())`).
pub fn service() -> Service<Store> {
    service_named(NAME)
}

/// The service under another name (tests run several meshes on one broker).
pub fn service_named(name: &str) -> Service<Store> {
    Service::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .rpc("get", get)
        .rpc("put", put)
        .rpc("inc", inc)
        .rpc("delete", delete)
        // Reading, storing a value and deleting a key are the same done twice; `inc` is not.
        .idempotent("get")
        .idempotent("put")
        .idempotent("delete")
}

/// Names a key (`get`: its value or NotFound; `delete`: whether it existed).
#[derive(Debug, Deserialize, ToSchema)]
pub struct Key {
    /// The key.
    pub key: String,
}

/// Stores `value` at `key`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Put {
    /// The key.
    pub key: String,
    /// The value (any JSON).
    pub value: Value,
}

/// Adds `by` (default 1) to the integer at `key` and returns the new value.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Inc {
    /// The key.
    pub key: String,
    /// How much to add (default 1; may be negative).
    #[serde(default = "one")]
    pub by: i64,
}

fn one() -> i64 {
    1
}

/// The value at `key`.
pub async fn get(State(store): State<Store>, Args(k): Args<Key>) -> Result<Value, RpcError> {
    store
        .lock()
        .get(&k.key)
        .cloned()
        .ok_or_else(|| RpcError::not_found(format!("no such key: {}", k.key)))
}

/// Stores `value` at `key`.
pub async fn put(State(store): State<Store>, Args(p): Args<Put>) -> Result<(), RpcError> {
    store.lock().insert(p.key, p.value);
    Ok(())
}

/// Adds `by` to the integer at `key` and returns the new value.
pub async fn inc(State(store): State<Store>, Args(i): Args<Inc>) -> Result<i64, RpcError> {
    let mut map = store.lock();
    let current = match map.get(&i.key) {
        None => 0,
        Some(value) => value.as_i64().ok_or_else(|| {
            RpcError::conflict(format!("the value at `{}` is not an integer", i.key))
        })?,
    };
    let next = current
        .checked_add(i.by)
        .ok_or_else(|| RpcError::conflict(format!("`{}` would overflow", i.key)))?;
    map.insert(i.key, Value::from(next));
    Ok(next)
}

/// Removes `key`; returns whether it existed.
pub async fn delete(State(store): State<Store>, Args(k): Args<Key>) -> Result<bool, RpcError> {
    Ok(store.lock().remove(&k.key).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh::ErrorKind;
    use serde_json::json;

    fn key(k: &str) -> Args<Key> {
        Args(Key { key: k.into() })
    }

    #[tokio::test]
    async fn put_get_inc_delete() {
        let s = Store::default();
        let missing = get(State(s.clone()), key("a")).await;
        assert_eq!(missing.map_err(|e| e.kind()), Err(ErrorKind::NotFound));
        let by = |by| {
            Args(Inc {
                key: "a".into(),
                by,
            })
        };
        assert_eq!(inc(State(s.clone()), by(1)).await, Ok(1));
        assert_eq!(inc(State(s.clone()), by(41)).await, Ok(42));
        assert_eq!(get(State(s.clone()), key("a")).await, Ok(json!(42)));
        let put_s = Args(Put {
            key: "a".into(),
            value: json!("x"),
        });
        assert_eq!(put(State(s.clone()), put_s).await, Ok(()));
        let err = inc(State(s.clone()), by(1)).await;
        assert_eq!(err.map_err(|e| e.kind()), Err(ErrorKind::Conflict));
        assert_eq!(delete(State(s.clone()), key("a")).await, Ok(true));
        assert_eq!(delete(State(s.clone()), key("a")).await, Ok(false));
    }

    #[tokio::test]
    async fn overflow_is_refused() {
        let s = Store::default();
        let big = Args(Inc {
            key: "a".into(),
            by: i64::MAX,
        });
        assert_eq!(inc(State(s.clone()), big).await, Ok(i64::MAX));
        let err = inc(
            State(s),
            Args(Inc {
                key: "a".into(),
                by: 1,
            }),
        )
        .await;
        assert_eq!(err.map_err(|e| e.kind()), Err(ErrorKind::Conflict));
    }

    #[tokio::test]
    async fn inc_called_directly_with_an_injected_store() {
        use mesh::testing::call_handler;
        let store = Store::default();
        assert_eq!(
            call_handler(inc, store.clone(), json!({"key": "a", "by": 2})).await,
            Ok(json!(2))
        );
        assert_eq!(
            call_handler(inc, store.clone(), json!(["a"])).await,
            Ok(json!(3))
        );
        assert_eq!(store.lock().get("a"), Some(&json!(3)));
    }

    #[tokio::test]
    async fn concurrent_increments_through_the_service_are_not_lost() {
        let mut mesh = mesh::testing::TestMesh::new();
        mesh.serve(service().with_state(Store::default())).await;
        let mesh = std::sync::Arc::new(mesh);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let mesh = mesh.clone();
                tokio::spawn(async move {
                    for _ in 0..250 {
                        mesh.call(NAME, "inc", json!({"key": "n"}))
                            .await
                            .expect("inc");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(
            mesh.call(NAME, "get", json!({"key": "n"})).await,
            Ok(json!(2000))
        );
    }

    #[tokio::test]
    async fn concurrent_increments_are_not_lost() {
        let s = Store::default();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    for _ in 0..500 {
                        let _ = inc(
                            State(s.clone()),
                            Args(Inc {
                                key: "n".into(),
                                by: 1,
                            }),
                        )
                        .await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(get(State(s), key("n")).await, Ok(json!(4000)));
    }
}
