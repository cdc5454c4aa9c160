//! [`AmqpOutbound`]: how handlers and clients on AMQP call services and dispatch events.

use super::broker::Broker;
use super::client::RpcClient;
use super::publisher::Dispatcher;
use crate::call_context::CallContext;
use crate::client::{ClientStats, Outbound};
use crate::detached::{Collected, ResultQueue};
use crate::error::{CallError, ConnectError};
use crate::future::BoxFuture;
use crate::protocol::Arguments;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The AMQP [`Outbound`] of one service or client. Its RPC client (and callback queue) is made
/// on the first call, so services that never call others declare no reply queue.
pub(crate) struct AmqpOutbound {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
    dispatcher: Dispatcher,
    owner: String,
    client: OnceCell<RpcClient>,
}

impl AmqpOutbound {
    /// An outbound whose callback queue is made on its first call.
    pub(crate) fn new(broker: Broker, dispatcher: Dispatcher, owner: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                broker,
                dispatcher,
                owner: owner.to_owned(),
                client: OnceCell::new(),
            }),
        }
    }

    /// An outbound whose callback queue is declared and consumed before this returns (a
    /// gateway's or a command's client: ready to call at once, or the start fails).
    pub(crate) async fn ready(
        broker: Broker,
        dispatcher: Dispatcher,
        owner: &str,
    ) -> Result<Self, ConnectError> {
        let client = RpcClient::start(&broker, owner).await?;
        let outbound = Self::new(broker, dispatcher, owner);
        // Just made, so empty: the set cannot fail.
        let _ = outbound.inner.client.set(client);
        Ok(outbound)
    }
}

impl Inner {
    async fn client(&self) -> Result<&RpcClient, CallError> {
        self.client
            .get_or_try_init(|| RpcClient::start(&self.broker, &self.owner))
            .await
            .map_err(|e| CallError::Unavailable(e.to_string()))
    }
}

impl Outbound for AmqpOutbound {
    fn call(
        &self,
        service: &str,
        method: &str,
        body: Arguments,
        context: CallContext,
        idempotent: bool,
    ) -> BoxFuture<Result<Value, CallError>> {
        // Once the client is up (every call but the first), its own future is the call's: the
        // body and context are serialized and freed before the call waits.
        if let Some(client) = self.inner.client.get() {
            return Box::pin(client.call(service, method, &body, context, idempotent));
        }
        let inner = self.inner.clone();
        let (service, method) = (service.to_owned(), method.to_owned());
        Box::pin(async move {
            let client = inner.client().await?;
            client
                .call(&service, &method, &body, context, idempotent)
                .await
        })
    }

    fn dispatch(
        &self,
        source: &str,
        event_type: &str,
        payload: Value,
        context: CallContext,
    ) -> BoxFuture<Result<(), CallError>> {
        let dispatcher = self.inner.dispatcher.clone();
        let (source, event_type) = (source.to_owned(), event_type.to_owned());
        Box::pin(async move {
            dispatcher
                .dispatch(&source, &event_type, &payload, &context)
                .await
        })
    }

    fn call_detached(
        &self,
        service: &str,
        method: &str,
        body: Arguments,
        context: CallContext,
        idempotent: bool,
        result: ResultQueue,
    ) -> BoxFuture<Result<(), CallError>> {
        let inner = self.inner.clone();
        let (service, method) = (service.to_owned(), method.to_owned());
        Box::pin(async move {
            let client = inner.client().await?;
            client
                .call_detached(&service, &method, &body, context, idempotent, &result)
                .await
        })
    }

    fn collect(&self, queue: &str) -> BoxFuture<Result<Collected, CallError>> {
        let (broker, queue) = (self.inner.broker.clone(), queue.to_owned());
        Box::pin(async move { super::detached::collect(&broker, &queue).await })
    }

    fn is_ready(&self) -> bool {
        match self.inner.client.get() {
            Some(client) => client.is_ready(),
            None => self.inner.broker.is_connected(),
        }
    }

    fn stats(&self) -> ClientStats {
        self.inner
            .client
            .get()
            .map(RpcClient::stats)
            .unwrap_or_default()
    }
}
