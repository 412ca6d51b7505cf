//! The one `Config` of a running collector, built in `main.rs` (file → `WAYMARK_*` env → flags)
//! and passed down by value; library code never reads the environment.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Everything `serve` needs. [`Config::default`] is what a bare `waymark serve` runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// Which store: SQLite in `data_dir` (the default) or ClickHouse.
    pub store: crate::store::Backend,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Inactivity after which a session ends.
    pub session_timeout: Duration,
    /// Most open sessions kept in memory (least recently active are finalised first).
    pub max_open_sessions: usize,
    /// Peers whose `Forwarded` / `X-Forwarded-For` headers are believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Batches per second one client may send (burst: ten times that).
    pub rate_limit_per_second: u32,
    /// Batches waiting for the writer before new ones are answered 503.
    pub queue_capacity: usize,
    /// Most batches the writer puts into one transaction.
    pub max_group_commit: usize,
    /// Optional MaxMind-format country database.
    pub geoip: Option<PathBuf>,
    /// Directory with the built SDK served under `/sdk/` (`sdk/dist`).
    pub sdk_dir: Option<PathBuf>,
    /// The demo shop (`demo-site/`), served at `/` with its site `demo-shop` registered.
    pub demo_dir: Option<PathBuf>,
    /// The built dashboard (`dashboard/dist`), served at `/dashboard/`, and at `/` unless the
    /// demo shop is there.
    pub dashboard_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("waymark-data"),
            store: crate::store::Backend::Sqlite,
            max_body_bytes: waymark_protocol::MAX_BODY_BYTES,
            session_timeout: Duration::from_secs(30 * 60),
            max_open_sessions: 1_000_000,
            trusted_proxies: Vec::new(),
            rate_limit_per_second: 20,
            queue_capacity: 4096,
            max_group_commit: 512,
            geoip: None,
            sdk_dir: None,
            demo_dir: None,
            dashboard_dir: None,
        }
    }
}

/// The TOML file's shape: every key optional, names as in `waymark serve --help`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// `sqlite` or `clickhouse://host:port/database`, as `--store`.
    #[serde(default, deserialize_with = "store")]
    pub store: Option<crate::store::Backend>,
    pub max_body_bytes: Option<usize>,
    pub session_timeout_secs: Option<u64>,
    pub max_open_sessions: Option<usize>,
    pub trusted_proxies: Option<Vec<IpAddr>>,
    pub rate_limit_per_second: Option<u32>,
    pub queue_capacity: Option<usize>,
    pub geoip: Option<PathBuf>,
    pub sdk_dir: Option<PathBuf>,
    pub dashboard_dir: Option<PathBuf>,
}

fn store<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::store::Backend>, D::Error> {
    let s = String::deserialize(d)?;
    crate::store::Backend::parse(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl FileConfig {
    /// Parses a TOML config file's text.
    ///
    /// # Errors
    /// A TOML syntax error or an unknown key, with its location.
    pub fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// Applies the file's settings on top of `base`.
    pub fn apply(self, mut base: Config) -> Config {
        if let Some(v) = self.listen {
            base.listen = v;
        }
        if let Some(v) = self.data_dir {
            base.data_dir = v;
        }
        if let Some(v) = self.store {
            base.store = v;
        }
        if let Some(v) = self.max_body_bytes {
            base.max_body_bytes = v;
        }
        if let Some(v) = self.session_timeout_secs {
            base.session_timeout = Duration::from_secs(v);
        }
        if let Some(v) = self.max_open_sessions {
            base.max_open_sessions = v;
        }
        if let Some(v) = self.trusted_proxies {
            base.trusted_proxies = v;
        }
        if let Some(v) = self.rate_limit_per_second {
            base.rate_limit_per_second = v;
        }
        if let Some(v) = self.queue_capacity {
            base.queue_capacity = v;
        }
        if self.geoip.is_some() {
            base.geoip = self.geoip;
        }
        if self.sdk_dir.is_some() {
            base.sdk_dir = self.sdk_dir;
        }
        if self.dashboard_dir.is_some() {
            base.dashboard_dir = self.dashboard_dir;
        }
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let f = FileConfig::parse(
            "listen = \"127.0.0.1:9000\"\nsession_timeout_secs = 60\ntrusted_proxies = [\"10.0.0.1\"]\n",
        )
        .unwrap();
        let c = f.apply(Config::default());
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.session_timeout, Duration::from_secs(60));
        assert_eq!(c.trusted_proxies.len(), 1);
        assert_eq!(c.max_body_bytes, 65536);
        assert!(FileConfig::parse("lisen = \"x\"").is_err());
        let c = FileConfig::parse("store = \"clickhouse://127.0.0.1:8123/wm\"")
            .unwrap()
            .apply(Config::default());
        assert!(matches!(c.store, crate::store::Backend::ClickHouse(t) if t.database == "wm"));
        assert!(FileConfig::parse("store = \"postgres://x\"").is_err());
    }
}
