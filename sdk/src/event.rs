//! Builds protocol events from what the page gives: scrubbed, then checked with
//! [`Event::is_valid`] (the rules of `Event::validate` without building the error). An event
//! that fails is dropped here (`None`), silently: a page's mistake must never throw into the page.

use crate::prelude::*;
use waymark_protocol::scrub::scrub_text;
use waymark_protocol::Props;
use waymark_protocol::{valid_url, CartAction, Event, EventType, Item, PropValue};

/// Longest title sent (bytes, as the protocol allows).
pub const MAX_TITLE: usize = 1024;
/// Longest language tag sent.
pub const MAX_LANG: usize = 35;

/// What the page knows about itself when a view starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageCtx<'a> {
    /// `location.href`, not yet scrubbed.
    pub url: &'a str,
    pub title: &'a str,
    pub viewport: [u32; 2],
    pub lang: &'a str,
}

/// A cart action as given by the API, the `data-waymark-*` attributes or the `dataLayer`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CartInput {
    pub action: Option<CartAction>,
    pub currency: Option<String>,
    pub items: Vec<Item>,
    pub order_id: Option<String>,
    pub revenue: Option<f64>,
}

fn checked(e: Event) -> Option<Event> {
    e.is_valid().then_some(e)
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut i = max;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        s.truncate(i);
    }
    s
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A page view of the already scrubbed `url`; `referrer` is scrubbed too (or `None`).
pub fn pageview(
    at: i64,
    pv: &str,
    url: &str,
    ctx: &PageCtx<'_>,
    referrer: Option<String>,
) -> Option<Event> {
    let mut e = Event::new(EventType::Pageview, at, pv, url);
    e.referrer = referrer.filter(|r| valid_url(r));
    e.title = non_empty(truncate(scrub_text(ctx.title.trim()), MAX_TITLE));
    e.viewport = (ctx.viewport != [0, 0]).then_some(ctx.viewport);
    e.lang = (!ctx.lang.is_empty() && ctx.lang.len() <= MAX_LANG).then(|| ctx.lang.into());
    checked(e)
}

pub fn engagement(at: i64, pv: &str, url: &str, scroll: u8, engaged_ms: u64) -> Option<Event> {
    let mut e = Event::new(EventType::Engagement, at, pv, url);
    e.scroll = Some(scroll);
    e.engaged_ms = Some(engaged_ms);
    checked(e)
}

/// A custom event; string property values are scrubbed.
pub fn custom(at: i64, pv: &str, url: &str, name: &str, mut props: Props) -> Option<Event> {
    let mut e = Event::new(EventType::Custom, at, pv, url);
    e.name = Some(name.into());
    if !props.is_empty() {
        for v in props.values_mut() {
            if let PropValue::Text(s) = v {
                *s = scrub_text(s);
            }
        }
        e.props = Some(props);
    }
    checked(e)
}

/// A cart event. Currency codes are upper-cased (`eur` is a common spelling of `EUR`).
pub fn cart(at: i64, pv: &str, url: &str, input: CartInput) -> Option<Event> {
    let mut e = Event::new(EventType::Cart, at, pv, url);
    e.action = input.action;
    e.currency = input
        .currency
        .map(|c| c.trim().to_ascii_uppercase())
        .and_then(non_empty);
    e.items = (!input.items.is_empty()).then_some(input.items);
    e.order_id = input.order_id.and_then(non_empty);
    e.revenue = input.revenue;
    checked(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PV: &str = "k3J9xq2L";
    const URL: &str = "https://s.example/p";

    #[test]
    fn pageview_scrubs_title_and_checks_referrer() {
        let ctx = PageCtx {
            url: URL,
            title: " Orders of ann@example.com ",
            viewport: [1280, 800],
            lang: "en-GB",
        };
        let e = pageview(1, PV, URL, &ctx, Some("https://google.com/".into())).unwrap();
        assert_eq!(e.title.as_deref(), Some("Orders of [email]"));
        assert_eq!(e.referrer.as_deref(), Some("https://google.com/"));
        assert_eq!(e.viewport, Some([1280, 800]));
        assert_eq!(e.lang.as_deref(), Some("en-GB"));
        let bare = PageCtx {
            title: &"é".repeat(600),
            ..PageCtx::default()
        };
        let e = pageview(1, PV, URL, &bare, Some("android-app://x".into())).unwrap();
        assert_eq!(
            e.referrer, None,
            "a non-http referrer is left out, not fatal"
        );
        assert_eq!(e.title.as_ref().map(String::len), Some(1024));
        assert_eq!(e.viewport, None);
        assert_eq!(e.lang, None);
        assert!(pageview(1, PV, "file:///x", &bare, None).is_none());
        assert!(pageview(1, "bad", URL, &bare, None).is_none());
    }

    #[test]
    fn custom_events() {
        let mut props = Props::new();
        props.insert("plan".to_string(), PropValue::Text("pro".into()));
        props.insert("who".to_string(), PropValue::Text("ann@example.com".into()));
        props.insert("n".to_string(), PropValue::Number(2.0));
        let e = custom(1, PV, URL, "signup", props).unwrap();
        let p = e.props.unwrap();
        assert_eq!(p["who"], PropValue::Text("[email]".into()));
        assert_eq!(p["n"], PropValue::Number(2.0));
        assert!(custom(1, PV, URL, "signup", Props::new())
            .unwrap()
            .props
            .is_none());
        assert!(custom(1, PV, URL, "", Props::new()).is_none());
        let mut many = Props::new();
        for i in 0..31 {
            many.insert(format!("k{i}"), PropValue::Bool(true));
        }
        assert!(custom(1, PV, URL, "x", many).is_none(), "invalid: dropped");
    }

    #[test]
    fn cart_events() {
        let item = Item {
            id: "sku-42".into(),
            price: Some(12.5),
            quantity: 1,
            ..Item::default()
        };
        let input = CartInput {
            action: Some(CartAction::Add),
            currency: Some("eur".into()),
            items: vec![item.clone()],
            ..CartInput::default()
        };
        let e = cart(1, PV, URL, input.clone()).unwrap();
        assert_eq!(e.currency.as_deref(), Some("EUR"));
        assert_eq!(e.items.as_deref(), Some(&[item.clone()][..]));
        let no_currency = CartInput {
            currency: None,
            ..input.clone()
        };
        assert!(cart(1, PV, URL, no_currency).is_none());
        let no_action = CartInput {
            action: None,
            ..input.clone()
        };
        assert!(cart(1, PV, URL, no_action).is_none());
        let purchase = CartInput {
            action: Some(CartAction::Purchase),
            order_id: Some("A-1001".into()),
            revenue: Some(25.0),
            ..input
        };
        let e = cart(1, PV, URL, purchase).unwrap();
        assert_eq!(e.order_id.as_deref(), Some("A-1001"));
        assert_eq!(e.revenue, Some(25.0));
        let empty = CartInput {
            action: Some(CartAction::ViewCart),
            ..CartInput::default()
        };
        assert_eq!(cart(1, PV, URL, empty).unwrap().items, None);
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("abc".into(), 5), "abc");
        assert_eq!(truncate("aéb".into(), 2), "a");
        assert_eq!(truncate("aéb".into(), 3), "aé");
    }
}
