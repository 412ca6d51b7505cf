//! SDK options: parsed once from the script tag's `data-` attributes or the npm `init` object.
//!
//! Both install paths hand the same option names to one parser, so they cannot drift apart.
//! Anything unparseable falls back to the documented default; only a missing or invalid `site`
//! or `endpoint` stops the SDK (it then stays silent, it never throws).

use crate::prelude::*;
use waymark_protocol::scrub::DEFAULT_KEEP;
use waymark_protocol::valid_site;

/// Whether capture waits for an explicit `grant` (`data-consent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentMode {
    Required,
    NotRequired,
}

/// How single-page-app navigation is followed (`data-spa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaMode {
    /// `pushState`, `replaceState` (path changes only) and `popstate`.
    History,
    /// As `History`, plus `hashchange`; the fragment is part of the page URL.
    Hash,
    /// Only the page view at load (and manual `page` calls).
    Off,
}

/// Default bound of the event queue.
pub const QUEUE_CAP: usize = 500;

/// The parsed options.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub site: String,
    /// Origin (and optional path prefix) of the collector, without a trailing slash.
    pub endpoint: String,
    pub consent: ConsentMode,
    pub spa: SpaMode,
    /// Query parameters kept in URLs.
    pub keep: Vec<String>,
    /// Declarative `data-waymark-*` clicks and the `dataLayer` bridge.
    pub auto_cart: bool,
    pub queue_cap: usize,
}

/// The raw option strings, as read from attributes or an options object (`None` = not given).
#[derive(Debug, Default, Clone)]
pub struct RawOptions {
    pub site: Option<String>,
    pub endpoint: Option<String>,
    pub consent: Option<String>,
    pub spa: Option<String>,
    pub keep_params: Option<String>,
    pub auto_cart: Option<String>,
}

impl Config {
    /// Parses the options; `None` when `site` or `endpoint` is missing or invalid.
    pub fn parse(raw: &RawOptions) -> Option<Config> {
        let site = raw.site.as_deref()?.trim();
        if !valid_site(site) {
            return None;
        }
        let endpoint = raw.endpoint.as_deref()?.trim().trim_end_matches('/');
        let host = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))?;
        if host.is_empty() || host.contains(['?', '#', ' ']) {
            return None;
        }
        let word = |v: &Option<String>| v.as_deref().map(|s| s.trim().to_ascii_lowercase());
        Some(Config {
            site: site.into(),
            endpoint: endpoint.into(),
            consent: match word(&raw.consent).as_deref() {
                Some("not-required") | Some("false") | Some("off") => ConsentMode::NotRequired,
                _ => ConsentMode::Required,
            },
            spa: match word(&raw.spa).as_deref() {
                Some("hash") => SpaMode::Hash,
                Some("off") | Some("false") => SpaMode::Off,
                _ => SpaMode::History,
            },
            keep: match raw.keep_params.as_deref() {
                Some(list) => parse_keep(list),
                None => DEFAULT_KEEP.iter().map(|s| (*s).into()).collect(),
            },
            auto_cart: !matches!(word(&raw.auto_cart).as_deref(), Some("off") | Some("false")),
            queue_cap: QUEUE_CAP,
        })
    }

    /// Where batches are posted.
    pub fn batch_url(&self) -> String {
        let mut url = self.endpoint.clone();
        url.push_str("/v1/batch");
        url
    }
}

/// `"utm_source, ref,,utm_medium"` → `["utm_source", "ref", "utm_medium"]`.
pub fn parse_keep(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Into::into)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(site: &str, endpoint: &str) -> RawOptions {
        RawOptions {
            site: Some(site.into()),
            endpoint: Some(endpoint.into()),
            ..RawOptions::default()
        }
    }

    #[test]
    fn defaults() {
        let c = Config::parse(&raw("demo-shop", "https://c.example/")).unwrap();
        assert_eq!(c.endpoint, "https://c.example");
        assert_eq!(c.batch_url(), "https://c.example/v1/batch");
        assert_eq!(c.consent, ConsentMode::Required);
        assert_eq!(c.spa, SpaMode::History);
        assert_eq!(c.keep, DEFAULT_KEEP.to_vec());
        assert!(c.auto_cart);
        assert_eq!(c.queue_cap, 500);
    }

    #[test]
    fn options() {
        let mut r = raw("demo-shop", "http://localhost:8080/w");
        r.consent = Some("not-required".into());
        r.spa = Some("HASH".into());
        r.keep_params = Some(" ref, utm_source,,".into());
        r.auto_cart = Some("off".into());
        let c = Config::parse(&r).unwrap();
        assert_eq!(c.batch_url(), "http://localhost:8080/w/v1/batch");
        assert_eq!(c.consent, ConsentMode::NotRequired);
        assert_eq!(c.spa, SpaMode::Hash);
        assert_eq!(c.keep, ["ref", "utm_source"]);
        assert!(!c.auto_cart);
        r.spa = Some("off".into());
        r.consent = Some("bogus".into());
        r.keep_params = Some(String::new());
        let c = Config::parse(&r).unwrap();
        assert_eq!(c.spa, SpaMode::Off);
        assert_eq!(c.consent, ConsentMode::Required, "unknown values fall back");
        assert!(c.keep.is_empty(), "an empty list keeps no parameter");
    }

    #[test]
    fn invalid_site_or_endpoint_stops() {
        assert!(Config::parse(&raw("Demo Shop", "https://c.example")).is_none());
        assert!(Config::parse(&raw("demo", "ftp://c.example")).is_none());
        assert!(Config::parse(&raw("demo", "https://")).is_none());
        assert!(Config::parse(&raw("demo", "https://c.example/?x")).is_none());
        assert!(Config::parse(&RawOptions::default()).is_none());
    }
}
