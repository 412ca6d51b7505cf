//! End-to-end journeys: real headless browsers (Chromium, and Firefox when installed) drive the
//! demo shop served by a real collector, and every assertion is about what ended up in the real
//! SQLite store (or, for privacy, what did not).
//!
//! Each journey is one `async fn(Kind)` run for every available browser, each run with its own
//! collector and data directory. Browser tests hold the harness's process-wide lock.
//!
//! | journey | test |
//! |---|---|
//! | 1 consent gates capture, then page views | `consent::consent_gates_capture_then_pageviews_are_stored` |
//! | 2 SPA navigation and Back | `pages::spa_navigation_and_back_are_pageviews` |
//! | 3 scroll depth and engaged time | `pages::scroll_depth_and_engaged_time_are_sent_on_leaving` |
//! | 4 cart to purchase | `shop::cart_checkout_and_purchase_are_stored_with_revenue` |
//! | 5 custom events, no e-mail stored | `shop::custom_events_are_stored_and_the_email_is_not` |
//! | 6 beacon on tab close | `pages::closing_the_tab_delivers_queued_events_by_beacon` |
//! | 7 decline and revoke | `consent::decline_and_revoke_send_nothing` |
//! | 8 GPC / Do-Not-Track | `consent::privacy_signals_mean_deny_until_the_visitor_grants` |
//! | 9 two user agents, two visitors | `sessions::different_user_agents_are_different_visitors` |
//! | 10 idle gap, new session | `sessions::an_idle_gap_longer_than_the_timeout_starts_a_new_session` |
//! | 11 503 and recovery | `resilience::nothing_is_lost_while_the_collector_answers_503`, `resilience::nothing_is_lost_when_pages_are_left_during_503`, `resilience::retry_after_is_readable_by_a_page_on_another_origin` |
//! | 12 README screenshots | `screenshots::readme_screenshots` |
//! | 13 calls queued before the SDK loads, replayed in order | `pages::calls_made_before_the_sdk_loads_are_replayed_in_order` |
//!
//! Run: `cargo test -p waymark-tests --test e2e -- --test-threads=1`

// Each test holds the harness's `std` browser lock for its whole run, across awaits, on purpose:
// the test's own thread blocks on the runtime, and the lock only serialises whole tests.
#![allow(clippy::await_holding_lock)]

mod consent;
mod pages;
mod resilience;
mod screenshots;
mod sessions;
mod shop;
mod support;
