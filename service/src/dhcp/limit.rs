//! DHCPDECLINE rate limit per tap. Every decline the reconciler accepts takes an address out of
//! the pool (until the next uplink change or Resync), so a guest that declines each address it
//! is given could otherwise empty the pool for everyone else's guests. A token bucket per tap
//! lets a burst through (real conflicts come one or two at a time) and then one decline per
//! refill period; the rest are dropped, and logged at most once per period.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Declines a tap may send at once.
pub const DECLINE_BURST: u32 = 3;
/// After the burst: one decline per this period.
pub const DECLINE_REFILL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the decline on; `dropped` were dropped since the last one that passed.
    Forward { dropped: u32 },
    /// Drop it; `log` is true for the first one dropped in a refill period.
    Drop { log: bool },
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    /// When the next token arrives (meaningful while `tokens` < the burst).
    refill_at: Instant,
    dropped: u32,
    logged_until: Option<Instant>,
}

#[derive(Debug)]
pub struct DeclineLimiter {
    burst: u32,
    refill: Duration,
    taps: BTreeMap<String, Bucket>,
}

impl Default for DeclineLimiter {
    fn default() -> Self {
        Self::new(DECLINE_BURST, DECLINE_REFILL)
    }
}

impl DeclineLimiter {
    pub fn new(burst: u32, refill: Duration) -> Self {
        Self { burst, refill, taps: BTreeMap::new() }
    }

    /// Whether a decline that arrived on `tap` at `now` may reach the reconciler.
    pub fn check(&mut self, tap: &str, now: Instant) -> Verdict {
        let (burst, refill) = (self.burst, self.refill);
        let bucket = self.taps.entry(tap.to_owned()).or_insert(Bucket {
            tokens: burst,
            refill_at: now + refill,
            dropped: 0,
            logged_until: None,
        });
        while bucket.tokens < burst && now >= bucket.refill_at {
            bucket.tokens += 1;
            bucket.refill_at += refill;
        }
        if bucket.tokens == burst {
            bucket.refill_at = now + refill;
        }
        if bucket.tokens > 0 {
            bucket.tokens -= 1;
            let dropped = std::mem::take(&mut bucket.dropped);
            return Verdict::Forward { dropped };
        }
        bucket.dropped = bucket.dropped.saturating_add(1);
        let log = bucket.logged_until.is_none_or(|until| now >= until);
        if log {
            bucket.logged_until = Some(now + refill);
        }
        Verdict::Drop { log }
    }

    /// Forgets the taps that are gone, so a tap's bucket does not outlive its guest.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.taps.retain(|tap, _| keep(tap));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_burst_passes_then_one_per_period_and_the_rest_are_dropped_and_logged_once() {
        let mut limiter = DeclineLimiter::new(3, MINUTE);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check("vmt-a", start), Verdict::Forward { dropped: 0 });
        }
        assert_eq!(limiter.check("vmt-a", start), Verdict::Drop { log: true });
        for second in 1..60 {
            let at = start + Duration::from_secs(second);
            assert_eq!(limiter.check("vmt-a", at), Verdict::Drop { log: false }, "{second} s");
        }
        // One token a minute, and the count of what was dropped meanwhile.
        assert_eq!(limiter.check("vmt-a", start + MINUTE), Verdict::Forward { dropped: 60 });
        assert_eq!(limiter.check("vmt-a", start + MINUTE), Verdict::Drop { log: true });
        // A thousand declines within an hour: the burst and one a minute pass.
        let mut forwarded = 0;
        let mut limiter = DeclineLimiter::new(3, MINUTE);
        for n in 0..1000u32 {
            let at = start + Duration::from_millis(u64::from(n) * 3600);
            forwarded += u32::from(matches!(limiter.check("vmt-a", at), Verdict::Forward { .. }));
        }
        assert!((60..=63).contains(&forwarded), "{forwarded}");
    }

    #[test]
    fn taps_have_their_own_buckets_and_a_quiet_tap_refills_to_the_burst_only() {
        let mut limiter = DeclineLimiter::new(2, MINUTE);
        let start = Instant::now();
        limiter.check("vmt-a", start);
        limiter.check("vmt-a", start);
        assert_eq!(limiter.check("vmt-a", start), Verdict::Drop { log: true });
        assert_eq!(limiter.check("vmt-b", start), Verdict::Forward { dropped: 0 });
        // After an idle day: the burst again, not a day's worth of tokens.
        let later = start + Duration::from_secs(86_400);
        assert!(matches!(limiter.check("vmt-a", later), Verdict::Forward { .. }));
        assert!(matches!(limiter.check("vmt-a", later), Verdict::Forward { .. }));
        assert_eq!(limiter.check("vmt-a", later), Verdict::Drop { log: true });
        limiter.retain(|tap| tap != "vmt-a");
        assert_eq!(limiter.check("vmt-a", later), Verdict::Forward { dropped: 0 });
    }
}
