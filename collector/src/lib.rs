//! The Waymark collector: accepts the SDK's batches, enriches and sessionises them without
//! cookies, stores them durably, and answers journey questions.
//!
//! Module map (see ARCHITECTURE.md for the invariants):
//! - [`session`]: the cookieless sessioniser, a pure state machine (time is an input).
//! - [`enrich`]: user agent → browser/OS/device and bot verdict, referrer → source/medium, URL
//!   normalisation, optional GeoIP country. Pure apart from reading the GeoIP file once.

#![forbid(unsafe_code)]

pub mod enrich;
pub mod session;
