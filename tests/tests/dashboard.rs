//! The dashboard (`dashboard/`, built by `scripts/build-dashboard.sh` into `dashboard/dist/`),
//! served by the demo collector at `/dashboard/`, in headless Chromium: signing in with a token,
//! overview cards that show exactly what the report API answers, charts that render, filters
//! that live in the URL (never the token), the real-time panel, and the README's screenshots
//! (`docs/screenshots/dashboard-overview.png`, `dashboard-journeys.png`).

use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use waymark_collector::store::sqlite::SqliteStore;
use waymark_collector::store::Store;
use waymark_tests::{exclusive, kinds, root, user_agent, Browser, Collector, Kind, Options};

const WAIT: Duration = Duration::from_secs(20);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}

/// One HTTP/1.1 exchange (`Connection: close`): the status and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A report as JSON, through the API.
fn report(c: &Collector, token: &str, report: &str, query: &str) -> Value {
    let auth = format!("Bearer {token}");
    let path = format!("/api/v1/sites/demo-shop/{report}?{query}");
    let (status, body) = http(c.addr, "GET", &path, &[("Authorization", &auth)], "");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("report JSON")
}

/// The shop's traffic: visitors on several devices and sources, browsing, adding to the cart,
/// and some of them buying. Sent through `/v1/batch` from the shop's own origin.
fn send_traffic(c: &Collector) {
    let origin = format!("http://{}", c.addr);
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ];
    let entries = [
        ("/", Some("https://www.google.com/"), ""),
        (
            "/products/mug",
            None,
            "?utm_source=newsletter&utm_medium=email",
        ),
        ("/", Some("https://duckduckgo.com/"), ""),
        ("/products/lamp", Some("https://www.google.com/"), ""),
        ("/", None, ""),
        ("/products/mug", Some("https://news.ycombinator.com/"), ""),
        ("/gifts", Some("https://www.google.com/"), ""),
    ];
    let now = now_ms();
    for (i, (ua, (entry, referrer, query))) in agents.iter().zip(entries).enumerate() {
        let start = now - 4 * 60_000 + i as i64 * 20_000;
        let mut path: Vec<&str> = vec![entry];
        match i % 4 {
            0 => path.extend(["/products/mug", "/cart", "/checkout"]),
            1 => path.extend(["/cart", "/checkout"]),
            2 => path.extend(["/products/lamp", "/products/mug"]),
            _ => {}
        }
        let mut events = Vec::new();
        for (j, p) in path.iter().enumerate() {
            let at = start + j as i64 * 15_000;
            let pv = format!("pv{i}x{j}abcd");
            let mut view = json!({"type": "pageview", "at": at, "pv": pv,
                "url": format!("{origin}{p}{}", if j == 0 { query } else { "" }), "title": p});
            if j == 0 {
                if let Some(r) = referrer {
                    view["referrer"] = json!(r);
                }
            }
            events.push(view);
            events.push(json!({"type": "engagement", "at": at + 9_000, "pv": pv,
                "url": format!("{origin}{p}"), "scroll": 30 + (i * 11 + j * 17) % 70, "engaged_ms": 9_000}));
            let url = format!("{origin}{p}");
            let item = |id: &str, name: &str, price: f64| json!([{"id": id, "name": name, "price": price, "quantity": 1}]);
            if p.starts_with("/products/") {
                let (id, name, price) = if p.ends_with("mug") {
                    ("mug", "Blue mug", 14.0)
                } else {
                    ("lamp", "Desk lamp", 49.0)
                };
                events.push(
                    json!({"type": "cart", "at": at + 5_000, "pv": pv, "url": url,
                    "action": "add", "currency": "EUR", "items": item(id, name, price)}),
                );
            }
            if *p == "/checkout" {
                events.push(json!({"type": "cart", "at": at + 1_000, "pv": pv, "url": url,
                    "action": "checkout", "currency": "EUR", "items": item("mug", "Blue mug", 14.0)}));
                if i % 2 == 0 {
                    events.push(
                        json!({"type": "cart", "at": at + 6_000, "pv": pv, "url": url,
                        "action": "purchase", "currency": "EUR", "order_id": format!("order-{i}"),
                        "revenue": 14.0 + i as f64, "items": item("mug", "Blue mug", 14.0)}),
                    );
                }
            }
        }
        let body = json!({"site": "demo-shop", "batch": format!("dash{i:04}x{now}"),
            "sent_at": now, "sdk": "test", "events": events})
        .to_string();
        let (status, answer) = http(
            c.addr,
            "POST",
            "/v1/batch",
            &[
                ("Content-Type", "application/json"),
                ("Origin", &origin),
                ("User-Agent", ua),
            ],
            &body,
        );
        assert_eq!(status, 202, "{answer}");
        let answer: Value = serde_json::from_str(&answer).expect("batch answer");
        assert_eq!(answer["rejected"], json!([]), "{answer}");
    }
}

async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

async fn wait_js(client: &Client, condition: &str, what: &str) {
    let started = Instant::now();
    loop {
        if let Ok(Value::Bool(true)) = client.execute(condition, vec![]).await {
            return;
        }
        assert!(started.elapsed() < WAIT, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for a (re)load of every report to finish, after `before` (the previous load's number).
async fn wait_loaded(client: &Client, before: &Value) {
    let cond = format!(
        "return document.body.dataset.loaded !== undefined && document.body.dataset.loaded !== {}",
        serde_json::to_string(&before.as_str().unwrap_or("")).unwrap_or_default()
    );
    wait_js(client, &cond, "the reports to load").await;
}

/// Chart animations end within a second; then the picture is still.
async fn shoot(client: &Client, name: &str) -> PathBuf {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    let dir = root().join("docs/screenshots");
    std::fs::create_dir_all(&dir).expect("docs/screenshots");
    let path = dir.join(name);
    if std::fs::read(&path).ok().as_deref() != Some(png.as_slice()) {
        std::fs::write(&path, &png).expect("write screenshot");
    }
    path
}

/// The cards' values (`data-value`, the API's JSON value) by metric name.
async fn cards(client: &Client) -> Value {
    js(
        client,
        "var o = {}; document.querySelectorAll('#cards [data-metric]').forEach(function (c) { \
           o[c.dataset.metric] = {value: JSON.parse(c.dataset.value), \
                                  text: c.querySelector('.value').textContent}; }); return o",
    )
    .await
}

/// Equal JSON, numbers compared as numbers (JavaScript has no integer type: 39.0 comes back 39).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN)).abs() < 1e-9
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

fn check_cards(cards: &Value, overview: &Value) {
    for key in [
        "visitors",
        "sessions",
        "pageviews",
        "bounce_rate",
        "avg_duration_s",
        "avg_scroll",
        "conversion_rate",
        "revenue",
        "dropped",
    ] {
        assert!(
            same(&cards[key]["value"], &overview[key]),
            "card {key}: {} vs the API's {}",
            cards[key],
            overview[key]
        );
    }
    for key in ["visitors", "sessions", "pageviews"] {
        let n = overview[key].as_u64().unwrap_or(0);
        assert_eq!(cards[key]["text"], json!(n.to_string()), "{key} shown");
    }
    let bounce = overview["bounce_rate"].as_f64().unwrap_or(0.0);
    assert_eq!(
        cards["bounce_rate"]["text"],
        json!(format!("{:.1}%", bounce * 100.0))
    );
}

#[test]
fn dashboard_shows_the_api_numbers_and_renders_every_chart() {
    let dist = root().join("dashboard/dist");
    assert!(
        dist.join("index.html").is_file(),
        "the dashboard is not built: run `bash scripts/build-dashboard.sh` first"
    );
    let _one_browser_at_a_time = exclusive();
    if !kinds().contains(&Kind::Chromium) {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(dashboard_journey(dist));
}

async fn dashboard_journey(dist: PathBuf) {
    let c = Collector::start(|cfg| cfg.dashboard_dir = Some(dist));
    let token = waymark_collector::auth::new_token().expect("token");
    SqliteStore::open(c.dir.path())
        .expect("store")
        .add_token(waymark_collector::auth::hash_token(&token), now_ms())
        .expect("add token");
    send_traffic(&c);

    let browser = Browser::start(
        Kind::Chromium,
        &Options {
            user_agent: user_agent(Kind::Chromium),
            ..Options::default()
        },
    )
    .await;
    let client = browser.client.clone();
    client
        .set_window_size(1440, 1000)
        .await
        .expect("window size");
    client
        .goto(&c.url("/dashboard/"))
        .await
        .expect("open the dashboard");
    wait_js(
        &client,
        "return !!document.getElementById('login-form')",
        "the login form",
    )
    .await;

    // A wrong token is refused and leaves the login form up.
    client
        .find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys("wm_wrong")
        .await
        .expect("type");
    client
        .find(Locator::Css("#login-form button[type=submit]"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_js(
        &client,
        "return !document.getElementById('login-error').hidden",
        "the refusal",
    )
    .await;

    client
        .find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys(&token)
        .await
        .expect("type");
    assert_eq!(
        js(
            &client,
            "return document.getElementById('login-site').value"
        )
        .await,
        json!("demo-shop")
    );
    client
        .find(Locator::Css("#login-form button[type=submit]"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_loaded(&client, &Value::Null).await;

    // The cards show the API's overview for the dashboard's own range and time zone.
    let form = js(
        &client,
        "return {from: document.getElementById('from').value, to: document.getElementById('to').value, \
                 tz: new URLSearchParams(location.search).get('tz'), status: document.getElementById('status').textContent}",
    )
    .await;
    let from = form["from"].as_str().unwrap_or_default().to_string();
    let to = form["to"].as_str().unwrap_or_default().to_string();
    let tz = form["tz"].as_str().unwrap_or("UTC").replace('/', "%2F");
    let range = format!("from={from}&to={to}&tz={tz}");
    let overview = report(&c, &token, "overview", &range);
    assert_eq!(overview["sessions"], json!(7), "{overview}");
    check_cards(&cards(&client).await, &overview);
    assert!(
        !form["status"].as_str().unwrap_or("").contains("failed"),
        "{}",
        form["status"]
    );

    // Every chart drew on a canvas.
    for id in [
        "chart-timeseries",
        "chart-devices",
        "chart-funnel",
        "chart-scroll",
        "chart-realtime",
    ] {
        wait_js(
            &client,
            &format!("return !!document.querySelector('#{id} canvas')"),
            &format!("{id} to render"),
        )
        .await;
    }
    // The journey map draws when the collector answers `paths`, and says so when it cannot.
    let auth = format!("Bearer {token}");
    let (paths_status, _) = http(
        c.addr,
        "GET",
        &format!("/api/v1/sites/demo-shop/paths?{range}&depth=4"),
        &[("Authorization", &auth)],
        "",
    );
    if paths_status == 200 {
        wait_js(
            &client,
            "return !!document.querySelector('#chart-paths canvas')",
            "the Sankey chart",
        )
        .await;
    } else {
        wait_js(
            &client,
            "return /not available/.test(document.getElementById('chart-paths').textContent)",
            "the journey map's notice",
        )
        .await;
    }
    // Tables, breakdowns, funnel and cart numbers come from the same answers.
    let funnel = report(
        &c,
        &token,
        "funnel",
        &format!(
            "{range}&step=page:/products/*&step=cart:add&step=cart:checkout&step=cart:purchase"
        ),
    );
    let shown: Vec<Value> = js(
        &client,
        "return Array.prototype.map.call(document.querySelectorAll('#funnel-table tbody tr'), \
           function (r) { return Number(r.children[1].textContent.replace(/,/g, '')); })",
    )
    .await
    .as_array()
    .cloned()
    .unwrap_or_default();
    let expected: Vec<Value> = funnel["steps"]
        .as_array()
        .map(|s| s.iter().map(|x| x["sessions"].clone()).collect())
        .unwrap_or_default();
    assert!(
        same(&json!(shown), &json!(expected)),
        "funnel steps: {shown:?} vs {expected:?}"
    );
    assert!(
        expected.first().and_then(Value::as_u64).unwrap_or(0) > 0,
        "{funnel}"
    );
    let pages = js(
        &client,
        "return document.querySelectorAll('#table-pages tbody tr').length",
    )
    .await;
    assert_eq!(
        pages,
        json!(
            report(&c, &token, "pages", &format!("{range}&limit=50"))["pages"]
                .as_array()
                .map_or(0, Vec::len)
        )
    );
    wait_js(
        &client,
        "return document.getElementById('realtime-visitors').textContent === '7'",
        "7 visitors in real time",
    )
    .await;

    // The token is in memory only: not in the URL, not in storage, not in a cookie.
    let leaks = js(
        &client,
        "return [location.href, document.cookie, JSON.stringify(localStorage), JSON.stringify(sessionStorage)].join(' ')",
    )
    .await;
    assert!(
        !leaks.as_str().unwrap_or("").contains(&token[3..]),
        "{leaks}"
    );

    // Tall enough for the cards, the time series, the tables and the breakdowns.
    client
        .set_window_size(1440, 1560)
        .await
        .expect("window size");
    let overview_png = shoot(&client, "dashboard-overview.png").await;
    client
        .set_window_size(1440, 1000)
        .await
        .expect("window size");

    // A filter applies to every report and lands in the URL, so the view can be shared.
    let before = js(&client, "return document.body.dataset.loaded").await;
    js(&client, "document.getElementById('f-device').value = 'mobile'; document.querySelector('#controls button[type=submit]').click(); return true").await;
    wait_loaded(&client, &before).await;
    let url = client.current_url().await.expect("url");
    assert!(url.as_str().contains("device=mobile"), "{url}");
    let mobile = report(
        &c,
        &token,
        "overview",
        &format!("{range}&filter=device:mobile"),
    );
    assert!(mobile["sessions"].as_u64().unwrap_or(0) < 7, "{mobile}");
    check_cards(&cards(&client).await, &mobile);

    // Opening the shared address (in a fresh tab state) asks for the token and keeps the filter.
    client.goto(url.as_str()).await.expect("reopen");
    wait_js(
        &client,
        "return !document.getElementById('login').hidden",
        "the login form again",
    )
    .await;
    client
        .find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys(&token)
        .await
        .expect("type");
    client
        .find(Locator::Css("#login-form button[type=submit]"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_loaded(&client, &Value::Null).await;
    assert_eq!(
        js(&client, "return document.getElementById('f-device').value").await,
        json!("mobile")
    );
    check_cards(&cards(&client).await, &mobile);

    // The journeys screenshot: unfiltered, scrolled to the journey map.
    let before = js(&client, "return document.body.dataset.loaded").await;
    js(
        &client,
        "document.getElementById('reset').click(); return true",
    )
    .await;
    wait_loaded(&client, &before).await;
    js(&client, "document.getElementById('journey-card').scrollIntoView({block: 'end'}); window.scrollBy(0, 16); return true").await;
    let journeys_png = shoot(&client, "dashboard-journeys.png").await;
    eprintln!(
        "screenshots: {} {}",
        overview_png.display(),
        journeys_png.display()
    );
    browser.close().await;
}
