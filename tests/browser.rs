//! The page in a real browser: Debian's Chromium, headless, driven over the DevTools protocol.
//!
//! `--remote-debugging-pipe` makes Chromium read commands on file descriptor 3 and answer on 4,
//! each message JSON ending in a NUL byte. `sh` maps those onto the child's stdin and stdout, so
//! std's `Command` is all we need. The test reads the rendered DOM, never the page's source.
//!
//! Every run saves a screenshot to `target/tmp/page.png`; `UPDATE_SCREENSHOT=1 cargo test --test
//! browser` also copies it to `public/screenshot.png`, the picture in the README.

mod common;
use sse_server::Config;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
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
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chromium-profile-{}", std::process::id()));
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
        let target = chromium.call("Target.createTarget", &format!(r#"{{"url":"{url}"}}"#));
        let target_id = json_string(&target, "targetId").expect("a target id");
        let attached = chromium.call(
            "Target.attachToTarget",
            &format!(r#"{{"targetId":"{target_id}","flatten":true}}"#),
        );
        chromium.session = json_string(&attached, "sessionId").expect("a session id");
        chromium
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

    fn screenshot(&mut self, path: &Path) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            r#"{"width":1100,"height":1150,"deviceScaleFactor":1,"mobile":false}"#,
        );
        let reply = self.call("Page.captureScreenshot", r#"{"format":"png"}"#);
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

#[test]
fn page_shows_the_stream_in_a_real_browser() {
    if !Path::new(CHROMIUM).exists() {
        // CI installs Chromium, so there a missing one is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "{CHROMIUM} is missing; .ci/run should have installed it"
        );
        // Written straight to stderr: the test harness would hide an eprintln! from a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "page_shows_the_stream_in_a_real_browser: SKIPPED, no {CHROMIUM} (apt-get install chromium)"
        );
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
    let id: u64 = fields[1].parse().expect("a numeric lastEventId");
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
    page.eval(&format!("document.getElementById('text').value = '{hello}'; document.getElementById('publish').requestSubmit(); 'ok'"));
    // `hello` is JavaScript source: its `\n`s become the line breaks the log shows.
    page.wait_for(&published(hello), |v| v == "true");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page.png");
    page.screenshot(&path);
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::copy(
            &path,
            concat!(env!("CARGO_MANIFEST_DIR"), "/public/screenshot.png"),
        )
        .expect("copy screenshot");
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
