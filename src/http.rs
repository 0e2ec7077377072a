//! Just enough HTTP/1.1 (RFC 9112) to serve a page and a stream: read a request head off a
//! socket, parse it, and write a response back.
//!
//! `parse_request` is a pure function over bytes; the socket work is in `read_head`, `read_body`
//! and `write_response`. Every bad request becomes one [`HttpError`], and `HttpError::status` is
//! the one place that maps it to a status code. Left out on purpose: keep-alive (every response
//! closes its connection, the stream included), chunked request bodies (refused with `501`), and
//! HTTP/2.

use crate::dates::http_date;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::time::{Duration, Instant, SystemTime};

/// The largest request head we read (431 beyond it). Browsers send well under 2 KiB.
pub const MAX_HEAD: usize = 8 * 1024;

/// Everything that makes us refuse a request, each variant answered with one status code.
#[derive(Debug, PartialEq)]
pub enum HttpError {
    /// Not well-formed HTTP; the text says what is wrong.
    BadRequest(&'static str),
    /// A `Host` this server does not answer to: see [`host_allowed`].
    UnknownHost,
    /// A cross-origin `POST /publish`: a page on another site sent it from a visitor's browser.
    Forbidden,
    /// No route and no file here.
    NotFound,
    /// The path exists, but not for this method; the text is the `Allow` header.
    MethodNotAllowed(&'static str),
    /// A `POST` with no `Content-Length` (we do not read chunked bodies).
    LengthRequired,
    /// The body did not arrive in time.
    BodyTimeout,
    /// A `POST` body over the publish limit.
    PayloadTooLarge,
    /// An `Expect` other than `100-continue`, the only expectation HTTP defines.
    ExpectationFailed,
    /// A request head over [`MAX_HEAD`].
    HeadTooLarge,
    /// A body sent with `Transfer-Encoding`, which we do not decode.
    NotImplemented(&'static str),
    /// Already `MAX_CLIENTS` streams open.
    TooManyClients,
    /// Already `MAX_IN_FLIGHT` connections being read or answered, each on its own thread.
    Busy,
    /// With Redis: not connected to the shared log, or it refused the event; nothing was
    /// published.
    LogUnavailable,
    /// With Redis: the event was sent to the shared log and no id came back.
    LogTimeout,
}

impl HttpError {
    /// The status code for each error: the one place it is chosen.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::Forbidden => 403,
            HttpError::NotFound => 404,
            HttpError::MethodNotAllowed(_) => 405,
            HttpError::BodyTimeout => 408,
            HttpError::LengthRequired => 411,
            HttpError::PayloadTooLarge => 413,
            HttpError::ExpectationFailed => 417,
            HttpError::UnknownHost => 421,
            HttpError::HeadTooLarge => 431,
            HttpError::NotImplemented(_) => 501,
            HttpError::TooManyClients | HttpError::Busy | HttpError::LogUnavailable => 503,
            // RFC 9110 §15.6.5: an upstream this server needed, Redis here, did not answer.
            HttpError::LogTimeout => 504,
        }
    }

    /// The full answer: a one-line plain-text explanation, plus the header some statuses need.
    pub fn response(&self) -> Response {
        let status = self.status();
        let detail = match self {
            HttpError::BadRequest(why) | HttpError::NotImplemented(why) => why,
            HttpError::UnknownHost => {
                "this server answers to localhost, IP addresses and the names in ALLOWED_HOSTS"
            }
            HttpError::Forbidden => {
                "Origin does not match Host: cross-origin publishing is refused"
            }
            HttpError::NotFound => "no such route or file",
            HttpError::MethodNotAllowed(_) => "see the Allow header",
            HttpError::LengthRequired => "send the body with a Content-Length",
            HttpError::BodyTimeout => "the body did not arrive in time",
            HttpError::ExpectationFailed => "the only expectation understood is 100-continue",
            HttpError::PayloadTooLarge => "the body is over the 64 KiB limit",
            HttpError::HeadTooLarge => "the request head is over 8 KiB",
            HttpError::TooManyClients => "too many open streams, try again later",
            HttpError::Busy => "too many requests in progress, try again later",
            HttpError::LogUnavailable => {
                "this server is not connected to Redis, the shared event log, or Redis refused \
                 the event: nothing was published; try again"
            }
            HttpError::LogTimeout => {
                "the event went to Redis, the shared event log, and no id came back: it may or \
                 may not have been published"
            }
        };
        let body = format!("{status} {}: {detail}\n", reason(status));
        let mut response = Response::new(status, "text/plain; charset=utf-8", body.into_bytes());
        match self {
            // RFC 9110 §15.5.6: a 405 must list the methods the path does take.
            HttpError::MethodNotAllowed(allow) => {
                response.headers.push(("Allow", allow.to_string()))
            }
            HttpError::TooManyClients => response.headers.push(("Retry-After", "10".into())),
            HttpError::Busy | HttpError::LogUnavailable => {
                response.headers.push(("Retry-After", "1".into()))
            }
            _ => {}
        }
        response
    }
}

/// A parsed request head. The body, if any, is still on the socket.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target in origin form, for example `/events?x=1`. A target sent in absolute
    /// form (`http://host/events?x=1`) is stored as its path and query.
    pub target: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: &'static str,
    /// Who the client thinks it is talking to: the `Host` header, or the authority of an
    /// absolute-form target, which overrides it (RFC 9112 §3.2.2). `None` only from HTTP/1.0.
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    /// `Content-Length`, if the request had one.
    pub content_length: Option<u64>,
}

impl Request {
    /// The target without its query string: what we route on.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query string, after the `?`; empty if there is none.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, query)| query)
    }

    /// The first header with this name; names are case-insensitive (RFC 9110 §5.1).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads from the socket until the blank line that ends a head: a request's here ([`MAX_HEAD`]),
/// a response's in the client.
///
/// Returns everything read (the head and perhaps the start of a body) and the length of the head,
/// or `Ok(None)` if `max` bytes came without a blank line. The whole head must arrive before
/// `deadline`, not each read: a client trickling one byte a second (slowloris) still times out.
/// Empty lines before the head are dropped: RFC 9112 §2.2 asks a server to ignore at least one,
/// which some clients send after a previous request's body.
pub fn read_head(
    stream: &mut TcpStream,
    deadline: Instant,
    max: usize,
) -> io::Result<Option<(Vec<u8>, usize)>> {
    let mut buf = vec![0; max];
    let mut len = 0;
    while len < max {
        stream.set_read_timeout(Some(time_left(deadline)?))?;
        let n = match stream.read(&mut buf[len..]) {
            // A read with a timeout is not restarted after the process was stopped and continued
            // (Ctrl-Z, then fg; see signal(7)): it fails with EINTR, and only needs doing again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            read => read?,
        };
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // Look only at the new bytes and the three before them: the blank line may straddle reads.
        let from = len.saturating_sub(3);
        len += n;
        // Until a byte of the request line has been kept, drop line ends as they come.
        if from == 0 {
            let blank = buf[..len].iter().take_while(|b| matches!(b, b'\r' | b'\n'));
            let skip = blank.count();
            buf.copy_within(skip..len, 0);
            len -= skip;
        }
        if let Some(end) = head_end(&buf[from..len]) {
            buf.truncate(len);
            return Ok(Some((buf, from + end)));
        }
    }
    Ok(None)
}

/// Where the head ends: just past the first empty line. RFC 9112 §2.2 lets a server accept a lone
/// LF as a line end, so `\n\n` counts as well as `\r\n\r\n`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| match &buf[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// Parses a request head (RFC 9112 §3 and §5):
///
/// ```text
/// request-line = method SP request-target SP HTTP-version CRLF
/// field-line   = field-name ":" OWS field-value OWS CRLF
/// ```
pub fn parse_request(head: &[u8]) -> Result<Request, HttpError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| HttpError::BadRequest("request head is not UTF-8"))?;
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));

    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(HttpError::BadRequest(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(HttpError::BadRequest("method is not a token"));
    }
    let version = match version {
        "HTTP/1.1" => "HTTP/1.1",
        "HTTP/1.0" => "HTTP/1.0",
        _ => {
            return Err(HttpError::BadRequest(
                "only HTTP/1.0 and HTTP/1.1 are spoken here",
            ));
        }
    };
    // Visible ASCII, no spaces. The origin form (`/path?query`) is what browsers send; the absolute
    // form (`http://host:3000/path`) is what clients send to a proxy, and RFC 9112 §3.2.2 says a
    // server must accept it too. Its authority then stands for `Host`. No `*`, no `CONNECT` form.
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::BadRequest(
            "request target must be visible ASCII",
        ));
    }
    let (authority, target) = match split_absolute(target) {
        Some((authority, path)) => (Some(authority), path),
        None if target.starts_with('/') => (None, target.to_string()),
        None => {
            return Err(HttpError::BadRequest(
                "request target must be a path starting with /, or an http:// URL",
            ));
        }
    };

    let mut headers = Vec::new();
    for line in lines.take_while(|line| !line.is_empty()) {
        // RFC 9112 §5.2: obsolete line folding is rejected.
        if line.starts_with([' ', '\t']) {
            return Err(HttpError::BadRequest("folded header line"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::BadRequest("header line without a colon"));
        };
        // RFC 9112 §5.1: no whitespace between name and colon (a request-smuggling vector).
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(HttpError::BadRequest("invalid header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(HttpError::BadRequest("control character in a header value"));
        }
        headers.push((name.to_string(), value.to_string()));
    }

    // RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request without Host, with two, or
    // with one that is not a host: two could name two different sites, and the parts of a
    // server (or a proxy in front) that read different ones disagree about the request.
    let hosts: Vec<&String> = named(&headers, "host").collect();
    let host = match hosts[..] {
        [] if version == "HTTP/1.1" => {
            return Err(HttpError::BadRequest("HTTP/1.1 request without Host"));
        }
        [] => None,
        [host] if is_host(host) => Some(host.clone()),
        [_] => return Err(HttpError::BadRequest("Host is not a host[:port]")),
        _ => return Err(HttpError::BadRequest("more than one Host header")),
    };
    let content_length = parse_content_length(&headers)?;
    // RFC 9112 §6.1 and §6.3: `Transfer-Encoding` says how the body is framed, and overrides
    // `Content-Length`. A request with both is how request smuggling starts (two parsers that
    // pick different framings see different requests), so it is refused, as is one from
    // HTTP/1.0, which had no such header, and one whose last coding is not `chunked`, whose end
    // cannot be found (§6.3 requires `400` for both). That leaves `chunked`, which a full
    // HTTP/1.1 server must read (§7.1); this one, to stay small, does not, and says so with
    // `501`, the status for a coding a server does not implement (§6.1).
    let codings: Vec<&String> = named(&headers, "transfer-encoding").collect();
    if let Some(last) = codings.last() {
        let chunked_last = last
            .rsplit(',')
            .next()
            .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        return Err(if content_length.is_some() {
            HttpError::BadRequest("both Transfer-Encoding and Content-Length")
        } else if version == "HTTP/1.0" {
            HttpError::BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        } else if !chunked_last {
            HttpError::BadRequest("Transfer-Encoding does not end in chunked")
        } else {
            HttpError::NotImplemented("chunked bodies are not read here: send a Content-Length")
        });
    }
    // RFC 9110 §10.1.1: `100-continue` is the only expectation there is; a server may answer any
    // other with `417`, and does here, rather than leave a client waiting for something it never
    // says.
    if named(&headers, "expect").any(|e| !e.eq_ignore_ascii_case("100-continue")) {
        return Err(HttpError::ExpectationFailed);
    }
    Ok(Request {
        method: method.to_string(),
        target,
        version,
        // The authority of an absolute-form target wins over `Host` (RFC 9112 §3.2.2).
        host: authority.or(host),
        headers,
        content_length,
    })
}

/// The values of every header called `name`.
fn named<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a String> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Splits an absolute-form target, `http://host:3000/events?x=1`, into its authority and the
/// origin form of the rest, `/events?x=1` (`/` when the path is empty). `None` if it is not one.
fn split_absolute(target: &str) -> Option<(String, String)> {
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(at);
    if !is_host(authority) || authority.is_empty() {
        return None;
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Some((authority.to_string(), path))
}

/// Whether `text` can be a `Host` value: a name, an IPv4 address or an `[IPv6]` address, then an
/// optional `:port` (RFC 9110 §7.2, RFC 3986 §3.2.2). Not a full check of each form, but no
/// user info (`@`), path, space or quote gets through.
fn is_host(text: &str) -> bool {
    let (name, port) = split_host_port(text);
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b));
    // RFC 3986 §3.2.3: `port = *DIGIT`, so `localhost:` (an empty port) is a host too.
    name_ok && port.is_none_or(|p| p.is_empty() || digits(p).is_some_and(|n| n <= 65_535))
}

/// Splits `host:port` into the host and the port, if there is one: `[::1]:3000` gives `[::1]`
/// and `3000`, `localhost` gives `localhost` and none.
pub fn split_host_port(text: &str) -> (&str, Option<&str>) {
    let after_ipv6 = if text.starts_with('[') {
        text.find(']').map_or(text.len(), |i| i + 1)
    } else {
        0
    };
    match text[after_ipv6..].rfind(':') {
        Some(i) => (&text[..after_ipv6 + i], Some(&text[after_ipv6 + i + 1..])),
        None => (text, None),
    }
}

/// Whether this server answers a request sent to `host` (the `Host` header, port and all): an IP
/// address, `localhost`, or a name in `allowed` (the `ALLOWED_HOSTS` setting).
///
/// Why any check at all: DNS rebinding. A page on `attacker.example` can have that name resolve
/// to 127.0.0.1 after the page has loaded, and its scripts then reach this server as same-origin
/// requests (`Host: attacker.example:3000`, and a matching `Origin`), so the `Origin` check of
/// `POST /publish` lets them through. The attacker controls names, not addresses: a request whose
/// host is an address, or `localhost`, really was sent to that address. The port is not compared:
/// a proxy or a port forward in front can change it, and a rebinding attack needs a name anyway.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let (name, _) = split_host_port(host);
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Whether a browser's `Origin` (`http://localhost:3000`) names the same host and port as `host`
/// (the request's `Host`). A port left out means the scheme's default, on both sides: `Origin`
/// never writes `:80` for `http`, while a `Host` may. The scheme itself is not compared: behind a
/// proxy that ends TLS the page is `https://` while this server speaks plain HTTP.
pub fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, origin_host)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let (origin_name, origin_port) = split_host_port(origin_host);
    let (host_name, host_port) = split_host_port(host);
    origin_name.eq_ignore_ascii_case(host_name)
        && origin_port.unwrap_or(default_port) == host_port.unwrap_or(default_port)
}

/// RFC 9112 §6.3: Content-Length is digits only; several that disagree make the request invalid.
fn parse_content_length(headers: &[(String, String)]) -> Result<Option<u64>, HttpError> {
    let mut length = None;
    for value in named(headers, "content-length") {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::BadRequest("Content-Length is not a number"));
        }
        // All digits, so the only way to fail is a number too big for u64: too large, not malformed.
        let n: u64 = value.parse().map_err(|_| HttpError::PayloadTooLarge)?;
        if length.is_some_and(|other| other != n) {
            return Err(HttpError::BadRequest("conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    Ok(length)
}

/// `tchar` of RFC 9110 §5.6.2: the characters allowed in methods and header names.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Reads a body of exactly `len` bytes, of which `already` arrived with the head.
pub fn read_body(
    stream: &mut TcpStream,
    already: &[u8],
    len: usize,
    deadline: Instant,
) -> io::Result<Vec<u8>> {
    let mut body = already[..already.len().min(len)].to_vec();
    body.resize(len, 0);
    let mut got = already.len().min(len);
    while got < len {
        stream.set_read_timeout(Some(time_left(deadline)?))?;
        match stream.read(&mut body[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {} // as in `read_head`
            Err(e) => return Err(e),
        }
    }
    Ok(body)
}

/// A whole number written with ASCII digits only, which is all that `retry:` (§9.2.6), this
/// server's `Last-Event-ID` and the lab's switches accept. `str::parse` alone would also take a
/// leading `+`. `None` for anything else, an empty string, or a number too big for a `u64`.
pub fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The value of the first `name=value` pair of a query string, decoded as [`query_decode`] does.
/// Text that does not decode comes back as written, for the caller to find wanting.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    Some(query_decode(raw).unwrap_or_else(|| raw.to_string()))
}

/// One value of a query string as UTF-8 text: `+` is a space and `%XX` escapes are decoded, the
/// way a browser encodes a form. `None` for a bad escape or bytes that are not UTF-8.
pub fn query_decode(raw: &str) -> Option<String> {
    percent_decode(&raw.replace('+', " ")).and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Decodes `%XX` escapes (RFC 3986 §2.1). `None` for a `%` not followed by two hex digits.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // Checked first: `from_str_radix` alone would also take a sign, as in `%+f`.
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn time_left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(left)
}

/// A complete, non-streaming response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body,
        }
    }

    /// `204 No Content`: done, nothing to say.
    pub fn no_content() -> Response {
        Response {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// Writes a response and closes the connection. `head_only` answers `HEAD`: the same headers,
/// no body.
pub fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    head_only: bool,
) -> io::Result<()> {
    stream.write_all(&response_bytes(response, head_only))?;
    close_gracefully(stream);
    Ok(())
}

/// The bytes of a response: status line, headers, blank line, and the body unless `head_only`.
pub fn response_bytes(response: &Response, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    // RFC 9110 §8.6: a 204 carries no Content-Length.
    if response.status != 204 {
        out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    // RFC 9110 §6.6.1: a server with a clock must send the time of a 2xx, 3xx or 4xx response,
    // and may send it with the others; this one always does.
    out.push_str(&format!("Date: {}\r\n", http_date(SystemTime::now())));
    // One request per connection: simpler than keep-alive, and a browser copes fine. A production
    // server keeps connections open to save the TCP handshake on every request.
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&response.body);
    }
    bytes
}

/// Closing a socket that still has unread input makes the kernel send a reset, which can destroy
/// the response before the client reads it: typical after a `413` to a client still sending its
/// body. So: say we are done writing, then read and discard what is left, for a little while.
fn close_gracefully(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut sink = [0; 4096];
    for _ in 0..64 {
        let Ok(left) = time_left(deadline) else {
            return;
        };
        if stream.set_read_timeout(Some(left)).is_err()
            || !matches!(stream.read(&mut sink), Ok(n) if n > 0)
        {
            return;
        }
    }
}

/// The reason phrase for each status this server sends (RFC 9110 §15). The lab can send any status
/// from 400 to 599; one not named here goes out with an empty phrase, which HTTP/1.1 allows.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<Request, HttpError> {
        parse_request(head.as_bytes())
    }

    #[test]
    fn parses_a_browser_style_request() {
        let r =
            parse("GET /events?x=1 HTTP/1.1\r\nHost: localhost:3000\r\nLast-Event-ID: 41\r\n\r\n")
                .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/events?x=1");
        assert_eq!(r.path(), "/events");
        assert_eq!(r.header("last-event-id"), Some("41"));
        assert_eq!(r.header("HOST"), Some("localhost:3000"));
        assert_eq!(r.content_length, None);
    }

    #[test]
    fn accepts_lf_line_ends() {
        let r = parse("GET / HTTP/1.1\nHost: a\n\n").unwrap();
        assert_eq!(r.header("host"), Some("a"));
    }

    #[test]
    fn http_1_0_needs_no_host() {
        assert!(parse("GET / HTTP/1.0\r\n\r\n").is_ok());
    }

    #[test]
    fn http_1_1_without_host_is_rejected() {
        assert_eq!(
            parse("GET / HTTP/1.1\r\n\r\n").unwrap_err(),
            HttpError::BadRequest("HTTP/1.1 request without Host")
        );
    }

    #[test]
    fn trims_optional_whitespace_around_values() {
        let r = parse("GET / HTTP/1.1\r\nHost: \t a \t\r\n\r\n").unwrap();
        assert_eq!(r.header("host"), Some("a"));
    }

    #[test]
    fn reads_content_length() {
        let r = parse("POST /publish HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(r.content_length, Some(12));
    }

    #[test]
    fn rejects_bad_content_lengths() {
        for bad in ["-1", "+5", "1 2", "0x10", "", "abc"] {
            let head = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(
                parse(&head).unwrap_err(),
                HttpError::BadRequest("Content-Length is not a number"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn huge_content_length_is_too_large() {
        let head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(parse(head).unwrap_err(), HttpError::PayloadTooLarge);
    }

    #[test]
    fn conflicting_content_lengths_are_rejected() {
        let head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            parse(head).unwrap_err(),
            HttpError::BadRequest("conflicting Content-Length headers")
        );
    }

    #[test]
    fn malformed_request_lines() {
        for bad in [
            "",
            "GET",
            "GET /",
            "GET  / HTTP/1.1",
            "GET / HTTP/1.1 extra",
            "G(T / HTTP/1.1",
        ] {
            assert!(
                matches!(
                    parse(&format!("{bad}\r\nHost: a\r\n\r\n")),
                    Err(HttpError::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_targets_that_are_not_paths() {
        for bad in [
            "*",
            "/a\u{7f}b",
            "/é",
            "ftp://x/",
            "example.com",
            "http:///x",
        ] {
            assert!(
                matches!(
                    parse(&format!("GET {bad} HTTP/1.1\r\nHost: a\r\n\r\n")),
                    Err(HttpError::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn absolute_form_targets_are_accepted_and_name_the_host() {
        let r =
            parse("GET http://localhost:3000/events?x=1 HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!(r.target, "/events?x=1");
        assert_eq!(r.path(), "/events");
        assert_eq!(r.host.as_deref(), Some("localhost:3000"));
        let r = parse("GET HTTP://[::1]:3000?x=1 HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(
            (r.target.as_str(), r.host.as_deref()),
            ("/?x=1", Some("[::1]:3000"))
        );
        let r = parse("GET / HTTP/1.1\r\nHost: localhost:3000\r\n\r\n").unwrap();
        assert_eq!(r.host.as_deref(), Some("localhost:3000"));
        assert_eq!(parse("GET / HTTP/1.0\r\n\r\n").unwrap().host, None);
    }

    #[test]
    fn host_must_be_one_host() {
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").unwrap_err(),
            HttpError::BadRequest("more than one Host header")
        );
        assert_eq!(
            parse("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n").unwrap_err(),
            HttpError::BadRequest("more than one Host header")
        );
        for bad in [
            "",
            "a b",
            "user@evil",
            "a/b",
            "a:port",
            "a:99999",
            "\"a\"",
            ":80",
        ] {
            assert_eq!(
                parse(&format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n")).unwrap_err(),
                HttpError::BadRequest("Host is not a host[:port]"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_empty_port_is_a_port() {
        // RFC 3986 §3.2.3: `port = *DIGIT`.
        let r = parse("GET / HTTP/1.1\r\nHost: localhost:\r\n\r\n").unwrap();
        assert_eq!(r.host.as_deref(), Some("localhost:"));
    }

    #[test]
    fn transfer_encoding_is_refused() {
        let with = |extra: &str, version: &str| {
            parse(&format!(
                "POST /publish {version}\r\nHost: a\r\nTransfer-Encoding: chunked\r\n{extra}\r\n"
            ))
            .unwrap_err()
        };
        assert_eq!(
            with("", "HTTP/1.1"),
            HttpError::NotImplemented("chunked bodies are not read here: send a Content-Length")
        );
        assert_eq!(with("", "HTTP/1.1").status(), 501);
        // The last coding decides: only a body that ends in `chunked` has a findable end.
        for (codings, chunked_last) in [
            ("gzip", false),
            ("chunked, gzip", false),
            ("notchunked", false),
            ("gzip, Chunked", true),
            ("gzip\r\nTransfer-Encoding: chunked", true),
        ] {
            let error = parse(&format!(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {codings}\r\n\r\n"
            ))
            .unwrap_err();
            assert_eq!(error.status() == 501, chunked_last, "{codings}: {error:?}");
        }
        assert_eq!(
            with("Content-Length: 5\r\n", "HTTP/1.1"),
            HttpError::BadRequest("both Transfer-Encoding and Content-Length")
        );
        assert_eq!(
            with("", "HTTP/1.0"),
            HttpError::BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        );
    }

    #[test]
    fn expect_other_than_100_continue_is_417() {
        let with = |expect: &str| {
            parse(&format!(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: {expect}\r\n\r\n"
            ))
        };
        assert!(with("100-continue").is_ok());
        assert!(with("100-Continue").is_ok());
        assert_eq!(with("200-ok").unwrap_err(), HttpError::ExpectationFailed);
        assert_eq!(HttpError::ExpectationFailed.status(), 417);
    }

    #[test]
    fn host_and_port_split() {
        assert_eq!(
            split_host_port("localhost:3000"),
            ("localhost", Some("3000"))
        );
        assert_eq!(split_host_port("localhost"), ("localhost", None));
        assert_eq!(split_host_port("[::1]:3000"), ("[::1]", Some("3000")));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("127.0.0.1:80"), ("127.0.0.1", Some("80")));
    }

    #[test]
    fn only_addresses_localhost_and_allowed_names_are_answered() {
        let allowed = [String::from("sse.example.com")];
        for ok in [
            "127.0.0.1:3000",
            "[::1]:3000",
            "192.168.1.5",
            "localhost:3000",
            "LOCALHOST",
            "sse.example.com",
            "SSE.example.com:443",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok:?}");
        }
        for refused in [
            "attacker.example:3000",
            "example.com",
            "localhost.attacker.example",
            "127.0.0.1.nip.io:3000",
        ] {
            assert!(!host_allowed(refused, &allowed), "{refused:?}");
        }
        assert!(!host_allowed("sse.example.com", &[]));
    }

    #[test]
    fn same_origin_compares_host_and_port_with_default_ports() {
        assert!(same_origin("http://localhost:3000", "localhost:3000"));
        assert!(same_origin("http://LocalHost:3000", "localhost:3000"));
        // A default port may be written in Host; Origin never writes it.
        assert!(same_origin("http://localhost", "localhost:80"));
        assert!(same_origin("http://localhost", "localhost"));
        assert!(same_origin("https://sse.example.com", "sse.example.com"));
        assert!(same_origin(
            "https://sse.example.com",
            "sse.example.com:443"
        ));
        assert!(!same_origin("http://localhost", "localhost:443"));
        assert!(!same_origin("http://localhost:3001", "localhost:3000"));
        assert!(!same_origin("http://evil.example:3000", "localhost:3000"));
        assert!(!same_origin("null", "localhost:3000"));
        assert!(!same_origin("file://x", "x"));
    }

    #[test]
    fn rejects_other_versions() {
        assert!(matches!(
            parse("GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            parse("GET / http/1.1\r\nHost: a\r\n\r\n"),
            Err(HttpError::BadRequest(_))
        ));
    }

    #[test]
    fn rejects_header_line_without_colon() {
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost a\r\n\r\n").unwrap_err(),
            HttpError::BadRequest("header line without a colon")
        );
    }

    #[test]
    fn rejects_space_before_colon() {
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost : a\r\n\r\n").unwrap_err(),
            HttpError::BadRequest("invalid header name")
        );
    }

    #[test]
    fn rejects_folded_headers() {
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n").unwrap_err(),
            HttpError::BadRequest("folded header line")
        );
    }

    #[test]
    fn rejects_nul_and_control_characters() {
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"),
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
            Err(HttpError::BadRequest(_))
        ));
        assert!(matches!(
            parse("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(HttpError::BadRequest(_))
        ));
    }

    #[test]
    fn rejects_invalid_utf8() {
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n").unwrap_err(),
            HttpError::BadRequest("request head is not UTF-8")
        );
    }

    #[test]
    fn digits_are_digits_only() {
        assert_eq!(digits("0"), Some(0));
        assert_eq!(digits("003000"), Some(3000));
        assert_eq!(digits("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "+5",
            "-1",
            " 5",
            "5 ",
            "1.5",
            "0x1",
            "18446744073709551616",
        ] {
            assert_eq!(digits(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn query_values() {
        assert_eq!(
            query_value("a=1&after=5-0", "after").as_deref(),
            Some("5-0")
        );
        assert_eq!(
            query_value("after=a%2Db+c", "after").as_deref(),
            Some("a-b c")
        );
        assert_eq!(query_value("after=%zz", "after").as_deref(), Some("%zz"));
        assert_eq!(query_value("afterwards=1&after", "after"), None);
        assert_eq!(query_value("", "after"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b%2F").unwrap(), b"/a b/");
        assert_eq!(percent_decode("%e2%9C%93").unwrap(), "✓".as_bytes());
        for bad in ["%", "%4", "%zz", "%+f", "%-1", "% 1"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn query_is_what_follows_the_question_mark() {
        let r = parse("GET /events?end_after=3&retry=500 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(r.query(), "end_after=3&retry=500");
        let r = parse("GET /events HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(r.query(), "");
    }

    #[test]
    fn head_end_finds_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn error_bodies_name_status_and_cause() {
        let body = HttpError::BadRequest("folded header line").response().body;
        assert_eq!(body, b"400 Bad Request: folded header line\n");
        assert_eq!(
            HttpError::HeadTooLarge.response().body,
            b"431 Request Header Fields Too Large: the request head is over 8 KiB\n"
        );
    }

    #[test]
    fn error_responses_carry_their_extra_header() {
        let allow = HttpError::MethodNotAllowed("GET, HEAD").response();
        assert!(allow.headers.contains(&("Allow", "GET, HEAD".to_string())));
        let busy = HttpError::TooManyClients.response();
        assert_eq!(busy.status, 503);
        assert!(busy.headers.contains(&("Retry-After", "10".to_string())));
    }
}
