//! From a request body to what gets stored: decode the envelope, validate each event on its own
//! (the valid events of a batch are kept when others are rejected), derive event times, scrub,
//! sessionise in time order, and fold the batch into per-session deltas.
//!
//! Architecture Invariant: pure. No I/O, no clock, no randomness: the receive time, visitor keys,
//! client facts and id source are inputs, so every rule is unit-tested with fixed values.

use crate::enrich::{classify_source, parse_page_url, ClientInfo};
use crate::error::ApiError;
use crate::session::{Hit, SessionId, Sessioniser, SiteIdx, VisitorKey};
use crate::store::{BatchWrite, Dropped, Engagement, EventRow, Origin, SessionDelta};
use crate::visitor::day_of;
use serde::Deserialize;
use serde_json::value::RawValue;
use waymark_protocol::scrub::scrub_text;
use waymark_protocol::{
    derive_time, validate_envelope, CartAction, Event, EventType, PropValue, MAX_EVENTS,
};

/// A batch whose envelope is valid; each event decoded or the reason it was not.
#[derive(Debug)]
pub struct Decoded {
    pub site: String,
    pub batch: String,
    pub sent_at: i64,
    pub events: Vec<Result<Event, String>>,
}

/// No valid batch nests deeper than 5 levels (envelope, events, event, items, item).
const MAX_DEPTH: usize = 16;

/// The deepest `[`/`{` nesting outside strings. serde_json limits recursion when it builds
/// values, but not when it skips over the raw events, so hostile nesting is refused up front.
fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    site: Option<String>,
    batch: Option<String>,
    sent_at: Option<i64>,
    #[serde(borrow)]
    events: Option<Vec<&'a RawValue>>,
}

/// Decodes a body: the envelope must be valid (else a 400 naming the field); events are decoded
/// one by one, so one bad event does not reject its neighbours.
///
/// # Errors
/// [`ApiError::BadRequest`] naming `body`, `site`, `batch`, `sent_at` or `events`.
pub fn decode(body: &[u8]) -> Result<Decoded, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad("body", format!("body is not UTF-8: {e}")))?;
    if nesting_depth(body) > MAX_DEPTH {
        return Err(ApiError::bad(
            "body",
            "body: JSON nested deeper than 16 levels",
        ));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let env: RawEnvelope = serde_path_to_error::deserialize(de).map_err(|e| {
        // Broken JSON (truncated, NaN, bad syntax) is a problem of the body as a whole; only a
        // well-formed value of the wrong type is blamed on its field.
        let data_error = e.inner().classify() == serde_json::error::Category::Data;
        let field = match e.path().iter().next().filter(|_| data_error) {
            Some(serde_path_to_error::Segment::Map { key }) => match key.as_str() {
                "site" => "site",
                "batch" => "batch",
                "sent_at" => "sent_at",
                "events" => "events",
                _ => "body",
            },
            _ => "body",
        };
        ApiError::bad(field, format!("{}: {}", field, e.inner()))
    })?;
    let site = env
        .site
        .ok_or_else(|| ApiError::bad("site", "site: required"))?;
    let batch = env
        .batch
        .ok_or_else(|| ApiError::bad("batch", "batch: required"))?;
    let sent_at = env
        .sent_at
        .ok_or_else(|| ApiError::bad("sent_at", "sent_at: required"))?;
    let raw = env
        .events
        .ok_or_else(|| ApiError::bad("events", "events: required"))?;
    validate_envelope(&site, &batch, sent_at).map_err(|e| {
        let field = match e.field.as_str() {
            "site" => "site",
            "batch" => "batch",
            _ => "sent_at",
        };
        ApiError::bad(field, e.to_string())
    })?;
    if raw.len() > MAX_EVENTS {
        return Err(ApiError::bad("events", "events: at most 100 per batch"));
    }
    let events = raw
        .into_iter()
        .map(|r| {
            let de = &mut serde_json::Deserializer::from_str(r.get());
            let event: Event = serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                if path == "." {
                    e.inner().to_string()
                } else {
                    format!("{path}: {}", e.inner())
                }
            })?;
            event.validate().map_err(|e| e.to_string())?;
            Ok(event)
        })
        .collect();
    Ok(Decoded {
        site,
        batch,
        sent_at,
        events,
    })
}

/// One rejected event of a batch, as answered to the client.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    pub index: usize,
    pub error: String,
}

/// The facts about the request that are not in its body.
pub struct Context<'a> {
    pub site: SiteIdx,
    /// Receive time on the collector clock (ms).
    pub received: i64,
    pub client: &'a ClientInfo,
    pub country: Option<String>,
    /// The visitor key under the salt of a UTC day, while that salt exists.
    pub key_for_day: &'a dyn Fn(i64) -> Option<VisitorKey>,
}

/// What one batch becomes.
#[derive(Debug)]
pub struct Outcome {
    pub write: BatchWrite,
    pub accepted: u32,
    pub rejected: Vec<Rejection>,
}

fn add_dropped(list: &mut Vec<(Dropped, u32)>, reason: Dropped) {
    match list.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, n)) => *n += 1,
        None => list.push((reason, 1)),
    }
}

fn scrub_props(e: &mut Event) {
    if let Some(props) = &mut e.props {
        for v in props.values_mut() {
            if let PropValue::Text(s) = v {
                *s = scrub_text(s);
            }
        }
    }
}

/// Turns a decoded batch into its write, sessionising in derived-time order.
pub fn build(
    d: Decoded,
    ctx: &Context<'_>,
    sessions: &mut Sessioniser,
    new_id: &mut impl FnMut() -> SessionId,
) -> Outcome {
    let mut write = BatchWrite {
        site: d.site,
        batch_id: d.batch,
        received: ctx.received,
        ..BatchWrite::default()
    };
    let mut rejected = Vec::new();
    let mut valid = Vec::with_capacity(d.events.len());
    for (index, event) in d.events.into_iter().enumerate() {
        let checked = event.and_then(|e| {
            let ts = derive_time(ctx.received, d.sent_at, e.at).map_err(|_| {
                "at: stale (more than 24 h before receipt, or in the future)".to_string()
            })?;
            let page = parse_page_url(&e.url).map_err(|m| format!("url: {m}"))?;
            Ok((ts, e, page))
        });
        match checked {
            Ok(v) => valid.push(v),
            Err(error) => {
                let reason = if error.starts_with("at: stale") {
                    Dropped::Stale
                } else {
                    Dropped::Rejected
                };
                add_dropped(&mut write.dropped, reason);
                rejected.push(Rejection { index, error });
            }
        }
    }
    let accepted = u32::try_from(valid.len()).unwrap_or(u32::MAX);
    if let Some(bot) = ctx.client.bot {
        for _ in &valid {
            add_dropped(&mut write.dropped, Dropped::Bot(bot.as_str()));
        }
        return Outcome {
            write,
            accepted,
            rejected,
        };
    }
    valid.sort_by_key(|(ts, _, _)| *ts);
    for (ts, mut e, page) in valid {
        let day = day_of(ts);
        let Some(visitor) = (ctx.key_for_day)(day) else {
            // No salt for that day any more: the event cannot be attributed to anyone.
            add_dropped(&mut write.dropped, Dropped::Stale);
            continue;
        };
        let source =
            (e.kind == EventType::Pageview).then(|| classify_source(&page, e.referrer.as_deref()));
        let hit = Hit {
            site: ctx.site,
            visitor,
            visitor_yesterday: (ctx.key_for_day)(day - 1),
            at: ts,
            campaign: source
                .as_ref()
                .filter(|s| s.external)
                .map(|s| s.fingerprint()),
        };
        let assigned = sessions.assign(&hit, new_id);
        scrub_props(&mut e);
        let path = scrub_text(&page.path);
        let delta = match write.sessions.iter().position(|s| s.id == assigned.session) {
            Some(i) => &mut write.sessions[i],
            None => {
                write.sessions.push(SessionDelta {
                    id: assigned.session,
                    visitor: assigned.visitor,
                    start: ts,
                    end: ts,
                    campaign_fp: hit.campaign,
                    browser: ctx.client.browser.clone(),
                    os: ctx.client.os.clone(),
                    device: ctx.client.device.as_str().to_string(),
                    country: ctx.country.clone(),
                    ..SessionDelta::default()
                });
                let last = write.sessions.len() - 1;
                &mut write.sessions[last]
            }
        };
        delta.start = delta.start.min(ts);
        delta.end = delta.end.max(ts);
        delta.events += 1;
        match e.kind {
            EventType::Pageview => {
                delta.pageviews += 1;
                if delta.entry.as_ref().is_none_or(|(t, _, _)| ts < *t) {
                    let origin = source.map(|s| Origin {
                        referrer_host: s.referrer_host,
                        source: s.source,
                        medium: s.medium,
                        campaign: s.campaign,
                    });
                    delta.entry = Some((ts, path.clone(), origin.unwrap_or_default()));
                }
                if delta.exit.as_ref().is_none_or(|(t, _)| ts >= *t) {
                    delta.exit = Some((ts, path.clone()));
                }
            }
            EventType::Engagement => {
                let (scroll, engaged) = (e.scroll.unwrap_or(0), e.engaged_ms.unwrap_or(0));
                match write.engagement.iter_mut().find(|g| g.pv == e.pv) {
                    Some(g) => {
                        g.scroll = g.scroll.max(scroll);
                        g.engaged_ms = g.engaged_ms.max(engaged);
                        g.ts = g.ts.max(ts);
                    }
                    None => write.engagement.push(Engagement {
                        session: assigned.session,
                        pv: e.pv.clone(),
                        path: path.clone(),
                        ts,
                        scroll,
                        engaged_ms: engaged,
                    }),
                }
            }
            EventType::Cart => match e.action {
                Some(CartAction::Add) => delta.cart_adds += 1,
                Some(CartAction::Checkout) => delta.checkout = true,
                Some(CartAction::Purchase) => {
                    delta.purchase = true;
                    delta.checkout = true;
                    delta.revenue += e.revenue.unwrap_or_else(|| {
                        e.items
                            .iter()
                            .flatten()
                            .map(|i| i.price.unwrap_or(0.0) * i.quantity as f64)
                            .sum()
                    });
                    if delta.currency.is_none() {
                        delta.currency.clone_from(&e.currency);
                    }
                }
                _ => {}
            },
            EventType::Custom => {}
        }
        write.events.push(EventRow {
            session: assigned.session,
            visitor: assigned.visitor,
            ts,
            kind: e.kind,
            pv: e.pv,
            host: page.host,
            path,
            title: e.title.as_deref().map(scrub_text),
            scroll: e.scroll,
            engaged_ms: e.engaged_ms,
            action: e.action,
            order_id: e.order_id,
            revenue: e.revenue,
            currency: e.currency,
            items: e.items.and_then(|i| serde_json::to_string(&i).ok()),
            name: e.name,
            props: e.props.and_then(|p| serde_json::to_string(&p).ok()),
        });
    }
    Outcome {
        write,
        accepted,
        rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::{BotReason, DeviceClass};
    use crate::session::SessionConfig;

    const NOW: i64 = 1_763_850_000_000;

    fn client(bot: Option<BotReason>) -> ClientInfo {
        ClientInfo {
            browser: "Firefox".into(),
            os: "Linux".into(),
            device: DeviceClass::Desktop,
            bot,
        }
    }

    fn body(events: &str) -> String {
        format!(
            r#"{{"site":"shop","batch":"0123456789abcdef","sent_at":{NOW},"events":[{events}]}}"#
        )
    }

    fn run(body: &str, bot: Option<BotReason>) -> Outcome {
        let d = decode(body.as_bytes()).unwrap();
        let c = client(bot);
        let keys = |day: i64| Some(day as u64 * 1000 + 1);
        let ctx = Context {
            site: 0,
            received: NOW,
            client: &c,
            country: None,
            key_for_day: &keys,
        };
        let mut s = Sessioniser::new(SessionConfig::default());
        let mut next = 100;
        build(d, &ctx, &mut s, &mut || {
            next += 1;
            next
        })
    }

    #[test]
    fn envelope_errors_name_the_field() {
        let cases: [(&[u8], &str); 10] = [
            (b"{not json", "body"),
            (b"[]", "body"),
            (b"\xff\xfe", "body"),
            (
                br#"{"batch":"0123456789abcdef","sent_at":1,"events":[]}"#,
                "site",
            ),
            (
                br#"{"site":"Bad Site","batch":"0123456789abcdef","sent_at":1,"events":[]}"#,
                "site",
            ),
            (
                br#"{"site":"s","batch":"x","sent_at":1,"events":[]}"#,
                "batch",
            ),
            (
                br#"{"site":"s","batch":"0123456789abcdef","sent_at":1.5,"events":[]}"#,
                "sent_at",
            ),
            (
                br#"{"site":"s","batch":"0123456789abcdef","sent_at":1,"events":{}}"#,
                "events",
            ),
            (
                br#"{"site":"s","batch":"0123456789abcdef","sent_at":1}"#,
                "events",
            ),
            (
                br#"{"site":"s","batch":"0123456789abcdef","sent_at":NaN,"events":[]}"#,
                "body",
            ),
        ];
        for (b, field) in cases {
            match decode(b) {
                Err(ApiError::BadRequest { field: f, .. }) => {
                    assert_eq!(f, field, "{}", String::from_utf8_lossy(b))
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(b)),
            }
        }
        let deep = format!(
            r#"{{"site":"s","batch":"0123456789abcdef","sent_at":1,"events":[{}1{}]}}"#,
            "[".repeat(20),
            "]".repeat(20)
        );
        assert!(matches!(
            decode(deep.as_bytes()),
            Err(ApiError::BadRequest { field: "body", .. })
        ));
        assert_eq!(nesting_depth(br#"{"a":"[[[[\"{{","b":[{}]}"#), 3);
        let many = body(&vec![r#"{}"#; 101].join(","));
        assert!(matches!(
            decode(many.as_bytes()),
            Err(ApiError::BadRequest {
                field: "events",
                ..
            })
        ));
    }

    #[test]
    fn valid_events_kept_when_others_rejected() {
        let pv = format!(
            r#"{{"type":"pageview","at":{},"pv":"pv000001","url":"https://shop.example/a"}}"#,
            NOW - 1000
        );
        let bad_price = format!(
            r#"{{"type":"cart","at":{NOW},"pv":"pv000001","url":"https://shop.example/a","action":"add","currency":"EUR","items":[{{"id":"x","price":-1}}]}}"#
        );
        let wrong_type = r#"{"type":"pageview","at":"yesterday","pv":"pv000001","url":"https://shop.example/a"}"#;
        let stale = format!(
            r#"{{"type":"pageview","at":{},"pv":"pv000001","url":"https://shop.example/a"}}"#,
            NOW - 25 * 3_600_000
        );
        let out = run(
            &body(&[pv, bad_price, wrong_type.into(), stale].join(",")),
            None,
        );
        assert_eq!(out.accepted, 1);
        assert_eq!(out.rejected.len(), 3);
        assert_eq!(out.rejected[0].index, 1);
        assert_eq!(out.rejected[0].error, "items[0].price: must be >= 0");
        assert_eq!(out.rejected[1].index, 2);
        assert!(
            out.rejected[1].error.starts_with("at: invalid type"),
            "{}",
            out.rejected[1].error
        );
        assert!(out.rejected[2].error.starts_with("at: stale"));
        assert_eq!(out.write.events.len(), 1);
        assert_eq!(out.write.events[0].ts, NOW - 1000);
        assert_eq!(
            out.write.dropped,
            vec![(Dropped::Rejected, 2), (Dropped::Stale, 1)]
        );
    }

    #[test]
    fn session_delta_folds_the_batch_in_time_order() {
        let events = [
            format!(
                r#"{{"type":"engagement","at":{},"pv":"pv000002","url":"https://shop.example/b","scroll":80,"engaged_ms":4000}}"#,
                NOW - 100
            ),
            format!(
                r#"{{"type":"engagement","at":{},"pv":"pv000002","url":"https://shop.example/b","scroll":60,"engaged_ms":6000}}"#,
                NOW - 50
            ),
            format!(
                r#"{{"type":"pageview","at":{},"pv":"pv000002","url":"https://shop.example/b?email=a@b.co"}}"#,
                NOW - 2000
            ),
            format!(
                r#"{{"type":"pageview","at":{},"pv":"pv000001","url":"https://shop.example/a/ann@example.com","referrer":"https://www.google.com/"}}"#,
                NOW - 3000
            ),
            format!(
                r#"{{"type":"cart","at":{},"pv":"pv000002","url":"https://shop.example/b","action":"purchase","currency":"EUR","items":[{{"id":"x","price":12.5,"quantity":2}}]}}"#,
                NOW - 500
            ),
        ];
        let out = run(&body(&events.join(",")), None);
        assert_eq!(out.accepted, 5);
        assert_eq!(out.write.sessions.len(), 1);
        let s = &out.write.sessions[0];
        assert_eq!(
            (s.start, s.end, s.pageviews, s.events),
            (NOW - 3000, NOW - 50, 2, 5)
        );
        let (_, entry, origin) = s.entry.as_ref().unwrap();
        assert_eq!(entry, "/a/[email]");
        assert_eq!(origin.source, "google");
        assert_eq!(s.exit.as_ref().unwrap().1, "/b");
        assert_eq!((s.purchase, s.revenue), (true, 25.0));
        // Engagement is cumulative per page view: the batch keeps the maxima.
        assert_eq!(out.write.engagement.len(), 1);
        let g = &out.write.engagement[0];
        assert_eq!(
            (g.pv.as_str(), g.path.as_str(), g.scroll, g.engaged_ms),
            ("pv000002", "/b", 80, 6000)
        );
        assert_eq!(s.currency.as_deref(), Some("EUR"));
        let order: Vec<i64> = out.write.events.iter().map(|e| e.ts).collect();
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "stored in time order"
        );
    }

    #[test]
    fn bots_are_counted_not_stored() {
        let pv = format!(
            r#"{{"type":"pageview","at":{NOW},"pv":"pv000001","url":"https://shop.example/"}}"#
        );
        let out = run(
            &body(&[pv.clone(), pv].join(",")),
            Some(BotReason::KnownBot),
        );
        assert_eq!(out.accepted, 2);
        assert!(out.write.events.is_empty() && out.write.sessions.is_empty());
        assert_eq!(
            out.write.dropped,
            vec![(Dropped::Bot(BotReason::KnownBot.as_str()), 2)]
        );
    }
}
