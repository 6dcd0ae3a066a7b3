//! Failed gateway logins per client address. A login the engine refuses (wrong or used-up
//! token, unknown or ended break…) is audited, so a client that knows a break id could
//! otherwise write refusals to the audit log as fast as it can connect. Past the allowance an
//! address is refused before its token is looked at — no audit entry, a counter, a log line —
//! until the allowance has refilled. Logins that succeed cost nothing, so a responder's
//! connection pool is never slowed by this. A GCRA limiter (the `governor` crate, as the
//! server's HTTP limits) keyed by address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// A keyed limiter whose positive answers say how many more cells are left.
type Limiter =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// Addresses kept blocked at most (an older block is dropped first when a new one comes).
const BLOCKED_MAX: usize = 10_000;

pub(crate) struct FailedLogins {
    /// `None`: no limit.
    limiter: Option<Limiter>,
    /// Addresses over their allowance, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl FailedLogins {
    /// `per_minute` failed logins per address (the burst is the whole minute's); 0: no limit.
    pub(crate) fn new(per_minute: u32) -> FailedLogins {
        FailedLogins {
            limiter: NonZeroU32::new(per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n)).with_middleware()),
            blocked: Mutex::default(),
        }
    }

    fn blocked_map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `ip` stays refused, while it is.
    pub(crate) fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked_map();
        let until = *blocked.get(&ip)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            blocked.remove(&ip);
            return None;
        }
        Some(left)
    }

    /// Counts a refused login from `ip`; once the allowance is used up the address is blocked
    /// until one more failure would be allowed again.
    pub(crate) fn failed(&self, ip: IpAddr) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let wait = match limiter.check_key(&ip) {
            // The last failure of the allowance: the next cell comes within one interval.
            Ok(left) if left.remaining_burst_capacity() == 0 => left.quota().replenish_interval(),
            Ok(_) => return,
            Err(not_until) => not_until.wait_time_from(DefaultClock::default().now()),
        };
        {
            let mut blocked = self.blocked_map();
            if blocked.len() >= BLOCKED_MAX {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
                if blocked.len() >= BLOCKED_MAX
                    && let Some(oldest) = blocked.iter().min_by_key(|(_, u)| **u).map(|(a, _)| *a)
                {
                    blocked.remove(&oldest);
                }
            }
            blocked.insert(ip, Instant::now() + wait);
        }
        limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address is blocked once past its allowance, for about the time one more failure
    /// takes to be allowed; other addresses are not; no limit blocks nobody.
    #[test]
    fn an_address_past_its_failed_logins_is_blocked_for_a_while() {
        let limits = FailedLogins::new(3);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..2 {
            limits.failed(a);
            assert_eq!(limits.blocked(a), None);
        }
        limits.failed(a);
        let left = limits
            .blocked(a)
            .expect("the third failure uses the allowance up: the fourth attempt is refused");
        assert!(
            left > Duration::from_secs(15) && left <= Duration::from_secs(20),
            "{left:?}: a minute's allowance of 3 refills one every 20 s"
        );
        assert_eq!(limits.blocked(b), None, "another address is not blocked");
        let off = FailedLogins::new(0);
        for _ in 0..100 {
            off.failed(a);
        }
        assert_eq!(off.blocked(a), None);
    }
}
