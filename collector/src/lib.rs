//! Collector (placeholder).
