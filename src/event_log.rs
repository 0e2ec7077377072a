//! The event log: the recent events in order, each framed once, the ids they are given, and
//! where a client's stream starts in them.
//!
//! Every event goes through here before any client sees it. A client is a position in this log
//! (see [`crate::broadcast`]): sending to it means sending what lies between its position and the
//! end. The same log is the replay that a reconnecting browser's `Last-Event-ID` asks for (§9.2.4
//! leaves what an id means to the server: here it names one entry of this log).
//!
//! Pure data: no sockets and no clock. The caller passes the time in, so tests choose it.

use crate::event;
use crate::http::digits;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

/// The log keeps at most this many events: a reconnecting client can resume from any of them.
pub const LOG_EVENTS: usize = 1000;

/// ...and at most this many bytes of frames, so a run of large publishes (64 KiB each at most)
/// cannot hold more than this in memory. Whichever limit is reached first trims the oldest event.
pub const LOG_BYTES: usize = 8 << 20;

/// One framed event, shared by the log and every write that sends it: framed once, never copied.
pub type Frame = Arc<[u8]>;

/// An event id in the form Redis Streams use: `<milliseconds>-<sequence>`, such as
/// `1795262400000-0`. The clock at append time, then a counter within that millisecond.
///
/// Why not a plain counter from 1: after a restart it would start again at 1, and a browser
/// coming back with `Last-Event-ID: 40` would be told "nothing new since 40" by a server whose
/// events 1 to 40 are not the ones it saw. With the clock in front, an id from an earlier run
/// names no entry of this run's log, and gets the `gap` notice instead (see [`EventLog::start`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventId {
    // The field order is the comparison order (`derive(Ord)`): milliseconds first, then the
    // sequence. Ids compare as two numbers, never as text ("9-0" comes before "10-0").
    pub ms: u64,
    pub seq: u64,
}

impl EventId {
    /// The id after `last` at clock `now_ms`: a new millisecond starts at sequence 0; within the
    /// same millisecond, or if the clock stepped back, the sequence counts on. Never goes backwards.
    pub fn next(last: Option<EventId>, now_ms: u64) -> EventId {
        match last {
            Some(last) if now_ms <= last.ms => EventId {
                ms: last.ms,
                seq: last.seq + 1,
            },
            _ => EventId { ms: now_ms, seq: 0 },
        }
    }

    /// Reads `<digits>-<digits>`; `None` for anything else (`42`, `+1-0`, `1-2-3`, `abc`).
    pub fn parse(text: &str) -> Option<EventId> {
        let (ms, seq) = text.split_once('-')?;
        Some(EventId {
            ms: digits(ms)?,
            seq: digits(seq)?,
        })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// What a new stream's `Last-Event-ID` header asks for (§9.2.4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resume {
    /// No header, or an empty one: a new stream, with nothing to replay.
    New,
    /// An id in our form: replay what came after it, if the log still holds it.
    After(EventId),
    /// Anything else (`42`, `abc`, a number too big): not an id of ours. Refusing it would stop a
    /// browser for good, and starting afresh would lose events silently; so the client gets a
    /// `gap` notice, then every event still kept.
    Unreadable,
    /// Redis mode only: the caller has already sent this client every event of the shared log up
    /// to and including this id (see [`crate::redis_log`]). It starts at the first event after it,
    /// even one that reaches this log later, so nothing is sent twice.
    Through(EventId),
}

impl Resume {
    pub fn from_header(value: Option<&str>) -> Resume {
        match value {
            None | Some("") => Resume::New,
            Some(id) => EventId::parse(id).map_or(Resume::Unreadable, Resume::After),
        }
    }
}

/// Where a new client's stream starts: its first position, the `gap` notice it gets first if
/// events are missing, and a note for the server log.
#[derive(Debug, PartialEq)]
pub struct Start {
    pub position: u64,
    pub gap: Option<String>,
    pub note: String,
}

pub struct EventLog {
    /// The kept events, oldest first.
    entries: VecDeque<(EventId, Frame)>,
    /// The position of `entries[0]`. Positions count every event appended in this run, so a
    /// client's position stays the same event while old ones are trimmed off the front.
    first: u64,
    /// The bytes of all kept frames.
    bytes: usize,
    /// The newest id given, kept or not: the next one must be larger.
    last: Option<EventId>,
    /// The newest event trimmed off the front: a browser that saw it has missed nothing kept.
    trimmed: Option<EventId>,
}

impl Default for EventLog {
    fn default() -> EventLog {
        EventLog::new()
    }
}

impl EventLog {
    pub fn new() -> EventLog {
        EventLog {
            entries: VecDeque::new(),
            first: 0,
            bytes: 0,
            last: None,
            trimmed: None,
        }
    }

    /// Gives an event the next id, frames it once and keeps it; trims the oldest events past
    /// [`LOG_EVENTS`] or [`LOG_BYTES`]. Returns the id.
    pub fn append(&mut self, now_ms: u64, event_type: Option<&str>, data: &str) -> EventId {
        let id = EventId::next(self.last, now_ms);
        self.append_with_id(id, event_type, data);
        id
    }

    /// Keeps an event under an id given elsewhere (Redis's, when this log mirrors the shared
    /// one). Ids must increase: one not after the newest is refused (`false`) and not kept.
    pub fn append_with_id(&mut self, id: EventId, event_type: Option<&str>, data: &str) -> bool {
        if self.last.is_some_and(|last| id <= last) {
            return false;
        }
        self.last = Some(id);
        let frame = Frame::from(event::frame(Some(&id.to_string()), event_type, data).into_bytes());
        self.bytes += frame.len();
        self.entries.push_back((id, frame));
        while self.entries.len() > LOG_EVENTS || self.bytes > LOG_BYTES {
            let Some((id, frame)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= frame.len();
            self.first += 1;
            self.trimmed = Some(id);
        }
        true
    }

    /// The newest id kept or trimmed.
    pub fn last(&self) -> Option<EventId> {
        self.last
    }

    /// The position of the first kept event with an id after `id`; the end if there is none.
    pub fn position_after(&self, id: EventId) -> u64 {
        let before = self.entries.iter().take_while(|(e, _)| *e <= id).count();
        self.first + before as u64
    }

    /// Forgets every event, for a shared log that lost its history (Redis restarted without
    /// persistence): ids may start lower again. Positions go on counting, so no client's position
    /// points into the events that come next.
    pub fn restart(&mut self) {
        self.first = self.end();
        self.entries.clear();
        self.bytes = 0;
        self.last = None;
        self.trimmed = None;
    }

    /// The position of the oldest kept event: a client whose position is lower has fallen off.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The position the next event will get: a client here has been sent everything.
    pub fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Adds the frames from position `from` up to (not including) `to` to `out`. `from` must not
    /// be below [`first`](Self::first).
    pub fn frames(&self, from: u64, to: u64, out: &mut impl Extend<Frame>) {
        let skip = from.saturating_sub(self.first) as usize;
        let take = to.min(self.end()).saturating_sub(from) as usize;
        out.extend(
            self.entries
                .iter()
                .skip(skip)
                .take(take)
                .map(|(_, f)| f.clone()),
        );
    }

    /// Where a stream starts (§9.2.4 leaves the meaning of `Last-Event-ID` to the server). Ours:
    /// - no id: at the end, live events only;
    /// - an id this log holds (or the newest one trimmed): right after it, so the browser gets
    ///   exactly what it missed, in order;
    /// - anything else (an id trimmed too long ago, one from an earlier run of the server, one
    ///   from the future, or not an id at all): at the oldest kept event, after an `event: gap`
    ///   that says so. Nothing is lost silently.
    ///
    /// In Redis mode the replay comes from the shared stream instead, and the client starts here
    /// after the last id it was sent ([`Resume::Through`]).
    pub fn start(&self, resume: Resume) -> Start {
        let asked = match resume {
            Resume::New => {
                return Start {
                    position: self.end(),
                    gap: None,
                    note: String::from("new stream"),
                };
            }
            Resume::After(id) => Some(id),
            Resume::Unreadable => None,
            Resume::Through(id) => {
                return Start {
                    position: self.position_after(id),
                    gap: None,
                    note: format!("replayed from Redis through {id}"),
                };
            }
        };
        let shown = asked.map_or(String::from("not an id of ours"), |id| id.to_string());
        let mut note = format!("Last-Event-ID {shown} -> ");
        // A binary search would do, since ids increase; 1,000 comparisons cost microseconds.
        let found = asked.and_then(|asked| {
            if Some(asked) == self.trimmed {
                return Some(self.first);
            }
            let i = self.entries.iter().position(|(id, _)| *id == asked)?;
            Some(self.first + i as u64 + 1)
        });
        let mut gap = None;
        let position = found.unwrap_or_else(|| {
            let oldest = self.entries.front().map(|(id, _)| *id);
            gap = Some(gap_notice(asked, oldest));
            note += "gap, ";
            self.first
        });
        let replay = self.entries.range((position - self.first) as usize..);
        note += &match (replay.clone().next(), replay.last()) {
            (Some((first, _)), Some((last, _))) => format!("replaying {first}..{last}"),
            _ => String::from("nothing to replay"),
        };
        Start {
            position,
            gap,
            note,
        }
    }
}

/// The `gap` notice: the id a client asked to resume after (`null` if it was not an id of ours)
/// and the oldest event still kept, from which it resumes (`null` if none is kept).
pub fn gap_notice(asked: Option<EventId>, oldest: Option<EventId>) -> String {
    let quote = |id: Option<EventId>| id.map_or(String::from("null"), |id| format!("\"{id}\""));
    // No `id:` line: this notice is for one client, and an id here would move its last event ID
    // past the events still to be replayed.
    let data = format!(
        "{{\"last_event_id\":{},\"resume_from\":{}}}",
        quote(asked),
        quote(oldest)
    );
    event::frame(None, Some("gap"), &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> EventId {
        EventId { ms, seq }
    }

    /// A log of `n` events `e0`, `e1`, ..., one per millisecond from clock `at`.
    fn log_of(n: u64, at: u64) -> EventLog {
        let mut log = EventLog::new();
        for i in 0..n {
            log.append(at + i, None, &format!("e{i}"));
        }
        log
    }

    fn texts(log: &EventLog, from: u64) -> Vec<String> {
        let mut frames = Vec::new();
        log.frames(from, log.end(), &mut frames);
        frames
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }

    #[test]
    fn ids_are_the_clock_then_a_sequence_within_the_millisecond() {
        assert_eq!(EventId::next(None, 500), id(500, 0));
        assert_eq!(EventId::next(Some(id(500, 0)), 500), id(500, 1));
        assert_eq!(EventId::next(Some(id(500, 1)), 501), id(501, 0));
    }

    #[test]
    fn ids_never_go_backwards_when_the_clock_does() {
        assert_eq!(EventId::next(Some(id(500, 3)), 400), id(500, 4));
    }

    #[test]
    fn ids_compare_as_numbers_not_text() {
        assert!(id(9, 0) < id(10, 0));
        assert!(id(10, 9) < id(10, 10));
        assert!(EventId::parse("9-0") < EventId::parse("10-0"));
    }

    #[test]
    fn ids_are_written_and_read_as_ms_dash_seq() {
        assert_eq!(id(1795262400000, 7).to_string(), "1795262400000-7");
        assert_eq!(
            EventId::parse("1795262400000-7"),
            Some(id(1795262400000, 7))
        );
        for bad in [
            "", "42", "-", "1-", "-1", "+1-0", "1-+0", "1-2-3", " 1-0", "1-0 ", "a-b",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(EventId::parse("18446744073709551616-0"), None, "too big");
    }

    #[test]
    fn last_event_id_header() {
        assert_eq!(Resume::from_header(None), Resume::New);
        assert_eq!(Resume::from_header(Some("")), Resume::New);
        assert_eq!(Resume::from_header(Some("5-1")), Resume::After(id(5, 1)));
        assert_eq!(Resume::from_header(Some("42")), Resume::Unreadable);
    }

    #[test]
    fn an_event_is_framed_once_with_its_id() {
        let mut log = EventLog::new();
        assert_eq!(log.append(1000, Some("publish"), "hi"), id(1000, 0));
        assert_eq!(texts(&log, 0), ["id: 1000-0\nevent: publish\ndata: hi\n\n"]);
    }

    #[test]
    fn a_new_stream_starts_at_the_end() {
        let log = log_of(3, 1000);
        let start = log.start(Resume::New);
        assert_eq!((start.position, start.gap), (3, None));
    }

    #[test]
    fn a_known_id_resumes_right_after_it() {
        let log = log_of(5, 1000);
        let start = log.start(Resume::After(id(1002, 0)));
        assert_eq!(start.position, 3);
        assert_eq!(start.gap, None);
        assert_eq!(
            start.note,
            "Last-Event-ID 1002-0 -> replaying 1003-0..1004-0"
        );
        assert_eq!(
            texts(&log, start.position),
            ["id: 1003-0\ndata: e3\n\n", "id: 1004-0\ndata: e4\n\n"]
        );
    }

    #[test]
    fn the_newest_id_resumes_with_nothing_to_replay() {
        let log = log_of(2, 1000);
        let start = log.start(Resume::After(id(1001, 0)));
        assert_eq!((start.position, start.gap), (2, None));
        assert_eq!(start.note, "Last-Event-ID 1001-0 -> nothing to replay");
    }

    #[test]
    fn the_log_keeps_the_last_1000_events() {
        let log = log_of(1005, 1000);
        assert_eq!((log.first(), log.end()), (5, 1005));
        assert_eq!(texts(&log, 5)[0], "id: 1005-0\ndata: e5\n\n");
    }

    #[test]
    fn the_log_keeps_at_most_8_mib() {
        let mut log = EventLog::new();
        let big = "x".repeat(64 * 1024);
        for i in 0..200 {
            log.append(1000 + i, None, &big);
        }
        let frame_len = "id: 1000-0\ndata: \n\n".len() + big.len();
        assert_eq!(log.end() - log.first(), (LOG_BYTES / frame_len) as u64);
    }

    #[test]
    fn the_id_just_trimmed_resumes_with_no_gap() {
        // A browser that saw event 4 has missed nothing the log still holds.
        let log = log_of(1005, 1000);
        let start = log.start(Resume::After(id(1004, 0)));
        assert_eq!((start.position, start.gap), (5, None));
    }

    #[test]
    fn an_id_trimmed_too_long_ago_gets_a_gap_then_everything_kept() {
        let log = log_of(1005, 1000);
        let start = log.start(Resume::After(id(1003, 0)));
        assert_eq!(start.position, 5);
        assert_eq!(
            start.gap.as_deref(),
            Some("event: gap\ndata: {\"last_event_id\":\"1003-0\",\"resume_from\":\"1005-0\"}\n\n")
        );
        assert_eq!(
            start.note,
            "Last-Event-ID 1003-0 -> gap, replaying 1005-0..2004-0"
        );
    }

    #[test]
    fn an_id_from_the_future_gets_a_gap() {
        let log = log_of(2, 1000);
        let start = log.start(Resume::After(id(9999, 0)));
        assert_eq!(start.position, 0);
        assert!(start.gap.is_some());
    }

    #[test]
    fn an_id_between_two_of_ours_is_not_ours() {
        // 1000-5 sorts between 1000-0 and 1001-0, but was never given: it cannot say what was seen.
        let log = log_of(2, 1000);
        let start = log.start(Resume::After(id(1000, 5)));
        assert_eq!(start.position, 0);
        assert!(start.gap.is_some());
    }

    #[test]
    fn an_id_from_an_earlier_run_never_replays() {
        // The first run, up to clock 1002; the browser saw its last event.
        let before = log_of(3, 1000);
        let seen = id(1002, 0);
        assert_eq!(before.start(Resume::After(seen)).gap, None);
        // The server restarts: a new log, later on the clock. Its own ids start afresh, and the
        // old id names none of them: a gap, then everything kept, never a silent skip.
        let after = log_of(5, 2000);
        let start = after.start(Resume::After(seen));
        assert_eq!(start.position, 0);
        assert_eq!(
            start.gap.as_deref(),
            Some("event: gap\ndata: {\"last_event_id\":\"1002-0\",\"resume_from\":\"2000-0\"}\n\n")
        );
    }

    #[test]
    fn an_unreadable_id_gets_a_gap_with_null() {
        let log = log_of(1, 1000);
        let start = log.start(Resume::Unreadable);
        assert_eq!(
            start.gap.as_deref(),
            Some("event: gap\ndata: {\"last_event_id\":null,\"resume_from\":\"1000-0\"}\n\n")
        );
        assert_eq!(
            start.note,
            "Last-Event-ID not an id of ours -> gap, replaying 1000-0..1000-0"
        );
    }

    #[test]
    fn an_empty_log_resumes_from_null() {
        let start = EventLog::new().start(Resume::After(id(5, 0)));
        assert_eq!(
            start.gap.as_deref(),
            Some("event: gap\ndata: {\"last_event_id\":\"5-0\",\"resume_from\":null}\n\n")
        );
    }

    #[test]
    fn an_id_given_elsewhere_is_kept_only_if_it_is_newer() {
        let mut log = EventLog::new();
        assert!(log.append_with_id(id(7, 1), Some("publish"), "a"));
        assert!(!log.append_with_id(id(7, 1), None, "again"), "not twice");
        assert!(!log.append_with_id(id(7, 0), None, "older"));
        assert_eq!(texts(&log, 0), ["id: 7-1\nevent: publish\ndata: a\n\n"]);
    }

    #[test]
    fn through_an_id_starts_after_it_with_no_gap() {
        let log = log_of(3, 1000);
        let start = log.start(Resume::Through(id(1000, 0)));
        assert_eq!((start.position, start.gap), (1, None));
        // An id this log does not have yet (it lags the shared log): after everything kept.
        assert_eq!(log.start(Resume::Through(id(5000, 0))).position, 3);
        assert_eq!(log.start(Resume::Through(id(1, 0))).position, 0);
    }

    #[test]
    fn a_restart_forgets_the_events_and_takes_lower_ids() {
        let mut log = log_of(3, 1000);
        log.restart();
        assert_eq!((log.first(), log.end(), log.last()), (3, 3, None));
        assert!(log.append_with_id(id(5, 0), None, "new"));
        assert_eq!(texts(&log, 3), ["id: 5-0\ndata: new\n\n"]);
    }

    #[test]
    fn frames_stop_at_the_given_end() {
        let log = log_of(5, 1000);
        let mut frames = Vec::new();
        log.frames(1, 3, &mut frames);
        assert_eq!(frames.len(), 2);
        log.frames(4, 99, &mut frames);
        assert_eq!(frames.len(), 3, "never past the end of the log");
    }
}
