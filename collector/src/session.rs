//! The cookieless sessioniser: decides which session each event belongs to, as a pure state machine.
//!
//! Time and session ids are inputs (the event's derived time, a caller-supplied id closure), so the
//! rules of SESSIONS.md can be tested exhaustively and replayed exactly; the HTTP layer owns the
//! clock, the random source and the store.
//!
//! # Rules
//! A session is a run of one visitor's events on one site with no gap longer than
//! [`SessionConfig::timeout_ms`] (a gap of exactly the timeout continues it), at most
//! [`SessionConfig::max_duration_ms`] from its first to its last event (exactly the cap is
//! allowed). A hit with `campaign: Some(c)` starts a new session unless the open session already
//! has campaign `c`; a hit with `campaign: None` never does. An open session that came in direct
//! has no campaign, so an external campaign or referrer arriving later starts a new session.
//!
//! **Midnight.** When today's key has no open session, the key under yesterday's salt is looked up;
//! a session found there is re-filed under today's key (later lookups are one probe) but keeps
//! reporting the key it was filed under, so it still counts as one visitor.
//!
//! **Late events.** Batches arrive out of order, and events are never dropped. Per visitor the
//! sessioniser remembers the open session and *one* earlier session: the last one it split off or
//! created for a late event. A hit at time `t`:
//! 1. at or after the open session's last event: continues it or starts a new one, by the rules
//!    above (the common case: the "frontier");
//! 2. inside the open session's span: joins it, whatever its campaign: a session cannot be split
//!    retroactively, since earlier events already carry its id;
//! 3. inside the earlier session's span: joins that one;
//! 4. otherwise, before the open session: joins the nearer of the two sessions that can take it
//!    without breaking the rules (within the timeout of its span, not longer than the cap, no
//!    campaign conflict; a late campaign hit before a direct session becomes that session's
//!    campaign, because it was its entry); the open session is never stretched back over the
//!    earlier one;
//! 5. if neither can: it starts a session of its own, which becomes the remembered earlier
//!    session (the one before is finalised), because the rest of that late batch follows it.
//!
//! So every session is "timeout-connected" (its events, in time order, have no gap longer than
//! the timeout) and never longer than the cap, whatever the arrival order; arrival order can only
//! split what time order would have joined, never the reverse (when no campaign is involved).
//!
//! **Finalising.** A session is finalised (handed back, never assigned to again) when it is
//! forgotten: by [`Sessioniser::expire`] when its visitor has been idle for longer than the
//! timeout, or through [`Sessioniser::take_evicted`] when the `max_open` bound evicts the least
//! recently active visitor, or when a newer earlier-session pushes it out of the visitor's memory.
//!
//! # Memory
//! One slot of 112 bytes per visitor with an open session, holding the open and the earlier
//! session, in a dense `Vec` (removal swaps the last slot in), threaded on an intrusive LRU list by
//! `u32` index; a map from `(site, visitor)` to the slot index, with 16-byte buckets. Counting
//! spare capacity, 130 to 210 bytes per open session depending on where the `Vec` (grown by half)
//! and the map (doubled) are in their growth; see [`Sessioniser::approx_bytes_per_session`].
//!
//! Architecture Invariant: no I/O, no clock, no randomness; this module never imports tokio,
//! hyper or rusqlite.

// The HTTP layer calls into this on every event: a panic here would take the collector down, so
// the panicking shortcuts are compile errors outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem;

/// A visitor's HMAC-derived key for one UTC day, computed by the caller.
pub type VisitorKey = u64;
/// A session id: random, supplied by the caller through a closure.
pub type SessionId = u64;
/// A site, as a small index the caller maps site strings to.
pub type SiteIdx = u32;

const MINUTE_MS: i64 = 60_000;

/// How sessions are cut and how many are kept in memory.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// Longest gap between two events of one session (default 30 min).
    pub timeout_ms: i64,
    /// Longest span from a session's first to its last event (default 24 h).
    pub max_duration_ms: i64,
    /// Most visitors with an open session kept in memory; beyond it the least recently active
    /// is finalised (default 1 000 000; 0 is treated as 1).
    pub max_open: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 30 * MINUTE_MS,
            max_duration_ms: 24 * 60 * MINUTE_MS,
            max_open: 1_000_000,
        }
    }
}

/// What the sessioniser needs to know about one event.
#[derive(Clone, Copy, Debug)]
pub struct Hit {
    pub site: SiteIdx,
    /// Today's key.
    pub visitor: VisitorKey,
    /// The same person under yesterday's salt, while that salt exists.
    pub visitor_yesterday: Option<VisitorKey>,
    /// Derived event time, ms since the epoch.
    pub at: i64,
    /// Fingerprint of (source, medium, campaign) when this is a page view that carries UTM
    /// parameters or an external referrer; `None` otherwise.
    pub campaign: Option<u64>,
}

/// The session one hit was assigned to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub session: SessionId,
    /// The key the session is filed under: yesterday's key when a session continues across
    /// midnight, so the visitor is counted once.
    pub visitor: VisitorKey,
    /// This hit started the session.
    pub new: bool,
}

/// The restorable state of a session: what the store persists and gives back after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenSession {
    pub site: SiteIdx,
    /// The key the session is filed under (see [`Assignment::visitor`]).
    pub visitor: VisitorKey,
    pub id: SessionId,
    /// Time of its first and last event, ms.
    pub start: i64,
    pub last: i64,
    pub campaign: Option<u64>,
}

/// Assigns events to cookieless sessions; see the module documentation for the rules.
///
/// # Examples
/// ```
/// use waymark_collector::session::{Hit, SessionConfig, Sessioniser};
///
/// let mut s = Sessioniser::new(SessionConfig::default());
/// let mut ids = 0..;
/// let mut new_id = || ids.next().unwrap_or_default();
/// let hit = |at| Hit { site: 0, visitor: 7, visitor_yesterday: None, at, campaign: None };
///
/// let first = s.assign(&hit(0), &mut new_id);
/// let again = s.assign(&hit(10 * 60_000), &mut new_id); // 10 minutes later: same session
/// let later = s.assign(&hit(60 * 60_000), &mut new_id); // 50 minutes of silence: a new one
/// assert!(first.new && !again.new && later.new);
/// assert_eq!(first.session, again.session);
/// assert_ne!(again.session, later.session);
/// ```
pub struct Sessioniser {
    cfg: SessionConfig,
    index: HashMap<Key, u32, BuildHasherDefault<KeyHasher>>,
    slots: Vec<Slot>,
    /// Ends of the LRU list (by slot index): `newest` was touched last.
    newest: u32,
    oldest: u32,
    /// The latest time seen (event time or `expire`'s `now`). Stamping slots with it rather than
    /// with their own event time keeps the LRU list sorted, so `expire` stops at the first slot
    /// that is still live instead of scanning them all.
    clock: i64,
    evicted: Vec<OpenSession>,
}

impl Sessioniser {
    pub fn new(cfg: SessionConfig) -> Self {
        Self {
            cfg,
            index: HashMap::default(),
            slots: Vec::new(),
            newest: NIL,
            oldest: NIL,
            clock: i64::MIN,
            evicted: Vec::new(),
        }
    }

    /// Resumes sessions after a restart, in any order and with duplicates: sessions of one
    /// `(site, visitor)` are merged by id, the latest two kept as the open and the earlier
    /// session, and any older ones finalised through [`Self::take_evicted`]. A session filed under
    /// yesterday's key is found again through [`Hit::visitor_yesterday`], as before the restart.
    pub fn restore(&mut self, sessions: impl IntoIterator<Item = OpenSession>) {
        let mut sessions: Vec<OpenSession> = sessions.into_iter().collect();
        // Oldest first, so the LRU list comes out in activity order and each visitor's latest
        // session ends up as the open one. Two zero-length sessions at the same millisecond (a
        // campaign split) can only be told apart by id, so which one resumes as open is arbitrary.
        sessions.sort_unstable_by_key(|s| (s.last, s.start, s.id));
        for s in sessions {
            self.clock = self.clock.max(s.last);
            let span = Span::from(s);
            match self.index.get(&Key::new(s.site, s.visitor)).copied() {
                None => self.insert(s.site, s.visitor, Known::open(span)),
                Some(i) => {
                    self.touch(i);
                    if let Some(slot) = self.slots.get_mut(i as usize) {
                        let mut known = slot.known();
                        if let Some(old) = known.absorb(span) {
                            self.evicted.push(old.open(slot.site));
                        }
                        slot.set_known(&known);
                    }
                }
            }
        }
    }

    /// Assigns one hit to a session, creating one (with an id from `new_id`) when needed.
    ///
    /// The caller applies each batch's events in derived-time order; batches may come in any
    /// order. Every hit gets a session.
    pub fn assign(&mut self, hit: &Hit, new_id: &mut impl FnMut() -> SessionId) -> Assignment {
        self.clock = self.clock.max(hit.at);
        if let Some(i) = self.lookup(hit) {
            self.touch(i);
            let cfg = self.cfg;
            let evicted = &mut self.evicted;
            if let Some(slot) = self.slots.get_mut(i as usize) {
                let mut known = slot.known();
                let assigned = match known.place(hit.at, hit.campaign, &cfg) {
                    Place::Cur => known.cur.assigned(false),
                    Place::Prev(p) => p.assigned(false),
                    Place::After => {
                        let fresh = Span::fresh(new_id(), hit);
                        let open = mem::replace(&mut known.cur, fresh);
                        if let Some(old) = known.prev.replace(open) {
                            evicted.push(old.open(slot.site));
                        }
                        fresh.assigned(true)
                    }
                    Place::Before => {
                        let fresh = Span::fresh(new_id(), hit);
                        if let Some(old) = known.prev.replace(fresh) {
                            evicted.push(old.open(slot.site));
                        }
                        fresh.assigned(true)
                    }
                };
                slot.set_known(&known);
                return assigned;
            }
        }
        let fresh = Span::fresh(new_id(), hit);
        self.insert(hit.site, hit.visitor, Known::open(fresh));
        fresh.assigned(true)
    }

    /// Removes and returns (finalised) the sessions of visitors idle for longer than the timeout
    /// at `now`: no hit assigned for more than `timeout_ms` on the sessioniser's clock, the latest
    /// of `now` and the event times seen. A visitor that just received a late event is therefore
    /// kept for another timeout, in case more of that late traffic follows; a hit after a real
    /// gap still starts a new session whether or not `expire` ran.
    pub fn expire(&mut self, now: i64) -> Vec<OpenSession> {
        self.clock = self.clock.max(now);
        let cutoff = now.saturating_sub(self.cfg.timeout_ms);
        let mut out = Vec::new();
        while let Some(slot) = self.slots.get(self.oldest as usize) {
            if slot.touched >= cutoff {
                break;
            }
            match self.remove(self.oldest) {
                Some(slot) => slot.finalise_into(&mut out),
                None => break,
            }
        }
        self.shrink_if_sparse();
        out
    }

    /// Sessions finalised since the last call other than by [`Self::expire`]: those of visitors
    /// evicted by the `max_open` bound (least recently active first), earlier sessions pushed out
    /// of a visitor's memory by a newer one, and surplus sessions given to [`Self::restore`].
    /// Call it after every batch so the store can finalise them: they are not lost.
    pub fn take_evicted(&mut self) -> Vec<OpenSession> {
        mem::take(&mut self.evicted)
    }

    /// Visitors with an open session (each also remembers at most one earlier session).
    pub fn open_count(&self) -> usize {
        self.slots.len()
    }

    /// Whether a visitor has a session in memory under any of `keys` (today's and yesterday's).
    /// A collector on a store shared with other collectors asks this before assigning a batch:
    /// when it is false, the visitor's open session may have been opened by another collector
    /// (one that has since stopped), so the caller looks it up in the store and hands it to
    /// [`Self::restore`] first; the next [`Self::assign`] then continues it like any other.
    pub fn knows(&self, site: SiteIdx, keys: &[VisitorKey]) -> bool {
        keys.iter()
            .any(|k| self.index.contains_key(&Key::new(site, *k)))
    }

    /// The open session of a visitor, under the key it is indexed by now: today's key once a
    /// session has continued across midnight. Its `visitor` is the key it is filed under.
    pub fn get(&self, site: SiteIdx, visitor: VisitorKey) -> Option<OpenSession> {
        let slot = self.slot(site, visitor)?;
        Some(slot.known().cur.open(site))
    }

    /// The open or remembered earlier session `id` of a visitor (looked up as in [`Self::get`]),
    /// for writing the state of the session an [`Assignment`] names through to the store.
    pub fn find(&self, site: SiteIdx, visitor: VisitorKey, id: SessionId) -> Option<OpenSession> {
        let known = self.slot(site, visitor)?.known();
        let span = [Some(known.cur), known.prev]
            .into_iter()
            .flatten()
            .find(|s| s.id == id)?;
        Some(span.open(site))
    }

    /// Every session not yet finalised (open and remembered earlier ones): what a graceful
    /// shutdown writes to the store so that [`Self::restore`] resumes exactly.
    pub fn sessions(&self) -> impl Iterator<Item = OpenSession> + '_ {
        self.slots.iter().flat_map(|slot| {
            let known = slot.known();
            [Some(known.cur), known.prev]
                .into_iter()
                .flatten()
                .map(move |s| s.open(slot.site))
        })
    }

    /// Heap and inline bytes held, from capacities (spare room included), so it is what the
    /// allocator actually handed out, not what is in use.
    pub fn approx_bytes(&self) -> usize {
        // The standard map does not expose its bucket count; rebuild it from its capacity the
        // way hashbrown sizes tables (power-of-two buckets, 7/8 load), plus one control byte per
        // bucket and one trailing SIMD group.
        let cap = self.index.capacity();
        let buckets = match cap {
            0 => 0,
            1..=7 => (cap + 1).next_power_of_two(),
            _ => (cap.saturating_mul(8).div_ceil(7)).next_power_of_two(),
        };
        let index = match buckets {
            0 => 0,
            _ => buckets * (mem::size_of::<(Key, u32)>() + 1) + 16,
        };
        mem::size_of::<Self>()
            + self.slots.capacity() * mem::size_of::<Slot>()
            + index
            + self.evicted.capacity() * mem::size_of::<OpenSession>()
    }

    /// [`Self::approx_bytes`] per open session.
    pub fn approx_bytes_per_session(&self) -> usize {
        self.approx_bytes() / self.open_count().max(1)
    }

    /// The slot of today's key, else yesterday's, re-filed under today's key: one visitor has
    /// one slot, and the next hit finds it in one probe.
    fn lookup(&mut self, hit: &Hit) -> Option<u32> {
        let today = Key::new(hit.site, hit.visitor);
        if let Some(&i) = self.index.get(&today) {
            return Some(i);
        }
        let yesterday = hit.visitor_yesterday.filter(|y| *y != hit.visitor)?;
        let i = self.index.remove(&Key::new(hit.site, yesterday))?;
        self.index.insert(today, i);
        if let Some(slot) = self.slots.get_mut(i as usize) {
            slot.visitor = hit.visitor;
        }
        Some(i)
    }

    fn slot(&self, site: SiteIdx, visitor: VisitorKey) -> Option<&Slot> {
        let i = *self.index.get(&Key::new(site, visitor))?;
        self.slots.get(i as usize)
    }

    /// Adds a visitor's slot as the most recently active, evicting the least recently active
    /// ones beyond the bound first.
    fn insert(&mut self, site: SiteIdx, visitor: VisitorKey, known: Known) {
        // Slot indexes are u32 with one value reserved for "none".
        let bound = self.cfg.max_open.clamp(1, NIL as usize);
        while self.slots.len() >= bound {
            match self.remove(self.oldest) {
                Some(slot) => slot.finalise_into(&mut self.evicted),
                None => break,
            }
        }
        if self.slots.len() == self.slots.capacity() {
            // Grow by half rather than doubling: the spare room is part of the per-session
            // budget, and never past the bound, which is where a busy collector sits.
            let len = self.slots.len();
            let extra = (len / 2).max(16).min(bound.saturating_sub(len)).max(1);
            self.slots.reserve_exact(extra);
        }
        let Ok(i) = u32::try_from(self.slots.len()) else {
            return;
        };
        let mut slot = Slot {
            cur: Packed::default(),
            prev: Packed::default(),
            visitor,
            touched: self.clock,
            site,
            newer: NIL,
            older: NIL,
            flags: 0,
        };
        slot.set_known(&known);
        self.slots.push(slot);
        self.index.insert(Key::new(site, visitor), i);
        self.link_newest(i);
    }

    /// Takes slot `i` out of the list, the map and the vector, moving the last slot into its
    /// place so the vector stays dense.
    fn remove(&mut self, i: u32) -> Option<Slot> {
        self.slots.get(i as usize)?;
        self.unlink(i);
        let slot = self.slots.swap_remove(i as usize);
        self.index.remove(&Key::new(slot.site, slot.visitor));
        if let Some(moved) = self.slots.get(i as usize) {
            let (newer, older, key) = (
                moved.newer,
                moved.older,
                Key::new(moved.site, moved.visitor),
            );
            match self.slots.get_mut(newer as usize) {
                Some(n) => n.older = i,
                None => self.newest = i,
            }
            match self.slots.get_mut(older as usize) {
                Some(o) => o.newer = i,
                None => self.oldest = i,
            }
            if let Some(at) = self.index.get_mut(&key) {
                *at = i;
            }
        }
        Some(slot)
    }

    /// Marks slot `i` as the most recently active.
    fn touch(&mut self, i: u32) {
        let clock = self.clock;
        if let Some(slot) = self.slots.get_mut(i as usize) {
            slot.touched = clock;
        }
        if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
    }

    fn unlink(&mut self, i: u32) {
        let Some(slot) = self.slots.get_mut(i as usize) else {
            return;
        };
        let (newer, older) = (slot.newer, slot.older);
        slot.newer = NIL;
        slot.older = NIL;
        match self.slots.get_mut(newer as usize) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
        match self.slots.get_mut(older as usize) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
    }

    fn link_newest(&mut self, i: u32) {
        let newest = self.newest;
        match self.slots.get_mut(newest as usize) {
            Some(n) => n.newer = i,
            None => self.oldest = i,
        }
        if let Some(slot) = self.slots.get_mut(i as usize) {
            slot.older = newest;
            slot.newer = NIL;
        }
        self.newest = i;
    }

    /// Gives memory back after a burst (say, a campaign spike) has expired.
    fn shrink_if_sparse(&mut self) {
        let len = self.slots.len();
        if self.slots.capacity() > 64 && len < self.slots.capacity() / 4 {
            self.slots.shrink_to(len + len / 2);
            self.index.shrink_to(len);
        }
    }
}

/// "No slot" in the LRU links.
const NIL: u32 = u32::MAX;

/// The map key, packed to 12 bytes so a bucket `(Key, u32)` takes 16 bytes instead of 24.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C, packed(4))]
struct Key {
    visitor: VisitorKey,
    site: SiteIdx,
}

impl Key {
    fn new(site: SiteIdx, visitor: VisitorKey) -> Self {
        Self { visitor, site }
    }
}

/// Visitor keys are HMAC outputs under a secret daily salt: uniformly distributed and not
/// choosable by a client, so SipHash's protection against crafted collisions buys nothing here and
/// would cost a good part of `assign`. A multiply-rotate step per field (FxHash's) with a final fold
/// of the high half, which hashbrown's bucket index (low bits) would otherwise not see.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// One visitor's state: 112 bytes. The campaigns' presence lives in `flags` rather than in two
/// `Option<u64>`s, which would add 16 bytes.
struct Slot {
    cur: Packed,
    prev: Packed,
    /// The key the slot is indexed by (today's, once re-filed at midnight).
    visitor: VisitorKey,
    /// The sessioniser's clock when a hit last touched this visitor.
    touched: i64,
    site: SiteIdx,
    /// LRU neighbours (slot indexes or [`NIL`]).
    newer: u32,
    older: u32,
    flags: u8,
}

const CUR_CAMPAIGN: u8 = 1;
const HAS_PREV: u8 = 2;
const PREV_CAMPAIGN: u8 = 4;

#[derive(Clone, Copy, Default)]
struct Packed {
    id: SessionId,
    filed: VisitorKey,
    start: i64,
    last: i64,
    campaign: u64,
}

impl Packed {
    fn pack(s: &Span) -> (Self, bool) {
        let packed = Self {
            id: s.id,
            filed: s.filed,
            start: s.start,
            last: s.last,
            campaign: s.campaign.unwrap_or_default(),
        };
        (packed, s.campaign.is_some())
    }

    fn unpack(&self, has_campaign: bool) -> Span {
        Span {
            id: self.id,
            filed: self.filed,
            start: self.start,
            last: self.last,
            campaign: has_campaign.then_some(self.campaign),
        }
    }
}

impl Slot {
    fn known(&self) -> Known {
        Known {
            cur: self.cur.unpack(self.flags & CUR_CAMPAIGN != 0),
            prev: (self.flags & HAS_PREV != 0)
                .then(|| self.prev.unpack(self.flags & PREV_CAMPAIGN != 0)),
        }
    }

    fn set_known(&mut self, known: &Known) {
        let (cur, cur_campaign) = Packed::pack(&known.cur);
        self.cur = cur;
        self.flags = if cur_campaign { CUR_CAMPAIGN } else { 0 };
        if let Some(prev) = &known.prev {
            let (prev, prev_campaign) = Packed::pack(prev);
            self.prev = prev;
            self.flags |= HAS_PREV | if prev_campaign { PREV_CAMPAIGN } else { 0 };
        }
    }

    /// Earlier session first, so a consumer applying them in order sees time order.
    fn finalise_into(&self, out: &mut Vec<OpenSession>) {
        let known = self.known();
        out.extend(known.prev.map(|s| s.open(self.site)));
        out.push(known.cur.open(self.site));
    }
}

/// A session while the sessioniser knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    id: SessionId,
    /// The visitor key it is filed under.
    filed: VisitorKey,
    start: i64,
    last: i64,
    campaign: Option<u64>,
}

impl From<OpenSession> for Span {
    fn from(s: OpenSession) -> Self {
        Self {
            id: s.id,
            filed: s.visitor,
            start: s.start.min(s.last),
            last: s.last.max(s.start),
            campaign: s.campaign,
        }
    }
}

impl Span {
    fn fresh(id: SessionId, hit: &Hit) -> Self {
        Self {
            id,
            filed: hit.visitor,
            start: hit.at,
            last: hit.at,
            campaign: hit.campaign,
        }
    }

    fn open(&self, site: SiteIdx) -> OpenSession {
        OpenSession {
            site,
            visitor: self.filed,
            id: self.id,
            start: self.start,
            last: self.last,
            campaign: self.campaign,
        }
    }

    fn assigned(&self, new: bool) -> Assignment {
        Assignment {
            session: self.id,
            visitor: self.filed,
            new,
        }
    }

    fn contains(&self, t: i64) -> bool {
        self.start <= t && t <= self.last
    }

    /// Whether a hit at `t >= last` continues this session: the rules as time order sees them.
    fn takes_after(&self, t: i64, campaign: Option<u64>, cfg: &SessionConfig) -> bool {
        t.saturating_sub(self.last) <= cfg.timeout_ms
            && t.saturating_sub(self.start) <= cfg.max_duration_ms
            && (campaign.is_none() || campaign == self.campaign)
    }

    /// Whether a hit at `t < start` can become this session's first event. A campaign hit may
    /// precede a direct session: it was that session's entry, which arrived late.
    fn takes_before(&self, t: i64, campaign: Option<u64>, cfg: &SessionConfig) -> bool {
        self.start.saturating_sub(t) <= cfg.timeout_ms
            && self.last.saturating_sub(t) <= cfg.max_duration_ms
            && (campaign.is_none() || self.campaign.is_none() || campaign == self.campaign)
    }

    /// Stretches the span to `t` (already checked with `takes_*`).
    fn extend(&mut self, t: i64, campaign: Option<u64>) {
        if t < self.start {
            self.start = t;
            self.campaign = self.campaign.or(campaign);
        } else {
            self.last = self.last.max(t);
        }
    }

    fn union(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            last: self.last.max(other.last),
            campaign: self.campaign.or(other.campaign),
            ..self
        }
    }
}

/// Where a hit goes, relative to what a visitor's slot knows.
enum Place {
    /// Joined (possibly stretching) the open session.
    Cur,
    /// Joined (possibly stretching) the earlier session, returned as it is now.
    Prev(Span),
    /// Starts a new open session; the open one becomes the earlier one.
    After,
    /// Starts a new session before the open one, which stays open.
    Before,
}

/// The sessions one visitor's slot remembers. `prev`, when present, ends no later than `cur`
/// starts (equal when a campaign split two hits of the same millisecond).
#[derive(Clone, Copy, Debug)]
struct Known {
    cur: Span,
    prev: Option<Span>,
}

impl Known {
    fn open(cur: Span) -> Self {
        Self { cur, prev: None }
    }

    /// Applies the rules of the module documentation, stretching a session the hit joins.
    fn place(&mut self, t: i64, campaign: Option<u64>, cfg: &SessionConfig) -> Place {
        if t >= self.cur.last {
            if self.cur.takes_after(t, campaign, cfg) {
                self.cur.last = t;
                return Place::Cur;
            }
            return Place::After;
        }
        if t >= self.cur.start {
            return Place::Cur;
        }
        // A late hit, before the open session.
        let prev = self.prev;
        if let Some(p) = prev.filter(|p| p.contains(t)) {
            return Place::Prev(p);
        }
        let cur_gap = (prev.is_none_or(|p| t > p.last) && self.cur.takes_before(t, campaign, cfg))
            .then(|| self.cur.start.saturating_sub(t));
        let prev_gap = prev.and_then(|p| {
            if t > p.last {
                p.takes_after(t, campaign, cfg)
                    .then(|| t.saturating_sub(p.last))
            } else {
                p.takes_before(t, campaign, cfg)
                    .then(|| p.start.saturating_sub(t))
            }
        });
        match (cur_gap, prev_gap, &mut self.prev) {
            (Some(c), Some(p), Some(span)) if p < c => {
                span.extend(t, campaign);
                Place::Prev(*span)
            }
            (Some(_), _, _) => {
                self.cur.extend(t, campaign);
                Place::Cur
            }
            (None, Some(_), Some(span)) => {
                span.extend(t, campaign);
                Place::Prev(*span)
            }
            _ => Place::Before,
        }
    }

    /// Adds a restored session; returns the one that no longer fits, if any.
    fn absorb(&mut self, s: Span) -> Option<Span> {
        if s.id == self.cur.id {
            self.cur = self.cur.union(s);
            return None;
        }
        if let Some(p) = self.prev.as_mut().filter(|p| p.id == s.id) {
            *p = p.union(s);
            return None;
        }
        if s.last >= self.cur.last {
            let before = mem::replace(&mut self.cur, s);
            return self.prev.replace(before);
        }
        match self.prev {
            Some(p) if s.last < p.last => Some(s),
            _ => self.prev.replace(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashSet};

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const T: i64 = 30 * MIN;
    const DAY: i64 = 24 * HOUR;

    /// A sessioniser with a counting id source, so tests can name sessions 1, 2, 3…
    struct Rig {
        s: Sessioniser,
        next: SessionId,
    }

    impl Rig {
        fn new() -> Self {
            Self::with(SessionConfig::default())
        }

        fn with(cfg: SessionConfig) -> Self {
            Self {
                s: Sessioniser::new(cfg),
                next: 0,
            }
        }

        fn hit(&mut self, h: Hit) -> Assignment {
            let next = &mut self.next;
            self.s.assign(&h, &mut || {
                *next += 1;
                *next
            })
        }

        /// Visitor 7 on site 0, no campaign.
        fn at(&mut self, at: i64) -> Assignment {
            self.hit(hit(7, at))
        }

        fn session(&mut self, at: i64) -> SessionId {
            self.at(at).session
        }
    }

    fn hit(visitor: VisitorKey, at: i64) -> Hit {
        Hit {
            site: 0,
            visitor,
            visitor_yesterday: None,
            at,
            campaign: None,
        }
    }

    fn with_campaign(h: Hit, c: u64) -> Hit {
        Hit {
            campaign: Some(c),
            ..h
        }
    }

    fn ids(sessions: &[OpenSession]) -> Vec<SessionId> {
        sessions.iter().map(|s| s.id).collect()
    }

    #[test]
    fn layout_is_as_budgeted() {
        assert_eq!(mem::size_of::<Slot>(), 112);
        assert_eq!(mem::size_of::<(Key, u32)>(), 16);
    }

    #[test]
    fn a_gap_of_exactly_the_timeout_continues() {
        let mut r = Rig::new();
        let first = r.at(0);
        let second = r.at(T);
        assert_eq!(
            first,
            Assignment {
                session: 1,
                visitor: 7,
                new: true
            }
        );
        assert_eq!(
            second,
            Assignment {
                session: 1,
                visitor: 7,
                new: false
            }
        );
    }

    #[test]
    fn a_gap_one_ms_over_the_timeout_splits() {
        let mut r = Rig::new();
        let first = r.session(0);
        let second = r.at(T + 1);
        assert!(second.new);
        assert_ne!(first, second.session);
        assert_eq!(r.s.get(0, 7).map(|s| s.start), Some(T + 1));
    }

    #[test]
    fn a_session_is_cut_at_the_duration_cap() {
        let mut r = Rig::new();
        let first = r.session(0);
        // Every 20 minutes for exactly 24 hours: one session, the cap itself is allowed.
        for k in 1..=72 {
            assert_eq!(r.session(k * 20 * MIN), first, "hit {k}");
        }
        let after = r.at(DAY + 1);
        assert!(after.new);
        assert_eq!(
            r.s.get(0, 7).map(|s| (s.start, s.last)),
            Some((DAY + 1, DAY + 1))
        );
        let done = r.s.find(0, 7, first);
        assert_eq!(done.map(|s| (s.start, s.last)), Some((0, DAY)));
    }

    #[test]
    fn the_cap_also_bounds_stretching_backwards() {
        let cfg = SessionConfig {
            timeout_ms: 10,
            max_duration_ms: 40,
            max_open: 10,
        };
        let mut r = Rig::with(cfg);
        let open = r.session(100);
        for at in [110, 120, 130, 140] {
            assert_eq!(r.session(at), open);
        }
        let late = r.at(95); // within the timeout of the start, but would make it 45 long
        assert!(late.new);
        assert_eq!(r.s.get(0, 7).map(|s| (s.start, s.last)), Some((100, 140)));
    }

    #[test]
    fn same_campaign_continues() {
        let mut r = Rig::new();
        let a = r.hit(with_campaign(hit(7, 0), 1));
        let b = r.hit(with_campaign(hit(7, MIN), 1));
        assert_eq!(a.session, b.session);
        assert!(!b.new);
    }

    #[test]
    fn another_campaign_starts_a_new_session() {
        let mut r = Rig::new();
        let a = r.hit(with_campaign(hit(7, 0), 1));
        let b = r.hit(with_campaign(hit(7, MIN), 2));
        assert!(b.new);
        assert_ne!(a.session, b.session);
        assert_eq!(r.s.get(0, 7).and_then(|s| s.campaign), Some(2));
    }

    #[test]
    fn a_campaign_after_a_direct_start_starts_a_new_session() {
        let mut r = Rig::new();
        let a = r.at(0);
        let b = r.hit(with_campaign(hit(7, MIN), 1));
        assert!(b.new);
        assert_ne!(a.session, b.session);
    }

    #[test]
    fn a_hit_without_campaign_never_splits() {
        let mut r = Rig::new();
        let a = r.hit(with_campaign(hit(7, 0), 1));
        let b = r.at(MIN);
        let c = r.at(2 * MIN);
        assert_eq!([b.session, c.session], [a.session; 2]);
        assert_eq!(r.s.get(0, 7).and_then(|s| s.campaign), Some(1));
    }

    #[test]
    fn a_session_continues_across_midnight_under_yesterdays_key() {
        let mut r = Rig::new();
        let (k1, k2) = (100, 200);
        let midnight = 20_000 * DAY;
        let before = r.hit(hit(k1, midnight - 5 * MIN));
        let after = r.hit(Hit {
            visitor_yesterday: Some(k1),
            ..hit(k2, midnight + 5 * MIN)
        });
        assert_eq!(
            after,
            Assignment {
                session: before.session,
                visitor: k1,
                new: false
            }
        );
        // Re-filed: found under today's key, reporting the key it is filed under.
        let open = r.s.get(0, k2);
        assert_eq!(open.map(|s| (s.id, s.visitor)), Some((before.session, k1)));
        assert_eq!(r.s.get(0, k1), None);
        assert_eq!(r.s.open_count(), 1);
        // Later hits find it directly, even once yesterday's salt is gone.
        let later = r.hit(hit(k2, midnight + 10 * MIN));
        assert_eq!((later.session, later.visitor), (before.session, k1));
    }

    #[test]
    fn a_new_session_after_midnight_is_filed_under_todays_key() {
        let mut r = Rig::new();
        let (k1, k2) = (100, 200);
        let old = r.hit(hit(k1, DAY - 50 * MIN));
        let new = r.hit(Hit {
            visitor_yesterday: Some(k1),
            ..hit(k2, DAY + 5 * MIN)
        });
        assert!(new.new);
        assert_eq!(new.visitor, k2);
        // The visitor keeps one slot; yesterday's session is remembered and still joinable.
        assert_eq!(r.s.open_count(), 1);
        let late = r.hit(hit(k2, DAY - 45 * MIN));
        assert_eq!((late.session, late.visitor), (old.session, k1));
    }

    #[test]
    fn yesterdays_key_is_only_consulted_without_a_session_under_todays() {
        let mut r = Rig::new();
        let yesterday = r.hit(hit(1, 0));
        let today = r.hit(hit(2, MIN));
        let next = r.hit(Hit {
            visitor_yesterday: Some(1),
            ..hit(2, 2 * MIN)
        });
        assert_eq!(next.session, today.session);
        assert_eq!(r.s.get(0, 1).map(|s| s.id), Some(yesterday.session));
        // A caller passing today's key as yesterday's does not confuse the lookup.
        let same = r.hit(Hit {
            visitor_yesterday: Some(3),
            ..hit(3, 0)
        });
        assert!(same.new);
    }

    #[test]
    fn out_of_order_events_inside_one_session_join_it() {
        let mut r = Rig::new();
        let s = r.session(0);
        assert_eq!(r.session(20 * MIN), s);
        assert_eq!(r.session(10 * MIN), s);
        assert_eq!(r.session(5 * MIN), s);
        assert_eq!(
            r.s.get(0, 7).map(|o| (o.start, o.last)),
            Some((0, 20 * MIN))
        );
    }

    #[test]
    fn an_earlier_event_within_the_timeout_stretches_the_session_back() {
        let mut r = Rig::new();
        let s = r.session(HOUR);
        let late = r.at(HOUR - T);
        assert_eq!((late.session, late.new), (s, false));
        assert_eq!(r.s.get(0, 7).map(|o| o.start), Some(HOUR - T));
    }

    #[test]
    fn a_late_campaign_entry_becomes_the_direct_sessions_campaign() {
        let mut r = Rig::new();
        let s = r.session(5 * MIN);
        let entry = r.hit(with_campaign(hit(7, 0), 9));
        assert_eq!((entry.session, entry.new), (s, false));
        assert_eq!(r.s.get(0, 7).and_then(|o| o.campaign), Some(9));
        // …so the same campaign later continues it.
        assert_eq!(r.hit(with_campaign(hit(7, 10 * MIN), 9)).session, s);
    }

    #[test]
    fn a_late_hit_of_another_campaign_before_a_campaign_session_is_its_own() {
        let mut r = Rig::new();
        let s = r.hit(with_campaign(hit(7, 5 * MIN), 1)).session;
        let late = r.hit(with_campaign(hit(7, 0), 2));
        assert!(late.new);
        assert_ne!(late.session, s);
        let open = r.s.get(0, 7);
        assert_eq!(
            open.map(|o| (o.id, o.start, o.campaign)),
            Some((s, 5 * MIN, Some(1)))
        );
    }

    #[test]
    fn a_late_campaign_hit_inside_a_session_joins_it() {
        let mut r = Rig::new();
        let s = r.session(0);
        r.at(10 * MIN);
        let late = r.hit(with_campaign(hit(7, 5 * MIN), 3));
        assert_eq!((late.session, late.new), (s, false));
        assert_eq!(r.s.get(0, 7).and_then(|o| o.campaign), None);
    }

    #[test]
    fn a_late_event_joins_the_previous_session() {
        let mut r = Rig::new();
        let a = r.session(0);
        r.at(10 * MIN);
        let b = r.session(2 * HOUR);
        assert_ne!(a, b);
        let inside = r.at(5 * MIN);
        assert_eq!((inside.session, inside.new), (a, false));
        // Just after it, far from the open session: stretches the previous one.
        assert_eq!(r.session(15 * MIN), a);
        assert_eq!(r.s.find(0, 7, a).map(|o| o.last), Some(15 * MIN));
        assert_eq!(r.s.get(0, 7).map(|o| (o.id, o.start)), Some((b, 2 * HOUR)));
        assert!(r.s.take_evicted().is_empty());
    }

    #[test]
    fn a_late_event_between_two_sessions_joins_the_nearer() {
        let mut r = Rig::new();
        let a = r.session(0);
        let b = r.session(50 * MIN);
        assert_ne!(a, b);
        assert_eq!(r.session(20 * MIN), a, "20 min after a, 30 before b");
        assert_eq!(
            r.session(35 * MIN),
            b,
            "15 after a's new end, 15 before b: a tie goes to the open one"
        );
        assert_eq!(
            r.s.find(0, 7, a).map(|o| (o.start, o.last)),
            Some((0, 20 * MIN))
        );
        assert_eq!(
            r.s.get(0, 7).map(|o| (o.start, o.last)),
            Some((35 * MIN, 50 * MIN))
        );
    }

    #[test]
    fn a_late_event_outside_everything_starts_its_own_session() {
        let mut r = Rig::new();
        let a = r.session(0);
        let b = r.session(2 * HOUR);
        let c = r.session(4 * HOUR);
        // a was pushed out of the visitor's memory by b: finalised, not lost.
        assert_eq!(ids(&r.s.take_evicted()), [a]);
        let d = r.at(HOUR);
        assert!(d.new);
        assert!(![a, b, c].contains(&d.session));
        // d is now the remembered earlier session, so the rest of its late batch follows it…
        assert_eq!(r.session(HOUR + 5 * MIN), d.session);
        // …b has been finalised, and the open session is untouched.
        assert_eq!(ids(&r.s.take_evicted()), [b]);
        assert_eq!(r.s.get(0, 7).map(|o| (o.id, o.start)), Some((c, 4 * HOUR)));
        // An event inside a forgotten session cannot know it: it gets a session, never dropped.
        let e = r.at(0);
        assert!(e.new);
        assert_eq!(ids(&r.s.take_evicted()), [d.session]);
    }

    #[test]
    fn the_open_session_is_not_stretched_over_the_previous_one() {
        let cfg = SessionConfig {
            timeout_ms: 10,
            max_duration_ms: 1000,
            max_open: 10,
        };
        let mut r = Rig::with(cfg);
        let a = r.session(100);
        let b = r.hit(with_campaign(hit(7, 105), 1)).session;
        assert_ne!(a, b);
        // 98 is within the timeout of b's start, but a lies in between.
        assert_eq!(r.session(98), a);
        assert_eq!(r.s.get(0, 7).map(|o| o.start), Some(105));
    }

    #[test]
    fn restore_resumes_sessions_after_a_restart() {
        let mut before = Rig::new();
        let a = before.session(0);
        let b = before.session(2 * HOUR);
        before.hit(hit(8, HOUR));
        let saved: Vec<OpenSession> = before.s.sessions().collect();
        assert_eq!(saved.len(), 3);

        let mut after = Rig::new();
        after.next = before.next;
        after.s.restore(saved.iter().rev().copied());
        assert_eq!(after.s.open_count(), 2);
        assert_eq!(after.s.get(0, 7), before.s.get(0, 7));
        assert_eq!(after.s.get(0, 8), before.s.get(0, 8));
        assert_eq!(after.session(2 * HOUR + 10 * MIN), b);
        assert_eq!(
            after.session(5 * MIN),
            a,
            "the earlier session is remembered too"
        );
        let gap = after.at(4 * HOUR);
        assert!(gap.new);
        assert!(after.s.take_evicted().iter().any(|s| s.id == a));
    }

    #[test]
    fn restore_finds_a_session_filed_under_yesterdays_key() {
        let mut r = Rig::new();
        r.s.restore([OpenSession {
            site: 0,
            visitor: 100,
            id: 42,
            start: DAY - 20 * MIN,
            last: DAY - 10 * MIN,
            campaign: None,
        }]);
        let next = r.hit(Hit {
            visitor_yesterday: Some(100),
            ..hit(200, DAY + 5 * MIN)
        });
        assert_eq!(
            next,
            Assignment {
                session: 42,
                visitor: 100,
                new: false
            }
        );
    }

    #[test]
    fn restore_merges_duplicates_and_finalises_surplus_sessions() {
        let open = |id, start, last| OpenSession {
            site: 0,
            visitor: 7,
            id,
            start,
            last,
            campaign: None,
        };
        let mut r = Rig::new();
        r.s.restore([
            open(3, 4 * HOUR, 4 * HOUR + MIN),
            open(1, 0, MIN),
            open(2, 2 * HOUR, 2 * HOUR + MIN),
            open(3, 4 * HOUR - MIN, 4 * HOUR),
        ]);
        assert_eq!(r.s.open_count(), 1);
        assert_eq!(ids(&r.s.take_evicted()), [1]);
        assert_eq!(r.s.get(0, 7), Some(open(3, 4 * HOUR - MIN, 4 * HOUR + MIN)));
        assert_eq!(r.s.find(0, 7, 2), Some(open(2, 2 * HOUR, 2 * HOUR + MIN)));
    }

    /// Failover: a collector that never saw visitor 7 is handed the session another collector
    /// opened (as the store answers it); the visitor's next hit continues it, and resuming it
    /// twice (two batches of the visitor racing to look it up) changes nothing.
    #[test]
    fn a_session_resumed_for_one_visitor_continues_and_leaves_others_alone() {
        let mut r = Rig::new();
        r.hit(hit(8, 10 * MIN)); // this collector's own visitor
        assert!(!r.s.knows(0, &[7, 70]));
        let theirs = OpenSession {
            site: 0,
            visitor: 7,
            id: 1_000,
            start: 0,
            last: 5 * MIN,
            campaign: None,
        };
        r.s.restore([theirs]);
        r.s.restore([theirs]);
        assert!(r.s.knows(0, &[7, 70]) && r.s.knows(0, &[70, 7]));
        assert!(
            !r.s.knows(1, &[7]),
            "another site's visitor 7 is someone else"
        );
        assert_eq!(
            r.at(5 * MIN + T),
            Assignment {
                session: 1_000,
                visitor: 7,
                new: false
            },
            "within the timeout of the stored session's last event"
        );
        assert!(r.s.take_evicted().is_empty());
        assert_eq!(r.s.open_count(), 2);
        assert_eq!(r.s.get(0, 8).map(|s| s.start), Some(10 * MIN));
        // A session resumed under yesterday's key is found through it, and keeps that key.
        r.s.restore([OpenSession {
            visitor: 100,
            id: 2_000,
            ..theirs
        }]);
        assert!(r.s.knows(0, &[200, 100]));
        let next = r.hit(Hit {
            visitor_yesterday: Some(100),
            ..hit(200, 6 * MIN)
        });
        assert_eq!((next.session, next.visitor, next.new), (2_000, 100, false));
    }

    #[test]
    fn restore_respects_the_bound() {
        let mut r = Rig::with(SessionConfig {
            max_open: 2,
            ..SessionConfig::default()
        });
        r.s.restore((1..=3).map(|v| OpenSession {
            site: 0,
            visitor: v,
            id: v,
            start: v as i64 * MIN,
            last: v as i64 * MIN,
            campaign: None,
        }));
        assert_eq!(r.s.open_count(), 2);
        assert_eq!(
            ids(&r.s.take_evicted()),
            [1],
            "the least recently active goes first"
        );
    }

    #[test]
    fn expire_finalises_sessions_idle_longer_than_the_timeout() {
        let mut r = Rig::new();
        let a = r.session(0);
        r.at(2 * HOUR); // a is now the earlier session of b
        let b = r.s.get(0, 7).map(|s| s.id);
        r.hit(hit(8, 2 * HOUR + 10 * MIN));
        assert!(
            r.s.expire(2 * HOUR + T).is_empty(),
            "idle exactly the timeout"
        );
        let gone = r.s.expire(2 * HOUR + T + 1);
        assert_eq!(
            ids(&gone),
            [Some(a), b].into_iter().flatten().collect::<Vec<_>>()
        );
        assert_eq!(r.s.open_count(), 1);
        assert_eq!(r.s.get(0, 7), None);
        assert_eq!(ids(&r.s.expire(i64::MAX)).len(), 1);
        assert_eq!(r.s.open_count(), 0);
        // A visitor coming back after expiry starts afresh.
        assert!(r.at(3 * HOUR).new);
    }

    #[test]
    fn a_late_event_keeps_its_visitor_for_another_timeout() {
        let mut r = Rig::new();
        r.hit(hit(8, HOUR)); // the clock is at 1 h
        let s = r.session(0); // a late first event of visitor 7
        assert!(r.s.expire(HOUR + T).is_empty());
        assert_eq!(ids(&r.s.expire(HOUR + T + 1)).len(), 2);
        assert!(r.s.get(0, 7).is_none(), "{s}");
    }

    #[test]
    fn the_lru_bound_evicts_the_least_recently_active_and_hands_it_back() {
        let mut r = Rig::with(SessionConfig {
            max_open: 2,
            ..SessionConfig::default()
        });
        let one = r.hit(hit(1, 0)).session;
        let two = r.hit(hit(2, MIN)).session;
        r.hit(hit(1, 2 * MIN)); // 1 is now more recent than 2
        let three = r.hit(hit(3, 3 * MIN)).session;
        assert_eq!(r.s.open_count(), 2);
        let evicted = r.s.take_evicted();
        assert_eq!(ids(&evicted), [two]);
        assert_eq!(
            evicted.first().map(|s| (s.visitor, s.start)),
            Some((2, MIN))
        );
        assert!(r.s.take_evicted().is_empty(), "handed back once");
        assert_eq!(r.s.get(0, 1).map(|s| s.id), Some(one));
        assert_eq!(r.s.get(0, 3).map(|s| s.id), Some(three));
        // An evicted visitor coming back gets a new session.
        assert!(r.hit(hit(2, 4 * MIN)).new);
        assert_eq!(ids(&r.s.take_evicted()), [one]);
    }

    #[test]
    fn eviction_hands_back_the_earlier_session_too() {
        let mut r = Rig::with(SessionConfig {
            max_open: 1,
            ..SessionConfig::default()
        });
        let a = r.session(0);
        let b = r.session(HOUR);
        r.hit(hit(8, HOUR));
        assert_eq!(ids(&r.s.take_evicted()), [a, b]);
    }

    #[test]
    fn max_open_zero_keeps_one() {
        let mut r = Rig::with(SessionConfig {
            max_open: 0,
            ..SessionConfig::default()
        });
        let a = r.at(0);
        assert_eq!(r.at(MIN).session, a.session);
        r.hit(hit(8, MIN));
        assert_eq!(r.s.open_count(), 1);
        assert_eq!(ids(&r.s.take_evicted()), [a.session]);
    }

    #[test]
    fn the_same_visitor_key_on_two_sites_is_two_visitors() {
        let mut r = Rig::new();
        let a = r.hit(hit(7, 0));
        let b = r.hit(Hit {
            site: 1,
            ..hit(7, 0)
        });
        assert!(a.new && b.new);
        assert_ne!(a.session, b.session);
        assert_eq!(r.s.open_count(), 2);
        assert_eq!(r.s.get(1, 7).map(|s| (s.site, s.id)), Some((1, b.session)));
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let mut r = Rig::new();
        for at in [i64::MIN, i64::MAX, 0, i64::MIN + 1, i64::MAX - 1, -1] {
            r.at(at);
            r.hit(with_campaign(hit(8, at), 1));
        }
        r.s.expire(i64::MIN);
        r.s.expire(i64::MAX);
        let mut odd = Rig::with(SessionConfig {
            timeout_ms: i64::MAX,
            max_duration_ms: i64::MIN,
            max_open: usize::MAX,
        });
        for at in [i64::MIN, i64::MAX, 0] {
            odd.at(at);
        }
        odd.s.expire(i64::MAX);
    }

    #[test]
    fn memory_stays_within_256_bytes_per_open_session() {
        let mut r = Rig::new();
        for v in 0..100_000u64 {
            let at = v as i64 * 10;
            r.hit(hit(v, at));
            if v % 2 == 0 {
                // Half the visitors also remember an earlier session.
                r.hit(with_campaign(hit(v, at + 1), 1));
            }
        }
        let per = r.s.approx_bytes_per_session();
        println!(
            "{} open sessions: {} bytes, {per} bytes per session",
            r.s.open_count(),
            r.s.approx_bytes()
        );
        assert!(per <= 256, "{per}");
        // After a spike expires, memory is given back.
        r.s.expire(i64::MAX);
        r.hit(hit(1, i64::MAX));
        assert!(r.s.approx_bytes() < 4096, "{}", r.s.approx_bytes());
    }

    // --- Properties -------------------------------------------------------------------------

    /// Small numbers make the timeout and the cap bite often.
    const CFG: SessionConfig = SessionConfig {
        timeout_ms: 10,
        max_duration_ms: 40,
        max_open: 1 << 20,
    };

    /// Sessions as time order sees them: the reference the sessioniser must match on sorted input.
    fn model(hits: &[(i64, Option<u64>)]) -> Vec<usize> {
        let mut open: Option<(i64, i64, Option<u64>)> = None;
        let mut n = 0;
        let mut out = Vec::new();
        for &(t, c) in hits {
            match &mut open {
                Some((start, last, campaign))
                    if t - *last <= CFG.timeout_ms
                        && t - *start <= CFG.max_duration_ms
                        && (c.is_none() || c == *campaign) =>
                {
                    *last = t;
                }
                _ => {
                    n += 1;
                    open = Some((t, t, c));
                }
            }
            out.push(n);
        }
        out
    }

    /// Session ids renumbered by first appearance, to compare partitions.
    fn canonical(ids: &[SessionId]) -> Vec<usize> {
        let mut seen = BTreeMap::new();
        ids.iter()
            .map(|id| {
                let n = seen.len() + 1;
                *seen.entry(*id).or_insert(n)
            })
            .collect()
    }

    fn campaign() -> impl Strategy<Value = Option<u64>> {
        prop_oneof![6 => Just(None), 1 => Just(Some(1)), 1 => Just(Some(2))]
    }

    fn run(r: &mut Rig, visitor: VisitorKey, hits: &[(i64, Option<u64>)]) -> Vec<SessionId> {
        hits.iter()
            .map(|&(at, c)| {
                r.hit(Hit {
                    campaign: c,
                    ..hit(visitor, at)
                })
                .session
            })
            .collect()
    }

    proptest! {
        /// On hits in time order the sessioniser is exactly the rules: hits more than the timeout
        /// apart, past the cap, or with another campaign never share a session; all others do.
        #[test]
        fn sorted_hits_follow_the_rules_exactly(
            steps in prop::collection::vec((0i64..25, campaign()), 1..80),
        ) {
            let mut t = 1_000;
            let hits: Vec<_> = steps.iter().map(|&(gap, c)| { t += gap; (t, c) }).collect();
            let mut r = Rig::with(CFG);
            let got = run(&mut r, 7, &hits);
            prop_assert_eq!(canonical(&got), model(&hits));
        }

        /// A salt change at any point of a time-ordered stream changes no session, and every
        /// session stays filed under the key of its first hit.
        #[test]
        fn midnight_changes_no_session(
            steps in prop::collection::vec((0i64..25, campaign()), 1..80),
            midnight in any::<prop::sample::Index>(),
        ) {
            let mut t = 1_000;
            let hits: Vec<_> = steps.iter().map(|&(gap, c)| { t += gap; (t, c) }).collect();
            let m = midnight.index(hits.len());
            let (k1, k2) = (100, 200);
            let mut r = Rig::with(CFG);
            let got: Vec<Assignment> = hits.iter().enumerate()
                .map(|(n, &(at, c))| {
                    let today = if n < m { hit(k1, at) } else { Hit { visitor_yesterday: Some(k1), ..hit(k2, at) } };
                    r.hit(Hit { campaign: c, ..today })
                })
                .collect();
            let ids: Vec<_> = got.iter().map(|a| a.session).collect();
            prop_assert_eq!(canonical(&ids), model(&hits));
            let mut filed = BTreeMap::new();
            for (n, a) in got.iter().enumerate() {
                let first = *filed.entry(a.session).or_insert(if n < m { k1 } else { k2 });
                prop_assert_eq!(a.visitor, first);
                prop_assert_eq!(a.new, ids[..n].iter().all(|id| *id != a.session));
            }
            prop_assert!(r.s.open_count() <= 1);
        }

        /// In any arrival order, each session is one run with no gap over the timeout and no
        /// longer than the cap; and without campaigns, arrival order can only split sessions, never
        /// merge what time order separates.
        #[test]
        fn any_order_keeps_sessions_connected_and_capped(
            hits in prop::collection::vec((0i64..150, campaign()), 1..80),
            campaigns in any::<bool>(),
        ) {
            let hits: Vec<_> = hits.into_iter()
                .map(|(t, c)| (t, c.filter(|_| campaigns)))
                .collect();
            let mut r = Rig::with(CFG);
            let got = run(&mut r, 7, &hits);
            let mut by_session: BTreeMap<SessionId, Vec<i64>> = BTreeMap::new();
            for (id, (t, _)) in got.iter().zip(&hits) {
                by_session.entry(*id).or_default().push(*t);
            }
            for times in by_session.values_mut() {
                times.sort_unstable();
                for w in times.windows(2) {
                    prop_assert!(w[1] - w[0] <= CFG.timeout_ms, "{:?}", times);
                }
                prop_assert!(times[times.len() - 1] - times[0] <= CFG.max_duration_ms);
            }
            if !campaigns {
                let mut sorted = hits.clone();
                sorted.sort_unstable();
                let fewest = model(&sorted).last().copied().unwrap_or(0);
                prop_assert!(by_session.len() >= fewest);
            }
        }

        /// Stopping, saving every session, and restoring into a fresh sessioniser changes nothing.
        #[test]
        fn a_restart_changes_no_assignment(
            hits in prop::collection::vec((0u64..3, 0i64..150, campaign()), 1..60),
            split in any::<prop::sample::Index>(),
        ) {
            let hits: Vec<Hit> = hits.iter()
                .map(|&(v, at, c)| Hit { campaign: c, ..hit(v, at) })
                .collect();
            let k = split.index(hits.len());
            let mut twin = Rig::with(CFG);
            let expected: Vec<_> = hits.iter().map(|h| twin.hit(*h)).collect();

            let mut first = Rig::with(CFG);
            let mut got: Vec<_> = hits[..k].iter().map(|h| first.hit(*h)).collect();
            let mut second = Rig::with(CFG);
            second.next = first.next;
            second.s.restore(first.s.sessions());
            got.extend(hits[k..].iter().map(|h| second.hit(*h)));
            prop_assert_eq!(got, expected);
        }

        /// Under a tight bound and expiry, every session is finalised exactly once and never
        /// receives a hit afterwards; the bound always holds.
        #[test]
        fn every_session_is_finalised_exactly_once(
            hits in prop::collection::vec((0u64..6, 0i64..300, campaign(), any::<bool>()), 1..120),
            max_open in 0usize..4,
        ) {
            let mut r = Rig::with(SessionConfig { max_open, ..CFG });
            let mut created = HashSet::new();
            let mut finalised = HashSet::new();
            let mut clock = 0;
            for &(v, at, c, tick) in &hits {
                let a = r.hit(Hit { campaign: c, ..hit(v, at) });
                prop_assert!(!finalised.contains(&a.session), "hit assigned to a finalised session");
                if a.new {
                    prop_assert!(created.insert(a.session));
                }
                prop_assert!(r.s.open_count() <= max_open.max(1));
                clock = clock.max(at);
                let mut done = r.s.take_evicted();
                if tick {
                    done.extend(r.s.expire(clock));
                }
                for s in done {
                    prop_assert!(finalised.insert(s.id), "finalised twice");
                }
            }
            for s in r.s.take_evicted().into_iter().chain(r.s.expire(i64::MAX)) {
                prop_assert!(finalised.insert(s.id), "finalised twice");
            }
            prop_assert_eq!(created, finalised);
            prop_assert_eq!(r.s.open_count(), 0);
        }
    }
}
