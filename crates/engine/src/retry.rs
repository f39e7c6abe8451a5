//! Backoff policy shared by the Atlas client and the transfer: exponential, capped, with jitter,
//! so that many clients that failed together do not retry together.
//! Must not: sleep or do I/O itself (callers decide how to wait).

use std::time::Duration;

use rand::RngExt as _;

/// Exponential backoff with "equal jitter": half the delay fixed, half random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the second attempt (before jitter).
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// Delay before attempt number `attempt + 1`, where `attempt` counts from 1.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
        let capped = exp.min(self.max);
        let half = capped / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if jitter_nanos == 0 {
            0
        } else {
            rand::rng().random_range(0..=jitter_nanos)
        };
        half + Duration::from_nanos(jitter)
    }

    /// A server's `Retry-After` wins over our own schedule, within `max`.
    pub fn delay_with_hint(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(hint) => hint.min(self.max),
            None => self.delay(attempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_bounds() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d1 = b.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = b.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d10 = b.delay(10);
            assert!(d10 >= Duration::from_millis(500) && d10 <= Duration::from_secs(1));
        }
        assert_eq!(
            b.delay_with_hint(1, Some(Duration::from_secs(30))),
            Duration::from_secs(1)
        );
        assert_eq!(
            b.delay_with_hint(1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
    }
}
