//! A `redis-server` of the test's own, on a free loopback port, with no persistence: started for
//! one test and killed when it ends (or when the test kills it on purpose).

use sse_server::resp::{Connection, Reply};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const REDIS_SERVER: &str = "/usr/bin/redis-server";

pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Starts one, or says the test is skipped and gives `None` when `redis-server` is missing.
    /// In CI (`CI` set), which installs it, a missing one fails the test instead.
    pub fn start(test: &str) -> Option<Redis> {
        if !Path::new(REDIS_SERVER).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{REDIS_SERVER} is missing; .ci/run should have installed it"
            );
            // Straight to stderr: the test harness would hide an eprintln! from a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: SKIPPED, no {REDIS_SERVER} (apt-get install redis-server)"
            );
            return None;
        }
        // A port the kernel just handed out and we let go of: free, unless another program takes
        // it in the next few milliseconds.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("sse-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a folder for redis-server");
        let mut redis = Redis {
            child: None,
            port,
            dir,
        };
        redis.restart();
        Some(redis)
    }

    /// `redis://127.0.0.1:PORT` without the scheme, as `Config::redis` holds it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A connection of the test's own, as another program writing to the stream would have.
    pub fn connect(&self) -> Connection {
        Connection::open(&self.addr(), Duration::from_secs(5))
            .expect("a connection to redis-server")
    }

    /// Kills it (SIGKILL: no goodbye to its clients beyond the kernel closing the sockets).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it without closing anything (SIGSTOP): commands sent to it go unanswered, as from a
    /// Redis that hangs, until [`wake`](Self::wake).
    pub fn pause(&self) {
        super::process::signal(self.pid(), "-STOP");
    }

    /// Lets a paused one go on (SIGCONT): it runs the commands that waited, in order.
    pub fn wake(&self) {
        super::process::signal(self.pid(), "-CONT");
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server running").id()
    }

    /// Starts it (again) on the same port, empty: nothing was saved. Waits for `PING`.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pong = Connection::open(&self.addr(), Duration::from_secs(1))
                .and_then(|mut redis| redis.command(&["PING"]));
            if matches!(pong, Ok(Reply::Simple(ref s)) if s == "PONG") {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server exited ({status}) before answering PING");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server never answered PING"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
