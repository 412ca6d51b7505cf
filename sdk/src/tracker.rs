//! The SDK's whole behaviour without a browser: consent, page views, engagement, cart and custom
//! events, the queue, batching and retries.
//!
//! The browser glue feeds it facts (the time, random bytes, what happened) and asks it what to do:
//! [`Tracker::next_send`] yields the bodies to post, [`Tracker::delivered`] takes the answers,
//! [`Tracker::deadline`] says when to wake it next. Time and randomness are inputs, so every rule
//! is tested natively with a fixed clock.
//!
//! Architecture Invariant: nothing here touches the browser; nothing is queued unless consent is
//! granted, and a denial drops the queue and every batch not yet delivered.

use crate::capture::{is_new_view, Nav, Page};
use crate::config::{Config, SpaMode};
use crate::consent::{Change, Command, Consent};
use crate::event::{self, CartInput, PageCtx};
use crate::prelude::*;
use crate::queue::Queue;
use crate::retry::{backoff, Outcome, MAX_ATTEMPTS};
use waymark_protocol::scrub::scrub_url;
use waymark_protocol::Props;
use waymark_protocol::{Batch, Event, MAX_EVENTS};

/// The `sdk` field of every batch.
pub const SDK_NAME: &str = concat!("waymark-sdk/", env!("CARGO_PKG_VERSION"));
/// Largest body produced; below the collector's 64 KiB and `sendBeacon`'s quota.
pub const MAX_BODY: usize = 60 * 1024;
/// Batches awaiting an answer or a retry at once.
pub const MAX_PENDING: usize = 4;

/// A source of random bytes (`crypto.getRandomValues` in the browser).
pub type Random<'a> = &'a mut dyn FnMut(&mut [u8]);

/// One body to post.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Pass back to [`Tracker::delivered`].
    pub key: u32,
    pub body: String,
    /// The page is hidden: use `sendBeacon`, not `fetch`.
    pub beacon: bool,
}

#[derive(Debug, Clone)]
struct Pending {
    key: u32,
    id: String,
    events: Vec<Event>,
    attempts: u32,
    /// `None` while in flight.
    retry_at: Option<i64>,
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A random id of `N` characters of `[A-Za-z0-9_-]` (6 bits each).
pub fn random_id<const N: usize>(random: Random<'_>) -> String {
    let mut bytes = [0u8; N];
    random(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALPHABET.get(usize::from(b & 63)).copied().unwrap_or(b'A')))
        .collect()
}

fn random_u32(random: Random<'_>) -> u32 {
    let mut b = [0u8; 4];
    random(&mut b);
    u32::from_le_bytes(b)
}

/// The SDK state machine.
#[derive(Debug)]
pub struct Tracker {
    cfg: Config,
    consent: Consent,
    page: Option<Page>,
    queue: Queue,
    pending: Vec<Pending>,
    next_key: u32,
    hidden: bool,
    /// Events given up on: retries exhausted or rejected by the collector.
    failed: u32,
}

impl Tracker {
    /// `privacy_signal`: Global Privacy Control or Do-Not-Track is on.
    pub fn new(cfg: Config, privacy_signal: bool, hidden: bool) -> Tracker {
        Tracker {
            consent: Consent::new(cfg.consent, privacy_signal),
            queue: Queue::new(cfg.queue_cap),
            cfg,
            page: None,
            pending: Vec::new(),
            next_key: 0,
            hidden,
            failed: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Capture is on (consent granted).
    pub fn capturing(&self) -> bool {
        self.consent.granted()
    }

    /// Events dropped by queue overflow.
    pub fn dropped(&self) -> u32 {
        self.queue.dropped()
    }

    /// Events given up on after delivery failures.
    pub fn failed(&self) -> u32 {
        self.failed
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The page is hidden: what is sent now goes by beacon, as the page may be going away.
    pub fn hidden(&self) -> bool {
        self.hidden
    }

    /// The current page view's id, if capturing.
    pub fn pv(&self) -> Option<&str> {
        self.page.as_ref().map(|p| p.pv.as_str())
    }

    /// Applies a consent command. On [`Change::Start`] the caller attaches its listeners and calls
    /// [`Tracker::page_view`] with [`Nav::Load`]; on [`Change::Stop`] everything not yet
    /// delivered is already gone and the caller drops its listeners.
    pub fn consent(&mut self, cmd: Command) -> Change {
        let change = self.consent.apply(cmd);
        if !self.consent.granted() {
            self.queue.clear();
            self.pending.clear();
            self.page = None;
        }
        change
    }

    fn scrub(&self, url: &str) -> String {
        scrub_url(url, &self.cfg.keep, self.cfg.spa == SpaMode::Hash)
    }

    fn enqueue(&mut self, event: Option<Event>, now: i64) {
        if let Some(e) = event {
            self.queue.push(e, now);
        }
    }

    /// Queues the engagement of the current view if it changed since last sent.
    fn engagement(&mut self, now: i64) {
        let Some(page) = self.page.as_mut() else {
            return;
        };
        if let Some((scroll, ms)) = page.engagement(now) {
            let e = event::engagement(now, &page.pv, &page.url, scroll, ms);
            self.enqueue(e, now);
        }
    }

    /// A navigation happened (or capture started): records a page view unless it is the same URL.
    /// `referrer` is `document.referrer`, used for [`Nav::Load`]; later views name the previous
    /// page as their referrer.
    pub fn page_view(
        &mut self,
        now: i64,
        ctx: &PageCtx<'_>,
        referrer: &str,
        nav: Nav,
        random: Random<'_>,
    ) {
        if !self.capturing() {
            return;
        }
        let url = self.scrub(ctx.url);
        let previous = match &self.page {
            Some(p) if !is_new_view(nav, &p.url, &url) => return,
            Some(p) => Some(p.url.clone()),
            None => None,
        };
        // The old view ends here: its engagement goes first.
        self.engagement(now);
        let referrer = match (nav, previous) {
            (Nav::Load, _) | (_, None) => {
                (!referrer.is_empty()).then(|| scrub_url(referrer, &self.cfg.keep, false))
            }
            (_, prev) => prev,
        };
        let page = Page::new(random_id::<12>(random), url, now, !self.hidden);
        let e = event::pageview(now, &page.pv, &page.url, ctx, referrer);
        self.page = Some(page);
        self.enqueue(e, now);
    }

    /// Keyboard, pointer, touch or scroll input.
    pub fn input(&mut self, now: i64) {
        if let Some(p) = self.page.as_mut() {
            p.input(now);
        }
    }

    /// A scroll measurement in percent (see [`crate::capture::scroll_percent`]).
    pub fn scrolled(&mut self, now: i64, pct: u8) {
        if let Some(p) = self.page.as_mut() {
            p.scrolled(pct);
            p.input(now);
        }
    }

    /// Visibility changed. Hiding sends the engagement and flushes everything at once,
    /// including batches waiting for a retry (the page may never come back).
    pub fn visibility(&mut self, now: i64, hidden: bool) {
        self.hidden = hidden;
        if let Some(p) = self.page.as_mut() {
            p.visibility(now, !hidden);
        }
        if hidden {
            self.engagement(now);
            self.queue.flush_now(now);
            // Everything not yet confirmed goes out by beacon now: waiting retries, and batches
            // still in flight by fetch, whose answer the page may not live to see. A copy is
            // harmless: it carries the same batch id, which the collector de-duplicates.
            for p in &mut self.pending {
                p.retry_at = Some(p.retry_at.map_or(now, |t| t.min(now)));
            }
        }
    }

    /// `waymark('track', name, props)`.
    pub fn track(&mut self, now: i64, name: &str, props: Props) {
        if let Some(p) = &self.page {
            let e = event::custom(now, &p.pv, &p.url, name, props);
            self.enqueue(e, now);
        }
    }

    /// `waymark('cart', action, …)`, a `data-waymark-cart` click or a `dataLayer` push.
    pub fn cart(&mut self, now: i64, input: CartInput) {
        if let Some(p) = &self.page {
            let e = event::cart(now, &p.pv, &p.url, input);
            self.enqueue(e, now);
        }
    }

    /// `waymark('flush')`.
    pub fn flush(&mut self, now: i64) {
        self.queue.flush_now(now);
    }

    fn encode(&self, id: String, events: Vec<Event>, now: i64) -> (String, Batch) {
        let batch = Batch {
            site: self.cfg.site.clone(),
            batch: id,
            sent_at: now,
            sdk: Some(SDK_NAME.into()),
            events,
        };
        (crate::json::batch(&batch), batch)
    }

    /// A batch is being retried: the collector asked us to slow down (or could not be reached).
    fn backing_off(&self) -> bool {
        self.pending.iter().any(|p| p.attempts > 1)
    }

    /// The next body to post now, if any. Call until `None` after every change.
    pub fn next_send(&mut self, now: i64, random: Random<'_>) -> Option<Outgoing> {
        if !self.capturing() {
            return None;
        }
        let beacon = self.hidden;
        // A retry that is due goes first, with its own id and a fresh `sent_at`.
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| p.retry_at.is_some_and(|t| t <= now))
        {
            let p = self.pending.get_mut(i)?;
            p.retry_at = None;
            let (id, events, key) = (
                core::mem::take(&mut p.id),
                core::mem::take(&mut p.events),
                p.key,
            );
            let (body, batch) = self.encode(id, events, now);
            let p = self.pending.get_mut(i)?;
            (p.id, p.events) = (batch.batch, batch.events);
            return Some(Outgoing { key, body, beacon });
        }
        // While a batch is being retried, new events wait in the (bounded) queue until it is
        // through, unless the page is going away.
        if self.queue.is_empty()
            || !(self.hidden || self.queue.ready(now))
            || (self.backing_off() && !self.hidden)
            || self.pending.len() >= MAX_PENDING
        {
            return None;
        }
        let mut events = self.queue.take(MAX_EVENTS);
        let id = random_id::<22>(random);
        let (mut body, mut batch) = self.encode(id, events, now);
        while body.len() > MAX_BODY && batch.events.len() > 1 {
            events = batch.events;
            let back = events.split_off(events.len() / 2);
            self.queue.unshift(back);
            (body, batch) = self.encode(batch.batch, events, now);
        }
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1);
        self.pending.push(Pending {
            key,
            id: batch.batch,
            events: batch.events,
            attempts: 1,
            retry_at: None,
        });
        Some(Outgoing { key, body, beacon })
    }

    /// The answer to the post of `key`. Unknown keys (e.g. after a revoke) are ignored.
    pub fn delivered(&mut self, key: u32, outcome: Outcome, now: i64, random: Random<'_>) {
        let Some(i) = self.pending.iter().position(|p| p.key == key) else {
            return;
        };
        if let Outcome::Retry { after_ms } = outcome {
            let jitter = random_u32(random);
            if let Some(p) = self
                .pending
                .get_mut(i)
                .filter(|p| p.attempts < MAX_ATTEMPTS)
            {
                p.retry_at = Some(now.saturating_add(backoff(p.attempts, jitter, after_ms)));
                p.attempts += 1;
                return;
            }
        }
        let p = self.pending.remove(i);
        if outcome != Outcome::Delivered {
            self.failed = self.failed.saturating_add(p.events.len() as u32);
        }
    }

    /// When [`Tracker::next_send`] will next have something to do, for the wake-up timer.
    /// While a batch is being retried only its retry can wake the tracker (the queue is held;
    /// an answer to a batch in flight comes with its own call).
    pub fn deadline(&self, now: i64) -> Option<i64> {
        if !self.capturing() {
            return None;
        }
        let retry = self.pending.iter().filter_map(|p| p.retry_at).min();
        if retry.is_some() || self.backing_off() || self.pending.len() >= MAX_PENDING {
            return retry;
        }
        self.queue.deadline(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawOptions;
    use crate::consent::Change;
    use waymark_protocol::{CartAction, EventType, Item, PropValue};

    const T0: i64 = 1_763_850_000_000;

    fn cfg(consent: &str) -> Config {
        Config::parse(&RawOptions {
            site: Some("demo-shop".into()),
            endpoint: Some("https://c.example".into()),
            consent: Some(consent.into()),
            ..RawOptions::default()
        })
        .unwrap()
    }

    /// "Random" bytes: a counter shared by all generators, so ids never repeat in a test.
    fn rng() -> impl FnMut(&mut [u8]) {
        use std::sync::atomic::{AtomicU8, Ordering};
        static N: AtomicU8 = AtomicU8::new(0);
        |buf: &mut [u8]| {
            for b in buf {
                *b = N.fetch_add(7, Ordering::Relaxed);
            }
        }
    }

    fn ctx(url: &str) -> PageCtx<'_> {
        PageCtx {
            url,
            title: "Shop",
            viewport: [1280, 800],
            lang: "en",
        }
    }

    fn granted() -> Tracker {
        let mut t = Tracker::new(cfg("not-required"), false, false);
        let mut r = rng();
        t.page_view(
            T0,
            &ctx("https://s.example/?utm_source=nl&email=x"),
            "",
            Nav::Load,
            &mut r,
        );
        t
    }

    fn batch(out: &Outgoing) -> Batch {
        serde_json::from_str(&out.body).unwrap()
    }

    fn drain(t: &mut Tracker, now: i64) -> Vec<Outgoing> {
        let mut r = rng();
        std::iter::from_fn(|| t.next_send(now, &mut r)).collect()
    }

    fn cart_add() -> CartInput {
        CartInput {
            action: Some(CartAction::Add),
            currency: Some("EUR".into()),
            items: vec![Item {
                id: "sku-42".into(),
                price: Some(12.5),
                quantity: 1,
                ..Item::default()
            }],
            ..CartInput::default()
        }
    }

    #[test]
    fn nothing_before_consent() {
        let mut t = Tracker::new(cfg("required"), false, false);
        let mut r = rng();
        t.page_view(T0, &ctx("https://s.example/"), "", Nav::Load, &mut r);
        t.track(T0, "signup", Props::new());
        t.cart(T0, cart_add());
        t.flush(T0);
        t.visibility(T0, true);
        assert_eq!(t.queued(), 0);
        assert!(drain(&mut t, T0 + 60_000).is_empty());
        assert_eq!(t.deadline(T0), None);
        assert_eq!(t.consent(Command::Grant), Change::Start);
        t.page_view(T0, &ctx("https://s.example/"), "", Nav::Load, &mut r);
        assert_eq!(t.queued(), 1);
    }

    #[test]
    fn privacy_signal_until_explicit_grant() {
        let mut t = Tracker::new(cfg("not-required"), true, false);
        let mut r = rng();
        t.page_view(T0, &ctx("https://s.example/"), "", Nav::Load, &mut r);
        assert_eq!(t.queued(), 0);
        assert_eq!(t.consent(Command::Grant), Change::Start);
        t.page_view(T0, &ctx("https://s.example/"), "", Nav::Load, &mut r);
        assert_eq!(t.queued(), 1);
    }

    #[test]
    fn revoke_drops_queue_and_pending() {
        let mut t = granted();
        t.track(T0, "a", Props::new());
        t.flush(T0);
        let mut r = rng();
        let out = t.next_send(T0, &mut r).unwrap();
        t.track(T0, "b", Props::new());
        assert_eq!(t.consent(Command::Revoke), Change::Stop);
        assert_eq!(t.queued(), 0);
        assert_eq!(t.pv(), None);
        t.delivered(out.key, Outcome::Retry { after_ms: None }, T0, &mut r);
        assert!(drain(&mut t, T0 + 3_600_000).is_empty());
        assert_eq!(t.deadline(T0), None);
        t.track(T0, "c", Props::new());
        assert_eq!(t.queued(), 0, "nothing after revoke");
    }

    #[test]
    fn pageview_is_scrubbed_and_sent_after_five_seconds() {
        let mut t = granted();
        assert_eq!(t.deadline(T0), Some(T0 + 5_000));
        assert!(drain(&mut t, T0 + 4_999).is_empty());
        let out = drain(&mut t, T0 + 5_000);
        assert_eq!(out.len(), 1);
        assert!(!out[0].beacon);
        let b = batch(&out[0]);
        assert_eq!(b.site, "demo-shop");
        assert_eq!(b.sent_at, T0 + 5_000);
        assert_eq!(b.sdk.as_deref(), Some(SDK_NAME));
        assert!(waymark_protocol::valid_batch_id(&b.batch));
        let e = &b.events[0];
        assert_eq!(e.kind, EventType::Pageview);
        assert_eq!(e.url, "https://s.example/?utm_source=nl");
        assert!(waymark_protocol::valid_pv(&e.pv));
        assert_eq!(e.referrer, None);
        assert_eq!(
            t.deadline(T0 + 5_000),
            None,
            "in flight: nothing to wake for"
        );
    }

    #[test]
    fn ten_events_flush_at_once() {
        let mut t = granted();
        for i in 0..8 {
            t.track(T0 + i, "e", Props::new());
        }
        assert!(drain(&mut t, T0 + 10).is_empty());
        t.cart(T0 + 10, cart_add());
        assert_eq!(t.deadline(T0 + 10), Some(T0 + 10));
        let out = drain(&mut t, T0 + 10);
        assert_eq!(out.len(), 1);
        assert_eq!(batch(&out[0]).events.len(), 10);
    }

    #[test]
    fn spa_navigation_sends_engagement_then_view_and_dedups() {
        let mut t = granted();
        let mut r = rng();
        let first = t.pv().unwrap().to_string();
        t.scrolled(T0 + 1_000, 60);
        t.page_view(
            T0 + 2_000,
            &ctx("https://s.example/?utm_source=nl"),
            "",
            Nav::Push,
            &mut r,
        );
        assert_eq!(t.queued(), 1, "same scrubbed URL: no new view");
        t.page_view(
            T0 + 2_000,
            &ctx("https://s.example/b"),
            "",
            Nav::Push,
            &mut r,
        );
        t.page_view(
            T0 + 2_500,
            &ctx("https://s.example/b?x=1"),
            "",
            Nav::Replace,
            &mut r,
        );
        t.page_view(
            T0 + 2_500,
            &ctx("https://s.example/b#top"),
            "",
            Nav::Pop,
            &mut r,
        );
        assert_eq!(t.queued(), 3);
        t.flush(T0 + 3_000);
        let b = batch(&drain(&mut t, T0 + 3_000)[0]);
        let kinds: Vec<_> = b.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventType::Pageview,
                EventType::Engagement,
                EventType::Pageview
            ]
        );
        let eng = &b.events[1];
        assert_eq!(eng.pv, first);
        assert_eq!((eng.scroll, eng.engaged_ms), (Some(60), Some(2_000)));
        let view = &b.events[2];
        assert_ne!(view.pv, first);
        assert_eq!(view.url, "https://s.example/b");
        assert_eq!(
            view.referrer.as_deref(),
            Some("https://s.example/?utm_source=nl")
        );
    }

    #[test]
    fn hash_mode_keeps_fragment() {
        let mut c = cfg("not-required");
        c.spa = SpaMode::Hash;
        let mut t = Tracker::new(c, false, false);
        let mut r = rng();
        t.page_view(T0, &ctx("https://s.example/#/a"), "", Nav::Load, &mut r);
        t.page_view(T0, &ctx("https://s.example/#/b"), "", Nav::Hash, &mut r);
        t.page_view(T0, &ctx("https://s.example/#/b"), "", Nav::Pop, &mut r);
        t.flush(T0);
        let b = batch(&drain(&mut t, T0)[0]);
        let urls: Vec<_> = b.events.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://s.example/#/a",
                "https://s.example/#/a",
                "https://s.example/#/b"
            ]
        );
    }

    #[test]
    fn load_referrer_is_scrubbed() {
        let mut t = Tracker::new(cfg("not-required"), false, false);
        let mut r = rng();
        t.page_view(
            T0,
            &ctx("https://s.example/"),
            "https://www.google.com/search?q=ann@example.com",
            Nav::Load,
            &mut r,
        );
        t.flush(T0);
        let b = batch(&drain(&mut t, T0)[0]);
        assert_eq!(
            b.events[0].referrer.as_deref(),
            Some("https://www.google.com/search")
        );
    }

    #[test]
    fn hide_sends_engagement_by_beacon_once() {
        let mut t = granted();
        t.scrolled(T0 + 1_000, 30);
        t.visibility(T0 + 4_000, true);
        let out = drain(&mut t, T0 + 4_000);
        assert_eq!(out.len(), 1);
        assert!(out[0].beacon);
        let b = batch(&out[0]);
        assert_eq!(b.events.len(), 2);
        assert_eq!(b.events[1].engaged_ms, Some(4_000));
        let mut r = rng();
        t.delivered(out[0].key, Outcome::Delivered, T0 + 4_000, &mut r);
        // pagehide right after visibilitychange: nothing new to say.
        t.visibility(T0 + 4_001, true);
        assert!(drain(&mut t, T0 + 4_001).is_empty());
        // Back, active for 2 s, hidden again: a cumulative engagement.
        t.visibility(T0 + 10_000, false);
        t.input(T0 + 10_000);
        t.visibility(T0 + 12_000, true);
        let b = batch(&drain(&mut t, T0 + 12_000)[0]);
        assert_eq!(b.events[0].engaged_ms, Some(6_000));
    }

    #[test]
    fn retry_keeps_batch_id_and_backs_off() {
        let mut t = granted();
        let mut r = rng();
        let first = drain(&mut t, T0 + 5_000).remove(0);
        let id = batch(&first).batch;
        t.delivered(
            first.key,
            Outcome::Retry {
                after_ms: Some(10_000),
            },
            T0 + 5_100,
            &mut r,
        );
        let at = t.deadline(T0 + 5_100).unwrap();
        assert_eq!(at, T0 + 15_100, "Retry-After is honoured");
        // New events wait while the collector asked us to back off.
        t.track(T0 + 6_000, "x", Props::new());
        t.flush(T0 + 6_000);
        assert!(drain(&mut t, at - 1).is_empty());
        assert_eq!(
            t.deadline(at - 1),
            Some(at),
            "no busy wake-ups for the held queue"
        );
        let again = drain(&mut t, at);
        assert_eq!(again.len(), 1);
        let b = batch(&again[0]);
        assert_eq!(b.batch, id, "same batch id");
        assert_eq!(b.sent_at, at, "fresh sent_at");
        assert_eq!(again[0].key, first.key);
        t.delivered(first.key, Outcome::Delivered, at, &mut r);
        let rest = drain(&mut t, at);
        assert_eq!(rest.len(), 1);
        assert_ne!(batch(&rest[0]).batch, id);
        assert_eq!(t.failed(), 0);
    }

    #[test]
    fn retries_are_bounded_and_rejections_dropped() {
        let mut t = granted();
        let mut r = rng();
        let mut now = T0 + 5_000;
        let mut out = drain(&mut t, now).remove(0);
        let mut delays = Vec::new();
        for _ in 1..MAX_ATTEMPTS {
            t.delivered(out.key, Outcome::Retry { after_ms: None }, now, &mut r);
            let next = t.deadline(now).unwrap();
            delays.push(next - now);
            now = next;
            out = drain(&mut t, now).remove(0);
        }
        assert!(delays.windows(2).all(|w| w[1] >= w[0]), "{delays:?}");
        assert!(delays[4] >= 8_000, "{delays:?}");
        t.delivered(out.key, Outcome::Retry { after_ms: None }, now, &mut r);
        assert_eq!(t.deadline(now), None, "given up");
        assert_eq!(t.failed(), 1);
        t.track(now, "y", Props::new());
        t.flush(now);
        let o = drain(&mut t, now).remove(0);
        t.delivered(o.key, Outcome::Rejected, now, &mut r);
        assert!(
            drain(&mut t, now + 3_600_000).is_empty(),
            "4xx: never retried"
        );
        assert_eq!(t.failed(), 2);
    }

    #[test]
    fn hide_sends_waiting_retries_by_beacon() {
        let mut t = granted();
        let mut r = rng();
        let out = drain(&mut t, T0 + 5_000).remove(0);
        t.delivered(
            out.key,
            Outcome::Retry {
                after_ms: Some(60_000),
            },
            T0 + 5_000,
            &mut r,
        );
        t.track(T0 + 6_000, "x", Props::new());
        t.visibility(T0 + 7_000, true);
        let sent = drain(&mut t, T0 + 7_000);
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|o| o.beacon));
        assert_eq!(batch(&sent[0]).batch, batch(&out).batch);
        // A refused beacon does not loop: it waits for its backoff.
        t.delivered(
            sent[1].key,
            Outcome::Retry { after_ms: None },
            T0 + 7_000,
            &mut r,
        );
        assert!(drain(&mut t, T0 + 7_000).is_empty());
    }

    #[test]
    fn hide_resends_batches_still_in_flight_by_beacon_with_the_same_id() {
        let mut t = granted();
        let mut r = rng();
        let in_flight = drain(&mut t, T0 + 5_000).remove(0);
        assert!(!in_flight.beacon);
        t.visibility(T0 + 5_100, true);
        // The copy first, then the page view's engagement that hiding produces.
        let sent = drain(&mut t, T0 + 5_100);
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|o| o.beacon));
        assert_eq!(batch(&sent[0]).batch, batch(&in_flight).batch);
        assert_ne!(batch(&sent[1]).batch, batch(&in_flight).batch);
        assert_eq!(batch(&sent[0]).events, batch(&in_flight).events);
        // The beacon is accepted; the late fetch answer for the same key is then ignored.
        t.delivered(sent[0].key, Outcome::Delivered, T0 + 5_100, &mut r);
        t.delivered(sent[1].key, Outcome::Delivered, T0 + 5_100, &mut r);
        t.delivered(
            in_flight.key,
            Outcome::Retry { after_ms: None },
            T0 + 5_200,
            &mut r,
        );
        assert!(drain(&mut t, T0 + 70_000).is_empty());
    }

    #[test]
    fn large_queues_split_into_bounded_batches() {
        let mut t = granted();
        let long = "x".repeat(250);
        for i in 0..300 {
            let mut props = Props::new();
            for k in 0..4 {
                props.insert(format!("k{k}"), PropValue::Text(long.clone()));
            }
            t.track(T0 + i, "big", props);
        }
        t.visibility(T0 + 1_000, true);
        let out = drain(&mut t, T0 + 1_000);
        let mut r = rng();
        let mut total = 0;
        for o in &out {
            assert!(o.body.len() <= MAX_BODY, "{}", o.body.len());
            let b = batch(o);
            assert!(b.events.len() <= MAX_EVENTS);
            total += b.events.len();
            t.delivered(o.key, Outcome::Delivered, T0 + 1_000, &mut r);
        }
        // 1 page view + 300 custom + 1 engagement, in order and all delivered.
        let mut more = drain(&mut t, T0 + 1_000);
        while !more.is_empty() {
            for o in &more {
                total += batch(o).events.len();
                t.delivered(o.key, Outcome::Delivered, T0 + 1_000, &mut r);
            }
            more = drain(&mut t, T0 + 1_000);
        }
        assert_eq!(total, 302);
    }

    #[test]
    fn overflow_counts_drops() {
        let mut c = cfg("not-required");
        c.queue_cap = 5;
        let mut t = Tracker::new(c, false, false);
        let mut r = rng();
        t.page_view(T0, &ctx("https://s.example/"), "", Nav::Load, &mut r);
        let out = drain(&mut t, T0 + 5_000).remove(0);
        t.delivered(
            out.key,
            Outcome::Retry { after_ms: None },
            T0 + 5_000,
            &mut r,
        );
        for i in 0..8 {
            t.track(T0 + 5_001 + i, "e", Props::new());
        }
        assert_eq!(t.queued(), 5);
        assert_eq!(t.dropped(), 3);
    }

    #[test]
    fn invalid_api_events_are_dropped_silently() {
        let mut t = granted();
        t.track(T0, "", Props::new());
        t.cart(T0, CartInput::default());
        assert_eq!(t.queued(), 1, "only the page view");
    }

    #[test]
    fn ids() {
        let mut r = rng();
        let a = random_id::<12>(&mut r);
        let b = random_id::<22>(&mut r);
        assert!(waymark_protocol::valid_pv(&a));
        assert!(waymark_protocol::valid_batch_id(&b));
        let mut ff = |buf: &mut [u8]| buf.fill(0xff);
        assert_eq!(random_id::<8>(&mut ff), "________");
    }
}
