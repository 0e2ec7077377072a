//! The page in a real browser: Debian's Chromium, headless, driven over the DevTools protocol.
//!
//! `--remote-debugging-pipe` makes Chromium read commands on file descriptor 3 and answer on 4,
//! each message JSON ending in a NUL byte. `sh` maps those onto the child's stdin and stdout, so
//! std's `Command` is all we need. The test reads the rendered DOM, never the page's source.
//!
//! Every run saves screenshots to `target/tmp/` (`screenshot.png`, the page's first screen at
//! 1280 x 900; `lab.png`, experiments 7 and 8 with their outputs; `lab-phone.png`, experiment 1 at
//! 390 px; `lab-dark.png`, experiment 4 in dark mode); `UPDATE_SCREENSHOT=1 cargo test --test
//! browser` also copies them to `public/`, where the README shows them.

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

    /// Sets the viewport: `width` x `height` CSS pixels; `mobile` as a phone's browser would.
    fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            &format!(
                r#"{{"width":{width},"height":{height},"deviceScaleFactor":1,"mobile":{mobile}}}"#
            ),
        );
    }

    /// Makes the page see `prefers-color-scheme: dark` (or light again).
    fn dark(&mut self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        self.call(
            "Emulation.setEmulatedMedia",
            &format!(r#"{{"features":[{{"name":"prefers-color-scheme","value":"{value}"}}]}}"#),
        );
    }

    /// Saves a PNG of the viewport, or with `selector`, of the elements it matches, from the top
    /// of the first to the bottom of the last, whole even where they run below the viewport.
    fn screenshot(&mut self, path: &Path, selector: Option<&str>) {
        // Only the tab in front is painted: asked for a background tab, Chromium did not answer.
        self.call("Page.bringToFront", "{}");
        let params = match selector {
            None => String::from(r#"{"format":"png"}"#),
            Some(selector) => {
                let clip = self.eval(&format!(
                    "(rs => JSON.stringify({{x: Math.min(...rs.map(r => r.x)), y: rs[0].y + scrollY, width: Math.max(...rs.map(r => r.right)) - Math.min(...rs.map(r => r.x)), height: rs.at(-1).bottom - rs[0].y, scale: 1}}))([...document.querySelectorAll({})].map(e => e.getBoundingClientRect()))",
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

    // Fail over needs another port: off the cluster's ports the box starts empty and the button
    // off; it comes on for a port, and stays off for this page's own, 0, or one past 65535.
    let failover = "String(document.getElementById('failover').disabled)";
    assert_eq!(page.eval(failover), "true");
    for (port, off) in [
        ("8082", "false"),
        (&addr.port().to_string(), "true"),
        ("0", "true"),
        ("65536", "true"),
        ("", "true"),
    ] {
        page.eval(&format!(
            "{{ const box = document.getElementById('failover-port'); box.value = '{port}'; \
             box.dispatchEvent(new Event('input')); }} 'ok'"
        ));
        assert_eq!(page.eval(failover), off, "port {port:?}");
    }

    // The log keeps at most 100 entries however long the page runs.
    for i in 0..120 {
        common::publish(addr, &format!("filler {i}"));
    }
    page.wait_for(&published("filler 119"), |v| v == "true");
    assert_eq!(
        page.eval("String(document.getElementById('log').children.length)"),
        "100"
    );

    // The first screen at 1280 x 900: the log beside the connection, not below it.
    page.viewport(1280, 900, false);
    let top =
        page.eval("String(Math.round(document.getElementById('log').getBoundingClientRect().top))");
    let top: u32 = top.parse().expect("a number");
    assert!(top < 450, "the log starts {top} px down");
    take_screenshot(&mut page, other);

    // A `gap` stands out in the log and says what it means. (Dispatched on the page's own
    // EventSource, through the same listener a real one reaches: a real gap needs a reconnect
    // with an id the server does not have, which lab experiment 8 shows.)
    page.eval(
        r#"import('/app.js').then(app => app.mainSource().dispatchEvent(new MessageEvent('gap', {data: '{"last_event_id":"5-0","resume_from":"7-0"}'}))); 'ok'"#,
    );
    let note = page.wait_for(
        "document.querySelector('#log .type-gap .note')?.textContent ?? ''",
        |v| !v.is_empty(),
    );
    assert_eq!(
        note,
        "gap: the server does not have the events after 5-0 (trimmed, or the id is not one of this run's); replaying from 7-0, the oldest event it keeps."
    );
    assert_eq!(
        page.eval("getComputedStyle(document.querySelector('#log .type-gap')).borderLeftStyle"),
        "solid"
    );

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

/// JavaScript for the newest output box of experiment `name`, then `rest` (a selector inside it).
fn newest(name: &str, rest: &str) -> String {
    format!("document.querySelector('#runs-{name} > .run:first-child {rest}')")
}

/// The timelines of the newest run of experiment `name`, as the page drew them: one row per thing
/// the browser fired, each as `[ms, stream, fired, readyState, lastEventId, data]`.
fn timeline(page: &mut Chromium, name: &str) -> Vec<Vec<String>> {
    let rows = page.eval(&format!(
        "[...document.querySelectorAll('#runs-{name} > .run:first-child tbody tr')].map(tr => [...tr.cells].map(td => td.textContent).join('\\t')).join('\\n')"
    ));
    rows.lines()
        .map(|row| row.split('\t').map(String::from).collect())
        .collect()
}

/// The rows of one stream, as `fired readyState` or, for an event, `fired data readyState`.
/// The row that counts events not drawn (`more`) is left out.
fn rows_of(rows: &[Vec<String>], stream: &str) -> Vec<String> {
    rows.iter()
        .filter(|row| row[1] == stream && row[2] != "more")
        .map(|row| match row[2].as_str() {
            fired @ ("open" | "error") => format!("{fired} {}", row[3]),
            fired => format!("{fired} {} {}", row[5], row[3]),
        })
        .collect()
}

fn click(page: &mut Chromium, selector: &str) {
    page.eval(&format!(
        "document.querySelector({}).click(); 'ok'",
        json_quote(selector)
    ));
}

/// The text of the newest run's `part` (`.result`, `.states`, ...) of experiment `name`.
fn text_of(page: &mut Chromium, name: &str, part: &str) -> String {
    page.eval(&format!("{}?.textContent ?? ''", newest(name, part)))
}

/// Clicks button `n` (from 0) of the newest run's own controls.
fn control(page: &mut Chromium, name: &str, n: usize) {
    page.eval(&format!(
        "document.querySelectorAll('#runs-{name} > .run:first-child .buttons button')[{n}].click(); 'ok'"
    ));
}

/// Runs an experiment and waits for the result line that says it is over.
fn run_experiment(page: &mut Chromium, name: &str, done: &str) -> String {
    click(page, &format!("[data-run={name}]"));
    wait_result(page, name, done)
}

/// Waits for the result line of the newest run of `name` to start with `done`.
fn wait_result(page: &mut Chromium, name: &str, done: &str) -> String {
    page.wait_for(
        &format!("{}?.textContent ?? ''", newest(name, ".result")),
        |v| v.starts_with(done),
    )
}

#[test]
fn a_browser_reconnects_to_where_a_redirect_led() {
    if !have_chromium("a_browser_reconnects_to_where_a_redirect_led") {
        return;
    }
    // What README's lab table says of `redirect=N`, and `client.rs` does: the reconnect after a
    // redirect goes to its target. Ticks every 50 ms end the `end_after=1` stream at once.
    let addr = common::start(common::config());
    let mut page = Chromium::open(&format!("http://{addr}/"));
    page.wait_for("document.getElementById('state').textContent", |v| {
        v == "OPEN"
    });
    let url = page.eval(
        "window.opens = 0; \
         const es = new EventSource('/events?redirect=307&end_after=1&retry=200&run=redirect'); \
         es.onopen = () => { if (++window.opens === 2) es.close(); }; es.url",
    );
    page.wait_for("String(window.opens)", |v| v == "2");
    // The URL the page gave stays the EventSource's url.
    assert_eq!(
        url,
        format!("http://{addr}/events?redirect=307&end_after=1&retry=200&run=redirect")
    );
    // The redirect, its target, and the reconnect to the target: three requests carried the
    // label. A reconnect to the URL first given would have made four (redirect, target twice).
    let seen = common::raw_text(
        addr,
        &format!("GET /lab/seen?run=redirect HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
    assert!(seen.ends_with("\r\n\r\n3\n"), "{seen}");
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
    page.viewport(1280, 900, false);
    page.wait_for("document.getElementById('state').textContent", |v| {
        v == "OPEN"
    });

    // 6. Seven streams: the page's own and six more. The browser holds the sixth back.
    click(&mut page, "[data-run=seven]");
    let five_open = "A OPEN · B OPEN · C OPEN · D OPEN · E OPEN · F CONNECTING";
    page.wait_for(
        &format!("{}.textContent", newest("seven", ".states")),
        |v| v == five_open,
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        text_of(&mut page, "seven", ".states"),
        five_open,
        "still waiting"
    );
    // A publish from this page needs a connection too, and waits.
    control(&mut page, "seven", 1);
    std::thread::sleep(Duration::from_millis(500));
    let waiting = "Publish: waiting for a free connection…";
    assert_eq!(text_of(&mut page, "seven", ".result"), waiting);
    // One stream closed lets the sixth stream through (it asked first), not the publish.
    control(&mut page, "seven", 0);
    page.wait_for(
        &format!("{}.textContent", newest("seven", ".states")),
        |v| v == "A CLOSED · B OPEN · C OPEN · D OPEN · E OPEN · F OPEN",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(text_of(&mut page, "seven", ".result"), waiting);
    // A second one lets the publish through.
    control(&mut page, "seven", 0);
    let published = wait_result(&mut page, "seven", "Publish: sent (204) after ");
    assert!(published.ends_with(" ms."), "{published}");
    click(&mut page, "#runs-seven > .run:first-child .run-head button");

    // A second run of 6, and a publish left waiting when experiment 7 starts and stops it: the
    // publish's answer goes into the box of the run that sent it, never into 7's.
    click(&mut page, "[data-run=seven]");
    page.wait_for(
        &format!("{}.textContent", newest("seven", ".states")),
        |v| v == five_open,
    );
    control(&mut page, "seven", 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(text_of(&mut page, "seven", ".result"), waiting);

    // 7. The raw bytes through fetch(): the head's type, the retry frame, events with their line
    // ends shown. It is one more client while it runs.
    click(&mut page, "[data-run=bytes]");
    wait_result(&mut page, "seven", "Publish: sent (204) after ");
    assert_eq!(
        page.eval("String(document.querySelectorAll('#runs-seven > .run').length)"),
        "2",
        "the first run's output stays"
    );
    assert_eq!(
        text_of(&mut page, "seven", ".status"),
        "stopped: another run started"
    );
    page.wait_for("document.getElementById('clients').textContent", |v| {
        v == "2"
    });
    let read = wait_result(&mut page, "bytes", "Read ");
    assert!(
        read.ends_with(
            " bytes in 4 s. The fetch is aborted now, and the client count goes back down."
        ),
        "{read}"
    );
    // The element's text is exactly the bytes that arrived, after one line the page wrote.
    let bytes = text_of(&mut page, "bytes", ".bytes");
    let (head, body) = bytes
        .split_once("\n\n")
        .expect("the page's line, then the bytes");
    assert_eq!(head, "HTTP 200, Content-Type: text/event-stream");
    assert!(
        body.starts_with("retry: 3000\n\nevent: clients\ndata: "),
        "{body}"
    );
    assert!(body.contains("\n\nevent: clients\ndata: 2\n\n"), "{body}");
    assert!(body.contains("\ndata: {\"time\":\"20"), "{body}");
    // Each line feed has its box just before it, drawn by CSS, with no font needed.
    let boxes = page.eval(&format!(
        "String({}.querySelectorAll('.lf').length)",
        newest("bytes", ".bytes")
    ));
    assert_eq!(boxes, body.matches('\n').count().to_string());
    assert_eq!(
        page.eval(&format!(
            "getComputedStyle({}.querySelector('.lf'), '::after').content",
            newest("bytes", ".bytes")
        )),
        "\"LF\""
    );
    page.wait_for("document.getElementById('clients').textContent", |v| {
        v == "1"
    });

    // 1. The stream ends after 3 events, and comes back a second later with the last id it saw.
    let ended = run_experiment(&mut page, "ends", "3 connections. ");
    assert!(ended.contains(": no gap, no duplicate. "), "{ended}");
    let rows = timeline(&mut page, "ends");
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
            assert_eq!(row[2], "message", "{row:?}");
            ids.push(row[4].clone());
        }
    }
    // The page's own stream got every tick: the lab stream's nine are a run of them, in order.
    let main = main_ids(&mut page);
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

    // 8. Resume with `after=`: A after an id the page got, B after one older than anything kept.
    let resumed = run_experiment(&mut page, "resume", "A, after=");
    let legend = text_of(&mut page, "resume", ".legend");
    let chosen = legend
        .split_once("/events?after=")
        .and_then(|(_, rest)| rest.split_once('"'))
        .expect("A's URL in the legend")
        .0
        .to_string();
    let main = main_ids(&mut page);
    let at = main
        .iter()
        .position(|id| *id == chosen)
        .expect("an id the page's own stream got");
    let rows = timeline(&mut page, "resume");
    let a = rows_of(&rows, "A");
    assert_eq!(a[0], "open OPEN", "{a:#?}");
    assert!(a[1].starts_with("clients "), "{a:#?}");
    assert!(!a.iter().any(|row| row.starts_with("gap")), "{a:#?}");
    // A's events carry on from the one right after the id it gave, with the same ids.
    let a_ids: Vec<&String> = rows
        .iter()
        .filter(|row| row[1] == "A" && row[2] == "message")
        .map(|row| &row[4])
        .collect();
    assert_eq!(a_ids[..3], main[at + 1..at + 4].iter().collect::<Vec<_>>());
    assert!(
        resumed.starts_with(&format!(
            "A, after={chosen}: no gap; the 3 events the page got after it came again with their ids ({}), then ",
            main[at + 1..at + 4].join(", ")
        )),
        "{resumed}"
    );
    // B's first event is the gap, naming the id it asked for and the oldest kept, where the
    // replay starts.
    let b = rows_of(&rows, "B");
    assert_eq!(b[0], "open OPEN", "{b:#?}");
    let gap = b[1]
        .strip_prefix("gap {\"last_event_id\":\"1-0\",\"resume_from\":\"")
        .and_then(|rest| rest.strip_suffix("\"} OPEN"))
        .unwrap_or_else(|| panic!("a gap first: {b:#?}"));
    assert!(b[2].starts_with("clients "), "{b:#?}");
    let b_first = rows
        .iter()
        .find(|row| row[1] == "B" && row[2] == "message")
        .expect("B's first tick");
    assert_eq!(b_first[4], gap);
    assert!(
        resumed.contains(&format!(
            " B, after=1-0: first a gap (data {{\"last_event_id\":\"1-0\",\"resume_from\":\"{gap}\"}}), then "
        )),
        "{resumed}"
    );
    assert!(
        resumed.ends_with(": from the oldest event kept, as the gap said."),
        "{resumed}"
    );
    // Everything kept came: more than the rows B draws, so one row counts the rest.
    assert!(
        rows.iter().any(|row| row[1] == "B" && row[2] == "more"),
        "{rows:#?}"
    );

    // Every run's output stays under its card, where it was started.
    for name in ["seven", "bytes", "ends", "resume"] {
        let card = page.eval(&format!(
            "document.getElementById('runs-{name}').closest('li').querySelector('[data-run]').dataset.run"
        ));
        assert_eq!(card, name);
    }
    save_screenshot(
        &mut page,
        "lab.png",
        Some("li:has(#runs-bytes), li:has(#runs-resume)"),
    );

    // At phone width the timeline scrolls sideways in its own box, not the page; no cell wraps,
    // so every row (one line of text each here) is as tall as the header.
    page.viewport(390, 844, true);
    let table = format!("{}.closest('table')", newest("ends", "tbody"));
    let heights = page.eval(&format!(
        "[...{table}.rows].map(tr => tr.offsetHeight).join(' ')"
    ));
    let header = heights.split(' ').next().unwrap_or_default();
    assert!(
        heights.split(' ').all(|h| h == header),
        "a row wrapped: {heights}"
    );
    let wide = page.eval(&format!(
        "(w => String(w.scrollWidth > w.clientWidth && w.clientWidth < 390))({table}.closest('.table-wrap'))"
    ));
    assert_eq!(wide, "true", "the table is wider than its box");
    assert_eq!(
        page.eval("String(document.documentElement.scrollWidth)"),
        "390",
        "the page itself does not scroll sideways"
    );
    save_screenshot(&mut page, "lab-phone.png", Some("li:has(#runs-ends)"));
    page.viewport(1280, 900, false);

    // 2, 3 and 4 each wait 6 s for a reconnect that must not come, and 5 runs for 8 s: four tabs,
    // at once. The browser's six connections are shared by all tabs: the other tabs close their
    // own stream first, so every lab stream gets a connection at once.
    let first = page.session.clone();
    let mut tabs = vec![first.clone()];
    for _ in 0..3 {
        tabs.push(page.open_tab(&url));
    }
    for (i, (tab, experiment)) in tabs
        .iter()
        .zip(["no-content", "refused", "type", "retry"])
        .enumerate()
    {
        page.switch_to(tab);
        page.wait_for("document.getElementById('state').textContent", |v| {
            v == "OPEN"
        });
        if i > 0 {
            click(&mut page, "#close");
        }
        click(&mut page, &format!("[data-run={experiment}]"));
    }
    let [_, second, third, fourth] = &tabs[..] else {
        unreachable!()
    };
    page.switch_to(&first);
    let after = wait_result(&mut page, "no-content", "After ");
    assert_eq!(
        after,
        "After 6 s: A (204): readyState CLOSED, the server saw 1 request."
    );
    assert_eq!(
        rows_of(&timeline(&mut page, "no-content"), "A"),
        ["error CLOSED"]
    );

    page.switch_to(second);
    let after = wait_result(&mut page, "refused", "After ");
    assert_eq!(
        after,
        "After 6 s: A (503): readyState CLOSED, the server saw 1 request. B (404): readyState CLOSED, the server saw 1 request."
    );
    let rows = timeline(&mut page, "refused");
    assert_eq!(rows_of(&rows, "A"), ["error CLOSED"]);
    assert_eq!(rows_of(&rows, "B"), ["error CLOSED"]);

    page.switch_to(third);
    let after = wait_result(&mut page, "type", "After ");
    let accepted = "text/event-stream;charset=utf-8";
    assert!(
        after.starts_with(&format!(
            "After 6 s: A (text/plain): readyState CLOSED, the server saw 1 request. B ({accepted}): readyState "
        )),
        "{after}"
    );
    let rows = timeline(&mut page, "type");
    assert_eq!(rows_of(&rows, "A"), ["error CLOSED"]);
    let charset = rows_of(&rows, "B");
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

    // 5. Each reconnect waits at least the retry time the stream asked for.
    page.switch_to(fourth);
    // The result line is redrawn every 500 ms; the last one ends with a note.
    let retried = page.wait_for(
        &format!("{}.textContent", newest("retry", ".result")),
        |v| v.ends_with(". (Each delay runs from the error to the next open.)"),
    );
    assert!(
        retried.starts_with("A (retry: 200): reconnected "),
        "{retried}"
    );
    assert!(
        retried.contains(". B (retry: 5000): reconnected after 50"),
        "{retried}"
    );
    let rows = timeline(&mut page, "retry");
    let delays = |stream: &str| -> Vec<u64> {
        let mut delays = Vec::new();
        let mut error = None;
        for row in rows.iter().filter(|row| row[1] == stream) {
            let at: u64 = row[0].trim_start_matches('+').parse().expect("ms");
            match row[2].as_str() {
                "error" => error = Some(at),
                "open" => delays.extend(error.take().map(|error| at - error)),
                _ => {}
            }
        }
        delays
    };
    let short = delays("A");
    assert!(short.len() >= 3, "{short:?}");
    assert!(short.iter().all(|&d| d >= 200), "{short:?}");
    let long = delays("B");
    assert_eq!(long.len(), 1, "{long:?}");
    assert!(long[0] >= 5000, "{long:?}");

    // The same results, in the dark: the legend gives each label's URL.
    page.switch_to(third);
    page.viewport(1280, 900, false);
    page.dark(true);
    save_screenshot(&mut page, "lab-dark.png", Some("li:has(#runs-type)"));
}

/// The ids of the ticks the page's own stream got, oldest first, from its log.
fn main_ids(page: &mut Chromium) -> Vec<String> {
    page.eval("[...document.querySelectorAll('#log .type-message dd:nth-of-type(2)')].map(dd => dd.textContent).reverse().join(' ')")
        .split(' ')
        .map(String::from)
        .collect()
}
