//! Delivery when the collector pushes back: 503 with `Retry-After` while its writer is blocked,
//! and whether a page on another origin (the usual deployment) can read `Retry-After` at all.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;
use waymark_collector::store::sqlite::SqliteStore;
use waymark_tests::{exclusive, Kind};

/// Wraps `window.fetch` to record every post the SDK makes (batch id, times, status and the
/// `Retry-After` the page could read). It only observes: requests and answers pass unchanged.
/// Installed as a page `<script>` (see [`install_fetch_log`]), not run as WebDriver script:
/// Firefox runs WebDriver scripts in a sandbox, and a fetch wrapper defined there fails when
/// the page calls it.
const FETCH_LOG: &str = "
if (!window.__wmLog) {
  window.__wmLog = [];
  var orig = window.fetch;
  window.fetch = function (url, init) {
    var rec = {url: String(url), start: Date.now()};
    try { var b = JSON.parse(init.body); rec.batch = b.batch; rec.events = b.events.length; } catch (e) {}
    window.__wmLog.push(rec);
    return orig.apply(this, arguments).then(function (r) {
      rec.status = r.status; rec.end = Date.now(); rec.retryAfter = r.headers.get('retry-after');
      return r;
    }, function (e) { rec.status = 0; rec.end = Date.now(); throw e; });
  };
}";

async fn install_fetch_log(tab: &Tab) {
    tab.js(&format!(
        "var s = document.createElement('script'); s.textContent = {FETCH_LOG:?}; \
         document.head.appendChild(s); return true"
    ))
    .await;
    tab.wait_js("return Array.isArray(window.__wmLog)", "the fetch log")
        .await;
}

async fn spa_click(tab: &Tab, href: &str) {
    tab.click(&format!("#app-view a[data-spa-link][href='{href}']"))
        .await;
    tab.wait_js(
        &format!("return location.pathname === {href:?}"),
        &format!("the gift finder at {href}"),
    )
    .await;
}

/// Journey 11: with a writer queue of one and the store locked by another connection, the
/// collector answers 503 with `Retry-After`; the SDK retries the same batch no sooner than asked,
/// holds new events meanwhile, and once the lock is gone every page view is stored exactly once.
/// The visitor stays on one document (the SPA gift finder), so the SDK is alive to retry; the
/// same with page loads is [`overload_page_loads`].
async fn overload(kind: Kind) {
    let c = collector(|config| config.queue_capacity = 1);
    let cc = c.clone();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        tab.goto("/app/").await;
        tab.wait_sdk().await;
        install_fetch_log(&tab).await;
        tab.accept().await;
        tab.flush().await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 1).await;

        // Another connection takes the write lock: the collector's writer blocks on its next
        // commit (busy timeout 10 s), one more batch waits in its queue, the rest get 503.
        let blocker = rusqlite::Connection::open(SqliteStore::path_in(c.dir.path()))
            .expect("open the store");
        blocker
            .busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        blocker
            .execute_batch("BEGIN IMMEDIATE")
            .expect("hold the write lock");
        let navs = [
            "/app/gifts",
            "/app/gifts/under-25",
            "/app/gifts/tea-lovers",
            "/app/gifts",
            "/app/gifts/under-25",
        ];
        for href in navs {
            spa_click(&tab, href).await;
            tab.flush().await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        tab.wait_js(
            "return window.__wmLog.some(function (r) { return r.status === 503; })",
            "a 503 from the collector",
        )
        .await;
        assert_eq!(
            c.count("SELECT count(*) FROM events WHERE type = 'pageview'"),
            1,
            "nothing new is stored while the store is locked"
        );
        blocker.execute_batch("COMMIT").expect("release the lock");
        drop(blocker);

        let total = 1 + navs.len() as i64;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", total).await;
        // Let any duplicate (a retried batch stored twice) show up before counting.
        tab.flush().await;
        stays(
            &c,
            "SELECT count(*) FROM events WHERE type = 'pageview'",
            total,
            Duration::from_millis(800),
        )
        .await;
        assert_eq!(
            c.count("SELECT count(DISTINCT pv) FROM events WHERE type = 'pageview'"),
            total,
            "every page view exactly once"
        );
        let mut expected = vec!["/app"];
        expected.extend(navs);
        assert_eq!(
            c.strings("SELECT path FROM events WHERE type = 'pageview' ORDER BY ts, id"),
            expected
        );
        assert_eq!(
            c.count("SELECT count(*) FROM (SELECT pv, ts FROM events GROUP BY pv, type, ts HAVING count(*) > 1)"),
            0,
            "no event stored twice"
        );

        let log = tab.js("return window.__wmLog").await;
        let log = log.as_array().cloned().unwrap_or_default();
        let refused: Vec<&Value> = log.iter().filter(|r| r["status"] == 503).collect();
        assert!(!refused.is_empty(), "{log:?}");
        for r in &refused {
            assert_eq!(r["retryAfter"], "2", "the SDK can read Retry-After: {r}");
            let id = &r["batch"];
            let end = r["end"].as_f64().unwrap_or(0.0);
            let next = log
                .iter()
                .find(|n| n["batch"] == *id && n["start"].as_f64().unwrap_or(0.0) > end)
                .unwrap_or_else(|| panic!("batch {id} was not retried: {log:?}"));
            let waited = next["start"].as_f64().unwrap_or(0.0) - end;
            assert!(
                waited >= 1950.0,
                "batch {id} retried after {waited} ms, Retry-After said 2 s"
            );
        }
        // Every batch the SDK posted was finally accepted and is recorded once.
        let ids: std::collections::BTreeSet<String> = log
            .iter()
            .filter_map(|r| r["batch"].as_str().map(String::from))
            .collect();
        for id in &ids {
            assert!(
                log.iter().any(|r| r["batch"] == id.as_str() && r["status"] == 202),
                "batch {id} never accepted: {log:?}"
            );
            assert_eq!(
                c.count(&format!("SELECT count(*) FROM batches WHERE id = '{id}'")),
                1,
                "batch {id}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_the_collector_answers_503() {
    let _g = exclusive();
    for_each_browser(overload).await;
}

/// Journey 11 with ordinary page loads instead of SPA navigation: the visitor moves on to the
/// next page while the collector answers 503. The page views of the pages left in that time
/// went out on pagehide by `sendBeacon`, whose answer a page never sees, so a 503 cannot be
/// retried — SDK.md promises a retry of the same batch for 503 all the same.
async fn overload_page_loads(kind: Kind) {
    let c = collector(|config| config.queue_capacity = 1);
    let cc = c.clone();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        tab.goto("/").await;
        tab.wait_sdk().await;
        tab.accept().await;
        tab.flush().await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 1).await;
        let blocker =
            rusqlite::Connection::open(SqliteStore::path_in(c.dir.path())).expect("open the store");
        blocker
            .busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        blocker
            .execute_batch("BEGIN IMMEDIATE")
            .expect("hold the write lock");
        let pages = [
            "/category.html",
            "/products/mug.html",
            "/products/teapot.html",
            "/products/apron.html",
            "/cart.html",
        ];
        for path in pages {
            tab.goto(path).await;
            tab.wait_sdk().await;
            tab.flush().await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        blocker.execute_batch("COMMIT").expect("release the lock");
        drop(blocker);
        let mut expected = vec!["/"];
        expected.extend(pages);
        let total = expected.len() as i64;
        // Retries are due within a few seconds of the lock going (Retry-After 2 s, backoff).
        let started = std::time::Instant::now();
        while c.count("SELECT count(*) FROM events WHERE type = 'pageview'") < total
            && started.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            c.strings("SELECT path FROM events WHERE type = 'pageview' ORDER BY ts, id"),
            expected,
            "every page view once, also those of pages left while the collector said 503"
        );
    })
    .await;
}

/// Known gap, kept as a test so the fix is measured against it: with the store blocked for
/// seconds, Chromium loses the page view of the last page left (Firefox keeps everything). A
/// page's unconfirmed batches go out by beacon on hide, and the collector holds beacons until
/// their commit (202 means durable); while the store is blocked those in-flight keepalive
/// requests pile up and Chromium refuses or drops the next one. See the closing note of issue 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known gap in Chromium: beacons of pages left while the store is blocked (issue 4 note)"]
async fn nothing_is_lost_when_pages_are_left_during_503() {
    let _g = exclusive();
    for_each_browser(overload_page_loads).await;
}

/// Posts `n` empty (valid) batches to `endpoint` from the page and returns the answers as
/// `[status, Retry-After as the page sees it]`.
async fn burst(tab: &Tab, endpoint: &str, n: u32) -> Vec<(i64, Option<String>)> {
    let script = format!(
        "var done = arguments[arguments.length - 1]; var out = []; var i = 0;
         (function next() {{
           if (i++ >= {n}) return done(out);
           fetch({endpoint:?}, {{method: 'POST', headers: {{'content-type': 'application/json'}},
             body: JSON.stringify({{site: 'demo-shop', sent_at: Date.now(), events: [],
               batch: 'probe' + Date.now() + 'x' + Math.random().toString(36).slice(2)}})}})
           .then(function (r) {{ out.push([r.status, r.headers.get('retry-after')]); next(); }},
                 function (e) {{ out.push([0, String(e)]); next(); }});
         }})();"
    );
    let v = tab
        .client
        .execute_async(&script, vec![])
        .await
        .unwrap_or_else(|e| panic!("burst to {endpoint}: {e}"));
    v.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| (a[0].as_i64().unwrap_or(-1), a[1].as_str().map(String::from)))
        .collect()
}

/// The SDK reads `Retry-After` from the fetch response. On the demo (same origin) it can; in
/// the usual deployment the shop and the collector are different origins, and a script can
/// read a non-safelisted header of a CORS response only if the collector lists it in
/// `Access-Control-Expose-Headers`. A 429 from the rate limiter (1 batch/s, burst 10) is the
/// simplest answer carrying `Retry-After`; the 503s of an overload go through the same CORS code.
async fn retry_after_cross_origin(kind: Kind) {
    let c = collector(|config| config.rate_limit_per_second = 1);
    let cc = c.clone();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        // The page is on `localhost`; the collector is also reachable as `127.0.0.1`, another
        // origin, registered for the site like a shop's origin would be.
        let page = format!("http://localhost:{}/", c.addr.port());
        tab.client.goto(&page).await.expect("goto");
        let same = burst(&tab, "/v1/batch", 12).await;
        let limited = same.iter().find(|(s, _)| *s == 429);
        assert!(
            limited.is_some_and(|(_, ra)| ra.is_some()),
            "same origin: 429 with a readable Retry-After: {same:?}"
        );
        let cross = burst(&tab, &c.url("/v1/batch"), 3).await;
        assert!(
            cross.iter().all(|(s, _)| *s == 429),
            "cross origin, still rate limited (and CORS allowed): {cross:?}"
        );
        assert!(
            cross.iter().all(|(_, ra)| ra.is_some()),
            "a page on another origin cannot read Retry-After (the collector sends no \
             `Access-Control-Expose-Headers: Retry-After`), so the SDK retries on its own \
             backoff instead of the server's: {cross:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_readable_by_a_page_on_another_origin() {
    let _g = exclusive();
    for_each_browser(retry_after_cross_origin).await;
}
