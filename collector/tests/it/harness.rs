//! Starts real collectors on 127.0.0.1:0 (in-process, or as the `waymark` binary) and talks to
//! them over real HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use waymark_collector::config::Config;
use waymark_collector::store::sqlite::SqliteStore;
use waymark_collector::store::{Site, Store};

pub const ORIGIN: &str = "https://shop.example";
pub const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A data directory with the test site registered.
pub fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path()).unwrap();
    store
        .put_site(&Site {
            id: "shop".into(),
            origins: vec![ORIGIN.into()],
        })
        .unwrap();
    dir
}

/// A collector running in this process on its own runtime thread.
pub struct Server {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _keep: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
        let dir = data_dir();
        let mut s = Server::start_in(dir.path(), adjust);
        s._keep = Some(dir);
        s
    }

    pub fn start_in(dir: &Path, adjust: impl FnOnce(&mut Config)) -> Server {
        let mut config = Config {
            data_dir: dir.to_path_buf(),
            rate_limit_per_second: 1000,
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
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                waymark_collector::server::serve(config, listener, async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        // The listener is bound before start-up finishes (store, salts): wait until it answers.
        let health = format!("http://{addr}/healthz");
        let started = std::time::Instant::now();
        while agent().get(&health).call().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "collector did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            addr,
            dir: dir.to_path_buf(),
            stop: Some(stop_tx),
            thread: Some(thread),
            _keep: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Graceful stop: waits until in-flight work is committed.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(SqliteStore::path_in(&self.dir)).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A response reduced to what the tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.unwrap();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    Reply {
        status: r.status().as_u16(),
        headers,
        body: r.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// POSTs a body to /v1/batch as the SDK's fetch would.
pub fn post(server: &Server, body: &str) -> Reply {
    post_as(server, body, "application/json", Some(ORIGIN), UA)
}

pub fn post_as(
    server: &Server,
    body: &str,
    content_type: &str,
    origin: Option<&str>,
    ua: &str,
) -> Reply {
    let mut req = agent()
        .post(&server.url("/v1/batch"))
        .header("content-type", content_type)
        .header("user-agent", ua);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let r = reply(req.send(body));
    assert!(r.header("set-cookie").is_none(), "never a Set-Cookie");
    r
}

/// A unique batch id.
pub fn batch_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "b{:015}x{}",
        N.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

pub fn pageview(at: i64, path: &str) -> String {
    format!(
        r#"{{"type":"pageview","at":{at},"pv":"pv{:08}","url":"https://shop.example{path}"}}"#,
        at % 100_000_000
    )
}

pub fn body(batch: &str, sent_at: i64, events: &[String]) -> String {
    format!(
        r#"{{"site":"shop","batch":"{batch}","sent_at":{sent_at},"sdk":"test","events":[{}]}}"#,
        events.join(",")
    )
}
