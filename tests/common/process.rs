//! Processes a test starts: killed when the test ends, passed or failed, and stopped and
//! continued the way Ctrl-Z and then fg do it in a terminal.

use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

/// A child process that is killed when the test ends, passed or failed.
pub struct KilledOnDrop(pub Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends a signal (`-STOP`, `-CONT`) to process `pid`. After `-STOP` it waits until the kernel
/// says every thread of it is stopped: a signal is on its way when `kill` returns, not yet
/// delivered.
pub fn signal(pid: u32, which: &str) {
    let sent = Command::new("kill")
        .args([which, &pid.to_string()])
        .status();
    assert!(sent.is_ok_and(|s| s.success()), "kill {which} {pid}");
    if which != "-STOP" {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !all_threads_stopped(pid) {
        assert!(Instant::now() < deadline, "process {pid} never stopped");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Stops process `pid`, waits `pause`, and lets it go on.
pub fn stop_and_continue(pid: u32, pause: Duration) {
    signal(pid, "-STOP");
    thread::sleep(pause);
    signal(pid, "-CONT");
}

/// Whether each thread's state, the field after its name in `/proc/PID/task/TID/stat` (the name
/// ends at the last ")"), is `T`, stopped.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads.flatten().all(|thread| {
        let stat = std::fs::read_to_string(thread.path().join("stat")).unwrap_or_default();
        stat.rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('T'))
    })
}
