//! Capture rules of one page view: when a navigation is a new view, the deepest scroll point,
//! and engaged time.
//!
//! Engaged time is time during which the page was visible **and** the visitor gave input within
//! the last [`IDLE_MS`]. It is accounted exactly at each input and visibility change: between two
//! such points nothing changes, so the engaged part of the interval is its overlap with
//! `[last input, last input + IDLE_MS]`.

use crate::prelude::*;

/// Input older than this no longer counts as engagement.
pub const IDLE_MS: i64 = 30_000;

/// What caused a page-view check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The page load, or capture starting after consent.
    Load,
    Push,
    /// `history.replaceState`: a new view only when the path changes.
    Replace,
    Pop,
    Hash,
    /// `waymark('page')`.
    Manual,
}

/// `true` when navigating from `old` to `new` (both already scrubbed) is a new page view: never
/// for the same URL; for `replaceState` only when the path (or, in hash mode, the fragment route)
/// changes, not the query.
pub fn is_new_view(nav: Nav, old: &str, new: &str) -> bool {
    if nav == Nav::Replace {
        return without_query(old) != without_query(new);
    }
    old != new
}

/// `(path, fragment)` of a URL, the query left out.
fn without_query(url: &str) -> (&str, &str) {
    let (rest, fragment) = url.split_once('#').unwrap_or((url, ""));
    (
        rest.split_once('?').map_or(rest, |(path, _)| path),
        fragment,
    )
}

/// How deep the visitor has seen, in percent of the document height (the viewport's bottom edge).
/// A document no taller than the viewport counts as fully seen.
pub fn scroll_percent(scroll_y: f64, viewport_h: f64, doc_h: f64) -> u8 {
    // Also taken for NaN heights.
    if doc_h.partial_cmp(&viewport_h) != Some(core::cmp::Ordering::Greater) {
        return 100;
    }
    let pct = (scroll_y.max(0.0) + viewport_h) / doc_h * 100.0;
    // Rounds half up (`round` is not in `core`); `as` saturates and maps NaN to 0: no panic for
    // any input.
    (pct.clamp(0.0, 100.0) + 0.5) as u8
}

/// The state of the current page view.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Page-view id (random, in page memory only).
    pub pv: String,
    /// The scrubbed URL.
    pub url: String,
    scroll: u8,
    engaged_ms: u64,
    last_input: i64,
    /// Time up to which engagement has been accounted.
    mark: i64,
    visible: bool,
    /// The last engagement values handed out, so an unchanged one is not sent twice.
    sent: Option<(u8, u64)>,
}

impl Page {
    /// A view starting at `now`. The navigation that led here counts as the first input.
    pub fn new(pv: String, url: String, now: i64, visible: bool) -> Page {
        Page {
            pv,
            url,
            scroll: 0,
            engaged_ms: 0,
            last_input: now,
            mark: now,
            visible,
            sent: None,
        }
    }

    fn account(&mut self, now: i64) {
        if self.visible && now > self.mark {
            let from = self.mark.max(self.last_input);
            let to = now.min(self.last_input.saturating_add(IDLE_MS));
            if to > from {
                self.engaged_ms += (to - from) as u64;
            }
        }
        self.mark = self.mark.max(now);
    }

    /// Keyboard, pointer, touch or scroll input at `now`.
    pub fn input(&mut self, now: i64) {
        self.account(now);
        self.last_input = self.last_input.max(now);
    }

    pub fn visibility(&mut self, now: i64, visible: bool) {
        self.account(now);
        self.visible = visible;
    }

    /// Records a scroll measurement; the maximum is kept.
    pub fn scrolled(&mut self, pct: u8) {
        self.scroll = self.scroll.max(pct.min(100));
    }

    /// `(scroll, engaged_ms)` so far, or `None` when nothing changed since the last call.
    pub fn engagement(&mut self, now: i64) -> Option<(u8, u64)> {
        self.account(now);
        let v = (self.scroll, self.engaged_ms);
        if self.sent == Some(v) {
            return None;
        }
        self.sent = Some(v);
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(now: i64) -> Page {
        Page::new("k3J9xq2L".into(), "https://s.example/".into(), now, true)
    }

    #[test]
    fn spa_dedup() {
        let a = "https://s.example/a";
        assert!(!is_new_view(Nav::Push, a, a));
        assert!(is_new_view(Nav::Push, a, "https://s.example/b"));
        assert!(is_new_view(Nav::Pop, a, "https://s.example/a?utm_source=x"));
        assert!(!is_new_view(
            Nav::Replace,
            a,
            "https://s.example/a?utm_source=x"
        ));
        assert!(is_new_view(
            Nav::Replace,
            a,
            "https://s.example/b?utm_source=x"
        ));
        assert!(!is_new_view(Nav::Manual, a, a));
        // Hash mode keeps the fragment in the scrubbed URL, so routes differ.
        assert!(is_new_view(
            Nav::Hash,
            "https://s.example/#/a",
            "https://s.example/#/b"
        ));
        assert!(is_new_view(
            Nav::Replace,
            "https://s.example/#/a",
            "https://s.example/#/b"
        ));
        assert!(is_new_view(
            Nav::Replace,
            "https://s.example/?utm_source=x#/a",
            "https://s.example/?utm_source=x#/b"
        ));
        assert!(!is_new_view(
            Nav::Replace,
            "https://s.example/#/a",
            "https://s.example/?utm_source=x#/a"
        ));
    }

    #[test]
    fn scroll_depth() {
        assert_eq!(scroll_percent(0.0, 800.0, 800.0), 100);
        assert_eq!(scroll_percent(0.0, 800.0, 0.0), 100);
        assert_eq!(scroll_percent(0.0, 800.0, 3200.0), 25);
        assert_eq!(scroll_percent(1600.0, 800.0, 3200.0), 75);
        assert_eq!(scroll_percent(9999.0, 800.0, 3200.0), 100);
        assert_eq!(
            scroll_percent(-50.0, 800.0, 3200.0),
            25,
            "overscroll bounce"
        );
        assert_eq!(scroll_percent(f64::NAN, 800.0, 3200.0), 25);
        assert_eq!(scroll_percent(0.0, f64::NAN, 3200.0), 100);
        let mut p = page(0);
        p.scrolled(40);
        p.scrolled(20);
        assert_eq!(p.engagement(0), Some((40, 0)));
        p.scrolled(250);
        assert_eq!(p.engagement(0), Some((100, 0)));
    }

    #[test]
    fn engaged_time_needs_recent_input() {
        let mut p = page(0);
        // Load counts as input: 30 s engaged, then idle.
        assert_eq!(p.engagement(60_000), Some((0, 30_000)));
        p.input(70_000);
        assert_eq!(p.engagement(80_000), Some((0, 40_000)));
        // Input at 70 s covers until 100 s.
        assert_eq!(p.engagement(200_000), Some((0, 60_000)));
        assert_eq!(p.engagement(300_000), None, "unchanged: not sent twice");
    }

    #[test]
    fn engaged_time_needs_visibility() {
        let mut p = page(0);
        p.input(1_000);
        p.visibility(5_000, false);
        p.input(6_000); // input while hidden does not count while hidden
        p.visibility(10_000, true);
        assert_eq!(p.engagement(20_000), Some((0, 5_000 + 10_000)));
        // Input keeps it going; each accounting point splits intervals exactly.
        let mut p = page(0);
        for t in (0..=120_000).step_by(10_000) {
            p.input(t);
        }
        assert_eq!(p.engagement(120_000), Some((0, 120_000)));
        // Out-of-order time does not go backwards.
        p.input(100_000);
        assert_eq!(p.engagement(110_000), None);
    }

    #[test]
    fn hidden_at_start_counts_nothing() {
        let mut p = Page::new("k3J9xq2L".into(), "https://s.example/".into(), 0, false);
        assert_eq!(p.engagement(10_000), Some((0, 0)));
        p.visibility(20_000, true);
        p.input(20_000);
        assert_eq!(p.engagement(25_000), Some((0, 5_000)));
    }
}
