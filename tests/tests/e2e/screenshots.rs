//! Screenshots of the demo shop for the README, taken in headless Chromium into
//! `docs/screenshots/`: the consent banner, a product page, and the cart with items.

use crate::support::*;
use std::path::PathBuf;
use waymark_tests::{exclusive, root, Kind};

/// Waits until the page is still: images decoded, fonts loaded, no animation or transition
/// running (the banner slides up for .35 s), then one more frame.
async fn settle(tab: &Tab) {
    tab.wait_js(
        "return document.readyState === 'complete' \
         && Array.prototype.every.call(document.images, function (i) { return i.complete; }) \
         && document.fonts.status === 'loaded' \
         && document.getAnimations().every(function (a) { return a.playState !== 'running'; })",
        "the page to settle",
    )
    .await;
    tab.frame().await;
}

/// `(width, height)` of a PNG, from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

async fn shoot(tab: &Tab, name: &str) -> PathBuf {
    settle(tab).await;
    let png = tab.client.screenshot().await.expect("screenshot");
    let (w, h) = png_size(&png);
    assert!(w >= 1000 && h >= 600, "{name}: {w}×{h}");
    let dir = root().join("docs/screenshots");
    std::fs::create_dir_all(&dir).expect("docs/screenshots");
    let path = dir.join(name);
    // Rendering is deterministic: rewrite only when the picture changed (no churn in git).
    if std::fs::read(&path).ok().as_deref() != Some(png.as_slice()) {
        std::fs::write(&path, &png).expect("write screenshot");
    }
    path
}

/// Journey 12: the README's screenshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_screenshots() {
    let _g = exclusive();
    // Chromium only (the README shows one browser); skipped like any journey when missing.
    if !kinds().contains(&Kind::Chromium) {
        return;
    }
    let c = collector(|_| {});
    let cc = c.clone();
    with_browser(
        Kind::Chromium,
        visitor(Kind::Chromium),
        &c,
        move |tab| async move {
            let c = cc;
            tab.goto("/").await;
            tab.wait_sdk().await;
            tab.wait_js(
                "var b = document.getElementById('consent-banner'); \
             return !b.hidden && b.getBoundingClientRect().bottom <= innerHeight + 1",
                "the banner",
            )
            .await;
            shoot(&tab, "shop-consent.png").await;
            assert_eq!(
                tab.js(
                    "var b = document.getElementById('consent-banner').getBoundingClientRect(); \
                    return Math.round(b.bottom) === innerHeight"
                )
                .await,
                true,
                "the banner sits fully on the bottom edge"
            );

            tab.accept().await;
            tab.goto("/products/teapot.html").await;
            tab.wait_sdk().await;
            shoot(&tab, "shop-product.png").await;

            tab.click(".add-to-cart").await;
            tab.goto("/products/mug.html").await;
            tab.wait_sdk().await;
            tab.click(".add-to-cart").await;
            tab.click(".add-to-cart").await;
            tab.goto("/cart.html").await;
            tab.wait_sdk().await;
            assert_eq!(
                tab.js("return document.querySelectorAll('.cart-row').length")
                    .await,
                2
            );
            shoot(&tab, "shop-cart.png").await;

            // The screenshots were taken of a live, counting shop.
            tab.flush().await;
            wait_count(
                &c,
                "SELECT count(*) FROM events WHERE type = 'pageview' AND path = '/cart.html'",
                1,
            )
            .await;
        },
    )
    .await;
}
