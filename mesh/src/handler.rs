//! Handlers are plain async functions whose arguments are extractors, as in axum.
//!
//! An extractor implements [`FromCall`]: [`Args<T>`] binds the arguments, [`State<S>`] hands in the
//! service's state (what its dependency opened), [`Ctx`] the call's context, [`Payload<T>`] an
//! event's payload. A handler returns `Result<T, E>` where `T` serialises to JSON and `E`
//! converts into [`RpcError`]. Implement [`FromCall`] for an extractor of your own.

use crate::args;
use crate::ctx::Ctx;
use crate::error::{ErrorKind, RpcError};
use crate::future::BoxFuture;
use crate::protocol::Arguments;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;

/// A call as a handler sees it: its context and its (not yet bound) arguments.
#[derive(Debug)]
pub struct Call {
    /// The call's context.
    pub ctx: Ctx,
    /// The arguments, taken by the first [`Args`] extractor. For an event, the payload as
    /// arguments (see [`Arguments::from_payload`]).
    pub body: Arguments,
    /// The event payload, when the call is an event.
    pub event: Option<Value>,
}

impl Call {
    /// An RPC call.
    pub fn rpc(ctx: Ctx, body: Arguments) -> Self {
        Self {
            ctx,
            body,
            event: None,
        }
    }

    /// An event delivery.
    pub fn event(ctx: Ctx, payload: Value) -> Self {
        Self {
            ctx,
            body: Arguments::from_payload(&payload),
            event: Some(payload),
        }
    }
}

/// Something a handler can take as an argument.
pub trait FromCall<S>: Sized {
    /// Extracts the value from the call and the service state.
    fn from_call(call: &mut Call, state: &S) -> Result<Self, RpcError>;
}

/// The call's arguments bound to `T`, as Python binds them to parameters: positional arguments
/// fill a struct's fields in declaration order, keyword arguments fill them by name. A mismatch
/// (too many, one given twice, an unknown keyword, a wrong type) is answered with nameko's
/// `IncorrectSignature`.
#[derive(Debug, Clone, PartialEq)]
pub struct Args<T>(pub T);

impl<S, T: DeserializeOwned> FromCall<S> for Args<T> {
    fn from_call(call: &mut Call, _state: &S) -> Result<Self, RpcError> {
        args::bind(std::mem::take(&mut call.body)).map(Args)
    }
}

/// An event's payload decoded into `T`, whatever its JSON shape. Outside an event handler it is
/// refused with `Internal`.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload<T>(pub T);

impl<S, T: DeserializeOwned> FromCall<S> for Payload<T> {
    fn from_call(call: &mut Call, _state: &S) -> Result<Self, RpcError> {
        let payload = call
            .event
            .take()
            .ok_or_else(|| RpcError::internal("Payload is only available to event handlers"))?;
        // The payload is consumed whole; its arguments view goes with it.
        call.body = Arguments::default();
        serde_json::from_value(payload)
            .map(Payload)
            .map_err(|e| RpcError::bad_request(format!("event payload does not fit: {e}")))
    }
}

/// The service's state: what its [`crate::Dependency`] opened (a store, a pool, a client), or
/// what [`crate::Service::with_state`] bound; nameko's dependency injection.
#[derive(Debug, Clone)]
pub struct State<S>(pub S);

impl<S: Clone> FromCall<S> for State<S> {
    fn from_call(_call: &mut Call, state: &S) -> Result<Self, RpcError> {
        Ok(State(state.clone()))
    }
}

impl<S> FromCall<S> for Ctx {
    fn from_call(call: &mut Call, _state: &S) -> Result<Self, RpcError> {
        Ok(call.ctx.clone())
    }
}

/// What a handler returns.
pub trait IntoReply {
    /// The JSON result, or the error to send.
    fn into_reply(self) -> Result<Value, RpcError>;
}

impl<T: Serialize, E: Into<RpcError>> IntoReply for Result<T, E> {
    fn into_reply(self) -> Result<Value, RpcError> {
        let value = self.map_err(Into::into)?;
        serde_json::to_value(value).map_err(|e| {
            RpcError::new(
                ErrorKind::Internal,
                format!("result is not serialisable: {e}"),
            )
        })
    }
}

/// An async function usable as an RPC handler with state `S`. Implemented for functions of up to
/// six extractor arguments; `T` is the tuple of their types and only serves type inference.
pub trait Handler<T, S>: Clone + Send + Sync + Sized + 'static {
    /// Runs the handler for one call.
    fn call(self, call: Call, state: S) -> BoxFuture<Result<Value, RpcError>>;
}

macro_rules! impl_handler {
    ($($ty:ident),*) => {
        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<F, Fut, R, S, $($ty,)*> Handler<($($ty,)*), S> for F
        where
            F: Fn($($ty,)*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            R: IntoReply,
            S: Send + Sync + 'static,
            $($ty: FromCall<S> + Send + 'static,)*
        {
            fn call(self, mut call: Call, state: S) -> BoxFuture<Result<Value, RpcError>> {
                $(
                    let $ty = match $ty::from_call(&mut call, &state) {
                        Ok(value) => value,
                        Err(error) => return Box::pin(std::future::ready(Err(error))),
                    };
                )*
                // An RPC method without `Args` takes no arguments: stray ones are refused, as
                // Python refuses them (an event handler may ignore its payload).
                if call.event.is_none() && !(call.body.args.is_empty() && call.body.kwargs.is_empty()) {
                    return Box::pin(std::future::ready(Err(RpcError::new(
                        ErrorKind::IncorrectSignature,
                        format!("{} takes no arguments", call.ctx.method()),
                    ))));
                }
                Box::pin(async move { self($($ty,)*).await.into_reply() })
            }
        }
    };
}

impl_handler!();
impl_handler!(T1);
impl_handler!(T1, T2);
impl_handler!(T1, T2, T3);
impl_handler!(T1, T2, T3, T4);
impl_handler!(T1, T2, T3, T4, T5);
impl_handler!(T1, T2, T3, T4, T5, T6);
