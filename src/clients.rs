//! The client list: every open `/events` stream in one `Mutex`-guarded list, together with the
//! event id counter and the buffer of recent events, because the three must change together.
//!
//! `broadcast` gives an event the next id, frames it once, keeps it for `Last-Event-ID` replay
//! (§9.2.4 leaves what the id means to the server) and writes it to every client in one `write`
//! each, so two writers (the ticker, a publish) never interleave bytes within an event. A write that
//! fails drops the client: that is how a server learns that the browser went away. Nothing here
//! waits on a socket while the lock is held, so one stuck client cannot stall the others.

use crate::event;
use crate::http::digits;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How many recent events are kept for replay to a client that reconnects.
pub const REPLAY_LEN: usize = 100;

/// How many live events may queue behind a new client's replay before we give up on it.
const MAX_BACKLOG: usize = 1000;

/// The fewest live clients worth a writer thread of their own (see `send_to_all`).
const MIN_SHARE: usize = 1000;

/// One framed event, shared by every client it is queued for and by the replay buffer.
pub type Frame = Arc<[u8]>;

pub struct ClientList {
    inner: Mutex<Inner>,
    max_clients: usize,
}

struct Inner {
    /// Every stream client, by id: the order they connected, which is the order they are written.
    clients: BTreeMap<u64, Client>,
    /// Clients whose own thread is still writing the handshake and replay: live events queue here
    /// behind them, in order. A client not in here is live: broadcasts write to its socket.
    catching_up: BTreeMap<u64, Vec<Frame>>,
    next_client: u64,
    /// The id of the last event sent; ids count up from 1 across every event type.
    last_id: u64,
    /// The last [`REPLAY_LEN`] events, oldest first.
    recent: VecDeque<(u64, Frame)>,
    /// The client count the last `clients` event announced; `None` once a client joined that has
    /// not heard it (a leave and a join between two announcements leave the count unchanged).
    announced: Option<usize>,
    last_write: Instant,
    /// How many threads a broadcast writes with: one per core.
    writers: usize,
}

struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    /// The lab's `end_after`: the id of the last event this stream gets before the server ends
    /// it. `None` for an ordinary stream, which runs until one side closes it.
    last_event: Option<u64>,
}

/// Why a lab stream with `end_after` leaves the list: not a failure, the end it asked for.
const ENDED: &str = "end_after reached, stream ended; a browser reconnects after its retry time";

/// Why a client left, for the log.
type Dropped = Vec<(SocketAddr, String)>;

/// What a new stream's `Last-Event-ID` header asks for (§9.2.4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resume {
    /// No header, or an empty one: a new stream, with nothing to replay.
    New,
    /// ASCII digits: an id this server could have sent. Replay what came after it.
    After(u64),
    /// Anything else (`+5`, `abc`, a number too big): not an id of ours. Refusing it would stop a
    /// browser for good, and starting afresh would lose events silently; so the client gets a
    /// `gap` notice, then every event still kept.
    Unreadable,
}

impl Resume {
    pub fn from_header(value: Option<&str>) -> Resume {
        match value {
            None | Some("") => Resume::New,
            Some(id) => digits(id).map_or(Resume::Unreadable, Resume::After),
        }
    }
}

impl ClientList {
    pub fn new(max_clients: usize) -> ClientList {
        ClientList {
            inner: Mutex::new(Inner {
                clients: BTreeMap::new(),
                catching_up: BTreeMap::new(),
                next_client: 0,
                last_id: 0,
                recent: VecDeque::with_capacity(REPLAY_LEN),
                announced: Some(0),
                last_write: Instant::now(),
                writers: thread::available_parallelism().map_or(1, |n| n.get()),
            }),
            max_clients,
        }
    }

    /// A panic in some thread while it held the lock "poisons" the mutex. Every piece of this state
    /// stays valid between any two statements (at worst one event reached some clients and not
    /// others), so we carry on rather than let one bad connection take the ticker and every other
    /// client down with it.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new stream client and queues, behind `handshake`, the events it missed.
    ///
    /// Returns the client's id, or `None` when `max_clients` streams are already open. The
    /// replay is chosen under the same lock that `broadcast` takes, so no event can fall between
    /// the replay and the live events that follow: none is missed and none arrives twice.
    /// `end_after` (the lab) ends the stream after that many events, replayed ones included.
    pub fn connect(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        resume: Resume,
        handshake: Vec<u8>,
        end_after: Option<u64>,
    ) -> Option<u64> {
        let mut inner = self.lock();
        if inner.clients.len() >= self.max_clients {
            return None;
        }
        let mut backlog: Vec<Frame> = vec![handshake.into()];
        let replay_note = inner.queue_replay(resume, &mut backlog);
        // Every event from here on goes to every client with the next id, so the stream's last
        // event is known now: the n-th of the backlog, or the live event that makes n.
        let last_event = end_after.map(|n| {
            let queued = backlog.len() as u64 - 1;
            if queued >= n {
                backlog.truncate(1 + n as usize);
                inner.last_id
            } else {
                inner.last_id + (n - queued)
            }
        });
        inner.next_client += 1;
        let id = inner.next_client;
        let client = Client {
            stream,
            peer,
            last_event,
        };
        inner.clients.insert(id, client);
        inner.catching_up.insert(id, backlog);
        inner.announced = None;
        let count = inner.clients.len();
        drop(inner);
        eprintln!("{peer} connected ({replay_note}); {count} connected");
        Some(id)
    }

    /// For a new client's own thread: the frames it must write next. `None` once it has caught up
    /// (from then on it is live and broadcasts write to it) or once it has been dropped.
    pub fn next_backlog(&self, id: u64) -> Option<Vec<Frame>> {
        let mut inner = self.lock();
        let backlog = inner.catching_up.get_mut(&id)?;
        if !backlog.is_empty() {
            return Some(std::mem::take(backlog));
        }
        inner.catching_up.remove(&id);
        // A lab stream whose last event was in its backlog ends here instead of going live.
        let last_event = inner.clients.get(&id)?.last_event;
        if last_event.is_some_and(|last| last <= inner.last_id) {
            let peer = inner.remove(id)?;
            log_dropped(inner, vec![(peer, String::from(ENDED))]);
            return None;
        }
        // Caught up. Non-blocking from now on: a broadcast's write to a client that stopped reading
        // fails at once (and drops it) instead of waiting for room while every other client waits too.
        let live = inner.clients.get(&id)?.stream.set_nonblocking(true);
        drop(inner);
        if let Err(e) = live {
            self.disconnect(id, format!("cannot go live: {e}"));
        }
        None
    }

    /// Drops a client whose own thread failed to write its handshake or replay.
    pub fn disconnect(&self, id: u64, reason: String) {
        let mut inner = self.lock();
        if let Some(peer) = inner.remove(id) {
            log_dropped(inner, vec![(peer, reason)]);
        }
    }

    /// Sends an event to every client and keeps it for replay. Returns its id.
    pub fn broadcast(&self, event_type: Option<&str>, data: &str) -> u64 {
        let mut inner = self.lock();
        let (id, dropped) = inner.broadcast(event_type, data);
        log_dropped(inner, dropped);
        id
    }

    /// Sends `event: clients` with the number of connected clients, if it changed since the last
    /// one or a client joined since (so every new client hears it).
    pub fn announce_count(&self) {
        let mut inner = self.lock();
        let count = inner.clients.len();
        if inner.announced == Some(count) {
            return;
        }
        inner.announced = Some(count);
        let (_, dropped) = inner.broadcast(Some("clients"), &count.to_string());
        log_dropped(inner, dropped);
    }

    /// Writes a comment to every client if nothing was written for `idle` (§9.2.7: a comment line
    /// every 15 seconds or so keeps proxies from dropping the connection).
    pub fn heartbeat_if_idle(&self, idle: Duration) {
        let mut inner = self.lock();
        if inner.last_write.elapsed() < idle {
            return;
        }
        let heartbeat = Frame::from(event::comment("heartbeat").into_bytes());
        let dropped = inner.send_to_all(&heartbeat, None);
        log_dropped(inner, dropped);
    }

    /// Test builds only: a bug striking while some thread holds the list, which poisons the mutex.
    #[cfg(test)]
    pub fn panic_while_locked(&self) -> ! {
        let _inner = self.lock();
        panic!("a simulated bug, while holding the client list");
    }

    /// How many stream clients are connected.
    pub fn len(&self) -> usize {
        self.lock().clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn broadcast(&mut self, event_type: Option<&str>, data: &str) -> (u64, Dropped) {
        self.last_id += 1;
        let id = self.last_id;
        let frame = Frame::from(event::frame(Some(id), event_type, data).into_bytes());
        if self.recent.len() == REPLAY_LEN {
            self.recent.pop_front();
        }
        self.recent.push_back((id, frame.clone()));
        (id, self.send_to_all(&frame, Some(id)))
    }

    /// The one pass that writes to every client, and the one place a failed write drops one.
    /// `id` is the frame's event id; a heartbeat comment has none.
    fn send_to_all(&mut self, frame: &Frame, id: Option<u64>) -> Dropped {
        self.last_write = Instant::now();
        let mut failed = Vec::new();
        // A client still writing its replay gets the frame queued behind it, in order, unless its
        // lab stream ends before this event.
        for (client_id, backlog) in &mut self.catching_up {
            let last_event = self.clients.get(client_id).and_then(|c| c.last_event);
            if id.is_some_and(|id| last_event.is_some_and(|last| id > last)) {
                continue;
            }
            if backlog.len() >= MAX_BACKLOG {
                failed.push((
                    *client_id,
                    String::from("fell too far behind while catching up"),
                ));
            } else {
                backlog.push(frame.clone());
            }
        }
        // A live client gets it written now. Each write is microseconds of kernel TCP work, so
        // 10,000 of them take tens of milliseconds on one core: a long list is split across the
        // cores, one scoped thread per share. If a thread cannot start, this one writes its share.
        let live: Vec<(&u64, &Client)> = self
            .clients
            .iter()
            .filter(|(id, _)| !self.catching_up.contains_key(id))
            .collect();
        let share = live.len().div_ceil(self.writers).max(MIN_SHARE);
        thread::scope(|scope| {
            let mut shares = live.chunks(share);
            let first = shares.next().unwrap_or_default();
            let others: Vec<_> = shares
                .map(|share| {
                    (
                        share,
                        thread::Builder::new()
                            .spawn_scoped(scope, move || write_share(share, frame, id)),
                    )
                })
                .collect();
            failed.extend(write_share(first, frame, id));
            for (share, writer) in others {
                failed.extend(match writer {
                    Ok(writer) => join_share(share, writer),
                    Err(_) => write_share(share, frame, id),
                });
            }
        });
        failed
            .into_iter()
            .filter_map(|(client_id, reason)| Some((self.remove(client_id)?, reason)))
            .collect()
    }

    /// Takes a client out of the list and closes its socket, which also wakes its own thread if it
    /// is still writing the replay. Returns its address, for the log.
    fn remove(&mut self, id: u64) -> Option<SocketAddr> {
        self.catching_up.remove(&id);
        let client = self.clients.remove(&id)?;
        let _ = client.stream.shutdown(Shutdown::Both);
        Some(client.peer)
    }

    /// Queues the events a new stream missed behind its handshake; returns a note for the log.
    ///
    /// §9.2.4 leaves the meaning of `Last-Event-ID` to the server. Ours: replay every kept event
    /// with a larger id, in order. If some events between that id and the oldest kept one are gone,
    /// or the id is not one we sent (newer than any, from an earlier run of the server, or not a
    /// number at all), the client first gets an `event: gap` saying so, with `last_event_id` as
    /// `null` when it was not a number: nothing is lost silently.
    fn queue_replay(&self, resume: Resume, backlog: &mut Vec<Frame>) -> String {
        let (last_event_id, mut note) = match resume {
            Resume::New => return String::from("new stream"),
            Resume::After(n) => (Some(n), format!("Last-Event-ID {n} -> ")),
            Resume::Unreadable => (None, String::from("Last-Event-ID not a number -> ")),
        };
        let oldest = self.recent.front().map_or(self.last_id + 1, |(id, _)| *id);
        let known = last_event_id.filter(|n| *n <= self.last_id);
        if known.is_none_or(|n| n + 1 < oldest) {
            // Not from the id counter: this notice is for one client, and an `id:` here would move
            // its last event ID past the events still to be replayed.
            let asked = last_event_id.map_or(String::from("null"), |n| n.to_string());
            let data = format!("{{\"last_event_id\":{asked},\"resume_from\":{oldest}}}");
            backlog.push(Frame::from(
                event::frame(None, Some("gap"), &data).into_bytes(),
            ));
            note += &format!("gap (oldest kept is {oldest}), ");
        }
        let after = known.unwrap_or(0);
        let missed: Vec<&(u64, Frame)> = self.recent.iter().filter(|(id, _)| *id > after).collect();
        backlog.extend(missed.iter().map(|(_, frame)| frame.clone()));
        match (missed.first(), missed.last()) {
            (Some((first, _)), Some((last, _))) => note + &format!("replaying {first}..{last}"),
            _ => note + "nothing to replay",
        }
    }
}

/// Writes a frame (event `id`) to a share of the live clients; returns the ones that leave, and
/// why: a failed write, or a lab stream that just got its last event.
fn write_share(share: &[(&u64, &Client)], frame: &Frame, id: Option<u64>) -> Vec<(u64, String)> {
    share
        .iter()
        .filter_map(|(client_id, client)| {
            let reason = match client.send(frame) {
                Err(reason) => reason,
                Ok(()) if id.is_some() && id == client.last_event => String::from(ENDED),
                Ok(()) => return None,
            };
            Some((**client_id, reason))
        })
        .collect()
}

impl Client {
    /// One frame to one live client, whole or not at all.
    fn send(&self, frame: &Frame) -> Result<(), String> {
        // One write per frame, so no other writer's bytes can land inside it. The socket is non-blocking: if its send buffer cannot take the
        // whole frame, the client has stopped reading. We drop it rather than wait or keep a queue;
        // the bytes already sent end mid-event, which the browser discards (§9.2.6), and it
        // reconnects with Last-Event-ID, so the replay gives it back everything it missed.
        match (&self.stream).write(frame) {
            Ok(n) if n == frame.len() => Ok(()),
            Ok(n) => Err(format!(
                "send buffer full after {n} of {} bytes (client not reading)",
                frame.len()
            )),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(String::from("send buffer full (client not reading)"))
            }
            Err(e) => Err(format!("write failed: {e}")),
        }
    }
}

/// Waits for a writer thread; returns the clients of its share whose write
/// failed. A thread that panicked cannot say which of its clients got the frame, so all of them
/// leave; they reconnect with `Last-Event-ID` and the replay gives each what it missed.
fn join_share(
    share: &[(&u64, &Client)],
    writer: thread::ScopedJoinHandle<'_, Vec<(u64, String)>>,
) -> Vec<(u64, String)> {
    writer.join().unwrap_or_else(|_| {
        let reason = String::from("its writer thread panicked during a broadcast");
        share.iter().map(|(id, _)| (**id, reason.clone())).collect()
    })
}

/// Releases the lock, then logs who left and why: printing is slow, and must not hold up a
/// broadcast. Each line gives the count as it was once that client had gone, so every line is
/// true when read, however many left in one broadcast.
fn log_dropped(inner: MutexGuard<'_, Inner>, dropped: Dropped) {
    let mut left = inner.clients.len() + dropped.len();
    drop(inner);
    for (peer, reason) in dropped {
        left -= 1;
        eprintln!("{peer} dropped: {reason}; {left} connected");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// The server's end of a fresh loopback connection, and the client's end to keep it open.
    fn connection() -> (TcpStream, SocketAddr, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        (server, peer, client)
    }

    #[test]
    fn only_ascii_digits_are_an_id_of_ours() {
        assert_eq!(Resume::from_header(None), Resume::New);
        assert_eq!(Resume::from_header(Some("")), Resume::New);
        assert_eq!(Resume::from_header(Some("0")), Resume::After(0));
        assert_eq!(Resume::from_header(Some("42")), Resume::After(42));
        for bad in ["+5", "-1", "abc", "1.5", " 5", "18446744073709551616"] {
            assert_eq!(
                Resume::from_header(Some(bad)),
                Resume::Unreadable,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_client_that_joins_as_another_leaves_still_hears_the_count() {
        let list = ClientList::new(10);
        let (stream, peer, _first_end) = connection();
        let first = list
            .connect(stream, peer, Resume::New, Vec::new(), None)
            .expect("room");
        list.announce_count();
        list.disconnect(first, String::from("left"));
        let (stream, peer, _second_end) = connection();
        let second = list
            .connect(stream, peer, Resume::New, Vec::new(), None)
            .expect("room");
        // Still one client, as last announced; but this one has not heard it.
        list.announce_count();
        let backlog = list.next_backlog(second).expect("still catching up");
        let frames: Vec<&[u8]> = backlog.iter().map(|frame| &frame[..]).collect();
        assert_eq!(frames, [&b""[..], b"id: 2\nevent: clients\ndata: 1\n\n"]);
    }

    #[test]
    fn a_writer_thread_that_panicked_drops_its_whole_share() {
        let (a, _a) = stalled_client();
        let (b, _b) = stalled_client();
        let share = [(&1, &a), (&2, &b)];
        let reason = String::from("its writer thread panicked during a broadcast");
        thread::scope(|scope| {
            let panicking = scope.spawn(|| -> Vec<(u64, String)> { panic!("a simulated bug") });
            assert_eq!(
                join_share(&share, panicking),
                [(1, reason.clone()), (2, reason.clone())]
            );
            let one_failed = scope.spawn(|| vec![(2, String::from("write failed"))]);
            assert_eq!(
                join_share(&share, one_failed),
                [(2, String::from("write failed"))]
            );
        });
    }

    /// A live client on the server's end of a fresh connection whose other end never reads.
    fn stalled_client() -> (Client, TcpStream) {
        let (stream, peer, other_end) = connection();
        stream.set_nonblocking(true).expect("non-blocking");
        (
            Client {
                stream,
                peer,
                last_event: None,
            },
            other_end,
        )
    }

    #[test]
    fn a_frame_only_partly_written_is_not_sent() {
        // Bigger than both ends' socket buffers together can ever hold: the write is partial.
        let (client, _other_end) = stalled_client();
        let frame = Frame::from(vec![b'x'; 64 << 20]);
        let err = client
            .send(&frame)
            .expect_err("a partial write is a failure");
        assert!(err.starts_with("send buffer full after "), "{err}");
        assert!(
            err.ends_with(" of 67108864 bytes (client not reading)"),
            "{err}"
        );
    }

    #[test]
    fn a_write_that_would_block_is_not_sent() {
        // Fill the buffers with one huge frame, then one byte at a time: a one-byte write is whole
        // or would block, never partial.
        let (client, _other_end) = stalled_client();
        let _ = client.send(&Frame::from(vec![b'x'; 64 << 20]));
        let byte = Frame::from(&b"x"[..]);
        let first_err = (0..1_000_000).find_map(|_| client.send(&byte).err());
        assert_eq!(
            first_err.as_deref(),
            Some("send buffer full (client not reading)")
        );
    }

    #[test]
    fn a_client_that_falls_too_far_behind_while_catching_up_is_dropped() {
        let list = ClientList::new(10);
        let (stream, peer, _end) = connection();
        let id = list
            .connect(stream, peer, Resume::New, Vec::new(), None)
            .expect("room");
        // Its own thread never writes: everything queues behind the handshake, which counts too.
        for i in 1..MAX_BACKLOG {
            list.broadcast(None, &i.to_string());
        }
        assert_eq!(list.len(), 1, "still within the limit");
        list.broadcast(None, "one too many");
        assert!(list.is_empty(), "dropped, not queueing without bound");
        assert_eq!(list.next_backlog(id), None);
    }

    /// The frames a new client's thread would write, in order, until it goes live or ends.
    fn backlog_of(list: &ClientList, id: u64) -> Vec<String> {
        let mut frames = Vec::new();
        while let Some(more) = list.next_backlog(id) {
            frames.extend(more.iter().map(|f| String::from_utf8_lossy(f).into_owned()));
        }
        frames
    }

    #[test]
    fn end_after_stops_queueing_behind_a_client_still_catching_up() {
        let list = ClientList::new(10);
        list.broadcast(None, "one");
        list.broadcast(None, "two");
        // Comes back having seen nothing: the replay alone holds its one event.
        let (stream, peer, _end) = connection();
        let id = list
            .connect(stream, peer, Resume::After(0), b"head\n".to_vec(), Some(1))
            .expect("room");
        // Live events while its thread has not even started writing: none of them is its.
        list.broadcast(None, "three");
        assert_eq!(backlog_of(&list, id), ["head\n", "id: 1\ndata: one\n\n"]);
        assert!(list.is_empty(), "ended, not live");
    }

    #[test]
    fn end_after_takes_live_events_queued_during_the_replay_up_to_n() {
        let list = ClientList::new(10);
        let (stream, peer, _end) = connection();
        let id = list
            .connect(stream, peer, Resume::New, b"head\n".to_vec(), Some(2))
            .expect("room");
        for text in ["a", "b", "c"] {
            list.broadcast(None, text);
        }
        assert_eq!(
            backlog_of(&list, id),
            ["head\n", "id: 1\ndata: a\n\n", "id: 2\ndata: b\n\n"]
        );
        assert!(list.is_empty(), "ended, not live");
    }
}
