//! The embedded store: one SQLite file in WAL mode with versioned migrations.
//!
//! Durability: `synchronous = FULL` in WAL mode, so a committed transaction survives a power
//! cut; `secure_delete` so destroyed salts are overwritten, not merely unlinked from the b-tree.
//!
//! Indexes are few on purpose: every index is another b-tree each ingested row writes. Events are
//! found by (site, time); sessions by (site, start).

use super::{BatchWrite, Site, Store, StoreError, StoredSession};
use crate::visitor::Salt;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: the ingestion schema.
    "CREATE TABLE sites (
        id TEXT PRIMARY KEY,
        origins TEXT NOT NULL
     );
     CREATE TABLE tokens (
        hash BLOB PRIMARY KEY,
        created_ms INTEGER NOT NULL
     );
     CREATE TABLE salts (
        day INTEGER PRIMARY KEY,
        salt BLOB NOT NULL
     );
     CREATE TABLE batches (
        site TEXT NOT NULL,
        id TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (site, id)
     ) WITHOUT ROWID;
     CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        session_id INTEGER NOT NULL,
        visitor INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        type TEXT NOT NULL,
        pv TEXT NOT NULL,
        host TEXT NOT NULL,
        path TEXT NOT NULL,
        title TEXT,
        scroll INTEGER,
        engaged_ms INTEGER,
        action TEXT,
        order_id TEXT,
        revenue REAL,
        currency TEXT,
        items TEXT,
        name TEXT,
        props TEXT
     );
     CREATE INDEX events_site_ts ON events (site, ts);
     CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        visitor INTEGER NOT NULL,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        entry_ms INTEGER,
        entry_path TEXT,
        exit_ms INTEGER,
        exit_path TEXT,
        referrer_host TEXT,
        source TEXT,
        medium TEXT,
        campaign TEXT,
        campaign_fp INTEGER,
        pageviews INTEGER NOT NULL,
        events INTEGER NOT NULL,
        engaged_ms INTEGER NOT NULL,
        max_scroll INTEGER NOT NULL,
        cart_adds INTEGER NOT NULL,
        checkout INTEGER NOT NULL,
        purchase INTEGER NOT NULL,
        revenue REAL NOT NULL,
        currency TEXT,
        browser TEXT NOT NULL,
        os TEXT NOT NULL,
        device TEXT NOT NULL,
        country TEXT
     );
     CREATE INDEX sessions_site_start ON sessions (site, start_ms);
     CREATE TABLE dropped (
        site TEXT NOT NULL,
        day INTEGER NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (site, day, reason, detail)
     ) WITHOUT ROWID;
     CREATE TABLE engagement (
        site TEXT NOT NULL,
        pv TEXT NOT NULL,
        session_id INTEGER NOT NULL,
        path TEXT NOT NULL,
        ts INTEGER NOT NULL,
        scroll INTEGER NOT NULL,
        engaged_ms INTEGER NOT NULL,
        PRIMARY KEY (site, pv)
     ) WITHOUT ROWID;",
    // 2: session facts for fast reports. Per session, the sum and count of its page views'
    // deepest scroll (so the average scroll needs no join); its journey (page views, cart
    // actions, custom events: see `journey_step`) for funnels and paths; and its page views
    // with their engagement (see `view_step`) for the pages and scroll reports. Both carry the
    // session's site, start and visitor, so a report reads one narrow row per session instead
    // of joining and sorting events. Cart events get a partial index (revenue, orders, products).
    "ALTER TABLE sessions ADD COLUMN scroll_sum INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE sessions ADD COLUMN scroll_n INTEGER NOT NULL DEFAULT 0;
     UPDATE sessions SET scroll_sum = g.total, scroll_n = g.n
       FROM (SELECT session_id, sum(scroll) AS total, count(*) AS n FROM engagement
             GROUP BY session_id) AS g
       WHERE sessions.id = g.session_id;
     CREATE TABLE journeys (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        visitor INTEGER NOT NULL,
        steps TEXT NOT NULL
     );
     INSERT INTO journeys (id, site, start_ms, visitor, steps)
       SELECT id, site, start_ms, visitor, '' FROM sessions;
     UPDATE journeys SET steps = j.steps
       FROM (SELECT session_id, group_concat(step, '') AS steps FROM (
         SELECT session_id, ts || char(31)
           || CASE type WHEN 'pageview' THEN 'p' WHEN 'cart' THEN 'c' ELSE 'e' END
           || replace(replace(CASE type WHEN 'pageview' THEN path
                WHEN 'cart' THEN coalesce(action, '') ELSE coalesce(name, '') END,
                char(30), char(65533)), char(31), char(65533))
           || char(30) AS step
         FROM events WHERE type IN ('pageview', 'cart', 'custom') ORDER BY session_id, id)
       GROUP BY session_id) AS j
       WHERE journeys.id = j.session_id;
     CREATE TABLE views (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        visitor INTEGER NOT NULL,
        views TEXT NOT NULL
     );
     INSERT INTO views (id, site, start_ms, visitor, views)
       SELECT id, site, start_ms, visitor, '' FROM sessions;
     UPDATE views SET views = v.views
       FROM (SELECT session_id, group_concat(step, '') AS views FROM (
         SELECT session_id, 'p' || pv || ' ' || path || char(30) AS step
         FROM events WHERE type = 'pageview'
         UNION ALL
         SELECT session_id, 'g' || pv || ' ' || scroll || ' ' || engaged_ms || char(30)
         FROM engagement)
       GROUP BY session_id) AS v
       WHERE views.id = v.session_id;
     CREATE INDEX events_cart ON events (site, action, ts) WHERE type = 'cart';",
];

/// Upsert of one batch's delta into a session row; see [`super::SessionDelta`]. SQLite evaluates
/// every `SET` expression against the row as it was, so the CASEs compare old with new.
const UPSERT_SESSION: &str = "
INSERT INTO sessions (id, site, visitor, start_ms, end_ms, entry_ms, entry_path, exit_ms, exit_path,
    referrer_host, source, medium, campaign, campaign_fp, pageviews, events, engaged_ms, max_scroll,
    cart_adds, checkout, purchase, revenue, currency, browser, os, device, country)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 0, 0, ?17, ?18,
    ?19, ?20, ?21, ?22, ?23, ?24, ?25)
ON CONFLICT (id) DO UPDATE SET
    start_ms = min(start_ms, excluded.start_ms),
    end_ms = max(end_ms, excluded.end_ms),
    entry_path = CASE WHEN excluded.entry_ms IS NOT NULL AND (entry_ms IS NULL OR excluded.entry_ms < entry_ms) THEN excluded.entry_path ELSE entry_path END,
    referrer_host = CASE WHEN excluded.entry_ms IS NOT NULL AND (entry_ms IS NULL OR excluded.entry_ms < entry_ms) THEN excluded.referrer_host ELSE referrer_host END,
    source = CASE WHEN excluded.entry_ms IS NOT NULL AND (entry_ms IS NULL OR excluded.entry_ms < entry_ms) THEN excluded.source ELSE source END,
    medium = CASE WHEN excluded.entry_ms IS NOT NULL AND (entry_ms IS NULL OR excluded.entry_ms < entry_ms) THEN excluded.medium ELSE medium END,
    campaign = CASE WHEN excluded.entry_ms IS NOT NULL AND (entry_ms IS NULL OR excluded.entry_ms < entry_ms) THEN excluded.campaign ELSE campaign END,
    campaign_fp = coalesce(campaign_fp, excluded.campaign_fp),
    entry_ms = CASE WHEN excluded.entry_ms IS NOT NULL AND (entry_ms IS NULL OR excluded.entry_ms < entry_ms) THEN excluded.entry_ms ELSE entry_ms END,
    exit_path = CASE WHEN excluded.exit_ms IS NOT NULL AND (exit_ms IS NULL OR excluded.exit_ms >= exit_ms) THEN excluded.exit_path ELSE exit_path END,
    exit_ms = CASE WHEN excluded.exit_ms IS NOT NULL AND (exit_ms IS NULL OR excluded.exit_ms >= exit_ms) THEN excluded.exit_ms ELSE exit_ms END,
    pageviews = pageviews + excluded.pageviews,
    events = events + excluded.events,
    cart_adds = cart_adds + excluded.cart_adds,
    checkout = max(checkout, excluded.checkout),
    purchase = max(purchase, excluded.purchase),
    revenue = revenue + excluded.revenue,
    currency = coalesce(currency, excluded.currency),
    country = coalesce(country, excluded.country)";

const INSERT_EVENT: &str = "
INSERT INTO events (site, session_id, visitor, ts, type, pv, host, path, title, scroll, engaged_ms,
    action, order_id, revenue, currency, items, name, props)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

/// One event as a step of its session's journey: `{ts}\x1f{kind}{label}\x1e`, where kind is `p`
/// (page view, label = path), `c` (cart, label = action) or `e` (custom, label = name); other
/// events are not steps. Paths never hold control characters (URLs are validated); a custom
/// name's separators become U+FFFD. Appended to `out`; [`super::sqlite_reports`] parses it back.
fn journey_step(out: &mut String, e: &super::EventRow) {
    use std::fmt::Write;
    use waymark_protocol::EventType;
    let (kind, label) = match e.kind {
        EventType::Pageview => ('p', e.path.as_str()),
        EventType::Cart => ('c', e.action.map_or("", |a| a.as_str())),
        EventType::Custom => ('e', e.name.as_deref().unwrap_or("")),
        EventType::Engagement => return,
    };
    let _ = write!(out, "{}\x1f{kind}", e.ts);
    out.extend(label.chars().map(|c| match c {
        '\x1e' | '\x1f' => '\u{fffd}',
        c => c,
    }));
    out.push('\x1e');
}

/// A page view as an entry of its session's views: `p{pv} {path}\x1e` (page-view ids have no
/// spaces, paths no control characters).
fn view_step(out: &mut String, e: &super::EventRow) {
    use std::fmt::Write;
    let _ = write!(out, "p{} {}\x1e", e.pv, e.path);
}

/// A page view's engagement as an entry of its session's views: `g{pv} {scroll} {engaged_ms}\x1e`.
/// A page view may have several (the values only grow); the reader keeps the largest.
fn engagement_step(out: &mut String, g: &super::Engagement) {
    use std::fmt::Write;
    let _ = write!(out, "g{} {} {}\x1e", g.pv, g.scroll, g.engaged_ms);
}

/// What one batch adds to a session's journey and views rows.
struct Facts {
    id: u64,
    start: i64,
    visitor: u64,
    steps: String,
    views: String,
}

impl Facts {
    /// The facts of `session` among a batch's, added (starting at `ts`) if the batch has no
    /// delta for it.
    fn of(facts: &mut Vec<Facts>, session: u64, ts: i64, visitor: u64) -> &mut Facts {
        let k = match facts.iter().position(|f| f.id == session) {
            Some(k) => k,
            None => {
                facts.push(Facts {
                    id: session,
                    start: ts,
                    visitor,
                    steps: String::new(),
                    views: String::new(),
                });
                facts.len() - 1
            }
        };
        &mut facts[k]
    }
}

/// SQLite stores integers as i64; visitor keys and session ids are u64 bit patterns.
fn i(v: u64) -> i64 {
    v as i64
}

/// Commits between the writer's own WAL checkpoints (see `SqliteStore::restart_wal`).
const RESTART_WAL_EVERY: u32 = 64;

/// The embedded SQLite store.
pub struct SqliteStore {
    conn: Connection,
    /// Commits until the writer's next own checkpoint.
    until_restart: u32,
}

impl SqliteStore {
    /// The database file inside a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("waymark.sqlite3")
    }

    /// Opens (creating if needed) the store in `data_dir` and migrates it.
    ///
    /// # Errors
    /// The directory or file cannot be created or opened, or a migration fails.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Other(format!("creating {}: {e}", data_dir.display())))?;
        let conn = Connection::open(Self::path_in(data_dir))?;
        // Another process holding the write lock (a backup, an sqlite3 shell) delays commits;
        // waiting up to 30 s rides that out instead of failing the batches (503).
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        // A larger page cache keeps the b-tree pages the writer touches in memory instead of
        // re-reading them from the OS on every group commit.
        conn.pragma_update(None, "cache_size", -8_192)?;
        conn.pragma_update(None, "mmap_size", 268_435_456)?;
        // Checkpoints run from `maintain` on another thread, not inside the writer's commits,
        // except one every `RESTART_WAL_EVERY` commits (see `restart_wal`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let mut store = SqliteStore {
            conn,
            until_restart: RESTART_WAL_EVERY,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Under steady load the maintenance thread's PASSIVE checkpoints never catch up with the
    /// writer, so the WAL never starts over: it grew by 1.3 GB in 6 s of `bench/ingest.sh`, every
    /// new frame extending the file. Every [`RESTART_WAL_EVERY`] commits the writer checkpoints
    /// itself and restarts the log, without waiting for readers (a report query in progress just
    /// makes it a partial checkpoint); the WAL then stayed under 90 MB (BENCHMARKS.md).
    fn restart_wal(&mut self) {
        let _ = self.conn.busy_timeout(Duration::ZERO);
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
        let _ = self.conn.busy_timeout(Duration::from_secs(30));
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let done: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (n, sql) in (1i64..)
            .zip(MIGRATIONS)
            .skip(usize::try_from(done).unwrap_or(0))
        {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", n)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn write(&mut self, batches: &[BatchWrite]) -> Result<Vec<bool>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut duplicates = Vec::with_capacity(batches.len());
        {
            let mut batch_stmt = tx.prepare_cached(
                "INSERT INTO batches (site, id, received_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?;
            let mut event_stmt = tx.prepare_cached(INSERT_EVENT)?;
            let mut session_stmt = tx.prepare_cached(UPSERT_SESSION)?;
            let mut old_engagement = tx.prepare_cached(
                "SELECT scroll, engaged_ms FROM engagement WHERE site = ?1 AND pv = ?2",
            )?;
            let mut engagement_stmt = tx.prepare_cached(
                "INSERT INTO engagement (site, pv, session_id, path, ts, scroll, engaged_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (site, pv) DO UPDATE SET
                    scroll = max(scroll, excluded.scroll),
                    engaged_ms = max(engaged_ms, excluded.engaged_ms),
                    ts = max(ts, excluded.ts)",
            )?;
            let mut gain_stmt = tx.prepare_cached(
                "UPDATE sessions SET engaged_ms = engaged_ms + ?1, max_scroll = max(max_scroll, ?2),
                    scroll_sum = scroll_sum + ?4, scroll_n = scroll_n + ?5
                 WHERE id = ?3",
            )?;
            let mut journey_stmt = tx.prepare_cached(
                "INSERT INTO journeys (id, site, start_ms, visitor, steps)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET
                    start_ms = min(start_ms, excluded.start_ms),
                    steps = steps || excluded.steps",
            )?;
            let mut views_stmt = tx.prepare_cached(
                "INSERT INTO views (id, site, start_ms, visitor, views)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET
                    start_ms = min(start_ms, excluded.start_ms),
                    views = views || excluded.views",
            )?;
            let mut facts: Vec<Facts> = Vec::new();
            let mut dropped_stmt = tx.prepare_cached(
                "INSERT INTO dropped (site, day, reason, detail, count) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (site, day, reason, detail) DO UPDATE SET count = count + excluded.count",
            )?;
            for b in batches {
                let fresh = batch_stmt.execute(params![b.site, b.batch_id, b.received])? == 1;
                duplicates.push(!fresh);
                if !fresh {
                    continue;
                }
                // Every session of the batch gets both rows, so their start is the session's.
                facts.clear();
                facts.extend(b.sessions.iter().map(|s| Facts {
                    id: s.id,
                    start: s.start,
                    visitor: s.visitor,
                    steps: String::new(),
                    views: String::new(),
                }));
                for g in &b.engagement {
                    engagement_step(&mut Facts::of(&mut facts, g.session, g.ts, 0).views, g);
                }
                for e in &b.events {
                    if e.kind != waymark_protocol::EventType::Engagement {
                        let f = Facts::of(&mut facts, e.session, e.ts, e.visitor);
                        journey_step(&mut f.steps, e);
                        if e.kind == waymark_protocol::EventType::Pageview {
                            view_step(&mut f.views, e);
                        }
                    }
                    event_stmt.execute(params![
                        b.site,
                        i(e.session),
                        i(e.visitor),
                        e.ts,
                        e.kind.as_str(),
                        e.pv,
                        e.host,
                        e.path,
                        e.title,
                        e.scroll,
                        e.engaged_ms.map(|v| v.min(i64::MAX as u64) as i64),
                        e.action.map(|a| a.as_str()),
                        e.order_id,
                        e.revenue,
                        e.currency,
                        e.items,
                        e.name,
                        e.props,
                    ])?;
                }
                for s in &b.sessions {
                    let (entry_ms, entry_path, origin) = match &s.entry {
                        Some((t, p, o)) => (Some(*t), Some(p.as_str()), Some(o)),
                        None => (None, None, None),
                    };
                    let (exit_ms, exit_path) = match &s.exit {
                        Some((t, p)) => (Some(*t), Some(p.as_str())),
                        None => (None, None),
                    };
                    session_stmt.execute(params![
                        i(s.id),
                        b.site,
                        i(s.visitor),
                        s.start,
                        s.end,
                        entry_ms,
                        entry_path,
                        exit_ms,
                        exit_path,
                        origin.and_then(|o| o.referrer_host.as_deref()),
                        origin.map(|o| o.source.as_str()),
                        origin.map(|o| o.medium.as_str()),
                        origin.and_then(|o| o.campaign.as_deref()),
                        s.campaign_fp.map(i),
                        s.pageviews,
                        s.events,
                        s.cart_adds,
                        s.checkout,
                        s.purchase,
                        s.revenue,
                        s.currency,
                        s.browser,
                        s.os,
                        s.device,
                        s.country,
                    ])?;
                }
                for f in &facts {
                    let (id, visitor) = (i(f.id), i(f.visitor));
                    journey_stmt.execute(params![id, b.site, f.start, visitor, f.steps])?;
                    views_stmt.execute(params![id, b.site, f.start, visitor, f.views])?;
                }
                for g in &b.engagement {
                    let engaged = i64::try_from(g.engaged_ms).unwrap_or(i64::MAX);
                    let before: Option<(i64, i64)> = old_engagement
                        .query_row(params![b.site, g.pv], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    // The session gains what this page view adds: a first engagement counts
                    // the page view's scroll, a later one only a deeper scroll.
                    let (scroll_gain, new_view, engaged_before) = match before {
                        None => (i64::from(g.scroll), 1, 0),
                        Some((scroll, engaged)) => {
                            ((i64::from(g.scroll) - scroll).max(0), 0, engaged)
                        }
                    };
                    engagement_stmt.execute(params![
                        b.site,
                        g.pv,
                        i(g.session),
                        g.path,
                        g.ts,
                        g.scroll,
                        engaged
                    ])?;
                    gain_stmt.execute(params![
                        (engaged - engaged_before).max(0),
                        g.scroll,
                        i(g.session),
                        scroll_gain,
                        new_view
                    ])?;
                }
                let day = crate::visitor::day_of(b.received);
                for (reason, count) in &b.dropped {
                    let (reason, detail) = reason.parts();
                    dropped_stmt.execute(params![b.site, day, reason, detail, count])?;
                }
            }
        }
        tx.commit()?;
        self.until_restart = self.until_restart.saturating_sub(1);
        if self.until_restart == 0 {
            self.until_restart = RESTART_WAL_EVERY;
            self.restart_wal();
        }
        Ok(duplicates)
    }

    fn salt(&mut self, day: i64, candidate: Salt) -> Result<Salt, StoreError> {
        self.conn.execute(
            "INSERT INTO salts (day, salt) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![day, candidate.as_slice()],
        )?;
        let stored: Vec<u8> =
            self.conn
                .query_row("SELECT salt FROM salts WHERE day = ?1", [day], |r| r.get(0))?;
        stored
            .try_into()
            .map_err(|_| StoreError::Other("a stored salt is not 32 bytes".into()))
    }

    fn forget_salts_before(&mut self, day: i64) -> Result<usize, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM salts WHERE day < ?1", [day])?;
        if n > 0 {
            // Move the overwritten pages out of the WAL into the main file now, so no copy of
            // a destroyed salt lingers in the log.
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(n)
    }

    fn open_sessions(&mut self, since: i64) -> Result<Vec<StoredSession>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT site, visitor, id, start_ms, end_ms, campaign_fp FROM sessions WHERE end_ms >= ?1",
        )?;
        let rows = stmt.query_map([since], |r| {
            Ok(StoredSession {
                site: r.get(0)?,
                visitor: r.get::<_, i64>(1)? as u64,
                id: r.get::<_, i64>(2)? as u64,
                start: r.get(3)?,
                last: r.get(4)?,
                campaign_fp: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn sites(&mut self) -> Result<Vec<Site>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, origins FROM sites ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let origins: String = r.get(1)?;
            Ok(Site {
                id: r.get(0)?,
                origins: serde_json::from_str(&origins).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_site(&mut self, site: &Site) -> Result<(), StoreError> {
        let origins =
            serde_json::to_string(&site.origins).map_err(|e| StoreError::Other(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO sites (id, origins) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET origins = excluded.origins",
            params![site.id, origins],
        )?;
        Ok(())
    }

    fn add_token(&mut self, hash: [u8; 32], created: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO tokens (hash, created_ms) VALUES (?1, ?2)",
            params![hash.as_slice(), created],
        )?;
        Ok(())
    }

    fn maintain(&mut self) -> Result<(), StoreError> {
        // PASSIVE never waits for the writer; a WAL that outruns it is caught up next time.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn has_token(&mut self, hash: [u8; 32]) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM tokens WHERE hash = ?1",
                [hash.as_slice()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Dropped, Engagement, EventRow, Origin, SessionDelta};
    use waymark_protocol::EventType;

    fn batch(id: &str, session: u64, ts: i64, path: &str) -> BatchWrite {
        BatchWrite {
            site: "shop".into(),
            batch_id: id.into(),
            received: ts,
            events: vec![EventRow {
                session,
                visitor: 7,
                ts,
                kind: EventType::Pageview,
                pv: "pv000001".into(),
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
            }],
            sessions: vec![SessionDelta {
                id: session,
                visitor: 7,
                start: ts,
                end: ts,
                entry: Some((
                    ts,
                    path.into(),
                    Origin {
                        source: format!("src{ts}"),
                        ..Origin::default()
                    },
                )),
                exit: Some((ts, path.into())),
                pageviews: 1,
                events: 1,
                browser: "Firefox".into(),
                os: "Linux".into(),
                device: "desktop".into(),
                ..SessionDelta::default()
            }],
            engagement: vec![Engagement {
                session,
                pv: "pv000001".into(),
                path: path.into(),
                ts,
                scroll: (ts / 100) as u8,
                engaged_ms: ts as u64,
            }],
            dropped: vec![(Dropped::Rejected, 2)],
        }
    }

    #[test]
    fn the_wal_starts_over_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(dir.path()).unwrap();
        let wal = dir.path().join("waymark.sqlite3-wal");
        let mut largest = 0;
        // No maintenance thread: without the writer's own checkpoints the log would only grow
        // (about 30 KB per commit here, 60 MB in all).
        for i in 0..2_000u64 {
            let ts = 1_000 + i as i64;
            s.write(&[batch(&format!("{i:016}"), i + 1, ts, &format!("/p{i}"))])
                .unwrap();
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        assert!(largest < 8 << 20, "the WAL reached {largest} bytes");
        let n: i64 = s
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2_000);
    }

    #[test]
    fn duplicates_skipped_and_sessions_merge_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(dir.path()).unwrap();
        // Later batch first, then the earlier one, then a retry of the first.
        let dup = s
            .write(&[
                batch("bbbbbbbbbbbbbbbb", 1, 2_000, "/b"),
                batch("aaaaaaaaaaaaaaaa", 1, 1_000, "/a"),
            ])
            .unwrap();
        assert_eq!(dup, vec![false, false]);
        assert_eq!(
            s.write(&[batch("bbbbbbbbbbbbbbbb", 1, 2_000, "/b")])
                .unwrap(),
            vec![true]
        );
        let (n, start, end, entry, exit, pv, source): (i64, i64, i64, String, String, i64, String) = s
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM events), start_ms, end_ms, entry_path, exit_path, pageviews, source FROM sessions",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
            )
            .unwrap();
        assert_eq!(
            (n, start, end, entry.as_str(), exit.as_str(), pv),
            (2, 1_000, 2_000, "/a", "/b", 2)
        );
        assert_eq!(source, "src1000");
        // The same page view reported twice (cumulatively): the maximum counts, not the sum.
        let (engaged, scroll): (i64, i64) = s
            .conn
            .query_row("SELECT engaged_ms, max_scroll FROM sessions", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((engaged, scroll), (2_000, 20));
        let dropped: i64 = s
            .conn
            .query_row("SELECT sum(count) FROM dropped", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            dropped, 4,
            "the retried batch's drops are not counted twice"
        );
        // Survives reopening.
        drop(s);
        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(
            s.write(&[batch("aaaaaaaaaaaaaaaa", 1, 1_000, "/a")])
                .unwrap(),
            vec![true]
        );
        let open = s.open_sessions(1_500).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(
            (open[0].start, open[0].last, open[0].visitor),
            (1_000, 2_000, 7)
        );
        assert!(s.open_sessions(2_001).unwrap().is_empty());
    }

    #[test]
    fn salts_first_written_wins_and_are_destroyed() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = SqliteStore::open(dir.path()).unwrap();
        let mut b = SqliteStore::open(dir.path()).unwrap();
        let first = a.salt(100, [1; 32]).unwrap();
        assert_eq!(first, [1; 32]);
        assert_eq!(b.salt(100, [2; 32]).unwrap(), [1; 32]);
        assert_eq!(b.salt(101, [3; 32]).unwrap(), [3; 32]);
        assert_eq!(a.forget_salts_before(101).unwrap(), 1);
        assert_eq!(
            a.salt(100, [4; 32]).unwrap(),
            [4; 32],
            "a destroyed salt cannot come back"
        );
        let migrations: i64 = a
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(migrations as usize, MIGRATIONS.len());
    }

    #[test]
    fn sites_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(dir.path()).unwrap();
        let site = Site {
            id: "shop".into(),
            origins: vec!["https://shop.example".into()],
        };
        s.put_site(&site).unwrap();
        s.put_site(&site).unwrap();
        assert_eq!(s.sites().unwrap(), vec![site]);
        assert!(!s.has_token([9; 32]).unwrap());
        s.add_token([9; 32], 1).unwrap();
        assert!(s.has_token([9; 32]).unwrap());
    }
}
