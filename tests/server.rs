//! The server over real sockets: every route, every status, and the stream as a browser reads it.

mod common;
use common::{EventStream, agent, config, id_of, publish, quiet, raw, raw_text, start, status};
use sse_server::Config;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

// ---- The page and static files ----

#[test]
fn index_is_served() {
    let addr = start(config());
    let mut response = agent().get(format!("http://{addr}/")).call().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(response.headers()["connection"], "close");
    let body = response.body_mut().read_to_string().unwrap();
    assert_eq!(body, std::fs::read_to_string("public/index.html").unwrap());
}

#[test]
fn head_gets_the_headers_without_the_body() {
    let addr = start(config());
    let response = raw_text(addr, &format!("HEAD / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    let length = std::fs::metadata("public/index.html").unwrap().len();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains(&format!("\r\nContent-Length: {length}\r\n")),
        "{response}"
    );
    assert!(
        response.ends_with("\r\n\r\n"),
        "a HEAD response has no body: {response}"
    );
}

/// A public/ folder of its own, beside a file that must never be served.
fn public_dir_with_files() -> PathBuf {
    let root = std::env::temp_dir().join(format!("sse-static-{}", std::process::id()));
    let public = root.join("public");
    std::fs::create_dir_all(public.join("sub")).unwrap();
    std::fs::write(root.join("secret.txt"), "SECRET").unwrap();
    std::fs::write(public.join("index.html"), "<p>hi</p>").unwrap();
    std::fs::write(public.join("app.js"), "let a = 1;").unwrap();
    std::fs::write(public.join("sub/style.css"), "p {}").unwrap();
    std::fs::write(public.join("shot.png"), b"\x89PNG").unwrap();
    public
}

#[test]
fn public_files_get_their_content_type() {
    let addr = start(Config {
        public_dir: public_dir_with_files(),
        ..config()
    });
    for (path, content_type, body) in [
        ("/app.js", "text/javascript; charset=utf-8", "let a = 1;"),
        ("/sub/style.css", "text/css; charset=utf-8", "p {}"),
        ("/index.html", "text/html; charset=utf-8", "<p>hi</p>"),
    ] {
        let mut response = agent().get(format!("http://{addr}{path}")).call().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_eq!(
            response.body_mut().read_to_string().unwrap(),
            body,
            "{path}"
        );
    }
    let response = agent()
        .get(format!("http://{addr}/shot.png"))
        .call()
        .unwrap();
    assert_eq!(response.headers()["content-type"], "image/png");
}

#[test]
fn nothing_outside_public_is_served() {
    let addr = start(Config {
        public_dir: public_dir_with_files(),
        ..config()
    });
    for path in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/..%2fsecret.txt",
        "/..%5csecret.txt",
        "/sub%5c..%5c..%5csecret.txt",
        "/secret.txt%00.html",
        "/%00",
    ] {
        let response = raw_text(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        );
        assert!(matches!(status(&response), 400 | 404), "{path}: {response}");
        assert!(!response.contains("SECRET"), "{path} leaked the secret");
    }
}

// ---- Routing ----

#[test]
fn unknown_path_is_404() {
    let addr = start(config());
    let response = agent().get(format!("http://{addr}/nope")).call().unwrap();
    assert_eq!(response.status(), 404);
    let response = raw_text(
        addr,
        &format!("DELETE /nope HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
    assert_eq!(status(&response), 404);
}

#[test]
fn wrong_method_is_405_with_allow() {
    let addr = start(config());
    for (request, allow) in [
        ("POST /events", "GET, HEAD"),
        ("GET /publish", "POST"),
        ("PUT /", "GET, HEAD"),
        ("DELETE /index.html", "GET, HEAD"),
    ] {
        let response = raw_text(
            addr,
            &format!("{request} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"),
        );
        assert!(
            response.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{request}: {response}"
        );
        assert!(
            response.contains(&format!("\r\nAllow: {allow}\r\n")),
            "{request}: {response}"
        );
    }
}

// ---- Malformed, oversize and slow requests ----

#[test]
fn malformed_request_is_400() {
    let addr = start(config());
    for request in [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/9.9\r\nHost: localhost\r\n\r\n",
    ] {
        let response = raw_text(addr, request);
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{request:?}: {response}"
        );
        assert!(response.contains("Connection: close\r\n"), "{response}");
    }
}

#[test]
fn head_over_8_kib_is_431() {
    let addr = start(config());
    let request = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let response = raw_text(addr, &request);
    assert!(
        response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{response}"
    );
}

#[test]
fn head_of_exactly_8_kib_is_fine() {
    let addr = start(config());
    let start_of_head = "GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: ";
    let pad = "a".repeat(8 * 1024 - start_of_head.len() - 4);
    let request = format!("{start_of_head}{pad}\r\n\r\n");
    assert_eq!(request.len(), 8 * 1024);
    assert_eq!(status(&raw_text(addr, &request)), 200);
}

#[test]
fn incomplete_head_is_closed_after_the_timeout() {
    // The test config gives a head 500 ms.
    let addr = start(config());
    let mut stream = common::connect(addr);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = [0; 64];
    let n = stream
        .read(&mut buf)
        .expect("closed, not timed out in the test");
    assert_eq!(n, 0, "closed without a response");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed too early"
    );
}

// ---- The stream ----

#[test]
fn stream_has_the_event_stream_headers() {
    let addr = start(config());
    let stream = EventStream::open(addr, "");
    assert_eq!(
        stream.head,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\nDate: <date>\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn stream_starts_with_retry() {
    let addr = start(quiet());
    let mut stream = EventStream::open(addr, "");
    while stream.body.len() < 13 {
        assert!(stream.read_more());
    }
    assert_eq!(&stream.body[..13], b"retry: 3000\n\n");
    assert_eq!(stream.parser.retry, Some(3000));
}

#[test]
fn ticks_carry_the_time_with_increasing_ids() {
    let addr = start(config());
    let mut stream = EventStream::open(addr, "");
    let mut last_id = None;
    for _ in 0..3 {
        let tick = stream.next_of("message");
        let id = id_of(&tick);
        assert!(
            Some(id) > last_id,
            "ids must increase: {id} after {last_id:?}"
        );
        last_id = Some(id);
        // {"time":"2026-11-21T12:00:00Z","message":"Server Time: 12:00:00 UTC"}
        let shape: String = tick
            .data
            .chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect();
        assert_eq!(
            shape,
            r#"{"time":"0000-00-00T00:00:00Z","message":"Server Time: 00:00:00 UTC"}"#
        );
        assert_eq!(tick.data[20..28], tick.data[55..63], "one time, twice");
    }
}

#[test]
fn ids_increase_across_every_event_type_and_counts_have_none() {
    let addr = start(config());
    // Joining after the first tick or before it must not matter (this once failed with 80 ms).
    std::thread::sleep(Duration::from_millis(80));
    let mut stream = EventStream::open(addr, "");
    stream.next_of("message");
    publish(addr, "one");
    stream.next_of("publish");
    stream.next_of("message");
    let body = stream.body_text();
    let (mut last, mut with_ids) = (None, 0);
    for frame in body.split("\n\n").filter(|frame| !frame.is_empty()) {
        let id = frame.lines().find_map(|line| line.strip_prefix("id: "));
        if frame.contains("event: clients\n") {
            // The count is state, not history: no id, so it never moves the browser's last event ID.
            assert_eq!(id, None, "{frame:?}");
        } else if let Some(id) = id {
            let id = sse_server::event_log::EventId::parse(id).expect("an id of ours");
            assert!(Some(id) > last, "{id} after {last:?}: {body}");
            last = Some(id);
            with_ids += 1;
        }
    }
    // A tick, the publish, a tick: at least three ids were compared.
    assert!(with_ids >= 3, "{body}");
}

#[test]
fn what_a_full_socket_could_not_take_goes_out_without_new_events() {
    // std has no readiness API: a writer tries a client it left behind again on a timer.
    let addr = start(quiet());
    let mut stream = EventStream::open(addr, "");
    stream.next_of("clients");
    // 120 events of 60 KiB (7 MB, within the log's 8 MiB), not read meanwhile: more than the
    // socket buffers of a connection that has not been read take.
    let big = "x".repeat(60 * 1024);
    for i in 0..120 {
        assert!(publish(addr, &format!("{i} {big}")).starts_with("HTTP/1.1 204 "));
    }
    // Nothing is appended after the last one; still every event arrives, whole and in order.
    for i in 0..120 {
        let event = stream.next_of("publish");
        assert_eq!(event.data.len(), big.len() + 1 + i.to_string().len(), "{i}");
        assert!(event.data.starts_with(&format!("{i} x")), "{i}");
    }
}

#[test]
fn heartbeat_is_sent_when_idle() {
    let addr = start(Config {
        heartbeat: Duration::from_millis(100),
        ..quiet()
    });
    let mut stream = EventStream::open(addr, "");
    let deadline = Instant::now() + Duration::from_secs(5);
    while stream.parser.comments == 0 {
        assert!(Instant::now() < deadline, "no heartbeat");
        assert!(stream.read_more());
    }
    let body = String::from_utf8(stream.body.clone()).unwrap();
    assert!(body.contains("\n\n: heartbeat\n\n"), "{body:?}");
}

// ---- Publish ----

#[test]
fn publish_round_trip_keeps_multi_line_and_unicode_text() {
    let addr = start(quiet());
    let mut stream = EventStream::open(addr, "");
    let text = "héllo 👋\r\n  indented\rlast\n\nevent: not-a-field\n";
    let response = publish(addr, text);
    assert!(
        response.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{response}"
    );
    let event = stream.next_of("publish");
    // What EventSource hands the page: the text, with every line break as LF.
    assert_eq!(
        event.data,
        "héllo 👋\n  indented\nlast\n\nevent: not-a-field\n"
    );
    let wire = String::from_utf8(stream.body.clone()).unwrap();
    let frame = format!(
        "id: {}\nevent: publish\ndata: héllo 👋\ndata:   indented\ndata: last\ndata: \ndata: event: not-a-field\ndata: \n\n",
        event.last_event_id
    );
    assert!(wire.contains(&frame), "{wire:?}");
}

#[test]
fn empty_publish_is_an_event_with_empty_data() {
    let addr = start(quiet());
    let mut stream = EventStream::open(addr, "");
    publish(addr, "");
    assert_eq!(stream.next_of("publish").data, "");
}

#[test]
fn publish_reaches_every_client() {
    let addr = start(quiet());
    let mut first = EventStream::open(addr, "");
    let mut second = EventStream::open(addr, "");
    second.wait_for_count(2);
    publish(addr, "to both");
    let a = first.next_of("publish");
    let b = second.next_of("publish");
    assert_eq!(a.data, "to both");
    assert_eq!(a, b);
}

#[test]
fn publish_with_ureq_and_same_origin() {
    let addr = start(quiet());
    let mut stream = EventStream::open(addr, "");
    let response = agent()
        .post(format!("http://{addr}/publish"))
        .header("Origin", format!("http://{addr}"))
        .send("hi")
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(stream.next_of("publish").data, "hi");
}

#[test]
fn publish_without_content_length_is_411() {
    let addr = start(config());
    let response = raw_text(
        addr,
        &format!("POST /publish HTTP/1.1\r\nHost: {addr}\r\n\r\nhi"),
    );
    assert!(
        response.starts_with("HTTP/1.1 411 Length Required\r\n"),
        "{response}"
    );
}

#[test]
fn a_body_with_transfer_encoding_is_refused_and_nothing_is_published() {
    let addr = start(quiet());
    let mut stream = EventStream::open(addr, "");
    let chunked = "5\r\nhello\r\n0\r\n\r\n";
    // Both framings: the smuggling case. A server that believed Content-Length would publish
    // the chunk framing as text.
    let both = raw_text(
        addr,
        &format!(
            "POST /publish HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{chunked}",
            chunked.len()
        ),
    );
    assert!(
        both.starts_with("HTTP/1.1 400 Bad Request\r\n")
            && both
                .ends_with("\r\n\r\n400 Bad Request: both Transfer-Encoding and Content-Length\n"),
        "{both}"
    );
    let only = raw_text(
        addr,
        &format!(
            "POST /publish HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}"
        ),
    );
    assert!(
        only.starts_with("HTTP/1.1 501 Not Implemented\r\n"),
        "{only}"
    );
    // Nothing reached the stream: the next publish is the first.
    publish(addr, "after");
    assert_eq!(stream.next_of("publish").data, "after");
}

#[test]
fn publish_over_64_kib_is_413_and_64_kib_is_fine() {
    let addr = start(quiet());
    let mut stream = EventStream::open(addr, "");
    // The whole oversize body is sent: the 413 must still arrive (not a connection reset).
    let response = publish(addr, &"a".repeat(64 * 1024 + 1));
    assert!(
        response.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
        "{}",
        &response[..100.min(response.len())]
    );
    let response = publish(addr, &"b".repeat(64 * 1024));
    assert!(
        response.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{response}"
    );
    assert_eq!(stream.next_of("publish").data.len(), 64 * 1024);
}

#[test]
fn early_413_lets_the_client_finish_sending() {
    // curl sends the head, gets the 413 before its body is out, and keeps sending. If the server
    // just closed, the unread body would make it answer with a reset and curl would report
    // "connection reset" instead of the 413. The server drains the body before it closes.
    let addr = start(config());
    let mut client = common::connect(addr);
    let len = 70_000;
    client
        .write_all(
            format!("POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {len}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut response = [0; 32];
    client.read_exact(&mut response).unwrap();
    assert_eq!(&response, b"HTTP/1.1 413 Content Too Large\r\n");
    for _ in 0..7 {
        client
            .write_all(&[b'a'; 10_000])
            .expect("the server still takes the body");
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    common::read_to_close(&mut client);
}

#[test]
fn publish_that_is_not_utf8_is_400() {
    let addr = start(config());
    let mut request =
        format!("POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\n\r\n").into_bytes();
    request.extend_from_slice(b"\xff\xfe");
    let response = String::from_utf8_lossy(&raw(addr, &request)).into_owned();
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    assert!(response.contains("body is not UTF-8"), "{response}");
}

#[test]
fn publish_from_the_pages_own_origin_over_https_is_accepted() {
    // Behind a proxy that ends TLS, the page is https:// and its Origin says so; Host is the same.
    let addr = start(quiet());
    let mut stream = EventStream::open(addr, "");
    let response = raw_text(
        addr,
        &format!(
            "POST /publish HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://{addr}\r\nContent-Length: 2\r\n\r\nok"
        ),
    );
    assert!(
        response.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{response}"
    );
    assert_eq!(stream.next_of("publish").data, "ok");
}

#[test]
fn publish_from_another_origin_is_403() {
    let addr = start(config());
    let other_port = format!("http://127.0.0.1:{}", addr.port() + 1);
    let no_scheme = addr.to_string();
    let other_scheme = format!("ftp://{addr}");
    for origin in [
        "http://evil.example",
        "null",
        "https://127.0.0.1",
        &other_port,
        &no_scheme,
        &other_scheme,
    ] {
        let response = raw_text(
            addr,
            &format!(
                "POST /publish HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nContent-Length: 1\r\n\r\nx"
            ),
        );
        assert!(
            response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{origin}: {response}"
        );
    }
}

#[test]
fn expect_100_continue_gets_continue_before_the_body() {
    let addr = start(quiet());
    let mut stream = EventStream::open(addr, "");
    let mut client = common::connect(addr);
    client.write_all(format!("POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").as_bytes()).unwrap();
    let mut interim = [0; 25];
    client
        .read_exact(&mut interim)
        .expect("100 Continue before we send the body");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.write_all(b"later").unwrap();
    let response = String::from_utf8(common::read_to_close(&mut client)).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{response}"
    );
    assert_eq!(stream.next_of("publish").data, "later");
}

// ---- Last-Event-ID ----

#[test]
fn last_event_id_replays_exactly_the_missed_events() {
    let addr = start(quiet());
    // A witness sees every event as it happens.
    let mut witness = EventStream::open(addr, "");
    for text in ["one", "two", "three", "four"] {
        publish(addr, text);
    }
    let all: Vec<common::Event> = (0..4).map(|_| witness.next_of("publish")).collect();
    // Reconnect as a browser that saw "two": it must get exactly what came after, in order,
    // after the current count.
    let mut late = EventStream::open(
        addr,
        &format!("Last-Event-ID: {}\r\n", all[1].last_event_id),
    );
    assert_eq!(late.next().event_type, "clients");
    let replayed: Vec<common::Event> = (0..2).map(|_| late.next()).collect();
    assert_eq!(replayed, all[2..]);
    // Then live events, with no duplicate of the replay.
    publish(addr, "five");
    let next = late.next_of("publish");
    assert_eq!(next.data, "five");
    assert!(id_of(&next) > id_of(&all[3]), "{next:?}");
}

#[test]
fn an_id_older_than_the_log_gets_a_gap_then_the_last_1000_events() {
    let addr = start(quiet());
    let mut witness = EventStream::open(addr, "");
    for i in 0..1005 {
        publish(addr, &format!("event {i}"));
    }
    let ids: Vec<String> = (0..1005)
        .map(|_| witness.next_of("publish").last_event_id)
        .collect();
    // The browser saw event 3; events 4 to 1004 are still kept, but event 4 is not.
    let mut stream = EventStream::open(addr, &format!("Last-Event-ID: {}\r\n", ids[3]));
    let gap = stream.next();
    assert_eq!(gap.event_type, "gap");
    assert_eq!(
        gap.data,
        format!(
            r#"{{"last_event_id":"{}","resume_from":"{}"}}"#,
            ids[3], ids[5]
        )
    );
    // Then the current count, and the 1000 kept events, oldest first.
    assert_eq!(stream.next().event_type, "clients");
    for (i, id) in ids.iter().enumerate().skip(5) {
        let event = stream.next();
        assert_eq!(
            (&event.last_event_id, event.data),
            (id, format!("event {i}"))
        );
    }
    // A browser that saw event 4, the newest one gone, has missed nothing kept: no gap.
    let mut stream = EventStream::open(addr, &format!("Last-Event-ID: {}\r\n", ids[4]));
    assert_eq!(stream.next().event_type, "clients");
    assert_eq!(stream.next().data, "event 5");
}

#[test]
fn an_id_from_the_future_gets_a_gap_and_everything_kept() {
    let addr = start(quiet());
    publish(addr, "only");
    let mut stream = EventStream::open(addr, "Last-Event-ID: 99999999999999-0\r\n");
    let gap = stream.next();
    let only = stream.next_of("publish");
    assert_eq!(only.data, "only");
    assert_eq!(
        gap.data,
        format!(
            r#"{{"last_event_id":"99999999999999-0","resume_from":"{}"}}"#,
            only.last_event_id
        )
    );
}

#[test]
fn an_id_that_is_not_ours_gets_a_gap_and_everything_kept() {
    let addr = start(quiet());
    publish(addr, "before");
    let mut open = Vec::new();
    // `42` is what this server's ids looked like before they held the clock.
    for bad in [
        "abc",
        "42",
        "-1",
        "+1-0",
        "1-+0",
        "1-2-3",
        "1.5",
        "0x1",
        "99999999999999999999-0",
    ] {
        let mut stream = EventStream::open(addr, &format!("Last-Event-ID: {bad}\r\n"));
        assert!(stream.head.starts_with("HTTP/1.1 200 OK\r\n"), "{bad:?}");
        let gap = stream.next();
        assert_eq!(gap.event_type, "gap", "{bad:?}");
        let before = stream.next_of("publish");
        assert_eq!(before.data, "before", "{bad:?}");
        assert_eq!(
            gap.data,
            format!(
                r#"{{"last_event_id":null,"resume_from":"{}"}}"#,
                before.last_event_id
            )
        );
        open.push(stream);
    }
}

#[test]
fn after_in_the_query_resumes_when_the_browser_sends_no_header() {
    let addr = start(quiet());
    let mut witness = EventStream::open(addr, "");
    for text in ["one", "two", "three"] {
        publish(addr, text);
    }
    let ids: Vec<String> = (0..3)
        .map(|_| witness.next_of("publish").last_event_id)
        .collect();
    // A page that kept the first id (in localStorage, say) after a reload.
    let mut stream = EventStream::open_at(addr, &format!("/events?after={}", ids[0]), "");
    assert_eq!(stream.next().event_type, "clients");
    assert_eq!(stream.next().data, "two");
    assert_eq!(stream.next().data, "three");
    // The header wins: the browser's own id is newer than the one the page kept.
    let header = format!("Last-Event-ID: {}\r\n", ids[1]);
    let mut stream = EventStream::open_at(addr, &format!("/events?after={}", ids[0]), &header);
    assert_eq!(stream.next().event_type, "clients");
    assert_eq!(stream.next().data, "three");
    // A value that is not an id of ours gets the gap and everything kept, as in the header.
    let mut stream = EventStream::open_at(addr, "/events?after=%zz", "");
    let gap = stream.next();
    assert_eq!(gap.event_type, "gap");
    assert_eq!(
        gap.data,
        format!(r#"{{"last_event_id":null,"resume_from":"{}"}}"#, ids[0])
    );
}

#[test]
fn an_empty_last_event_id_is_a_new_stream() {
    let addr = start(quiet());
    publish(addr, "before");
    let mut stream = EventStream::open(addr, "Last-Event-ID: \r\n");
    // No replay and no gap: the first event is live, the count that includes this client.
    let first = stream.next();
    assert_eq!(first.event_type, "clients", "{first:?}");
}

#[test]
fn sse_is_the_same_stream_as_events() {
    // The path Express tutorials use: same head, same events.
    let addr = start(quiet());
    let mut stream = EventStream::open_at(addr, "/sse", "");
    assert!(
        stream
            .head
            .starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"),
        "{}",
        stream.head
    );
    assert_eq!(stream.next_of("clients").data, "1");
    publish(addr, "to /sse");
    assert_eq!(stream.next_of("publish").data, "to /sse");
    let post = raw_text(
        addr,
        &format!("POST /sse HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"),
    );
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
}

#[test]
fn an_express_tutorial_client_reads_the_message_of_a_tick() {
    // The tutorial's page: `new EventSource('/sse')`, then `JSON.parse(e.data).message` in
    // `onmessage`. The same steps: the default event type, then the `message` field.
    let addr = start(config());
    let mut stream = EventStream::open_at(addr, "/sse", "");
    let tick = stream.next_of("message");
    let message = tick
        .data
        .split_once(r#""message":""#)
        .and_then(|(_, rest)| rest.strip_suffix(r#""}"#))
        .unwrap_or_else(|| panic!("no message in {}", tick.data));
    let shape: String = message
        .chars()
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect();
    assert_eq!(shape, "Server Time: 00:00:00 UTC");
}

// ---- The client list ----

#[test]
fn clients_count_rises_and_falls_when_a_client_vanishes() {
    let addr = start(config());
    let mut first = EventStream::open(addr, "");
    first.wait_for_count(1);
    let second = EventStream::open(addr, "");
    first.wait_for_count(2);
    // Abruptly: no goodbye, the socket just closes. The server notices when a write fails.
    drop(second);
    first.wait_for_count(1);
}

#[test]
fn over_max_clients_is_503_with_retry_after() {
    let addr = start(Config {
        max_clients: 2,
        ..config()
    });
    let _one = EventStream::open(addr, "");
    let _two = EventStream::open(addr, "");
    let response = raw_text(
        addr,
        &format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{response}"
    );
    assert!(response.contains("\r\nRetry-After: 10\r\n"), "{response}");
}

#[test]
fn joins_close_together_are_announced_together() {
    // Announcing every join on its own would cost N x N writes when N clients arrive at once.
    let addr = start(quiet());
    let mut witness = EventStream::open(addr, "");
    witness.wait_for_count(1);
    let started = Instant::now();
    let others: Vec<EventStream> = (0..20).map(|_| EventStream::open(addr, "")).collect();
    let joined_within = started.elapsed();
    let mut counts = Vec::new();
    while counts.last().map(String::as_str) != Some("21") {
        counts.push(witness.next_of("clients").data);
    }
    // The count is checked every 100 ms: 20 joins within that time are one announcement, or two
    // when a check falls between them; on a slow machine, one more per 100 ms the joins took.
    // One per join would be 20.
    let checks = 2 + (joined_within.as_millis() / 100) as usize;
    assert!(
        counts.len() <= checks.min(19),
        "{counts:?} after 20 joins in {joined_within:?}"
    );
    drop(others);
}

// ---- HTTP as RFC 9110 and RFC 9112 say ----

#[test]
fn head_of_a_full_stream_is_503_like_its_get() {
    let addr = start(Config {
        max_clients: 1,
        ..quiet()
    });
    let _only = EventStream::open(addr, "");
    let head = raw_text(
        addr,
        &format!("HEAD /events HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
}

#[test]
fn head_is_get_without_the_body_on_every_route() {
    let addr = start(quiet());
    for path in ["/", "/events", "/sse", "/lab/seen?run=x"] {
        // read_to_close: the answer to HEAD ends, even for a stream.
        let head = raw_text(
            addr,
            &format!("HEAD {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        );
        let get_head = if path == "/events" || path == "/sse" {
            EventStream::open_at(addr, path, "").head
        } else {
            let get = raw_text(
                addr,
                &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
            );
            get.split_inclusive("\r\n\r\n")
                .next()
                .unwrap_or_default()
                .to_string()
        };
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {head}");
        assert_eq!(head, get_head, "{path}: the same head, and no body");
    }
}

#[test]
fn a_stream_says_connection_close_and_every_answer_has_a_date() {
    // EventStream::open and raw_text check Date against the clock (common::undate).
    let addr = start(quiet());
    let stream = EventStream::open(addr, "");
    assert!(
        stream
            .head
            .ends_with("\r\nDate: <date>\r\nConnection: close\r\n\r\n")
    );
    for request in ["GET / HTTP/1.1", "GET /nowhere HTTP/1.1", "GARBAGE"] {
        let response = raw_text(addr, &format!("{request}\r\nHost: {addr}\r\n\r\n"));
        assert!(response.contains("\r\nDate: <date>\r\n"), "{response}");
    }
}

#[test]
fn empty_lines_before_the_request_line_are_ignored() {
    let addr = start(quiet());
    for before in ["\r\n", "\n", "\r\n\r\n"] {
        let response = raw_text(
            addr,
            &format!("{before}GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        );
        assert!(
            response.starts_with("HTTP/1.1 200 OK\r\n"),
            "{before:?}: {response}"
        );
    }
}

#[test]
fn an_absolute_form_target_is_served_and_its_host_is_checked() {
    let addr = start(quiet());
    let port = addr.port();
    let response = raw_text(
        addr,
        &format!("GET http://localhost:{port}/ HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"),
    );
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    // The authority in the target is the host, whatever Host says (RFC 9112 §3.2.2).
    let response = raw_text(
        addr,
        &format!("GET http://attacker.example:{port}/ HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    );
    assert!(
        response.starts_with("HTTP/1.1 421 Misdirected Request\r\n"),
        "{response}"
    );
}

#[test]
fn two_host_headers_are_400() {
    let addr = start(quiet());
    let response = raw_text(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: {addr}\r\nHost: attacker.example\r\n\r\n"),
    );
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n")
            && response.ends_with("400 Bad Request: more than one Host header\n"),
        "{response}"
    );
}

#[test]
fn a_rebound_host_name_is_refused_on_every_route_unless_allowed() {
    // DNS rebinding: attacker.example now resolves to 127.0.0.1, and its page's requests arrive
    // here same-origin, Origin and all.
    let port = |addr: std::net::SocketAddr| addr.port();
    let addr = start(quiet());
    let requests = |addr| {
        let p = port(addr);
        let host = format!("Host: attacker.example:{p}\r\nOrigin: http://attacker.example:{p}");
        [
            format!("GET / HTTP/1.1\r\n{host}\r\n\r\n"),
            format!("GET /events HTTP/1.1\r\n{host}\r\n\r\n"),
            format!("POST /publish HTTP/1.1\r\n{host}\r\nContent-Length: 2\r\n\r\nhi"),
        ]
    };
    for request in requests(addr) {
        let response = raw_text(addr, &request);
        assert!(
            response.starts_with("HTTP/1.1 421 Misdirected Request\r\n")
                && response.ends_with("421 Misdirected Request: this server answers to localhost, IP addresses and the names in ALLOWED_HOSTS\n"),
            "{request:?}: {response}"
        );
    }
    // The name a proxy puts in front, once allowed, is answered.
    let addr = start(Config {
        allowed_hosts: vec![String::from("attacker.example")],
        ..quiet()
    });
    let [page, _, publish] = requests(addr);
    assert_eq!(status(&raw_text(addr, &page)), 200);
    assert_eq!(status(&raw_text(addr, &publish)), 204);
}

#[test]
fn an_origin_with_its_default_port_left_out_is_the_same_origin() {
    let addr = start(quiet());
    let response = raw_text(
        addr,
        "POST /publish HTTP/1.1\r\nHost: localhost:80\r\nOrigin: http://localhost\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert!(
        response.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{response}"
    );
    let response = raw_text(
        addr,
        "POST /publish HTTP/1.1\r\nHost: localhost:81\r\nOrigin: http://localhost\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert!(
        response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{response}"
    );
}

#[test]
fn an_unknown_expectation_is_417() {
    let addr = start(quiet());
    let response = raw_text(
        addr,
        &format!(
            "POST /publish HTTP/1.1\r\nHost: {addr}\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\nhi"
        ),
    );
    assert!(
        response.starts_with("HTTP/1.1 417 Expectation Failed\r\n"),
        "{response}"
    );
}

#[test]
fn an_http_1_0_client_gets_no_100_continue() {
    let addr = start(quiet());
    let mut stream = common::connect(addr);
    stream
        .write_all(b"POST /publish HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    let response = common::undate(&String::from_utf8_lossy(&common::read_to_close(
        &mut stream,
    )));
    assert_eq!(
        response,
        "HTTP/1.1 204 No Content\r\nDate: <date>\r\nConnection: close\r\n\r\n"
    );
    // HTTP/1.1 does get it, before its answer.
    let mut stream = common::connect(addr);
    let head = format!(
        "POST /publish HTTP/1.1\r\nHost: {addr}\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut continue_line = [0; 25];
    stream.read_exact(&mut continue_line).unwrap();
    assert_eq!(&continue_line, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hi").unwrap();
    assert_eq!(
        status(&String::from_utf8_lossy(&common::read_to_close(
            &mut stream
        ))),
        204
    );
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_408() {
    let addr = start(quiet()); // head_timeout 500 ms covers the body too
    let mut stream = common::connect(addr);
    let head = format!("POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10\r\n\r\nhi");
    stream.write_all(head.as_bytes()).unwrap();
    let response = String::from_utf8_lossy(&common::read_to_close(&mut stream)).into_owned();
    assert!(
        response.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{response}"
    );
    // A body cut short by a close is not a timeout.
    let mut stream = common::connect(addr);
    stream.write_all(head.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let response = String::from_utf8_lossy(&common::read_to_close(&mut stream)).into_owned();
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
}

#[test]
fn connections_over_max_in_flight_get_503_before_a_thread_starts() {
    let addr = start(Config {
        max_in_flight: 2,
        ..quiet()
    });
    // Two connections that send nothing hold their threads until the head timeout.
    let idle: Vec<_> = (0..2).map(|_| common::connect(addr)).collect();
    let response = raw_text(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
            && response.contains("\r\nRetry-After: 1\r\n"),
        "{response}"
    );
    // They leave; their threads end, and requests are served again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = raw_text(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
        if status(&response) == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {response}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // An open stream holds no thread: two of them leave room for requests.
    let _streams = [EventStream::open(addr, ""), EventStream::open(addr, "")];
    let response = raw_text(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert_eq!(status(&response), 200);
}
