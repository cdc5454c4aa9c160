//! Which HTTP a new connection speaks, told from its first bytes without consuming them.
//!
//! A client with prior knowledge of HTTP/2 over cleartext (h2c, RFC 9113 §3.3) opens with the
//! 24-byte connection preface; an HTTP/1 client opens with a request line. The bytes are
//! *peeked*, so they stay in the socket for whichever of hyper's connection types then reads
//! them (no buffer to replay, no wrapper around the stream).
//!
//! The first byte nearly always decides (no HTTP/1 method but `PRI`, `PROPFIND`, `PROPPATCH`,
//! `PATCH`, `POST` and `PUT` starts with `P`, and the second or third byte tells those apart). Only
//! a client that has sent part of the preface and stalls makes the wait longer: it gets the same
//! deadline as an HTTP/1 client's head.

use std::io;
use tokio::net::TcpStream;
use tokio::time::{Duration, Instant};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How often a connection that has sent part of the preface is looked at again. A peek that
/// returns data leaves the socket readable, so waiting for readiness would spin.
const PARTIAL_PREFACE_POLL: Duration = Duration::from_millis(5);

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// What the first bytes of `bytes` say: `None` while they are a proper prefix of the preface.
fn classify(bytes: &[u8]) -> Option<Protocol> {
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] != H2_PREFACE[..n] {
        Some(Protocol::Http1)
    } else if n == H2_PREFACE.len() {
        Some(Protocol::Http2)
    } else {
        None
    }
}

/// Waits until `stream`'s first bytes tell its protocol, at most until `deadline`. `Ok(None)`
/// when the client closed or the deadline passed first (the connection is to be dropped).
pub(crate) async fn sniff(stream: &TcpStream, deadline: Instant) -> io::Result<Option<Protocol>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(peeked) => peeked?,
            Err(_elapsed) => return Ok(None),
        };
        if n == 0 {
            return Ok(None);
        }
        if let Some(protocol) = classify(&buf[..n]) {
            return Ok(Some(protocol));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep_until((now + PARTIAL_PREFACE_POLL).min(deadline)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_http1_and_the_preface_is_http2() {
        for line in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /rpc/a/b HTTP/1.1\r\n",
            b"PUT",
            b"PA",
            b"PROPFIND",
            b"\r\n",
        ] {
            assert_eq!(classify(line), Some(Protocol::Http1), "{line:?}");
        }
        assert_eq!(classify(H2_PREFACE), Some(Protocol::Http2));
        let mut more = H2_PREFACE.to_vec();
        more.extend_from_slice(b"\x00\x00\x12\x04");
        assert_eq!(classify(&more), Some(Protocol::Http2));
    }

    #[test]
    fn part_of_the_preface_decides_nothing_yet() {
        for n in 1..H2_PREFACE.len() {
            assert_eq!(classify(&H2_PREFACE[..n]), None, "{n} bytes");
        }
    }
}
