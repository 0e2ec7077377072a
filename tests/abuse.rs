//! Hostile and broken clients: each test here fails without the defence it names.

mod common;
use common::{
    EventStream, Parser, READ_TIMEOUT, config, connect, publish, quiet, read_to_close, start,
};
use sse_server::Config;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[test]
fn a_client_that_stops_reading_delays_no_one_and_is_dropped() {
    // A long write timeout: a server that waited on the stalled client would stall everyone for it.
    let addr = start(Config {
        write_timeout: Duration::from_secs(10),
        ..quiet()
    });
    let mut reader = EventStream::open(addr, "");
    let mut stalled = EventStream::open(addr, "");
    reader.wait_for_count(2);

    // Publish 60 KiB events until the stalled client, its socket buffers full, falls more than the
    // log's 8 MiB behind and the server drops it: the reader sees the count fall to 1. Bounded:
    // 400 events are 24 MB, more than the log and the loopback buffers hold together.
    let big = "x".repeat(60 * 1024);
    let mut sent = Vec::new();
    let mut dropped = false;
    for i in 0..400 {
        let text = format!("{i} {big}");
        let started = Instant::now();
        assert!(
            publish(addr, &text).starts_with("HTTP/1.1 204 "),
            "publish {i}"
        );
        // The reader gets every event, on time, however full the stalled client is.
        loop {
            let event = reader.next();
            if event.event_type == "clients" && event.data == "1" {
                dropped = true;
            }
            if event.event_type == "publish" {
                assert!(event.data == text, "event {i} arrived damaged");
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "event {i} took {:?}",
            started.elapsed()
        );
        sent.push(text);
        if dropped {
            break;
        }
    }
    assert!(dropped, "the stalled client was never dropped");

    // Everything the stalled client got is whole: the frame the server could not finish is
    // followed by the end of the connection, so the client discards it (§9.2.6) and no other
    // frame is ever glued to it.
    let rest = read_to_close(&mut stalled.tcp);
    let mut parser = Parser::default();
    let received: Vec<String> = parser
        .feed(&stalled.body)
        .into_iter()
        .chain(parser.feed(&rest))
        .filter(|e| e.event_type == "publish")
        .map(|e| e.data)
        .collect();
    assert!(received.len() < sent.len(), "it cannot have got everything");
    assert_eq!(
        received,
        sent[..received.len()],
        "a damaged or missing event"
    );
}

#[test]
fn clients_that_vanish_are_reaped_by_the_heartbeat() {
    // No ticks: only the heartbeat makes the server write, and only a write finds a dead client.
    let addr = start(Config {
        heartbeat: Duration::from_millis(100),
        ..quiet()
    });
    let mut watcher = EventStream::open(addr, "");
    watcher.wait_for_count(1);
    let ghosts: Vec<EventStream> = (0..50).map(|_| EventStream::open(addr, "")).collect();
    watcher.wait_for_count(51);
    // They go without a word, and never read again. The list must not keep them.
    drop(ghosts);
    watcher.wait_for_count(1);
}

#[test]
fn slow_request_heads_block_no_one_and_are_closed() {
    let head_timeout = Duration::from_secs(2);
    let addr = start(Config {
        head_timeout,
        ..config()
    });
    let opened = Instant::now();
    // 200 connections send the start of a request, then nothing (slowloris).
    let mut stalled: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = connect(addr);
            stream
                .write_all(b"GET / HTTP/1.1\r\nHo")
                .expect("send a few bytes");
            stream
        })
        .collect();

    // Meanwhile a normal client gets the page, publishes, and reads the stream.
    let page = common::raw_text(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    let mut stream = EventStream::open(addr, "");
    assert!(publish(addr, "still here").starts_with("HTTP/1.1 204 "));
    assert_eq!(stream.next_of("publish").data, "still here");
    assert!(
        opened.elapsed() < head_timeout,
        "served only after the stalled heads timed out"
    );

    // Each stalled connection is closed once its head is overdue, without a response.
    for connection in &mut stalled {
        let mut buf = [0; 16];
        match connection.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected a close, got {other:?}"),
        }
    }
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= head_timeout,
        "closed too early: {closed_after:?}"
    );
    assert!(
        closed_after < head_timeout + READ_TIMEOUT,
        "closed too late: {closed_after:?}"
    );
}

/// A small deterministic generator (xorshift64*), so a failing case can be found again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// One hostile request head, of a kind picked at random. None of them is a valid request.
fn hostile_request(rng: &mut Rng) -> Vec<u8> {
    let valid = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n".to_vec();
    let mut request = match rng.below(11) {
        // Random bytes, then a blank line.
        0 => {
            let len = rng.below(300);
            [rng.bytes(len), b"\r\n\r\n".to_vec()].concat()
        }
        // Content-Length: huge, negative, or not a number.
        1 => format!(
            "POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}{}\r\n\r\n",
            "9".repeat(20 + rng.below(50)),
            rng.below(10)
        )
        .into_bytes(),
        2 => format!(
            "POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: -{}\r\n\r\n",
            rng.below(1000)
        )
        .into_bytes(),
        3 => format!(
            "POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1{}\r\n\r\n",
            ["e3", " 5", "0x1", "", ",2"][rng.below(5)]
        )
        .into_bytes(),
        // A header line without a colon.
        4 => format!(
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-{}\r\n\r\n",
            rng.next()
        )
        .into_bytes(),
        // A NUL, or a byte that is not UTF-8, somewhere in the head.
        5 | 6 => {
            let mut request = valid.clone();
            let at = rng.below(valid.len() - 4);
            request[at] = if rng.below(2) == 0 {
                0
            } else {
                0x80 + rng.below(0x80) as u8
            };
            request
        }
        // An absurdly long path, and a head with a great many headers: both over 8 KiB.
        7 => format!(
            "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "a/".repeat(4100 + rng.below(10_000))
        )
        .into_bytes(),
        8 => format!(
            "GET / HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
            "X-Many: yes\r\n".repeat(700 + rng.below(2000))
        )
        .into_bytes(),
        // A broken request line.
        9 => {
            let line = [
                "GET /",
                "GET / HTTP/9.1",
                "GET\t/ HTTP/1.1",
                " GET / HTTP/1.1",
                "GET index.html HTTP/1.1",
            ][rng.below(5)];
            format!("{line}\r\nHost: localhost\r\n\r\n").into_bytes()
        }
        // A request with a control character in a header value, or folded.
        _ => [
            "GET / HTTP/1.1\r\nHost: a\x07b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: localhost\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
        ][rng.below(3)]
        .as_bytes()
        .to_vec(),
    };
    // Sometimes cut it short: the client then stops sending in the middle of the head.
    if rng.below(8) == 0 {
        request.truncate(rng.below(request.len().max(1)));
    }
    request
}

/// Counts panics in any thread of this test process, server threads included.
static PANICS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn thousands_of_hostile_heads_get_4xx_or_a_close_and_never_a_panic() {
    let default_hook = std::panic::take_hook();
    // The hook is the process's, and other tests run beside this one: count only panics in the
    // server's own threads, which it names for what they do.
    std::panic::set_hook(Box::new(move |info| {
        let name = std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string();
        if name == "connection" || name == "ticker" || name.starts_with("writer ") {
            PANICS.fetch_add(1, Ordering::SeqCst);
        }
        default_hook(info);
    }));
    let addr = start(config());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = Rng(0x5eed_0000 + t);
                for case in 0..750 {
                    let request = hostile_request(&mut rng);
                    let response = send_and_close(addr, &request);
                    assert!(
                        response.is_empty() || response.starts_with(b"HTTP/1.1 4"),
                        "thread {t} case {case}: {:?} got {:?}",
                        String::from_utf8_lossy(&request),
                        String::from_utf8_lossy(&response)
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client thread failed");
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the server panicked");

    // And it still serves: the page, and a stream that ticks.
    let page = common::raw_text(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    EventStream::open(addr, "").next_of("message");
}

/// Sends bytes, says it is done sending, and returns whatever comes back before the close.
fn send_and_close(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    // The server may answer and close before it has read everything; that is allowed.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(Shutdown::Write);
    let mut response = Vec::new();
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = [0; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return response,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return response,
            Err(e) => panic!("{e} for {:?}", String::from_utf8_lossy(request)),
        }
    }
    panic!(
        "no close within {READ_TIMEOUT:?} for {:?}",
        String::from_utf8_lossy(request)
    );
}
