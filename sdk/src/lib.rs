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

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

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
