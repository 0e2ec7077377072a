//! The client list: every open `/events` stream in one `Mutex`-guarded list, together with the
//! event id counter and the buffer of recent events, because the three must change together.
//!
//! `broadcast` gives an event the next id, frames it once, keeps it for `Last-Event-ID` replay
//! (§9.2.4, SPEC-NOTES L2) and writes it to every client in one `write` each (F10). A write that
//! fails drops the client: that is how a server learns that the browser went away. Nothing here
//! waits on a socket while the lock is held, so one stuck client cannot stall the others.

use crate::event;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How many recent events are kept for replay to a client that reconnects.
pub const REPLAY_LEN: usize = 100;

/// How many live events may queue behind a new client's replay before we give up on it.
const MAX_BACKLOG: usize = 1000;

/// One framed event, shared by every client it is queued for and by the replay buffer.
pub type Frame = Arc<[u8]>;

pub struct ClientList {
    inner: Mutex<Inner>,
    max_clients: usize,
}

struct Inner {
    clients: HashMap<u64, Client>,
    next_client: u64,
    /// The id of the last event sent; ids count up from 1 across every event type.
    last_id: u64,
    /// The last [`REPLAY_LEN`] events, oldest first.
    recent: VecDeque<(u64, Frame)>,
    /// The client count the last `clients` event announced.
    announced: usize,
    last_write: Instant,
}

struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    /// `Some` while the client's own thread is still writing its handshake and replay: live events
    /// queue here behind them, in order. `None` once it is live and broadcasts write to it directly.
    backlog: Option<Vec<Frame>>,
}

/// Why a client left, for the log.
type Dropped = Vec<(SocketAddr, String)>;

impl ClientList {
    pub fn new(max_clients: usize) -> ClientList {
        ClientList {
            inner: Mutex::new(Inner {
                clients: HashMap::new(),
                next_client: 0,
                last_id: 0,
                recent: VecDeque::with_capacity(REPLAY_LEN),
                announced: 0,
                last_write: Instant::now(),
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
    pub fn connect(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        last_event_id: Option<u64>,
        handshake: Vec<u8>,
    ) -> Option<u64> {
        let mut inner = self.lock();
        if inner.clients.len() >= self.max_clients {
            return None;
        }
        let mut backlog: Vec<Frame> = vec![handshake.into()];
        let replay_note = match last_event_id {
            None => String::from("new stream"),
            Some(n) => inner.queue_replay(n, &mut backlog),
        };
        inner.next_client += 1;
        let id = inner.next_client;
        inner.clients.insert(
            id,
            Client {
                stream,
                peer,
                backlog: Some(backlog),
            },
        );
        let count = inner.clients.len();
        drop(inner);
        eprintln!("{peer} connected ({replay_note}); {count} connected");
        Some(id)
    }

    /// For a new client's own thread: the frames it must write next. `None` once it has caught up
    /// (from then on it is live and broadcasts write to it) or once it has been dropped.
    pub fn next_backlog(&self, id: u64) -> Option<Vec<Frame>> {
        let mut inner = self.lock();
        let client = inner.clients.get_mut(&id)?;
        let backlog = client.backlog.as_mut()?;
        if !backlog.is_empty() {
            return Some(std::mem::take(backlog));
        }
        // Caught up. Non-blocking from now on: a broadcast's write to a client that stopped reading
        // fails at once (and drops it) instead of waiting for room while every other client waits too.
        let live = client.stream.set_nonblocking(true);
        if live.is_ok() {
            client.backlog = None;
        }
        drop(inner);
        if let Err(e) = live {
            self.disconnect(id, format!("cannot go live: {e}"));
        }
        None
    }

    /// Drops a client whose own thread failed to write its handshake or replay.
    pub fn disconnect(&self, id: u64, reason: String) {
        let mut inner = self.lock();
        if let Some(client) = inner.clients.remove(&id) {
            let _ = client.stream.shutdown(Shutdown::Both);
            log_dropped(inner, vec![(client.peer, reason)]);
        }
    }

    /// Sends an event to every client and keeps it for replay. Returns its id.
    pub fn broadcast(&self, event_type: Option<&str>, data: &str) -> u64 {
        let mut inner = self.lock();
        let (id, dropped) = inner.broadcast(event_type, data);
        log_dropped(inner, dropped);
        id
    }

    /// Sends `event: clients` with the number of connected clients, if it changed since the last one.
    pub fn announce_count(&self) {
        let mut inner = self.lock();
        let count = inner.clients.len();
        if count == inner.announced {
            return;
        }
        inner.announced = count;
        let (_, dropped) = inner.broadcast(Some("clients"), &count.to_string());
        log_dropped(inner, dropped);
    }

    /// Writes a comment to every client if nothing was written for `idle` (F9).
    pub fn heartbeat_if_idle(&self, idle: Duration) {
        let mut inner = self.lock();
        if inner.last_write.elapsed() < idle {
            return;
        }
        let dropped = inner.send_to_all(&Frame::from(event::comment("heartbeat").into_bytes()));
        log_dropped(inner, dropped);
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
        (id, self.send_to_all(&frame))
    }

    /// The one pass that writes to every client, and the one place a failed write drops one.
    fn send_to_all(&mut self, frame: &Frame) -> Dropped {
        self.last_write = Instant::now();
        let mut dropped = Vec::new();
        self.clients.retain(|_, client| match client.send(frame) {
            Ok(()) => true,
            Err(reason) => {
                // Wakes the client's own thread too, if it is still writing the replay.
                let _ = client.stream.shutdown(Shutdown::Both);
                dropped.push((client.peer, reason));
                false
            }
        });
        dropped
    }

    /// Queues the events after `last_event_id` behind the handshake; returns a note for the log.
    ///
    /// §9.2.4 leaves the meaning of `Last-Event-ID` to the server. Ours: replay every kept event
    /// with a larger id, in order. If some events between that id and the oldest kept one are gone,
    /// or the id is newer than any we sent (it came from an earlier run of the server), the client
    /// first gets an `event: gap` saying so: nothing is lost silently.
    fn queue_replay(&self, last_event_id: u64, backlog: &mut Vec<Frame>) -> String {
        let oldest = self.recent.front().map_or(self.last_id + 1, |(id, _)| *id);
        let unknown = last_event_id > self.last_id;
        let mut note = format!("Last-Event-ID {last_event_id} -> ");
        if unknown || last_event_id + 1 < oldest {
            // Not from the id counter: this notice is for one client, and an `id:` here would move
            // its last event ID past the events still to be replayed.
            let data = format!("{{\"last_event_id\":{last_event_id},\"resume_from\":{oldest}}}");
            backlog.push(Frame::from(
                event::frame(None, Some("gap"), &data).into_bytes(),
            ));
            note += &format!("gap (oldest kept is {oldest}), ");
        }
        let after = if unknown { 0 } else { last_event_id };
        let missed: Vec<&(u64, Frame)> = self.recent.iter().filter(|(id, _)| *id > after).collect();
        backlog.extend(missed.iter().map(|(_, frame)| frame.clone()));
        match (missed.first(), missed.last()) {
            (Some((first, _)), Some((last, _))) => note + &format!("replaying {first}..{last}"),
            _ => note + "nothing to replay",
        }
    }
}

impl Client {
    /// One frame to one client, whole or not at all.
    fn send(&mut self, frame: &Frame) -> Result<(), String> {
        if let Some(backlog) = &mut self.backlog {
            if backlog.len() >= MAX_BACKLOG {
                return Err(String::from("fell too far behind while catching up"));
            }
            backlog.push(frame.clone());
            return Ok(());
        }
        // One write per frame (F10). The socket is non-blocking: if its send buffer cannot take the
        // whole frame, the client has stopped reading. We drop it rather than wait or keep a queue;
        // the bytes already sent end mid-event, which the browser discards (§9.2.6), and it
        // reconnects with Last-Event-ID, so the replay gives it back everything it missed.
        match self.stream.write(frame) {
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

/// Releases the lock, then logs who left and why: printing is slow, and must not hold up a broadcast.
fn log_dropped(inner: MutexGuard<'_, Inner>, dropped: Dropped) {
    let left = inner.clients.len();
    drop(inner);
    for (peer, reason) in dropped {
        eprintln!("{peer} dropped: {reason}; {left} connected");
    }
}
