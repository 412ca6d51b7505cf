//! Delivery outcomes and the retry schedule.
//!
//! A batch keeps its id across retries, so the collector stores it once however often it arrives.
//! Network errors, 429 and 5xx are retried with exponential backoff and jitter, never sooner than
//! the server's `Retry-After`; any other status (other 4xx) drops the batch for good.

/// First retry delay before jitter.
pub const BASE_MS: i64 = 1_000;
/// Longest backoff before jitter.
pub const MAX_BACKOFF_MS: i64 = 60_000;
/// Attempts per batch (the first send included) before it is dropped.
pub const MAX_ATTEMPTS: u32 = 6;
/// The longest `Retry-After` honoured; anything longer is treated as this.
pub const MAX_RETRY_AFTER_MS: i64 = 60 * 60 * 1000;

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again later, not before `after_ms` when the server said so.
    Retry {
        after_ms: Option<i64>,
    },
    /// Never retry (4xx other than 429).
    Rejected,
}

/// Classifies an HTTP answer; `None` is a network error (no answer at all).
pub fn classify(status: Option<u16>, retry_after: Option<&str>) -> Outcome {
    match status {
        Some(200..=299) => Outcome::Delivered,
        None => Outcome::Retry { after_ms: None },
        Some(429) | Some(500..=599) => Outcome::Retry {
            after_ms: retry_after.and_then(parse_retry_after),
        },
        Some(_) => Outcome::Rejected,
    }
}

/// `Retry-After` in delay-seconds form (the collector's); HTTP dates are ignored.
pub fn parse_retry_after(v: &str) -> Option<i64> {
    let secs: i64 = v.trim().parse().ok()?;
    (secs >= 0).then(|| secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS))
}

/// Delay before retry number `attempt` (1 = the first retry): `BASE_MS · 2^(attempt-1)` capped at
/// [`MAX_BACKOFF_MS`], jittered to between half and all of it, and at least `retry_after_ms`.
/// `random` is any uniformly random number.
pub fn backoff(attempt: u32, random: u32, retry_after_ms: Option<i64>) -> i64 {
    let exp = attempt.saturating_sub(1).min(16);
    let full = BASE_MS.saturating_mul(1 << exp).min(MAX_BACKOFF_MS);
    let half = full / 2;
    let jittered = half + i64::from(random) % (half + 1);
    jittered.max(retry_after_ms.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify(Some(202), None), Outcome::Delivered);
        assert_eq!(classify(None, None), Outcome::Retry { after_ms: None });
        assert_eq!(
            classify(Some(429), Some("7")),
            Outcome::Retry {
                after_ms: Some(7_000)
            }
        );
        assert_eq!(
            classify(Some(503), Some(" 2 ")),
            Outcome::Retry {
                after_ms: Some(2_000)
            }
        );
        assert_eq!(classify(Some(502), None), Outcome::Retry { after_ms: None });
        for s in [400, 403, 404, 413, 415] {
            assert_eq!(classify(Some(s), Some("5")), Outcome::Rejected, "{s}");
        }
        assert_eq!(classify(Some(301), None), Outcome::Rejected);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("0"), Some(0));
        assert_eq!(parse_retry_after("120"), Some(120_000));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(
            parse_retry_after("99999999999999"),
            Some(MAX_RETRY_AFTER_MS)
        );
    }

    #[test]
    fn exponential_with_jitter() {
        // Lowest and highest possible delay per attempt.
        for (attempt, lo, hi) in [
            (1, 500, 1_000),
            (2, 1_000, 2_000),
            (3, 2_000, 4_000),
            (6, 16_000, 32_000),
            (7, 30_000, 60_000),
            (40, 30_000, 60_000),
        ] {
            assert_eq!(backoff(attempt, 0, None), lo, "attempt {attempt}");
            let top = (0..=u32::MAX)
                .step_by(65_537)
                .map(|r| backoff(attempt, r, None))
                .max()
                .unwrap();
            assert!(top <= hi && top > hi - hi / 10, "attempt {attempt}: {top}");
        }
        assert_eq!(backoff(1, 12_345, None), 500 + 12_345 % 501);
    }

    #[test]
    fn retry_after_is_a_floor() {
        assert_eq!(backoff(1, 0, Some(30_000)), 30_000);
        assert_eq!(backoff(7, 0, Some(1_000)), 30_000);
    }
}
