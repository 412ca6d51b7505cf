//! Automatic capture after consent: page views (also in the single-page gift finder),
//! engagement (scroll depth, engaged time), and delivery by beacon when the tab goes away.

use crate::support::*;
use std::time::{Duration, Instant};
use waymark_tests::{exclusive, Kind};

const PAGEVIEW_PATHS: &str = "SELECT path FROM events WHERE type = 'pageview' ORDER BY ts, id";

/// Clicks an in-app link of the gift finder and waits until it has rendered `route`.
async fn spa_click(tab: &Tab, href: &str, route: &str) {
    tab.click(&format!("#app-view a[data-spa-link][href='{href}']"))
        .await;
    tab.wait_js(
        &format!(
            "return location.pathname === {route:?} && \
             document.getElementById('app-view').getAttribute('data-route') === {route:?}"
        ),
        &format!("the gift finder at {route}"),
    )
    .await;
}

/// Journey 2: SPA navigation (pushState) and Back (popstate) are page views with their own
/// paths and titles; navigating to the URL already shown is not.
async fn spa_pageviews(kind: Kind) {
    let c = collector(|_| {});
    let cc = c.clone();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        tab.goto("/app/").await;
        tab.wait_sdk().await;
        tab.accept().await;
        spa_click(&tab, "/app/gifts", "/app/gifts").await;
        spa_click(&tab, "/app/gifts/under-25", "/app/gifts/under-25").await;
        // The chip of the current view: the app does nothing (no history entry) ...
        spa_click(&tab, "/app/gifts/under-25", "/app/gifts/under-25").await;
        // ... and a pushState / replaceState to the URL already shown is no new view for the
        // SDK either (scrubbed, `?ref=x` is not a kept parameter, so it is the same URL).
        tab.js(
            "history.pushState({spa: true}, '', location.pathname); \
             history.replaceState({spa: true}, '', location.pathname + '?ref=x'); \
             history.replaceState({spa: true}, '', location.pathname); return true",
        )
        .await;
        spa_click(&tab, "/app/gifts/tea-lovers", "/app/gifts/tea-lovers").await;
        // Back: popstate re-renders the previous view, a page view of its own.
        tab.client.back().await.expect("back");
        tab.wait_js(
            "return location.pathname === '/app/gifts/under-25' && \
             document.getElementById('app-view').getAttribute('data-route') === '/app/gifts/under-25'",
            "Back to under-25",
        )
        .await;
        tab.flush().await;
        // The collector stores paths without a trailing `/` (except the root): `/app/` → `/app`.
        let expected = [
            "/app",
            "/app/gifts",
            "/app/gifts/under-25",
            "/app/gifts/tea-lovers",
            "/app/gifts/under-25",
        ];
        wait_count(
            &c,
            "SELECT count(*) FROM events WHERE type = 'pageview'",
            expected.len() as i64,
        )
        .await;
        // Give a stray duplicate (had there been one) the chance to arrive before counting.
        tab.flush().await;
        stays(
            &c,
            "SELECT count(*) FROM events WHERE type = 'pageview'",
            expected.len() as i64,
            Duration::from_millis(500),
        )
        .await;
        assert_eq!(c.strings(PAGEVIEW_PATHS), expected);
        assert_eq!(
            c.strings("SELECT title FROM events WHERE type = 'pageview' ORDER BY ts, id"),
            [
                "Gift finder — Waymark Goods",
                "All gifts · Gift finder — Waymark Goods",
                "Gifts under €25 · Gift finder — Waymark Goods",
                "Gifts for tea lovers · Gift finder — Waymark Goods",
                "Gifts under €25 · Gift finder — Waymark Goods",
            ],
            "each SPA view carries the title set before pushState"
        );
        assert_eq!(
            c.count("SELECT count(DISTINCT pv) FROM events WHERE type = 'pageview'"),
            5,
            "a fresh page-view id per view"
        );
        // SDK.md: engagement is sent when a view is replaced by an SPA navigation.
        assert_eq!(
            c.count(
                "SELECT count(*) FROM (SELECT pv FROM events WHERE type = 'pageview' \
                 ORDER BY ts, id LIMIT 4) v \
                 WHERE EXISTS (SELECT 1 FROM events e WHERE e.type = 'engagement' AND e.pv = v.pv)"
            ),
            4,
            "each replaced view has its engagement"
        );
        assert_eq!(
            c.strings("SELECT entry_path || ' > ' || exit_path || ' / ' || pageviews FROM sessions"),
            ["/app > /app/gifts/under-25 / 5"]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spa_navigation_and_back_are_pageviews() {
    let _g = exclusive();
    for_each_browser(spa_pageviews).await;
}

/// Scrolls so that the bottom of the viewport is at `to` (0–1) of the document, instantly,
/// then gives the SDK a frame to measure. Returns the depth the page itself reports.
async fn scroll_to(tab: &Tab, to: f64) -> i64 {
    tab.js(&format!(
        "var d = document.documentElement; \
         window.scrollTo({{top: {to} * d.scrollHeight - innerHeight, behavior: 'instant'}}); \
         return true"
    ))
    .await;
    tab.frame().await;
    tab.js("var d = document.documentElement; \
         return Math.round((scrollY + innerHeight) / d.scrollHeight * 100)")
        .await
        .as_i64()
        .unwrap_or(-1)
}

/// `(scroll, engaged_ms)` of the engagement events of the view of `path`, in order.
fn engagements(c: &waymark_tests::Collector, path: &str) -> Vec<(i64, i64)> {
    let db = c.db();
    let mut stmt = db
        .prepare(
            "SELECT e.scroll, e.engaged_ms FROM events e \
             JOIN events v ON v.pv = e.pv AND v.type = 'pageview' \
             WHERE e.type = 'engagement' AND v.path = ?1 ORDER BY e.ts, e.id",
        )
        .expect("query");
    stmt.query_map([path], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .expect("engagement rows")
}

/// Journey 3: a reader scrolls a long product page to 40 %, switches to another tab (the page
/// is hidden: its engagement so far is sent), comes back, scrolls to 75 % and leaves (pagehide:
/// the engagement is sent again, cumulative). The stored engagement of that page view has the
/// scroll depth and engaged time, and the session counts the view's engaged time once.
async fn engagement(kind: Kind) {
    let c = collector(|_| {});
    let cc = c.clone();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        tab.goto("/products/teapot.html").await;
        tab.wait_sdk().await;
        tab.accept().await;
        let height = tab
            .js("return document.documentElement.scrollHeight / innerHeight")
            .await
            .as_f64()
            .unwrap_or(0.0);
        assert!(height > 2.5, "the product page is long: {height} viewports");
        assert_eq!(scroll_to(&tab, 0.4).await, 40);

        // Another tab in front: the shop's page is hidden, and sends what it has.
        let shop = tab.client.window().await.expect("window handle");
        let other = tab.client.new_window(true).await.expect("new tab");
        tab.client
            .switch_to_window(other.handle)
            .await
            .expect("switch to the other tab");
        wait_count(
            &c,
            "SELECT count(*) FROM events WHERE type = 'engagement'",
            1,
        )
        .await;
        let first = engagements(&c, "/products/teapot.html");
        assert_eq!(first.len(), 1, "{first:?}");
        let (scroll1, engaged1) = first[0];
        assert!(
            (30..=50).contains(&scroll1),
            "scroll when hidden: {scroll1}"
        );
        assert!(engaged1 > 0, "engaged time when hidden: {engaged1}");

        // Back to the shop, further down, then away to another page.
        tab.client
            .switch_to_window(shop)
            .await
            .expect("switch back");
        tab.wait_js(
            "return document.visibilityState === 'visible'",
            "the shop visible",
        )
        .await;
        assert_eq!(
            scroll_to(&tab, 0.75).await,
            75,
            "the page is scrolled to 75 %"
        );
        tab.click_to("header a[href='/category.html']", "/category.html")
            .await;
        wait_count(
            &c,
            "SELECT count(*) FROM events WHERE type = 'engagement'",
            2,
        )
        .await;
        let all = engagements(&c, "/products/teapot.html");
        assert_eq!(all.len(), 2, "{all:?}");
        let (scroll, engaged_ms) = all[1];
        assert!(
            (60..=100).contains(&scroll),
            "scroll depth of the teapot view: {all:?}"
        );
        assert!(
            engaged_ms >= engaged1 && engaged_ms < 60_000,
            "engaged time is the view's total so far: {all:?}"
        );
        assert_eq!(
            c.count("SELECT max(scroll) FROM events WHERE type = 'engagement'"),
            scroll
        );
        assert_eq!(
            c.strings("SELECT DISTINCT path FROM events WHERE type = 'engagement'"),
            ["/products/teapot.html"],
            "engagement carries the URL of its own view"
        );
        // The session: only the teapot view has reported engagement so far (the category
        // view's comes when it is left). Its engaged time counts once: engagement values are
        // the view's totals so far (PROTOCOL.md: "so far"; SDK: cumulative), not increments.
        let (sessions, max_scroll, session_engaged) = c
            .db()
            .query_row(
                "SELECT count(*), max(max_scroll), sum(engaged_ms) FROM sessions",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .expect("session row");
        assert_eq!((sessions, max_scroll), (1, scroll));
        assert_eq!(
            session_engaged, engaged_ms,
            "session engaged_ms must be the teapot view's engaged time ({engaged_ms} ms), \
             not the sum of its cumulative engagement events {all:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scroll_depth_and_engaged_time_are_sent_on_leaving() {
    let _g = exclusive();
    for_each_browser(engagement).await;
}

/// Journey 6: events still queued when the visitor closes the tab are delivered (by
/// `sendBeacon` on pagehide): the page view, and the engagement of the closing view.
async fn beacon_on_close(kind: Kind) {
    let c = collector(|_| {});
    let cc = c.clone();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        tab.goto("/products/apron.html").await;
        tab.wait_sdk().await;
        tab.accept().await;
        let accepted = Instant::now();
        tab.js(
            "window.scrollTo({top: document.documentElement.scrollHeight / 2, behavior: 'instant'}); \
             return true",
        )
        .await;
        tab.frame().await;
        let shop = tab.client.window().await.expect("window handle");
        let other = tab.client.new_window(true).await.expect("new tab");
        // Still on the shop's tab. Its page view waits in the queue (the timer would send it
        // 5 s after it was queued): nothing has reached the collector yet.
        assert_eq!(tab.client.window().await.expect("window"), shop);
        assert_eq!(stored(&c), (0, 0), "queued, not yet sent");
        assert!(
            accepted.elapsed() < Duration::from_secs(4),
            "closing before the 5 s timer could fire"
        );
        tab.client.close_window().await.expect("close the shop's tab");
        tab.client
            .switch_to_window(other.handle)
            .await
            .expect("switch to the other tab");
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 1).await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'engagement'", 1).await;
        assert_eq!(c.strings(PAGEVIEW_PATHS), ["/products/apron.html"]);
        assert_eq!(
            c.count(
                "SELECT count(*) FROM events e JOIN events v ON v.pv = e.pv \
                 AND v.type = 'pageview' WHERE e.type = 'engagement' AND e.scroll >= 40"
            ),
            1,
            "the closing view's engagement, joined to its page view"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_tab_delivers_queued_events_by_beacon() {
    let _g = exclusive();
    for_each_browser(beacon_on_close).await;
}

/// Calls made before the SDK has loaded are queued by the stub and replayed in order (the loader
/// replays them in tasks of about 2 ms, so a long queue spans several): the bench page queues a
/// consent grant, a track and a cart call, then 60 numbered track calls.
async fn stub_replay(kind: Kind) {
    const N: i64 = 60;
    let c = collector(|_| {});
    let cc = c.clone();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        tab.goto(&format!("/bench/?queue={N}")).await;
        tab.wait_sdk().await;
        // The bench page's lag monitor keeps its main thread busy until stopped; stop it so
        // that this browser does not compete with the next test's for the two cores.
        tab.js("bench.lagging = false; return true").await;
        tab.flush().await;
        let queued = "SELECT count(*) FROM events WHERE type = 'custom' AND name = 'queued'";
        wait_count(&c, queued, N).await;
        assert_eq!(
            c.count("SELECT count(*) FROM events WHERE type = 'custom' AND name = 'bench_start'"),
            1
        );
        assert_eq!(
            c.count("SELECT count(*) FROM events WHERE type = 'cart' AND action = 'add'"),
            1,
            "the queued cart call"
        );
        // In call order. Events are stored in batch order within a batch (consecutive ids), while
        // batches in flight together may commit in any order; event times have 1 ms steps. So:
        // in storage order, `n` only ever steps by +1, except where a new batch starts, and
        // the SDK posts at most ceil((N + 3) / 10) batches (every one but the last holds 10 or
        // more events).
        let order: Vec<i64> = c
            .strings(
                "SELECT CAST(json_extract(props, '$.n') AS INTEGER) || '' FROM events \
                 WHERE type = 'custom' AND name = 'queued' ORDER BY id",
            )
            .iter()
            .map(|n| n.parse().expect("n"))
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..N).collect::<Vec<_>>(),
            "each call once: {order:?}"
        );
        let breaks = order.windows(2).filter(|w| w[1] != w[0] + 1).count() as i64;
        assert!(
            breaks < (N + 3 + 9) / 10,
            "replayed in call order ({breaks} breaks): {order:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_before_the_sdk_loads_are_replayed_in_order() {
    let _g = exclusive();
    for_each_browser(stub_replay).await;
}
