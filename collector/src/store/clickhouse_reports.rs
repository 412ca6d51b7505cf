//! The report queries over the ClickHouse store (see [`super::clickhouse`] for the schema).
//!
//! Every query starts from the same scope as the SQLite one: the sessions of the site that
//! started in `[lo, hi)` and pass the filters. Sessions are merged from their deltas at query
//! time (`merged`); their events lie in `[lo, hi + 25 h)` of `events (site, ts)`.
//!
//! Answers are identical to [`super::sqlite_reports`] for the same ingested data: counts and
//! integer sums come from ClickHouse; averages are integer sums divided by counts (as SQLite's
//! `avg` does for integers); money is summed here in Rust with the Kahan-Babuska-Neumaier sum
//! SQLite's `total()` uses, from the purchase events themselves (the item prices are JSON,
//! which ClickHouse 18.16 cannot take apart), and so are the top products.

use super::clickhouse::{fetch, lit, log_sql, run, token_known, Target};
use super::{Reports, StoreError, StoredSession};
use crate::report::{
    self, AttributionReport, BreakdownRow, CartReport, Conversion, Dim, Filter, FunnelEvent,
    FunnelStep, Minute, Model, Overview, PageNow, PageRow, PathWalk, PathsReport, ProductRow,
    Query, Realtime, ScrollReport, SessionRecord, SourceRow, Step, Table, Totals, Touch,
};
use clickhouse::Row;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use waymark_protocol::CartAction;

/// How far after its start a session's events can lie (sessions last at most 24 h).
const SESSION_SPAN_MS: i64 = 25 * 3_600_000;

/// A source key: source, medium, campaign, referrer host.
type SourceKey = (String, String, Option<String>, Option<String>);
/// A funnel event as selected: session, time, type, path, action, name.
type StepRow = (u64, i64, String, String, Option<String>, Option<String>);

/// Report queries over one ClickHouse client.
pub struct ClickHouseReports {
    db: clickhouse::Client,
}

/// A merged session, in the column order of [`merged`].
#[derive(Row, Deserialize)]
struct SessRow {
    id: u64,
    visitor: u64,
    start_ms: i64,
    end_ms: i64,
    entry_path: Option<String>,
    exit_path: Option<String>,
    pageviews: u64,
    events: u64,
    engaged_ms: i64,
    max_scroll: u8,
    referrer_host: Option<String>,
    source: Option<String>,
    medium: Option<String>,
    campaign: Option<String>,
    browser: String,
    os: String,
    device: String,
    country: Option<String>,
    cart_adds: u64,
    checkout: u8,
    purchase: u8,
    revenue: f64,
    currency: Option<String>,
}

impl SessRow {
    /// The record of SESSIONS.md, exactly as the SQLite store builds it.
    fn record(self, tz: &jiff::tz::TimeZone) -> SessionRecord {
        let day = jiff::Timestamp::from_millisecond(self.start_ms)
            .map(|t| t.to_zoned_datetime(tz.clone()).date().to_string())
            .unwrap_or_default();
        SessionRecord {
            id: format!("{:016x}", self.id),
            visitor: format!("{:016x}", self.visitor),
            day,
            start: self.start_ms,
            end: self.end_ms,
            duration_s: (self.end_ms - self.start_ms) as f64 / 1000.0,
            entry_path: self.entry_path,
            exit_path: self.exit_path,
            pageviews: self.pageviews,
            events: self.events,
            bounce: self.pageviews == 1 && self.engaged_ms < 10_000,
            max_scroll: self.max_scroll,
            engaged_s: self.engaged_ms as f64 / 1000.0,
            referrer_host: self.referrer_host,
            source: self.source,
            medium: self.medium,
            campaign: self.campaign,
            browser: self.browser,
            os: self.os,
            device: self.device,
            country: self.country,
            cart_adds: self.cart_adds,
            checkout: self.checkout != 0,
            purchase: self.purchase != 0,
            revenue: self.revenue,
            currency: self.currency,
        }
    }
}

/// A purchase (or other cart) event: what money and products are computed from.
#[derive(Row, Deserialize)]
struct CartRow {
    session_id: u64,
    currency: Option<String>,
    revenue: Option<f64>,
    items: Option<String>,
}

#[derive(Row, Deserialize)]
struct EventRow {
    session_id: u64,
    visitor: u64,
    ts: i64,
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

/// SQLite's `total()`: Kahan-Babuska-Neumaier summation of doubles.
#[derive(Default)]
struct Total {
    sum: f64,
    err: f64,
}

impl Total {
    fn add(&mut self, r: f64) {
        let s = self.sum;
        let t = s + r;
        if s.abs() > r.abs() {
            self.err += (s - t) + r;
        } else {
            self.err += (r - t) + s;
        }
        self.sum = t;
    }

    fn value(&self) -> f64 {
        if self.err.is_finite() {
            self.sum + self.err
        } else {
            self.sum
        }
    }
}

/// The items of a cart event as JSON objects (none when absent or not an array).
fn items(json: Option<&str>) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let Some(Ok(serde_json::Value::Array(list))) =
        json.map(serde_json::from_str::<serde_json::Value>)
    else {
        return Vec::new();
    };
    list.into_iter()
        .filter_map(|v| match v {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Revenue of a purchase event: its `revenue`, else the total of its items' price × quantity.
fn revenue_of(e: &CartRow) -> f64 {
    if let Some(r) = e.revenue {
        return r;
    }
    let mut t = Total::default();
    for item in items(e.items.as_deref()) {
        let price = item.get("price").and_then(serde_json::Value::as_f64);
        let quantity = item.get("quantity").and_then(serde_json::Value::as_f64);
        if let (Some(p), Some(q)) = (price, quantity) {
            t.add(p * q);
        }
    }
    t.value()
}

/// A user glob (`*` is the only wildcard) as an anchored RE2 pattern.
fn glob_regex(glob: &str) -> String {
    let mut out = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            c if "\\.+?()|[]{}^$".contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('$');
    out
}

/// The ids of sessions of `site` with a delta starting in `[lo, hi)`: every session that
/// started there has one (its start is the least delta start).
fn candidates(site: &str, lo: i64, hi: i64) -> String {
    format!(
        "SELECT id FROM session_deltas WHERE site = {} AND start_ms >= {lo} AND start_ms < {hi}",
        lit(site)
    )
}

/// The sessions of `site` that started in `[lo, hi)`, merged from their deltas, in the column
/// order of [`SessRow`].
fn merged(site: &str, lo: i64, hi: i64) -> String {
    let s = lit(site);
    let cand = candidates(site, lo, hi);
    let by_entry = "(entry_ms, seq), has_entry = 1";
    format!(
        "SELECT id, visitor_ AS visitor, start_ AS start_ms, end_ AS end_ms,
            if(has_entry_ = 1, entry_path_, NULL) AS entry_path,
            if(has_exit_ = 1, exit_path_, NULL) AS exit_path,
            toUInt64(pageviews_) AS pageviews, toUInt64(events_) AS events,
            toInt64(engaged_) AS engaged_ms, toUInt8(scroll_) AS max_scroll,
            if(has_entry_ = 1 AND has_referrer_ = 1, referrer_host_, NULL) AS referrer_host,
            if(has_entry_ = 1, source_, NULL) AS source,
            if(has_entry_ = 1, medium_, NULL) AS medium,
            if(has_entry_ = 1 AND has_campaign_ = 1, campaign_, NULL) AS campaign,
            browser_ AS browser, os_ AS os, device_ AS device,
            if(has_country_ = 1, country_, NULL) AS country,
            toUInt64(cart_adds_) AS cart_adds, toUInt8(checkout_) AS checkout,
            toUInt8(purchase_) AS purchase, toFloat64(revenue_) AS revenue,
            if(has_currency_ = 1, currency_, NULL) AS currency
         FROM (
            SELECT id, argMin(visitor, seq) AS visitor_, toInt64(min(start_ms)) AS start_,
                toInt64(max(end_ms)) AS end_, max(has_entry) AS has_entry_,
                argMinIf(entry_path, {by_entry}) AS entry_path_,
                argMinIf(has_referrer, {by_entry}) AS has_referrer_,
                argMinIf(referrer_host, {by_entry}) AS referrer_host_,
                argMinIf(source, {by_entry}) AS source_,
                argMinIf(medium, {by_entry}) AS medium_,
                argMinIf(has_campaign, {by_entry}) AS has_campaign_,
                argMinIf(campaign, {by_entry}) AS campaign_,
                max(has_exit) AS has_exit_,
                argMaxIf(exit_path, (exit_ms, seq), has_exit = 1) AS exit_path_,
                sum(pageviews) AS pageviews_, sum(events) AS events_,
                sum(cart_adds) AS cart_adds_, max(checkout) AS checkout_,
                max(purchase) AS purchase_,
                arraySum(arrayMap(x -> tupleElement(x, 2),
                    arraySort(groupArray((seq, revenue))))) AS revenue_,
                max(has_currency) AS has_currency_,
                argMinIf(currency, seq, has_currency = 1) AS currency_,
                argMin(browser, seq) AS browser_, argMin(os, seq) AS os_,
                argMin(device, seq) AS device_, max(has_country) AS has_country_,
                argMinIf(country, seq, has_country = 1) AS country_
            FROM session_deltas WHERE site = {s} AND id IN ({cand})
            GROUP BY id HAVING start_ >= {lo} AND start_ < {hi}
         ) AS d ANY LEFT JOIN (
            SELECT session_id AS id, sum(pv_engaged) AS engaged_, max(pv_scroll) AS scroll_
            FROM (
                SELECT session_id, pv, max(engaged_ms) AS pv_engaged, max(scroll) AS pv_scroll
                FROM engagement WHERE site = {s} AND session_id IN ({cand})
                GROUP BY session_id, pv
            ) GROUP BY session_id
         ) AS g USING id"
    )
}

/// The sessions in scope of a query (all [`SessRow`] columns).
fn sessions(q: &Query) -> String {
    let mut conds = Vec::new();
    for f in &q.filters {
        match f {
            Filter::Is(dim, v) => {
                conds.push(format!("lower({}) = lower({})", dim.as_str(), lit(v)))
            }
            Filter::Page(glob) => conds.push(format!(
                "id IN (SELECT session_id FROM events WHERE site = {} AND ts >= {} AND ts < {}
                 AND type = 'pageview' AND match(path, {}))",
                lit(&q.site),
                q.lo,
                ehi(q),
                lit(&glob_regex(glob))
            )),
        }
    }
    let base = merged(&q.site, q.lo, q.hi);
    if conds.is_empty() {
        format!("SELECT * FROM ({base})")
    } else {
        format!("SELECT * FROM ({base}) WHERE {}", conds.join(" AND "))
    }
}

fn ehi(q: &Query) -> i64 {
    q.hi.saturating_add(SESSION_SPAN_MS)
}

/// The condition on `events` columns of the events of the sessions in scope.
fn in_scope(q: &Query) -> String {
    format!(
        "site = {} AND ts >= {} AND ts < {} AND session_id IN (SELECT id FROM ({}))",
        lit(&q.site),
        q.lo,
        ehi(q),
        sessions(q)
    )
}

/// Per page view of the sessions that started in range: deepest scroll and engaged time.
fn engagement(q: &Query) -> String {
    format!(
        "SELECT pv, toInt64(max(scroll)) AS g_scroll, toInt64(max(engaged_ms)) AS g_engaged,
            toUInt8(1) AS g_has
         FROM engagement WHERE site = {} AND session_id IN ({}) GROUP BY pv",
        lit(&q.site),
        candidates(&q.site, q.lo, q.hi)
    )
}

/// The condition an event meets to match a step.
fn step_cond(step: &Step) -> String {
    match step {
        Step::Page(glob) => format!(
            "(type = 'pageview' AND match(path, {}))",
            lit(&glob_regex(glob))
        ),
        Step::Cart(a) => format!("(type = 'cart' AND action = {})", lit(a.as_str())),
        Step::Event(n) => format!("(type = 'custom' AND name = {})", lit(n)),
    }
}

fn first<T: Default>(v: Vec<T>) -> T {
    v.into_iter().next().unwrap_or_default()
}

/// `sum / n`, or 0 for no rows (SQLite's `coalesce(avg(x), 0)` over integers).
fn mean(sum: i64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        sum as f64 / n as f64
    }
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl ClickHouseReports {
    /// Connects to a ClickHouse store. The store must exist (the server or
    /// [`super::clickhouse::ClickHouseStore::open`] creates it).
    ///
    /// # Errors
    /// The server cannot be reached, or the store is not there.
    pub fn open(target: &Target) -> Result<ClickHouseReports, StoreError> {
        let db = target.client(true);
        let n: Vec<u64> = fetch(
            &db,
            "SELECT toUInt64(count()) FROM system.tables
             WHERE database = currentDatabase() AND name = 'schema_version'"
                .into(),
        )?;
        if first(n) == 0 {
            return Err(StoreError::Other(format!(
                "no Waymark store in ClickHouse database {}",
                target.database
            )));
        }
        Ok(ClickHouseReports { db })
    }

    fn rows<T>(&self, sql: String) -> Result<Vec<T>, StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead + Send + 'static,
    {
        fetch(&self.db, sql)
    }

    /// Cart events of the sessions in scope with that action (and `extra` condition), in the
    /// order they were stored.
    fn cart_events(
        &self,
        q: &Query,
        action: &str,
        extra: &str,
    ) -> Result<Vec<CartRow>, StoreError> {
        self.rows(format!(
            "SELECT session_id, currency, revenue, items FROM events
             WHERE {} AND type = 'cart' AND action = {} {extra} ORDER BY ts, seq",
            in_scope(q),
            lit(action)
        ))
    }

    /// Revenue per currency of the purchases in scope.
    fn revenue(&self, q: &Query) -> Result<BTreeMap<String, f64>, StoreError> {
        let mut totals: BTreeMap<String, Total> = BTreeMap::new();
        for e in self.cart_events(q, "purchase", "AND currency IS NOT NULL")? {
            let amount = revenue_of(&e);
            if let Some(c) = e.currency {
                totals.entry(c).or_default().add(amount);
            }
        }
        Ok(totals.into_iter().map(|(c, t)| (c, t.value())).collect())
    }

    fn products(&self, q: &Query, action: &str, limit: u32) -> Result<Vec<ProductRow>, StoreError> {
        struct Acc {
            name: Option<String>,
            quantity: i64,
            sessions: HashSet<u64>,
        }
        let mut by_id: HashMap<String, Acc> = HashMap::new();
        for e in self.cart_events(q, action, "")? {
            for item in items(e.items.as_deref()) {
                let Some(id) = item.get("id").and_then(|v| v.as_str()) else {
                    continue;
                };
                let acc = by_id.entry(id.to_string()).or_insert_with(|| Acc {
                    name: None,
                    quantity: 0,
                    sessions: HashSet::new(),
                });
                if let Some(n) = item.get("name").and_then(|v| v.as_str()) {
                    if acc.name.as_deref().is_none_or(|m| n > m) {
                        acc.name = Some(n.to_string());
                    }
                }
                acc.quantity += item
                    .get("quantity")
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0);
                acc.sessions.insert(e.session_id);
            }
        }
        let mut rows: Vec<(String, Acc)> = by_id.into_iter().collect();
        rows.sort_by(|(a, x), (b, y)| y.quantity.cmp(&x.quantity).then_with(|| a.cmp(b)));
        Ok(rows
            .into_iter()
            .take(limit as usize)
            .map(|(id, a)| ProductRow {
                id,
                name: a.name,
                quantity: u(a.quantity),
                sessions: a.sessions.len() as u64,
            })
            .collect())
    }

    /// Runs `sql` and hands each row to `f` as it arrives, until `f` answers false.
    fn each<T>(&self, sql: String, mut f: impl FnMut(T) -> bool) -> Result<(), StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead + Send + 'static,
    {
        log_sql(&sql);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<T, StoreError>>(256);
        let db = self.db.clone();
        // The query task stops when the receiver is dropped (the reader went away).
        let started = run(async move {
            let task = async move {
                let mut cursor = match db.query_raw(&sql).fetch::<T>() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx
                            .send(Err(StoreError::Other(format!("clickhouse: {e}"))))
                            .await;
                        return;
                    }
                };
                loop {
                    let next = match cursor.next().await {
                        Ok(Some(row)) => Ok(row),
                        Ok(None) => return,
                        Err(e) => Err(StoreError::Other(format!("clickhouse: {e}"))),
                    };
                    let failed = next.is_err();
                    if tx.send(next).await.is_err() || failed {
                        return;
                    }
                }
            };
            tokio::spawn(task);
            Ok(())
        });
        started?;
        while let Some(r) = rx.blocking_recv() {
            if !f(r?) {
                break;
            }
        }
        Ok(())
    }
}

impl Reports for ClickHouseReports {
    fn site_exists(&mut self, site: &str) -> Result<bool, StoreError> {
        let n: Vec<u64> = self.rows(format!(
            "SELECT toUInt64(count()) FROM sites WHERE id = {}",
            lit(site)
        ))?;
        Ok(first(n) > 0)
    }

    fn token_valid(&mut self, hash: [u8; 32]) -> Result<bool, StoreError> {
        token_known(&self.db, hash)
    }

    fn open_session_of(
        &mut self,
        site: &str,
        visitors: &[u64],
        since: i64,
    ) -> Result<Option<StoredSession>, StoreError> {
        if visitors.is_empty() {
            return Ok(None);
        }
        // A session id starts with its creation second, which is at most two days after its
        // start (see `SessionDelta::id`), and a session whose last event is at or after `since`
        // started at most a day (the length cap) before it: so its id is above this bound,
        // which is a range of the primary key `(site, id)` rather than a scan of the site.
        let lowest_second = u64::try_from(since / 1000 - 2 * 86_400).unwrap_or(0);
        let lowest_id = (lowest_second & 0x7fff_ffff) << 32;
        let keys = visitors
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        // Every delta of a session carries the key it is filed under, so filtering deltas by
        // visitor keeps whole sessions.
        let rows: Vec<(u64, u64, i64, i64, u8, u64)> = self.rows(format!(
            "SELECT id, any(visitor), toInt64(min(start_ms)), toInt64(max(end_ms)),
                toUInt8(max(has_fp)), argMinIf(campaign_fp, seq, has_fp = 1)
             FROM session_deltas
             PREWHERE site = {site} AND id >= {lowest_id} AND visitor IN ({keys})
             GROUP BY id HAVING max(end_ms) >= {since}
             ORDER BY max(end_ms) DESC, id DESC LIMIT 1",
            site = lit(site)
        ))?;
        Ok(rows
            .into_iter()
            .next()
            .map(|(id, visitor, start, last, has_fp, fp)| StoredSession {
                site: site.to_string(),
                visitor,
                id,
                start,
                last,
                campaign_fp: (has_fp == 1).then_some(fp),
            }))
    }

    fn totals(&mut self, q: &Query) -> Result<Totals, StoreError> {
        let (visitors, sessions, pageviews, bounces, duration, purchases): (
            u64,
            u64,
            u64,
            u64,
            i64,
            u64,
        ) = first(self.rows(format!(
            "SELECT toUInt64(uniqExact(visitor)), toUInt64(count()), toUInt64(sum(pageviews)),
                toUInt64(countIf(pageviews = 1 AND engaged_ms < 10000)),
                toInt64(sum(end_ms - start_ms)), toUInt64(countIf(purchase > 0))
             FROM ({})",
            sessions(q)
        ))?);
        let (scroll, views): (i64, u64) = first(self.rows(format!(
            "SELECT toInt64(sum(g_scroll)), toUInt64(count())
             FROM (SELECT pv FROM events WHERE {} AND type = 'pageview') AS v
             ALL INNER JOIN ({}) AS g USING pv",
            in_scope(q),
            engagement(q)
        ))?);
        Ok(Totals {
            visitors,
            sessions,
            pageviews,
            bounce_rate: report::ratio(bounces, sessions),
            avg_duration_s: mean(duration, sessions) / 1000.0,
            avg_scroll: mean(scroll, views),
            conversion_rate: report::ratio(purchases, sessions),
            revenue: self.revenue(q)?,
        })
    }

    fn overview(&mut self, q: &Query) -> Result<Overview, StoreError> {
        let totals = self.totals(q)?;
        let (dlo, dhi) = q.utc_days();
        let mut dropped: BTreeMap<String, u64> = ["bot", "rejected", "stale"]
            .into_iter()
            .map(|r| (r.to_string(), 0))
            .collect();
        let rows: Vec<(String, u64)> = self.rows(format!(
            "SELECT reason, toUInt64(sum(events)) FROM dropped
             WHERE site = {} AND day >= {dlo} AND day <= {dhi} GROUP BY reason",
            lit(&q.site)
        ))?;
        for (reason, n) in rows {
            *dropped.entry(reason).or_default() += n;
        }
        Ok(Overview { totals, dropped })
    }

    fn pages(&mut self, q: &Query, limit: u32) -> Result<Vec<PageRow>, StoreError> {
        let sel = sessions(q);
        let mut ends: HashMap<(bool, String), u64> = HashMap::new();
        for (exit, col) in [(false, "entry_path"), (true, "exit_path")] {
            let rows: Vec<(Option<String>, u64)> = self.rows(format!(
                "SELECT {col}, toUInt64(count()) FROM ({sel}) WHERE {col} IS NOT NULL GROUP BY {col}"
            ))?;
            for (path, n) in rows {
                if let Some(p) = path {
                    ends.insert((exit, p), n);
                }
            }
        }
        let rows: Vec<(String, u64, u64, i64, i64, u64)> = self.rows(format!(
            "SELECT path, toUInt64(count()), toUInt64(uniqExact(visitor)),
                toInt64(sumIf(g_scroll, g_has = 1)), toInt64(sumIf(g_engaged, g_has = 1)),
                toUInt64(countIf(g_has = 1))
             FROM (SELECT pv, path, visitor FROM events WHERE {} AND type = 'pageview') AS v
             ANY LEFT JOIN ({}) AS g USING pv
             GROUP BY path ORDER BY count() DESC, path LIMIT {limit}",
            in_scope(q),
            engagement(q)
        ))?;
        Ok(rows
            .into_iter()
            .map(|(path, pageviews, visitors, scroll, engaged, n)| {
                let entries = ends.get(&(false, path.clone())).copied().unwrap_or(0);
                let exits = ends.get(&(true, path.clone())).copied().unwrap_or(0);
                PageRow {
                    pageviews,
                    visitors,
                    entries,
                    exits,
                    exit_rate: report::ratio(exits, pageviews),
                    avg_scroll: mean(scroll, n),
                    avg_engaged_s: mean(engaged, n) / 1000.0,
                    path,
                }
            })
            .collect())
    }

    fn sources(&mut self, q: &Query, limit: u32) -> Result<Vec<SourceRow>, StoreError> {
        type Key = SourceKey;
        #[derive(Row, Deserialize)]
        struct KeyRow {
            id: u64,
            source: String,
            medium: String,
            campaign: Option<String>,
            referrer: Option<String>,
        }
        #[derive(Row, Deserialize)]
        struct CountRow {
            source: String,
            medium: String,
            campaign: Option<String>,
            referrer: Option<String>,
            visitors: u64,
            sessions: u64,
            buyers: u64,
        }
        let sel = sessions(q);
        let keys: Vec<KeyRow> = self.rows(format!(
            "SELECT id, ifNull(source, '(none)'), ifNull(medium, '(none)'), campaign,
                    referrer_host
                 FROM ({sel}) WHERE purchase > 0"
        ))?;
        let keys: HashMap<u64, Key> = keys
            .into_iter()
            .map(|k| (k.id, (k.source, k.medium, k.campaign, k.referrer)))
            .collect();
        let mut revenue: HashMap<Key, BTreeMap<String, Total>> = HashMap::new();
        for e in self.cart_events(q, "purchase", "AND currency IS NOT NULL")? {
            let amount = revenue_of(&e);
            if let (Some(k), Some(c)) = (keys.get(&e.session_id), e.currency) {
                revenue
                    .entry(k.clone())
                    .or_default()
                    .entry(c)
                    .or_default()
                    .add(amount);
            }
        }
        let rows: Vec<CountRow> = self.rows(format!(
            "SELECT ifNull(source, '(none)') AS k_source, ifNull(medium, '(none)') AS k_medium,
                    campaign AS k_campaign, referrer_host AS k_referrer,
                    toUInt64(uniqExact(visitor)), toUInt64(count()),
                    toUInt64(countIf(purchase > 0))
                 FROM ({sel}) GROUP BY k_source, k_medium, k_campaign, k_referrer
                 ORDER BY count() DESC, k_source, k_medium, k_campaign NULLS FIRST,
                    k_referrer NULLS FIRST
                 LIMIT {limit}"
        ))?;
        Ok(rows
            .into_iter()
            .map(
                |CountRow {
                     source,
                     medium,
                     campaign,
                     referrer,
                     visitors,
                     sessions: n,
                     buyers,
                 }| {
                    let k = (source, medium, campaign, referrer);
                    SourceRow {
                        revenue: revenue
                            .get(&k)
                            .map(|m| m.iter().map(|(c, t)| (c.clone(), t.value())).collect())
                            .unwrap_or_default(),
                        source: k.0,
                        medium: k.1,
                        campaign: k.2,
                        referrer_host: k.3,
                        visitors,
                        sessions: n,
                        conversion_rate: report::ratio(buyers, n),
                    }
                },
            )
            .collect())
    }

    fn breakdown(
        &mut self,
        q: &Query,
        dim: Dim,
        limit: u32,
    ) -> Result<Vec<BreakdownRow>, StoreError> {
        let col = dim.as_str();
        let rows: Vec<(String, u64, u64)> = self.rows(format!(
            "SELECT ifNull({col}, '(unknown)') AS value, toUInt64(uniqExact(visitor)),
                toUInt64(count())
             FROM ({}) GROUP BY value ORDER BY count() DESC, value LIMIT {limit}",
            sessions(q)
        ))?;
        Ok(rows
            .into_iter()
            .map(|(value, visitors, sessions)| BreakdownRow {
                value,
                visitors,
                sessions,
            })
            .collect())
    }

    fn funnel(&mut self, q: &Query, steps: &[Step]) -> Result<Vec<FunnelStep>, StoreError> {
        let any: Vec<String> = steps.iter().map(step_cond).collect();
        let cond = if any.is_empty() {
            "0".to_string()
        } else {
            any.join(" OR ")
        };
        let rows: Vec<StepRow> = self.rows(format!(
            "SELECT session_id, ts, type, path, action, name FROM events
                 WHERE {} AND ({cond}) ORDER BY session_id, ts, seq",
            in_scope(q)
        ))?;
        let events: Vec<FunnelEvent> = rows
            .into_iter()
            .map(|(session, ts, kind, path, action, name)| FunnelEvent {
                session,
                ts,
                kind,
                path,
                action,
                name,
            })
            .collect();
        Ok(report::funnel(steps, &events))
    }

    fn scroll(&mut self, q: &Query, page: Option<&str>) -> Result<ScrollReport, StoreError> {
        let page = page.map_or(String::new(), |p| {
            format!("AND match(path, {})", lit(&glob_regex(p)))
        });
        let counts: Vec<(i64, u64)> = self.rows(format!(
            "SELECT g_scroll, toUInt64(count())
             FROM (SELECT pv FROM events WHERE {} AND type = 'pageview' {page}) AS v
             ALL INNER JOIN ({}) AS g USING pv
             GROUP BY g_scroll",
            in_scope(q),
            engagement(q)
        ))?;
        Ok(report::scroll_report(&counts))
    }

    fn cart(&mut self, q: &Query, limit: u32) -> Result<CartReport, StoreError> {
        let (adds, checkouts, purchases, abandoned): (u64, u64, u64, u64) =
            first(self.rows(format!(
                "SELECT toUInt64(countIf(cart_adds > 0)), toUInt64(countIf(checkout > 0)),
                    toUInt64(countIf(purchase > 0)),
                    toUInt64(countIf(cart_adds > 0 AND purchase = 0))
                 FROM ({})",
                sessions(q)
            ))?);
        let orders: Vec<(String, u64)> = self.rows(format!(
            "SELECT ifNull(currency, '(none)') AS c, toUInt64(count()) FROM events
             WHERE {} AND type = 'cart' AND action = 'purchase' GROUP BY c",
            in_scope(q)
        ))?;
        let orders: BTreeMap<String, u64> = orders.into_iter().collect();
        let revenue = self.revenue(q)?;
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
            top_added: self.products(q, "add", limit)?,
            top_bought: self.products(q, "purchase", limit)?,
            orders,
            revenue,
            aov,
        })
    }

    fn realtime(&mut self, q: &Query) -> Result<Realtime, StoreError> {
        const MINUTE: i64 = 60_000;
        let now = q.now;
        let w = q.window(now - SESSION_SPAN_MS, now + 1);
        let scope = in_scope(&w);
        let since = now - 5 * MINUTE;
        let base = now.div_euclid(MINUTE) * MINUTE - 29 * MINUTE;
        let plo = now - 60 * MINUTE;
        let visitors: u64 = first(self.rows(format!(
            "SELECT toUInt64(uniqExact(visitor)) FROM events
             WHERE {scope} AND ts >= {since} AND ts <= {now}"
        ))?);
        // The page of each active visitor's latest page view (the first stored of a tie).
        let pages: Vec<(String, u64)> = self.rows(format!(
            "SELECT last_path, toUInt64(count()) FROM (
                SELECT visitor, argMax(path, (ts, -seq)) AS last_path FROM events
                WHERE {scope} AND ts >= {plo} AND ts <= {now} AND type = 'pageview'
                  AND visitor IN (SELECT visitor FROM events
                                  WHERE {scope} AND ts >= {since} AND ts <= {now})
                GROUP BY visitor)
             GROUP BY last_path ORDER BY count() DESC, last_path LIMIT 100"
        ))?;
        let counts: Vec<(i64, u64)> = self.rows(format!(
            "SELECT toInt64(intDiv(ts - {base}, 60000)) AS m, toUInt64(count()) FROM events
             WHERE {scope} AND ts >= {base} AND ts <= {now} GROUP BY m"
        ))?;
        let counts: HashMap<i64, u64> = counts.into_iter().collect();
        Ok(Realtime {
            visitors,
            pages: pages
                .into_iter()
                .map(|(path, visitors)| PageNow { path, visitors })
                .collect(),
            per_minute: (0..30)
                .map(|m| Minute {
                    ts: base + m * MINUTE,
                    events: counts.get(&m).copied().unwrap_or(0),
                })
                .collect(),
        })
    }

    fn sessions(&mut self, q: &Query, limit: u32) -> Result<Vec<SessionRecord>, StoreError> {
        let rows: Vec<SessRow> = self.rows(format!(
            "SELECT * FROM ({}) ORDER BY start_ms DESC, id DESC LIMIT {limit}",
            sessions(q)
        ))?;
        Ok(rows.into_iter().map(|r| r.record(&q.tz)).collect())
    }

    fn paths(
        &mut self,
        q: &Query,
        start: Option<&str>,
        depth: u32,
        limit: u32,
    ) -> Result<PathsReport, StoreError> {
        let mut walk = PathWalk::new(start, depth);
        let mut current: Option<u64> = None;
        let mut pages: Vec<String> = Vec::new();
        self.each(
            format!(
                "SELECT session_id, path FROM events WHERE {} AND type = 'pageview'
                 ORDER BY session_id, ts, seq",
                in_scope(q)
            ),
            |(session, path): (u64, String)| {
                if current != Some(session) {
                    walk.session(&pages);
                    pages.clear();
                    current = Some(session);
                }
                pages.push(path);
                true
            },
        )?;
        walk.session(&pages);
        Ok(walk.finish(limit))
    }

    fn attribution(
        &mut self,
        q: &Query,
        goal: &Step,
        model: Model,
    ) -> Result<AttributionReport, StoreError> {
        let scope = in_scope(q);
        let conv: Vec<(u64, u64, i64)> = self.rows(format!(
            "SELECT id, visitor, start_ms FROM ({})
             WHERE id IN (SELECT session_id FROM events WHERE {scope} AND {})
             ORDER BY start_ms, id",
            sessions(q),
            step_cond(goal)
        ))?;
        let mut revenue: HashMap<u64, BTreeMap<String, Total>> = HashMap::new();
        if *goal == Step::Cart(CartAction::Purchase) && !conv.is_empty() {
            let converting: HashSet<u64> = conv.iter().map(|c| c.0).collect();
            for e in self.cart_events(q, "purchase", "AND currency IS NOT NULL")? {
                if !converting.contains(&e.session_id) {
                    continue;
                }
                let amount = revenue_of(&e);
                if let Some(c) = e.currency {
                    revenue
                        .entry(e.session_id)
                        .or_default()
                        .entry(c)
                        .or_default()
                        .add(amount);
                }
            }
        }
        let visitors: Vec<String> = conv
            .iter()
            .map(|c| c.1.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let conversions: Vec<Conversion> = conv
            .into_iter()
            .map(|(session, visitor, start)| Conversion {
                session,
                visitor,
                start,
                revenue: revenue
                    .remove(&session)
                    .map(|m| m.into_iter().map(|(c, t)| (c, t.value())).collect())
                    .unwrap_or_default(),
            })
            .collect();
        let touches = if visitors.is_empty() {
            Vec::new()
        } else {
            // A visitor key lives one (UTC) day, so its sessions start within a day of each
            // other: the look-back is a day before the range, whatever the filters.
            let tlo = q.lo.saturating_sub(SESSION_SPAN_MS);
            let rows: Vec<(u64, u64, i64, String, String)> = self.rows(format!(
                "SELECT visitor, id, start_ms, ifNull(source, '(none)'), ifNull(medium, '(none)')
                 FROM ({}) WHERE visitor IN ({})",
                merged(&q.site, tlo, q.hi),
                visitors.join(", ")
            ))?;
            rows.into_iter()
                .map(|(visitor, session, start, source, medium)| Touch {
                    visitor,
                    session,
                    start,
                    source,
                    medium,
                })
                .collect()
        };
        Ok(report::attribution(goal, model, &conversions, &touches))
    }

    fn export(
        &mut self,
        q: &Query,
        table: Table,
        row: &mut dyn FnMut(Vec<serde_json::Value>) -> bool,
    ) -> Result<(), StoreError> {
        use serde_json::Value as J;
        match table {
            Table::Sessions => self.each(
                format!("SELECT * FROM ({}) ORDER BY start_ms, id", sessions(q)),
                |r: SessRow| row(report::session_row(&r.record(&q.tz))),
            ),
            Table::Events => {
                let text = |v: Option<String>| v.map_or(J::Null, J::String);
                let json = |v: Option<String>| match v {
                    None => J::Null,
                    Some(t) => serde_json::from_str(&t).unwrap_or(J::String(t)),
                };
                self.each(
                    format!(
                        "SELECT session_id, visitor, ts, type, pv, host, path, title, scroll,
                            engaged_ms, action, order_id, revenue, currency, items, name, props
                         FROM events WHERE {} ORDER BY ts, seq",
                        in_scope(q)
                    ),
                    |e: EventRow| {
                        row(vec![
                            J::String(format!("{:016x}", e.session_id)),
                            J::String(format!("{:016x}", e.visitor)),
                            J::from(e.ts),
                            J::String(e.kind),
                            J::String(e.pv),
                            J::String(e.host),
                            J::String(e.path),
                            text(e.title),
                            e.scroll.map_or(J::Null, J::from),
                            e.engaged_ms.map_or(J::Null, J::from),
                            text(e.action),
                            text(e.order_id),
                            e.revenue.map_or(J::Null, J::from),
                            text(e.currency),
                            json(e.items),
                            text(e.name),
                            json(e.props),
                        ])
                    },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_anchored_literal_patterns() {
        assert_eq!(glob_regex("/p/*"), "^/p/.*$");
        assert_eq!(glob_regex("/a?[b].c"), r"^/a\?\[b\]\.c$");
    }

    #[test]
    fn totals_sum_like_sqlite() {
        let mut t = Total::default();
        for v in [0.1, 0.2, 0.3] {
            t.add(v);
        }
        assert_eq!(t.value(), 0.6);
        assert_eq!(Total::default().value(), 0.0);
    }
}
