//! Total and per-address connection limits. A [`Slot`] is held for a
//! connection's whole life and gives its place back when dropped, however the
//! session ends. An address is an IPv4 address or an IPv6 /64, as for the
//! login throttle: one host can usually pick any address in its /64.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    state: RefCell<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

pub struct Slot {
    limits: Rc<ConnectionLimits>,
    ip: Option<IpAddr>,
}

/// Why a connection was turned away.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Total(usize),
    PerIp(usize),
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Rc<ConnectionLimits> {
        Rc::new(ConnectionLimits {
            max_total,
            max_per_ip,
            state: RefCell::default(),
        })
    }

    /// Takes a place for a new connection, or says which limit is reached.
    /// Unix-socket connections (`ip` None) count only towards the total.
    pub fn try_acquire(self: &Rc<Self>, ip: Option<IpAddr>) -> Result<Slot, Refused> {
        let ip = ip.map(address_key);
        let mut state = self.state.borrow_mut();
        if state.total >= self.max_total {
            return Err(Refused::Total(self.max_total));
        }
        if let Some(ip) = ip {
            let count = state.per_ip.entry(ip).or_default();
            if *count >= self.max_per_ip {
                return Err(Refused::PerIp(self.max_per_ip));
            }
            *count += 1;
        }
        state.total += 1;
        Ok(Slot {
            limits: self.clone(),
            ip,
        })
    }

    pub fn open_connections(&self) -> usize {
        self.state.borrow().total
    }
}

/// The part of a client's address that identifies it for limits and
/// throttling: IPv4 (IPv4-mapped IPv6 counts as IPv4) as it is, IPv6 by its
/// /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Total(n) => write!(
                f,
                "the server is at its limit of {n} connections (--max-connections)"
            ),
            Refused::PerIp(n) => write!(
                f,
                "too many connections from your address (limit {n}, --max-connections-per-ip)"
            ),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.limits.state.borrow_mut();
        state.total -= 1;
        if let Some(ip) = self.ip {
            if let Some(count) = state.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    state.per_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_and_release() {
        let limits = ConnectionLimits::new(3, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = limits.try_acquire(Some(ip)).unwrap();
        let _b = limits.try_acquire(Some(ip)).unwrap();
        assert_eq!(limits.try_acquire(Some(ip)).err(), Some(Refused::PerIp(2)));
        let _c = limits.try_acquire(None).unwrap();
        assert_eq!(limits.try_acquire(None).err(), Some(Refused::Total(3)));
        drop(a);
        let _d = limits.try_acquire(Some(ip)).unwrap();
        assert_eq!(limits.open_connections(), 3);
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        let limits = ConnectionLimits::new(10, 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = limits.try_acquire(Some(ip("2001:db8:1:2::1"))).unwrap();
        let b = limits
            .try_acquire(Some(ip("2001:db8:1:2:ffff::9")))
            .unwrap();
        assert_eq!(
            limits.try_acquire(Some(ip("2001:db8:1:2::abcd"))).err(),
            Some(Refused::PerIp(2))
        );
        let _c = limits.try_acquire(Some(ip("2001:db8:1:3::1"))).unwrap();
        drop(b);
        let _d = limits.try_acquire(Some(ip("2001:db8:1:2::2"))).unwrap();
        // IPv4-mapped IPv6 is the IPv4 address.
        let _e = limits.try_acquire(Some(ip("::ffff:192.0.2.1"))).unwrap();
        let _f = limits.try_acquire(Some(ip("192.0.2.1"))).unwrap();
        assert!(limits.try_acquire(Some(ip("192.0.2.1"))).is_err());
    }
}
