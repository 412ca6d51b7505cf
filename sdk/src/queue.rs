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

/// What the browser glue does with its one timer after a pump.
#[derive(Debug, PartialEq, Eq)]
pub enum Timer {
    /// Leave the armed timer (or none) as it is.
    Keep,
    /// Clear the armed timer, if any, and arm one for this time.
    Arm(i64),
}

/// The timer policy. `armed`: when the armed timer fires; `want`: the tracker's next deadline;
/// `posted`: this pump posted a batch.
///
/// Arming a timer costs the task that does it about 0.1 ms in Chromium (BENCHMARKS.md, "SDK
/// main-thread time"), and the call that queues a batch's first event is the page's. So a timer
/// that fires no later than wanted stays armed (firing early only pumps and re-arms for the rest,
/// in the SDK's own task), and one with nothing left to do is left to fire in vain rather than
/// cleared; and after a post, the timer for the next batch's delay is armed at once, so that the
/// next first event usually finds one armed early enough.
pub fn timer(armed: Option<i64>, want: Option<i64>, posted: bool, now: i64) -> Timer {
    let want = want.or(posted.then_some(now + FLUSH_DELAY_MS));
    match (armed, want) {
        (Some(a), Some(w)) if a > w => Timer::Arm(w),
        (None, Some(w)) => Timer::Arm(w),
        _ => Timer::Keep,
    }
}

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
    fn a_timer_armed_early_enough_stays_armed() {
        // Nothing armed: arm for the deadline.
        assert_eq!(timer(None, Some(5_000), false, 0), Timer::Arm(5_000));
        // Armed earlier than (or at) the deadline: it fires and re-arms for the rest.
        assert_eq!(timer(Some(4_000), Some(5_000), false, 100), Timer::Keep);
        assert_eq!(timer(Some(5_000), Some(5_000), false, 100), Timer::Keep);
        // Armed too late (ten events queued: due now): arm again for now.
        assert_eq!(timer(Some(5_000), Some(100), false, 100), Timer::Arm(100));
        // Nothing wanted: an armed timer is left to fire in vain, none is armed.
        assert_eq!(timer(Some(5_000), None, false, 100), Timer::Keep);
        assert_eq!(timer(None, None, false, 100), Timer::Keep);
    }

    #[test]
    fn after_a_post_the_next_delay_is_armed_at_once() {
        assert_eq!(
            timer(None, None, true, 1_000),
            Timer::Arm(1_000 + FLUSH_DELAY_MS)
        );
        // A deadline of its own (a retry, events left) wins.
        assert_eq!(timer(None, Some(1_500), true, 1_000), Timer::Arm(1_500));
        // The next batch's first event at 3 000 wants 8 000: the timer armed at the post
        // (6 000) fires first and re-arms for the rest.
        assert_eq!(
            timer(
                Some(1_000 + FLUSH_DELAY_MS),
                Some(3_000 + FLUSH_DELAY_MS),
                false,
                3_000
            ),
            Timer::Keep
        );
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
