//! Posting batches: `fetch` with `keepalive` and `application/json` while the page is visible,
//! `navigator.sendBeacon` (sent as `text/plain;charset=UTF-8`, so no CORS preflight) when it is
//! hidden. Credentials are omitted: the collector never needs a cookie.

use crate::retry::{classify, Outcome};
use js_sys::{Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::Response;

#[wasm_bindgen]
extern "C" {
    // The global `fetch` with a plain init object: `RequestInit` lacks `keepalive` in web-sys.
    /// The promise `fetch` returns, with just the `then` we use.
    type Pending;
    #[wasm_bindgen(js_name = fetch, catch)]
    fn fetch_with(url: &str, init: &Object) -> Result<Pending, JsValue>;
    #[wasm_bindgen(method)]
    fn then(this: &Pending, on_ok: &JsValue, on_err: &JsValue);
}

fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// Posts `body`. A beacon's outcome is known at once (`Some`); a fetch calls `done` later with
/// the answer and returns `None`.
pub fn send(
    url: &str,
    body: &str,
    beacon: bool,
    done: impl FnOnce(Outcome) + 'static,
) -> Option<Outcome> {
    let network_error = Outcome::Retry { after_ms: None };
    if beacon {
        let queued = web_sys::window()
            .and_then(|w| w.navigator().send_beacon_with_opt_str(url, Some(body)).ok())
            .unwrap_or(false);
        return Some(if queued {
            Outcome::Delivered
        } else {
            network_error
        });
    }
    let init = Object::new();
    let headers = Object::new();
    set(&headers, "content-type", &"application/json".into());
    set(&init, "method", &"POST".into());
    set(&init, "body", &body.into());
    set(&init, "headers", &headers);
    set(&init, "keepalive", &JsValue::TRUE);
    set(&init, "credentials", &"omit".into());
    let Ok(promise) = fetch_with(url, &init) else {
        return Some(network_error);
    };
    // One callback for both settlements: a `Response` is an answer, anything else a network
    // error. It is called exactly once, which frees it.
    let settle = Closure::once_into_js(move |v: JsValue| {
        let outcome = match v.dyn_into::<Response>() {
            Ok(r) => {
                let retry_after = r.headers().get("retry-after").ok().flatten();
                classify(Some(r.status()), retry_after.as_deref())
            }
            Err(_) => network_error,
        };
        done(outcome);
    });
    promise.then(&settle, &settle);
    None
}
