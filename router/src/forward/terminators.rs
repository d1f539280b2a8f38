//! Terminators hosted by SDKs on this shard, and how one is chosen for a dial.

use std::collections::HashMap;

use bytes::Bytes;
use weft_wire::edge::Precedence;

use super::ConnKey;

/// A bound listener that can take dials for a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminator {
    /// The hosting edge connection.
    pub conn: ConnKey,
    /// The listener's conn id on it.
    pub listener: u32,
    /// Bind session that created it.
    pub session_id: String,
    /// Cost from the Bind (lower is preferred).
    pub cost: u16,
    /// Precedence from the Bind.
    pub precedence: Precedence,
    /// The listener's public key, for end-to-end encryption.
    pub public_key: Option<Bytes>,
    /// Instance identity (header 1006), for dials that ask for one host.
    pub instance: Option<Bytes>,
    /// Controller id once registered; `None` while the controller has not confirmed.
    pub id: Option<String>,
}

fn rank(p: Precedence) -> u8 {
    match p {
        Precedence::Required => 0,
        Precedence::Default => 1,
        Precedence::Failed => 2,
    }
}

/// The terminators of each service.
#[derive(Debug, Default)]
pub(crate) struct Terminators {
    by_service: HashMap<String, Vec<Terminator>>,
    /// (conn, listener) -> service, to find a terminator without a scan.
    service_of: HashMap<(ConnKey, u32), String>,
    /// Rotates among equally good terminators.
    turn: usize,
}

impl Terminators {
    /// Adds `terminator`, replacing the one of the same `(conn, listener)` if any (a
    /// terminator registered again after a controller reconnect is announced again).
    pub(crate) fn insert(&mut self, service_id: &str, terminator: Terminator) {
        self.remove(terminator.conn, terminator.listener);
        self.service_of.insert(
            (terminator.conn, terminator.listener),
            service_id.to_owned(),
        );
        self.by_service
            .entry(service_id.to_owned())
            .or_default()
            .push(terminator);
    }

    /// Removes the terminator of `(conn, listener)`; returns it with its service.
    pub(crate) fn remove(&mut self, conn: ConnKey, listener: u32) -> Option<(String, Terminator)> {
        let service = self.service_of.remove(&(conn, listener))?;
        let list = self.by_service.get_mut(&service)?;
        let index = list
            .iter()
            .position(|t| t.conn == conn && t.listener == listener)?;
        let terminator = list.swap_remove(index);
        if list.is_empty() {
            self.by_service.remove(&service);
        }
        Some((service, terminator))
    }

    /// Removes every terminator hosted on `conn`.
    pub(crate) fn remove_conn(&mut self, conn: ConnKey) -> Vec<Terminator> {
        let listeners: Vec<u32> = self
            .service_of
            .keys()
            .filter(|(c, _)| *c == conn)
            .map(|(_, l)| *l)
            .collect();
        listeners
            .into_iter()
            .filter_map(|l| self.remove(conn, l).map(|(_, t)| t))
            .collect()
    }

    /// The service of the terminator of `(conn, listener)`.
    pub(crate) fn service_of(&self, conn: ConnKey, listener: u32) -> Option<&str> {
        self.service_of.get(&(conn, listener)).map(String::as_str)
    }

    pub(crate) fn get_mut(&mut self, conn: ConnKey, listener: u32) -> Option<&mut Terminator> {
        let service = self.service_of.get(&(conn, listener))?;
        self.by_service
            .get_mut(service)?
            .iter_mut()
            .find(|t| t.conn == conn && t.listener == listener)
    }

    /// The best confirmed terminator for a dial: best precedence (required, default,
    /// failed), then lowest cost; among ties those hosted on shard `local` (no hop to
    /// another shard), rotating among what is left. With `instance`, only terminators
    /// of that instance identity qualify. With `sticky` (the terminator id a stickiness
    /// token names), that terminator wins while it qualifies and its precedence is the
    /// best there is (OpenZiti's `sticky` strategy), whatever its cost.
    pub(crate) fn choose(
        &mut self,
        service_id: &str,
        instance: Option<&[u8]>,
        local: usize,
        sticky: Option<&str>,
    ) -> Option<&Terminator> {
        let list = self.by_service.get(service_id)?;
        let eligible = |t: &&Terminator| {
            t.id.is_some() && instance.is_none_or(|i| t.instance.as_deref() == Some(i))
        };
        let best = list
            .iter()
            .filter(eligible)
            .map(|t| (rank(t.precedence), t.cost, t.conn.shard() != local))
            .min()?;
        if let Some(id) = sticky
            && let Some(t) = list
                .iter()
                .filter(eligible)
                .find(|t| t.id.as_deref() == Some(id))
            && rank(t.precedence) == best.0
        {
            return Some(t);
        }
        let ties = || {
            list.iter()
                .filter(eligible)
                .filter(move |t| (rank(t.precedence), t.cost, t.conn.shard() != local) == best)
        };
        self.turn = self.turn.wrapping_add(1);
        let n = ties().count();
        ties().nth(self.turn % n.max(1))
    }

    /// The terminators that `keep` accepts.
    pub(crate) fn count_where(&self, keep: impl Fn(&Terminator) -> bool) -> usize {
        self.by_service
            .values()
            .flatten()
            .filter(|t| keep(t))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminator(conn: u64, listener: u32, id: &str) -> Terminator {
        Terminator {
            conn: ConnKey(conn),
            listener,
            session_id: "s".into(),
            cost: 0,
            precedence: Precedence::Default,
            public_key: None,
            instance: None,
            id: Some(id.into()),
        }
    }

    #[test]
    fn announcing_a_terminator_again_replaces_it() {
        let mut t = Terminators::default();
        t.insert("svc", terminator(1, 7, "first"));
        t.insert("svc", terminator(1, 7, "second"));
        assert_eq!(t.count_where(|_| true), 1);
        assert_eq!(
            t.choose("svc", None, 0, None).unwrap().id.as_deref(),
            Some("second")
        );
        assert!(t.remove(ConnKey(1), 7).is_some());
        assert!(
            t.choose("svc", None, 0, None).is_none(),
            "nothing stale is left"
        );
    }

    #[test]
    fn a_stickiness_token_wins_while_its_terminator_is_among_the_best_by_precedence() {
        let mut t = Terminators::default();
        let mut cheap = terminator(1, 1, "cheap");
        cheap.cost = 0;
        let mut dear = terminator(2, 1, "dear");
        dear.cost = 50;
        t.insert("svc", cheap);
        t.insert("svc", dear);
        let pick = |t: &mut Terminators, sticky| {
            t.choose("svc", None, 0, sticky)
                .and_then(|x| x.id.clone())
                .unwrap_or_default()
        };
        // Without a token the cheaper one wins; with one, the named one, cost or not.
        assert_eq!(pick(&mut t, None), "cheap");
        for _ in 0..5 {
            assert_eq!(pick(&mut t, Some("dear")), "dear");
        }
        // A token naming a terminator that is gone falls back to the usual choice.
        assert_eq!(pick(&mut t, Some("gone")), "cheap");
        // A required terminator outranks the sticky one, which then loses.
        let mut required = terminator(3, 1, "required");
        required.precedence = Precedence::Required;
        t.insert("svc", required);
        assert_eq!(pick(&mut t, Some("dear")), "required");
    }
}
