//! The report API's pure half: parsing report parameters (dates, time zone, filters, funnel
//! steps), the report result types, the funnel walk, and rendering answers as JSON or as text
//! tables. The HTTP route and `waymark report` both go through [`answer`], so the API and the CLI
//! cannot disagree.
//!
//! Architecture Invariant: no SQL and no I/O here. Queries live behind [`crate::store::Reports`];
//! this module decides *what* is asked and how the answer looks.

use crate::store::{Reports, StoreError};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::ToSpan as _;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use waymark_protocol::CartAction;

/// Why a report could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A query parameter is missing or invalid; `field` names it.
    #[error("{message}")]
    BadParam {
        field: &'static str,
        message: String,
    },
    #[error("unknown report {0:?}")]
    UnknownReport(String),
    #[error("unknown site")]
    UnknownSite,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn bad(field: &'static str, message: impl Into<String>) -> ReportError {
    ReportError::BadParam {
        field,
        message: message.into(),
    }
}

/// Every report name, in the order `--help` lists them.
pub const REPORTS: &[&str] = &[
    "overview",
    "timeseries",
    "pages",
    "sources",
    "devices",
    "browsers",
    "os",
    "countries",
    "funnel",
    "scroll",
    "cart",
    "realtime",
    "sessions",
];

/// A session attribute a filter or breakdown can name; the store maps it to its column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    Source,
    Medium,
    Campaign,
    Device,
    Browser,
    Os,
    Country,
}

impl Dim {
    /// The name used in `filter=` and in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Source => "source",
            Dim::Medium => "medium",
            Dim::Campaign => "campaign",
            Dim::Device => "device",
            Dim::Browser => "browser",
            Dim::Os => "os",
            Dim::Country => "country",
        }
    }
}

/// One `filter=` parameter. Filters combine with AND.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// A session attribute equals the value (ASCII case-insensitive).
    Is(Dim, String),
    /// The session viewed a page whose path matches the glob.
    Page(String),
}

impl Filter {
    fn parse(s: &str) -> Result<Filter, ReportError> {
        let (key, value) = s
            .split_once(':')
            .filter(|(_, v)| !v.is_empty())
            .ok_or_else(|| bad("filter", format!("filter: expected key:value, got {s:?}")))?;
        let dim = match key {
            "page" => return Ok(Filter::Page(value.to_string())),
            "source" => Dim::Source,
            "medium" => Dim::Medium,
            "campaign" => Dim::Campaign,
            "device" => Dim::Device,
            "browser" => Dim::Browser,
            "os" => Dim::Os,
            "country" => Dim::Country,
            other => {
                return Err(bad(
                    "filter",
                    format!("filter: unknown key {other:?} (page, source, medium, campaign, device, browser, os, country)"),
                ))
            }
        };
        Ok(Filter::Is(dim, value.to_string()))
    }
}

/// What a report is about: the site, the sessions started in `[lo, hi)` (ms), narrowed by filters.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub site: String,
    pub from: Date,
    pub to: Date,
    pub tz: TimeZone,
    /// Start of `from` in `tz`, ms since the epoch (inclusive).
    pub lo: i64,
    /// Start of the day after `to` in `tz`, ms since the epoch (exclusive).
    pub hi: i64,
    pub filters: Vec<Filter>,
    /// The time the report is asked at (ms), for `realtime`.
    pub now: i64,
}

impl Query {
    /// A query over the days `from..=to` in `tz`.
    ///
    /// # Errors
    /// A day cannot be placed in the time zone (outside jiff's range).
    pub fn new(
        site: &str,
        from: Date,
        to: Date,
        tz: TimeZone,
        filters: Vec<Filter>,
        now: i64,
    ) -> Result<Query, ReportError> {
        let lo = day_start(from, &tz).ok_or_else(|| bad("from", "from: out of range"))?;
        let next = to.tomorrow().map_err(|_| bad("to", "to: out of range"))?;
        let hi = day_start(next, &tz).ok_or_else(|| bad("to", "to: out of range"))?;
        Ok(Query {
            site: site.to_string(),
            from,
            to,
            tz,
            lo,
            hi,
            filters,
            now,
        })
    }

    /// The same query over `[lo, hi)` instead (a time-series bucket, the realtime window).
    pub fn window(&self, lo: i64, hi: i64) -> Query {
        Query {
            lo,
            hi,
            ..self.clone()
        }
    }

    /// The UTC day numbers (days since the epoch) with the same dates as `from` and `to`:
    /// dropped events are counted per UTC day only.
    pub fn utc_days(&self) -> (i64, i64) {
        let epoch = Date::constant(1970, 1, 1);
        let days = |d: Date| i64::from((d - epoch).get_days());
        (days(self.from), days(self.to))
    }
}

/// The first instant of a local day, in ms (after a DST gap at midnight, its first real instant).
fn day_start(d: Date, tz: &TimeZone) -> Option<i64> {
    d.to_zoned_datetime(tz.clone())
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

/// `interval=` of the time series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

/// One time-series bucket: its label in the report's zone and its `[lo, hi)` in ms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub label: String,
    pub lo: i64,
    pub hi: i64,
}

/// The buckets covering a query's range: local days, or absolute hours from local midnight
/// (a DST day has 23 or 25 of them).
pub fn buckets(q: &Query, interval: Interval) -> Vec<Bucket> {
    let mut out = Vec::new();
    let mut day = q.from;
    while day <= q.to {
        let Ok(next) = day.tomorrow() else { break };
        let (Some(lo), Some(hi)) = (day_start(day, &q.tz), day_start(next, &q.tz)) else {
            break;
        };
        match interval {
            Interval::Day => out.push(Bucket {
                label: day.to_string(),
                lo,
                hi,
            }),
            Interval::Hour => {
                let mut t = lo;
                while t < hi {
                    let label = jiff::Timestamp::from_millisecond(t)
                        .map(|ts| {
                            ts.to_zoned_datetime(q.tz.clone())
                                .strftime("%Y-%m-%dT%H:%M%:z")
                                .to_string()
                        })
                        .unwrap_or_default();
                    let end = (t + 3_600_000).min(hi);
                    out.push(Bucket {
                        label,
                        lo: t,
                        hi: end,
                    });
                    t = end;
                }
            }
        }
        day = next;
    }
    out
}

/// A funnel step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A page view whose path matches the glob.
    Page(String),
    Cart(CartAction),
    /// A custom event of that name.
    Event(String),
}

impl Step {
    fn parse(s: &str) -> Result<Step, ReportError> {
        let (kind, arg) = s
            .split_once(':')
            .filter(|(_, a)| !a.is_empty())
            .ok_or_else(|| bad("step", format!("step: expected kind:value, got {s:?}")))?;
        match kind {
            "page" => Ok(Step::Page(arg.to_string())),
            "cart" => CartAction::parse(arg).map(Step::Cart).ok_or_else(|| {
                bad(
                    "step",
                    format!("step: unknown cart action {arg:?} (add, remove, view_cart, checkout, purchase)"),
                )
            }),
            "event" => Ok(Step::Event(arg.to_string())),
            other => Err(bad(
                "step",
                format!("step: unknown kind {other:?} (page, cart, event)"),
            )),
        }
    }

    /// Whether an event matches this step.
    pub fn matches(&self, e: &FunnelEvent) -> bool {
        match self {
            Step::Page(glob) => e.kind == "pageview" && glob_match(glob, &e.path),
            Step::Cart(a) => e.kind == "cart" && e.action.as_deref() == Some(a.as_str()),
            Step::Event(name) => e.kind == "custom" && e.name.as_deref() == Some(name.as_str()),
        }
    }

    /// The step as written in the query (`page:/products/*`).
    pub fn label(&self) -> String {
        match self {
            Step::Page(g) => format!("page:{g}"),
            Step::Cart(a) => format!("cart:{}", a.as_str()),
            Step::Event(n) => format!("event:{n}"),
        }
    }
}

/// Glob match of a URL path: `*` matches any run of characters (including `/`), everything else
/// matches itself.
///
/// # Examples
/// ```
/// use waymark_collector::report::glob_match;
/// assert!(glob_match("/products/*", "/products/mug"));
/// assert!(!glob_match("/products/*", "/cart"));
/// ```
pub fn glob_match(glob: &str, path: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(x) => x,
        None => return path.is_empty(),
    };
    let Some(mut tail) = path.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return tail.is_empty();
    };
    for part in middle {
        match tail.find(part) {
            Some(i) => tail = &tail[i + part.len()..],
            None => return false,
        }
    }
    tail.len() >= last.len() && tail.ends_with(last)
}

/// One event of a session as the funnel sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct FunnelEvent {
    pub session: u64,
    pub ts: i64,
    pub kind: String,
    pub path: String,
    pub action: Option<String>,
    pub name: Option<String>,
}

/// One step of a funnel answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunnelStep {
    pub step: String,
    pub sessions: u64,
    /// Share of the sessions of step 1 that reached this step.
    pub conversion: f64,
    /// Sessions that reached this step but not the next (0 for the last step).
    pub drop_off: u64,
    /// `drop_off` / `sessions`.
    pub drop_off_rate: f64,
    /// Median seconds from this step to the next, over sessions that reached the next.
    pub median_s: Option<f64>,
}

/// Walks each session's events in time order (events must come grouped by session, each group
/// sorted by time) and advances through the steps: a step counts only after the previous one
/// was reached, steps need not be adjacent, and one event advances at most one step. Taking the
/// earliest match of each step reaches the deepest step any ordering could.
pub fn funnel(steps: &[Step], events: &[FunnelEvent]) -> Vec<FunnelStep> {
    let mut reached = vec![0u64; steps.len()];
    let mut gaps: Vec<Vec<i64>> = vec![Vec::new(); steps.len()];
    for session in events.chunk_by(|a, b| a.session == b.session) {
        let mut times: Vec<i64> = Vec::with_capacity(steps.len());
        for e in session {
            match steps.get(times.len()) {
                Some(step) if step.matches(e) => times.push(e.ts),
                Some(_) => {}
                None => break,
            }
        }
        for (k, t) in times.iter().enumerate() {
            reached[k] += 1;
            if let Some(next) = times.get(k + 1) {
                gaps[k].push(next - t);
            }
        }
    }
    let first = reached.first().copied().unwrap_or(0);
    steps
        .iter()
        .enumerate()
        .map(|(k, step)| {
            let sessions = reached[k];
            let next = reached.get(k + 1).copied().unwrap_or(sessions);
            let drop_off = sessions - next;
            FunnelStep {
                step: step.label(),
                sessions,
                conversion: ratio(sessions, first),
                drop_off,
                drop_off_rate: ratio(drop_off, sessions),
                median_s: median(&mut gaps[k]).map(|ms| ms / 1000.0),
            }
        })
        .collect()
}

/// The median of a list (mean of the middle two for an even length).
pub fn median(v: &mut [i64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m] as f64
    } else {
        (v[m - 1] as f64 + v[m] as f64) / 2.0
    })
}

/// `a / b`, 0 when `b` is 0 (an empty range is a zero report).
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The headline metrics of a set of sessions (overview, and each time-series point).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub visitors: u64,
    pub sessions: u64,
    pub pageviews: u64,
    /// Sessions with one page view and under 10 s engaged, over sessions.
    pub bounce_rate: f64,
    pub avg_duration_s: f64,
    /// Mean of the deepest scroll (%) of each page view that reported engagement.
    pub avg_scroll: f64,
    /// Sessions with a purchase over sessions.
    pub conversion_rate: f64,
    /// Purchase revenue per currency.
    pub revenue: BTreeMap<String, f64>,
}

/// The overview: totals plus what was not counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Overview {
    #[serde(flatten)]
    pub totals: Totals,
    /// Events not counted, by reason (`bot`, `rejected`, `stale`), over the UTC days with the
    /// range's dates.
    pub dropped: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PageRow {
    pub path: String,
    pub pageviews: u64,
    pub visitors: u64,
    pub entries: u64,
    pub exits: u64,
    /// Exits over page views.
    pub exit_rate: f64,
    pub avg_scroll: f64,
    pub avg_engaged_s: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SourceRow {
    pub source: String,
    pub medium: String,
    pub campaign: Option<String>,
    pub referrer_host: Option<String>,
    pub visitors: u64,
    pub sessions: u64,
    pub conversion_rate: f64,
    pub revenue: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BreakdownRow {
    pub value: String,
    pub visitors: u64,
    pub sessions: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ScrollReport {
    /// Page views (that reported engagement) matching the page glob.
    pub pageviews: u64,
    /// Share of them reaching 25, 50, 75 and 100 %.
    pub reached: BTreeMap<String, f64>,
    /// Ten buckets `[0,10) … [90,100]`.
    pub histogram: Vec<ScrollBucket>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ScrollBucket {
    pub from: u8,
    pub to: u8,
    pub pageviews: u64,
    pub share: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProductRow {
    pub id: String,
    pub name: Option<String>,
    pub quantity: u64,
    pub sessions: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CartReport {
    pub sessions_with_add: u64,
    pub sessions_with_checkout: u64,
    pub sessions_with_purchase: u64,
    /// Sessions with an add but no purchase, over sessions with an add.
    pub abandonment_rate: f64,
    pub orders: BTreeMap<String, u64>,
    pub revenue: BTreeMap<String, f64>,
    /// Average order value: revenue / orders, per currency.
    pub aov: BTreeMap<String, f64>,
    pub top_added: Vec<ProductRow>,
    pub top_bought: Vec<ProductRow>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PageNow {
    pub path: String,
    pub visitors: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Minute {
    /// Start of the minute, ms since the epoch.
    pub ts: i64,
    pub events: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Realtime {
    /// Visitors with an event in the last 5 minutes.
    pub visitors: u64,
    /// Their latest page, counted.
    pub pages: Vec<PageNow>,
    /// Events in each of the last 30 minutes, oldest first (the last one is still running).
    pub per_minute: Vec<Minute>,
}

/// The session record of SESSIONS.md. Ids and keys are hex strings (JavaScript numbers cannot
/// hold 64 bits).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SessionRecord {
    pub id: String,
    pub visitor: String,
    pub day: String,
    pub start: i64,
    pub end: i64,
    pub duration_s: f64,
    pub entry_path: Option<String>,
    pub exit_path: Option<String>,
    pub pageviews: u64,
    pub events: u64,
    pub bounce: bool,
    pub max_scroll: u8,
    pub engaged_s: f64,
    pub referrer_host: Option<String>,
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub browser: String,
    pub os: String,
    pub device: String,
    pub country: Option<String>,
    pub cart_adds: u64,
    pub checkout: bool,
    pub purchase: bool,
    pub revenue: f64,
    pub currency: Option<String>,
}

/// Metrics a time series can be limited to with `metric=`.
pub const METRICS: &[&str] = &[
    "visitors",
    "sessions",
    "pageviews",
    "bounce_rate",
    "avg_duration_s",
    "avg_scroll",
    "conversion_rate",
    "revenue",
];

/// A parsed report request.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Overview,
    Timeseries {
        interval: Interval,
        metrics: Vec<String>,
    },
    Pages {
        limit: u32,
    },
    Sources {
        limit: u32,
    },
    Breakdown {
        dim: Dim,
        limit: u32,
    },
    Funnel {
        steps: Vec<Step>,
    },
    Scroll {
        page: Option<String>,
    },
    Cart {
        limit: u32,
    },
    Realtime,
    Sessions {
        limit: u32,
    },
}

/// Longest range a report may span, and an hourly time series.
const MAX_DAYS: i32 = 3_660;
const MAX_HOURLY_DAYS: i32 = 93;

fn parse_date(field: &'static str, s: &str) -> Result<Date, ReportError> {
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    let parsed = if shaped { s.parse::<Date>().ok() } else { None };
    parsed.ok_or_else(|| {
        bad(
            field,
            format!("{field}: expected a date YYYY-MM-DD, got {s:?}"),
        )
    })
}

fn parse_limit(s: Option<&str>, default: u32) -> Result<u32, ReportError> {
    match s {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad("limit", format!("limit: expected 1-1000, got {v:?}"))),
    }
}

/// Parses a report name and its query parameters (`from`, `to`, `tz`, `filter`, and the
/// report's own). Without `from`/`to` the range is the last 30 days up to today in `tz`.
///
/// # Errors
/// [`ReportError::UnknownReport`], or [`ReportError::BadParam`] naming the parameter.
pub fn parse(
    site: &str,
    report: &str,
    params: &[(String, String)],
    now: i64,
) -> Result<(Query, Request), ReportError> {
    if !REPORTS.contains(&report) {
        return Err(ReportError::UnknownReport(report.to_string()));
    }
    let mut one: BTreeMap<&str, &str> = BTreeMap::new();
    let (mut filters, mut steps, mut metrics) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in params {
        match k.as_str() {
            "filter" => filters.push(Filter::parse(v)?),
            "step" => steps.push(Step::parse(v)?),
            "metric" => {
                for m in v.split(',').filter(|m| !m.is_empty()) {
                    if !METRICS.contains(&m) {
                        return Err(bad(
                            "metric",
                            format!("metric: unknown {m:?} (one of {})", METRICS.join(", ")),
                        ));
                    }
                    metrics.push(m.to_string());
                }
            }
            "from" | "to" | "tz" | "interval" | "page" | "limit" => {
                if one.insert(k.as_str(), v.as_str()).is_some() {
                    let field = ["from", "to", "tz", "interval", "page", "limit"]
                        .into_iter()
                        .find(|f| f == k)
                        .unwrap_or("query");
                    return Err(bad(field, format!("{k}: given more than once")));
                }
            }
            other => {
                return Err(bad("query", format!("unknown parameter {other:?}")));
            }
        }
    }
    let tz = match one.get("tz") {
        None => TimeZone::UTC,
        Some(name) => {
            TimeZone::get(name).map_err(|_| bad("tz", format!("tz: unknown time zone {name:?}")))?
        }
    };
    let today = jiff::Timestamp::from_millisecond(now)
        .map(|t| t.to_zoned_datetime(tz.clone()).date())
        .map_err(|_| bad("query", "the clock is out of range"))?;
    let to = match one.get("to") {
        Some(s) => parse_date("to", s)?,
        None => today,
    };
    let from = match one.get("from") {
        Some(s) => parse_date("from", s)?,
        None => to
            .checked_sub(29.days())
            .map_err(|_| bad("to", "to: out of range"))?,
    };
    if from > to {
        return Err(bad("from", "from: must not be after to"));
    }
    let days = (to - from).get_days() + 1;
    if days > MAX_DAYS {
        return Err(bad(
            "from",
            format!("from: a range spans at most {MAX_DAYS} days"),
        ));
    }
    let limit = one.get("limit").copied();
    // Checked for every report, so a typo is never silently ignored.
    parse_limit(limit, 1)?;
    let request = match report {
        "overview" => Request::Overview,
        "timeseries" => {
            let interval = match one.get("interval").copied() {
                None | Some("day") => Interval::Day,
                Some("hour") => Interval::Hour,
                Some(other) => {
                    return Err(bad(
                        "interval",
                        format!("interval: expected hour or day, got {other:?}"),
                    ))
                }
            };
            if interval == Interval::Hour && days > MAX_HOURLY_DAYS {
                return Err(bad(
                    "interval",
                    format!("interval: hourly series span at most {MAX_HOURLY_DAYS} days"),
                ));
            }
            Request::Timeseries { interval, metrics }
        }
        "pages" => Request::Pages {
            limit: parse_limit(limit, 100)?,
        },
        "sources" => Request::Sources {
            limit: parse_limit(limit, 100)?,
        },
        "devices" | "browsers" | "os" | "countries" => Request::Breakdown {
            dim: match report {
                "devices" => Dim::Device,
                "browsers" => Dim::Browser,
                "os" => Dim::Os,
                _ => Dim::Country,
            },
            limit: parse_limit(limit, 100)?,
        },
        "funnel" => {
            if steps.len() < 2 {
                return Err(bad("step", "step: a funnel needs at least 2 steps"));
            }
            if steps.len() > 20 {
                return Err(bad("step", "step: at most 20 steps"));
            }
            Request::Funnel { steps }
        }
        "scroll" => Request::Scroll {
            page: one.get("page").map(|s| s.to_string()),
        },
        "cart" => Request::Cart {
            limit: parse_limit(limit, 10)?,
        },
        "realtime" => Request::Realtime,
        _ => Request::Sessions {
            limit: parse_limit(limit, 100)?,
        },
    };
    let query = Query::new(site, from, to, tz, filters, now)?;
    Ok((query, request))
}

/// Runs a parsed report against a store and shapes the JSON answer.
///
/// # Errors
/// The store failed.
pub fn run(reports: &mut dyn Reports, q: &Query, req: &Request) -> Result<Value, ReportError> {
    fn to_json<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).unwrap_or(Value::Null)
    }
    Ok(match req {
        Request::Overview => to_json(&reports.overview(q)?),
        Request::Timeseries { interval, metrics } => {
            let points = buckets(q, *interval)
                .into_iter()
                .map(|b| {
                    let totals = reports.totals(&q.window(b.lo, b.hi))?;
                    let mut point = serde_json::Map::new();
                    point.insert("start".into(), Value::String(b.label));
                    if let Value::Object(all) = to_json(&totals) {
                        for (k, v) in all {
                            if metrics.is_empty() || metrics.contains(&k) {
                                point.insert(k, v);
                            }
                        }
                    }
                    Ok(Value::Object(point))
                })
                .collect::<Result<Vec<_>, ReportError>>()?;
            let interval = match interval {
                Interval::Hour => "hour",
                Interval::Day => "day",
            };
            json!({ "interval": interval, "points": points })
        }
        Request::Pages { limit } => json!({ "pages": to_json(&reports.pages(q, *limit)?) }),
        Request::Sources { limit } => json!({ "sources": to_json(&reports.sources(q, *limit)?) }),
        Request::Breakdown { dim, limit } => {
            let rows: Vec<Value> = reports
                .breakdown(q, *dim, *limit)?
                .into_iter()
                .map(|r| json!({ dim.as_str(): r.value, "visitors": r.visitors, "sessions": r.sessions }))
                .collect();
            json!({ "rows": rows })
        }
        Request::Funnel { steps } => json!({ "steps": to_json(&reports.funnel(q, steps)?) }),
        Request::Scroll { page } => to_json(&reports.scroll(q, page.as_deref())?),
        Request::Cart { limit } => to_json(&reports.cart(q, *limit)?),
        Request::Realtime => to_json(&reports.realtime(q)?),
        Request::Sessions { limit } => {
            json!({ "sessions": to_json(&reports.sessions(q, *limit)?) })
        }
    })
}

/// The one entry point of the API and the CLI: checks the site, parses, runs.
///
/// # Errors
/// [`ReportError::UnknownSite`], [`ReportError::UnknownReport`], a bad parameter, or a store
/// failure.
pub fn answer(
    reports: &mut dyn Reports,
    site: &str,
    report: &str,
    params: &[(String, String)],
    now: i64,
) -> Result<Value, ReportError> {
    if !reports.site_exists(site)? {
        return Err(ReportError::UnknownSite);
    }
    let (q, req) = parse(site, report, params, now)?;
    run(reports, &q, &req)
}

/// The columns of each report's table, in order, for [`render_text`].
fn columns(report: &str) -> &'static [&'static str] {
    match report {
        "timeseries" => &[
            "start",
            "visitors",
            "sessions",
            "pageviews",
            "bounce_rate",
            "avg_duration_s",
            "avg_scroll",
            "conversion_rate",
            "revenue",
        ],
        "pages" => &[
            "path",
            "pageviews",
            "visitors",
            "entries",
            "exits",
            "exit_rate",
            "avg_scroll",
            "avg_engaged_s",
        ],
        "sources" => &[
            "source",
            "medium",
            "campaign",
            "referrer_host",
            "visitors",
            "sessions",
            "conversion_rate",
            "revenue",
        ],
        "devices" => &["device", "visitors", "sessions"],
        "browsers" => &["browser", "visitors", "sessions"],
        "os" => &["os", "visitors", "sessions"],
        "countries" => &["country", "visitors", "sessions"],
        "funnel" => &[
            "step",
            "sessions",
            "conversion",
            "drop_off",
            "drop_off_rate",
            "median_s",
        ],
        "sessions" => &[
            "start",
            "id",
            "entry_path",
            "exit_path",
            "pageviews",
            "duration_s",
            "source",
            "device",
            "browser",
            "purchase",
        ],
        "histogram" => &["from", "to", "pageviews", "share"],
        "top_added" | "top_bought" => &["id", "name", "quantity", "sessions"],
        "pages_now" => &["path", "visitors"],
        "per_minute" => &["ts", "events"],
        _ => &[],
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        Value::Object(m) if m.is_empty() => "-".into(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{} {k}", cell(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// Aligned columns; numbers right-aligned.
fn table(out: &mut String, cols: &[&str], rows: &[Value]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| cell(&r[*c])).collect())
        .collect();
    let numeric: Vec<bool> = cols
        .iter()
        .map(|c| rows.iter().all(|r| r[*c].is_number() || r[*c].is_null()))
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |out: &mut String, row: &[String]| {
        let mut s = String::new();
        for (i, v) in row.iter().enumerate() {
            let pad = widths[i].saturating_sub(v.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if numeric[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(v);
            } else {
                s.push_str(v);
                s.push_str(&" ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(out, &cols.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    for r in &cells {
        line(out, r);
    }
}

/// A report's JSON answer as text for people: scalar fields as `name  value` lines, lists as
/// aligned tables.
pub fn render_text(report: &str, v: &Value) -> String {
    let mut out = String::new();
    let Value::Object(map) = v else {
        return v.to_string();
    };
    let scalars: Vec<(&String, &Value)> = map.iter().filter(|(_, v)| !v.is_array()).collect();
    let width = scalars.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &scalars {
        let _ = writeln!(out, "{k:width$}  {}", cell(v));
    }
    for (k, v) in map {
        let Value::Array(rows) = v else { continue };
        let name = match k.as_str() {
            "rows" | "points" | "steps" => report,
            "pages" if report == "realtime" => "pages_now",
            other => other,
        };
        let cols = columns(name);
        if !out.is_empty() {
            out.push('\n');
        }
        if cols.is_empty() {
            let _ = writeln!(out, "{k}: {v}");
        } else if rows.is_empty() {
            let _ = writeln!(out, "{k}: (none)");
        } else {
            if name != report {
                let _ = writeln!(out, "{k}:");
            }
            table(&mut out, cols, rows);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(session: u64, ts: i64, kind: &str, path: &str, action: Option<&str>) -> FunnelEvent {
        FunnelEvent {
            session,
            ts,
            kind: kind.into(),
            path: path.into(),
            action: action.map(str::to_string),
            name: None,
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("/", "/"));
        assert!(!glob_match("/", "/a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("/products/*", "/products/"));
        assert!(glob_match("/products/*", "/products/a/b"));
        assert!(glob_match("*/mug", "/products/mug"));
        assert!(glob_match("/a*b*c", "/aXbYbc"));
        assert!(!glob_match("/a*b*c", "/aXbYc_"));
        assert!(
            !glob_match("/ab*ba", "/aba"),
            "the two literals may not overlap"
        );
        assert!(glob_match("/p?x[1]", "/p?x[1]"), "only * is special");
    }

    #[test]
    fn funnel_counts_ordered_steps_only() {
        let steps = [
            Step::Page("/products/*".into()),
            Step::Cart(CartAction::Add),
            Step::Cart(CartAction::Checkout),
        ];
        let events = [
            // 1: all three in order, with other events between.
            ev(1, 0, "pageview", "/products/a", None),
            ev(1, 1_000, "pageview", "/", None),
            ev(1, 4_000, "cart", "/products/a", Some("add")),
            ev(1, 10_000, "cart", "/cart", Some("checkout")),
            // 2: checkout before add: only two steps.
            ev(2, 0, "pageview", "/products/b", None),
            ev(2, 1_000, "cart", "/cart", Some("checkout")),
            ev(2, 3_000, "cart", "/products/b", Some("add")),
            // 3: add without a product page first: nothing.
            ev(3, 0, "cart", "/", Some("add")),
            ev(3, 1_000, "pageview", "/", None),
        ];
        let f = funnel(&steps, &events);
        let sessions: Vec<u64> = f.iter().map(|s| s.sessions).collect();
        assert_eq!(sessions, [2, 2, 1]);
        assert_eq!(f[1].conversion, 1.0);
        assert_eq!(f[2].conversion, 0.5);
        assert_eq!((f[1].drop_off, f[1].drop_off_rate), (1, 0.5));
        assert_eq!(f[0].median_s, Some(3.5), "median of 4 s and 3 s");
        assert_eq!(f[1].median_s, Some(6.0));
        assert_eq!(f[2].median_s, None);
        assert_eq!(f[2].drop_off, 0);
        assert_eq!(funnel(&steps, &[])[0].conversion, 0.0);
    }

    #[test]
    fn one_event_advances_one_step() {
        let steps = [Step::Page("/*".into()), Step::Page("/*".into())];
        let f = funnel(&steps, &[ev(1, 0, "pageview", "/a", None)]);
        assert_eq!((f[0].sessions, f[1].sessions), (1, 0));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5, 1, 3]), Some(3.0));
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(2.5));
    }

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let now = 1_763_850_000_000;
        for (report, p, field) in [
            ("overview", vec![("from", "2024-1-01")], "from"),
            ("overview", vec![("to", "2024-02-30")], "to"),
            (
                "overview",
                vec![("from", "2024-03-02"), ("to", "2024-03-01")],
                "from",
            ),
            ("overview", vec![("tz", "Mars/Olympus")], "tz"),
            ("overview", vec![("filter", "colour:red")], "filter"),
            ("overview", vec![("filter", "page")], "filter"),
            ("overview", vec![("bogus", "1")], "query"),
            ("overview", vec![("tz", "UTC"), ("tz", "UTC")], "tz"),
            ("timeseries", vec![("interval", "week")], "interval"),
            ("timeseries", vec![("metric", "fun")], "metric"),
            (
                "timeseries",
                vec![
                    ("interval", "hour"),
                    ("from", "2024-01-01"),
                    ("to", "2024-12-31"),
                ],
                "interval",
            ),
            ("funnel", vec![("step", "page:/")], "step"),
            (
                "funnel",
                vec![("step", "cart:steal"), ("step", "page:/")],
                "step",
            ),
            (
                "funnel",
                vec![("step", "click:x"), ("step", "page:/")],
                "step",
            ),
            ("sessions", vec![("limit", "0")], "limit"),
            ("pages", vec![("limit", "x")], "limit"),
        ] {
            match parse("shop", report, &params(&p), now) {
                Err(ReportError::BadParam { field: f, message }) => {
                    assert_eq!(f, field, "{p:?}: {message}");
                }
                other => panic!("{report} {p:?}: expected a 400, got {other:?}"),
            }
        }
        assert!(matches!(
            parse("shop", "nope", &[], now),
            Err(ReportError::UnknownReport(_))
        ));
    }

    #[test]
    fn days_are_local_to_the_time_zone() {
        let p = params(&[
            ("from", "2024-03-31"),
            ("to", "2024-03-31"),
            ("tz", "Europe/Berlin"),
            ("filter", "page:/products/*"),
            ("filter", "device:mobile"),
        ]);
        let (q, req) = parse("shop", "overview", &p, 0).unwrap();
        assert_eq!(req, Request::Overview);
        // 2024-03-31 00:00 CET (UTC+1) to 2024-04-01 00:00 CEST (UTC+2): a 23-hour day.
        assert_eq!(q.lo, 1_711_839_600_000);
        assert_eq!(q.hi - q.lo, 23 * 3_600_000);
        assert_eq!(
            q.filters,
            [
                Filter::Page("/products/*".into()),
                Filter::Is(Dim::Device, "mobile".into())
            ]
        );
        let hours = buckets(&q, Interval::Hour);
        assert_eq!(hours.len(), 23);
        assert_eq!(hours[0].label, "2024-03-31T00:00+01:00");
        assert_eq!(hours[2].label, "2024-03-31T03:00+02:00");
        let days = buckets(&q, Interval::Day);
        assert_eq!(days.len(), 1);
        assert_eq!((days[0].lo, days[0].hi), (q.lo, q.hi));
        assert_eq!(q.utc_days(), (19_813, 19_813));
    }

    #[test]
    fn default_range_is_the_last_30_days() {
        // 2025-11-22T22:20Z is already the 23rd in Tokyo.
        let now = 1_763_850_000_000;
        let (q, _) = parse("shop", "overview", &params(&[("tz", "Asia/Tokyo")]), now).unwrap();
        assert_eq!(q.to.to_string(), "2025-11-23");
        assert_eq!(q.from.to_string(), "2025-10-25");
    }

    #[test]
    fn text_tables_align() {
        let v = json!({"rows": [{"device": "mobile", "visitors": 12, "sessions": 3},
                                 {"device": "desktop", "visitors": 2, "sessions": 10}]});
        assert_eq!(
            render_text("devices", &v),
            "device   visitors  sessions\nmobile         12         3\ndesktop         2        10\n"
        );
        let o = json!({"visitors": 3, "bounce_rate": 0.5, "revenue": {"EUR": 12.5}});
        let text = render_text("overview", &o);
        assert!(text.contains("bounce_rate  0.50"), "{text}");
        assert!(text.contains("revenue      12.50 EUR"), "{text}");
    }
}
