//! Prometheus metrics through the `metrics` facade and `metrics-exporter-prometheus`.
//!
//! The recorder is process-global (the facade's design), so it is installed once and every server
//! in the process — tests run several — renders the same registry.
//!
//! Architecture Invariant: no label ever carries an IP, user agent, URL or visitor key.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("waymark_commit_seconds".into()),
                    &[
                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("waymark_commit_batches".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours renders empty.
            let _ = metrics::set_global_recorder(recorder);
            metrics::describe_counter!("waymark_requests_total", "batch requests by HTTP status");
            metrics::describe_counter!(
                "waymark_events_total",
                "events by outcome: accepted, rejected, bot"
            );
            metrics::describe_histogram!("waymark_commit_seconds", "time of one group commit");
            metrics::describe_histogram!("waymark_commit_batches", "batches per group commit");
            metrics::describe_gauge!("waymark_open_sessions", "sessions open in memory");
            metrics::describe_counter!(
                "waymark_overload_total",
                "batches answered 503 because the write queue was full"
            );
            metrics::describe_counter!(
                "waymark_beacon_waits_total",
                "beacons that waited for room in a full write queue instead of a 503"
            );
            handle
        })
        .clone()
}
