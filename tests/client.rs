//! The client side (`sse_server::client` and `examples/listen.rs`) against small servers written
//! here over raw sockets, and against this project's own server.

mod common;
use sse_server::client::{End, Event, EventSource, Report, Url};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

const STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";

/// Ends an answer of [`small_server`] that keeps its connection open after it, until the client
/// closes it (or [`common::READ_TIMEOUT`] passes).
const HOLD: &str = "\0hold";

/// One request as a small server saw it: its head, when it arrived, and when the answer to it
/// was finished and its connection closed (for a [`HOLD`] answer: when the client closed it).
struct Seen {
    head: String,
    arrived: Instant,
    closed: Instant,
}

/// A server that answers its first connections with `answers`, one each, closing after each
/// (unless the answer ends in [`HOLD`]), then stops listening. Each request it read comes back on
/// the channel.
fn small_server(answers: Vec<String>) -> (SocketAddr, Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (send, seen) = channel();
    thread::spawn(move || {
        for answer in answers {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let arrived = Instant::now();
            stream
                .set_read_timeout(Some(common::READ_TIMEOUT))
                .expect("timeout");
            let mut head = Vec::new();
            let mut byte = [0];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let (answer, hold) = match answer.strip_suffix(HOLD) {
                Some(answer) => (answer, true),
                None => (answer.as_str(), false),
            };
            let _ = stream.write_all(answer.as_bytes());
            if hold {
                // Until the client closes: a read of 0 bytes, or an error such as the timeout.
                let mut buf = [0; 1024];
                let deadline = Instant::now() + common::READ_TIMEOUT;
                while Instant::now() < deadline && stream.read(&mut buf).unwrap_or(0) > 0 {}
            }
            // Taken before the close, so that a reconnect's wait measured from here is never
            // shorter than the wait the client really had.
            let closed = Instant::now();
            drop(stream);
            let head = String::from_utf8_lossy(&head).into_owned();
            if send
                .send(Seen {
                    head,
                    arrived,
                    closed,
                })
                .is_err()
            {
                return;
            }
        }
    });
    (addr, seen)
}

/// Runs an `EventSource` on `url` in a thread of its own until it ends, or until `stop` says so
/// of a report; returns every report and how it ended, failing the test after 10 s.
fn run_client(url: &str, stop: impl Fn(&Report) -> bool + Send + 'static) -> (Vec<Report>, End) {
    run_source(EventSource::new(Url::parse(url).expect("a URL")), stop)
}

/// Like [`run_client`], for an `EventSource` the test set up.
fn run_source(
    mut source: EventSource,
    stop: impl Fn(&Report) -> bool + Send + 'static,
) -> (Vec<Report>, End) {
    let (send, done) = channel();
    thread::spawn(move || {
        let mut reports = Vec::new();
        let end = source.run(|report| {
            let stopping = stop(&report);
            reports.push(report);
            match stopping {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            }
        });
        let _ = send.send((reports, end));
    });
    done.recv_timeout(Duration::from_secs(10))
        .expect("the client did not end within 10 s")
}

/// The request targets of the next `n` requests the small server read, in order.
fn targets(seen: &Receiver<Seen>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let head = seen
                .recv_timeout(common::READ_TIMEOUT)
                .expect("a request")
                .head;
            head.split(' ').nth(1).unwrap_or_default().to_string()
        })
        .collect()
}

fn never(_: &Report) -> bool {
    false
}

fn message(data: &str, id: &str) -> Report {
    Report::Event(Event {
        event_type: "message".into(),
        data: data.into(),
        last_event_id: id.into(),
    })
}

// ---- The connection, against small servers ----

#[test]
fn a_stream_that_ends_is_asked_for_again_with_the_last_event_id_after_the_retry_time() {
    let (addr, seen) = small_server(vec![
        format!("{STREAM_HEAD}retry: 300\n\nid: 5\ndata: a\n\n"),
        NO_CONTENT.to_string(),
    ]);
    let (reports, end) = run_client(&format!("http://{addr}/events"), never);
    assert_eq!(
        reports,
        [
            Report::Open,
            Report::Retry(Duration::from_millis(300)),
            message("a", "5"),
            Report::Lost(String::from("the stream ended")),
            Report::Reconnecting {
                delay: Duration::from_millis(300),
                last_event_id: String::from("5")
            },
        ]
    );
    assert_eq!(end, End::Stopped);

    let first = seen.recv_timeout(common::READ_TIMEOUT).expect("a request");
    assert_eq!(
        first.head,
        format!(
            "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ),
        "a first request sends no Last-Event-ID"
    );
    let second = seen
        .recv_timeout(common::READ_TIMEOUT)
        .expect("a reconnect");
    assert!(
        second.head.contains("\r\nLast-Event-ID: 5\r\n"),
        "{}",
        second.head
    );
    let waited = second.arrived - first.closed;
    assert!(
        waited >= Duration::from_millis(300),
        "reconnected after {waited:?}"
    );
}

#[test]
fn the_last_event_id_survives_a_reconnect() {
    // The second stream's event has no `id:`: it still carries the id the first stream set,
    // and so does the third request.
    let (addr, seen) = small_server(vec![
        format!("{STREAM_HEAD}retry: 0\n\nid: 5\ndata: a\n\n"),
        format!("{STREAM_HEAD}data: b\n\n"),
        NO_CONTENT.to_string(),
    ]);
    let (reports, end) = run_client(&format!("http://{addr}/"), never);
    let events: Vec<&Report> = reports
        .iter()
        .filter(|r| matches!(r, Report::Event(_)))
        .collect();
    assert_eq!(events, [&message("a", "5"), &message("b", "5")]);
    assert_eq!(end, End::Stopped);
    let heads: Vec<String> = (0..3)
        .map(|_| {
            seen.recv_timeout(common::READ_TIMEOUT)
                .expect("a request")
                .head
        })
        .collect();
    assert!(
        heads[2].contains("\r\nLast-Event-ID: 5\r\n"),
        "{}",
        heads[2]
    );
}

#[test]
fn a_network_error_reconnects_after_the_reconnection_time() {
    // The first connection closes before any answer: no response at all.
    let (addr, seen) = small_server(vec![String::new(), NO_CONTENT.to_string()]);
    let mut source = EventSource::new(Url::parse(&format!("http://{addr}/")).unwrap());
    assert_eq!(
        source.reconnection_time,
        Duration::from_millis(3000),
        "the default"
    );
    source.reconnection_time = Duration::from_millis(150);
    let (reports, end) = run_source(source, never);
    assert_eq!(end, End::Stopped);
    assert!(
        matches!(&reports[0], Report::Lost(why) if why.starts_with("network error: ")),
        "{reports:?}"
    );
    assert_eq!(
        reports[1],
        Report::Reconnecting {
            delay: Duration::from_millis(150),
            last_event_id: String::new()
        }
    );
    let first = seen.recv_timeout(common::READ_TIMEOUT).expect("a request");
    let second = seen
        .recv_timeout(common::READ_TIMEOUT)
        .expect("a reconnect");
    let waited = second.arrived - first.closed;
    assert!(
        waited >= Duration::from_millis(150),
        "reconnected after {waited:?}"
    );
}

#[test]
fn a_204_stops_the_client() {
    let (addr, _seen) = small_server(vec![NO_CONTENT.to_string()]);
    let (reports, end) = run_client(&format!("http://{addr}/"), never);
    assert_eq!((reports, end), (vec![], End::Stopped));
}

#[test]
fn another_status_or_type_fails_the_connection() {
    for (answer, why) in [
        (
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n",
            "status 503 Service Unavailable",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\ndata: no\n\n",
            r#"Content-Type "text/plain" is not text/event-stream"#,
        ),
        (
            "HTTP/1.1 200 OK\r\n\r\ndata: no\n\n",
            r#"Content-Type "" is not text/event-stream"#,
        ),
    ] {
        let (addr, _seen) = small_server(vec![answer.to_string()]);
        let (reports, end) = run_client(&format!("http://{addr}/"), never);
        assert_eq!((reports, end), (vec![], End::Failed(why.to_string())));
    }
}

#[test]
fn an_event_stream_type_with_parameters_is_accepted() {
    let (addr, _seen) = small_server(vec![format!(
        "HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n\r\ndata: yes\n\n"
    )]);
    let (reports, _) = run_client(&format!("http://{addr}/"), |r| {
        matches!(r, Report::Event(_))
    });
    assert_eq!(reports, [Report::Open, message("yes", "")]);
}

#[test]
fn a_chunked_body_is_read_across_chunk_boundaries() {
    // "data: hello" split inside the line, and its CRLF split across two chunks.
    let body = "9\r\ndata: hel\r\n3\r\nlo\r\r\n3\r\n\n\r\n\r\n0\r\n\r\n";
    let (addr, _seen) = small_server(vec![
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ),
        NO_CONTENT.to_string(),
    ]);
    let (reports, end) = run_client(&format!("http://{addr}/"), never);
    assert_eq!(reports[..2], [Report::Open, message("hello", "")]);
    assert_eq!(reports[2], Report::Lost(String::from("the stream ended")));
    assert_eq!(end, End::Stopped);
}

#[test]
fn a_redirect_is_followed_and_a_reconnect_goes_where_it_led() {
    let (addr, seen) = small_server(vec![
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: /real?x=1\r\n\r\n".to_string(),
        format!("{STREAM_HEAD}retry: 0\n\ndata: here\n\n"),
        NO_CONTENT.to_string(),
    ]);
    let (reports, end) = run_client(&format!("http://{addr}/events"), never);
    assert_eq!(
        reports[..3],
        [
            Report::Redirect(format!("http://{addr}/real?x=1")),
            Report::Open,
            Report::Retry(Duration::ZERO)
        ]
    );
    assert_eq!(reports[3], message("here", ""));
    assert_eq!(end, End::Stopped);
    let targets = targets(&seen, 3);
    // As a browser does: the reconnect asks for the redirect's target, not the URL first given.
    assert_eq!(targets, ["/events", "/real?x=1", "/real?x=1"]);
}

#[test]
fn twenty_redirects_are_followed_and_the_twenty_first_is_not() {
    let redirect = "HTTP/1.1 302 Found\r\nLocation: /again\r\n\r\n".to_string();
    let (addr, _seen) = small_server(vec![redirect; 21]);
    let (reports, end) = run_client(&format!("http://{addr}/"), never);
    let again = Report::Redirect(format!("http://{addr}/again"));
    assert_eq!(reports.len(), 20);
    assert!(reports.iter().all(|report| *report == again), "{reports:?}");
    assert_eq!(end, End::Failed(String::from("more than 20 redirects")));
}

#[test]
fn a_redirect_to_https_fails() {
    let (addr, _seen) = small_server(vec![
        "HTTP/1.1 302 Found\r\nLocation: https://example.com/\r\n\r\n".to_string(),
    ]);
    let (reports, end) = run_client(&format!("http://{addr}/"), never);
    assert_eq!(reports, []);
    assert_eq!(
        end,
        End::Failed(String::from(
            "bad redirect: https://example.com/: https is not supported (std has no TLS); use http://"
        ))
    );
}

#[test]
fn a_relative_redirect_is_resolved_against_the_url_it_answers() {
    let (addr, seen) = small_server(vec![
        "HTTP/1.1 302 Found\r\nLocation: ../b/./s?page=2#top\r\n\r\n".to_string(),
        "HTTP/1.1 302 Found\r\nLocation: ?page=3\r\n\r\n".to_string(),
        NO_CONTENT.to_string(),
    ]);
    let (reports, end) = run_client(&format!("http://{addr}/a/events?page=1"), never);
    assert_eq!(
        reports,
        [
            Report::Redirect(format!("http://{addr}/b/s?page=2")),
            Report::Redirect(format!("http://{addr}/b/s?page=3")),
        ]
    );
    assert_eq!(end, End::Stopped);
    let targets = targets(&seen, 3);
    assert_eq!(targets, ["/a/events?page=1", "/b/s?page=2", "/b/s?page=3"]);
}

#[test]
fn interim_1xx_heads_are_skipped() {
    // RFC 9110 §15.2: a 103 and a 100 before the real head; the 200 came in the same packet.
    let (addr, _seen) = small_server(vec![format!(
        "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n{STREAM_HEAD}data: after\n\n"
    )]);
    let (reports, _) = run_client(&format!("http://{addr}/"), |r| {
        matches!(r, Report::Event(_))
    });
    assert_eq!(reports, [Report::Open, message("after", "")]);
}

#[test]
fn a_response_head_may_be_16_kib_and_no_more() {
    // The head, blank line included, padded to `size` bytes with one header.
    let head = |size: usize| {
        let start = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Pad: ";
        let pad = "x".repeat(size - start.len() - "\r\n\r\n".len());
        format!("{start}{pad}\r\n\r\n")
    };
    let (addr, _seen) = small_server(vec![
        format!("{}data: fits\n\n", head(16 * 1024)),
        // The 103 before it shifts where reads end, so one may straddle the 16 KiB mark.
        format!(
            "HTTP/1.1 103 Early Hints\r\n\r\n{}data: too big\n\n",
            head(16 * 1024 + 1)
        ),
        NO_CONTENT.to_string(),
    ]);
    let mut source = EventSource::new(Url::parse(&format!("http://{addr}/")).unwrap());
    source.reconnection_time = Duration::ZERO;
    let (reports, end) = run_source(source, never);
    assert_eq!(
        reports,
        [
            Report::Open,
            message("fits", ""),
            Report::Lost(String::from("the stream ended")),
            Report::Reconnecting {
                delay: Duration::from_millis(100),
                last_event_id: String::new()
            },
            Report::Lost(String::from("network error: response head too large")),
            Report::Reconnecting {
                delay: Duration::from_millis(100),
                last_event_id: String::new()
            },
        ]
    );
    assert_eq!(end, End::Stopped);
}

#[test]
fn a_101_fails_the_connection() {
    let (addr, _seen) = small_server(vec![format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n{STREAM_HEAD}data: no\n\n"
    )]);
    let (reports, end) = run_client(&format!("http://{addr}/"), never);
    assert_eq!(
        (reports, end),
        (
            vec![],
            End::Failed(String::from("status 101 Switching Protocols"))
        )
    );
}

#[test]
fn a_transfer_encoding_not_ending_in_chunked_is_read_until_close() {
    // Read as chunked, `data: a` would be a bad chunk size.
    let (addr, _seen) = small_server(vec![
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: notchunked\r\nContent-Length: 3\r\n\r\ndata: a\n\ndata: b\n\n"
        ),
        NO_CONTENT.to_string(),
    ]);
    let (reports, end) = run_client(&format!("http://{addr}/"), never);
    assert_eq!(
        reports[..4],
        [
            Report::Open,
            message("a", ""),
            message("b", ""),
            Report::Lost(String::from("the stream ended"))
        ],
        "Content-Length ignored too"
    );
    assert_eq!(end, End::Stopped);
}

#[test]
fn a_content_length_body_ends_after_its_length() {
    // The server keeps the connection open after the body and sends bytes beyond it: the stream
    // must end at byte 18 without waiting for the close, and nothing after it is read.
    let body = "data: a\n\ndata: b\n\n";
    let (addr, _seen) = small_server(vec![
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}data: beyond\n\n{HOLD}",
            body.len()
        ),
        NO_CONTENT.to_string(),
    ]);
    let started = Instant::now();
    let (reports, end) = run_client(&format!("http://{addr}/"), never);
    assert_eq!(
        reports[..4],
        [
            Report::Open,
            message("a", ""),
            message("b", ""),
            Report::Lost(String::from("the stream ended"))
        ]
    );
    assert_eq!(end, End::Stopped);
    assert!(
        started.elapsed() < common::READ_TIMEOUT,
        "the client waited for the server to give up"
    );
}

#[test]
fn an_invalid_content_length_is_a_network_error() {
    for length in ["+5", "5x", "5, 6"] {
        let (addr, _seen) = small_server(vec![
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {length}\r\n\r\ndata: a\n\n"
            ),
            NO_CONTENT.to_string(),
        ]);
        let mut source = EventSource::new(Url::parse(&format!("http://{addr}/")).unwrap());
        source.reconnection_time = Duration::ZERO;
        let (reports, end) = run_source(source, never);
        assert_eq!(
            reports,
            [
                Report::Lost(format!(
                    "network error: an invalid Content-Length: \"{length}\""
                )),
                Report::Reconnecting {
                    delay: Duration::from_millis(100),
                    last_event_id: String::new()
                }
            ],
            "no open: the response is discarded"
        );
        assert_eq!(end, End::Stopped);
    }
}

#[test]
fn a_status_code_must_be_three_digits() {
    let (addr, _seen) = small_server(vec![
        format!("HTTP/1.1 +20 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: a\n\n"),
        NO_CONTENT.to_string(),
    ]);
    let mut source = EventSource::new(Url::parse(&format!("http://{addr}/")).unwrap());
    source.reconnection_time = Duration::ZERO;
    let (reports, end) = run_source(source, never);
    assert_eq!(
        reports[0],
        Report::Lost(String::from(
            "network error: not an HTTP/1.x status line: \"HTTP/1.1 +20 OK\""
        ))
    );
    assert_eq!(end, End::Stopped);
}

#[test]
fn a_line_over_the_limit_fails_the_connection() {
    // One byte over 1 MiB, and no line end: the server then waits, and the client must not.
    let line = format!("data: {}", "x".repeat(1024 * 1024 - 5));
    let (addr, _seen) = small_server(vec![format!("{STREAM_HEAD}{line}{HOLD}")]);
    let started = Instant::now();
    let (reports, end) = run_client(&format!("http://{addr}/"), never);
    assert_eq!(reports, [Report::Open]);
    assert_eq!(
        end,
        End::Failed(String::from("a line longer than 1048576 bytes"))
    );
    assert!(started.elapsed() < common::READ_TIMEOUT);
}

#[test]
fn retry_0_still_waits_the_floor_of_100_ms() {
    let (addr, seen) = small_server(vec![
        format!("{STREAM_HEAD}retry: 0\n\n"),
        NO_CONTENT.to_string(),
    ]);
    let (reports, end) = run_client(&format!("http://{addr}/"), never);
    assert_eq!(
        reports,
        [
            Report::Open,
            Report::Retry(Duration::ZERO),
            Report::Lost(String::from("the stream ended")),
            Report::Reconnecting {
                delay: Duration::from_millis(100),
                last_event_id: String::new()
            },
        ]
    );
    assert_eq!(end, End::Stopped);
    let first = seen.recv_timeout(common::READ_TIMEOUT).expect("a request");
    let second = seen
        .recv_timeout(common::READ_TIMEOUT)
        .expect("a reconnect");
    let waited = second.arrived - first.closed;
    assert!(
        waited >= Duration::from_millis(100),
        "reconnected after {waited:?}"
    );
}

#[test]
fn a_silent_connection_is_dropped_after_the_idle_timeout() {
    let (addr, seen) = small_server(vec![
        format!("{STREAM_HEAD}data: a\n\n{HOLD}"),
        NO_CONTENT.to_string(),
    ]);
    let mut source = EventSource::new(Url::parse(&format!("http://{addr}/")).unwrap());
    source.idle_timeout = Some(Duration::from_millis(200));
    source.reconnection_time = Duration::ZERO;
    let (reports, end) = run_source(source, never);
    assert_eq!(
        reports[..3],
        [
            Report::Open,
            message("a", ""),
            Report::Lost(String::from(
                "no bytes for 200 ms: the connection is taken as lost"
            )),
        ]
    );
    assert_eq!(end, End::Stopped);
    let first = seen.recv_timeout(common::READ_TIMEOUT).expect("a request");
    let held = first.closed - first.arrived;
    assert!(
        held >= Duration::from_millis(200) && held < common::READ_TIMEOUT,
        "the client closed after {held:?}"
    );
}

// ---- Against this project's server ----

#[test]
fn end_after_cycles_lose_and_repeat_nothing() {
    let addr = common::start(common::config());
    // A witness that stays connected sees every tick.
    let mut witness = common::EventStream::open(addr, "");
    let url = format!("http://{addr}/events?end_after=3&retry=20");
    let (reports, end) = run_client(&url, |report| {
        // Stop at the fifth connection: four whole cycles are behind it.
        static OPENS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        *report == Report::Open && OPENS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 4
    });
    assert_eq!(end, End::Closed);
    // The ticks it got; the `lab` echo and the client counts are not events of the log.
    let ids: Vec<_> = reports
        .iter()
        .filter_map(|report| match report {
            Report::Event(event) if event.event_type == "message" => Some(common::id_of(event)),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 12, "{reports:#?}");
    let mut all = Vec::new();
    while all.last() != ids.last() {
        all.push(common::id_of(&witness.next_of("message")));
    }
    let first = all
        .iter()
        .position(|id| *id == ids[0])
        .expect("the first tick");
    assert_eq!(ids, all[first..], "no gap, no repeat");
}

// ---- examples/listen.rs ----

/// The `listen` example, built once for these tests (a filtered `cargo test` builds no example).
fn listen() -> Command {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let path = BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "--example", "listen"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        assert!(cargo.status().expect("run cargo").success(), "build listen");
        // This test runs from target/<profile>/deps/; the example is in target/<profile>/examples/.
        let exe = std::env::current_exe().expect("this test's path");
        let profile = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("a target folder");
        profile.join("examples").join("listen")
    });
    Command::new(path)
}

/// Runs `listen` with `args` until it exits, killing it after 10 s.
fn run_listen(args: &[&str]) -> Output {
    finish(spawn_listen(args))
}

fn spawn_listen(args: &[&str]) -> std::process::Child {
    listen()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start listen")
}

/// Waits for `listen` to exit, killing it after 10 s; its output.
fn finish(mut child: std::process::Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("its output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn listen_exits_1_when_the_connection_fails() {
    let addr = common::start(common::quiet());
    for (query, why) in [
        ("status=503", "failed: status 503 Service Unavailable"),
        (
            "type=text/plain",
            r#"failed: Content-Type "text/plain" is not text/event-stream"#,
        ),
    ] {
        let output = run_listen(&[&format!("http://{addr}/events?{query}")]);
        assert_eq!(output.status.code(), Some(1), "{query}");
        assert!(output.stdout.is_empty(), "{query}");
        let stderr = text(&output.stderr);
        assert!(stderr.lines().any(|l| l == why), "{stderr}");
    }
}

#[test]
fn listen_exits_0_on_204_and_after_max_events() {
    let addr = common::start(common::config());
    let output = run_listen(&[&format!("http://{addr}/events?status=204")]);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stderr).contains("stopped: 204 No Content"));

    let output = run_listen(&[&format!("http://{addr}/sse"), "--max-events", "3"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    // The count comes before any id; each tick sets one.
    assert_eq!(lines[0], "clients: 1", "{stdout}");
    assert!(lines[1].starts_with("message (lastEventId "), "{stdout}");
    assert!(text(&output.stderr).contains("\nconnected\n"));
}

#[test]
fn listen_stops_when_nobody_reads_its_output() {
    // `listen | head -1`: once `head` has its line and exits, the next write fails; `listen`
    // must stop there rather than read and reconnect forever. Ticks every 50 ms keep it writing.
    let addr = common::start(common::config());
    let mut child = listen()
        .arg(format!("http://{addr}/events"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start listen");
    let mut stdout = child.stdout.take().expect("its stdout");
    let mut first = [0; 1];
    stdout
        .read_exact(&mut first)
        .expect("a first byte of output");
    drop(stdout);
    let deadline = Instant::now() + common::READ_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "listen went on writing to nobody"
    );
}

#[test]
fn listen_json_escapes_every_character_json_must() {
    let (addr, seen) = small_server(vec![format!(
        "{STREAM_HEAD}event: odd\ndata: say \"hi\"\ndata: back\\slash\ttab\u{1}bell\u{7f}\nid: x\"y\n\n"
    )]);
    let output = run_listen(&[
        &format!("http://{addr}/"),
        "--json",
        "--last-event-id",
        "41",
        "--max-events",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "{\"type\":\"odd\",\"data\":\"say \\\"hi\\\"\\nback\\\\slash\\ttab\\u0001bell\u{7f}\",\"lastEventId\":\"x\\\"y\"}\n"
    );
    let head = seen
        .recv_timeout(common::READ_TIMEOUT)
        .expect("a request")
        .head;
    assert!(head.contains("\r\nLast-Event-ID: 41\r\n"), "{head}");
}

#[test]
fn listen_exits_2_on_bad_arguments_with_a_usage_line() {
    for args in [
        &["--max-events", "0"][..],
        &["--max-events", "+3"],
        &["--bogus"],
        &["https://example.com/events"],
        &["localhost:3000"],
        &["--last-event-id"],
        &["--last-event-id", "a\nb"],
        &["--idle-timeout"],
        &["--idle-timeout", "0"],
        &["--idle-timeout", "1.5"],
        &["http://a/", "http://b/"],
    ] {
        let output = run_listen(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.starts_with("listen: "), "{args:?}: {stderr}");
        assert!(stderr.contains("\nusage: listen "), "{args:?}: {stderr}");
    }
}

#[test]
fn listen_shows_each_events_last_event_id_and_the_one_it_starts_with() {
    // The first event carries no id: what it shows is the id `listen` was started with.
    let (addr, _seen) = small_server(vec![format!(
        "{STREAM_HEAD}event: gap\ndata: x\n\nid: 7\ndata: y\n\ndata: z\ndata: 2\n\n"
    )]);
    let url = format!("http://{addr}/");
    let output = run_listen(&[&url, "--last-event-id", "abc", "--max-events", "3"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "gap (lastEventId abc): x\nmessage (lastEventId 7): y\nmessage (lastEventId 7): z\n"
            .to_string()
            + &" ".repeat("message (lastEventId 7): ".len())
            + "2\n"
    );
    assert_eq!(
        text(&output.stderr),
        format!("connecting to {url} with Last-Event-ID abc\nconnected\n")
    );
}

#[test]
fn listen_timestamps_show_the_wait_before_a_reconnect() {
    let (addr, _seen) = small_server(vec![
        format!("{STREAM_HEAD}retry: 300\n\ndata: a\ndata: b\n\n"),
        NO_CONTENT.to_string(),
    ]);
    let output = run_listen(&[&format!("http://{addr}/"), "--timestamps"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    // Each line: `[N ms] ` and the text it has without the flag; a data line after the first is
    // indented past the stamp.
    let stamped = |all: &str| -> Vec<(u128, String)> {
        all.lines()
            .filter(|line| !line.starts_with(' '))
            .map(|line| {
                let (ms, rest) = line
                    .strip_prefix('[')
                    .and_then(|line| line.split_once(" ms] "))
                    .unwrap_or_else(|| panic!("no stamp: {line:?}"));
                (ms.parse().expect("milliseconds"), rest.to_string())
            })
            .collect()
    };
    let stdout = text(&output.stdout);
    let events = stamped(&stdout);
    assert_eq!(events.len(), 1, "{stdout}");
    assert_eq!(events[0].1, "message: a");
    let indent = stdout.find("message").expect("the label") + "message: ".len();
    assert!(
        stdout.ends_with(&format!("\n{}b\n", " ".repeat(indent))),
        "{stdout}"
    );
    let stderr = stamped(&text(&output.stderr));
    let said: Vec<&str> = stderr.iter().map(|(_, rest)| rest.as_str()).collect();
    assert_eq!(
        said,
        [
            format!("connecting to http://{addr}/").as_str(),
            "connected",
            "retry now 300 ms",
            "the stream ended",
            "reconnecting in 300 ms",
            "stopped: 204 No Content, the server's way to say stop reconnecting"
        ]
    );
    let times: Vec<u128> = stderr.iter().map(|(ms, _)| *ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(times[5] - times[4] >= 300, "{times:?}");
}

#[test]
fn listen_idle_timeout_reconnects_a_silent_stream() {
    let (addr, _seen) = small_server(vec![
        format!("{STREAM_HEAD}retry: 0\n\n{HOLD}"),
        NO_CONTENT.to_string(),
    ]);
    let output = run_listen(&[&format!("http://{addr}/"), "--idle-timeout", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "\nno bytes for 1000 ms: the connection is taken as lost\nreconnecting in 100 ms\n"
        ),
        "{stderr}"
    );
}

#[test]
fn listen_help_prints_the_usage_and_exits_0() {
    let output = run_listen(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).starts_with("usage: listen [URL] [--json] [--last-event-id ID] [--max-events N] [--idle-timeout SECS] [--timestamps]"));
    assert!(output.stderr.is_empty());
}

#[test]
fn listen_carries_on_across_a_stop_and_continue() {
    let addr = common::start(sse_server::Config {
        tick: Duration::from_millis(30),
        ..common::quiet()
    });
    let url = format!("http://{addr}/events");
    let mut child = spawn_listen(&[&url, "--idle-timeout", "5", "--max-events", "8"]);
    let mut stdout = child.stdout.take().expect("its stdout");
    let (first, printed) = channel();
    thread::spawn(move || {
        let _ = first.send(stdout.read_exact(&mut [0; 1]).is_ok());
        // Read on to the end: a closed pipe would stop `listen` by itself.
        let _ = stdout.read_to_end(&mut Vec::new());
    });
    // Its first event is out: it is reading the stream, with a timeout. Ctrl-Z, then fg.
    let printed = printed.recv_timeout(Duration::from_secs(5));
    assert_eq!(printed, Ok(true), "a first event");
    common::process::stop_and_continue(child.id(), Duration::from_millis(100));
    let output = finish(child);
    assert_eq!(output.status.code(), Some(0));
    // One connection, no reconnect: the read that failed with EINTR was done again.
    assert_eq!(
        text(&output.stderr),
        format!("connecting to http://{addr}/events\nconnected\nretry now 3000 ms\n")
    );
}
