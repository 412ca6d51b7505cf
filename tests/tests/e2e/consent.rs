//! Consent: nothing leaves the page before the visitor accepts, nothing after they decline or
//! revoke, and privacy signals (GPC, Do-Not-Track) count as a denial until the visitor's own grant.

use crate::support::*;
use std::time::{Duration, Instant};
use waymark_tests::{exclusive, Kind, Options};

/// How long "nothing is sent" is watched for. A flush posts within milliseconds and a beacon
/// on pagehide is queued at once, so a second of silence after both is conclusive.
const QUIET: Duration = Duration::from_millis(1200);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

const PAGEVIEW_PATHS: &str = "SELECT path FROM events WHERE type = 'pageview' ORDER BY ts, id";

fn browser_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Chromium => "Chrome",
        Kind::Firefox => "Firefox",
    }
}

async fn banner_visible(tab: &Tab) -> bool {
    tab.js("var b = document.getElementById('consent-banner'); return !!b && !b.hidden")
        .await
        .as_bool()
        .unwrap_or(false)
}

/// Journey 1: browse several pages before choosing (nothing sent, nothing stored on the device),
/// then accept: page views with their paths, title, entry page and referrer are stored, and
/// `waymark('flush')` delivers at once.
async fn consent_then_pageviews(kind: Kind) {
    let c = collector(|_| {});
    let cc = c.clone();
    let started = now_ms();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        // A second origin of the same collector (`localhost` rather than `127.0.0.1`), so the
        // hop below arrives with a real external referrer.
        let other = format!("http://localhost:{}", c.addr.port());
        for path in ["/", "/category.html", "/products/teapot.html", "/app/gifts"] {
            let url = format!("{other}{path}");
            tab.client.goto(&url).await.expect("goto");
            tab.wait_sdk().await;
            assert!(
                banner_visible(&tab).await,
                "banner on {path} before a choice"
            );
            // A flush before consent must not send anything either.
            tab.flush().await;
            tab.assert_no_client_storage(&format!("on {path} before consent"))
                .await;
        }
        // Leave for the other origin through a link the visitor clicks (as from another
        // site): the mug page's document.referrer is the `localhost` origin. (A script
        // assignment to `location` run by WebDriver arrives without a referrer in Firefox.)
        let mug = tab.url("/products/mug.html");
        tab.js(&format!(
            "var a = document.createElement('a'); a.id = 'hop'; a.href = {mug:?}; \
             a.textContent = 'to the shop'; a.style = 'position:fixed;top:0;left:0;z-index:99'; \
             document.body.appendChild(a); return true"
        ))
        .await;
        tab.click("#hop").await;
        tab.wait_js(
            "return location.hostname === '127.0.0.1' && document.readyState === 'complete'",
            "the mug page",
        )
        .await;
        tab.wait_sdk().await;
        tab.flush().await;
        assert!(
            banner_visible(&tab).await,
            "the choice is per origin and tab"
        );
        tab.assert_no_client_storage("on the mug page before consent")
            .await;
        // Five pages loaded and left (each pagehide would have beaconed), flushes requested:
        // the collector has seen nothing at all.
        stays(&c, "SELECT count(*) FROM batches", 0, QUIET).await;
        assert_eq!(stored(&c), (0, 0), "nothing stored before consent");

        tab.accept().await;
        let flushed = Instant::now();
        tab.flush().await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 1).await;
        assert!(
            flushed.elapsed() < Duration::from_secs(4),
            "waymark('flush') delivers promptly, took {:?}",
            flushed.elapsed()
        );
        assert_eq!(c.strings(PAGEVIEW_PATHS), ["/products/mug.html"]);
        assert_eq!(
            c.strings("SELECT title FROM events WHERE type = 'pageview'"),
            ["Blue mug · Waymark Goods"]
        );
        assert_eq!(
            c.strings("SELECT host FROM events WHERE type = 'pageview'"),
            [format!("127.0.0.1:{}", c.addr.port())]
        );

        // The next page through a link: an internal referrer, same session.
        tab.click_to("a.cart-link", "/cart.html").await;
        tab.wait_sdk().await;
        tab.flush().await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 2).await;
        assert_eq!(
            c.strings(PAGEVIEW_PATHS),
            ["/products/mug.html", "/cart.html"]
        );
        let row = c
            .db()
            .query_row(
                "SELECT count(*), min(entry_path), min(exit_path), min(referrer_host), min(source),
                        min(medium), sum(pageviews), min(browser), min(os), min(device)
                 FROM sessions",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, i64>(6)?,
                        (
                            r.get::<_, String>(7)?,
                            r.get::<_, String>(8)?,
                            r.get::<_, String>(9)?,
                        ),
                    ))
                },
            )
            .expect("session row");
        let s = |v: &str| Some(v.to_string());
        // Hosts keep a non-default port, like the page host.
        let referrer = format!("localhost:{}", c.addr.port());
        assert_eq!(
            row,
            (
                1,
                s("/products/mug.html"),
                s("/cart.html"),
                s(&referrer),
                s(&referrer),
                s("referral"),
                2,
                (browser_name(kind).into(), "Linux".into(), "desktop".into())
            ),
            "(sessions, entry, exit, referrer host, source, medium, page views, client)"
        );
        tab.assert_no_client_storage("after consent").await;
        // Event times are derived on the collector's clock (received − (sent_at − at)).
        let (first, last) = c
            .db()
            .query_row("SELECT min(ts), max(ts) FROM events", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .expect("event times");
        assert!(
            started <= first && last <= now_ms() + 1000,
            "event times {first}..{last} within the test's run from {started}"
        );
        assert_eq!(
            c.count("SELECT count(*) FROM dropped"),
            0,
            "nothing was dropped (e.g. as a bot)"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_gates_capture_then_pageviews_are_stored() {
    let _g = exclusive();
    for_each_browser(consent_then_pageviews).await;
}

/// Loads `path`, waits for the SDK, asks it to flush, and checks the device holds nothing.
async fn visit(tab: &Tab, path: &str, when: &str) {
    tab.goto(path).await;
    tab.wait_sdk().await;
    tab.flush().await;
    tab.assert_no_client_storage(&format!("on {path} {when}"))
        .await;
}

/// Pages and interactions that would all produce events if capture were on.
async fn browse_everything(tab: &Tab, when: &str) {
    visit(tab, "/category.html", when).await;
    visit(tab, "/products/mug.html", when).await;
    tab.click(".add-to-cart").await;
    tab.flush().await;
    visit(tab, "/app/", when).await;
    tab.click("a[data-spa-link][href='/app/gifts']").await;
    tab.flush().await;
    // Leaving the page fires pagehide, where the SDK would beacon.
    visit(tab, "/cart.html", when).await;
}

/// Journey 7: decline sends nothing; a later accept starts capture; revoking drops what is
/// queued and sends nothing more, however much the visitor browses.
async fn deny_then_revoke(kind: Kind) {
    let c = collector(|_| {});
    let cc = c.clone();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        tab.goto("/").await;
        tab.wait_sdk().await;
        assert!(banner_visible(&tab).await);
        tab.click("#consent-deny").await;
        browse_everything(&tab, "after decline").await;
        stays(&c, "SELECT count(*) FROM batches", 0, QUIET).await;
        assert_eq!(stored(&c), (0, 0), "nothing stored after decline");

        // The visitor changes their mind on the cart page.
        tab.click("#privacy-settings").await;
        tab.click("#consent-accept").await;
        tab.flush().await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 1).await;
        assert_eq!(c.strings(PAGEVIEW_PATHS), ["/cart.html"]);
        tab.click_to("header a[href='/category.html']", "/category.html")
            .await;
        tab.wait_sdk().await;
        tab.flush().await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 2).await;
        assert_eq!(c.strings(PAGEVIEW_PATHS), ["/cart.html", "/category.html"]);

        // A custom event sent through the page's `waymark` arrives (the control for the next
        // step) ...
        tab.js("waymark('track', 'before_revoke', {n: 1}); waymark('flush'); return true")
            .await;
        wait_count(
            &c,
            "SELECT count(*) FROM events WHERE name = 'before_revoke'",
            1,
        )
        .await;
        // ... but one queued and not yet sent when the visitor revokes is dropped.
        tab.js("waymark('track', 'queued_before_revoke', {n: 2}); return true")
            .await;
        tab.click("#privacy-settings").await;
        tab.wait_js(
            "return !document.getElementById('consent-current').hidden",
            "the current choice",
        )
        .await;
        tab.click("#consent-deny").await;
        let before = stored(&c);
        browse_everything(&tab, "after revoke").await;
        tab.goto("/").await;
        stays(&c, "SELECT count(*) FROM events", before.0, QUIET).await;
        assert_eq!(stored(&c), before, "nothing more stored after the revoke");
        assert_eq!(
            c.strings("SELECT name FROM events WHERE type = 'custom'"),
            ["before_revoke"],
            "the event queued before the revoke was dropped, not sent"
        );
        assert_eq!(c.strings(PAGEVIEW_PATHS), ["/cart.html", "/category.html"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decline_and_revoke_send_nothing() {
    let _g = exclusive();
    for_each_browser(deny_then_revoke).await;
}

/// Journey 8: a privacy signal (Global Privacy Control in Firefox, Do-Not-Track in Chromium,
/// the signal each of them offers) is a denial: page loads send nothing although the demo shop
/// knows nothing of the signal and shows its banner as usual. SDK.md: "a later explicit grant
/// by the user (not by the page's default) may override it" — the visitor's own click on
/// Accept is such a grant, so from then on page views are stored.
async fn privacy_signal(kind: Kind) {
    let c = collector(|_| {});
    let cc = c.clone();
    let opts = Options {
        gpc: kind == Kind::Firefox,
        do_not_track: kind == Kind::Chromium,
        ..visitor(kind)
    };
    with_browser(kind, opts, &c, move |tab| async move {
        let c = cc;
        tab.goto("/").await;
        tab.wait_sdk().await;
        let signal = match tab.kind {
            Kind::Firefox => "return navigator.globalPrivacyControl === true",
            Kind::Chromium => "return navigator.doNotTrack === '1'",
        };
        assert_eq!(
            tab.js(signal).await,
            true,
            "the browser sends its privacy signal"
        );
        assert!(banner_visible(&tab).await);
        // Loads, clicks, SPA navigation, flushes, pagehides: nothing.
        browse_everything(&tab, "with a privacy signal").await;
        visit(&tab, "/products/teapot.html", "with a privacy signal").await;
        stays(&c, "SELECT count(*) FROM batches", 0, QUIET).await;
        assert_eq!(stored(&c), (0, 0), "nothing stored under a privacy signal");

        // The visitor's own, explicit choice overrides the signal (documented in SDK.md).
        tab.accept().await;
        tab.flush().await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 1).await;
        assert_eq!(c.strings(PAGEVIEW_PATHS), ["/products/teapot.html"]);
        // Their remembered choice is re-applied by the shop on the next page load.
        visit(&tab, "/category.html", "after an explicit grant").await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 2).await;
        assert_eq!(
            c.strings(PAGEVIEW_PATHS),
            ["/products/teapot.html", "/category.html"]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_signals_mean_deny_until_the_visitor_grants() {
    let _g = exclusive();
    for_each_browser(privacy_signal).await;
}
