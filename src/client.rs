//! The other half: a client that does what a browser's `EventSource` does, with std alone.
//!
//! [`Parser`] turns the bytes of a stream into events as §9.2.5 "Parsing an event stream" and
//! §9.2.6 "Interpreting an event stream" say, step by step, with no socket in sight; the tests read
//! this server's streams with it. [`EventSource`] is the connection of §9.2.2-§9.2.3: the request,
//! the checks on the response, the body, and reconnecting. Left out: `https://` (std has no TLS),
//! cookies, CORS, and every method but `GET`.

use crate::http::{digits, read_head};
use crate::lab::is_event_stream;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::ops::ControlFlow;
use std::thread;
use std::time::{Duration, Instant};

/// One event as `EventSource` hands it to a page: the `MessageEvent`'s `type`, `data` and
/// `lastEventId`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event_type: String,
    pub data: String,
    pub last_event_id: String,
}

/// The parser of one connection's stream: bytes in, dispatched events out.
#[derive(Debug)]
pub struct Parser {
    /// The bytes of the line being read, not yet ended.
    line: Vec<u8>,
    /// The last byte was a CR: an LF right after it ends no second line.
    after_cr: bool,
    /// No line has ended yet: the first one may start with a byte order mark.
    at_start: bool,
    /// §9.2.6's three buffers.
    data: String,
    event_type: String,
    id_buffer: String,
    /// The event source's "last event ID string": set from `id_buffer` at each dispatch.
    last_event_id: String,
    /// The reconnection time the last `retry:` field asked for, in ms, until a client takes it.
    pub retry: Option<u64>,
    /// How many comment lines went by. A browser ignores them; a program may want to show
    /// heartbeats.
    pub comments: usize,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::new("")
    }
}

impl Parser {
    /// A parser for a new connection of an event source whose last event ID is `last_event_id`.
    ///
    /// §9.2.6 read literally starts every stream's last event ID buffer empty, so the first event
    /// of a reconnected stream without an `id:` would reset the last event ID to "". Browsers
    /// start the buffer from the last event ID instead, and so does this parser: an id survives a
    /// reconnect until the server sends another.
    pub fn new(last_event_id: &str) -> Parser {
        Parser {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            data: String::new(),
            event_type: String::new(),
            id_buffer: last_event_id.to_string(),
            last_event_id: last_event_id.to_string(),
            retry: None,
            comments: 0,
        }
    }

    /// The event source's last event ID: what a reconnect sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Reads bytes as they arrive, in pieces of any size; returns the events they complete.
    ///
    /// What is left at the end of a stream, an unfinished line or an event without its blank
    /// line, is simply never completed: §9.2.5 says to discard it.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &byte in bytes {
            // §9.2.5: a line ends in CRLF, a lone LF or a lone CR. The CR of a CRLF may end one
            // read and its LF start the next; `after_cr` keeps that one line end.
            if byte == b'\n' && self.after_cr {
                self.after_cr = false;
                continue;
            }
            self.after_cr = byte == b'\r';
            if byte != b'\r' && byte != b'\n' {
                self.line.push(byte);
                continue;
            }
            // §9.2.5: the stream is UTF-8, whatever a charset says; a byte that is not valid
            // UTF-8 becomes U+FFFD. CR and LF never occur inside a multi-byte character, so
            // decoding line by line is decoding the stream.
            let bytes = std::mem::take(&mut self.line);
            let mut line = String::from_utf8_lossy(&bytes).into_owned();
            // §9.2.5: one byte order mark at the very start of the stream is ignored.
            if std::mem::take(&mut self.at_start)
                && let Some(rest) = line.strip_prefix('\u{feff}')
            {
                line = rest.to_string();
            }
            events.extend(self.process_line(&line));
        }
        events
    }

    /// §9.2.6, for one line.
    fn process_line(&mut self, line: &str) -> Option<Event> {
        // "If the line is empty (a blank line): dispatch the event."
        if line.is_empty() {
            return self.dispatch();
        }
        // "If the line starts with a U+003A COLON character (:): ignore the line."
        if line.starts_with(':') {
            self.comments += 1;
            return None;
        }
        // "If the line contains a U+003A COLON character": the field name is what comes before the
        // first colon, the value what comes after it, less one leading space if there is one.
        // "Otherwise": the whole line is the field name, and the value is empty.
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event_type = value.to_string(),
            // "Append the field value to the data buffer, then append a single LF."
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // "If the field value does not contain U+0000 NULL, then set the last event ID buffer
            // to the field value. Otherwise, ignore the field." An empty value resets it.
            "id" if !value.contains('\0') => self.id_buffer = value.to_string(),
            // "If the field value consists of only ASCII digits, then interpret the field value as
            // an integer in base ten, and set the event stream's reconnection time to that
            // integer. Otherwise, ignore the field." A number too big for u64 is ignored too.
            "retry" => {
                if let Some(ms) = digits(value) {
                    self.retry = Some(ms);
                }
            }
            // "Otherwise: the field is ignored."
            _ => {}
        }
        None
    }

    /// §9.2.6 "dispatch the event", step by step.
    fn dispatch(&mut self) -> Option<Event> {
        // 1. The last event ID buffer becomes the source's last event ID, data or not.
        self.last_event_id = self.id_buffer.clone();
        // 2. No data: reset the data and event type buffers, and fire nothing.
        let mut data = std::mem::take(&mut self.data);
        let event_type = std::mem::take(&mut self.event_type);
        if data.is_empty() {
            return None;
        }
        // 3. One trailing LF is removed (each `data:` line added one).
        data.pop();
        // 4. The type is the event type buffer, or `message` if it is empty.
        Some(Event {
            event_type: match event_type.as_str() {
                "" => String::from("message"),
                _ => event_type,
            },
            data,
            last_event_id: self.last_event_id.clone(),
        })
    }
}

/// An `http://` URL, split the way a request needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Url {
    /// A host name or IP address, IPv6 without its brackets.
    pub host: String,
    pub port: u16,
    /// The path and query: `/events?x=1`.
    pub target: String,
}

impl Url {
    /// Parses `http://host[:port][/path][?query]`; a fragment (`#...`) is dropped, as a browser
    /// never sends one.
    pub fn parse(text: &str) -> Result<Url, String> {
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(format!(
                    "{text}: https is not supported (std has no TLS); use http://"
                ));
            }
            _ => return Err(format!("{text}: expected a URL starting with http://")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, String::from("/")),
        };
        let target = match target.starts_with('?') {
            true => format!("/{target}"),
            false => target,
        };
        if target.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(format!(
                "{text}: the path has spaces or other characters to percent-encode"
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port = port
                    .parse()
                    .map_err(|_| format!("{text}: the port is not a number from 0 to 65535"))?;
                (host, port)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('@') || host.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(format!("{text}: expected a host name or an IP address"));
        }
        Ok(Url {
            host: host.to_string(),
            port,
            target,
        })
    }

    /// The `Host` header: the host, and the port unless it is 80.
    fn authority(&self) -> String {
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        match self.port {
            80 => host,
            port => format!("{host}:{port}"),
        }
    }

    /// Where a redirect's `Location` points, seen from this URL.
    fn join(&self, location: &str) -> Result<Url, String> {
        if location.contains("://") {
            return Url::parse(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse(&format!("http://{rest}"));
        }
        let target = match location.starts_with('/') {
            true => location.to_string(),
            // A relative path replaces the last segment of this one.
            false => {
                let path = self.target.split('?').next().unwrap_or("/");
                let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
                format!("{dir}{location}")
            }
        };
        Url::parse(&format!("http://{}{target}", self.authority()))
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.target)
    }
}

/// A parsed response head (RFC 9112 §4): `HTTP/1.1 200 OK`, then header lines.
#[derive(Debug, PartialEq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first header with this name, which is case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a response head, up to and including its blank line.
pub fn parse_response_head(head: &[u8]) -> Result<ResponseHead, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let status_line = lines.next().unwrap_or_default();
    let bad = || format!("not an HTTP/1.x status line: {status_line:?}");
    let (version, rest) = status_line.split_once(' ').ok_or_else(bad)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(bad());
    }
    let status = code.parse().map_err(|_| bad())?;
    let mut headers = Vec::new();
    for line in lines.take_while(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("a header line without a colon: {line:?}"))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(ResponseHead {
        status,
        reason: reason.to_string(),
        headers,
    })
}

/// What an [`EventSource`] reports as it goes: a browser's `open`, `message` and `error` events,
/// and what it does in between.
#[derive(Debug, PartialEq)]
pub enum Report {
    /// Status 200 with type `text/event-stream`: the connection is announced (`open`).
    Open,
    /// An event was dispatched.
    Event(Event),
    /// A `retry:` field set the reconnection time.
    Retry(Duration),
    /// A redirect is followed to this URL.
    Redirect(String),
    /// The body ended, or the network failed: the browser's `error`, with `readyState`
    /// `CONNECTING`. The text says which.
    Lost(String),
    /// The reconnection time is being waited out; then the request goes again, with this
    /// `Last-Event-ID` unless it is empty.
    Reconnecting {
        delay: Duration,
        last_event_id: String,
    },
}

/// Why [`EventSource::run`] returned.
#[derive(Debug, PartialEq)]
pub enum End {
    /// `204 No Content`: the server's way to say "stop reconnecting" (§9.2.1).
    Stopped,
    /// The connection failed (§9.2.2): a status other than 200, or a type other than
    /// `text/event-stream`. A browser's `readyState` is `CLOSED`, and it never reconnects.
    Failed(String),
    /// The program asked to stop, by returning `ControlFlow::Break` from its report.
    Closed,
}

/// The reconnection time until a `retry:` field says otherwise. The spec leaves it to the user
/// agent; Chrome and Safari use 3 s too.
pub const DEFAULT_RECONNECTION_TIME: Duration = Duration::from_millis(3000);

/// Redirects followed in a row before giving up: fetch's limit.
const MAX_REDIRECTS: usize = 20;

/// The largest response head read.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// A connection to an event stream that reconnects as a browser's `EventSource` does.
pub struct EventSource {
    pub url: Url,
    /// Sent as `Last-Event-ID` when not empty; a new `EventSource` starts with none.
    pub last_event_id: String,
    pub reconnection_time: Duration,
}

/// What one connection came to.
enum Next {
    Reconnect(String),
    End(End),
}

impl EventSource {
    pub fn new(url: Url) -> EventSource {
        EventSource {
            url,
            last_event_id: String::new(),
            reconnection_time: DEFAULT_RECONNECTION_TIME,
        }
    }

    /// Connects, and reconnects after every end, until the connection fails, the server answers
    /// `204`, or `report` returns `ControlFlow::Break`.
    pub fn run(&mut self, mut report: impl FnMut(Report) -> ControlFlow<()>) -> End {
        loop {
            let why = match self.connect(&mut report) {
                Next::End(end) => return end,
                Next::Reconnect(why) => why,
            };
            // §9.2.3 "reestablish the connection": fire `error`, wait the reconnection time,
            // then fetch again with the last event ID.
            let reconnecting = Report::Reconnecting {
                delay: self.reconnection_time,
                last_event_id: self.last_event_id.clone(),
            };
            if report(Report::Lost(why)).is_break() || report(reconnecting).is_break() {
                return End::Closed;
            }
            thread::sleep(self.reconnection_time);
        }
    }

    /// One connection, with its redirects: the request, the checks of §9.2.2, then the body.
    fn connect(&mut self, report: &mut impl FnMut(Report) -> ControlFlow<()>) -> Next {
        let mut url = self.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let (stream, head, rest) = match request(&url, &self.last_event_id) {
                Ok(response) => response,
                Err(e) => return Next::Reconnect(format!("network error: {e}")),
            };
            let status = format!("{} {}", head.status, head.reason);
            match head.status {
                200 => {}
                204 => return Next::End(End::Stopped),
                // Fetch follows redirects for an EventSource (its redirect mode is "follow").
                301 | 302 | 303 | 307 | 308 => {
                    let next = head
                        .header("location")
                        .ok_or_else(|| format!("status {status} without a Location"))
                        .and_then(|location| url.join(location));
                    url = match next {
                        Ok(next) => next,
                        Err(why) => return Next::End(End::Failed(format!("bad redirect: {why}"))),
                    };
                    if report(Report::Redirect(url.to_string())).is_break() {
                        return Next::End(End::Closed);
                    }
                    continue;
                }
                _ => return Next::End(End::Failed(format!("status {status}"))),
            }
            let content_type = head.header("content-type").unwrap_or_default();
            if !is_event_stream(content_type) {
                return Next::End(End::Failed(format!(
                    "Content-Type {content_type:?} is not text/event-stream"
                )));
            }
            if report(Report::Open).is_break() {
                return Next::End(End::Closed);
            }
            return self.read_body(stream, &head, rest, report);
        }
        Next::End(End::Failed(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// Reads the body as it arrives and reports each event, until it ends.
    fn read_body(
        &mut self,
        stream: TcpStream,
        head: &ResponseHead,
        already_read: Vec<u8>,
        report: &mut impl FnMut(Report) -> ControlFlow<()>,
    ) -> Next {
        let mut parser = Parser::new(&self.last_event_id);
        let mut on_bytes = |bytes: &[u8]| {
            // Line by line, so that a `retry:` is reported where it stood among the events.
            for piece in bytes.split_inclusive(|b| *b == b'\n' || *b == b'\r') {
                for event in parser.feed(piece) {
                    if report(Report::Event(event)).is_break() {
                        return ControlFlow::Break(());
                    }
                }
                // Moved by every dispatch, even one without data (`id: 7` and a blank line).
                self.last_event_id = parser.last_event_id().to_string();
                if let Some(ms) = parser.retry.take() {
                    self.reconnection_time = Duration::from_millis(ms);
                    report(Report::Retry(self.reconnection_time))?;
                }
            }
            ControlFlow::Continue(())
        };
        let mut body = BufReader::new(io::Cursor::new(already_read).chain(stream));
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|codings| codings.to_ascii_lowercase().ends_with("chunked"));
        let length = head.header("content-length").and_then(|n| n.parse().ok());
        let read = match chunked {
            true => read_chunked(&mut body, &mut on_bytes),
            false => read_plain(&mut body, length, &mut on_bytes),
        };
        match read {
            Ok(ControlFlow::Break(())) => Next::End(End::Closed),
            Ok(ControlFlow::Continue(())) => Next::Reconnect(String::from("the stream ended")),
            Err(e) => Next::Reconnect(format!("network error: {e}")),
        }
    }
}

/// Sends the request of §9.2.2 and reads the response head. Returns the socket, the head, and
/// whatever of the body came with it.
fn request(url: &Url, last_event_id: &str) -> io::Result<(TcpStream, ResponseHead, Vec<u8>)> {
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(url.host.as_str(), url.port))?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    // Browsers ask for the type, and make the request with cache mode "no-store", which sends
    // `Cache-Control: no-cache`; `Last-Event-ID` only when the last event ID is not empty (§9.2.4).
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
        url.target,
        url.authority()
    );
    if !last_event_id.is_empty() {
        request += &format!("Last-Event-ID: {last_event_id}\r\n");
    }
    request += "\r\n";
    stream.write_all(request.as_bytes())?;

    // The head must come within 30 s; the body may then be quiet as long as it likes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut buf, end) = read_head(&mut stream, deadline, MAX_RESPONSE_HEAD)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "response head too large"))?;
    stream.set_read_timeout(None)?;
    let head = parse_response_head(&buf[..end])
        .map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))?;
    Ok((stream, head, buf.split_off(end)))
}

/// A body that runs until the connection closes, or for `length` bytes.
fn read_plain(
    body: &mut impl BufRead,
    length: Option<u64>,
    on_bytes: &mut impl FnMut(&[u8]) -> ControlFlow<()>,
) -> io::Result<ControlFlow<()>> {
    let mut left = length.unwrap_or(u64::MAX);
    while left > 0 {
        let buf = body.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if on_bytes(&buf[..n]).is_break() {
            return Ok(ControlFlow::Break(()));
        }
        body.consume(n);
        left -= n as u64;
    }
    Ok(ControlFlow::Continue(()))
}

/// A `chunked` body (RFC 9112 §7.1), which servers such as Express and axum send: a hex size
/// line, that many bytes and a CRLF, again and again, until a size of 0.
fn read_chunked(
    body: &mut impl BufRead,
    on_bytes: &mut impl FnMut(&[u8]) -> ControlFlow<()>,
) -> io::Result<ControlFlow<()>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    loop {
        let mut line = String::new();
        if body.by_ref().take(1024).read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // `1a;name=value`: the size in hex, then extensions nobody needs.
        let hex = line.split(';').next().unwrap_or_default().trim();
        if hex.is_empty() || hex.len() > 15 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("bad chunk size"));
        }
        let mut left = usize::from_str_radix(hex, 16).map_err(|_| invalid("bad chunk size"))?;
        if left == 0 {
            // The last chunk. Trailers may follow; the stream is over either way.
            return Ok(ControlFlow::Continue(()));
        }
        while left > 0 {
            let buf = body.fill_buf()?;
            if buf.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let n = buf.len().min(left);
            if on_bytes(&buf[..n]).is_break() {
                return Ok(ControlFlow::Break(()));
            }
            body.consume(n);
            left -= n;
        }
        let mut crlf = String::new();
        body.by_ref().take(2).read_line(&mut crlf)?;
        if !crlf.trim_end_matches(['\r', '\n']).is_empty() {
            return Err(invalid("a chunk longer than its size"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(stream: &str) -> Vec<Event> {
        Parser::default().feed(stream.as_bytes())
    }

    fn event(event_type: &str, data: &str, id: &str) -> Event {
        Event {
            event_type: event_type.into(),
            data: data.into(),
            last_event_id: id.into(),
        }
    }

    fn message(data: &str, id: &str) -> Event {
        event("message", data, id)
    }

    fn data_of(stream: &str) -> Vec<String> {
        parse(stream).into_iter().map(|e| e.data).collect()
    }

    // ---- The parser, case by case ----

    #[test]
    fn all_three_line_ends_work() {
        assert_eq!(
            parse("data: a\r\n\r\ndata: b\n\ndata: c\r\r"),
            [message("a", ""), message("b", ""), message("c", "")]
        );
    }

    #[test]
    fn crlf_split_across_reads_is_one_break() {
        let mut parser = Parser::default();
        assert!(parser.feed(b"data: a\r").is_empty());
        assert_eq!(parser.feed(b"\ndata: b\r\n\r\n"), [message("a\nb", "")]);
    }

    #[test]
    fn a_character_split_across_reads_is_whole() {
        let mut parser = Parser::default();
        let bytes = "data: é\n\n".as_bytes();
        assert!(parser.feed(&bytes[..7]).is_empty());
        assert_eq!(parser.feed(&bytes[7..]), [message("é", "")]);
    }

    #[test]
    fn one_space_after_the_colon_is_stripped() {
        assert_eq!(data_of("data:x\n\ndata:  y\n\n"), ["x", " y"]);
    }

    #[test]
    fn comments_fire_nothing_and_are_counted() {
        let mut parser = Parser::default();
        assert!(parser.feed(b": heartbeat\n\n").is_empty());
        assert_eq!(parser.comments, 1);
    }

    #[test]
    fn a_frame_without_data_fires_nothing_but_sets_the_id() {
        let mut parser = Parser::default();
        assert!(parser.feed(b"id: 7\n\n").is_empty());
        assert_eq!(parser.last_event_id(), "7");
        assert_eq!(parser.feed(b"data: x\n\n"), [message("x", "7")]);
    }

    #[test]
    fn the_id_moves_only_when_an_event_is_dispatched() {
        let mut parser = Parser::default();
        parser.feed(b"id: 7\ndata: cut off");
        assert_eq!(parser.last_event_id(), "", "no blank line yet");
    }

    #[test]
    fn event_type_resets_after_dispatch() {
        let events = parse("event: publish\ndata: a\n\ndata: b\n\n");
        assert_eq!(events, [event("publish", "a", ""), message("b", "")]);
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        assert!(parse("data: cut off\n").is_empty());
        assert!(parse("data: no line end").is_empty());
    }

    #[test]
    fn the_last_event_id_survives_a_reconnect() {
        // A new connection's parser starts from the id the last one left.
        let mut parser = Parser::new("41");
        assert_eq!(
            parser.feed(b"data: replayed\n\n"),
            [message("replayed", "41")]
        );
    }

    #[test]
    fn retry_is_taken_in_milliseconds() {
        let mut parser = Parser::default();
        parser.feed(b"retry: 2500\n\n");
        assert_eq!(parser.retry.take(), Some(2500));
        parser.feed(b"retry: 99999999999999999999999\n\n");
        assert_eq!(parser.retry, None, "too big for any clock: ignored");
    }

    // ---- The web-platform-tests eventsource/format-* cases, as parser tests ----

    #[test]
    fn format_bom() {
        // Only a BOM at the very start is dropped; a later one makes a field name unknown.
        assert_eq!(
            data_of("\u{feff}data:1\n\n\u{feff}data:2\n\ndata:3\n\n"),
            ["1", "3"]
        );
    }

    #[test]
    fn format_bom_2() {
        assert_eq!(
            data_of("\u{feff}\u{feff}data:1\n\ndata:2\n\ndata:3\n\n"),
            ["2", "3"]
        );
    }

    #[test]
    fn format_comments() {
        let long = "x".repeat(2049);
        let stream =
            format!("data:1\r:\0\n:\r\ndata:2\n:{long}\rdata:3\n:data:fail\r:{long}\ndata:4\n\n");
        assert_eq!(data_of(&stream), ["1\n2\n3\n4"]);
    }

    #[test]
    fn format_data_before_final_empty_line() {
        let mut parser = Parser::default();
        let events = parser.feed(b"retry:1000\ndata:test1\n\nid:test\ndata:test2");
        assert_eq!(events, [message("test1", "")]);
        assert_eq!(parser.last_event_id(), "", "test2 never dispatched");
    }

    #[test]
    fn format_field_data() {
        assert_eq!(
            data_of("data:\n\ndata\ndata\n\ndata:test\n\n"),
            ["", "\n", "test"]
        );
    }

    #[test]
    fn format_field_event() {
        let events = parse("event:test\ndata:x\n\ndata:x\n\n");
        assert_eq!(events, [event("test", "x", ""), message("x", "")]);
    }

    #[test]
    fn format_field_event_empty() {
        assert_eq!(parse("event: \ndata:data\n\n"), [message("data", "")]);
    }

    #[test]
    fn format_field_id() {
        assert_eq!(
            parse("id: 1\ndata: x\n\nid\ndata: x\n\n"),
            [message("x", "1"), message("x", "")]
        );
    }

    #[test]
    fn format_field_id_2() {
        assert_eq!(
            parse("id:1\ndata:x\n\ndata:x\n\nid:\ndata:x\n\n"),
            [message("x", "1"), message("x", "1"), message("x", "")]
        );
    }

    #[test]
    fn format_field_id_null() {
        assert_eq!(
            parse("id:1\ndata:a\n\nid:2\0x\ndata:b\n\n"),
            [message("a", "1"), message("b", "1")]
        );
    }

    #[test]
    fn format_field_parsing() {
        let stream = "data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n";
        assert_eq!(data_of(stream), ["\0\n 2\n1\n3\n\n4"]);
    }

    #[test]
    fn format_field_retry() {
        let mut parser = Parser::default();
        parser.feed(b"retry:03000\ndata:x\n\n");
        assert_eq!(parser.retry, Some(3000));
    }

    #[test]
    fn format_field_retry_bogus() {
        let mut parser = Parser::default();
        parser.feed(b"retry:3000\nretry:1000x\ndata:x\n\n");
        assert_eq!(parser.retry, Some(3000));
        // Not in the web-platform-tests, but the same rule: a sign is not a digit.
        parser.feed(b"retry:+1000\nretry: -1\n\n");
        assert_eq!(parser.retry, Some(3000));
    }

    #[test]
    fn format_field_retry_empty() {
        let mut parser = Parser::default();
        assert_eq!(parser.feed(b"retry\ndata:test\n\n"), [message("test", "")]);
        assert_eq!(parser.retry, None);
    }

    #[test]
    fn format_field_unknown() {
        let stream =
            "data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n";
        assert_eq!(data_of(stream), ["test\n\ntest"]);
    }

    #[test]
    fn format_leading_space() {
        assert_eq!(
            data_of("data:\ttest\rdata: \ndata:test\n\n"),
            ["\ttest\n\ntest"]
        );
    }

    #[test]
    fn format_newlines() {
        assert_eq!(
            data_of("data:test\r\ndata\ndata:test\r\n\r"),
            ["test\n\ntest"]
        );
    }

    #[test]
    fn format_null_character() {
        assert_eq!(data_of("data:\0\n\n\n\n"), ["\0"]);
    }

    #[test]
    fn format_utf_8() {
        assert_eq!(data_of("data:ok\u{2026}\n\n"), ["ok…"]);
        let mut parser = Parser::default();
        let events = parser.feed(b"data:\xff\xfeok\n\n");
        assert_eq!(
            events[0].data, "\u{fffd}\u{fffd}ok",
            "invalid bytes become U+FFFD"
        );
    }

    // ---- URLs, response heads, chunked bodies ----

    #[test]
    fn urls() {
        let url = Url::parse("http://127.0.0.1:3000/events?x=1#top").unwrap();
        assert_eq!(
            url,
            Url {
                host: "127.0.0.1".into(),
                port: 3000,
                target: "/events?x=1".into()
            }
        );
        assert_eq!(url.to_string(), "http://127.0.0.1:3000/events?x=1");
        let url = Url::parse("HTTP://example.com").unwrap();
        assert_eq!((url.port, url.target.as_str()), (80, "/"));
        assert_eq!(url.authority(), "example.com");
        let url = Url::parse("http://[::1]:8080?a").unwrap();
        assert_eq!((url.host.as_str(), url.target.as_str()), ("::1", "/?a"));
        assert_eq!(url.authority(), "[::1]:8080");
        for bad in [
            "https://example.com/",
            "localhost:3000",
            "ftp://x/",
            "http://:80/",
            "http://a:99999/",
            "http://user@host/",
            "http://a/b c",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirects_resolve_against_the_url() {
        let url = Url::parse("http://a:1/x/events?q").unwrap();
        let join = |location| url.join(location).unwrap().to_string();
        assert_eq!(join("/other"), "http://a:1/other");
        assert_eq!(join("stream"), "http://a:1/x/stream");
        assert_eq!(join("http://b/s"), "http://b/s");
        assert_eq!(join("//c:2/s"), "http://c:2/s");
        assert!(url.join("https://b/s").is_err());
    }

    #[test]
    fn response_heads() {
        let head = parse_response_head(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A:  b \r\n\r\n",
        )
        .unwrap();
        assert_eq!((head.status, head.reason.as_str()), (200, "OK"));
        assert_eq!(head.header("content-type"), Some("text/event-stream"));
        assert_eq!(head.header("x-a"), Some("b"));
        assert_eq!(
            parse_response_head(b"HTTP/1.1 418 \r\n\r\n")
                .unwrap()
                .status,
            418
        );
        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        ] {
            assert!(parse_response_head(bad).is_err(), "{bad:?}");
        }
    }

    /// Reads a chunked body from bytes; returns what it delivered and how it ended.
    fn dechunk(body: &[u8]) -> (Vec<u8>, io::Result<ControlFlow<()>>) {
        let mut got = Vec::new();
        let result = read_chunked(&mut io::Cursor::new(body), &mut |bytes: &[u8]| {
            got.extend_from_slice(bytes);
            ControlFlow::Continue(())
        });
        (got, result)
    }

    #[test]
    fn chunked_bodies() {
        let (got, end) = dechunk(b"5\r\ndata:\r\n3;ext=1\r\n x\n\r\n1\r\n\n\r\n0\r\n\r\n");
        assert_eq!(got, b"data: x\n\n");
        assert!(matches!(end, Ok(ControlFlow::Continue(()))));
        for bad in [
            &b"zz\r\n"[..],
            b"+5\r\nhello\r\n",
            b"5\r\nhelloXX\r\n0\r\n\r\n",
            b"5\r\nhel",
        ] {
            assert!(dechunk(bad).1.is_err(), "{bad:?}");
        }
    }
}
