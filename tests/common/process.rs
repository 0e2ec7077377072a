//! Processes a test starts: the server binary, launched until it says where it listens; killed
//! when the test ends, passed or failed; and stopped and
//! continued the way Ctrl-Z and then fg do it in a terminal.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Sends each line a reader yields into a channel, so the test can wait on it with a timeout.
pub fn lines_of(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

/// Starts the server (`command` runs it with PORT=0 and TICK_MS=50 unless it sets its own);
/// returns it, its address, and its log lines.
pub fn launch(mut command: Command) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    for (name, value) in [("TICK_MS", "50"), ("PORT", "0")] {
        if !command.get_envs().any(|(set, _)| set == name) {
            command.env(name, value);
        }
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let first = stdout
        .recv_timeout(Duration::from_secs(5))
        .expect("a first line");
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{first}"));
    assert!(addr.starts_with("127.0.0.1:"), "{first}");
    (child, addr.parse().unwrap(), stderr)
}

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
