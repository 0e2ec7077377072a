//! `cargo run --example listen -- [URL] [--json] [--last-event-id ID] [--max-events N]
//! [--idle-timeout SECS] [--timestamps]`
//!
//! Listens to an event stream the way a browser's `EventSource` does (`sse_server::client`):
//! each event on stdout, and on stderr what the connection does: connected, retry changed, the
//! stream ended, reconnecting with `Last-Event-ID`, failed, stopped. Try it with the lab's
//! switches, for example `http://127.0.0.1:3000/events?end_after=3&retry=1000`, and
//! `--timestamps` to see the waits between reconnects in milliseconds.
//!
//! `--idle-timeout SECS` takes a connection that brings no byte for that long as lost, and
//! reconnects (this server sends a comment line when it has sent nothing for `HEARTBEAT_MS`, 15 s
//! unless set).
//!
//! Exit status: 0 after `--max-events` events, a `204` or `--help`; 1 when the connection fails
//! (a status other than 200, the wrong type, a bad redirect, a line or an event over the client's
//! limits); 2 for bad arguments or a URL it cannot use.

use sse_server::client::{End, Event, EventSource, Report, Url};
use sse_server::http::digits;
use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: listen [URL] [--json] [--last-event-id ID] [--max-events N] [--idle-timeout SECS] [--timestamps]   (URL: http://..., default http://127.0.0.1:3000/events)";

struct Options {
    url: Url,
    json: bool,
    last_event_id: String,
    max_events: Option<u64>,
    /// No byte for this long: the connection is taken as lost (`EventSource::idle_timeout`).
    idle_timeout: Option<Duration>,
    timestamps: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("listen: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    // `[1003 ms] ` before each event and each message with `--timestamps`, nothing without.
    let stamp = || {
        if options.timestamps {
            format!("[{} ms] ", start.elapsed().as_millis())
        } else {
            String::new()
        }
    };
    let mut source = EventSource::new(options.url.clone());
    source.last_event_id.clone_from(&options.last_event_id);
    source.idle_timeout = options.idle_timeout;
    match options.last_event_id.as_str() {
        "" => eprintln!("{}connecting to {}", stamp(), options.url),
        id => eprintln!(
            "{}connecting to {} with Last-Event-ID {id}",
            stamp(),
            options.url
        ),
    }
    let mut seen = 0;
    let end = source.run(|report| {
        match report {
            Report::Open => eprintln!("{}connected", stamp()),
            Report::Event(event) => {
                let ms = options.timestamps.then(|| start.elapsed().as_millis());
                // Nobody reads any more (`listen | head` ended): stop, as `head` meant.
                if print_event(&event, ms, options.json).is_err() {
                    return ControlFlow::Break(());
                }
                seen += 1;
                if options.max_events == Some(seen) {
                    return ControlFlow::Break(());
                }
            }
            Report::Retry(delay) => eprintln!("{}retry now {} ms", stamp(), delay.as_millis()),
            Report::Redirect(to) => eprintln!("{}redirected to {to}", stamp()),
            Report::Lost(why) => eprintln!("{}{why}", stamp()),
            Report::Reconnecting {
                delay,
                last_event_id,
            } => match last_event_id.as_str() {
                "" => eprintln!("{}reconnecting in {} ms", stamp(), delay.as_millis()),
                id => eprintln!(
                    "{}reconnecting in {} ms with Last-Event-ID {id}",
                    stamp(),
                    delay.as_millis()
                ),
            },
        }
        ControlFlow::Continue(())
    });
    match end {
        End::Closed => ExitCode::SUCCESS,
        End::Stopped => {
            eprintln!(
                "{}stopped: 204 No Content, the server's way to say stop reconnecting",
                stamp()
            );
            ExitCode::SUCCESS
        }
        End::Failed(why) => {
            eprintln!("{}failed: {why}", stamp());
            ExitCode::from(1)
        }
    }
}

/// The options, or `None` for `--help`.
fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut url = None;
    let mut options = Options {
        url: Url::parse("http://127.0.0.1:3000/events")?,
        json: false,
        last_event_id: String::new(),
        max_events: None,
        idle_timeout: None,
        timestamps: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--json" => options.json = true,
            "--timestamps" => options.timestamps = true,
            "--idle-timeout" => {
                let secs = value()?;
                match digits(secs) {
                    Some(secs) if secs > 0 => {
                        options.idle_timeout = Some(Duration::from_secs(secs));
                    }
                    _ => {
                        return Err(format!(
                            "--idle-timeout {secs}: expected a whole number of seconds above 0"
                        ));
                    }
                }
            }
            "--last-event-id" => {
                let id = value()?;
                // It goes into a request header: no line breaks or other control characters.
                if id.chars().any(char::is_control) {
                    return Err(String::from(
                        "--last-event-id must not hold control characters",
                    ));
                }
                options.last_event_id = id.clone();
            }
            "--max-events" => {
                let n = value()?;
                match digits(n) {
                    Some(count) if count > 0 => options.max_events = Some(count),
                    _ => return Err(format!("--max-events {n}: expected a whole number above 0")),
                }
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ if url.is_some() => return Err(format!("a second URL: {arg}")),
            text => url = Some(Url::parse(text)?),
        }
    }
    if let Some(url) = url {
        options.url = url;
    }
    Ok(Some(options))
}

/// One event, readably (`type (lastEventId X): data`, further lines indented) or as one JSON
/// object; with `--timestamps`, the milliseconds since start go first (`[1003 ms] `), or into
/// the object as `"ms"`, so that each line is still one JSON object.
///
/// The id shown is the event's `lastEventId`, as a page sees it: the source's last event ID when
/// the event was dispatched. A frame without an `id:` line keeps the one before, so an event
/// that shows an id did not necessarily carry it; the text says `lastEventId` for that reason.
fn print_event(event: &Event, ms: Option<u128>, json: bool) -> std::io::Result<()> {
    let line = if json {
        let ms = ms.map_or(String::new(), |ms| format!(",\"ms\":{ms}"));
        format!(
            "{{\"type\":{},\"data\":{},\"lastEventId\":{}{ms}}}",
            json_string(&event.event_type),
            json_string(&event.data),
            json_string(&event.last_event_id)
        )
    } else {
        let stamp = ms.map_or(String::new(), |ms| format!("[{ms} ms] "));
        let label = match event.last_event_id.as_str() {
            "" => event.event_type.clone(),
            id => format!("{} (lastEventId {id})", event.event_type),
        };
        let indent = " ".repeat(stamp.chars().count() + label.chars().count() + 2);
        format!(
            "{stamp}{label}: {}",
            event.data.replace('\n', &format!("\n{indent}"))
        )
    };
    // A closed pipe is an error here, not a panic: Rust ignores SIGPIPE, so `writeln!` returns
    // it, and the caller stops.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

/// A JSON string (RFC 8259 §7): quotes, backslashes and every control character escaped.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
