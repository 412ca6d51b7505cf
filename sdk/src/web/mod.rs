//! The browser shell around [`Tracker`]: the exported entry points, the listeners that feed it,
//! the wake-up timer and the transport.
//!
//! One `Sdk` lives in a static. Every callback goes through [`with`], which skips the call
//! when the SDK is not started or already busy (a re-entrant call is dropped, never a panic), and
//! afterwards sends whatever became due (a visible page's posts in a task of their own, see
//! `Sdk::pump`) and re-arms the single timer.
//!
//! Architecture Invariant: no cookie and no client-side storage is ever read or written here; the
//! only things that leave the page are the batches. No entry point throws into the page.

mod hooks;
mod read;
mod transport;

pub use hooks::{Listener, Patch};

use crate::capture::{scroll_percent, Nav};
use crate::config::{Config, SpaMode};
use crate::consent::{Change, Command};
use crate::event::PageCtx;
use crate::prelude::*;
use crate::queue::Timer;
use crate::tracker::Tracker;
use core::cell::RefCell;
use read::Declared;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Document, Element, Event, Window};

/// The one SDK of the page. `std`'s `thread_local!` is not in the `no_std` bundle.
struct Slot(RefCell<Option<Sdk>>);

impl Slot {
    fn with<R>(&self, f: impl FnOnce(&RefCell<Option<Sdk>>) -> R) -> R {
        f(&self.0)
    }
}

// SAFETY: the Wasm is built without the `atomics` target feature, so it has exactly one thread
// and `SDK` is never shared between threads (JavaScript values cannot cross threads anyway).
#[cfg(not(target_feature = "atomics"))]
unsafe impl Sync for Slot {}

static SDK: Slot = Slot(RefCell::new(None));

/// Input closer together than this is one activity sample (pointermove fires at frame rate).
const INPUT_SAMPLE_MS: i64 = 1_000;
/// Most posts in one go (a safety bound; the tracker itself stops far earlier).
const MAX_POSTS_PER_PUMP: usize = 32;

fn now() -> i64 {
    js_sys::Date::now() as i64
}

/// `crypto.getRandomValues`, or `Math.random` where it is missing.
fn random(buf: &mut [u8]) {
    let ok = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(buf).is_ok());
    if !ok {
        for b in buf {
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
}

/// Runs `f` on the started SDK, then sends what is due (see [`Sdk::pump`]) and re-arms the timer.
fn with(f: impl FnOnce(&mut Sdk, i64)) {
    SDK.with(|cell| {
        let Ok(mut guard) = cell.try_borrow_mut() else {
            return;
        };
        if let Some(sdk) = guard.as_mut() {
            let now = now();
            f(sdk, now);
            sdk.pump(now);
        }
    });
}

/// What a listener's event means.
#[derive(Clone, Copy)]
enum On {
    Scroll,
    Input,
    Visibility,
    Leave,
    Nav(Nav),
    Click,
}

/// What a patched method's call means.
#[derive(Clone, Copy)]
enum Patched {
    Nav(Nav),
    DataLayer,
}

struct Sdk {
    tracker: Tracker,
    window: Window,
    document: Document,
    batch_url: String,
    /// Listeners and patches: present exactly while capturing.
    listeners: Vec<Listener>,
    patches: Vec<Patch>,
    timer: Option<(i32, i64)>,
    timer_cb: Closure<dyn Fn()>,
    frame: Option<i32>,
    frame_cb: Closure<dyn Fn()>,
    last_input: i64,
    /// The next pump posts what is due itself: set by the timer's task and `waymark('flush')`.
    post_now: bool,
    /// The `dataLayer` entries pushed before capture starts are replayed once, at the first
    /// start, unless the visitor said no before (then what was pushed meanwhile is skipped).
    replay_datalayer: bool,
}

impl Sdk {
    fn command(&mut self, cmd: &str, a: &JsValue, b: &JsValue, now: i64) {
        match cmd {
            "consent" => {
                let Some(c) = a.as_string().and_then(|s| Command::parse(&s)) else {
                    return;
                };
                match self.tracker.consent(c) {
                    Change::Start => self.begin(now),
                    Change::Stop => self.end(),
                    Change::Nothing => {}
                }
                if !self.tracker.capturing() {
                    self.replay_datalayer = false;
                }
            }
            "page" => self.view(now, Nav::Manual),
            "track" => {
                if let Some(name) = a.as_string() {
                    self.tracker.track(now, &name, read::props(b));
                }
            }
            "cart" => self.tracker.cart(now, read::cart(a, b)),
            "flush" => {
                self.tracker.flush(now);
                self.post_now = true;
            }
            _ => {}
        }
    }

    /// Capture starts: listeners, patches, the current page view, the `dataLayer` so far.
    fn begin(&mut self, now: i64) {
        // Visibility may have changed while nobody was listening.
        let hidden = self.document.hidden();
        self.tracker.visibility(now, hidden);
        self.install();
        self.view(now, Nav::Load);
        self.request_frame();
        if core::mem::take(&mut self.replay_datalayer) && self.tracker.config().auto_cart {
            if let Some(dl) = self.datalayer() {
                let len = read::number(&read::get(&dl, "length")).unwrap_or(0.0) as u32;
                for i in 0..len.min(1_000) {
                    let entry = js_sys::Reflect::get_u32(&dl, i).unwrap_or(JsValue::UNDEFINED);
                    self.datalayer_entry(now, &entry);
                }
            }
        }
    }

    /// Capture stops: every listener and patch is removed.
    fn end(&mut self) {
        self.listeners.clear();
        self.patches.clear();
        if let Some(id) = self.frame.take() {
            let _ = self.window.cancel_animation_frame(id);
        }
    }

    fn install(&mut self) {
        let w: &web_sys::EventTarget = &self.window;
        let d: &web_sys::EventTarget = &self.document;
        let cfg = self.tracker.config();
        let (spa, hash, cart) = (
            cfg.spa != SpaMode::Off,
            cfg.spa == SpaMode::Hash,
            cfg.auto_cart,
        );
        // (target, event, capture phase, what it means, wanted)
        let table = [
            (w, "scroll", false, On::Scroll, true),
            (d, "visibilitychange", false, On::Visibility, true),
            (w, "pagehide", false, On::Leave, true),
            (w, "pointerdown", true, On::Input, true),
            (w, "pointermove", true, On::Input, true),
            (w, "keydown", true, On::Input, true),
            (w, "touchstart", true, On::Input, true),
            (w, "popstate", false, On::Nav(Nav::Pop), spa),
            (w, "hashchange", false, On::Nav(Nav::Hash), hash),
            (d, "click", true, On::Click, cart),
        ];
        // One closure type for all of them: a single copy of the glue code in the Wasm.
        self.listeners = table
            .into_iter()
            .filter(|row| row.4)
            .map(|(target, kind, capture, on, _)| {
                Listener::new(target, kind, capture, move |e| {
                    with(|s, now| s.on(on, &e, now))
                })
            })
            .collect();
        let mut targets = Vec::new();
        if spa {
            if let Ok(history) = self.window.history() {
                targets.push((history.clone().into(), "pushState", Patched::Nav(Nav::Push)));
                targets.push((history.into(), "replaceState", Patched::Nav(Nav::Replace)));
            }
        }
        if cart {
            if let Some(dl) = self.datalayer() {
                targets.push((dl, "push", Patched::DataLayer));
            }
        }
        let patches = targets
            .into_iter()
            .filter_map(|(target, name, what)| {
                Patch::new(&target, name, move |args| {
                    with(|s, now| s.patched(what, args, now))
                })
            })
            .collect();
        self.patches = patches;
    }

    /// A patched method was called (after the original ran).
    fn patched(&mut self, what: Patched, args: &js_sys::Array, now: i64) {
        match what {
            Patched::Nav(nav) => self.view(now, nav),
            Patched::DataLayer => {
                for entry in args.iter() {
                    self.datalayer_entry(now, &entry);
                }
            }
        }
    }

    /// A listened-for event.
    fn on(&mut self, on: On, e: &Event, now: i64) {
        match on {
            On::Scroll => {
                self.tracker.input(now);
                self.request_frame();
            }
            On::Input => {
                if now - self.last_input >= INPUT_SAMPLE_MS {
                    self.last_input = now;
                    self.tracker.input(now);
                }
            }
            On::Visibility => {
                let hidden = self.document.hidden();
                self.tracker.visibility(now, hidden);
            }
            On::Leave => self.tracker.visibility(now, true),
            On::Nav(nav) => self.view(now, nav),
            On::Click => self.click(now, e),
        }
    }

    /// `window.dataLayer`, created as the usual empty array when the page has none yet, so that
    /// a tag manager loading later keeps pushing into the array we watch.
    fn datalayer(&self) -> Option<JsValue> {
        let key = JsValue::from_str("dataLayer");
        let dl = js_sys::Reflect::get(&self.window, &key).ok()?;
        if js_sys::Array::is_array(&dl) {
            return Some(dl);
        }
        if !dl.is_undefined() {
            return None;
        }
        let fresh: JsValue = js_sys::Array::new().into();
        js_sys::Reflect::set(&self.window, &key, &fresh).ok()?;
        Some(fresh)
    }

    fn datalayer_entry(&mut self, now: i64, entry: &JsValue) {
        if let Some(input) = read::datalayer(entry) {
            self.tracker.cart(now, input);
        }
    }

    fn click(&mut self, now: i64, e: &Event) {
        let el = e
            .target()
            .and_then(|t| t.dyn_into::<Element>().ok())
            .and_then(|el| el.closest("[data-waymark-cart],[data-waymark-event]").ok())
            .flatten();
        match el.as_ref().and_then(read::declared) {
            Some(Declared::Cart(input)) => self.tracker.cart(now, input),
            Some(Declared::Custom(name, props)) => self.tracker.track(now, &name, props),
            None => {}
        }
    }

    /// A navigation: the tracker decides whether it is a new page view.
    fn view(&mut self, now: i64, nav: Nav) {
        let Ok(url) = self.window.location().href() else {
            return;
        };
        let title = self.document.title();
        let referrer = self.document.referrer();
        let dim = |v: Result<JsValue, JsValue>| {
            v.ok()
                .and_then(|v| v.as_f64())
                .map_or(0, |n| n.clamp(0.0, 100_000.0) as u32)
        };
        let lang = self.window.navigator().language().unwrap_or_default();
        let ctx = PageCtx {
            url: &url,
            title: &title,
            viewport: [
                dim(self.window.inner_width()),
                dim(self.window.inner_height()),
            ],
            lang: &lang,
        };
        self.tracker
            .page_view(now, &ctx, &referrer, nav, &mut random);
    }

    /// Measures the scroll depth in the next animation frame (once per frame at most).
    fn request_frame(&mut self) {
        if self.frame.is_none() {
            self.frame = self
                .window
                .request_animation_frame(self.frame_cb.as_ref().unchecked_ref())
                .ok();
        }
    }

    fn measure(&mut self, now: i64) {
        self.frame = None;
        if self.listeners.is_empty() {
            return;
        }
        let y = self.window.scroll_y().unwrap_or(0.0);
        let vh = self
            .window
            .inner_height()
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        let doc = self
            .document
            .document_element()
            .map_or(0.0, |e| f64::from(e.scroll_height()));
        self.tracker.scrolled(now, scroll_percent(y, vh, doc));
    }

    /// Posts everything due, then arms the timer for the next deadline.
    fn pump(&mut self, now: i64) {
        // A visible page's post gets a task of its own (the timer's, armed below with no delay),
        // so the call that queued the 10th event does not also pay for the post: the browser's
        // `fetch()` alone takes about 0.5 ms (BENCHMARKS.md). A hidden page may be going away, so
        // its beacon goes now.
        let inline = core::mem::take(&mut self.post_now) || self.tracker.hidden();
        let posts = if inline { MAX_POSTS_PER_PUMP } else { 0 };
        let mut posted = false;
        for _ in 0..posts {
            let Some(out) = self.tracker.next_send(now, &mut random) else {
                break;
            };
            posted = true;
            let key = out.key;
            let done = move |outcome| {
                with(|s, now| s.tracker.delivered(key, outcome, now, &mut random));
            };
            if let Some(outcome) = transport::send(&self.batch_url, &out.body, out.beacon, done) {
                self.tracker.delivered(key, outcome, now, &mut random);
            }
        }
        let armed = self.timer.map(|(_, at)| at);
        let want = self.tracker.deadline(now);
        let Timer::Arm(at) = crate::queue::timer(armed, want, posted, now) else {
            return;
        };
        if let Some((id, _)) = self.timer.take() {
            self.window.clear_timeout_with_handle(id);
        }
        // A due post left for the timer runs at once; the timer's own pump posts inline, so
        // that is never a zero-delay loop. After an inline pump, at least 10 ms, whatever the
        // deadline says.
        let min = if inline { 10 } else { 0 };
        let ms = (at - now).clamp(min, i64::from(i32::MAX)) as i32;
        let cb = self.timer_cb.as_ref().unchecked_ref();
        if let Ok(id) = self
            .window
            .set_timeout_with_callback_and_timeout_and_arguments_0(cb, ms)
        {
            self.timer = Some((id, at));
        }
    }
}

impl Drop for Sdk {
    fn drop(&mut self) {
        self.end();
        if let Some((id, _)) = self.timer.take() {
            self.window.clear_timeout_with_handle(id);
        }
    }
}

/// Global Privacy Control or Do-Not-Track.
fn privacy_signal(w: &Window) -> bool {
    let nav = w.navigator();
    read::get(&nav, "globalPrivacyControl").as_bool() == Some(true)
        || read::get(&nav, "doNotTrack").as_string().as_deref() == Some("1")
        || read::get(w, "doNotTrack").as_string().as_deref() == Some("1")
}

/// Starts the SDK with the `init` options (the script loader passes its `data-` attributes in
/// the same shape). Later calls are ignored; invalid options leave the SDK off, silently.
#[wasm_bindgen]
pub fn start(options: JsValue) {
    #[cfg(feature = "debug")]
    console_error_panic_hook::set_once();
    let Some(cfg) = Config::parse(&read::options(&options)) else {
        return;
    };
    let Some(window) = web_sys::window() else {
        return;
    };
    let Some(document) = window.document() else {
        return;
    };
    let started = SDK.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return false;
        };
        if slot.is_some() {
            return false;
        }
        let signal = privacy_signal(&window);
        let tracker = Tracker::new(cfg, signal, document.hidden());
        *slot = Some(Sdk {
            batch_url: tracker.config().batch_url(),
            tracker,
            window,
            document,
            listeners: Vec::new(),
            patches: Vec::new(),
            timer: None,
            timer_cb: Closure::new(|| {
                with(|s, _| {
                    s.timer = None;
                    s.post_now = true;
                })
            }),
            frame: None,
            frame_cb: Closure::new(|| with(|s, now| s.measure(now))),
            last_input: 0,
            post_now: false,
            replay_datalayer: !signal,
        });
        true
    });
    if started {
        with(|s, now| {
            if s.tracker.capturing() {
                s.begin(now);
            }
        });
    }
}

/// The command function behind `waymark(…)`: `('consent', 'grant'|'deny'|'revoke')`,
/// `('page')`, `('track', name, props)`, `('cart', action, data)`, `('flush')`.
/// Unknown commands and malformed arguments are ignored.
#[wasm_bindgen]
pub fn command(cmd: JsValue, a: JsValue, b: JsValue) {
    if let Some(cmd) = cmd.as_string() {
        with(|s, now| s.command(&cmd, &a, &b, now));
    }
}

#[wasm_bindgen]
extern "C" {
    /// The global `String` function: JavaScript's shortest round-trip text of a number.
    #[wasm_bindgen(js_name = String)]
    fn js_string(x: f64) -> String;
}

/// `String(x)`, for [`crate::json`]: the browser prints numbers, so the Wasm needs no float
/// printer.
pub(crate) fn number_text(x: f64) -> String {
    js_string(x)
}

/// Stops the SDK and removes every trace of it from the page (listeners, patches, timer).
/// Not exported to JavaScript; tests use it to start afresh.
pub fn shutdown() {
    let old = SDK.with(|cell| cell.try_borrow_mut().ok().and_then(|mut s| s.take()));
    drop(old);
}

/// Events queued and not yet sent, or `None` when the SDK is not started. For tests.
pub fn queued() -> Option<usize> {
    SDK.with(|cell| cell.try_borrow().ok()?.as_ref().map(|s| s.tracker.queued()))
}
