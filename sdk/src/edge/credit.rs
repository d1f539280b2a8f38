//! Weft's per-stream credit, SDK side (`docs/wire-format.md` §6a).
//!
//! Negotiated on the hello: our hello offers [`RECEIVE_WINDOW`], and a Weft router's
//! Result answers with the window it grants each of our streams. Then each stream
//! waits for credit before it sends ([`SendCredit`]) and grants the router what its
//! application has read ([`Grants`]), so a stream whose reader stalls holds up only its
//! own sender, never the other streams of the connection. With a router that does not
//! answer (an OpenZiti router), none of this is used.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

/// Bytes the router may send on one of our streams before we grant more: what one
/// stream may hold in our memory when its application does not read.
pub(crate) const RECEIVE_WINDOW: u32 = 4 * 1024 * 1024;

/// What one stream may still send; the connection's reader adds what the router grants.
#[derive(Debug)]
pub(crate) struct SendCredit {
    credit: AtomicI64,
    closed: AtomicBool,
    waker: AtomicWaker,
}

impl SendCredit {
    /// A stream's credit, starting at the router's window.
    pub(crate) fn new(window: u32) -> Arc<Self> {
        Arc::new(Self {
            credit: AtomicI64::new(i64::from(window)),
            closed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        })
    }

    /// The router granted `bytes` more.
    pub(crate) fn grant(&self, bytes: u32) {
        self.credit.fetch_add(i64::from(bytes), Ordering::AcqRel);
        self.waker.wake();
    }

    /// The stream or its connection ended: a sender waiting for credit wakes up.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready with `true` once a frame may start (credit above zero), with `false` when
    /// the stream ended first.
    pub(crate) fn poll_available(&self, cx: &mut Context<'_>) -> Poll<bool> {
        if let Some(ready) = self.ready() {
            return Poll::Ready(ready);
        }
        self.waker.register(cx.waker());
        // Checked again after registering, so a grant in between is not missed.
        match self.ready() {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    fn ready(&self) -> Option<bool> {
        if self.closed.load(Ordering::Acquire) {
            Some(false)
        } else if self.credit.load(Ordering::Acquire) > 0 {
            Some(true)
        } else {
            None
        }
    }

    /// A Data body of `bytes` went out (it may take the credit below zero).
    pub(crate) fn spend(&self, bytes: usize) {
        self.credit
            .fetch_sub(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::AcqRel);
    }
}

/// What a stream's application has consumed and the router has not been granted yet;
/// grants go out an eighth of the window at a time.
#[derive(Debug, Default)]
pub(crate) struct Grants {
    ungranted: u32,
}

impl Grants {
    /// Smallest grant sent.
    const BATCH: u32 = RECEIVE_WINDOW / 8;

    /// The application consumed a Data body of `bytes`; returns the grant to send, if
    /// one is due.
    pub(crate) fn consumed(&mut self, bytes: usize) -> Option<u32> {
        self.ungranted = self
            .ungranted
            .saturating_add(u32::try_from(bytes).unwrap_or(u32::MAX));
        (self.ungranted >= Self::BATCH).then(|| std::mem::take(&mut self.ungranted))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_sender_waits_for_credit_and_wakes_on_a_grant_or_a_close() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let credit = SendCredit::new(100);
        assert_eq!(credit.poll_available(&mut cx), Poll::Ready(true));
        // A frame larger than the credit may start; then the sender waits.
        credit.spend(150);
        assert_eq!(credit.poll_available(&mut cx), Poll::Pending);
        credit.grant(40);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken by the grant");
        assert_eq!(credit.poll_available(&mut cx), Poll::Pending, "still -10");
        credit.grant(11);
        assert_eq!(credit.poll_available(&mut cx), Poll::Ready(true));
        credit.spend(1_000);
        assert_eq!(credit.poll_available(&mut cx), Poll::Pending);
        credit.close();
        assert_eq!(credit.poll_available(&mut cx), Poll::Ready(false));
    }

    #[test]
    fn grants_go_out_in_batches_of_an_eighth_of_the_window() {
        let mut grants = Grants::default();
        let step = (Grants::BATCH / 4) as usize;
        assert_eq!(grants.consumed(step), None);
        assert_eq!(grants.consumed(step), None);
        assert_eq!(grants.consumed(step), None);
        assert_eq!(grants.consumed(step + 1), Some(Grants::BATCH + 1));
        assert_eq!(grants.consumed(1), None, "the count starts over");
    }
}
