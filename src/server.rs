//! The server: accept connections, give each its own thread, read its request and route it.
//!
//! Start with `stream_events`: it is the whole Server-Sent Events handshake, step by step. The
//! rest is plain HTTP: the page from `public/`, `POST /publish`, and `GET /lab/seen` for the lab.

use crate::broadcast::ClientList;
use crate::config::Config;
use crate::dates::http_date;
use crate::event_log::Resume;
use crate::http::{self, HttpError, Request, Response, query_value};
use crate::lab::{self, Lab};
use crate::redis_log::{PublishError, RedisLog};
use crate::{event, static_files, ticker};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// The largest body `POST /publish` takes: 64 KiB.
pub const MAX_PUBLISH: u64 = 64 * 1024;

/// What every connection thread shares.
struct App {
    config: Config,
    clients: ClientList,
    /// The lab's request counts, by `run` label.
    runs: lab::Runs,
    /// With `REDIS_URL`: the shared log (`redis_log.rs`); `None`: the log is this process's own.
    redis: Option<RedisLog>,
}

/// Serves on `listener` forever: starts the ticker, then accepts connections.
pub fn serve(listener: TcpListener, config: Config) -> ! {
    let app = Arc::new(App {
        clients: ClientList::new(config.max_clients, config.writers, config.write_timeout),
        runs: lab::Runs::default(),
        redis: config.redis.clone().map(RedisLog::new),
        config,
    });
    // With Redis, one thread follows the shared stream into our copy of the log.
    if app.redis.is_some() {
        let app = Arc::clone(&app);
        start_thread(String::from("redis reader"), move || {
            if let Some(redis) = &app.redis {
                redis.run_reader(&app.clients)
            }
        });
    }
    // The writers: one thread per share of the stream clients, each bringing its clients up to
    // the end of the event log whenever something is appended.
    for writer in 0..app.config.writers.max(1) {
        let app = Arc::clone(&app);
        start_thread(format!("writer {writer}"), move || {
            app.clients.run_writer(writer)
        });
    }
    let ticker_app = Arc::clone(&app);
    // The ticker only appends to the log, and nothing there returns an error: a failed write
    // drops that client, in a writer thread, never the ticker.
    start_thread(String::from("ticker"), move || {
        ticker::run(
            &ticker_app.clients,
            ticker_app.config.tick,
            ticker_app.config.heartbeat,
            ticker_app.redis.is_some(),
        )
    });

    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut backoff = Duration::ZERO;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(connection) => connection,
            Err(e) => {
                // Out of file descriptors, for example: retrying at once would fail the same way,
                // as fast as the loop can spin, each time with a log line. Wait, longer each time
                // in a row (10 ms, doubling, at most 1 s), and never give up.
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                eprintln!("accept failed: {e}; retrying in {backoff:?}");
                thread::sleep(backoff);
                continue;
            }
        };
        backoff = Duration::ZERO;
        // One thread per connection costs memory and a kernel task each, so their number is
        // capped, here, before a thread is started: the Rust Book gives its web server a thread
        // pool (chapter 21) for the same reason. Only this loop adds to the count, so reading it
        // and then adding cannot overshoot.
        let busy = in_flight.load(Ordering::Relaxed);
        if busy >= app.config.max_in_flight {
            refuse_busy(stream, peer, busy);
            continue;
        }
        let counted = InFlight::start(&in_flight);
        let app = Arc::clone(&app);
        // One thread per connection, with a small stack: it parses one request and answers it, or
        // for a stream hands the socket to the client list, then ends. An open stream keeps no
        // thread of its own, only its socket and position in the list.
        let spawned = thread::Builder::new()
            .name(String::from("connection"))
            .stack_size(64 * 1024)
            .spawn(move || {
                handle_connection(stream, peer, &app);
                drop(counted);
            });
        if let Err(e) = spawned {
            eprintln!("{peer}: cannot start a thread ({e}); closing");
        }
    }
}

/// Starts one of the threads the server cannot do without, named for what it does (a panic
/// message or a debugger then says which). Without it the server would run broken, so a failure
/// here, at start-up, ends the process with a clear message instead.
fn start_thread(name: String, run: impl FnOnce() + Send + 'static) {
    if let Err(e) = thread::Builder::new().name(name.clone()).spawn(run) {
        eprintln!("cannot start the {name} thread: {e}");
        std::process::exit(2);
    }
}

/// One connection thread counted in the accept loop's `in_flight`, until it is dropped: when the
/// thread ends, returns or panics, or could not be started.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Over `MAX_IN_FLIGHT`: answers `503` with `Retry-After` from the accept loop itself, so it must
/// not wait. The socket is made non-blocking and the answer, a few hundred bytes, goes into the
/// kernel's empty send buffer in one write; the request is never read. (Closing a socket with
/// unread input can make the kernel send a reset, and a client may lose the answer to it: this is
/// a best effort, and the client sees a refused request either way.)
fn refuse_busy(mut stream: TcpStream, peer: SocketAddr, busy: usize) {
    eprintln!("{peer} -> 503: {busy} connections already in flight (MAX_IN_FLIGHT)");
    let bytes = http::response_bytes(&HttpError::Busy.response(), false);
    if stream.set_nonblocking(true).is_ok() {
        let _ = stream.write(&bytes);
        let _ = stream.shutdown(Shutdown::Write);
    }
}

/// Reads one request and answers it.
fn handle_connection(mut stream: TcpStream, peer: SocketAddr, app: &App) {
    let deadline = Instant::now() + app.config.head_timeout;
    let (buf, head_len) = match http::read_head(&mut stream, deadline, http::MAX_HEAD) {
        Ok(Some(read)) => read,
        Ok(None) => {
            return respond(
                &mut stream,
                peer,
                "(head too large)",
                Err(HttpError::HeadTooLarge),
                false,
                "",
            );
        }
        // A client that connects and leaves without a word (a browser's spare connection):
        // nothing to say.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            let limit = app.config.head_timeout;
            return eprintln!("{peer}: request head not complete within {limit:?}; closing");
        }
        Err(e) => return eprintln!("{peer}: reading the request head failed ({e}); closing"),
    };
    let request = match http::parse_request(&buf[..head_len]) {
        Ok(request) => request,
        Err(e) => return respond(&mut stream, peer, "(malformed request)", Err(e), false, ""),
    };
    let summary = format!("{} {}", request.method, request.target);
    // `HEAD` is `GET` without the body (RFC 9110 §9.3.2): it is routed as `GET` here, in one
    // place, so no route can forget it, and the body is left out when the answer is written.
    let head_only = request.method == "HEAD";
    let method = if head_only { "GET" } else { &request.method };
    // Every route, the page included: see `http::host_allowed` for the attack this stops.
    if let Some(host) = &request.host
        && !http::host_allowed(host, &app.config.allowed_hosts)
    {
        return respond(
            &mut stream,
            peer,
            &summary,
            Err(HttpError::UnknownHost),
            head_only,
            "",
        );
    }
    let response = match (method, request.path()) {
        // `/sse` is the same stream under the name Express tutorials use (README, "Coming from an
        // Express tutorial?").
        ("GET", "/events" | "/sse") => return stream_events(stream, peer, &request, app),
        (_, "/events" | "/sse") => Err(HttpError::MethodNotAllowed("GET, HEAD")),
        ("POST", "/publish") => publish(&mut stream, &request, &buf[head_len..], deadline, app),
        (_, "/publish") => Err(HttpError::MethodNotAllowed("POST")),
        ("GET", "/lab/seen") => lab_seen(&request, app),
        (_, "/lab/seen") => Err(HttpError::MethodNotAllowed("GET, HEAD")),
        #[cfg(test)]
        (_, "/test/panic") => app.clients.panic_while_locked(),
        ("GET", path) => static_file(&app.config, path),
        (_, path) => match static_files::find(&app.config.public_dir, path) {
            Ok(_) => Err(HttpError::MethodNotAllowed("GET, HEAD")),
            Err(e) => Err(e),
        },
    };
    respond(&mut stream, peer, &summary, response, head_only, "");
}

/// `GET /events`: the Server-Sent Events handshake, then the stream.
fn stream_events(mut stream: TcpStream, peer: SocketAddr, request: &Request, app: &App) {
    let summary = format!("{} {}", request.method, request.target);
    let head_only = request.method == "HEAD";
    // Any answer here but the stream fails a browser's EventSource; the log says what it does.
    let refuse = |stream: &mut TcpStream, response: Result<Response, HttpError>| {
        let status = response
            .as_ref()
            .map_or_else(HttpError::status, |r| r.status);
        let note = format!(": {}", lab::verdict(status));
        respond(stream, peer, &summary, response, head_only, &note);
    };
    // Step 0, the lab: query-string switches that make this stream misbehave on purpose
    // (lab.rs). A plain `GET /events` has none, and `lab` changes nothing below: on a first
    // read, skip every line that mentions `lab`.
    let lab = match lab::prepare(request, &app.runs, peer) {
        Ok(lab) => lab,
        Err(answer) => return refuse(&mut stream, Ok(answer)),
    };

    // Step 1: the response head. `200` with `Content-Type: text/event-stream` is what an
    // `EventSource` checks before reading a single event; any other status or type "fails the
    // connection" and the browser never retries (§9.2.2-§9.2.3).
    let mut handshake = String::from("HTTP/1.1 200 OK\r\n");
    let content_type = lab.content_type.as_deref().unwrap_or("text/event-stream");
    handshake += &format!("Content-Type: {content_type}\r\n");
    // Never cache a live stream (browsers fetch it with cache mode "no-store", §9.2.2), and ask
    // proxies not to transform it: a proxy that compresses holds events back to fill its window.
    // Tell nginx, which reads the next header, not to buffer it either.
    handshake += "Cache-Control: no-cache, no-transform\r\n";
    handshake += "X-Accel-Buffering: no\r\n";
    // RFC 9110 §6.6.1: the time of the response, as every answer here carries.
    handshake += &format!("Date: {}\r\n", http_date(SystemTime::now()));
    // No Content-Length and no chunking: the body runs until the connection closes (RFC 9112
    // §6.3), so every frame reaches the browser the moment it is written (§9.2.7 warns that
    // chunking done by a layer unaware of the timing can hold events back). No connection is
    // ever used for a second request here, and RFC 9112 §9.6 says a server that keeps none must
    // send `close` in every response.
    handshake += "Connection: close\r\n\r\n";
    if head_only {
        // `HEAD /events`: the head a `GET` gets, and nothing after it; a `503` when it would.
        if app.clients.is_full() {
            return refuse(&mut stream, Err(HttpError::TooManyClients));
        }
        eprintln!("{peer} {summary} -> 200 OK");
        let _ = stream.write_all(handshake.as_bytes());
        return;
    }

    // Step 2: the first frame sets the browser's reconnection delay (§9.2.6 "retry").
    handshake += &event::retry(lab.retry.unwrap_or(app.config.retry).as_millis());

    // Step 3: a reconnecting browser sends the id of the last event it saw (§9.2.4). A page that
    // kept an id itself (across a reload, when the browser has none to send) passes it as
    // `?after=ID`; the header, when there is one, is the browser's own and newer, so it wins. A
    // value we cannot read is never refused (any answer but 200 would stop the browser for
    // good): see `Resume`.
    let last_event_id = request.header("last-event-id");
    let after = query_value(request.query(), "after");
    let mut resume = Resume::from_header(last_event_id.or(after.as_deref()));
    // A lab stream says first what it received, so a page can show what its browser sent.
    if lab.is_on() {
        handshake += &event::frame(None, Some("lab"), &lab::echo(last_event_id));
    }

    // Step 3b, with Redis only (redis_log.rs): the replay comes from the shared stream, which
    // holds what other servers published too; then the client joins our copy of the log after
    // the last id it was sent. Redis unreachable: a `200`, the `retry:`, and the end of the
    // stream, so the browser tries again later; a `503` would fail it for good (§9.2.2-§9.2.3).
    if let Some(redis) = &app.redis {
        match redis.replay(resume, &app.clients) {
            Ok(replay) => {
                handshake += &replay.frames;
                resume = replay.resume;
                if !replay.note.is_empty() {
                    eprintln!("{peer} {summary}: {}", replay.note);
                }
            }
            Err(e) => {
                eprintln!(
                    "{peer} {summary} -> 200, retry: and the end: Redis at {} is unreachable \
                     ({e}); the browser tries again after its retry time",
                    redis.addr()
                );
                let _ = stream.write_all(handshake.as_bytes());
                return;
            }
        }
    }

    // Step 4: join the client list, at the place in the event log that id asks for. From here on
    // a writer thread sends this client everything from that place to the end of the log,
    // handshake first: the replay and the live events are one stream, with no hand-over. This
    // thread is done.
    // Each frame is small and complete: send it now instead of waiting to fill a packet (Nagle).
    let _ = stream.set_nodelay(true);
    // Non-blocking: a writer must never wait for one client while the others wait behind it.
    if let Err(e) = stream.set_nonblocking(true) {
        return eprintln!("{peer}: cannot make the socket non-blocking ({e}); closing");
    }
    let joined = app
        .clients
        .connect(stream, peer, resume, handshake.into_bytes(), lab.end_after);
    if let Err(mut stream) = joined {
        // The cap is here. Beware: a 503 fails the EventSource for good (§9.2.2), so this browser
        // will not retry until its page is reloaded; only scripts and proxies read Retry-After.
        // The README says what production servers do instead.
        let _ = stream.set_nonblocking(false);
        refuse(&mut stream, Err(HttpError::TooManyClients));
    }
}

/// `GET /lab/seen?run=LABEL`: how many `GET /events` requests carried `run=LABEL`, as a number
/// on a line of its own. The lab's page asks this to show that a browser sent no second request
/// after a `204`.
fn lab_seen(request: &Request, app: &App) -> Result<Response, HttpError> {
    let run = Lab::parse(request.query())?
        .run
        .ok_or(HttpError::BadRequest("run: expected ?run=LABEL"))?;
    let count = format!("{}\n", app.runs.count(&run));
    Ok(Response::new(
        200,
        "text/plain; charset=utf-8",
        count.into_bytes(),
    ))
}

/// `POST /publish`: appends the body to the event log as `event: publish`, and answers as soon as
/// it is there: the writers deliver it to every stream client on their next pass.
fn publish(
    stream: &mut TcpStream,
    request: &Request,
    already_read: &[u8],
    deadline: Instant,
    app: &App,
) -> Result<Response, HttpError> {
    // A page on any other site could make a visitor's browser POST here; browsers mark such a
    // request with its Origin. curl sends none, and is welcome. The page's own origin names the
    // host and port the browser asked for, which is what `Host` says too. Its scheme is left
    // out of the comparison: behind a proxy that ends TLS the page is `https://` while this
    // server speaks plain HTTP.
    if let Some(origin) = request.header("origin") {
        let host = request.host.as_deref().unwrap_or_default();
        if !http::same_origin(origin, host) {
            return Err(HttpError::Forbidden);
        }
    }
    let len = request.content_length.ok_or(HttpError::LengthRequired)?;
    if len > MAX_PUBLISH {
        return Err(HttpError::PayloadTooLarge);
    }
    // A client that sent `Expect: 100-continue` (curl does, for large bodies) waits for this
    // before sending the body (RFC 9110 §10.1.1). We only say it once the body is known to be
    // welcome, and never to an HTTP/1.0 client, which has no such status and would take it for
    // the answer.
    let expects_continue = request.version == "HTTP/1.1" && request.header("expect").is_some();
    if expects_continue && stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
        return Err(HttpError::BadRequest("connection failed before the body"));
    }
    let body =
        http::read_body(stream, already_read, len as usize, deadline).map_err(|e| {
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HttpError::BodyTimeout,
                _ => HttpError::BadRequest("body shorter than Content-Length"),
            }
        })?;
    let text = String::from_utf8(body).map_err(|_| HttpError::BadRequest("body is not UTF-8"))?;
    let id = match &app.redis {
        None => app.clients.append(Some("publish"), &text),
        // With Redis, the event exists once the shared stream has it, and only then: never
        // "deliver locally" when Redis is down, as that id would be in no shared log.
        Some(redis) => redis.publish("publish", &text).map_err(|e| {
            let (error, what) = match e {
                PublishError::NotPublished(e) => (HttpError::LogUnavailable, e),
                PublishError::Unconfirmed(e) => (HttpError::LogTimeout, e),
            };
            let status = error.status();
            eprintln!(
                "publish failed: Redis at {} ({what}); {status}",
                redis.addr()
            );
            error
        })?,
    };
    eprintln!(
        "published {} bytes as event {id}, on its way to {} connected",
        text.len(),
        app.clients.len()
    );
    Ok(Response::no_content())
}

/// `GET` and `HEAD` of a file in `public/`.
fn static_file(config: &Config, path: &str) -> Result<Response, HttpError> {
    let file = static_files::find(&config.public_dir, path)?;
    let body = std::fs::read(&file).map_err(|_| HttpError::NotFound)?;
    Ok(Response::new(200, static_files::content_type(&file), body))
}

/// Writes the answer to a non-stream request, logs it, and closes the connection. `note` goes on
/// the log line after the status: what a browser makes of the answer, where that is worth saying.
fn respond(
    stream: &mut TcpStream,
    peer: SocketAddr,
    summary: &str,
    response: Result<Response, HttpError>,
    head_only: bool,
    note: &str,
) {
    let response = response.unwrap_or_else(|e| e.response());
    // A status the lab sends may have no reason phrase: then the number stands alone.
    let status = format!("{} {}", response.status, http::reason(response.status));
    eprintln!("{peer} {summary} -> {}{note}", status.trim_end());
    if let Err(e) = http::write_response(stream, &response, head_only) {
        eprintln!("{peer}: could not send the response ({e})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Reads from a stream client until it has seen `n` more ticks, or fails after 5 s.
    fn read_ticks(stream: &mut TcpStream, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = String::new();
        let mut buf = [0; 4096];
        while seen.matches("data: {\"time\"").count() < n {
            assert!(Instant::now() < deadline, "ticks stopped: {seen:?}");
            match stream.read(&mut buf) {
                Ok(n) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                other => panic!("stream ended: {other:?}"),
            }
        }
    }

    /// Connects and sends a request, with a read timeout for what comes back.
    fn send(addr: SocketAddr, request: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request).unwrap();
        stream
    }

    #[test]
    fn a_panic_while_holding_the_list_stops_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config {
            tick: Duration::from_millis(20),
            ..Config::default()
        };
        thread::spawn(move || serve(listener, config));
        let mut before = send(addr, b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
        read_ticks(&mut before, 1);

        // One connection's thread panics with the client list locked: the mutex is now poisoned.
        let mut doomed = send(addr, b"GET /test/panic HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(
            doomed.read(&mut [0; 16]).unwrap(),
            0,
            "that connection just closes"
        );

        // The ticker goes on, the old client still receives, a new one connects, publish works.
        read_ticks(&mut before, 3);
        let mut after = send(addr, b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
        read_ticks(&mut after, 2);
        let mut publisher = send(
            addr,
            b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nok",
        );
        let mut response = [0; 12];
        publisher.read_exact(&mut response).unwrap();
        assert_eq!(&response, b"HTTP/1.1 204");
    }
}
