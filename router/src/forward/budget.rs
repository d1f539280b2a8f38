//! What each identity's connections on a shard make it hold, against a budget.
//!
//! A circuit window bounds what one circuit direction holds; an identity that opens
//! many circuits to a reader that does not read (its own host, say) made a router hold
//! a window per circuit, without a total. Each identity's edge connections on a shard
//! share one budget of charges (payload and each frame's cost, [`crate::credit`]): the
//! bytes they sent that the shard still holds or has in flight. Past the budget none of
//! them is read until what they hold drains to half of it; other identities never
//! wait for it.
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

use std::collections::HashMap;

/// An identity's place in [`Budgets`] while it has a connection on the shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Slot(usize);

#[derive(Debug, Default)]
struct Account {
    identity: String,
    /// Charges its connections' payload holds here or in flight.
    held: usize,
    /// Its connections on the shard.
    conns: usize,
    /// Past the budget: its connections are not read.
    over: bool,
}

/// The identities with connections on a shard and what each holds.
#[derive(Debug)]
pub(super) struct Budgets {
    budget: usize,
    accounts: Vec<Account>,
    free: Vec<usize>,
    by_identity: HashMap<String, usize>,
}

/// What a change of an account did to its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// Nothing for the driver.
    None,
    /// The account passed its budget: its connections stop being read.
    Paused,
    /// The account drained to half its budget: its connections are read again.
    Resumed,
}

impl Budgets {
    /// Accounts of `budget` charges each.
    pub(super) fn new(budget: usize) -> Self {
        Self {
            budget,
            accounts: Vec::new(),
            free: Vec::new(),
            by_identity: HashMap::new(),
        }
    }

    /// A connection of `identity` authenticated: its account (opened if needed).
    pub(super) fn join(&mut self, identity: &str) -> Slot {
        if let Some(&i) = self.by_identity.get(identity) {
            self.accounts[i].conns += 1;
            return Slot(i);
        }
        let account = Account {
            identity: identity.to_owned(),
            held: 0,
            conns: 1,
            over: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.accounts[i] = account;
                i
            }
            None => {
                self.accounts.push(account);
                self.accounts.len() - 1
            }
        };
        self.by_identity.insert(identity.to_owned(), i);
        Slot(i)
    }

    /// A connection of `slot` that still held `held` went away: the account forgets
    /// it (what it sent and is still in flight is no longer counted), and closes with
    /// its last connection.
    pub(super) fn leave(&mut self, slot: Slot, held: usize) -> Change {
        let change = self.release(slot, held);
        let Some(account) = self.accounts.get_mut(slot.0) else {
            return change;
        };
        account.conns = account.conns.saturating_sub(1);
        if account.conns == 0 {
            self.by_identity.remove(&account.identity);
            *account = Account::default();
            self.free.push(slot.0);
        }
        change
    }

    /// A connection of `slot` sent `charge` more that the shard holds.
    pub(super) fn hold(&mut self, slot: Slot, charge: usize) -> Change {
        let Some(account) = self.accounts.get_mut(slot.0) else {
            return Change::None;
        };
        account.held = account.held.saturating_add(charge);
        if !account.over && account.held > self.budget {
            account.over = true;
            return Change::Paused;
        }
        Change::None
    }

    /// `charge` of what the connections of `slot` sent left the shard (written, or
    /// credited by the next hop).
    pub(super) fn release(&mut self, slot: Slot, charge: usize) -> Change {
        let Some(account) = self.accounts.get_mut(slot.0) else {
            return Change::None;
        };
        account.held = account.held.saturating_sub(charge);
        if account.over && account.held <= self.budget / 2 {
            account.over = false;
            return Change::Resumed;
        }
        Change::None
    }

    /// Whether the connections of `slot` are not to be read.
    pub(super) fn is_over(&self, slot: Slot) -> bool {
        self.accounts.get(slot.0).is_some_and(|a| a.over)
    }

    /// What `slot` holds.
    #[cfg(test)]
    pub(super) fn held(&self, slot: Slot) -> usize {
        self.accounts.get(slot.0).map_or(0, |a| a.held)
    }

    /// Identities with an account.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_identity.len()
    }

    /// What all accounts hold.
    pub(super) fn held_total(&self) -> usize {
        self.accounts.iter().map(|a| a.held).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_pauses_past_its_budget_and_resumes_at_half() {
        let mut b = Budgets::new(1000);
        let s = b.join("id-1");
        assert_eq!(b.hold(s, 1000), Change::None, "at the budget, not past it");
        assert_eq!(b.hold(s, 1), Change::Paused);
        assert_eq!(b.hold(s, 500), Change::None, "paused once");
        assert!(b.is_over(s));
        assert_eq!(b.release(s, 1000), Change::None);
        assert_eq!(b.release(s, 1), Change::Resumed, "at half");
        assert!(!b.is_over(s));
        assert_eq!(b.held(s), 500);
    }

    #[test]
    fn connections_of_one_identity_share_an_account_and_others_have_their_own() {
        let mut b = Budgets::new(1000);
        let (a1, a2, other) = (b.join("a"), b.join("a"), b.join("b"));
        assert_eq!(a1, a2);
        assert_ne!(a1, other);
        b.hold(a1, 600);
        assert_eq!(b.hold(a2, 500), Change::Paused);
        assert!(!b.is_over(other));
        // One connection goes with what it held: the account drains to half.
        assert_eq!(b.leave(a1, 600), Change::Resumed);
        assert_eq!(b.held(a2), 500);
        assert_eq!(b.len(), 2);
        b.leave(a2, 500);
        assert_eq!(b.len(), 1, "closed with its last connection");
        // Its place is used again, empty.
        let c = b.join("c");
        assert_eq!(b.held(c), 0);
        assert!(!b.is_over(c));
    }
}
