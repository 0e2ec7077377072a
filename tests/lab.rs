//! The lab's switches over real sockets: exact statuses, heads and bytes.

mod common;
use common::{EventStream, agent, id_of, name_ids, publish, quiet, raw_text, start};

/// The head of every stream, with this `Content-Type`.
fn stream_head(content_type: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nCache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\nDate: <date>\r\nConnection: close\r\n\r\n"
    )
}

/// A whole `GET` of `target` over a raw socket.
fn get(addr: std::net::SocketAddr, target: &str) -> String {
    raw_text(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
}

// ---- status=N ----

#[test]
fn status_204_is_a_bare_204() {
    let addr = start(quiet());
    assert_eq!(
        get(addr, "/events?status=204"),
        "HTTP/1.1 204 No Content\r\nDate: <date>\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn status_503_says_what_a_browser_does_and_offers_retry_after() {
    let addr = start(quiet());
    let body = "503 (lab): a browser fails the connection: readyState CLOSED, no retry, whatever Retry-After says\n";
    assert_eq!(
        get(addr, "/events?status=503"),
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nContent-Length: {}\r\nDate: <date>\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    );
}

#[test]
fn status_takes_any_client_or_server_error() {
    let addr = start(quiet());
    for (status, line) in [
        (404, "HTTP/1.1 404 Not Found\r\n"),
        (400, "HTTP/1.1 400 Bad Request\r\n"),
        (418, "HTTP/1.1 418 \r\n"),
        (599, "HTTP/1.1 599 \r\n"),
    ] {
        let response = get(addr, &format!("/events?status={status}"));
        assert!(response.starts_with(line), "{status}: {response}");
        assert!(
            response.ends_with(&format!("\r\n\r\n{status} (lab): a browser fails the connection: readyState CLOSED, no retry, whatever Retry-After says\n")),
            "{status}: {response}"
        );
        assert!(
            !response.contains("\r\nRetry-After:"),
            "{status}: {response}"
        );
    }
}

#[test]
fn statuses_that_need_a_header_get_it() {
    // RFC 9110 §15.5.2, §15.5.6, §15.5.8, §15.5.22: these four are incomplete without it.
    let addr = start(quiet());
    for (status, header) in [
        (401, "WWW-Authenticate: Bearer realm=\"lab\""),
        (405, "Allow: POST"),
        (407, "Proxy-Authenticate: Bearer realm=\"lab\""),
        (426, "Upgrade: websocket"),
        (429, "Retry-After: 1"),
    ] {
        let response = get(addr, &format!("/events?status={status}"));
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{response}"
        );
        assert!(
            response.contains(&format!("\r\n{header}\r\n")),
            "{status}: {response}"
        );
    }
}

// ---- redirect=N ----

#[test]
fn redirect_answers_the_same_url_without_the_switch() {
    let addr = start(quiet());
    let body = "307 (lab): a browser follows it, and reconnects to where it led, not to the URL it was given\n";
    assert_eq!(
        get(addr, "/sse?end_after=2&redirect=307&run=r1"),
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nContent-Type: text/plain; charset=utf-8\r\nLocation: /sse?end_after=2&run=r1\r\nContent-Length: {}\r\nDate: <date>\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    );
    let only = get(addr, "/events?redirect=301");
    assert!(
        only.starts_with("HTTP/1.1 301 Moved Permanently\r\n"),
        "{only}"
    );
    assert!(only.contains("\r\nLocation: /events\r\n"), "{only}");
}

#[test]
fn after_a_redirect_the_client_reconnects_to_where_it_led() {
    use sse_server::client::{EventSource, Report, Url};
    use std::ops::ControlFlow;
    let addr = start(quiet());
    let url = format!("http://{addr}/events?redirect=302&end_after=1&retry=0&run=r2");
    let mut source = EventSource::new(Url::parse(&url).expect("a URL"));
    let mut opened = 0;
    source.run(|report| {
        if report == Report::Open {
            opened += 1;
            if opened == 1 {
                publish(addr, "ends the first stream");
            }
        }
        match opened {
            2 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    });
    // The redirect, its target, and the reconnect, straight to the target: three requests. Had
    // the reconnect gone to the URL first given, it would be four.
    assert_eq!(
        get(addr, "/lab/seen?run=r2").rsplit("\r\n\r\n").next(),
        Some("3\n")
    );
}

// ---- Bad values ----

#[test]
fn a_bad_value_is_400_naming_the_switch_and_its_range() {
    let addr = start(quiet());
    for (query, why) in [
        (
            "status=200",
            "status: expected 204, or a whole number from 400 to 599",
        ),
        (
            "status=abc",
            "status: expected 204, or a whole number from 400 to 599",
        ),
        (
            "end_after=0",
            "end_after: expected a whole number from 1 to 1000",
        ),
        (
            "end_after=1001",
            "end_after: expected a whole number from 1 to 1000",
        ),
        (
            "retry=-1",
            "retry: expected a whole number of milliseconds from 0 to 600000",
        ),
        (
            "retry=600001",
            "retry: expected a whole number of milliseconds from 0 to 600000",
        ),
        (
            "type=",
            "type: expected a media type of 1 to 100 printable ASCII characters, such as text/plain",
        ),
        ("run=a%20b", "run: expected 1 to 32 letters, digits, - or _"),
        ("type=%zz", "bad percent-encoding in the query string"),
        ("retry=1&retry=2", "a lab switch is given twice"),
        (
            "redirect=300",
            "redirect: expected 301, 302, 303, 307 or 308",
        ),
        (
            "redirect=304",
            "redirect: expected 301, 302, 303, 307 or 308",
        ),
    ] {
        let response = get(addr, &format!("/events?{query}"));
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{query}: {response}"
        );
        assert!(
            response.ends_with(&format!("\r\n\r\n400 Bad Request: {why}\n")),
            "{query}: {response}"
        );
    }
}

#[test]
fn a_type_with_crlf_is_400_and_splits_no_header() {
    let addr = start(quiet());
    for query in [
        "type=text/plain%0d%0aSet-Cookie:%20evil=1",
        "type=text/plain%0aSet-Cookie:%20evil=1",
        "type=text/plain%0dSet-Cookie:%20evil=1",
        "type=caf%C3%A9",
        "type=a%00b",
    ] {
        let response = get(addr, &format!("/events?{query}"));
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{query}: {response}"
        );
        assert!(!response.contains("Set-Cookie"), "{query}: {response}");
        assert!(!response.contains("evil"), "{query}: {response}");
    }
}

// ---- type=MEDIA_TYPE ----

#[test]
fn a_wrong_type_gets_that_header_one_event_and_the_end() {
    let addr = start(quiet());
    let mut stream = EventStream::open_at(addr, "/events?type=text/plain", "");
    assert_eq!(stream.head, stream_head("text/plain"));
    stream.next_of("clients");
    publish(addr, "one");
    stream.read_to_end();
    assert_eq!(
        name_ids(&stream.body_text()),
        "retry: 3000\n\nevent: lab\ndata: no Last-Event-ID\n\nevent: clients\ndata: 1\n\n\
         id: #1\nevent: publish\ndata: one\n\n"
    );
}

#[test]
fn an_event_stream_type_with_a_charset_is_sent_as_given() {
    let addr = start(quiet());
    let mut stream = EventStream::open_at(
        addr,
        "/events?type=text%2Fevent-stream%3Bcharset%3Dutf-8&end_after=2",
        "",
    );
    assert_eq!(stream.head, stream_head("text/event-stream;charset=utf-8"));
    assert_eq!(stream.next_of("clients").data, "1");
    publish(addr, "first");
    publish(addr, "second");
    let rest = stream.read_to_end();
    let data: Vec<&str> = rest.iter().map(|event| event.data.as_str()).collect();
    assert_eq!(data, ["first", "second"]);
}

// ---- end_after=N ----

/// Publishes `texts` while a witness stream listens; returns their ids, and the witness, which
/// stays open so the client count stays the same.
fn publish_all(addr: std::net::SocketAddr, texts: &[&str]) -> (Vec<String>, EventStream) {
    let mut witness = EventStream::open(addr, "");
    witness.next_of("clients");
    let ids = texts
        .iter()
        .map(|text| {
            publish(addr, text);
            witness.next_of("publish").last_event_id
        })
        .collect();
    (ids, witness)
}

#[test]
fn end_after_ends_the_stream_after_exactly_n_events() {
    let addr = start(quiet());
    let mut stream = EventStream::open_at(addr, "/events?end_after=3", "");
    assert_eq!(stream.head, stream_head("text/event-stream"));
    // The count is not an event of the log and does not count; three publishes do.
    assert_eq!(stream.next_of("clients").data, "1");
    for text in ["a", "b", "c"] {
        publish(addr, text);
    }
    stream.read_to_end();
    assert_eq!(
        name_ids(&stream.body_text()),
        "retry: 3000\n\nevent: lab\ndata: no Last-Event-ID\n\n\
         event: clients\ndata: 1\n\n\
         id: #1\nevent: publish\ndata: a\n\n\
         id: #2\nevent: publish\ndata: b\n\n\
         id: #3\nevent: publish\ndata: c\n\n"
    );
    // The server ended it after the third (read_to_end saw the close): nothing came after.
}

#[test]
fn end_after_counts_replayed_events_then_live_ones() {
    let addr = start(quiet());
    let (ids, _witness) = publish_all(addr, &["a", "b", "c"]);
    // A browser that saw "a" comes back: "b" and "c" are replayed, and count.
    let mut stream = EventStream::open_at(
        addr,
        "/events?end_after=3",
        &format!("Last-Event-ID: {}\r\n", ids[0]),
    );
    assert_eq!(stream.next_of("publish").data, "b");
    publish(addr, "d");
    stream.read_to_end();
    assert_eq!(
        name_ids(&stream.body_text()),
        "retry: 3000\n\nevent: lab\ndata: Last-Event-ID: #1\n\n\
         event: clients\ndata: 2\n\n\
         id: #2\nevent: publish\ndata: b\n\n\
         id: #3\nevent: publish\ndata: c\n\n\
         id: #4\nevent: publish\ndata: d\n\n"
    );
}

#[test]
fn end_after_within_the_replay_ends_before_going_live() {
    let addr = start(quiet());
    let (ids, _witness) = publish_all(addr, &["a", "b", "c", "d"]);
    let mut stream = EventStream::open_at(
        addr,
        "/events?end_after=2",
        &format!("Last-Event-ID: {}\r\n", ids[0]),
    );
    stream.read_to_end();
    assert_eq!(
        name_ids(&stream.body_text()),
        "retry: 3000\n\nevent: lab\ndata: Last-Event-ID: #1\n\n\
         event: clients\ndata: 2\n\n\
         id: #2\nevent: publish\ndata: b\n\n\
         id: #3\nevent: publish\ndata: c\n\n"
    );
}

#[test]
fn reconnecting_after_the_end_loses_and_repeats_nothing() {
    // What a browser does with `end_after`: read, get cut off, come back with the last id it saw.
    let addr = start(common::config());
    // A witness that stays connected sees every tick.
    let mut witness = EventStream::open(addr, "");
    let mut seen = Vec::new();
    let mut last_event_id: Option<String> = None;
    for round in 0..4 {
        let header = match &last_event_id {
            Some(id) => format!("Last-Event-ID: {id}\r\n"),
            None => String::new(),
        };
        let mut stream = EventStream::open_at(addr, "/events?end_after=3", &header);
        let echo = stream.next();
        assert_eq!(echo.event_type, "lab");
        let expected_echo = match &last_event_id {
            Some(id) => format!("Last-Event-ID: {id}"),
            None => String::from("no Last-Event-ID"),
        };
        assert_eq!(echo.data, expected_echo, "round {round}");
        let ticks: Vec<common::Event> = stream
            .read_to_end()
            .into_iter()
            .filter(|event| event.event_type == "message")
            .collect();
        assert_eq!(ticks.len(), 3, "round {round}: {ticks:?}");
        seen.extend(ticks.iter().map(id_of));
        last_event_id = ticks.last().map(|tick| tick.last_event_id.clone());
        // Ticks every 50 ms: by the next connection some have been missed, and must be replayed.
        std::thread::sleep(std::time::Duration::from_millis(120));
    }
    let mut all = Vec::new();
    while all.last() != seen.last() {
        all.push(id_of(&witness.next_of("message")));
    }
    let first = all
        .iter()
        .position(|id| *id == seen[0])
        .expect("the first tick seen");
    assert_eq!(seen, all[first..], "no gap, no repeat");
}

// ---- retry=MS ----

#[test]
fn retry_switch_sets_the_first_frame() {
    let addr = start(quiet());
    let mut stream = EventStream::open_at(addr, "/events?retry=500&t=cache-buster", "");
    stream.next_of("clients");
    assert_eq!(
        stream.body_text(),
        "retry: 500\n\nevent: lab\ndata: no Last-Event-ID\n\nevent: clients\ndata: 1\n\n"
    );
    assert_eq!(stream.parser.retry, Some(500));
}

#[test]
fn unknown_parameters_leave_an_ordinary_stream() {
    let addr = start(quiet());
    let mut stream = EventStream::open_at(addr, "/events?t=123&x", "");
    assert_eq!(stream.head, stream_head("text/event-stream"));
    stream.next_of("clients");
    assert_eq!(
        stream.body_text(),
        "retry: 3000\n\nevent: clients\ndata: 1\n\n"
    );
}

// ---- run=LABEL and /lab/seen ----

#[test]
fn lab_seen_counts_requests_by_run_label() {
    let addr = start(quiet());
    let seen = |run: &str| {
        let mut response = agent()
            .get(format!("http://{addr}/lab/seen?run={run}"))
            .call()
            .unwrap();
        assert_eq!(response.status(), 200);
        response.body_mut().read_to_string().unwrap()
    };
    assert_eq!(seen("x1"), "0\n");
    get(addr, "/events?status=204&run=x1");
    get(addr, "/events?status=503&run=x1");
    get(addr, "/events?status=204&run=y");
    assert_eq!(seen("x1"), "2\n");
    assert_eq!(seen("y"), "1\n");
    // A HEAD (curl -I) is not what an EventSource sends, and does not count.
    raw_text(
        addr,
        &format!("HEAD /events?run=x1&status=204 HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
    assert_eq!(seen("x1"), "2\n");
    // A stream counts too; a request with a bad value does not.
    let _stream = EventStream::open_at(addr, "/events?run=x1", "");
    get(addr, "/events?run=x1&retry=no");
    assert_eq!(seen("x1"), "3\n");

    assert!(get(addr, "/lab/seen").starts_with("HTTP/1.1 400 Bad Request\r\n"));
    let post = raw_text(
        addr,
        &format!("POST /lab/seen?run=x1 HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"),
    );
    assert!(
        post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{post}"
    );
    assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
}
