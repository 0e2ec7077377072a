//! Event framing: the exact bytes of one event in the `text/event-stream` format.
//!
//! WHATWG HTML §9.2.5 "Parsing an event stream" and §9.2.6 "Interpreting an event stream" give
//! the shape: field lines, then a blank line that dispatches the event.
//!
//! ```text
//! id: 42
//! event: publish
//! data: first line
//! data: second line
//!
//! ```
//!
//! Pure functions over strings, with no socket in sight. `src/client.rs` holds the other half: a
//! client that follows the spec's parsing rules and decodes what these functions write.

/// Frames one event: `id:`, then `event:` unless it is the default `message` type, then one
/// `data:` line per line of `data`, then the blank line that dispatches it.
///
/// `id` is one of the server's own ids ([`crate::event_log::EventId`], such as `1795262400000-7`)
/// and `event_type` one of its own names (`publish`, `clients`, `gap`, `lab`), or with Redis one
/// read from the shared stream, which `redis_log.rs` lets through only as letters, digits, `-`
/// and `_`. Neither is text from a client, so neither holds a line break.
///
/// ```
/// use sse_server::event::frame;
///
/// assert_eq!(
///     frame(Some("1795262400000-7"), Some("publish"), "two\nlines"),
///     "id: 1795262400000-7\nevent: publish\ndata: two\ndata: lines\n\n"
/// );
/// ```
pub fn frame(id: Option<&str>, event_type: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    // §9.2.6 "id": sets the browser's last event ID, which it sends back as `Last-Event-ID` when it
    // reconnects. Ours are digits and a dash: short ASCII that can never hold a NUL (which would
    // void the field).
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    // §9.2.6 "event": without this line the type is `message`, the one `onmessage` receives; a
    // named type reaches only `addEventListener(name, ...)`.
    if let Some(event_type) = event_type {
        out.push_str(&format!("event: {event_type}\n"));
    }
    // §9.2.6 "data": the client appends each value plus LF and drops one trailing LF at dispatch,
    // so text with N line breaks goes out as N+1 `data:` lines. Always `data: ` with the space:
    // the client strips exactly one space after the colon, so a line that starts with a space
    // keeps it. A line break left inside a value would end the line early, and whatever followed
    // (`event: ...`, `id: ...`) would be read as a field of its own.
    for line in split_lines(data) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    // §9.2.6: an empty line dispatches the event. We write LF line ends; CRLF and CR are equally
    // valid on the wire (§9.2.5), LF is just the shortest.
    out.push('\n');
    out
}

/// `retry: <ms>`: how long the browser waits before reconnecting (§9.2.6 "retry"). A frame with no
/// `data:` fires no event; it only sets the reconnection time.
///
/// ```
/// assert_eq!(sse_server::event::retry(3000), "retry: 3000\n\n");
/// ```
pub fn retry(ms: u128) -> String {
    format!("retry: {ms}\n\n")
}

/// A comment frame: §9.2.6 ignores any line that starts with a colon, so it reaches no page. Sent
/// as a heartbeat, it keeps proxies from closing an idle connection (§9.2.7) and makes the server
/// write, which is how it notices a client that closed its connection: the next write or two
/// fail. A peer that vanished without a word (Wi-Fi off, a cable pulled) is another matter:
/// writes to it succeed into the kernel's buffer until that fills or TCP gives up retransmitting,
/// many minutes later. Production servers add TCP keepalive, `TCP_USER_TIMEOUT` or a deadline
/// of their own.
///
/// ```
/// assert_eq!(sse_server::event::comment("heartbeat"), ": heartbeat\n\n");
/// ```
pub fn comment(text: &str) -> String {
    format!(": {text}\n\n")
}

/// Splits text at every line break an `EventSource` recognises (§9.2.5): CRLF (one break), a lone
/// LF, a lone CR. Unlike [`str::lines`], a trailing break yields a final empty line, so `"a\n"`
/// becomes `["a", ""]` and the client rebuilds `"a\n"` exactly; `""` becomes `[""]`.
pub fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['\r', '\n']) {
        lines.push(&rest[..i]);
        let break_len = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + break_len..];
    }
    lines.push(rest);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_type_has_no_event_line() {
        assert_eq!(frame(Some("1-0"), None, "hi"), "id: 1-0\ndata: hi\n\n");
    }

    #[test]
    fn named_type_gets_an_event_line() {
        assert_eq!(
            frame(Some("42-0"), Some("publish"), "x"),
            "id: 42-0\nevent: publish\ndata: x\n\n"
        );
    }

    #[test]
    fn frame_without_id() {
        assert_eq!(frame(None, Some("gap"), "{}"), "event: gap\ndata: {}\n\n");
    }

    #[test]
    fn lf_splits_into_data_lines() {
        assert_eq!(frame(None, None, "a\nb"), "data: a\ndata: b\n\n");
    }

    #[test]
    fn crlf_counts_as_one_break() {
        assert_eq!(frame(None, None, "a\r\nb"), "data: a\ndata: b\n\n");
    }

    #[test]
    fn lone_cr_splits_too() {
        // A CR left in a value would end the line at the client and let the rest inject a field.
        assert_eq!(
            frame(None, None, "a\revent: evil"),
            "data: a\ndata: event: evil\n\n"
        );
    }

    #[test]
    fn cr_cr_lf_is_two_breaks() {
        assert_eq!(split_lines("a\r\r\nb"), ["a", "", "b"]);
    }

    #[test]
    fn lf_cr_is_two_breaks() {
        assert_eq!(split_lines("a\n\rb"), ["a", "", "b"]);
    }

    #[test]
    fn empty_data_is_one_empty_data_line() {
        // Still an event: its data is "" (a frame without any data line would fire nothing).
        assert_eq!(frame(None, None, ""), "data: \n\n");
    }

    #[test]
    fn empty_lines_in_the_middle_are_kept() {
        assert_eq!(frame(None, None, "a\n\nb"), "data: a\ndata: \ndata: b\n\n");
    }

    #[test]
    fn trailing_newline_becomes_a_final_empty_line() {
        assert_eq!(frame(None, None, "a\n"), "data: a\ndata: \n\n");
    }

    #[test]
    fn only_line_breaks() {
        assert_eq!(split_lines("\r\n\n\r"), ["", "", "", ""]);
    }

    #[test]
    fn leading_space_survives_after_the_one_the_client_strips() {
        assert_eq!(frame(None, None, " x"), "data:  x\n\n");
    }

    #[test]
    fn a_line_that_is_just_a_colon_stays_data() {
        // Behind `data: ` it is a value, not a comment line.
        assert_eq!(frame(None, None, ":"), "data: :\n\n");
    }

    #[test]
    fn unicode_passes_through() {
        assert_eq!(
            frame(None, None, "héllo 👋\nñ"),
            "data: héllo 👋\ndata: ñ\n\n"
        );
    }

    #[test]
    fn retry_and_comment_frames() {
        assert_eq!(retry(3000), "retry: 3000\n\n");
        assert_eq!(comment("heartbeat"), ": heartbeat\n\n");
    }
}
