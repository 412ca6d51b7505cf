//! The Waymark collector: accepts the SDK's batches, enriches and sessionises them without
//! cookies, stores them durably, and answers journey questions.
//!
//! Module map (ARCHITECTURE.md has the invariants):
//! - [`server`]: the HTTP shell (hyper): routing, CORS, limits, graceful shutdown.
//! - [`ingest`]: pure pipeline from a body to a [`store::BatchWrite`]: decode, validate, derive
//!   time, scrub, sessionise, fold into session deltas.
//! - [`session`]: the cookieless sessioniser, a pure state machine (time is an input).
//! - [`visitor`]: client IP rules and the salted HMAC visitor key.
//! - [`enrich`]: user agent → browser/OS/device and bot verdict, referrer → source/medium, URL
//!   normalisation, optional GeoIP country.
//! - [`writer`]: the single writer thread doing group commits behind a bounded queue.
//! - [`store`]: the `Store` trait and its implementations, embedded SQLite (the default) and
//!   ClickHouse (`--store clickhouse://…`); only it knows SQL.
//! - [`report`]: report parameters, result types and rendering; the API and `waymark report`
//!   share it (the queries are `store::Reports`).
//! - [`assets`], [`metrics`], [`auth`], [`config`], [`error`]: the small pieces around them.

#![forbid(unsafe_code)]

pub mod assets;
pub mod auth;
pub mod config;
pub mod enrich;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod report;
pub mod server;
pub mod session;
pub mod store;
pub mod visitor;
pub mod writer;
