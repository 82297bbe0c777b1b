//! Headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages, each ended by a NUL byte,
//! read by Chromium on fd 3 and written on fd 4), with std, libc and
//! serde_json only. Enough for the report tests: open a page at a given
//! viewport (a phone's with mobile emulation, so `<meta name=viewport>`
//! counts), wait for its load event, evaluate JavaScript in it, collect its
//! console messages, take a full-page screenshot.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use serde_json::{json, Value};

/// How long any one answer or event may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Chromium on PATH, or None. Under CI a missing Chromium is a failure, not
/// a skip: the check would silently not happen. Elsewhere the test says
/// loudly that it skipped the browser checks.
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        for name in ["chromium", "chromium-browser"] {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let ci = std::env::var("CI").map(|v| !v.is_empty() && v != "0" && v != "false").unwrap_or(false);
    assert!(!ci, "CI is set and headless Chromium is missing: `apt-get install chromium` (scripts/setup.sh installs it); {test} needs it");
    let msg = format!("SKIPPED the browser checks of {test}: no chromium on PATH (`apt-get install chromium`; under CI=true this fails)");
    // Straight to fd 2: the test harness captures eprintln! of a test that
    // passes, and this must be seen.
    let bar = "!".repeat(msg.len().min(100));
    let _ = std::io::stderr().write_all(format!("\n{bar}\n{msg}\n{bar}\n").as_bytes());
    None
}

pub struct Browser {
    child: Child,
    to: std::io::PipeWriter,
    from: Receiver<Value>,
    next: u64,
    /// Events read while waiting for something else.
    events: Vec<Value>,
    stderr: PathBuf,
    _profile: tempfile::TempDir,
}

/// A page open in its own tab.
pub struct Tab {
    target: String,
    session: String,
}

/// What a page said on its console (and the browser logged about it: a
/// blocked resource, a CSP violation), and uncaught exceptions.
fn console_line(ev: &Value, session: &str) -> Option<String> {
    if ev.get("sessionId").and_then(Value::as_str) != Some(session) {
        return None;
    }
    let p = &ev["params"];
    match ev.get("method")?.as_str()? {
        "Runtime.consoleAPICalled" => Some(format!("console.{}: {}", p["type"].as_str().unwrap_or("?"), p["args"])),
        "Log.entryAdded" => Some(format!("log {} {}: {}", p["entry"]["source"], p["entry"]["level"], p["entry"]["text"])),
        "Runtime.exceptionThrown" => Some(format!("exception: {}", p["exceptionDetails"])),
        _ => None,
    }
}

impl Browser {
    pub fn launch(exe: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let stderr = profile.path().join("chromium.stderr");
        let (r3, w3) = std::io::pipe().unwrap();
        let (r4, w4) = std::io::pipe().unwrap();
        let (child_in, child_out) = (r3.as_raw_fd(), w4.as_raw_fd());
        let mut cmd = Command::new(exe);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
        // SAFETY: only async-signal-safe calls between fork and exec. The
        // pipe ends are moved above fd 9 first so that neither lands on
        // the other's target.
        unsafe {
            cmd.pre_exec(move || {
                let a = libc::fcntl(child_in, libc::F_DUPFD, 10);
                let b = libc::fcntl(child_out, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(a);
                libc::close(b);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium starts");
        drop(r3);
        drop(w4);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut r4 = r4;
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match r4.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser { child, to: w3, from: rx, next: 0, events: Vec::new(), stderr, _profile: profile }
    }

    fn recv(&mut self, what: &str) -> Value {
        match self.from.recv_timeout(PATIENCE) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => panic!("chromium did not answer {what} within {PATIENCE:?}; its stderr:\n{}", self.stderr_text()),
            Err(RecvTimeoutError::Disconnected) => panic!("chromium closed the pipe waiting for {what}; its stderr:\n{}", self.stderr_text()),
        }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends a command (to a tab's session when given) and returns its result.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("writing to chromium's pipe");
        loop {
            let v = self.recv(method);
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(e) = v.get("error") {
                    panic!("chromium refused {method}: {e}");
                }
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Waits for an event of a tab.
    fn wait_event(&mut self, session: &str, method: &str) -> Value {
        let is = |v: &Value| v.get("method").and_then(Value::as_str) == Some(method) && v.get("sessionId").and_then(Value::as_str) == Some(session);
        if let Some(i) = self.events.iter().position(is) {
            return self.events.remove(i);
        }
        loop {
            let v = self.recv(method);
            if is(&v) {
                return v;
            }
            self.events.push(v);
        }
    }

    /// Opens `page` in a new tab with a viewport `width` CSS pixels wide (a
    /// phone's, with touch and `<meta name=viewport>`, below 600) and waits
    /// for its load event.
    pub fn open(&mut self, page: &Path, width: u32) -> Tab {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}))["targetId"].as_str().unwrap().to_string();
        let session = self.call(None, "Target.attachToTarget", json!({"targetId": target, "flatten": true}))["sessionId"].as_str().unwrap().to_string();
        let s = Some(session.as_str());
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            self.call(s, domain, json!({}));
        }
        self.call(s, "Emulation.setDeviceMetricsOverride", json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}));
        let url = format!("file://{}", page.canonicalize().unwrap().display());
        let nav = self.call(s, "Page.navigate", json!({"url": url}));
        assert!(nav.get("errorText").is_none(), "chromium could not open {url}: {nav}");
        self.wait_event(&session, "Page.loadEventFired");
        Tab { target, session }
    }

    /// Evaluates an expression in the tab and returns its value as JSON.
    pub fn eval(&mut self, tab: &Tab, expression: &str) -> Value {
        let r = self.call(Some(&tab.session), "Runtime.evaluate", json!({"expression": expression, "returnByValue": true, "awaitPromise": true}));
        if let Some(e) = r.get("exceptionDetails") {
            panic!("the page's check threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// The tab's console messages so far.
    pub fn console(&mut self, tab: &Tab) -> Vec<String> {
        // A round trip, so that anything logged before it has arrived.
        self.call(Some(&tab.session), "Runtime.evaluate", json!({"expression": "0"}));
        self.events.iter().filter_map(|e| console_line(e, &tab.session)).collect()
    }

    /// A PNG of the whole page at the tab's width, written to `file`.
    pub fn screenshot(&mut self, tab: &Tab, file: &Path) {
        let size = self.eval(tab, "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]");
        let (w, h) = (size[0].as_f64().unwrap(), size[1].as_f64().unwrap().min(16000.0));
        let r = self.call(
            Some(&tab.session),
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true, "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}}),
        );
        std::fs::write(file, base64_decode(r["data"].as_str().expect("screenshot data"))).unwrap();
    }

    pub fn close(&mut self, tab: Tab) {
        self.call(None, "Target.closeTarget", json!({"targetId": tab.target}));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Browser.close ends it; its end of the pipe closing is the sign.
        let _ = self.to.write_all(b"{\"id\":999999,\"method\":\"Browser.close\"}\0");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match self.from.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    break;
                }
            }
        }
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| val(c) as u32).collect();
        let n = v.iter().enumerate().fold(0u32, |acc, (i, &x)| acc | (x << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
