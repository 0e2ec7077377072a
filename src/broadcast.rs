//! The broadcast: every open `/events` stream in one `Mutex`-guarded client list, each client a
//! position in the [event log](crate::event_log), and the writer threads that bring every client
//! up to the end of the log.
//!
//! Appending an event (the ticker, a publish) takes the lock for microseconds: the log gives it an
//! id and frames it once, and the writers are woken. Nobody who appends waits for a socket. Each
//! writer thread owns a share of the clients and, in a pass, writes to each one everything from its
//! position to the end of the log in one call, so ten pending events cost one write, not ten. The
//! kernel takes what fits and the position remembers the rest. A write that fails drops the client:
//! that is how a server learns the browser went away.

use crate::event;
use crate::event_log::{EventId, EventLog, Frame, Resume};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How soon a writer tries again a client whose socket took less than it was given. std has no way
/// to wait until a socket can take more (that is what epoll and friends are for), so a writer with
/// such a client wakes on this timer even when nothing new arrives.
const RETRY_AFTER: Duration = Duration::from_millis(20);

/// Why a lab stream with `end_after` leaves the list: not a failure, the end it asked for.
const ENDED: &str = "end_after reached, stream ended; a browser reconnects after its retry time";

pub struct ClientList {
    state: Mutex<State>,
    /// Wakes the writers: an event was appended, a client joined, the count changed, a heartbeat
    /// is due.
    wake: Condvar,
    /// Counts those changes. Raised only with the lock held, but read without it: a writer
    /// visiting 5,000 clients takes the lock only when this moved since it last looked.
    changes: AtomicU64,
    max_clients: usize,
    /// How long a client may leave bytes waiting and take none of them before it is dropped.
    write_timeout: Duration,
}

struct State {
    log: EventLog,
    /// The clients, one share per writer thread, each in the order they joined. A writer takes its
    /// share out of the list for a pass and puts it back after, so it writes without holding this
    /// lock; a client that joins meanwhile waits here for the next pass.
    shares: Vec<Vec<Client>>,
    /// How many clients each share holds, out for a pass or not.
    sizes: Vec<usize>,
    /// The client count as last announced, and how many announcements there have been. A count
    /// is state, not history: it has no id and is not in the log, so a replay never hands back a
    /// stale count as news, and a storm of reconnects cannot push real events out of the log. A
    /// new client is told the current value when it joins, the others at the next announcement.
    announced: usize,
    announcements: u64,
    /// A client joined since the last announcement. It was told the count then, but if another
    /// left meanwhile the total may equal `announced` while it was told one more.
    joined: bool,
    /// How many heartbeats have been due; a client that has had fewer gets one.
    heartbeats: u64,
    last_sent: Instant,
    /// Redis mode: the latest tick, and how many there have been. With several servers on one
    /// shared log, each ticking into it would double the ticks; so a tick is state here, like the
    /// count: no id, not in the log, and a client that missed some gets only the latest.
    tick: Frame,
    ticks: u64,
    /// Redis mode: how many times our copy of the shared log was started again, and the `gap`
    /// notice every client gets before the events that came after; and how many of those
    /// restarts may have started the ids again lower (Redis itself restarted).
    gap: Frame,
    restarts: u64,
    id_resets: u64,
    /// Test builds only: the writer that panics in its next pass, to show what a bug costs.
    #[cfg(test)]
    panic_in: Option<usize>,
}

struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes that are not in the log and go out before the frame at `position`: the handshake,
    /// a `gap` notice, a count, a heartbeat. Added to only between two frames (`offset == 0`).
    out: Vec<u8>,
    /// The log position of the next frame to send: every frame before it has gone out in full.
    position: u64,
    /// How many bytes of that frame are already out: a write the kernel took only part of.
    offset: usize,
    /// The client count this client was last told, how many announcements it has heard (those
    /// made before it joined do not concern it), and how many heartbeats it has had.
    count: usize,
    announcements: u64,
    heartbeats: u64,
    /// The ticks, log restarts and id resets it has had (Redis mode).
    ticks: u64,
    restarts: u64,
    id_resets: u64,
    /// Redis mode: it was sent the shared log up to this id before it joined; any event up to it
    /// that reaches our copy of the log later is skipped (see [`Resume::Through`]).
    skip_through: Option<EventId>,
    /// The lab's `end_after`: the position at which this stream is finished. `None` for an
    /// ordinary stream, which runs until one side closes it.
    finish_at: Option<u64>,
    /// What it asked for, its `end_after`, and how much of `out` is its handshake: enough to
    /// start it again if the log moves past its start before its first byte goes out.
    asked: Resume,
    end_after: Option<u64>,
    head_len: usize,
    /// Nothing has been written to it yet.
    fresh: bool,
    /// Since when this client has had bytes waiting and taken none.
    stuck_since: Option<Instant>,
}

/// What one visit to a client came to.
#[derive(Debug, PartialEq)]
enum Visit {
    /// Everything is out.
    UpToDate,
    /// Some bytes are still waiting: its socket took less than it was given.
    Behind,
    /// It leaves the list, for this reason.
    Leave(String),
}

impl ClientList {
    /// A list for `writers` writer threads (start each with [`ClientList::run_writer`]).
    pub fn new(max_clients: usize, writers: usize, write_timeout: Duration) -> ClientList {
        let writers = writers.max(1);
        ClientList {
            state: Mutex::new(State {
                log: EventLog::new(),
                shares: (0..writers).map(|_| Vec::new()).collect(),
                sizes: vec![0; writers],
                announced: 0,
                announcements: 0,
                joined: false,
                heartbeats: 0,
                last_sent: Instant::now(),
                tick: Frame::from(&[][..]),
                ticks: 0,
                gap: Frame::from(&[][..]),
                restarts: 0,
                id_resets: 0,
                #[cfg(test)]
                panic_in: None,
            }),
            wake: Condvar::new(),
            changes: AtomicU64::new(0),
            max_clients,
            write_timeout,
        }
    }

    /// A panic in some thread while it held the lock "poisons" the mutex. Every piece of this state
    /// stays valid between any two statements, so we carry on rather than let one bug take the
    /// ticker and every client down with it.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a new stream client whose first bytes are `handshake`, at the place in the log that
    /// `resume` asks for. The writers send it the rest, replay and live events alike: from the
    /// client's position on, there is no difference between the two.
    ///
    /// `end_after` (the lab) ends the stream after that many events, a `gap` notice and replayed
    /// events included. Gives the stream back when `max_clients` streams are already open.
    pub fn connect(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        resume: Resume,
        handshake: Vec<u8>,
        end_after: Option<u64>,
    ) -> Result<(), TcpStream> {
        let mut state = self.lock();
        let count = state.sizes.iter().sum::<usize>() + 1;
        if count > self.max_clients {
            return Err(stream);
        }
        let mut client = Client {
            stream,
            peer,
            head_len: handshake.len(),
            out: handshake,
            position: 0,
            offset: 0,
            count,
            announcements: state.announcements,
            heartbeats: state.heartbeats,
            ticks: state.ticks,
            restarts: state.restarts,
            id_resets: state.id_resets,
            skip_through: None,
            finish_at: None,
            asked: resume,
            end_after,
            fresh: true,
            stuck_since: None,
        };
        let note = client.start(&state.log);
        // The share with the fewest clients.
        let writer = (0..state.sizes.len())
            .min_by_key(|w| state.sizes[*w])
            .unwrap_or_default();
        state.sizes[writer] += 1;
        state.shares[writer].push(client);
        state.joined = true;
        self.wake_writers(state);
        eprintln!("{peer} connected ({note}); {count} connected");
        Ok(())
    }

    /// Appends an event to the log and wakes the writers; returns its id. It returns at once:
    /// the writers deliver the event to every client on their next pass.
    pub fn append(&self, event_type: Option<&str>, data: &str) -> EventId {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut state = self.lock();
        let id = state.log.append(now_ms, event_type, data);
        state.last_sent = Instant::now();
        self.wake_writers(state);
        id
    }

    /// Keeps an event whose id was given by the shared log (Redis mode), and wakes the writers.
    /// `false` if the id is not after the newest one here: it was already kept.
    pub fn append_with_id(&self, id: EventId, event_type: Option<&str>, data: &str) -> bool {
        let mut state = self.lock();
        if !state.log.append_with_id(id, event_type, data) {
            return false;
        }
        state.last_sent = Instant::now();
        self.wake_writers(state);
        true
    }

    /// Redis mode: has the writers send every client this tick, without an id and outside the log.
    pub fn tick(&self, data: &str) {
        let mut state = self.lock();
        state.tick = Frame::from(event::frame(None, None, data).into_bytes());
        state.ticks += 1;
        state.last_sent = Instant::now();
        self.wake_writers(state);
    }

    /// Redis mode: our copy of the shared log has a hole. Redis restarted without persistence
    /// (`ids_start_over`: its new ids may be lower than any before), or the reader fell behind
    /// the stream's trimming (the ids go on). Our copy forgets every event, and every client gets
    /// the `gap` notice, then the new events.
    pub fn restart_log(&self, gap: String, ids_start_over: bool) {
        let mut state = self.lock();
        state.log.restart();
        state.gap = Frame::from(gap.into_bytes());
        state.restarts += 1;
        state.id_resets += u64::from(ids_start_over);
        state.last_sent = Instant::now();
        self.wake_writers(state);
    }

    /// Has the writers tell every client the client count, if it changed or a client joined
    /// since the last time. A client that already holds that value is not told it again.
    pub fn announce_count(&self) {
        let mut state = self.lock();
        let count = state.sizes.iter().sum();
        if state.announced == count && !state.joined {
            return;
        }
        state.announced = count;
        state.joined = false;
        state.announcements += 1;
        state.last_sent = Instant::now();
        self.wake_writers(state);
    }

    /// Has the writers send every client a comment if nothing was sent for `idle` (§9.2.7: a
    /// comment line every 15 seconds or so keeps proxies from dropping the connection).
    pub fn heartbeat_if_idle(&self, idle: Duration) {
        let mut state = self.lock();
        if state.last_sent.elapsed() < idle {
            return;
        }
        state.heartbeats += 1;
        state.last_sent = Instant::now();
        self.wake_writers(state);
    }

    /// Tells the writers something changed, and releases the lock: they wake and make a pass.
    fn wake_writers(&self, state: MutexGuard<'_, State>) {
        // Counted while the lock is held, so a writer that checks the count under the lock
        // before it sleeps cannot miss a change.
        self.changes.fetch_add(1, Ordering::Release);
        drop(state);
        self.wake.notify_all();
    }

    /// How many stream clients are connected.
    pub fn len(&self) -> usize {
        self.lock().sizes.iter().sum()
    }

    /// How many times the log was restarted: for tests of the Redis reader.
    #[cfg(test)]
    pub fn restarts(&self) -> u64 {
        self.lock().restarts
    }

    /// The newest event id in the log, if it holds any.
    pub fn last_id(&self) -> Option<EventId> {
        self.lock().log.last()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `max_clients` streams are open: one more would be refused.
    pub fn is_full(&self) -> bool {
        self.len() >= self.max_clients
    }

    /// The writer thread for share `writer`, one per core: sleeps until something changes, then
    /// makes a pass over its clients; forever.
    ///
    /// A bug that panics during a pass costs only this share's clients: their sockets close with
    /// the share, the browsers reconnect with `Last-Event-ID`, and the log replays what they
    /// missed. The writer itself goes on with the clients that join after.
    pub fn run_writer(&self, writer: usize) -> ! {
        let mut seen = 0;
        let mut behind = false;
        loop {
            seen = self.wait_for_change(seen, behind);
            behind = match panic::catch_unwind(AssertUnwindSafe(|| self.pass(writer))) {
                Ok(behind) => behind,
                Err(_) => {
                    let mut state = self.lock();
                    let lost = state.sizes[writer] - state.shares[writer].len();
                    state.sizes[writer] = state.shares[writer].len();
                    let left = state.sizes.iter().sum::<usize>();
                    drop(state);
                    eprintln!(
                        "writer {writer} panicked during a pass: its {lost} clients were dropped \
                         (they reconnect and the log replays what they missed); {left} connected"
                    );
                    false
                }
            };
        }
    }

    /// Waits until the list changed since `seen`, or, when a client was left `behind`, until it is
    /// time to try it again. Returns the change count to wait past next time.
    fn wait_for_change(&self, seen: u64, behind: bool) -> u64 {
        let state = self.lock();
        let unchanged = |_: &mut State| self.changes.load(Ordering::Acquire) == seen;
        let state = if behind {
            self.wake
                .wait_timeout_while(state, RETRY_AFTER, unchanged)
                .map_or_else(|e| e.into_inner().0, |(state, _)| state)
        } else {
            self.wake
                .wait_while(state, unchanged)
                .unwrap_or_else(PoisonError::into_inner)
        };
        drop(state);
        self.changes.load(Ordering::Acquire)
    }

    /// One pass of one writer: brings each client of its share up to the end of the log, drops the
    /// ones that leave, and logs why. Returns whether some client was left behind.
    fn pass(&self, writer: usize) -> bool {
        let mut share = std::mem::take(&mut self.lock().shares[writer]);
        #[cfg(test)]
        if self.lock().panic_in.take_if(|w| *w == writer).is_some() {
            panic!(
                "a simulated bug in writer {writer}, with {} clients",
                share.len()
            );
        }
        let mut behind = false;
        let mut dropped = Vec::new();
        let mut view = View::new();
        // The one place a client leaves the list: a failed write, a client too slow, a lab stream
        // that got its last event.
        share.retain_mut(|client| match self.visit(client, &mut view) {
            Visit::UpToDate => true,
            Visit::Behind => {
                behind = true;
                true
            }
            Visit::Leave(reason) => {
                // Out of the list, the socket is dropped, which closes it: a browser still there
                // sees its stream end and reconnects.
                dropped.push((client.peer, reason));
                false
            }
        });
        let mut state = self.lock();
        // Put the share back in front of the clients that joined during the pass.
        let joined = std::mem::replace(&mut state.shares[writer], share);
        state.shares[writer].extend(joined);
        state.sizes[writer] -= dropped.len();
        // Each log line gives the count as it was once that client had gone, so every line is
        // true when read, however many left in one pass. Printing waits until the lock is free.
        let mut left = state.sizes.iter().sum::<usize>() + dropped.len();
        drop(state);
        for (peer, reason) in dropped {
            left -= 1;
            eprintln!("{peer} dropped: {reason}; {left} connected");
        }
        behind
    }

    /// Sends one client everything it has not had yet, in one write.
    fn visit(&self, client: &mut Client, view: &mut View) -> Visit {
        // Looking afresh before every client means an event appended mid-pass reaches the
        // clients not yet visited in that same pass.
        if self.changes.load(Ordering::Acquire) != view.changes {
            let state = self.lock();
            view.refresh(&state, self.changes.load(Ordering::Acquire));
        }
        // Redis mode: events it already had from the replay may reach our copy of the log after
        // it joined. Skip them, until our copy has caught up with the replay's last id. The log
        // may have grown since the look above: look again under the same lock, or its position
        // could point past the end of what this pass sees. Not once Redis itself has restarted:
        // its new ids may be below the replay's, and those events were never sent.
        if let Some(through) = client.skip_through
            && client.offset == 0
        {
            let state = self.lock();
            if client.id_resets == state.id_resets {
                client.position = client.position.max(state.log.position_after(through));
                if state.log.last() >= Some(through) {
                    client.skip_through = None;
                }
            } else {
                client.skip_through = None;
            }
            view.refresh(&state, self.changes.load(Ordering::Acquire));
        }
        // Redis mode: our copy of the log was started again (Redis restarted, or the reader fell
        // behind it). Between two frames, the `gap` notice; the events it had not been sent yet
        // are gone.
        if client.restarts != view.restarts && client.offset == 0 {
            client.restarts = view.restarts;
            client.out.extend_from_slice(&view.gap);
            client.position = client.position.max(view.first);
        }
        if client.position < view.first && client.fresh {
            // The log moved on between its join and this first visit (events were appended and
            // old ones trimmed). Nothing has gone out: start it again from the log as it is now.
            let state = self.lock();
            let note = client.start(&state.log);
            view.refresh(&state, self.changes.load(Ordering::Acquire));
            drop(state);
            eprintln!(
                "{}: the log moved on before its first write ({note})",
                client.peer
            );
        }
        if client.position < view.first {
            let behind = view.end() - client.position;
            return Visit::Leave(format!(
                "too slow: {behind} events behind, and the log no longer holds its next one"
            ));
        }
        let finished = client.finished();
        if finished && client.out.is_empty() {
            return Visit::Leave(String::from(ENDED));
        }
        // Between two frames (never inside one), what is not in the log can go out.
        if client.offset == 0 && !finished {
            if client.announcements != view.announcements {
                client.announcements = view.announcements;
                if client.count != view.announced {
                    client.tell_count(view.announced);
                }
            }
            if client.ticks != view.ticks {
                client.ticks = view.ticks;
                client.out.extend_from_slice(&view.tick);
            }
            if client.heartbeats != view.heartbeats {
                client.heartbeats = view.heartbeats;
                client.out.extend(event::comment("heartbeat").into_bytes());
            }
        }
        // Its frames: from its position to the end of the log, or to where its lab stream ends.
        let from = (client.position - view.first) as usize;
        let to = client
            .finish_at
            .map_or(view.end(), |end| end.min(view.end()));
        let to = (to.max(client.position) - view.first) as usize;
        if client.out.is_empty() && from == to {
            return Visit::UpToDate;
        }
        let inside_a_frame = client.offset > 0;
        let mut slices = Vec::with_capacity(to - from + 1);
        slices.push(IoSlice::new(&client.out));
        for (i, frame) in view.frames.range(from..to).enumerate() {
            let skip = if i == 0 { client.offset } else { 0 };
            slices.push(IoSlice::new(&frame[skip..]));
        }
        let pending: usize = slices.iter().map(|s| s.len()).sum();
        // The socket is non-blocking: the kernel takes what fits in its send buffer and says how
        // much. This thread never waits for one slow reader while the others wait behind it.
        let written = match (&client.stream).write_vectored(&slices) {
            Ok(0) => return Visit::Leave(String::from("write failed: the socket takes no bytes")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Visit::Leave(format!("write failed: {e}")),
        };
        client.advance(written, view.frames.range(from..to));
        client.fresh &= written == 0;
        if written == pending {
            client.stuck_since = None;
            // A lab stream that just got its last event ends now, not at the next wake-up.
            if client.finished() {
                return Visit::Leave(String::from(ENDED));
            }
            // A count or heartbeat that came due while this client was inside a frame waited for
            // the frame's end. It is out now: go round once more (this time between two frames),
            // or what waited would wait for the next wake-up.
            if inside_a_frame {
                return self.visit(client, view);
            }
            return Visit::UpToDate;
        }
        // A client that stopped reading keeps its place until the log moves past it, or until it
        // has taken nothing for `write_timeout`: a browser tab in the background still reads, a
        // peer that vanished without a word does not.
        let since = match (written, client.stuck_since) {
            (0, Some(since)) => since,
            _ => *client.stuck_since.insert(Instant::now()),
        };
        if since.elapsed() >= self.write_timeout {
            let waiting = pending - written;
            return Visit::Leave(format!(
                "took none of {waiting} waiting bytes for {:?} (not reading)",
                self.write_timeout
            ));
        }
        Visit::Behind
    }

    /// Test builds only: a bug striking while some thread holds the list, which poisons the mutex.
    #[cfg(test)]
    pub fn panic_while_locked(&self) -> ! {
        let _state = self.lock();
        panic!("a simulated bug, while holding the client list");
    }

    /// Test builds only: the next pass of `writer` panics, as a bug would.
    #[cfg(test)]
    fn panic_in_writer(&self, writer: usize) {
        self.lock().panic_in = Some(writer);
    }
}

/// A writer's copy, for one pass, of what its clients are owed: the log's frames from position
/// `first` on, the announced count and the heartbeats. It is brought up to date under the lock
/// only when something changed, so a pass over 5,000 clients takes the lock a few times instead of
/// 5,000, and the writers do not fight over the frames' reference counts client after client. The
/// frames are shared (`Arc`): the copy holds no bytes of its own.
struct View {
    /// The change count this copy is up to date with.
    changes: u64,
    first: u64,
    frames: VecDeque<Frame>,
    announced: usize,
    announcements: u64,
    heartbeats: u64,
    tick: Frame,
    ticks: u64,
    gap: Frame,
    restarts: u64,
}

impl View {
    fn new() -> View {
        View {
            // No change count is this, so the first visit brings the copy up to date.
            changes: u64::MAX,
            first: 0,
            frames: VecDeque::new(),
            announced: 0,
            announcements: 0,
            heartbeats: 0,
            tick: Frame::from(&[][..]),
            ticks: 0,
            gap: Frame::from(&[][..]),
            restarts: 0,
        }
    }

    fn end(&self) -> u64 {
        self.first + self.frames.len() as u64
    }

    /// Catches up with `state`: drops the frames the log has trimmed, adds the ones appended.
    fn refresh(&mut self, state: &State, changes: u64) {
        let log = &state.log;
        let trimmed = log.first().saturating_sub(self.first) as usize;
        self.frames.drain(..trimmed.min(self.frames.len()));
        self.first = log.first();
        log.frames(self.end(), log.end(), &mut self.frames);
        self.announced = state.announced;
        self.announcements = state.announcements;
        self.heartbeats = state.heartbeats;
        self.tick = state.tick.clone();
        self.ticks = state.ticks;
        self.gap = state.gap.clone();
        self.restarts = state.restarts;
        self.changes = changes;
    }
}

impl Client {
    /// Places the client in the log, as it asked (§9.2.4), behind its handshake: its position,
    /// the `gap` notice if events it asked for are gone, the current count, and where its lab
    /// stream ends. Returns a note for the server log.
    fn start(&mut self, log: &EventLog) -> String {
        let start = log.start(self.asked);
        self.out.truncate(self.head_len);
        self.out
            .extend(start.gap.as_deref().unwrap_or_default().as_bytes());
        // The count it is told, which includes it.
        self.tell_count(self.count);
        self.position = start.position;
        if let Resume::Through(id) = self.asked {
            self.skip_through = Some(id);
        }
        let gap = u64::from(start.gap.is_some());
        self.finish_at = self
            .end_after
            .map(|n| start.position + n.saturating_sub(gap));
        start.note
    }

    /// Queues `event: clients` with `count`, and remembers that this client was told it.
    fn tell_count(&mut self, count: usize) {
        self.count = count;
        self.out
            .extend(event::frame(None, Some("clients"), &count.to_string()).into_bytes());
    }

    /// A lab stream that has reached its `end_after` position.
    fn finished(&self) -> bool {
        self.finish_at.is_some_and(|end| self.position >= end)
    }

    /// Moves past the `n` bytes the kernel took: first from `out`, then from the frames, whose
    /// first one starts at `offset`. A frame cut short stays the next one, with a larger offset.
    fn advance<'a>(&mut self, n: usize, frames: impl Iterator<Item = &'a Frame>) {
        let from_out = n.min(self.out.len());
        self.out.drain(..from_out);
        if self.out.is_empty() {
            // A long handshake or replay need not keep its buffer for the life of the stream.
            self.out.shrink_to(64);
        }
        let mut n = n - from_out;
        for frame in frames {
            let rest = frame.len() - self.offset;
            if n < rest {
                self.offset += n;
                return;
            }
            n -= rest;
            self.position += 1;
            self.offset = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::LOG_EVENTS;
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::Arc;

    /// The server's end of a fresh loopback connection, and the client's end to read from.
    fn connection() -> (TcpStream, SocketAddr, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("non-blocking");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        (server, peer, client)
    }

    /// A list with one writer and no threads: the tests make its passes themselves.
    fn list() -> ClientList {
        ClientList::new(10, 1, Duration::from_secs(10))
    }

    /// Joins a client whose handshake is `head`; returns the end a browser would read.
    fn join(list: &ClientList, resume: Resume, head: &str, end_after: Option<u64>) -> TcpStream {
        let (server, peer, end) = connection();
        let joined = list.connect(server, peer, resume, head.as_bytes().to_vec(), end_after);
        assert!(joined.is_ok(), "room in the list");
        end
    }

    /// Reads what has arrived: until the stream ends or nothing comes for 50 ms (a pass has
    /// written before this is called, and loopback delivers at once).
    fn read_available(end: &mut TcpStream) -> String {
        end.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut all = Vec::new();
        let mut buf = [0; 65536];
        while let Ok(n @ 1..) = end.read(&mut buf) {
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(all).expect("UTF-8")
    }

    /// Reads until the text ends with `tail`, failing the test after 5 s.
    fn read_until(end: &mut TcpStream, tail: &str) -> String {
        end.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut got = Vec::new();
        while !got.ends_with(tail.as_bytes()) {
            let mut byte = [0];
            end.read_exact(&mut byte).expect("more to read within 5 s");
            got.push(byte[0]);
        }
        String::from_utf8(got).expect("UTF-8")
    }

    fn data_of(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .collect()
    }

    #[test]
    fn a_new_client_gets_its_handshake_and_the_count() {
        let list = list();
        let mut end = join(&list, Resume::New, "head\n", None);
        assert!(!list.pass(0), "nothing left behind");
        assert_eq!(
            read_available(&mut end),
            "head\nevent: clients\ndata: 1\n\n"
        );
    }

    #[test]
    fn pending_events_go_out_in_one_write() {
        let list = list();
        let mut end = join(&list, Resume::New, "", None);
        list.pass(0);
        read_available(&mut end);
        for text in ["a", "b", "c"] {
            list.append(Some("publish"), text);
        }
        list.pass(0);
        // One pass, one write: all three arrive together, in order.
        let got = read_available(&mut end);
        assert_eq!(data_of(&got), ["a", "b", "c"]);
        assert_eq!(got.matches("event: publish\n").count(), 3);
    }

    #[test]
    fn an_event_appended_mid_pass_reaches_the_clients_not_yet_visited() {
        let list = list();
        let mut first = join(&list, Resume::New, "", None);
        let mut second = join(&list, Resume::New, "", None);
        let mut share = std::mem::take(&mut list.lock().shares[0]);
        let mut view = View::new();
        assert_eq!(list.visit(&mut share[0], &mut view), Visit::UpToDate);
        list.append(None, "mid-pass");
        assert_eq!(list.visit(&mut share[1], &mut view), Visit::UpToDate);
        assert!(!read_available(&mut first).contains("mid-pass"));
        assert!(read_available(&mut second).contains("data: mid-pass\n"));
        // The first client gets it on the next visit.
        assert_eq!(list.visit(&mut share[0], &mut view), Visit::UpToDate);
        assert_eq!(data_of(&read_available(&mut first)), ["mid-pass"]);
    }

    #[test]
    fn a_partial_write_is_continued_on_the_next_pass() {
        let list = list();
        let mut end = join(&list, Resume::New, "", None);
        // Bigger than both ends' socket buffers hold: the kernel takes only part of it.
        let big = "x".repeat(7 << 20);
        list.append(None, &big);
        list.append(None, "after");
        assert!(list.pass(0), "left behind, not dropped");
        assert_eq!(list.len(), 1);
        // A count and a heartbeat come due while it is inside the big frame: they must wait for
        // the frame's end, never land inside it.
        let _other = join(&list, Resume::New, "", None);
        list.announce_count();
        list.heartbeat_if_idle(Duration::ZERO);
        // The browser reads on; each pass sends more, from where the last one stopped.
        let mut got = String::new();
        for _ in 0..1000 {
            got += &read_available(&mut end);
            if !list.pass(0) {
                break;
            }
        }
        got += &read_available(&mut end);
        // Compared by length: a failure must not print 7 MiB of x.
        let lengths: Vec<usize> = data_of(&got).iter().map(|data| data.len()).collect();
        assert_eq!(lengths, [1, big.len(), 5, 1], "whole frames, in order");
        // The count and the heartbeat went out at the first frame boundary after the big frame's
        // write: behind the small frame that write carried with it.
        let after_big = &got[got.find(&big).expect("the big frame") + big.len()..];
        assert!(after_big.starts_with("\n\nid: "), "{after_big}");
        assert!(
            after_big.ends_with("\ndata: after\n\nevent: clients\ndata: 2\n\n: heartbeat\n\n"),
            "{after_big}"
        );
    }

    #[test]
    fn a_client_that_reads_slowly_but_steadily_is_not_dropped() {
        // Each read frees some room, so every pass moves it on: it is slow, not stuck.
        let list = ClientList::new(10, 1, Duration::from_millis(200));
        let mut end = join(&list, Resume::New, "", None);
        list.append(None, &"x".repeat(7 << 20));
        let start = Instant::now();
        let mut buf = vec![0; 256 * 1024];
        while list.pass(0) {
            assert!(start.elapsed() < Duration::from_secs(20), "never caught up");
            std::thread::sleep(Duration::from_millis(100));
            end.read_exact(&mut buf).expect("read");
        }
        assert!(
            start.elapsed() > Duration::from_millis(200),
            "slower than the timeout"
        );
        assert_eq!(list.len(), 1, "never dropped");
    }

    #[test]
    fn a_client_that_takes_nothing_stays_until_its_write_timeout() {
        let list = ClientList::new(10, 1, Duration::from_millis(300));
        let _end = join(&list, Resume::New, "", None);
        let big = "x".repeat(7 << 20);
        list.append(None, &big);
        let start = Instant::now();
        // It never reads: WouldBlock, again and again, keeps its place.
        while list.pass(0) {
            assert!(start.elapsed() < Duration::from_secs(5), "never dropped");
        }
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "dropped too soon"
        );
        assert!(list.is_empty(), "dropped once it took nothing for 300 ms");
    }

    #[test]
    fn a_client_the_log_moves_past_is_dropped() {
        let list = list();
        let _end = join(&list, Resume::New, "", None);
        // It never reads: a frame bigger than the socket buffers leaves it behind at that frame.
        list.append(None, &"x".repeat(7 << 20));
        assert!(list.pass(0), "left behind");
        for i in 1..LOG_EVENTS {
            list.append(None, &i.to_string());
        }
        list.pass(0);
        assert_eq!(list.len(), 1, "its next frame is still in the log");
        list.append(None, "one too many");
        let mut share = std::mem::take(&mut list.lock().shares[0]);
        assert_eq!(
            list.visit(&mut share[0], &mut View::new()),
            Visit::Leave(String::from(
                "too slow: 1001 events behind, and the log no longer holds its next one"
            ))
        );
    }

    #[test]
    fn a_write_error_drops_the_client() {
        let list = list();
        let end = join(&list, Resume::New, "", None);
        list.pass(0);
        drop(end);
        // The first write after the browser left may still be taken by the kernel; the peer's
        // reset makes a later one fail.
        for i in 0..100 {
            list.append(None, &i.to_string());
            list.pass(0);
            if list.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("a client that left was never dropped");
    }

    #[test]
    fn a_reconnect_replays_then_goes_live_in_one_stream() {
        let list = list();
        let a = list.append(None, "a");
        list.append(None, "b");
        let mut end = join(&list, Resume::After(a), "", None);
        list.append(None, "c");
        list.pass(0);
        let got = read_available(&mut end);
        assert_eq!(data_of(&got), ["1", "b", "c"]);
    }

    #[test]
    fn a_resume_from_before_the_log_gets_the_gap_first() {
        let list = list();
        list.append(None, "kept");
        let old = EventId { ms: 1, seq: 0 };
        let mut end = join(&list, Resume::After(old), "", None);
        list.pass(0);
        let got = read_available(&mut end);
        assert!(
            got.starts_with("event: gap\ndata: {\"last_event_id\":\"1-0\""),
            "{got}"
        );
        assert_eq!(data_of(&got)[1..], ["1", "kept"]);
    }

    #[test]
    fn end_after_inside_the_replay_ends_before_going_live() {
        let list = list();
        let a = list.append(None, "a");
        list.append(None, "b");
        list.append(None, "c");
        let mut end = join(&list, Resume::After(a), "", Some(1));
        list.append(None, "live");
        // One pass: it gets its last event and ends, without waiting for another wake-up.
        list.pass(0);
        assert!(list.is_empty(), "ended, not live");
        assert_eq!(data_of(&read_available(&mut end)), ["1", "b"]);
    }

    #[test]
    fn end_after_takes_live_events_after_the_replay_up_to_n() {
        let list = list();
        let a = list.append(None, "a");
        list.append(None, "b");
        let mut end = join(&list, Resume::After(a), "", Some(3));
        for text in ["c", "d", "e"] {
            list.append(None, text);
            list.pass(0);
        }
        list.pass(0);
        assert_eq!(data_of(&read_available(&mut end)), ["1", "b", "c", "d"]);
        assert!(list.is_empty(), "ended after 3 events");
    }

    #[test]
    fn a_gap_counts_as_one_of_end_after() {
        let list = list();
        list.append(None, "a");
        let mut end = join(&list, Resume::Unreadable, "", Some(1));
        list.pass(0);
        assert!(list.is_empty());
        let got = read_available(&mut end);
        assert!(got.starts_with("event: gap\n"), "{got}");
        assert!(!got.contains("data: a\n"), "{got}");
    }

    #[test]
    fn a_client_the_log_moves_past_before_its_first_write_starts_again() {
        let list = list();
        for i in 0..LOG_EVENTS {
            list.append(None, &i.to_string());
        }
        // It asks for everything kept (an id not ours), then, before the writer gets to it, one
        // more event pushes the oldest out of the log.
        let mut end = join(&list, Resume::Unreadable, "head\n", None);
        list.append(None, "one more");
        list.pass(0);
        assert_eq!(
            list.len(),
            1,
            "not dropped as too slow: it has had nothing yet"
        );
        let got = read_available(&mut end);
        // The gap names the oldest event kept now, and the replay starts there.
        let data = data_of(&got);
        assert!(got.starts_with("head\nevent: gap\n"), "{}", &got[..200]);
        assert_eq!(
            data[1..3],
            ["1", "1"],
            "the count, then the oldest kept event"
        );
        assert_eq!(data.last(), Some(&"one more"));
        assert_eq!(data.len(), 2 + LOG_EVENTS);
    }

    #[test]
    fn a_client_that_joins_as_another_leaves_still_hears_the_count() {
        let list = list();
        let first = join(&list, Resume::New, "", None);
        list.announce_count();
        list.pass(0);
        // A second client joins and is told 2; then the first leaves. The total is back to the
        // 1 last announced, but the second client holds 2.
        let mut second = join(&list, Resume::New, "", None);
        list.pass(0);
        drop(first);
        for i in 0..100 {
            list.append(None, &i.to_string());
            list.pass(0);
            if list.len() == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(list.len(), 1);
        list.announce_count();
        list.pass(0);
        let got = read_available(&mut second);
        assert!(got.starts_with("event: clients\ndata: 2\n\n"), "{got}");
        assert!(got.ends_with("event: clients\ndata: 1\n\n"), "{got}");
    }

    #[test]
    fn the_count_is_state_told_to_each_client_once_per_change() {
        let list = list();
        let mut first = join(&list, Resume::New, "", None);
        list.pass(0);
        assert_eq!(data_of(&read_available(&mut first)), ["1"]);
        let _second = join(&list, Resume::New, "", None);
        list.announce_count();
        list.announce_count();
        list.pass(0);
        assert_eq!(read_available(&mut first), "event: clients\ndata: 2\n\n");
        // Not in the log: a reconnect gets the current count, never the old ones.
        let mut third = join(&list, Resume::After(EventId { ms: 0, seq: 0 }), "", None);
        list.pass(0);
        let got = read_available(&mut third);
        assert_eq!(got.matches("event: clients").count(), 1, "{got}");
        assert!(got.contains("data: 3\n"), "{got}");
    }

    #[test]
    fn a_heartbeat_goes_to_every_client_when_nothing_was_sent() {
        let list = list();
        let mut end = join(&list, Resume::New, "", None);
        list.pass(0);
        read_available(&mut end);
        list.heartbeat_if_idle(Duration::from_secs(60));
        list.pass(0);
        assert_eq!(read_available(&mut end), "", "not idle yet");
        list.heartbeat_if_idle(Duration::ZERO);
        list.pass(0);
        assert_eq!(read_available(&mut end), ": heartbeat\n\n");
    }

    #[test]
    fn a_client_replayed_through_an_id_gets_nothing_up_to_it_twice() {
        let list = list();
        let id = |ms, seq| EventId { ms, seq };
        // The replay (from Redis) went up to 5-1; our copy of the log holds only 5-0 yet.
        list.append_with_id(id(5, 0), None, "a");
        let mut end = join(&list, Resume::Through(id(5, 1)), "", None);
        list.pass(0);
        // Then 5-1, which it already had, and 6-0, which it had not, reach our copy.
        list.append_with_id(id(5, 1), None, "b");
        list.pass(0);
        list.append_with_id(id(6, 0), None, "c");
        list.pass(0);
        assert_eq!(data_of(&read_available(&mut end)), ["1", "c"]);
    }

    #[test]
    fn events_that_reach_our_copy_mid_visit_do_not_carry_a_replayed_client_past_the_view() {
        let list = list();
        let id = |ms, seq| EventId { ms, seq };
        let mut end = join(&list, Resume::Through(id(5, 1)), "", None);
        let mut share = std::mem::take(&mut list.lock().shares[0]);
        // A writer looks at the log (empty)...
        let mut view = View::new();
        view.refresh(&list.lock(), list.changes.load(Ordering::Acquire));
        // ...and right after that look, before it reaches this client, the reader copies the
        // replay's events and one more into the log (the writer's view of the count is the
        // one it had just read).
        list.append_with_id(id(5, 0), None, "a");
        list.append_with_id(id(5, 1), None, "b");
        list.append_with_id(id(6, 0), None, "c");
        view.changes = list.changes.load(Ordering::Acquire);
        assert!(matches!(
            list.visit(&mut share[0], &mut view),
            Visit::UpToDate
        ));
        assert_eq!(data_of(&read_available(&mut end)), ["1", "c"]);
    }

    #[test]
    fn a_replay_s_last_id_skips_nothing_after_a_restart() {
        let list = list();
        let mut end = join(&list, Resume::Through(EventId { ms: 9, seq: 0 }), "", None);
        // Before the writer first visits it, Redis restarts and its new ids start lower.
        list.restart_log(String::from("event: gap\ndata: x\n\n"), true);
        list.append_with_id(EventId { ms: 1, seq: 0 }, None, "new");
        list.pass(0);
        assert_eq!(
            read_available(&mut end),
            "event: clients\ndata: 1\n\nevent: gap\ndata: x\n\nid: 1-0\ndata: new\n\n"
        );
    }

    #[test]
    fn a_gap_from_a_reader_that_fell_behind_keeps_a_replay_s_skip() {
        let list = list();
        let id = |ms| EventId { ms, seq: 0 };
        list.append_with_id(id(40), None, "old");
        // A resume was replayed up to 150-0 from Redis; our copy holds only 40-0 yet.
        let mut end = join(&list, Resume::Through(id(150)), "", None);
        // Our reader fell behind the trimming: the gap, then 50-0 to 151-0, the same ids.
        list.restart_log(String::from("event: gap\ndata: x\n\n"), false);
        for ms in 50..=151 {
            list.append_with_id(id(ms), None, &ms.to_string());
        }
        list.pass(0);
        assert_eq!(
            read_available(&mut end),
            "event: clients\ndata: 1\n\nevent: gap\ndata: x\n\nid: 151-0\ndata: 151\n\n"
        );
    }

    #[test]
    fn a_restarted_log_sends_the_gap_then_the_new_events() {
        let list = list();
        let mut end = join(&list, Resume::New, "", None);
        list.append_with_id(EventId { ms: 9, seq: 0 }, None, "old");
        list.pass(0);
        read_available(&mut end);
        list.restart_log(String::from("event: gap\ndata: x\n\n"), true);
        // Lower ids are taken again, after the restart.
        assert!(list.append_with_id(EventId { ms: 1, seq: 0 }, None, "new"));
        list.pass(0);
        assert_eq!(
            read_available(&mut end),
            "event: gap\ndata: x\n\nid: 1-0\ndata: new\n\n"
        );
    }

    #[test]
    fn a_tick_outside_the_log_has_no_id_and_only_the_latest_goes_out() {
        let list = list();
        let mut end = join(&list, Resume::New, "", None);
        list.pass(0);
        read_available(&mut end);
        list.tick("t1");
        list.tick("t2");
        list.pass(0);
        assert_eq!(read_available(&mut end), "data: t2\n\n");
        // Not in the log: a resume replays no tick.
        let mut late = join(&list, Resume::Unreadable, "", None);
        list.pass(0);
        assert!(!read_available(&mut late).contains("t2"));
    }

    #[test]
    fn clients_over_the_cap_are_refused() {
        let list = ClientList::new(1, 1, Duration::from_secs(10));
        let _one = join(&list, Resume::New, "", None);
        let (server, peer, _end) = connection();
        assert!(
            list.connect(server, peer, Resume::New, Vec::new(), None)
                .is_err()
        );
    }

    #[test]
    fn a_panicking_writer_costs_only_its_own_clients() {
        let list = Arc::new(ClientList::new(10, 2, Duration::from_secs(10)));
        // The emptier share first: clients 0 and 2 go to writer 0, clients 1 and 3 to writer 1.
        let mut ends: Vec<TcpStream> = (0..4).map(|_| join(&list, Resume::New, "", None)).collect();
        list.panic_in_writer(0);
        for writer in 0..2 {
            let list = Arc::clone(&list);
            std::thread::spawn(move || list.run_writer(writer));
        }
        list.append(None, "after the bug");
        for (i, end) in ends.iter_mut().enumerate() {
            if i % 2 == 0 {
                // Its socket closed with the share: the end of the stream, within 5 s.
                end.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                let read = end.read(&mut [0; 64]);
                assert!(
                    matches!(&read, Ok(0))
                        || matches!(&read, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
                    "client {i}: {read:?}"
                );
            } else {
                // The count it was told when it joined, then the event.
                let expected = format!("event: clients\ndata: {}\n\n", i + 1);
                let got = read_until(end, "data: after the bug\n\n");
                assert!(got.starts_with(&expected), "client {i}: {got}");
            }
        }
        assert_eq!(list.len(), 2);
        // Writer 0 lives on: a client that joins now is its, and is served.
        let mut late = join(&list, Resume::New, "", None);
        assert_eq!(read_until(&mut late, "\n\n"), "event: clients\ndata: 3\n\n");
    }
}
