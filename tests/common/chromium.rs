//! Headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands in on fd 3, answers out on fd 4,
//! each a JSON message ended by a NUL byte), run inside a test's network
//! namespace so it sees that namespace's loopback.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A browser with one page open.
pub struct Browser {
    child: Child,
    commands: std::io::PipeWriter,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    profile: tempdir::Dir,
}

/// The browser's profile directory, removed on drop (again while a
/// process that was still exiting writes into it).
mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            for _ in 0..50 {
                if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

impl Browser {
    /// Starts Chromium in network namespace `netns` (a path) with a window
    /// of `width`×`height` and opens `url`.
    pub fn open(netns: &Path, url: &str, width: u32, height: u32) -> Browser {
        let (cmd_r, cmd_w) = std::io::pipe().expect("pipe");
        let (ans_r, ans_w) = std::io::pipe().expect("pipe");
        let profile = tempdir::Dir(std::env::temp_dir().join(format!("plexus-chromium-{}", rand::random::<u32>())));
        std::fs::create_dir_all(&profile.0).unwrap();
        // The pipes come in as stdin and stdout; the shell moves them to fds
        // 3 and 4, where Chromium wants them. The real binary, not Debian's
        // launcher script, when it is there.
        let script = "exec \"$@\" 3<&0 4>&1 </dev/null >/dev/null";
        let binary = ["/usr/lib/chromium/chromium"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("chromium");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["sh", "-c", script, "sh", binary])
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--remote-debugging-pipe",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.0.display()),
                "about:blank",
            ])
            // Chromium puts its singleton socket's directory
            // (`org.chromium.Chromium.*`) in TMPDIR whatever the profile, and
            // leaves it there: keep it in the profile, which goes on drop.
            .env("TMPDIR", &profile.0)
            .stdin(cmd_r)
            .stdout(ans_w)
            .stderr(Stdio::null())
            // Its own process group: the renderer and helper processes go
            // with it on drop, before its profile is removed.
            .process_group(0)
            .spawn()
            .expect("start chromium");
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(ans_r);
            let mut msg = Vec::new();
            while r.read_until(0, &mut msg).is_ok_and(|n| n > 0) {
                if msg.last() == Some(&0) {
                    msg.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&msg)
                    && tx.send(v).is_err()
                {
                    break;
                }
                msg.clear();
            }
        });
        let mut b = Browser {
            child,
            commands: cmd_w,
            answers,
            next_id: 1,
            session: String::new(),
            profile,
        };
        let target = b.call(None, "Target.createTarget", json!({ "url": url }));
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = b.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        b.session = attached["sessionId"].as_str().expect("a session id").to_owned();
        b
    }

    /// Sends a command (to the page's session unless `session` is None and
    /// the page is not open yet) and waits for its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = Value::String(s.to_owned());
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    panic!("chromium: {method}: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// The value of JavaScript `expression` in the page (JSON-able).
    pub fn eval(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let r = self.call(
            Some(&session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until `ok` accepts its value, for at most
    /// `timeout`; the last value either way.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> (bool, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expression);
            if ok(&v) {
                return (true, v);
            }
            if Instant::now() > deadline {
                return (false, v);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A PNG of the page as it is drawn now.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let session = self.session.clone();
        let r = self.call(Some(&session), "Page.captureScreenshot", json!({ "format": "png" }));
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64 from chromium")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group this browser started (its pid is the group's id),
        // and then until none of it is left, so nothing writes into the
        // profile while it is removed.
        let group = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while nix::sys::signal::killpg(group, None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
