//! Shared pieces of the journeys: which browsers to run, a browser tab bound to one collector,
//! and asynchronous polling of the store.

use fantoccini::{Client, Locator};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use waymark_tests::{kinds, user_agent};
use waymark_tests::{Browser, Collector, Kind, Options};

/// Longest wait for something the collector should store.
pub const STORE_WAIT: Duration = Duration::from_secs(20);

/// Runs `journey` once per available browser, in order. Every browser runs even when an
/// earlier one failed; the test then fails naming each failing browser.
pub async fn for_each_browser<F, Fut>(journey: F)
where
    F: Fn(Kind) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut failures = Vec::new();
    for kind in kinds() {
        let started = Instant::now();
        let outcome = tokio::spawn(journey(kind)).await;
        eprintln!("  {kind:?}: {:.1} s", started.elapsed().as_secs_f64());
        if let Err(e) = outcome {
            failures.push(panic_message(e));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return format!("journey task failed: {e}");
    }
    let p = e.into_panic();
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_default()
}

/// Options for an ordinary visitor in `kind`.
pub fn visitor(kind: Kind) -> Options {
    Options {
        user_agent: user_agent(kind),
        ..Options::default()
    }
}

/// Starts `kind` with `opts`, runs `body` with a tab on collector `c`, and always closes the
/// browser afterwards, also when `body` panics (the panic is then passed on, naming the browser).
pub async fn with_browser<F, Fut>(kind: Kind, opts: Options, c: &Arc<Collector>, body: F)
where
    F: FnOnce(Tab) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let browser = Browser::start(kind, &opts).await;
    let tab = Tab {
        client: browser.client.clone(),
        kind,
        base: c.url(""),
    };
    let outcome = tokio::spawn(body(tab)).await;
    browser.close().await;
    if let Err(e) = outcome {
        panic!("[{kind:?}] {}", panic_message(e));
    }
}

/// One browser window on the demo shop of one collector.
#[derive(Clone)]
pub struct Tab {
    pub client: Client,
    pub kind: Kind,
    base: String,
}

impl Tab {
    /// `http://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Loads a page of the shop (WebDriver waits for the load event).
    pub async fn goto(&self, path: &str) {
        let url = self.url(path);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Runs JavaScript in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// A real (WebDriver) click on the first element matching `css`.
    pub async fn click(&self, css: &str) {
        let el = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"));
        // The shop sets `scroll-behavior: smooth`; the driver's own scroll-into-view would then
        // click where the element was before the scroll animation ended (Chromium reports
        // "element click intercepted"). Centre it instantly first, as a person's scroll would.
        let arg = serde_json::to_value(&el).expect("element reference");
        self.client
            .execute(
                "arguments[0].scrollIntoView({block: 'center', inline: 'nearest', behavior: 'instant'}); return true",
                vec![arg],
            )
            .await
            .unwrap_or_else(|e| panic!("scroll to {css}: {e}"));
        el.click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Clicks a link or button that loads another page and waits until the new page has loaded
    /// (`path` is the new location's path).
    pub async fn click_to(&self, css: &str, path: &str) {
        self.click(css).await;
        self.wait_js(
            &format!("return location.pathname === {path:?} && document.readyState === 'complete'"),
            &format!("page {path} after clicking {css}"),
        )
        .await;
    }

    /// Polls a JavaScript condition until it returns `true` (at most 10 s).
    pub async fn wait_js(&self, condition: &str, what: &str) {
        let started = Instant::now();
        loop {
            // Errors while a navigation is in progress are expected: poll again.
            if let Ok(Value::Bool(true)) = self.client.execute(condition, vec![]).await {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "waited 10 s for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the Wasm SDK has loaded and replaced the queueing stub of the page snippet.
    pub async fn wait_sdk(&self) {
        self.wait_js(
            "return document.readyState === 'complete' && typeof window.waymark === 'function' \
             && String(window.waymark).indexOf('.push(arguments)') < 0",
            "the SDK to load",
        )
        .await;
    }

    /// `waymark('flush')`: sends whatever the SDK has queued now instead of in 5 s.
    pub async fn flush(&self) {
        self.js("waymark('flush'); return true").await;
    }

    /// Waits for the consent banner and clicks Accept.
    pub async fn accept(&self) {
        self.wait_js(
            "var b = document.getElementById('consent-banner'); return !!b && !b.hidden",
            "the consent banner",
        )
        .await;
        self.click("#consent-accept").await;
        self.wait_js(
            "return document.getElementById('consent-banner').hidden === true",
            "the banner to close",
        )
        .await;
    }

    /// One animation frame (and a little more) for the SDK's scroll measurement.
    pub async fn frame(&self) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    /// Nothing stored on the device by the SDK: no cookie, no localStorage entry, no
    /// sessionStorage key but the shop's own `demo-*` ones, no IndexedDB database.
    pub async fn assert_no_client_storage(&self, when: &str) {
        let v = self
            .js("return [document.cookie, window.localStorage.length, \
                 Object.keys(window.sessionStorage).filter(function (k) { \
                   return k.indexOf('demo-') !== 0; })]")
            .await;
        assert_eq!(
            v,
            serde_json::json!(["", 0, []]),
            "cookie / localStorage / sessionStorage {when}"
        );
        let idb = self
            .client
            .execute_async(
                "var done = arguments[arguments.length - 1]; \
                 indexedDB.databases().then(function (d) { done(d.map(function (x) { return x.name; })); }, \
                   function (e) { done(['error: ' + e]); });",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("indexedDB.databases(): {e}"));
        assert_eq!(idb, serde_json::json!([]), "IndexedDB {when}");
    }
}

/// Polls a count query until it reaches `n` (without blocking the runtime); returns the value.
pub async fn wait_count(c: &Collector, sql: &str, n: i64) -> i64 {
    let started = Instant::now();
    loop {
        let v = c.count(sql);
        if v >= n {
            return v;
        }
        assert!(
            started.elapsed() < STORE_WAIT,
            "{sql} stayed at {v}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that a count query stays at `n` for `period` (for "nothing is sent" checks: the
/// absence of a request can only be observed by waiting a little).
pub async fn stays(c: &Collector, sql: &str, n: i64, period: Duration) {
    let started = Instant::now();
    loop {
        let v = c.count(sql);
        assert_eq!(v, n, "{sql}");
        if started.elapsed() >= period {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Events and batches stored so far.
pub fn stored(c: &Collector) -> (i64, i64) {
    (
        c.count("SELECT count(*) FROM events"),
        c.count("SELECT count(*) FROM batches"),
    )
}

/// Starts a collector for one journey, shared with the journey's browser task.
pub fn collector(adjust: impl FnOnce(&mut waymark_collector::config::Config)) -> Arc<Collector> {
    Arc::new(Collector::start(adjust))
}

impl Tab {
    /// Types `text` into the input matching `css` (real key events).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.click(css).await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.js(&format!(
            "var e = document.querySelector({css:?}); return e ? e.textContent.trim() : null"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }
}

/// The files of the collector's data directory (the database, its WAL and shared memory)
/// whose bytes contain `needle`.
pub fn files_containing(c: &Collector, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut files = 0;
    let mut stack = vec![c.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read data dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).expect("read store file");
            if bytes
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
            {
                hits.push(path.display().to_string());
            }
        }
    }
    assert!(
        files >= 1,
        "no store files found in {}",
        c.dir.path().display()
    );
    hits
}
