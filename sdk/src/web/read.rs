//! Reads JavaScript values the page hands us (options, properties, cart objects, `dataLayer`
//! entries, `data-waymark-*` attributes) into the core's plain Rust types.
//!
//! Everything is read defensively through `Reflect` (which never throws into us): a missing or
//! wrongly typed field becomes `None`, and the core's validation decides what survives.

use crate::config::RawOptions;
use crate::event::CartInput;
use crate::prelude::*;
use js_sys::{Array, Number, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use waymark_protocol::Props;
use waymark_protocol::{CartAction, Item, PropValue};
use web_sys::Element;

/// `obj[key]`, or `undefined` when `obj` is not an object or the getter throws.
pub fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() && !obj.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn index(obj: &JsValue, i: u32) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get_u32(obj, i).unwrap_or(JsValue::UNDEFINED)
}

fn length(obj: &JsValue) -> u32 {
    number(&get(obj, "length")).map_or(0, |n| n.clamp(0.0, 10_000.0) as u32)
}

/// A finite number, also from a numeric string (`"12.50"` in an attribute).
pub fn number(v: &JsValue) -> Option<f64> {
    let n = match v.as_string() {
        Some(s) => Number::parse_float(&s),
        None => v.as_f64()?,
    };
    n.is_finite().then_some(n)
}

/// A string, also from an integral number (numeric product ids are common).
pub fn text(v: &JsValue) -> Option<String> {
    if let Some(s) = v.as_string() {
        return Some(s);
    }
    let n = v.as_f64()?;
    // JavaScript's own `String(n)`: no number formatting code in the Wasm.
    if !crate::is_whole(n) || n.abs() >= 1e15 {
        return None;
    }
    v.unchecked_ref::<Number>()
        .to_string_with_radix(10)
        .ok()
        .map(String::from)
}

/// Option value: strings as they are, booleans as `on`/`off`, arrays joined with commas.
fn option(v: &JsValue) -> Option<String> {
    if let Some(b) = v.as_bool() {
        return Some(if b { "on" } else { "off" }.into());
    }
    if Array::is_array(v) {
        let mut list = String::new();
        for part in (0..length(v)).filter_map(|i| index(v, i).as_string()) {
            list.push_str(&part);
            list.push(',');
        }
        return Some(list);
    }
    v.as_string()
}

/// The options object of `init({…})` (the script loader builds the same from `data-`).
pub fn options(o: &JsValue) -> RawOptions {
    RawOptions {
        site: option(&get(o, "site")),
        endpoint: option(&get(o, "endpoint")),
        consent: option(&get(o, "consent")),
        spa: option(&get(o, "spa")),
        keep_params: option(&get(o, "keepParams")),
        auto_cart: option(&get(o, "autoCart")),
    }
}

/// Custom-event properties: own enumerable string, number and boolean values.
pub fn props(o: &JsValue) -> Props {
    let mut out = Props::new();
    let Some(obj) = o.dyn_ref::<Object>().filter(|_| o.is_object()) else {
        return out;
    };
    let keys = Object::keys(obj);
    for i in 0..keys.length() {
        let Some(k) = index(&keys, i).as_string() else {
            continue;
        };
        let v = get(o, &k);
        let value = if let Some(s) = v.as_string() {
            PropValue::Text(s)
        } else if let Some(b) = v.as_bool() {
            PropValue::Bool(b)
        } else if let Some(n) = v.as_f64() {
            PropValue::Number(n)
        } else {
            continue;
        };
        out.insert(k, value);
    }
    out
}

/// Field names of an item: `[id, name, price, quantity, category, variant]`.
type ItemKeys = [&'static str; 6];
const API_ITEM: ItemKeys = ["id", "name", "price", "quantity", "category", "variant"];
const GA4_ITEM: ItemKeys = [
    "item_id",
    "item_name",
    "price",
    "quantity",
    "item_category",
    "item_variant",
];

/// Quantity: absent means 1; anything but a positive integer is kept invalid (0) so the event is
/// dropped rather than silently changed.
fn quantity(v: &JsValue) -> i64 {
    if v.is_undefined() || v.is_null() {
        return 1;
    }
    match number(v) {
        Some(q) if crate::is_whole(q) && q >= 1.0 => q.min(1e9) as i64,
        _ => 0,
    }
}

fn item(v: &JsValue, keys: &ItemKeys) -> Item {
    let [id, name, price, qty, category, variant] = *keys;
    let name = text(&get(v, name));
    Item {
        // GA4 allows items named but without an id.
        id: text(&get(v, id))
            .or_else(|| name.clone())
            .unwrap_or_default(),
        name,
        category: text(&get(v, category)),
        variant: text(&get(v, variant)),
        price: number(&get(v, price)),
        quantity: quantity(&get(v, qty)),
    }
}

fn items(v: &JsValue, keys: &ItemKeys) -> Vec<Item> {
    (0..length(v).min(100))
        .map(|i| item(&index(v, i), keys))
        .collect()
}

/// `waymark('cart', action, {currency, items: [{id, name, price, quantity, category, variant}],
/// order_id, revenue})`.
pub fn cart(action: &JsValue, o: &JsValue) -> CartInput {
    CartInput {
        action: action.as_string().and_then(|a| CartAction::parse(&a)),
        currency: text(&get(o, "currency")),
        items: items(&get(o, "items"), &API_ITEM),
        order_id: text(&get(o, "order_id")),
        revenue: number(&get(o, "revenue")),
    }
}

fn ga4_action(name: &str) -> Option<CartAction> {
    Some(match name {
        "add_to_cart" => CartAction::Add,
        "remove_from_cart" => CartAction::Remove,
        "view_cart" => CartAction::ViewCart,
        "begin_checkout" => CartAction::Checkout,
        "purchase" => CartAction::Purchase,
        _ => return None,
    })
}

/// A GA4 ecommerce `dataLayer` entry: `{event, ecommerce: {…}}` (Google Tag Manager) or the
/// `arguments` of `gtag('event', name, {…})`. `None` for anything else.
pub fn datalayer(entry: &JsValue) -> Option<CartInput> {
    let (name, params) = match get(entry, "event").as_string() {
        Some(name) => (name, get(entry, "ecommerce")),
        None if index(entry, 0).as_string().as_deref() == Some("event") => {
            (index(entry, 1).as_string()?, index(entry, 2))
        }
        None => return None,
    };
    let action = ga4_action(&name)?;
    if !params.is_object() {
        return None;
    }
    Some(CartInput {
        action: Some(action),
        currency: text(&get(&params, "currency")),
        items: items(&get(&params, "items"), &GA4_ITEM),
        order_id: text(&get(&params, "transaction_id")),
        // GA4's `value` is the order total only for a purchase.
        revenue: (action == CartAction::Purchase)
            .then(|| number(&get(&params, "value")))
            .flatten(),
    })
}

/// What a click on a `data-waymark-cart` / `data-waymark-event` element means.
pub enum Declared {
    Cart(CartInput),
    Custom(String, Props),
}

/// Prefix of declarative custom-event properties.
const PROP: &str = "data-waymark-prop-";

/// Reads the declarative attributes of `el` (already matched by the click delegation).
pub fn declared(el: &Element) -> Option<Declared> {
    let attr = |name: &str| {
        let mut full = String::from("data-waymark-");
        full.push_str(name);
        el.get_attribute(&full)
    };
    if let Some(action) = attr("cart") {
        let num = |name: &str| {
            attr(name)
                .map(|s| Number::parse_float(&s))
                .filter(|n| n.is_finite())
        };
        let items = match attr("id") {
            Some(id) => vec![Item {
                id,
                name: attr("name"),
                category: attr("category"),
                variant: attr("variant"),
                price: num("price"),
                quantity: quantity(&attr("quantity").map_or(JsValue::UNDEFINED, JsValue::from)),
            }],
            None => Vec::new(),
        };
        return Some(Declared::Cart(CartInput {
            action: CartAction::parse(action.trim()),
            currency: attr("currency"),
            items,
            order_id: attr("order-id"),
            revenue: num("revenue"),
        }));
    }
    let name = attr("event")?;
    let mut props = Props::new();
    let names = el.get_attribute_names();
    for i in 0..names.length() {
        let Some(full) = index(&names, i).as_string() else {
            continue;
        };
        if let Some(key) = full.strip_prefix(PROP).filter(|k| !k.is_empty()) {
            if let Some(v) = el.get_attribute(&full) {
                props.insert(key.into(), PropValue::Text(v));
            }
        }
    }
    Some(Declared::Custom(name, props))
}
