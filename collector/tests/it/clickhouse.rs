//! The ClickHouse store against a real ClickHouse server that this test binary starts on
//! 127.0.0.1 (a free port, a temporary directory; a watchdog stops it when the tests end).
//! Without ClickHouse installed these tests fail, naming what is missing: they never pass
//! silently. Set `WAYMARK_CLICKHOUSE_SERVER` to the server binary if it is not on the path.

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
    port: u16,
}

/// The server binary and the arguments before `--config-file`.
fn server_command() -> (PathBuf, Vec<&'static str>) {
    if let Some(p) = std::env::var_os("WAYMARK_CLICKHOUSE_SERVER") {
        return (PathBuf::from(p), vec![]);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/usr/local/bin".into()])
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
    // The watchdog stops the server and removes its directory once this process is gone.
    let server = std::iter::once(bin.display().to_string())
        .chain(pre.iter().map(|s| (*s).to_string()))
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "{server} --config-file='{d}/config.xml' >'{d}/stdout.log' 2>&1 & ch=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $ch 2>/dev/null; do sleep 1; done; \
         kill $ch 2>/dev/null; wait $ch; rm -rf '{d}'",
        parent = std::process::id()
    );
    Command::new("sh")
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
        if started.elapsed() > Duration::from_secs(60) {
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
    ClickHouse { port: http }
}

fn server() -> &'static ClickHouse {
    static SERVER: OnceLock<ClickHouse> = OnceLock::new();
    SERVER.get_or_init(start_server)
}

/// A fresh database on the test server.
pub fn database(name: &str) -> Target {
    let port = server().port;
    let db = format!("wm_{name}_{}", std::process::id());
    let r = reply(
        agent()
            .post(&format!("http://127.0.0.1:{port}/"))
            .send(&format!("DROP DATABASE IF EXISTS {db}")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    Target::parse(&format!("clickhouse://127.0.0.1:{port}/{db}")).unwrap()
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

/// A collector on a ClickHouse store (SQLite data dir unused but present).
pub fn collector(t: &Target, adjust: impl FnOnce(&mut waymark_collector::config::Config)) -> Server {
    let backend = Backend::ClickHouse(t.clone());
    Server::start_with(|c| {
        c.store = backend;
        adjust(c);
    })
}

/// Opens both stores' read sides over the same data.
pub fn both_reports(dir: &Path, t: &Target) -> (SqliteReports, ClickHouseReports) {
    (
        SqliteReports::open(dir).unwrap(),
        ClickHouseReports::open(t).unwrap(),
    )
}

/// Keeps the SQLite import alive for modules that only use the CH side.
pub fn sqlite(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir).unwrap()
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
        s.write(&[b("bbbb", 2_000, "/b"), b("aaaa", 1_000, "/a"), b("aaaa", 1_000, "/a")])
            .unwrap(),
        vec![false, false, true]
    );
    assert_eq!(s.write(&[b("bbbb", 2_000, "/b")]).unwrap(), vec![true]);
    assert_eq!(sql(&t, "SELECT count() FROM events").trim(), "2");
    assert_eq!(sql(&t, "SELECT sum(count) FROM dropped").trim(), "4");
    let from = jiff::civil::Date::constant(2024, 10, 4);
    let q = Query::new("shop", from, from, jiff::tz::TimeZone::UTC, vec![], 0).unwrap();
    let mut r = ClickHouseReports::open(&t).unwrap();
    let sessions = r.sessions(&q, 10).unwrap();
    assert_eq!(sessions.len(), 1);
    let one = &sessions[0];
    assert_eq!(
        (one.start, one.end, one.entry_path.as_deref(), one.exit_path.as_deref()),
        (day + 1_000, day + 2_000, Some("/a"), Some("/b"))
    );
    let src = format!("src{}", day + 1_000);
    assert_eq!((one.pageviews, one.source.as_deref()), (2, Some(src.as_str())));
    // The same page view reported twice (cumulatively): the maximum counts, not the sum.
    assert_eq!(
        (one.engaged_s, one.max_scroll),
        ((day + 2_000) as f64 / 1000.0, ((day + 2_000) / 100) as u8)
    );
    // Reopening: the batch ids are still known; open sessions come back.
    drop(s);
    let mut s = ClickHouseStore::open(&t).unwrap();
    assert_eq!(s.schema_version().unwrap() as usize, ClickHouseStore::migrations());
    assert_eq!(s.write(&[b("aaaa", 1_000, "/a")]).unwrap(), vec![true]);
    let open = s.open_sessions(day + 1_500).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].start, open[0].last, open[0].visitor, open[0].site.as_str()),
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
    assert_eq!(sql(&t, "SELECT count() FROM salts WHERE day < 102").trim(), "0");
    assert_eq!(
        other.salt(100, [9; 32]).unwrap(),
        [9; 32],
        "a destroyed salt cannot come back"
    );

    // Sites (replaced, not duplicated) and tokens.
    let site = Site {
        id: "shop".into(),
        origins: vec!["https://shop.example".into(), "https://www.shop.example".into()],
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
