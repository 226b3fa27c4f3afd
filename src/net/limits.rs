//! Total and per-IP connection limits. A [`Slot`] is held for a connection's
//! whole life and gives its place back when dropped, however the session ends.

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
}
