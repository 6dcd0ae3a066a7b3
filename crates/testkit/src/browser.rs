//! A real headless Chromium for the web UI tests, driven through chromedriver with fantoccini.
//!
//! Each test gets its own chromedriver on a free loopback port and a fresh Chromium profile in a
//! temporary directory; both go away when the [`Browser`] is closed or dropped. chromedriver
//! speaks plain HTTP on loopback, so the WebDriver client has no TLS stack at all.
//!
//! Binaries: `/usr/bin/chromedriver` and `/usr/bin/chromium`, or `$BREAKGLASS_CHROMEDRIVER` and
//! `$BREAKGLASS_CHROMIUM`. When either is missing the test is skipped through [`crate::skip`]
//! (which fails under `CI=true`). Screenshots go to `$BREAKGLASS_SCREENSHOT_DIR`, else
//! `target/ui-screenshots/` of the workspace.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// Default chromedriver binary; override with `BREAKGLASS_CHROMEDRIVER`.
pub const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Default Chromium binary; override with `BREAKGLASS_CHROMIUM`.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How long chromedriver may take to answer `/status` as ready.
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many bytes of the chromedriver log a panic message quotes.
const LOG_TAIL_BYTES: usize = 4000;

/// A headless Chromium driven through chromedriver, for one test.
///
/// Dropping it (or calling [`Browser::close`]) ends the session and stops chromedriver.
pub struct Browser {
    client: Client,
    driver: Child,
    addr: SocketAddr,
    /// Holds the Chromium profile and the chromedriver log; removed on drop.
    _dir: tempfile::TempDir,
    test: String,
}

/// Starts chromedriver on a free loopback port and opens a headless Chromium session with a
/// fresh profile. Returns `None` after [`crate::skip`] when Chromium or chromedriver is missing;
/// panics (with the chromedriver log tail) when they are present but do not start.
pub async fn browser(test: &str) -> Option<Browser> {
    let driver_bin = binary("BREAKGLASS_CHROMEDRIVER", DEFAULT_CHROMEDRIVER);
    let chromium_bin = binary("BREAKGLASS_CHROMIUM", DEFAULT_CHROMIUM);
    for (what, path) in [("chromedriver", &driver_bin), ("Chromium", &chromium_bin)] {
        if !path.is_file() {
            crate::skip(test, &format!("{what} not found at {}", path.display()));
            return None;
        }
    }

    let dir = tempfile::Builder::new()
        .prefix("breakglass-browser-")
        .tempdir()
        .unwrap_or_else(|e| panic!("{test}: cannot create a temporary directory: {e}"));
    let profile = dir.path().join("profile");
    let log_path = dir.path().join("chromedriver.log");
    let log = std::fs::File::create(&log_path)
        .unwrap_or_else(|e| panic!("{test}: cannot create {}: {e}", log_path.display()));
    let log_err = log
        .try_clone()
        .unwrap_or_else(|e| panic!("{test}: cannot duplicate the log file handle: {e}"));

    let port = free_port(test);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let driver = Command::new(&driver_bin)
        .arg(format!("--port={port}"))
        .arg("--log-level=INFO")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("{test}: cannot start {}: {e}", driver_bin.display()));

    // From here on the Browser-less driver must not outlive a panic: wrap it first.
    let mut guard = DriverGuard {
        driver: Some(driver),
        addr,
    };
    wait_until_ready(test, &mut guard, &log_path).await;

    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium_bin.to_string_lossy(),
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let client = match ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://{addr}"))
        .await
    {
        Ok(c) => c,
        Err(e) => panic!(
            "{test}: cannot open a Chromium session through chromedriver at {addr}: {e}\n\
             --- chromedriver log tail ({}) ---\n{}",
            log_path.display(),
            log_tail(&log_path)
        ),
    };

    let Some(driver) = guard.driver.take() else {
        unreachable!("the guard holds the driver until here")
    };
    Some(Browser {
        client,
        driver,
        addr,
        _dir: dir,
        test: test.to_owned(),
    })
}

impl Browser {
    /// The WebDriver client, for navigation, finding elements, clicking and typing.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Resizes the window (e.g. 390x844 for a phone).
    pub async fn set_size(&self, w: u32, h: u32) {
        if let Err(e) = self.client.set_window_size(w, h).await {
            panic!("{}: cannot resize the window to {w}x{h}: {e}", self.test);
        }
    }

    /// Saves a PNG screenshot of the viewport to the artifact directory and returns its path:
    /// `$BREAKGLASS_SCREENSHOT_DIR` if set, else `ui-screenshots/` under `$CARGO_TARGET_DIR`,
    /// else under the `target/` next to the nearest `Cargo.lock` above the current directory.
    /// `"dashboard"` becomes `dashboard.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = match self.client.screenshot().await {
            Ok(png) => png,
            Err(e) => panic!("{}: cannot take screenshot {name:?}: {e}", self.test),
        };
        let dir = screenshot_dir();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("{}: cannot create {}: {e}", self.test, dir.display());
        }
        let file = if name.ends_with(".png") {
            name.to_owned()
        } else {
            format!("{name}.png")
        };
        let path = dir.join(file);
        if let Err(e) = std::fs::write(&path, png) {
            panic!("{}: cannot write {}: {e}", self.test, path.display());
        }
        path
    }

    /// Waits up to `timeout` until the element matching CSS `selector` exists and its text
    /// contains `text`, ignoring case (the rendered text follows CSS `text-transform`). Panics on timeout with the selector, the expected text, the last text
    /// seen (or why the element could not be read) and the page's current URL.
    pub async fn wait_for_text(&self, selector: &str, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let wanted = text.to_lowercase();
        let last_seen = loop {
            let seen = match self.client.find(Locator::Css(selector)).await {
                Ok(el) => match el.text().await {
                    Ok(t) if t.to_lowercase().contains(&wanted) => return,
                    Ok(t) => format!("text {t:?}"),
                    Err(e) => format!("element found but its text could not be read: {e}"),
                },
                Err(e) => format!("no element matched: {e}"),
            };
            if Instant::now() >= deadline {
                break seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let url = match self.client.current_url().await {
            Ok(u) => u.to_string(),
            Err(e) => format!("<unknown: {e}>"),
        };
        panic!(
            "{}: timed out after {timeout:?} waiting for {selector:?} to contain {text:?}\n  \
             last seen: {last_seen}\n  page URL: {url}",
            self.test
        );
    }

    /// Ends the session and stops chromedriver.
    pub async fn close(self) {
        // Errors are ignored: `Drop` still shuts chromedriver down, which quits Chromium.
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // `dir` (profile and log) is removed when the fields drop, after chromedriver is gone.
        stop_driver(&mut self.driver, self.addr);
    }
}

/// Owns chromedriver between its start and the session's creation, so a panic there stops it.
struct DriverGuard {
    driver: Option<Child>,
    addr: SocketAddr,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            stop_driver(&mut driver, self.addr);
        }
    }
}

/// Asks chromedriver to quit (its `/shutdown` also quits the browsers it started), then kills
/// it if it is still running and reaps it.
fn stop_driver(driver: &mut Child, addr: SocketAddr) {
    if matches!(driver.try_wait(), Ok(None)) {
        let _ = http_get(addr, "/shutdown", Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && matches!(driver.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = driver.kill();
    let _ = driver.wait();
}

/// The binary named by `var`, or `default`.
fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// A loopback port that was free a moment ago (chromedriver binds it right after).
fn free_port(test: &str) -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{test}: cannot find a free loopback port: {e}"))
}

/// Polls chromedriver's `/status` until it reports ready; panics with the log tail if it exits
/// or does not become ready in time.
async fn wait_until_ready(test: &str, guard: &mut DriverGuard, log_path: &Path) {
    let deadline = Instant::now() + DRIVER_READY_TIMEOUT;
    loop {
        if let Some(driver) = guard.driver.as_mut()
            && let Ok(Some(status)) = driver.try_wait()
        {
            panic!(
                "{test}: chromedriver exited before it was ready ({status})\n\
                 --- chromedriver log tail ({}) ---\n{}",
                log_path.display(),
                log_tail(log_path)
            );
        }
        let addr = guard.addr;
        let answer =
            tokio::task::spawn_blocking(move || http_get(addr, "/status", Duration::from_secs(1)))
                .await;
        let last = match answer {
            Ok(Ok(body)) if body.contains("\"ready\":true") || body.contains("\"ready\": true") => {
                return;
            }
            Ok(Ok(body)) => format!("not ready: {}", body.trim()),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            panic!(
                "{test}: chromedriver at {} not ready after {DRIVER_READY_TIMEOUT:?} ({last})\n\
                 --- chromedriver log tail ({}) ---\n{}",
                guard.addr,
                log_path.display(),
                log_tail(log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A minimal blocking HTTP/1.1 GET on loopback; returns the whole response (status line,
/// headers and body) as text. chromedriver keeps the connection open despite
/// `Connection: close`, so the body is read up to its `Content-Length`.
fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        if response_complete(&response) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Whether `response` holds the full headers and as much body as `Content-Length` announces.
fn response_complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let headers = String::from_utf8_lossy(&response[..end]);
    let length = headers
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    match length {
        Some(len) => response.len() >= end + 4 + len,
        // No length: only the end of the stream tells.
        None => false,
    }
}

/// The last few kilobytes of the chromedriver log, for panic messages.
fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("<cannot read the log: {e}>"),
    }
}

/// Where screenshots go; see [`Browser::screenshot`].
fn screenshot_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BREAKGLASS_SCREENSHOT_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let root = cwd
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or(&cwd)
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        // A relative target dir is taken as relative to the workspace root.
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    target.join("ui-screenshots")
}
