//! The report API and `waymark report` against journeys sent through the real ingestion
//! endpoint. Every expected number is computed here from the journeys themselves, with plain
//! arithmetic over what was sent, never by re-running the store's queries.

use crate::harness::*;
use jiff::tz::TimeZone;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use waymark_collector::store::Backend;

const TOKEN: &str = "wm_reports_test_token";
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

/// A person: client IP (through a trusted proxy), user agent, and what enrichment makes of it.
struct Person {
    ip: &'static str,
    ua: &'static str,
    browser: &'static str,
    os: &'static str,
    device: &'static str,
}

const PEOPLE: &[Person] = &[
    Person {
        ip: "198.51.100.1",
        ua: "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        browser: "Firefox",
        os: "Linux",
        device: "desktop",
    },
    Person {
        ip: "198.51.100.2",
        ua: "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        browser: "Chrome",
        os: "Android",
        device: "mobile",
    },
    Person {
        ip: "198.51.100.3",
        ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        browser: "Chrome",
        os: "Windows",
        device: "desktop",
    },
    Person {
        ip: "198.51.100.4",
        ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        browser: "Safari",
        os: "macOS",
        device: "desktop",
    },
    Person {
        ip: "198.51.100.5",
        ua: "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
        browser: "Firefox",
        os: "Android",
        device: "mobile",
    },
    // Same browser as person 2, another network: another visitor.
    Person {
        ip: "198.51.100.6",
        ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        browser: "Chrome",
        os: "Windows",
        device: "desktop",
    },
];

#[derive(Clone, Copy)]
enum Landing {
    Direct,
    Google,
    Newsletter,
}

impl Landing {
    /// (source, medium, campaign, referrer host) as the source classifier names them.
    fn origin(
        self,
    ) -> (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    ) {
        match self {
            Landing::Direct => ("(direct)", "direct", None, None),
            Landing::Google => ("google", "search", None, Some("google.com")),
            Landing::Newsletter => ("newsletter", "email", Some("spring"), None),
        }
    }
}

type Items = &'static [(&'static str, &'static str, f64, i64)];

enum Act {
    View(&'static str),
    /// Cumulative engagement of the latest view: (scroll %, engaged ms so far).
    Engage(u8, u64),
    /// (action, currency, items (id, name, price, quantity), revenue).
    Cart(&'static str, &'static str, Items, Option<f64>),
    Custom(&'static str),
}

use Act::{Cart, Custom, Engage, View};

struct Journey {
    person: usize,
    /// How long before the test's start the journey begins (ms).
    ago: i64,
    landing: Landing,
    /// (seconds after the journey's start, act)
    acts: Vec<(i64, Act)>,
}

const MUG: Items = &[("mug", "Blue mug", 12.5, 1)];
const TWO_MUGS: Items = &[("mug", "Blue mug", 12.5, 2)];
const TEA: Items = &[("tea", "Green tea", 5.0, 2)];
const CUP: Items = &[("cup", "Cup", 3.0, 1)];
const TEA_AND_CUP: Items = &[("tea", "Green tea", 5.0, 2), ("cup", "Cup", 3.0, 1)];

fn journeys() -> Vec<Journey> {
    vec![
        // 0: searched, bought one mug (purchase revenue from its items).
        Journey {
            person: 0,
            ago: 20 * HOUR,
            landing: Landing::Google,
            acts: vec![
                (0, View("/")),
                (8, Engage(40, 5_000)),
                (10, View("/products/mug")),
                (40, Engage(80, 30_000)),
                (42, Cart("add", "EUR", MUG, None)),
                (50, View("/cart")),
                (60, Cart("checkout", "EUR", MUG, None)),
                (90, Cart("purchase", "EUR", MUG, None)),
                (91, View("/checkout/done")),
            ],
        },
        // 1: newsletter, checkout *before* the add: the funnel stops at the add. One page view
        // and 4 s engaged (reported twice, cumulatively): a bounce despite the cart events.
        Journey {
            person: 1,
            ago: 18 * HOUR,
            landing: Landing::Newsletter,
            acts: vec![
                (0, View("/products/mug")),
                (2, Engage(30, 2_000)),
                (5, Cart("checkout", "EUR", MUG, None)),
                (7, Engage(60, 4_000)),
                (9, Cart("add", "EUR", MUG, None)),
            ],
        },
        // 2: a bounce on the home page.
        Journey {
            person: 2,
            ago: 16 * HOUR,
            landing: Landing::Direct,
            acts: vec![(0, View("/")), (3, Engage(10, 3_000))],
        },
        // 3: searched, bought tea and a cup in dollars, signed up.
        Journey {
            person: 3,
            ago: 15 * HOUR,
            landing: Landing::Google,
            acts: vec![
                (0, View("/products/tea")),
                (20, Engage(100, 15_000)),
                (25, Cart("add", "USD", TEA, None)),
                (30, Cart("add", "USD", CUP, None)),
                (35, View("/cart")),
                (45, Cart("checkout", "USD", TEA_AND_CUP, None)),
                (80, Cart("purchase", "USD", TEA_AND_CUP, Some(13.0))),
                (81, View("/checkout/done")),
                (85, Custom("newsletter_signup")),
            ],
        },
        // 4: person 0 again, hours later: a second session, two product pages.
        Journey {
            person: 0,
            ago: 10 * HOUR,
            landing: Landing::Direct,
            acts: vec![
                (0, View("/products/cup")),
                (12, Engage(50, 12_000)),
                (20, View("/products/mug")),
                (21, Engage(20, 1_000)),
            ],
        },
        // 5: newsletter, added two mugs, abandoned.
        Journey {
            person: 4,
            ago: 8 * HOUR,
            landing: Landing::Newsletter,
            acts: vec![
                (0, View("/")),
                (15, View("/products/mug")),
                (30, Cart("add", "EUR", TWO_MUGS, None)),
            ],
        },
        // 6: searched, bought two mugs (explicit revenue).
        Journey {
            person: 5,
            ago: 6 * HOUR,
            landing: Landing::Google,
            acts: vec![
                (0, View("/products/mug")),
                (30, Engage(90, 20_000)),
                (31, Cart("add", "EUR", TWO_MUGS, None)),
                (40, Cart("checkout", "EUR", TWO_MUGS, None)),
                (100, Cart("purchase", "EUR", TWO_MUGS, Some(25.0))),
                (101, View("/checkout/done")),
                (110, Engage(100, 2_000)),
            ],
        },
        // 7: person 2 again: the blog, a sign-up, 9 s engaged: still a bounce.
        Journey {
            person: 2,
            ago: 3 * HOUR,
            landing: Landing::Direct,
            acts: vec![
                (0, View("/blog")),
                (4, Custom("newsletter_signup")),
                (9, Engage(75, 9_000)),
            ],
        },
        // 8: person 1, right now (realtime).
        Journey {
            person: 1,
            ago: 2 * MIN,
            landing: Landing::Direct,
            acts: vec![(0, View("/")), (30, View("/products/tea"))],
        },
        // 9: person 3, 25 minutes ago: no longer active.
        Journey {
            person: 3,
            ago: 25 * MIN,
            landing: Landing::Direct,
            acts: vec![(0, View("/about"))],
        },
    ]
}

/// One page view as sent.
struct PageView {
    journey: usize,
    path: &'static str,
    /// Deepest (scroll, engaged ms) reported, if any engagement was.
    engagement: Option<(u8, u64)>,
}

/// What one journey amounts to, computed from its acts (the session record, by hand).
struct Expected {
    visitor: (usize, i64),
    start: i64,
    end: i64,
    views: Vec<PageView>,
    source: (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    ),
    device: &'static str,
    browser: &'static str,
    os: &'static str,
    purchase: bool,
    add: bool,
    checkout: bool,
    /// (time, kind, path, action) of every event, for the funnel.
    events: Vec<(i64, &'static str, &'static str, &'static str)>,
    /// Per currency, (orders, revenue).
    orders: BTreeMap<&'static str, (u64, f64)>,
}

impl Expected {
    fn engaged_ms(&self) -> u64 {
        self.views
            .iter()
            .filter_map(|v| v.engagement.map(|(_, ms)| ms))
            .sum()
    }

    fn bounce(&self) -> bool {
        self.views.len() == 1 && self.engaged_ms() < 10_000
    }

    fn viewed(&self, glob: &str) -> bool {
        let prefix = glob.trim_end_matches('*');
        self.views.iter().any(|v| v.path.starts_with(prefix))
    }
}

fn utc_day(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// The journeys as sessions, with `now` the reference the offsets are taken from.
fn expected(journeys: &[Journey], now: i64) -> Vec<Expected> {
    journeys
        .iter()
        .enumerate()
        .map(|(j, jr)| {
            let start = now - jr.ago;
            let p = &PEOPLE[jr.person];
            let mut e = Expected {
                visitor: (jr.person, utc_day(start)),
                start,
                end: start + jr.acts.last().map_or(0, |(s, _)| s * 1000),
                views: Vec::new(),
                source: jr.landing.origin(),
                device: p.device,
                browser: p.browser,
                os: p.os,
                purchase: false,
                add: false,
                checkout: false,
                events: Vec::new(),
                orders: BTreeMap::new(),
            };
            for (s, act) in &jr.acts {
                let t = start + s * 1000;
                let path = e.views.last().map_or("/", |v| v.path);
                match act {
                    View(p) => {
                        e.views.push(PageView {
                            journey: j,
                            path: p,
                            engagement: None,
                        });
                        e.events.push((t, "pageview", p, ""));
                    }
                    Engage(scroll, ms) => {
                        let v = e.views.last_mut().unwrap();
                        let (s0, m0) = v.engagement.unwrap_or((0, 0));
                        v.engagement = Some((s0.max(*scroll), m0.max(*ms)));
                    }
                    Cart(action, currency, items, revenue) => {
                        e.events.push((t, "cart", path, action));
                        match *action {
                            "add" => e.add = true,
                            "checkout" => e.checkout = true,
                            "purchase" => {
                                e.purchase = true;
                                e.checkout = true;
                                let amount = revenue.unwrap_or_else(|| {
                                    items.iter().map(|(_, _, p, q)| p * *q as f64).sum()
                                });
                                let o = e.orders.entry(currency).or_default();
                                o.0 += 1;
                                o.1 += amount;
                            }
                            _ => {}
                        }
                    }
                    Custom(name) => e.events.push((t, "custom", path, name)),
                }
            }
            e
        })
        .collect()
}

fn pv_id(journey: usize, view: usize) -> String {
    format!("j{journey:02}v{view:02}pageview")
}

/// The journey's events as the SDK would send them: `at` relative to `sent_at = now`.
fn events_json(j: usize, jr: &Journey, now: i64) -> Vec<Value> {
    let start = now - jr.ago;
    let mut views = 0usize;
    let mut out = Vec::new();
    let mut url = String::new();
    for (s, act) in &jr.acts {
        let at = start + s * 1000;
        let pv = pv_id(j, views.max(1));
        match act {
            View(path) => {
                views += 1;
                url = format!("https://shop.example{path}");
                let mut e = json!({"type": "pageview", "at": at, "pv": pv_id(j, views),
                                   "url": url.clone()});
                if views == 1 {
                    match jr.landing {
                        Landing::Google => e["referrer"] = json!("https://www.google.com/"),
                        Landing::Newsletter => {
                            e["url"] = json!(format!(
                                "{url}?utm_source=newsletter&utm_medium=email&utm_campaign=spring"
                            ));
                        }
                        Landing::Direct => {}
                    }
                }
                out.push(e);
            }
            Engage(scroll, ms) => out.push(json!({"type": "engagement", "at": at, "pv": pv,
                "url": url.clone(), "scroll": scroll, "engaged_ms": ms})),
            Cart(action, currency, items, revenue) => {
                let items: Vec<Value> = items
                    .iter()
                    .map(|(id, name, price, q)| json!({"id": id, "name": name, "price": price, "quantity": q}))
                    .collect();
                let mut e = json!({"type": "cart", "at": at, "pv": pv, "url": url.clone(),
                    "action": action, "currency": currency, "items": items});
                if *action == "purchase" {
                    e["order_id"] = json!(format!("order-{j}"));
                }
                if let Some(r) = revenue {
                    e["revenue"] = json!(r);
                }
                out.push(e);
            }
            Custom(name) => out.push(json!({"type": "custom", "at": at, "pv": pv,
                "url": url.clone(), "name": name})),
        }
    }
    out
}

fn send(s: &Server, p: &Person, now: i64, events: &[Value]) -> Value {
    let body = json!({"site": "shop", "batch": batch_id(), "sent_at": now, "sdk": "test",
                      "events": events});
    let r = reply(
        agent()
            .post(&s.url("/v1/batch"))
            .header("content-type", "application/json")
            .header("origin", ORIGIN)
            .header("user-agent", p.ua)
            .header("x-forwarded-for", p.ip)
            .send(&body.to_string()),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    r.json()
}

fn get(s: &Server, path: &str, token: Option<&str>) -> Reply {
    let mut req = agent().get(&s.url(path));
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    reply(req.call())
}

fn report(s: &Server, name: &str, query: &str) -> Value {
    let r = get(
        s,
        &format!("/api/v1/sites/shop/{name}?{query}"),
        Some(TOKEN),
    );
    assert_eq!(r.status, 200, "{name}?{query}: {}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn assert_close(got: &Value, want: f64, what: &str) {
    let g = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {got}"));
    assert!(close(g, want), "{what}: got {g}, want {want}");
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn rate(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The overview a set of sessions should produce (without `dropped`).
fn check_totals(got: &Value, set: &[&Expected], what: &str) {
    let visitors: BTreeSet<_> = set.iter().map(|e| e.visitor).collect();
    assert_eq!(got["visitors"], visitors.len(), "{what}: visitors");
    assert_eq!(got["sessions"], set.len(), "{what}: sessions");
    let pageviews: usize = set.iter().map(|e| e.views.len()).sum();
    assert_eq!(got["pageviews"], pageviews, "{what}: pageviews");
    let bounces = set.iter().filter(|e| e.bounce()).count();
    assert_close(&got["bounce_rate"], rate(bounces, set.len()), what);
    let durations: Vec<f64> = set
        .iter()
        .map(|e| (e.end - e.start) as f64 / 1000.0)
        .collect();
    assert_close(&got["avg_duration_s"], mean(&durations), what);
    let scrolls: Vec<f64> = set
        .iter()
        .flat_map(|e| &e.views)
        .filter_map(|v| v.engagement.map(|(s, _)| f64::from(s)))
        .collect();
    assert_close(&got["avg_scroll"], mean(&scrolls), what);
    let buyers = set.iter().filter(|e| e.purchase).count();
    assert_close(&got["conversion_rate"], rate(buyers, set.len()), what);
    let mut revenue: BTreeMap<&str, f64> = BTreeMap::new();
    for e in set {
        for (c, (_, r)) in &e.orders {
            *revenue.entry(c).or_default() += r;
        }
    }
    let got_rev = got["revenue"].as_object().unwrap();
    assert_eq!(
        got_rev.len(),
        revenue.len(),
        "{what}: currencies {got_rev:?}"
    );
    for (c, r) in revenue {
        assert_close(&got_rev[c], r, what);
    }
}

/// Shifts each journey off 15-minute boundaries (UTC hours and days, and the +05:45 zone used
/// below, all fall on them) so that the few seconds between the test's clock and the
/// collector's cannot move a session into another bucket.
fn settle(journeys: &mut [Journey], now: i64) {
    const Q: i64 = 15 * MIN;
    for j in journeys {
        while (now - j.ago).div_euclid(Q) != (now - j.ago + MIN).div_euclid(Q) {
            j.ago += 2 * MIN;
        }
    }
}

struct Fixture {
    server: Server,
    sessions: Vec<Expected>,
    /// `from`/`to` (UTC) covering every journey.
    range: String,
}

/// A collector on `store` (its site registered there) with the report token.
fn collector_on(store: &Backend) -> Server {
    let server = Server::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.store = store.clone();
    });
    store
        .open(&server.dir)
        .unwrap()
        .add_token(waymark_collector::auth::hash_token(TOKEN), 0)
        .unwrap();
    server
}

fn fixture(store: &Backend) -> Fixture {
    let server = collector_on(store);
    let now = now_ms();
    let mut js = journeys();
    settle(&mut js, now);
    let mut order: Vec<usize> = (0..js.len()).collect();
    order.sort_by_key(|&j| std::cmp::Reverse(js[j].ago));
    for j in order {
        let r = send(
            &server,
            &PEOPLE[js[j].person],
            now,
            &events_json(j, &js[j], now),
        );
        assert_eq!(r["rejected"], json!([]), "journey {j}");
    }
    // Not counted: a bot, a rejected event and a stale one.
    let bot = Person {
        ip: "198.51.100.99",
        ua: "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        browser: "",
        os: "",
        device: "",
    };
    let pv = |at: i64| json!({"type": "pageview", "at": at, "pv": "botbotbot1", "url": "https://shop.example/"});
    send(&server, &bot, now, &[pv(now - 1000), pv(now - 500)]);
    let r = send(
        &server,
        &PEOPLE[0],
        now,
        &[
            json!({"type": "cart", "at": now - 100, "pv": "badbadbad1", "url": "https://shop.example/",
                   "action": "steal"}),
            pv(now - 25 * HOUR),
        ],
    );
    assert_eq!(r["accepted"], 0, "{r}");
    assert!(
        now_ms() - now < MIN,
        "sending took over a minute: buckets may be off"
    );
    let sessions = expected(&js, now);
    let from = jiff::Timestamp::from_millisecond(now - 24 * HOUR)
        .unwrap()
        .to_zoned_datetime(TimeZone::UTC)
        .date();
    let to = jiff::Timestamp::from_millisecond(now)
        .unwrap()
        .to_zoned_datetime(TimeZone::UTC)
        .date();
    Fixture {
        server,
        sessions,
        range: format!("from={from}&to={to}"),
    }
}

/// Which sessions a filter keeps.
type Keep = Box<dyn Fn(&Expected) -> bool>;
/// (person, UTC day): a visitor key.
type Visitor = (usize, i64);

#[test]
fn reports_match_the_journeys() {
    reports_match_the_journeys_on(&Backend::Sqlite);
}

pub(crate) fn reports_match_the_journeys_on(store: &Backend) {
    let f = fixture(store);
    let s = &f.server;
    let all: Vec<&Expected> = f.sessions.iter().collect();
    let range = &f.range;

    // Overview, with what was not counted.
    let o = report(s, "overview", range);
    check_totals(&o, &all, "overview");
    assert_eq!(o["dropped"], json!({"bot": 2, "rejected": 1, "stale": 1}));

    // Filters, alone and together (AND).
    let cases: Vec<(&str, Keep)> = vec![
        ("filter=source:google", Box::new(|e| e.source.0 == "google")),
        ("filter=device:mobile", Box::new(|e| e.device == "mobile")),
        (
            "filter=browser:Firefox",
            Box::new(|e| e.browser == "Firefox"),
        ),
        (
            "filter=page:/products/*",
            Box::new(|e| e.viewed("/products/*")),
        ),
        ("filter=country:DE", Box::new(|_| false)),
        (
            "filter=device:mobile&filter=page:/products/*",
            Box::new(|e| e.device == "mobile" && e.viewed("/products/*")),
        ),
    ];
    for (filter, keep) in &cases {
        let set: Vec<&Expected> = all.iter().copied().filter(|e| keep(e)).collect();
        let got = report(s, "overview", &format!("{range}&{filter}"));
        check_totals(&got, &set, filter);
    }

    // Pages.
    let pages = report(s, "pages", range);
    let views: Vec<&PageView> = all.iter().flat_map(|e| &e.views).collect();
    let paths: BTreeSet<&str> = views.iter().map(|v| v.path).collect();
    assert_eq!(pages["pages"].as_array().unwrap().len(), paths.len());
    for row in pages["pages"].as_array().unwrap() {
        let path = row["path"].as_str().unwrap();
        let here: Vec<&&PageView> = views.iter().filter(|v| v.path == path).collect();
        let visitors: BTreeSet<_> = here.iter().map(|v| f.sessions[v.journey].visitor).collect();
        let entries = all.iter().filter(|e| e.views[0].path == path).count();
        let exits = all
            .iter()
            .filter(|e| e.views.last().unwrap().path == path)
            .count();
        let engaged: Vec<(u8, u64)> = here.iter().filter_map(|v| v.engagement).collect();
        assert_eq!(row["pageviews"], here.len(), "{path}");
        assert_eq!(row["visitors"], visitors.len(), "{path}");
        assert_eq!(row["entries"], entries, "{path}");
        assert_eq!(row["exits"], exits, "{path}");
        assert_close(&row["exit_rate"], rate(exits, here.len()), path);
        let sc: Vec<f64> = engaged.iter().map(|(s, _)| f64::from(*s)).collect();
        assert_close(&row["avg_scroll"], mean(&sc), path);
        let en: Vec<f64> = engaged.iter().map(|(_, ms)| *ms as f64 / 1000.0).collect();
        assert_close(&row["avg_engaged_s"], mean(&en), path);
    }
    let first = &pages["pages"][0];
    assert_eq!(first["path"], "/products/mug", "most viewed first");

    // Sources.
    let sources = report(s, "sources", range);
    let keys: BTreeSet<_> = all.iter().map(|e| e.source).collect();
    assert_eq!(sources["sources"].as_array().unwrap().len(), keys.len());
    for row in sources["sources"].as_array().unwrap() {
        let key = (
            row["source"].as_str().unwrap(),
            row["medium"].as_str().unwrap(),
            row["campaign"].as_str(),
            row["referrer_host"].as_str(),
        );
        let set: Vec<&&Expected> = all.iter().filter(|e| e.source == key).collect();
        assert!(!set.is_empty(), "unexpected source row {row}");
        let visitors: BTreeSet<_> = set.iter().map(|e| e.visitor).collect();
        assert_eq!(row["visitors"], visitors.len(), "{key:?}");
        assert_eq!(row["sessions"], set.len(), "{key:?}");
        let buyers = set.iter().filter(|e| e.purchase).count();
        assert_close(
            &row["conversion_rate"],
            rate(buyers, set.len()),
            "source conversion",
        );
        let mut revenue: BTreeMap<String, f64> = BTreeMap::new();
        for e in &set {
            for (c, (_, r)) in &e.orders {
                *revenue.entry(c.to_string()).or_default() += r;
            }
        }
        let got: BTreeMap<String, f64> = serde_json::from_value(row["revenue"].clone()).unwrap();
        assert_eq!(got, revenue, "{key:?}");
    }

    // Devices, browsers, operating systems, countries.
    for (name, dim, of) in [
        (
            "devices",
            "device",
            (|e: &Expected| e.device) as fn(&Expected) -> &'static str,
        ),
        ("browsers", "browser", |e: &Expected| e.browser),
        ("os", "os", |e: &Expected| e.os),
        ("countries", "country", |_: &Expected| "(unknown)"),
    ] {
        let got = report(s, name, range);
        let mut want: BTreeMap<&str, (BTreeSet<Visitor>, usize)> = BTreeMap::new();
        for e in &all {
            let w = want.entry(of(e)).or_default();
            w.0.insert(e.visitor);
            w.1 += 1;
        }
        let rows = got["rows"].as_array().unwrap();
        assert_eq!(rows.len(), want.len(), "{name}: {got}");
        for row in rows {
            let (v, n) = &want[row[dim].as_str().unwrap()];
            assert_eq!(row["visitors"], v.len(), "{name} {row}");
            assert_eq!(row["sessions"], *n, "{name} {row}");
        }
    }

    // Funnel: ordered, not necessarily adjacent; journey 1's checkout came before its add.
    let funnel = report(
        s,
        "funnel",
        &format!(
            "{range}&step=page:/products/*&step=cart:add&step=cart:checkout&step=cart:purchase"
        ),
    );
    let steps: [(&str, &str); 4] = [
        ("pageview", "/products/"),
        ("cart", "add"),
        ("cart", "checkout"),
        ("cart", "purchase"),
    ];
    let mut reached = [0usize; 4];
    let mut gaps: Vec<Vec<i64>> = vec![Vec::new(); 3];
    for e in &all {
        // The earliest time each step is reached, each after the previous one.
        let mut last: Option<i64> = None;
        for (k, (kind, arg)) in steps.iter().enumerate() {
            let hit = e.events.iter().find(|(t, ek, path, action)| {
                last.is_none_or(|l| *t > l)
                    && ek == kind
                    && if *kind == "pageview" {
                        path.starts_with(arg)
                    } else {
                        action == arg
                    }
            });
            let Some((t, ..)) = hit else { break };
            reached[k] += 1;
            if let Some(l) = last {
                gaps[k - 1].push(t - l);
            }
            last = Some(*t);
        }
    }
    assert_eq!(
        reached,
        [7, 5, 3, 3],
        "worked out by hand from the journeys"
    );
    let got = funnel["steps"].as_array().unwrap();
    for k in 0..4 {
        assert_eq!(got[k]["sessions"], reached[k], "step {k}");
        assert_close(
            &got[k]["conversion"],
            rate(reached[k], reached[0]),
            "conversion",
        );
        let next = if k < 3 { reached[k + 1] } else { reached[k] };
        assert_eq!(got[k]["drop_off"], reached[k] - next, "drop-off {k}");
        if k < 3 {
            let mut g = gaps[k].clone();
            g.sort_unstable();
            let n = g.len();
            let med = if n % 2 == 1 {
                g[n / 2] as f64
            } else {
                (g[n / 2 - 1] + g[n / 2]) as f64 / 2.0
            } / 1000.0;
            assert_close(&got[k]["median_s"], med, "median");
        } else {
            assert_eq!(got[k]["median_s"], Value::Null);
        }
    }
    // Journey 1 alone: the page and the add, but not the checkout that came first.
    let j1 = report(
        s,
        "funnel",
        &format!("{range}&filter=device:mobile&filter=source:newsletter&step=page:/products/*&step=cart:add&step=cart:checkout"),
    );
    let counts: Vec<u64> = j1["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sessions"].as_u64().unwrap())
        .collect();
    // Journeys 1 and 5 are mobile newsletter visits; 5 added but never checked out.
    assert_eq!(counts, [2, 2, 0]);
    let ev = report(
        s,
        "funnel",
        &format!("{range}&step=page:/*&step=event:newsletter_signup"),
    );
    assert_eq!(ev["steps"][1]["sessions"], 2, "custom events as steps");

    // Scroll depth of product pages.
    let scroll = report(s, "scroll", &format!("{range}&page=/products/*"));
    let depths: Vec<u8> = views
        .iter()
        .filter(|v| v.path.starts_with("/products/"))
        .filter_map(|v| v.engagement.map(|(s, _)| s))
        .collect();
    assert_eq!(scroll["pageviews"], depths.len());
    for d in [25u8, 50, 75, 100] {
        let n = depths.iter().filter(|&&s| s >= d).count();
        assert_close(
            &scroll["reached"][d.to_string()],
            rate(n, depths.len()),
            "reached",
        );
    }
    for (b, row) in scroll["histogram"].as_array().unwrap().iter().enumerate() {
        let n = depths
            .iter()
            .filter(|&&s| usize::from(s / 10).min(9) == b)
            .count();
        assert_eq!(row["pageviews"], n, "bucket {b}");
    }

    // Cart.
    let cart = report(s, "cart", range);
    let adds = all.iter().filter(|e| e.add).count();
    assert_eq!(cart["sessions_with_add"], adds);
    assert_eq!(
        cart["sessions_with_checkout"],
        all.iter().filter(|e| e.checkout).count()
    );
    assert_eq!(
        cart["sessions_with_purchase"],
        all.iter().filter(|e| e.purchase).count()
    );
    let abandoned = all.iter().filter(|e| e.add && !e.purchase).count();
    assert_close(
        &cart["abandonment_rate"],
        rate(abandoned, adds),
        "abandonment",
    );
    let mut orders: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    for e in &all {
        for (c, (n, r)) in &e.orders {
            let o = orders.entry(c).or_default();
            o.0 += n;
            o.1 += r;
        }
    }
    for (c, (n, r)) in &orders {
        assert_eq!(cart["orders"][c], *n, "{c}");
        assert_close(&cart["revenue"][c], *r, c);
        assert_close(&cart["aov"][c], r / *n as f64, c);
    }
    // Products added: the mug in journeys 0, 1, 5, 6 (1 + 1 + 2 + 2).
    assert_eq!(
        cart["top_added"][0],
        json!({"id": "mug", "name": "Blue mug", "quantity": 6, "sessions": 4})
    );
    let bought: Vec<(String, u64)> = cart["top_bought"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["quantity"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        bought,
        [("mug".into(), 3), ("tea".into(), 2), ("cup".into(), 1)]
    );

    // Realtime: only person 1 (journey 8) was active in the last 5 minutes.
    let rt = report(s, "realtime", "");
    assert_eq!(rt["visitors"], 1);
    assert_eq!(
        rt["pages"],
        json!([{"path": "/products/tea", "visitors": 1}])
    );
    let per_minute: u64 = rt["per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["events"].as_u64().unwrap())
        .sum();
    assert_eq!(
        per_minute, 3,
        "journeys 8 (two views) and 9 (one) in the last 30 minutes"
    );
    assert_eq!(rt["per_minute"].as_array().unwrap().len(), 30);

    // Raw sessions, newest first.
    let got = report(s, "sessions", &format!("{range}&limit=3"));
    let mut newest: Vec<&&Expected> = all.iter().collect();
    newest.sort_by_key(|e| std::cmp::Reverse(e.start));
    let rows = got["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (row, e) in rows.iter().zip(&newest) {
        assert_eq!(row["entry_path"], e.views[0].path);
        assert_eq!(row["exit_path"], e.views.last().unwrap().path);
        assert_eq!(row["pageviews"], e.views.len());
        assert_eq!(row["bounce"], e.bounce());
        assert_eq!(row["device"], e.device);
        assert_close(
            &row["duration_s"],
            (e.end - e.start) as f64 / 1000.0,
            "duration",
        );
    }

    // An empty range is a zero report.
    let empty = report(s, "overview", "from=2020-01-01&to=2020-01-31");
    check_totals(&empty, &[], "empty");
    assert_eq!(
        empty["dropped"],
        json!({"bot": 0, "rejected": 0, "stale": 0})
    );
    let empty = report(
        s,
        "funnel",
        "from=2020-01-01&to=2020-01-01&step=page:/&step=cart:add",
    );
    assert_eq!(empty["steps"][0]["sessions"], 0);
}

#[test]
fn days_and_hours_follow_the_time_zone() {
    days_and_hours_follow_the_time_zone_on(&Backend::Sqlite);
}

pub(crate) fn days_and_hours_follow_the_time_zone_on(store: &Backend) {
    let f = fixture(store);
    let s = &f.server;
    let all: Vec<&Expected> = f.sessions.iter().collect();
    for tz_name in ["Asia/Kathmandu", "UTC"] {
        let tz = TimeZone::get(tz_name).unwrap();
        let local_day = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .unwrap()
                .to_zoned_datetime(tz.clone())
                .date()
        };
        let mut by_day: BTreeMap<jiff::civil::Date, Vec<&Expected>> = BTreeMap::new();
        for e in &all {
            by_day.entry(local_day(e.start)).or_default().push(e);
        }
        let (first, last) = (
            *by_day.keys().next().unwrap(),
            *by_day.keys().last().unwrap(),
        );
        // Each local day on its own: sessions belong to the day they started on there.
        for (day, set) in &by_day {
            let got = report(s, "overview", &format!("from={day}&to={day}&tz={tz_name}"));
            check_totals(&got, set, &format!("{tz_name} {day}"));
        }
        // The daily series gives the same split.
        let series = report(
            s,
            "timeseries",
            &format!("from={first}&to={last}&tz={tz_name}&interval=day"),
        );
        let points = series["points"].as_array().unwrap();
        assert_eq!(points.len() as i32, (last - first).get_days() + 1);
        for p in points {
            let day: jiff::civil::Date = p["start"].as_str().unwrap().parse().unwrap();
            let n = by_day.get(&day).map_or(0, Vec::len);
            assert_eq!(p["sessions"], n, "{tz_name} {day}");
        }
        // Hourly: every session in the hour it started, local hours labelled with the offset.
        let series = report(
            s,
            "timeseries",
            &format!("from={first}&to={last}&tz={tz_name}&interval=hour&metric=sessions,visitors"),
        );
        let points = series["points"].as_array().unwrap();
        let mut want: BTreeMap<String, usize> = BTreeMap::new();
        for e in &all {
            let z = jiff::Timestamp::from_millisecond(e.start)
                .unwrap()
                .to_zoned_datetime(tz.clone());
            *want
                .entry(z.strftime("%Y-%m-%dT%H:00%:z").to_string())
                .or_default() += 1;
        }
        let mut got: BTreeMap<String, usize> = BTreeMap::new();
        for p in points {
            assert!(p.get("pageviews").is_none(), "only the asked metrics");
            let n = p["sessions"].as_u64().unwrap() as usize;
            if n > 0 {
                got.insert(p["start"].as_str().unwrap().to_string(), n);
            }
        }
        assert_eq!(got, want, "{tz_name}");
        let days = (last - first).get_days() as usize + 1;
        assert_eq!(points.len(), days * 24, "no DST in these zones");
    }
}

#[test]
fn auth_site_and_parameter_errors() {
    let f = fixture(&Backend::Sqlite);
    let s = &f.server;
    let path = "/api/v1/sites/shop/overview";
    let r = get(s, path, None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(r.json()["error"].is_string());
    assert_eq!(get(s, path, Some("wm_wrong")).status, 401);
    let r = reply(
        agent()
            .get(&s.url(path))
            .header("authorization", &format!("Basic {TOKEN}"))
            .call(),
    );
    assert_eq!(r.status, 401, "only Bearer");
    // Unknown site after a valid token; unknown sites are not revealed without one.
    let r = get(s, "/api/v1/sites/nope/overview", Some(TOKEN));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "unknown site");
    assert_eq!(get(s, "/api/v1/sites/nope/overview", None).status, 401);
    assert_eq!(get(s, "/api/v1/sites/shop/nope", Some(TOKEN)).status, 404);
    assert_eq!(get(s, "/api/v1/sites/shop", Some(TOKEN)).status, 404);
    for (query, field) in [
        ("from=yesterday", "from"),
        ("to=2024-13-01", "to"),
        ("from=2024-02-02&to=2024-02-01", "from"),
        ("tz=Nowhere/Special", "tz"),
        ("filter=colour:blue", "filter"),
        ("limit=0", "limit"),
        ("surprise=1", "query"),
    ] {
        let r = get(s, &format!("{path}?{query}"), Some(TOKEN));
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{query}");
        assert!(r.json()["error"].as_str().unwrap().contains(field) || field == "query");
    }
    for (report, query, field) in [
        ("timeseries", "interval=week", "interval"),
        ("timeseries", "metric=joy", "metric"),
        ("funnel", "step=page:/", "step"),
        ("funnel", "step=page:/&step=cart:steal", "step"),
    ] {
        let r = get(
            s,
            &format!("/api/v1/sites/shop/{report}?{query}"),
            Some(TOKEN),
        );
        assert_eq!(r.status, 400, "{report}?{query}: {}", r.body);
        assert_eq!(r.json()["field"], field);
    }
    let r = reply(
        agent()
            .post(&s.url(path))
            .header("authorization", &format!("Bearer {TOKEN}"))
            .send(""),
    );
    assert_eq!(r.status, 405);
}

#[test]
fn cli_prints_the_same_report() {
    cli_prints_the_same_report_on(&Backend::Sqlite);
}

pub(crate) fn cli_prints_the_same_report_on(store: &Backend) {
    let f = fixture(store);
    let s = &f.server;
    let api = report(s, "pages", &f.range);
    let mut args: Vec<String> = vec![
        "report".into(),
        "pages".into(),
        "--site".into(),
        "shop".into(),
    ];
    for kv in f.range.split('&') {
        let (k, v) = kv.split_once('=').unwrap();
        args.push(format!("--{k}"));
        args.push(v.into());
    }
    args.push("--data-dir".into());
    args.push(s.dir.display().to_string());
    if let Backend::ClickHouse(t) = store {
        args.push("--store".into());
        args.push(t.url());
    }
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_waymark"))
            .args(&args)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (ok, json_out, err) = run(&["--json"]);
    assert!(ok, "{err}");
    let cli: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(cli, api, "the CLI and the API answer the same");
    let (ok, table, err) = run(&[]);
    assert!(ok, "{err}");
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("path") && header.contains("exit_rate"),
        "{table}"
    );
    assert!(
        table.lines().nth(1).unwrap().starts_with("/products/mug"),
        "{table}"
    );
    let (ok, _, err) = run(&["--tz", "Mars/Base"]);
    assert!(!ok);
    assert!(err.contains("tz"), "{err}");
}

/// The journey map worked out from the sent page views: `(step, path) → sessions` and
/// `(step, from, to) → sessions`, without folding.
type Nodes = BTreeMap<(u64, String), u64>;
type Links = BTreeMap<(u64, String, String), u64>;

fn journey_map(sessions: &[Vec<&str>], start: Option<&str>, depth: usize) -> (Nodes, Links) {
    let (mut nodes, mut links) = (Nodes::new(), Links::new());
    for views in sessions {
        let mut seq: Vec<&str> = views.clone();
        seq.dedup();
        let begin = match start {
            None if seq.is_empty() => continue,
            None => 0,
            Some(p) => match seq.iter().position(|v| *v == p) {
                Some(i) => i,
                None => continue,
            },
        };
        let seq = &seq[begin..];
        for k in 0..seq.len().min(depth) {
            *nodes.entry((k as u64, seq[k].to_string())).or_default() += 1;
            if k + 1 < depth {
                let next = seq.get(k + 1).copied().unwrap_or("(exit)");
                if next == "(exit)" {
                    *nodes.entry((k as u64 + 1, next.to_string())).or_default() += 1;
                }
                *links
                    .entry((k as u64, seq[k].to_string(), next.to_string()))
                    .or_default() += 1;
            }
        }
    }
    (nodes, links)
}

/// A paths answer as the same maps, links named by their nodes.
fn map_of(got: &Value) -> (Nodes, Links) {
    let nodes = got["nodes"].as_array().unwrap();
    let key = |i: &Value| {
        let n = &nodes[i.as_u64().unwrap() as usize];
        (
            n["step"].as_u64().unwrap(),
            n["path"].as_str().unwrap().to_string(),
        )
    };
    let mut n = Nodes::new();
    for node in nodes {
        let prev = n.insert(
            (
                node["step"].as_u64().unwrap(),
                node["path"].as_str().unwrap().into(),
            ),
            node["sessions"].as_u64().unwrap(),
        );
        assert!(prev.is_none(), "duplicate node {node}");
    }
    let mut l = Links::new();
    for link in got["links"].as_array().unwrap() {
        let (s, t) = (key(&link["source"]), key(&link["target"]));
        assert_eq!(s.0 + 1, t.0, "links join consecutive steps: {link}");
        l.insert((s.0, s.1, t.1), link["sessions"].as_u64().unwrap());
    }
    (n, l)
}

#[test]
fn journey_map_matches_the_journeys() {
    journey_map_matches_the_journeys_on(&Backend::Sqlite);
}

pub(crate) fn journey_map_matches_the_journeys_on(store: &Backend) {
    let f = fixture(store);
    let s = &f.server;
    let sessions: Vec<Vec<&str>> = f
        .sessions
        .iter()
        .map(|e| e.views.iter().map(|v| v.path).collect())
        .collect();
    for (query, start, depth) in [
        ("limit=1000", None, 4),
        ("start=/&limit=1000", Some("/"), 4),
        (
            "start=/products/mug&depth=2&limit=1000",
            Some("/products/mug"),
            2,
        ),
    ] {
        let got = report(s, "paths", &format!("{}&{query}", f.range));
        let (nodes, links) = journey_map(&sessions, start, depth);
        let entered = nodes
            .iter()
            .filter(|((k, _), _)| *k == 0)
            .map(|(_, n)| n)
            .sum::<u64>();
        assert_eq!(got["sessions"], entered, "{query}");
        assert_eq!(map_of(&got), (nodes, links), "{query}: {got}");
    }
    // Folding keeps one page per step: every step's sessions are still all there.
    let got = report(s, "paths", &format!("{}&limit=1", f.range));
    let (want, _) = journey_map(&sessions, None, 4);
    let (nodes, _) = map_of(&got);
    for k in 0..4u64 {
        let total = |m: &Nodes| {
            m.iter()
                .filter(|((s, _), _)| *s == k)
                .map(|(_, n)| n)
                .sum::<u64>()
        };
        assert_eq!(total(&nodes), total(&want), "step {k}");
        let pages = nodes
            .keys()
            .filter(|(s, p)| *s == k && p != "(other)" && p != "(exit)")
            .count();
        assert!(pages <= 1, "step {k}: {got}");
    }
    // The entry page kept is the most common one: "/" (journeys 0, 2, 5 and 8).
    let top = want
        .iter()
        .filter(|((k, _), _)| *k == 0)
        .max_by_key(|(_, n)| **n)
        .unwrap();
    assert_eq!((top.0 .1.as_str(), *top.1), ("/", 4));
    assert_eq!(nodes.get(&(0, "/".to_string())), Some(&4));
    assert_eq!(nodes.get(&(0, "(other)".to_string())), Some(&6));
    let r = get(s, "/api/v1/sites/shop/paths?depth=11", Some(TOKEN));
    assert_eq!((r.status, r.json()["field"].clone()), (400, json!("depth")));
}

/// A collector with the report token, and a time for same-day journeys: at least 90 s after
/// UTC midnight, so a minute of events stays on one day (one visitor key).
fn quiet_server(store: &Backend) -> (Server, i64) {
    let server = collector_on(store);
    let since_midnight = now_ms().rem_euclid(86_400_000);
    if since_midnight < 90_000 {
        std::thread::sleep(std::time::Duration::from_millis(
            (90_000 - since_midnight) as u64,
        ));
    }
    (server, now_ms())
}

#[test]
fn attribution_looks_back_over_the_visitors_day_and_export_streams() {
    attribution_looks_back_over_the_visitors_day_and_export_streams_on(&Backend::Sqlite);
}

pub(crate) fn attribution_looks_back_over_the_visitors_day_and_export_streams_on(store: &Backend) {
    let (s, now) = quiet_server(store);
    let base = now - 60_000;
    let pv = |at: i64, id: &str, path: &str| json!({"type": "pageview", "at": base + at, "pv": id, "url": format!("https://shop.example{path}")});
    let buy = |at: i64, id: &str, currency: &str, items: Value, revenue: Option<f64>| {
        let mut e = json!({"type": "cart", "at": base + at, "pv": id, "url": "https://shop.example/p",
            "action": "purchase", "order_id": format!("o-{id}"), "currency": currency, "items": items});
        if let Some(r) = revenue {
            e["revenue"] = json!(r);
        }
        e
    };
    // Person 0: a newsletter session, then, on a search, a second session that buys a mug
    // (12.5 EUR from its items).
    let mut nl = pv(0, "a1pageview", "/");
    nl["url"] =
        json!("https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=spring");
    let mut search = pv(20_000, "a3pageview", "/products/mug");
    search["referrer"] = json!("https://www.google.com/");
    send(&s, &PEOPLE[0], now, &[nl, pv(5_000, "a2pageview", "/blog")]);
    send(
        &s,
        &PEOPLE[0],
        now,
        &[
            search,
            buy(
                30_000,
                "a3pageview",
                "EUR",
                json!([{"id": "mug", "price": 12.5, "quantity": 1}]),
                None,
            ),
        ],
    );
    // Person 1: one search session buying tea for 10 USD.
    let mut search = pv(5_000, "b1pageview", "/");
    search["referrer"] = json!("https://www.google.com/");
    send(
        &s,
        &PEOPLE[1],
        now,
        &[
            search,
            pv(10_000, "b2pageview", "/products/tea"),
            buy(
                15_000,
                "b2pageview",
                "USD",
                json!([{"id": "tea", "price": 5.0, "quantity": 2}]),
                Some(10.0),
            ),
        ],
    );
    // Person 2: direct, a reload of the home page (collapses on the map), a titled page that
    // needs CSV quoting and looks like a spreadsheet formula, and a sign-up.
    let mut about = pv(12_000, "c3pageview", "/about");
    about["title"] = json!("=About us, \"the shop\"");
    send(
        &s,
        &PEOPLE[2],
        now,
        &[
            pv(0, "c1pageview", "/"),
            pv(4_000, "c2pageview", "/"),
            about,
            json!({"type": "custom", "at": base + 13_000, "pv": "c3pageview",
                   "url": "https://shop.example/about", "name": "newsletter_signup"}),
        ],
    );
    let sessions = 4;
    let events = 2 + 2 + 3 + 4;

    let attribution = |q: &str| report(&s, "attribution", &format!("goal=cart:purchase&{q}"));
    let rows = |v: &Value| -> BTreeMap<String, (f64, BTreeMap<String, f64>)> {
        v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["source"].as_str().unwrap().to_string(),
                    (
                        r["conversions"].as_f64().unwrap(),
                        serde_json::from_value(r["revenue"].clone()).unwrap(),
                    ),
                )
            })
            .collect()
    };
    let money = |list: &[(&str, f64)]| -> BTreeMap<String, f64> {
        list.iter().map(|(c, x)| (c.to_string(), *x)).collect()
    };
    // Last touch: both purchases came in from the search.
    let last = attribution("model=last");
    assert_eq!(last["conversions"], 2);
    assert_eq!(last["revenue"], json!({"EUR": 12.5, "USD": 10.0}));
    assert_eq!(
        rows(&last),
        BTreeMap::from([(
            "google".into(),
            (2.0, money(&[("EUR", 12.5), ("USD", 10.0)]))
        )])
    );
    assert_eq!(rows(&attribution("")), rows(&last), "last is the default");
    // First touch: person 0's mug goes to the newsletter that brought them first that day.
    assert_eq!(
        rows(&attribution("model=first")),
        BTreeMap::from([
            ("google".into(), (1.0, money(&[("USD", 10.0)]))),
            ("newsletter".into(), (1.0, money(&[("EUR", 12.5)]))),
        ])
    );
    // Linear: person 0's two sessions share the mug.
    assert_eq!(
        rows(&attribution("model=linear")),
        BTreeMap::from([
            (
                "google".into(),
                (1.5, money(&[("EUR", 6.25), ("USD", 10.0)]))
            ),
            ("newsletter".into(), (0.5, money(&[("EUR", 6.25)]))),
        ])
    );
    // Other goal kinds; no revenue unless the goal is a purchase.
    let signup = report(
        &s,
        "attribution",
        "goal=event:newsletter_signup&model=first",
    );
    assert_eq!(signup["revenue"], json!({}));
    assert_eq!(signup["sources"][0]["source"], "(direct)");
    assert_eq!(signup["sources"][0]["conversions"], 1.0);
    let page = report(&s, "attribution", "goal=page:/products/*&model=linear");
    assert_eq!(page["conversions"], 2);
    for (q, field) in [
        ("model=first", "goal"),
        ("goal=cart:steal", "goal"),
        ("goal=cart:add&model=u", "model"),
    ] {
        let r = get(
            &s,
            &format!("/api/v1/sites/shop/attribution?{q}"),
            Some(TOKEN),
        );
        assert_eq!(
            (r.status, r.json()["field"].clone()),
            (400, json!(field)),
            "{q}"
        );
    }

    // The map from the home page: the reload collapses; person 0's second session never
    // saw "/".
    let map = report(&s, "paths", "start=/");
    let all: Vec<Vec<&str>> = vec![
        vec!["/", "/blog"],
        vec!["/products/mug"],
        vec!["/", "/products/tea"],
        vec!["/", "/", "/about"],
    ];
    assert_eq!(map_of(&map), journey_map(&all, Some("/"), 4));
    assert_eq!(map["sessions"], 3);
    assert_eq!(map["links"].as_array().unwrap().len(), 6);

    // Export: every stored row, NDJSON parseable, CSV quoted (a formula-like title neutralised
    // with a leading `'`), the CLI byte for byte the same.
    let export = |q: &str| get(&s, &format!("/api/v1/sites/shop/export?{q}"), Some(TOKEN));
    let r = export("table=events&format=ndjson");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), events);
    assert!(lines
        .windows(2)
        .all(|w| w[0]["ts"].as_i64() <= w[1]["ts"].as_i64()));
    let about: Vec<&Value> = lines.iter().filter(|l| l["path"] == "/about").collect();
    assert_eq!(about[0]["title"], "=About us, \"the shop\"");
    let session = about[0]["session"].as_str().unwrap();
    assert!(session.len() == 16 && session.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(lines
        .iter()
        .all(|l| l.get("ip").is_none() && l.get("user_agent").is_none()));
    let buy = lines.iter().find(|l| l["action"] == "purchase").unwrap();
    assert!(buy["items"].is_array(), "items stay JSON: {buy}");

    let r = export("table=events&format=csv");
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let mut csv = r.body.split("\r\n");
    assert_eq!(
        csv.next().unwrap(),
        "session,visitor,ts,type,pv,host,path,title,scroll,engaged_ms,action,order_id,revenue,currency,items,name,props"
    );
    assert_eq!(r.body.matches("\r\n").count(), events + 1);
    assert!(
        r.body.contains(",/about,\"'=About us, \"\"the shop\"\"\","),
        "{}",
        r.body
    );

    let r = export("table=sessions&format=csv");
    assert_eq!(r.body.matches("\r\n").count(), sessions + 1);
    assert!(r.body.starts_with("id,visitor,day,start,end,"));
    let r = export("table=sessions");
    let rows: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), sessions);
    let visitors: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["visitor"].as_str().unwrap())
        .collect();
    assert_eq!(
        visitors.len(),
        3,
        "person 0's two sessions share the day's key"
    );
    // Filters apply to exports too.
    let r = export("table=sessions&filter=source:google");
    assert_eq!(r.body.lines().count(), 2);
    for (q, status, field) in [
        ("format=csv", 400, Some("table")),
        ("table=users", 400, Some("table")),
        ("table=events&format=xml", 400, Some("format")),
    ] {
        let r = export(q);
        assert_eq!(r.status, status, "{q}");
        assert_eq!(r.json()["field"], json!(field), "{q}");
    }
    assert_eq!(
        get(&s, "/api/v1/sites/shop/export?table=events", None).status,
        401
    );
    assert_eq!(
        get(&s, "/api/v1/sites/nope/export?table=events", Some(TOKEN)).status,
        404
    );

    for (table, format) in [("events", "csv"), ("sessions", "ndjson")] {
        let api = export(&format!("table={table}&format={format}")).body;
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_waymark"))
            .args([
                "export", "--site", "shop", "--table", table, "--format", format,
            ])
            .arg("--data-dir")
            .arg(&s.dir)
            .args(match store {
                Backend::ClickHouse(t) => vec!["--store".to_string(), t.url()],
                Backend::Sqlite => vec![],
            })
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            api,
            "{table} {format}"
        );
    }
}

/// A session that runs across 00:00 UTC stays one session (SESSIONS.md: the event after
/// midnight finds the visitor's open session under yesterday's salt), belongs to the day it
/// started, and its visitor counts once.
#[test]
fn a_session_across_midnight_is_one_session_of_the_day_it_started() {
    a_session_across_midnight_is_one_session_of_the_day_it_started_on(&Backend::Sqlite);
}

pub(crate) fn a_session_across_midnight_is_one_session_of_the_day_it_started_on(store: &Backend) {
    const DAY: i64 = 86_400_000;
    // Both events must lie in the past and within the last 24 h: not in the day's last minute.
    let since_midnight = now_ms().rem_euclid(DAY);
    if since_midnight > DAY - 60_000 {
        std::thread::sleep(std::time::Duration::from_millis(
            (DAY - since_midnight) as u64,
        ));
    }
    let (s, now) = quiet_server(store);
    let midnight = now - now.rem_euclid(DAY);
    let pv = |at: i64, id: &str, path: &str| json!({"type": "pageview", "at": at, "pv": id, "url": format!("https://shop.example{path}")});
    // Two batches, as two page loads would send them: one before midnight, one after.
    send(
        &s,
        &PEOPLE[0],
        now,
        &[pv(midnight - 20_000, "mn1pageview", "/")],
    );
    send(
        &s,
        &PEOPLE[0],
        now,
        &[pv(midnight + 20_000, "mn2pageview", "/products/mug")],
    );
    let date = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .unwrap()
            .to_zoned_datetime(TimeZone::UTC)
            .date()
            .to_string()
    };
    let (yesterday, today) = (date(midnight - 1), date(midnight));
    let day = |from: &str, to: &str| report(&s, "overview", &format!("from={from}&to={to}"));
    let started = day(&yesterday, &yesterday);
    assert_eq!(started["sessions"], 1, "{started}");
    assert_eq!(started["visitors"], 1, "{started}");
    assert_eq!(
        started["pageviews"], 2,
        "both page views belong to the session's day: {started}"
    );
    let next = day(&today, &today);
    assert_eq!(
        next["sessions"], 0,
        "no second session after midnight: {next}"
    );
    let both = day(&yesterday, &today);
    assert_eq!(
        (both["sessions"].clone(), both["visitors"].clone()),
        (json!(1), json!(1)),
        "{both}"
    );
    let rows = report(&s, "sessions", &format!("from={yesterday}&to={today}"));
    let list = rows["sessions"].as_array().expect("a sessions list");
    assert_eq!(list.len(), 1, "{rows}");
    let one = &list[0];
    assert_eq!(one["day"], json!(yesterday), "{one}");
    assert_eq!(
        (one["entry_path"].clone(), one["exit_path"].clone()),
        (json!("/"), json!("/products/mug"))
    );
    assert_eq!(one["pageviews"], 2);
    // 40 s apart on the client clock; each batch's receive time shifts its events a little.
    assert!(
        (one["duration_s"].as_f64().unwrap() - 40.0).abs() < 2.0,
        "{one}"
    );
}
