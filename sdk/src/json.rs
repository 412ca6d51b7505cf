//! The batch body as JSON, written by hand: `serde_json` and its float printer cost about 5 KB
//! of gzipped Wasm, and a batch is a handful of flat records.
//!
//! The output is what `serde_json::to_string(&batch)` writes for the [`Batch`] model (same field
//! order, `None` fields left out, same string escapes), except that non-integral numbers and
//! numbers of 1e15 or more are printed as JavaScript's `String(n)` prints them (`0.1`, `1e+21`,
//! `1.5e-7`): the shortest text that reads back as the same `f64`. The unit tests check it
//! against `serde_json`.

use crate::prelude::*;
use waymark_protocol::Props;
use waymark_protocol::{Batch, Event, Item, PropValue};

/// `batch` as a JSON object.
pub fn batch(b: &Batch) -> String {
    let mut w = Writer(String::with_capacity(256));
    w.0.push('{');
    w.str_field("site", &b.site);
    w.str_field("batch", &b.batch);
    w.key("sent_at");
    w.int(b.sent_at);
    w.opt_str("sdk", b.sdk.as_deref());
    w.key("events");
    w.0.push('[');
    for (i, e) in b.events.iter().enumerate() {
        w.comma(i);
        w.event(e);
    }
    w.0.push_str("]}");
    w.0
}

struct Writer(String);

impl Writer {
    fn comma(&mut self, i: usize) {
        if i > 0 {
            self.0.push(',');
        }
    }

    /// `,"key":` (no comma after the opening brace).
    fn key(&mut self, key: &str) {
        if !self.0.ends_with('{') {
            self.0.push(',');
        }
        self.str(key);
        self.0.push(':');
    }

    fn str_field(&mut self, key: &str, value: &str) {
        self.key(key);
        self.str(value);
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str_field(key, v);
        }
    }

    fn opt_uint(&mut self, key: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.key(key);
            self.uint(v);
        }
    }

    fn opt_float(&mut self, key: &str, value: Option<f64>) {
        if let Some(v) = value {
            self.key(key);
            self.float(v);
        }
    }

    /// A JSON string with `serde_json`'s escapes: `"`, `\`, and control characters (`\n`, `\r`,
    /// `\t`, `\b`, `\f`, else `\u00XX`); everything else, non-ASCII included, as it is.
    fn str(&mut self, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let out = &mut self.0;
        out.push('"');
        let mut copied = 0;
        for (i, b) in s.bytes().enumerate() {
            let esc = match b {
                b'"' => '"',
                b'\\' => '\\',
                b'\n' => 'n',
                b'\r' => 'r',
                b'\t' => 't',
                0x08 => 'b',
                0x0c => 'f',
                0..=0x1f => 'u',
                _ => continue,
            };
            // `i` is an ASCII byte: a character boundary.
            out.push_str(s.get(copied..i).unwrap_or_default());
            copied = i + 1;
            out.push('\\');
            out.push(esc);
            if esc == 'u' {
                out.push_str("00");
                for nibble in [b >> 4, b & 15] {
                    out.push(char::from(
                        HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                    ));
                }
            }
        }
        out.push_str(s.get(copied..).unwrap_or_default());
        out.push('"');
    }

    fn uint(&mut self, n: u64) {
        if n >= 10 {
            self.uint(n / 10);
        }
        self.0.push(char::from(b'0' + (n % 10) as u8));
    }

    fn int(&mut self, n: i64) {
        if n < 0 {
            self.0.push('-');
        }
        self.uint(n.unsigned_abs());
    }

    /// Integral values below 1e15 as `serde_json` writes them (`25.0`); others, and non-integral
    /// ones, as JavaScript's shortest round-trip text; non-finite numbers as `null` (as
    /// `serde_json`; validation never lets them through anyway).
    fn float(&mut self, x: f64) {
        if !x.is_finite() {
            self.0.push_str("null");
        } else if crate::is_whole(x) && x.abs() < 1e15 {
            if x.is_sign_negative() {
                self.0.push('-');
            }
            self.uint(x.abs() as u64);
            self.0.push_str(".0");
        } else {
            shortest(&mut self.0, x);
        }
    }

    fn event(&mut self, e: &Event) {
        self.0.push('{');
        self.str_field("type", e.kind.as_str());
        self.key("at");
        self.int(e.at);
        self.str_field("pv", &e.pv);
        self.str_field("url", &e.url);
        self.opt_str("referrer", e.referrer.as_deref());
        self.opt_str("title", e.title.as_deref());
        if let Some([w, h]) = e.viewport {
            self.key("viewport");
            self.0.push('[');
            self.uint(w.into());
            self.0.push(',');
            self.uint(h.into());
            self.0.push(']');
        }
        self.opt_str("lang", e.lang.as_deref());
        self.opt_uint("scroll", e.scroll.map(u64::from));
        self.opt_uint("engaged_ms", e.engaged_ms);
        self.opt_str("action", e.action.map(|a| a.as_str()));
        self.opt_str("currency", e.currency.as_deref());
        if let Some(items) = &e.items {
            self.key("items");
            self.0.push('[');
            for (i, item) in items.iter().enumerate() {
                self.comma(i);
                self.item(item);
            }
            self.0.push(']');
        }
        self.opt_str("order_id", e.order_id.as_deref());
        self.opt_float("revenue", e.revenue);
        self.opt_str("name", e.name.as_deref());
        if let Some(props) = &e.props {
            self.key("props");
            self.props(props);
        }
        self.0.push('}');
    }

    fn item(&mut self, item: &Item) {
        self.0.push('{');
        self.str_field("id", &item.id);
        self.opt_str("name", item.name.as_deref());
        self.opt_str("category", item.category.as_deref());
        self.opt_str("variant", item.variant.as_deref());
        self.opt_float("price", item.price);
        self.key("quantity");
        self.int(item.quantity);
        self.0.push('}');
    }

    fn props(&mut self, props: &Props) {
        self.0.push('{');
        for (k, v) in props {
            self.key(k);
            match v {
                PropValue::Bool(b) => self.0.push_str(if *b { "true" } else { "false" }),
                PropValue::Number(n) => self.float(*n),
                PropValue::Text(s) => self.str(s),
            }
        }
        self.0.push('}');
    }
}

/// JavaScript's `String(x)` of a finite number: no float printer in the Wasm.
#[cfg(target_arch = "wasm32")]
fn shortest(out: &mut String, x: f64) {
    out.push_str(&crate::web::number_text(x));
}

/// JavaScript's `String(x)` of a finite number, natively: Rust prints the same shortest digits;
/// like JavaScript, exponent notation outside `1e-6 <= |x| < 1e21`, with an explicit `+`.
#[cfg(not(target_arch = "wasm32"))]
fn shortest(out: &mut String, x: f64) {
    use std::fmt::Write;
    let a = x.abs();
    if a == 0.0 || (1e-6..1e21).contains(&a) {
        let _ = write!(out, "{x}");
    } else {
        let text = format!("{x:e}");
        match text.split_once('e') {
            Some((m, exp)) if !exp.starts_with('-') => {
                let _ = write!(out, "{m}e+{exp}");
            }
            _ => out.push_str(&text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_protocol::{CartAction, EventType};

    fn string(s: &str) -> String {
        let mut w = Writer(String::new());
        w.str(s);
        w.0
    }

    fn float(x: f64) -> String {
        let mut w = Writer(String::new());
        w.float(x);
        w.0
    }

    #[test]
    fn strings_escape_as_serde_json() {
        let mut all_ascii = String::new();
        for b in 0u8..0x80 {
            all_ascii.push(char::from(b));
        }
        for s in [
            "",
            "plain",
            "quote \" and backslash \\ and slash /",
            "line\nfeed\r\ttab\u{8}\u{c}",
            "\u{0}\u{1}\u{1f}\u{7f}",
            "é ü 漢字 😀 \u{2028}\u{2029} \u{feff}",
            "\"\"\\\\",
            "ends with control \u{1b}",
            &all_ascii,
        ] {
            assert_eq!(string(s), serde_json::to_string(s).unwrap(), "{s:?}");
            let back: String = serde_json::from_str(&string(s)).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn integers_and_integral_floats_as_serde_json() {
        for x in [0.0, 1.0, -1.0, 25.0, 1e9, 123_456_789_012_345.0, -0.0] {
            assert_eq!(float(x), serde_json::to_string(&x).unwrap(), "{x}");
        }
        for n in [0, 1, 9, 10, 99, 1_763_850_000_123, i64::MAX, -5, i64::MIN] {
            let mut w = Writer(String::new());
            w.int(n);
            assert_eq!(w.0, n.to_string());
        }
        let mut w = Writer(String::new());
        w.uint(u64::MAX);
        assert_eq!(w.0, u64::MAX.to_string());
    }

    #[test]
    fn other_floats_as_javascript_and_read_back_exactly() {
        let cases = [
            (12.5, "12.5"),
            (0.1, "0.1"),
            (0.3, "0.3"),
            (-2.75, "-2.75"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (1e15, "1000000000000000"),
            (123_456_789_012_345_680_000.0, "123456789012345680000"),
            (0.000001, "0.000001"),
            (1.5e-7, "1.5e-7"),
            (1e-7, "1e-7"),
            (9.5e-7, "9.5e-7"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (x, js) in cases {
            let text = float(x);
            assert_eq!(text, js);
            // Rust's exact parser (serde_json's default one may be 1 ulp off for long numbers).
            let back: f64 = text.parse().unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x}");
            assert!(serde_json::from_str::<f64>(&text).is_ok(), "{text}");
        }
        assert_eq!(float(f64::NAN), "null");
        assert_eq!(float(f64::INFINITY), "null");
    }

    #[test]
    fn batches_match_serde_json() {
        let mut pv = Event::new(
            EventType::Pageview,
            1_763_849_990_000,
            "k3J9xq2L",
            "https://s.example/?a=\"b\"",
        );
        pv.referrer = Some("https://www.google.com/".into());
        pv.title = Some("Blue mug — \"best\"\n".into());
        pv.viewport = Some([1280, 800]);
        pv.lang = Some("en-GB".into());
        let mut eng = Event::new(EventType::Engagement, 2, "k3J9xq2L", "https://s.example/");
        eng.scroll = Some(75);
        eng.engaged_ms = Some(8_400);
        let mut cart = Event::new(EventType::Cart, 3, "Zt81mQa0", "https://s.example/done");
        cart.action = Some(CartAction::Purchase);
        cart.currency = Some("EUR".into());
        cart.order_id = Some("A-1001".into());
        cart.revenue = Some(25.0);
        cart.items = Some(vec![
            Item {
                id: "sku-42".into(),
                name: Some("Blue mug".into()),
                category: Some("kitchen".into()),
                variant: Some("blue".into()),
                price: Some(12.0),
                quantity: 2,
            },
            Item {
                id: "sku-7".into(),
                quantity: 1,
                ..Item::default()
            },
        ]);
        let mut custom = Event::new(EventType::Custom, 4, "Zt81mQa0", "https://s.example/done");
        custom.name = Some("signup".into());
        custom.props = Some(Props::from([
            ("plan".to_string(), PropValue::Text("pro\u{1}".into())),
            ("step".to_string(), PropValue::Number(2.0)),
            ("first".to_string(), PropValue::Bool(true)),
            ("off".to_string(), PropValue::Bool(false)),
        ]));
        let b = Batch {
            site: "demo-shop".into(),
            batch: "5f0c2e9a7b1d4c3e8a6f9b2d1c0e7a45".into(),
            sent_at: 1_763_850_000_123,
            sdk: Some("waymark-sdk/0.1.0".into()),
            events: vec![pv, eng, cart, custom],
        };
        assert_eq!(batch(&b), serde_json::to_string(&b).unwrap());
        let empty = Batch {
            sdk: None,
            events: Vec::new(),
            ..b.clone()
        };
        assert_eq!(batch(&empty), serde_json::to_string(&empty).unwrap());
        // Non-integral numbers: different text, the same values.
        let mut e = Event::new(EventType::Custom, 4, "Zt81mQa0", "https://s.example/");
        e.name = Some("n".into());
        e.props = Some(Props::from([
            ("a".to_string(), PropValue::Number(0.1)),
            ("b".to_string(), PropValue::Number(1e21)),
            ("c".to_string(), PropValue::Number(-1.5e-7)),
        ]));
        let floats = Batch {
            events: vec![e],
            ..b
        };
        let back: Batch = serde_json::from_str(&batch(&floats)).unwrap();
        assert_eq!(back, floats);
    }
}
