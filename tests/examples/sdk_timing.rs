//! How long the browser SDK holds the main thread (issue 3; results in BENCHMARKS.md, "SDK
//! main-thread time"). A benchmark that prints a report, not a test: it asserts nothing about
//! time, but fails loudly when the SDK did not load or its events did not reach the store.
//!
//! ```sh
//! cargo xtask build-sdk                                   # sdk/dist must be current
//! cargo run -q -p waymark-tests --example sdk_timing      # [-- --loads 5 --browser chromium --direct]
//! ```
//!
//! It starts the collector in demo mode and, in turn, headless Chromium and Firefox ESR on the
//! bench page `demo-site/bench/index.html`, which reads `performance.now()` between consecutive
//! SDK calls. By default the page is reached through a small proxy in this file that adds
//! `Cross-Origin-Opener-Policy` / `Cross-Origin-Embedder-Policy` to the collector's responses:
//! a cross-origin isolated page gets a 5 µs (Chromium) or 20 µs (Firefox) clock instead of
//! 100 µs / 1 ms. `--direct` skips the proxy (and so measures with the coarse clock).
//!
//! - Start-up: first loads in fresh browsers (cold: nothing cached) and repeated loads in one
//!   browser (warm) of `/bench/` with queued stub calls (consent grant, a `dataLayer` entry, a
//!   track and a cart call, all replayed at start-up) and of `/bench/?queue=0` (nothing queued,
//!   consent pending). Reported: the loader's `waymark:start` measure (start()) and its longest
//!   `waymark:replay` measure (the queued calls are replayed in tasks of about 2 ms at most), the
//!   evaluation of `waymark.js` (marks of two deferred scripts around it), the longest busy
//!   stretch of the main thread that begins after the script and before ready (a MessageChannel
//!   lag monitor; it holds instantiation, glue set-up and `waymark:start` when they run in one
//!   task, and whatever else the page did then; ready = the last replay's end), the time from
//!   script execution to ready, and the longest `longtask` entry overlapping that (Chromium
//!   only).
//! - Per call: per page load, `CALLS` calls of each kind (`SPA_CALLS` page views: browsers
//!   throttle the History API to about 200 calls per 10 s) in rounds of 10, waiting after each
//!   round until its batch post was answered, so that no round runs while a post is in flight and
//!   nothing overflows the queue. Each round is followed by a round of the same work without the
//!   SDK (the unpatched `History.prototype.pushState`, `Array.prototype.push`, a click on a button
//!   outside the document, a no-op function): the page's own share of each call. A visible
//!   page's batch is posted in a timer task of the SDK's own: the page times those tasks and the
//!   `fetch()` calls in them, so a post's cost splits into the browser's `fetch()` and the SDK's
//!   own work.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use waymark_tests::{available, Browser, Collector, Kind, Options};

/// Calls of each kind per page load.
const CALLS: usize = 2_000;
/// SPA page views per page load: with as many baseline `pushState` calls, 180 History API calls,
/// under the browsers' throttling (about 200 per 10 s).
const SPA_CALLS: usize = 90;
/// Calls per round; the SDK posts a batch every 10 events.
const ROUND: usize = 10;
/// Start-up-only loads per variant in the bench browser (warm: HTTP cache, and the engines'
/// in-process caches of compiled code), besides the bench loads.
const STARTUP_LOADS: usize = 10;
/// Fresh browsers (new profile, nothing cached) per variant, one load each: a first visit.
const COLD_STARTS: usize = 5;
/// At least this long from one SPA run to the next (the throttling window is 10 s).
const SPA_SPACING: Duration = Duration::from_secs(11);

/// The kinds of call: the bench page's name, the label in the report, calls per load.
const KINDS: [(&str, &str, usize); 5] = [
    ("track", "`waymark('track', 'x', {a: 1})`", CALLS),
    ("cart", "`waymark('cart', 'add', {…1 item})`", CALLS),
    ("click", "click on `data-waymark-cart` button", CALLS),
    ("datalayer", "`dataLayer.push` GA4 `add_to_cart`", CALLS),
    ("spa", "`history.pushState` (SPA page view)", SPA_CALLS),
];

/// What the store must hold per page load, per kind (SQL counting the kind's events).
const STORED: [(&str, &str); 5] = [
    (
        "track",
        "SELECT count(*) FROM events WHERE type = 'custom' AND name = 'x'",
    ),
    (
        "cart",
        "SELECT count(*) FROM events WHERE type = 'cart' AND items LIKE '%sku-api%'",
    ),
    (
        "click",
        "SELECT count(*) FROM events WHERE type = 'cart' AND items LIKE '%sku-click%'",
    ),
    (
        "datalayer",
        "SELECT count(*) FROM events WHERE type = 'cart' AND items LIKE '%sku-datalayer%'",
    ),
    (
        "spa",
        "SELECT count(*) FROM events WHERE type = 'pageview' AND path LIKE '/bench/p%'",
    ),
];

const CHROMIUM_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                           Chrome/156.0.0.0 Safari/537.36";

struct Args {
    loads: usize,
    direct: bool,
    browsers: Vec<Kind>,
}

fn args() -> Args {
    let mut a = Args {
        loads: 5,
        direct: false,
        browsers: vec![Kind::Chromium, Kind::Firefox],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--loads" => {
                a.loads = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .expect("--loads N (N ≥ 1)");
            }
            "--direct" => a.direct = true,
            "--browser" => {
                a.browsers = match it.next().as_deref() {
                    Some("chromium") => vec![Kind::Chromium],
                    Some("firefox") => vec![Kind::Firefox],
                    _ => panic!("--browser chromium|firefox"),
                }
            }
            other => panic!(
                "unknown argument {other:?}; usage: sdk_timing [--loads N] [--direct] \
                 [--browser chromium|firefox]"
            ),
        }
    }
    a
}

// ---------------------------------------------------------------------------------------------
// The isolating proxy: one request per connection (`Connection: close` both ways), the response
// passed through with COOP/COEP added. The page's own origin is the proxy's, so the `Origin` of
// the SDK's posts is rewritten to the collector's (the demo site is registered for that one).

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn isolating_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let me = listener.local_addr().expect("proxy address");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = relay(conn, upstream, me);
            });
        }
    });
    me
}

fn relay(mut client: TcpStream, upstream: SocketAddr, me: SocketAddr) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let mut out = format!("{}\r\n", lines.next().unwrap_or_default());
    let mut length = 0usize;
    let own_origin = format!("http://{me}");
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "connection" | "keep-alive" => continue,
            "origin" if value.trim() == own_origin => {
                out.push_str(&format!("Origin: http://{upstream}\r\n"));
                continue;
            }
            "content-length" => length = value.trim().parse().unwrap_or(0),
            _ => {}
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(out.as_bytes())?;
    up.write_all(&buf[head_end..head_end + length])?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let Some(end) = find(&resp, b"\r\n\r\n") else {
        return client.write_all(&resp);
    };
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(
        "Cross-Origin-Opener-Policy: same-origin\r\n\
         Cross-Origin-Embedder-Policy: require-corp\r\n\
         Connection: close\r\n\r\n",
    );
    client.write_all(out.as_bytes())?;
    client.write_all(&resp[end + 4..])?;
    client.flush()
}

// ---------------------------------------------------------------------------------------------
// Driving the bench page.

/// One page load's start-up figures (ms).
#[derive(Debug, Clone, Default)]
struct Startup {
    start_measure: f64,
    replay_measure: f64,
    script_eval: f64,
    script_to_ready: f64,
    busy_after_script: f64,
    longtask: Option<f64>,
}

/// One call: its time, whether it posted a batch (only a hidden page's calls do; a visible
/// page's posts are tasks of their own), and its round (`load * 10_000 + round`).
#[derive(Debug, Clone, Copy)]
struct Call {
    ms: f64,
    posted: bool,
    round: usize,
}

/// The calls of one kind: with the SDK, and the same work without it.
#[derive(Default)]
struct Calls {
    sdk: Vec<Call>,
    base: Vec<Call>,
    /// The SDK's post tasks (a timer's): (task ms, of which inside `fetch()`).
    post_tasks: Vec<(f64, f64)>,
}

/// Start-up samples: (cold, queued) → loads.
#[derive(Default)]
struct Results {
    startups: Vec<((bool, bool), Vec<Startup>)>,
    calls: Vec<(&'static str, Calls)>,
    resolution: f64,
    isolated: bool,
    longtask_supported: bool,
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("bench page: no `{key}` in {v}"))
}

/// Loads `url` and waits until the SDK is ready; panics when it never is.
async fn load(b: &Browser, kind: Kind, url: &str, r: &mut Results) -> Startup {
    b.client
        .goto(url)
        .await
        .unwrap_or_else(|e| panic!("[{kind:?}] goto {url}: {e}"));
    let started = Instant::now();
    let v = loop {
        // Errors while the page is still loading are expected: poll again.
        if let Ok(v) = b
            .client
            .execute("return window.bench ? bench.startup() : null", vec![])
            .await
        {
            if !v.is_null() {
                break v;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "[{kind:?}] the SDK did not load on {url} within 15 s (is sdk/dist built? \
             `cargo xtask build-sdk`)"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        v.get("startMeasure").and_then(Value::as_f64).is_some(),
        "[{kind:?}] the SDK loaded but left no `waymark:start` and `waymark:replay` measures: \
         sdk/dist predates sdk/js/loader.js; run `cargo xtask build-sdk`"
    );
    r.resolution = num(&v, "resolution");
    r.isolated = v["isolated"].as_bool() == Some(true);
    r.longtask_supported = v["longtaskSupported"].as_bool() == Some(true);
    Startup {
        start_measure: num(&v, "startMeasure"),
        replay_measure: num(&v, "replayMeasure"),
        script_eval: num(&v, "scriptEval"),
        script_to_ready: num(&v, "scriptToReady"),
        busy_after_script: num(&v, "longestGapAfter"),
        longtask: r.longtask_supported.then(|| num(&v, "longestLongtask")),
    }
}

/// Runs `bench.run(kind, n, ROUND)` on the current page and returns its calls.
async fn run(b: &Browser, kind: Kind, what: &str, n: usize, load_no: usize) -> Calls {
    b.js(&format!(
        "bench.start(() => bench.run('{what}', {n}, {ROUND})); return true"
    ))
    .await;
    let started = Instant::now();
    let v = loop {
        let v = b.js("return bench.result").await;
        if !v.is_null() {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "[{kind:?}] {what}: no result within 10 min"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ok = v
        .get("ok")
        .unwrap_or_else(|| panic!("[{kind:?}] {what} failed in the page: {}", v["error"]));
    let posts = num(ok, "posts");
    assert!(
        posts > 0.0,
        "[{kind:?}] {what}: {n} calls and the SDK posted no batch (events not captured)"
    );
    assert_eq!(
        num(ok, "failedPosts"),
        0.0,
        "[{kind:?}] {what}: some batch posts failed"
    );
    assert_eq!(
        num(ok, "spaMissed"),
        0.0,
        "[{kind:?}] {what}: the browser throttled history.pushState"
    );
    let calls = |side: &str| -> Vec<Call> {
        let list = |key: &str| -> Vec<Value> {
            ok[side]
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (ms, posted, round) = (list("ms"), list("posted"), list("round"));
        assert_eq!(ms.len(), n, "[{kind:?}] {what}: {} of {n} calls", ms.len());
        (0..n)
            .map(|i| Call {
                ms: ms[i].as_f64().unwrap_or(f64::NAN),
                posted: posted.get(i).and_then(Value::as_bool) == Some(true),
                round: load_no * 10_000
                    + round.get(i).and_then(Value::as_u64).unwrap_or(0) as usize,
            })
            .collect()
    };
    let post_tasks = ok["postTasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .map(|t| {
                    let at = |i: usize| t.get(i).and_then(Value::as_f64).unwrap_or(f64::NAN);
                    (at(0), at(1))
                })
                .collect()
        })
        .unwrap_or_default();
    Calls {
        sdk: calls("sdk"),
        base: calls("base"),
        post_tasks,
    }
}

impl Results {
    fn startup(&mut self, cold: bool, queued: bool, s: Startup) {
        match self.startups.iter_mut().find(|(k, _)| *k == (cold, queued)) {
            Some((_, list)) => list.push(s),
            None => self.startups.push(((cold, queued), vec![s])),
        }
    }
}

fn options(kind: Kind) -> Options {
    Options {
        user_agent: (kind == Kind::Chromium).then(|| CHROMIUM_UA.to_string()),
        ..Options::default()
    }
}

async fn bench_browser(kind: Kind, base: &str, loads: usize) -> Results {
    let mut r = Results::default();
    let bench = format!("{base}/bench/");
    let plain = format!("{base}/bench/?queue=0");
    for i in 0..2 * COLD_STARTS {
        let b = Browser::start(kind, &options(kind)).await;
        let queued = i % 2 == 1;
        let s = load(&b, kind, if queued { &bench } else { &plain }, &mut r).await;
        r.startup(true, queued, s);
        b.close().await;
    }
    let b = Browser::start(kind, &options(kind)).await;
    for _ in 0..STARTUP_LOADS {
        let s = load(&b, kind, &plain, &mut r).await;
        r.startup(false, false, s);
        let s = load(&b, kind, &bench, &mut r).await;
        r.startup(false, true, s);
    }
    let mut calls: Vec<(&str, Calls)> = KINDS.iter().map(|k| (k.0, Calls::default())).collect();
    let mut last_spa: Option<Instant> = None;
    for l in 0..loads {
        let s = load(&b, kind, &bench, &mut r).await;
        r.startup(false, true, s);
        for (i, &(what, _, n)) in KINDS.iter().enumerate() {
            if what == "spa" {
                if let Some(wait) = last_spa.map(|t| SPA_SPACING.saturating_sub(t.elapsed())) {
                    tokio::time::sleep(wait).await;
                }
                last_spa = Some(Instant::now());
            }
            let got = run(&b, kind, what, n, l).await;
            calls[i].1.sdk.extend(got.sdk);
            calls[i].1.base.extend(got.base);
            calls[i].1.post_tasks.extend(got.post_tasks);
        }
        eprintln!("  {kind:?}: load {} of {loads} done", l + 1);
    }
    r.calls = calls;
    b.close().await;
    r
}

// ---------------------------------------------------------------------------------------------
// Statistics and the report.

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// A kind's row label in the tables (its name if it is not in `KINDS`).
fn label(what: &'static str) -> &'static str {
    KINDS.iter().find(|k| k.0 == what).map_or(what, |k| k.1)
}

/// The share of `v` over 0.1 ms (the per-event target), in percent.
fn over_target(v: &[f64]) -> f64 {
    100.0 * v.iter().filter(|&&x| x > 0.1).count() as f64 / v.len().max(1) as f64
}

fn ms(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x < 0.1 {
        format!("{x:.3}")
    } else {
        format!("{x:.2}")
    }
}

/// The median of per-round averages of the calls that posted nothing: a round's time stamps
/// telescope, so its sum is read to about two clock steps, not one step per call.
fn round_median(calls: &[Call]) -> f64 {
    let mut per_round: std::collections::BTreeMap<usize, (f64, usize)> = Default::default();
    for c in calls.iter().filter(|c| !c.posted) {
        let e = per_round.entry(c.round).or_default();
        e.0 += c.ms;
        e.1 += 1;
    }
    let v = sorted(per_round.values().map(|(s, n)| s / *n as f64).collect());
    pct(&v, 0.5)
}

fn report(kind: Kind, r: &Results) {
    println!(
        "\n### {kind:?}: clock step {} ms, cross-origin isolated: {}\n",
        ms(r.resolution),
        r.isolated
    );
    if r.resolution > 0.05 {
        println!(
            "Note: with a {} ms clock, medians and single calls below it are not resolved (they \
             read 0 or one step); only the means are meaningful. Run without `--direct`.\n",
            ms(r.resolution)
        );
    }
    println!(
        "Start-up (ms, median / max over loads). Cold: the first load in a fresh browser; warm: \
         repeated loads in one browser.\n\n\
         | load | queued stub calls | loads | `waymark:start` | `waymark:replay` | `waymark.js` \
         evaluation | longest busy stretch after it until ready | script execution → ready | \
         longest `longtask` in it |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for ((cold, queued), list) in &r.startups {
        let col = |f: fn(&Startup) -> f64| {
            let v = sorted(list.iter().map(f).collect());
            format!("{} / {}", ms(pct(&v, 0.5)), ms(pct(&v, 1.0)))
        };
        let longtask = if r.longtask_supported {
            match list.iter().filter_map(|s| s.longtask).fold(0.0, f64::max) {
                0.0 => "none (≥ 50 ms)".to_string(),
                m => ms(m),
            }
        } else {
            "not supported".into()
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {longtask} |",
            if *cold { "cold" } else { "warm" },
            if *queued {
                "consent grant + 3 calls"
            } else {
                "none (consent pending)"
            },
            list.len(),
            col(|s| s.start_measure),
            col(|s| s.replay_measure),
            col(|s| s.script_eval),
            col(|s| s.busy_after_script),
            col(|s| s.script_to_ready),
        );
    }
    println!(
        "\nPer call (ms). median: of per-round averages of the calls that posted nothing; \
         p99 and max: single calls; mean: all time / calls (the posts are tasks of their own, \
         the \"post task\" rows); \
         \"page's own\": the same work without the SDK (median, as above):\n\n\
         | call | calls | median | page's own | SDK's share | p99 | max | p99 / max of calls without \
         a post | mean | calls > 0.1 ms | page's own: p99 / max / calls > 0.1 ms |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (what, calls) in &r.calls {
        let label = label(what);
        let all = sorted(calls.sdk.iter().map(|c| c.ms).collect());
        let plain = sorted(
            calls
                .sdk
                .iter()
                .filter(|c| !c.posted)
                .map(|c| c.ms)
                .collect(),
        );
        let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
        let (median, own) = (round_median(&calls.sdk), round_median(&calls.base));
        // The same statistics for the work without the SDK: single slow calls there come from
        // the browser and the machine (GC, other processes), not from the SDK.
        let base = sorted(calls.base.iter().map(|c| c.ms).collect());
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {:.1} % | {} / {} / {:.1} % |",
            all.len(),
            ms(median),
            ms(own),
            ms(median - own),
            ms(pct(&all, 0.99)),
            ms(pct(&all, 1.0)),
            ms(pct(&plain, 0.99)),
            ms(pct(&plain, 1.0)),
            ms(mean),
            over_target(&all),
            ms(pct(&base, 0.99)),
            ms(pct(&base, 1.0)),
            over_target(&base)
        );
    }
    // The posts: a visible page's batch goes out in a timer task of the SDK's own, right after
    // the call that queued the 10th event (of every kind).
    let tasks: Vec<(f64, f64)> = r
        .calls
        .iter()
        .flat_map(|(_, c)| c.post_tasks.clone())
        .collect();
    let total = sorted(tasks.iter().map(|t| t.0).collect());
    let fetch = sorted(tasks.iter().map(|t| t.1).collect());
    let own = sorted(tasks.iter().map(|t| t.0 - t.1).collect());
    for (label, v) in [
        (
            "post task: the SDK's timer task that built and posted a batch",
            &total,
        ),
        ("… of which inside the browser's `fetch()`", &fetch),
        ("… the rest (batch JSON, bookkeeping)", &own),
    ] {
        println!(
            "| {label} | {} | {} | – | – | {} | {} | – | – | {:.1} % | – |",
            v.len(),
            ms(pct(v, 0.5)),
            ms(pct(v, 0.99)),
            ms(pct(v, 1.0)),
            over_target(v)
        );
    }
    // Where in a round the slow calls fall: the 1st call queues a batch's first event after the
    // page waited for the previous post (like a visitor's next click after a pause); the 10th
    // arms the post task.
    println!(
        "\nCalls over 0.1 ms by position in the round of 10 (%), and the first calls' own median \
         and p99 (ms):\n\n\
         | call | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 1st call: median / p99 |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (what, calls) in &r.calls {
        let label = label(what);
        let (mut slow, mut n) = ([0usize; 10], [0usize; 10]);
        let mut first = Vec::new();
        let mut pos = 0;
        for (j, c) in calls.sdk.iter().enumerate() {
            pos = if j > 0 && calls.sdk[j - 1].round == c.round {
                pos + 1
            } else {
                0
            };
            if pos < 10 {
                n[pos] += 1;
                slow[pos] += usize::from(c.ms > 0.1);
            }
            if pos == 0 {
                first.push(c.ms);
            }
        }
        let first = sorted(first);
        let cells: Vec<String> = (0..10)
            .map(|k| format!("{:.1}", 100.0 * slow[k] as f64 / n[k].max(1) as f64))
            .collect();
        println!(
            "| {label} | {} | {} / {} |",
            cells.join(" | "),
            ms(pct(&first, 0.5)),
            ms(pct(&first, 0.99))
        );
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[tokio::main]
async fn main() {
    let a = args();
    let collector = Collector::start(|cfg| {
        // Thousands of batches a minute from one client: the default limit would answer 429.
        cfg.rate_limit_per_second = 1_000_000;
    });
    let base = if a.direct {
        collector.url("")
    } else {
        format!("http://{}", isolating_proxy(collector.addr))
    };
    let load_before = loadavg();
    let mut expected = [0i64; 5];
    let mut results = Vec::new();
    for &kind in &a.browsers {
        assert!(
            available(kind),
            "{kind:?} or its WebDriver server is not installed"
        );
        eprintln!(
            "{kind:?}: {} fresh browsers, {} start-up loads, then {} bench loads",
            2 * COLD_STARTS,
            2 * STARTUP_LOADS,
            a.loads
        );
        let started = Instant::now();
        let r = bench_browser(kind, &base, a.loads).await;
        if !a.direct && !r.isolated {
            eprintln!("warning: {kind:?} did not isolate the page; the clock stays coarse");
        }
        // Every call's event must be in the store.
        for (i, (what, sql)) in STORED.iter().enumerate() {
            let per_load = KINDS.iter().find(|k| k.0 == *what).map_or(0, |k| k.2);
            expected[i] += (a.loads * per_load) as i64;
            let got = collector.wait_count(sql, expected[i]);
            assert!(
                got == expected[i],
                "[{kind:?}] {what}: {got} events stored, expected {}",
                expected[i]
            );
        }
        eprintln!(
            "{kind:?}: done in {:.0} s, all events stored",
            started.elapsed().as_secs_f64()
        );
        results.push((kind, r));
    }
    println!(
        "SDK main-thread time: {} bench loads per browser ({CALLS} calls per kind per load, \
         {SPA_CALLS} page views), {} cold and {} warm start-up loads{}",
        a.loads,
        2 * COLD_STARTS,
        2 * STARTUP_LOADS + a.loads,
        if a.direct {
            ", direct"
        } else {
            ", cross-origin isolated"
        }
    );
    println!(
        "Load average (1, 5, 15 min) before: {load_before}; after: {}; {} cores",
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (kind, r) in &results {
        report(*kind, r);
    }
}
