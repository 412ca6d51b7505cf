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
use std::collections::{BTreeMap, HashMap};
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
    "paths",
    "scroll",
    "cart",
    "attribution",
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
    /// Parses `kind:value`; errors name `field` (`step`, or `goal` for attribution).
    fn parse(field: &'static str, s: &str) -> Result<Step, ReportError> {
        let (kind, arg) = s
            .split_once(':')
            .filter(|(_, a)| !a.is_empty())
            .ok_or_else(|| bad(field, format!("{field}: expected kind:value, got {s:?}")))?;
        match kind {
            "page" => Ok(Step::Page(arg.to_string())),
            "cart" => CartAction::parse(arg).map(Step::Cart).ok_or_else(|| {
                bad(
                    field,
                    format!("{field}: unknown cart action {arg:?} (add, remove, view_cart, checkout, purchase)"),
                )
            }),
            "event" => Ok(Step::Event(arg.to_string())),
            other => Err(bad(
                field,
                format!("{field}: unknown kind {other:?} (page, cart, event)"),
            )),
        }
    }

    /// Whether an event matches this step.
    pub fn matches(&self, e: &FunnelEvent) -> bool {
        e.step().is_some_and(|(kind, label)| self.hit(kind, label))
    }

    /// Whether an event of `kind` whose label (path, cart action or custom name) is `label`
    /// matches this step.
    pub fn hit(&self, kind: StepKind, label: &str) -> bool {
        match self {
            Step::Page(glob) => kind == StepKind::Page && glob_match(glob, label),
            Step::Cart(a) => kind == StepKind::Cart && label == a.as_str(),
            Step::Event(name) => kind == StepKind::Event && label == name,
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
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut tail) = path.strip_prefix(first) else {
        return false;
    };
    let mut parts = parts.peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return tail.len() >= part.len() && tail.ends_with(part);
        }
        match tail.find(part) {
            Some(i) => tail = &tail[i + part.len()..],
            None => return false,
        }
    }
    tail.is_empty()
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

impl FunnelEvent {
    /// The event as a funnel sees it: its kind and label; `None` for events no step matches.
    pub fn step(&self) -> Option<(StepKind, &str)> {
        match self.kind.as_str() {
            "pageview" => Some((StepKind::Page, &self.path)),
            "cart" => Some((StepKind::Cart, self.action.as_deref().unwrap_or(""))),
            "custom" => Some((StepKind::Event, self.name.as_deref().unwrap_or(""))),
            _ => None,
        }
    }
}

/// The kinds of event a funnel step can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// A page view; its label is the path.
    Page,
    /// A cart action; its label is the action.
    Cart,
    /// A custom event; its label is the name.
    Event,
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
    let mut walk = FunnelWalk::new(steps);
    for session in events.chunk_by(|a, b| a.session == b.session) {
        walk.session(
            session
                .iter()
                .filter_map(|e| e.step().map(|(kind, label)| (e.ts, kind, label))),
        );
    }
    walk.finish()
}

/// [`funnel`] one session at a time, keeping only counts and step gaps.
pub struct FunnelWalk<'a> {
    steps: &'a [Step],
    reached: Vec<u64>,
    gaps: Vec<Vec<i64>>,
    times: Vec<i64>,
}

impl<'a> FunnelWalk<'a> {
    pub fn new(steps: &'a [Step]) -> FunnelWalk<'a> {
        FunnelWalk {
            steps,
            reached: vec![0; steps.len()],
            gaps: vec![Vec::new(); steps.len()],
            times: Vec::with_capacity(steps.len()),
        }
    }

    /// One session's events in time order, as `(time, kind, label)`.
    pub fn session<'l>(&mut self, events: impl IntoIterator<Item = (i64, StepKind, &'l str)>) {
        self.times.clear();
        for (ts, kind, label) in events {
            match self.steps.get(self.times.len()) {
                Some(step) if step.hit(kind, label) => self.times.push(ts),
                Some(_) => {}
                None => break,
            }
        }
        for (k, t) in self.times.iter().enumerate() {
            self.reached[k] += 1;
            if let Some(next) = self.times.get(k + 1) {
                self.gaps[k].push(next - t);
            }
        }
    }

    /// The answer: one row per step.
    pub fn finish(mut self) -> Vec<FunnelStep> {
        let first = self.reached.first().copied().unwrap_or(0);
        self.steps
            .iter()
            .enumerate()
            .map(|(k, step)| {
                let sessions = self.reached[k];
                let next = self.reached.get(k + 1).copied().unwrap_or(sessions);
                let drop_off = sessions - next;
                FunnelStep {
                    step: step.label(),
                    sessions,
                    conversion: ratio(sessions, first),
                    drop_off,
                    drop_off_rate: ratio(drop_off, sessions),
                    median_s: median(&mut self.gaps[k]).map(|ms| ms / 1000.0),
                }
            })
            .collect()
    }
}

/// The scroll report from page-view counts per deepest scroll (0–100): the share that reached
/// 25/50/75/100 % and a histogram in tens (100 falls in the last bucket).
pub fn scroll_report(counts: &[(i64, u64)]) -> ScrollReport {
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let reached = [25, 50, 75, 100]
        .into_iter()
        .map(|depth| {
            let n = counts
                .iter()
                .filter(|(s, _)| *s >= depth)
                .map(|(_, n)| n)
                .sum();
            (depth.to_string(), ratio(n, total))
        })
        .collect();
    let histogram = (0u8..10)
        .map(|b| {
            let n = counts
                .iter()
                .filter(|(s, _)| (s / 10).min(9) == i64::from(b))
                .map(|(_, n)| n)
                .sum();
            ScrollBucket {
                from: b * 10,
                to: b * 10 + 10,
                pageviews: n,
                share: ratio(n, total),
            }
        })
        .collect();
    ScrollReport {
        pageviews: total,
        reached,
        histogram,
    }
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

/// The journey map's name for pages folded out of a step's top N.
pub const OTHER: &str = "(other)";
/// The journey map's node for leaving the site.
pub const EXIT: &str = "(exit)";

/// A node of the journey map: a page (or `(other)`, `(exit)`) at a step (0 = the start page).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathNode {
    pub step: u32,
    pub path: String,
    /// Sessions at this page at this step.
    pub sessions: u64,
}

/// A link of the journey map: `source` and `target` index `nodes`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathLink {
    pub source: usize,
    pub target: usize,
    pub sessions: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PathsReport {
    /// Sessions on the map (those that reached the start page, or all with a page view).
    pub sessions: u64,
    pub nodes: Vec<PathNode>,
    pub links: Vec<PathLink>,
}

/// Builds the journey map one session at a time, so a store can feed it without holding every
/// page view: only counts per (step, page) and (step, page, next page) are kept.
///
/// A session's page views, consecutive repeats of one path collapsed, start at its first page
/// matching `start` (its entry page without one; sessions that never match are left out). Its
/// first `depth` pages are steps `0..depth`; each step links to the next page, or to `(exit)`
/// when the session ended there. Pages after step `depth - 1` are cut off, not an exit.
pub struct PathWalk {
    start: Option<String>,
    depth: usize,
    /// Pages by id (id 0 is `(exit)`), so the counts below are keyed by small integers and a
    /// page's text is hashed once per visit.
    ids: HashMap<String, u32, foldhash::fast::RandomState>,
    names: Vec<String>,
    /// Per step, sessions per page id.
    visits: Vec<Vec<u64>>,
    /// Sessions per `(step, page id, next page id)`, packed by [`link_key`].
    links: HashMap<u64, u64, foldhash::fast::RandomState>,
}

/// A link's key: step (8 bits), page id and next page id (28 bits each).
fn link_key(step: usize, from: u32, to: u32) -> u64 {
    ((step as u64) << 56) | (u64::from(from) << 28) | u64::from(to)
}

impl PathWalk {
    pub fn new(start: Option<&str>, depth: u32) -> PathWalk {
        let depth = (depth as usize).max(1);
        let mut walk = PathWalk {
            start: start.map(str::to_string),
            depth,
            ids: HashMap::default(),
            names: Vec::new(),
            visits: vec![Vec::new(); depth],
            links: HashMap::default(),
        };
        walk.id(EXIT);
        walk
    }

    fn id(&mut self, page: &str) -> u32 {
        if let Some(id) = self.ids.get(page) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(page.to_string(), id);
        self.names.push(page.to_string());
        id
    }

    fn visit(&mut self, step: usize, id: u32) {
        let counts = &mut self.visits[step];
        let i = id as usize;
        if counts.len() <= i {
            counts.resize(i + 1, 0);
        }
        counts[i] += 1;
    }

    /// One session's page paths in time order.
    pub fn session<S: AsRef<str>>(&mut self, paths: &[S]) {
        let mut seq: Vec<&str> = Vec::with_capacity(paths.len());
        for p in paths {
            let p = p.as_ref();
            if seq.last() != Some(&p) {
                seq.push(p);
            }
        }
        let begin = match &self.start {
            None => 0,
            Some(g) => match seq.iter().position(|p| glob_match(g, p)) {
                Some(i) => i,
                None => return,
            },
        };
        let seq = &seq[begin..];
        let n = seq.len().min(self.depth);
        let mut from = match seq.first() {
            Some(p) => self.id(p),
            None => return,
        };
        for k in 0..n {
            self.visit(k, from);
            if k + 1 >= self.depth {
                break;
            }
            let next = match seq.get(k + 1) {
                Some(p) => self.id(p),
                None => 0,
            };
            if next == 0 {
                self.visit(k + 1, 0);
            }
            *self.links.entry(link_key(k, from, next)).or_default() += 1;
            from = next;
        }
    }

    /// The map, keeping the `limit` most visited pages of each step and folding the rest into
    /// `(other)`. Nodes are ordered by step, then most sessions first; links by source, target.
    pub fn finish(self, limit: u32) -> PathsReport {
        let names = &self.names;
        let visits: Vec<HashMap<&str, u64>> = self
            .visits
            .iter()
            .map(|step| {
                step.iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(id, n)| (names[id].as_str(), *n))
                    .collect()
            })
            .collect();
        let keep: Vec<Vec<&str>> = visits
            .iter()
            .map(|step| {
                let mut pages: Vec<(&str, u64)> = step
                    .iter()
                    .filter(|(p, _)| **p != EXIT)
                    .map(|(p, n)| (*p, *n))
                    .collect();
                pages.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                pages
                    .into_iter()
                    .take(limit as usize)
                    .map(|(p, _)| p)
                    .collect()
            })
            .collect();
        let fold = |k: usize, p: &str| -> String {
            if p == EXIT || keep[k].contains(&p) {
                p.to_string()
            } else {
                OTHER.to_string()
            }
        };
        let mut nodes: BTreeMap<(usize, String), u64> = BTreeMap::new();
        for (k, step) in visits.iter().enumerate() {
            for (p, n) in step {
                *nodes.entry((k, fold(k, p))).or_default() += n;
            }
        }
        let mut ordered: Vec<((usize, String), u64)> = nodes.into_iter().collect();
        ordered.sort_by(|a, b| {
            a.0 .0
                .cmp(&b.0 .0)
                .then_with(|| b.1.cmp(&a.1))
                .then_with(|| a.0 .1.cmp(&b.0 .1))
        });
        let index: HashMap<(usize, String), usize> = ordered
            .iter()
            .enumerate()
            .map(|(i, (key, _))| (key.clone(), i))
            .collect();
        let mut links: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        for (key, n) in &self.links {
            let k = (key >> 56) as usize;
            let from = names[((key >> 28) & 0x0fff_ffff) as usize].as_str();
            let to = names[(key & 0x0fff_ffff) as usize].as_str();
            let (Some(&s), Some(&t)) = (
                index.get(&(k, fold(k, from))),
                index.get(&(k + 1, fold(k + 1, to))),
            ) else {
                continue;
            };
            *links.entry((s, t)).or_default() += n;
        }
        PathsReport {
            sessions: visits[0].values().sum(),
            nodes: ordered
                .into_iter()
                .map(|((k, path), sessions)| PathNode {
                    step: u32::try_from(k).unwrap_or(u32::MAX),
                    path,
                    sessions,
                })
                .collect(),
            links: links
                .into_iter()
                .map(|((source, target), sessions)| PathLink {
                    source,
                    target,
                    sessions,
                })
                .collect(),
        }
    }
}

/// `model=` of the attribution report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// The visitor's first session that day.
    First,
    /// The converting session.
    Last,
    /// Equal shares over the visitor's sessions that day, up to the converting one.
    Linear,
}

impl Model {
    pub fn as_str(self) -> &'static str {
        match self {
            Model::First => "first",
            Model::Last => "last",
            Model::Linear => "linear",
        }
    }
}

/// One session of a converting visitor, for attribution.
#[derive(Clone, Debug, PartialEq)]
pub struct Touch {
    pub visitor: u64,
    pub session: u64,
    pub start: i64,
    pub source: String,
    pub medium: String,
}

/// A session in scope that reached the goal, with its purchase revenue per currency (empty
/// unless the goal is a purchase).
#[derive(Clone, Debug, PartialEq)]
pub struct Conversion {
    pub visitor: u64,
    pub session: u64,
    pub start: i64,
    pub revenue: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AttributionRow {
    pub source: String,
    pub medium: String,
    /// Converting sessions credited to this source (fractional under `linear`).
    pub conversions: f64,
    pub revenue: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AttributionReport {
    pub goal: String,
    pub model: String,
    /// Sessions in scope that reached the goal.
    pub conversions: u64,
    pub revenue: BTreeMap<String, f64>,
    pub sources: Vec<AttributionRow>,
}

/// Credits each conversion to sources under `model`. `touches` must hold every session of the
/// converting visitors that could precede a conversion; a visitor key lives one day, so these
/// are that day's sessions. A converting session missing from `touches` is credited to
/// `(none)`.
pub fn attribution(
    goal: &Step,
    model: Model,
    conversions: &[Conversion],
    touches: &[Touch],
) -> AttributionReport {
    let mut by_visitor: HashMap<u64, Vec<&Touch>> = HashMap::new();
    for t in touches {
        by_visitor.entry(t.visitor).or_default().push(t);
    }
    for list in by_visitor.values_mut() {
        list.sort_by_key(|t| (t.start, t.session));
    }
    let none = Touch {
        visitor: 0,
        session: 0,
        start: 0,
        source: "(none)".into(),
        medium: "(none)".into(),
    };
    let mut rows: BTreeMap<(String, String), AttributionRow> = BTreeMap::new();
    let mut total: BTreeMap<String, f64> = BTreeMap::new();
    for c in conversions {
        for (cur, r) in &c.revenue {
            *total.entry(cur.clone()).or_default() += r;
        }
        let own = by_visitor
            .get(&c.visitor)
            .and_then(|l| l.iter().find(|t| t.session == c.session).copied())
            .unwrap_or(&none);
        let earlier: Vec<&Touch> = by_visitor
            .get(&c.visitor)
            .map(|l| {
                l.iter()
                    .copied()
                    .filter(|t| {
                        t.session != c.session && (t.start, t.session) < (c.start, c.session)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let credited: Vec<&Touch> = match model {
            Model::Last => vec![own],
            Model::First => vec![earlier.first().copied().unwrap_or(own)],
            Model::Linear => earlier.into_iter().chain([own]).collect(),
        };
        let share = 1.0 / credited.len() as f64;
        for t in credited {
            let row = rows
                .entry((t.source.clone(), t.medium.clone()))
                .or_insert_with(|| AttributionRow {
                    source: t.source.clone(),
                    medium: t.medium.clone(),
                    ..AttributionRow::default()
                });
            row.conversions += share;
            for (cur, r) in &c.revenue {
                *row.revenue.entry(cur.clone()).or_default() += r * share;
            }
        }
    }
    let mut sources: Vec<AttributionRow> = rows.into_values().collect();
    sources.sort_by(|a, b| {
        b.conversions
            .total_cmp(&a.conversions)
            .then_with(|| a.source.cmp(&b.source))
            .then_with(|| a.medium.cmp(&b.medium))
    });
    AttributionReport {
        goal: goal.label(),
        model: model.as_str().into(),
        conversions: conversions.len() as u64,
        revenue: total,
        sources,
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
    Paths {
        start: Option<String>,
        depth: u32,
        limit: u32,
    },
    Attribution {
        goal: Step,
        model: Model,
    },
    /// Not a JSON report: rows streamed by [`export`].
    Export {
        table: Table,
        format: Format,
    },
}

/// Parameters given at most once.
const SINGLE_PARAMS: &[&str] = &[
    "from", "to", "tz", "interval", "page", "limit", "start", "depth", "goal", "model", "table",
    "format",
];

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
    if !REPORTS.contains(&report) && report != "export" {
        return Err(ReportError::UnknownReport(report.to_string()));
    }
    let mut one: BTreeMap<&str, &str> = BTreeMap::new();
    let (mut filters, mut steps, mut metrics) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in params {
        match k.as_str() {
            "filter" => filters.push(Filter::parse(v)?),
            "step" => steps.push(Step::parse("step", v)?),
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
            "from" | "to" | "tz" | "interval" | "page" | "limit" | "start" | "depth" | "goal"
            | "model" | "table" | "format" => {
                if one.insert(k.as_str(), v.as_str()).is_some() {
                    let field = SINGLE_PARAMS
                        .iter()
                        .copied()
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
        "paths" => Request::Paths {
            start: one.get("start").map(|s| s.to_string()),
            depth: match one.get("depth") {
                None => 4,
                Some(d) => d
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (2..=10).contains(n))
                    .ok_or_else(|| bad("depth", format!("depth: expected 2-10, got {d:?}")))?,
            },
            limit: parse_limit(limit, 8)?,
        },
        "attribution" => Request::Attribution {
            goal: Step::parse(
                "goal",
                one.get("goal")
                    .ok_or_else(|| bad("goal", "goal: required, e.g. goal=cart:purchase"))?,
            )?,
            model: match one.get("model").copied() {
                None | Some("last") => Model::Last,
                Some("first") => Model::First,
                Some("linear") => Model::Linear,
                Some(other) => {
                    return Err(bad(
                        "model",
                        format!("model: expected first, last or linear, got {other:?}"),
                    ))
                }
            },
        },
        "export" => Request::Export {
            table: match one.get("table").copied() {
                Some("events") => Table::Events,
                Some("sessions") => Table::Sessions,
                other => {
                    return Err(bad(
                        "table",
                        format!("table: expected events or sessions, got {other:?}"),
                    ))
                }
            },
            format: match one.get("format").copied() {
                None | Some("ndjson") => Format::Ndjson,
                Some("csv") => Format::Csv,
                Some(other) => {
                    return Err(bad(
                        "format",
                        format!("format: expected ndjson or csv, got {other:?}"),
                    ))
                }
            },
        },
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
        Request::Paths {
            start,
            depth,
            limit,
        } => to_json(&reports.paths(q, start.as_deref(), *depth, *limit)?),
        Request::Attribution { goal, model } => to_json(&reports.attribution(q, goal, *model)?),
        Request::Export { .. } => return Err(ReportError::UnknownReport("export".into())),
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

/// `table=` of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Events,
    Sessions,
}

/// The columns of an exported event, in order.
pub const EVENT_COLUMNS: &[&str] = &[
    "session",
    "visitor",
    "ts",
    "type",
    "pv",
    "host",
    "path",
    "title",
    "scroll",
    "engaged_ms",
    "action",
    "order_id",
    "revenue",
    "currency",
    "items",
    "name",
    "props",
];

/// The columns of an exported session: the fields of [`SessionRecord`], in order.
pub const SESSION_COLUMNS: &[&str] = &[
    "id",
    "visitor",
    "day",
    "start",
    "end",
    "duration_s",
    "entry_path",
    "exit_path",
    "pageviews",
    "events",
    "bounce",
    "max_scroll",
    "engaged_s",
    "referrer_host",
    "source",
    "medium",
    "campaign",
    "browser",
    "os",
    "device",
    "country",
    "cart_adds",
    "checkout",
    "purchase",
    "revenue",
    "currency",
];

impl Table {
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Events => EVENT_COLUMNS,
            Table::Sessions => SESSION_COLUMNS,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Sessions => "sessions",
        }
    }
}

/// `format=` of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, keys in column order.
    Ndjson,
    /// RFC 4180: a header line, then one line per row; `\r\n` line ends.
    Csv,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }
}

/// A session record as an export row in [`SESSION_COLUMNS`] order.
pub fn session_row(r: &SessionRecord) -> Vec<Value> {
    let Value::Object(mut m) = serde_json::to_value(r).unwrap_or(Value::Null) else {
        return vec![Value::Null; SESSION_COLUMNS.len()];
    };
    SESSION_COLUMNS
        .iter()
        .map(|c| m.remove(*c).unwrap_or(Value::Null))
        .collect()
}

/// One RFC 4180 field. Text that a spreadsheet would run as a formula (it starts with `=`, `+`,
/// `-`, `@`, a tab or a carriage return: page titles and paths come from the visited site, and a
/// visitor can choose the URL) gets a leading `'`, as OWASP's "CSV injection" advice says, so
/// opening an export in Excel or LibreOffice never evaluates it. Numbers are written as they are.
fn csv_field(out: &mut String, v: &Value) {
    let mut text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if matches!(v, Value::String(_)) && text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        text.insert(0, '\'');
    }
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&text);
    }
}

/// One export line (with its line end) in `format`.
pub fn export_line(out: &mut String, format: Format, columns: &[&str], row: &[Value]) {
    match format {
        Format::Ndjson => {
            out.push('{');
            for (i, (c, v)) in columns.iter().zip(row).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*c).to_string()).to_string());
                out.push(':');
                out.push_str(&v.to_string());
            }
            out.push_str("}\n");
        }
        Format::Csv => {
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                csv_field(out, v);
            }
            out.push_str("\r\n");
        }
    }
}

/// A checked export request: what [`export`] streams.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportPlan {
    pub query: Query,
    pub table: Table,
    pub format: Format,
}

/// Checks the site and the export's parameters (`table`, `format`, and the common `from`, `to`,
/// `tz`, `filter`), before anything is streamed.
///
/// # Errors
/// [`ReportError::UnknownSite`], a bad parameter, or a store failure.
pub fn export_plan(
    reports: &mut dyn Reports,
    site: &str,
    params: &[(String, String)],
    now: i64,
) -> Result<ExportPlan, ReportError> {
    if !reports.site_exists(site)? {
        return Err(ReportError::UnknownSite);
    }
    match parse(site, "export", params, now)? {
        (query, Request::Export { table, format }) => Ok(ExportPlan {
            query,
            table,
            format,
        }),
        _ => Err(ReportError::UnknownReport("export".into())),
    }
}

/// Bytes handed to `out` at a time.
const EXPORT_CHUNK: usize = 64 * 1024;

/// Streams the rows of an export to `out` in chunks of about 64 KiB (a CSV header first), so
/// memory stays bounded whatever the table's size. `out` returns false to stop early (the
/// reader went away); the answer says whether every row was written. The API and `waymark
/// export` both go through here, so they write the same bytes.
///
/// # Errors
/// The store failed (possibly after some rows were written).
pub fn export(
    reports: &mut dyn Reports,
    plan: &ExportPlan,
    out: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<bool, ReportError> {
    let columns = plan.table.columns();
    let mut buf = String::with_capacity(EXPORT_CHUNK + 4096);
    if plan.format == Format::Csv {
        let header: Vec<Value> = columns.iter().map(|c| Value::String((*c).into())).collect();
        export_line(&mut buf, Format::Csv, columns, &header);
    }
    let mut open = true;
    reports.export(&plan.query, plan.table, &mut |row| {
        export_line(&mut buf, plan.format, columns, &row);
        if buf.len() >= EXPORT_CHUNK {
            open = out(buf.as_bytes());
            buf.clear();
        }
        open
    })?;
    if open && !buf.is_empty() {
        open = out(buf.as_bytes());
    }
    Ok(open)
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
        "nodes" => &["step", "path", "sessions"],
        "links" => &["source", "target", "sessions"],
        "attribution" => &["source", "medium", "conversions", "revenue"],
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
            "sources" if report == "attribution" => report,
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

    fn line(row: &[Value]) -> String {
        let mut out = String::new();
        export_line(&mut out, Format::Csv, &[], row);
        out
    }

    #[test]
    fn csv_quotes_and_neutralises_formulas_but_not_numbers() {
        assert_eq!(
            line(&[
                serde_json::json!("/a"),
                serde_json::json!("say \"hi\", ok"),
                serde_json::json!(null),
                serde_json::json!(-3),
                serde_json::json!(1.5)
            ]),
            "/a,\"say \"\"hi\"\", ok\",,-3,1.5\r\n"
        );
        assert_eq!(
            line(&[
                serde_json::json!("=HYPERLINK(\"http://x\")"),
                serde_json::json!("+1"),
                serde_json::json!("-2"),
                serde_json::json!("@SUM(A1)")
            ]),
            "\"'=HYPERLINK(\"\"http://x\"\")\",'+1,'-2,'@SUM(A1)\r\n"
        );
        assert_eq!(
            line(&[serde_json::json!("\tx"), serde_json::json!("\ry")]),
            "'\tx,\"'\ry\"\r\n"
        );
    }

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
            ("paths", vec![("depth", "1")], "depth"),
            ("paths", vec![("start", "/"), ("start", "/a")], "start"),
            ("attribution", vec![], "goal"),
            ("attribution", vec![("goal", "cart:x")], "goal"),
            (
                "attribution",
                vec![("goal", "cart:add"), ("model", "u")],
                "model",
            ),
            ("export", vec![], "table"),
            (
                "export",
                vec![("table", "events"), ("format", "xml")],
                "format",
            ),
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
    fn journey_map_collapses_repeats_folds_and_exits() {
        let mut w = PathWalk::new(None, 3);
        w.session(&["/", "/", "/a", "/b", "/c"]);
        w.session(&["/", "/b"]);
        w.session(&["/x"]);
        w.session::<&str>(&[]);
        let m = w.finish(1);
        assert_eq!(m.sessions, 3);
        let node = |i: usize| {
            (
                m.nodes[i].step,
                m.nodes[i].path.as_str(),
                m.nodes[i].sessions,
            )
        };
        let nodes: Vec<_> = (0..m.nodes.len()).map(node).collect();
        assert_eq!(
            nodes,
            [
                (0, "/", 2),
                (0, "(other)", 1),
                (1, "(exit)", 1),
                (1, "(other)", 1),
                (1, "/a", 1),
                (2, "(exit)", 1),
                (2, "/b", 1),
            ]
        );
        let links: Vec<_> = m
            .links
            .iter()
            .map(|l| (node(l.source).1, node(l.target).1, l.sessions))
            .collect();
        // `/` → `/a` → `/b` (cut at depth 3), `/` → `/b` → exit, `/x` → exit.
        assert_eq!(
            links,
            [
                ("/", "(other)", 1),
                ("/", "/a", 1),
                ("(other)", "(exit)", 1),
                ("(other)", "(exit)", 1),
                ("/a", "/b", 1),
            ]
        );
        let mut w = PathWalk::new(Some("/b*"), 2);
        w.session(&["/", "/b", "/c"]);
        w.session(&["/", "/a"]);
        let m = w.finish(8);
        assert_eq!(
            m.sessions, 1,
            "sessions without the start page are left out"
        );
        assert_eq!(m.nodes[0].path, "/b");
        assert_eq!(m.links.len(), 1);
    }

    #[test]
    fn attribution_models_credit_the_visitors_sessions() {
        let t = |visitor, session, start, source: &str| Touch {
            visitor,
            session,
            start,
            source: source.into(),
            medium: "m".into(),
        };
        let touches = [
            t(1, 10, 0, "newsletter"),
            t(1, 11, 100, "google"),
            t(1, 12, 200, "direct"),
            t(2, 20, 50, "google"),
        ];
        let eur = |x: f64| BTreeMap::from([("EUR".to_string(), x)]);
        let conv = [
            Conversion {
                visitor: 1,
                session: 12,
                start: 200,
                revenue: eur(30.0),
            },
            Conversion {
                visitor: 2,
                session: 20,
                start: 50,
                revenue: eur(10.0),
            },
        ];
        let goal = Step::Cart(CartAction::Purchase);
        let got = |m| {
            attribution(&goal, m, &conv, &touches)
                .sources
                .into_iter()
                .map(|r| (r.source, r.conversions, r.revenue["EUR"]))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got(Model::Last),
            [("direct".into(), 1.0, 30.0), ("google".into(), 1.0, 10.0)]
        );
        assert_eq!(
            got(Model::First),
            [
                ("google".into(), 1.0, 10.0),
                ("newsletter".into(), 1.0, 30.0)
            ]
        );
        assert_eq!(
            got(Model::Linear),
            [
                ("google".into(), 4.0 / 3.0, 20.0),
                ("direct".into(), 1.0 / 3.0, 10.0),
                ("newsletter".into(), 1.0 / 3.0, 10.0),
            ]
        );
        let r = attribution(&goal, Model::Last, &conv, &touches);
        assert_eq!((r.conversions, r.revenue["EUR"]), (2, 40.0));
    }

    #[test]
    fn export_lines() {
        let cols = ["a", "b", "c", "d"];
        let row = [
            json!("x,\"y\"\nz"),
            Value::Null,
            json!(1.5),
            json!({"k": [1]}),
        ];
        let mut out = String::new();
        export_line(&mut out, Format::Csv, &cols, &row);
        assert_eq!(out, "\"x,\"\"y\"\"\nz\",,1.5,\"{\"\"k\"\":[1]}\"\r\n");
        out.clear();
        export_line(&mut out, Format::Ndjson, &cols, &row);
        assert_eq!(
            out,
            "{\"a\":\"x,\\\"y\\\"\\nz\",\"b\":null,\"c\":1.5,\"d\":{\"k\":[1]}}\n"
        );
        let rec = session_row(&SessionRecord::default());
        assert_eq!(rec.len(), SESSION_COLUMNS.len());
        let Value::Object(all) = serde_json::to_value(SessionRecord::default()).unwrap() else {
            panic!()
        };
        assert_eq!(all.len(), SESSION_COLUMNS.len(), "every field is a column");
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
