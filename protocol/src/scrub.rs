//! Privacy scrubbing: removes obvious personal data before anything leaves the page.
//!
//! Hand-written instead of `regex` on purpose: this code is compiled into the Wasm SDK, where the
//! `regex` crate alone would cost more than the whole size budget; the rules are small scanners.
//!
//! - E-mail addresses (also `%40`-encoded) become `[email]`.
//! - Token-like strings (32+ characters of `[A-Za-z0-9_-]` that look random: digit-heavy like hex
//!   or UUIDs, or mixed-case with digits like base64 keys) become `[token]`. Long lower-case slugs
//!   such as `blue-mug-2024-limited-edition-gift-set` are kept.
//! - In URLs, query parameters not on the keep list are removed and the fragment is dropped
//!   unless the caller keeps it (hash-mode single-page apps).

/// Replacement for a redacted e-mail address.
pub const EMAIL: &str = "[email]";
/// Replacement for a redacted token-like string.
pub const TOKEN: &str = "[token]";
/// The query parameters kept by default.
pub const DEFAULT_KEEP: [&str; 5] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

use alloc::string::String;

fn local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

/// Where an e-mail address around the `@` (or `%40`) at `at..at + width` starts and ends.
fn email_span(s: &[u8], at: usize, width: usize) -> Option<(usize, usize)> {
    let mut start = at;
    while start > 0 && s.get(start - 1).copied().is_some_and(local_byte) {
        start -= 1;
    }
    let mut end = at + width;
    while s.get(end).copied().is_some_and(domain_byte) {
        end += 1;
    }
    // Trailing dots are punctuation, not part of the domain.
    while end > at + width && s.get(end - 1) == Some(&b'.') {
        end -= 1;
    }
    let domain = s.get(at + width..end)?;
    let tld = domain.rsplit(|&b| b == b'.').next()?;
    let dotted = domain.contains(&b'.');
    let ok = start < at && dotted && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic);
    ok.then_some((start, end))
}

fn looks_like_token(run: &[u8]) -> bool {
    if run.len() < 32 {
        return false;
    }
    let mut digits = 0usize;
    let mut upper = false;
    let mut lower = false;
    let mut body = 0usize;
    for &b in run {
        if b == b'-' {
            continue;
        }
        body += 1;
        digits += usize::from(b.is_ascii_digit());
        upper |= b.is_ascii_uppercase();
        lower |= b.is_ascii_lowercase();
    }
    digits * 5 >= body || (upper && lower && digits > 0)
}

/// Redacts e-mail addresses and token-like strings in free text (titles, property values, URL
/// parts).
///
/// # Examples
/// ```
/// use waymark_protocol::scrub::scrub_text;
/// assert_eq!(scrub_text("Hi ann.lee@example.com!"), "Hi [email]!");
/// assert_eq!(scrub_text("key 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"), "key [token]");
/// assert_eq!(scrub_text("blue-mug-2024-limited-edition-gift-set"), "blue-mug-2024-limited-edition-gift-set");
/// ```
pub fn scrub_text(input: &str) -> String {
    let s = input.as_bytes();
    // Pass 1: e-mail addresses.
    let mut out = String::with_capacity(input.len());
    let mut copied = 0;
    let mut i = 0;
    while i < s.len() {
        let width = if s.get(i) == Some(&b'@') {
            1
        } else if s
            .get(i..i + 3)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"%40"))
        {
            3
        } else {
            0
        };
        if width > 0 {
            if let Some((start, end)) = email_span(s, i, width) {
                if start >= copied {
                    out.push_str(input.get(copied..start).unwrap_or_default());
                    out.push_str(EMAIL);
                    copied = end;
                    i = end;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push_str(input.get(copied..).unwrap_or_default());
    // Pass 2: token-like runs.
    let s = out.as_bytes();
    let mut res = String::with_capacity(out.len());
    let mut i = 0;
    let mut copied = 0;
    while i < s.len() {
        if s.get(i).copied().is_some_and(token_byte) {
            let start = i;
            while s.get(i).copied().is_some_and(token_byte) {
                i += 1;
            }
            if s.get(start..i).is_some_and(looks_like_token) {
                res.push_str(out.get(copied..start).unwrap_or_default());
                res.push_str(TOKEN);
                copied = i;
            }
        } else {
            i += 1;
        }
    }
    res.push_str(out.get(copied..).unwrap_or_default());
    res
}

/// Scrubs a URL: keeps only the query parameters named in `keep` (their values scrubbed too),
/// drops the fragment unless `keep_fragment`, and redacts e-mails and tokens in what is left.
///
/// # Examples
/// ```
/// use waymark_protocol::scrub::{scrub_url, DEFAULT_KEEP};
/// assert_eq!(
///     scrub_url("https://shop.example/a?utm_source=news&email=a@b.co&x=1#top", &DEFAULT_KEEP, false),
///     "https://shop.example/a?utm_source=news"
/// );
/// ```
pub fn scrub_url<S: AsRef<str>>(url: &str, keep: &[S], keep_fragment: bool) -> String {
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let mut out = scrub_text(base);
    let mut first = true;
    for pair in query.unwrap_or_default().split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !key.is_empty() && keep.iter().any(|k| k.as_ref() == key) {
            out.push(if first { '?' } else { '&' });
            out.push_str(&scrub_text(pair));
            first = false;
        }
    }
    if keep_fragment {
        if let Some(f) = fragment.filter(|f| !f.is_empty()) {
            out.push('#');
            out.push_str(&scrub_text(f));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_redacted() {
        for (input, want) in [
            ("ann@example.com", "[email]"),
            ("mail: first.last+tag@sub.example.co.uk.", "mail: [email]."),
            ("/u/ann%40example.com/orders", "/u/[email]/orders"),
            ("/u/ann%40Example.COM", "/u/[email]"),
            ("a@b and c@d.org", "a@b and [email]"),
            ("@handle", "@handle"),
            ("x@y.z1", "x@y.z1"),
            ("two: a@x.io, b@y.io", "two: [email], [email]"),
        ] {
            assert_eq!(scrub_text(input), want, "{input}");
        }
    }

    #[test]
    fn tokens_are_redacted_slugs_kept() {
        for (input, want) in [
            ("/reset/9f86d081884c7d659a2feaa0c55ad015", "/reset/[token]"),
            ("/o/123e4567-e89b-12d3-a456-426614174000", "/o/[token]"),
            ("k=AbCdEfGhIjKlMnOpQrStUvWxYz012345", "k=[token]"),
            (
                "/products/blue-mug-2024-limited-edition-gift-set",
                "/products/blue-mug-2024-limited-edition-gift-set",
            ),
            ("/products/sku-42", "/products/sku-42"),
            ("short 12345abcdef", "short 12345abcdef"),
            ("ünïcødé ✓ stays", "ünïcødé ✓ stays"),
        ] {
            assert_eq!(scrub_text(input), want, "{input}");
        }
    }

    #[test]
    fn urls_keep_only_listed_params() {
        let keep = DEFAULT_KEEP;
        assert_eq!(
            scrub_url(
                "https://s.example/p?utm_source=nl&utm_medium=email&session=abc",
                &keep,
                false
            ),
            "https://s.example/p?utm_source=nl&utm_medium=email"
        );
        assert_eq!(
            scrub_url("https://s.example/p?a=1&b=2", &keep, false),
            "https://s.example/p"
        );
        assert_eq!(
            scrub_url("https://s.example/#/cart", &keep, false),
            "https://s.example/"
        );
        assert_eq!(
            scrub_url("https://s.example/#/cart", &keep, true),
            "https://s.example/#/cart"
        );
        assert_eq!(
            scrub_url("https://s.example/#/u/ann@example.com", &keep, true),
            "https://s.example/#/u/[email]"
        );
        assert_eq!(
            scrub_url(
                "https://s.example/?utm_campaign=ann@example.com",
                &keep,
                false
            ),
            "https://s.example/?utm_campaign=[email]"
        );
        assert_eq!(
            scrub_url("https://s.example/?page=2", &["page"], false),
            "https://s.example/?page=2"
        );
        assert_eq!(
            scrub_url("https://s.example/?&&utm_source=x&", &keep, false),
            "https://s.example/?utm_source=x"
        );
    }
}
