//! `cargo run --example listen -- [URL] [--json] [--last-event-id ID] [--max-events N]`
//!
//! Listens to an event stream the way a browser's `EventSource` does (`sse_server::client`):
//! each event on stdout, and on stderr what the connection does: connected, retry changed, the
//! stream ended, reconnecting with `Last-Event-ID`, failed, stopped. Try it with the lab's
//! switches, for example `http://127.0.0.1:3000/events?end_after=3&retry=1000`.
//!
//! Exit status: 0 after `--max-events` events or a `204`; 1 when the connection fails (a status
//! other than 200, the wrong type, a bad redirect); 2 for bad arguments or a URL it cannot use.

use sse_server::client::{End, Event, EventSource, Report, Url};
use sse_server::http::digits;
use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;

const USAGE: &str = "usage: listen [URL] [--json] [--last-event-id ID] [--max-events N]   (URL: http://..., default http://127.0.0.1:3000/events)";

struct Options {
    url: Url,
    json: bool,
    last_event_id: String,
    max_events: Option<u64>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("listen: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut source = EventSource::new(options.url.clone());
    source.last_event_id = options.last_event_id;
    eprintln!("connecting to {}", options.url);
    let mut seen = 0;
    let mut previous_id = String::new();
    let end = source.run(|report| {
        match report {
            Report::Open => eprintln!("connected"),
            Report::Event(event) => {
                // An event without an `id:` line keeps the last event ID of the one before: show
                // an id only where it changed, as the frame most likely carried it.
                let new_id = event.last_event_id != previous_id;
                previous_id.clone_from(&event.last_event_id);
                print_event(&event, new_id, options.json);
                seen += 1;
                if options.max_events == Some(seen) {
                    return ControlFlow::Break(());
                }
            }
            Report::Retry(delay) => eprintln!("retry now {} ms", delay.as_millis()),
            Report::Redirect(to) => eprintln!("redirected to {to}"),
            Report::Lost(why) => eprintln!("{why}"),
            Report::Reconnecting {
                delay,
                last_event_id,
            } => match last_event_id.as_str() {
                "" => eprintln!("reconnecting in {} ms", delay.as_millis()),
                id => eprintln!(
                    "reconnecting in {} ms with Last-Event-ID {id}",
                    delay.as_millis()
                ),
            },
        }
        ControlFlow::Continue(())
    });
    match end {
        End::Closed => ExitCode::SUCCESS,
        End::Stopped => {
            eprintln!("stopped: 204 No Content, the server's way to say stop reconnecting");
            ExitCode::SUCCESS
        }
        End::Failed(why) => {
            eprintln!("failed: {why}; a browser would not reconnect either");
            ExitCode::from(1)
        }
    }
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut url = None;
    let mut options = Options {
        url: Url::parse("http://127.0.0.1:3000/events")?,
        json: false,
        last_event_id: String::new(),
        max_events: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--json" => options.json = true,
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
    Ok(options)
}

/// One event, readably (`type (id N): data` when the id changed, further lines indented) or as
/// one JSON object, which always has the `lastEventId`.
fn print_event(event: &Event, new_id: bool, json: bool) {
    let line = if json {
        format!(
            "{{\"type\":{},\"data\":{},\"lastEventId\":{}}}",
            json_string(&event.event_type),
            json_string(&event.data),
            json_string(&event.last_event_id)
        )
    } else {
        let label = match event.last_event_id.as_str() {
            id if new_id && !id.is_empty() => format!("{} (id {id})", event.event_type),
            _ => event.event_type.clone(),
        };
        let indent = " ".repeat(label.chars().count() + 2);
        format!(
            "{label}: {}",
            event.data.replace('\n', &format!("\n{indent}"))
        )
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`listen | head`) is no reason to panic.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
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
