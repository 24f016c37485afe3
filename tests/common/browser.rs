//! A real headless Chromium for the dashboard tests, driven over W3C WebDriver by Debian's
//! `chromedriver` (packages `chromium` and `chromium-driver`, which `scripts/test` installs).
//!
//! One chromedriver per test process, started on first use on a free port of 127.0.0.1 and
//! shared by every [`Browser`] of the process. Each `Browser` is its own Chromium: its own
//! WebDriver session and a fresh profile directory, so two browsers (an admin and a viewer,
//! say) share no cookies.
//!
//! Nothing outlives the test process. chromedriver runs in a process group of its own under a
//! small `sh` watchdog whose standard input is a pipe that only this process writes to. However
//! the process ends (the tests are done, a panic, SIGKILL), the kernel closes that pipe, the
//! watchdog's `read` returns and it kills the whole group: chromedriver and every Chromium it
//! started (they stay in chromedriver's group), and removes the process's directory (chromedriver's
//! log, the profiles). Each `Browser` also ends its session and removes its profile when
//! dropped, so all this normally happens long before.
//!
//! When a test panics while a `Browser` is alive, dropping it saves a screenshot and the page's
//! HTML as `target/browser-failures/<test name>.png` and `.html`, and prints their paths.
//!
//! The client (`browser/webdriver.rs`) is a few JSON calls over the reqwest the service already
//! depends on (ARCHITECTURE.md, Decisions, says why not fantoccini or thirtyfour). Its methods block, as the rest of
//! tests/common does: call them from plain `#[test]` functions, not inside a tokio runtime.
//! They panic with a message naming the selector and the page, as test helpers here do.

mod webdriver;

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use webdriver::{CHROMIUM, WebDriverError, base64_decode, binary, driver, tail};

/// WebDriver's code for the Tab key (for [`Browser::press`]).
pub const TAB: &str = "\u{E004}";

/// The W3C key under which an element reference comes back.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Chromium's flags: headless, as root (no sandbox), and quiet on this closed network (without
/// the background-networking flags it keeps trying to reach Google's hosts).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--window-size=1280,900",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--password-store=basic",
];

/// The `target` directory of this build (the parent of cargo's test scratch directory).
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// Where failed tests leave their screenshots and pages: `target/browser-failures`.
pub fn failure_dir() -> PathBuf {
    target_dir().join("browser-failures")
}

/// A cookie as the browser holds it (HttpOnly ones included: WebDriver sees them all).
#[derive(Debug, Clone, Deserialize)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub secure: bool,
    #[serde(default, rename = "httpOnly")]
    pub http_only: bool,
    /// `Strict`, `Lax` or `None`.
    #[serde(default, rename = "sameSite")]
    pub same_site: Option<String>,
    /// Seconds since the epoch; `None` for a session cookie.
    #[serde(default)]
    pub expiry: Option<u64>,
}

/// The answer to a request made by the page itself ([`Browser::fetch`]).
#[derive(Debug, Clone, Deserialize)]
pub struct Fetched {
    /// The HTTP status; 0 when the request failed (the error is in `body`).
    pub status: u16,
    /// The final URL, after redirects.
    pub url: String,
    /// Whether a redirect was followed.
    pub redirected: bool,
    pub body: String,
}

thread_local! {
    /// Browsers opened by this thread (= this test), to name failure files apart.
    static OPENED: Cell<u32> = const { Cell::new(0) };
}

/// One headless Chromium, driven by the test (see the module's documentation).
pub struct Browser {
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    /// The name of its failure files: the test's name, `-2`, `-3`... for later browsers.
    name: String,
    /// The fresh profile; removed after the session ends.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver if this process has none yet, then a new headless Chromium.
    pub fn new() -> Browser {
        let driver = driver();
        let profile = tempfile::Builder::new()
            .prefix("profile-")
            .tempdir_in(&driver.root)
            .expect("a temporary Chromium profile directory");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let chromium = binary("PGBACKUPS_TEST_CHROMIUM", CHROMIUM);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"implicit": 0, "pageLoad": 30_000, "script": 30_000},
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let answer = webdriver::call(
            "POST",
            &format!("{}/session", driver.url),
            Some(capabilities),
        )
        .unwrap_or_else(|e| {
            panic!(
                "could not start Chromium: {e}\nchromedriver's log:\n{}",
                tail(
                    &std::fs::read_to_string(&driver.log).unwrap_or_default(),
                    40
                )
            )
        });
        let Some(id) = answer["sessionId"].as_str() else {
            panic!("chromedriver created a session without an ID: {answer}");
        };
        let number = OPENED.with(|n| {
            n.set(n.get() + 1);
            n.get()
        });
        let test = std::thread::current()
            .name()
            .unwrap_or("unnamed-test")
            .to_string();
        let mut name: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if number > 1 {
            name.push_str(&format!("-{number}"));
        }
        Browser {
            session: format!("{}/session/{id}", driver.url),
            name,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WebDriverError> {
        webdriver::call(method, &format!("{}{path}", self.session), body)
    }

    /// A command that must succeed; the panic names what was asked and the page.
    #[track_caller]
    fn must(&self, what: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.call(method, path, body) {
            Ok(value) => value,
            Err(e) => panic!("{what} failed on {}: {e}", self.here()),
        }
    }

    /// The current URL for messages, or a placeholder if even that fails.
    fn here(&self) -> String {
        match self.call("GET", "/url", None) {
            Ok(Value::String(url)) => url,
            _ => "(the page's URL is unknown)".to_string(),
        }
    }

    /// Opens `url` and waits until the page has loaded.
    #[track_caller]
    pub fn goto(&self, url: &str) {
        self.must(
            &format!("opening {url}"),
            "POST",
            "/url",
            Some(json!({"url": url})),
        );
    }

    /// The current page's URL.
    #[track_caller]
    pub fn url(&self) -> String {
        self.must("reading the URL", "GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Reloads the current page.
    #[track_caller]
    pub fn refresh(&self) {
        self.must("reloading", "POST", "/refresh", Some(json!({})));
    }

    /// The current page's title.
    #[track_caller]
    pub fn title(&self) -> String {
        self.must("reading the title", "GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching `css`, or None when nothing matches.
    #[track_caller]
    fn find(&self, css: &str) -> Option<String> {
        let body = json!({"using": "css selector", "value": css});
        match self.call("POST", "/element", Some(body)) {
            Ok(element) => element[ELEMENT_KEY].as_str().map(str::to_string),
            Err(e) if e.is_no_such_element() => None,
            Err(e) => panic!("looking for {css:?} failed on {}: {e}", self.here()),
        }
    }

    /// The first element matching `css`; panics naming the selector and the page if none does.
    #[track_caller]
    fn element(&self, css: &str) -> String {
        match self.find(css) {
            Some(element) => element,
            None => panic!("no element matches {css:?} on {}", self.here()),
        }
    }

    /// Whether some element matches `css` now (no waiting).
    #[track_caller]
    pub fn exists(&self, css: &str) -> bool {
        self.find(css).is_some()
    }

    /// How many elements match `css` now (table rows, say).
    #[track_caller]
    pub fn count(&self, css: &str) -> usize {
        let body = json!({"using": "css selector", "value": css});
        self.must(
            &format!("counting {css:?}"),
            "POST",
            "/elements",
            Some(body),
        )
        .as_array()
        .map_or(0, Vec::len)
    }

    /// Replaces the value of the input matching `css` with `text`, typed as keys.
    #[track_caller]
    pub fn fill(&self, css: &str, text: &str) {
        let el = self.element(css);
        let what = format!("filling {css:?}");
        self.must(
            &what,
            "POST",
            &format!("/element/{el}/clear"),
            Some(json!({})),
        );
        self.must(
            &what,
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        );
    }

    /// Clicks the element matching `css` (waits for a navigation it starts).
    #[track_caller]
    pub fn click(&self, css: &str) {
        let el = self.element(css);
        self.must(
            &format!("clicking {css:?}"),
            "POST",
            &format!("/element/{el}/click"),
            Some(json!({})),
        );
    }

    /// The rendered text of the element matching `css`; panics if none does.
    #[track_caller]
    pub fn text(&self, css: &str) -> String {
        match self.try_text(css) {
            Some(text) => text,
            None => panic!("no element matches {css:?} on {}", self.here()),
        }
    }

    /// The rendered text of the element matching `css`, or None when none does (for
    /// [`Browser::wait_until`] predicates).
    #[track_caller]
    pub fn try_text(&self, css: &str) -> Option<String> {
        let el = self.find(css)?;
        match self.call("GET", &format!("/element/{el}/text"), None) {
            Ok(text) => Some(text.as_str().unwrap_or_default().to_string()),
            // Replaced between the lookup and the read (a live update): as if not there yet.
            Err(WebDriverError::Driver { error, .. }) if error == "stale element reference" => None,
            Err(e) => panic!("reading the text of {css:?} failed on {}: {e}", self.here()),
        }
    }

    /// The attribute `name` of the element matching `css` (None when it has no such
    /// attribute); panics if no element matches. An element replaced between the lookup and
    /// the read (a live update every second) is looked up again.
    #[track_caller]
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        let mut tries = 0;
        loop {
            let el = self.element(css);
            match self.call("GET", &format!("/element/{el}/attribute/{name}"), None) {
                Ok(value) => return value.as_str().map(str::to_string),
                Err(WebDriverError::Driver { error, .. })
                    if error == "stale element reference" && tries < 5 =>
                {
                    tries += 1;
                }
                Err(e) => panic!("reading {name} of {css:?} failed on {}: {e}", self.here()),
            }
        }
    }

    /// The current page's HTML as the browser holds it now (after scripts ran).
    #[track_caller]
    pub fn source(&self) -> String {
        self.must("reading the page source", "GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until an element matches `css`, polling; panics after `timeout`.
    #[track_caller]
    pub fn wait_for(&self, css: &str, timeout: Duration) {
        self.wait_until(&format!("an element matching {css:?}"), timeout, |b| {
            b.exists(css)
        });
    }

    /// Waits until `done(self)` is true, polling every 100 ms; panics after `timeout`, saying
    /// it waited for `what`.
    #[track_caller]
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Browser) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() >= deadline {
                panic!("waited {timeout:?} for {what} on {}", self.here());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sets cookie `name` for the current page's site (open a page of the service first, as
    /// WebDriver requires), path `/`.
    #[track_caller]
    pub fn set_cookie(&self, name: &str, value: &str) {
        let cookie = json!({"cookie": {"name": name, "value": value, "path": "/"}});
        self.must(
            &format!("setting cookie {name}"),
            "POST",
            "/cookie",
            Some(cookie),
        );
    }

    /// The cookies of the current page's site.
    #[track_caller]
    pub fn cookies(&self) -> Vec<Cookie> {
        let all = self.must("reading cookies", "GET", "/cookie", None);
        match serde_json::from_value(all.clone()) {
            Ok(cookies) => cookies,
            Err(e) => panic!("cookies in an unexpected shape ({e}): {all}"),
        }
    }

    /// Runs `script` in the page (a function body; `arguments` are `args`) and returns what it
    /// returns.
    #[track_caller]
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.must(
            "running a script",
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs `script` in the page as an asynchronous function body: it ends by calling its last
    /// argument (`arguments[arguments.length - 1]`) with the result, which this returns. The
    /// script timeout (30 s) bounds it.
    #[track_caller]
    pub fn execute_async(&self, script: &str, args: &[Value]) -> Value {
        self.must(
            "running an asynchronous script",
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Resizes the window so that the page's viewport is `width` x `height` CSS pixels (a
    /// phone's 390 x 844, say). Headless Chromium's window keeps room for a browser's frame
    /// (its viewport is shorter than the window), so the window is sized once, measured, and
    /// sized again by the difference; panics if the viewport still differs.
    #[track_caller]
    pub fn set_viewport(&self, width: u32, height: u32) {
        let mut window = (i64::from(width), i64::from(height));
        let mut inner = json!(null);
        for _ in 0..2 {
            self.must(
                &format!("resizing the window to {}x{}", window.0, window.1),
                "POST",
                "/window/rect",
                Some(json!({"width": window.0, "height": window.1})),
            );
            inner = self.execute("return [window.innerWidth, window.innerHeight];", &[]);
            let (w, h) = (inner[0].as_i64(), inner[1].as_i64());
            match (w, h) {
                (Some(w), Some(h)) if (w, h) == (i64::from(width), i64::from(height)) => return,
                (Some(w), Some(h)) => {
                    window.0 += i64::from(width) - w;
                    window.1 += i64::from(height) - h;
                }
                _ => break,
            }
        }
        panic!("the viewport is {inner} after resizing the window for {width}x{height}");
    }

    /// Presses `key` (a character, or a WebDriver key code such as [`TAB`]) `times` times in
    /// the focused element, as a person at the keyboard does (W3C actions: key down, key up).
    #[track_caller]
    pub fn press(&self, key: &str, times: usize) {
        let mut actions = Vec::with_capacity(times * 2);
        for _ in 0..times {
            actions.push(json!({"type": "keyDown", "value": key}));
            actions.push(json!({"type": "keyUp", "value": key}));
        }
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.must(
            &format!("pressing {key:?} {times} times"),
            "POST",
            "/actions",
            Some(body),
        );
        // Releases whatever is still held, so the next actions start clean.
        self.must("releasing the keys", "DELETE", "/actions", None);
    }

    /// Makes the page itself send a request with `fetch()`: the browser's cookies go with it
    /// (`credentials: same-origin`) and redirects are followed, so it is what a forged or
    /// scripted request from the page gets. `url` may be relative to the page.
    #[track_caller]
    pub fn fetch(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Fetched {
        const FETCH: &str = r#"
            const [method, url, headers, body, done] = arguments;
            fetch(url, {method, headers, body: body === null ? undefined : body,
                        credentials: 'same-origin'})
              .then(r => r.text().then(text =>
                  done({status: r.status, url: r.url, redirected: r.redirected, body: text})))
              .catch(e => done({status: 0, url, redirected: false, body: String(e)}));
        "#;
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let answer = self.must(
            &format!("fetch {method} {url}"),
            "POST",
            "/execute/async",
            Some(json!({"script": FETCH, "args": [method, url, headers, body]})),
        );
        match serde_json::from_value(answer.clone()) {
            Ok(fetched) => fetched,
            Err(e) => panic!("fetch {method} {url} answered {answer} ({e})"),
        }
    }

    /// A PNG of the viewport.
    fn png(&self) -> Result<Vec<u8>, String> {
        let data = self
            .call("GET", "/screenshot", None)
            .map_err(|e| e.to_string())?;
        let data = data.as_str().ok_or("the screenshot is not a string")?;
        base64_decode(data).ok_or_else(|| "the screenshot is not base64".to_string())
    }

    /// Saves a PNG of the viewport to `path` (creating its directory).
    #[track_caller]
    pub fn screenshot(&self, path: &Path) {
        let png = match self.png() {
            Ok(png) => png,
            Err(e) => panic!("taking a screenshot failed: {e}"),
        };
        if let Err(e) = write_file(path, &png) {
            panic!("writing the screenshot {}: {e}", path.display());
        }
    }

    /// Where this browser's failure screenshot goes: `target/browser-failures/<test>.png`.
    pub fn failure_screenshot_path(&self) -> PathBuf {
        failure_dir().join(format!("{}.png", self.name))
    }

    /// Saves the screenshot and the page's HTML of a failed test; never panics (it runs while
    /// a panic unwinds) and says on stderr what it saved or why it could not.
    fn save_failure(&self) {
        let png_path = self.failure_screenshot_path();
        match self.png().and_then(|png| write_file(&png_path, &png)) {
            Ok(()) => eprintln!("browser: screenshot of the failure: {}", png_path.display()),
            Err(e) => eprintln!("browser: no screenshot of the failure: {e}"),
        }
        let html_path = png_path.with_extension("html");
        let html = match self.call("GET", "/source", None) {
            Ok(Value::String(html)) => html,
            _ => return,
        };
        match write_file(&html_path, html.as_bytes()) {
            Ok(()) => eprintln!("browser: the page's HTML: {}", html_path.display()),
            Err(e) => eprintln!("browser: the page's HTML was not saved: {e}"),
        }
    }
}

impl Default for Browser {
    fn default() -> Browser {
        Browser::new()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.save_failure();
        }
        // Ends Chromium; the profile directory is removed after this (field drop).
        let _ = webdriver::call("DELETE", &self.session, None);
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}
