//! The other half: a client that does what a browser's `EventSource` does, with std alone.
//!
//! [`Parser`] turns the bytes of a stream into events as §9.2.5 "Parsing an event stream" and
//! §9.2.6 "Interpreting an event stream" say, step by step, with no socket in sight; the tests read
//! this server's streams with it. [`EventSource`] is the connection of §9.2.2-§9.2.3: the request,
//! the checks on the response, the body, and reconnecting, with the HTTP a browser's network
//! stack does around it: every address of a name, interim `1xx` heads, redirects resolved as
//! RFC 3986 §5.2 says, the body's length as RFC 9112 §6.3 says. Left out: `https://` (std has no
//! TLS), cookies, CORS, and every method but `GET`.

use crate::http::{digits, head_end};
use crate::lab::is_event_stream;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
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

/// The longest line a [`Parser`] takes, in bytes before its line end: 1 MiB. The spec sets no
/// limit, and a browser holds whatever comes until memory runs out; a line of this server is at
/// most a `data:` line of a 64 KiB publish, so 16 times that leaves room for other servers while
/// a stream that never sends a line end cannot make this client hold more.
pub const MAX_LINE: usize = 1024 * 1024;

/// The most data one event may gather over its `data:` lines before its blank line: 16 MiB, room
/// for many long lines while bounding what one connection can make this client hold.
pub const MAX_DATA: usize = 16 * 1024 * 1024;

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
    /// Set when a line or an event's data went past [`MAX_LINE`] or [`MAX_DATA`]; from then on the
    /// parser takes no more bytes.
    too_long: Option<String>,
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
            too_long: None,
        }
    }

    /// The event source's last event ID: what a reconnect sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Why the parser stopped taking bytes, if a line or an event's data grew past its limit.
    pub fn too_long(&self) -> Option<&str> {
        self.too_long.as_deref()
    }

    /// Reads bytes as they arrive, in pieces of any size; returns the events they complete.
    ///
    /// What is left at the end of a stream, an unfinished line or an event without its blank
    /// line, is simply never completed: §9.2.5 says to discard it. Once [`Parser::too_long`] says
    /// why, bytes are ignored.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &byte in bytes {
            if self.too_long.is_some() {
                break;
            }
            // §9.2.5: a line ends in CRLF, a lone LF or a lone CR. The CR of a CRLF may end one
            // read and its LF start the next; `after_cr` keeps that one line end.
            if byte == b'\n' && self.after_cr {
                self.after_cr = false;
                continue;
            }
            self.after_cr = byte == b'\r';
            if byte != b'\r' && byte != b'\n' {
                if self.line.len() == MAX_LINE {
                    self.too_long = Some(format!("a line longer than {MAX_LINE} bytes"));
                    break;
                }
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
            "data" if self.data.len() + value.len() + 1 > MAX_DATA => {
                self.too_long = Some(format!("an event with more than {MAX_DATA} bytes of data"));
            }
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
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else {
            target
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
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            80 => host,
            port => format!("{host}:{port}"),
        }
    }
}

/// Where a reference such as a redirect's `Location` points, seen from `base`: RFC 3986 §5.2.2
/// "Transform References", step by step. A reference is split as §3 (Appendix B) splits a URI:
/// `scheme:` up to the first colon if no `/`, `?` or `#` comes before it, `//authority` up to the
/// next `/`, `?` or `#`, then the path, `?query` and `#fragment`. The fragment is dropped, as a
/// request never carries one. Only an `http://` result is a [`Url`]: anything else is an error.
fn resolve(base: &Url, reference: &str) -> Result<Url, String> {
    let reference = reference.split('#').next().unwrap_or_default();
    let (scheme, rest) = match reference.find(['/', '?', '#', ':']) {
        Some(i) if reference.as_bytes()[i] == b':' && i > 0 => {
            (Some(&reference[..i]), &reference[i + 1..])
        }
        _ => (None, reference),
    };
    let (authority, rest) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?']).unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, rest),
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let (base_path, base_query) = match base.target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (base.target.as_str(), None),
    };
    // Only `http://host` can be followed: for anything else, `Url::parse` says what is wrong
    // (`https://` included: std has no TLS).
    if let Some(scheme) = scheme
        && (!scheme.eq_ignore_ascii_case("http") || authority.is_none())
    {
        return Url::parse(reference);
    }
    // "If defined(R.scheme)" or "if defined(R.authority)": the reference's own authority, path
    // and query.
    let (authority, path, query) = if let Some(authority) = authority {
        (authority.to_string(), remove_dot_segments(path), query)
    } else if path.is_empty() {
        // "If (R.path == "")": the base's path, and its query unless the reference has one.
        (
            base.authority(),
            base_path.to_string(),
            query.or(base_query),
        )
    } else if path.starts_with('/') {
        (base.authority(), remove_dot_segments(path), query)
    } else {
        // §5.2.3 "Merge Paths": the reference replaces what follows the base path's last `/`.
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        let merged = format!("{dir}{path}");
        (base.authority(), remove_dot_segments(&merged), query)
    };
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Url::parse(&format!("http://{authority}{path}{query}"))
}

/// RFC 3986 §5.2.4 "Remove Dot Segments": `.` and `..` segments go, each `..` with the segment
/// before it, so `/a/b/../c/./d` is `/a/c/d`. The RFC's input and output buffers, rule by rule.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../").or(input.strip_prefix("./")) {
            // A: a leading `../` or `./` goes.
            input = rest;
        } else if input.starts_with("/./") || input == "/." {
            // B: `/./` or a final `/.` becomes `/`.
            input = input
                .get(2..)
                .filter(|rest| !rest.is_empty())
                .unwrap_or("/");
        } else if input.starts_with("/../") || input == "/.." {
            // C: `/../` or a final `/..` becomes `/`, and the last segment of the output goes.
            input = input
                .get(3..)
                .filter(|rest| !rest.is_empty())
                .unwrap_or("/");
            output.truncate(output.rfind('/').unwrap_or(0));
        } else if input == "." || input == ".." {
            // D: a lone `.` or `..` goes.
            input = "";
        } else {
            // E: the first segment, with its leading `/` if any, moves to the output.
            let end = input
                .bytes()
                .skip(1)
                .position(|b| b == b'/')
                .map_or(input.len(), |i| i + 1);
            output.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    output
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

    /// Every value of a list header, over all its lines: `a, b` and a second line `c` are `a`,
    /// `b`, `c` (RFC 9110 §5.3: lines of one field name combine into one comma-separated list).
    fn list(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim)
            .collect()
    }
}

/// How a response's body ends (RFC 9112 §6.3 "Message Body Length").
#[derive(Debug, PartialEq)]
enum Framing {
    /// `Transfer-Encoding` whose final coding is `chunked`: read chunks until the last one.
    Chunked,
    /// `Content-Length` and no `Transfer-Encoding`: exactly this many bytes.
    Length(u64),
    /// Neither, or a `Transfer-Encoding` that does not end in `chunked`: until the server closes.
    UntilClose,
}

/// Finds how a `200` response's body is framed, RFC 9112 §6.3's rules for a response, in order.
fn framing(head: &ResponseHead) -> Result<Framing, String> {
    let codings = head.list("transfer-encoding");
    if !codings.is_empty() {
        // Rule 3: Transfer-Encoding overrides Content-Length. Rule 4: "If a Transfer-Encoding
        // header field is present in a response and the chunked transfer coding is not the final
        // encoding, the message body length is determined by reading the connection until it is
        // closed by the server." Codings before a final `chunked` (gzip, say) are not undone
        // here: this client sends no `TE` header, so a server has no reason to use them.
        return Ok(match codings.last() {
            Some(last) if last.eq_ignore_ascii_case("chunked") => Framing::Chunked,
            _ => Framing::UntilClose,
        });
    }
    let lengths = head.list("content-length");
    let Some(first) = lengths.first() else {
        // Rule 8: a response with no declared length runs until the server closes.
        return Ok(Framing::UntilClose);
    };
    // Rule 5: an invalid Content-Length makes the framing invalid, and a user agent "MUST close
    // the connection to the server and discard the received response". `Content-Length = 1*DIGIT`
    // (RFC 9110 §8.6); a list (over one line or several) passes only if every value is valid
    // and all are the same, as in `42, 42`.
    match digits(first) {
        Some(length) if lengths.iter().all(|other| other == first) => Ok(Framing::Length(length)),
        _ => Err(format!(
            "an invalid Content-Length: {:?}",
            lengths.join(", ")
        )),
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
    // RFC 9112 §4: `status-code = 3DIGIT`; Rust's `parse` alone would take `+20`.
    if !version.starts_with("HTTP/1.")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
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
    /// A `retry:` field set the reconnection time to this, as the stream wrote it.
    Retry(Duration),
    /// A redirect is followed to this URL.
    Redirect(String),
    /// The body ended, the network failed, or the body was silent for the idle timeout: the
    /// browser's `error`, with `readyState` `CONNECTING`. The text says which.
    Lost(String),
    /// The reconnection time, or [`MIN_RECONNECTION_DELAY`] if that is longer, is being waited
    /// out; then the request goes again, with this `Last-Event-ID` unless it is empty.
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
    /// `text/event-stream`. A browser's `readyState` is `CLOSED`, and it never reconnects. This
    /// client also fails it, where a browser has no limit, for a line over [`MAX_LINE`] or an
    /// event's data over [`MAX_DATA`].
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

/// How long one address may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest wait before a reconnect, whatever `retry:` asked. §9.2.3 "reestablish the
/// connection" has the user agent wait the reconnection time, then "Optionally, wait some more",
/// so a floor keeps to the spec. Without one, `retry: 0` and a stream that ends at once would
/// have this client ask again in a tight loop; 100 ms caps that at ten requests a second, and is
/// still quicker than a person notices.
pub const MIN_RECONNECTION_DELAY: Duration = Duration::from_millis(100);

/// A connection to an event stream that reconnects as a browser's `EventSource` does.
pub struct EventSource {
    /// Where the next connection goes: the URL given, until a redirect is followed; from then on
    /// the URL it led to. In fetch, a redirect adds its target to the request's URL list, and a
    /// reconnect fetches the request's current URL, the last of that list (whatwg/html#503
    /// discusses it). Chromium does the same: after a `307` from `/start` to `/target`, every
    /// reconnect asks for `/target`.
    pub url: Url,
    /// Sent as `Last-Event-ID` when not empty; a new `EventSource` starts with none.
    pub last_event_id: String,
    /// The reconnection time as the spec keeps it: the default, then what `retry:` says. The
    /// wait before a reconnect is this, but at least [`MIN_RECONNECTION_DELAY`].
    pub reconnection_time: Duration,
    /// A body that brings no byte for this long is taken as a lost connection, and reconnected;
    /// `None` (the default, and what a browser does) waits forever, and so does zero. Why have
    /// one: a peer that vanishes without a word (a cable pulled, a NAT entry dropped) sends no
    /// FIN, and a reader waits forever. A browser's `EventSource` has no such timeout either,
    /// which is why servers send heartbeats (this one a comment line when it has sent nothing for
    /// `HEARTBEAT_MS`): with a timeout a few times that, the silence is noticed.
    pub idle_timeout: Option<Duration>,
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
            idle_timeout: None,
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
            // §9.2.3 "reestablish the connection": fire `error`, wait the reconnection time (and
            // perhaps more), then fetch again with the last event ID.
            let delay = self.reconnection_time.max(MIN_RECONNECTION_DELAY);
            let reconnecting = Report::Reconnecting {
                delay,
                last_event_id: self.last_event_id.clone(),
            };
            if report(Report::Lost(why)).is_break() || report(reconnecting).is_break() {
                return End::Closed;
            }
            thread::sleep(delay);
        }
    }

    /// One connection, with its redirects: the request, the checks of §9.2.2, then the body.
    fn connect(&mut self, report: &mut impl FnMut(Report) -> ControlFlow<()>) -> Next {
        let mut redirects = 0;
        loop {
            let url = self.url.clone();
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
                    // Fetch gives up at the 21st redirect, without following it.
                    if redirects == MAX_REDIRECTS {
                        let why = format!("more than {MAX_REDIRECTS} redirects");
                        return Next::End(End::Failed(why));
                    }
                    let next = head
                        .header("location")
                        .ok_or_else(|| format!("status {status} without a Location"))
                        .and_then(|location| resolve(&url, location));
                    self.url = match next {
                        Ok(next) => next,
                        Err(why) => return Next::End(End::Failed(format!("bad redirect: {why}"))),
                    };
                    if report(Report::Redirect(self.url.to_string())).is_break() {
                        return Next::End(End::Closed);
                    }
                    redirects += 1;
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
            // RFC 9112 §6.3: a response whose framing cannot be trusted is discarded and its
            // connection closed, which for fetch is a network error, and §9.2.2 reconnects after
            // one. Like a browser, this happens before `open`.
            let framing = match framing(&head) {
                Ok(framing) => framing,
                Err(why) => return Next::Reconnect(format!("network error: {why}")),
            };
            if report(Report::Open).is_break() {
                return Next::End(End::Closed);
            }
            return self.read_body(stream, framing, rest, report);
        }
    }

    /// Reads the body as it arrives and reports each event, until it ends.
    fn read_body(
        &mut self,
        stream: TcpStream,
        framing: Framing,
        already_read: Vec<u8>,
        report: &mut impl FnMut(Report) -> ControlFlow<()>,
    ) -> Next {
        let idle_timeout = self.idle_timeout.filter(|timeout| !timeout.is_zero());
        if let Err(e) = stream.set_read_timeout(idle_timeout) {
            return Next::Reconnect(format!("network error: {e}"));
        }
        let mut parser = Parser::new(&self.last_event_id);
        let mut on_bytes = |bytes: &[u8]| {
            // Line by line, so that a `retry:` is reported where it stood among the events.
            for piece in bytes.split_inclusive(|b| *b == b'\n' || *b == b'\r') {
                for event in parser.feed(piece) {
                    if report(Report::Event(event)).is_break() {
                        return ControlFlow::Break(Next::End(End::Closed));
                    }
                }
                // A line or an event past its limit fails the connection rather than reconnect:
                // the event was not dispatched, so the last event ID still points before it, and a
                // server that replays would send it again, and again.
                if let Some(why) = parser.too_long() {
                    return ControlFlow::Break(Next::End(End::Failed(why.to_string())));
                }
                // Moved by every dispatch, even one without data (`id: 7` and a blank line).
                self.last_event_id = parser.last_event_id().to_string();
                if let Some(ms) = parser.retry.take() {
                    self.reconnection_time = Duration::from_millis(ms);
                    if report(Report::Retry(self.reconnection_time)).is_break() {
                        return ControlFlow::Break(Next::End(End::Closed));
                    }
                }
            }
            ControlFlow::Continue(())
        };
        let mut body = BufReader::new(io::Cursor::new(already_read).chain(stream));
        let read = match framing {
            Framing::Chunked => read_chunked(&mut body, &mut on_bytes),
            Framing::Length(length) => read_plain(&mut body, Some(length), &mut on_bytes),
            Framing::UntilClose => read_plain(&mut body, None, &mut on_bytes),
        };
        match read {
            Ok(ControlFlow::Break(next)) => next,
            Ok(ControlFlow::Continue(())) => Next::Reconnect(String::from("the stream ended")),
            // A read timeout shows as `WouldBlock` on Unix and `TimedOut` on Windows.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Next::Reconnect(format!(
                    "no bytes for {} ms: the connection is taken as lost",
                    idle_timeout.unwrap_or_default().as_millis()
                ))
            }
            Err(e) => Next::Reconnect(format!("network error: {e}")),
        }
    }
}

/// Sends the request of §9.2.2 and reads the response head. Returns the socket, the head, and
/// whatever of the body came with it.
fn request(url: &Url, last_event_id: &str) -> io::Result<(TcpStream, ResponseHead, Vec<u8>)> {
    let addrs = (url.host.as_str(), url.port).to_socket_addrs()?;
    let mut stream = connect_any(addrs, CONNECT_TIMEOUT)?;
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

    // The head must come within 30 s; how long the body may be quiet is `idle_timeout`'s call.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (head, rest) = read_final_head(&mut stream, deadline)?;
    Ok((stream, head, rest))
}

/// Connects to the first of `addrs` that answers, each given `timeout`; the last error if none
/// does. A name can have several addresses: `localhost` is often `::1` and `127.0.0.1`, and a
/// server listening on only one of them refuses the other. Browsers race the addresses a moment
/// apart ("Happy Eyeballs", RFC 8305); trying them in turn is slower when one is unreachable but
/// reaches the same server.
fn connect_any(
    addrs: impl IntoIterator<Item = SocketAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = io::Error::new(e.kind(), format!("{addr}: {e}")),
        }
    }
    Err(last_error)
}

/// Reads response heads until a final one (RFC 9112 §4), returning it and whatever of the body
/// came with it. RFC 9110 §15.2: a `1xx` head is interim (`100 Continue`, `103 Early Hints`)
/// and the final response follows it, so it is read and set aside; `101 Switching Protocols`
/// answers an `Upgrade` this client never asks for, so it is returned, and the connection fails
/// on its status. Each head may be up to 16 KiB, and all must come by `deadline`.
fn read_final_head(
    stream: &mut TcpStream,
    deadline: Instant,
) -> io::Result<(ResponseHead, Vec<u8>)> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let mut buf = Vec::new();
    loop {
        if let Some(end) = head_end(&buf) {
            let rest = buf.split_off(end);
            let head = parse_response_head(&buf).map_err(invalid)?;
            buf = rest;
            match head.status {
                100 | 102..=199 => continue,
                _ => return Ok((head, buf)),
            }
        }
        // Never more than 16 KiB in hand, so a head found in it is no longer than that.
        let room = MAX_RESPONSE_HEAD - buf.len();
        if room == 0 {
            return Err(invalid(String::from("response head too large")));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let mut more = [0; 4096];
        let n = match stream.read(&mut more[..room.min(4096)]) {
            // A read with a timeout is not restarted after the process was stopped and continued
            // (Ctrl-Z, then fg; see signal(7)): it fails with EINTR, and only needs doing again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            read => read?,
        };
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&more[..n]);
    }
}

/// `fill_buf`, done again when it fails with EINTR: a read with a timeout (`--idle-timeout`) is
/// not restarted after the process was stopped and continued (Ctrl-Z, then fg; see signal(7)).
fn fill(body: &mut impl BufRead) -> io::Result<&[u8]> {
    // Returning the buffer from inside the loop does not pass today's borrow checker, so the loop
    // only waits for a fill that works, and the call after it hands back what is now buffered.
    while let Err(e) = body.fill_buf() {
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    body.fill_buf()
}

/// A body that runs until the connection closes, or for `length` bytes.
fn read_plain<B>(
    body: &mut impl BufRead,
    length: Option<u64>,
    on_bytes: &mut impl FnMut(&[u8]) -> ControlFlow<B>,
) -> io::Result<ControlFlow<B>> {
    let mut left = length.unwrap_or(u64::MAX);
    while left > 0 {
        let buf = fill(body)?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if let ControlFlow::Break(stop) = on_bytes(&buf[..n]) {
            return Ok(ControlFlow::Break(stop));
        }
        body.consume(n);
        left -= n as u64;
    }
    Ok(ControlFlow::Continue(()))
}

/// A `chunked` body (RFC 9112 §7.1), which servers such as Express and axum send: a hex size
/// line, that many bytes and a CRLF, again and again, until a size of 0.
fn read_chunked<B>(
    body: &mut impl BufRead,
    on_bytes: &mut impl FnMut(&[u8]) -> ControlFlow<B>,
) -> io::Result<ControlFlow<B>> {
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
            let buf = fill(body)?;
            if buf.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let n = buf.len().min(left);
            if let ControlFlow::Break(stop) = on_bytes(&buf[..n]) {
                return Ok(ControlFlow::Break(stop));
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

    /// `reference` resolved against `base`, as text.
    fn resolved(base: &str, reference: &str) -> String {
        let base = Url::parse(base).unwrap();
        match resolve(&base, reference) {
            Ok(url) => url.to_string(),
            Err(why) => format!("error: {why}"),
        }
    }

    #[test]
    fn redirects_that_went_wrong_before() {
        // A `://` inside the query is not a scheme: the first colon comes after a `/`.
        assert_eq!(
            resolved("http://a:1/events", "/login?next=http://x/"),
            "http://a:1/login?next=http://x/"
        );
        // A query alone keeps the path.
        assert_eq!(
            resolved("http://a:1/a/events?page=1", "?page=2"),
            "http://a:1/a/events?page=2"
        );
        // Dot segments are resolved, not sent.
        assert_eq!(resolved("http://a:1/a/events", "../b"), "http://a:1/b");
    }

    #[test]
    fn redirects_resolve_as_rfc_3986_5_4_1_says() {
        // §5.4.1 "Normal Examples", with base `http://a/b/c/d;p?q`; each fragment dropped, as a
        // request carries none. `g:h` is in the next test: it is not `http://`.
        let base = "http://a/b/c/d;p?q";
        for (reference, target) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            ("g?y#s", "http://a/b/c/g?y"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("g;x?y#s", "http://a/b/c/g;x?y"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            // §5.4.2 "Abnormal Examples": more `..` than there are segments, and dots that are
            // parts of names.
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            // Absolute, with a port, and its dots resolved too.
            ("http://b:8/s/../t", "http://b:8/t"),
            ("HTTP://b/s", "http://b/s"),
        ] {
            assert_eq!(resolved(base, reference), target, "{reference:?}");
        }
    }

    #[test]
    fn only_http_redirects_are_followed() {
        let base = "http://a/b";
        assert_eq!(
            resolved(base, "https://b/s"),
            "error: https://b/s: https is not supported (std has no TLS); use http://"
        );
        for reference in ["g:h", "ftp://b/", "http:g", "//", "//u@b/"] {
            assert!(
                resolved(base, reference).starts_with("error: "),
                "{reference}"
            );
        }
    }

    #[test]
    fn dot_segments() {
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("mid/content=5/../6"), "mid/6");
        assert_eq!(remove_dot_segments("/a/."), "/a/");
        assert_eq!(remove_dot_segments("/a/.."), "/");
        assert_eq!(remove_dot_segments("/é/../ü"), "/ü");
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
            b"HTTP/1.1 +20 OK\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
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

    /// How a `200` head with these header lines frames its body.
    fn framing_of(headers: &str) -> Result<Framing, String> {
        let head = format!("HTTP/1.1 200 OK\r\n{headers}\r\n");
        framing(&parse_response_head(head.as_bytes()).unwrap())
    }

    #[test]
    fn only_a_final_chunked_coding_is_chunked() {
        assert_eq!(
            framing_of("Transfer-Encoding: chunked\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing_of("transfer-encoding: gzip, CHUNKED\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing_of("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
            Ok(Framing::Chunked)
        );
        for not_final in ["notchunked", "chunked, gzip", "gzip", "chunked;x"] {
            assert_eq!(
                framing_of(&format!("Transfer-Encoding: {not_final}\r\n")),
                Ok(Framing::UntilClose),
                "{not_final}"
            );
        }
    }

    #[test]
    fn transfer_encoding_overrides_content_length() {
        assert_eq!(
            framing_of("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing_of("Content-Length: 5\r\nTransfer-Encoding: gzip\r\n"),
            Ok(Framing::UntilClose)
        );
        // Even an invalid length is no error when Transfer-Encoding is there.
        assert_eq!(
            framing_of("Content-Length: x\r\nTransfer-Encoding: chunked\r\n"),
            Ok(Framing::Chunked)
        );
    }

    #[test]
    fn content_length_must_be_digits_and_agree() {
        assert_eq!(framing_of(""), Ok(Framing::UntilClose));
        assert_eq!(
            framing_of("Content-Length: 42\r\n"),
            Ok(Framing::Length(42))
        );
        assert_eq!(
            framing_of("Content-Length: 42, 42\r\n"),
            Ok(Framing::Length(42))
        );
        assert_eq!(
            framing_of("Content-Length: 42\r\nContent-Length: 42\r\n"),
            Ok(Framing::Length(42))
        );
        for bad in [
            "Content-Length: +5\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 5x\r\n",
            "Content-Length: \r\n",
            "Content-Length: 42, 43\r\n",
            "Content-Length: 42\r\nContent-Length: 7\r\n",
            "Content-Length: 99999999999999999999999\r\n",
        ] {
            assert!(framing_of(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            framing_of("Content-Length: 42\r\ncontent-length: 7\r\n"),
            Err(String::from(r#"an invalid Content-Length: "42, 7""#))
        );
    }

    // ---- Bounds ----

    #[test]
    fn a_line_may_be_max_line_bytes_and_no_more() {
        let mut parser = Parser::default();
        let mut stream = b"data:".to_vec();
        stream.resize(MAX_LINE, b'x');
        stream.extend_from_slice(b"\n\n");
        let events = parser.feed(&stream);
        assert_eq!(events[0].data.len(), MAX_LINE - 5);
        assert_eq!(parser.too_long(), None);

        // One byte more, even without a line end, stops the parser, whatever follows.
        let mut parser = Parser::default();
        stream.insert(0, b'x');
        assert!(parser.feed(&stream[..MAX_LINE]).is_empty());
        assert_eq!(parser.too_long(), None, "exactly the limit, line not ended");
        assert!(parser.feed(&stream[MAX_LINE..]).is_empty());
        assert_eq!(parser.too_long(), Some("a line longer than 1048576 bytes"));
        assert!(parser.feed(b"\ndata: after\n\n").is_empty());
    }

    #[test]
    fn an_event_may_gather_max_data_bytes_and_no_more() {
        // 32 lines of 512 KiB - 1 data bytes: each adds 512 KiB to the buffer with its LF.
        let piece = MAX_DATA / 32;
        let mut line = b"data:".to_vec();
        line.resize(5 + piece - 1, b'x');
        line.push(b'\n');
        let mut parser = Parser::default();
        for _ in 0..32 {
            assert!(parser.feed(&line).is_empty());
        }
        assert_eq!(parser.too_long(), None, "exactly the limit");
        assert_eq!(parser.feed(b"\n")[0].data.len(), MAX_DATA - 1);

        for _ in 0..32 {
            parser.feed(&line);
        }
        parser.feed(b"data:\n");
        assert_eq!(
            parser.too_long(),
            Some("an event with more than 16777216 bytes of data")
        );
        assert!(parser.feed(b"\n").is_empty(), "never dispatched");
    }

    // ---- Connecting ----

    /// A loopback address where nothing listens: a port that was just free.
    fn closed_port() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    #[test]
    fn every_address_is_tried_in_turn() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live = listener.local_addr().unwrap();
        let (dead, timeout) = (closed_port(), Duration::from_secs(5));
        let stream = connect_any([dead, dead, live], timeout).unwrap();
        assert_eq!(stream.peer_addr().unwrap(), live);

        let e = connect_any([dead], timeout).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert!(e.to_string().starts_with(&format!("{dead}: ")), "{e}");
        let e = connect_any([], timeout).unwrap_err();
        assert_eq!(e.to_string(), "the host has no address");
    }
}
