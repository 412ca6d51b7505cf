//! Throughput of `Sessioniser::assign` on a realistic day-part: 100 000 visitors on 8 sites over
//! three hours, about a million events, arriving out of order the way batches do.
//!
//! The stream is generated once from a fixed seed (no `rand` dependency: splitmix64 is enough for
//! a workload), so runs are comparable. Each iteration starts from an empty sessioniser and calls
//! `expire` once per simulated minute, as the server's timer does, so growth, eviction and expiry
//! are part of the measured cost.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use waymark_collector::session::{Hit, SessionConfig, SessionId, Sessioniser};

const VISITORS: u64 = 100_000;
const SITES: u64 = 8;
const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (the slight modulo bias does not matter for a workload).
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo) as u64) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One event as the server sees it: when it arrived and what the sessioniser is told.
struct Arrival {
    received: i64,
    hit: Hit,
}

fn workload() -> Vec<Arrival> {
    let mut rng = Rng(0x5eed);
    let mut out = Vec::new();
    for v in 0..VISITORS {
        let visitor = Rng(v).next();
        let site = (v % SITES) as u32;
        let mut at = rng.range(0, 3 * HOUR);
        let events = rng.range(1, 20);
        for k in 0..events {
            // Page views with UTM or an external referrer: a fifth of landings, a few later ones.
            let campaign = if rng.chance(if k == 0 { 20 } else { 2 }) {
                Some(rng.next() % 5)
            } else {
                None
            };
            // Most events come in the batch they belong to; some wait for the next flush, a few
            // (offline, retried) much longer.
            let delay = match rng.next() % 100 {
                0 => rng.range(MIN, 20 * MIN),
                1..=9 => rng.range(0, MIN),
                _ => rng.range(0, SEC),
            };
            out.push(Arrival {
                received: at + delay,
                hit: Hit {
                    site,
                    visitor,
                    visitor_yesterday: None,
                    at,
                    campaign,
                },
            });
            // Reading pace: mostly seconds to minutes, sometimes a pause, now and then a return
            // visit after the session timed out.
            at += match rng.next() % 100 {
                0..=74 => rng.range(5 * SEC, 2 * MIN),
                75..=94 => rng.range(2 * MIN, 25 * MIN),
                _ => rng.range(31 * MIN, 90 * MIN),
            };
        }
    }
    // Arrival order; ties keep derived-time order, as the caller applies each batch.
    out.sort_by_key(|a| (a.received, a.hit.at));
    out
}

/// Open sessions and bytes per open session at the busiest minute.
#[derive(Clone, Copy, Default)]
struct Peak {
    open: usize,
    bytes_per_session: usize,
}

/// Feeds the whole stream, expiring once per simulated minute; returns the sessioniser and its
/// memory at the busiest minute.
fn feed(mut s: Sessioniser, stream: &[Arrival]) -> (Sessioniser, Peak) {
    let mut next: SessionId = 0;
    let mut new_id = || {
        next = next.wrapping_add(0x9e37_79b9_7f4a_7c15);
        next
    };
    let mut tick = i64::MIN;
    let mut peak = Peak::default();
    for a in stream {
        black_box(s.assign(&a.hit, &mut new_id));
        if a.received >= tick {
            tick = a.received + MIN;
            black_box(s.expire(a.received));
            black_box(s.take_evicted());
            // `approx_bytes_per_session` is O(1): a few capacities.
            if s.open_count() > peak.open {
                peak = Peak {
                    open: s.open_count(),
                    bytes_per_session: s.approx_bytes_per_session(),
                };
            }
        }
    }
    (s, peak)
}

fn assign(c: &mut Criterion) {
    let stream = workload();
    let configs = [
        ("100k_visitors", SessionConfig::default()),
        (
            "100k_visitors_max_open_10k",
            SessionConfig {
                max_open: 10_000,
                ..SessionConfig::default()
            },
        ),
    ];
    for (name, cfg) in configs {
        // Memory at the busiest minute (at the end most visitors have expired, so the tables
        // are mostly spare room), measured outside the timing.
        let (_, peak) = feed(Sessioniser::new(cfg), &stream);
        eprintln!(
            "{name}: {} events; busiest minute: {} open sessions, {} bytes per open session",
            stream.len(),
            peak.open,
            peak.bytes_per_session
        );
    }

    let mut group = c.benchmark_group("assign");
    group.throughput(Throughput::Elements(stream.len() as u64));
    // One iteration is a million events; ten samples are plenty and fit the measurement time.
    group.sample_size(10);
    for (name, cfg) in configs {
        group.bench_function(name, |b| {
            b.iter_batched(
                || Sessioniser::new(cfg),
                |s| feed(s, &stream),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, assign);
criterion_main!(benches);
