//! A load generator: N stream clients, K publishes, and what it cost the server.
//!
//! ```sh
//! cargo run --release --example loadgen -- --clients 10000
//! cargo run --release --example loadgen -- --clients 1000 --events 50 --tick-ms 1000
//! cargo run --release --example loadgen -- --clients 500 --addr 127.0.0.1:3000 --pid 12345
//! ```
//!
//! Without `--addr` it starts the server itself: this same program run again with `--serve`, so
//! the server is a process of its own whose memory and threads can be read from
//! `/proc/<pid>/status`. Each publish carries the time it was sent; every client notes when it read
//! the event, on the same clock, so each delivery has its latency. Loopback only; every wait has a
//! time limit and the run ends by itself.

use sse_server::Config;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

struct Options {
    clients: usize,
    events: usize,
    interval: Duration,
    tick_ms: u64,
    readers: usize,
    addr: Option<SocketAddr>,
    pid: Option<u32>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve(&args[1..]);
    }
    let options = match parse_options(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!(
                "{message}\nusage: loadgen [--clients N] [--events K] [--interval-ms MS] [--tick-ms MS] [--readers R] [--addr HOST:PORT [--pid PID]]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::from(1)
        }
    }
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        clients: 1000,
        events: 20,
        interval: Duration::from_millis(200),
        tick_ms: 1000,
        // As many as the server has writers: one per core, each share in the same order.
        readers: thread::available_parallelism().map_or(1, |n| n.get()),
        addr: None,
        pid: None,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} {value}: not a whole number"))
        };
        match flag.as_str() {
            "--clients" => options.clients = number()?.clamp(1, 60_000) as usize,
            "--events" => options.events = number()?.clamp(1, 10_000) as usize,
            "--interval-ms" => options.interval = Duration::from_millis(number()?.min(60_000)),
            "--tick-ms" => options.tick_ms = number()?.max(1),
            "--readers" => options.readers = number()?.clamp(1, 64) as usize,
            "--addr" => {
                options.addr = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--addr {value}: not HOST:PORT"))?,
                )
            }
            "--pid" => options.pid = Some(number()? as u32),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if options.addr.is_some_and(|addr| !addr.ip().is_loopback()) {
        return Err(String::from(
            "--addr must be a loopback address: this tool sends load only to this machine",
        ));
    }
    Ok(options)
}

/// `loadgen --serve MAX_CLIENTS TICK_MS`: the server, as `cargo run` starts it but on port 0.
fn serve(args: &[String]) -> ExitCode {
    let number =
        |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen: {e}");
            return ExitCode::from(2);
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on http://{addr}"),
        Err(e) => eprintln!("no local address: {e}"),
    }
    let config = Config {
        max_clients: number(0, 10_000) as usize,
        tick: Duration::from_millis(number(1, 1000)),
        ..Config::default()
    };
    sse_server::serve(listener, config)
}

/// The server this run measures; killed when the run ends.
struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    pid: Option<u32>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_server(options: &Options) -> Result<Server, String> {
    if let Some(addr) = options.addr {
        return Ok(Server {
            child: None,
            addr,
            pid: options.pid,
        });
    }
    let log = std::env::temp_dir().join("loadgen-server.log");
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let mut child = Command::new(exe)
        .args([
            "--serve",
            &(options.clients + 10).to_string(),
            &options.tick_ms.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let pid = child.id();
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout from the server")?;
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading the server's address: {e}"))?;
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("unexpected first line from the server: {line:?}"))?;
    println!(
        "server: pid {pid}, {addr}, tick {} ms, log in {}",
        options.tick_ms,
        log.display()
    );
    Ok(Server {
        child: Some(child),
        addr,
        pid: Some(pid),
    })
}

/// One stream client: its socket and what it has received.
struct Client {
    stream: TcpStream,
    /// Bytes of a frame not yet complete.
    partial: Vec<u8>,
    /// How many `bench` publishes it has read.
    got: usize,
    /// The server closed the stream.
    closed: bool,
}

fn run(options: &Options) -> Result<(), String> {
    // The server, a process of its own, needs as many: it inherits this limit.
    let need = options.clients as u64 + 64;
    if let Some(limit) = open_files_limit()
        && limit < need
    {
        return Err(format!(
            "{} clients need about {need} open files, and the limit is {limit}: run `ulimit -n {}` first",
            options.clients,
            need + 1000
        ));
    }
    let server = start_server(options)?;

    // Connect in batches of 100: std listens with a backlog of 128, and a larger burst of
    // connects would have some SYNs dropped (and retried by the kernel a second later).
    let started = Instant::now();
    let mut clients = Vec::with_capacity(options.clients);
    let mut peak_threads = 0;
    let mut failed = 0;
    let mut pending = Vec::new();
    for i in 0..options.clients {
        match open_stream(server.addr) {
            Ok(stream) => pending.push(stream),
            Err(_) => failed += 1,
        }
        if pending.len() == 100 || i + 1 == options.clients {
            for stream in pending.drain(..) {
                match read_stream_head(stream) {
                    Ok(client) => clients.push(client),
                    Err(_) => failed += 1,
                }
            }
            peak_threads = peak_threads.max(server_status(server.pid, "Threads").unwrap_or(0));
        }
    }
    let connect_time = started.elapsed();
    println!(
        "clients connected:             {} of {} in {:.2} s ({failed} failed)",
        clients.len(),
        options.clients,
        connect_time.as_secs_f64()
    );
    // Let the `clients` announcements of the connect phase go by, and read them as a browser
    // would have: the first measured event should not find a backlog waiting for it.
    thread::sleep(Duration::from_millis(500));
    if clients.is_empty() {
        return Err(String::from("no client could connect"));
    }
    let connected = clients.len();
    let mut buf = vec![0; 64 * 1024];
    for client in &mut clients {
        // A stream that already failed stays counted: it will not get every event.
        client.closed = skip_pending(client, &mut buf).is_err();
    }

    // Readers: each polls its share of the sockets (see `read_events`) and notes the latency of
    // every `bench` event it reads. `published` counts the events sent so far.
    let clock = Instant::now();
    let cpu_before = cpu_times();
    let received: Vec<AtomicUsize> = (0..options.events).map(|_| AtomicUsize::new(0)).collect();
    let published = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let latencies = Mutex::new(Vec::with_capacity(connected * options.events));
    let share = connected.div_ceil(options.readers);
    let (outcome, complete) = thread::scope(|scope| {
        let mut readers = Vec::new();
        while !clients.is_empty() {
            let mine: Vec<Client> = clients.drain(..share.min(clients.len())).collect();
            let (received, published, stop, latencies) = (&received, &published, &stop, &latencies);
            readers.push(
                scope.spawn(move || read_events(mine, clock, received, published, stop, latencies)),
            );
        }
        let outcome = (0..options.events).try_for_each(|seq| {
            let sent_at = clock.elapsed().as_nanos();
            published.store(seq + 1, Ordering::Relaxed);
            publish(server.addr, &format!("bench {seq} {sent_at}"))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while received[seq].load(Ordering::Relaxed) < connected && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            thread::sleep(options.interval);
            Ok::<(), String>(())
        });
        stop.store(true, Ordering::Relaxed);
        let complete: usize = readers
            .into_iter()
            .map(|reader| reader.join().unwrap_or(0))
            .sum();
        (outcome, complete)
    });
    outcome?;

    let mut latencies = std::mem::take(&mut *latencies.lock().map_err(|_| "a reader panicked")?);
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |&ns| ns as f64 / 1e6)
    };
    println!(
        "clients that got every event:  {complete} of {connected} ({} events each)",
        options.events
    );
    println!(
        "delivery latency ({} deliveries): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        at(0.50),
        at(0.99),
        latencies.last().map_or(f64::NAN, |&ns| ns as f64 / 1e6)
    );
    // On a virtual machine the host may run other guests on "our" cores: that time is "steal".
    if let (Some((steal_before, total_before)), Some((steal, total))) = (cpu_before, cpu_times())
        && total > total_before
    {
        println!(
            "cpu stolen by the hypervisor:  {:.1}% while measuring",
            100.0 * (steal - steal_before) as f64 / (total - total_before) as f64
        );
    }
    match (
        server_status(server.pid, "VmHWM"),
        server_status(server.pid, "VmRSS"),
        server_status(server.pid, "Threads"),
    ) {
        (Some(hwm), Some(rss), Some(threads)) => println!(
            "server memory:                 peak {:.1} MB (VmHWM), now {:.1} MB; threads now {threads}, most seen {}",
            hwm as f64 / 1024.0,
            rss as f64 / 1024.0,
            peak_threads.max(threads)
        ),
        _ => println!("server memory:                 unknown (give --pid on Linux)"),
    }
    Ok(())
}

fn open_stream(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: loadgen\r\nAccept: text/event-stream\r\n\r\n")?;
    Ok(stream)
}

fn read_stream_head(mut stream: TcpStream) -> io::Result<Client> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() > 8192 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 200 ") {
        return Err(io::Error::other("not 200"));
    }
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    Ok(Client {
        stream,
        partial: head.split_off(end),
        got: 0,
        closed: false,
    })
}

/// Polls `clients` until told to stop (or for 10 minutes at most); returns how many got every event.
///
/// std has no `epoll`, so a reader asks each socket in turn, and every "nothing yet" is a system
/// call that takes CPU from the server on these same cores. A reader therefore asks in the order
/// its clients connected, which is the order the server writes them in, and ends a sweep after
/// [`MISSES`] sockets in a row had nothing: the server has not got that far yet. Then it sleeps
/// [`PAUSE`] and starts again from the first client still waiting. Were the server to write in
/// another order, every event would still be read, only later, so the latencies would come out
/// worse, not better.
fn read_events(
    mut clients: Vec<Client>,
    clock: Instant,
    received: &[AtomicUsize],
    published: &AtomicUsize,
    stop: &AtomicBool,
    latencies: &Mutex<Vec<u64>>,
) -> usize {
    let mut mine = Vec::with_capacity(clients.len() * received.len());
    let mut buf = vec![0; 64 * 1024];
    let give_up = Instant::now() + Duration::from_secs(600);
    // Clients before `first` have read every event published so far: no need to look at them.
    let (mut first, mut seen) = (0, 0);
    while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
        let published = published.load(Ordering::Relaxed);
        if published != seen {
            (first, seen) = (0, published);
        }
        let waiting = |c: &Client| c.got < published && !c.closed;
        while first < clients.len() && !waiting(&clients[first]) {
            first += 1;
        }
        let mut misses = 0;
        for client in clients[first..].iter_mut().filter(|c| waiting(c)) {
            if read_available(client, &mut buf, clock, received, &mut mine) {
                misses = 0;
            } else {
                misses += 1;
                if misses == MISSES {
                    break;
                }
            }
        }
        thread::sleep(PAUSE);
    }
    if let Ok(mut all) = latencies.lock() {
        all.extend(mine);
    }
    clients.iter().filter(|c| c.got == received.len()).count()
}

/// How many clients in a row with nothing to read end a sweep.
const MISSES: usize = 8;

/// How long a reader sleeps between sweeps; a latency is overstated by at most about this much.
const PAUSE: Duration = Duration::from_micros(200);

/// Reads and drops the frames `client` was sent so far; from here on its socket is non-blocking.
fn skip_pending(client: &mut Client, buf: &mut [u8]) -> io::Result<()> {
    client.stream.set_nonblocking(true)?;
    loop {
        match client.stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => client.partial.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if let Some(end) = client.partial.windows(2).rposition(|w| w == b"\n\n") {
        client.partial.drain(..end + 2);
    }
    Ok(())
}

/// Reads what `client` has, notes the latency of each `bench` event in it; false if it had nothing.
fn read_available(
    client: &mut Client,
    buf: &mut [u8],
    clock: Instant,
    received: &[AtomicUsize],
    latencies: &mut Vec<u64>,
) -> bool {
    let n = match client.stream.read(buf) {
        Ok(0) => {
            client.closed = true;
            return false;
        }
        Ok(n) => n,
        Err(_) => return false,
    };
    let now = clock.elapsed().as_nanos() as u64;
    client.partial.extend_from_slice(&buf[..n]);
    while let Some(end) = client.partial.windows(2).position(|w| w == b"\n\n") {
        let frame: Vec<u8> = client.partial.drain(..end + 2).collect();
        if let Some((seq, sent_at)) = bench_event(&frame) {
            latencies.push(now.saturating_sub(sent_at));
            client.got += 1;
            if let Some(count) = received.get(seq) {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    true
}

/// `(seq, sent_at)` from a frame `id: ..\nevent: publish\ndata: bench SEQ SENT_AT\n\n`.
fn bench_event(frame: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(frame).ok()?;
    let data = text
        .split('\n')
        .find_map(|line| line.strip_prefix("data: bench "))?;
    let (seq, sent_at) = data.split_once(' ')?;
    Some((seq.parse().ok()?, sent_at.parse().ok()?))
}

fn publish(addr: SocketAddr, body: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("publish: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("publish: {e}"))?;
    let mut response = [0; 12];
    stream
        .read_exact(&mut response)
        .map_err(|e| format!("publish: {e}"))?;
    if &response != b"HTTP/1.1 204" {
        return Err(format!(
            "publish answered {:?}",
            String::from_utf8_lossy(&response)
        ));
    }
    Ok(())
}

/// The machine's (steal, total) CPU time so far, in ticks, from the first line of `/proc/stat`.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map_while(|n| n.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    Some((*ticks.get(7)?, ticks.iter().take(8).sum()))
}

/// A number from `/proc/<pid>/status`, such as `VmHWM` (in kB) or `Threads`.
fn server_status(pid: Option<u32>, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status
        .lines()
        .find(|line| line.starts_with(&format!("{field}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
