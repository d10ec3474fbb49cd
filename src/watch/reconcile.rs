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

pub use crate::apply::{CancelSignal, Canceller, cancel_pair};
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
        cancel: CancelSignal,
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
