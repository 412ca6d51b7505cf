//! The real `waymark` binary as a child process: crash (kill -9) and graceful shutdown (SIGTERM)
//! lose no acknowledged batch and count none twice.

use crate::harness::*;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Proc {
    pub child: Child,
    pub addr: String,
    pub log: std::path::PathBuf,
}

/// Starts `waymark serve` on a free port with JSON logs written to `log`.
pub fn spawn(dir: &Path, log: &Path, extra: &[&str]) -> Proc {
    let log_file = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-json",
            "--data-dir",
        ])
        .arg(dir)
        .args(["--rate-limit-per-second", "100000"])
        .args(extra)
        .env("WAYMARK_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut p = Proc {
        child,
        addr: String::new(),
        log: log.to_path_buf(),
    };
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let addr = text.lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == "listening")
                .then(|| v["fields"]["addr"].as_str().map(str::to_string))?
        });
        if let Some(addr) = addr {
            p.addr = addr;
            return p;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "collector did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(addr: &str, body: &str) -> Option<u16> {
    let r = agent()
        .post(&format!("http://{addr}/v1/batch"))
        .header("content-type", "application/json")
        .header("origin", ORIGIN)
        .send(body)
        .ok()?;
    Some(r.status().as_u16())
}

/// A batch of three events whose page-view id names the batch, so the test can count its rows.
pub(crate) fn numbered(n: usize) -> (String, String) {
    let id = format!("crash{n:011}aaaa");
    let pv = format!("pv{n:010}");
    let now = now_ms();
    let ev = |i: i64| {
        format!(
            r#"{{"type":"pageview","at":{},"pv":"{pv}","url":"https://shop.example/p{i}"}}"#,
            now - 100 + i
        )
    };
    (id.clone(), body(&id, now, &[ev(0), ev(1), ev(2)]))
}

/// Sends numbered batches from `threads` clients until `stop`; returns the numbers answered 202.
pub(crate) fn load(
    addr: String,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<usize>>> {
    (0..threads)
        .map(|t| {
            let addr = addr.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut n = t;
                while !stop.load(Ordering::Relaxed) && n < 1_000_000 {
                    let (_, b) = numbered(n);
                    match send(&addr, &b) {
                        Some(202) => acked.push(n),
                        Some(_) => {}
                        None => break, // the server is gone
                    }
                    n += threads;
                }
                acked
            })
        })
        .collect()
}

fn rows_per_pv(dir: &Path) -> std::collections::HashMap<String, i64> {
    let db =
        rusqlite::Connection::open(waymark_collector::store::sqlite::SqliteStore::path_in(dir))
            .unwrap();
    let mut stmt = db
        .prepare("SELECT pv, count(*) FROM events GROUP BY pv")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn kill_9_loses_no_acknowledged_batch_and_retries_count_once() {
    let dir = data_dir();
    let log = dir.path().join("run1.log");
    let mut p = spawn(dir.path(), &log, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(p.addr.clone(), 4, stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    p.child.kill().unwrap(); // SIGKILL: no chance to flush anything
    p.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<usize> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        acked.len() > 20,
        "only {} batches acknowledged before the kill",
        acked.len()
    );
    let max = acked.iter().copied().max().unwrap();

    let mut p = spawn(dir.path(), &dir.path().join("run2.log"), &[]);
    // The SDK retries what it did not get an answer for; retry everything.
    for n in 0..=max + 8 {
        let (_, b) = numbered(n);
        let r = agent()
            .post(&format!("http://{}/v1/batch", p.addr))
            .header("content-type", "application/json")
            .header("origin", ORIGIN)
            .send(&b);
        let r = reply(r);
        assert_eq!(r.status, 202, "{}", r.body);
        if acked.contains(&n) {
            assert_eq!(
                r.json()["duplicate"],
                true,
                "batch {n} was acknowledged, so it is stored"
            );
        }
    }
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let rows = rows_per_pv(dir.path());
    for n in 0..=max + 8 {
        assert_eq!(
            rows.get(&format!("pv{n:010}")).copied(),
            Some(3),
            "batch {n} stored exactly once"
        );
    }
}

#[test]
fn sigterm_finishes_in_flight_requests_and_commits() {
    let dir = data_dir();
    let log = dir.path().join("run.log");
    let mut p = spawn(dir.path(), &log, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(p.addr.clone(), 4, stop.clone());
    std::thread::sleep(Duration::from_millis(800));
    let pid = p.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = wait_timeout(&mut p.child, Duration::from_secs(40));
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "exit status {status:?}");
    let acked: Vec<usize> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(!acked.is_empty());
    let rows = rows_per_pv(dir.path());
    for n in acked {
        assert_eq!(
            rows.get(&format!("pv{n:010}")).copied(),
            Some(3),
            "batch {n}"
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("writer drained and stopped"), "{text}");
}

fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Collected log lines of a process (for the privacy test).
pub fn log_lines(p: &Proc) -> Vec<String> {
    let f = std::fs::File::open(&p.log).unwrap();
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .collect()
}
