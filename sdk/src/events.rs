//! [`Event`]s: what changed for a [`crate::Context`] — services, edge routers,
//! listeners, the identity itself ([`crate::Context::events`]).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::controller::Service;
use crate::error::Error;

/// Events kept for a subscriber that does not keep up; past this it gets
/// [`Event::Missed`].
pub(crate) const EVENT_QUEUE: usize = 256;

/// Something that changed for a context (openziti/sdk-golang's context events).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A service became visible: a policy now grants this identity Dial or Bind on it.
    /// The first listing of services after the context is made reports each service
    /// as added.
    ServiceAdded(Service),
    /// A visible service changed (its permissions, encryption, posture queries or
    /// configs).
    ServiceChanged(Service),
    /// A service is no longer visible (its policies no longer grant it, or it was
    /// deleted).
    ServiceRemoved(Service),
    /// An edge connection to a router is up (its hello was answered).
    RouterConnected {
        /// The router's name.
        router: String,
        /// The address connected to.
        address: String,
    },
    /// An edge connection to a router was lost or closed.
    RouterDisconnected {
        /// The router's name.
        router: String,
        /// The address it was connected to.
        address: String,
        /// Why.
        error: Error,
    },
    /// A listener has a terminator on a router.
    ListenerBound {
        /// The service hosted.
        service: String,
        /// The router holding the terminator.
        router: String,
        /// It replaces a terminator the listener lost.
        rebound: bool,
    },
    /// A listener lost its terminator on a router; it binds again (on that router
    /// or another) with backoff.
    ListenerLost {
        /// The service hosted.
        service: String,
        /// The router that held the terminator.
        router: String,
        /// Why.
        error: Error,
    },
    /// The controller no longer lets this identity in (it was deleted or disabled, or
    /// its certificate is no longer accepted); dials and binds fail with
    /// [`crate::ErrorKind::NotAuthorized`]. Reported once, until a login succeeds again.
    IdentityRevoked(Error),
    /// This subscriber fell behind and missed this many events; list services again
    /// ([`crate::Context::services`]) to catch up.
    Missed(u64),
}

/// The events of a context from the moment of [`crate::Context::events`] on: a
/// [`futures_core::Stream`] of [`Event`]s, or [`Events::recv`]. It ends when the context
/// is gone (every clone dropped, and the streams and listeners it made).
#[derive(Debug)]
pub struct Events(BroadcastStream<Event>);

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> Self {
        Self(BroadcastStream::new(rx))
    }

    /// The next event; `None` once the context is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *self), cx)).await
    }
}

impl futures_core::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let next = ready!(Pin::new(&mut self.0).poll_next(cx));
        Poll::Ready(next.map(|item| match item {
            Ok(event) => event,
            Err(BroadcastStreamRecvError::Lagged(n)) => Event::Missed(n),
        }))
    }
}

/// What changed between two listings of services, as events: `before` is `None` at
/// the first listing (every service is new).
pub(crate) fn service_changes(
    before: Option<&std::collections::HashMap<String, Service>>,
    now: &[Service],
) -> Vec<Event> {
    let mut events = Vec::new();
    for s in now {
        match before.and_then(|b| b.get(&s.id)) {
            None => events.push(Event::ServiceAdded(s.clone())),
            Some(old) if !same(old, s) => events.push(Event::ServiceChanged(s.clone())),
            Some(_) => {}
        }
    }
    if let Some(before) = before {
        let mut gone: Vec<&Service> = before
            .values()
            .filter(|old| !now.iter().any(|s| s.id == old.id))
            .collect();
        gone.sort_by(|a, b| a.name.cmp(&b.name));
        events.extend(gone.into_iter().cloned().map(Event::ServiceRemoved));
    }
    events
}

/// Whether two listings of a service say the same: the seconds left on its MFA posture
/// timeouts count down between any two listings and are not a change.
fn same(a: &Service, b: &Service) -> bool {
    let settled = |s: &Service| {
        let mut s = s.clone();
        for q in s
            .posture_queries
            .iter_mut()
            .flat_map(|set| set.posture_queries.iter_mut())
        {
            q.timeout_remaining = 0;
        }
        s
    };
    a == b || settled(a) == settled(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(id: &str, perms: &[&str]) -> Service {
        Service {
            id: id.into(),
            name: format!("svc-{id}"),
            encryption_required: true,
            permissions: perms.iter().map(|p| (*p).to_string()).collect(),
            posture_queries: Vec::new(),
            configs: Default::default(),
        }
    }

    fn kinds(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::ServiceAdded(s) => format!("+{}", s.id),
                Event::ServiceChanged(s) => format!("~{}", s.id),
                Event::ServiceRemoved(s) => format!("-{}", s.id),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_first_listing_adds_every_service() {
        let now = [svc("a", &["Dial"]), svc("b", &["Bind"])];
        assert_eq!(kinds(&service_changes(None, &now)), ["+a", "+b"]);
    }

    #[test]
    fn later_listings_report_what_was_added_changed_and_removed() {
        let before: std::collections::HashMap<_, _> = [svc("a", &["Dial"]), svc("b", &["Bind"])]
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let now = [svc("a", &["Dial", "Bind"]), svc("c", &["Dial"])];
        assert_eq!(
            kinds(&service_changes(Some(&before), &now)),
            ["~a", "+c", "-b"]
        );
        let same: Vec<Service> = before.values().cloned().collect();
        assert!(service_changes(Some(&before), &same).is_empty());
    }

    #[test]
    fn a_posture_timeout_counting_down_is_not_a_change() {
        let with_timeout = |remaining, passing| {
            let mut s = svc("a", &["Dial"]);
            s.posture_queries = vec![crate::posture::PostureQuerySet {
                policy_id: "p".into(),
                policy_type: "Dial".into(),
                is_passing: passing,
                posture_queries: vec![crate::posture::PostureQuery {
                    id: "mfa".into(),
                    query_type: "MFA".into(),
                    is_passing: passing,
                    timeout: 600,
                    timeout_remaining: remaining,
                    ..Default::default()
                }],
            }];
            s
        };
        let before: std::collections::HashMap<_, _> =
            [("a".to_string(), with_timeout(600, true))].into();
        assert!(service_changes(Some(&before), &[with_timeout(540, true)]).is_empty());
        assert_eq!(
            kinds(&service_changes(Some(&before), &[with_timeout(540, false)])),
            ["~a"],
            "a query that stops passing is a change"
        );
    }
}
