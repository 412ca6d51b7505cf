//! Three `waymark serve --store clickhouse://…` processes behind nginx (`hash $remote_addr
//! consistent`, deploy/nginx-three-collectors.conf), each visitor sending from its own loopback
//! address: visitors stick to one collector, and when collectors stop (SIGTERM, then kill -9)
//! their visitors move to another one, which resumes their open sessions from the store; no
//! acknowledged event is lost or stored twice. Fails (never skips) without nginx or ClickHouse.

use crate::clickhouse::{sql, store};
use crate::harness::*;
use crate::process::{spawn, Proc};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Visitors 127.0.0.2 … 127.0.0.31.
const VISITORS: std::ops::RangeInclusive<u8> = 2..=31;

fn nginx_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx.sh")
}

/// nginx run by deploy/nginx.sh from a private directory; stopped on drop (also on panic).
struct Nginx {
    dir: tempfile::TempDir,
    port: u16,
}

impl Nginx {
    fn start(collectors: &[&str]) -> Nginx {
        let found = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
            .iter()
            .any(|p| Path::new(p).is_file())
            || std::env::var_os("NGINX").is_some();
        assert!(
            found,
            "the cluster test needs nginx: install it (scripts/setup.sh installs nginx-light), \
             or set NGINX to its path"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let ports: Vec<&str> = collectors
            .iter()
            .map(|a| a.rsplit_once(':').unwrap().1)
            .collect();
        let out = Command::new("bash")
            .arg(nginx_script())
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .args(&ports)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "deploy/nginx.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Nginx { dir, port }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(nginx_script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One POST of `body` to `127.0.0.1:port` from the local address `127.0.0.{visitor}`, as a
/// browser of that visitor would: its status, or `None` when the connection failed.
fn post_from(visitor: u8, port: u16, body: &str) -> Option<u16> {
    let ua = format!(
        "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
        v = 100 + u32::from(visitor)
    );
    let request = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Origin: {ORIGIN}\r\nUser-Agent: {ua}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, visitor], 0)))
            .ok()?;
        let exchange = async {
            let mut stream = socket
                .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                .await
                .ok()?;
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.ok()?;
            Some(answer)
        };
        tokio::time::timeout(Duration::from_secs(15), exchange)
            .await
            .ok()?
    })?;
    let head = String::from_utf8_lossy(&answer);
    head.split(' ').nth(1)?.parse().ok()
}

/// Sends one page view per visitor (page-view id `pv{phase}{visitor:03}clus`), retrying like the SDK
/// (same batch id) after a 5xx or a failed connection until it is acknowledged.
fn phase(port: u16, phase: u8) {
    let now = now_ms();
    for v in VISITORS {
        let batch = format!("cluster-{phase}-{v:03}-{}", std::process::id());
        let event = format!(
            r#"{{"type":"pageview","at":{now},"pv":"pv{phase}{v:03}clus","url":"https://shop.example/v{v}/{phase}"}}"#
        );
        let b = body(&batch, now, &[event]);
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match post_from(v, port, &b) {
                Some(202) => break,
                Some(s) if s < 500 => panic!("visitor {v}, phase {phase}: refused with {s}"),
                _ => {}
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "visitor {v}, phase {phase}: not acknowledged after {attempts} attempts"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A counter of a collector's Prometheus page (0 when absent).
fn counter(addr: &str, line_start: &str) -> u64 {
    let r = reply(agent().get(&format!("http://{addr}/metrics")).call());
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

fn accepted(addr: &str) -> u64 {
    counter(addr, "waymark_events_total{outcome=\"accepted\"}")
}

fn resumed(addr: &str) -> u64 {
    counter(addr, "waymark_sessions_resumed_total")
}

#[test]
fn three_collectors_behind_nginx_keep_sessions_through_failover() {
    let started = Instant::now();
    let (t, _) = store("cluster");
    let url = t.url();
    let extra = ["--store", url.as_str(), "--trusted-proxy", "127.0.0.1"];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut collectors: Vec<Option<Proc>> = dirs
        .iter()
        .map(|d| Some(spawn(d.path(), &d.path().join("serve.log"), &extra)))
        .collect();
    let addrs: Vec<String> = collectors
        .iter()
        .map(|c| c.as_ref().unwrap().addr.clone())
        .collect();
    let nginx = Nginx::start(&addrs.iter().map(String::as_str).collect::<Vec<_>>());
    let n = VISITORS.count() as u64;

    // Phase 1: every visitor lands on the collector its address hashes to.
    phase(nginx.port, 1);
    let first: Vec<u64> = addrs.iter().map(|a| accepted(a)).collect();
    assert_eq!(first.iter().sum::<u64>(), n, "{first:?}");
    assert!(
        first.iter().filter(|&&c| c > 0).count() >= 2,
        "the visitors were not spread over the collectors: {first:?}"
    );

    // Stop the busiest collector gracefully; its visitors move, the others stay.
    let a = (0..3).max_by_key(|&i| first[i]).unwrap();
    let mut p = collectors[a].take().unwrap();
    Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(p.child.wait().unwrap().success(), "SIGTERM is a clean stop");
    phase(nginx.port, 2);
    let second: Vec<u64> = (0..3)
        .map(|i| {
            if i == a {
                first[a]
            } else {
                accepted(&addrs[i])
            }
        })
        .collect();
    assert_eq!(
        second.iter().sum::<u64>(),
        2 * n,
        "phase 2 went to the running collectors: {second:?}"
    );
    let moved: u64 = (0..3).filter(|&i| i != a).map(|i| resumed(&addrs[i])).sum();
    assert_eq!(
        moved, first[a],
        "exactly the stopped collector's visitors were resumed from the store elsewhere"
    );

    // kill -9 the busier survivor: its visitors (its own and those it took over) move again.
    let b = (0..3)
        .filter(|&i| i != a)
        .max_by_key(|&i| second[i])
        .unwrap();
    let c = (0..3).find(|&i| i != a && i != b).unwrap();
    let before_c = (accepted(&addrs[c]), resumed(&addrs[c]));
    let mut p = collectors[b].take().unwrap();
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    phase(nginx.port, 3);
    assert_eq!(
        accepted(&addrs[c]) - before_c.0,
        n,
        "the last collector took every visitor"
    );
    assert_eq!(
        resumed(&addrs[c]) - before_c.1,
        n - (second[c] - first[c]),
        "the last collector resumed every visitor it had not served in phase 2"
    );

    // In the store: every acknowledged event exactly once, and one session per visitor holding
    // its three page views.
    let rows = sql(
        &t,
        "SELECT pv, count(), any(session_id) FROM events GROUP BY pv ORDER BY pv",
    );
    let mut sessions: BTreeMap<u8, Vec<String>> = BTreeMap::new();
    let mut counts = HashMap::new();
    for l in rows.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        counts.insert(f[0].to_string(), f[1].to_string());
        let v: u8 = f[0][3..6].parse().unwrap();
        sessions.entry(v).or_default().push(f[2].to_string());
    }
    for ph in 1..=3 {
        for v in VISITORS {
            assert_eq!(
                counts.get(&format!("pv{ph}{v:03}clus")).map(String::as_str),
                Some("1"),
                "visitor {v}'s acknowledged page view of phase {ph} is stored exactly once"
            );
        }
    }
    assert_eq!(counts.len(), 3 * VISITORS.count(), "{rows}");
    for (v, ids) in &sessions {
        assert!(
            ids.len() == 3 && ids.iter().all(|id| *id == ids[0]),
            "visitor {v} has one session over its three page views: {ids:?}"
        );
    }
    let distinct: u64 = sql(&t, "SELECT uniqExact(id) FROM session_deltas")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(distinct, n, "one session per visitor");
    drop(nginx);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}
