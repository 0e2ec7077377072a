//! The shared log: with `REDIS_URL` set, one Redis stream, `sse:events`, is the event log of
//! every server that points at it, so several servers give their clients the same events, in the
//! same order, with the same ids.
//!
//! Three paths, one Redis command each: publish is `XADD`, and the id Redis gives is the event's
//! SSE `id:` (§9.2.6 "id"); a reader thread follows the stream with `XREAD` and copies what it
//! reads into this server's own [`EventLog`](crate::event_log::EventLog), which becomes a
//! mirror; a resume (§9.2.4 `Last-Event-ID`) is replayed from the stream with `XRANGE`. Only
//! `redis://host:port`: no password, no TLS, no Sentinel or Cluster (README, "Past one process").

use crate::broadcast::ClientList;
use crate::event;
use crate::event_log::{EventId, Resume, gap_notice};
use crate::resp::{Connection, Reply};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// The one stream every server shares.
pub const STREAM: &str = "sse:events";

/// `MAXLEN 101`, exactly (not `~ 101`, which lets Redis keep more to trim in whole blocks): the
/// last 100 events, plus the one before them. A browser resumes from the id of the last event it
/// saw, and finding that id in the stream is what proves nothing between is missing; so to replay
/// up to 100 missed events, the stream must also hold the one the browser saw.
pub const MAXLEN: &str = "101";

/// `XRANGE ... COUNT 102`: more than the stream can hold, so one call returns all of it.
const RANGE_COUNT: &str = "102";

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
    /// at once (see `server::stream_events`).
    up: AtomicBool,
    /// Counts the reader's (re)connections: a publishing connection made before the last one may
    /// be to a Redis that has since restarted, and is replaced.
    epoch: AtomicU64,
    /// The connection `POST /publish` uses, with the epoch it was made in. One at a time: an
    /// `XADD` on loopback is a fraction of a millisecond. A busier server would keep a pool.
    publisher: Mutex<Option<(u64, Connection)>>,
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
    pub fn publish(&self, event_type: &str, data: &str) -> io::Result<EventId> {
        let mut publisher = self
            .publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let epoch = self.epoch.load(Ordering::Acquire);
        let connection = match publisher.take() {
            Some((made, connection)) if made == epoch => connection,
            _ => Connection::open(&self.addr, TIMEOUT)?,
        };
        let (_, redis) = publisher.insert((epoch, connection));
        let args = [
            "XADD", STREAM, "MAXLEN", MAXLEN, "*", "type", event_type, "data", data,
        ];
        let id = match redis.command(&args) {
            Ok(Reply::Bulk(id)) => parse_id(&id)?,
            Ok(other) => return Err(invalid(format!("XADD answered {other:?}"))),
            Err(e) => {
                // A connection that failed once is not trusted again: the next publish opens one.
                *publisher = None;
                return Err(e);
            }
        };
        Ok(id)
    }

    /// The replay for a new stream that asked to resume (§9.2.4). `XRANGE sse:events <id> +`:
    /// if the first entry is that id, the browser saw it and missed exactly the rest; if not
    /// (trimmed, never in this stream, not an id at all), the `gap` notice, then all that is kept.
    /// An error if Redis is unreachable.
    pub fn replay(&self, resume: Resume) -> io::Result<Replay> {
        if !self.is_up() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the reader is not connected to Redis",
            ));
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
        let mut entries = match asked {
            Some(id) => range(&mut redis, &id.to_string())?,
            None => Vec::new(),
        };
        if asked.is_some() && entries.first().map(|e| e.id) == asked {
            entries.remove(0);
        } else {
            entries = range(&mut redis, "-")?;
            frames += &gap_notice(asked, entries.first().map(|e| e.id));
            note += "gap, ";
        }
        note += &match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => format!("replaying {}..{} from Redis", first.id, last.id),
            _ => String::from("nothing to replay"),
        };
        for entry in &entries {
            let id = entry.id.to_string();
            frames += &event::frame(Some(&id), entry.event_type.as_deref(), &entry.data);
        }
        // It joins our mirror after the last event it was sent, or after the one it saw. After a
        // gap with nothing kept, at the mirror's end: there is nothing it could be sent twice.
        let through = entries
            .last()
            .map(|e| e.id)
            .or(asked.filter(|_| frames.is_empty()));
        let resume = through.map_or(Resume::New, Resume::Through);
        Ok(Replay {
            frames,
            resume,
            note,
        })
    }

    /// The reader thread: follows the stream into `clients`' log, forever. When Redis cannot be
    /// reached it tries again after 0.1 s, then 0.2 s, doubling up to 5 s.
    pub fn run_reader(&self, clients: &ClientList) -> ! {
        let mut last = None;
        let mut backoff = BACKOFF_MIN;
        loop {
            let Err(e) = self.follow(clients, &mut last, &mut backoff);
            if self.up.swap(false, Ordering::AcqRel) {
                eprintln!(
                    "Redis at {}: lost ({e}). Publishing answers 503, new streams get retry: and \
                     end, open streams stay open; reconnecting",
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
                let kept = id == START
                    || !range_of(&mut redis, &id.to_string(), &id.to_string(), "1")?.is_empty();
                if !kept {
                    let oldest = range_of(&mut redis, "-", "+", "1")?.first().map(|e| e.id);
                    clients.restart_log(gap_notice(Some(id), oldest));
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
        *backoff = BACKOFF_MIN;
        redis.set_read_timeout(Duration::from_millis(BLOCK_MS) + TIMEOUT)?;
        let block = BLOCK_MS.to_string();
        loop {
            let args = [
                "XREAD", "COUNT", "1000", "BLOCK", &block, "STREAMS", STREAM, &from,
            ];
            // `Nil`: nothing came within the block time; ask again. Otherwise one stream's entries.
            let reply = match redis.command(&args)? {
                Reply::Nil => continue,
                Reply::Array(mut streams) if streams.len() == 1 => match streams.pop() {
                    Some(Reply::Array(mut stream)) if stream.len() == 2 => stream.pop(),
                    _ => None,
                },
                _ => None,
            };
            let reply =
                reply.ok_or_else(|| invalid(String::from("XREAD answered an odd shape")))?;
            for entry in entries(reply)? {
                if !clients.append_with_id(entry.id, entry.event_type.as_deref(), &entry.data) {
                    eprintln!(
                        "event {} is not newer than our copy's newest: skipped",
                        entry.id
                    );
                }
                *last = Some(entry.id);
                from = entry.id.to_string();
            }
        }
    }
}

/// One entry of the stream.
struct Entry {
    id: EventId,
    event_type: Option<String>,
    data: String,
}

/// `XRANGE sse:events <start> + COUNT 102`.
fn range(redis: &mut Connection, start: &str) -> io::Result<Vec<Entry>> {
    range_of(redis, start, "+", RANGE_COUNT)
}

fn range_of(redis: &mut Connection, start: &str, end: &str, count: &str) -> io::Result<Vec<Entry>> {
    entries(redis.command(&["XRANGE", STREAM, start, end, "COUNT", count])?)
}

/// Reads a list of entries, each `[id, [field, value, ...]]`. Our fields are `type` and `data`;
/// an entry without `data` (written by some other program) is an error, not an empty event.
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
        let (mut event_type, mut data) = (None, None);
        for field in fields.chunks(2) {
            let [Reply::Bulk(name), Reply::Bulk(value)] = field else {
                return Err(invalid(String::from("a field is not a name and a value")));
            };
            let value = String::from_utf8(value.clone())
                .map_err(|_| invalid(String::from("a field value is not UTF-8")))?;
            match name.as_slice() {
                b"type" => event_type = Some(value),
                b"data" => data = Some(value),
                _ => {}
            }
        }
        out.push(Entry {
            id: parse_id(&id)?,
            event_type,
            data: data.ok_or_else(|| invalid(String::from("an entry without data")))?,
        });
    }
    Ok(out)
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

fn invalid(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn entries_are_read_from_their_reply() {
        let entry = |id: &str, fields: &[&str]| {
            Reply::Array(vec![
                bulk(id),
                Reply::Array(fields.iter().map(|f| bulk(f)).collect()),
            ])
        };
        let reply = Reply::Array(vec![
            entry("5-1", &["type", "publish", "data", "hi"]),
            entry("6-0", &["data", "no type"]),
        ]);
        let got = entries(reply).unwrap();
        assert_eq!(got[0].id, EventId { ms: 5, seq: 1 });
        assert_eq!(got[0].event_type.as_deref(), Some("publish"));
        assert_eq!(
            (got[1].event_type.as_deref(), got[1].data.as_str()),
            (None, "no type")
        );
        let no_data = Reply::Array(vec![entry("7-0", &["type", "x"])]);
        assert!(entries(no_data).is_err());
        let bad_id = Reply::Array(vec![entry("seven", &["data", "x"])]);
        assert!(entries(bad_id).is_err());
        assert!(entries(Reply::Integer(3)).is_err());
    }
}
