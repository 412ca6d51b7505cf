//! End-to-end harness: a real collector (in-process, on 127.0.0.1:0) serving the demo shop and
//! the built SDK, real headless browsers driven over WebDriver (Debian's Chromium through
//! chromedriver, Firefox ESR through geckodriver), and read access to the real SQLite store.
//!
//! Browser tests take a process-wide lock: two browsers at once on a 2-core machine make timing
//! flaky for no gain.

use fantoccini::{Client, ClientBuilder};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use waymark_collector::config::Config;
use waymark_collector::store::sqlite::SqliteStore;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

static BROWSER_LOCK: Mutex<()> = Mutex::new(());

/// Serialises browser tests.
pub fn exclusive() -> MutexGuard<'static, ()> {
    BROWSER_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A collector serving `demo-site/` and `sdk/dist/` from a fresh data directory.
pub struct Collector {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    /// Starts the collector in demo mode; `adjust` may change the configuration.
    ///
    /// # Panics
    /// If the SDK was not built (`cargo xtask build-sdk`) or the server cannot start.
    pub fn start(adjust: impl FnOnce(&mut Config)) -> Collector {
        let sdk = root().join("sdk/dist");
        assert!(
            sdk.join("waymark.js").is_file(),
            "the SDK is not built: run `cargo xtask build-sdk` first"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            sdk_dir: Some(sdk),
            demo_dir: Some(root().join("demo-site")),
            ..Config::default()
        };
        adjust(&mut config);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let _ = addr_tx.send(listener.local_addr().expect("addr"));
                waymark_collector::server::serve(config, listener, async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("collector failed");
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("collector address");
        let c = Collector {
            addr,
            dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        c.wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(addr).is_ok() && c.db_ready()
        });
        c
    }

    fn db_ready(&self) -> bool {
        rusqlite::Connection::open(SqliteStore::path_in(self.dir.path()))
            .and_then(|db| db.query_row("SELECT count(*) FROM sites", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n > 0)
    }

    /// `http://127.0.0.1:port` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A read connection to the store.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(SqliteStore::path_in(self.dir.path())).expect("open store")
    }

    /// One integer from a query.
    pub fn count(&self, sql: &str) -> i64 {
        self.db()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Strings from a query's first column.
    pub fn strings(&self, sql: &str) -> Vec<String> {
        let db = self.db();
        let mut stmt = db.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        stmt.query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Polls `cond` until it holds.
    ///
    /// # Panics
    /// When it does not within `limit`.
    pub fn wait_until(&self, limit: Duration, mut cond: impl FnMut() -> bool) {
        let started = Instant::now();
        while !cond() {
            assert!(
                started.elapsed() < limit,
                "condition not met within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a count query reaches at least `n`, and returns its final value.
    pub fn wait_count(&self, sql: &str, n: i64) -> i64 {
        let started = Instant::now();
        loop {
            let v = self.count(sql);
            if v >= n {
                return v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{sql} stayed at {v}, expected {n}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Which browser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chromium,
    Firefox,
}

/// The browsers to run a journey in: Chromium and Firefox, each when installed. A missing
/// browser is skipped with a note locally, and fails the test when `CI=true`.
///
/// # Panics
/// When `CI=true` and a browser is missing.
pub fn kinds() -> Vec<Kind> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    [Kind::Chromium, Kind::Firefox]
        .into_iter()
        .filter(|&k| {
            let ok = available(k);
            assert!(
                ok || !ci,
                "{k:?} is not installed (CI=true: failing, not skipping)"
            );
            if !ok {
                eprintln!("note: {k:?} is not installed; skipping it");
            }
            ok
        })
        .collect()
}

/// A desktop user agent of the browser under test. Headless Chromium announces itself as
/// `HeadlessChrome`, which the collector rightly counts as automation and never stores as a
/// visit, so tests present an ordinary desktop Chrome user agent. Firefox keeps its own (its
/// headless mode does not change the user agent).
pub fn user_agent(kind: Kind) -> Option<String> {
    match kind {
        Kind::Chromium => Some(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/156.0.0.0 Safari/537.36"
                .into(),
        ),
        Kind::Firefox => None,
    }
}

/// How to start the browser.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub user_agent: Option<String>,
    /// Firefox: `navigator.globalPrivacyControl === true`.
    pub gpc: bool,
    /// Chromium: `navigator.doNotTrack === "1"`.
    pub do_not_track: bool,
}

/// A WebDriver server process and a session on it; both end on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether a browser and its driver are installed (tests of the other browser still run).
pub fn available(kind: Kind) -> bool {
    let (browser, driver) = match kind {
        Kind::Chromium => ("/usr/bin/chromium", "chromedriver"),
        Kind::Firefox => ("/usr/bin/firefox-esr", "geckodriver"),
    };
    Path::new(browser).exists()
        && Command::new(driver)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

impl Browser {
    /// Starts a headless browser with a fresh profile.
    ///
    /// # Panics
    /// When the driver or browser cannot be started.
    pub async fn start(kind: Kind, opts: &Options) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let downloads = profile.path().join("downloads");
        let _ = std::fs::create_dir_all(&downloads);
        let port = free_port();
        let driver = match kind {
            Kind::Chromium => Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn(),
            Kind::Firefox => Command::new("geckodriver")
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn(),
        }
        .expect("start the WebDriver server");
        let caps = match kind {
            Kind::Chromium => {
                let mut args = vec![
                    "--headless".to_string(),
                    "--no-sandbox".into(),
                    "--disable-gpu".into(),
                    "--disable-quic".into(),
                    "--no-first-run".into(),
                    "--disable-background-networking".into(),
                    "--disable-component-update".into(),
                    "--disable-sync".into(),
                    "--disable-dev-shm-usage".into(),
                    "--window-size=1280,900".into(),
                    format!("--user-data-dir={}", profile.path().display()),
                ];
                if let Some(ua) = &opts.user_agent {
                    args.push(format!("--user-agent={ua}"));
                }
                serde_json::json!({
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": "/usr/bin/chromium",
                        "args": args,
                        "prefs": {
                            "enable_do_not_track": opts.do_not_track,
                            // Downloads (the care-guide link) stay inside the temporary profile.
                            "download.default_directory": downloads.display().to_string(),
                            "download.prompt_for_download": false,
                        },
                    }
                })
            }
            Kind::Firefox => {
                let mut prefs = serde_json::json!({
                    "privacy.globalprivacycontrol.enabled": opts.gpc,
                    "privacy.globalprivacycontrol.functionality.enabled": opts.gpc,
                    "network.proxy.type": 0,
                    "app.update.enabled": false,
                    "browser.shell.checkDefaultBrowser": false,
                    "datareporting.policy.dataSubmissionEnabled": false,
                    "toolkit.telemetry.enabled": false,
                    // Downloads (the care-guide link) stay inside the temporary profile.
                    "browser.download.folderList": 2,
                    "browser.download.dir": downloads.display().to_string(),
                    "browser.download.useDownloadDir": true,
                    "browser.download.always_ask_before_handling_new_types": false,
                });
                if let Some(ua) = &opts.user_agent {
                    prefs["general.useragent.override"] = serde_json::json!(ua);
                }
                serde_json::json!({
                    "browserName": "firefox",
                    "moz:firefoxOptions": {
                        "binary": "/usr/bin/firefox-esr",
                        "args": ["-headless", "-profile", profile.path().display().to_string(),
                                 "-width", "1280", "-height", "900"],
                        "prefs": prefs,
                    }
                })
            }
        };
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "cannot start {kind:?}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Ends the session (closing the browser) and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    /// Runs JavaScript in the page and returns its value.
    ///
    /// # Panics
    /// When the script throws.
    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
