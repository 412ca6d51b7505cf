//! Cookieless sessionisation as the browser sees it: visitors told apart by user agent (same
//! IP), and a new session after an idle gap longer than the timeout.

use crate::support::*;
use std::time::Duration;
use waymark_tests::{exclusive, Kind, Options};

/// A desktop user agent of `kind` on `os` (`"windows"` or `"mac"`).
fn ua(kind: Kind, os: &str) -> String {
    let platform = match (kind, os) {
        (Kind::Chromium, "windows") => "Windows NT 10.0; Win64; x64",
        (Kind::Chromium, _) => "Macintosh; Intel Mac OS X 10_15_7",
        (Kind::Firefox, "windows") => "Windows NT 10.0; Win64; x64; rv:128.0",
        (Kind::Firefox, _) => "Macintosh; Intel Mac OS X 10.15; rv:128.0",
    };
    match kind {
        Kind::Chromium => format!(
            "Mozilla/5.0 ({platform}) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/156.0.0.0 Safari/537.36"
        ),
        Kind::Firefox => format!("Mozilla/5.0 ({platform}) Gecko/20100101 Firefox/128.0"),
    }
}

/// Accepts on `first`, visits `second`, and waits until `total` page views are stored.
async fn two_pages(tab: &Tab, c: &waymark_tests::Collector, first: &str, second: &str, total: i64) {
    tab.goto(first).await;
    tab.wait_sdk().await;
    tab.accept().await;
    tab.goto(second).await;
    tab.wait_sdk().await;
    tab.flush().await;
    wait_count(
        c,
        "SELECT count(*) FROM events WHERE type = 'pageview'",
        total,
    )
    .await;
}

/// Journey 9: two browsers (separate profiles) on one IP with different user agents are two
/// visitors; a third with the first one's user agent is, as SESSIONS.md says it must be
/// ("two people behind one NAT with an identical browser are one visitor"), the first visitor.
async fn two_visitors(kind: Kind) {
    let c = collector(|_| {});
    let contexts = [
        ("windows", "/", "/category.html", 2),
        ("mac", "/products/mug.html", "/products/teapot.html", 4),
        ("windows", "/products/apron.html", "/cart.html", 6),
    ];
    for (os, first, second, total) in contexts {
        let opts = Options {
            user_agent: Some(ua(kind, os)),
            ..Options::default()
        };
        let cc = c.clone();
        with_browser(kind, opts, &c, move |tab| async move {
            let seen = tab.js("return navigator.userAgent").await;
            assert_eq!(seen, ua(tab.kind, os), "the context's user agent");
            two_pages(&tab, &cc, first, second, total).await;
        })
        .await;
    }
    assert_eq!(
        c.count("SELECT count(DISTINCT visitor) FROM sessions"),
        2,
        "two user agents, two visitors"
    );
    assert_eq!(
        c.count("SELECT count(DISTINCT visitor) FROM events"),
        2,
        "events carry the same two visitor keys"
    );
    assert_eq!(
        c.strings("SELECT os || ' ' || pageviews FROM sessions ORDER BY os"),
        ["Windows 4", "macOS 2"],
        "the identical Windows browser continues the first visitor's session"
    );
    assert_eq!(
        c.strings(
            "SELECT group_concat(path, ' ') FROM (SELECT visitor, path FROM events \
             WHERE type = 'pageview' ORDER BY ts, id) GROUP BY visitor ORDER BY count(*)"
        ),
        [
            "/products/mug.html /products/teapot.html",
            "/ /category.html /products/apron.html /cart.html"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_user_agents_are_different_visitors() {
    let _g = exclusive();
    for_each_browser(two_visitors).await;
}

/// Journey 10: with a 2 s session timeout, an idle gap of more than 2 s between two pages
/// starts a second session for the same visitor.
async fn idle_gap(kind: Kind) {
    let c = collector(|config| config.session_timeout = Duration::from_secs(2));
    let cc = c.clone();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        tab.goto("/products/mug.html").await;
        tab.wait_sdk().await;
        tab.accept().await;
        tab.flush().await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 1).await;
        assert_eq!(c.count("SELECT count(*) FROM sessions"), 1);
        // The visitor reads without touching anything for longer than the timeout.
        tokio::time::sleep(Duration::from_millis(2600)).await;
        tab.click_to("header a[href='/category.html']", "/category.html")
            .await;
        tab.wait_sdk().await;
        tab.flush().await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 2).await;
        assert_eq!(c.count("SELECT count(*) FROM sessions"), 2, "a new session");
        assert_eq!(
            c.count("SELECT count(DISTINCT visitor) FROM sessions"),
            1,
            "for the same visitor"
        );
        assert_eq!(
            c.strings(
                "SELECT entry_path || ' ' || exit_path || ' ' || pageviews FROM sessions \
                 ORDER BY start_ms"
            ),
            [
                "/products/mug.html /products/mug.html 1",
                "/category.html /category.html 1"
            ]
        );
        assert_eq!(
            c.count("SELECT count(DISTINCT session_id) FROM events WHERE type = 'pageview'"),
            2,
            "each page view in its own session"
        );
        // The later session starts after the earlier one ended, by more than the timeout.
        let gap = c.count(
            "SELECT (SELECT max(start_ms) FROM sessions) - (SELECT min(end_ms) FROM sessions)",
        );
        assert!(gap > 2000, "gap between the sessions: {gap} ms");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_gap_longer_than_the_timeout_starts_a_new_session() {
    let _g = exclusive();
    for_each_browser(idle_gap).await;
}
