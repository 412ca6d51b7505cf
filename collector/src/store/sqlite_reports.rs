//! The report queries over the embedded store, on their own read-only connection.
//!
//! Every query starts from the same scope, a `sel` CTE of the sessions that started in the
//! range and pass the filters. Session ids begin with their creation second, at most two days
//! after the session's start (see [`id_bounds`]), so the scope is a range of the sessions
//! table's own b-tree, read in order, not an index walk with a row lookup per session. Events
//! of those sessions are found by the `events (site, ts)` index: a session lasts at most 24
//! hours, so its events lie in `[lo, hi + 25 h)`. Engagement is joined per page view through its
//! primary key `(site, pv)`.
//!
//! The reports that must stay fast at millions of sessions read session facts instead of
//! events: the headline totals come from session rows alone (scroll sums included), revenue
//! from the purchases' partial index, and funnels and paths from each session's journey row
//! (migration 2 of [`super::sqlite`]).

use super::sqlite::SqliteStore;
use super::{Reports, StoreError};
use crate::report::{
    self, AttributionReport, BreakdownRow, CartReport, Conversion, Dim, Filter, FunnelStep,
    FunnelWalk, Minute, Model, Overview, PageNow, PageRow, PathWalk, PathsReport, ProductRow,
    Query, Realtime, ScrollReport, SessionRecord, SourceRow, Step, StepKind, Table, Totals, Touch,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, Row};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;
use waymark_protocol::CartAction;

/// How far after its start a session's events can lie (sessions last at most 24 h).
const SESSION_SPAN_MS: i64 = 25 * 3_600_000;

/// Revenue of a purchase event: its `revenue`, else the sum of its items' price × quantity (the
/// same rule ingestion uses for the session's revenue).
const REVENUE: &str = "coalesce(e.revenue, (SELECT total(json_extract(j.value, '$.price') \
     * json_extract(j.value, '$.quantity')) FROM json_each(e.items) j))";

/// The events of the sessions in scope (alias `e`).
const IN_SCOPE: &str = "e.site = :site AND e.ts >= :lo AND e.ts < :ehi \
     AND e.session_id IN (SELECT id FROM sel)";

/// How long after its session's start a session id can have been made, in seconds: the
/// collector makes the id when it first sees the session, from an event up to 24 h old
/// (`MAX_EVENT_AGE_MS`) of a session lasting up to 24 h, plus a margin.
const ID_LAG_S: i64 = 49 * 3_600;

/// The ids of sessions that may have started in `[lo, hi)` ms: ids carry their creation second
/// in the high 32 bits (see `server::new_session_id`), made no earlier than the session's start
/// and at most [`ID_LAG_S`] after it. Inclusive bounds.
fn id_bounds(lo: i64, hi: i64) -> (i64, i64) {
    let secs = |ms: i64| ms.div_euclid(1000).clamp(0, 0x7fff_ffff);
    (
        secs(lo) << 32,
        (secs(hi.saturating_add(ID_LAG_S * 1000)) << 32) | 0xffff_ffff,
    )
}

/// One step of a session's journey row (see `sqlite::journey_step`).
#[derive(Clone, Copy)]
struct JourneyStep<'a> {
    ts: i64,
    /// `p` page view, `c` cart action, `e` custom event.
    kind: u8,
    /// Path, action or name.
    label: &'a str,
}

impl JourneyStep<'_> {
    /// The step as a funnel sees it.
    fn funnel(&self) -> (i64, StepKind, &str) {
        let kind = match self.kind {
            b'p' => StepKind::Page,
            b'c' => StepKind::Cart,
            _ => StepKind::Event,
        };
        (self.ts, kind, self.label)
    }
}

/// A session's journey text as its steps of the `kinds` wanted, sorted by time (steps of the
/// same millisecond keep the order they were written in).
fn journey<'a>(text: &'a str, kinds: &[u8]) -> Vec<JourneyStep<'a>> {
    let mut out = Vec::with_capacity(16);
    for step in text.split('\x1e') {
        let Some((ts, rest)) = step.split_once('\x1f') else {
            continue;
        };
        let (Some(&kind), Some(label)) = (rest.as_bytes().first(), rest.get(1..)) else {
            continue;
        };
        if !kinds.contains(&kind) {
            continue;
        }
        if let Ok(ts) = ts.parse() {
            out.push(JourneyStep { ts, kind, label });
        }
    }
    // Steps are mostly written in time order already.
    if !out.is_sorted_by_key(|s| s.ts) {
        out.sort_by_key(|s| s.ts);
    }
    out
}

/// A session's views text (see `sqlite::view_step`) as its page views' `(path, engagement)`,
/// with each page view's largest scroll and engaged time when it has any.
fn page_views(text: &str) -> Vec<(&str, Option<(i64, i64)>)> {
    let mut pages: Vec<(&str, &str)> = Vec::new();
    let mut most: Vec<(&str, (i64, i64))> = Vec::new();
    for entry in text.split('\x1e') {
        let Some(rest) = entry.get(1..) else {
            continue;
        };
        let Some((pv, value)) = rest.split_once(' ') else {
            continue;
        };
        if entry.starts_with('p') {
            pages.push((pv, value));
        } else if let Some((scroll, engaged)) = value.split_once(' ') {
            let (Ok(scroll), Ok(engaged)) = (scroll.parse::<i64>(), engaged.parse::<i64>()) else {
                continue;
            };
            match most.iter_mut().find(|(p, _)| *p == pv) {
                Some((_, m)) => *m = (m.0.max(scroll), m.1.max(engaged)),
                None => most.push((pv, (scroll, engaged))),
            }
        }
    }
    pages
        .into_iter()
        .map(|(pv, path)| (path, most.iter().find(|(p, _)| *p == pv).map(|(_, m)| *m)))
        .collect()
}

/// The cart events of the sessions in scope (alias `e`): `FROM {CART_FROM} WHERE {CART_WHERE}
/// AND e.action = …`. The partial index finds the few cart events of the range; each one's
/// session is then checked by one rowid lookup in `sel`, cheaper than collecting the scope's ids.
const CART_FROM: &str = "events e INDEXED BY events_cart";
const CART_WHERE: &str = "e.site = :site AND e.ts >= :lo AND e.ts < :ehi AND e.type = 'cart' \
     AND EXISTS (SELECT 1 FROM sel WHERE sel.id = e.session_id)";

/// Report queries over one read-only SQLite connection.
pub struct SqliteReports {
    conn: Connection,
}

type Binds = Vec<(String, Value)>;

/// A user glob (`*` is the only wildcard) as an SQLite GLOB pattern: `?` and `[` are literal
/// there only inside a bracket class.
fn sqlite_glob(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

/// The `sel` CTE of a query and its bindings.
fn scope(q: &Query) -> (String, Binds) {
    let mut sql = String::from(
        "WITH sel AS (SELECT s.* FROM sessions s NOT INDEXED \
         WHERE s.id >= :idlo AND s.id <= :idhi \
         AND s.site = :site AND s.start_ms >= :lo AND s.start_ms < :hi",
    );
    let (idlo, idhi) = id_bounds(q.lo, q.hi);
    let mut binds: Binds = vec![
        (":site".into(), Value::Text(q.site.clone())),
        (":lo".into(), Value::Integer(q.lo)),
        (":hi".into(), Value::Integer(q.hi)),
        (":idlo".into(), Value::Integer(idlo)),
        (":idhi".into(), Value::Integer(idhi)),
        (
            ":ehi".into(),
            Value::Integer(q.hi.saturating_add(SESSION_SPAN_MS)),
        ),
    ];
    for (n, f) in q.filters.iter().enumerate() {
        let name = format!(":f{n}");
        match f {
            Filter::Is(dim, v) => {
                sql.push_str(&format!(" AND s.{} = {name} COLLATE NOCASE", dim.as_str()));
                binds.push((name, Value::Text(v.clone())));
            }
            Filter::Page(glob) => {
                sql.push_str(&format!(
                    " AND s.id IN (SELECT session_id FROM events WHERE site = :site \
                     AND ts >= :lo AND ts < :ehi AND type = 'pageview' AND path GLOB {name})"
                ));
                binds.push((name, Value::Text(sqlite_glob(glob))));
            }
        }
    }
    sql.push_str(")\n");
    (sql, binds)
}

/// The condition an event (alias `e`) meets to match a step, with its value bound as `name`.
fn step_cond(step: &Step, name: &str, binds: &mut Binds) -> String {
    let (cond, v) = match step {
        Step::Page(glob) => ("e.type = 'pageview' AND e.path GLOB", sqlite_glob(glob)),
        Step::Cart(a) => ("e.type = 'cart' AND e.action =", a.as_str().to_string()),
        Step::Event(n) => ("e.type = 'custom' AND e.name =", n.clone()),
    };
    binds.push((name.to_string(), Value::Text(v)));
    format!("({cond} {name})")
}

/// The columns of a session record, read by [`session_record`].
const SESSION_FIELDS: &str = "id, visitor, start_ms, end_ms, entry_path, exit_path, pageviews, \
     events, engaged_ms, max_scroll, referrer_host, source, medium, campaign, browser, os, \
     device, country, cart_adds, checkout, purchase, revenue, currency";

/// A session row selected with [`SESSION_FIELDS`] as the record of SESSIONS.md; `day` is the
/// local day of its start in `tz`.
fn session_record(r: &Row<'_>, tz: &jiff::tz::TimeZone) -> rusqlite::Result<SessionRecord> {
    let start: i64 = r.get(2)?;
    let end: i64 = r.get(3)?;
    let pageviews = u(r.get(6)?);
    let engaged_ms: i64 = r.get(8)?;
    let day = jiff::Timestamp::from_millisecond(start)
        .map(|t| t.to_zoned_datetime(tz.clone()).date().to_string())
        .unwrap_or_default();
    Ok(SessionRecord {
        id: format!("{:016x}", r.get::<_, i64>(0)?),
        visitor: format!("{:016x}", r.get::<_, i64>(1)?),
        day,
        start,
        end,
        duration_s: (end - start) as f64 / 1000.0,
        entry_path: r.get(4)?,
        exit_path: r.get(5)?,
        pageviews,
        events: u(r.get(7)?),
        bounce: pageviews == 1 && engaged_ms < 10_000,
        max_scroll: u8::try_from(r.get::<_, i64>(9)?).unwrap_or(100),
        engaged_s: engaged_ms as f64 / 1000.0,
        referrer_host: r.get(10)?,
        source: r.get(11)?,
        medium: r.get(12)?,
        campaign: r.get(13)?,
        browser: r.get(14)?,
        os: r.get(15)?,
        device: r.get(16)?,
        country: r.get(17)?,
        cart_adds: u(r.get(18)?),
        checkout: r.get::<_, i64>(19)? != 0,
        purchase: r.get::<_, i64>(20)? != 0,
        revenue: r.get(21)?,
        currency: r.get(22)?,
    })
}

/// A JSON column (items, props) as JSON; text that does not parse stays a string.
fn json_column(v: Option<String>) -> serde_json::Value {
    match v {
        None => serde_json::Value::Null,
        Some(t) => serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)),
    }
}

fn with(mut binds: Binds, extra: &[(&str, Value)]) -> Binds {
    binds.extend(extra.iter().map(|(k, v)| ((*k).to_string(), v.clone())));
    binds
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteReports {
    /// Opens the store in `data_dir` read-only. The store must exist (the server or
    /// [`SqliteStore::open`] creates and migrates it).
    ///
    /// # Errors
    /// No store there, or it cannot be opened.
    pub fn open(data_dir: &Path) -> Result<SqliteReports, StoreError> {
        let path = SqliteStore::path_in(data_dir);
        if !path.is_file() {
            return Err(StoreError::Other(format!("no store at {}", path.display())));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // Reports read long ranges: map the file instead of copying every page through read(),
        // and keep a larger page cache between the queries of one report.
        conn.pragma_update(None, "mmap_size", 4_294_967_296i64)?;
        conn.pragma_update(None, "cache_size", -65_536)?;
        Ok(SqliteReports { conn })
    }

    /// Runs `sql` binding those of `binds` it names, mapping each row.
    fn rows<T>(
        &self,
        sql: &str,
        binds: &Binds,
        mut f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.each(sql, binds, |r| {
            out.push(f(r)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Runs `sql` binding those of `binds` it names, handing each row to `f` as SQLite steps
    /// to it (nothing is collected) until `f` answers false.
    fn each(
        &self,
        sql: &str,
        binds: &Binds,
        mut f: impl FnMut(&Row<'_>) -> rusqlite::Result<bool>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        for (name, v) in binds {
            if let Some(i) = stmt.parameter_index(name)? {
                stmt.raw_bind_parameter(i, v)?;
            }
        }
        let mut rows = stmt.raw_query();
        while let Some(r) = rows.next()? {
            if !f(r)? {
                break;
            }
        }
        Ok(())
    }

    /// Hands each in-scope session's visitor and row of a facts table (`journeys` or `views`:
    /// their text column) to `f`. Fact rows carry the site and start of their session, so
    /// without filters they are the whole scope: one ordered pass over a range of their table.
    /// With filters, the scope's ids are read first and the two ordered passes merged (a join
    /// would look each row up separately).
    fn facts(
        &self,
        q: &Query,
        table: &str,
        mut f: impl FnMut(i64, &str),
    ) -> Result<(), StoreError> {
        let (sel, binds) = scope(q);
        let wanted = if q.filters.is_empty() {
            None
        } else {
            Some(self.rows(
                &format!("{sel}SELECT id FROM sel ORDER BY id"),
                &binds,
                |r| r.get::<_, i64>(0),
            )?)
        };
        let mut wanted = wanted.as_ref().map(|ids| ids.iter().peekable());
        let column = if table == "views" { "views" } else { "steps" };
        let sql = format!(
            "SELECT id, visitor, {column} FROM {table}
             WHERE id >= :idlo AND id <= :idhi AND site = :site
               AND start_ms >= :lo AND start_ms < :hi
             ORDER BY id"
        );
        self.each(&sql, &binds, |r| {
            if let Some(ids) = wanted.as_mut() {
                let id: i64 = r.get(0)?;
                while ids.next_if(|w| **w < id).is_some() {}
                if ids.next_if_eq(&&id).is_none() {
                    return Ok(true);
                }
            }
            f(r.get(1)?, r.get_ref(2)?.as_str()?);
            Ok(true)
        })
    }

    fn revenue(&self, sel: &str, binds: &Binds) -> Result<BTreeMap<String, f64>, StoreError> {
        let sql = format!(
            "{sel}SELECT e.currency, total({REVENUE}) FROM {CART_FROM} WHERE {CART_WHERE} \
             AND e.action = 'purchase' AND e.currency IS NOT NULL GROUP BY e.currency"
        );
        Ok(self
            .rows(&sql, binds, |r| Ok((r.get(0)?, r.get(1)?)))?
            .into_iter()
            .collect())
    }

    fn products(
        &self,
        sel: &str,
        binds: &Binds,
        action: &str,
        limit: u32,
    ) -> Result<Vec<ProductRow>, StoreError> {
        let sql = format!(
            "{sel}SELECT json_extract(j.value, '$.id') AS pid, max(json_extract(j.value, '$.name')),
                coalesce(sum(json_extract(j.value, '$.quantity')), 0), count(DISTINCT e.session_id)
             FROM {CART_FROM}, json_each(e.items) j
             WHERE {CART_WHERE} AND e.action = :action
             GROUP BY pid ORDER BY 3 DESC, pid LIMIT :limit"
        );
        let binds = with(
            binds.clone(),
            &[
                (":action", Value::Text(action.into())),
                (":limit", Value::Integer(limit.into())),
            ],
        );
        self.rows(&sql, &binds, |r| {
            Ok(ProductRow {
                id: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                name: r.get(1)?,
                quantity: u(r.get(2)?),
                sessions: u(r.get(3)?),
            })
        })
    }
}

impl Reports for SqliteReports {
    fn site_exists(&mut self, site: &str) -> Result<bool, StoreError> {
        let binds = vec![(":site".into(), Value::Text(site.into()))];
        Ok(!self
            .rows("SELECT 1 FROM sites WHERE id = :site", &binds, |_| Ok(()))?
            .is_empty())
    }

    fn token_valid(&mut self, hash: [u8; 32]) -> Result<bool, StoreError> {
        let binds = vec![(":hash".into(), Value::Blob(hash.to_vec()))];
        Ok(!self
            .rows(
                "SELECT 1 FROM tokens WHERE hash = :hash",
                &binds,
                |_| Ok(()),
            )?
            .is_empty())
    }

    fn totals(&mut self, q: &Query) -> Result<Totals, StoreError> {
        let (sel, binds) = scope(q);
        // One ordered pass over the session rows. Distinct visitors are counted here rather
        // than by `count(DISTINCT)`, whose temporary b-tree costs more than the whole scan.
        let sql = format!(
            "{sel}SELECT visitor, pageviews, pageviews = 1 AND engaged_ms < 10000,
                end_ms - start_ms, purchase > 0, scroll_sum, scroll_n FROM sel"
        );
        let mut visitors: std::collections::HashSet<i64, foldhash::fast::RandomState> =
            std::collections::HashSet::default();
        let (mut sessions, mut pageviews, mut bounces, mut duration, mut purchases) =
            (0u64, 0u64, 0u64, 0i64, 0u64);
        let (mut scroll_sum, mut scroll_n) = (0i64, 0i64);
        self.each(&sql, &binds, |r| {
            visitors.insert(r.get::<_, i64>(0)?);
            sessions += 1;
            pageviews += u(r.get(1)?);
            bounces += u(r.get(2)?);
            duration += r.get::<_, i64>(3)?;
            purchases += u(r.get(4)?);
            scroll_sum += r.get::<_, i64>(5)?;
            scroll_n += r.get::<_, i64>(6)?;
            Ok(true)
        })?;
        let mean = |sum: i64, n: u64| if n == 0 { 0.0 } else { sum as f64 / n as f64 };
        Ok(Totals {
            visitors: visitors.len() as u64,
            sessions,
            pageviews,
            bounce_rate: report::ratio(bounces, sessions),
            avg_duration_s: mean(duration, sessions) / 1000.0,
            avg_scroll: mean(scroll_sum, u(scroll_n)),
            conversion_rate: report::ratio(purchases, sessions),
            revenue: self.revenue(&sel, &binds)?,
        })
    }

    fn overview(&mut self, q: &Query) -> Result<Overview, StoreError> {
        let totals = self.totals(q)?;
        let (dlo, dhi) = q.utc_days();
        let binds = vec![
            (":site".into(), Value::Text(q.site.clone())),
            (":dlo".into(), Value::Integer(dlo)),
            (":dhi".into(), Value::Integer(dhi)),
        ];
        let mut dropped: BTreeMap<String, u64> = ["bot", "rejected", "stale"]
            .into_iter()
            .map(|r| (r.to_string(), 0))
            .collect();
        for (reason, n) in self.rows(
            "SELECT reason, sum(count) FROM dropped
             WHERE site = :site AND day >= :dlo AND day <= :dhi GROUP BY reason",
            &binds,
            |r| Ok((r.get::<_, String>(0)?, u(r.get(1)?))),
        )? {
            *dropped.entry(reason).or_default() += n;
        }
        Ok(Overview { totals, dropped })
    }

    fn pages(&mut self, q: &Query, limit: u32) -> Result<Vec<PageRow>, StoreError> {
        let (sel, binds) = scope(q);
        let mut ends: HashMap<(bool, String), u64> = HashMap::new();
        self.each(
            &format!("{sel}SELECT entry_path, exit_path FROM sel"),
            &binds,
            |r| {
                for (exit, col) in [(false, 0), (true, 1)] {
                    if let Some(path) = r.get_ref(col)?.as_str_or_null()? {
                        match ends.get_mut(&(exit, path.to_string())) {
                            Some(n) => *n += 1,
                            None => {
                                ends.insert((exit, path.to_string()), 1);
                            }
                        }
                    }
                }
                Ok(true)
            },
        )?;
        #[derive(Default)]
        struct Page {
            views: u64,
            visitors: std::collections::HashSet<i64, foldhash::fast::RandomState>,
            engaged_views: u64,
            scroll: i64,
            engaged_ms: i64,
        }
        let mut pages: HashMap<String, Page> = HashMap::new();
        self.facts(q, "views", |visitor, text| {
            for (path, engagement) in page_views(text) {
                if !pages.contains_key(path) {
                    pages.insert(path.to_string(), Page::default());
                }
                let Some(p) = pages.get_mut(path) else {
                    continue;
                };
                p.views += 1;
                p.visitors.insert(visitor);
                if let Some((scroll, engaged)) = engagement {
                    p.engaged_views += 1;
                    p.scroll += scroll;
                    p.engaged_ms += engaged;
                }
            }
        })?;
        let mut pages: Vec<(String, Page)> = pages.into_iter().collect();
        pages.sort_by(|a, b| b.1.views.cmp(&a.1.views).then_with(|| a.0.cmp(&b.0)));
        pages.truncate(limit as usize);
        let mean = |sum: i64, n: u64| if n == 0 { 0.0 } else { sum as f64 / n as f64 };
        Ok(pages
            .into_iter()
            .map(|(path, p)| {
                let entries = ends.get(&(false, path.clone())).copied().unwrap_or(0);
                let exits = ends.get(&(true, path.clone())).copied().unwrap_or(0);
                PageRow {
                    pageviews: p.views,
                    visitors: p.visitors.len() as u64,
                    entries,
                    exits,
                    exit_rate: report::ratio(exits, p.views),
                    avg_scroll: mean(p.scroll, p.engaged_views),
                    avg_engaged_s: mean(p.engaged_ms, p.engaged_views) / 1000.0,
                    path,
                }
            })
            .collect())
    }

    fn sources(&mut self, q: &Query, limit: u32) -> Result<Vec<SourceRow>, StoreError> {
        let (sel, binds) = scope(q);
        type Key = (String, String, Option<String>, Option<String>);
        let key = |r: &Row<'_>| -> rusqlite::Result<Key> {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        };
        let sql = format!(
            "{sel}SELECT coalesce(s.source, '(none)'), coalesce(s.medium, '(none)'), s.campaign,
                s.referrer_host, e.currency, total({REVENUE})
             FROM {CART_FROM} JOIN sel s ON s.id = e.session_id
             WHERE e.site = :site AND e.ts >= :lo AND e.ts < :ehi AND e.type = 'cart'
               AND e.action = 'purchase' AND e.currency IS NOT NULL
             GROUP BY 1, 2, 3, 4, 5"
        );
        let mut revenue: HashMap<Key, BTreeMap<String, f64>> = HashMap::new();
        for (k, currency, amount) in self.rows(&sql, &binds, |r| {
            Ok((key(r)?, r.get::<_, String>(4)?, r.get(5)?))
        })? {
            revenue.entry(k).or_default().insert(currency, amount);
        }
        let sql = format!(
            "{sel}SELECT coalesce(source, '(none)'), coalesce(medium, '(none)'), campaign,
                referrer_host, count(DISTINCT visitor), count(*), sum(purchase > 0)
             FROM sel GROUP BY 1, 2, 3, 4 ORDER BY 6 DESC, 1, 2, 3, 4 LIMIT :limit"
        );
        let binds = with(binds, &[(":limit", Value::Integer(limit.into()))]);
        self.rows(&sql, &binds, |r| {
            let k = key(r)?;
            let sessions = u(r.get(5)?);
            Ok(SourceRow {
                revenue: revenue.get(&k).cloned().unwrap_or_default(),
                source: k.0,
                medium: k.1,
                campaign: k.2,
                referrer_host: k.3,
                visitors: u(r.get(4)?),
                sessions,
                conversion_rate: report::ratio(u(r.get(6)?), sessions),
            })
        })
    }

    fn breakdown(
        &mut self,
        q: &Query,
        dim: Dim,
        limit: u32,
    ) -> Result<Vec<BreakdownRow>, StoreError> {
        let (sel, binds) = scope(q);
        let col = dim.as_str();
        let sql = format!(
            "{sel}SELECT coalesce({col}, '(unknown)'), count(DISTINCT visitor), count(*)
             FROM sel GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT :limit"
        );
        let binds = with(binds, &[(":limit", Value::Integer(limit.into()))]);
        self.rows(&sql, &binds, |r| {
            Ok(BreakdownRow {
                value: r.get(0)?,
                visitors: u(r.get(1)?),
                sessions: u(r.get(2)?),
            })
        })
    }

    fn funnel(&mut self, q: &Query, steps: &[Step]) -> Result<Vec<FunnelStep>, StoreError> {
        let mut walk = FunnelWalk::new(steps);
        let kinds: Vec<u8> = steps
            .iter()
            .map(|s| match s {
                Step::Page(_) => b'p',
                Step::Cart(_) => b'c',
                Step::Event(_) => b'e',
            })
            .collect();
        self.facts(q, "journeys", |_, text| {
            walk.session(journey(text, &kinds).iter().map(JourneyStep::funnel));
        })?;
        Ok(walk.finish())
    }

    fn scroll(&mut self, q: &Query, page: Option<&str>) -> Result<ScrollReport, StoreError> {
        let mut by_depth: BTreeMap<i64, u64> = BTreeMap::new();
        self.facts(q, "views", |_, text| {
            for (path, engagement) in page_views(text) {
                if let (Some((scroll, _)), true) = (
                    engagement,
                    page.is_none_or(|glob| report::glob_match(glob, path)),
                ) {
                    *by_depth.entry(scroll).or_default() += 1;
                }
            }
        })?;
        let counts: Vec<(i64, u64)> = by_depth.into_iter().collect();
        Ok(report::scroll_report(&counts))
    }

    fn cart(&mut self, q: &Query, limit: u32) -> Result<CartReport, StoreError> {
        let (sel, binds) = scope(q);
        let sql = format!(
            "{sel}SELECT coalesce(sum(cart_adds > 0), 0), coalesce(sum(checkout > 0), 0),
                coalesce(sum(purchase > 0), 0), coalesce(sum(cart_adds > 0 AND purchase = 0), 0)
             FROM sel"
        );
        let (adds, checkouts, purchases, abandoned) = self
            .rows(&sql, &binds, |r| {
                Ok((u(r.get(0)?), u(r.get(1)?), u(r.get(2)?), u(r.get(3)?)))
            })?
            .pop()
            .unwrap_or_default();
        let sql = format!(
            "{sel}SELECT coalesce(e.currency, '(none)'), count(*) FROM {CART_FROM}
             WHERE {CART_WHERE} AND e.action = 'purchase' GROUP BY 1"
        );
        let orders: BTreeMap<String, u64> = self
            .rows(&sql, &binds, |r| Ok((r.get(0)?, u(r.get(1)?))))?
            .into_iter()
            .collect();
        let revenue = self.revenue(&sel, &binds)?;
        let aov = revenue
            .iter()
            .filter_map(|(c, r)| {
                let n = *orders.get(c)?;
                (n > 0).then(|| (c.clone(), r / n as f64))
            })
            .collect();
        Ok(CartReport {
            sessions_with_add: adds,
            sessions_with_checkout: checkouts,
            sessions_with_purchase: purchases,
            abandonment_rate: report::ratio(abandoned, adds),
            top_added: self.products(&sel, &binds, "add", limit)?,
            top_bought: self.products(&sel, &binds, "purchase", limit)?,
            orders,
            revenue,
            aov,
        })
    }

    fn realtime(&mut self, q: &Query) -> Result<Realtime, StoreError> {
        const MINUTE: i64 = 60_000;
        let now = q.now;
        // Sessions active now started at most a day ago.
        let (sel, binds) = scope(&q.window(now - SESSION_SPAN_MS, now + 1));
        let since = now - 5 * MINUTE;
        let base = now.div_euclid(MINUTE) * MINUTE - 29 * MINUTE;
        let binds = with(
            binds,
            &[
                (":now", Value::Integer(now)),
                (":since", Value::Integer(since)),
                (":base", Value::Integer(base)),
                (":plo", Value::Integer(now - 60 * MINUTE)),
            ],
        );
        let sql = format!(
            "{sel}SELECT count(DISTINCT e.visitor) FROM events e
             WHERE {IN_SCOPE} AND e.ts >= :since AND e.ts <= :now"
        );
        let visitors = self
            .rows(&sql, &binds, |r| r.get::<_, i64>(0))?
            .pop()
            .map_or(0, u);
        // SQLite returns the bare `path` from the row holding max(ts).
        let sql = format!(
            "{sel}, latest AS (
                SELECT e.visitor, e.path, max(e.ts) FROM events e
                WHERE {IN_SCOPE} AND e.ts >= :plo AND e.ts <= :now AND e.type = 'pageview'
                  AND e.visitor IN (SELECT e.visitor FROM events e
                                    WHERE {IN_SCOPE} AND e.ts >= :since AND e.ts <= :now)
                GROUP BY e.visitor)
             SELECT path, count(*) FROM latest GROUP BY path ORDER BY 2 DESC, 1 LIMIT 100"
        );
        let pages = self.rows(&sql, &binds, |r| {
            Ok(PageNow {
                path: r.get(0)?,
                visitors: u(r.get(1)?),
            })
        })?;
        let sql = format!(
            "{sel}SELECT (e.ts - :base) / 60000, count(*) FROM events e
             WHERE {IN_SCOPE} AND e.ts >= :base AND e.ts <= :now GROUP BY 1"
        );
        let counts: HashMap<i64, u64> = self
            .rows(&sql, &binds, |r| Ok((r.get(0)?, u(r.get(1)?))))?
            .into_iter()
            .collect();
        let per_minute = (0..30)
            .map(|m| Minute {
                ts: base + m * MINUTE,
                events: counts.get(&m).copied().unwrap_or(0),
            })
            .collect();
        Ok(Realtime {
            visitors,
            pages,
            per_minute,
        })
    }

    fn sessions(&mut self, q: &Query, limit: u32) -> Result<Vec<SessionRecord>, StoreError> {
        let (sel, binds) = scope(q);
        let sql = format!(
            "{sel}SELECT {SESSION_FIELDS} FROM sel ORDER BY start_ms DESC, id DESC LIMIT :limit"
        );
        let binds = with(binds, &[(":limit", Value::Integer(limit.into()))]);
        self.rows(&sql, &binds, |r| session_record(r, &q.tz))
    }

    fn paths(
        &mut self,
        q: &Query,
        start: Option<&str>,
        depth: u32,
        limit: u32,
    ) -> Result<PathsReport, StoreError> {
        // One session's pages at a time: the walk keeps only counts.
        let mut walk = PathWalk::new(start, depth);
        self.facts(q, "journeys", |_, text| {
            let pages: Vec<&str> = journey(text, b"p").iter().map(|s| s.label).collect();
            walk.session(&pages);
        })?;
        Ok(walk.finish(limit))
    }

    fn attribution(
        &mut self,
        q: &Query,
        goal: &Step,
        model: Model,
    ) -> Result<AttributionReport, StoreError> {
        let (sel, mut binds) = scope(q);
        let cond = step_cond(goal, ":goal", &mut binds);
        let conv = format!(
            "{sel}, conv AS (SELECT s.id, s.visitor, s.start_ms FROM sel s
                WHERE s.id IN (SELECT e.session_id FROM events e WHERE {IN_SCOPE} AND {cond}))\n"
        );
        let mut revenue: HashMap<i64, BTreeMap<String, f64>> = HashMap::new();
        if *goal == Step::Cart(CartAction::Purchase) {
            let sql = format!(
                "{conv}SELECT e.session_id, e.currency, total({REVENUE}) FROM events e
                 WHERE {IN_SCOPE} AND e.session_id IN (SELECT id FROM conv)
                   AND e.type = 'cart' AND e.action = 'purchase' AND e.currency IS NOT NULL
                 GROUP BY 1, 2"
            );
            for (id, currency, amount) in self.rows(&sql, &binds, |r| {
                Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?))
            })? {
                revenue.entry(id).or_default().insert(currency, amount);
            }
        }
        let sql = format!("{conv}SELECT id, visitor, start_ms FROM conv ORDER BY start_ms, id");
        let conversions = self.rows(&sql, &binds, |r| {
            let id: i64 = r.get(0)?;
            Ok(Conversion {
                session: id as u64,
                visitor: r.get::<_, i64>(1)? as u64,
                start: r.get(2)?,
                revenue: revenue.remove(&id).unwrap_or_default(),
            })
        })?;
        // A visitor key lives one (UTC) day, so its sessions start within a day of each other:
        // the look-back stays on the (site, start) index.
        let binds = with(
            binds,
            &[(":tlo", Value::Integer(q.lo.saturating_sub(SESSION_SPAN_MS)))],
        );
        let sql = format!(
            "{conv}SELECT t.visitor, t.id, t.start_ms, coalesce(t.source, '(none)'),
                coalesce(t.medium, '(none)')
             FROM sessions t
             WHERE t.site = :site AND t.start_ms >= :tlo AND t.start_ms < :hi
               AND t.visitor IN (SELECT visitor FROM conv)"
        );
        let touches = self.rows(&sql, &binds, |r| {
            Ok(Touch {
                visitor: r.get::<_, i64>(0)? as u64,
                session: r.get::<_, i64>(1)? as u64,
                start: r.get(2)?,
                source: r.get(3)?,
                medium: r.get(4)?,
            })
        })?;
        Ok(report::attribution(goal, model, &conversions, &touches))
    }

    fn export(
        &mut self,
        q: &Query,
        table: Table,
        row: &mut dyn FnMut(Vec<serde_json::Value>) -> bool,
    ) -> Result<(), StoreError> {
        use serde_json::Value as J;
        let (sel, binds) = scope(q);
        match table {
            Table::Sessions => {
                let sql = format!("{sel}SELECT {SESSION_FIELDS} FROM sel ORDER BY start_ms, id");
                self.each(&sql, &binds, |r| {
                    Ok(row(report::session_row(&session_record(r, &q.tz)?)))
                })
            }
            Table::Events => {
                let sql = format!(
                    "{sel}SELECT e.session_id, e.visitor, e.ts, e.type, e.pv, e.host, e.path,
                        e.title, e.scroll, e.engaged_ms, e.action, e.order_id, e.revenue,
                        e.currency, e.items, e.name, e.props
                     FROM events e WHERE {IN_SCOPE} ORDER BY e.ts, e.id"
                );
                let text = |r: &Row<'_>, i: usize| -> rusqlite::Result<J> {
                    Ok(r.get::<_, Option<String>>(i)?.map_or(J::Null, J::String))
                };
                let int = |r: &Row<'_>, i: usize| -> rusqlite::Result<J> {
                    Ok(r.get::<_, Option<i64>>(i)?.map_or(J::Null, J::from))
                };
                self.each(&sql, &binds, |r| {
                    let cells = vec![
                        J::String(format!("{:016x}", r.get::<_, i64>(0)?)),
                        J::String(format!("{:016x}", r.get::<_, i64>(1)?)),
                        int(r, 2)?,
                        text(r, 3)?,
                        text(r, 4)?,
                        text(r, 5)?,
                        text(r, 6)?,
                        text(r, 7)?,
                        int(r, 8)?,
                        int(r, 9)?,
                        text(r, 10)?,
                        text(r, 11)?,
                        r.get::<_, Option<f64>>(12)?.map_or(J::Null, J::from),
                        text(r, 13)?,
                        json_column(r.get(14)?),
                        text(r, 15)?,
                        json_column(r.get(16)?),
                    ];
                    Ok(row(cells))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BatchWrite, Engagement, EventRow, Origin, SessionDelta, Store};
    use waymark_protocol::{CartAction, EventType};

    #[test]
    fn globs_are_literal_except_star() {
        assert_eq!(sqlite_glob("/p/*"), "/p/*");
        assert_eq!(sqlite_glob("/a?[b]"), "/a[?][[]b]");
    }

    /// Session `n` of the test day, with an id made as the collector makes them.
    fn sid(n: u64) -> u64 {
        ((86_400 * 20_000) << 32) | n
    }

    fn event(n: u64, ts: i64, kind: EventType, pv: &str, path: &str) -> EventRow {
        EventRow {
            session: sid(n),
            visitor: n * 10,
            ts,
            kind,
            pv: pv.into(),
            host: "shop.example".into(),
            path: path.into(),
            title: None,
            scroll: None,
            engaged_ms: None,
            action: None,
            order_id: None,
            revenue: None,
            currency: None,
            items: None,
            name: None,
            props: None,
        }
    }

    fn session(n: u64, start: i64, end: i64, pageviews: u32, source: &str) -> SessionDelta {
        SessionDelta {
            id: sid(n),
            visitor: n * 10,
            start,
            end,
            entry: Some((
                start,
                "/".into(),
                Origin {
                    source: source.into(),
                    medium: "search".into(),
                    ..Origin::default()
                },
            )),
            exit: Some((end, "/products/x".into())),
            pageviews,
            events: pageviews,
            browser: "Firefox".into(),
            os: "Linux".into(),
            device: "desktop".into(),
            ..SessionDelta::default()
        }
    }

    /// A store with two sessions written through the `Store` trait, queried directly.
    #[test]
    fn queries_over_a_small_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path()).unwrap();
        store
            .put_site(&crate::store::Site {
                id: "shop".into(),
                origins: vec![],
            })
            .unwrap();
        let day = 86_400_000 * 20_000;
        let mut purchase = event(2, day + 5_000, EventType::Cart, "pv2b", "/checkout");
        purchase.action = Some(CartAction::Purchase);
        purchase.currency = Some("EUR".into());
        purchase.items = Some(r#"[{"id":"a","price":2.5,"quantity":4}]"#.into());
        let mut s2 = session(2, day + 1_000, day + 5_000, 2, "google");
        s2.purchase = true;
        store
            .write(&[BatchWrite {
                site: "shop".into(),
                batch_id: "b1".into(),
                received: day + 6_000,
                events: vec![
                    event(1, day, EventType::Pageview, "pv1a", "/"),
                    event(2, day + 1_000, EventType::Pageview, "pv2a", "/"),
                    event(2, day + 2_000, EventType::Pageview, "pv2b", "/products/x"),
                    purchase,
                ],
                sessions: vec![session(1, day, day, 1, "direct"), s2],
                engagement: vec![Engagement {
                    session: sid(2),
                    pv: "pv2b".into(),
                    path: "/products/x".into(),
                    ts: day + 3_000,
                    scroll: 80,
                    engaged_ms: 20_000,
                }],
                dropped: vec![],
            }])
            .unwrap();
        let mut r = SqliteReports::open(dir.path()).unwrap();
        assert!(r.site_exists("shop").unwrap());
        assert!(!r.site_exists("other").unwrap());
        let from = jiff::civil::Date::constant(2024, 10, 4);
        assert_eq!(
            crate::report::Query::new("shop", from, from, jiff::tz::TimeZone::UTC, vec![], 0)
                .unwrap()
                .lo,
            day,
            "day 20000 is 2024-10-04"
        );
        let q = Query::new("shop", from, from, jiff::tz::TimeZone::UTC, vec![], 0).unwrap();
        let t = r.totals(&q).unwrap();
        assert_eq!((t.visitors, t.sessions, t.pageviews), (2, 2, 3));
        assert_eq!(t.bounce_rate, 0.5);
        assert_eq!(t.avg_duration_s, 2.0);
        assert_eq!(t.avg_scroll, 80.0);
        assert_eq!(t.revenue.get("EUR"), Some(&10.0), "items price × quantity");
        let q = Query::new(
            "shop",
            from,
            from,
            jiff::tz::TimeZone::UTC,
            vec![Filter::Page("/products/*".into())],
            0,
        )
        .unwrap();
        assert_eq!(r.totals(&q).unwrap().sessions, 1);
        let q = Query::new(
            "shop",
            from,
            from,
            jiff::tz::TimeZone::UTC,
            vec![Filter::Is(Dim::Source, "GOOGLE".into())],
            0,
        )
        .unwrap();
        assert_eq!(r.totals(&q).unwrap().sessions, 1, "filters ignore case");
        let next = from.tomorrow().unwrap();
        let q = Query::new("shop", next, next, jiff::tz::TimeZone::UTC, vec![], 0).unwrap();
        assert_eq!(
            r.totals(&q).unwrap(),
            Totals::default(),
            "an empty range is zero"
        );
    }

    /// Migration 2 builds the session facts of a store written before it: the reports after
    /// the migration equal those of a store that had the facts from the start.
    #[test]
    fn migration_2_backfills_the_session_facts() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path()).unwrap();
        let day = 86_400_000 * 20_000;
        let mut add = event(2, day + 3_000, EventType::Cart, "pv2b", "/products/x");
        add.action = Some(CartAction::Add);
        let mut custom = event(1, day + 500, EventType::Custom, "pv1a", "/");
        custom.name = Some("signup".into());
        let engagement = |n: u64, pv: &str, path: &str, ts: i64, scroll: u8| Engagement {
            session: sid(n),
            pv: pv.into(),
            path: path.into(),
            ts,
            scroll,
            engaged_ms: u64::from(scroll) * 100,
        };
        for (k, (events, g)) in [
            (
                vec![
                    event(1, day, EventType::Pageview, "pv1a", "/"),
                    custom,
                    event(2, day + 1_000, EventType::Pageview, "pv2a", "/"),
                ],
                vec![engagement(2, "pv2a", "/", day + 1_500, 30)],
            ),
            (
                vec![
                    event(2, day + 2_000, EventType::Pageview, "pv2b", "/products/x"),
                    add,
                ],
                vec![
                    engagement(2, "pv2a", "/", day + 1_900, 60),
                    engagement(2, "pv2b", "/products/x", day + 4_000, 90),
                ],
            ),
        ]
        .into_iter()
        .enumerate()
        {
            store
                .write(&[BatchWrite {
                    site: "shop".into(),
                    batch_id: format!("b{k}"),
                    received: day + 6_000,
                    events,
                    sessions: vec![session(1, day, day + 500, 1, "direct"), {
                        let mut s = session(2, day + 1_000, day + 4_000, 1, "google");
                        s.cart_adds = u32::from(k == 1);
                        s
                    }],
                    engagement: g,
                    dropped: vec![],
                }])
                .unwrap();
        }
        let from = jiff::civil::Date::constant(2024, 10, 4);
        let q = Query::new("shop", from, from, jiff::tz::TimeZone::UTC, vec![], 0).unwrap();
        let steps = [
            Step::Page("/".into()),
            Step::Page("/products/*".into()),
            Step::Cart(CartAction::Add),
        ];
        let answers = |r: &mut SqliteReports| {
            serde_json::json!({
                "totals": r.totals(&q).unwrap(),
                "pages": r.pages(&q, 10).unwrap(),
                "scroll": r.scroll(&q, None).unwrap(),
                "funnel": r.funnel(&q, &steps).unwrap(),
                "paths": r.paths(&q, None, 3, 10).unwrap(),
            })
        };
        let live = answers(&mut SqliteReports::open(dir.path()).unwrap());
        assert_eq!(live["totals"]["avg_scroll"], 75.0, "(60 + 90) / 2");
        assert_eq!(live["funnel"][2]["sessions"], 1);
        assert_eq!(live["pages"][0]["avg_scroll"], 60.0);
        // Back to schema 1, then migrate again.
        drop(store);
        Connection::open(SqliteStore::path_in(dir.path()))
            .unwrap()
            .execute_batch(
                "DROP TABLE journeys; DROP TABLE views; DROP INDEX events_cart;
                 ALTER TABLE sessions DROP COLUMN scroll_sum;
                 ALTER TABLE sessions DROP COLUMN scroll_n;
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let migrated = answers(&mut SqliteReports::open(dir.path()).unwrap());
        assert_eq!(migrated, live);
    }
}
