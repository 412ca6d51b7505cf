//! Report speed (issue 5): fills an embedded SQLite store with a synthetic shop's sessions over
//! 30 days through `Store::write`, then times the reports through `report::answer` with a
//! `SqliteReports`, the same call the HTTP API and the CLI make.
//!
//! Run: `cargo run --release -p waymark-collector --example report_bench -- --sessions 100000
//! --dir target/report-bench-data-100000`; add `--store clickhouse://127.0.0.1:PORT/db` to fill
//! and time a ClickHouse store instead (`--dir` then only holds the marker of a finished run).
//!
//! A directory that already holds a finished store (its `bench-done-2` marker; stores of the earlier
//! version, with random session ids, are not re-used) is re-used as is.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use waymark_collector::report;
use waymark_collector::store::sqlite::SqliteStore;
use waymark_collector::store::{
    Backend, BatchWrite, Engagement, EventRow, Origin, SessionDelta, Site,
};
use waymark_protocol::{CartAction, EventType};

const SITE: &str = "bench";
/// 2026-10-02T00:00:00Z: the first of the 30 days.
const DAY0_MS: i64 = 1_790_899_200_000;
const DAY_MS: i64 = 86_400_000;
const DAYS: i64 = 30;
const FROM: &str = "2026-10-02";
const TO: &str = "2026-10-31";
const SESSIONS_PER_WRITE: usize = 1_000;
const SESSIONS_PER_BATCH: usize = 10;
const RUNS: usize = 3;

/// A timed report: label, report name, query parameters.
type Case = (&'static str, &'static str, Vec<(String, String)>);

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Skewed towards the first entries (roughly Zipf-like).
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n as u64);
        let b = self.below(n as u64);
        a.min(b) as usize
    }
}

fn paths() -> Vec<String> {
    let mut p: Vec<String> = [
        "/",
        "/products",
        "/pricing",
        "/blog",
        "/about",
        "/search",
        "/cart",
        "/checkout",
        "/contact",
        "/faq",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    p.extend((1..=15).map(|i| format!("/products/item-{i}")));
    p.extend((1..=5).map(|i| format!("/blog/post-{i}")));
    p
}

const SOURCES: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("direct", "none", None, None),
    ("google", "organic", Some("www.google.com"), None),
    ("google", "cpc", Some("www.google.com"), Some("autumn-sale")),
    ("newsletter", "email", None, Some("october")),
    ("facebook", "social", Some("facebook.com"), None),
    ("bing", "organic", Some("www.bing.com"), None),
    (
        "news.ycombinator.com",
        "referral",
        Some("news.ycombinator.com"),
        None,
    ),
];
const BROWSERS: &[(&str, &str, &str)] = &[
    ("Chrome", "Windows", "desktop"),
    ("Safari", "iOS", "mobile"),
    ("Chrome", "Android", "mobile"),
    ("Firefox", "Linux", "desktop"),
    ("Safari", "macOS", "desktop"),
    ("Edge", "Windows", "desktop"),
];
const COUNTRIES: &[&str] = &["US", "DE", "FR", "GB", "NL", "JP", "BR"];

fn event(sid: u64, visitor: u64, ts: i64, kind: EventType, pv: &str, path: &str) -> EventRow {
    EventRow {
        session: sid,
        visitor,
        ts,
        kind,
        pv: pv.to_string(),
        host: "shop.example".into(),
        path: path.to_string(),
        title: None,
        scroll: None,
        engaged_ms: None,
        action: None,
        order_id: None,
        revenue: None,
        currency: None,
        items: None,
        name: None,
        props: None,
    }
}

/// One synthetic session into `b`: page views with engagement, some cart actions.
/// Its id is made as the collector makes them: the creation second over 32 random bits.
fn session(rng: &mut Rng, paths: &[String], start: i64, b: &mut BatchWrite) {
    let sid = (u64::try_from(start / 1000).unwrap_or(0) << 32) | (rng.next() & 0xffff_ffff);
    let visitor = rng.next() >> 1;
    let (source, medium, referrer, campaign) = SOURCES[rng.skewed(SOURCES.len())];
    let (browser, os, device) = BROWSERS[rng.skewed(BROWSERS.len())];
    let country = COUNTRIES[rng.skewed(COUNTRIES.len())];
    let views = 1 + rng.below(8) as usize; // 1-8, mean 4.5
    let shopper = rng.chance(25);
    let mut ts = start;
    let mut delta = SessionDelta {
        id: sid,
        visitor,
        start,
        browser: browser.into(),
        os: os.into(),
        device: device.into(),
        country: Some(country.into()),
        ..SessionDelta::default()
    };
    let mut cart: Vec<(usize, u32)> = Vec::new();
    for v in 0..views {
        let path = if shopper && v > 0 && rng.chance(60) {
            &paths[10 + rng.skewed(15)]
        } else {
            &paths[rng.skewed(paths.len())]
        };
        let pv = format!("{:016x}", rng.next());
        b.events
            .push(event(sid, visitor, ts, EventType::Pageview, &pv, path));
        if v == 0 {
            delta.entry = Some((
                ts,
                path.clone(),
                Origin {
                    referrer_host: referrer.map(str::to_string),
                    source: source.into(),
                    medium: medium.into(),
                    campaign: campaign.map(str::to_string),
                },
            ));
        }
        delta.exit = Some((ts, path.clone()));
        delta.pageviews += 1;
        delta.events += 1;
        let engaged = 2_000 + rng.below(60_000);
        let scroll = rng.below(101) as u8;
        let mut e = event(
            sid,
            visitor,
            ts + engaged as i64,
            EventType::Engagement,
            &pv,
            path,
        );
        e.scroll = Some(scroll);
        e.engaged_ms = Some(engaged);
        b.events.push(e);
        delta.events += 1;
        b.engagement.push(Engagement {
            session: sid,
            pv: pv.clone(),
            path: path.clone(),
            ts: ts + engaged as i64,
            scroll,
            engaged_ms: engaged,
        });
        ts += engaged as i64 + 1_000;
        if shopper && path.starts_with("/products/") && rng.chance(50) {
            let item = path
                .trim_start_matches("/products/item-")
                .parse()
                .unwrap_or(1);
            let qty = 1 + rng.below(3) as u32;
            cart.push((item, qty));
            let mut e = event(sid, visitor, ts, EventType::Cart, &pv, path);
            e.action = Some(CartAction::Add);
            e.items = Some(items_json(&[(item, qty)]));
            b.events.push(e);
            delta.events += 1;
            delta.cart_adds += 1;
            ts += 1_000;
        }
    }
    if !cart.is_empty() && rng.chance(50) {
        let revenue: f64 = cart.iter().map(|&(i, q)| price(i) * f64::from(q)).sum();
        let pv = format!("{:016x}", rng.next());
        let mut e = event(sid, visitor, ts, EventType::Cart, &pv, "/checkout");
        e.action = Some(CartAction::Checkout);
        e.items = Some(items_json(&cart));
        b.events.push(e);
        delta.events += 1;
        delta.checkout = true;
        ts += 30_000;
        if rng.chance(60) {
            let mut e = event(sid, visitor, ts, EventType::Cart, &pv, "/checkout");
            e.action = Some(CartAction::Purchase);
            e.items = Some(items_json(&cart));
            e.order_id = Some(format!("o-{sid:x}"));
            e.revenue = Some(revenue);
            e.currency = Some("EUR".into());
            b.events.push(e);
            delta.events += 1;
            delta.purchase = true;
            delta.revenue = revenue;
            delta.currency = Some("EUR".into());
        }
    }
    delta.end = ts;
    b.sessions.push(delta);
}

fn price(item: usize) -> f64 {
    9.5 + item as f64 * 3.0
}

fn items_json(items: &[(usize, u32)]) -> String {
    let v: Vec<Value> = items
        .iter()
        .map(|&(i, q)| {
            serde_json::json!({
                "id": format!("sku-{i}"),
                "name": format!("Item {i}"),
                "price": price(i),
                "quantity": q,
            })
        })
        .collect();
    Value::Array(v).to_string()
}

fn db_bytes(dir: &Path) -> u64 {
    let db = SqliteStore::path_in(dir);
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    [db, wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn generate(backend: &Backend, dir: &Path, sessions: usize) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut store = backend.open(dir)?;
    store.put_site(&Site {
        id: SITE.into(),
        origins: vec!["https://shop.example".into()],
    })?;
    let paths = paths();
    let mut rng = Rng(0x5EED_0000 ^ sessions as u64);
    let started = Instant::now();
    let (mut done, mut events, mut batch_no) = (0usize, 0u64, 0u64);
    let mut last_report = Instant::now();
    while done < sessions {
        let n = SESSIONS_PER_WRITE.min(sessions - done);
        let mut batches = Vec::with_capacity(n / SESSIONS_PER_BATCH + 1);
        let mut left = n;
        while left > 0 {
            let k = SESSIONS_PER_BATCH.min(left);
            let mut b = BatchWrite {
                site: SITE.into(),
                batch_id: format!("bench-{batch_no}"),
                received: DAY0_MS,
                ..BatchWrite::default()
            };
            for j in 0..k {
                // Sessions arrive in time order, evenly over the days, as they would live.
                let nth = (done + n - left + j) as i64;
                let start =
                    DAY0_MS + nth * (DAYS * DAY_MS) / sessions as i64 + rng.below(1000) as i64;
                session(&mut rng, &paths, start, &mut b);
            }
            events += b.events.len() as u64;
            batches.push(b);
            batch_no += 1;
            left -= k;
        }
        store.write(&batches)?;
        store.maintain()?;
        done += n;
        if last_report.elapsed().as_secs() >= 10 {
            last_report = Instant::now();
            let s = started.elapsed().as_secs_f64();
            eprintln!(
                "  {done} sessions, {events} events, {s:.0} s ({:.0} events/s)",
                events as f64 / s
            );
        }
    }
    // Fold the WAL into the database file so the size and the reads see one file.
    for _ in 0..3 {
        store.maintain()?;
    }
    let s = started.elapsed().as_secs_f64();
    println!(
        "generated {sessions} sessions, {events} events in {s:.1} s: {:.0} sessions/s, {:.0} events/s",
        sessions as f64 / s,
        events as f64 / s
    );
    std::fs::write(dir.join("bench-done-2"), format!("{sessions} {events}\n"))?;
    Ok(events)
}

fn main() -> anyhow::Result<()> {
    let mut sessions = 100_000usize;
    let mut dir: Option<PathBuf> = None;
    let mut only: Option<Vec<String>> = None;
    let mut backend = Backend::Sqlite;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sessions" => sessions = args.next().unwrap_or_default().parse()?,
            "--dir" => dir = args.next().map(PathBuf::from),
            "--store" => {
                backend = Backend::parse(&args.next().unwrap_or_default())
                    .map_err(|e| anyhow::anyhow!(e))?;
            }
            "--only" => {
                only = args
                    .next()
                    .map(|v| v.split(',').map(str::to_string).collect());
            }
            other => anyhow::bail!(
                "unknown argument {other:?} (--sessions N --dir DIR [--store URL] [--only overview,funnel,…])"
            ),
        }
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(format!("target/report-bench-data-{sessions}")));
    let marker = dir.join("bench-done-2");
    let events = match std::fs::read_to_string(&marker) {
        Ok(s) => {
            let mut it = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
            let (n, e) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            anyhow::ensure!(
                n == sessions as u64,
                "{} holds {n} sessions, not {sessions}",
                dir.display()
            );
            println!("re-using {} ({n} sessions, {e} events)", dir.display());
            e
        }
        Err(_) => {
            anyhow::ensure!(
                !SqliteStore::path_in(&dir).exists(),
                "{} holds an unfinished store; remove it",
                dir.display()
            );
            generate(&backend, &dir, sessions)?
        }
    };
    if backend == Backend::Sqlite {
        let bytes = db_bytes(&dir);
        println!(
            "store: {sessions} sessions, {events} events, {:.1} MiB",
            bytes as f64 / 1_048_576.0
        );
    } else {
        println!("store: {sessions} sessions, {events} events (size: see the server's data dir)");
    }

    let now = DAY0_MS + DAYS * DAY_MS + 3_600_000;
    let range = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut p = vec![
            ("from".to_string(), FROM.to_string()),
            ("to".into(), TO.into()),
        ];
        p.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        p
    };
    let cases: Vec<Case> = vec![
        ("overview", "overview", range(&[])),
        (
            "funnel",
            "funnel",
            range(&[
                ("step", "page:/products/*"),
                ("step", "cart:add"),
                ("step", "cart:checkout"),
                ("step", "cart:purchase"),
            ]),
        ),
        ("paths", "paths", range(&[("depth", "4")])),
        ("pages", "pages", range(&[])),
        ("sources", "sources", range(&[])),
        ("cart", "cart", range(&[])),
        (
            "timeseries (day)",
            "timeseries",
            range(&[("interval", "day")]),
        ),
    ];
    let mut reports = backend.reports(&dir)?;
    println!("report             min ms   median ms   (runs: {RUNS})");
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
    for (label, name, params) in cases.iter().filter(|c| wanted(c.1)) {
        let mut times = Vec::with_capacity(RUNS);
        let mut size = 0usize;
        for _ in 0..RUNS {
            let t = Instant::now();
            let answer = report::answer(reports.as_mut(), SITE, name, params, now)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            times.push(t.elapsed().as_secs_f64() * 1_000.0);
            size = answer.to_string().len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{label:<18} {:>7.1}   {:>9.1}   (answer {size} bytes)",
            times[0],
            times[RUNS / 2]
        );
    }
    Ok(())
}
