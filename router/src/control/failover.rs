//! Which of a router's control connections is its primary (sans-IO).
//!
//! A router given several controller addresses (controllers sharing one database) keeps
//! a control connection to every one of them, so that every controller sees every
//! router of the mesh: its links, and a connection to send routes on (a controller
//! routes circuits only across routers connected to it). One connection is the
//! **primary**: the state the router enforces comes from it, and its terminators and
//! circuit requests go to it. The others are *mesh-only* (`RouterHello.mesh_only`).
//!
//! [`Election`] decides which connection is primary from the connections' ups and
//! downs:
//!
//! - At start the addresses are preferred in the order given: the first is primary as
//!   soon as it is up; a later one only once every earlier one has failed an attempt
//!   (so a router whose first controller answers uses it, as with one address).
//! - The primary stays primary until its connection ends: there is no going back to an
//!   earlier address while the current one works.
//! - When the primary's connection ends, the next connection that is up, round robin
//!   from the lost one, is promoted at once (a failover); when none is up, the first
//!   that comes up is.
//!
//! Each connection redials by itself with its own backoff (`Backoff`, reset by an
//! acknowledged hello).
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

/// A connection made primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// The index of its address.
    pub slot: usize,
    /// Whether an earlier primary was at another address (counted as a failover).
    pub failover: bool,
}

/// The state of each address's connection and which one is primary.
#[derive(Clone, Debug)]
pub struct Election {
    up: Vec<bool>,
    /// Whether an attempt on the address ended (failed, or was lost) since the start.
    failed: Vec<bool>,
    primary: Option<usize>,
    /// The address of the last primary.
    last: Option<usize>,
}

impl Election {
    /// `n` addresses, none connected yet.
    pub fn new(n: usize) -> Self {
        Self {
            up: vec![false; n],
            failed: vec![false; n],
            primary: None,
            last: None,
        }
    }

    /// The primary connection's address index, while there is one.
    pub fn primary(&self) -> Option<usize> {
        self.primary
    }

    /// How many connections are up.
    pub fn up_count(&self) -> usize {
        self.up.iter().filter(|u| **u).count()
    }

    /// The addresses whose connection is up.
    pub fn up_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.up
            .iter()
            .enumerate()
            .filter(|(_, u)| **u)
            .map(|(i, _)| i)
    }

    /// The connection to address `slot` came up (its hello was acknowledged); returns
    /// the connection to promote, if one is to be (this one or, at start, none yet).
    pub fn up(&mut self, slot: usize) -> Option<Promotion> {
        if let Some(u) = self.up.get_mut(slot) {
            *u = true;
        }
        self.elect()
    }

    /// The connection to address `slot` ended, or an attempt to connect failed; returns
    /// the connection to promote, if the primary was lost and another is up (or, at
    /// start, if a later address was waiting for this one).
    pub fn down(&mut self, slot: usize) -> Option<Promotion> {
        if let Some(u) = self.up.get_mut(slot) {
            *u = false;
        }
        if let Some(f) = self.failed.get_mut(slot) {
            *f = true;
        }
        if self.primary == Some(slot) {
            self.primary = None;
        }
        self.elect()
    }

    fn elect(&mut self) -> Option<Promotion> {
        if self.primary.is_some() {
            return None;
        }
        let n = self.up.len();
        let start = self.last.map_or(0, |l| (l + 1) % n.max(1));
        for k in 0..n {
            let slot = (start + k) % n;
            if self.up[slot] {
                let failover = self.last.is_some_and(|l| l != slot);
                self.primary = Some(slot);
                self.last = Some(slot);
                return Some(Promotion { slot, failover });
            }
            // At start, an address is not passed over before it has failed once.
            if self.last.is_none() && !self.failed[slot] {
                return None;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promoted(slot: usize, failover: bool) -> Option<Promotion> {
        Some(Promotion { slot, failover })
    }

    #[test]
    fn at_start_the_first_address_is_preferred_until_it_fails() {
        let mut e = Election::new(3);
        // The second answers first: it waits for the first to answer or fail.
        assert_eq!(e.up(1), None);
        assert_eq!(e.primary(), None);
        assert_eq!(e.up(0), promoted(0, false));
        assert_eq!(e.primary(), Some(0));
        assert_eq!(e.up(2), None);
        assert_eq!(e.up_count(), 3);

        // The first is dead: the second is primary once the first failed, no failover.
        let mut e = Election::new(3);
        assert_eq!(e.up(1), None);
        assert_eq!(e.down(0), promoted(1, false));
    }

    #[test]
    fn a_lost_primary_fails_over_to_the_next_connection_up_round_robin() {
        let mut e = Election::new(3);
        assert_eq!(e.up(0), promoted(0, false));
        assert_eq!(e.up(2), None);
        // 1 is down: 0's loss goes to 2 at once.
        assert_eq!(e.down(1), None);
        assert_eq!(e.down(0), promoted(2, true));
        // 0 comes back: 2 stays primary.
        assert_eq!(e.up(0), None);
        assert_eq!(e.primary(), Some(2));
        // 2 lost: round robin from 2 reaches 0 (1 is still down).
        assert_eq!(e.down(2), promoted(0, true));
    }

    #[test]
    fn with_none_up_the_first_connection_that_comes_up_is_primary() {
        let mut e = Election::new(2);
        assert_eq!(e.up(0), promoted(0, false));
        assert_eq!(e.down(1), None);
        assert_eq!(e.down(0), None);
        assert_eq!(e.primary(), None);
        // Back on the same controller: no failover.
        assert_eq!(e.up(0), promoted(0, false));
        assert_eq!(e.down(0), None);
        // On the other one: a failover.
        assert_eq!(e.up(1), promoted(1, true));
    }

    #[test]
    fn one_address_is_primary_whenever_it_is_up() {
        let mut e = Election::new(1);
        assert_eq!(e.down(0), None);
        assert_eq!(e.up(0), promoted(0, false));
        assert_eq!(e.down(0), None);
        assert_eq!(e.up(0), promoted(0, false));
        assert_eq!(e.up_count(), 1);
    }

    #[test]
    fn a_connection_ending_that_is_not_the_primary_changes_nothing() {
        let mut e = Election::new(2);
        assert_eq!(e.up(0), promoted(0, false));
        assert_eq!(e.up(1), None);
        assert_eq!(e.down(1), None);
        assert_eq!(e.primary(), Some(0));
        // Out-of-range slots are ignored.
        assert_eq!(e.down(7), None);
        assert_eq!(e.up(7), None);
    }
}
