//! The npm/Vite variant of the demo shop behaves the same as the script tag.
//!
//! `demo-site/vite-app/` imports `init` from the packed `waymark-sdk` tarball and is built by
//! `scripts/build-npm-apps.sh` into `demo-site/vite-app/dist/`, which the demo collector serves at
//! `/vite-app/dist/`. In headless Chromium (and Firefox when installed; with `CI=true` a missing
//! browser fails the test) this checks: nothing is captured, stored or sent before consent, even
//! for clicks made then; after Accept, the automatic page view, the `cart('add', …)` call and the
//! `track('newsletter_signup', …)` call all reach the store; and the page never sets a cookie or
//! writes localStorage.

use fantoccini::{Client, Locator};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use waymark_tests::{exclusive, kinds, root, user_agent, Browser, Collector, Kind, Options};

/// Longest wait for the page or the store.
const WAIT: Duration = Duration::from_secs(15);

fn visitor(kind: Kind) -> Options {
    Options {
        user_agent: user_agent(kind),
        ..Options::default()
    }
}

async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Polls a JavaScript condition until it returns `true`.
async fn wait_js(client: &Client, condition: &str, what: &str) {
    let started = Instant::now();
    loop {
        if let Ok(Value::Bool(true)) = client.execute(condition, vec![]).await {
            return;
        }
        assert!(started.elapsed() < WAIT, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A real (WebDriver) click. The shop's CSS scrolls smoothly, so the element is centred instantly
/// first (the driver's own scroll-into-view would click where the element was mid-animation).
async fn click(client: &Client, css: &str) {
    let el = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("find {css}: {e}"));
    let arg = serde_json::to_value(&el).expect("element reference");
    client
        .execute(
            "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'}); return true",
            vec![arg],
        )
        .await
        .unwrap_or_else(|e| panic!("scroll to {css}: {e}"));
    el.click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Waits (without blocking the runtime) until a count query reaches `n`; returns its value.
async fn wait_count(c: &Collector, sql: &str, n: i64) -> i64 {
    let started = Instant::now();
    loop {
        let v = c.count(sql);
        if v >= n {
            return v;
        }
        assert!(
            started.elapsed() < WAIT,
            "{sql} stayed at {v}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No cookie and nothing in localStorage (the shop's own consent choice and cart live in
/// sessionStorage, as on the script-tag pages).
async fn assert_no_storage(client: &Client, when: &str) {
    let cookie = js(client, "return document.cookie").await;
    assert_eq!(cookie, Value::from(""), "document.cookie {when}");
    let local = js(client, "return localStorage.length").await;
    assert_eq!(local, Value::from(0), "localStorage.length {when}");
}

const PAGEVIEWS: &str =
    "SELECT count(*) FROM events WHERE site = 'demo-shop' AND type = 'pageview' AND path = '/vite-app/dist'";
const CART_ADDS: &str = "SELECT count(*) FROM events WHERE site = 'demo-shop' AND type = 'cart' \
     AND action = 'add' AND path = '/vite-app/dist' AND currency = 'EUR' AND items LIKE '%sku-mug%'";
const SIGNUPS: &str = "SELECT count(*) FROM events WHERE site = 'demo-shop' AND type = 'custom' \
     AND name = 'newsletter_signup' AND path = '/vite-app/dist' AND props LIKE '%vite%'";

async fn journey(kind: Kind, client: Client, c: Arc<Collector>) {
    client
        .goto(&c.url("/vite-app/dist/"))
        .await
        .unwrap_or_else(|e| panic!("goto /vite-app/dist/: {e}"));
    // `init()` resolved (the Wasm from dist/assets/ loaded) and the page wired its buttons.
    wait_js(
        &client,
        "return document.body.dataset.sdk === 'ready' && typeof window.__waymark === 'object'",
        "the Vite app and its SDK to load",
    )
    .await;
    wait_js(
        &client,
        "var b = document.getElementById('consent-banner'); return !!b && !b.hidden",
        "the consent banner",
    )
    .await;
    let asset = js(
        &client,
        "return performance.getEntriesByType('resource').map(function (r) { return r.name; })\
             .filter(function (n) { return /\\/vite-app\\/dist\\/assets\\/.*\\.wasm$/.test(n); }).length",
    )
    .await;
    assert_eq!(
        asset,
        Value::from(1),
        "[{kind:?}] the SDK's .wasm is loaded from the Vite output"
    );

    // Before consent: the visitor uses the page, and the page asks the SDK to flush.
    click(&client, "#add-mug").await;
    click(&client, "#signup").await;
    js(&client, "window.__waymark.flush(); return true").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    for table in ["events", "sessions", "batches"] {
        assert_eq!(
            c.count(&format!("SELECT count(*) FROM {table}")),
            0,
            "[{kind:?}] {table} before consent"
        );
    }
    assert_no_storage(&client, "before consent").await;

    // Accept, then the same two actions, then flush.
    click(&client, "#consent-accept").await;
    wait_js(
        &client,
        "return document.getElementById('consent-banner').hidden",
        "the banner to close",
    )
    .await;
    click(&client, "#add-mug").await;
    click(&client, "#signup").await;
    js(&client, "window.__waymark.flush(); return true").await;

    wait_count(&c, PAGEVIEWS, 1).await;
    wait_count(&c, CART_ADDS, 1).await;
    wait_count(&c, SIGNUPS, 1).await;
    // Another flush sends anything still queued; the pre-consent clicks must never show up.
    js(&client, "window.__waymark.flush(); return true").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.count(PAGEVIEWS), 1, "[{kind:?}] page views");
    assert_eq!(
        c.count("SELECT count(*) FROM events WHERE type = 'cart'"),
        1,
        "[{kind:?}] cart events (the click before consent was captured?)"
    );
    assert_eq!(
        c.count("SELECT count(*) FROM events WHERE type = 'custom'"),
        1,
        "[{kind:?}] custom events (the click before consent was captured?)"
    );
    let items = c.strings("SELECT items FROM events WHERE type = 'cart'");
    let items: Value = serde_json::from_str(&items[0]).expect("items is JSON");
    assert_eq!(items[0]["id"], "sku-mug", "[{kind:?}] cart items {items}");
    assert_eq!(items[0]["quantity"], 1, "[{kind:?}] cart items {items}");
    assert_eq!(
        c.count("SELECT count(*) FROM sessions WHERE site = 'demo-shop' AND entry_path = '/vite-app/dist'"),
        1,
        "[{kind:?}] one session entering at the Vite app"
    );
    assert_no_storage(&client, "after consent").await;
}

#[test]
fn vite_app_from_the_npm_tarball_behaves_like_the_script_tag() {
    let built = root().join("demo-site/vite-app/dist/index.html");
    assert!(
        built.is_file(),
        "{} is missing: run scripts/build-npm-apps.sh (after `cargo xtask build-sdk`)",
        built.display()
    );
    let _one_browser_at_a_time = exclusive();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for kind in kinds() {
        let started = Instant::now();
        // A fresh collector (and store) per browser: every count starts at zero.
        let c = Arc::new(Collector::start(|_| {}));
        rt.block_on(async {
            let browser = Browser::start(kind, &visitor(kind)).await;
            let outcome = tokio::spawn(journey(kind, browser.client.clone(), Arc::clone(&c))).await;
            browser.close().await;
            if let Err(e) = outcome {
                match e.try_into_panic() {
                    Ok(p) => std::panic::resume_unwind(p),
                    Err(e) => panic!("[{kind:?}] journey failed: {e}"),
                }
            }
        });
        eprintln!("  {kind:?}: {:.1} s", started.elapsed().as_secs_f64());
    }
}
