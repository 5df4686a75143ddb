//! Debian's headless Chromium, driven through `tests/browser/driver.mjs` (playwright-core): one
//! JSON command per line, one answer per line.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

/// A browser page at 1280×800.
pub struct Browser {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Browser {
    /// Starts Chromium. The driver's packages come from `npm ci` in `tests/browser`.
    pub fn start() -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
        assert!(
            std::path::Path::new(dir)
                .join("node_modules/playwright-core")
                .exists(),
            "run `npm ci` in tests/browser first (tests/run.sh does)"
        );
        let mut child = Command::new("node")
            .arg("driver.mjs")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node starts the browser driver");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child,
            input,
            output,
        }
    }

    /// Sends one command and returns its answer; panics when the driver reports a failure.
    pub fn call(&mut self, command: Value) -> Value {
        let answer = self.try_call(command.clone());
        assert_eq!(answer["ok"], true, "{command}: {answer}");
        answer
    }

    /// Sends one command and returns its answer, failed or not.
    pub fn try_call(&mut self, command: Value) -> Value {
        writeln!(self.input, "{command}").expect("the driver reads");
        self.input.flush().expect("flush");
        let mut line = String::new();
        self.output
            .read_line(&mut line)
            .expect("the driver answers");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    pub fn goto(&mut self, url: &str) -> u16 {
        let a = self.call(json!({"op": "goto", "url": url}));
        u16::try_from(a["status"].as_u64().unwrap_or_default()).unwrap_or_default()
    }

    pub fn text(&mut self, selector: &str) -> String {
        let a = self.call(json!({"op": "text", "selector": selector}));
        a["text"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits until `selector`'s text contains `text`; the milliseconds it took.
    pub fn wait_text(&mut self, selector: &str, text: &str, timeout_ms: u64) -> u64 {
        let a = self.call(
            json!({"op": "waitText", "selector": selector, "text": text, "timeoutMs": timeout_ms}),
        );
        a["ms"].as_u64().unwrap_or_default()
    }

    pub fn count(&mut self, selector: &str) -> u64 {
        self.call(json!({"op": "count", "selector": selector}))["count"]
            .as_u64()
            .unwrap_or_default()
    }

    pub fn attrs(&mut self, selector: &str, attr: &str) -> Vec<String> {
        let a = self.call(json!({"op": "attrs", "selector": selector, "attr": attr}));
        a["values"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn eval(&mut self, js: &str) -> Value {
        self.call(json!({"op": "eval", "js": js}))["value"].clone()
    }

    /// Writes a screenshot of the viewport to `path` (relative to the crate).
    pub fn screenshot(&mut self, path: &str) {
        let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
        if let Some(dir) = std::path::Path::new(&full).parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        self.call(json!({"op": "screenshot", "path": full}));
    }

    /// axe-core's violations of impact `serious` or `critical` on the current page.
    pub fn serious_violations(&mut self) -> Vec<Value> {
        let a = self.call(json!({"op": "axe"}));
        a["violations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.input, "{}", json!({"op": "close"}));
        let _ = self.input.flush();
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
