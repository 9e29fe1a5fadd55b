//! A budget of attempts per key (sign-ins per login in the core, per client address at the
//! web edge): so many in a row, then one more per period. A refusal says how long to wait.
//! Idle keys are forgotten once more than a bound of them are remembered, so a stream of new
//! keys costs bounded memory.

use std::{hash::Hash, num::NonZeroU32, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};

/// Attempts per key.
pub struct Attempts<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> Attempts<K> {
    /// `burst` attempts in a row (at least 1), then one per `refill` (more than zero).
    pub fn new(burst: u32, refill: Duration, max_keys: usize) -> Self {
        let quota = Quota::with_period(refill)
            .expect("a refill period of more than zero")
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: RateLimiter::keyed(quota),
            max_keys,
        }
    }

    /// Spends one attempt of `key`; when none is left, `Err` with the whole seconds to wait
    /// (at least 1).
    pub fn spend(&self, key: &K) -> Result<(), u64> {
        if self.limiter.len() > self.max_keys {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            wait.as_secs() + 1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_has_its_burst_then_waits() {
        let attempts = Attempts::new(2, Duration::from_secs(60), 10);
        assert_eq!(attempts.spend(&"a"), Ok(()));
        assert_eq!(attempts.spend(&"a"), Ok(()));
        let wait = attempts.spend(&"a").expect_err("out of attempts");
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(attempts.spend(&"b"), Ok(()), "another key has its own");
    }
}
