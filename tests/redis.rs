//! Several servers on one shared log: two real servers (`REDIS_URL`) on one `redis-server` of the
//! test's own, talked to over real sockets. Skipped, with a note, when `redis-server` is missing.

mod common;
use common::redis::Redis;
use common::{EventStream, publish, status};
use sse_server::Config;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A server on the shared log in `redis`, with no ticks and a short heartbeat.
fn server(redis: &Redis) -> SocketAddr {
    common::start(Config {
        redis: Some(redis.addr()),
        heartbeat: Duration::from_millis(100),
        ..common::quiet()
    })
}

/// Opens a stream once the server's reader follows the stream: until then a new stream gets
/// `retry:` and ends at once. Returns it once it has joined the list (its count arrived).
fn open_live(addr: SocketAddr, headers: &str) -> EventStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = EventStream::open(addr, headers);
        while stream.read_more() {
            if stream.body_text().contains("event: clients\n") {
                return stream;
            }
        }
        assert!(Instant::now() < deadline, "the reader never connected");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Publishes on `addr` and expects `204`.
fn publish_ok(addr: SocketAddr, text: &str) {
    let response = publish(addr, text);
    assert_eq!(status(&response), 204, "{response}");
}

/// The start of a long body, for a failure message.
fn head(body: &str) -> String {
    body.chars().take(300).collect()
}

/// The next `n` publish events, as (id, data).
fn published(stream: &mut EventStream, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            let event = stream.next_of("publish");
            (event.last_event_id, event.data)
        })
        .collect()
}

#[test]
fn a_publish_on_one_server_reaches_the_clients_of_another_in_order() {
    let Some(redis) =
        Redis::start("a_publish_on_one_server_reaches_the_clients_of_another_in_order")
    else {
        return;
    };
    let (a, b) = (server(&redis), server(&redis));
    let mut on_a = open_live(a, "");
    let mut on_b = open_live(b, "");
    for text in ["one", "two", "three"] {
        publish_ok(a, text);
    }
    let seen_on_b = published(&mut on_b, 3);
    let data: Vec<&str> = seen_on_b.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(data, ["one", "two", "three"]);
    // The same events with the same ids (Redis's), on both servers.
    assert_eq!(published(&mut on_a, 3), seen_on_b);
    let ids: Vec<_> = (0..3)
        .map(|i| sse_server::event_log::EventId::parse(&seen_on_b[i].0).expect("an id"))
        .collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
}

#[test]
fn a_resume_on_another_server_replays_exactly_what_was_missed() {
    let Some(redis) = Redis::start("a_resume_on_another_server_replays_exactly_what_was_missed")
    else {
        return;
    };
    let (a, b) = (server(&redis), server(&redis));
    let mut on_a = open_live(a, "");
    for i in 0..5 {
        publish_ok(a, &format!("e{i}"));
    }
    let events = published(&mut on_a, 5);
    // A browser that saw e1 on A comes back on B.
    let mut on_b = open_live(b, &format!("Last-Event-ID: {}\r\n", events[1].0));
    let expected: String = events[2..]
        .iter()
        .map(|(id, data)| format!("id: {id}\nevent: publish\ndata: {data}\n\n"))
        .collect();
    assert_eq!(
        on_b.body_text(),
        format!("retry: 3000\n\n{expected}event: clients\ndata: 1\n\n")
    );
    // Then live, and nothing twice.
    assert_eq!(published(&mut on_b, 3), events[2..]);
    publish_ok(a, "e5");
    let next = on_b.next_of("publish");
    assert_eq!(next.data, "e5", "{}", on_b.body_text());
    assert_eq!(on_b.body_text().matches("data: e4\n").count(), 1);
}

#[test]
fn exactly_100_missed_replay_and_101_give_the_gap() {
    let Some(redis) = Redis::start("exactly_100_missed_replay_and_101_give_the_gap") else {
        return;
    };
    let a = server(&redis);
    let mut on_a = open_live(a, "");
    for i in 0..102 {
        publish_ok(a, &format!("e{i}"));
    }
    let events = published(&mut on_a, 102);
    // Saw e1, missed e2..e101: 100 events, all kept (MAXLEN 101 holds e1 too).
    let hundred = open_live(a, &format!("Last-Event-ID: {}\r\n", events[1].0));
    let body = hundred.body_text();
    assert!(!body.contains("event: gap"), "{}", head(&body));
    assert_eq!(body.matches("event: publish").count(), 100);
    assert!(body.starts_with(&format!("retry: 3000\n\nid: {}\n", events[2].0)));
    // Saw e0, missed 101: e0 is trimmed, so the gap, then the 101 kept (e1..e101).
    let mut more = open_live(a, &format!("Last-Event-ID: {}\r\n", events[0].0));
    let body = more.body_text();
    let gap = format!(
        "retry: 3000\n\nevent: gap\ndata: {{\"last_event_id\":\"{}\",\"resume_from\":\"{}\"}}\n\nid: {}\n",
        events[0].0, events[1].0, events[1].0
    );
    assert!(body.starts_with(&gap), "{}", head(&body));
    assert_eq!(body.matches("event: publish").count(), 101);
    let _ = more.next_of("clients");
}

#[test]
fn a_malformed_or_unknown_id_gives_the_gap() {
    let Some(redis) = Redis::start("a_malformed_or_unknown_id_gives_the_gap") else {
        return;
    };
    let a = server(&redis);
    let mut on_a = open_live(a, "");
    publish_ok(a, "kept");
    let (id, _) = published(&mut on_a, 1).remove(0);
    for (asked, quoted) in [("42", "null"), ("1-0", "\"1-0\"")] {
        let stream = open_live(a, &format!("Last-Event-ID: {asked}\r\n"));
        assert_eq!(
            stream.body_text(),
            format!(
                "retry: 3000\n\nevent: gap\ndata: {{\"last_event_id\":{quoted},\"resume_from\":\"{id}\"}}\n\n\
                 id: {id}\nevent: publish\ndata: kept\n\nevent: clients\ndata: {}\n\n",
                if asked == "42" { 2 } else { 3 }
            )
        );
    }
}

#[test]
fn redis_down_then_restarted_without_its_data() {
    let Some(mut redis) = Redis::start("redis_down_then_restarted_without_its_data") else {
        return;
    };
    let (a, b) = (server(&redis), server(&redis));
    let mut on_b = open_live(b, "");
    publish_ok(a, "before");
    let (before, _) = published(&mut on_b, 1).remove(0);

    redis.kill();
    // Publishing: 503 with Retry-After once A's reader saw Redis go, never "delivered locally".
    // Until then a publish may go out on A's kept connection and find it closed: 504, since
    // a Redis that closes a connection may have run the command first.
    let deadline = Instant::now() + Duration::from_secs(5);
    let response = loop {
        let response = publish(a, "lost");
        if status(&response) == 503 {
            break response;
        }
        assert_eq!(status(&response), 504, "{response}");
        assert!(Instant::now() < deadline, "publishing never answered 503");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(response.contains("\r\nRetry-After: 1\r\n"), "{response}");
    assert!(
        response.ends_with("nothing was published; try again\n"),
        "{response}"
    );
    // A new stream: 200, the retry:, and the end, once B's reader saw Redis go (until then a
    // new stream still joins, and says so with its count).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = EventStream::open(b, "");
        assert!(
            stream.head.starts_with("HTTP/1.1 200 OK\r\n"),
            "{}",
            stream.head
        );
        while stream.read_more() && !stream.body_text().contains("event: clients") {}
        if !stream.body_text().contains("event: clients") {
            assert_eq!(stream.body_text(), "retry: 3000\n\n");
            break;
        }
        assert!(Instant::now() < deadline, "new streams never ended");
        thread::sleep(Duration::from_millis(20));
    }
    // The open stream stays open, with heartbeats (every 100 ms here).
    let from = on_b.body.len();
    while on_b.body_text()[from..].matches(": heartbeat\n\n").count() < 2 {
        assert!(on_b.read_more(), "the open stream ended");
    }

    // Redis comes back empty: the reader reconnects and the open stream gets the gap notice.
    redis.restart();
    let gap = on_b.next_of("gap");
    assert_eq!(
        gap.data,
        format!("{{\"last_event_id\":\"{before}\",\"resume_from\":null}}")
    );
    // New publishes flow again (A's reader may need a moment to reconnect: it backs off).
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&publish(a, "after")) != 204 {
        assert!(Instant::now() < deadline, "publishing never recovered");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(on_b.next_of("publish").data, "after");
    assert!(!on_b.body_text().contains("data: lost\n"));
}

#[test]
fn ticks_stay_local_without_an_id() {
    let Some(redis) = Redis::start("ticks_stay_local_without_an_id") else {
        return;
    };
    let ticking = Config {
        redis: Some(redis.addr()),
        tick: Duration::from_millis(20),
        ..common::config()
    };
    let (a, _b) = (common::start(ticking.clone()), common::start(ticking));
    let mut on_a = open_live(a, "");
    publish_ok(a, "x");
    on_a.next_of("publish");
    for _ in 0..3 {
        on_a.next_of("message");
    }
    // Every tick frame has no id line, and the shared log holds only the publish: a resume from
    // an unknown id replays it alone.
    for frame in on_a.body_text().split("\n\n") {
        if frame.contains("data: {\"time\"") {
            assert!(!frame.contains("id:"), "{frame}");
        }
    }
    let replay = open_live(a, "Last-Event-ID: 42\r\n");
    let body = replay.body_text();
    let frames: Vec<&str> = body.split("\n\n").collect();
    assert_eq!(frames[0], "retry: 3000");
    assert!(frames[1].starts_with("event: gap\n"), "{body}");
    assert!(frames[2].starts_with("id: "), "{body}");
    assert!(frames[2].ends_with("\nevent: publish\ndata: x"), "{body}");
    assert_eq!(frames[3], "event: clients\ndata: 2", "{body}");
}

#[test]
fn reconnecting_while_events_flow_delivers_each_once_in_order() {
    let Some(redis) = Redis::start("reconnecting_while_events_flow_delivers_each_once_in_order")
    else {
        return;
    };
    let (a, b) = (server(&redis), server(&redis));
    const N: usize = 150;
    let mut stream = open_live(b, "");
    // The publisher stays at most 50 events ahead of the reader below: a resume more than 100
    // behind would get the gap, which this test is not about.
    let read = Arc::new(AtomicUsize::new(0));
    let read_so_far = Arc::clone(&read);
    let publisher = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0..N {
            while i >= read_so_far.load(Ordering::Acquire) + 50 {
                assert!(Instant::now() < deadline, "the reader stopped at {i}");
                thread::sleep(Duration::from_millis(1));
            }
            publish_ok(a, &format!("e{i}"));
        }
    });
    // A browser on B that drops its stream every 7 events and resumes from the last id it saw:
    // each resume's replay (from Redis) races B's reader copying the same events into its log.
    let mut seen = Vec::new();
    for _ in 0..N {
        for _ in 0..7 {
            if seen.len() < N {
                seen.push(stream.next_of("publish"));
                read.store(seen.len(), Ordering::Release);
            }
        }
        assert!(!stream.body_text().contains("event: gap"));
        if seen.len() == N {
            break;
        }
        let last = &seen[seen.len() - 1].last_event_id;
        stream = open_live(b, &format!("Last-Event-ID: {last}\r\n"));
    }
    publisher.join().expect("the publisher");
    let data: Vec<String> = seen.iter().map(|e| e.data.clone()).collect();
    let expected: Vec<String> = (0..N).map(|i| format!("e{i}")).collect();
    assert_eq!(data, expected);
}

#[test]
fn a_replay_of_the_largest_events_arrives_whole() {
    let Some(redis) = Redis::start("a_replay_of_the_largest_events_arrives_whole") else {
        return;
    };
    let a = server(&redis);
    let big = |i: usize| format!("{i:03}").repeat(sse_server::server::MAX_PUBLISH as usize / 3);
    let mut on_a = open_live(a, "");
    for i in 0..101 {
        publish_ok(a, &big(i));
    }
    let first = on_a.next_of("publish").last_event_id;
    // 100 events of 64 KiB in one XRANGE reply: 6.4 MB, read in pieces.
    let mut resumed = EventStream::open(a, &format!("Last-Event-ID: {first}\r\n"));
    for i in 1..101 {
        let event = resumed.next_of("publish");
        assert!(event.data == big(i), "event {i} is not whole");
    }
    assert!(!resumed.body_text().contains("event: gap"));
}

#[test]
fn a_publish_redis_never_answers_is_504_and_may_arrive_later() {
    let Some(redis) = Redis::start("a_publish_redis_never_answers_is_504_and_may_arrive_later")
    else {
        return;
    };
    let a = server(&redis);
    let mut on_a = open_live(a, "");
    publish_ok(a, "first");
    assert_eq!(on_a.next_of("publish").data, "first");
    // Redis hangs: the XADD goes out and no answer comes within the 2 s timeout.
    redis.pause();
    let response = publish(a, "unconfirmed");
    redis.wake();
    assert_eq!(status(&response), 504, "{response}");
    assert!(
        response.ends_with("it may or may not have been published\n"),
        "{response}"
    );
    // Redis ran it once it woke: the 504 was right not to say "not published".
    assert_eq!(on_a.next_of("publish").data, "unconfirmed");
}

#[test]
fn entries_written_by_another_program_are_skipped_not_sent() {
    let Some(redis) = Redis::start("entries_written_by_another_program_are_skipped_not_sent")
    else {
        return;
    };
    let a = server(&redis);
    let mut on_a = open_live(a, "");
    let mut other = redis.connect();
    // Over the 1 MiB a server keeps of one value: read past, not held, and no stall.
    let huge = "h".repeat(sse_server::resp::MAX_BULK + 1);
    for fields in [
        &["type", "x\nid: 1-0", "data", "injected"][..],
        &["note", "no data"],
        &["data", &huge],
    ] {
        let mut args = vec!["XADD", "sse:events", "*"];
        args.extend(fields);
        other.command(&args).expect("XADD");
    }
    publish_ok(a, "ours");
    let event = on_a.next_of("publish");
    assert_eq!(event.data, "ours");
    let body = on_a.body_text();
    let shown = head(&body);
    assert!(
        !body.contains("injected") && !body.contains("id: 1-0"),
        "{shown}"
    );
    assert!(!body.contains("hhh"), "{shown}");
    // A resume from before them replays only ours, after the gap.
    let resumed = open_live(a, "Last-Event-ID: 1-0\r\n");
    let body = resumed.body_text();
    assert_eq!(body.matches("data: ").count(), 3, "{}", head(&body));
    assert!(body.contains(&format!(
        "id: {}\nevent: publish\ndata: ours\n\n",
        event.last_event_id
    )));
}

#[test]
fn a_reader_that_fell_behind_the_trimming_sends_the_gap() {
    let Some(redis) = Redis::start("a_reader_that_fell_behind_the_trimming_sends_the_gap") else {
        return;
    };
    // The real binary, so that the whole process can be stopped, reader and all.
    let mut command = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    command.env("REDIS_URL", format!("redis://{}", redis.addr()));
    command.env("TICK_MS", "3600000");
    let (child, addr, log) = common::process::launch(command);
    let child = common::process::KilledOnDrop(child);
    let mut stream = open_live(addr, "");

    // Stopped while 150 are published: the stream keeps the last 101, e49 to e149.
    let pid = child.0.id();
    common::process::signal(pid, "-STOP");
    let mut other = redis.connect();
    let mut ids = Vec::new();
    for i in 0..150 {
        let args = [
            "XADD",
            "sse:events",
            "MAXLEN",
            "101",
            "*",
            "type",
            "publish",
            "data",
        ];
        let data = format!("e{i}");
        match other.command(&[&args[..], &[&data]].concat()) {
            Ok(sse_server::resp::Reply::Bulk(id)) => ids.push(String::from_utf8(id).unwrap()),
            reply => panic!("XADD answered {reply:?}"),
        }
    }
    common::process::signal(pid, "-CONT");

    // Whatever it had read before it stopped (e0 at most), then the gap, then e49 to e149.
    let gap = stream.next_of("gap");
    assert!(
        gap.data
            .ends_with(&format!(",\"resume_from\":\"{}\"}}", ids[49])),
        "{}",
        gap.data
    );
    let after: Vec<String> = (0..101).map(|_| stream.next_of("publish").data).collect();
    let expected: Vec<String> = (49..150).map(|i| format!("e{i}")).collect();
    assert_eq!(after, expected);
    let body = stream.body_text();
    let before_gap = &body[..body.find("event: gap").unwrap_or(0)];
    assert_eq!(
        before_gap.matches("event: publish").count(),
        before_gap.matches("data: e0\n").count()
    );
    // Stopped and continued, its reader never lost Redis (a read with a timeout fails with EINTR
    // after SIGCONT, and is only to be done again).
    drop(child);
    let log: Vec<String> =
        std::iter::from_fn(|| log.recv_timeout(Duration::from_secs(5)).ok()).collect();
    assert!(
        log.iter()
            .any(|l| l.contains("fell more than 100 entries behind")),
        "{log:?}"
    );
    assert!(!log.iter().any(|l| l.contains(": lost (")), "{log:?}");
}
