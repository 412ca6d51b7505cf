//! The HTTP shell: accept loop, routing, CORS, limits, and the glue between the pure ingestion
//! pipeline ([`crate::ingest`]), the sessioniser, and the writer thread.
//!
//! Architecture Invariant: the client IP and user agent are used here only to compute the visitor
//! key, rate-limit key and parsed client facts; they are never logged, stored or put in a metric.

use crate::assets::Assets;
use crate::config::Config;
use crate::enrich::{EnrichError, Enricher};
use crate::error::ApiError;
use crate::ingest::{self, Context};
use crate::session::{OpenSession, SessionConfig, Sessioniser, SiteIdx, VisitorKey};
use crate::store::{Backend, Reports, Site, Store, StoreError};
use crate::visitor::{self, day_of, Salt};
use crate::writer::{self, Job};
use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Enrich(#[from] EnrichError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("random source failed")]
    Random,
}

type Body = Full<Bytes>;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

struct SiteEntry {
    idx: SiteIdx,
    origins: Vec<String>,
}

#[derive(Default)]
struct Sites {
    by_id: HashMap<String, SiteEntry>,
    names: Vec<String>,
    loaded: Option<Instant>,
}

impl Sites {
    fn replace(&mut self, list: Vec<Site>) {
        for site in list {
            let idx = match self.by_id.get(&site.id) {
                Some(e) => e.idx,
                None => {
                    self.names.push(site.id.clone());
                    SiteIdx::try_from(self.names.len() - 1).unwrap_or(SiteIdx::MAX)
                }
            };
            self.by_id.insert(
                site.id,
                SiteEntry {
                    idx,
                    origins: site.origins,
                },
            );
        }
        self.loaded = Some(Instant::now());
    }
}

struct App {
    config: Config,
    sites: RwLock<Sites>,
    sessions: Mutex<Sessioniser>,
    enricher: Enricher,
    salts: RwLock<BTreeMap<i64, Salt>>,
    control: Mutex<Box<dyn Store>>,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    assets: Assets,
    demo: Assets,
    dashboard: Assets,
    reports: Arc<ReportConns>,
}

/// Read-only store connections for report queries, reused between requests. Reports run on
/// tokio's blocking pool with these, never on the async workers nor on the writer's connection,
/// so a slow report cannot hold up ingestion (SQLite WAL readers do not block the writer;
/// ClickHouse reads never block inserts).
struct ReportConns {
    backend: Backend,
    dir: PathBuf,
    idle: Mutex<Vec<Box<dyn Reports>>>,
}

impl ReportConns {
    /// Connections kept open between requests; more are opened under load and then closed.
    const KEEP: usize = 4;

    fn run<T>(&self, f: impl FnOnce(&mut dyn Reports) -> T) -> Result<T, StoreError> {
        let idle = lock(&self.idle).pop();
        let mut conn = match idle {
            Some(c) => c,
            None => self.backend.reports(&self.dir)?,
        };
        let out = f(conn.as_mut());
        let mut idle = lock(&self.idle);
        if idle.len() < Self::KEEP {
            idle.push(conn);
        }
        Ok(out)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A new session id: 32 random bits under the creation second (like UUIDv7), so ids are
/// unpredictable and never derived from the visitor, yet ordered by time, which keeps the
/// store's session upserts on a few hot b-tree pages instead of random ones.
fn new_session_id() -> u64 {
    let secs = u64::try_from(now_ms() / 1000).unwrap_or(0) & 0x7fff_ffff;
    // ring's SystemRandom reads the OS source; a failure here means the OS is broken.
    let random = visitor::random_bytes::<4>().map_or(0, u32::from_ne_bytes);
    (secs << 32) | u64::from(random)
}

impl App {
    /// The salt of a day, from memory or the store (creating it).
    fn salt(&self, day: i64) -> Result<Salt, ServeError> {
        if let Some(s) = read(&self.salts).get(&day) {
            return Ok(*s);
        }
        let candidate = visitor::random_bytes::<32>().map_err(|_| ServeError::Random)?;
        let salt = lock(&self.control).salt(day, candidate)?;
        write(&self.salts).insert(day, salt);
        Ok(salt)
    }

    /// Keeps today's and yesterday's salts, destroys older ones everywhere.
    fn rotate_salts(&self, now: i64) -> Result<(), ServeError> {
        let today = day_of(now);
        self.salt(today)?;
        self.salt(today - 1)?;
        let n = lock(&self.control).forget_salts_before(today - 1)?;
        write(&self.salts).retain(|d, _| *d >= today - 1);
        if n > 0 {
            tracing::info!(deleted = n, "destroyed old salts");
        }
        Ok(())
    }

    fn site(&self, id: &str) -> Result<(SiteIdx, Vec<String>), ApiError> {
        if let Some(e) = read(&self.sites).by_id.get(id) {
            return Ok((e.idx, e.origins.clone()));
        }
        // A site added with the CLI while we run: reload, at most every two seconds.
        let stale = read(&self.sites)
            .loaded
            .is_none_or(|t| t.elapsed() > Duration::from_secs(2));
        if stale {
            if let Ok(list) = lock(&self.control).sites() {
                write(&self.sites).replace(list);
            }
        }
        read(&self.sites)
            .by_id
            .get(id)
            .map(|e| (e.idx, e.origins.clone()))
            .ok_or(ApiError::UnknownSite)
    }

    fn origin_allowed_anywhere(&self, origin: &str) -> bool {
        read(&self.sites)
            .by_id
            .values()
            .any(|e| e.origins.iter().any(|o| o == origin))
    }
}

/// Runs the collector on `listener` until `shutdown` completes, then finishes in-flight requests
/// and commits before returning.
///
/// # Errors
/// The store cannot be opened, or the GeoIP database cannot be read.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let metrics = crate::metrics::handle();
    let mut control = config.store.open(&config.data_dir)?;
    let write_store = config.store.open(&config.data_dir)?;
    let enricher = Enricher::new(config.geoip.as_deref())?;
    let assets = Assets::load(config.sdk_dir.as_deref());
    let demo = Assets::load(config.demo_dir.as_deref());
    let dashboard = Assets::load(config.dashboard_dir.as_deref());
    if config.demo_dir.is_some() {
        // The demo shop is served from this very origin; register it for that origin.
        let port = listener.local_addr()?.port();
        control.put_site(&Site {
            id: DEMO_SITE.into(),
            origins: vec![
                format!("http://127.0.0.1:{port}"),
                format!("http://localhost:{port}"),
            ],
        })?;
    }

    let mut sites = Sites::default();
    sites.replace(control.sites()?);
    let session_cfg = SessionConfig {
        timeout_ms: i64::try_from(config.session_timeout.as_millis()).unwrap_or(i64::MAX),
        max_open: config.max_open_sessions,
        ..SessionConfig::default()
    };
    let mut sessions = Sessioniser::new(session_cfg);
    let since = now_ms() - session_cfg.timeout_ms;
    let resumed: Vec<OpenSession> = control
        .open_sessions(since)?
        .into_iter()
        .filter_map(|s| {
            let idx = sites.by_id.get(&s.site)?.idx;
            Some(OpenSession {
                site: idx,
                visitor: s.visitor,
                id: s.id,
                start: s.start,
                last: s.last,
                campaign: s.campaign_fp,
            })
        })
        .collect();
    tracing::info!(sessions = resumed.len(), "resumed open sessions");
    sessions.restore(resumed);

    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    let writer_thread = writer::spawn(write_store, rx, config.max_group_commit.max(1))?;
    let (stop_maintenance, maintenance_thread) = writer::spawn_maintenance(
        config.store.open(&config.data_dir)?,
        Duration::from_millis(500),
    )?;
    let rate = NonZeroU32::new(config.rate_limit_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = rate.saturating_mul(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN));
    let reports = Arc::new(ReportConns {
        backend: config.store.clone(),
        dir: config.data_dir.clone(),
        idle: Mutex::new(Vec::new()),
    });
    let app = Arc::new(App {
        reports,
        limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        config,
        sites: RwLock::new(sites),
        sessions: Mutex::new(sessions),
        enricher,
        salts: RwLock::new(BTreeMap::new()),
        control: Mutex::new(control),
        writer: Mutex::new(Some(tx)),
        metrics,
        assets,
        demo,
        dashboard,
    });
    app.rotate_salts(now_ms())?;

    let housekeeping = tokio::spawn(housekeeping(app.clone()));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    tokio::pin!(shutdown);
    tracing::info!(addr = %listener.local_addr()?, "listening");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let app = app.clone();
                let svc = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, std::convert::Infallible>(dispatch(&app, req, peer).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within 30 s");
    }
    housekeeping.abort();
    // Closing the queue lets the writer commit what is left and stop.
    lock(&app.writer).take();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = writer_thread.join();
        drop(stop_maintenance);
        let _ = maintenance_thread.join();
    })
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// Salt rotation, session expiry and the open-sessions gauge.
async fn housekeeping(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let now = now_ms();
        if let Err(e) = app.rotate_salts(now) {
            tracing::error!(error = %e, "salt rotation failed");
        }
        let open = {
            let mut s = lock(&app.sessions);
            // Sessions are written through on every batch, so expiring only frees memory.
            let _ = s.expire(now);
            let _ = s.take_evicted();
            s.open_count()
        };
        metrics::gauge!("waymark_open_sessions").set(open as f64);
        app.limiter.retain_recent();
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json(e.status(), &e.body());
    if let Some(s) = e.retry_after() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    if *e == ApiError::Unauthorized {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

async fn route(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let result = match (&method, path.as_str()) {
        (&Method::POST, "/v1/batch") => batch(app, req, peer, origin.as_deref()).await,
        (&Method::OPTIONS, "/v1/batch") => Ok(preflight(app, origin.as_deref())),
        (_, "/v1/batch") => Err(ApiError::MethodNotAllowed),
        (&Method::GET, "/healthz") => {
            Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
        }
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(app.metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok(r)
        }
        (&Method::GET, p) if p.starts_with("/api/") => report_api(app, &req).await,
        (_, p) if p.starts_with("/api/") => Err(ApiError::MethodNotAllowed),
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/sdk/") => {
            app.assets.get(p.trim_start_matches("/sdk/"), req.headers())
        }
        (&Method::GET | &Method::HEAD, "/dashboard") if !app.dashboard.is_empty() => {
            Ok(redirect(req.uri(), "/dashboard/"))
        }
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/dashboard/") => app
            .dashboard
            .dashboard(p.trim_start_matches("/dashboard"), req.headers()),
        // Without the demo shop, the dashboard is the home page.
        (&Method::GET | &Method::HEAD, p) if app.config.demo_dir.is_none() => {
            app.dashboard.dashboard(p, req.headers())
        }
        (&Method::GET | &Method::HEAD, p) => demo_page(&app.demo, p, req.headers()),
        _ => Err(ApiError::NotFound),
    };
    let mut response = result.unwrap_or_else(|e| error_response(&e));
    if path == "/v1/batch" {
        cors(app, &mut response, origin.as_deref());
        metrics::counter!("waymark_requests_total", "status" => response.status().as_str().to_string())
            .increment(1);
    }
    response
}

/// On a store shared by several collectors: when this collector has no session in memory for
/// the visitor (by today's or yesterday's key), resumes the visitor's open session from the
/// store, if there is one, before the batch is sessionised.
///
/// Why this is enough: the load balancer hashes the client address, so a visitor's batches go
/// to one collector at a time, and that collector's memory is the truth about the visitor's open
/// session. A visitor only turns up unknown here when it is new, when its session expired, when
/// this collector restarted (its open sessions were resumed at start, so only a session opened
/// elsewhere since is missing), or when the collector that served it stopped and the balancer
/// moved it here: then the store holds every batch that collector acknowledged, and the merged
/// session deltas are the session's state (first and last event, campaign). The only time two
/// collectors write the same session concurrently is the failover window itself (a batch the
/// old collector is still committing while the next one arrives here), which can split that one
/// session in two, never lose or double-count an event. Known visitors (the hot path) and a
/// store owned by one collector (SQLite) never come here. The lookup is one primary-key range
/// read per new visitor, on the blocking pool with a report connection, so it holds up neither
/// the async workers nor the writer thread.
async fn resume_from_store(
    app: &App,
    site: SiteIdx,
    site_id: &str,
    keys: [VisitorKey; 2],
    now: i64,
) -> Result<(), ApiError> {
    if lock(&app.sessions).knows(site, &keys) {
        return Ok(());
    }
    let timeout = i64::try_from(app.config.session_timeout.as_millis()).unwrap_or(i64::MAX);
    let since = now.saturating_sub(timeout);
    let conns = app.reports.clone();
    let site_name = site_id.to_string();
    let found = tokio::task::spawn_blocking(move || {
        conns.run(|r| r.open_session_of(&site_name, &keys, since))
    })
    .await
    .map_err(|_| ApiError::StoreUnavailable)?
    .and_then(|r| r)
    .map_err(|e| {
        tracing::warn!(error = %e, "open session lookup failed");
        ApiError::StoreUnavailable
    })?;
    if let Some(s) = found {
        metrics::counter!("waymark_sessions_resumed_total").increment(1);
        // Another batch of the visitor may have resumed it meanwhile: restore merges by id.
        lock(&app.sessions).restore([OpenSession {
            site,
            visitor: s.visitor,
            id: s.id,
            start: s.start,
            last: s.last,
            campaign: s.campaign_fp,
        }]);
    }
    Ok(())
}

/// `GET /api/v1/sites/{site}/{report}`: a report as JSON (API.md), for a valid bearer token.
async fn report_api(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let rest = req
        .uri()
        .path()
        .strip_prefix("/api/v1/sites/")
        .ok_or(ApiError::NotFound)?;
    let (site, report) = rest
        .split_once('/')
        .filter(|(s, r)| !s.is_empty() && !r.is_empty() && !r.contains('/'))
        .ok_or(ApiError::NotFound)?;
    let (site, report) = (site.to_string(), report.to_string());
    let hash = bearer_hash(req.headers())?;
    let params = query_pairs(req.uri());
    let conns = app.reports.clone();
    let now = now_ms();
    let answer = tokio::task::spawn_blocking(move || {
        conns.run(|r| {
            if !r
                .token_valid(hash)
                .map_err(crate::report::ReportError::from)?
            {
                return Err(ApiError::Unauthorized);
            }
            crate::report::answer(r, &site, &report, &params, now).map_err(ApiError::from)
        })
    })
    .await
    .map_err(|_| ApiError::StoreUnavailable)?
    .map_err(|e| ApiError::from(crate::report::ReportError::from(e)))??;
    let mut r = json(StatusCode::OK, &answer);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// A streamed response body: chunks from a channel that a blocking task fills. An `Err` ends
/// the response abnormally, so a client cannot mistake a failed export for a complete one.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(hyper::body::Frame::data)))
    }
}

type AnyBody = http_body_util::Either<Body, ChannelBody>;

/// Streamed routes first (`GET /api/v1/sites/{site}/export`), everything else through `route`.
async fn dispatch(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<AnyBody> {
    let path = req.uri().path();
    if req.method() == Method::GET
        && path.starts_with("/api/v1/sites/")
        && path.ends_with("/export")
    {
        return match export_api(app, &req).await {
            Ok(r) => r.map(http_body_util::Either::Right),
            Err(e) => error_response(&e).map(http_body_util::Either::Left),
        };
    }
    route(app, req, peer)
        .await
        .map(http_body_util::Either::Left)
}

/// `GET /api/v1/sites/{site}/export?table=…&format=…`: rows streamed as they are read, never
/// held whole. The token, site and parameters are checked before the 200 is sent; the rows
/// then flow from a blocking task through a small channel, so a slow client slows the query
/// instead of filling memory, and a client that leaves stops it.
async fn export_api(app: &App, req: &Request<Incoming>) -> Result<Response<ChannelBody>, ApiError> {
    let site = req
        .uri()
        .path()
        .strip_prefix("/api/v1/sites/")
        .and_then(|r| r.strip_suffix("/export"))
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .ok_or(ApiError::NotFound)?
        .to_string();
    let hash = bearer_hash(req.headers())?;
    let params = query_pairs(req.uri());
    let conns = app.reports.clone();
    let now = now_ms();
    let (ready_tx, ready_rx) =
        oneshot::channel::<Result<(crate::report::Format, crate::report::Table), ApiError>>();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let name = site.clone();
    tokio::task::spawn_blocking(move || {
        let mut ready = Some(ready_tx);
        let outcome = conns.run(|r| -> Result<(), ApiError> {
            if !r
                .token_valid(hash)
                .map_err(crate::report::ReportError::from)?
            {
                return Err(ApiError::Unauthorized);
            }
            let plan = crate::report::export_plan(r, &site, &params, now)?;
            if let Some(t) = ready.take() {
                if t.send(Ok((plan.format, plan.table))).is_err() {
                    return Ok(());
                }
            }
            crate::report::export(r, &plan, &mut |chunk| {
                tx.blocking_send(Ok(Bytes::copy_from_slice(chunk))).is_ok()
            })?;
            Ok(())
        });
        let err = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(e) => ApiError::from(crate::report::ReportError::from(e)),
        };
        match ready.take() {
            Some(t) => {
                let _ = t.send(Err(err));
            }
            None => {
                tracing::error!(error = %err, "export failed mid-stream");
                let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
            }
        }
    });
    let (format, table) = ready_rx.await.map_err(|_| ApiError::StoreUnavailable)??;
    let mut r = Response::new(ChannelBody { rx });
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{name}-{}.{}\"",
        table.as_str(),
        format.extension()
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// How long a beacon may wait for room in a full write queue (see `batch`).
const BEACON_WAIT: Duration = Duration::from_secs(30);

/// The site id `--demo` registers.
pub const DEMO_SITE: &str = "demo-shop";

/// A demo-shop page: `/` and `/dir/` are `index.html`; any `/app/…` path is the single-page
/// app's `app/index.html` (it routes on the client).
fn demo_page(demo: &Assets, path: &str, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let mut name = path.trim_start_matches('/').to_string();
    if name.is_empty() || name.ends_with('/') {
        name.push_str("index.html");
    }
    if !demo.contains(&name) && demo.contains(&format!("{name}/index.html")) {
        name.push_str("/index.html");
    }
    if !demo.contains(&name) && (name == "app" || name.starts_with("app/")) {
        name = "app/index.html".into();
    }
    demo.get(&name, headers)
}

/// A permanent redirect to `to`, keeping the query string.
fn redirect(uri: &hyper::Uri, to: &str) -> Response<Body> {
    let location = match uri.query() {
        Some(q) => format!("{to}?{q}"),
        None => to.to_string(),
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// CORS headers, only for registered origins; never credentials.
fn cors(app: &App, r: &mut Response<Body>, origin: Option<&str>) {
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(o) = origin.filter(|o| app.origin_allowed_anywhere(o)) {
        if let Ok(v) = HeaderValue::from_str(o) {
            r.headers_mut()
                .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            // Not CORS-safelisted: without this the SDK cannot honour Retry-After.
            r.headers_mut().insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Retry-After"),
            );
        }
    }
}

fn preflight(app: &App, origin: Option<&str>) -> Response<Body> {
    if !origin.is_some_and(|o| app.origin_allowed_anywhere(o)) {
        return error_response(&ApiError::OriginNotAllowed);
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

/// The SHA-256 hash of the request's bearer token.
///
/// Tokens are looked up by their hash, never compared as secrets: what an attacker can time is
/// an index search for a hash of their own input, which tells nothing about the stored hashes
/// (finding an input with a chosen hash prefix is a preimage attack). That is why no
/// constant-time comparison is needed.
fn bearer_hash(headers: &HeaderMap) -> Result<[u8; 32], ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .map(crate::auth::hash_token)
        .ok_or(ApiError::Unauthorized)
}

/// The query string's `name=value` pairs, decoded, in order (filters repeat).
fn query_pairs(uri: &hyper::Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn header_values<'a>(h: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    h.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

async fn batch(
    app: &App,
    req: Request<Incoming>,
    peer: SocketAddr,
    origin: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let received = now_ms();
    let headers = req.headers();
    let ip = visitor::client_ip(
        peer.ip(),
        header_values(headers, "forwarded"),
        header_values(headers, "x-forwarded-for"),
        &app.config.trusted_proxies,
    );
    if let Err(not_until) = app.limiter.check_key(&ip) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return Err(ApiError::RateLimited {
            retry_after_s: wait.as_secs().max(1),
        });
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && mime != "text/plain" {
        return Err(ApiError::UnsupportedMediaType);
    }
    // navigator.sendBeacon sends text/plain (no preflight); fetch from the SDK sends JSON.
    let beacon = mime == "text/plain";
    let max = app.config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(ApiError::TooLarge(max));
    }
    // Only the parsed facts leave this function; the raw string is dropped with the request.
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::TooLarge(max)
            } else {
                ApiError::bad("body", "request body could not be read")
            }
        })?
        .to_bytes();
    let decoded = ingest::decode(&body)?;
    let (site_idx, origins) = app.site(&decoded.site)?;
    let site_id = decoded.site.clone();
    if let Some(o) = origin {
        if !origins.iter().any(|allowed| allowed == o) {
            return Err(ApiError::OriginNotAllowed);
        }
    }
    let client = app.enricher.client(&user_agent);
    let country = app.enricher.country(ip);
    let today = day_of(received);
    // Only today's and yesterday's salts exist; older days have no key, on purpose.
    let mut keys = [(today, 0), (today - 1, 0)];
    for (day, key) in &mut keys {
        let salt = app.salt(*day).map_err(|_| ApiError::StoreUnavailable)?;
        *key = visitor::visitor_key(&salt, &decoded.site, ip, &user_agent);
    }
    drop(user_agent);
    if app.config.store.shared() {
        resume_from_store(
            app,
            site_idx,
            &decoded.site,
            [keys[0].1, keys[1].1],
            received,
        )
        .await?;
    }
    let outcome = {
        let key_for_day = |day: i64| keys.iter().find(|(d, _)| *d == day).map(|(_, k)| *k);
        let ctx = Context {
            site: site_idx,
            received,
            client: &client,
            country,
            key_for_day: &key_for_day,
        };
        let mut sessions = lock(&app.sessions);
        ingest::build(decoded, &ctx, &mut sessions, &mut new_session_id)
    };
    let rejected = outcome.rejected.len();
    let bot = client.bot.is_some();
    let (done_tx, done_rx) = oneshot::channel();
    let sender = lock(&app.writer)
        .clone()
        .ok_or(ApiError::Overloaded { retry_after_s: 5 })?;
    let job = Job {
        write: outcome.write,
        done: done_tx,
    };
    let queued = if beacon {
        // A beacon's page is gone: nobody can read a 503 or retry. So a beacon waits for room
        // in the queue (bounded: memory is capped by open connections × the body limit)
        // instead of being refused; only a store that stays stuck fails it.
        match sender.try_send(job) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(job)) => {
                metrics::counter!("waymark_beacon_waits_total").increment(1);
                matches!(
                    tokio::time::timeout(BEACON_WAIT, sender.send(job)).await,
                    Ok(Ok(()))
                )
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    } else {
        sender.try_send(job).is_ok()
    };
    drop(sender);
    if !queued {
        metrics::counter!("waymark_overload_total").increment(1);
        return Err(ApiError::Overloaded { retry_after_s: 2 });
    }
    let duplicate = match done_rx.await {
        Ok(Ok(dup)) => dup,
        _ => return Err(ApiError::StoreUnavailable),
    };
    if !duplicate {
        let accepted_label = if bot { "bot" } else { "accepted" };
        metrics::counter!("waymark_events_total", "outcome" => accepted_label)
            .increment(u64::from(outcome.accepted));
        metrics::counter!("waymark_events_total", "outcome" => "rejected")
            .increment(rejected as u64);
    }
    tracing::debug!(
        site = %site_id,
        accepted = outcome.accepted,
        rejected,
        duplicate,
        bot,
        "batch stored"
    );
    let body = if duplicate {
        serde_json::json!({"accepted": 0, "rejected": [], "duplicate": true})
    } else {
        serde_json::json!({"accepted": outcome.accepted, "rejected": outcome.rejected, "duplicate": false})
    };
    Ok(json(StatusCode::ACCEPTED, &body))
}
