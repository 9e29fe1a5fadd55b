//! What one client may do: events per second per socket and per IP address, open sockets
//! per IP address. A refusal is always answered (ack or `chat error`), never a silent drop.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
};

use governor::{
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter, clock::DefaultClock,
};

use crate::config::Limits;

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
}

/// The edge's limiters.
pub struct Limiter {
    limits: Limits,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// One clock for every socket's limiter: making one calibrates it (a CPUID probe), which
    /// was ~4 % of the server's CPU while visitors connected.
    clock: DefaultClock,
    connections: Mutex<HashMap<IpAddr, u32>>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Arc<Self> {
        let per_ip = RateLimiter::keyed(quota(limits.ip_events_per_second, limits.ip_events_burst));
        Arc::new(Self {
            limits,
            per_ip,
            clock: DefaultClock::default(),
            connections: Mutex::default(),
        })
    }

    /// A limiter for one socket's events.
    pub fn for_socket(&self) -> DefaultDirectRateLimiter {
        RateLimiter::direct_with_clock(
            quota(self.limits.events_per_second, self.limits.events_burst),
            self.clock.clone(),
        )
    }

    /// A new socket's own budget of `typing` events.
    pub fn typing_for_socket(&self) -> DefaultDirectRateLimiter {
        RateLimiter::direct_with_clock(
            quota(self.limits.typing_per_second, self.limits.typing_burst),
            self.clock.clone(),
        )
    }

    /// Whether one more event from this socket and address may be handled now.
    pub fn allow_event(&self, socket: &DefaultDirectRateLimiter, ip: IpAddr) -> bool {
        socket.check().is_ok() && self.per_ip.check_key(&ip).is_ok()
    }

    /// Counts a new socket from `ip`; false when the address has too many already.
    pub fn open(&self, ip: IpAddr) -> bool {
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= self.limits.connections_per_ip {
            return false;
        }
        *count += 1;
        true
    }

    /// A socket from `ip` has gone.
    pub fn close(&self, ip: IpAddr) {
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&ip);
            }
        }
    }

    /// Forgets addresses that have been quiet (call now and then).
    pub fn forget_idle(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses() {
        let limiter = Limiter::new(Limits {
            events_per_second: 1,
            events_burst: 3,
            ..Limits::default()
        });
        let socket = limiter.for_socket();
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert!((0..3).all(|_| limiter.allow_event(&socket, ip)));
        assert!(!limiter.allow_event(&socket, ip));
    }

    #[test]
    fn connections_per_address() {
        let limiter = Limiter::new(Limits {
            connections_per_ip: 2,
            ..Limits::default()
        });
        let ip = IpAddr::from([10, 0, 0, 1]);
        assert!(limiter.open(ip) && limiter.open(ip));
        assert!(!limiter.open(ip));
        limiter.close(ip);
        assert!(limiter.open(ip));
        assert!(limiter.open(IpAddr::from([10, 0, 0, 2])));
    }
}
