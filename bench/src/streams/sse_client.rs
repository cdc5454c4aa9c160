//! The SSE client of the streams run: one HTTP/1.1 connection per stream, its chunked body
//! read by hand, its `event:` frames counted into a [`Tally`].

use anyhow::Result;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// What one client (stream or raw consumer) counted, shared with the run.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) events: AtomicU64,
    /// The gateway ended the stream early.
    pub(super) ended: AtomicBool,
    /// The stream closed (ended, or the connection went away).
    pub(super) closed: AtomicBool,
    /// When it had all it waited for, and when its last event arrived.
    pub(super) done_at: Mutex<Option<Instant>>,
    pub(super) last_at: Mutex<Option<Instant>>,
}

impl Tally {
    pub(super) fn is_over(&self) -> bool {
        self.ended.load(Ordering::Relaxed) || self.closed.load(Ordering::Relaxed)
    }

    pub(super) fn done_at(&self) -> Option<Instant> {
        *self.done_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn last_at(&self) -> Option<Instant> {
        *self.last_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `n` events at `now`; true once it has `want`.
    pub(super) fn count(&self, n: u64, want: u64, now: Instant) -> bool {
        let total = self.events.fetch_add(n, Ordering::Relaxed) + n;
        *self.last_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        if total >= want {
            *self.done_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
            return true;
        }
        false
    }
}

/// An open event stream and the task reading it; closed when dropped.
pub(super) struct SseStream {
    pub(super) tally: Arc<Tally>,
    pub(super) reader: JoinHandle<()>,
}

impl Drop for SseStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The most a response's head may take.
pub(super) const MAX_HEAD: usize = 64 * 1024;

impl SseStream {
    /// Opens `GET path` on its own HTTP/1.1 connection (a raw socket: the request written by
    /// hand, the head read to its blank line); returns once the `200` head of a
    /// `text/event-stream` arrived. Its reader counts `event:` frames until it has `want`.
    ///
    /// A raw reader rather than hyper's client: one task per stream and no channel between the
    /// connection and the body, so the bench's share of the two cores stays small next to the
    /// gateway's at 100,000 deliveries a second.
    pub(super) async fn open(address: SocketAddr, path: &str, want: u64) -> Result<Self, String> {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect {address}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let mut buffer = Vec::with_capacity(4096);
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buffer.len() > MAX_HEAD {
                return Err(format!("{path}: a response head over {MAX_HEAD} bytes"));
            }
            let n = stream
                .read_buf(&mut buffer)
                .await
                .map_err(|e| format!("{path}: {e}"))?;
            if n == 0 {
                return Err(format!("{path}: closed before the response's head"));
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let status = head.split_whitespace().nth(1).unwrap_or("");
        let header = |name: &str| {
            head.lines().skip(1).find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_ascii_lowercase())
            })
        };
        let is_sse = header("content-type").is_some_and(|v| v.starts_with("text/event-stream"));
        if status != "200" || !is_sse {
            let first = head.lines().next().unwrap_or("");
            let body = String::from_utf8_lossy(&buffer[head_end..]);
            return Err(format!("{path}: {first}: {body}"));
        }
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let tally = Arc::new(Tally::default());
        let early = buffer[head_end..].to_vec();
        let reader = tokio::spawn(read_events(stream, early, chunked, want, tally.clone()));
        Ok(Self { tally, reader })
    }
}

/// Reads an event stream's body (`early`: what came with the head), counting `event:` lines
/// into `tally` until it has `want`, and noting a closing `: ended: ...` comment.
pub(super) async fn read_events(
    mut stream: TcpStream,
    early: Vec<u8>,
    chunked: bool,
    want: u64,
    tally: Arc<Tally>,
) {
    let mut body = Body::new(chunked);
    let mut lines = Lines::default();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut input = early;
    loop {
        let (mut events, mut ended) = (0, false);
        let finished = body.feed(&input, |data| {
            let (e, end) = lines.feed(data);
            events += e;
            ended |= end;
        });
        if ended {
            tally.ended.store(true, Ordering::Relaxed);
        }
        if events > 0 && tally.count(events, want, Instant::now()) {
            return;
        }
        if ended || finished {
            break;
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                input.clear();
                input.extend_from_slice(&buffer[..n]);
            }
        }
    }
    tally.closed.store(true, Ordering::Relaxed);
}

/// An HTTP/1.1 response body's framing: `Transfer-Encoding: chunked` decoded, or the bytes as
/// they come (until the connection closes).
pub(super) struct Body {
    pub(super) chunked: bool,
    pub(super) state: Chunk,
    /// The chunk size read so far.
    pub(super) size: usize,
    /// Inside a chunk extension (`;...`), skipped to the line's end.
    pub(super) extension: bool,
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// In a chunk's size line.
    Size,
    /// In a chunk's data, this many bytes left.
    Data(usize),
    /// After a chunk's data, before its CRLF's end.
    DataEnd,
    /// After the last (empty) chunk.
    Done,
}

impl Body {
    pub(super) fn new(chunked: bool) -> Self {
        Self {
            chunked,
            state: Chunk::Size,
            size: 0,
            extension: false,
        }
    }

    /// Hands the body's bytes in `input` to `out`; true once the body is over.
    pub(super) fn feed(&mut self, mut input: &[u8], mut out: impl FnMut(&[u8])) -> bool {
        if !self.chunked {
            if !input.is_empty() {
                out(input);
            }
            return false;
        }
        while !input.is_empty() {
            match self.state {
                Chunk::Size => {
                    let b = input[0];
                    input = &input[1..];
                    match b {
                        b'\n' => {
                            self.state = match self.size {
                                0 => Chunk::Done,
                                n => Chunk::Data(n),
                            };
                            (self.size, self.extension) = (0, false);
                        }
                        b';' => self.extension = true,
                        _ if self.extension => {}
                        _ => {
                            if let Some(digit) = (b as char).to_digit(16) {
                                self.size = self.size * 16 + digit as usize;
                            }
                        }
                    }
                }
                Chunk::Data(left) => {
                    let take = left.min(input.len());
                    out(&input[..take]);
                    input = &input[take..];
                    self.state = match left - take {
                        0 => Chunk::DataEnd,
                        rest => Chunk::Data(rest),
                    };
                }
                Chunk::DataEnd => {
                    if input[0] == b'\n' {
                        self.state = Chunk::Size;
                    }
                    input = &input[1..];
                }
                Chunk::Done => return true,
            }
        }
        self.state == Chunk::Done
    }
}

/// SSE lines across body chunks: counts `event:` lines and spots a `: ended:` comment.
#[derive(Default)]
pub(super) struct Lines {
    /// The line so far, when a chunk ended inside it (its first bytes are enough to tell).
    pub(super) partial: Vec<u8>,
}

impl Lines {
    /// The `event:` lines completed in `chunk`, and whether an `ended:` comment came.
    pub(super) fn feed(&mut self, chunk: &[u8]) -> (u64, bool) {
        let (mut events, mut ended) = (0, false);
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let line = if self.partial.is_empty() {
                &rest[..end]
            } else {
                self.partial.extend_from_slice(&rest[..end]);
                self.partial.as_slice()
            };
            if line.starts_with(b"event:") {
                events += 1;
            } else if line.starts_with(b":") && line[1..].trim_ascii_start().starts_with(b"ended:")
            {
                ended = true;
            }
            self.partial.clear();
            rest = &rest[end + 1..];
        }
        // Only a line's start decides; keep enough of it.
        if self.partial.len() < 16 {
            let room = 16 - self.partial.len();
            self.partial
                .extend_from_slice(&rest[..rest.len().min(room)]);
        }
        (events, ended)
    }
}
