//! The ticker: the thread that feeds the event log on a clock.
//!
//! Every tick it appends an event of the default type (so `onmessage` fires, §9.2.6 "event")
//! with the server time as JSON (with Redis, it sends it to this server's clients without an id,
//! outside the log instead: see [`run`]):
//! `{"time":"2026-11-21T12:00:00Z","message":"Server Time: 12:00:00 UTC"}`.
//! Between ticks it has the client count announced when it changed or a client joined, and a
//! comment sent as heartbeat when nothing else was sent for a while (§9.2.7 "Authoring notes": a
//! comment line every 15 seconds or so keeps proxies from dropping an idle connection).

use crate::broadcast::ClientList;
use crate::dates::rfc3339;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How often the client count is checked. Announcing every connect and disconnect on its own would
/// cost N x N writes when N clients arrive at once; one announcement per 100 ms costs N. (A new
/// client hears the count at once, in its handshake: see `broadcast`.)
const COUNT_EVERY: Duration = Duration::from_millis(100);

/// Runs forever: ticks every `tick`, heartbeats after `heartbeat` of silence. With a `shared` log
/// (Redis), the ticks stay out of it: every server ticks for its own clients, without an `id:`,
/// so two servers do not put two ticks a second into the one log.
pub fn run(clients: &ClientList, tick: Duration, heartbeat: Duration, shared: bool) -> ! {
    let mut next_tick = Instant::now() + tick;
    loop {
        // A client that joined was told the count in its handshake; the others hear it here.
        clients.announce_count();
        let now = Instant::now();
        if now >= next_tick {
            if shared {
                clients.tick(&tick_data(SystemTime::now()));
            } else {
                clients.append(None, &tick_data(SystemTime::now()));
            }
            next_tick = next_after(next_tick, tick, now);
        }
        clients.heartbeat_if_idle(heartbeat);
        thread::sleep(
            next_tick
                .saturating_duration_since(Instant::now())
                .min(COUNT_EVERY),
        );
    }
}

/// When the tick after the one due at `due` is, if it ran at `now`. It keeps to the schedule (a
/// tick that woke 3 ms late does not push every later tick 3 ms back), and after a stall (a
/// suspended laptop, a `kill -STOP`) it skips the ticks missed: the next one is the first on the
/// schedule still ahead of `now`, never one that is already due, which would go out in the same
/// millisecond as this one.
fn next_after(due: Instant, tick: Duration, now: Instant) -> Instant {
    // A tick of zero (possible only for a `Config` built in code) counts as a nanosecond.
    let tick = tick.as_nanos().max(1);
    let missed = now.saturating_duration_since(due).as_nanos() / tick;
    due + Duration::from_nanos(((missed + 1) * tick) as u64)
}

/// The data of one tick: the time as RFC 3339, and as the `message` text that Express tutorials
/// send, so their pages (`JSON.parse(event.data).message`) work here unchanged.
pub fn tick_data(time: SystemTime) -> String {
    let stamp = rfc3339(time);
    let clock = stamp.split(['T', 'Z']).nth(1).unwrap_or_default();
    format!("{{\"time\":\"{stamp}\",\"message\":\"Server Time: {clock} UTC\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn the_next_tick_keeps_the_schedule_and_skips_what_a_stall_missed() {
        let due = Instant::now();
        let tick = Duration::from_millis(1000);
        let ms = Duration::from_millis;
        // On time, or a little late: the next tick is one period after the one due.
        assert_eq!(next_after(due, tick, due), due + ms(1000));
        assert_eq!(next_after(due, tick, due + ms(3)), due + ms(1000));
        // Stalled 5.5 periods: ticks 1 to 5 are gone, and the next is at 6, still ahead.
        assert_eq!(next_after(due, tick, due + ms(5500)), due + ms(6000));
        // Woken exactly when tick 2 was due: this tick stands for it, the next is 3.
        assert_eq!(next_after(due, tick, due + ms(2000)), due + ms(3000));
        // A zero tick (a `Config` built in code) does not divide by zero.
        assert!(next_after(due, Duration::ZERO, due + ms(5)) > due + ms(5));
    }

    #[test]
    fn a_tick_carries_the_time_twice() {
        assert_eq!(
            tick_data(UNIX_EPOCH + Duration::from_secs(1_795_262_400)),
            r#"{"time":"2026-11-21T12:00:00Z","message":"Server Time: 12:00:00 UTC"}"#
        );
    }
}
