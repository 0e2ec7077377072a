//! The shared log: with `REDIS_URL` set, one Redis stream, `sse:events`, is the event log of
//! every server that points at it, so several servers give their clients the same events, in the
//! same order, with the same ids.
//!
//! Three paths: publish is `XADD`, and the id Redis gives is the event's SSE `id:` (§9.2.6
//! "id"); a reader thread finds the stream's newest id (`XREVRANGE`), then follows it with
//! `XREAD` and copies what it reads into this server's own
//! [`EventLog`](crate::event_log::EventLog), which becomes a mirror; a resume (§9.2.4
//! `Last-Event-ID`) is replayed from the stream with `XRANGE`. Only `redis://host:port`: no
//! password, no TLS, no Sentinel or Cluster (README, "Past one process").

use crate::broadcast::ClientList;
use crate::event;
use crate::event_log::{EventId, Resume, gap_notice};
use crate::resp::{self, Connection, Reply};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, TryLockError};
use std::thread;
use std::time::Duration;

/// The one stream every server shares.
pub const STREAM: &str = "sse:events";

/// `MAXLEN 101`, exactly (not `~ 101`, which lets Redis keep more to trim in whole blocks): the
/// last 100 events, plus the one before them. A browser resumes from the id of the last event it
/// saw, and finding that id in the stream is what proves nothing between is missing; so to replay
/// up to 100 missed events, the stream must also hold the one the browser saw.
pub const MAXLEN: usize = 101;

/// How long a connect, a command or a reply may take before Redis counts as unreachable.
const TIMEOUT: Duration = Duration::from_secs(2);

/// `XREAD ... BLOCK 5000`: Redis answers after 5 s with nothing if no event came. Never
/// `BLOCK 0` (forever): a connection that died without a word would hang the reader for good.
const BLOCK_MS: u64 = 5000;

/// `0-0`, before any entry: reading after it reads the whole stream.
const START: EventId = EventId { ms: 0, seq: 0 };

/// The reader's first wait before reconnecting, and the most it waits (the wait doubles).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Reads `redis://host:port` and gives `host:port`; the error names what is wrong.
pub fn parse_url(url: &str) -> Result<String, String> {
    let bad = |why: &str| format!("REDIS_URL={url:?} is invalid: {why}");
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| bad("expected redis://host:port (rediss://, TLS, is not supported)"))?;
    if rest.contains(['@', '/', '?']) {
        return Err(bad(
            "expected redis://host:port (no password, database or options)",
        ));
    }
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| bad("expected redis://host:port, with the port"))?;
    match port.parse::<u16>() {
        Ok(1..) if !host.is_empty() => Ok(rest.to_string()),
        _ => Err(bad("expected redis://host:port, the port from 1 to 65535")),
    }
}

pub struct RedisLog {
    /// `host:port`.
    addr: String,
    /// The reader is connected and following the stream. When it is not, a new stream is ended
    /// at once (see `server::stream_events`), and a publish fails at once.
    up: AtomicBool,
    /// Counts the reader's (re)connections: a publishing connection made before the last one may
    /// be to a Redis that has since restarted, and is replaced.
    epoch: AtomicU64,
    /// The connection `POST /publish` keeps for the next one, with the epoch it was made in.
    publisher: Mutex<Option<(u64, Connection)>>,
}

/// Why a publish failed, and so whether the event may be in the stream after all.
#[derive(Debug)]
pub enum PublishError {
    /// This server is not connected to Redis, Redis never got the whole command, or it refused
    /// it: nothing was published.
    NotPublished(io::Error),
    /// The command went out and no id came back (no answer in time, the connection closed, or
    /// an answer that is not an id): Redis may have added the event, and then every client gets
    /// it, or not; this server cannot tell which.
    Unconfirmed(io::Error),
}

/// What a resuming client is sent from the stream before it joins the client list.
pub struct Replay {
    /// The `gap` notice if any, then the replayed events, framed.
    pub frames: String,
    /// Where it joins our mirror of the log: after the last id it was sent.
    pub resume: Resume,
    /// For the server log; empty for a new stream, which replays nothing.
    pub note: String,
}

impl RedisLog {
    pub fn new(addr: String) -> RedisLog {
        RedisLog {
            addr,
            up: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            publisher: Mutex::new(None),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// `XADD sse:events MAXLEN 101 * type <type> data <data>`: `*` lets Redis choose the id,
    /// `<ms>-<seq>`, larger than any before. Returns it once Redis has the event.
    pub fn publish(&self, event_type: &str, data: &str) -> Result<EventId, PublishError> {
        // The reader is the one that notices Redis is gone; while it is, fail at once rather than
        // wait out a connect timeout per publish.
        if !self.is_up() {
            return Err(PublishError::NotPublished(not_connected()));
        }
        // The kept connection, if no other publish is using it. One that is in use is not waited
        // for: behind a slow Redis, each publish in a queue would wait out the ones before it.
        // This one opens a connection of its own instead (a fraction of a millisecond on
        // loopback). A busier server would keep a pool.
        let mut kept = match self.publisher.try_lock() {
            Ok(kept) => Some(kept),
            Err(TryLockError::Poisoned(kept)) => Some(kept.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut redis = match kept.as_mut().and_then(|kept| kept.take()) {
            Some((made, connection)) if made == epoch && connection.is_usable() => connection,
            _ => Connection::open(&self.addr, TIMEOUT).map_err(PublishError::NotPublished)?,
        };
        let maxlen = MAXLEN.to_string();
        let args = [
            "XADD", STREAM, "MAXLEN", &maxlen, "*", "type", event_type, "data", data,
        ];
        // A connection that failed once is not trusted again: it is dropped, and the next
        // publish opens one.
        redis.send(&args).map_err(PublishError::NotPublished)?;
        let id = match redis.reply().map_err(PublishError::Unconfirmed)? {
            Reply::Bulk(id) => parse_id(&id).map_err(PublishError::Unconfirmed)?,
            Reply::Error(text) => {
                return Err(PublishError::NotPublished(io::Error::other(format!(
                    "Redis: {text}"
                ))));
            }
            other => {
                let odd = invalid(format!("XADD answered {other:?}"));
                return Err(PublishError::Unconfirmed(odd));
            }
        };
        if let Some(kept) = &mut kept {
            **kept = Some((epoch, redis));
        }
        Ok(id)
    }

    /// The replay for a new stream that asked to resume (§9.2.4). `XRANGE sse:events <id> +`:
    /// if the first entry is that id, the browser saw it and missed exactly the rest; if not
    /// (trimmed, never in this stream, not an id at all), the `gap` notice, then all that is kept.
    /// An error if Redis is unreachable.
    pub fn replay(&self, resume: Resume, clients: &ClientList) -> io::Result<Replay> {
        if !self.is_up() {
            return Err(not_connected());
        }
        let asked = match resume {
            Resume::After(id) => Some(id),
            Resume::Unreadable => None,
            Resume::New | Resume::Through(_) => {
                let (frames, note) = (String::new(), String::new());
                return Ok(Replay {
                    frames,
                    resume,
                    note,
                });
            }
        };
        // A connection of its own for each resume: a connect to Redis costs a fraction of a
        // millisecond on loopback. A busier server would keep a pool.
        let mut redis = Connection::open(&self.addr, TIMEOUT)?;
        let mut frames = String::new();
        let mut note = format!(
            "Last-Event-ID {} -> ",
            asked.map_or(String::from("not an id of ours"), |id| id.to_string())
        );
        // Our copy's newest id before reading, for a client that gets the gap and nothing else.
        let copied = clients.last_id();
        let mut entries = match asked {
            Some(id) => range(&mut redis, &id.to_string())?,
            None => Vec::new(),
        };
        let resumed = asked.is_some() && entries.first().map(|e| e.id) == asked;
        if resumed {
            entries.remove(0);
        } else {
            entries = range(&mut redis, "-")?;
            frames += &gap_notice(asked, first_event(&entries));
            note += "gap, ";
        }
        note += &match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => format!("replaying {}..{} from Redis", first.id, last.id),
            _ => String::from("nothing to replay"),
        };
        for entry in &entries {
            // An entry that is no event was reported by the reader, which met it first.
            if let Ok(event) = &entry.event {
                let id = entry.id.to_string();
                frames += &event::frame(Some(&id), event.event_type.as_deref(), &event.data);
            }
        }
        // It joins our copy after the last entry it was sent, or after the one it saw. After a
        // gap with nothing to replay, after what our copy held before the stream was read: an
        // entry added since may already be in our copy, and must not be skipped.
        let through = match (entries.last(), resumed) {
            (Some(last), _) => last.id,
            (None, true) => asked.unwrap_or(START),
            (None, false) => copied.unwrap_or(START),
        };
        Ok(Replay {
            frames,
            resume: Resume::Through(through),
            note,
        })
    }

    /// The reader thread: follows the stream into `clients`' log, forever. When Redis cannot be
    /// reached, or fails before an `XREAD` reply has been read, it tries again after 0.1 s, then
    /// 0.2 s, doubling up to 5 s.
    pub fn run_reader(&self, clients: &ClientList) -> ! {
        let mut last = None;
        let mut backoff = BACKOFF_MIN;
        loop {
            let Err(e) = self.follow(clients, &mut last, &mut backoff);
            if self.up.swap(false, Ordering::AcqRel) {
                eprintln!(
                    "Redis at {}: lost ({e}); until it is back, publishing answers 503 and new \
                     streams get retry: and end, while open streams stay open",
                    self.addr
                );
            } else {
                eprintln!(
                    "Redis at {}: unreachable ({e}); next try in {backoff:?}",
                    self.addr
                );
            }
            thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Connects, finds where to read from, then copies every new entry into the log, until an
    /// error. `last` is the newest id copied, kept across reconnections.
    fn follow(
        &self,
        clients: &ClientList,
        last: &mut Option<EventId>,
        backoff: &mut Duration,
    ) -> io::Result<std::convert::Infallible> {
        let mut redis = Connection::open(&self.addr, TIMEOUT)?;
        // Whether our clients were just told of a gap (below), which covers the first read.
        let mut gap_told = false;
        let mut from = match *last {
            // First connection: only what comes next. The newest id, read once here, instead of
            // `$` on every XREAD: entries added between two XREAD calls would be lost with `$`.
            None => {
                let newest = redis.command(&["XREVRANGE", STREAM, "+", "-", "COUNT", "1"])?;
                let from = entries(newest)?.first().map_or(START, |e| e.id);
                // From here on, a reconnection carries on after this id: nothing published while
                // the reader was away is skipped.
                *last = Some(from);
                eprintln!(
                    "Redis at {}: connected; following {STREAM} after {from}",
                    self.addr
                );
                from.to_string()
            }
            // A reconnection: if the stream still holds our newest id, carry on after it. If not,
            // Redis restarted without persistence (or trimmed it while we were away): our
            // clients get the `gap` notice, then everything the stream holds now.
            Some(id) => {
                let kept = id == START || holds(&mut redis, &id.to_string())?;
                if !kept {
                    let oldest = first_event(&range(&mut redis, "-")?);
                    clients.restart_log(gap_notice(Some(id), oldest), true);
                    gap_told = true;
                    *last = Some(START);
                    eprintln!(
                        "Redis at {}: back, but event {id} is gone (restarted without \
                         persistence?); clients get the gap notice, then the new events",
                        self.addr
                    );
                    START.to_string()
                } else {
                    eprintln!(
                        "Redis at {}: back; following {STREAM} after {id}",
                        self.addr
                    );
                    id.to_string()
                }
            }
        };
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.up.store(true, Ordering::Release);
        redis.set_read_timeout(Duration::from_millis(BLOCK_MS) + TIMEOUT)?;
        let block = BLOCK_MS.to_string();
        loop {
            let args = [
                "XREAD", "COUNT", "1000", "BLOCK", &block, "STREAMS", STREAM, &from,
            ];
            // `Nil`: nothing came within the block time; ask again. Otherwise one stream's entries.
            let odd_shape = || invalid(String::from("XREAD answered an odd shape"));
            let reply = match redis.command(&args)? {
                Reply::Nil => None,
                Reply::Array(mut streams) if streams.len() == 1 => match streams.pop() {
                    Some(Reply::Array(mut stream)) if stream.len() == 2 => stream.pop(),
                    _ => return Err(odd_shape()),
                },
                _ => return Err(odd_shape()),
            };
            let entries = match reply {
                Some(reply) => entries(reply)?,
                None => Vec::new(),
            };
            // Redis answered, and in a shape we read: the wait before the next reconnection starts
            // short again. Not sooner: a Redis that takes connections and then fails every XREAD
            // would be asked ten times a second.
            *backoff = BACKOFF_MIN;
            // The stream keeps 101 entries. A reply of that many, after an entry the stream no
            // longer holds, may mean Redis trimmed what this reader read last and more after it
            // before the reader got to them (its process stalled while more than 100 were
            // published). Our clients may have missed events: they get the gap notice, as after a
            // restart, then what the stream holds. After 0-0 (a stream that was empty), a reply
            // of 101 is enough to say so, unless a restart's gap notice has just gone out.
            let told = std::mem::take(&mut gap_told);
            let trimmed_unread = entries.len() >= MAXLEN
                && !told
                && (*last == Some(START) || !holds(&mut redis, &from)?);
            if trimmed_unread {
                let oldest = first_event(&entries);
                clients.restart_log(gap_notice(last.filter(|id| *id != START), oldest), false);
                eprintln!(
                    "Redis at {}: this reader fell more than 100 entries behind (after {from}), so \
                     {STREAM} may have trimmed some it had not read; clients get the gap notice, \
                     then the new events",
                    self.addr
                );
            }
            for entry in entries {
                match &entry.event {
                    Ok(event) => {
                        let (event_type, data) = (event.event_type.as_deref(), &event.data);
                        if !clients.append_with_id(entry.id, event_type, data) {
                            eprintln!(
                                "event {} is not newer than our copy's newest: skipped",
                                entry.id
                            );
                        }
                    }
                    Err(why) => eprintln!("{STREAM} entry {} skipped: {why}", entry.id),
                }
                // Read, sent or not: the next XREAD asks for what comes after it.
                *last = Some(entry.id);
                from = entry.id.to_string();
            }
        }
    }
}

/// One entry of the stream: its id, and the event it holds.
struct Entry {
    id: EventId,
    /// The event, or why the entry is none: see [`event_of`].
    event: Result<Event, String>,
}

struct Event {
    event_type: Option<String>,
    data: String,
}

/// The id of the first entry that is an event: where a client told of a gap resumes.
fn first_event(entries: &[Entry]) -> Option<EventId> {
    entries.iter().find(|e| e.event.is_ok()).map(|e| e.id)
}

/// `XRANGE sse:events <start> + COUNT 102`: more than the stream can hold, so one call returns
/// all of it.
fn range(redis: &mut Connection, start: &str) -> io::Result<Vec<Entry>> {
    range_of(redis, start, "+", &(MAXLEN + 1).to_string())
}

/// Whether the stream still holds the entry `id`: `XRANGE sse:events <id> <id> COUNT 1`.
fn holds(redis: &mut Connection, id: &str) -> io::Result<bool> {
    Ok(!range_of(redis, id, id, "1")?.is_empty())
}

fn range_of(redis: &mut Connection, start: &str, end: &str, count: &str) -> io::Result<Vec<Entry>> {
    entries(redis.command(&["XRANGE", STREAM, start, end, "COUNT", count])?)
}

/// Reads a list of entries, each `[id, [field, value, ...]]`.
fn entries(reply: Reply) -> io::Result<Vec<Entry>> {
    let Reply::Array(list) = reply else {
        return Err(invalid(format!(
            "expected a list of entries, got {reply:?}"
        )));
    };
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let Reply::Array(mut pair) = item else {
            return Err(invalid(String::from("an entry is not [id, fields]")));
        };
        let (Some(Reply::Array(fields)), Some(Reply::Bulk(id)), None) =
            (pair.pop(), pair.pop(), pair.pop())
        else {
            return Err(invalid(String::from("an entry is not [id, fields]")));
        };
        let id = parse_id(&id)?;
        out.push(Entry {
            id,
            event: event_of(&fields),
        });
    }
    Ok(out)
}

/// The event in an entry's fields, `type` and `data`, as `POST /publish` writes them. Any program
/// that reaches Redis can add entries, so each is checked: one with no `data`, a value over 1 MiB
/// or not UTF-8, or a `type` that is not a plain name is no event. A `type` goes out on a line of its
/// own after `event: `, so a line break in it would start a field of its own (an `id:` no server
/// gave); a plain name is what `addEventListener` can listen for anyway.
fn event_of(fields: &[Reply]) -> Result<Event, String> {
    let (mut event_type, mut data) = (None, None);
    for field in fields.chunks(2) {
        let (name, value) = match field {
            [Reply::Bulk(name), Reply::Bulk(value)] => (name, value),
            // What `resp` leaves where a string was too long to keep (Redis itself never sends a
            // null as a field's value).
            [Reply::Bulk(_), Reply::Nil] => {
                return Err(format!("a field value is over {} bytes", resp::MAX_BULK));
            }
            _ => return Err(String::from("a field is not a name and a value")),
        };
        let value = String::from_utf8(value.clone())
            .map_err(|_| String::from("a field value is not UTF-8"))?;
        match name.as_slice() {
            b"type" => event_type = Some(value),
            b"data" => data = Some(value),
            _ => {}
        }
    }
    let plain = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if let Some(name) = event_type.as_deref().filter(|name| !plain(name)) {
        return Err(format!(
            "type {name:?} is not a name of letters, digits, - and _"
        ));
    }
    let data = data.ok_or_else(|| String::from("no data field"))?;
    Ok(Event { event_type, data })
}

fn parse_id(bytes: &[u8]) -> io::Result<EventId> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(EventId::parse)
        .ok_or_else(|| {
            invalid(format!(
                "not a stream id: {:?}",
                String::from_utf8_lossy(bytes)
            ))
        })
}

fn not_connected() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the reader is not connected to Redis",
    )
}

fn invalid(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn a_redis_url_is_host_and_port() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6379").unwrap(),
            "127.0.0.1:6379"
        );
        assert_eq!(
            parse_url("redis://localhost:7000").unwrap(),
            "localhost:7000"
        );
        assert_eq!(parse_url("redis://[::1]:6379").unwrap(), "[::1]:6379");
    }

    #[test]
    fn other_redis_urls_are_refused_with_the_reason() {
        assert_eq!(
            parse_url("http://x:1").unwrap_err(),
            r#"REDIS_URL="http://x:1" is invalid: expected redis://host:port (rediss://, TLS, is not supported)"#
        );
        for bad in [
            "redis://x",
            "redis://:6379",
            "redis://x:0",
            "redis://x:99999",
            "redis://user:pw@x:6379",
            "redis://x:6379/0",
            "rediss://x:6379",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(text.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&[u8]]) -> Reply {
        let fields = fields.iter().map(|f| Reply::Bulk(f.to_vec())).collect();
        Reply::Array(vec![bulk(id), Reply::Array(fields)])
    }

    #[test]
    fn entries_are_read_from_their_reply() {
        let reply = Reply::Array(vec![
            entry("5-1", &[b"type", b"publish", b"data", b"hi"]),
            entry("6-0", &[b"data", b"no type", b"other", b"ignored"]),
        ]);
        let got = entries(reply).unwrap();
        assert_eq!(got[0].id, EventId { ms: 5, seq: 1 });
        let event = got[0].event.as_ref().unwrap();
        assert_eq!(
            (event.event_type.as_deref(), event.data.as_str()),
            (Some("publish"), "hi")
        );
        let event = got[1].event.as_ref().unwrap();
        assert_eq!(
            (event.event_type.as_deref(), event.data.as_str()),
            (None, "no type")
        );
        let bad_id = Reply::Array(vec![entry("seven", &[b"data", b"x"])]);
        assert!(entries(bad_id).is_err());
        assert!(entries(Reply::Integer(3)).is_err());
    }

    #[test]
    fn an_entry_that_is_no_event_keeps_its_id_and_says_why() {
        let cases: [(&[&[u8]], &str); 6] = [
            (&[b"type", b"x"], "no data field"),
            (&[b"data", b"\xff"], "a field value is not UTF-8"),
            (
                &[b"type", b"a\nid: 1-0", b"data", b"x"],
                "type \"a\\nid: 1-0\" is not a name",
            ),
            (&[b"type", b"", b"data", b"x"], "type \"\" is not a name"),
            (
                &[b"type", b"a\rid: 1-0", b"data", b"x"],
                "type \"a\\rid: 1-0\" is not a name",
            ),
            (&[b"data"], "a field is not a name and a value"),
        ];
        for (fields, why) in cases {
            let got = entries(Reply::Array(vec![entry("7-0", fields)])).unwrap();
            assert_eq!(got[0].id, EventId { ms: 7, seq: 0 });
            let error = got[0].event.as_ref().err().expect("no event");
            assert!(error.starts_with(why), "{error:?} for {fields:?}");
        }
        // Where `resp` left a null for a value too long to keep.
        let error = event_of(&[bulk("data"), Reply::Nil])
            .err()
            .expect("no event");
        assert_eq!(error, "a field value is over 1048576 bytes");
        let fine = entries(Reply::Array(vec![entry(
            "8-0",
            &[b"type", b"a-B_9", b"data", b""],
        )]));
        assert!(fine.unwrap()[0].event.is_ok());
    }

    /// A pretend Redis on loopback: reads a command at a time and answers each with the next of
    /// `replies`; after the last, closes the connection. Returns its address, and what it was
    /// sent, one read at a time.
    fn fake_redis(replies: &[&str]) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (sent, received) = mpsc::channel();
        let replies: Vec<String> = replies.iter().map(|r| r.to_string()).collect();
        thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            for reply in replies {
                let mut command = [0; 4096];
                let n = socket.read(&mut command).unwrap_or(0);
                let _ = sent.send(String::from_utf8_lossy(&command[..n]).into_owned());
                let _ = socket.write_all(reply.as_bytes());
            }
        });
        (addr, received)
    }

    fn clients() -> ClientList {
        ClientList::new(10, 1, Duration::from_secs(1))
    }

    #[test]
    fn the_reader_moves_past_an_entry_that_is_no_event() {
        let (addr, sent) = fake_redis(&[
            // XREVRANGE: the stream is empty.
            "*0\r\n",
            // XREAD: one of ours, then an entry with no data.
            "*1\r\n*2\r\n$10\r\nsse:events\r\n*2\r\n\
             *2\r\n$3\r\n5-0\r\n*2\r\n$4\r\ndata\r\n$2\r\nhi\r\n\
             *2\r\n$3\r\n6-0\r\n*2\r\n$4\r\ntype\r\n$1\r\nx\r\n",
            "-ERR enough\r\n",
        ]);
        let (log, clients) = (RedisLog::new(addr), clients());
        let (mut last, mut backoff) = (None, BACKOFF_MAX);
        let Err(e) = log.follow(&clients, &mut last, &mut backoff);
        assert_eq!(e.to_string(), "Redis: ERR enough");
        // Ours is in our copy; the other is not, but it counts as read.
        assert_eq!(clients.last_id(), Some(EventId { ms: 5, seq: 0 }));
        assert_eq!(last, Some(EventId { ms: 6, seq: 0 }));
        let commands: Vec<String> = sent.try_iter().collect();
        assert!(commands[1].ends_with("\r\n0-0\r\n"), "{commands:?}");
        assert!(commands[2].ends_with("\r\n6-0\r\n"), "{commands:?}");
        // An XREAD was answered, so the next wait starts short again.
        assert_eq!(backoff, BACKOFF_MIN);
    }

    /// An XREAD reply holding entries `ms-0` for each `ms` in `ids`, each with `data: e`.
    fn xread_reply(ids: std::ops::Range<u64>) -> String {
        let entries: String = ids
            .clone()
            .map(|ms| {
                let id = format!("{ms}-0");
                format!(
                    "*2\r\n${}\r\n{id}\r\n*2\r\n$4\r\ndata\r\n$1\r\ne\r\n",
                    id.len()
                )
            })
            .collect();
        let count = ids.end - ids.start;
        format!("*1\r\n*2\r\n$10\r\nsse:events\r\n*{count}\r\n{entries}")
    }

    /// Runs the reader against `replies` until they run out; how many gap notices it gave.
    fn gaps_after(last: Option<EventId>, replies: &[&str]) -> u64 {
        let (addr, _) = fake_redis(replies);
        let (log, clients) = (RedisLog::new(addr), clients());
        let (mut last, mut backoff) = (last, BACKOFF_MAX);
        let Err(_) = log.follow(&clients, &mut last, &mut backoff);
        clients.restarts()
    }

    #[test]
    fn a_reply_of_101_entries_after_one_the_stream_lost_gives_the_gap() {
        let (full, end) = (xread_reply(2..103), "-ERR enough\r\n");
        let one = "*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ndata\r\n$1\r\ne\r\n";
        // Following after 1-0 (the newest at connect), 101 come: is 1-0 still there?
        assert_eq!(
            gaps_after(None, &[one, &full, "*0\r\n", end]),
            1,
            "1-0 trimmed"
        );
        assert_eq!(
            gaps_after(None, &[one, &full, one, end]),
            0,
            "1-0 still there"
        );
        // After 0-0 (an empty stream at connect), 101 are enough to say so.
        assert_eq!(gaps_after(None, &["*0\r\n", &full, end]), 1);
        assert_eq!(gaps_after(None, &["*0\r\n", &xread_reply(2..102), end]), 0);
        // Back after a restart (5-0 is gone): one gap notice, not a second for the first read.
        let back = ["*0\r\n", "*0\r\n", &full, end];
        assert_eq!(gaps_after(Some(EventId { ms: 5, seq: 0 }), &back), 1);
        // A later read of 101 after 0-0, once the restart's first read is done, is one more.
        let later = ["*0\r\n", "*0\r\n", "*-1\r\n", &full, end];
        assert_eq!(gaps_after(Some(EventId { ms: 5, seq: 0 }), &later), 2);
    }

    #[test]
    fn the_wait_stays_long_when_redis_fails_before_answering_an_xread() {
        for (answer, error) in [
            ("-ERR no XREAD here\r\n", "Redis: ERR no XREAD here"),
            (":1\r\n", "XREAD answered an odd shape"),
            (
                "*1\r\n*2\r\n$10\r\nsse:events\r\n:1\r\n",
                "expected a list of entries, got Integer(1)",
            ),
        ] {
            let (addr, _) = fake_redis(&["*0\r\n", answer]);
            let (log, clients) = (RedisLog::new(addr), clients());
            let (mut last, mut backoff) = (None, BACKOFF_MAX);
            let Err(e) = log.follow(&clients, &mut last, &mut backoff);
            assert_eq!(e.to_string(), error);
            assert_eq!(backoff, BACKOFF_MAX, "{answer:?}");
        }
    }

    #[test]
    fn after_a_gap_with_nothing_kept_a_client_joins_after_what_our_copy_held() {
        // Both XRANGEs find the stream empty (a Redis restarted without its data).
        let (addr, _) = fake_redis(&["*0\r\n", "*0\r\n"]);
        let (log, clients) = (RedisLog::new(addr), clients());
        log.up.store(true, Ordering::Release);
        clients.append_with_id(EventId { ms: 9, seq: 0 }, None, "copied");
        let replay = log.replay(Resume::After(EventId { ms: 3, seq: 0 }), &clients);
        let replay = replay.unwrap();
        assert_eq!(
            replay.frames,
            gap_notice(Some(EventId { ms: 3, seq: 0 }), None)
        );
        assert!(matches!(replay.resume, Resume::Through(id) if id == EventId { ms: 9, seq: 0 }));
    }

    #[test]
    fn publishing_while_the_reader_is_away_fails_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let log = RedisLog::new(listener.local_addr().unwrap().to_string());
        let error = log.publish("publish", "x").unwrap_err();
        assert!(matches!(error, PublishError::NotPublished(_)), "{error:?}");
        // Not even a connection was tried.
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn a_publish_does_not_wait_for_the_kept_connection() {
        let (addr, _) = fake_redis(&["$3\r\n5-0\r\n"]);
        let log = std::sync::Arc::new(RedisLog::new(addr));
        log.up.store(true, Ordering::Release);
        // Another publish holds the kept connection (stuck behind a slow Redis, say).
        let held = log.publisher.lock().unwrap();
        let (done, result) = mpsc::channel();
        let publisher = std::sync::Arc::clone(&log);
        thread::spawn(move || done.send(publisher.publish("publish", "x").map_err(|_| ())));
        let id = result.recv_timeout(Duration::from_secs(5));
        drop(held);
        assert_eq!(id, Ok(Ok(EventId { ms: 5, seq: 0 })));
    }

    #[test]
    fn a_kept_connection_redis_closed_is_not_used_again() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let log = RedisLog::new(listener.local_addr().unwrap().to_string());
        log.up.store(true, Ordering::Release);
        thread::spawn(move || {
            // The first connection answers one XADD, then Redis closes it (idle timeout, say).
            for answer in ["$3\r\n5-0\r\n", "$3\r\n6-0\r\n"] {
                let (mut socket, _) = listener.accept().unwrap();
                let _ = socket.read(&mut [0; 4096]);
                let _ = socket.write_all(answer.as_bytes());
            }
        });
        assert_eq!(
            log.publish("publish", "a").unwrap(),
            EventId { ms: 5, seq: 0 }
        );
        // Until the close has reached us, the kept connection still looks open.
        let deadline = Instant::now() + Duration::from_secs(5);
        while log
            .publisher
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|(_, c)| c.is_usable())
        {
            assert!(Instant::now() < deadline, "the close never arrived");
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            log.publish("publish", "b").unwrap(),
            EventId { ms: 6, seq: 0 }
        );
    }

    #[test]
    fn an_unanswered_publish_is_unconfirmed_and_a_refused_one_is_not_published() {
        // No answer (the connection closes), a refusal, an answer that is not an id.
        let cases: [(&[&str], bool); 3] = [
            (&[""], true),
            (&["-OOM full\r\n"], false),
            (&[":1\r\n"], true),
        ];
        for (reply, sent) in cases {
            let log = RedisLog::new(fake_redis(reply).0);
            log.up.store(true, Ordering::Release);
            let error = log.publish("publish", "x").unwrap_err();
            let unconfirmed = matches!(error, PublishError::Unconfirmed(_));
            assert_eq!(unconfirmed, sent, "{reply:?}: {error:?}");
        }
    }
}
