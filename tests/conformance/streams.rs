//! `GET /events/{source}/{event_type}`: the mesh's events as server-sent events, over a real
//! socket (docs/http.md, "Events to browsers").

use crate::common::sse::{Frame, Sse};
use crate::common::{Harness, Kind, assert_problem, unique, wait_until};
use serde_json::{Value, json};
use std::time::Duration;
use warren_gateway::GatewayConfig;

const WAIT: Duration = Duration::from_secs(10);

/// Opens a stream of `source`'s `event_type` (the headers are in: the queue is bound).
async fn open(h: &Harness, source: &str, event_type: &str) -> Sse {
    let response = h
        .http
        .get(format!("{}/events/{source}/{event_type}", h.base))
        .send()
        .await
        .expect("send");
    Sse::new(response)
}

/// Dispatches `event_type` from `source`, as that service would.
async fn dispatch(h: &Harness, source: &str, event_type: &str, payload: Value) {
    let client = h.mesh.client(source).await.expect("client");
    client
        .dispatch(event_type, payload)
        .await
        .expect("dispatch");
}

/// The gateway's open streams, as `/metrics` reports them.
async fn open_streams(h: &Harness) -> Option<u64> {
    let text = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("warren_gateway_event_streams "))
        .and_then(|v| v.trim().parse().ok())
}

pub async fn events_reach_every_client_in_dispatch_order(kind: Kind) {
    let h = Harness::on(kind, GatewayConfig::default()).await;
    let source = unique("src");
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(open(&h, &source, "ticked").await);
    }
    // Another type from the same source is not this stream's.
    dispatch(&h, &source, "other", json!({"n": -1})).await;
    for n in 0..50 {
        dispatch(
            &h,
            &source,
            "ticked",
            json!({"n": n, "text": "line\nbreak"}),
        )
        .await;
    }
    for client in &mut clients {
        for n in 0..50 {
            let frame = client.next_event(WAIT).await.expect("an event");
            assert_eq!(frame.event.as_deref(), Some("ticked"));
            assert_eq!(frame.json(), json!({"n": n, "text": "line\nbreak"}));
            assert_eq!(
                frame.id,
                Some((n + 1).to_string()),
                "ids count the feed's events"
            );
        }
        // The wire form: one space after each colon, compact JSON on one data line.
        assert!(
            client
                .raw
                .contains("event: ticked\nid: 1\ndata: {\"n\":0,\"text\":\"line\\nbreak\"}\n\n"),
            "{}",
            client.raw
        );
    }
}

pub async fn a_slow_client_is_ended_and_the_others_keep_receiving(kind: Kind) {
    const EVENTS: usize = 400;
    let config = GatewayConfig {
        event_buffer: 16,
        ..GatewayConfig::default()
    };
    let h = Harness::on(kind, config).await;
    let source = unique("src");
    let mut slow = open(&h, &source, "bulk").await;
    let mut fast = open(&h, &source, "bulk").await;
    // 64 KiB events: the slow client's socket buffers fill, then its place in the feed's
    // ring is overtaken.
    let filler = "x".repeat(64 * 1024);
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < EVENTS {
            fast.next_event(WAIT)
                .await
                .expect("the fast client keeps receiving");
            seen += 1;
        }
        seen
    });
    for n in 0..EVENTS {
        dispatch(&h, &source, "bulk", json!({"n": n, "filler": filler})).await;
    }
    assert_eq!(reader.await.expect("reader"), EVENTS);
    // The slow client reads now: what its socket held, then a closing comment, then the end.
    let mut received = 0;
    let mut last = Frame::default();
    while let Some(frame) = slow.next(WAIT).await {
        if frame.is_comment() && !frame.comments.iter().all(String::is_empty) {
            last = frame;
            continue;
        }
        received += usize::from(!frame.is_comment());
    }
    assert!(received < EVENTS, "the slow client was ended ({received})");
    assert!(
        last.comments[0].starts_with("ended: this client fell"),
        "{last:?}"
    );
}

pub async fn idle_streams_get_keep_alive_comments(kind: Kind) {
    let config = GatewayConfig {
        event_keep_alive: Duration::from_millis(100),
        ..GatewayConfig::default()
    };
    let h = Harness::on(kind, config).await;
    let mut stream = open(&h, &unique("src"), "quiet").await;
    let frame = stream.next(WAIT).await.expect("a keep-alive");
    assert!(frame.is_comment(), "{frame:?}");
}

pub async fn names_exposure_and_credentials_are_checked_first(kind: Kind) {
    let config = GatewayConfig {
        exposure: warren_gateway::Exposure::parse(&["library.*", "kv.get"]).expect("patterns"),
        ..GatewayConfig::default()
    };
    let h = Harness::on(kind, config).await;
    let get = |path: &str| h.http.get(format!("{}{path}", h.base)).send();
    assert_problem(
        get("/events/a%2Eb/x").await.expect("send"),
        400,
        "invalid-name",
    )
    .await;
    // Each name valid, together too long for the feed's queue name (an AMQP short string).
    let long = format!("/events/{}/{}", "s".repeat(100), "t".repeat(100));
    assert_problem(get(&long).await.expect("send"), 400, "invalid-name").await;
    assert_problem(
        get("/events/library/_private").await.expect("send"),
        403,
        "not-exposed",
    )
    .await;
    assert_problem(
        get("/events/kv/put").await.expect("send"),
        403,
        "not-exposed",
    )
    .await;
    // The descriptors' source is the gateway's own traffic, whatever the policy.
    let all = Harness::on(kind, GatewayConfig::default()).await;
    let r = all
        .http
        .get(format!("{}/events/warren/descriptor", all.base))
        .send()
        .await
        .expect("send");
    assert_problem(r, 403, "not-exposed").await;
    let r = get("/events/library/book_added").await.expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-cache");

    let keys =
        warren_gateway::ApiKeys::parse("reader k-0123456789abcdef0123 library.*\n").expect("keys");
    let auth = Harness::on(
        kind,
        GatewayConfig {
            auth: warren_gateway::Auth::off().with_api_keys(keys),
            ..GatewayConfig::default()
        },
    )
    .await;
    let url = |path: &str| format!("{}{path}", auth.base);
    let r = auth
        .http
        .get(url("/events/library/book_added"))
        .send()
        .await
        .expect("send");
    assert_problem(r, 401, "unauthenticated").await;
    let with_key = |path: &str| {
        auth.http
            .get(url(path))
            .header("x-api-key", "k-0123456789abcdef0123")
            .send()
    };
    let r = with_key("/events/kv/put").await.expect("send");
    assert_problem(r, 403, "forbidden").await;
    Sse::new(with_key("/events/library/book_added").await.expect("send"));
}

pub async fn the_last_client_leaving_ends_the_subscription(kind: Kind) {
    let config = GatewayConfig {
        max_event_streams: 2,
        ..GatewayConfig::default()
    };
    let h = Harness::on(kind, config).await;
    let source = unique("src");
    let first = open(&h, &source, "e").await;
    let second = open(&h, &source, "e").await;
    let r = h
        .http
        .get(format!("{}/events/{source}/e", h.base))
        .send()
        .await
        .expect("send");
    let body = assert_problem(r, 503, "too-many-streams").await;
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains('2')),
        "{body}"
    );
    assert_eq!(open_streams(&h).await, Some(2));
    drop(first);
    drop(second);
    let closed = wait_until(WAIT, || async { open_streams(&h).await == Some(0) }).await;
    assert!(closed, "both places given back");
    // A new first client makes a new subscription, which receives.
    let mut again = open(&h, &source, "e").await;
    dispatch(&h, &source, "e", json!("after")).await;
    let frame = again.next_event(WAIT).await.expect("an event");
    assert_eq!(frame.json(), json!("after"));
    assert_eq!(frame.id.as_deref(), Some("1"), "a new feed counts from 1");
}
