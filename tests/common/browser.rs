//! A real headless Chromium driven through ChromeDriver's W3C WebDriver API (JSON over HTTP,
//! sent with curl): open a page, find elements by CSS selector, click, type, read text, run a
//! script, take a screenshot. Debian's `chromium` and `chromium-driver`; both are killed on
//! drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key WebDriver names an element reference with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session.
    pub fn start() -> Self {
        super::need("chromium", "chromium");
        super::need("chromedriver", "chromium-driver");
        let port = super::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser
            .raw("GET", "/status", None)
            .is_none_or(|s| s["value"]["ready"] != true)
        {
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The flags the workplace found needed as root on a closed network.
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1360,900".to_owned(),
            format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let created = browser
            .raw(
                "POST",
                "/session",
                Some(json!({ "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
                }}})),
            )
            .expect("chromedriver answers POST /session");
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no Chromium session: {created}"))
            .to_owned();
        browser
    }

    /// One WebDriver call; `None` when chromedriver did not answer.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "60", "-X", method]);
        if let Some(body) = body {
            cmd.args(["-H", "content-type: application/json", "--data-binary"])
                .arg(body.to_string());
        }
        let out = cmd
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// A call in the session: its `value`; panics on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let answer = self
            .raw(method, &path, body)
            .unwrap_or_else(|| panic!("chromedriver did not answer {method} {path}"));
        let value = answer["value"].clone();
        assert!(
            value.get("error").is_none(),
            "WebDriver {method} {path}: {value}"
        );
        value
    }

    /// A call whose WebDriver error is returned rather than fatal.
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let path = format!("/session/{}{path}", self.session);
        let value = self
            .raw(method, &path, body)
            .map(|answer| answer["value"].clone())
            .unwrap_or(Value::Null);
        if value.get("error").is_some() {
            Err(value)
        } else {
            Ok(value)
        }
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The element `css` matches now, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let found = self
            .try_call(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .ok()?;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    /// Waits up to `timeout` for `css` to match; its element.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> String {
        self.wait_until(&format!("`{css}` appearing"), timeout, |b| {
            b.find(css).is_some()
        });
        self.find(css)
            .unwrap_or_else(|| panic!("`{css}` appeared, then went"))
    }

    /// Does `act` on the element `css` matches, finding it again when the page re-rendered
    /// it in between (the console redraws its tables as data arrives).
    fn on_element(&self, css: &str, act: impl Fn(&str) -> Result<Value, Value>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let element = self.wait_for(css, Duration::from_secs(10));
            match act(&element) {
                Ok(value) => return value,
                Err(e) if e["error"] == "stale element reference" && Instant::now() < deadline => {}
                Err(e) => panic!("WebDriver on `{css}`: {e}"),
            }
        }
    }

    pub fn click(&self, css: &str) {
        self.on_element(css, |element| {
            self.try_call(
                "POST",
                &format!("/element/{element}/click"),
                Some(json!({})),
            )
        });
    }

    /// Clears the field `css` and types `text` into it, key by key.
    pub fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, |element| {
            self.try_call(
                "POST",
                &format!("/element/{element}/clear"),
                Some(json!({})),
            )?;
            self.try_call(
                "POST",
                &format!("/element/{element}/value"),
                Some(json!({ "text": text })),
            )
        });
    }

    /// Chooses the option `value` of the select `css` (as a person would: click it).
    pub fn select_by_value(&self, select: &str, value: &str) {
        self.click(&format!("{select} option[value='{value}']"));
    }

    /// The visible text of `css`.
    pub fn text(&self, css: &str) -> String {
        self.on_element(css, |element| {
            self.try_call("GET", &format!("/element/{element}/text"), None)
        })
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The page's visible text.
    pub fn body_text(&self) -> String {
        self.script("return document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `js` in the page (a function body); its return value.
    pub fn script(&self, js: &str) -> Value {
        self.try_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": js, "args": [] })),
        )
        .unwrap_or(Value::Null)
    }

    /// Waits up to `timeout` for `done` to hold.
    pub fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{what} never happened; the page says:\n{}",
                self.body_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A PNG of the window, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("the screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
