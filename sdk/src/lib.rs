//! Waymark browser SDK: cookieless, consent-gated capture of page views, engagement, cart actions
//! and custom events, batched to the collector (`shared/spec/SDK.md`, `PROTOCOL.md`).
//!
//! A pure core, compiled and unit-tested natively, and a thin browser shell:
//! - [`config`]: options from `data-` attributes or `init({…})`.
//! - [`consent`]: the consent state machine (GPC / Do-Not-Track count as a denial).
//! - [`capture`]: page-view de-duplication, scroll depth, engaged time.
//! - [`event`]: builds, scrubs and validates protocol events.
//! - [`json`]: the batch body, written by hand (no `serde_json` in the Wasm).
//! - [`queue`]: the bounded queue and its flush policy.
//! - [`retry`]: delivery outcomes and the backoff schedule.
//! - [`tracker`]: the whole state machine tying these together; time and randomness are inputs.
//! - `web` (wasm32 only): listeners, history and `dataLayer` patches, transport, and the exported
//!   JavaScript entry points.
//!
//! Architecture Invariant: only `web` touches the browser (web-sys, js-sys); it never writes
//! cookies or client-side storage, and no exported entry point throws into the page.
//!
//! Without the default `std` feature (the shipped bundle) the crate is `no_std` with `alloc`:
//! a panic, which the lints below keep out of our own code, traps instead of formatting a message.

#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

extern crate alloc;

/// The names of `std`'s prelude that the `no_std` bundle takes from `alloc` (with `std`, its own
/// prelude already has them, hence the `allow`).
#[allow(unused_imports)]
mod prelude {
    pub use alloc::borrow::ToOwned;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}

/// `x.fract() == 0.0` (`fract` is not in `core`): a finite whole number.
pub(crate) fn is_whole(x: f64) -> bool {
    // From 2^53 on every finite f64 is whole; below it the `i64` round trip is exact.
    x.is_finite() && (x.abs() >= 9_007_199_254_740_992.0 || x == (x as i64) as f64)
}

#[cfg(test)]
#[test]
fn is_whole_is_fract_zero() {
    for x in [
        0.0,
        -0.0,
        1.0,
        -3.0,
        0.5,
        -2.25,
        1e15,
        1e15 + 0.5,
        9e15,
        1e300,
        -1e300,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        assert_eq!(is_whole(x), x.fract() == 0.0, "{x}");
    }
}

pub mod capture;
pub mod config;
pub mod consent;
pub mod event;
pub mod json;
pub mod queue;
pub mod retry;
pub mod tracker;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// The page's SDK runs on one thread; talc is a fraction of dlmalloc's size in the Wasm.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// The bundle's panic handler: trap, as `panic = "abort"` did before. The loader's and the npm
/// module's entry points catch the resulting `RuntimeError`, so nothing is thrown into the page.
#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}
