//! The test client's parser must itself follow the spec, or the round-trip tests prove nothing.

mod common;
use common::{Event, SpecParser};

fn parse(stream: &str) -> Vec<Event> {
    SpecParser::default().feed(stream.as_bytes())
}

fn message(data: &str, id: &str) -> Event {
    Event {
        event_type: "message".into(),
        data: data.into(),
        last_event_id: id.into(),
    }
}

#[test]
fn all_three_line_ends_work() {
    assert_eq!(
        parse("data: a\r\n\r\ndata: b\n\ndata: c\r\r"),
        [message("a", ""), message("b", ""), message("c", "")]
    );
}

#[test]
fn crlf_split_across_reads_is_one_break() {
    let mut parser = SpecParser::default();
    assert!(parser.feed(b"data: a\r").is_empty());
    assert_eq!(parser.feed(b"\ndata: b\r\n\r\n"), [message("a\nb", "")]);
}

#[test]
fn one_space_after_the_colon_is_stripped() {
    assert_eq!(
        parse("data:x\n\ndata:  y\n\n"),
        [message("x", ""), message(" y", "")]
    );
}

#[test]
fn comments_fire_nothing() {
    let mut parser = SpecParser::default();
    assert!(parser.feed(b": heartbeat\n\n").is_empty());
    assert_eq!(parser.comments, 1);
}

#[test]
fn a_frame_without_data_fires_nothing_but_sets_the_id() {
    assert_eq!(parse("id: 7\n\ndata: x\n\n"), [message("x", "7")]);
}

#[test]
fn id_with_nul_is_ignored() {
    assert_eq!(
        parse("id: 1\ndata: a\n\nid: 2\0\ndata: b\n\n"),
        [message("a", "1"), message("b", "1")]
    );
}

#[test]
fn retry_takes_only_digits() {
    let mut parser = SpecParser::default();
    parser.feed(b"retry: 2500\n\nretry: 12a\n\n");
    assert_eq!(parser.retry, Some(2500));
}

#[test]
fn event_type_resets_after_dispatch() {
    let events = parse("event: publish\ndata: a\n\ndata: b\n\n");
    assert_eq!(events[0].event_type, "publish");
    assert_eq!(events[1].event_type, "message");
}

#[test]
fn an_unfinished_event_is_not_dispatched() {
    assert!(parse("data: cut off\n").is_empty());
}

#[test]
fn a_leading_bom_is_dropped() {
    assert_eq!(parse("\u{feff}data: a\n\n"), [message("a", "")]);
}
