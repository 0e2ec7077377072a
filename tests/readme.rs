//! The README's console samples against a real server, so that what a learner reads there is what
//! the server does. Ids, times and counts differ from run to run; the shape must not: which
//! fields, in which order, with which event types.

mod common;
use common::{EventStream, config, raw_text, start, status};
use sse_server::event_log::EventId;

const README: &str = include_str!("../README.md");

/// The lines of every block fenced as ```` ```lang ````.
fn blocks(lang: &str) -> Vec<Vec<&'static str>> {
    let mut blocks = Vec::new();
    let mut lines = README.lines();
    while let Some(line) = lines.next() {
        if line == format!("```{lang}") {
            blocks.push(lines.by_ref().take_while(|line| *line != "```").collect());
        }
    }
    blocks
}

/// Every run of digits folded to one `0`.
fn shape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('0') {
            out.push('0');
        }
    }
    out
}

/// The frames of a stream's text: what comes before each blank line.
fn frames(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter(|frame| !frame.is_empty())
        .collect()
}

/// The README's `curl -N localhost:3000/events` session: the command, then what it printed.
fn curl_sample() -> Vec<&'static str> {
    blocks("console")
        .into_iter()
        .find(|block| block[0] == "$ curl -N localhost:3000/events")
        .expect("a curl -N session in the README")
}

/// The `id:` values of a sample, in order.
fn ids(text: &str) -> Vec<EventId> {
    text.lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .map(|id| EventId::parse(id).expect("an id of ours"))
        .collect()
}

#[test]
fn the_curl_session_is_what_the_server_sends() {
    let sample = curl_sample()[1..].join("\n") + "\n";
    let expected = frames(&sample);
    assert!(expected.len() >= 3, "{sample}");
    let sample_ids = ids(&sample);
    assert!(sample_ids.len() >= 2, "{sample}");
    assert!(sample_ids.is_sorted(), "the sample's ids go up: {sample}");
    // The sample's ticks are one second apart, and so are their ids' milliseconds.
    let ms: Vec<u64> = sample_ids.iter().map(|id| id.ms).collect();
    assert!(ms.windows(2).all(|w| w[1] - w[0] == 1000), "{sample}");

    // The README's session has the page open too: two streams.
    let addr = start(config());
    let _page = EventStream::open(addr, "");
    let mut curl = EventStream::open(addr, "");
    let deadline = std::time::Instant::now() + common::READ_TIMEOUT;
    while frames(&String::from_utf8_lossy(&curl.body)).len() <= expected.len() {
        assert!(std::time::Instant::now() < deadline, "too few frames");
        assert!(curl.read_more());
    }
    let body = curl.body_text();
    let got = &frames(&body)[..expected.len()];
    let shapes = |frames: &[&str]| frames.iter().map(|f| shape(f)).collect::<Vec<_>>();
    assert_eq!(shapes(got), shapes(&expected), "the server sent:\n{body}");
    // The count is exact: the page's stream and curl's.
    assert_eq!(got[1].lines().last(), Some("data: 2"), "{body}");
}

#[test]
fn the_publish_sample_is_the_frame_a_stream_gets() {
    // `$ curl --data-binary $'hello\nsecond line' localhost:3000/publish`
    let command = blocks("console")
        .into_iter()
        .flatten()
        .find(|line| line.starts_with("$ curl --data-binary $'"))
        .expect("a publish command in the README");
    let text = command
        .split('\'')
        .nth(1)
        .expect("a quoted body")
        .replace("\\n", "\n");
    let frame = blocks("text")
        .into_iter()
        .find(|block| block.contains(&"event: publish"))
        .expect("a publish frame in the README")
        .join("\n");

    let addr = start(common::quiet());
    let mut stream = EventStream::open(addr, "");
    common::publish(addr, &text);
    stream.next_of("publish");
    let body = stream.body_text();
    let sent = frames(&body)
        .into_iter()
        .find(|frame| frame.contains("event: publish"))
        .expect("the publish frame");
    assert_eq!(shape(&format!("{sent}\n\n")), shape(&format!("{frame}\n")));
    // And it follows the curl session's events: its id is later than theirs.
    let last_sample_id = *ids(&curl_sample().join("\n")).last().unwrap();
    assert!(ids(&frame)[0] > last_sample_id, "{frame}");
}

#[test]
fn every_lab_curl_line_gets_the_status_its_comment_says() {
    let addr = start(config());
    let lines: Vec<&str> = blocks("console")
        .into_iter()
        .flatten()
        .filter(|line| line.starts_with("$ curl") && line.contains("localhost:3000/events?"))
        .collect();
    assert!(lines.len() >= 4, "{lines:?}");
    for line in lines {
        let target = line
            .split('\'')
            .find(|part| part.starts_with("localhost:3000/"))
            .and_then(|url| url.strip_prefix("localhost:3000"))
            .unwrap_or_else(|| panic!("no quoted URL in {line}"));
        let header = line
            .split(" -H '")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .map_or(String::new(), |h| format!("{h}\r\n"));
        // `# 204, no body` promises a 204; a comment without a status, a stream (200).
        let comment = line.split_once('#').map_or("", |(_, c)| c.trim());
        let promised: u16 = comment.get(..3).and_then(|s| s.parse().ok()).unwrap_or(200);
        let response = raw_text(
            addr,
            &format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{header}\r\n"),
        );
        assert_eq!(status(&response), promised, "{line}\n{response}");
    }
}

#[test]
fn shapes_fold_digits() {
    assert_eq!(
        shape("id: 42\ndata: {\"time\":\"2026-11-21T12:00:07Z\"}"),
        "id: 0\ndata: {\"time\":\"0-0-0T0:0:0Z\"}"
    );
    assert_eq!(
        frames("retry: 3000\n\nid: 1\ndata: a\n\n"),
        ["retry: 3000", "id: 1\ndata: a"]
    );
}
