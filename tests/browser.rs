//! The page in a real browser: Debian's Chromium, headless, driven over the DevTools protocol.
//!
//! `--remote-debugging-pipe` makes Chromium read commands on file descriptor 3 and answer on 4,
//! each message JSON ending in a NUL byte. `sh` maps those onto the child's stdin and stdout, so
//! std's `Command` is all we need. The test reads the rendered DOM, never the page's source.
//!
//! Every run saves screenshots to `target/tmp/` (`screenshot.png`, the page; `lab.png`, the lab after
//! its first experiment); `UPDATE_SCREENSHOT=1 cargo test --test browser` also copies them to
//! `public/`, where the README shows them.

mod common;
use sse_server::Config;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium with one page open, attached over the DevTools protocol.
struct Chromium {
    child: Child,
    commands: ChildStdin,
    replies: Receiver<String>,
    next_id: u64,
    session: String,
    profile: PathBuf,
}

impl Chromium {
    fn open(url: &str) -> Chromium {
        // A profile of its own: two Chromiums on one profile would be one browser.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "chromium-profile-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(CHROMIUM)
            // As root in a container, with no network beyond loopback: no sandbox, no GPU, and none
            // of the background requests that would only fail here.
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .args([
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let commands = child.stdin.take().expect("chromium's command pipe");
        let mut output = child.stdout.take().expect("chromium's reply pipe");
        let (send, replies) = channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0; 65536];
            while let Ok(n @ 1..) = output.read(&mut buf) {
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if send
                        .send(String::from_utf8_lossy(&message[..end]).into_owned())
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        let mut chromium = Chromium {
            child,
            commands,
            replies,
            next_id: 0,
            session: String::new(),
            profile,
        };
        chromium.session = chromium.open_tab(url);
        chromium
    }

    /// Opens another tab on `url`; returns its session, for [`Chromium::switch_to`].
    fn open_tab(&mut self, url: &str) -> String {
        let current = std::mem::take(&mut self.session);
        let target = self.call("Target.createTarget", &format!(r#"{{"url":"{url}"}}"#));
        let target_id = json_string(&target, "targetId").expect("a target id");
        let attached = self.call(
            "Target.attachToTarget",
            &format!(r#"{{"targetId":"{target_id}","flatten":true}}"#),
        );
        self.session = current;
        json_string(&attached, "sessionId").expect("a session id")
    }

    /// Sends the commands that follow to this tab.
    fn switch_to(&mut self, session: &str) {
        self.session = session.to_string();
    }

    /// Sends one command (to the page once attached) and returns its reply, as raw JSON.
    fn call(&mut self, method: &str, params: &str) -> String {
        self.next_id += 1;
        let id = self.next_id;
        let session = match self.session.as_str() {
            "" => String::new(),
            s => format!(r#","sessionId":"{s}""#),
        };
        let message = format!(r#"{{"id":{id},"method":"{method}","params":{params}{session}}}"#);
        self.commands
            .write_all(message.as_bytes())
            .expect("send to chromium");
        self.commands.write_all(b"\0").expect("send to chromium");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .replies
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no reply to {method}"));
            if reply.starts_with(&format!(r#"{{"id":{id},"#)) {
                assert!(!reply.contains(r#""error":"#), "{method} failed: {reply}");
                return reply;
            }
        }
    }

    /// Evaluates JavaScript in the page; the expression must give a string.
    fn eval(&mut self, expression: &str) -> String {
        self.try_eval(expression)
            .unwrap_or_else(|reply| panic!("{expression} failed: {reply}"))
    }

    /// Like `eval`, but a thrown exception comes back as `Err` with the whole reply.
    fn try_eval(&mut self, expression: &str) -> Result<String, String> {
        let params = format!(
            r#"{{"expression":{},"returnByValue":true}}"#,
            json_quote(expression)
        );
        let reply = self.call("Runtime.evaluate", &params);
        match json_string(&reply, "value") {
            Some(value) if !reply.contains("exceptionDetails") => Ok(value),
            _ => Err(reply),
        }
    }

    /// Polls `expression` until `done` accepts its value; fails after 15 s. Until the page has
    /// loaded the expression may throw: that counts as "not yet".
    fn wait_for(&mut self, expression: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let value = self.try_eval(expression);
            if let Ok(value) = &value
                && done(value)
            {
                return value.clone();
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting; {expression} is {value:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the page's top 1100 x 1150 pixels, or with `selector`, of that element.
    fn screenshot(&mut self, path: &Path, selector: Option<&str>) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            r#"{"width":1100,"height":1150,"deviceScaleFactor":1,"mobile":false}"#,
        );
        let params = match selector {
            None => String::from(r#"{"format":"png"}"#),
            Some(selector) => {
                let clip = self.eval(&format!(
                    "(r => JSON.stringify({{x: r.x, y: r.y + scrollY, width: r.width, height: r.height, scale: 1}}))(document.querySelector({}).getBoundingClientRect())",
                    json_quote(selector)
                ));
                format!(r#"{{"format":"png","captureBeyondViewport":true,"clip":{clip}}}"#)
            }
        };
        let reply = self.call("Page.captureScreenshot", &params);
        let png = base64_decode(&json_string(&reply, "data").expect("image data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Whether Chromium is here. Without it a test is skipped, and says so; in CI, which installs
/// Chromium, a missing one is a failure instead.
fn have_chromium(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{CHROMIUM} is missing; .ci/run should have installed it"
    );
    // Written straight to stderr: the test harness would hide an eprintln! from a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "{test}: SKIPPED, no {CHROMIUM} (apt-get install chromium)"
    );
    false
}

#[test]
fn page_shows_the_stream_in_a_real_browser() {
    if !have_chromium("page_shows_the_stream_in_a_real_browser") {
        return;
    }
    let addr = common::start(Config {
        tick: Duration::from_millis(200),
        ..common::config()
    });
    let mut page = Chromium::open(&format!("http://{addr}/"));

    // The EventSource opened, a tick set the time, a `clients` event set the count.
    let shown = page.wait_for(
        "['state', 'time', 'clients'].map(id => document.getElementById(id).textContent).join('|')",
        |v| v.starts_with("OPEN|20") && !v.ends_with("waiting…"),
    );
    let [state, time, clients] = shown.split('|').collect::<Vec<_>>()[..] else {
        panic!("{shown}")
    };
    assert_eq!(state, "OPEN");
    assert_eq!(time.len(), "2026-11-21T12:00:00Z".len(), "{time}");
    assert!(time.ends_with('Z'), "{time}");
    assert_eq!(clients, "1");

    // Publish through the page's own form: a unique token, two lines, and markup that must stay text.
    let token = format!("token-{}-{}", std::process::id(), addr.port());
    let text = format!("{token}\\nsecond line <b id=\"injected\">not bold</b>");
    page.eval(&format!(
        "document.getElementById('text').value = '{}'; document.getElementById('publish').requestSubmit(); 'sent'",
        text.replace('"', "\\\"")
    ));
    let data = page.wait_for(
        "[...document.querySelectorAll('#log .type-publish dd')].map(dd => dd.textContent).join('|')",
        |v| v.contains(&token),
    );
    // type | lastEventId | data, as the page got them.
    let fields: Vec<&str> = data.split('|').collect();
    assert_eq!(fields[0], "publish");
    let id = fields[1];
    assert!(
        sse_server::event_log::EventId::parse(id).is_some(),
        "an id of ours: {id}"
    );
    assert_eq!(
        fields[2],
        format!("{token}\nsecond line <b id=\"injected\">not bold</b>")
    );
    // The wire view shows the frame, one data: line per line of text.
    let wire = page.eval("document.querySelector('#log .type-publish .wire').textContent");
    assert_eq!(
        wire,
        format!(
            "id: {id}\nevent: publish\ndata: {token}\ndata: second line <b id=\"injected\">not bold</b>\n\n"
        )
    );
    // Inserted as text: no element was made from the markup.
    assert_eq!(
        page.eval("String(document.getElementById('injected'))"),
        "null"
    );
    assert_eq!(
        page.eval("document.getElementById('publish-result').textContent"),
        "sent (204)"
    );
    // The polite live region told a screen reader about it.
    assert!(
        page.eval("document.getElementById('announce').textContent")
            .starts_with(&format!("Published: {token}"))
    );

    // A second client arrives: the count on the page follows.
    let mut other = common::EventStream::open(addr, "");
    page.wait_for("document.getElementById('clients').textContent", |v| {
        v == "2"
    });

    // Close and reopen.
    page.eval("document.getElementById('close').click(); 'ok'");
    assert_eq!(
        page.eval("document.getElementById('state').textContent"),
        "CLOSED"
    );
    other.wait_for_count(1);
    page.eval("document.getElementById('reopen').click(); 'ok'");
    page.wait_for("document.getElementById('state').textContent", |v| {
        v == "OPEN"
    });

    // The log keeps at most 100 entries however long the page runs.
    for i in 0..120 {
        common::publish(addr, &format!("filler {i}"));
    }
    page.wait_for(&published("filler 119"), |v| v == "true");
    assert_eq!(
        page.eval("String(document.getElementById('log').children.length)"),
        "100"
    );

    take_screenshot(&mut page, other);

    // An Express tutorial's page code, unchanged: `/sse`, `onmessage`, `JSON.parse(e.data).message`.
    page.eval(
        "window.tutorial = ''; { const es = new EventSource('/sse'); es.onmessage = (e) => { window.tutorial = JSON.parse(e.data).message; es.close(); }; } 'ok'",
    );
    let message = page.wait_for("window.tutorial", |v| !v.is_empty());
    assert!(message.starts_with("Server Time: "), "{message}");
    assert!(message.ends_with(" UTC"), "{message}");
}

/// A screenshot for the README: a publish at the top of the log, the `clients` event of the
/// second client leaving below it, and ticks.
fn take_screenshot(page: &mut Chromium, other: common::EventStream) {
    page.eval("document.getElementById('log').replaceChildren(); 'ok'");
    drop(other);
    page.wait_for(
        "String(document.querySelectorAll('#log .type-clients').length)",
        |v| v == "1",
    );
    let hello = r"Hello from the page!\nEvery open tab gets this,\n  indented line and all.";
    // A tick lands on top of the log every 200 ms: publish until the picture shows the publish
    // still on top once taken.
    let newest = "String(document.querySelector('#log li').classList.contains('type-publish'))";
    for attempt in 0..10 {
        if attempt > 0 {
            page.eval(
                "document.querySelectorAll('#log .type-publish').forEach(li => li.remove()); 'ok'",
            );
        }
        page.eval(&format!("document.getElementById('text').value = '{hello}'; document.getElementById('publish').requestSubmit(); 'ok'"));
        // `hello` is JavaScript source: its `\n`s become the line breaks the log shows.
        page.wait_for(&published(hello), |v| v == "true");
        if page.eval(newest) != "true" {
            continue;
        }
        save_screenshot(page, "screenshot.png", None);
        if page.eval(newest) == "true" {
            break;
        }
    }
}

/// Saves a screenshot to `target/tmp/`; with `UPDATE_SCREENSHOT` set, to `public/` too, where
/// the README shows it.
fn save_screenshot(page: &mut Chromium, name: &str, selector: Option<&str>) {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    page.screenshot(&path, selector);
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        let public = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("public")
            .join(name);
        std::fs::copy(&path, public).expect("copy screenshot");
    }
}

/// JavaScript that says whether the log holds a `publish` event with this data. (Which entry is
/// newest is a race: a tick may land on top at any moment.)
fn published(data: &str) -> String {
    format!(
        "String([...document.querySelectorAll('#log .type-publish dd:nth-of-type(3)')].some(dd => dd.textContent === '{data}'))"
    )
}

/// The first string value of `"key":"..."` in a JSON message, unescaped.
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!(r#""{key}":""#))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(
                        char::from_u32(u32::from_str_radix(&hex, 16).ok()?).unwrap_or('\u{fffd}'),
                    );
                }
                other => out.push(other), // \" \\ \/
            },
            c => out.push(c),
        }
    }
    None
}

/// A JSON string literal for `s`.
fn json_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Standard base64 (RFC 4648 §4), as DevTools sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0);
    for byte in text.bytes().filter(|&b| b != b'=') {
        let Some(value) = ALPHABET.iter().position(|&a| a == byte) else {
            continue;
        };
        bits = (bits << 6) | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[test]
fn base64_and_json_helpers() {
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
    assert_eq!(
        json_string(r#"{"a":"x\"y\\n\u00e9"}"#, "a").unwrap(),
        "x\"y\\né"
    );
    assert_eq!(json_quote("a\"b\n"), r#""a\"b\n""#);
}

/// The lab's timeline as the page drew it: one row per thing the browser fired, each as
/// `[ms, stream, fired, type, lastEventId, data, readyState]`.
fn timeline(page: &mut Chromium) -> Vec<Vec<String>> {
    let rows = page.eval(
        "[...document.querySelectorAll('#lab-timeline tr')].map(tr => [...tr.cells].map(td => td.textContent).join('\\t')).join('\\n')",
    );
    rows.lines()
        .map(|row| row.split('\t').map(String::from).collect())
        .collect()
}

/// The rows of one stream, as `fired readyState` or, for an event, `fired data readyState`.
fn rows_of(rows: &[Vec<String>], stream: &str) -> Vec<String> {
    rows.iter()
        .filter(|row| row[1] == stream)
        .map(|row| match row[2].as_str() {
            fired @ ("open" | "error") => format!("{fired} {}", row[6]),
            fired => {
                // The DOM event that fired is named after the event's type, `message` or not.
                assert_eq!(fired, row[3], "fired and type: {row:?}");
                format!("{fired} {} {}", row[5], row[6])
            }
        })
        .collect()
}

fn click(page: &mut Chromium, selector: &str) {
    page.eval(&format!(
        "document.querySelector({}).click(); 'ok'",
        json_quote(selector)
    ));
}

fn text_of(page: &mut Chromium, id: &str) -> String {
    page.eval(&format!("document.getElementById('{id}').textContent"))
}

/// Runs an experiment and waits for the result line that says it is over.
fn run_experiment(page: &mut Chromium, name: &str, done: &str) -> String {
    click(page, &format!("[data-run={name}]"));
    wait_result(page, done)
}

/// Waits for the lab's result line to start with `done`.
fn wait_result(page: &mut Chromium, done: &str) -> String {
    page.wait_for("document.getElementById('lab-result').textContent", |v| {
        v.starts_with(done)
    })
}

#[test]
fn lab_experiments_show_what_the_spec_predicts() {
    if !have_chromium("lab_experiments_show_what_the_spec_predicts") {
        return;
    }
    let addr = common::start(Config {
        tick: Duration::from_millis(200),
        ..common::config()
    });
    let url = format!("http://{addr}/");
    let mut page = Chromium::open(&url);
    page.wait_for("document.getElementById('state').textContent", |v| {
        v == "OPEN"
    });

    // 6. Seven streams: the page's own and six more. The browser holds the sixth back.
    click(&mut page, "[data-run=seven]");
    let five_open = "#1 OPEN · #2 OPEN · #3 OPEN · #4 OPEN · #5 OPEN · #6 CONNECTING";
    page.wait_for("document.getElementById('lab-states').textContent", |v| {
        v == five_open
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(text_of(&mut page, "lab-states"), five_open, "still waiting");
    // A publish from this page needs a connection too, and waits.
    page.eval("[...document.querySelectorAll('#lab-controls button')][1].click(); 'ok'");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        text_of(&mut page, "lab-result"),
        "Publish: waiting for a free connection…"
    );
    // Each stream closed lets one waiting request through: the sixth stream and the publish.
    for _ in 0..2 {
        page.eval("[...document.querySelectorAll('#lab-controls button')][0].click(); 'ok'");
    }
    page.wait_for("document.getElementById('lab-states').textContent", |v| {
        v == "#1 CLOSED · #2 CLOSED · #3 OPEN · #4 OPEN · #5 OPEN · #6 OPEN"
    });
    let published = page.wait_for("document.getElementById('lab-result').textContent", |v| {
        v.starts_with("Publish: sent (204) after ")
    });
    assert!(published.ends_with(" ms."), "{published}");
    click(&mut page, "#lab-stop");

    // 7. The raw bytes through fetch(): the head's type, the retry frame, events with their line
    // ends shown. It is one more client while it runs.
    click(&mut page, "[data-run=bytes]");
    page.wait_for("document.getElementById('clients').textContent", |v| {
        v == "2"
    });
    let read = wait_result(&mut page, "Read ");
    assert!(
        read.ends_with(
            " bytes in 4 s. The fetch is aborted now, and the client count goes back down."
        ),
        "{read}"
    );
    let bytes = text_of(&mut page, "lab-bytes");
    assert!(
        bytes.starts_with(
            "HTTP 200, Content-Type: text/event-stream\n\nretry: 3000␊\n␊\nevent: clients␊\ndata: "
        ),
        "{bytes}"
    );
    assert!(
        bytes.contains("␊\nevent: clients␊\ndata: 2␊\n␊\n"),
        "{bytes}"
    );
    assert!(bytes.contains("␊\ndata: {\"time\":\"20"), "{bytes}");
    page.wait_for("document.getElementById('clients').textContent", |v| {
        v == "1"
    });

    // 1. The stream ends after 3 events, and comes back a second later with the last id it saw.
    let ended = run_experiment(&mut page, "ends", "3 connections. ");
    assert!(ended.contains(": no gap, no duplicate. "), "{ended}");
    let rows = timeline(&mut page);
    let a: Vec<&Vec<String>> = rows.iter().filter(|row| row[1] == "A").collect();
    let summary = rows_of(&rows, "A");
    // Each connection: open, the lab echo, the current count (no id, not one of the 3), three
    // ticks, the end.
    const ROWS: usize = 7;
    assert_eq!(summary.len(), 3 * ROWS, "{summary:#?}");
    let mut ids: Vec<String> = Vec::new();
    for (connection, chunk) in summary.chunks(ROWS).enumerate() {
        // What the browser sent is the id of the last event it got before the stream ended.
        let sent = match ids.last() {
            None => String::from("no Last-Event-ID"),
            Some(id) => format!("Last-Event-ID: {id}"),
        };
        assert_eq!(chunk[0], "open OPEN", "{chunk:?}");
        assert_eq!(chunk[1], format!("lab {sent} OPEN"), "{chunk:?}");
        assert!(chunk[2].starts_with("clients "), "{chunk:?}");
        assert_eq!(chunk[6], "error CONNECTING", "{chunk:?}");
        for row in &a[connection * ROWS + 3..connection * ROWS + 6] {
            assert_eq!(row[3], "message", "{row:?}");
            ids.push(row[4].clone());
        }
    }
    // The page's own stream got every tick: the lab stream's nine are a run of them, in order.
    let main: Vec<String> = page
        .eval("[...document.querySelectorAll('#log .type-message dd:nth-of-type(2)')].map(dd => dd.textContent).reverse().join(' ')")
        .split(' ')
        .map(String::from)
        .collect();
    let first = main
        .iter()
        .position(|id| *id == ids[0])
        .expect("the first tick in the page's log");
    assert_eq!(ids, main[first..first + 9], "no gap, no repeat");
    // The reconnects waited the 1 s that `retry: 1000` asked for, not the 3 s default.
    let at = |row: &Vec<String>| -> u64 { row[0].trim_start_matches('+').parse().unwrap() };
    for connection in 1..3 {
        let waited = at(a[connection * ROWS]) - at(a[connection * ROWS - 1]);
        assert!(
            (950..3000).contains(&waited),
            "reconnected after {waited} ms"
        );
    }

    save_screenshot(&mut page, "lab.png", Some("#lab"));

    // 2, 3 and 4 each wait 6 s for a reconnect that must not come: three tabs, at once.
    let first = page.session.clone();
    let second = page.open_tab(&url);
    let third = page.open_tab(&url);
    for (tab, experiment) in [
        (&first, "no-content"),
        (&second, "refused"),
        (&third, "type"),
    ] {
        page.switch_to(tab);
        page.wait_for("document.getElementById('state').textContent", |v| {
            v == "OPEN"
        });
        click(&mut page, &format!("[data-run={experiment}]"));
    }
    page.switch_to(&first);
    let after = wait_result(&mut page, "After ");
    assert_eq!(
        after,
        "After 6 s: 204: readyState CLOSED, the server saw 1 request."
    );
    assert_eq!(rows_of(&timeline(&mut page), "204"), ["error CLOSED"]);

    page.switch_to(&second);
    let after = wait_result(&mut page, "After ");
    assert_eq!(
        after,
        "After 6 s: 503: readyState CLOSED, the server saw 1 request. 404: readyState CLOSED, the server saw 1 request."
    );
    let rows = timeline(&mut page);
    assert_eq!(rows_of(&rows, "503"), ["error CLOSED"]);
    assert_eq!(rows_of(&rows, "404"), ["error CLOSED"]);

    page.switch_to(&third);
    let after = wait_result(&mut page, "After ");
    let accepted = "text/event-stream;charset=utf-8";
    assert!(
        after.starts_with(&format!(
            "After 6 s: text/plain: readyState CLOSED, the server saw 1 request. {accepted}: readyState "
        )),
        "{after}"
    );
    let rows = timeline(&mut page);
    assert_eq!(rows_of(&rows, "text/plain"), ["error CLOSED"]);
    let charset = rows_of(&rows, accepted);
    assert_eq!(charset[0], "open OPEN", "{charset:?}");
    assert_eq!(
        charset[1],
        format!("lab no Last-Event-ID OPEN"),
        "{charset:?}"
    );
    let opens = charset.iter().filter(|row| *row == "open OPEN").count();
    assert!(
        opens >= 3,
        "accepted, ended, reconnected every second: {charset:#?}"
    );
}
