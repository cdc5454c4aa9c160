//! [`BoxFuture`]: the one boxed-future type the crate's seams pass around (handlers, transports,
//! deliveries), in a module of its own so that every other module can name it without depending
//! on the handler machinery.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
