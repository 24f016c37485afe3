//! The WebDriver side of the browser harness: Debian's chromedriver as a process of its own
//! (one per test process, under a watchdog), and W3C WebDriver commands as JSON over HTTP with
//! the reqwest the service already depends on.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Debian's Chromium; `PGBACKUPS_TEST_CHROMIUM` overrides it.
pub(super) const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver (package `chromium-driver`); `PGBACKUPS_TEST_CHROMEDRIVER` overrides it.
pub(super) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long one WebDriver command may take (a page load, a script) before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong talking to chromedriver.
#[derive(Debug, thiserror::Error)]
pub enum WebDriverError {
    #[error("{command}: could not reach chromedriver: {source}")]
    Http {
        command: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{command}: chromedriver answered {status} {error}: {message}")]
    Driver {
        command: String,
        status: u16,
        /// The W3C error code, such as `no such element`.
        error: String,
        message: String,
    },
    #[error("{command}: unexpected answer from chromedriver: {answer}")]
    Malformed { command: String, answer: String },
}

impl WebDriverError {
    /// Whether no element matched (W3C `no such element`).
    pub(super) fn is_no_such_element(&self) -> bool {
        matches!(self, WebDriverError::Driver { error, .. } if error == "no such element")
    }
}

/// The HTTP side: one runtime and one reqwest client for every browser of the process.
struct Wire {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

fn wire() -> &'static Wire {
    static WIRE: OnceLock<Wire> = OnceLock::new();
    WIRE.get_or_init(|| {
        pgbackups::install_crypto();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("webdriver")
            .enable_all()
            .build()
            .expect("a tokio runtime for the WebDriver client");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .expect("a reqwest client for chromedriver");
        Wire { rt, http }
    })
}

/// One WebDriver command: `method url` with a JSON body; the answer's `value`.
pub(super) fn call(method: &str, url: &str, body: Option<Value>) -> Result<Value, WebDriverError> {
    wire().call(method, url, body)
}

impl Wire {
    fn call(&self, method: &str, url: &str, body: Option<Value>) -> Result<Value, WebDriverError> {
        let command = format!("{method} {}", url.split("/session/").last().unwrap_or(url));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a WebDriver method");
        self.rt.block_on(async {
            let mut req = self.http.request(method, url);
            if let Some(body) = body {
                req = req.json(&body);
            }
            let http = |source| WebDriverError::Http {
                command: command.clone(),
                source,
            };
            let resp = req.send().await.map_err(http)?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(http)?;
            let malformed = || WebDriverError::Malformed {
                command: command.clone(),
                answer: text.chars().take(500).collect(),
            };
            let mut answer: Value = serde_json::from_str(&text).map_err(|_| malformed())?;
            let value = answer
                .get_mut("value")
                .map(Value::take)
                .ok_or_else(malformed)?;
            if (200..300).contains(&status) {
                return Ok(value);
            }
            Err(WebDriverError::Driver {
                command: command.clone(),
                status,
                error: value["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_string(),
                message: value["message"].as_str().unwrap_or("").to_string(),
            })
        })
    }
}

/// The process's chromedriver, under its watchdog.
pub(super) struct Driver {
    /// `http://127.0.0.1:PORT`
    pub(super) url: String,
    /// This process's directory: chromedriver's log and the browsers' profiles; the watchdog
    /// removes it.
    pub(super) root: PathBuf,
    /// chromedriver's log, quoted when a session cannot be created.
    pub(super) log: PathBuf,
    /// The watchdog (`sh`), kept so that it is never waited for and reaped early.
    _watchdog: Child,
    /// The write end of the watchdog's pipe: closed by the kernel when this process ends.
    _lifeline: ChildStdin,
}

/// The watchdog: starts chromedriver (`$0`) on port `$1` logging into directory `$2`, waits
/// until its standard input ends (this process is gone), then stops its whole process group:
/// SIGTERM to the others (Chromium shuts down on it; the watchdog ignores it), a second for them
/// to exit, `$2` removed, and SIGKILL to what is left and to itself.
const WATCHDOG: &str = r#""$0" --port="$1" --log-path="$2/chromedriver.log" </dev/null >/dev/null 2>&1 &
read -r _
trap '' TERM
kill -TERM 0
sleep 1
rm -rf "$2"
kill -9 0
"#;

/// A browser binary: the path in environment variable `var`, else `default`.
pub(super) fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// The process's chromedriver, started on first use.
pub(super) fn driver() -> &'static Driver {
    static DRIVER: OnceLock<Driver> = OnceLock::new();
    DRIVER.get_or_init(start_driver)
}

fn start_driver() -> Driver {
    let chromedriver = binary("PGBACKUPS_TEST_CHROMEDRIVER", CHROMEDRIVER);
    let chromium = binary("PGBACKUPS_TEST_CHROMIUM", CHROMIUM);
    for (path, package) in [(&chromedriver, "chromium-driver"), (&chromium, "chromium")] {
        assert!(
            path.is_file(),
            "{} is missing: the browser tests need Debian's chromium and chromium-driver. \
             Run scripts/test (it installs them), or as root: apt-get install {package}",
            path.display()
        );
    }
    let mut last = String::new();
    for _ in 0..3 {
        let root = tempfile::Builder::new()
            .prefix("pgbackups-test-browser-")
            .tempdir()
            .expect("a temporary directory for chromedriver and the browsers")
            .keep();
        let log = root.join("chromedriver.log");
        let port = crate::common::free_port();
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&chromedriver)
            .arg(port.to_string())
            .arg(&root)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh, to start chromedriver under its watchdog");
        let lifeline = watchdog.stdin.take().expect("the watchdog's stdin pipe");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match call("GET", &format!("{url}/status"), None) {
                Ok(status) if status["ready"] == true => {
                    return Driver {
                        url,
                        root,
                        log,
                        _watchdog: watchdog,
                        _lifeline: lifeline,
                    };
                }
                Ok(status) => last = status.to_string(),
                Err(e) => last = e.to_string(),
            }
            if let Ok(Some(_)) = watchdog.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        last = format!(
            "{last}\n{}",
            tail(&std::fs::read_to_string(&log).unwrap_or_default(), 20)
        );
        // Closing the pipe makes the watchdog kill this attempt's chromedriver.
        drop(lifeline);
        let _ = watchdog.wait();
    }
    panic!(
        "chromedriver ({}) did not start: {last}",
        chromedriver.display()
    );
}

/// The last `n` lines of `text`.
pub(super) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Standard base64 (with padding) as WebDriver sends screenshots; None if it is not.
pub(super) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let body = bytes
        .strip_suffix(b"==")
        .or_else(|| bytes.strip_suffix(b"="));
    let body = body.unwrap_or(&bytes);
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= sextet(c)? << (18 - 6 * i);
        }
        let keep = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&n.to_be_bytes()[1..1 + keep]);
    }
    Some(out)
}
