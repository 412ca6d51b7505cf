//! Load generator for the scale-out benchmark (issue 6, `bench/cluster.sh`): the load of
//! `bench/ingest.lua` (every request a new 10-event batch with a unique batch id, two page views
//! to one engagement, 50 000 simulated visitors), but every connection binds its own loopback
//! source address (127.0.0.2, 127.0.0.3, …) before connecting, so nginx's `hash $remote_addr`
//! spreads the connections over the collectors as it would spread real visitors; wrk cannot do
//! that. Within one address the visitor is varied by the user agent.
//!
//! Usage: `cluster_load <host:port> <seconds> <connections>`; prints requests/s, events/s and
//! the latency percentiles of acknowledged batches.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VISITORS: u64 = 50_000;

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
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn request(target: SocketAddr, conn: usize, n: u64, visitor: u64) -> Vec<u8> {
    let now = now_ms();
    let pv = format!("pv{conn:04}{:06}", n % 1_000_000);
    let events: Vec<String> = (1..=10)
        .map(|i| {
            let at = now - 1000 + i;
            let path = format!("/products/{}", (visitor + i as u64) % 40);
            if i % 3 == 0 {
                format!(
                    r#"{{"type":"engagement","at":{at},"pv":"{pv}","url":"https://shop.example{path}","scroll":{},"engaged_ms":{}}}"#,
                    (i * 10) % 100,
                    i * 1000
                )
            } else {
                format!(
                    r#"{{"type":"pageview","at":{at},"pv":"{pv}","url":"https://shop.example{path}","referrer":"https://www.google.com/"}}"#
                )
            }
        })
        .collect();
    let body = format!(
        r#"{{"site":"shop","batch":"bench{conn:04}x{n:012}","sent_at":{now},"sdk":"bench","events":[{}]}}"#,
        events.join(",")
    );
    format!(
        "POST /v1/batch HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\n\
         Origin: https://shop.example\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.{visitor}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body) into `buf`; its status.
async fn response(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(status);
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn connect(source: [u8; 4], target: SocketAddr) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::from((source, 0))).ok()?;
    socket.connect(target).await.ok()
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    ok: u64,
    other: u64,
    errors: u64,
}

async fn connection(conns: usize, conn: usize, target: SocketAddr, until: Instant) -> Tally {
    let source = [127, 0, 0, 2 + (conn % 250) as u8];
    let mut rng = Rng(conn as u64 * 7919 + 1);
    let per_conn = (VISITORS / conns as u64).max(1);
    let mut t = Tally::default();
    let mut buf = Vec::with_capacity(8192);
    let mut stream = None;
    let mut n = 0u64;
    while Instant::now() < until {
        if stream.is_none() {
            stream = connect(source, target).await;
            if stream.is_none() {
                t.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        n += 1;
        let req = request(target, conn, n, rng.next() % per_conn);
        let started = Instant::now();
        let status = match s.write_all(&req).await {
            Ok(()) => response(s, &mut buf).await,
            Err(_) => None,
        };
        match status {
            Some(202) => {
                t.ok += 1;
                t.latencies_us.push(started.elapsed().as_micros() as u64);
            }
            Some(_) => t.other += 1,
            None => {
                t.errors += 1;
                stream = None;
            }
        }
    }
    t
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() == 3,
        "usage: cluster_load <host:port> <seconds> <connections>"
    );
    let target: SocketAddr = args[0].parse()?;
    let seconds: u64 = args[1].parse()?;
    let conns: usize = args[2].parse()?;
    // One thread: the load generator shares the two cores with everything it measures.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tallies = rt.block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|c| tokio::spawn(connection(conns, c, target, until)))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_default());
        }
        out
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat: Vec<u64> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let other: u64 = tallies.iter().map(|t| t.other).sum();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let pct = |p: f64| -> f64 {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    println!(
        "{target}: {conns} connections from {} source addresses, {elapsed:.1} s: \
         {:.0} req/s acknowledged ({:.0} events/s), non-202 {other}, connection errors {errors}, \
         latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        conns.min(250),
        ok as f64 / elapsed,
        ok as f64 * 10.0 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
