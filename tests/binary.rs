//! The `sse-server` binary itself: configuration from the environment, and what it prints.

mod common;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sse-server"))
}

#[test]
fn invalid_variable_exits_2_naming_it() {
    for (name, value) in [
        ("PORT", "http"),
        ("TICK_MS", "0"),
        ("MAX_CLIENTS", "lots"),
        ("RETRY_MS", "600001"),
        ("HEARTBEAT_MS", "soon"),
        ("PUBLIC_DIR", "/no/such/folder"),
        ("HOST", "no such host!"),
    ] {
        let output = server().env(name, value).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.starts_with(&format!("{name}=")), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn prints_where_it_listens_and_narrates_a_client() {
    let (mut child, addr, stderr) = common::process::launch(server());

    let mut stream = common::EventStream::open(addr, "Last-Event-ID: 1-0\r\n");
    stream.next();
    let connected = stderr
        .recv_timeout(Duration::from_secs(5))
        .expect("a log line");
    // How many ticks it replays depends on when it connected; the rest is exact.
    let (peer, rest) = connected.split_once(' ').unwrap();
    assert!(peer.starts_with("127.0.0.1:"), "{connected}");
    assert!(
        rest.starts_with("connected (Last-Event-ID 1-0 -> gap, ")
            && rest.ends_with("); 1 connected"),
        "{connected}"
    );
    drop(stream);
    let dropped = (0..50)
        .filter_map(|_| stderr.recv_timeout(Duration::from_secs(5)).ok())
        .find(|l| l.contains("dropped"));
    let _ = child.kill();
    let _ = child.wait();
    let dropped = dropped.expect("a dropped line");
    assert!(
        dropped.contains(" dropped: write failed: ") && dropped.ends_with("; 0 connected"),
        "{dropped}"
    );
}

#[test]
fn an_id_from_before_a_restart_gets_a_gap_not_a_silent_skip() {
    // The first run: a browser sees a few ticks, then the server stops.
    let (mut first, addr, _stderr) = common::process::launch(server());
    let mut stream = common::EventStream::open(addr, "");
    let seen = (0..3).map(|_| stream.next_of("message")).last().unwrap();
    let _ = first.kill();
    let _ = first.wait();
    assert!(!stream.read_more(), "the stream ended with the server");

    // The server starts again on the same port, and the browser comes back with its last id.
    let mut command = server();
    command.env("PORT", addr.port().to_string());
    let (mut second, again, _stderr) = common::process::launch(command);
    assert_eq!(again, addr);
    let mut stream =
        common::EventStream::open(addr, &format!("Last-Event-ID: {}\r\n", seen.last_event_id));
    let gap = stream.next();
    let tick = stream.next_of("message");
    let _ = second.kill();
    let _ = second.wait();
    // A counter from 1 would have taken the old id for one of this run's and skipped events
    // silently. This id names nothing in the new log: the browser is told, then gets what is kept.
    assert_eq!(gap.event_type, "gap", "{gap:?}");
    let asked = format!(
        r#"{{"last_event_id":"{}","resume_from":"#,
        seen.last_event_id
    );
    assert!(gap.data.starts_with(&asked), "{}", gap.data);
    assert!(common::id_of(&tick) > common::id_of(&seen), "{tick:?}");
}

#[test]
fn retry_and_heartbeat_come_from_the_environment() {
    let mut command = server();
    // Ticks an hour apart: the only thing written after the count is the heartbeat.
    command
        .env("TICK_MS", "3600000")
        .env("RETRY_MS", "1234")
        .env("HEARTBEAT_MS", "50");
    let (mut child, addr, _stderr) = common::process::launch(command);
    let mut stream = common::EventStream::open(addr, "");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stream.body.len() < 13 || stream.parser.comments == 0 {
        assert!(std::time::Instant::now() < deadline, "no heartbeat");
        assert!(stream.read_more());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(&stream.body[..13], b"retry: 1234\n\n");
}

#[test]
fn public_dir_serves_the_page_from_elsewhere() {
    // A binary moved away from its source tree, with its page beside it.
    let dir = std::env::temp_dir().join(format!("sse-public-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<p>moved</p>").unwrap();
    let mut command = server();
    command.env("PUBLIC_DIR", &dir);
    let (mut child, addr, _stderr) = common::process::launch(command);
    let page = common::raw_text(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.ends_with("\r\n\r\n<p>moved</p>"), "{page}");
}

#[test]
fn lab_answers_are_narrated() {
    let (mut child, addr, stderr) = common::process::launch(server());
    let request = format!("GET /events?status=204 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let response = common::raw_text(addr, &request);
    assert!(
        response.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{response}"
    );
    let line = (0..50)
        .filter_map(|_| stderr.recv_timeout(Duration::from_secs(5)).ok())
        .find(|line| line.contains("status=204"));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("a log line for the lab request");
    let (peer, rest) = line.split_once(' ').unwrap();
    assert!(peer.starts_with("127.0.0.1:"), "{line}");
    assert_eq!(
        rest,
        "GET /events?status=204 -> 204 No Content: the browser stops reconnecting (204 is the spec's way to say stop, §9.2.1)"
    );
}

#[test]
fn each_drop_line_gives_the_count_as_it_was_then() {
    // No ticks: the only writes are the publishes below.
    let mut command = server();
    command.env("TICK_MS", "3600000");
    let (mut child, addr, stderr) = common::process::launch(command);
    let mut streams: Vec<_> = (0..2)
        .map(|_| common::EventStream::open(addr, ""))
        .collect();
    streams[1].wait_for_count(2);
    // Both leave at once. The first write to each still succeeds (the kernel takes it, and the
    // peer answers with a reset), so only a later broadcast fails both, together.
    drop(streams);
    std::thread::sleep(Duration::from_millis(200));
    let mut dropped = Vec::new();
    for _ in 0..20 {
        common::publish(addr, "anyone there?");
        dropped.extend(stderr.try_iter().filter(|line| line.contains(" dropped: ")));
        if dropped.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    let counts: Vec<&str> = dropped
        .iter()
        .map(|line| line.rsplit_once("; ").map_or("", |(_, count)| count))
        .collect();
    assert_eq!(counts, ["1 connected", "0 connected"], "{dropped:?}");
}

#[test]
fn accepting_survives_running_out_of_file_descriptors() {
    // 48 open files: room for some 40 streams, far below what the default MAX_CLIENTS asks for.
    // Connect 80; the rest wait in the listen queue while every accept fails with "Too many open
    // files".
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg(r#"ulimit -n 48 && exec "$0""#)
        .arg(env!("CARGO_BIN_EXE_sse-server"));
    let (mut child, addr, stderr) = common::process::launch(limited);

    let streams: Vec<std::net::TcpStream> = (0..80)
        .map(|_| {
            let mut stream = common::connect(addr);
            stream
                .write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            stream
        })
        .collect();
    // It said at start-up that the limit is too low for its settings.
    let mut lines = (0..500).filter_map(|_| stderr.recv_timeout(Duration::from_secs(5)).ok());
    let warning = lines.find(|line| line.starts_with("warning: "));
    let warning = warning.expect("no warning about the file limit");
    assert!(
        warning.contains("need up to 11016 open files, but this process may open 48 (ulimit -n)"),
        "{warning}"
    );
    // Each failed accept in a row waits twice as long as the one before, from 10 ms.
    let failures: Vec<String> = lines
        .filter(|line| line.starts_with("accept failed: "))
        .take(3)
        .collect();
    assert_eq!(
        failures.len(),
        3,
        "the server never ran out of file descriptors"
    );
    for (line, wait) in failures.iter().zip(["10ms", "20ms", "40ms"]) {
        assert!(
            line.contains("Too many open files")
                && line.ends_with(&format!("; retrying in {wait}")),
            "{line}"
        );
    }

    // The clients leave; the server notices on its next writes, and accepts again.
    drop(streams);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let page = loop {
        let response = common::raw_text(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
        if response.starts_with("HTTP/1.1 200 OK\r\n") || std::time::Instant::now() > deadline {
            break response;
        }
    };
    assert!(
        page.starts_with("HTTP/1.1 200 OK\r\n"),
        "not serving again: {page}"
    );

    // A success ends the run of failures: the next one waits 10 ms again. Every line logged
    // before the page was served is read first, so none of them counts as the next failure.
    let served = (0..1000)
        .filter_map(|_| stderr.recv_timeout(Duration::from_secs(5)).ok())
        .any(|line| line.ends_with(" GET / -> 200 OK"));
    assert!(served, "the page's answer was never logged");
    let streams: Vec<std::net::TcpStream> = (0..80)
        .map(|_| {
            let mut stream = common::connect(addr);
            let _ = stream.write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
            stream
        })
        .collect();
    let again = (0..500)
        .filter_map(|_| stderr.recv_timeout(Duration::from_secs(5)).ok())
        .find(|line| line.starts_with("accept failed: "));
    let _ = child.kill();
    let _ = child.wait();
    drop(streams);
    let again = again.expect("the server never ran out of file descriptors again");
    assert!(again.ends_with("; retrying in 10ms"), "{again}");
}

/// `examples/minimal.rs`, built first (a run of this test file alone does not build examples),
/// as `tests/client.rs` builds `listen`.
fn minimal() -> Command {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "--example", "minimal"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    assert!(
        cargo.status().expect("run cargo").success(),
        "build minimal"
    );
    let server = std::path::Path::new(env!("CARGO_BIN_EXE_sse-server"));
    let dir = server.parent().expect("the binary's folder");
    Command::new(dir.join("examples").join("minimal"))
}

#[test]
fn the_minimal_example_streams_an_event_at_once() {
    let (mut child, addr, _stderr) = common::process::launch(minimal());
    let mut stream = common::connect(addr);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let expected = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\ndata: tick 1\n\n";
    let mut got = vec![0; expected.len()];
    let read = std::io::Read::read_exact(&mut stream, &mut got);
    let _ = child.kill();
    let _ = child.wait();
    read.expect("the head and the first event, at once");
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

#[test]
fn a_request_read_across_a_stop_and_continue_is_answered() {
    let (child, addr, _stderr) = common::process::launch(server());
    let child = common::process::KilledOnDrop(child);
    // A publish whose head and body arrive in parts, with the server stopped in between: each
    // read has a timeout, so it fails with EINTR after the continue, and is done again.
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let head = "POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n";
    for part in [head, "\r\nhe", "llo"] {
        socket.write_all(part.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        common::process::stop_and_continue(child.0.id(), Duration::from_millis(50));
    }
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut socket, &mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{answer}"
    );
}
