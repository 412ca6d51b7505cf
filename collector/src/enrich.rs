//! Enrichment: user agent → browser, OS, device class and bot verdict; page URL → normalised host,
//! path and UTM tags; referrer → source / medium / campaign; IP → country (optional GeoIP file).
//!
//! Everything here is pure except [`Enricher::new`], which reads the GeoIP file once. The hot path
//! (one [`Enricher::client`] and one [`Enricher::country`] per request) is a keyed hash of the
//! user agent, a cache hit and a tree walk in the in-memory database.
//!
//! Privacy: the raw user agent is never stored, logged or kept as a cache key. The cache is keyed
//! by a 64-bit SipHash of the string under a random per-process key (so nobody can craft a
//! collision that poisons the entry of a popular browser) and holds only the parsed
//! [`ClientInfo`].
//!
//! Building blocks, and why:
//! - `woothee`: browser, OS and category from a compact, regex-light rule set; we only add what
//!   it lacks (tablets, TVs, headless/automation markers) and fold its names into report labels.
//! - `isbot`: the maintained list of crawler patterns (omrilotan/isbot), compiled once into one
//!   regex; woothee's own crawler category also counts as a known bot.
//! - `quick_cache`: a bounded, sharded, scan-resistant cache, so a flood of unique user agents
//!   evicts little of the real traffic. We use `get` + `insert` rather than `get_or_insert_with`
//!   so a miss never parks an async worker thread on another thread's placeholder.
//! - `maxminddb`: MaxMind's format (GeoLite2, GeoIP2, DB-IP lite Country or City), read into
//!   memory once; we decode only `country.iso_code`.
//! - `url`: WHATWG parsing (lowercase hosts, IDNA to punycode, default ports dropped, dot segments
//!   resolved) before our own path policy.
//! - Referrers: a compact table below, not Snowplow's referer-parser database. The crates.io
//!   ports are not maintained or not self-contained: `refparser` 0.1.0 (one release, 2021, no
//!   repository, a 2021 snapshot of the data) and `referer-parser-rs` 0.1.0 (loads `referers.yml`
//!   from disk at run time, which we would have to ship or download, via the deprecated
//!   `serde_yaml`). The Snowplow data also lists hundreds of long-dead search engines; reports
//!   need the few dozen sources below, and a table in code is reviewed like code.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maxminddb::PathElement;
use quick_cache::sync::Cache;
use url::Url;

/// Longest page or referrer URL accepted, in bytes (PROTOCOL.md).
pub const MAX_URL_BYTES: usize = 2048;
/// User agents are classified on at most this many leading bytes, which bounds the work an
/// attacker can cause with huge headers; real ones are far shorter.
pub const MAX_USER_AGENT_BYTES: usize = 1024;
/// UTM values are cut to this many bytes (at a character boundary).
pub const MAX_UTM_BYTES: usize = 256;
/// Distinct user agents kept parsed by default (a few hundred bytes each).
pub const DEFAULT_UA_CACHE_CAPACITY: usize = 16_384;

/// Source of a visit with no referrer, no UTM tags and no click id.
pub const DIRECT: &str = "(direct)";
/// Placeholder when UTM tags are present but say nothing about this part (e.g. no `utm_medium`).
pub const NOT_SET: &str = "(not set)";

/// The media [`classify_source`] produces itself; with UTM tags `utm_medium` is used as given
/// (lowercased), except that paid media (`cpc`, `ppc`, `cpm`, `paid*`, …) become [`medium::PAID`].
pub mod medium {
    /// A search engine's results page.
    pub const SEARCH: &str = "search";
    /// A social network, forum or messenger.
    pub const SOCIAL: &str = "social";
    /// A webmail client.
    pub const EMAIL: &str = "email";
    /// An ad click: a paid `utm_medium` or an ad click id in the URL.
    pub const PAID: &str = "paid";
    /// Any other site.
    pub const REFERRAL: &str = "referral";
    /// No referrer (or one from the same site).
    pub const DIRECT: &str = "direct";
}

// ---------------------------------------------------------------------------------------------
// User agent
// ---------------------------------------------------------------------------------------------

/// The kind of device, from the user agent alone.
///
/// iPads on iPadOS 13+ ask for desktop sites by default and send a macOS user agent: they count as
/// desktop/macOS, as no server can tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceClass {
    /// Windows, macOS, Linux, ChromeOS computers.
    Desktop,
    /// Phones.
    Mobile,
    /// iPads, Android devices without the `Mobile` token, Kindle/Silk, `Tablet` tokens.
    Tablet,
    /// TVs, consoles, bots and anything unrecognised.
    Other,
}

impl DeviceClass {
    /// The report label: `desktop`, `mobile`, `tablet` or `other` (the `device:` filter).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Desktop => "desktop",
            DeviceClass::Mobile => "mobile",
            DeviceClass::Tablet => "tablet",
            DeviceClass::Other => "other",
        }
    }
}

/// Why a user agent is not counted as a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BotReason {
    /// On isbot's maintained list of crawler patterns, or in woothee's crawler category.
    KnownBot,
    /// A headless browser or automation/testing tool (HeadlessChrome, PhantomJS, Puppeteer,
    /// Playwright, Selenium, Lighthouse, WebPageTest, jsdom, …).
    Automation,
    /// No user agent at all (or `-`).
    EmptyUserAgent,
}

impl BotReason {
    /// The label used when counting dropped events: `known_bot`, `automation`,
    /// `empty_user_agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            BotReason::KnownBot => "known_bot",
            BotReason::Automation => "automation",
            BotReason::EmptyUserAgent => "empty_user_agent",
        }
    }
}

/// What a user agent tells about the client; the only form in which it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// `Chrome`, `Firefox`, `Safari`, `Edge`, `Opera`, `Samsung Internet`, `WebView`, … or
    /// `Other`.
    pub browser: String,
    /// `Windows`, `macOS`, `iOS`, `Android`, `Linux`, `ChromeOS`, … or `Other`.
    pub os: String,
    /// The device class.
    pub device: DeviceClass,
    /// `Some` when the client is not a person: such events are counted, never sessionised.
    pub bot: Option<BotReason>,
}

/// Case-insensitive substrings (matched on the lowercased user agent) of headless browsers and
/// automation tools. Checked before the bot list, so these get their own reason.
const AUTOMATION_MARKERS: &[&str] = &[
    "headless", // HeadlessChrome, headless Edge (Puppeteer/Playwright defaults)
    "phantomjs",
    "slimerjs",
    "puppeteer",
    "playwright",
    "selenium",
    "webdriver",
    "lighthouse", // Chrome-Lighthouse, PageSpeed Insights
    "ptst/",      // WebPageTest
    "gtmetrix",
    "jsdom",
    "htmlunit",
    "cypress",
    "prerender", // prerender.io
];

/// Lowercased substrings of TVs, set-top boxes and consoles (device class `Other`).
const TV_AND_CONSOLE_MARKERS: &[&str] = &[
    "smart-tv",
    "smarttv",
    "googletv",
    "android tv",
    "hbbtv",
    "web0s",
    "tizen",
    "crkey",
    "roku",
    "appletv",
    "playstation",
    "xbox",
    "nintendo",
];

/// Parses user agents (cached) and looks up countries (optional GeoIP database).
pub struct Enricher {
    bots: isbot::Bots,
    parser: woothee::parser::Parser,
    ua_cache: Cache<u64, Arc<ClientInfo>>,
    ua_key: RandomState,
    empty_ua: Arc<ClientInfo>,
    geoip: Option<maxminddb::Reader<Vec<u8>>>,
}

impl fmt::Debug for Enricher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enricher")
            .field("cached_user_agents", &self.ua_cache.len())
            .field(
                "geoip",
                &self.geoip.as_ref().map(|r| &r.metadata().database_type),
            )
            .finish_non_exhaustive()
    }
}

/// Why an [`Enricher`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// The GeoIP file is missing, unreadable or not a MaxMind DB.
    #[error("cannot open GeoIP database {}", path.display())]
    GeoIp {
        /// The configured path.
        path: PathBuf,
        /// What the reader said.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
}

impl Enricher {
    /// Builds an enricher with the default user-agent cache size, opening the GeoIP database (a
    /// MaxMind-format Country or City file) when a path is given. Without one, [`Self::country`]
    /// is always `None`.
    ///
    /// # Errors
    ///
    /// [`EnrichError::GeoIp`], naming the file, when it cannot be read or is not a MaxMind DB.
    ///
    /// # Examples
    ///
    /// ```
    /// use waymark_collector::enrich::{DeviceClass, Enricher};
    ///
    /// let enricher = Enricher::new(None)?;
    /// let ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
    ///           (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
    /// let client = enricher.client(ua);
    /// assert_eq!((client.browser.as_str(), client.os.as_str()), ("Safari", "iOS"));
    /// assert_eq!(client.device, DeviceClass::Mobile);
    /// # Ok::<(), waymark_collector::enrich::EnrichError>(())
    /// ```
    pub fn new(geoip: Option<&Path>) -> Result<Self, EnrichError> {
        Self::with_cache_capacity(geoip, DEFAULT_UA_CACHE_CAPACITY)
    }

    /// [`Self::new`] with a chosen number of cached user agents.
    ///
    /// # Errors
    ///
    /// As [`Self::new`].
    pub fn with_cache_capacity(
        geoip: Option<&Path>,
        ua_cache_capacity: usize,
    ) -> Result<Self, EnrichError> {
        let geoip = match geoip {
            None => None,
            Some(path) => Some(maxminddb::Reader::open_readfile(path).map_err(|source| {
                EnrichError::GeoIp {
                    path: path.to_path_buf(),
                    source,
                }
            })?),
        };
        Ok(Enricher {
            bots: isbot::Bots::default(),
            parser: woothee::parser::Parser::new(),
            ua_cache: Cache::new(ua_cache_capacity.max(1)),
            ua_key: RandomState::new(),
            empty_ua: Arc::new(ClientInfo {
                browser: "Other".to_string(),
                os: "Other".to_string(),
                device: DeviceClass::Other,
                bot: Some(BotReason::EmptyUserAgent),
            }),
            geoip,
        })
    }

    /// Classifies a user agent: browser, OS, device class and bot verdict. Cached by a keyed
    /// hash of the (trimmed, at most [`MAX_USER_AGENT_BYTES`]) string; the string itself is not
    /// kept.
    pub fn client(&self, user_agent: &str) -> Arc<ClientInfo> {
        let ua = truncate_to_char_boundary(user_agent.trim(), MAX_USER_AGENT_BYTES);
        if ua.is_empty() || ua == "-" {
            return Arc::clone(&self.empty_ua);
        }
        let key = self.ua_key.hash_one(ua);
        if let Some(hit) = self.ua_cache.get(&key) {
            return hit;
        }
        // Two threads missing on the same agent both parse it; that is cheaper than making one
        // of them wait.
        let info = Arc::new(classify_user_agent(&self.parser, &self.bots, ua));
        self.ua_cache.insert(key, Arc::clone(&info));
        info
    }

    /// The ISO 3166-1 alpha-2 code of the country MaxMind places `ip` in (`country.iso_code`,
    /// not the registered country), or `None` without a database, for private and unknown
    /// addresses, and for networks the database gives no country. IPv4-mapped IPv6 addresses
    /// are looked up as IPv4.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let reader = self.geoip.as_ref()?;
        let found = reader.lookup(ip.to_canonical()).ok()?;
        let code: &str = found
            .decode_path(&[PathElement::Key("country"), PathElement::Key("iso_code")])
            .ok()??;
        (code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()))
            .then(|| code.to_ascii_uppercase())
    }
}

fn classify_user_agent(
    parser: &woothee::parser::Parser,
    bots: &isbot::Bots,
    ua: &str,
) -> ClientInfo {
    let lower = ua.to_ascii_lowercase();
    let parsed = parser.parse(ua);
    let (name, category, os) = parsed
        .as_ref()
        .map_or(("", "", ""), |r| (r.name, r.category, r.os));
    let bot = if AUTOMATION_MARKERS.iter().any(|m| lower.contains(m)) {
        Some(BotReason::Automation)
    } else if category == "crawler" || bots.is_bot(ua) {
        Some(BotReason::KnownBot)
    } else {
        None
    };
    ClientInfo {
        browser: browser_label(name, ua).to_string(),
        os: os_label(os).to_string(),
        device: device_class(ua, &lower, category),
        bot,
    }
}

/// Folds woothee's browser names into report labels; unknown names become `Other`.
fn browser_label(woothee_name: &str, ua: &str) -> &'static str {
    match woothee_name {
        // woothee calls Amazon's Silk "Chrome".
        "Chrome" if ua.contains("Silk/") => "Silk",
        "Chrome" => "Chrome",
        "Firefox" => "Firefox",
        "Safari" => "Safari",
        "Edge" => "Edge",
        "Opera" => "Opera",
        "Internet Explorer" => "Internet Explorer",
        "Vivaldi" => "Vivaldi",
        "SamsungBrowser" => "Samsung Internet",
        "Yandex Browser" => "Yandex Browser",
        "Webview" => "WebView",
        "Google Search App" => "Google App",
        _ => "Other",
    }
}

/// Folds woothee's OS names (which carry versions, e.g. `Windows 10`, and devices, e.g. `iPad`)
/// into report labels.
fn os_label(woothee_os: &str) -> &'static str {
    match woothee_os {
        "Mac OSX" => "macOS",
        "Mac OS Classic" => "Mac OS",
        "iPhone" | "iPad" | "iPod" | "iOS" => "iOS",
        "Android" => "Android",
        "Linux" => "Linux",
        "ChromeOS" => "ChromeOS",
        "BSD" => "BSD",
        "Firefox OS" => "Firefox OS",
        "BlackBerry" | "BlackBerry 10" => "BlackBerry",
        "Windows Phone OS" => "Windows Phone",
        os if os.starts_with("Windows") => "Windows",
        os if os.starts_with("PlayStation") => "PlayStation",
        os if os.starts_with("Xbox") => "Xbox",
        os if os.starts_with("Nintendo") => "Nintendo",
        _ => "Other",
    }
}

/// woothee has no tablet class (an iPad is a "smartphone"), so tablets are told apart by the
/// usual tokens: `iPad`, `Tablet`, Kindle/Silk, and Android without `Mobile` (Google's rule
/// for Android browsers).
fn device_class(ua: &str, lower: &str, category: &str) -> DeviceClass {
    if category == "crawler" || TV_AND_CONSOLE_MARKERS.iter().any(|m| lower.contains(m)) {
        return DeviceClass::Other;
    }
    let android = ua.contains("Android");
    if ua.contains("iPad")
        || lower.contains("tablet")
        || ua.contains("Kindle")
        || ua.contains("Silk/")
        || (android && !ua.contains("Mobile"))
    {
        return DeviceClass::Tablet;
    }
    match category {
        "smartphone" | "mobilephone" => DeviceClass::Mobile,
        "pc" => DeviceClass::Desktop,
        _ if android || lower.contains("mobi") => DeviceClass::Mobile,
        _ => DeviceClass::Other,
    }
}

fn truncate_to_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Page URL
// ---------------------------------------------------------------------------------------------

/// The UTM tags of a page URL. `source` and `medium` are lowercased (so `Newsletter` and
/// `newsletter` are one source); `campaign`, `term` and `content` keep their case. Values are
/// trimmed, stripped of control characters and cut to [`MAX_UTM_BYTES`]; empty ones are `None`.
/// Keys match case-insensitively and the first occurrence wins.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Utm {
    /// `utm_source`, lowercased.
    pub source: Option<String>,
    /// `utm_medium`, lowercased.
    pub medium: Option<String>,
    /// `utm_campaign`.
    pub campaign: Option<String>,
    /// `utm_term`.
    pub term: Option<String>,
    /// `utm_content`.
    pub content: Option<String>,
}

impl Utm {
    /// True when any of source, medium or campaign is set: such a page view is an external
    /// entry (term and content alone are not).
    pub fn is_present(&self) -> bool {
        self.source.is_some() || self.medium.is_some() || self.campaign.is_some()
    }
}

/// An ad platform's click id found in the page URL's query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClickId {
    /// `gclid`, `gbraid`, `wbraid`, `dclid` (Google Ads, Display & Video).
    Google,
    /// `msclkid` (Microsoft Advertising).
    Microsoft,
    /// `fbclid`. Facebook and Instagram add it to *every* outbound link, organic posts included,
    /// so it means "came from Meta", not "paid": its medium is `social`.
    Meta,
    /// `ttclid` (TikTok ads).
    TikTok,
    /// `twclid` (X/Twitter ads).
    Twitter,
    /// `li_fat_id` (LinkedIn ads).
    LinkedIn,
}

impl ClickId {
    /// The source this click id stands for.
    pub fn source(self) -> &'static str {
        match self {
            ClickId::Google => "google",
            ClickId::Microsoft => "bing",
            ClickId::Meta => "facebook",
            ClickId::TikTok => "tiktok",
            ClickId::Twitter => "twitter",
            ClickId::LinkedIn => "linkedin",
        }
    }

    /// The medium this click id stands for: `paid`, except `fbclid` (see [`ClickId::Meta`]).
    pub fn medium(self) -> &'static str {
        match self {
            ClickId::Meta => medium::SOCIAL,
            _ => medium::PAID,
        }
    }

    fn from_key(key: &str) -> Option<ClickId> {
        const KEYS: &[(&str, ClickId)] = &[
            ("gclid", ClickId::Google),
            ("gbraid", ClickId::Google),
            ("wbraid", ClickId::Google),
            ("dclid", ClickId::Google),
            ("msclkid", ClickId::Microsoft),
            ("fbclid", ClickId::Meta),
            ("ttclid", ClickId::TikTok),
            ("twclid", ClickId::Twitter),
            ("li_fat_id", ClickId::LinkedIn),
        ];
        KEYS.iter()
            .find(|(k, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, id)| *id)
    }
}

/// A page URL reduced to what reports use. Nothing else of the query or the fragment is kept.
///
/// Normalisation policy (so that one page is one row in the `pages` report):
/// - `host`: lowercase, IDNs in punycode (`xn--…`), no trailing dot, a leading `www.` removed
///   (`www.shop.example` and `shop.example` are one site), the port kept only when it is not the
///   scheme's default (`localhost:3000`).
/// - `path`: dot segments resolved; percent-escapes decoded to UTF-8 (`/caf%C3%A9` → `/café`)
///   except those for `/ \ ? # %`, space and control characters, and bytes that are not valid
///   UTF-8, which stay encoded with uppercase hex (`%2F`, `%20`, `%FF`); runs of `/` collapsed;
///   a trailing `/` removed except for the root `/`. Case is kept (paths are case-sensitive).
///   The result is stable: normalising it again gives the same path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageUrl {
    /// Normalised host, with a non-default port.
    pub host: String,
    /// Normalised path, always starting with `/`.
    pub path: String,
    /// The UTM tags.
    pub utm: Utm,
    /// An ad click id, if the query had one (the first found; a paid one wins over `fbclid`).
    pub click_id: Option<ClickId>,
}

/// Parses and normalises a page URL (see [`PageUrl`] for the policy).
///
/// # Errors
///
/// A short lowercase reason, fit for a 400 answer after `url: `: `longer than 2048 bytes`,
/// `not an absolute URL`, `scheme is not http or https`, `no host`.
///
/// # Examples
///
/// ```
/// use waymark_collector::enrich::parse_page_url;
///
/// let page = parse_page_url("https://WWW.Shop.example//products/caf%C3%A9/?utm_source=News")?;
/// assert_eq!(page.host, "shop.example");
/// assert_eq!(page.path, "/products/café");
/// assert_eq!(page.utm.source.as_deref(), Some("news"));
/// assert_eq!(parse_page_url("ftp://shop.example/"), Err("scheme is not http or https"));
/// # Ok::<(), &'static str>(())
/// ```
pub fn parse_page_url(raw: &str) -> Result<PageUrl, &'static str> {
    if raw.len() > MAX_URL_BYTES {
        return Err("longer than 2048 bytes");
    }
    let url = match Url::parse(raw) {
        Ok(url) => url,
        Err(url::ParseError::EmptyHost) => return Err("no host"),
        Err(_) => return Err("not an absolute URL"),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err("scheme is not http or https");
    }
    let host = site_host(&url).ok_or("no host")?.1;
    let path = normalise_path(url.path());
    let (utm, click_id) = scan_query(&url);
    Ok(PageUrl {
        host,
        path,
        utm,
        click_id,
    })
}

/// The host without `www.` or a trailing dot, alone and with a non-default port.
fn site_host(url: &Url) -> Option<(&str, String)> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    let host = host.strip_suffix('.').unwrap_or(host);
    let host = host
        .strip_prefix("www.")
        .filter(|rest| rest.contains('.'))
        .unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    let with_port = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    Some((host, with_port))
}

/// Decoded bytes that stay percent-encoded: path delimiters, the escape character itself,
/// backslash (the URL parser reads it as `/`), space and controls.
fn keep_encoded(b: u8) -> bool {
    matches!(b, b'/' | b'\\' | b'?' | b'#' | b'%' | b' ') || b < 0x20 || b == 0x7f
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `%XX` with uppercase hex.
fn escape(b: u8) -> [u8; 3] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]
}

/// Applies the path policy of [`PageUrl`] to an already parsed (so percent-encoded) path.
fn normalise_path(encoded: &str) -> String {
    // 1. Decode escapes to bytes, keeping delimiters encoded.
    let bytes = encoded.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                let v = hi << 4 | lo;
                if keep_encoded(v) {
                    decoded.extend_from_slice(&escape(v));
                } else {
                    decoded.push(v);
                }
                i += 3;
                continue;
            }
        }
        decoded.push(b);
        i += 1;
    }
    // 2. Keep valid UTF-8, re-encode the rest; collapse slashes as we go.
    let mut out = String::with_capacity(decoded.len() + 1);
    for chunk in decoded.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '/' && out.ends_with('/') {
                continue;
            }
            out.push(c);
        }
        for &b in chunk.invalid() {
            out.extend(escape(b).map(char::from));
        }
    }
    // 3. Trailing slash and root.
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

fn clean_utm_value(raw: &str, lowercase: bool) -> Option<String> {
    let trimmed = raw.trim();
    let mut value = String::with_capacity(trimmed.len().min(MAX_UTM_BYTES));
    for c in trimmed.chars().filter(|c| !c.is_control()) {
        if value.len() + c.len_utf8() > MAX_UTM_BYTES {
            break;
        }
        value.push(c);
    }
    if lowercase {
        value = value.to_lowercase();
    }
    (!value.is_empty()).then_some(value)
}

fn scan_query(url: &Url) -> (Utm, Option<ClickId>) {
    let mut utm = Utm::default();
    let mut click_id = None;
    if url.query().is_none() {
        return (utm, click_id);
    }
    for (key, value) in url.query_pairs() {
        let key = key.as_ref();
        let (slot, lowercase) = if key.eq_ignore_ascii_case("utm_source") {
            (&mut utm.source, true)
        } else if key.eq_ignore_ascii_case("utm_medium") {
            (&mut utm.medium, true)
        } else if key.eq_ignore_ascii_case("utm_campaign") {
            (&mut utm.campaign, false)
        } else if key.eq_ignore_ascii_case("utm_term") {
            (&mut utm.term, false)
        } else if key.eq_ignore_ascii_case("utm_content") {
            (&mut utm.content, false)
        } else {
            if let Some(id) = ClickId::from_key(key).filter(|_| !value.trim().is_empty()) {
                if matches!(click_id, None | Some(ClickId::Meta)) {
                    click_id = Some(id);
                }
            }
            continue;
        };
        if slot.is_none() {
            *slot = clean_utm_value(&value, lowercase);
        }
    }
    (utm, click_id)
}

// ---------------------------------------------------------------------------------------------
// Source
// ---------------------------------------------------------------------------------------------

/// Where a page view came from: the session record's source / medium / campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// `google`, `newsletter` (a `utm_source`), `news.ycombinator.com` (a referring host),
    /// [`DIRECT`] or [`NOT_SET`].
    pub source: String,
    /// One of the [`medium`] constants, or the lowercased `utm_medium`, or [`NOT_SET`].
    pub medium: String,
    /// `utm_campaign`, if any.
    pub campaign: Option<String>,
    /// The referring host (normalised like [`PageUrl::host`]) when it is another site, even
    /// when UTM tags decide the source.
    pub referrer_host: Option<String>,
    /// True when UTM tags, a click id or another site's referrer are present: such a page view
    /// may start a new session (SESSIONS.md); direct and internal ones never do.
    pub external: bool,
}

impl Source {
    fn direct() -> Source {
        Source {
            source: DIRECT.to_string(),
            medium: medium::DIRECT.to_string(),
            campaign: None,
            referrer_host: None,
            external: false,
        }
    }

    /// A hash of (source, medium, campaign) for the sessioniser to compare entries. It is
    /// FNV-1a 64 over the fields with separators: the same on every platform, process and
    /// release (unlike `RandomState` or `DefaultHasher`), so it may be stored.
    pub fn fingerprint(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash = OFFSET;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(PRIME);
            }
        };
        // 0x1f and 0x1e never occur in the fields (control characters are stripped), so the
        // encoding is unambiguous; 0x1e marks "no campaign" apart from an empty one.
        feed(self.source.as_bytes());
        feed(&[0x1f]);
        feed(self.medium.as_bytes());
        feed(&[0x1f]);
        match &self.campaign {
            Some(campaign) => feed(campaign.as_bytes()),
            None => feed(&[0x1e]),
        }
        hash
    }
}

/// A referrer, as [`classify_source`] sees it.
enum Referrer {
    /// Absent, unparseable, too long, or of a scheme that names no site (`about:`, `file:`).
    None,
    /// The page's own host (ignoring `www.`).
    Internal,
    /// Another site or app.
    External {
        host: String,
        known: Option<(&'static str, &'static str)>,
    },
}

fn read_referrer(raw: Option<&str>, page_host: &str) -> Referrer {
    let Some(raw) = raw
        .map(str::trim)
        .filter(|r| !r.is_empty() && r.len() <= MAX_URL_BYTES)
    else {
        return Referrer::None;
    };
    let Ok(url) = Url::parse(raw) else {
        return Referrer::None;
    };
    match url.scheme() {
        "http" | "https" => match site_host(&url) {
            Some((_, full)) if full == page_host => Referrer::Internal,
            Some((bare, full)) => Referrer::External {
                known: classify_host(bare),
                host: full,
            },
            None => Referrer::None,
        },
        // Android apps send `android-app://<package>/` (Gmail, the Google app, …).
        "android-app" => match url.host_str().filter(|h| !h.is_empty()) {
            Some(package) => {
                let package = package.to_ascii_lowercase();
                Referrer::External {
                    known: android_app(&package),
                    host: package,
                }
            }
            None => Referrer::None,
        },
        _ => Referrer::None,
    }
}

/// True for `utm_medium` values that mean an ad: `cpc`, `ppc`, `cpm`, `cpv`, `cpa`, `paid…`.
fn is_paid_medium(m: &str) -> bool {
    matches!(m, "cpc" | "ppc" | "cpm" | "cpv" | "cpa") || m.starts_with("paid")
}

/// Classifies where a page view came from. In order:
/// 1. UTM tags (`utm_source`, `utm_medium`, `utm_campaign`): the source is `utm_source` (or, if
///    absent, what the click id or referrer says, or [`NOT_SET`]); the medium is `utm_medium`
///    (paid ones folded into `paid`), else `paid` for an ad click id, else the referrer's medium
///    when the referrer also named the source, else [`NOT_SET`]. External.
/// 2. An ad click id (`gclid`, `msclkid`, `fbclid`, …; see [`ClickId`]). External.
/// 3. A referrer from another site: a search engine, social network or webmail in the table,
///    or the referring host with medium `referral`. External.
/// 4. Otherwise (no referrer, an internal one, or one that names no site): [`DIRECT`] /
///    `direct`, not external.
///
/// # Examples
///
/// ```
/// use waymark_collector::enrich::{classify_source, parse_page_url};
///
/// let page = parse_page_url("https://shop.example/products/mug")?;
/// let from_google = classify_source(&page, Some("https://www.google.co.uk/"));
/// assert_eq!((from_google.source.as_str(), from_google.medium.as_str()), ("google", "search"));
/// assert!(from_google.external);
/// let internal = classify_source(&page, Some("https://www.shop.example/"));
/// assert_eq!(internal.source, "(direct)");
/// assert!(!internal.external);
/// # Ok::<(), &'static str>(())
/// ```
pub fn classify_source(page: &PageUrl, referrer: Option<&str>) -> Source {
    let referrer = read_referrer(referrer, &page.host);
    let (referrer_host, referred) = match referrer {
        Referrer::External { host, known } => {
            let (source, medium) = match known {
                Some((source, medium)) => (source.to_string(), medium),
                None => (host.clone(), medium::REFERRAL),
            };
            (Some(host), Some((source, medium)))
        }
        Referrer::None | Referrer::Internal => (None, None),
    };
    let utm = &page.utm;
    if utm.is_present() {
        let (source, implied_medium) = match (&utm.source, page.click_id, referred) {
            (Some(source), Some(click), _) => (source.clone(), Some(click.medium())),
            (Some(source), None, _) => (source.clone(), None),
            (None, Some(click), _) => (click.source().to_string(), Some(click.medium())),
            (None, None, Some((source, medium))) => (source, Some(medium)),
            (None, None, None) => (NOT_SET.to_string(), None),
        };
        let medium = match &utm.medium {
            Some(m) if is_paid_medium(m) => medium::PAID.to_string(),
            Some(m) => m.clone(),
            None => implied_medium.unwrap_or(NOT_SET).to_string(),
        };
        return Source {
            source,
            medium,
            campaign: utm.campaign.clone(),
            referrer_host,
            external: true,
        };
    }
    if let Some(click) = page.click_id {
        return Source {
            source: click.source().to_string(),
            medium: click.medium().to_string(),
            campaign: None,
            referrer_host,
            external: true,
        };
    }
    match referred {
        Some((source, medium)) => Source {
            source,
            medium: medium.to_string(),
            campaign: None,
            referrer_host,
            external: true,
        },
        None => Source::direct(),
    }
}

/// Looks a referring host (no `www.`, no port) up: first the table, from the full host down to
/// its parent domains (`uk.mail.yahoo.com` → `mail.yahoo.com`), then the brand rule for engines
/// with a domain per country (`google.co.uk`, `yandex.com.tr`, `images.google.de`).
fn classify_host(host: &str) -> Option<(&'static str, &'static str)> {
    let mut suffix = host;
    loop {
        if let Some(hit) = known_host(suffix) {
            return Some(hit);
        }
        suffix = suffix.split_once('.')?.1;
        if !suffix.contains('.') {
            break;
        }
    }
    brand_host(host)
}

/// Hosts (and their subdomains) with a known source. Checked before the brand rule, so
/// `mail.google.com` is email, not search.
fn known_host(host: &str) -> Option<(&'static str, &'static str)> {
    use medium::{EMAIL, PAID, SEARCH, SOCIAL};
    Some(match host {
        // Search engines (Google, Bing, Yahoo, Yandex, Baidu, Pinterest: see `brand_host`).
        "duckduckgo.com" => ("duckduckgo", SEARCH),
        "ecosia.org" => ("ecosia", SEARCH),
        "qwant.com" => ("qwant", SEARCH),
        "startpage.com" | "startpage.nl" => ("startpage", SEARCH),
        "search.brave.com" => ("brave", SEARCH),
        "kagi.com" => ("kagi", SEARCH),
        "ya.ru" => ("yandex", SEARCH),
        "ask.com" => ("ask", SEARCH),
        "search.aol.com" => ("aol", SEARCH),
        "naver.com" => ("naver", SEARCH),
        "seznam.cz" => ("seznam", SEARCH),
        "sogou.com" => ("sogou", SEARCH),
        "mojeek.com" => ("mojeek", SEARCH),
        // Ad networks: a click on a display or search ad.
        "doubleclick.net" | "googleadservices.com" | "syndicatedsearch.goog" => ("google", PAID),
        // Social networks, forums, messengers.
        "facebook.com" | "fb.com" | "fb.me" | "messenger.com" => ("facebook", SOCIAL),
        "instagram.com" => ("instagram", SOCIAL),
        "t.co" | "twitter.com" | "x.com" => ("twitter", SOCIAL),
        "linkedin.com" | "lnkd.in" => ("linkedin", SOCIAL),
        "reddit.com" | "redd.it" => ("reddit", SOCIAL),
        "youtube.com" | "youtu.be" => ("youtube", SOCIAL),
        "pin.it" => ("pinterest", SOCIAL),
        "tiktok.com" => ("tiktok", SOCIAL),
        "threads.net" | "threads.com" => ("threads", SOCIAL),
        "bsky.app" => ("bluesky", SOCIAL),
        "mastodon.social" | "mastodon.online" | "mastodon.world" | "mstdn.social" | "mas.to"
        | "fosstodon.org" | "hachyderm.io" | "infosec.exchange" => ("mastodon", SOCIAL),
        "vk.com" => ("vk", SOCIAL),
        "t.me" | "telegram.org" => ("telegram", SOCIAL),
        "wa.me" | "whatsapp.com" => ("whatsapp", SOCIAL),
        "discord.com" | "discordapp.com" => ("discord", SOCIAL),
        "slack.com" => ("slack", SOCIAL),
        "snapchat.com" => ("snapchat", SOCIAL),
        "quora.com" => ("quora", SOCIAL),
        "tumblr.com" => ("tumblr", SOCIAL),
        "weibo.com" => ("weibo", SOCIAL),
        // Webmail.
        "mail.google.com" => ("gmail", EMAIL),
        "outlook.live.com" | "outlook.office.com" | "outlook.office365.com" => ("outlook", EMAIL),
        "mail.yahoo.com" | "mail.yahoo.co.jp" => ("yahoo-mail", EMAIL),
        "mail.proton.me" | "mail.protonmail.com" => ("proton-mail", EMAIL),
        "mail.aol.com" => ("aol-mail", EMAIL),
        "mail.yandex.ru" | "mail.yandex.com" => ("yandex-mail", EMAIL),
        "e.mail.ru" => ("mail.ru", EMAIL),
        "app.fastmail.com" => ("fastmail", EMAIL),
        "mail.zoho.com" | "mail.zoho.eu" => ("zoho-mail", EMAIL),
        _ => return None,
    })
}

/// Brands with a domain per country: `<brand>.<tld>` or `<brand>.<co|com|net|org|ne|or>.<cc>`,
/// and their subdomains. `google.evil.com` and `evilgoogle.com` do not match.
fn brand_host(host: &str) -> Option<(&'static str, &'static str)> {
    let mut labels = host.rsplit('.');
    let tld = labels.next()?;
    let is_tld = matches!(tld, "com" | "net" | "org")
        || (tld.len() == 2 && tld.bytes().all(|b| b.is_ascii_lowercase()));
    if !is_tld {
        return None;
    }
    let mut name = labels.next()?;
    if matches!(name, "co" | "com" | "net" | "org" | "ne" | "or") {
        name = labels.next()?;
    }
    Some(match name {
        "google" => ("google", medium::SEARCH),
        "bing" => ("bing", medium::SEARCH),
        "yahoo" => ("yahoo", medium::SEARCH),
        "yandex" => ("yandex", medium::SEARCH),
        "baidu" => ("baidu", medium::SEARCH),
        "pinterest" => ("pinterest", medium::SOCIAL),
        _ => return None,
    })
}

/// Android apps that send `android-app://<package>/` referrers.
fn android_app(package: &str) -> Option<(&'static str, &'static str)> {
    use medium::{EMAIL, SEARCH, SOCIAL};
    Some(match package {
        "com.google.android.googlequicksearchbox" => ("google", SEARCH),
        "com.google.android.gm" => ("gmail", EMAIL),
        "com.microsoft.office.outlook" => ("outlook", EMAIL),
        "com.google.android.youtube" => ("youtube", SOCIAL),
        "com.facebook.katana" | "com.facebook.lite" => ("facebook", SOCIAL),
        "com.instagram.android" => ("instagram", SOCIAL),
        "com.twitter.android" => ("twitter", SOCIAL),
        "com.linkedin.android" => ("linkedin", SOCIAL),
        "com.reddit.frontpage" => ("reddit", SOCIAL),
        "com.pinterest" => ("pinterest", SOCIAL),
        "org.telegram.messenger" => ("telegram", SOCIAL),
        "com.whatsapp" => ("whatsapp", SOCIAL),
        "com.slack" => ("slack", SOCIAL),
        "com.discord" => ("discord", SOCIAL),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One enricher for all tests: compiling the bot list takes a few milliseconds.
    fn enricher() -> &'static Enricher {
        static ENRICHER: OnceLock<Enricher> = OnceLock::new();
        ENRICHER.get_or_init(|| Enricher::new(None).expect("no GeoIP file, cannot fail"))
    }

    use BotReason::{Automation, EmptyUserAgent, KnownBot};
    use DeviceClass::{Desktop, Mobile, Other, Tablet};

    /// (user agent, browser, os, device, bot)
    const USER_AGENTS: &[(&str, &str, &str, DeviceClass, Option<BotReason>)] = &[
        // Windows
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
         "Chrome", "Windows", Desktop, None),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
         "Firefox", "Windows", Desktop, None),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
         "Edge", "Windows", Desktop, None),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0",
         "Opera", "Windows", Desktop, None),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Vivaldi/7.0",
         "Vivaldi", "Windows", Desktop, None),
        ("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
         "Internet Explorer", "Windows", Desktop, None),
        // macOS
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
         "Safari", "macOS", Desktop, None),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
         "Chrome", "macOS", Desktop, None),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0",
         "Firefox", "macOS", Desktop, None),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
         "Edge", "macOS", Desktop, None),
        // Linux, ChromeOS
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
         "Chrome", "Linux", Desktop, None),
        ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
         "Firefox", "Linux", Desktop, None),
        ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
         "Chrome", "ChromeOS", Desktop, None),
        // Android phones
        ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
         "Chrome", "Android", Mobile, None),
        ("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
         "Samsung Internet", "Android", Mobile, None),
        ("Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
         "Firefox", "Android", Mobile, None),
        ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 EdgA/131.0.0.0",
         "Edge", "Android", Mobile, None),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240805.005; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36",
         "WebView", "Android", Mobile, None),
        // Android tablets
        ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
         "Chrome", "Android", Tablet, None),
        ("Mozilla/5.0 (Android 14; Tablet; rv:133.0) Gecko/133.0 Firefox/133.0",
         "Firefox", "Android", Tablet, None),
        ("Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/131.2.1 like Chrome/131.0.6778.200 Safari/537.36",
         "Silk", "Android", Tablet, None),
        // iOS
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
         "Safari", "iOS", Mobile, None),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
         "Chrome", "iOS", Mobile, None),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/133.0 Mobile/15E148 Safari/605.1.15",
         "Firefox", "iOS", Mobile, None),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 EdgiOS/131.2903.68 Mobile/15E148 Safari/605.1.15",
         "Edge", "iOS", Mobile, None),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0.38.109;FBBV/640000000;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
         "WebView", "iOS", Mobile, None),
        ("Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
         "Safari", "iOS", Tablet, None),
        ("Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
         "Chrome", "iOS", Tablet, None),
        // TVs and consoles
        ("Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 85.0.4183.93/6.0 TV Safari/537.36",
         "Safari", "Linux", Other, None),
        ("Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15",
         "Safari", "Other", Other, None),
        // Crawlers and HTTP libraries (the bot list)
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
         "Other", "Other", Other, Some(KnownBot)),
        ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
         "Other", "Other", Other, Some(KnownBot)),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
         "Other", "Other", Other, Some(KnownBot)),
        ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
         "Other", "Other", Other, Some(KnownBot)),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
         "Other", "Other", Other, Some(KnownBot)),
        ("curl/8.5.0", "Other", "Other", Other, Some(KnownBot)),
        ("Wget/1.21.4", "Other", "Other", Other, Some(KnownBot)),
        ("python-requests/2.32.3", "Other", "Other", Other, Some(KnownBot)),
        ("Go-http-client/2.0", "Other", "Other", Other, Some(KnownBot)),
        // Headless browsers and automation (before the bot list, which also has some of them)
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
         "Chrome", "Linux", Desktop, Some(Automation)),
        ("Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
         "Chrome", "Android", Mobile, Some(Automation)),
        ("Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
         "Safari", "Linux", Desktop, Some(Automation)),
        ("Mozilla/5.0 (linux) AppleWebKit/537.36 (KHTML, like Gecko) jsdom/24.0.0",
         "Other", "Other", Other, Some(Automation)),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 PTST/241121.171203",
         "Chrome", "Windows", Desktop, Some(Automation)),
        // Nothing at all
        ("", "Other", "Other", Other, Some(EmptyUserAgent)),
        ("   ", "Other", "Other", Other, Some(EmptyUserAgent)),
        ("-", "Other", "Other", Other, Some(EmptyUserAgent)),
    ];

    #[test]
    fn user_agent_table() {
        let mut failures = Vec::new();
        for &(ua, browser, os, device, bot) in USER_AGENTS {
            let got = enricher().client(ua);
            let want = ClientInfo {
                browser: browser.to_string(),
                os: os.to_string(),
                device,
                bot,
            };
            if *got != want {
                failures.push(format!("{ua:?}\n   got {got:?}\n  want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(USER_AGENTS.len() >= 30);
    }

    #[test]
    fn user_agents_are_cached_by_hash() {
        let e = Enricher::with_cache_capacity(None, 8).expect("no GeoIP file");
        let ua = USER_AGENTS[0].0;
        let first = e.client(ua);
        let second = e.client(ua);
        assert!(Arc::ptr_eq(&first, &second), "second lookup is a cache hit");
        // Surrounding whitespace does not make a new entry.
        assert!(Arc::ptr_eq(&first, &e.client(&format!("  {ua} "))));
        assert_eq!(e.ua_cache.len(), 1);
        // A flood of distinct agents stays within the capacity.
        for i in 0..100 {
            e.client(&format!("{ua} build/{i}"));
        }
        assert!(e.ua_cache.len() <= 16, "bounded: {}", e.ua_cache.len());
    }

    #[test]
    fn huge_user_agents_are_cut_before_parsing() {
        let base = USER_AGENTS[0].0;
        let long = format!("{base}{}", "é".repeat(2000));
        let got = enricher().client(&long);
        assert_eq!((got.browser.as_str(), got.device), ("Chrome", Desktop));
        assert_eq!(truncate_to_char_boundary("aé", 2), "a");
        assert_eq!(truncate_to_char_boundary("aé", 3), "aé");
    }

    #[test]
    fn labels() {
        let devices = [Desktop, Mobile, Tablet, Other].map(DeviceClass::as_str);
        assert_eq!(devices, ["desktop", "mobile", "tablet", "other"]);
        let reasons = [KnownBot, Automation, EmptyUserAgent].map(BotReason::as_str);
        assert_eq!(reasons, ["known_bot", "automation", "empty_user_agent"]);
    }

    fn page(raw: &str) -> PageUrl {
        parse_page_url(raw).expect("valid test URL")
    }

    #[test]
    fn page_url_normalisation() {
        // (raw, host, path)
        let cases = [
            (
                "https://shop.example/products/mug",
                "shop.example",
                "/products/mug",
            ),
            (
                "https://SHOP.Example/Products/Mug",
                "shop.example",
                "/Products/Mug",
            ),
            ("https://www.shop.example/", "shop.example", "/"),
            ("https://shop.example", "shop.example", "/"),
            ("https://shop.example./a", "shop.example", "/a"),
            ("http://www.com/", "www.com", "/"),
            ("https://shop.example:443/a", "shop.example", "/a"),
            ("http://shop.example:80/a", "shop.example", "/a"),
            ("http://localhost:3000/a/", "localhost:3000", "/a"),
            ("http://127.0.0.1:8080/", "127.0.0.1:8080", "/"),
            ("http://[::1]/x", "[::1]", "/x"),
            ("https://bücher.example/", "xn--bcher-kva.example", "/"),
            (
                "https://shop.example/products/",
                "shop.example",
                "/products",
            ),
            (
                "https://shop.example//products///mug//",
                "shop.example",
                "/products/mug",
            ),
            ("https://shop.example/a/./b/../c", "shop.example", "/a/c"),
            ("https://shop.example/a/%2e%2E/c", "shop.example", "/c"),
            ("https://shop.example/caf%c3%a9", "shop.example", "/café"),
            ("https://shop.example/café", "shop.example", "/café"),
            (
                "https://shop.example/%7Euser/%41",
                "shop.example",
                "/~user/A",
            ),
            (
                "https://shop.example/a%2Fb/c%2fd",
                "shop.example",
                "/a%2Fb/c%2Fd",
            ),
            (
                "https://shop.example/my%20page",
                "shop.example",
                "/my%20page",
            ),
            ("https://shop.example/my page", "shop.example", "/my%20page"),
            (
                "https://shop.example/100%25/off",
                "shop.example",
                "/100%25/off",
            ),
            (
                "https://shop.example/q%3F/h%23/b%5C",
                "shop.example",
                "/q%3F/h%23/b%5C",
            ),
            (
                "https://shop.example/bad%FF%fe",
                "shop.example",
                "/bad%FF%FE",
            ),
            ("https://shop.example/odd%zz", "shop.example", "/odd%zz"),
            ("https://shop.example/p?x=1#frag", "shop.example", "/p"),
            ("https://user:pass@shop.example/p", "shop.example", "/p"),
        ];
        for (raw, host, path) in cases {
            let p = page(raw);
            assert_eq!((p.host.as_str(), p.path.as_str()), (host, path), "{raw}");
            // Stable: the normalised path normalises to itself.
            let again = page(&format!("https://{}{}", p.host, p.path));
            assert_eq!(again.path, p.path, "idempotent for {raw}");
        }
    }

    #[test]
    fn page_url_rejections() {
        let too_long = format!("https://shop.example/{}", "a".repeat(MAX_URL_BYTES));
        let at_limit = format!("https://shop.example/{}", "a".repeat(MAX_URL_BYTES - 21));
        assert_eq!(at_limit.len(), MAX_URL_BYTES);
        assert!(parse_page_url(&at_limit).is_ok());
        let cases = [
            (too_long.as_str(), "longer than 2048 bytes"),
            ("", "not an absolute URL"),
            ("/products/mug", "not an absolute URL"),
            ("shop.example/products", "not an absolute URL"),
            ("http://exa mple.com/", "not an absolute URL"),
            ("ftp://shop.example/file", "scheme is not http or https"),
            ("file:///etc/passwd", "scheme is not http or https"),
            ("javascript:alert(1)", "scheme is not http or https"),
            ("mailto:a@shop.example", "scheme is not http or https"),
            ("http://", "no host"),
            ("https://?q=1", "no host"),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_page_url(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn utm_tags_and_click_ids() {
        let p = page(
            "https://shop.example/?UTM_Source=News%20Letter&utm_medium=EMAIL&utm_campaign=Spring+Sale\
             &utm_term=%20mugs%20&utm_content=&utm_source=ignored&gclid=abc",
        );
        assert_eq!(
            p.utm,
            Utm {
                source: Some("news letter".into()),
                medium: Some("email".into()),
                campaign: Some("Spring Sale".into()),
                term: Some("mugs".into()),
                content: None,
            }
        );
        assert_eq!(p.click_id, Some(ClickId::Google));
        assert!(p.utm.is_present());

        let long = page(&format!(
            "https://shop.example/?utm_campaign={}",
            "é".repeat(300)
        ));
        let campaign = long.utm.campaign.unwrap_or_default();
        assert!(campaign.len() <= MAX_UTM_BYTES && campaign.len() >= MAX_UTM_BYTES - 1);

        let control = page("https://shop.example/?utm_source=a%0Ab%1Fc");
        assert_eq!(control.utm.source.as_deref(), Some("abc"));

        assert_eq!(
            page("https://shop.example/?msclkid=1").click_id,
            Some(ClickId::Microsoft)
        );
        assert_eq!(
            page("https://shop.example/?fbclid=1").click_id,
            Some(ClickId::Meta)
        );
        assert_eq!(
            page("https://shop.example/?fbclid=1&gclid=2").click_id,
            Some(ClickId::Google),
            "a paid click id wins over fbclid"
        );
        assert_eq!(page("https://shop.example/?gclid=").click_id, None);
        let plain = page("https://shop.example/?utm_term=mugs");
        assert!(!plain.utm.is_present(), "term alone is no campaign");
    }

    fn source(url: &str, referrer: Option<&str>) -> (String, String, bool) {
        let s = classify_source(&page(url), referrer);
        (s.source, s.medium, s.external)
    }

    #[test]
    fn referrer_table() {
        // (referrer, source, medium)
        let cases = [
            ("https://www.google.com/", "google", "search"),
            ("https://www.google.co.uk/search?q=mugs", "google", "search"),
            ("https://www.google.com.au/", "google", "search"),
            ("https://google.de/", "google", "search"),
            ("https://images.google.fr/", "google", "search"),
            ("https://www.bing.com/search?q=x", "bing", "search"),
            ("https://cn.bing.com/", "bing", "search"),
            ("https://duckduckgo.com/", "duckduckgo", "search"),
            ("https://html.duckduckgo.com/html/", "duckduckgo", "search"),
            ("https://search.yahoo.com/search?p=x", "yahoo", "search"),
            ("https://uk.search.yahoo.com/", "yahoo", "search"),
            ("https://search.yahoo.co.jp/", "yahoo", "search"),
            ("https://yandex.ru/search/?text=x", "yandex", "search"),
            ("https://yandex.com.tr/", "yandex", "search"),
            ("https://ya.ru/", "yandex", "search"),
            ("https://www.baidu.com/link?url=x", "baidu", "search"),
            ("https://www.ecosia.org/search?q=x", "ecosia", "search"),
            ("https://www.qwant.com/", "qwant", "search"),
            ("https://www.startpage.com/", "startpage", "search"),
            ("https://search.brave.com/search?q=x", "brave", "search"),
            ("https://www.facebook.com/", "facebook", "social"),
            ("https://l.facebook.com/l.php?u=x", "facebook", "social"),
            ("https://m.facebook.com/", "facebook", "social"),
            ("https://l.instagram.com/", "instagram", "social"),
            ("https://t.co/abc", "twitter", "social"),
            ("https://x.com/someone/status/1", "twitter", "social"),
            ("https://twitter.com/", "twitter", "social"),
            ("https://www.linkedin.com/feed/", "linkedin", "social"),
            ("https://lnkd.in/abc", "linkedin", "social"),
            ("https://www.reddit.com/r/rust/", "reddit", "social"),
            ("https://old.reddit.com/", "reddit", "social"),
            ("https://www.youtube.com/watch?v=x", "youtube", "social"),
            ("https://youtu.be/x", "youtube", "social"),
            ("https://www.pinterest.com/pin/1/", "pinterest", "social"),
            ("https://www.pinterest.co.uk/", "pinterest", "social"),
            ("https://www.tiktok.com/@x", "tiktok", "social"),
            ("https://mastodon.social/@x", "mastodon", "social"),
            ("https://bsky.app/profile/x", "bluesky", "social"),
            ("https://mail.google.com/mail/u/0/", "gmail", "email"),
            ("https://outlook.live.com/mail/0/", "outlook", "email"),
            ("https://outlook.office.com/", "outlook", "email"),
            ("https://mail.yahoo.com/d/folders/1", "yahoo-mail", "email"),
            ("https://uk.mail.yahoo.com/", "yahoo-mail", "email"),
            ("https://mail.proton.me/u/0/inbox", "proton-mail", "email"),
            ("https://googleads.g.doubleclick.net/", "google", "paid"),
            ("android-app://com.google.android.gm/", "gmail", "email"),
            (
                "android-app://com.google.android.googlequicksearchbox/",
                "google",
                "search",
            ),
            (
                "android-app://com.example.reader/",
                "com.example.reader",
                "referral",
            ),
            // Other sites: the host is the source.
            (
                "https://news.ycombinator.com/item?id=1",
                "news.ycombinator.com",
                "referral",
            ),
            ("https://www.blog.example/post", "blog.example", "referral"),
            (
                "https://blog.shop.example/",
                "blog.shop.example",
                "referral",
            ),
            ("http://localhost:8080/", "localhost:8080", "referral"),
            // Look-alikes are referrals.
            (
                "https://google.evil.example/",
                "google.evil.example",
                "referral",
            ),
            ("https://evilgoogle.com/", "evilgoogle.com", "referral"),
            ("https://notfacebook.com/", "notfacebook.com", "referral"),
        ];
        let mut failures = Vec::new();
        for (referrer, want_source, want_medium) in cases {
            let got = classify_source(&page("https://shop.example/p"), Some(referrer));
            if (got.source.as_str(), got.medium.as_str()) != (want_source, want_medium)
                || !got.external
                || got.campaign.is_some()
                || got.referrer_host.is_none()
            {
                failures.push(format!("{referrer}: {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn no_referrer_and_internal_referrers_are_direct() {
        let direct = Source {
            source: "(direct)".into(),
            medium: "direct".into(),
            campaign: None,
            referrer_host: None,
            external: false,
        };
        let page_url = "https://www.shop.example/checkout";
        for referrer in [
            None,
            Some(""),
            Some("   "),
            Some("not a url"),
            Some("about:blank"),
            Some("file:///home/me/page.html"),
            Some("https://shop.example/products/mug"),
            Some("https://www.shop.example/"),
            Some("http://SHOP.example./cart?x=1"),
        ] {
            assert_eq!(
                classify_source(&page(page_url), referrer),
                direct,
                "{referrer:?}"
            );
        }
        // The same host on another port is another site.
        let dev = classify_source(
            &page("http://localhost:3000/"),
            Some("http://localhost:3001/"),
        );
        assert_eq!(
            (dev.source.as_str(), dev.external),
            ("localhost:3001", true)
        );
        let same = classify_source(
            &page("http://localhost:3000/"),
            Some("http://localhost:3000/a"),
        );
        assert!(!same.external);
    }

    #[test]
    fn utm_takes_precedence_over_referrer() {
        let s = classify_source(
            &page(
                "https://shop.example/?utm_source=Newsletter&utm_medium=Email&utm_campaign=Spring",
            ),
            Some("https://www.google.com/"),
        );
        assert_eq!(
            s,
            Source {
                source: "newsletter".into(),
                medium: "email".into(),
                campaign: Some("Spring".into()),
                referrer_host: Some("google.com".into()),
                external: true,
            }
        );
        // UTM counts even with an internal referrer.
        let internal = classify_source(
            &page("https://shop.example/?utm_source=banner"),
            Some("https://shop.example/"),
        );
        assert_eq!(
            (
                internal.source.as_str(),
                internal.medium.as_str(),
                internal.external
            ),
            ("banner", NOT_SET, true)
        );
        assert_eq!(internal.referrer_host, None);
        // Paid media fold into "paid".
        for m in ["cpc", "PPC", "paid", "paidsocial", "paid_search", "cpm"] {
            let url = format!("https://shop.example/?utm_source=google&utm_medium={m}");
            assert_eq!(
                source(&url, None),
                ("google".into(), "paid".into(), true),
                "{m}"
            );
        }
        // Other media are kept as given (lowercased).
        assert_eq!(
            source(
                "https://shop.example/?utm_source=partner&utm_medium=Affiliate",
                None
            ),
            ("partner".into(), "affiliate".into(), true)
        );
        // utm_source missing: the referrer (or click id) names the source.
        assert_eq!(
            source(
                "https://shop.example/?utm_campaign=x",
                Some("https://t.co/a")
            ),
            ("twitter".into(), "social".into(), true)
        );
        assert_eq!(
            source("https://shop.example/?utm_campaign=x&gclid=1", None),
            ("google".into(), "paid".into(), true)
        );
        assert_eq!(
            source("https://shop.example/?utm_campaign=x", None),
            (NOT_SET.into(), NOT_SET.into(), true)
        );
        // A utm_source with a paid click id and no medium is paid.
        assert_eq!(
            source("https://shop.example/?utm_source=summer&gclid=1", None),
            ("summer".into(), "paid".into(), true)
        );
    }

    #[test]
    fn click_ids_without_utm() {
        assert_eq!(
            source(
                "https://shop.example/?gclid=x",
                Some("https://www.google.com/")
            ),
            ("google".into(), "paid".into(), true)
        );
        assert_eq!(
            source("https://shop.example/?msclkid=x", None),
            ("bing".into(), "paid".into(), true)
        );
        assert_eq!(
            source("https://shop.example/?fbclid=x", None),
            ("facebook".into(), "social".into(), true)
        );
        // A reload keeps the click id in the URL with an internal referrer: same source, which
        // the sessioniser sees as the same campaign.
        assert_eq!(
            source(
                "https://shop.example/?gclid=x",
                Some("https://shop.example/")
            ),
            ("google".into(), "paid".into(), true)
        );
    }

    #[test]
    fn fingerprint_is_stable() {
        let s = classify_source(
            &page(
                "https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
            ),
            None,
        );
        // Golden value: FNV-1a 64 of "newsletter\x1femail\x1fspring". Changing it splits or
        // merges stored sessions' campaigns, so it must not change.
        assert_eq!(s.fingerprint(), 0xb619_9623_b893_dbc3);
        // Independent of the referrer host and of computing it again.
        let mut other = s.clone();
        other.referrer_host = Some("google.com".into());
        assert_eq!(other.fingerprint(), s.fingerprint());
        // Each part matters, and None differs from an empty campaign.
        let variants = [
            ("newsletterx", "email", Some("spring")),
            ("newsletter", "emailx", Some("spring")),
            ("newsletter", "email", Some("spring2")),
            ("newsletter", "email", None),
            ("newsletter", "email", Some("")),
            ("newsletteremail", "", Some("spring")),
        ];
        let mut seen = std::collections::HashSet::from([s.fingerprint()]);
        for (source, medium, campaign) in variants {
            let v = Source {
                source: source.into(),
                medium: medium.into(),
                campaign: campaign.map(Into::into),
                referrer_host: None,
                external: true,
            };
            assert!(
                seen.insert(v.fingerprint()),
                "{source}/{medium}/{campaign:?}"
            );
        }
        let google = classify_source(&page("https://shop.example/"), Some("https://google.com/"));
        let google2 = classify_source(
            &page("https://shop.example/x"),
            Some("https://www.google.de/"),
        );
        assert_eq!(google.fingerprint(), google2.fingerprint());
    }

    #[test]
    fn no_geoip_database_means_no_country() {
        assert_eq!(enricher().country("81.2.69.160".parse().expect("ip")), None);
    }

    #[test]
    fn missing_geoip_database_is_an_error_naming_the_file() {
        let path = Path::new("/nonexistent/waymark/GeoLite2-Country.mmdb");
        let err = Enricher::new(Some(path)).expect_err("file does not exist");
        let message = err.to_string();
        assert!(
            message.contains("/nonexistent/waymark/GeoLite2-Country.mmdb"),
            "{message}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    /// Reads MaxMind's GeoLite2-Country test database, fetched by
    /// `collector/tests/fetch-geoip-test-db.sh` (which prints its path). Its networks and
    /// countries are listed in `tests/data/source-data/GeoLite2-Country-Test.json` of the
    /// `maxminddb` 3.2.0 sdist on PyPI; the ones asserted here:
    ///
    /// | network            | country.iso_code | registered_country |
    /// |--------------------|------------------|--------------------|
    /// | 81.2.69.160/27     | GB               | US                 |
    /// | 89.160.20.128/25   | SE               | DE                 |
    /// | 216.160.83.56/29   | US               | GB                 |
    /// | 67.43.156.0/24     | BT               | RO                 |
    /// | 202.196.224.0/20   | PH               | PH                 |
    /// | 2001:218::/32      | JP               | JP                 |
    /// | 2a02:d180::/29     | DE               | DE                 |
    /// | 2a02:d500::/29     | (none)           | (none)             |
    ///
    /// Skips when `WAYMARK_TEST_GEOIP` is unset, except in CI (`CI` set), where it fails.
    #[test]
    fn geoip_country_from_maxmind_test_database() {
        let Some(path) = std::env::var_os("WAYMARK_TEST_GEOIP") else {
            let in_ci =
                std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !in_ci,
                "WAYMARK_TEST_GEOIP is unset; in CI run \
                 `export WAYMARK_TEST_GEOIP=\"$(bash collector/tests/fetch-geoip-test-db.sh)\"` first"
            );
            eprintln!(
                "skipped geoip_country_from_maxmind_test_database: set WAYMARK_TEST_GEOIP \
                 (bash collector/tests/fetch-geoip-test-db.sh prints the path)"
            );
            return;
        };
        let e = Enricher::new(Some(Path::new(&path))).expect("test database opens");
        let cases = [
            ("81.2.69.160", Some("GB")),
            ("81.2.69.191", Some("GB")),
            ("89.160.20.130", Some("SE")),
            ("216.160.83.57", Some("US")),
            ("67.43.156.1", Some("BT")),
            ("202.196.224.5", Some("PH")),
            ("2001:218::1", Some("JP")),
            ("2a02:d180::42", Some("DE")),
            ("::ffff:81.2.69.160", Some("GB")),
            ("2a02:d500::1", None),
            ("127.0.0.1", None),
            ("10.1.2.3", None),
            ("8.8.8.8", None),
            ("::1", None),
        ];
        for (ip, want) in cases {
            let ip: IpAddr = ip.parse().expect("test IP");
            assert_eq!(e.country(ip).as_deref(), want, "{ip}");
        }
        assert!(format!("{e:?}").contains("GeoLite2-Country"));
    }
}
