//! Integration tests of the collector over real HTTP against the real server (one test binary).

mod clickhouse;
mod cluster;
mod harness;
mod hostile;
mod privacy;
mod process;
mod protocol;
mod reports;
mod static_files;
