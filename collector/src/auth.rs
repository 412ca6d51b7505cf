//! API tokens: random, shown once, stored only as a SHA-256 hash.

/// A new random token, `wm_` followed by 64 hex digits.
///
/// # Errors
/// The operating system's random source failed.
pub fn new_token() -> Result<String, ring::error::Unspecified> {
    let bytes = crate::visitor::random_bytes::<32>()?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("wm_{hex}"))
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 67);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
