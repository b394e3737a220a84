//! Token buckets by key: per service token on the gRPC side, per client IP on the
//! unauthenticated HTTP routes. A bucket holds `burst` tokens and refills at `rate`
//! per second; a refused request learns how long until the next token.
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Beyond this many tracked keys, full buckets are forgotten.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter<K> {
    /// Tokens added per second; 0 turns the limit off.
    rate: f64,
    /// Bucket size: how many requests may come at once after a quiet spell.
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `rate` tokens per second, buckets of `burst` (at least 1); a `rate` of 0 is off.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// `n` requests a minute, all of which may come at once.
    pub fn per_minute(n: u32) -> Self {
        Self::new(f64::from(n) / 60.0, n)
    }

    /// Takes a token for `key`; when its bucket is empty, how long until one is back.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let (rate, burst) = (self.rate, self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = match buckets.get_mut(key) {
            Some(bucket) => bucket,
            None => buckets.entry(key.clone()).or_insert((burst, now)),
        };
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / rate))
        }
    }
}

/// At most `max` of something held at once per key (open streams per tenant); a
/// [`Slot`] gives its place back when dropped.
#[derive(Debug)]
pub struct Slots {
    max: u32,
    held: Mutex<HashMap<String, u32>>,
}

/// A place taken from [`Slots`].
#[derive(Debug)]
pub struct Slot {
    slots: std::sync::Arc<Slots>,
    key: String,
}

impl Slots {
    pub fn new(max: u32) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            max,
            held: Mutex::default(),
        })
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    /// A place for `key`, or `None` when it holds `max` already.
    pub fn take(self: &std::sync::Arc<Self>, key: &str) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(key.to_owned()).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: self.clone(),
            key: key.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn a_bucket_empties_and_refills_per_key() {
        let limiter = RateLimiter::per_minute(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.check_at(&a, t0).is_ok()));
        assert_eq!(limiter.check_at(&a, t0), Err(Duration::from_secs(20)));
        assert!(limiter.check_at(&b, t0).is_ok());
        assert!(limiter.check_at(&a, t0 + Duration::from_secs(20)).is_ok());
        let wait = limiter
            .check_at(&a, t0 + Duration::from_secs(21))
            .unwrap_err();
        assert_eq!(wait.as_secs(), 19);
        assert!(RateLimiter::per_minute(0).check_at(&a, t0).is_ok());
    }

    #[test]
    fn slots_are_given_back_when_dropped() {
        let slots = Slots::new(2);
        let a = slots.take("t1").unwrap();
        let _b = slots.take("t1").unwrap();
        assert!(slots.take("t1").is_none());
        assert!(slots.take("t2").is_some());
        drop(a);
        assert!(slots.take("t1").is_some());
    }

    #[test]
    fn burst_and_rate_are_separate() {
        let limiter = RateLimiter::new(10.0, 2);
        let t0 = Instant::now();
        assert!(limiter.check_at(&"t", t0).is_ok());
        assert!(limiter.check_at(&"t", t0).is_ok());
        let wait = limiter.check_at(&"t", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(
            limiter
                .check_at(&"t", t0 + Duration::from_millis(100))
                .is_ok()
        );
    }
}
