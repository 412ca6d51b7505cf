//! Browser SDK (placeholder).
