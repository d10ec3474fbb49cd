//! The seam between a watch cycle and the apply engine.
//!
//! Watch never buys anything itself: with `--apply` the CLI hands the cycle
//! runner a [`Reconciler`] that carries out a fresh [`Plan`] (the apply
//! engine, with the guards, pre-flight, journal and lock of `oapkg apply`);
//! without `--apply` there is no reconciler at all, so a plan-only watch
//! cannot send a purchase request.
//!
//! A reconciler is called only for a plan that buys something, made from
//! valid manifests, whose content did not change while it was planned. It
//! takes the state lock itself for the length of its run, if it writes.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

use crate::plan::Plan;

/// A boxed future, so that [`Reconciler`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries out a plan: the apply step of a `watch --apply` cycle.
pub trait Reconciler: Send {
    /// Applies `plan` (cycle number `cycle`, for the log), stopping early
    /// when `cancel` fires: no new purchase is sent after that, and the ones
    /// in flight finish and are recorded before the future resolves.
    fn reconcile<'a>(
        &'a mut self,
        cycle: u64,
        plan: &'a Plan,
        cancel: Cancel,
    ) -> BoxFuture<'a, Reconciled>;
}

/// How an apply step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// Everything planned is now submitted. `report` is the closing line
    /// (`Apply complete: …`).
    Done { report: String },
    /// A guard refused before anything was bought (more purchases than
    /// `--max-purchases`, a `replace` without `--allow-replace`): the same
    /// inputs would be refused again, so the cycle is not retried until the
    /// manifests or the state change.
    Refused { reason: String },
    /// It did not complete (network, eSMS, lock held, pre-flight refusal,
    /// some purchases failed or stayed unconfirmed): retried with backoff.
    Failed { reason: String },
    /// Stopped by `cancel`; everything in flight was recorded.
    Cancelled { report: String },
}

/// The receiving end of a stop request: cheap to clone, checked or awaited.
#[derive(Clone, Debug)]
pub struct Cancel(watch::Receiver<bool>);

/// The sending end of a stop request.
#[derive(Debug)]
pub struct CancelHandle(watch::Sender<bool>);

impl Cancel {
    /// A pair: the handle fires, every clone of the [`Cancel`] sees it.
    pub fn new() -> (CancelHandle, Cancel) {
        let (tx, rx) = watch::channel(false);
        (CancelHandle(tx), Cancel(rx))
    }

    /// A cancel that never fires.
    pub fn never() -> Cancel {
        let (tx, rx) = watch::channel(false);
        // Dropping the sender does not fire it: `is_cancelled` stays false
        // and `cancelled` never resolves.
        drop(tx);
        Cancel(rx)
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancelled; never, if the handle is dropped unfired.
    pub async fn cancelled(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancel_reaches_every_clone_and_never_never_fires() {
        let (handle, cancel) = Cancel::new();
        let mut other = cancel.clone();
        assert!(!cancel.is_cancelled());
        let waiter = tokio::spawn(async move { other.cancelled().await });
        handle.cancel();
        waiter.await.unwrap();
        assert!(cancel.is_cancelled());

        let mut never = Cancel::never();
        assert!(!never.is_cancelled());
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(20), never.cancelled()).await;
        assert!(waited.is_err());
    }
}
