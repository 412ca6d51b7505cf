//! Browser hooks that undo themselves on `Drop` (the gloo-events idea in a few lines): event
//! listeners and patched page methods (`history.pushState`, `dataLayer.push`). Revoking consent
//! is then just dropping them.
//!
//! All callbacks are `Fn` closures: the page may re-enter them (a router calling `pushState` from
//! inside `pushState`), which wasm-bindgen refuses for `FnMut`.

use alloc::rc::Rc;
use core::cell::Cell;
use js_sys::{Array, Function, Object, Proxy, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{AddEventListenerOptions, Event, EventTarget};

/// A passive event listener, removed when dropped.
pub struct Listener {
    target: EventTarget,
    kind: &'static str,
    capture: bool,
    callback: Closure<dyn Fn(Event)>,
}

impl Listener {
    /// Listens for `kind` on `target`; `capture` listens in the capture phase, so a page handler
    /// that stops propagation does not hide the event from us. Listeners are always passive:
    /// we never prevent the default.
    pub fn new(
        target: &EventTarget,
        kind: &'static str,
        capture: bool,
        f: impl Fn(Event) + 'static,
    ) -> Listener {
        let callback = Closure::<dyn Fn(Event)>::new(f);
        let opts = AddEventListenerOptions::new();
        opts.set_passive(true);
        opts.set_capture(capture);
        let _ = target.add_event_listener_with_callback_and_add_event_listener_options(
            kind,
            callback.as_ref().unchecked_ref(),
            &opts,
        );
        Listener {
            target: target.clone(),
            kind,
            capture,
            callback,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.target.remove_event_listener_with_callback_and_bool(
            self.kind,
            self.callback.as_ref().unchecked_ref(),
            self.capture,
        );
    }
}

type Trap = Closure<dyn Fn(JsValue, JsValue, Array) -> Result<JsValue, JsValue>>;

/// `target[name]` replaced by a `Proxy` of the original function that calls the original first
/// (its result and exceptions are the page's, untouched) and then `hook(arguments)`.
/// On drop the original is put back; if someone wrapped our proxy in the meantime, it cannot be
/// taken out of their chain, so it stays as a pass-through that no longer calls the hook.
pub struct Patch {
    target: JsValue,
    key: JsValue,
    original: JsValue,
    /// The original was an own property (else it is inherited and restoring means deleting ours).
    own: bool,
    proxy: JsValue,
    active: Rc<Cell<bool>>,
    trap: Option<Trap>,
}

impl Patch {
    /// `None` when `target[name]` is not a function or cannot be replaced.
    pub fn new(target: &JsValue, name: &str, hook: impl Fn(&Array) + 'static) -> Option<Patch> {
        if !target.is_object() {
            return None;
        }
        let key = JsValue::from_str(name);
        let original = Reflect::get(target, &key).ok()?;
        if !original.is_function() {
            return None;
        }
        // `hasOwnProperty`, not `Object.hasOwn`: the latter is missing in older Safari.
        #[allow(deprecated)]
        let own = target.unchecked_ref::<Object>().has_own_property(&key);
        let active = Rc::new(Cell::new(true));
        let on = active.clone();
        let trap: Trap = Closure::new(move |f: JsValue, this: JsValue, args: Array| {
            let ret = Reflect::apply(f.unchecked_ref::<Function>(), &this, &args)?;
            if on.get() {
                hook(&args);
            }
            Ok(ret)
        });
        let handler = Object::new();
        Reflect::set(&handler, &JsValue::from_str("apply"), trap.as_ref()).ok()?;
        let proxy: JsValue = Proxy::new(&original, &handler).into();
        Reflect::set(target, &key, &proxy).ok()?;
        Some(Patch {
            target: target.clone(),
            key,
            original,
            own,
            proxy,
            active,
            trap: Some(trap),
        })
    }
}

impl Drop for Patch {
    fn drop(&mut self) {
        self.active.set(false);
        let current = Reflect::get(&self.target, &self.key).unwrap_or(JsValue::UNDEFINED);
        if current != self.proxy {
            // Still reachable through someone else's wrapper: keep the trap alive, inert.
            if let Some(trap) = self.trap.take() {
                trap.forget();
            }
            return;
        }
        let target = self.target.unchecked_ref::<Object>();
        let deleted = !self.own && Reflect::delete_property(target, &self.key).unwrap_or(false);
        if !deleted {
            let _ = Reflect::set(&self.target, &self.key, &self.original);
        }
    }
}
