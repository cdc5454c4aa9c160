//! [`AmqpOutbound`]: how handlers served over AMQP call other services and dispatch events.

use super::broker::Broker;
use super::client::RpcClient;
use crate::context::CallContext;
use crate::error::CallError;
use crate::handler::BoxFuture;
use crate::outbound::{ClientStats, Outbound};
use crate::protocol::RequestBody;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The AMQP [`Outbound`] of one service. Its RPC client (and callback queue) is made on the
/// first call, so services that never call others declare no reply queue.
pub(crate) struct AmqpOutbound {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
    owner: String,
    client: OnceCell<RpcClient>,
}

impl AmqpOutbound {
    pub(crate) fn new(broker: Broker, owner: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                broker,
                owner: owner.to_owned(),
                client: OnceCell::new(),
            }),
        }
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
        body: RequestBody,
        context: CallContext,
    ) -> BoxFuture<Result<Value, CallError>> {
        // Once the client is up (every call but the first), its own future is the call's.
        if let Some(client) = self.inner.client.get() {
            return Outbound::call(client, service, method, body, context);
        }
        let inner = self.inner.clone();
        let (service, method) = (service.to_owned(), method.to_owned());
        Box::pin(async move {
            let client = inner.client().await?;
            Outbound::call(client, &service, &method, body, context).await
        })
    }

    fn dispatch(
        &self,
        source: &str,
        event_type: &str,
        payload: Value,
        context: CallContext,
    ) -> BoxFuture<Result<(), CallError>> {
        let broker = self.inner.broker.clone();
        let (source, event_type) = (source.to_owned(), event_type.to_owned());
        Box::pin(async move {
            broker
                .dispatch_in(&source, &event_type, &payload, &context)
                .await
        })
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
