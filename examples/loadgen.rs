//! A load generator: N stream clients, K publishes, and what it cost the server.
//!
//! ```sh
//! cargo run --release --example loadgen -- --clients 10000
//! cargo run --release --example loadgen -- --clients 10000 --rate 100 --events 500
//! cargo run --release --example loadgen -- --clients 1000 --events 50 --tick-ms 1000
//! cargo run --release --example loadgen -- --clients 500 --addr 127.0.0.1:3000 --pid 12345
//! cargo run --release --example loadgen -- --clients 10000 --rate 5 --events 50 \
//!     --addr 127.0.0.1:8081,127.0.0.1:8082 --pid 1111,2222
//! ```
//!
//! `--addr` may name several servers (on one shared log: README, "Past one process"): the stream
//! clients are spread over them in turn, and every publish goes to the first. `--pid` then lists
//! their pids in the same order: the CPU figure is the sum over all of them, the memory figures
//! are the first server's.
//!
//! Without `--addr` it starts the server itself: this same program run again with `--serve`, so
//! the server is a process of its own whose memory, threads and CPU time can be read from
//! `/proc/<pid>/`. Each publish carries the time it was sent; every client notes when it read
//! the event, on the same clock, so each delivery has its latency. Loopback only; every wait has a
//! time limit and the run ends by itself.
//!
//! Two ways to publish. By default the loop is closed: one publish, wait until every client has
//! it, pause `--interval-ms`, the next. With `--rate N` it is open: the i-th publish is due at
//! i/N seconds and goes out then, whether or not the earlier ones have been answered, as real
//! publishers do. A closed loop hides queueing, since the publisher slows down with the server;
//! an open loop keeps the pace, so a server that falls behind shows it as latency.
//!
//! The last line is a `summary` with every figure as `key=value`, for `grep` and scripts.

use sse_server::Config;
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: loadgen [--clients N] [--events K] [--rate PER_SECOND | --interval-ms MS] [--tick-ms MS] [--readers R] [--addr HOST:PORT[,HOST:PORT...] [--pid PID[,PID...]]]";

/// The most publishes an open loop has waiting for their answer at once.
const MAX_IN_FLIGHT: usize = 64;

/// How long one publish may take, from connecting to the end of its answer.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest an open-loop schedule may run (`--events` / `--rate`).
const MAX_SCHEDULE: Duration = Duration::from_secs(300);

struct Options {
    clients: usize,
    events: usize,
    interval: Duration,
    /// Publishes per second: an open loop. `None`: the closed loop.
    rate: Option<u64>,
    tick_ms: u64,
    readers: usize,
    /// The servers to load, if given: streams go to each in turn, publishes to the first.
    addrs: Vec<SocketAddr>,
    pids: Vec<u32>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve(&args[1..]);
    }
    let options = match parse_options(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
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
        rate: None,
        tick_ms: 1000,
        // One per core, each reading a contiguous share of the clients in connect order.
        readers: thread::available_parallelism().map_or(1, |n| n.get()),
        addrs: Vec::new(),
        pids: Vec::new(),
    };
    let mut interval_given = false;
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
            "--interval-ms" => {
                options.interval = Duration::from_millis(number()?.min(60_000));
                interval_given = true;
            }
            "--rate" => {
                let rate = number()?;
                if !(1..=1000).contains(&rate) {
                    return Err(format!(
                        "--rate {value}: publishes per second, from 1 to 1000"
                    ));
                }
                options.rate = Some(rate);
            }
            "--tick-ms" => options.tick_ms = number()?.max(1),
            "--readers" => options.readers = number()?.clamp(1, 64) as usize,
            "--addr" => {
                options.addrs = value
                    .split(',')
                    .map(|addr| addr.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--addr {value}: not HOST:PORT[,HOST:PORT...]"))?
            }
            "--pid" => {
                options.pids = value
                    .split(',')
                    .map(|pid| pid.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--pid {value}: not PID[,PID...]"))?
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if options.addrs.iter().any(|addr| !addr.ip().is_loopback()) {
        return Err(String::from(
            "--addr must be a loopback address: this tool sends load only to this machine",
        ));
    }
    if let Some(rate) = options.rate {
        if interval_given {
            return Err(String::from(
                "--interval-ms is the closed loop's pause; --rate sets the open loop's pace: give one of them",
            ));
        }
        let schedule = Duration::from_secs_f64(options.events as f64 / rate as f64);
        if schedule > MAX_SCHEDULE {
            return Err(format!(
                "--events {} at --rate {rate} would take {:.0} s; keep it within {} s",
                options.events,
                schedule.as_secs_f64(),
                MAX_SCHEDULE.as_secs()
            ));
        }
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
    /// Where publishes go, and the first place streams go.
    addr: SocketAddr,
    /// Every server the streams are spread over, `addr` first.
    addrs: Vec<SocketAddr>,
    /// The first server's pid, for memory and threads; and all of them, for CPU time.
    pid: Option<u32>,
    pids: Vec<u32>,
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
    if let Some(addr) = options.addrs.first() {
        return Ok(Server {
            child: None,
            addr: *addr,
            addrs: options.addrs.clone(),
            pid: options.pids.first().copied(),
            pids: options.pids.clone(),
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
        addrs: vec![addr],
        pid: Some(pid),
        pids: vec![pid],
    })
}

/// One stream client: its socket and what it has received.
struct Client {
    stream: TcpStream,
    /// Bytes of a frame not yet complete.
    partial: Vec<u8>,
    /// Which `bench` publishes it has read, one bit per sequence number.
    seen: Vec<u64>,
    /// How many different `bench` publishes it has read.
    got: usize,
    /// The server closed the stream, or sent what is not an event stream.
    closed: bool,
}

/// What the readers counted, beyond the latencies.
#[derive(Default)]
struct ReadTotals {
    /// Clients that got every event.
    complete: usize,
    /// `bench` events a client had already had.
    duplicates: usize,
    /// Other events read while measuring: ticks, client counts, a `bench` from another run.
    others: usize,
}

/// How the publishes went.
#[derive(Default)]
struct Publishes {
    /// From just before connecting to having read the status line, one per answered publish.
    answers: Vec<u64>,
    failures: usize,
    first_failure: Option<String>,
    /// Open loop: the latest a publish started after its due time.
    latest_start: Duration,
    /// Open loop: how many publishes came due while [`MAX_IN_FLIGHT`] were unanswered.
    limit_hits: usize,
    most_in_flight: usize,
}

impl Publishes {
    fn fail(&mut self, message: String) {
        self.failures += 1;
        self.first_failure.get_or_insert(message);
    }

    /// Waits for an open loop's publisher, due at `due`, and notes how it went.
    fn collect(
        &mut self,
        due: Instant,
        publisher: JoinHandle<(Instant, Result<Duration, String>)>,
    ) {
        match publisher.join() {
            Ok((began, answer)) => {
                self.latest_start = self.latest_start.max(began.saturating_duration_since(due));
                match answer {
                    Ok(took) => self.answers.push(took.as_nanos() as u64),
                    Err(e) => self.fail(e),
                }
            }
            Err(_) => self.fail(String::from("a publisher thread panicked")),
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    // The server, a process of its own, needs as many: it inherits this limit.
    let need = options.clients as u64 + MAX_IN_FLIGHT as u64 + 64;
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
        match open_stream(server.addrs[i % server.addrs.len()]) {
            Ok(stream) => pending.push(stream),
            Err(_) => failed += 1,
        }
        if pending.len() == 100 || i + 1 == options.clients {
            for stream in pending.drain(..) {
                match read_stream_head(stream, options.events) {
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
    let steal_before = cpu_times();
    let server_cpu_before = servers_cpu_ticks(&server.pids);
    let received: Vec<AtomicUsize> = (0..options.events).map(|_| AtomicUsize::new(0)).collect();
    let published = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let latencies = Mutex::new(Vec::with_capacity(connected * options.events));
    let share = connected.div_ceil(options.readers);
    let (outcome, server_cpu_after, totals) = thread::scope(|scope| {
        let mut readers = Vec::new();
        while !clients.is_empty() {
            let mine: Vec<Client> = clients.drain(..share.min(clients.len())).collect();
            let (received, published, stop, latencies) = (&received, &published, &stop, &latencies);
            readers.push(
                scope.spawn(move || read_events(mine, clock, received, published, stop, latencies)),
            );
        }
        let outcome = match options.rate {
            None => closed_loop(
                options,
                server.addr,
                clock,
                &received,
                &published,
                connected,
            ),
            Some(rate) => {
                let publishes = open_loop(server.addr, options.events, rate, clock, &published);
                wait_for_deliveries(&received, connected * options.events);
                Ok(publishes)
            }
        };
        let server_cpu_after = servers_cpu_ticks(&server.pids);
        stop.store(true, Ordering::Relaxed);
        let mut totals = ReadTotals::default();
        for reader in readers {
            let mine = reader.join().unwrap_or_default();
            totals.complete += mine.complete;
            totals.duplicates += mine.duplicates;
            totals.others += mine.others;
        }
        (outcome, server_cpu_after, totals)
    });
    let mut publishes = outcome?;

    let mut latencies = std::mem::take(&mut *latencies.lock().map_err(|_| "a reader panicked")?);
    latencies.sort_unstable();
    publishes.answers.sort_unstable();
    let (p50, p99, max) = (
        quantile(&latencies, 0.50),
        quantile(&latencies, 0.99),
        quantile(&latencies, 1.0),
    );
    let (publish_p50, publish_p99, publish_max) = (
        quantile(&publishes.answers, 0.50),
        quantile(&publishes.answers, 0.99),
        quantile(&publishes.answers, 1.0),
    );
    let delivered = latencies.len();
    let expected = options.clients * options.events;
    println!(
        "clients that got every event:  {} of {connected} ({} events each)",
        totals.complete, options.events
    );
    println!(
        "delivery latency ({} deliveries): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        latencies.len(),
    );
    println!(
        "deliveries:                    {delivered} of {expected} expected ({} clients x {} events){}",
        options.clients,
        options.events,
        if totals.duplicates > 0 {
            format!(", and {} duplicates not counted", totals.duplicates)
        } else {
            String::new()
        }
    );
    println!(
        "POST /publish answer time ({} answered): p50 {publish_p50:.1} ms, p99 {publish_p99:.1} ms, max {publish_max:.1} ms",
        publishes.answers.len()
    );
    match options.rate {
        None => println!(
            "publishing:                    closed loop: each publish waited for every delivery of the one before, then {} ms",
            options.interval.as_millis()
        ),
        Some(rate) => println!(
            "publishing:                    open loop, {rate} per second, scheduled over {:.2} s; each started at most {:.1} ms after its due time; at most {} in flight",
            options.events as f64 / rate as f64,
            publishes.latest_start.as_secs_f64() * 1e3,
            publishes.most_in_flight
        ),
    }
    if publishes.limit_hits > 0 {
        println!(
            "IN-FLIGHT LIMIT REACHED:       {} publishes came due while {MAX_IN_FLIGHT} were unanswered and waited for one to finish: this run was partly a closed loop",
            publishes.limit_hits
        );
    }
    if let Some(first) = &publishes.first_failure {
        println!(
            "publishes that failed:         {} of {} (first: {first})",
            publishes.failures, options.events
        );
    }
    // On a virtual machine the host may run other guests on "our" cores: that time is "steal".
    if let (Some((steal_before, total_before)), Some((steal, total))) = (steal_before, cpu_times())
        && total > total_before
    {
        println!(
            "cpu stolen by the hypervisor:  {:.1}% while measuring",
            100.0 * (steal - steal_before) as f64 / (total - total_before) as f64
        );
    }
    // utime + stime, in ticks of 10 ms (USER_HZ is 100 on Linux); the phase runs from the first
    // publish until every delivery was read (or the wait for them gave up).
    let cpu_us_per_delivery = match (server_cpu_before, server_cpu_after) {
        (Some(before), Some(after)) if after >= before => {
            let cpu_us = (after - before) * 10_000;
            let per = (delivered > 0).then(|| cpu_us as f64 / delivered as f64);
            println!(
                "server cpu while publishing:   {:.2} s (utime+stime {before} -> {after} ticks of 10 ms): {} µs per delivery, give or take {}",
                cpu_us as f64 / 1e6,
                per.map_or_else(|| String::from("NA"), |p| format!("{p:.2}")),
                per.map_or_else(
                    || String::from("NA"),
                    |_| format!("{:.2}", 10_000.0 / delivered as f64)
                ),
            );
            println!(
                "other events read meanwhile:   at least {} (ticks, client counts): their cost is in the cpu above too",
                totals.others
            );
            per
        }
        _ => {
            println!("server cpu while publishing:   unknown (give --pid on Linux)");
            None
        }
    };
    let hwm = server_status(server.pid, "VmHWM");
    match (
        hwm,
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
    let or_na = |value: Option<String>| value.unwrap_or_else(|| String::from("NA"));
    println!(
        "summary rate={} clients={} events={} delivered={delivered}/{expected} p50_ms={p50:.2} p99_ms={p99:.2} max_ms={max:.2} publish_p50_ms={publish_p50:.2} publish_p99_ms={publish_p99:.2} publish_max_ms={publish_max:.2} cpu_us_per_delivery={} vmhwm_kb={} publish_failed={} inflight_limit_hits={}",
        options
            .rate
            .map_or_else(|| String::from("closed"), |r| r.to_string()),
        options.clients,
        options.events,
        or_na(cpu_us_per_delivery.map(|c| format!("{c:.2}"))),
        or_na(hwm.map(|h| h.to_string())),
        publishes.failures,
        publishes.limit_hits,
    );
    Ok(())
}

/// The value at quantile `q` of sorted nanoseconds, in milliseconds; NaN when there are none.
fn quantile(sorted: &[u64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).map_or(f64::NAN, |&ns| ns as f64 / 1e6)
}

/// The closed loop: publish, wait (10 s at most) until every client has it, pause, the next.
fn closed_loop(
    options: &Options,
    addr: SocketAddr,
    clock: Instant,
    received: &[AtomicUsize],
    published: &AtomicUsize,
    connected: usize,
) -> Result<Publishes, String> {
    let mut publishes = Publishes::default();
    for (seq, delivered) in received.iter().enumerate() {
        published.store(seq + 1, Ordering::Relaxed);
        let (_, answer) = publish(addr, seq, clock);
        publishes.answers.push(answer?.as_nanos() as u64);
        let deadline = Instant::now() + Duration::from_secs(10);
        while delivered.load(Ordering::Relaxed) < connected && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(options.interval);
    }
    Ok(publishes)
}

/// The open loop: publish `seq` at `seq / rate` seconds from now, each from a thread of its own,
/// whether or not the ones before were answered. When [`MAX_IN_FLIGHT`] are unanswered, the next
/// waits for one of them (and [`Publishes::limit_hits`] says so). Returns once all have ended.
fn open_loop(
    addr: SocketAddr,
    events: usize,
    rate: u64,
    clock: Instant,
    published: &AtomicUsize,
) -> Publishes {
    let mut publishes = Publishes::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    // Joined as they end, oldest first: a thread not joined keeps its stack.
    let mut publishers = VecDeque::new();
    let start = Instant::now();
    for seq in 0..events {
        let due = start + Duration::from_nanos(seq as u64 * 1_000_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        if in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
            publishes.limit_hits += 1;
            // Each publish ends within PUBLISH_TIMEOUT, so this wait does too.
            while in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
                thread::sleep(Duration::from_micros(100));
            }
        }
        let guard = InFlight::enter(&in_flight);
        publishes.most_in_flight = publishes.most_in_flight.max(guard.now);
        published.store(seq + 1, Ordering::Relaxed);
        let spawned = thread::Builder::new()
            .name(format!("publish {seq}"))
            .stack_size(128 * 1024)
            .spawn(move || {
                let _guard = guard;
                publish(addr, seq, clock)
            });
        // A thread that could not start dropped its guard with it.
        match spawned {
            Ok(publisher) => publishers.push_back((due, publisher)),
            Err(e) => publishes.fail(format!("publish {seq}: cannot start a thread: {e}")),
        }
        while publishers.front().is_some_and(|(_, p)| p.is_finished()) {
            if let Some((due, publisher)) = publishers.pop_front() {
                publishes.collect(due, publisher);
            }
        }
    }
    for (due, publisher) in publishers {
        publishes.collect(due, publisher);
    }
    publishes
}

/// One unanswered publish: counted in when made, out when dropped.
struct InFlight {
    count: Arc<AtomicUsize>,
    /// How many were in flight with this one.
    now: usize,
}

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> InFlight {
        let now = count.fetch_add(1, Ordering::AcqRel) + 1;
        InFlight {
            count: Arc::clone(count),
            now,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits until `expected` deliveries were read, or 10 s went by without a new one, or 2 minutes.
fn wait_for_deliveries(received: &[AtomicUsize], expected: usize) {
    let give_up = Instant::now() + Duration::from_secs(120);
    let (mut last, mut last_change) = (usize::MAX, Instant::now());
    loop {
        let total: usize = received.iter().map(|r| r.load(Ordering::Relaxed)).sum();
        let now = Instant::now();
        if total >= expected || now >= give_up {
            return;
        }
        if total != last {
            (last, last_change) = (total, now);
        } else if now - last_change >= Duration::from_secs(10) {
            return;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn open_stream(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    // `Host` names the address connected to: the server answers only to the hosts it is reached by.
    let request =
        format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    Ok(stream)
}

fn read_stream_head(mut stream: TcpStream, events: usize) -> io::Result<Client> {
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
        seen: vec![0; events.div_ceil(64)],
        got: 0,
        closed: false,
    })
}

/// Polls `clients` until told to stop (or for 10 minutes at most); returns what it counted.
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
) -> ReadTotals {
    let mut mine = Vec::with_capacity(clients.len() * received.len());
    let mut totals = ReadTotals::default();
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
            let read = read_available(client, &mut buf, clock, received, &mut mine, &mut totals);
            if read {
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
    totals.complete = clients.iter().filter(|c| c.got == received.len()).count();
    totals
}

/// How many clients in a row with nothing to read end a sweep.
const MISSES: usize = 8;

/// How long a reader sleeps between sweeps; a latency is overstated by at most about this much.
const PAUSE: Duration = Duration::from_micros(200);

/// The longest frame a client keeps waiting for the end of; the server's are at most 64 KiB.
const MAX_FRAME: usize = 1024 * 1024;

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
    take_frames(&mut client.partial, |_| {});
    if client.partial.len() > MAX_FRAME {
        return Err(io::Error::other("a frame without an end"));
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
    totals: &mut ReadTotals,
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
    let Client {
        partial, seen, got, ..
    } = client;
    take_frames(partial, |frame| match frame_data(frame) {
        Data::None => {}
        Data::Bench(seq, sent_at) if seq < received.len() => {
            let (word, bit) = (seq / 64, 1u64 << (seq % 64));
            if seen[word] & bit != 0 {
                totals.duplicates += 1;
                return;
            }
            seen[word] |= bit;
            *got += 1;
            latencies.push(now.saturating_sub(sent_at));
            received[seq].fetch_add(1, Ordering::Relaxed);
        }
        Data::Bench(..) | Data::Other => totals.others += 1,
    });
    if client.partial.len() > MAX_FRAME {
        client.closed = true;
    }
    true
}

/// Hands each complete frame at the front of `partial` to `each`, and drops it from there.
///
/// A frame ends at a blank line (§9.2.5); lines end in `\n`, with or without a `\r` before it.
fn take_frames(partial: &mut Vec<u8>, mut each: impl FnMut(&[u8])) {
    let (mut frame_start, mut line_start) = (0, 0);
    while let Some(newline) = partial[line_start..].iter().position(|&b| b == b'\n') {
        let line_end = line_start + newline;
        let line = &partial[line_start..line_end];
        if line.is_empty() || line == b"\r" {
            each(&partial[frame_start..line_start]);
            frame_start = line_end + 1;
        }
        line_start = line_end + 1;
    }
    partial.drain(..frame_start);
}

/// What a frame's `data:` lines hold.
enum Data {
    /// No data: a comment such as `: heartbeat`, or only `retry:`.
    None,
    /// `data: bench SEQ SENT_AT`, whatever the frame's `id:` and `event:` lines say.
    Bench(usize, u64),
    /// Any other data: a tick, a client count.
    Other,
}

fn frame_data(frame: &[u8]) -> Data {
    let mut data = Data::None;
    for line in frame.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // §9.2.6: the field name, then a colon and one optional space before the value.
        let Some(value) = line.strip_prefix(b"data:") else {
            continue;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match bench_data(value) {
            Some((seq, sent_at)) => return Data::Bench(seq, sent_at),
            None => data = Data::Other,
        }
    }
    data
}

/// `(seq, sent_at)` from `bench SEQ SENT_AT`.
fn bench_data(value: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(value).ok()?.strip_prefix("bench ")?;
    let (seq, sent_at) = text.split_once(' ')?;
    Some((seq.parse().ok()?, sent_at.parse().ok()?))
}

/// Publishes `bench SEQ SENT_AT`, SENT_AT being now on `clock`. Returns when it began (just before
/// connecting) and how long the status line took to arrive.
fn publish(addr: SocketAddr, seq: usize, clock: Instant) -> (Instant, Result<Duration, String>) {
    let began = Instant::now();
    let body = format!("bench {seq} {}", began.duration_since(clock).as_nanos());
    let answer = post(addr, &body, began).map_err(|e| format!("publish {seq}: {e}"));
    (began, answer)
}

/// `POST /publish` with `body`; any `2xx` will do. Reads the whole answer, within
/// [`PUBLISH_TIMEOUT`] from `began`, and returns how long its status line took.
fn post(addr: SocketAddr, body: &str, began: Instant) -> Result<Duration, String> {
    let deadline = began + PUBLISH_TIMEOUT;
    let mut stream =
        TcpStream::connect_timeout(&addr, PUBLISH_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let left = deadline.saturating_duration_since(Instant::now());
    stream
        .set_write_timeout(Some(left.max(Duration::from_millis(1))))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending: {e}"))?;

    let mut head = Vec::new();
    let mut buf = [0; 4096];
    let took = loop {
        if head.windows(2).any(|w| w == b"\r\n") {
            break began.elapsed();
        }
        match read_until(&mut stream, &mut buf, deadline)? {
            0 => return Err(String::from("closed before a status line")),
            n => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return Err(String::from("no status line in the first 16 KiB"));
        }
    };
    let status_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok());
    let status = match status {
        Some(status) if (200..300).contains(&status) => status,
        _ => return Err(format!("answered {status_line:?}")),
    };

    // The rest of the answer, read and dropped: up to its Content-Length, or else its close.
    let head_end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 16 * 1024 {
            return Err(String::from("response head longer than 16 KiB"));
        }
        match read_until(&mut stream, &mut buf, deadline)? {
            0 => return Err(String::from("closed inside the response head")),
            n => head.extend_from_slice(&buf[..n]),
        }
    };
    let content_length = String::from_utf8_lossy(&head[..head_end])
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<u64>().ok());
    let mut body_read = (head.len() - head_end) as u64;
    let wanted = match (status, content_length) {
        (204, _) => 0,
        (_, Some(length)) => length,
        (_, None) => u64::MAX,
    };
    // A failure from here on does not undo the publish: the server said yes already.
    while body_read < wanted && body_read < 16 * 1024 * 1024 {
        match read_until(&mut stream, &mut buf, deadline) {
            Ok(0) | Err(_) => break,
            Ok(n) => body_read += n as u64,
        }
    }
    Ok(took)
}

/// One `read`, given what is left of the time until `deadline`.
fn read_until(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<usize, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no complete answer within {} s",
                PUBLISH_TIMEOUT.as_secs()
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
    }
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

/// The servers' CPU time so far, summed: `None` if any is unknown (or no pid is known).
fn servers_cpu_ticks(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| server_cpu_ticks(Some(*pid))).sum()
}

/// The server's CPU time so far, utime + stime in ticks (10 ms each), from `/proc/<pid>/stat`.
fn server_cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Field 2, the command name, is in parentheses and may hold spaces: count from after it.
    // What follows starts with field 3 (state), so fields 14 and 15 are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
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
