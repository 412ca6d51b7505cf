//! The ClickHouse store: the same [`Store`] as the embedded SQLite one, for sites whose traffic
//! outgrows a single file, and its report queries in [`super::clickhouse_reports`].
//!
//! Selected with `--store clickhouse://[user[:password]@]host:port/database` (HTTP interface).
//!
//! # Client
//! The official [`clickhouse`](https://crates.io/crates/clickhouse) crate over HTTP, with
//! `RowBinary` rows (schema validation off: it needs `RowBinaryWithNamesAndTypes`, which
//! ClickHouse 18.16 lacks; every query casts its columns to the exact types the rows declare).
//! The crate is async while [`Store`] and [`super::Reports`] are synchronous (the writer thread,
//! `spawn_blocking`, the CLI), so every call runs on one small dedicated runtime and the calling
//! thread waits for it: this works whether or not the caller is inside another runtime.
//! Queries are built with escaped literals (`query_raw`): 18.16 has no server-side
//! query parameters.
//!
//! # Schema (created idempotently at open; `schema_version` records the migrations applied)
//! The SQL runs on ClickHouse 18.16 and on current releases: no window functions, DateTime64,
//! LowCardinality, TTL, Map or non-equality joins; times are Int64 milliseconds; every joined
//! subquery has an alias (current releases refuse one without). `scripts/test.sh` replays the
//! SQL the tests send to 18.16 on a current ClickHouse (chdb; see "SQL log" below).
//! - `events`: one row per stored event, `ORDER BY (site, ts)`, partitioned by month of `ts`;
//!   `seq` orders events of the same millisecond as they were written.
//! - `session_deltas`: one row per [`super::SessionDelta`], `ORDER BY (site, id)`, partitioned by month
//!   of `start_ms`. A session is the merge of its deltas, computed at query time (min start, max
//!   end, sums; entry from the earliest page view, ties to the first written; exit from the
//!   latest, ties to the last written; first written non-null currency, country and campaign
//!   fingerprint; visitor and browser/OS/device from the first written delta; revenue added in
//!   write order), which is exactly what the SQLite upsert computes row by row. Optional values
//!   are a `has_x` flag beside a plain column rather than `Nullable`, because ClickHouse's
//!   aggregate functions skip NULLs: the entry's NULL referrer must win over a later one's.
//! - `engagement`: one row per [`super::Engagement`] report, `ORDER BY (site, session_id, pv)`; a page
//!   view's scroll and engaged time are the maxima of its reports, a session's engaged time the
//!   sum of those maxima and its deepest scroll their maximum.
//! - `batches` (`ReplacingMergeTree`): the batch ids already stored.
//! - `salts` (`day`, hex `salt`, `written_ms`): a day's salt is its first written row (least
//!   `written_ms`, then salt); `salt` inserts its candidate only when the day has none and then
//!   reads that first row back, so collectors racing for a new day converge on one salt.
//! - `sites` (`ReplacingMergeTree(version)`), `tokens` (SHA-256 hashes, hex), `dropped`
//!   (`SummingMergeTree`).
//!
//! Nothing stores a raw IP address or user agent: the rows written here never carry them.
//!
//! # Atomicity and durability
//! ClickHouse has no multi-table transactions. [`Store::write`] first asks which incoming batch
//! ids exist and skips those batches, then inserts the rows of the others table by table, and
//! inserts their batch ids LAST: a failure part-way leaves the ids unrecorded, so the SDK's
//! retry is stored again — which can count the rows of that partial write twice. An INSERT over
//! HTTP is acknowledged once its part is written (no `insert_quorum`); ClickHouse 18.16 has no
//! setting to fsync parts, so a power cut can lose the last acknowledged inserts (current
//! releases can set the MergeTree setting `fsync_after_insert` on these tables).
//! Salt deletion is an `ALTER TABLE … DELETE` mutation that [`Store::forget_salts_before`]
//! waits for, so a destroyed salt cannot be read back; the rewritten parts' old files are
//! unlinked by the server after `old_parts_lifetime` (480 s by default), not overwritten.
//!
//! De-duplication is exact for a batch retried after its first write finished (the SDK's
//! retries). The same batch written by two collectors at the same instant (both checks before
//! either insert) would be stored twice: ClickHouse has no unique constraint to catch it.
//!
//! Plain HTTP only (no TLS in this build): reach a remote server through a TLS tunnel or proxy.
//!
//! # SQL log (for checking the SQL on other ClickHouse versions)
//! When the environment variable `WAYMARK_CLICKHOUSE_SQL_LOG` names a file (read once, at the
//! first statement), every statement this store and [`super::clickhouse_reports`] send is
//! appended to it before it is sent, each followed by a line that is only `;;` (the format of
//! `scripts/chdb-check.py`, which replays such a log on a current ClickHouse; `scripts/test.sh`
//! does so for the ClickHouse tests): DDL, `SELECT`s, `ALTER`s, and for inserts only the
//! statement's text (`INSERT INTO t(columns) FORMAT RowBinary`), never the rows. The log so holds
//! no event data and never a raw IP address or user agent (the store never receives those), but
//! it does hold the literals of queries: site ids, batch ids, token hashes, report filters and
//! times. A debugging and test aid, not for production. Processes (and threads) may share one
//! file: each statement is one `O_APPEND` write. When unset, the cost is one load per statement.
//!
//! # Performance
//! Reports find the sessions that started in a range through the `start_ms` partitions of
//! `session_deltas`, then merge all deltas of those ids (primary key); events of those sessions
//! lie in `[lo, hi + 25 h)` of `events (site, ts)`.

use super::{BatchWrite, Site, Store, StoreError, StoredSession};
use crate::visitor::Salt;
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The tables, in migration order: each entry is one schema version, all statements idempotent.
const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE IF NOT EXISTS sites (id String, origins String, version Int64)
     ENGINE = ReplacingMergeTree(version) ORDER BY id",
    "CREATE TABLE IF NOT EXISTS tokens (hash String, created_ms Int64)
     ENGINE = ReplacingMergeTree ORDER BY hash",
    "CREATE TABLE IF NOT EXISTS salts (day Int64, salt String, written_ms Int64)
     ENGINE = MergeTree ORDER BY day",
    "CREATE TABLE IF NOT EXISTS batches (site String, id String, received_ms Int64)
     ENGINE = ReplacingMergeTree ORDER BY (site, id)",
    "CREATE TABLE IF NOT EXISTS events (
        site String, session_id UInt64, visitor UInt64, ts Int64, seq Int64, type String,
        pv String, host String, path String, title Nullable(String), scroll Nullable(UInt8),
        engaged_ms Nullable(Int64), action Nullable(String), order_id Nullable(String),
        revenue Nullable(Float64), currency Nullable(String), items Nullable(String),
        name Nullable(String), props Nullable(String))
     ENGINE = MergeTree PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000))) ORDER BY (site, ts)",
    "CREATE TABLE IF NOT EXISTS session_deltas (
        site String, id UInt64, seq Int64, visitor UInt64, start_ms Int64, end_ms Int64,
        has_entry UInt8, entry_ms Int64, entry_path String, has_referrer UInt8,
        referrer_host String, source String, medium String, has_campaign UInt8,
        campaign String, has_fp UInt8, campaign_fp UInt64, has_exit UInt8, exit_ms Int64,
        exit_path String, pageviews UInt32, events UInt32, cart_adds UInt32, checkout UInt8,
        purchase UInt8, revenue Float64, has_currency UInt8, currency String, browser String,
        os String, device String, has_country UInt8, country String)
     ENGINE = MergeTree PARTITION BY toYYYYMM(toDateTime(intDiv(start_ms, 1000)))
     ORDER BY (site, id)",
    "CREATE TABLE IF NOT EXISTS engagement (
        site String, session_id UInt64, pv String, path String, ts Int64, scroll UInt8,
        engaged_ms Int64)
     ENGINE = MergeTree PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000)))
     ORDER BY (site, session_id, pv)",
    "CREATE TABLE IF NOT EXISTS dropped (
        site String, day Int64, reason String, detail String, events UInt64)
     ENGINE = SummingMergeTree(events) ORDER BY (site, day, reason, detail)",
]];

/// An SQL string literal: ClickHouse escapes with backslashes.
pub(crate) fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("clickhouse: {e}"))
}

/// The runtime every ClickHouse call runs on (one worker keeps the connection pool alive).
fn runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("waymark-clickhouse")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| StoreError::Other(format!("clickhouse runtime: {e}")))
}

/// The longest one call (a query, an insert) may take before it fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `f` on the ClickHouse runtime and waits for it, from any thread (inside a runtime or
/// not).
pub(crate) fn run<T: Send + 'static>(
    f: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let out = tokio::time::timeout(CALL_TIMEOUT, f)
            .await
            .unwrap_or_else(|_| Err(err("no answer within 5 minutes")));
        let _ = tx.send(out);
    });
    rx.recv()
        .map_err(|_| StoreError::Other("clickhouse: the query task died".into()))?
}

/// A strictly increasing number per process, near the wall clock in µs: orders the rows one
/// collector writes (deltas, events of the same millisecond) as SQLite's row order does.
pub(crate) fn next_seq() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// Where a ClickHouse store is: parsed from `clickhouse://[user[:password]@]host:port/db`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `http://host:port`.
    pub http: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Target {
    /// Parses a `clickhouse://` URL (the database defaults to `waymark`).
    ///
    /// # Errors
    /// Not such a URL, or a database name other than `[A-Za-z0-9_]+`.
    pub fn parse(s: &str) -> Result<Target, String> {
        let u = url::Url::parse(s).map_err(|e| format!("{s:?}: {e}"))?;
        if u.scheme() != "clickhouse" {
            return Err(format!("{s:?}: expected clickhouse://host:port/database"));
        }
        let host = u
            .host_str()
            .ok_or_else(|| format!("{s:?}: no host"))?
            .to_string();
        let port = u.port().unwrap_or(8123);
        let database = match u.path().trim_matches('/') {
            "" => "waymark".to_string(),
            d => d.to_string(),
        };
        if !database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!("{s:?}: database names are [A-Za-z0-9_]+"));
        }
        let decode = |v: &str| -> Option<String> {
            let b = v.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    let h = v.get(i + 1..i + 3)?;
                    out.push(u8::from_str_radix(h, 16).ok()?);
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).ok()
        };
        Ok(Target {
            http: format!("http://{host}:{port}"),
            database,
            user: (!u.username().is_empty())
                .then(|| decode(u.username()))
                .flatten(),
            password: u.password().and_then(decode),
        })
    }

    /// The URL again, without credentials: `clickhouse://host:port/database`.
    pub fn url(&self) -> String {
        format!(
            "clickhouse://{}/{}",
            self.http.trim_start_matches("http://"),
            self.database
        )
    }

    /// A client of the server, on the database when `in_db`.
    pub(crate) fn client(&self, in_db: bool) -> clickhouse::Client {
        let mut c = clickhouse::Client::default()
            .with_url(&self.http)
            .with_validation(false);
        if in_db {
            c = c.with_database(&self.database);
        }
        if let Some(u) = &self.user {
            c = c.with_user(u);
        }
        if let Some(p) = &self.password {
            c = c.with_password(p);
        }
        c
    }
}

/// The SQL log named by `WAYMARK_CLICKHOUSE_SQL_LOG`, opened at the first call (see the module
/// documentation); `None` when unset or when it cannot be opened (said once on stderr).
fn sql_log() -> Option<&'static std::sync::Mutex<std::fs::File>> {
    static LOG: OnceLock<Option<std::sync::Mutex<std::fs::File>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let path = std::env::var_os("WAYMARK_CLICKHOUSE_SQL_LOG").filter(|p| !p.is_empty())?;
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(f) => Some(std::sync::Mutex::new(f)),
            Err(e) => {
                eprintln!(
                    "WAYMARK_CLICKHOUSE_SQL_LOG={}: {e}; not logging SQL",
                    path.to_string_lossy()
                );
                None
            }
        }
    })
    .as_ref()
}

/// Appends a statement to the SQL log, when there is one (statement text only, never row data).
pub(crate) fn log_sql(sql: &str) {
    use std::io::Write;
    let Some(log) = sql_log() else { return };
    let mut entry = String::with_capacity(sql.len() + 4);
    entry.push_str(sql.trim());
    entry.push_str("\n;;\n");
    // One write per statement: O_APPEND keeps the statements of concurrent processes whole.
    let mut f = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Err(e) = f.write_all(entry.as_bytes()) {
        eprintln!("WAYMARK_CLICKHOUSE_SQL_LOG: {e}");
    }
}

/// Runs one statement.
pub(crate) fn execute(c: &clickhouse::Client, sql: String) -> Result<(), StoreError> {
    log_sql(&sql);
    let c = c.clone();
    run(async move { c.query_raw(&sql).execute().await.map_err(err) })
}

/// Runs a query and collects its rows.
pub(crate) fn fetch<T>(c: &clickhouse::Client, sql: String) -> Result<Vec<T>, StoreError>
where
    T: clickhouse::RowOwned + clickhouse::RowRead + Send + 'static,
{
    log_sql(&sql);
    let c = c.clone();
    run(async move {
        c.query_raw(&sql)
            .fetch_all::<T>()
            .await
            .map_err(|e| err(format!("{e} in {sql}")))
    })
}

/// Inserts rows into a table (nothing when there are none).
fn insert<T>(c: &clickhouse::Client, table: &'static str, rows: Vec<T>) -> Result<(), StoreError>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite + Send + Sync,
{
    if rows.is_empty() {
        return Ok(());
    }
    if sql_log().is_some() {
        // The statement the crate sends (`Insert::new` in clickhouse 0.15), without the rows;
        // the column names are the derived `Row`'s (plain identifiers, so quoting is trivial).
        let columns: Vec<String> = T::COLUMN_NAMES.iter().map(|n| format!("`{n}`")).collect();
        log_sql(&format!(
            "INSERT INTO {table}({}) FORMAT RowBinary",
            columns.join(",")
        ));
    }
    let c = c.clone();
    run(async move {
        let mut ins = c.insert::<T>(table).await.map_err(err)?;
        for r in &rows {
            ins.write(r).await.map_err(err)?;
        }
        ins.end().await.map_err(err)
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    s.len()
        .is_multiple_of(2)
        .then(|| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

#[derive(Row, Serialize, Deserialize)]
struct EventIns {
    site: String,
    session_id: u64,
    visitor: u64,
    ts: i64,
    seq: i64,
    #[serde(rename = "type")]
    kind: String,
    pv: String,
    host: String,
    path: String,
    title: Option<String>,
    scroll: Option<u8>,
    engaged_ms: Option<i64>,
    action: Option<String>,
    order_id: Option<String>,
    revenue: Option<f64>,
    currency: Option<String>,
    items: Option<String>,
    name: Option<String>,
    props: Option<String>,
}

#[derive(Row, Serialize, Deserialize)]
struct DeltaIns {
    site: String,
    id: u64,
    seq: i64,
    visitor: u64,
    start_ms: i64,
    end_ms: i64,
    has_entry: u8,
    entry_ms: i64,
    entry_path: String,
    has_referrer: u8,
    referrer_host: String,
    source: String,
    medium: String,
    has_campaign: u8,
    campaign: String,
    has_fp: u8,
    campaign_fp: u64,
    has_exit: u8,
    exit_ms: i64,
    exit_path: String,
    pageviews: u32,
    events: u32,
    cart_adds: u32,
    checkout: u8,
    purchase: u8,
    revenue: f64,
    has_currency: u8,
    currency: String,
    browser: String,
    os: String,
    device: String,
    has_country: u8,
    country: String,
}

#[derive(Row, Serialize, Deserialize)]
struct EngagementIns {
    site: String,
    session_id: u64,
    pv: String,
    path: String,
    ts: i64,
    scroll: u8,
    engaged_ms: i64,
}

#[derive(Row, Serialize, Deserialize)]
struct DroppedIns {
    site: String,
    day: i64,
    reason: String,
    detail: String,
    events: u64,
}

#[derive(Row, Serialize, Deserialize)]
struct BatchIns {
    site: String,
    id: String,
    received_ms: i64,
}

#[derive(Row, Serialize, Deserialize)]
struct SaltIns {
    day: i64,
    salt: String,
    written_ms: i64,
}

#[derive(Row, Serialize, Deserialize)]
struct SiteIns {
    id: String,
    origins: String,
    version: i64,
}

#[derive(Row, Serialize, Deserialize)]
struct TokenIns {
    hash: String,
    created_ms: i64,
}

#[derive(Row, Serialize, Deserialize)]
struct VersionIns {
    version: u32,
    applied_ms: i64,
}

/// The ClickHouse store (see the module documentation).
pub struct ClickHouseStore {
    db: clickhouse::Client,
    database: String,
}

impl ClickHouseStore {
    /// Connects, creating the database and tables if needed and applying pending migrations.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the schema.
    pub fn open(target: &Target) -> Result<ClickHouseStore, StoreError> {
        let server = target.client(false);
        execute(
            &server,
            format!("CREATE DATABASE IF NOT EXISTS {}", target.database),
        )?;
        let db = target.client(true);
        execute(
            &db,
            "CREATE TABLE IF NOT EXISTS schema_version (version UInt32, applied_ms Int64)
             ENGINE = MergeTree ORDER BY version"
                .into(),
        )?;
        let done: Vec<u32> = fetch(
            &db,
            "SELECT toUInt32(max(version)) FROM schema_version".into(),
        )?;
        let done = done.first().copied().unwrap_or(0);
        for (n, statements) in (1u32..).zip(MIGRATIONS).skip(done as usize) {
            for sql in *statements {
                execute(&db, (*sql).to_string())?;
            }
            insert(
                &db,
                "schema_version",
                vec![VersionIns {
                    version: n,
                    applied_ms: crate::server::now_ms(),
                }],
            )?;
        }
        Ok(ClickHouseStore {
            db,
            database: target.database.clone(),
        })
    }

    /// The schema version applied (the number of migrations).
    ///
    /// # Errors
    /// The store could not be read.
    pub fn schema_version(&mut self) -> Result<u32, StoreError> {
        let v: Vec<u32> = fetch(
            &self.db,
            "SELECT toUInt32(max(version)) FROM schema_version".into(),
        )?;
        Ok(v.first().copied().unwrap_or(0))
    }

    /// How many schema versions this build knows.
    pub fn migrations() -> usize {
        MIGRATIONS.len()
    }

    /// Waits until no mutation of `table` is pending (at most 60 s).
    fn await_mutations(&self, table: &str) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        loop {
            let pending: Vec<u64> = fetch(
                &self.db,
                format!(
                    "SELECT toUInt64(count()) FROM system.mutations
                     WHERE database = {} AND table = {} AND is_done = 0",
                    lit(&self.database),
                    lit(table)
                ),
            )?;
            if pending.first().copied().unwrap_or(0) == 0 {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(StoreError::Other(format!(
                    "clickhouse: a mutation of {table} did not finish in 60 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stored_salt(&self, day: i64) -> Result<Option<Salt>, StoreError> {
        let rows: Vec<(u64, String)> = fetch(
            &self.db,
            format!(
                "SELECT toUInt64(count()), argMin(salt, (written_ms, salt)) FROM salts
                 WHERE day = {day}"
            ),
        )?;
        match rows.first() {
            Some((n, s)) if *n > 0 => unhex(s)
                .and_then(|v| Salt::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| StoreError::Other("a stored salt is not 32 bytes".into())),
            _ => Ok(None),
        }
    }
}

impl Store for ClickHouseStore {
    fn write(&mut self, batches: &[BatchWrite]) -> Result<Vec<bool>, StoreError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = batches
            .iter()
            .map(|b| format!("({}, {})", lit(&b.site), lit(&b.batch_id)))
            .collect();
        let existing: Vec<(String, String)> = fetch(
            &self.db,
            format!(
                "SELECT site, id FROM batches WHERE (site, id) IN ({}) GROUP BY site, id",
                keys.join(", ")
            ),
        )?;
        let mut seen: std::collections::HashSet<(String, String)> = existing.into_iter().collect();
        let mut duplicates = Vec::with_capacity(batches.len());
        let (mut events, mut deltas, mut engagement, mut dropped, mut ids) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for b in batches {
            let fresh = seen.insert((b.site.clone(), b.batch_id.clone()));
            duplicates.push(!fresh);
            if !fresh {
                continue;
            }
            ids.push(BatchIns {
                site: b.site.clone(),
                id: b.batch_id.clone(),
                received_ms: b.received,
            });
            for e in &b.events {
                events.push(EventIns {
                    site: b.site.clone(),
                    session_id: e.session,
                    visitor: e.visitor,
                    ts: e.ts,
                    seq: next_seq(),
                    kind: e.kind.as_str().to_string(),
                    pv: e.pv.clone(),
                    host: e.host.clone(),
                    path: e.path.clone(),
                    title: e.title.clone(),
                    scroll: e.scroll,
                    engaged_ms: e.engaged_ms.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
                    action: e.action.map(|a| a.as_str().to_string()),
                    order_id: e.order_id.clone(),
                    revenue: e.revenue,
                    currency: e.currency.clone(),
                    items: e.items.clone(),
                    name: e.name.clone(),
                    props: e.props.clone(),
                });
            }
            for s in &b.sessions {
                let (has_entry, entry_ms, entry_path, origin) = match &s.entry {
                    Some((t, p, o)) => (1, *t, p.clone(), o.clone()),
                    None => (0, 0, String::new(), super::Origin::default()),
                };
                let (has_exit, exit_ms, exit_path) = match &s.exit {
                    Some((t, p)) => (1, *t, p.clone()),
                    None => (0, 0, String::new()),
                };
                deltas.push(DeltaIns {
                    site: b.site.clone(),
                    id: s.id,
                    seq: next_seq(),
                    visitor: s.visitor,
                    start_ms: s.start,
                    end_ms: s.end,
                    has_entry,
                    entry_ms,
                    entry_path,
                    has_referrer: u8::from(origin.referrer_host.is_some()),
                    referrer_host: origin.referrer_host.unwrap_or_default(),
                    source: origin.source,
                    medium: origin.medium,
                    has_campaign: u8::from(origin.campaign.is_some()),
                    campaign: origin.campaign.unwrap_or_default(),
                    has_fp: u8::from(s.campaign_fp.is_some()),
                    campaign_fp: s.campaign_fp.unwrap_or(0),
                    has_exit,
                    exit_ms,
                    exit_path,
                    pageviews: s.pageviews,
                    events: s.events,
                    cart_adds: s.cart_adds,
                    checkout: u8::from(s.checkout),
                    purchase: u8::from(s.purchase),
                    revenue: s.revenue,
                    has_currency: u8::from(s.currency.is_some()),
                    currency: s.currency.clone().unwrap_or_default(),
                    browser: s.browser.clone(),
                    os: s.os.clone(),
                    device: s.device.clone(),
                    has_country: u8::from(s.country.is_some()),
                    country: s.country.clone().unwrap_or_default(),
                });
            }
            for g in &b.engagement {
                engagement.push(EngagementIns {
                    site: b.site.clone(),
                    session_id: g.session,
                    pv: g.pv.clone(),
                    path: g.path.clone(),
                    ts: g.ts,
                    scroll: g.scroll,
                    engaged_ms: i64::try_from(g.engaged_ms).unwrap_or(i64::MAX),
                });
            }
            let day = crate::visitor::day_of(b.received);
            for (reason, count) in &b.dropped {
                let (reason, detail) = reason.parts();
                dropped.push(DroppedIns {
                    site: b.site.clone(),
                    day,
                    reason: reason.into(),
                    detail: detail.into(),
                    events: u64::from(*count),
                });
            }
        }
        insert(&self.db, "events", events)?;
        insert(&self.db, "session_deltas", deltas)?;
        insert(&self.db, "engagement", engagement)?;
        insert(&self.db, "dropped", dropped)?;
        // Last: a failure before this point lets the retry through.
        insert(&self.db, "batches", ids)?;
        Ok(duplicates)
    }

    fn salt(&mut self, day: i64, candidate: Salt) -> Result<Salt, StoreError> {
        if let Some(s) = self.stored_salt(day)? {
            return Ok(s);
        }
        insert(
            &self.db,
            "salts",
            vec![SaltIns {
                day,
                salt: hex(&candidate),
                written_ms: crate::server::now_ms(),
            }],
        )?;
        // Collectors racing for the same day converge on the first written.
        self.stored_salt(day)?
            .ok_or_else(|| StoreError::Other("clickhouse: the salt just written is gone".into()))
    }

    fn forget_salts_before(&mut self, day: i64) -> Result<usize, StoreError> {
        let n: Vec<u64> = fetch(
            &self.db,
            format!("SELECT toUInt64(uniqExact(day)) FROM salts WHERE day < {day}"),
        )?;
        let n = n.first().copied().unwrap_or(0);
        if n > 0 {
            execute(
                &self.db,
                format!("ALTER TABLE salts DELETE WHERE day < {day}"),
            )?;
            self.await_mutations("salts")?;
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn open_sessions(&mut self, since: i64) -> Result<Vec<StoredSession>, StoreError> {
        // A session lasts at most a day: its deltas started at most a day before its last event
        // (the bound only prunes partitions).
        let earliest = since.saturating_sub(25 * 3_600_000);
        let rows: Vec<(String, u64, u64, i64, i64, u8, u64)> = fetch(
            &self.db,
            format!(
                "SELECT site, id, argMin(visitor, seq), toInt64(min(start_ms)),
                    toInt64(max(end_ms)), toUInt8(max(has_fp)),
                    argMinIf(campaign_fp, seq, has_fp = 1)
                 FROM session_deltas
                 WHERE id IN (SELECT id FROM session_deltas
                              WHERE start_ms >= {earliest} AND end_ms >= {since})
                 GROUP BY site, id HAVING max(end_ms) >= {since}"
            ),
        )?;
        Ok(rows
            .into_iter()
            .map(
                |(site, id, visitor, start, last, has_fp, fp)| StoredSession {
                    site,
                    visitor,
                    id,
                    start,
                    last,
                    campaign_fp: (has_fp == 1).then_some(fp),
                },
            )
            .collect())
    }

    fn sites(&mut self) -> Result<Vec<Site>, StoreError> {
        let rows: Vec<(String, String)> = fetch(
            &self.db,
            "SELECT id, argMax(origins, version) FROM sites GROUP BY id ORDER BY id".into(),
        )?;
        Ok(rows
            .into_iter()
            .map(|(id, origins)| Site {
                id,
                origins: serde_json::from_str(&origins).unwrap_or_default(),
            })
            .collect())
    }

    fn put_site(&mut self, site: &Site) -> Result<(), StoreError> {
        let origins =
            serde_json::to_string(&site.origins).map_err(|e| StoreError::Other(e.to_string()))?;
        insert(
            &self.db,
            "sites",
            vec![SiteIns {
                id: site.id.clone(),
                origins,
                version: next_seq(),
            }],
        )
    }

    fn add_token(&mut self, hash: [u8; 32], created: i64) -> Result<(), StoreError> {
        insert(
            &self.db,
            "tokens",
            vec![TokenIns {
                hash: hex(&hash),
                created_ms: created,
            }],
        )
    }

    fn maintain(&mut self) -> Result<(), StoreError> {
        // ClickHouse merges parts in the background; nothing to do here.
        Ok(())
    }

    fn has_token(&mut self, hash: [u8; 32]) -> Result<bool, StoreError> {
        token_known(&self.db, hash)
    }
}

/// Whether a token hash is stored.
pub(crate) fn token_known(db: &clickhouse::Client, hash: [u8; 32]) -> Result<bool, StoreError> {
    let n: Vec<u64> = fetch(
        db,
        format!(
            "SELECT toUInt64(count()) FROM tokens WHERE hash = {}",
            lit(&hex(&hash))
        ),
    )?;
    Ok(n.first().copied().unwrap_or(0) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("clickhouse://127.0.0.1:8123/waymark").unwrap();
        assert_eq!(
            (t.http.as_str(), t.database.as_str(), t.user, t.password),
            ("http://127.0.0.1:8123", "waymark", None, None)
        );
        let t = Target::parse("clickhouse://me:s%40c+ret@db.internal/").unwrap();
        assert_eq!(t.http, "http://db.internal:8123");
        assert_eq!(t.database, "waymark");
        assert_eq!(t.user.as_deref(), Some("me"));
        assert_eq!(t.password.as_deref(), Some("s@c+ret"));
        assert_eq!(t.url(), "clickhouse://db.internal:8123/waymark");
        assert!(Target::parse("http://x/y").is_err());
        assert!(Target::parse("clickhouse://x/a;b").is_err());
    }

    #[test]
    fn literals_escape() {
        assert_eq!(lit(r"a'b\c"), r"'a\'b\\c'");
    }

    #[test]
    fn seq_increases() {
        let a = next_seq();
        assert!(next_seq() > a);
    }
}
