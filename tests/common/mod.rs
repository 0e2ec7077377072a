//! Shared by the integration tests: start a real server on port 0, talk to it over real sockets,
//! and decode its stream the way a browser does, with `sse_server::client::Parser`.
#![allow(dead_code)] // each test file uses its own part of this

pub mod process;
pub mod redis;

use sse_server::Config;
pub use sse_server::client::{Event, Parser};
use sse_server::dates::http_date;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// Every blocking read in the tests gives up after this.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A config for tests: fast ticks, a heartbeat that stays out of the way, a short head timeout.
pub fn config() -> Config {
    Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        tick: Duration::from_millis(50),
        heartbeat: Duration::from_secs(60),
        head_timeout: Duration::from_millis(500),
        // More than one writer even on a one-core machine, so every test runs the shares.
        writers: 2,
        ..Config::default()
    }
}

/// A config with no ticks: the only events are the ones a test causes.
pub fn quiet() -> Config {
    Config {
        tick: Duration::from_secs(3600),
        ..config()
    }
}

/// Starts a server on an ephemeral loopback port and returns its address.
pub fn start(config: Config) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    thread::spawn(move || sse_server::serve(listener, config));
    addr
}

/// Connects with the test read timeout set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    stream
}

/// Sends raw bytes, then reads the whole response (the server closes after it).
pub fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(request).expect("send request");
    read_to_close(&mut stream)
}

/// Like [`raw`], for a request head that is text; returns the response as text, its `Date`
/// checked and replaced by `<date>` (see [`undate`]).
pub fn raw_text(addr: SocketAddr, request: &str) -> String {
    undate(&String::from_utf8_lossy(&raw(addr, request.as_bytes())))
}

/// Checks that a response head has one `Date` header with the time now, as HTTP writes it (RFC
/// 9110 §5.6.7), and replaces its value with `<date>`, so a test can compare the rest exactly.
/// A response without one is returned as it is, for the exact comparison to catch.
pub fn undate(response: &str) -> String {
    let Some(start) = response.find("\r\nDate: ") else {
        return response.to_string();
    };
    let value_at = start + "\r\nDate: ".len();
    let end = value_at
        + response[value_at..]
            .find("\r\n")
            .expect("a whole Date line");
    let value = &response[value_at..end];
    // Written at most a read timeout ago (a busy machine can take that long to answer).
    let now = SystemTime::now();
    let slack = READ_TIMEOUT.as_secs() + 1;
    assert!(
        (0..=slack).any(|back| value == http_date(now - Duration::from_secs(back))),
        "Date: {value:?} is not the time now in IMF-fixdate form"
    );
    format!("{}<date>{}", &response[..value_at], &response[end..])
}

/// Reads until the server closes, failing the test after [`READ_TIMEOUT`] in all.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut out = Vec::new();
    let mut buf = [0; 8192];
    loop {
        assert!(
            Instant::now() < deadline,
            "server did not close the connection"
        );
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset after the response was read is still a close.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
}

/// The status code of a raw response.
pub fn status(response: &str) -> u16 {
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// An open `/events` stream, decoded by the project's own client parser, as a browser would.
pub struct EventStream {
    pub tcp: TcpStream,
    /// The response head, up to and including the blank line.
    pub head: String,
    /// Every body byte received so far, for assertions on the exact wire format.
    pub body: Vec<u8>,
    pub parser: Parser,
    queued: std::collections::VecDeque<Event>,
}

impl EventStream {
    /// Opens a stream; `extra_headers` are whole header lines, each ending in CRLF.
    pub fn open(addr: SocketAddr, extra_headers: &str) -> EventStream {
        EventStream::open_at(addr, "/events", extra_headers)
    }

    /// Opens a stream at `target`, such as `/events?end_after=3` (the lab's switches).
    pub fn open_at(addr: SocketAddr, target: &str, extra_headers: &str) -> EventStream {
        let mut tcp = connect(addr);
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{extra_headers}\r\n"
        );
        tcp.write_all(request.as_bytes()).expect("send request");
        let mut stream = EventStream {
            tcp,
            head: String::new(),
            body: Vec::new(),
            parser: Parser::default(),
            queued: Default::default(),
        };
        let mut raw = Vec::new();
        while !raw.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            match stream.tcp.read(&mut byte) {
                Ok(1) => raw.push(byte[0]),
                other => panic!(
                    "stream head ended early ({other:?}) after {:?}",
                    String::from_utf8_lossy(&raw)
                ),
            }
        }
        stream.head = undate(&String::from_utf8(raw).expect("head is UTF-8"));
        stream
    }

    /// Reads more of the body; false once the server closed the stream.
    pub fn read_more(&mut self) -> bool {
        let mut buf = [0; 65536];
        match self.tcp.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.body.extend_from_slice(&buf[..n]);
                let events = self.parser.feed(&buf[..n]);
                self.queued.extend(events);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("reading the stream: {e}"),
        }
    }

    /// Reads until the server closes the stream, failing the test after [`READ_TIMEOUT`]; returns
    /// the events still unread.
    pub fn read_to_end(&mut self) -> Vec<Event> {
        let deadline = Instant::now() + READ_TIMEOUT;
        while self.read_more() {
            assert!(Instant::now() < deadline, "the stream did not end");
        }
        self.queued.drain(..).collect()
    }

    /// The body so far as text.
    pub fn body_text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("the stream is UTF-8")
    }

    /// The next event, failing the test after [`READ_TIMEOUT`].
    pub fn next(&mut self) -> Event {
        let deadline = Instant::now() + READ_TIMEOUT;
        loop {
            if let Some(event) = self.queued.pop_front() {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "no event within {READ_TIMEOUT:?}"
            );
            assert!(self.read_more(), "the server closed the stream");
        }
    }

    /// The next event of this type, skipping others (ticks, client counts).
    pub fn next_of(&mut self, event_type: &str) -> Event {
        for _ in 0..10_000 {
            let event = self.next();
            if event.event_type == event_type {
                return event;
            }
        }
        panic!("no {event_type} event in 10,000 events");
    }

    /// Waits for `event: clients` to announce exactly `n`.
    pub fn wait_for_count(&mut self, n: usize) {
        for _ in 0..10_000 {
            if self.next_of("clients").data == n.to_string() {
                return;
            }
        }
        panic!("the clients count never reached {n}");
    }
}

/// POSTs text to `/publish` over a raw socket; returns the whole response.
pub fn publish(addr: SocketAddr, body: &str) -> String {
    let head = format!(
        "POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    raw_text(addr, &(head + body))
}

/// A `ureq` agent that times out and hands back 4xx/5xx responses instead of errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(READ_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into()
}

/// The stream's text with each event id (`1795262400000-7`) written as `#1`, `#2`, ... in the
/// order they first appear, so a test can assert on exact bytes although ids hold the clock.
/// Ids are told apart from other numbers by their shape: ten or more digits, a dash, digits.
pub fn name_ids(text: &str) -> String {
    let mut names: Vec<String> = Vec::new();
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let ms = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seq = rest[ms..]
            .strip_prefix('-')
            .map(|after| {
                after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len())
            })
            .unwrap_or(0);
        if ms >= 10 && seq > 0 {
            let id = &rest[..ms + 1 + seq];
            let n = match names.iter().position(|name| name == id) {
                Some(i) => i + 1,
                None => {
                    names.push(id.to_string());
                    names.len()
                }
            };
            out.push_str(&format!("#{n}"));
            rest = &rest[ms + 1 + seq..];
        } else {
            out.push_str(&rest[..ms]);
            rest = &rest[ms..];
        }
    }
    out + rest
}

/// An event's id as the server writes it; fails the test for anything else.
pub fn id_of(event: &Event) -> sse_server::event_log::EventId {
    sse_server::event_log::EventId::parse(&event.last_event_id)
        .unwrap_or_else(|| panic!("not an id of ours: {event:?}"))
}
