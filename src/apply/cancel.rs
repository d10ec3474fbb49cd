//! Asking a running apply to stop: a [`Canceller`] held by whoever decides
//! (the CLI's signal handler, `watch` on shutdown) and [`CancelSignal`]s
//! handed to [`apply`](super::apply).
//!
//! Cancelling is a request, not an abort: the executor stops *sending*, lets
//! every request already sent get its answer and records it, then returns.
//! Dropping the `apply` future instead would leave requests in flight
//! unrecorded (they stay `unconfirmed` in the journal: safe, but not tidy).

use tokio::sync::watch;

/// Flips every [`CancelSignal`] made from it. Dropping it does *not* cancel.
#[derive(Debug)]
pub struct Canceller(watch::Sender<bool>);

/// Tells a running apply that it should stop sending new requests.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct CancelSignal(Option<watch::Receiver<bool>>);

/// A connected [`Canceller`] and [`CancelSignal`].
pub fn cancel_pair() -> (Canceller, CancelSignal) {
    let (tx, rx) = watch::channel(false);
    (Canceller(tx), CancelSignal(Some(rx)))
}

impl Canceller {
    /// Asks every apply holding a signal from this canceller to stop.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    /// Another signal connected to this canceller.
    pub fn signal(&self) -> CancelSignal {
        CancelSignal(Some(self.0.subscribe()))
    }
}

impl CancelSignal {
    /// A signal that never fires (for callers that never cancel).
    pub fn never() -> CancelSignal {
        CancelSignal(None)
    }

    /// Whether cancellation has been asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves once cancellation is asked for; never, for
    /// [`CancelSignal::never`] or when the canceller is gone without
    /// cancelling.
    pub async fn cancelled(&self) {
        match &self.0 {
            Some(rx) => {
                let mut rx = rx.clone();
                if rx.wait_for(|cancelled| *cancelled).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_signal_fires_when_cancelled_and_not_before() {
        let (canceller, signal) = cancel_pair();
        assert!(!signal.is_cancelled());
        let early = tokio::time::timeout(Duration::from_millis(20), signal.cancelled()).await;
        assert!(early.is_err(), "fired before cancel");
        let other = canceller.signal();
        canceller.cancel();
        assert!(signal.is_cancelled() && other.is_cancelled());
        signal.cancelled().await;
        other.cancelled().await;
    }

    #[tokio::test]
    async fn never_and_a_dropped_canceller_never_fire() {
        let never = CancelSignal::never();
        assert!(!never.is_cancelled());
        let (canceller, signal) = cancel_pair();
        drop(canceller);
        for s in [never, signal] {
            let waited = tokio::time::timeout(Duration::from_millis(20), s.cancelled()).await;
            assert!(waited.is_err());
        }
    }
}
