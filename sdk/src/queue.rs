//! The bounded event queue and its flush policy.
//!
//! Flush when [`FLUSH_COUNT`] events are queued, [`FLUSH_DELAY_MS`] after the first queued event,
//! or at once when asked (page hidden, `waymark('flush')`). When full, the oldest event is dropped
//! and counted: the newest events describe the page the visitor is on.
//!
//! A plain `Vec`, not a `VecDeque`: dropping from the front only happens on overflow, and the
//! smaller code matters more in the Wasm build than that rare shift.

use crate::prelude::*;
use waymark_protocol::Event;

/// Queue length that triggers a flush.
pub const FLUSH_COUNT: usize = 10;
/// Delay from the first queued event to the flush.
pub const FLUSH_DELAY_MS: i64 = 5_000;

#[derive(Debug, Clone)]
pub struct Queue {
    events: Vec<Event>,
    cap: usize,
    /// When the queue is due to be flushed (`None` while empty).
    due: Option<i64>,
    dropped: u32,
}

impl Queue {
    pub fn new(cap: usize) -> Queue {
        Queue {
            events: Vec::new(),
            cap: cap.max(1),
            due: None,
            dropped: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events dropped by overflow since the start.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Appends an event, dropping the oldest when full.
    pub fn push(&mut self, event: Event, now: i64) {
        if self.events.len() >= self.cap {
            self.events.remove(0);
            self.dropped = self.dropped.saturating_add(1);
        }
        self.events.push(event);
        if self.due.is_none() {
            self.due = Some(now.saturating_add(FLUSH_DELAY_MS));
        }
    }

    /// Puts events taken by [`Queue::take`] back at the front, in order (a batch was too large).
    pub fn unshift(&mut self, events: Vec<Event>) {
        self.events.splice(0..0, events);
    }

    /// Makes whatever is queued due now.
    pub fn flush_now(&mut self, now: i64) {
        if !self.events.is_empty() {
            self.due = Some(self.due.map_or(now, |d| d.min(now)));
        }
    }

    /// `true` when the queue should be sent at `now`.
    pub fn ready(&self, now: i64) -> bool {
        self.events.len() >= FLUSH_COUNT || self.due.is_some_and(|d| d <= now)
    }

    /// When the queue will be due (for the wake-up timer): now if it is full enough.
    pub fn deadline(&self, now: i64) -> Option<i64> {
        if self.events.len() >= FLUSH_COUNT {
            return Some(now);
        }
        self.due
    }

    /// Takes up to `max` of the oldest events. What remains stays due, so a flush sends all.
    pub fn take(&mut self, max: usize) -> Vec<Event> {
        let n = max.min(self.events.len());
        let out: Vec<Event> = self.events.drain(..n).collect();
        if self.events.is_empty() {
            self.due = None;
        }
        out
    }

    /// Drops everything queued (consent denied or revoked). Not counted as overflow.
    pub fn clear(&mut self) {
        self.events.clear();
        self.due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_protocol::EventType;

    fn ev(at: i64) -> Event {
        Event::new(EventType::Pageview, at, "k3J9xq2L", "https://s.example/")
    }

    #[test]
    fn flush_after_delay_from_first_event() {
        let mut q = Queue::new(500);
        assert!(!q.ready(0));
        assert_eq!(q.deadline(0), None);
        q.push(ev(1), 1_000);
        q.push(ev(2), 4_000);
        assert_eq!(
            q.deadline(4_000),
            Some(6_000),
            "5 s after the first, not the last"
        );
        assert!(!q.ready(5_999));
        assert!(q.ready(6_000));
        assert_eq!(q.take(100).len(), 2);
        assert!(!q.ready(10_000));
        assert_eq!(q.deadline(10_000), None);
    }

    #[test]
    fn flush_at_ten_events() {
        let mut q = Queue::new(500);
        for i in 0..9 {
            q.push(ev(i + 1), 0);
        }
        assert!(!q.ready(1));
        q.push(ev(10), 0);
        assert!(q.ready(1));
        assert_eq!(q.deadline(1), Some(1));
    }

    #[test]
    fn flush_now_and_remainder_stays_due() {
        let mut q = Queue::new(500);
        q.flush_now(0);
        assert!(!q.ready(0), "nothing to flush");
        for i in 0..5 {
            q.push(ev(i + 1), 100);
        }
        q.flush_now(200);
        assert!(q.ready(200));
        assert_eq!(q.take(2).len(), 2);
        assert!(q.ready(200), "the rest is still due");
        let back = q.take(1);
        q.unshift(back);
        assert_eq!(q.len(), 3);
        assert_eq!(q.take(1)[0].at, 3, "put back in order");
    }

    #[test]
    fn overflow_drops_oldest_and_counts() {
        let mut q = Queue::new(3);
        for i in 1..=5 {
            q.push(ev(i), 0);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped(), 2);
        let ats: Vec<i64> = q.take(10).iter().map(|e| e.at).collect();
        assert_eq!(ats, [3, 4, 5]);
        q.push(ev(6), 0);
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.dropped(), 2, "a consent drop is not an overflow");
        assert!(!q.ready(i64::MAX));
    }
}
