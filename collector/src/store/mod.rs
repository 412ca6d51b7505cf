//! Storage behind one trait, so the embedded SQLite store and a ClickHouse store are
//! interchangeable: batch writes (with de-duplication and session upserts in the same atomic
//! write), the daily salts, open sessions for resuming, sites and API tokens; and the report
//! queries behind [`Reports`], which a ClickHouse store implements the same way.
//!
//! Architecture Invariant: only `store/` knows SQL. Nothing here ever receives a raw IP address
//! or user-agent string: rows carry the visitor key and the parsed browser/OS/device only.

pub mod clickhouse;
pub mod clickhouse_reports;
pub mod sqlite;
pub mod sqlite_reports;

use crate::report::{
    AttributionReport, BreakdownRow, CartReport, Dim, FunnelStep, Model, Overview, PageRow,
    PathsReport, Query, Realtime, ScrollReport, SessionRecord, SourceRow, Step, Table, Totals,
};
use crate::visitor::Salt;
use waymark_protocol::{CartAction, EventType};

/// Which store a collector (or the CLI) uses: `--store sqlite` (the default, a file in the data
/// directory) or `--store clickhouse://host:port/database`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    #[default]
    Sqlite,
    ClickHouse(clickhouse::Target),
}

impl Backend {
    /// Parses a `--store` value.
    ///
    /// # Errors
    /// Neither `sqlite` nor a valid `clickhouse://` URL.
    pub fn parse(s: &str) -> Result<Backend, String> {
        if s == "sqlite" {
            return Ok(Backend::Sqlite);
        }
        if s.starts_with("clickhouse://") {
            return clickhouse::Target::parse(s).map(Backend::ClickHouse);
        }
        Err(format!(
            "unsupported store {s:?}: `sqlite` or `clickhouse://host:port/database`"
        ))
    }

    /// Opens the write side (creating and migrating the store if needed); SQLite keeps its file
    /// in `data_dir`.
    ///
    /// # Errors
    /// The store cannot be opened or migrated.
    pub fn open(&self, data_dir: &std::path::Path) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            Backend::Sqlite => Box::new(sqlite::SqliteStore::open(data_dir)?),
            Backend::ClickHouse(t) => Box::new(clickhouse::ClickHouseStore::open(t)?),
        })
    }

    /// Whether several collectors can write to this store at once (ClickHouse). A collector on a
    /// shared store asks it for a visitor's open session when it has none in memory (another
    /// collector may have opened it, see [`Reports::open_session_of`]); a SQLite store belongs
    /// to one collector, which holds all its open sessions in memory and resumes them at start.
    pub fn shared(&self) -> bool {
        matches!(self, Backend::ClickHouse(_))
    }

    /// Opens a read side for reports. The store must exist (see [`Backend::open`]).
    ///
    /// # Errors
    /// No store there, or it cannot be opened.
    pub fn reports(&self, data_dir: &std::path::Path) -> Result<Box<dyn Reports>, StoreError> {
        Ok(match self {
            Backend::Sqlite => Box::new(sqlite_reports::SqliteReports::open(data_dir)?),
            Backend::ClickHouse(t) => Box::new(clickhouse_reports::ClickHouseReports::open(t)?),
        })
    }
}

/// A store failure. The HTTP layer answers 503 with `Retry-After` for any of them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: {0}")]
    Other(String),
}

/// One stored event: the enriched, scrubbed form of a protocol event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    pub session: u64,
    pub visitor: u64,
    /// Derived event time, ms since the epoch (collector clock).
    pub ts: i64,
    pub kind: EventType,
    pub pv: String,
    pub host: String,
    pub path: String,
    pub title: Option<String>,
    pub scroll: Option<u8>,
    pub engaged_ms: Option<u64>,
    pub action: Option<CartAction>,
    pub order_id: Option<String>,
    pub revenue: Option<f64>,
    pub currency: Option<String>,
    /// The cart items as JSON (as received, validated).
    pub items: Option<String>,
    pub name: Option<String>,
    /// Custom properties as JSON.
    pub props: Option<String>,
}

/// Where a session came from: taken from its earliest page view.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    pub referrer_host: Option<String>,
    pub source: String,
    pub medium: String,
    pub campaign: Option<String>,
}

/// The change one batch makes to one session. The store merges deltas (min start, max end,
/// sums, entry from the earliest page view, exit from the latest), so deltas may arrive in any
/// order and a session's row is always the merge of all its batches.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SessionDelta {
    /// The session id: its creation second (below 2³¹) over 32 random bits, made when the
    /// collector first sees the session, so no earlier than its start and at most two days
    /// after it. The SQLite store finds a date range's sessions by this.
    pub id: u64,
    pub visitor: u64,
    pub start: i64,
    pub end: i64,
    /// Earliest page view of this batch in the session: time, path and origin.
    pub entry: Option<(i64, String, Origin)>,
    /// Latest page view of this batch in the session: time and path.
    pub exit: Option<(i64, String)>,
    pub pageviews: u32,
    pub events: u32,
    pub cart_adds: u32,
    pub checkout: bool,
    pub purchase: bool,
    pub revenue: f64,
    pub currency: Option<String>,
    /// Fingerprint of (source, medium, campaign) the sessioniser compares; stored for resuming.
    pub campaign_fp: Option<u64>,
    pub browser: String,
    pub os: String,
    pub device: String,
    pub country: Option<String>,
}

/// The engagement of one page view as this batch reports it. The SDK sends cumulative values
/// (deepest scroll so far, engaged time so far), possibly several times per page view, so the
/// store keeps the maximum per page view and adds only the gain to its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engagement {
    pub session: u64,
    pub pv: String,
    pub path: String,
    pub ts: i64,
    pub scroll: u8,
    pub engaged_ms: u64,
}

/// Why events were not counted as visits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dropped {
    Bot(&'static str),
    Rejected,
    Stale,
}

impl Dropped {
    /// `(reason, detail)` as stored and reported.
    pub fn parts(self) -> (&'static str, &'static str) {
        match self {
            Dropped::Bot(detail) => ("bot", detail),
            Dropped::Rejected => ("rejected", ""),
            Dropped::Stale => ("stale", ""),
        }
    }
}

/// Everything one accepted batch writes, atomically.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct BatchWrite {
    pub site: String,
    pub batch_id: String,
    pub received: i64,
    pub events: Vec<EventRow>,
    pub sessions: Vec<SessionDelta>,
    /// Per page view, the largest values in this batch.
    pub engagement: Vec<Engagement>,
    pub dropped: Vec<(Dropped, u32)>,
}

/// An open session as stored, for resuming after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    pub site: String,
    pub visitor: u64,
    pub id: u64,
    pub start: i64,
    pub last: i64,
    pub campaign_fp: Option<u64>,
}

/// A registered site and the origins allowed to send for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub id: String,
    pub origins: Vec<String>,
}

/// The storage interface. Implementations are used from one thread at a time (the writer
/// thread owns one; other work opens its own), so methods take `&mut self`.
pub trait Store: Send {
    /// Writes the batches in one durable transaction. A batch whose `(site, batch_id)` was
    /// stored before is skipped whole; the result says, per batch, whether it was a duplicate.
    ///
    /// # Errors
    /// Nothing was written.
    fn write(&mut self, batches: &[BatchWrite]) -> Result<Vec<bool>, StoreError>;

    /// The salt of a UTC day, created from `candidate` if none exists yet (the first written
    /// wins, so collectors sharing a store agree).
    ///
    /// # Errors
    /// The store could not be read or written.
    fn salt(&mut self, day: i64, candidate: Salt) -> Result<Salt, StoreError>;

    /// Destroys the salts of days before `day`; returns how many were deleted.
    ///
    /// # Errors
    /// The store could not be written.
    fn forget_salts_before(&mut self, day: i64) -> Result<usize, StoreError>;

    /// Sessions whose last event is at or after `since` (ms).
    ///
    /// # Errors
    /// The store could not be read.
    fn open_sessions(&mut self, since: i64) -> Result<Vec<StoredSession>, StoreError>;

    /// All registered sites.
    ///
    /// # Errors
    /// The store could not be read.
    fn sites(&mut self) -> Result<Vec<Site>, StoreError>;

    /// Registers a site, or replaces its origins.
    ///
    /// # Errors
    /// The store could not be written.
    fn put_site(&mut self, site: &Site) -> Result<(), StoreError>;

    /// Stores the SHA-256 hash of a new API token.
    ///
    /// # Errors
    /// The store could not be written.
    fn add_token(&mut self, hash: [u8; 32], created: i64) -> Result<(), StoreError>;

    /// Periodic upkeep that must not run on the writer's hot path (SQLite: checkpoint the WAL
    /// into the database file). Called about twice a second from its own thread.
    ///
    /// # Errors
    /// The store could not be written.
    fn maintain(&mut self) -> Result<(), StoreError>;

    /// Whether a token hash is known.
    ///
    /// # Errors
    /// The store could not be read.
    fn has_token(&mut self, hash: [u8; 32]) -> Result<bool, StoreError>;
}

/// The read side: every report query. Implementations hold their own read-only connection and
/// run off the async workers, so reports never block ingestion. Every method sees the sessions
/// of [`Query::site`] that started in `[q.lo, q.hi)` and pass all of `q.filters` (a page filter
/// keeps sessions that viewed a matching page), open sessions included; an empty set gives a
/// zero answer, never an error.
pub trait Reports: Send {
    /// Whether the site is registered.
    ///
    /// # Errors
    /// The store could not be read.
    fn site_exists(&mut self, site: &str) -> Result<bool, StoreError>;

    /// Whether a token hash is known.
    ///
    /// # Errors
    /// The store could not be read.
    fn token_valid(&mut self, hash: [u8; 32]) -> Result<bool, StoreError>;

    /// The headline metrics (one time-series point).
    ///
    /// # Errors
    /// The store could not be read.
    fn totals(&mut self, q: &Query) -> Result<Totals, StoreError>;

    /// The totals plus dropped events by reason.
    ///
    /// # Errors
    /// The store could not be read.
    fn overview(&mut self, q: &Query) -> Result<Overview, StoreError>;

    /// Per path, most viewed first.
    ///
    /// # Errors
    /// The store could not be read.
    fn pages(&mut self, q: &Query, limit: u32) -> Result<Vec<PageRow>, StoreError>;

    /// Per source / medium / campaign / referrer host, most sessions first.
    ///
    /// # Errors
    /// The store could not be read.
    fn sources(&mut self, q: &Query, limit: u32) -> Result<Vec<SourceRow>, StoreError>;

    /// Visitors and sessions per value of a session attribute, most sessions first.
    ///
    /// # Errors
    /// The store could not be read.
    fn breakdown(
        &mut self,
        q: &Query,
        dim: Dim,
        limit: u32,
    ) -> Result<Vec<BreakdownRow>, StoreError>;

    /// The ordered funnel over the steps (see [`crate::report::funnel`]).
    ///
    /// # Errors
    /// The store could not be read.
    fn funnel(&mut self, q: &Query, steps: &[Step]) -> Result<Vec<FunnelStep>, StoreError>;

    /// Scroll depth of page views whose path matches `page` (all when `None`).
    ///
    /// # Errors
    /// The store could not be read.
    fn scroll(&mut self, q: &Query, page: Option<&str>) -> Result<ScrollReport, StoreError>;

    /// Cart analytics with the top `limit` products added and bought.
    ///
    /// # Errors
    /// The store could not be read.
    fn cart(&mut self, q: &Query, limit: u32) -> Result<CartReport, StoreError>;

    /// Activity in the minutes before `q.now`; the date range is ignored, filters apply.
    ///
    /// # Errors
    /// The store could not be read.
    fn realtime(&mut self, q: &Query) -> Result<Realtime, StoreError>;

    /// Session records, newest first.
    ///
    /// # Errors
    /// The store could not be read.
    fn sessions(&mut self, q: &Query, limit: u32) -> Result<Vec<SessionRecord>, StoreError>;

    /// The journey map (see [`crate::report::PathWalk`]) from pages matching `start` (entry
    /// pages when `None`), `depth` steps deep, `limit` pages kept per step.
    ///
    /// # Errors
    /// The store could not be read.
    fn paths(
        &mut self,
        q: &Query,
        start: Option<&str>,
        depth: u32,
        limit: u32,
    ) -> Result<PathsReport, StoreError>;

    /// Conversions (sessions in scope reaching `goal`) and their revenue credited to sources
    /// under `model` (see [`crate::report::attribution`]); the look-back covers the converting
    /// visitor's other sessions whatever the range and filters.
    ///
    /// # Errors
    /// The store could not be read.
    fn attribution(
        &mut self,
        q: &Query,
        goal: &Step,
        model: Model,
    ) -> Result<AttributionReport, StoreError>;

    /// The most recent session of `site` filed under one of `visitors` (a visitor's keys under
    /// today's and yesterday's salt) whose last event is at or after `since` (ms), with its
    /// first and last event time and campaign fingerprint merged over all its stored batches.
    /// A collector on a shared store (see [`Backend::shared`]) resumes it when a visitor it has
    /// no open session for arrives, e.g. after the collector that served the visitor stopped.
    /// Stores that only ever have one collector need not look (the default answers `None`).
    ///
    /// # Errors
    /// The store could not be read.
    fn open_session_of(
        &mut self,
        site: &str,
        visitors: &[u64],
        since: i64,
    ) -> Result<Option<StoredSession>, StoreError> {
        let _ = (site, visitors, since);
        Ok(None)
    }

    /// Walks the rows of a table in scope (events by time, sessions by start), each in the
    /// column order of [`Table::columns`], without collecting them; stops when `row` returns
    /// false. Ids and visitor keys are hex strings.
    ///
    /// # Errors
    /// The store could not be read.
    fn export(
        &mut self,
        q: &Query,
        table: Table,
        row: &mut dyn FnMut(Vec<serde_json::Value>) -> bool,
    ) -> Result<(), StoreError>;
}
