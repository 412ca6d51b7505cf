//! The shop's own interactions: the cart in all three capture styles (declarative button, JS
//! API, GA4 dataLayer) through to the order, and custom events, with no personal data stored.

use crate::support::*;
use serde_json::Value;
use waymark_tests::{exclusive, Kind};

/// Parses a stored JSON column.
fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("stored JSON {s}: {e}"))
}

/// Clicks "Add to cart" on the current product page and waits for the badge to show `count`.
async fn add_to_cart(tab: &Tab, count: u32) {
    tab.click(".add-to-cart").await;
    tab.wait_js(
        &format!(
            "return document.getElementById('cart-count').getAttribute('data-count') === '{count}'"
        ),
        "the cart badge",
    )
    .await;
}

/// Journey 4: add on product pages (declarative), view and remove on the cart page (JS API),
/// checkout and place the order (dataLayer): every cart action is stored with its items, and
/// the session records adds, checkout, purchase and revenue.
async fn cart_to_purchase(kind: Kind) {
    let c = collector(|_| {});
    let cc = c.clone();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        tab.goto("/products/mug.html").await;
        tab.wait_sdk().await;
        tab.accept().await;
        add_to_cart(&tab, 1).await;
        add_to_cart(&tab, 2).await;
        tab.goto("/products/apron.html").await;
        tab.wait_sdk().await;
        add_to_cart(&tab, 3).await;
        tab.click_to("a.cart-link", "/cart.html").await;
        tab.wait_sdk().await;
        assert_eq!(tab.text("[data-cart-total]").await, "€44.90");
        tab.click(".remove-item[data-id='sku-apron']").await;
        tab.wait_js(
            "return document.querySelectorAll('.cart-row').length === 1",
            "the apron line to go",
        )
        .await;
        tab.click_to("#checkout", "/checkout.html").await;
        tab.wait_sdk().await;
        // The demo form is never read or sent: what is typed here must not reach the store.
        tab.type_into("#checkout-name", "Probe Checkoutperson").await;
        tab.click("#place-order").await;
        tab.wait_js(
            "return location.pathname === '/confirmation.html' && document.readyState === 'complete'",
            "the confirmation page",
        )
        .await;
        tab.wait_sdk().await;
        let order_id = tab.text("#order-id").await;
        assert!(order_id.starts_with("WM-"), "order id {order_id:?}");
        tab.flush().await;
        wait_count(
            &c,
            "SELECT count(*) FROM events WHERE type = 'cart' AND action = 'purchase'",
            1,
        )
        .await;
        wait_count(
            &c,
            "SELECT count(*) FROM events WHERE type = 'pageview' AND path = '/confirmation.html'",
            1,
        )
        .await;

        let actions = c.strings(
            "SELECT action || ':' || count(*) FROM events WHERE type = 'cart' \
             GROUP BY action ORDER BY action",
        );
        // Two begin_checkout pushes (click on Checkout, arrival on checkout.html), per the
        // demo's README.
        assert_eq!(
            actions,
            ["add:3", "checkout:2", "purchase:1", "remove:1", "view_cart:1"],
            "cart actions"
        );
        // Adds from the declarative button: one item each, with name, price and category.
        let adds = c.strings(
            "SELECT currency || ' ' || path || ' ' || items FROM events \
             WHERE type = 'cart' AND action = 'add' ORDER BY ts, id",
        );
        assert_eq!(adds.len(), 3);
        for (add, (sku, name, price, category, path)) in adds.iter().zip([
            ("sku-mug", "Blue mug", 12.5, "Drinkware", "/products/mug.html"),
            ("sku-mug", "Blue mug", 12.5, "Drinkware", "/products/mug.html"),
            ("sku-apron", "Linen apron", 19.9, "Textiles", "/products/apron.html"),
        ]) {
            let (prefix, items) = add.split_at(add.find('[').expect("items JSON"));
            assert_eq!(prefix.trim(), format!("EUR {path}"));
            let item = &json(items)[0];
            assert_eq!(item["id"], sku, "{add}");
            assert_eq!(item["name"], name, "{add}");
            assert_eq!(item["price"], price, "{add}");
            assert_eq!(item["quantity"], 1, "{add}");
            assert_eq!(item["category"], category, "{add}");
        }
        let removed = c.strings(
            "SELECT items FROM events WHERE type = 'cart' AND action = 'remove'",
        );
        let removed = json(&removed[0]);
        assert_eq!(removed[0]["id"], "sku-apron");
        assert_eq!(removed[0]["quantity"], 1);
        let viewed = c.strings(
            "SELECT items FROM events WHERE type = 'cart' AND action = 'view_cart'",
        );
        assert_eq!(
            json(&viewed[0])
                .as_array()
                .map(|a| a.iter().map(|i| i["quantity"].as_i64().unwrap_or(0)).sum::<i64>()),
            Some(3),
            "view_cart lists the cart as it was (2 mugs, 1 apron)"
        );

        let (revenue, currency, items, stored_order): (f64, String, String, Option<String>) = c
            .db()
            .query_row(
                "SELECT revenue, currency, items, order_id FROM events \
                 WHERE type = 'cart' AND action = 'purchase'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("purchase row");
        assert!((revenue - 25.0).abs() < 1e-9, "revenue {revenue}");
        assert_eq!(currency, "EUR");
        let items = json(&items);
        assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
        assert_eq!(items[0]["id"], "sku-mug");
        assert_eq!(items[0]["quantity"], 2);
        assert_eq!(items[0]["price"], 12.5);
        assert_eq!(stored_order.as_deref(), Some(order_id.as_str()));
        assert_eq!(
            c.count(
                "SELECT count(*) FROM events WHERE type = 'cart' AND action = 'purchase' \
                 AND path = '/checkout.html'"
            ),
            1,
            "the purchase belongs to the checkout page view"
        );

        let session = c
            .db()
            .query_row(
                "SELECT count(*), sum(cart_adds), max(checkout), max(purchase), sum(revenue), \
                        max(currency) FROM sessions",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, f64>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                },
            )
            .expect("session row");
        assert_eq!(
            session,
            (1, 3, 1, 1, 25.0, Some("EUR".to_string())),
            "(sessions, cart_adds, checkout, purchase, revenue, currency)"
        );
        assert_eq!(
            c.count(
                "SELECT count(*) FROM sessions s WHERE s.events = \
                 (SELECT count(*) FROM events e WHERE e.session_id = s.id) AND s.pageviews = \
                 (SELECT count(*) FROM events e WHERE e.session_id = s.id AND e.type = 'pageview')"
            ),
            1,
            "the session's event and page-view counts match its stored events"
        );
        // The order id reaches analytics only as the purchase's order_id, never in a URL.
        assert_eq!(
            c.count(&format!(
                "SELECT count(*) FROM events WHERE path LIKE '%{order_id}%' \
                 OR title LIKE '%{order_id}%'"
            )),
            0
        );
        assert_eq!(
            files_containing(&c, "Checkoutperson"),
            Vec::<String>::new(),
            "the checkout form's contents are in no store file"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cart_checkout_and_purchase_are_stored_with_revenue() {
    let _g = exclusive();
    for_each_browser(cart_to_purchase).await;
}

/// Journey 5: the newsletter signup (JS API `track`) and the care-guide download (declarative
/// attributes) are custom events with their properties; the e-mail address typed into the
/// newsletter field (and one put into a URL) is in none of the store's files.
async fn custom_events(kind: Kind) {
    const EMAIL: &str = "ann.probe-7731@example.org";
    let c = collector(|_| {});
    let cc = c.clone();
    with_browser(kind, visitor(kind), &c, move |tab| async move {
        let c = cc;
        tab.goto("/products/mug.html").await;
        tab.wait_sdk().await;
        tab.accept().await;
        tab.type_into("#newsletter-email", EMAIL).await;
        tab.click("#newsletter-form button[type='submit']").await;
        tab.wait_js(
            "return document.getElementById('newsletter-status').textContent.length > 0",
            "the newsletter thank-you",
        )
        .await;
        assert_eq!(
            tab.js("return document.getElementById('newsletter-email').value")
                .await,
            "",
            "the field is cleared"
        );
        tab.click("#care-guide").await;
        // An address in a URL path (the gift finder renders any /app/… path).
        tab.js(&format!(
            "history.pushState({{}}, '', '/app/subscribe/{EMAIL}'); return true"
        ))
        .await;
        tab.flush().await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'custom'", 2).await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 2).await;
        // Leave: the last engagement goes by beacon; then everything is stored.
        tab.goto("/").await;
        tab.wait_sdk().await;
        tab.flush().await;
        wait_count(
            &c,
            "SELECT count(*) FROM events WHERE type = 'engagement'",
            2,
        )
        .await;
        wait_count(&c, "SELECT count(*) FROM events WHERE type = 'pageview'", 3).await;

        let custom = c.strings(
            "SELECT name || ' ' || path || ' ' || props FROM events \
             WHERE type = 'custom' ORDER BY ts, id",
        );
        assert_eq!(custom.len(), 2, "{custom:?}");
        let split = |s: &str| {
            let mut p = s.splitn(3, ' ');
            (
                p.next().unwrap_or_default().to_string(),
                p.next().unwrap_or_default().to_string(),
                json(p.next().unwrap_or("null")),
            )
        };
        assert_eq!(
            split(&custom[0]),
            (
                "newsletter_signup".to_string(),
                "/products/mug.html".to_string(),
                serde_json::json!({"placement": "footer"})
            )
        );
        assert_eq!(
            split(&custom[1]),
            (
                "download".to_string(),
                "/products/mug.html".to_string(),
                serde_json::json!({"file": "care-guide.txt"})
            )
        );
        let paths = c.strings("SELECT path FROM events WHERE type = 'pageview' ORDER BY ts, id");
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert!(
            paths[1].starts_with("/app/subscribe/") && !paths[1].contains('@'),
            "the address in the path is redacted: {paths:?}"
        );
        for needle in [EMAIL, "ann.probe-7731", "ann.probe-7731%40example.org"] {
            assert_eq!(
                files_containing(&c, needle),
                Vec::<String>::new(),
                "{needle:?} must be in no store file"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_events_are_stored_and_the_email_is_not() {
    let _g = exclusive();
    for_each_browser(custom_events).await;
}
