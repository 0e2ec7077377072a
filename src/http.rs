//! Just enough HTTP/1.1 (RFC 9112) to serve a page and a stream: read a request head off a
//! socket, parse it, and write a response back.
//!
//! `parse_request` is a pure function over bytes; the socket work is in `read_head`, `read_body`
//! and `write_response`. Every bad request becomes one [`HttpError`], and `HttpError::status` is
//! the one place that maps it to a status code. Left out on purpose: keep-alive (every response
//! but the stream closes the connection), chunked request bodies, and HTTP/2.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// The largest request head we read (431 beyond it). Browsers send well under 2 KiB.
pub const MAX_HEAD: usize = 8 * 1024;

/// Everything that makes us refuse a request, each variant answered with one status code.
#[derive(Debug, PartialEq)]
pub enum HttpError {
    /// Not well-formed HTTP; the text says what is wrong.
    BadRequest(&'static str),
    /// A cross-origin `POST /publish`: a page on another site sent it from a visitor's browser.
    Forbidden,
    /// No route and no file here.
    NotFound,
    /// The path exists, but not for this method; the text is the `Allow` header.
    MethodNotAllowed(&'static str),
    /// A `POST` with no `Content-Length` (we do not read chunked bodies).
    LengthRequired,
    /// A `POST` body over the publish limit.
    PayloadTooLarge,
    /// A request head over [`MAX_HEAD`].
    HeadTooLarge,
    /// Already `MAX_CLIENTS` streams open.
    TooManyClients,
}

impl HttpError {
    /// The status code for each error: the one place it is chosen.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::Forbidden => 403,
            HttpError::NotFound => 404,
            HttpError::MethodNotAllowed(_) => 405,
            HttpError::LengthRequired => 411,
            HttpError::PayloadTooLarge => 413,
            HttpError::HeadTooLarge => 431,
            HttpError::TooManyClients => 503,
        }
    }

    /// The full answer: a one-line plain-text explanation, plus the header some statuses need.
    pub fn response(&self) -> Response {
        let status = self.status();
        let detail = match self {
            HttpError::BadRequest(why) => why,
            HttpError::Forbidden => {
                "Origin does not match Host: cross-origin publishing is refused"
            }
            HttpError::NotFound => "no such route or file",
            HttpError::MethodNotAllowed(_) => "see the Allow header",
            HttpError::LengthRequired => "send the body with a Content-Length",
            HttpError::PayloadTooLarge => "the body is over the 64 KiB limit",
            HttpError::HeadTooLarge => "the request head is over 8 KiB",
            HttpError::TooManyClients => "too many open streams, try again later",
        };
        let body = format!("{status} {}: {detail}\n", reason(status));
        let mut response = Response::new(status, "text/plain; charset=utf-8", body.into_bytes());
        match self {
            // RFC 9110 §15.5.6: a 405 must list the methods the path does take.
            HttpError::MethodNotAllowed(allow) => {
                response.headers.push(("Allow", allow.to_string()))
            }
            HttpError::TooManyClients => response.headers.push(("Retry-After", "10".into())),
            _ => {}
        }
        response
    }
}

/// A parsed request head. The body, if any, is still on the socket.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent, for example `/events?x=1`.
    pub target: String,
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
pub fn read_head(
    stream: &mut TcpStream,
    deadline: Instant,
    max: usize,
) -> io::Result<Option<(Vec<u8>, usize)>> {
    let mut buf = vec![0; max];
    let mut len = 0;
    while len < max {
        stream.set_read_timeout(Some(time_left(deadline)?))?;
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // Look only at the new bytes and the three before them: the blank line may straddle reads.
        let from = len.saturating_sub(3);
        len += n;
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
    // Origin form only (`/path?query`): visible ASCII, no spaces. No absolute URLs, no `*`.
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::BadRequest(
            "request target must be a path starting with /",
        ));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::BadRequest(
            "only HTTP/1.0 and HTTP/1.1 are spoken here",
        ));
    }

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

    // RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request without Host.
    if version == "HTTP/1.1" && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        return Err(HttpError::BadRequest("HTTP/1.1 request without Host"));
    }
    let content_length = parse_content_length(&headers)?;
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        content_length,
    })
}

/// RFC 9112 §6.3: Content-Length is digits only; several that disagree make the request invalid.
fn parse_content_length(headers: &[(String, String)]) -> Result<Option<u64>, HttpError> {
    let mut length = None;
    for (_, value) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
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
        match stream.read(&mut body[got..])? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
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
    // One request per connection: simpler than keep-alive, and a browser copes fine. A production
    // server keeps connections open to save the TCP handshake on every request.
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&response.body);
    }
    stream.write_all(&bytes)?;
    close_gracefully(stream);
    Ok(())
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
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
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
        for bad in ["http://example.com/", "*", "/a\u{7f}b", "/é"] {
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
