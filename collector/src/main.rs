//! The `waymark` binary: parses flags, builds the one `Config` (file → `WAYMARK_*` env → flags),
//! and calls into the library. Nothing else lives here.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use waymark_collector::config::{Config, FileConfig};
use waymark_collector::report::ReportError;
use waymark_collector::store::sqlite::SqliteStore;
use waymark_collector::store::{Backend, Reports, Site};

/// mimalloc instead of glibc's malloc: the request path allocates and frees small buffers on
/// every tokio worker, and glibc's arenas showed up as ~13 % of the collector's CPU (with lock
/// waits) under `bench/ingest.sh`; mimalloc gave +10–15 % requests/s (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Waymark: privacy-first, cookieless customer-journey analytics.
#[derive(Parser)]
#[command(name = "waymark", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector.
    Serve(ServeArgs),
    /// Manage the sites allowed to send events.
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Manage API tokens for the report API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print a report from the store: the same answers as the report API.
    Report(ReportArgs),
    /// Stream raw events or sessions to stdout as NDJSON or CSV (the API's export).
    Export(ExportArgs),
}

#[derive(Args)]
struct ExportArgs {
    /// Site id.
    #[arg(long)]
    site: String,
    /// events or sessions.
    #[arg(long)]
    table: String,
    /// ndjson or csv [default: ndjson].
    #[arg(long)]
    format: Option<String>,
    /// First day, YYYY-MM-DD [default: 29 days before --to].
    #[arg(long)]
    from: Option<String>,
    /// Last day, YYYY-MM-DD, inclusive [default: today].
    #[arg(long)]
    to: Option<String>,
    /// IANA time zone the days are in [default: UTC].
    #[arg(long)]
    tz: Option<String>,
    /// key:value, e.g. source:google, device:mobile, page:/products/* (repeatable, AND).
    #[arg(long = "filter")]
    filters: Vec<String>,
    #[command(flatten)]
    common: Common,
}

/// Opens the store's read side for `report`/`export`, applying pending migrations first.
fn open_reports(common: &Common) -> anyhow::Result<Box<dyn Reports>> {
    let config = base_config(common)?;
    if config.store == Backend::Sqlite {
        anyhow::ensure!(
            SqliteStore::path_in(&config.data_dir).is_file(),
            "no Waymark store in {} (use --data-dir)",
            config.data_dir.display()
        );
    }
    // Opening the store for writing once applies any pending migration.
    drop(config.store.open(&config.data_dir)?);
    Ok(config.store.reports(&config.data_dir)?)
}

/// A report error as the CLI words it: parameters are flags here.
fn cli_error(e: ReportError, site: &str) -> anyhow::Error {
    match e {
        ReportError::BadParam {
            field: "query",
            message,
        } => anyhow::anyhow!(message),
        ReportError::BadParam { message, .. } => anyhow::anyhow!("--{message}"),
        ReportError::UnknownReport(r) => anyhow::anyhow!(
            "unknown report {r:?}; one of: {}",
            waymark_collector::report::REPORTS.join(", ")
        ),
        ReportError::UnknownSite => anyhow::anyhow!("unknown site {site:?}"),
        ReportError::Store(e) => anyhow::Error::new(e),
    }
}

fn export(args: &ExportArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut reports = open_reports(&args.common)?;
    let mut params = vec![("table".to_string(), args.table.clone())];
    for (k, v) in [
        ("format", &args.format),
        ("from", &args.from),
        ("to", &args.to),
        ("tz", &args.tz),
    ] {
        if let Some(v) = v {
            params.push((k.to_string(), v.clone()));
        }
    }
    params.extend(
        args.filters
            .iter()
            .map(|f| ("filter".to_string(), f.clone())),
    );
    let now = waymark_collector::server::now_ms();
    let plan = waymark_collector::report::export_plan(reports.as_mut(), &args.site, &params, now)
        .map_err(|e| cli_error(e, &args.site))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed: Option<std::io::Error> = None;
    waymark_collector::report::export(reports.as_mut(), &plan, &mut |chunk| match out
        .write_all(chunk)
    {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    })
    .map_err(|e| cli_error(e, &args.site))?;
    match failed {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(e.into()),
        None => match out.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(()),
        },
    }
}

#[derive(Args)]
struct ReportArgs {
    /// overview, timeseries, pages, sources, devices, browsers, os, countries, funnel, paths,
    /// scroll, cart, attribution, realtime or sessions.
    report: String,
    /// Site id.
    #[arg(long)]
    site: String,
    /// First day, YYYY-MM-DD [default: 29 days before --to].
    #[arg(long)]
    from: Option<String>,
    /// Last day, YYYY-MM-DD, inclusive [default: today].
    #[arg(long)]
    to: Option<String>,
    /// IANA time zone the days are in [default: UTC].
    #[arg(long)]
    tz: Option<String>,
    /// key:value, e.g. source:google, device:mobile, page:/products/* (repeatable, AND).
    #[arg(long = "filter")]
    filters: Vec<String>,
    /// Funnel step: page:<glob>, cart:<action> or event:<name> (repeatable, in order).
    #[arg(long = "step")]
    steps: Vec<String>,
    /// Time series interval: hour or day [default: day].
    #[arg(long)]
    interval: Option<String>,
    /// Time series metric to show (repeatable) [default: all].
    #[arg(long = "metric")]
    metrics: Vec<String>,
    /// Page glob of the scroll report.
    #[arg(long)]
    page: Option<String>,
    /// Start page (glob) of the journey map [default: entry pages].
    #[arg(long)]
    start: Option<String>,
    /// Steps of the journey map, 2-10 [default: 4].
    #[arg(long)]
    depth: Option<String>,
    /// Attribution goal: cart:<action>, event:<name> or page:<glob>.
    #[arg(long)]
    goal: Option<String>,
    /// Attribution model: first, last or linear [default: last].
    #[arg(long)]
    model: Option<String>,
    /// Most rows to list.
    #[arg(long)]
    limit: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

impl ReportArgs {
    /// The flags as the API's query parameters, so both take the same path.
    fn params(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let one = [
            ("from", &self.from),
            ("to", &self.to),
            ("tz", &self.tz),
            ("interval", &self.interval),
            ("page", &self.page),
            ("limit", &self.limit),
            ("start", &self.start),
            ("depth", &self.depth),
            ("goal", &self.goal),
            ("model", &self.model),
        ];
        for (k, v) in one {
            if let Some(v) = v {
                p.push((k.to_string(), v.clone()));
            }
        }
        for (k, list) in [
            ("filter", &self.filters),
            ("step", &self.steps),
            ("metric", &self.metrics),
        ] {
            p.extend(list.iter().map(|v| (k.to_string(), v.clone())));
        }
        p
    }
}

fn report(args: &ReportArgs) -> anyhow::Result<()> {
    let mut reports = open_reports(&args.common)?;
    let answer = waymark_collector::report::answer(
        reports.as_mut(),
        &args.site,
        &args.report,
        &args.params(),
        waymark_collector::server::now_ms(),
    )
    .map_err(|e| cli_error(e, &args.site))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!(
            "{}",
            waymark_collector::report::render_text(&args.report, &answer)
        );
    }
    Ok(())
}

#[derive(Subcommand)]
enum SiteCommand {
    /// Register a site (or replace its origins).
    Add {
        /// Site id, 1-64 of [a-z0-9._-].
        site: String,
        /// Origin allowed to send for the site, e.g. https://shop.example (repeatable).
        #[arg(long = "origin", required = true)]
        origins: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List registered sites.
    List {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it once; only its hash is stored.
    Create {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
struct Common {
    /// TOML config file.
    #[arg(long, env = "WAYMARK_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of the embedded store.
    #[arg(long, env = "WAYMARK_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store: `sqlite` (embedded, in the data dir) or `clickhouse://host:port/database`
    /// [default: sqlite].
    #[arg(long, env = "WAYMARK_STORE")]
    store: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "WAYMARK_LISTEN")]
    listen: Option<SocketAddr>,
    /// Largest request body in bytes [default: 65536].
    #[arg(long, env = "WAYMARK_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Inactivity in seconds after which a session ends [default: 1800].
    #[arg(long, env = "WAYMARK_SESSION_TIMEOUT_SECS")]
    session_timeout_secs: Option<u64>,
    /// Most open sessions kept in memory [default: 1000000].
    #[arg(long, env = "WAYMARK_MAX_OPEN_SESSIONS")]
    max_open_sessions: Option<usize>,
    /// Proxy address whose Forwarded / X-Forwarded-For headers are trusted (repeatable).
    #[arg(
        long = "trusted-proxy",
        env = "WAYMARK_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<IpAddr>,
    /// Batches per second one client may send; bursts of ten times that [default: 20].
    #[arg(long, env = "WAYMARK_RATE_LIMIT_PER_SECOND")]
    rate_limit_per_second: Option<u32>,
    /// Batches waiting for the writer before answering 503 [default: 4096].
    #[arg(long, env = "WAYMARK_QUEUE_CAPACITY")]
    queue_capacity: Option<usize>,
    /// MaxMind-format country database (.mmdb) for the optional country field.
    #[arg(long, env = "WAYMARK_GEOIP")]
    geoip: Option<PathBuf>,
    /// Directory of the built SDK, served under /sdk/ [default: sdk/dist if present].
    #[arg(long, env = "WAYMARK_SDK_DIR")]
    sdk_dir: Option<PathBuf>,
    /// Directory of the built dashboard, served at /dashboard/ (and at / without --demo)
    /// [default: dashboard/dist if present].
    #[arg(long, env = "WAYMARK_DASHBOARD_DIR")]
    dashboard_dir: Option<PathBuf>,
    /// Also serve the demo shop (demo-site/) at / and register its site `demo-shop`.
    #[arg(long)]
    demo: bool,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "WAYMARK_LOG_JSON")]
    log_json: bool,
}

fn base_config(common: &Common) -> anyhow::Result<Config> {
    let mut config = Config::default();
    if let Some(path) = &common.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        config = FileConfig::parse(&text)
            .with_context(|| format!("in config file {}", path.display()))?
            .apply(config);
    }
    if let Some(d) = &common.data_dir {
        config.data_dir.clone_from(d);
    }
    if let Some(s) = &common.store {
        config.store = Backend::parse(s).map_err(|e| anyhow::anyhow!("--store: {e}"))?;
    }
    Ok(config)
}

fn serve_config(a: &ServeArgs) -> anyhow::Result<Config> {
    let mut c = base_config(&a.common)?;
    if let Some(v) = a.listen {
        c.listen = v;
    }
    if let Some(v) = a.max_body_bytes {
        c.max_body_bytes = v;
    }
    if let Some(v) = a.session_timeout_secs {
        c.session_timeout = Duration::from_secs(v);
    }
    if let Some(v) = a.max_open_sessions {
        c.max_open_sessions = v;
    }
    if !a.trusted_proxies.is_empty() {
        c.trusted_proxies.clone_from(&a.trusted_proxies);
    }
    if let Some(v) = a.rate_limit_per_second {
        c.rate_limit_per_second = v;
    }
    if let Some(v) = a.queue_capacity {
        c.queue_capacity = v;
    }
    if a.geoip.is_some() {
        c.geoip.clone_from(&a.geoip);
    }
    if a.sdk_dir.is_some() {
        c.sdk_dir.clone_from(&a.sdk_dir);
    }
    if a.demo {
        anyhow::ensure!(
            std::path::Path::new("demo-site").is_dir(),
            "--demo serves ./demo-site: run it from the repository root"
        );
        c.demo_dir = Some(PathBuf::from("demo-site"));
    }
    if c.sdk_dir.is_none() && std::path::Path::new("sdk/dist").is_dir() {
        c.sdk_dir = Some(PathBuf::from("sdk/dist"));
    }
    if a.dashboard_dir.is_some() {
        c.dashboard_dir.clone_from(&a.dashboard_dir);
    }
    if c.dashboard_dir.is_none() && std::path::Path::new("dashboard/dist").is_dir() {
        c.dashboard_dir = Some(PathBuf::from("dashboard/dist"));
    }
    Ok(c)
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WAYMARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_json);
            let config = serve_config(&args)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("binding {}", config.listen))?;
                waymark_collector::server::serve(config, listener, shutdown_signal()).await?;
                anyhow::Ok(())
            })?;
        }
        Command::Site {
            command:
                SiteCommand::Add {
                    site,
                    origins,
                    common,
                },
        } => {
            anyhow::ensure!(
                waymark_protocol::valid_site(&site),
                "site id must be 1-64 of [a-z0-9._-], got {site:?}"
            );
            for o in &origins {
                let u = url::Url::parse(o).with_context(|| format!("origin {o:?}"))?;
                anyhow::ensure!(
                    matches!(u.scheme(), "http" | "https") && u.origin().ascii_serialization() == *o,
                    "origin must look like https://shop.example (scheme, host, optional port; no path), got {o:?}"
                );
            }
            let config = base_config(&common)?;
            let mut store = config.store.open(&config.data_dir)?;
            store.put_site(&Site {
                id: site.clone(),
                origins: origins.clone(),
            })?;
            println!("site {site} registered for {}", origins.join(", "));
        }
        Command::Site {
            command: SiteCommand::List { common },
        } => {
            let config = base_config(&common)?;
            let mut store = config.store.open(&config.data_dir)?;
            for s in store.sites()? {
                println!("{}\t{}", s.id, s.origins.join(" "));
            }
        }
        Command::Token {
            command: TokenCommand::Create { common },
        } => {
            let config = base_config(&common)?;
            let mut store = config.store.open(&config.data_dir)?;
            let token = waymark_collector::auth::new_token()
                .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
            store.add_token(
                waymark_collector::auth::hash_token(&token),
                waymark_collector::server::now_ms(),
            )?;
            println!("{token}");
            eprintln!("Keep this token: it is shown once and only its hash is stored.");
        }
        Command::Report(args) => report(&args)?,
        Command::Export(args) => export(&args)?,
    }
    Ok(())
}
