//! The collector never writes a raw IP address or user-agent string to disk or logs.

use crate::harness::*;
use crate::process::{log_lines, spawn};

const PROBE_IP: &str = "203.0.113.77";
const PROBE_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) WaymarkPrivacyProbe/9.9 Firefox/128.0";

#[test]
fn no_raw_ip_or_user_agent_in_database_wal_or_logs() {
    let dir = data_dir();
    let log = dir.path().join("collector.log");
    let mut p = spawn(dir.path(), &log, &["--trusted-proxy", "127.0.0.1"]);
    let now = now_ms();
    for i in 0..5 {
        let b = body(&batch_id(), now, &[pageview(now - i, "/products/mug")]);
        let r = reply(
            agent()
                .post(&format!("http://{}/v1/batch", p.addr))
                .header("content-type", "application/json")
                .header("origin", ORIGIN)
                .header("user-agent", PROBE_UA)
                .header("x-forwarded-for", PROBE_IP)
                .send(&b),
        );
        assert_eq!(r.status, 202, "{}", r.body);
    }
    // A rejected request logs nothing identifying either.
    let r = reply(
        agent()
            .post(&format!("http://{}/v1/batch", p.addr))
            .header("content-type", "application/json")
            .header("user-agent", PROBE_UA)
            .header("x-forwarded-for", PROBE_IP)
            .send("{broken"),
    );
    assert_eq!(r.status, 400);
    let lines = log_lines(&p);
    // Check while running (the WAL is live) and after stopping.
    let check = |when: &str| {
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        assert!(files.iter().any(|f| f.to_string_lossy().ends_with("-wal")) || when == "stopped");
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            for needle in [PROBE_IP, PROBE_UA, "WaymarkPrivacyProbe"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} found in {} ({when})",
                    f.display()
                );
            }
        }
    };
    check("running");
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    check("stopped");
    assert!(lines.len() > 2, "the log captured something: {lines:?}");
    // The parsed facts are kept; the raw string is not.
    let s = rusqlite::Connection::open(waymark_collector::store::sqlite::SqliteStore::path_in(
        dir.path(),
    ))
    .unwrap();
    let browser: String = s
        .query_row("SELECT browser FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(browser, "Firefox");
}
