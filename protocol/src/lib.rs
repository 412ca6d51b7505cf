//! Wire protocol v1 shared by the browser SDK and the collector (`../shared/spec/PROTOCOL.md`).
//!
//! - [`Event`] and [`Batch`] are the JSON shapes: the SDK serialises them, the collector
//!   deserialises them (unknown fields are ignored for forward compatibility).
//! - [`Event::validate`] and [`validate_envelope`] implement the field rules of the spec table and
//!   name the offending field in their error, e.g. `items[0].price: must be >= 0`;
//!   [`Event::is_valid`] is the same rules as a yes/no, for the SDK.
//! - [`scrub`] removes obvious personal data (e-mail addresses, token-like strings, query
//!   parameters outside a keep list) from URLs and strings; both halves use it, the SDK before
//!   anything leaves the page and the collector as a second line of defence.
//! - [`derive_time`] is the clock rule: the collector never trusts the client clock absolutely.
//!
//! Architecture Invariant: this crate is pure (no I/O, no clock, no randomness) and small, because
//! it is compiled into the Wasm SDK; it depends on `serde` only. Without its default `std`
//! feature it is `no_std` (with `alloc`), so the SDK's bundle links no `std`.

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod scrub;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Largest request body the collector accepts by default (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most events one batch may carry.
pub const MAX_EVENTS: usize = 100;
/// Longest URL or referrer (bytes).
pub const MAX_URL_BYTES: usize = 2048;
/// Most items in one cart event.
pub const MAX_ITEMS: usize = 50;
/// Most keys in one custom event's `props`.
pub const MAX_PROPS: usize = 30;
/// An event whose derived time is further in the past than this is `stale` (ms).
pub const MAX_EVENT_AGE_MS: i64 = 24 * 60 * 60 * 1000;

/// The four event types of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Pageview,
    Engagement,
    Cart,
    Custom,
}

impl EventType {
    /// The wire name (`pageview`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Pageview => "pageview",
            EventType::Engagement => "engagement",
            EventType::Cart => "cart",
            EventType::Custom => "custom",
        }
    }
}

/// Cart actions (`action` of a `cart` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CartAction {
    Add,
    Remove,
    ViewCart,
    Checkout,
    Purchase,
}

impl CartAction {
    /// The wire name (`add`, `view_cart`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            CartAction::Add => "add",
            CartAction::Remove => "remove",
            CartAction::ViewCart => "view_cart",
            CartAction::Checkout => "checkout",
            CartAction::Purchase => "purchase",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<CartAction> {
        Some(match s {
            "add" => CartAction::Add,
            "remove" => CartAction::Remove,
            "view_cart" => CartAction::ViewCart,
            "checkout" => CartAction::Checkout,
            "purchase" => CartAction::Purchase,
            _ => return None,
        })
    }
}

/// One product line of a cart event.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    #[serde(default = "one")]
    pub quantity: i64,
}

fn one() -> i64 {
    1
}

/// A custom event's properties: a JSON object on the wire, its keys unique and in order.
///
/// A sorted `Vec` rather than a `BTreeMap`: the same behaviour (a repeated key keeps its last
/// value, iteration is in key order), and the SDK's Wasm does not carry a b-tree (~5 KB).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Props(Vec<(String, PropValue)>);

impl Props {
    pub fn new() -> Props {
        Props(Vec::new())
    }

    /// Sets `key`, returning its previous value.
    pub fn insert(&mut self, key: String, value: PropValue) -> Option<PropValue> {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self
                .0
                .get_mut(i)
                .map(|e| core::mem::replace(&mut e.1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&PropValue> {
        let i = self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
        self.0.get(i).map(|e| &e.1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PropValue)> {
        self.into_iter()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut PropValue> {
        self.0.iter_mut().map(|(_, v)| v)
    }

    /// From entries in any order; a repeated key keeps its last value. O(n log n), so a hostile
    /// object with thousands of keys costs no more than a sort.
    fn from_entries(mut entries: Vec<(String, PropValue)>) -> Props {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        // `dedup_by` keeps the first of equal neighbours: give it the later value.
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                core::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        Props(entries)
    }
}

impl<'a> IntoIterator for &'a Props {
    type Item = (&'a str, &'a PropValue);
    type IntoIter = core::iter::Map<
        core::slice::Iter<'a, (String, PropValue)>,
        fn(&'a (String, PropValue)) -> (&'a str, &'a PropValue),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<const N: usize> From<[(String, PropValue); N]> for Props {
    fn from(entries: [(String, PropValue); N]) -> Props {
        Props::from_entries(entries.into())
    }
}

impl core::ops::Index<&str> for Props {
    type Output = PropValue;

    /// Panics when `key` is missing, like `BTreeMap`'s index; for tests.
    fn index(&self, key: &str) -> &PropValue {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no property {key:?}"),
        }
    }
}

impl Serialize for Props {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for Props {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Props, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Props;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of properties")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Props, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Props::from_entries(entries))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// A custom property value: string, number or boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

/// One event. A flat record: which optional fields are required depends on `type`
/// (checked by [`Event::validate`]); a flat struct keeps the SDK's Wasm small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Client clock, ms since the Unix epoch.
    pub at: i64,
    /// Page-view id: random per page view, lives only in page memory.
    pub pv: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewport: Option<[u32; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scroll: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engaged_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<CartAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Item>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub props: Option<Props>,
}

impl Event {
    /// A bare event of `kind`; the builder for the SDK and for tests.
    pub fn new(kind: EventType, at: i64, pv: &str, url: &str) -> Event {
        Event {
            kind,
            at,
            pv: pv.into(),
            url: url.into(),
            referrer: None,
            title: None,
            viewport: None,
            lang: None,
            scroll: None,
            engaged_ms: None,
            action: None,
            currency: None,
            items: None,
            order_id: None,
            revenue: None,
            name: None,
            props: None,
        }
    }
}

/// A batch as the SDK sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub site: String,
    pub batch: String,
    pub sent_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    pub events: Vec<Event>,
}

/// A validation failure: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `items[0].price`.
    pub field: String,
    /// What is wrong, lowercase, e.g. `must be >= 0`.
    pub message: &'static str,
}

impl FieldError {
    fn new(field: impl Into<String>, message: &'static str) -> FieldError {
        FieldError {
            field: field.into(),
            message,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl core::error::Error for FieldError {}

/// `true` when `s` is `min..=max` bytes long and every byte passes `ok`.
fn charset(s: &str, min: usize, max: usize, ok: impl Fn(u8) -> bool) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(ok)
}

/// Site ids: 1–64 of `[a-z0-9._-]`.
pub fn valid_site(s: &str) -> bool {
    charset(s, 1, 64, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
    })
}

fn id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

/// Batch ids: 16–64 of `[A-Za-z0-9_-]`.
pub fn valid_batch_id(s: &str) -> bool {
    charset(s, 16, 64, id_byte)
}

/// Page-view ids: 8–32 of `[A-Za-z0-9_-]`.
pub fn valid_pv(s: &str) -> bool {
    charset(s, 8, 32, id_byte)
}

/// Absolute `http(s)` URL of at most [`MAX_URL_BYTES`] with a non-empty host part.
pub fn valid_url(s: &str) -> bool {
    if s.len() > MAX_URL_BYTES || s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return false;
    }
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/'))
}

/// ISO 4217 shape: three ASCII upper-case letters.
pub fn valid_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// Checks the envelope fields of a batch (`site`, `batch`, `sent_at`).
///
/// # Errors
/// The first invalid field.
pub fn validate_envelope(site: &str, batch: &str, sent_at: i64) -> Result<(), FieldError> {
    if !valid_site(site) {
        return Err(FieldError::new("site", "must be 1-64 of [a-z0-9._-]"));
    }
    if !valid_batch_id(batch) {
        return Err(FieldError::new("batch", "must be 16-64 of [A-Za-z0-9_-]"));
    }
    if sent_at <= 0 {
        return Err(FieldError::new(
            "sent_at",
            "must be positive ms since the epoch",
        ));
    }
    Ok(())
}

/// Which field a rule names, before its path is spelled out: [`Event::is_valid`] never builds
/// the path (no allocation, no formatting code in the Wasm SDK).
enum Field<'a> {
    Plain(&'static str),
    /// `items[i].name`
    Item(usize, &'static str),
    /// `props.key`
    Prop(&'a str),
}

fn max_len<'a, E>(
    field: &'static str,
    value: &Option<String>,
    max: usize,
    fail: &impl Fn(Field<'a>, &'static str) -> E,
) -> Result<(), E> {
    match value {
        Some(v) if v.len() > max => Err(fail(Field::Plain(field), "too long")),
        _ => Ok(()),
    }
}

fn non_negative_finite(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

impl Event {
    /// Checks this event against the rules of the protocol table.
    ///
    /// # Errors
    /// The first invalid or missing field, named.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.check(&|field, message| {
            let field = match field {
                Field::Plain(f) => f.to_string(),
                Field::Item(i, f) => format!("items[{i}].{f}"),
                Field::Prop(k) => format!("props.{k}"),
            };
            FieldError::new(field, message)
        })
    }

    /// `true` exactly when [`Event::validate`] is `Ok`; cheaper (and much smaller in Wasm)
    /// because no error is built.
    pub fn is_valid(&self) -> bool {
        self.check(&|_, _| ()).is_ok()
    }

    /// The rules; `fail` turns the first broken one into the caller's error.
    fn check<'a, E>(&'a self, fail: &impl Fn(Field<'a>, &'static str) -> E) -> Result<(), E> {
        let plain = |field, message| Err(fail(Field::Plain(field), message));
        if self.at <= 0 {
            return plain("at", "must be positive ms since the epoch");
        }
        if !valid_pv(&self.pv) {
            return plain("pv", "must be 8-32 of [A-Za-z0-9_-]");
        }
        if !valid_url(&self.url) {
            return plain(
                "url",
                "must be an absolute http(s) URL of at most 2048 bytes",
            );
        }
        if let Some(r) = &self.referrer {
            if !r.is_empty() && !valid_url(r) {
                return plain(
                    "referrer",
                    "must be an absolute http(s) URL of at most 2048 bytes",
                );
            }
        }
        max_len("title", &self.title, 1024, fail)?;
        max_len("lang", &self.lang, 35, fail)?;
        match self.kind {
            EventType::Pageview => {}
            EventType::Engagement => {
                match self.scroll {
                    None => return plain("scroll", "required"),
                    Some(s) if s > 100 => return plain("scroll", "must be 0-100"),
                    _ => {}
                }
                if self.engaged_ms.is_none() {
                    return plain("engaged_ms", "required");
                }
            }
            EventType::Cart => self.check_cart(fail)?,
            EventType::Custom => {
                match &self.name {
                    None => return plain("name", "required"),
                    Some(n) if n.is_empty() || n.len() > 64 => {
                        return plain("name", "must be 1-64 bytes")
                    }
                    _ => {}
                }
                if let Some(props) = &self.props {
                    if props.len() > MAX_PROPS {
                        return plain("props", "at most 30 keys");
                    }
                    for (k, v) in props {
                        if k.is_empty() || k.len() > 64 {
                            return plain("props", "keys must be 1-64 bytes");
                        }
                        match v {
                            PropValue::Text(s) if s.len() > 256 => {
                                return Err(fail(Field::Prop(k), "at most 256 bytes"))
                            }
                            PropValue::Number(x) if !x.is_finite() => {
                                return Err(fail(Field::Prop(k), "must be finite"))
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn check_cart<'a, E>(&'a self, fail: &impl Fn(Field<'a>, &'static str) -> E) -> Result<(), E> {
        let plain = |field, message| Err(fail(Field::Plain(field), message));
        if self.action.is_none() {
            return plain("action", "required");
        }
        let items = self.items.as_deref().unwrap_or_default();
        if items.len() > MAX_ITEMS {
            return plain("items", "at most 50 items");
        }
        let mut priced = false;
        for (i, item) in items.iter().enumerate() {
            let at = |f, message| Err(fail(Field::Item(i, f), message));
            if item.id.is_empty() || item.id.len() > 128 {
                return at("id", "must be 1-128 bytes");
            }
            for (name, v) in [
                ("name", &item.name),
                ("category", &item.category),
                ("variant", &item.variant),
            ] {
                if v.as_ref().is_some_and(|s| s.len() > 256) {
                    return at(name, "at most 256 bytes");
                }
            }
            if let Some(p) = item.price {
                if !non_negative_finite(p) {
                    return at("price", "must be >= 0");
                }
                priced = true;
            }
            if item.quantity < 1 {
                return at("quantity", "must be an integer >= 1");
            }
        }
        if let Some(r) = self.revenue {
            if !non_negative_finite(r) {
                return plain("revenue", "must be >= 0");
            }
            priced = true;
        }
        match &self.currency {
            Some(c) if !valid_currency(c) => plain("currency", "must be an ISO 4217 code"),
            None if priced => plain("currency", "required when a price or revenue is present"),
            _ => max_len("order_id", &self.order_id, 128, fail),
        }
    }
}

/// Why an event's time is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// More than 24 h before the receipt, or after it.
    Stale,
}

/// The event's time on the collector's clock: `received_at − (sent_at − at)`.
///
/// # Errors
/// [`TimeError::Stale`] when that lies more than 24 h before `received_at` or after it.
///
/// # Examples
/// ```
/// // The client clock is an hour fast; the event happened 10 s before sending.
/// let t = waymark_protocol::derive_time(1_000_000_000, 1_003_600_000 + 10_000, 1_003_600_000);
/// assert_eq!(t, Ok(1_000_000_000 - 10_000));
/// ```
pub fn derive_time(received_at: i64, sent_at: i64, at: i64) -> Result<i64, TimeError> {
    let age = sent_at.saturating_sub(at);
    let t = received_at.saturating_sub(age);
    if t > received_at || received_at.saturating_sub(t) > MAX_EVENT_AGE_MS {
        return Err(TimeError::Stale);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pageview() -> Event {
        Event::new(
            EventType::Pageview,
            1_763_849_990_000,
            "k3J9xq2L",
            "https://shop.example/",
        )
    }

    fn cart() -> Event {
        let mut e = Event::new(EventType::Cart, 1, "k3J9xq2L", "https://shop.example/p");
        e.action = Some(CartAction::Add);
        e.currency = Some("EUR".into());
        e.items = Some(vec![Item {
            id: "sku-42".into(),
            price: Some(12.5),
            quantity: 1,
            ..Item::default()
        }]);
        e
    }

    #[test]
    fn props_behave_as_a_sorted_map_with_the_last_value_of_a_repeated_key() {
        let p: Props = serde_json::from_str(r#"{"b":1,"a":"x","b":true,"c":2.5}"#).unwrap();
        let keys: Vec<&str> = p.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(p["b"], PropValue::Bool(true));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"a":"x","b":true,"c":2.5}"#
        );
        let mut q = Props::new();
        assert_eq!(q.insert("c".into(), PropValue::Number(2.5)), None);
        assert_eq!(q.insert("b".into(), PropValue::Number(1.0)), None);
        assert_eq!(q.insert("a".into(), PropValue::Text("x".into())), None);
        assert_eq!(
            q.insert("b".into(), PropValue::Bool(true)),
            Some(PropValue::Number(1.0))
        );
        assert_eq!(q, p);
        assert_eq!(q.get("z"), None);
        // A hostile object: many keys, many repeats, still one sorted entry per key.
        let body = format!(
            "{{{}}}",
            (0..20_000)
                .map(|i| format!("\"k{}\":{i}", i % 5_000))
                .collect::<Vec<_>>()
                .join(",")
        );
        let many: Props = serde_json::from_str(&body).unwrap();
        assert_eq!(many.len(), 5_000);
        assert_eq!(many["k7"], PropValue::Number(15_007.0));
        assert!(many.iter().zip(many.iter().skip(1)).all(|(a, b)| a.0 < b.0));
    }

    #[test]
    fn spec_example_parses_and_validates() {
        let body = r#"{"site":"demo-shop","batch":"5f0c2e9a7b1d4c3e8a6f9b2d1c0e7a45","sent_at":1763850000123,"sdk":"waymark-sdk/0.1.0","events":[
        {"type":"pageview","at":1763849990000,"pv":"k3J9xq2L","url":"https://shop.example/products/mug?utm_source=newsletter","referrer":"https://www.google.com/","title":"Blue mug","viewport":[1280,800],"lang":"en-GB"},
        {"type":"engagement","at":1763849999000,"pv":"k3J9xq2L","url":"https://shop.example/products/mug","scroll":75,"engaged_ms":8400},
        {"type":"cart","at":1763849995000,"pv":"k3J9xq2L","url":"https://shop.example/products/mug","action":"add","currency":"EUR","items":[{"id":"sku-42","name":"Blue mug","price":12.5,"quantity":1,"category":"kitchen"}]},
        {"type":"cart","at":1763850000000,"pv":"Zt81mQa0","url":"https://shop.example/checkout/done","action":"purchase","order_id":"A-1001","revenue":25.0,"currency":"EUR","items":[{"id":"sku-42","price":12.5,"quantity":2}]},
        {"type":"custom","at":1763850000100,"pv":"Zt81mQa0","url":"https://shop.example/checkout/done","name":"newsletter_signup","props":{"plan":"free","step":2,"first":true},"future_field":1}]}"#;
        let b: Batch = serde_json::from_str(body).unwrap();
        validate_envelope(&b.site, &b.batch, b.sent_at).unwrap();
        assert_eq!(b.events.len(), 5);
        for e in &b.events {
            e.validate().unwrap();
        }
        let props = b.events[4].props.as_ref().unwrap();
        assert_eq!(props["plan"], PropValue::Text("free".into()));
        assert_eq!(props["step"], PropValue::Number(2.0));
        assert_eq!(props["first"], PropValue::Bool(true));
        // Round trip: what the SDK writes is what the collector reads.
        let again: Batch = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(again, b);
    }

    #[test]
    fn envelope_rules() {
        assert!(validate_envelope("demo-shop", "0123456789abcdef", 1).is_ok());
        assert_eq!(
            validate_envelope("Demo", "0123456789abcdef", 1)
                .unwrap_err()
                .field,
            "site"
        );
        assert_eq!(
            validate_envelope("", "0123456789abcdef", 1)
                .unwrap_err()
                .field,
            "site"
        );
        assert_eq!(
            validate_envelope(&"a".repeat(65), "0123456789abcdef", 1)
                .unwrap_err()
                .field,
            "site"
        );
        assert_eq!(
            validate_envelope("s", "short", 1).unwrap_err().field,
            "batch"
        );
        assert_eq!(
            validate_envelope("s", "0123456789abcde!", 1)
                .unwrap_err()
                .field,
            "batch"
        );
        assert_eq!(
            validate_envelope("s", &"a".repeat(65), 1)
                .unwrap_err()
                .field,
            "batch"
        );
        assert_eq!(
            validate_envelope("s", "0123456789abcdef", 0)
                .unwrap_err()
                .field,
            "sent_at"
        );
    }

    #[test]
    fn event_field_rules() {
        assert!(pageview().validate().is_ok());
        let mut e = pageview();
        e.pv = "short".into();
        assert_eq!(e.validate().unwrap_err().field, "pv");
        let mut e = pageview();
        e.url = "ftp://x/".into();
        assert_eq!(e.validate().unwrap_err().field, "url");
        e.url = format!("https://x/{}", "a".repeat(2048));
        assert_eq!(e.validate().unwrap_err().field, "url");
        e.url = "https:///nohost".into();
        assert_eq!(e.validate().unwrap_err().field, "url");
        let mut e = pageview();
        e.referrer = Some("javascript:alert(1)".into());
        assert_eq!(e.validate().unwrap_err().field, "referrer");

        let mut e = Event::new(EventType::Engagement, 1, "k3J9xq2L", "https://a/");
        assert_eq!(e.validate().unwrap_err().field, "scroll");
        e.scroll = Some(101);
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "scroll: must be 0-100"
        );
        e.scroll = Some(100);
        assert_eq!(e.validate().unwrap_err().field, "engaged_ms");
        e.engaged_ms = Some(0);
        assert!(e.validate().is_ok());

        let mut e = Event::new(EventType::Custom, 1, "k3J9xq2L", "https://a/");
        assert_eq!(e.validate().unwrap_err().field, "name");
        e.name = Some("x".repeat(65));
        assert_eq!(e.validate().unwrap_err().field, "name");
        e.name = Some("signup".into());
        let mut props = Props::new();
        props.insert("plan".to_string(), PropValue::Text("x".repeat(257)));
        e.props = Some(props.clone());
        assert_eq!(e.validate().unwrap_err().field, "props.plan");
        let mut props = Props::new();
        for i in 0..31 {
            props.insert(format!("k{i}"), PropValue::Bool(true));
        }
        e.props = Some(props);
        assert_eq!(e.validate().unwrap_err().field, "props");
    }

    #[test]
    fn is_valid_agrees_with_validate() {
        let mut cases = vec![pageview(), cart()];
        let edits: Vec<fn(&mut Event)> = vec![
            |e| e.at = 0,
            |e| e.pv = "bad".into(),
            |e| e.url = "ftp://x".into(),
            |e| e.referrer = Some("android-app://x".into()),
            |e| e.title = Some("t".repeat(1025)),
            |e| e.lang = Some("l".repeat(36)),
            |e| e.kind = EventType::Engagement,
            |e| {
                e.kind = EventType::Engagement;
                e.scroll = Some(101);
                e.engaged_ms = Some(1);
            },
            |e| e.kind = EventType::Custom,
            |e| {
                e.kind = EventType::Custom;
                e.name = Some("n".into());
                e.props = Some(Props::from([(
                    "k".to_string(),
                    PropValue::Number(f64::NAN),
                )]));
            },
            |e| {
                e.kind = EventType::Custom;
                e.name = Some("n".into());
                e.props = Some(Props::from([(
                    "k".to_string(),
                    PropValue::Text("v".repeat(257)),
                )]));
            },
            |e| e.action = None,
            |e| e.currency = None,
            |e| e.revenue = Some(-1.0),
            |e| e.order_id = Some("o".repeat(129)),
            |e| {
                if let Some(items) = e.items.as_mut() {
                    items[0].name = Some("n".repeat(257));
                }
            },
        ];
        for edit in edits {
            for base in [pageview(), cart()] {
                let mut e = base;
                edit(&mut e);
                cases.push(e);
            }
        }
        for e in &cases {
            assert_eq!(e.is_valid(), e.validate().is_ok(), "{e:?}");
        }
        assert!(cases.iter().any(Event::is_valid));
        assert!(cases.iter().filter(|e| !e.is_valid()).count() > 15);
    }

    #[test]
    fn cart_rules() {
        assert!(cart().validate().is_ok());
        let mut e = cart();
        e.items.as_mut().unwrap()[0].price = Some(-1.0);
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "items[0].price: must be >= 0"
        );
        let mut e = cart();
        e.items.as_mut().unwrap()[0].quantity = 0;
        assert_eq!(e.validate().unwrap_err().field, "items[0].quantity");
        let mut e = cart();
        e.items.as_mut().unwrap()[0].id = String::new();
        assert_eq!(e.validate().unwrap_err().field, "items[0].id");
        let mut e = cart();
        e.currency = None;
        assert_eq!(e.validate().unwrap_err().field, "currency");
        e.currency = Some("eur".into());
        assert_eq!(e.validate().unwrap_err().field, "currency");
        let mut e = cart();
        e.action = None;
        assert_eq!(e.validate().unwrap_err().field, "action");
        let mut e = cart();
        e.items = Some(vec![
            Item {
                id: "a".into(),
                quantity: 1,
                ..Item::default()
            };
            51
        ]);
        assert_eq!(e.validate().unwrap_err().field, "items");
        // No price anywhere: currency is optional.
        let mut e = cart();
        e.currency = None;
        e.items = Some(vec![Item {
            id: "a".into(),
            quantity: 2,
            ..Item::default()
        }]);
        assert!(e.validate().is_ok());
        let mut e = cart();
        e.revenue = Some(f64::NAN);
        assert_eq!(e.validate().unwrap_err().field, "revenue");
    }

    #[test]
    fn wrong_json_types_are_errors() {
        let bad = [
            r#"{"type":"pageview","at":1.5,"pv":"k3J9xq2L","url":"https://a/"}"#,
            r#"{"type":"pageview","at":"1","pv":"k3J9xq2L","url":"https://a/"}"#,
            r#"{"type":"pageview","at":99999999999999999999,"pv":"k3J9xq2L","url":"https://a/"}"#,
            r#"{"type":"nope","at":1,"pv":"k3J9xq2L","url":"https://a/"}"#,
            r#"{"type":"engagement","at":1,"pv":"k3J9xq2L","url":"https://a/","scroll":300,"engaged_ms":1}"#,
            r#"{"type":"cart","at":1,"pv":"k3J9xq2L","url":"https://a/","action":"steal"}"#,
            r#"{"at":1,"pv":"k3J9xq2L","url":"https://a/"}"#,
        ];
        for b in bad {
            assert!(serde_json::from_str::<Event>(b).is_err(), "{b}");
        }
    }

    #[test]
    fn time_derivation() {
        let now = 1_763_850_000_000;
        // Client clock 3 days behind: the event is still placed 5 s before receipt.
        let skew = -3 * MAX_EVENT_AGE_MS;
        assert_eq!(
            derive_time(now, now + skew, now + skew - 5_000),
            Ok(now - 5_000)
        );
        assert_eq!(derive_time(now, now, now), Ok(now));
        // "at" after "sent_at" would place the event in the future.
        assert_eq!(derive_time(now, now, now + 1), Err(TimeError::Stale));
        assert_eq!(
            derive_time(now, now, now - MAX_EVENT_AGE_MS),
            Ok(now - MAX_EVENT_AGE_MS)
        );
        assert_eq!(
            derive_time(now, now, now - MAX_EVENT_AGE_MS - 1),
            Err(TimeError::Stale)
        );
        assert_eq!(derive_time(now, i64::MAX, i64::MIN), Err(TimeError::Stale));
    }
}
