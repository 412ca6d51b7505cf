//! How long the dashboard takes to show data over a large store (issue 5; results in
//! BENCHMARKS.md, "Report speed"). A benchmark that prints a report, not a test: it asserts
//! nothing about time, but fails loudly when the dashboard does not load.
//!
//! ```sh
//! cargo run --release -p waymark-collector --example report_bench -- \
//!   --sessions 1000000 --dir target/report-bench-data-1000000      # the store
//! bash scripts/build-dashboard.sh                                   # dashboard/dist
//! cargo run --release -p waymark-tests --example dashboard_timing -- \
//!   --dir target/report-bench-data-1000000 [--loads 3]
//! ```
//!
//! It serves the store with the collector in this process (no demo mode), adds an API token to
//! it, and signs in to `/dashboard/` in headless Chromium for the bench site's 30 days, `--loads`
//! times (a fresh page each time). Reported per load, from the click on "Sign in": the first
//! paint (the overview cards drawn: the dashboard's `waymark-first-paint` performance mark) and
//! the time until every chart has its data (`body[data-loaded]`).

use std::path::PathBuf;
use std::time::{Duration, Instant};
use waymark_collector::config::Config;
use waymark_collector::store::sqlite::SqliteStore;
use waymark_collector::store::Store;
use waymark_tests::{root, user_agent, Browser, Kind, Options};

const SITE: &str = "bench";
const RANGE: &str = "from=2026-10-02&to=2026-10-31&tz=UTC";
const WAIT: Duration = Duration::from_secs(600);

fn main() -> anyhow::Result<()> {
    let mut dir = PathBuf::from("target/report-bench-data-1000000");
    let mut loads = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from).unwrap_or(dir),
            "--loads" => loads = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other:?} (--dir DIR --loads N)"),
        }
    }
    let dir = if dir.is_absolute() {
        dir
    } else {
        root().join(dir)
    };
    anyhow::ensure!(
        SqliteStore::path_in(&dir).is_file(),
        "no store in {} (run the report_bench example first)",
        dir.display()
    );
    let dist = root().join("dashboard/dist");
    anyhow::ensure!(
        dist.join("index.html").is_file(),
        "the dashboard is not built: run `bash scripts/build-dashboard.sh` first"
    );
    let token = waymark_collector::auth::new_token()
        .map_err(|_| anyhow::anyhow!("no randomness for a token"))?;
    SqliteStore::open(&dir)?.add_token(
        waymark_collector::auth::hash_token(&token),
        waymark_collector::server::now_ms(),
    )?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let config = Config {
            data_dir: dir,
            dashboard_dir: Some(dist),
            ..Config::default()
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(waymark_collector::server::serve(config, listener, async {
            let _ = stop_rx.await;
        }));
        println!("load   first paint ms   all charts ms");
        for n in 1..=loads {
            let (first, all) = one_load(&format!("http://{addr}"), &token).await?;
            println!("{n:>4}   {first:>14.0}   {all:>13.0}");
        }
        let _ = stop_tx.send(());
        server.await??;
        anyhow::Ok(())
    })
}

/// One sign-in on a fresh page: (first paint, all charts) in ms after the click.
async fn one_load(base: &str, token: &str) -> anyhow::Result<(f64, f64)> {
    let browser = Browser::start(
        Kind::Chromium,
        &Options {
            user_agent: user_agent(Kind::Chromium),
            ..Options::default()
        },
    )
    .await;
    let client = browser.client.clone();
    client.set_window_size(1440, 1000).await?;
    client
        .goto(&format!("{base}/dashboard/?site={SITE}&{RANGE}"))
        .await?;
    wait(&client, "return !!document.getElementById('login-form')").await?;
    let script = format!(
        "document.getElementById('token').value = {token:?};
         document.getElementById('login-site').value = {SITE:?};
         new MutationObserver(function () {{
           if (document.body.dataset.loaded !== undefined && window.loadedAt === undefined)
             window.loadedAt = performance.now();
         }}).observe(document.body, {{attributes: true}});
         window.clickedAt = performance.now();
         document.querySelector('#login-form button[type=submit]').click();
         return true;"
    );
    client.execute(&script, vec![]).await?;
    wait(&client, "return window.loadedAt !== undefined").await?;
    let t = client
        .execute(
            "var m = performance.getEntriesByName('waymark-first-paint');
             return [m.length ? m[m.length - 1].startTime - window.clickedAt : -1,
                     window.loadedAt - window.clickedAt,
                     document.getElementById('status').textContent];",
            vec![],
        )
        .await?;
    let status = t[2].as_str().unwrap_or_default().to_string();
    anyhow::ensure!(
        !status.contains("failed"),
        "the dashboard reported: {status}"
    );
    browser.close().await;
    Ok((t[0].as_f64().unwrap_or(-1.0), t[1].as_f64().unwrap_or(-1.0)))
}

async fn wait(client: &fantoccini::Client, condition: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(serde_json::Value::Bool(true)) = client.execute(condition, vec![]).await {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < WAIT, "waited {WAIT:?} for {condition}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
