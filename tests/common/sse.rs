//! A minimal server-sent events reader over a real HTTP response: frames as the wire has them
//! (`event:`, `data:`, `id:` and comment lines), so tests check the bytes a browser parses.

use futures_util::StreamExt;
use std::time::Duration;

/// One frame of an event stream: an event, or a comment (keep-alive or closing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub event: Option<String>,
    pub data: Option<String>,
    pub id: Option<String>,
    /// Comment lines, without the leading `:` (and one space).
    pub comments: Vec<String>,
}

impl Frame {
    /// Whether this frame is only comments.
    pub fn is_comment(&self) -> bool {
        self.event.is_none() && self.data.is_none() && self.id.is_none()
    }

    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.data.as_deref().unwrap_or("null")).expect("data is JSON")
    }
}

/// A stream being read.
pub struct Sse {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    /// The raw lines read so far (for assertions on the exact text).
    pub raw: String,
}

impl Sse {
    /// Reads the stream of `response` (which must be `200 text/event-stream`).
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "an event stream");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        Self {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            raw: String::new(),
        }
    }

    /// The next frame within `limit`; `None` when the stream ended (or the limit passed).
    pub async fn next(&mut self, limit: Duration) -> Option<Frame> {
        tokio::time::timeout(limit, self.next_frame())
            .await
            .ok()
            .flatten()
    }

    /// The next event frame within `limit`, skipping comments.
    pub async fn next_event(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next(left).await?;
            if !frame.is_comment() {
                return Some(frame);
            }
        }
    }

    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = find_frame_end(&self.buffer) {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(frame).expect("UTF-8");
                self.raw.push_str(&text);
                return Some(parse(&text));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }
}

fn find_frame_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|w| w == b"\n\n")
}

fn parse(text: &str) -> Frame {
    let mut frame = Frame::default();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            frame.comments.push(comment.trim_start().to_owned());
        } else if let Some((field, value)) = line.split_once(": ") {
            let value = Some(value.to_owned());
            match field {
                "event" => frame.event = value,
                "data" => frame.data = value,
                "id" => frame.id = value,
                other => panic!("unexpected field {other}: {line}"),
            }
        } else if !line.is_empty() {
            panic!("unexpected line {line:?}");
        }
    }
    frame
}
