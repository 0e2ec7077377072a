//! The lab: switches in the query string of `GET /events` that make the stream misbehave on
//! purpose, so a learner can watch what a browser's `EventSource` does about it.
//!
//! This file owns the switches: their names, their allowed values, and what a browser does with
//! each answer (§9.2.2-§9.2.3). `server::stream_events` applies them. A plain `GET /events` has
//! none and streams as the spec intends; nothing here is needed to serve it.
//!
//! | switch | what the server does instead |
//! |---|---|
//! | `status=N` | answers status `N` (204, or 400 to 599) and no stream |
//! | `type=MEDIA_TYPE` | sends that `Content-Type`, one event, then closes |
//! | `end_after=N` | ends the stream after `N` events (1 to 1000) |
//! | `retry=MS` | starts the stream with `retry: MS` (0 to 600000) |
//! | `run=LABEL` | counts the request under `LABEL`; `GET /lab/seen?run=LABEL` tells how many came |
//! | `redirect=N` | answers `N` (301 to 308) with `Location:` the same URL, less `redirect` |

use crate::http::{HttpError, Request, Response, digits, query_decode};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The switches of one `GET /events` request. All `None`: an ordinary stream.
#[derive(Debug, Default, PartialEq)]
pub struct Lab {
    /// `status=N`: answer this status instead of a stream.
    pub status: Option<u16>,
    /// `type=MEDIA_TYPE`: this `Content-Type` instead of `text/event-stream`.
    pub content_type: Option<String>,
    /// `end_after=N`: how many events the stream gets before the server ends it. Replayed events
    /// and a `gap` notice count; the `retry:` frame, the `lab` echo, client counts and heartbeat
    /// comments do not.
    pub end_after: Option<u64>,
    /// `retry=MS`: the stream's first frame says this instead of the configured delay.
    pub retry: Option<Duration>,
    /// `run=LABEL`: a label the server counts requests under, so a page can ask how many arrived.
    pub run: Option<String>,
    /// `redirect=N`: answer this redirect status, to the same URL without the `redirect` switch.
    pub redirect: Option<u16>,
}

impl Lab {
    /// Reads the switches from a query string such as `end_after=3&retry=1000`.
    ///
    /// Names are matched as written; values are percent-decoded, with `+` as a space, the way a
    /// browser encodes a form. Unknown names are ignored (a cache-buster such as `t=123` is
    /// harmless). A known switch with a bad value, or given twice, is an error that names it.
    pub fn parse(query: &str) -> Result<Lab, HttpError> {
        let mut lab = Lab::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = || {
                query_decode(raw).ok_or(HttpError::BadRequest(
                    "bad percent-encoding in the query string",
                ))
            };
            match name {
                "status" => set(&mut lab.status, status(&value()?))?,
                "type" => set(&mut lab.content_type, media_type(value()?))?,
                "end_after" => set(&mut lab.end_after, end_after(&value()?))?,
                "retry" => set(&mut lab.retry, retry(&value()?))?,
                "run" => set(&mut lab.run, run(value()?))?,
                "redirect" => set(&mut lab.redirect, redirect(&value()?))?,
                _ => {}
            }
        }
        // A wrong type is shown with one event; with the right type, one event and an end make
        // the browser reconnect, which is the point of the contrast. `end_after` can say more.
        if lab.content_type.is_some() && lab.end_after.is_none() {
            lab.end_after = Some(1);
        }
        Ok(lab)
    }

    /// Whether any switch is on: then the stream opens with a `lab` event (see [`echo`]).
    pub fn is_on(&self) -> bool {
        *self != Lab::default()
    }

    /// One line for the server log: what this lab stream will do, and what a browser makes of it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(content_type) = &self.content_type {
            parts.push(if is_event_stream(content_type) {
                format!("Content-Type {content_type}: a browser accepts it (the essence is text/event-stream)")
            } else {
                format!("Content-Type {content_type}: a browser fails the connection and will not retry")
            });
        }
        if let Some(n) = self.end_after {
            let events = if n == 1 { "event" } else { "events" };
            // After a type the browser refused, there is no connection left to come back to.
            let refused = self
                .content_type
                .as_deref()
                .is_some_and(|t| !is_event_stream(t));
            parts.push(if refused {
                format!("ends after {n} {events}")
            } else {
                format!("ends after {n} {events}, then the browser reconnects with Last-Event-ID")
            });
        }
        if let Some(retry) = self.retry {
            parts.push(format!("retry: {}", retry.as_millis()));
        }
        if let Some(run) = &self.run {
            parts.push(format!("run {run}"));
        }
        format!("lab stream: {}", parts.join("; "))
    }
}

/// Stores a switch's value; a switch given twice is an error rather than a guess.
fn set<T>(slot: &mut Option<T>, value: Result<T, HttpError>) -> Result<(), HttpError> {
    if slot.is_some() {
        return Err(HttpError::BadRequest("a lab switch is given twice"));
    }
    *slot = Some(value?);
    Ok(())
}

/// A whole number in `min..=max`, written with at most 10 ASCII digits (no sign, no spaces).
fn number(value: &str, min: u64, max: u64) -> Option<u64> {
    digits(value).filter(|n| value.len() <= 10 && (min..=max).contains(n))
}

fn status(value: &str) -> Result<u16, HttpError> {
    match number(value, 204, 599) {
        Some(n) if n == 204 || n >= 400 => Ok(n as u16),
        _ => Err(HttpError::BadRequest(
            "status: expected 204, or a whole number from 400 to 599",
        )),
    }
}

/// The value becomes a response header, so it must not be able to end the header line (CR, LF)
/// or smuggle anything else in: printable ASCII only.
fn media_type(value: String) -> Result<String, HttpError> {
    if value.is_empty() || value.len() > 100 || !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(HttpError::BadRequest(
            "type: expected a media type of 1 to 100 printable ASCII characters, such as text/plain",
        ));
    }
    Ok(value)
}

fn end_after(value: &str) -> Result<u64, HttpError> {
    number(value, 1, 1000).ok_or(HttpError::BadRequest(
        "end_after: expected a whole number from 1 to 1000",
    ))
}

fn retry(value: &str) -> Result<Duration, HttpError> {
    number(value, 0, 600_000)
        .map(Duration::from_millis)
        .ok_or(HttpError::BadRequest(
            "retry: expected a whole number of milliseconds from 0 to 600000",
        ))
}

fn redirect(value: &str) -> Result<u16, HttpError> {
    match number(value, 301, 308) {
        Some(n @ (301 | 302 | 303 | 307 | 308)) => Ok(n as u16),
        _ => Err(HttpError::BadRequest(
            "redirect: expected 301, 302, 303, 307 or 308",
        )),
    }
}

fn run(value: String) -> Result<String, HttpError> {
    let label = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if value.is_empty() || value.len() > 32 || !value.bytes().all(label) {
        return Err(HttpError::BadRequest(
            "run: expected 1 to 32 letters, digits, - or _",
        ));
    }
    Ok(value)
}

/// Whether a browser takes this `Content-Type` for an event stream. Only the essence counts: the
/// type and subtype before any `;` parameters, compared without regard to case (§9.2.2, and MIME
/// Sniffing's "essence"). So `text/event-stream;charset=utf-8` is accepted; the stream is UTF-8
/// whatever a charset says (§9.2.5).
pub fn is_event_stream(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .eq_ignore_ascii_case("text/event-stream")
}

/// The data of the `lab` event that opens every lab stream: the `Last-Event-ID` header exactly as
/// the server received it, so a page can show what its browser sent when it reconnected.
pub fn echo(last_event_id: Option<&str>) -> String {
    match last_event_id {
        Some(id) => format!("Last-Event-ID: {id}"),
        None => String::from("no Last-Event-ID"),
    }
}

/// What a browser's `EventSource` does with a status other than 200 (§9.2.2-§9.2.3).
pub fn verdict(status: u16) -> &'static str {
    match status {
        204 => "the browser stops reconnecting (204 is the spec's way to say stop, §9.2.1)",
        300..=399 => {
            "a browser follows it, and reconnects to where it led, not to the URL it was given"
        }
        _ => {
            "a browser fails the connection: readyState CLOSED, no retry, whatever Retry-After says"
        }
    }
}

/// The answer to `redirect=N`: that status, to the same path and query without `redirect=N`.
/// Fetch follows redirects for an `EventSource` (its redirect mode is "follow", §9.2.2), and the
/// target's URL is where every later reconnect goes.
fn redirect_response(status: u16, request: &Request) -> Response {
    let rest: Vec<&str> = request
        .query()
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("redirect="))
        .collect();
    let location = match rest.join("&") {
        query if query.is_empty() => request.path().to_string(),
        query => format!("{}?{query}", request.path()),
    };
    let body = format!("{status} (lab): {}\n", verdict(status));
    let mut response = Response::new(status, "text/plain; charset=utf-8", body.into_bytes());
    response.headers.push(("Location", location));
    response
}

/// The answer to `status=N`: that status, and a one-line body saying what a browser does with it.
/// A `204` has no body (RFC 9110 §15.3.5).
pub fn status_response(status: u16) -> Response {
    if status == 204 {
        return Response::no_content();
    }
    let body = format!("{status} (lab): {}\n", verdict(status));
    let mut response = Response::new(status, "text/plain; charset=utf-8", body.into_bytes());
    // RFC 9110 requires a header with four of these statuses (§15.5.2, §15.5.6, §15.5.8,
    // §15.5.22). Each says what a real server that answered so would: a stream behind a login
    // (401, or 407 from a proxy), one that takes only POST (some SSE libraries stream over POST,
    // which `EventSource` cannot send), one that speaks only WebSocket (426). A script or proxy
    // might honour `Retry-After`; an `EventSource` does not, and the lab shows that.
    let required = match status {
        401 => Some(("WWW-Authenticate", "Bearer realm=\"lab\"")),
        405 => Some(("Allow", "POST")),
        407 => Some(("Proxy-Authenticate", "Bearer realm=\"lab\"")),
        426 => Some(("Upgrade", "websocket")),
        429 | 503 => Some(("Retry-After", "1")),
        _ => None,
    };
    if let Some((name, value)) = required {
        response.headers.push((name, value.to_string()));
    }
    response
}

/// Step 0 of `server::stream_events`: reads the switches of one `GET /events`, counts it under its
/// `run` label, and logs what a lab stream will do. `Err` is the answer to send instead of a
/// stream: a switch with a bad value (`400`), the status `status=N` asks for, or the redirect.
pub fn prepare(request: &Request, runs: &Runs, peer: SocketAddr) -> Result<Lab, Response> {
    let lab = Lab::parse(request.query()).map_err(|e| e.response())?;
    // `/lab/seen` counts what a browser's `EventSource` sends: `GET`s, not a `HEAD` from curl.
    if let Some(run) = &lab.run
        && request.method == "GET"
    {
        runs.saw(run);
    }
    if let Some(status) = lab.status {
        return Err(status_response(status));
    }
    if let Some(status) = lab.redirect {
        return Err(redirect_response(status, request));
    }
    if lab.is_on() {
        let (method, target) = (&request.method, &request.target);
        eprintln!("{peer} {method} {target} -> 200 {}", lab.describe());
    }
    Ok(lab)
}

/// How many `GET /events` requests arrived under each `run` label, for the last 100 labels.
#[derive(Default)]
pub struct Runs {
    counts: Mutex<VecDeque<(String, u64)>>,
}

/// How many labels [`Runs`] remembers; the oldest is forgotten first.
const RUNS_KEPT: usize = 100;

impl Runs {
    /// Counts one request under `run`.
    pub fn saw(&self, run: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match counts.iter_mut().find(|(label, _)| label == run) {
            Some((_, count)) => *count += 1,
            None => {
                if counts.len() == RUNS_KEPT {
                    counts.pop_front();
                }
                counts.push_back((run.to_string(), 1));
            }
        }
    }

    /// How many requests arrived under `run` (0 for a label never seen, or forgotten).
    pub fn count(&self, run: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .iter()
            .find(|(label, _)| label == run)
            .map_or(0, |(_, count)| *count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(query: &str) -> &'static str {
        match Lab::parse(query) {
            Err(HttpError::BadRequest(why)) => why,
            other => panic!("{query}: {other:?}"),
        }
    }

    #[test]
    fn no_query_is_an_ordinary_stream() {
        assert_eq!(Lab::parse("").unwrap(), Lab::default());
        assert!(!Lab::parse("").unwrap().is_on());
    }

    #[test]
    fn unknown_names_are_ignored() {
        assert_eq!(Lab::parse("t=123&x&&y=%zz").unwrap(), Lab::default());
    }

    #[test]
    fn switches_combine() {
        let lab = Lab::parse("end_after=3&retry=500&run=abc-1").unwrap();
        assert_eq!(lab.end_after, Some(3));
        assert_eq!(lab.retry, Some(Duration::from_millis(500)));
        assert_eq!(lab.run.as_deref(), Some("abc-1"));
        assert_eq!(lab.status, None);
        assert!(lab.is_on());
    }

    #[test]
    fn status_takes_204_and_400_to_599() {
        for (value, status) in [("204", 204), ("400", 400), ("503", 503), ("599", 599)] {
            assert_eq!(
                Lab::parse(&format!("status={value}")).unwrap().status,
                Some(status)
            );
        }
        for value in [
            "200",
            "301",
            "399",
            "600",
            "",
            "+503",
            "503 ",
            "5e2",
            "99999999999",
        ] {
            assert_eq!(
                bad(&format!("status={value}")),
                "status: expected 204, or a whole number from 400 to 599",
                "{value:?}"
            );
        }
    }

    #[test]
    fn type_is_percent_decoded_and_implies_one_event() {
        let lab = Lab::parse("type=text%2Fevent-stream%3B+charset%3Dutf-8").unwrap();
        assert_eq!(
            lab.content_type.as_deref(),
            Some("text/event-stream; charset=utf-8")
        );
        assert_eq!(lab.end_after, Some(1));
        let lab = Lab::parse("type=text/plain&end_after=4").unwrap();
        assert_eq!(lab.end_after, Some(4));
    }

    #[test]
    fn type_refuses_what_could_break_a_header() {
        for value in [
            "",
            "text/plain%0d%0aX-Evil:%201",
            "a%0ab",
            "a%09b",
            "caf%C3%A9",
            "a%00",
            &"a".repeat(101),
        ] {
            assert!(
                bad(&format!("type={value}")).starts_with("type: expected"),
                "{value:?}"
            );
        }
    }

    #[test]
    fn end_after_and_retry_ranges() {
        assert_eq!(Lab::parse("end_after=1000").unwrap().end_after, Some(1000));
        assert_eq!(Lab::parse("retry=0").unwrap().retry, Some(Duration::ZERO));
        assert_eq!(
            Lab::parse("retry=600000").unwrap().retry,
            Some(Duration::from_secs(600))
        );
        for query in ["end_after=0", "end_after=1001", "end_after=-1", "end_after"] {
            assert_eq!(
                bad(query),
                "end_after: expected a whole number from 1 to 1000"
            );
        }
        for query in ["retry=600001", "retry=1.5", "retry=%2B1"] {
            assert_eq!(
                bad(query),
                "retry: expected a whole number of milliseconds from 0 to 600000"
            );
        }
    }

    #[test]
    fn run_is_a_short_label() {
        assert_eq!(
            bad("run=a%20b"),
            "run: expected 1 to 32 letters, digits, - or _"
        );
        assert_eq!(
            bad(&format!("run={}", "a".repeat(33))),
            "run: expected 1 to 32 letters, digits, - or _"
        );
    }

    #[test]
    fn a_switch_given_twice_is_refused() {
        assert_eq!(bad("retry=1&retry=2"), "a lab switch is given twice");
    }

    #[test]
    fn bad_escapes_in_a_known_value_are_refused() {
        assert_eq!(bad("type=%zz"), "bad percent-encoding in the query string");
        assert_eq!(bad("type=%ff"), "bad percent-encoding in the query string");
    }

    #[test]
    fn only_the_essence_of_the_type_counts() {
        assert!(is_event_stream("text/event-stream"));
        assert!(is_event_stream("text/event-stream;charset=utf-8"));
        assert!(is_event_stream("Text/Event-Stream ; charset=windows-1252"));
        assert!(!is_event_stream("text/plain"));
        assert!(!is_event_stream("text/event-streams"));
        assert!(!is_event_stream("application/json; x=text/event-stream"));
    }

    #[test]
    fn describe_says_what_a_browser_will_do() {
        let lab = Lab::parse("type=text/plain&retry=500").unwrap();
        assert_eq!(
            lab.describe(),
            "lab stream: Content-Type text/plain: a browser fails the connection and will not retry; \
             ends after 1 event; retry: 500"
        );
        let lab = Lab::parse("type=text/event-stream;charset=utf-8").unwrap();
        assert!(
            lab.describe()
                .ends_with("ends after 1 event, then the browser reconnects with Last-Event-ID")
        );
    }

    #[test]
    fn status_answers_say_what_a_browser_does() {
        let response = status_response(503);
        assert_eq!(response.status, 503);
        assert_eq!(
            String::from_utf8(response.body).unwrap(),
            "503 (lab): a browser fails the connection: readyState CLOSED, no retry, whatever Retry-After says\n"
        );
        assert!(
            response
                .headers
                .contains(&("Retry-After", String::from("1")))
        );
        let response = status_response(204);
        assert_eq!((response.status, response.body.len()), (204, 0));
    }

    #[test]
    fn runs_count_and_forget_the_oldest() {
        let runs = Runs::default();
        runs.saw("a");
        runs.saw("a");
        assert_eq!((runs.count("a"), runs.count("b")), (2, 0));
        for i in 0..RUNS_KEPT {
            runs.saw(&i.to_string());
        }
        assert_eq!(runs.count("a"), 0, "forgotten");
        assert_eq!(runs.count("99"), 1);
    }
}
