//! The ticker: the thread that feeds the event log on a clock.
//!
//! Every tick it appends an event of the default type (so `onmessage` fires, §9.2.6 "event")
//! with the server time as JSON: `{"time":"2026-11-21T12:00:00Z","message":"Server Time: 12:00:00 UTC"}`.
//! Between ticks it has the client count announced when it changed or a client joined, and a
//! comment sent as heartbeat when nothing else was sent for a while (§9.2.7 "Authoring notes": a
//! comment line every 15 seconds or so keeps proxies from dropping an idle connection).

use crate::broadcast::ClientList;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
            // Keep to the schedule; after a long stall (a suspended laptop) skip the missed ticks.
            next_tick = (next_tick + tick).max(now);
        }
        clients.heartbeat_if_idle(heartbeat);
        thread::sleep(
            next_tick
                .saturating_duration_since(Instant::now())
                .min(COUNT_EVERY),
        );
    }
}

/// The data of one tick: the time as RFC 3339, and as the `message` text that Express tutorials
/// send, so their pages (`JSON.parse(event.data).message`) work here unchanged.
pub fn tick_data(time: SystemTime) -> String {
    let stamp = rfc3339(time);
    let clock = stamp.split(['T', 'Z']).nth(1).unwrap_or_default();
    format!("{{\"time\":\"{stamp}\",\"message\":\"Server Time: {clock} UTC\"}}")
}

/// Formats a time as RFC 3339 in UTC, to the second: `2026-11-21T12:00:00Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar: Howard
/// Hinnant's `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>). It counts
/// in 400-year eras of 146,097 days, with years starting on March 1 so the leap day falls last.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> String {
        rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn a_tick_carries_the_time_twice() {
        assert_eq!(
            tick_data(UNIX_EPOCH + Duration::from_secs(1_795_262_400)),
            r#"{"time":"2026-11-21T12:00:00Z","message":"Server Time: 12:00:00 UTC"}"#
        );
    }

    #[test]
    fn epoch() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn a_known_noon() {
        assert_eq!(at(1_795_262_400), "2026-11-21T12:00:00Z");
    }

    #[test]
    fn leap_day_and_century() {
        assert_eq!(at(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
