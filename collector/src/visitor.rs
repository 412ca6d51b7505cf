//! Who is the same visitor, without cookies: the client IP as the spec defines it, and the keyed
//! hash `HMAC-SHA256(salt_of_day, site ‖ 0 ‖ ip ‖ 0 ‖ user_agent)` truncated to 64 bits.
//!
//! Architecture Invariant: the IP and user agent passed in here live only for the request; nothing
//! in this module stores, logs or returns them.

use ring::hmac;
use std::net::{IpAddr, Ipv6Addr};

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC day number (days since the epoch) of a time in ms.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// IPv4-mapped IPv6 becomes IPv4; other IPv6 addresses are cut to their /64 prefix, because
/// privacy extensions rotate the rest.
pub fn normalise_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The client's address: the socket peer, unless the peer is a trusted proxy, in which case the
/// right-most address of `Forwarded` / `X-Forwarded-For` that is not itself a trusted proxy.
/// Headers from untrusted peers are ignored, so they cannot be spoofed.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    x_forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[IpAddr],
) -> IpAddr {
    let peer = normalise_ip(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|t| normalise_ip(*t) == *ip);
    if !is_trusted(&peer) {
        return peer;
    }
    // `Forwarded: for=1.2.3.4;proto=https, for="[2001:db8::1]:4711"` (RFC 7239).
    let mut chain: Vec<IpAddr> = forwarded
        .flat_map(|h| h.split(','))
        .filter_map(|el| {
            el.split(';').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(v))?
            })
        })
        .collect();
    if chain.is_empty() {
        chain = x_forwarded_for
            .flat_map(|h| h.split(','))
            .filter_map(parse_node)
            .collect();
    }
    chain
        .into_iter()
        .map(normalise_ip)
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:4711"` or `2001:db8::1`.
fn parse_node(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Ok(ip) = v.parse() {
        return Some(ip);
    }
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    v.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// A day's salt: 32 random bytes (from `ring::rand::SystemRandom`, created by the store).
pub type Salt = [u8; 32];

/// The visitor key of one request.
pub fn visitor_key(salt: &Salt, site: &str, ip: IpAddr, user_agent: &str) -> u64 {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(site.as_bytes());
    ctx.update(&[0]);
    match normalise_ip(ip) {
        IpAddr::V4(v4) => ctx.update(&v4.octets()),
        IpAddr::V6(v6) => ctx.update(&v6.octets()),
    }
    ctx.update(&[0]);
    ctx.update(user_agent.as_bytes());
    let tag = ctx.sign();
    let mut first = [0u8; 8];
    first.copy_from_slice(&tag.as_ref()[..8]);
    u64::from_be_bytes(first)
}

/// Fresh random bytes (salts, session ids, tokens).
///
/// # Errors
/// Only if the operating system's random source fails.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn days_are_utc_and_floor() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
        assert_eq!(day_of(-1), -1);
    }

    #[test]
    fn ipv6_cut_to_64_and_mapped_v4() {
        assert_eq!(
            normalise_ip(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(normalise_ip(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        let salt = [7u8; 32];
        assert_eq!(
            visitor_key(&salt, "s", ip("2001:db8:1:2::1"), "UA"),
            visitor_key(&salt, "s", ip("2001:db8:1:2:ffff::9"), "UA")
        );
        assert_eq!(
            visitor_key(&salt, "s", ip("::ffff:192.0.2.7"), "UA"),
            visitor_key(&salt, "s", ip("192.0.2.7"), "UA")
        );
    }

    #[test]
    fn key_depends_on_every_input() {
        let salt = [1u8; 32];
        let base = visitor_key(&salt, "shop", ip("192.0.2.1"), "Firefox");
        assert_ne!(
            base,
            visitor_key(&[2u8; 32], "shop", ip("192.0.2.1"), "Firefox")
        );
        assert_ne!(base, visitor_key(&salt, "blog", ip("192.0.2.1"), "Firefox"));
        assert_ne!(base, visitor_key(&salt, "shop", ip("192.0.2.2"), "Firefox"));
        assert_ne!(base, visitor_key(&salt, "shop", ip("192.0.2.1"), "Chrome"));
        // The separator keeps "ab"+"c" apart from "a"+"bc".
        assert_ne!(
            visitor_key(&salt, "a", ip("192.0.2.1"), "bc"),
            visitor_key(&salt, "ab", ip("192.0.2.1"), "c")
        );
        assert_eq!(base, visitor_key(&salt, "shop", ip("192.0.2.1"), "Firefox"));
    }

    #[test]
    fn forwarded_only_from_trusted_peers() {
        let proxy = ip("10.0.0.1");
        let none = std::iter::empty();
        // Untrusted peer: headers ignored.
        assert_eq!(
            client_ip(
                ip("198.51.100.9"),
                none.clone(),
                ["203.0.113.5"].into_iter(),
                &[proxy]
            ),
            ip("198.51.100.9")
        );
        // Trusted peer: right-most untrusted X-Forwarded-For entry (the left ones are spoofable).
        assert_eq!(
            client_ip(
                proxy,
                none.clone(),
                ["1.1.1.1, 203.0.113.5, 10.0.0.1"].into_iter(),
                &[proxy]
            ),
            ip("203.0.113.5")
        );
        // Forwarded wins over X-Forwarded-For, with ports and brackets.
        assert_eq!(
            client_ip(
                proxy,
                ["for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\""].into_iter(),
                ["203.0.113.5"].into_iter(),
                &[proxy]
            ),
            ip("2001:db8:cafe::")
        );
        assert_eq!(
            client_ip(
                proxy,
                none.clone(),
                ["198.51.100.1:5555"].into_iter(),
                &[proxy]
            ),
            ip("198.51.100.1")
        );
        // Garbage or nothing: the peer.
        assert_eq!(
            client_ip(proxy, none.clone(), ["nonsense"].into_iter(), &[proxy]),
            proxy
        );
        assert_eq!(client_ip(proxy, none.clone(), none, &[proxy]), proxy);
    }
}
