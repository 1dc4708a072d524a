//! Headless Chromium driven over the DevTools protocol for the dashboard
//! tests: `--remote-debugging-pipe` (commands on the browser's fd 3,
//! answers on its fd 4, NUL-terminated JSON), so no port, no WebSocket and
//! no dependency beyond the runtime's process pipes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// `chromium` on the PATH, if any.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Where the screenshots go.
pub fn shots_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MERIDIAN_DASHBOARD_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// Headless Chromium spoken to over the DevTools pipe: it reads commands on
/// its fd 3 and answers on fd 4, each message ended by a NUL. A shell maps
/// our stdin and stdout pipes onto those.
pub struct Browser {
    _child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    next: u64,
    session: Option<String>,
}

impl Browser {
    pub async fn launch(chromium: &Path, profile: &Path) -> Browser {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium could not start");
        let to = child.stdin.take().unwrap();
        let from = BufReader::new(child.stdout.take().unwrap());
        let mut browser = Browser {
            _child: child,
            to,
            from,
            next: 0,
            session: None,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await;
        browser
    }

    /// One command; its result (events and other answers are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).await.unwrap();
        self.to.flush().await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let mut buf = Vec::new();
                let n = self.from.read_until(0, &mut buf).await.unwrap();
                assert!(n > 0, "chromium closed its DevTools pipe");
                buf.pop();
                let v: Value = serde_json::from_slice(&buf).unwrap();
                if v["id"] == id {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} in 60 s"));
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// The value of a script run in the page (a promise is awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expression} threw: {r}"
        );
        r["result"]["value"].clone()
    }

    /// Waits until `condition` holds in the page.
    pub async fn wait(&mut self, condition: &str) {
        for _ in 0..300 {
            // Not yet true, or not yet there (the page still loading).
            let probe = format!(
                "(() => {{ try {{ return !!({condition}); }} catch (_) {{ return false; }} }})()"
            );
            if self.eval(&probe).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let html = self.eval("document.body.outerHTML").await;
        panic!("never true: {condition}\n{}", html.as_str().unwrap_or(""));
    }

    /// A screenshot of what the window shows now, as a PNG file.
    pub async fn screenshot(&mut self, name: &str) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64(shot["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        assert!(
            png.len() > 10_000,
            "a blank screenshot? {} bytes",
            png.len()
        );
        let path = shots_dir().join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("dashboard screenshot: {}", path.display());
    }
}

/// Standard base64, as DevTools sends a screenshot.
pub fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
