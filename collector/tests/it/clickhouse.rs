//! The ClickHouse store against a real ClickHouse server that this test binary starts on
//! 127.0.0.1 (a free port, a temporary directory; a watchdog stops it when the tests end).
//! Without ClickHouse installed these tests fail, naming what is missing: they never pass
//! silently. Set `WAYMARK_CLICKHOUSE_SERVER` to the server binary if it is not on the path, or
//! `WAYMARK_TEST_CLICKHOUSE=host:port` to use a running server (its HTTP port; e.g. a current
//! ClickHouse in a container) instead of starting one.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use waymark_collector::store::clickhouse::{ClickHouseStore, Target};
use waymark_collector::store::clickhouse_reports::ClickHouseReports;
use waymark_collector::store::sqlite::SqliteStore;
use waymark_collector::store::sqlite_reports::SqliteReports;
use waymark_collector::store::{Backend, Site, Store};

struct ClickHouse {
    /// `host:port` of the HTTP interface.
    addr: String,
    /// The watchdog shell (it outlives the tests on purpose, to stop the server after them).
    _watchdog: Option<std::sync::Mutex<std::process::Child>>,
}

/// The server binary and the arguments before `--config-file`.
fn server_command() -> (PathBuf, Vec<&'static str>) {
    if let Some(p) = std::env::var_os("WAYMARK_CLICKHOUSE_SERVER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "WAYMARK_CLICKHOUSE_SERVER={} is not a file",
            p.display()
        );
        return (p, vec![]);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/bin".into(),
            "/usr/local/bin".into(),
        ])
        .collect();
    for d in &dirs {
        let p = d.join("clickhouse-server");
        if p.is_file() {
            return (p, vec![]);
        }
    }
    for d in &dirs {
        let p = d.join("clickhouse");
        if p.is_file() {
            return (p, vec!["server"]);
        }
    }
    panic!(
        "the ClickHouse tests need a ClickHouse server binary: install clickhouse-server \
         (CI does), or set WAYMARK_CLICKHOUSE_SERVER to its path"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server() -> ClickHouse {
    let (bin, pre) = server_command();
    let dir = std::env::temp_dir().join(format!("waymark-ch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (http, tcp) = (free_port(), free_port());
    let d = dir.display();
    std::fs::write(
        dir.join("config.xml"),
        format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709120</mark_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
</yandex>
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("users.xml"),
        r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"#,
    )
    .unwrap();
    // The watchdog stops the server and removes its directory once this process is gone (it
    // exits at once, keeping the logs, if the server stops first).
    let server = std::iter::once(bin.display().to_string())
        .chain(pre.iter().map(|s| (*s).to_string()))
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "{server} --config-file='{d}/config.xml' >'{d}/stdout.log' 2>&1 & ch=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $ch 2>/dev/null; do sleep 1; done; \
         kill -0 $ch 2>/dev/null || exit 1; kill $ch; wait $ch; rm -rf '{d}'",
        parent = std::process::id()
    );
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let ping = format!("http://127.0.0.1:{http}/ping");
    loop {
        if let Ok(mut r) = agent().get(&ping).call() {
            if r.body_mut().read_to_string().unwrap_or_default().trim() == "Ok." {
                break;
            }
        }
        let exited = watchdog.try_wait().unwrap().is_some();
        if exited || started.elapsed() > Duration::from_secs(60) {
            let log = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            panic!(
                "ClickHouse ({}) did not come up on 127.0.0.1:{http}:\n{}\n{}",
                bin.display(),
                log("stdout.log"),
                log("error.log")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ClickHouse {
        addr: format!("127.0.0.1:{http}"),
        _watchdog: Some(std::sync::Mutex::new(watchdog)),
    }
}

fn server() -> &'static ClickHouse {
    static SERVER: OnceLock<ClickHouse> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("WAYMARK_TEST_CLICKHOUSE") {
        Ok(addr) if !addr.is_empty() => ClickHouse {
            addr,
            _watchdog: None,
        },
        _ => start_server(),
    })
}

/// A fresh database on the test server.
pub fn database(name: &str) -> Target {
    let addr = &server().addr;
    let db = format!("wm_{name}_{}", std::process::id());
    let r = reply(
        agent()
            .post(&format!("http://{addr}/"))
            .send(&format!("DROP DATABASE IF EXISTS {db}")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    Target::parse(&format!("clickhouse://{addr}/{db}")).unwrap()
}

/// Runs an SQL query on the test server and answers its TSV output.
pub fn sql(t: &Target, query: &str) -> String {
    let r = reply(
        agent()
            .post(&format!("{}/?database={}", t.http, t.database))
            .send(query),
    );
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    r.body
}

/// A ClickHouse store with the test site registered.
pub fn store(name: &str) -> (Target, ClickHouseStore) {
    let t = database(name);
    let mut s = ClickHouseStore::open(&t).unwrap();
    s.put_site(&Site {
        id: "shop".into(),
        origins: vec![ORIGIN.into()],
    })
    .unwrap();
    (t, s)
}

/// Opens both stores' read sides over the same data.
pub fn both_reports(dir: &Path, t: &Target) -> (SqliteReports, ClickHouseReports) {
    (
        SqliteReports::open(dir).unwrap(),
        ClickHouseReports::open(t).unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// Store-level behaviour.

use waymark_collector::report::{Dim, Filter, Model, Query, Step, Table};
use waymark_collector::store::{
    BatchWrite, Dropped, Engagement, EventRow, Origin, Reports, SessionDelta,
};
use waymark_protocol::{CartAction, EventType};

fn pageview_row(session: u64, ts: i64, pv: &str, path: &str) -> EventRow {
    EventRow {
        session,
        visitor: 7,
        ts,
        kind: EventType::Pageview,
        pv: pv.into(),
        host: "shop.example".into(),
        path: path.into(),
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

fn small_batch(id: &str, session: u64, ts: i64, path: &str) -> BatchWrite {
    BatchWrite {
        site: "shop".into(),
        batch_id: id.into(),
        received: ts,
        events: vec![pageview_row(session, ts, "pv000001", path)],
        sessions: vec![SessionDelta {
            id: session,
            visitor: 7,
            start: ts,
            end: ts,
            entry: Some((
                ts,
                path.into(),
                Origin {
                    source: format!("src{ts}"),
                    ..Origin::default()
                },
            )),
            exit: Some((ts, path.into())),
            pageviews: 1,
            events: 1,
            browser: "Firefox".into(),
            os: "Linux".into(),
            device: "desktop".into(),
            ..SessionDelta::default()
        }],
        engagement: vec![Engagement {
            session,
            pv: "pv000001".into(),
            path: path.into(),
            ts,
            scroll: (ts / 100) as u8,
            engaged_ms: ts as u64,
        }],
        dropped: vec![(Dropped::Rejected, 2)],
    }
}

#[test]
fn clickhouse_store_dedups_merges_resumes_and_keeps_the_first_salt() {
    let (t, mut s) = store("basics");
    let day = 86_400_000 * 20_000;
    let b = |id: &str, ts: i64, path: &str| small_batch(id, 1, day + ts, path);
    // Later batch first, then the earlier one, then a retry of the first (and a batch repeated
    // within one write).
    assert_eq!(
        s.write(&[
            b("bbbb", 2_000, "/b"),
            b("aaaa", 1_000, "/a"),
            b("aaaa", 1_000, "/a")
        ])
        .unwrap(),
        vec![false, false, true]
    );
    assert_eq!(s.write(&[b("bbbb", 2_000, "/b")]).unwrap(), vec![true]);
    assert_eq!(sql(&t, "SELECT count() FROM events").trim(), "2");
    assert_eq!(sql(&t, "SELECT sum(events) FROM dropped").trim(), "4");
    let from = jiff::civil::Date::constant(2024, 10, 4);
    let q = Query::new("shop", from, from, jiff::tz::TimeZone::UTC, vec![], 0).unwrap();
    let mut r = ClickHouseReports::open(&t).unwrap();
    let sessions = r.sessions(&q, 10).unwrap();
    assert_eq!(sessions.len(), 1);
    let one = &sessions[0];
    assert_eq!(
        (
            one.start,
            one.end,
            one.entry_path.as_deref(),
            one.exit_path.as_deref()
        ),
        (day + 1_000, day + 2_000, Some("/a"), Some("/b"))
    );
    let src = format!("src{}", day + 1_000);
    assert_eq!(
        (one.pageviews, one.source.as_deref()),
        (2, Some(src.as_str()))
    );
    // The same page view reported twice (cumulatively): the maximum counts, not the sum.
    assert_eq!(
        (one.engaged_s, one.max_scroll),
        ((day + 2_000) as f64 / 1000.0, ((day + 2_000) / 100) as u8)
    );
    // Reopening: the batch ids are still known; open sessions come back.
    drop(s);
    let mut s = ClickHouseStore::open(&t).unwrap();
    assert_eq!(
        s.schema_version().unwrap() as usize,
        ClickHouseStore::migrations()
    );
    assert_eq!(s.write(&[b("aaaa", 1_000, "/a")]).unwrap(), vec![true]);
    let open = s.open_sessions(day + 1_500).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (
            open[0].start,
            open[0].last,
            open[0].visitor,
            open[0].site.as_str()
        ),
        (day + 1_000, day + 2_000, 7, "shop")
    );
    assert!(s.open_sessions(day + 2_001).unwrap().is_empty());

    // Salts: the first written wins for every store instance sharing the database.
    let mut other = ClickHouseStore::open(&t).unwrap();
    assert_eq!(s.salt(100, [1; 32]).unwrap(), [1; 32]);
    assert_eq!(other.salt(100, [2; 32]).unwrap(), [1; 32]);
    assert_eq!(other.salt(101, [3; 32]).unwrap(), [3; 32]);
    assert_eq!(s.salt(101, [4; 32]).unwrap(), [3; 32]);
    // Two candidates written for the same day (a race): both converge on the first written.
    sql(
        &t,
        &format!(
            "INSERT INTO salts VALUES (102, '{}', 5), (102, '{}', 4)",
            "05".repeat(32),
            "06".repeat(32)
        ),
    );
    assert_eq!(s.salt(102, [7; 32]).unwrap(), [6; 32]);
    assert_eq!(other.salt(102, [8; 32]).unwrap(), [6; 32]);
    assert_eq!(s.forget_salts_before(102).unwrap(), 2);
    assert_eq!(
        sql(&t, "SELECT count() FROM salts WHERE day < 102").trim(),
        "0"
    );
    assert_eq!(
        other.salt(100, [9; 32]).unwrap(),
        [9; 32],
        "a destroyed salt cannot come back"
    );

    // Sites (replaced, not duplicated) and tokens.
    let site = Site {
        id: "shop".into(),
        origins: vec![
            "https://shop.example".into(),
            "https://www.shop.example".into(),
        ],
    };
    s.put_site(&site).unwrap();
    assert_eq!(other.sites().unwrap(), vec![site]);
    assert!(!s.has_token([9; 32]).unwrap());
    s.add_token([9; 32], 1).unwrap();
    assert!(other.has_token([9; 32]).unwrap());
    assert!(r.token_valid([9; 32]).unwrap());
    assert!(r.site_exists("shop").unwrap());
    assert!(!r.site_exists("other").unwrap());
    s.maintain().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Parity: the same writes into SQLite and ClickHouse give identical answers to every report.

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

const PATHS: &[&str] = &[
    "/",
    "/products/mug",
    "/products/tea",
    "/cart",
    "/blog",
    "/a?b[c]",
    "/products/cup",
];
const ORIGINS: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("(direct)", "direct", None, None),
    ("google", "search", None, Some("google.com")),
    ("newsletter", "email", Some("spring"), None),
    ("Newsletter", "email", Some("autumn"), Some("mail.example")),
];
const DEVICES: &[(&str, &str, &str)] = &[
    ("Firefox", "Linux", "desktop"),
    ("Chrome", "Android", "mobile"),
    ("Safari", "macOS", "desktop"),
];
const PRODUCTS: &[(&str, &str, f64)] = &[
    ("mug", "Blue mug", 12.5),
    ("tea", "Green tea", 0.1),
    ("cup", "Cup", 3.3),
];

/// One generated event with its session's per-event facts.
struct Gen {
    row: EventRow,
    origin: Origin,
    engagement: Option<(u8, u64)>,
}

/// Sessions over two days, each split into several batches written out of order, with
/// retries; returns the groups of batches as the writer would commit them.
fn generated(seed: u64, day0: i64) -> Vec<Vec<BatchWrite>> {
    let mut rng = Rng(seed);
    let mut batches = Vec::new();
    for n in 0..60u64 {
        let visitor = 1_000 + rng.below(25);
        let (browser, os, device) = *rng.pick(DEVICES);
        let country = (rng.below(3) == 0).then(|| "DE".to_string());
        let start = day0 + rng.below(2 * 86_400_000 - 3_600_000) as i64;
        // Time-ordered ids like the collector's (the SQLite store finds a range's sessions by
        // them; see `SessionDelta::id`).
        let id = ((start / 1000) as u64) << 32 | rng.below(1 << 32);
        let mut t = start;
        let mut evs: Vec<Gen> = Vec::new();
        let mut pv = String::new();
        let mut path = "/";
        for k in 0..(1 + rng.below(9)) {
            let kind = if k == 0 { 0 } else { rng.below(5) };
            let mut row = pageview_row(id, t, &pv, path);
            row.visitor = visitor;
            let mut engagement = None;
            match kind {
                0 | 1 => {
                    path = *rng.pick(PATHS);
                    pv = format!("pv{id:x}{k}");
                    row.pv.clone_from(&pv);
                    row.path = path.into();
                    row.title = (rng.below(2) == 0).then(|| format!("Title {k}"));
                }
                2 => {
                    row.kind = EventType::Engagement;
                    let e = (rng.below(101) as u8, rng.below(30_000));
                    row.scroll = Some(e.0);
                    row.engaged_ms = Some(e.1);
                    engagement = Some(e);
                }
                3 => {
                    row.kind = EventType::Cart;
                    let action = *rng.pick(&[
                        CartAction::Add,
                        CartAction::Add,
                        CartAction::Checkout,
                        CartAction::Purchase,
                        CartAction::Remove,
                    ]);
                    row.action = Some(action);
                    row.currency =
                        (rng.below(6) != 0).then(|| rng.pick(&["EUR", "USD"]).to_string());
                    let items: Vec<String> = (0..1 + rng.below(3))
                        .map(|_| {
                            let (id, name, price) = *rng.pick(PRODUCTS);
                            let q = 1 + rng.below(3);
                            if rng.below(4) == 0 {
                                format!(r#"{{"id":"{id}","quantity":{q}}}"#)
                            } else {
                                format!(r#"{{"id":"{id}","name":"{name}","price":{price:?},"quantity":{q}}}"#)
                            }
                        })
                        .collect();
                    row.items = Some(format!("[{}]", items.join(",")));
                    if action == CartAction::Purchase {
                        row.order_id = Some(format!("o{n}"));
                        row.revenue = (rng.below(3) == 0).then(|| rng.below(10_000) as f64 / 7.0);
                    }
                }
                _ => {
                    row.kind = EventType::Custom;
                    row.name = Some(rng.pick(&["signup", "share"]).to_string());
                    row.props = Some(r#"{"plan":"pro","n":2}"#.into());
                }
            }
            let origin = {
                let (s, m, c, r) = *rng.pick(ORIGINS);
                Origin {
                    referrer_host: r.map(Into::into),
                    source: s.into(),
                    medium: m.into(),
                    campaign: c.map(Into::into),
                }
            };
            evs.push(Gen {
                row,
                origin,
                engagement,
            });
            t += rng.below(120_000) as i64;
        }
        // Split into batches of consecutive events.
        let mut i = 0;
        let mut part = 0;
        while i < evs.len() {
            let len = (1 + rng.below(3) as usize).min(evs.len() - i);
            let chunk = &evs[i..i + len];
            i += len;
            let views: Vec<&Gen> = chunk
                .iter()
                .filter(|g| g.row.kind == EventType::Pageview)
                .collect();
            let mut d = SessionDelta {
                id,
                visitor,
                start: chunk.iter().map(|g| g.row.ts).min().unwrap(),
                end: chunk.iter().map(|g| g.row.ts).max().unwrap(),
                entry: views
                    .first()
                    .map(|g| (g.row.ts, g.row.path.clone(), g.origin.clone())),
                exit: views.last().map(|g| (g.row.ts, g.row.path.clone())),
                pageviews: views.len() as u32,
                events: chunk.len() as u32,
                campaign_fp: (rng.below(2) == 0).then(|| rng.next()),
                browser: browser.into(),
                os: os.into(),
                device: device.into(),
                country: if part > 0 { country.clone() } else { None },
                ..SessionDelta::default()
            };
            let mut engagement = Vec::new();
            for g in chunk {
                if g.row.kind == EventType::Cart {
                    let a = g.row.action.unwrap();
                    d.cart_adds += u32::from(a == CartAction::Add);
                    d.checkout |= matches!(a, CartAction::Checkout | CartAction::Purchase);
                    if a == CartAction::Purchase {
                        d.purchase = true;
                        d.revenue += g.row.revenue.unwrap_or(1.1);
                    }
                    if d.currency.is_none() {
                        d.currency.clone_from(&g.row.currency);
                    }
                }
                if let Some((scroll, ms)) = g.engagement {
                    engagement.push(Engagement {
                        session: id,
                        pv: g.row.pv.clone(),
                        path: g.row.path.clone(),
                        ts: g.row.ts,
                        scroll,
                        engaged_ms: ms,
                    });
                }
            }
            let dropped = match rng.below(4) {
                0 => vec![(Dropped::Bot("crawler"), 2)],
                1 => vec![(Dropped::Rejected, 1), (Dropped::Stale, 3)],
                _ => vec![],
            };
            batches.push(BatchWrite {
                site: "shop".into(),
                batch_id: format!("g{n}p{part}"),
                received: chunk.last().unwrap().row.ts + 500,
                events: chunk.iter().map(|g| g.row.clone()).collect(),
                sessions: vec![d],
                engagement,
                dropped,
            });
            part += 1;
        }
    }
    // Out of order, with retries, in group commits of a few batches.
    for i in (1..batches.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        batches.swap(i, j);
    }
    let retries: Vec<BatchWrite> = batches.iter().step_by(7).cloned().collect();
    batches.extend(retries);
    let mut groups = Vec::new();
    let mut rest = batches.as_slice();
    while !rest.is_empty() {
        let n = (1 + rng.below(4) as usize).min(rest.len());
        groups.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    groups
}

fn all_reports(r: &mut dyn Reports, q: &Query) -> serde_json::Value {
    use serde_json::json;
    let v = |x: serde_json::Result<serde_json::Value>| x.unwrap();
    let mut out = serde_json::Map::new();
    out.insert(
        "overview".into(),
        v(serde_json::to_value(r.overview(q).unwrap())),
    );
    for limit in [2, 100] {
        out.insert(
            format!("pages{limit}"),
            v(serde_json::to_value(r.pages(q, limit).unwrap())),
        );
        out.insert(
            format!("sources{limit}"),
            v(serde_json::to_value(r.sources(q, limit).unwrap())),
        );
        out.insert(
            format!("sessions{limit}"),
            v(serde_json::to_value(r.sessions(q, limit).unwrap())),
        );
        out.insert(
            format!("cart{limit}"),
            v(serde_json::to_value(r.cart(q, limit).unwrap())),
        );
    }
    for dim in [
        Dim::Source,
        Dim::Medium,
        Dim::Campaign,
        Dim::Device,
        Dim::Browser,
        Dim::Os,
        Dim::Country,
    ] {
        out.insert(
            format!("breakdown-{}", dim.as_str()),
            v(serde_json::to_value(r.breakdown(q, dim, 3).unwrap())),
        );
    }
    let steps = vec![
        Step::Page("/products/*".into()),
        Step::Cart(CartAction::Add),
        Step::Cart(CartAction::Purchase),
        Step::Event("signup".into()),
    ];
    out.insert(
        "funnel".into(),
        v(serde_json::to_value(r.funnel(q, &steps).unwrap())),
    );
    out.insert(
        "funnel-odd".into(),
        v(serde_json::to_value(
            r.funnel(q, &[Step::Page("/a?b[c]".into())]).unwrap(),
        )),
    );
    out.insert(
        "scroll".into(),
        v(serde_json::to_value(r.scroll(q, None).unwrap())),
    );
    out.insert(
        "scroll-products".into(),
        v(serde_json::to_value(
            r.scroll(q, Some("/products/*")).unwrap(),
        )),
    );
    out.insert(
        "realtime".into(),
        v(serde_json::to_value(r.realtime(q).unwrap())),
    );
    for (start, depth) in [(None, 3), (Some("/products/*"), 5)] {
        out.insert(
            format!("paths-{start:?}-{depth}"),
            v(serde_json::to_value(r.paths(q, start, depth, 4).unwrap())),
        );
    }
    for goal in [
        Step::Cart(CartAction::Purchase),
        Step::Event("signup".into()),
        Step::Page("/cart".into()),
    ] {
        for model in [Model::First, Model::Last, Model::Linear] {
            out.insert(
                format!("attribution-{}-{}", goal.label(), model.as_str()),
                v(serde_json::to_value(
                    r.attribution(q, &goal, model).unwrap(),
                )),
            );
        }
    }
    for table in [Table::Sessions, Table::Events] {
        let mut rows = Vec::new();
        r.export(q, table, &mut |row| {
            rows.push(serde_json::Value::Array(row));
            true
        })
        .unwrap();
        out.insert(format!("export-{}", table.as_str()), json!(rows));
    }
    serde_json::Value::Object(out)
}

/// The first difference between two JSON values, as a path.
fn diff(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value as J;
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (p, q) = (x.get(k).unwrap_or(&J::Null), y.get(k).unwrap_or(&J::Null));
                if let Some(d) = diff(p, q, &format!("{at}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        (J::Array(x), J::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| diff(p, q, &format!("{at}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{at}: sqlite {a} vs clickhouse {b}")),
    }
}

#[test]
fn clickhouse_reports_equal_sqlite_reports_for_the_same_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut lite = SqliteStore::open(dir.path()).unwrap();
    let (t, mut ch) = store("parity");
    lite.put_site(&Site {
        id: "shop".into(),
        origins: vec![],
    })
    .unwrap();
    let day0 = 86_400_000 * 20_000;
    let groups = generated(0x9e37_79b9_7f4a_7c15, day0);
    // Realtime is asked a minute after some event times, so it has activity to compare.
    let nows: Vec<i64> = groups
        .iter()
        .flatten()
        .flat_map(|b| b.events.iter().map(|e| e.ts + 60_000))
        .step_by(40)
        .collect();
    for group in groups {
        assert_eq!(
            lite.write(&group).unwrap(),
            ch.write(&group).unwrap(),
            "duplicates"
        );
    }
    let (mut a, mut b) = both_reports(dir.path(), &t);
    let d = |n: i64| {
        jiff::Timestamp::from_millisecond(day0 + n * 86_400_000)
            .unwrap()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date()
    };
    let kathmandu = jiff::tz::TimeZone::get("Asia/Kathmandu").unwrap();
    let queries = vec![
        (d(0), d(1), jiff::tz::TimeZone::UTC, vec![]),
        (d(0), d(0), jiff::tz::TimeZone::UTC, vec![]),
        (d(1), d(2), kathmandu, vec![]),
        (
            d(0),
            d(1),
            jiff::tz::TimeZone::UTC,
            vec![Filter::Is(Dim::Source, "NEWSLETTER".into())],
        ),
        (
            d(0),
            d(1),
            jiff::tz::TimeZone::UTC,
            vec![Filter::Is(Dim::Country, "de".into())],
        ),
        (
            d(0),
            d(1),
            jiff::tz::TimeZone::UTC,
            vec![
                Filter::Page("/products/*".into()),
                Filter::Is(Dim::Device, "desktop".into()),
            ],
        ),
        (
            d(0),
            d(1),
            jiff::tz::TimeZone::UTC,
            vec![Filter::Page("/a?b[c]".into())],
        ),
        (d(5), d(5), jiff::tz::TimeZone::UTC, vec![]),
    ];
    for (n, (from, to, tz, filters)) in queries.into_iter().enumerate() {
        let now = day0 + 86_400_000 + 43_200_000;
        let q = Query::new("shop", from, to, tz.clone(), filters.clone(), now).unwrap();
        let (x, y) = (all_reports(&mut a, &q), all_reports(&mut b, &q));
        if let Some(d) = diff(&x, &y, "") {
            panic!("query {n} ({from}..{to}, {filters:?}): {d}");
        }
        if n == 0 {
            // The data exercise the reports (not an empty comparison).
            assert!(
                x["overview"]["sessions"].as_u64().unwrap() > 40,
                "{}",
                x["overview"]
            );
            assert!(!x["cart100"]["top_bought"].as_array().unwrap().is_empty());
            assert!(x["export-events"].as_array().unwrap().len() > 100);
        }
        if n < 2 {
            let mut active = 0;
            for &now in &nows {
                let q = Query::new("shop", from, to, tz.clone(), filters.clone(), now).unwrap();
                let x = serde_json::to_value(a.realtime(&q).unwrap()).unwrap();
                let y = serde_json::to_value(b.realtime(&q).unwrap()).unwrap();
                if let Some(d) = diff(&x, &y, "") {
                    panic!("realtime at {now}, query {n}: {d}");
                }
                active += usize::from(x["visitors"].as_u64().unwrap() > 0);
            }
            assert!(active > nows.len() / 2, "realtime saw activity");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The report tests of `reports.rs` (journeys sent over HTTP, answers worked out by hand), on a
// collector running with `--store clickhouse://…`.

fn on_clickhouse(name: &str) -> Backend {
    let (t, _) = store(name);
    Backend::ClickHouse(t)
}

#[test]
fn clickhouse_reports_match_the_journeys() {
    crate::reports::reports_match_the_journeys_on(&on_clickhouse("journeys"));
}

#[test]
fn clickhouse_days_and_hours_follow_the_time_zone() {
    crate::reports::days_and_hours_follow_the_time_zone_on(&on_clickhouse("tz"));
}

#[test]
fn clickhouse_cli_prints_the_same_report() {
    crate::reports::cli_prints_the_same_report_on(&on_clickhouse("cli"));
}

#[test]
fn clickhouse_journey_map_matches_the_journeys() {
    crate::reports::journey_map_matches_the_journeys_on(&on_clickhouse("map"));
}

#[test]
fn clickhouse_attribution_and_export() {
    crate::reports::attribution_looks_back_over_the_visitors_day_and_export_streams_on(
        &on_clickhouse("attribution"),
    );
}

#[test]
fn clickhouse_session_across_midnight() {
    crate::reports::a_session_across_midnight_is_one_session_of_the_day_it_started_on(
        &on_clickhouse("midnight"),
    );
}

// ---------------------------------------------------------------------------------------------
// A collector over HTTP with `--store clickhouse://…`.

#[test]
fn clickhouse_collector_dedups_retries_resumes_sessions_and_shares_salts() {
    let (t, _) = store("collector");
    let backend = Backend::ClickHouse(t.clone());
    let dir = tempfile::tempdir().unwrap();
    let start = |dir: &Path| {
        let b = backend.clone();
        Server::start_in(dir, move |c| c.store = b)
    };
    let count = |q: &str| -> i64 { sql(&t, q).trim().parse().unwrap() };
    let now = now_ms();
    let id = batch_id();
    let b = body(&id, now, &[pageview(now - 60_000, "/")]);
    let first_session;
    {
        let s = start(dir.path());
        assert_eq!(post(&s, &b).json()["duplicate"], false);
        let again = post(&s, &b);
        assert_eq!(
            (again.status, again.json()),
            (
                202,
                serde_json::json!({"accepted": 0, "rejected": [], "duplicate": true})
            )
        );
        post(
            &s,
            &body(&batch_id(), now, &[pageview(now - 30_000, "/products/mug")]),
        );
        assert_eq!(count("SELECT count() FROM events"), 2);
        assert_eq!(count("SELECT uniqExact(id) FROM session_deltas"), 1);
        first_session = sql(&t, "SELECT any(id) FROM session_deltas");
    }
    // Restarted: the retry is still a duplicate, and the open session resumes.
    let s = start(dir.path());
    assert_eq!(post(&s, &b).json()["duplicate"], true);
    post(
        &s,
        &body(&batch_id(), now_ms(), &[pageview(now_ms(), "/cart")]),
    );
    assert_eq!(
        sql(&t, "SELECT session_id FROM events WHERE path = '/cart'"),
        first_session,
        "the open session was resumed after the restart"
    );
    assert_eq!(count("SELECT count() FROM events"), 3);
    assert_eq!(count("SELECT sum(pageviews) FROM session_deltas"), 3);
    // A second collector on the same store (another data directory) uses the same salt: the
    // same person is the same visitor on both.
    let other_dir = tempfile::tempdir().unwrap();
    let other = start(other_dir.path());
    post(
        &other,
        &body(&batch_id(), now_ms(), &[pageview(now_ms(), "/other")]),
    );
    assert_eq!(
        sql(&t, "SELECT visitor FROM events WHERE path = '/other'"),
        sql(&t, "SELECT visitor FROM events WHERE path = '/cart'"),
        "collectors sharing a store share the day's salt"
    );
    assert_eq!(
        count("SELECT uniqExact(day) FROM salts"),
        2,
        "today and yesterday"
    );
    // Nothing stored carries the client's address or user agent.
    let dump = sql(&t, "SELECT * FROM events FORMAT TSV")
        + &sql(&t, "SELECT * FROM session_deltas FORMAT TSV");
    assert!(
        !dump.contains("127.0.0.1") && !dump.contains("Gecko"),
        "{dump}"
    );
}

/// `kill -9` of a `waymark serve --store clickhouse://…` process under load: no acknowledged
/// batch is lost or counted twice after the SDK-style retries. (A batch killed part-way through
/// its inserts, never acknowledged, may be stored twice by its retry: see the store's docs.)
#[test]
fn clickhouse_kill_9_loses_no_acknowledged_batch() {
    use crate::process::{load, numbered, spawn};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (t, _) = store("kill9");
    let url = t.url();
    let extra = ["--store", url.as_str()];
    let dir = tempfile::tempdir().unwrap();
    let mut p = spawn(dir.path(), &dir.path().join("run1.log"), &extra);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(p.addr.clone(), 4, stop.clone());
    // Under load (the whole suite runs in parallel) wait until some batches are in.
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    while sql(&t, "SELECT count() FROM batches")
        .trim()
        .parse::<u64>()
        .unwrap()
        < 40
        && started.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<usize> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(acked.len() > 20, "only {} acknowledged", acked.len());
    let max = acked.iter().copied().max().unwrap();
    let mut p = spawn(dir.path(), &dir.path().join("run2.log"), &extra);
    for n in 0..=max + 8 {
        let (_, b) = numbered(n);
        let r = reply(
            agent()
                .post(&format!("http://{}/v1/batch", p.addr))
                .header("content-type", "application/json")
                .header("origin", ORIGIN)
                .send(&b),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        if acked.contains(&n) {
            assert_eq!(r.json()["duplicate"], true, "batch {n} was acknowledged");
        }
    }
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let rows: std::collections::HashMap<String, i64> =
        sql(&t, "SELECT pv, count() FROM events GROUP BY pv")
            .lines()
            .map(|l| {
                let (pv, n) = l.split_once('\t').unwrap();
                (pv.to_string(), n.parse().unwrap())
            })
            .collect();
    for n in 0..=max + 8 {
        let got = rows.get(&format!("pv{n:010}")).copied().unwrap_or(0);
        if acked.contains(&n) {
            assert_eq!(got, 3, "acknowledged batch {n} stored exactly once");
        } else {
            assert!(got >= 3, "batch {n} stored after its retry ({got} rows)");
        }
    }
}
