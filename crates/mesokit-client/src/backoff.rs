//! Reconnection delays: exponential growth with random jitter, so that many schedulers
//! reconnecting after a master failover do not all knock at the same instant.

use std::time::Duration;

/// Exponential backoff with jitter.
///
/// The `n`-th consecutive retry (counting from 0) waits a random time in `[base/2, base]`, where
/// `base = min(max, min * 2^n)`. A successful subscription starts the count again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The base of the first delay.
    pub min: Duration,
    /// The largest base delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s growing to 15 s, the range Mesos suggests for scheduler reconnects.
    fn default() -> Self {
        Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(15),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let base = self.min.saturating_mul(factor).min(self.max.max(self.min));
        let base_ns = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        let half = base_ns / 2;
        Duration::from_nanos(half + fastrand::u64(0..=base_ns - half))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_bounds() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let d0 = b.delay(0);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d3 = b.delay(3);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
            let d40 = b.delay(40);
            assert!(d40 >= Duration::from_millis(500) && d40 <= Duration::from_millis(1000));
        }
        let zero = Backoff {
            min: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert_eq!(zero.delay(5), Duration::ZERO);
    }
}
