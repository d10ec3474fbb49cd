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
//!
//! [`ApplyReconciler`] is the one `watch --apply` uses; [`reconciled`] is
//! the rule that turns an apply run's result into how the step ended
//! (which the retry rules of [`policy`](super::policy) act on).

use std::future::Future;
use std::pin::Pin;

use crate::apply::{self, ApplyError, ApplyEvent, ApplyOptions, ApplyReport, StopReason};
pub use crate::apply::{CancelSignal, Canceller, cancel_pair};
use crate::esms::Client;
use crate::plan::Plan;
use crate::state::Store;

/// Where a reconciler reports the apply engine's progress (the cycle wraps
/// each event in [`WatchEvent::Apply`](super::WatchEvent::Apply)).
pub type Progress<'a> = &'a (dyn Fn(ApplyEvent<'_>) + Sync);

/// A boxed future, so that [`Reconciler`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries out a plan: the apply step of a `watch --apply` cycle.
pub trait Reconciler: Send {
    /// Applies `plan`, reporting progress to `progress`, stopping early
    /// when `cancel` fires: no new purchase is sent after that, and the ones
    /// in flight finish and are recorded before the future resolves.
    fn reconcile<'a>(
        &'a mut self,
        plan: &'a Plan,
        progress: Progress<'a>,
        cancel: CancelSignal,
    ) -> BoxFuture<'a, Reconciled>;

    /// Checks that the account takes the credentials (one `GetBalance`),
    /// buying nothing: at start-up and on each `--interval` cycle, so
    /// wrong keys show before the next change needs them. `None` when
    /// this reconciler has no account to ask.
    fn check_account(&mut self) -> BoxFuture<'_, Option<AccountCheck>> {
        Box::pin(async { None })
    }
}

/// What the credentials check found.
#[derive(Clone, Debug, PartialEq)]
pub enum AccountCheck {
    /// eSMS took the keys; the balance it read.
    Accepted { balance: f64 },
    /// eSMS refused the keys, the caller's IP or the account (codes 101,
    /// 140, 143): no purchase can succeed until someone fixes it.
    Rejected { reason: String },
    /// No usable answer (network, eSMS down, rate limited): nothing is
    /// known about the keys.
    Unreachable { reason: String },
}

/// The eSMS codes that mean the credentials cannot be used: wrong keys,
/// a caller IP not whitelisted, an account locked or not activated.
const REJECTING_CODES: [&str; 3] = ["101", "140", "143"];

impl AccountCheck {
    /// The check's result from a `GetBalance` answer.
    pub fn from_balance(
        answer: Result<crate::esms::Balance, crate::esms::CallError>,
    ) -> AccountCheck {
        match answer {
            Ok(balance) => AccountCheck::Accepted {
                balance: balance.amount,
            },
            Err(error)
                if error
                    .code()
                    .is_some_and(|code| REJECTING_CODES.contains(&code)) =>
            {
                AccountCheck::Rejected {
                    reason: error.to_string(),
                }
            }
            Err(error) => AccountCheck::Unreachable {
                reason: error.to_string(),
            },
        }
    }
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

/// How an apply run ended, for watch: a complete run is `Done`; a guard's
/// refusal is `Refused` (the same inputs would be refused again); a run
/// stopped by the stop request is `Cancelled`; anything else — an error
/// before anything was sent, or purchases failed, unconfirmed or not
/// attempted — is `Failed`, to be tried again with backoff.
pub fn reconciled(result: Result<ApplyReport, ApplyError>) -> Reconciled {
    match result {
        Ok(report) if report.succeeded() => Reconciled::Done {
            report: report.summary_line(),
        },
        Ok(report) if matches!(report.stopped, Some(StopReason::Cancelled)) => {
            Reconciled::Cancelled {
                report: report.summary_line(),
            }
        }
        Ok(report) => Reconciled::Failed {
            reason: match &report.stopped {
                Some(stop) => format!("{} (stopped: {stop})", report.summary_line()),
                None => report.summary_line(),
            },
        },
        // The reason carries the error's hint (what to do), as `apply`
        // prints it after the error.
        Err(ApplyError::Refused(refusal)) => Reconciled::Refused {
            reason: match refusal.hint() {
                Some(hint) => format!("{refusal}. {hint}"),
                None => refusal.to_string(),
            },
        },
        Err(error) => Reconciled::Failed {
            reason: match error.hint() {
                Some(hint) => format!("{:#}. {hint}", anyhow::Error::from(error)),
                None => format!("{:#}", anyhow::Error::from(error)),
            },
        },
    }
}

/// The apply step of `watch --apply`: the apply engine of `oapkg apply`,
/// with its guards, pre-flight, journal and lock, run on each plan that
/// buys something.
pub struct ApplyReconciler {
    store: Store,
    client: Client,
    options: ApplyOptions,
}

impl ApplyReconciler {
    pub fn new(store: Store, client: Client, options: ApplyOptions) -> ApplyReconciler {
        ApplyReconciler {
            store,
            client,
            options,
        }
    }
}

impl Reconciler for ApplyReconciler {
    fn reconcile<'a>(
        &'a mut self,
        plan: &'a Plan,
        progress: Progress<'a>,
        cancel: CancelSignal,
    ) -> BoxFuture<'a, Reconciled> {
        Box::pin(async move {
            let result = apply::apply(
                plan,
                &self.store,
                &self.client,
                &self.options,
                progress,
                cancel,
            )
            .await;
            reconciled(result)
        })
    }

    fn check_account(&mut self) -> BoxFuture<'_, Option<AccountCheck>> {
        Box::pin(async move { Some(AccountCheck::from_balance(self.client.balance().await)) })
    }
}

#[cfg(test)]
mod tests {
    //! The rule that turns an apply run into watch's done / refused /
    //! failed / cancelled, on made-up reports.

    use super::*;
    use crate::apply::{Counts, GuardRefusal, PreflightError};

    fn report(failed: usize, stopped: Option<StopReason>) -> ApplyReport {
        ApplyReport {
            purchased: 2,
            failed,
            stopped,
            ..ApplyReport::default()
        }
    }

    #[test]
    fn a_complete_run_is_done_with_its_summary() {
        assert_eq!(
            reconciled(Ok(report(0, None))),
            Reconciled::Done {
                report: "Apply complete: 2 purchased, 0 failed, 0 unconfirmed.".into()
            }
        );
    }

    #[test]
    fn a_guard_refusal_is_refused_and_other_errors_fail() {
        let refusal = GuardRefusal::TooManyPurchases {
            counts: Counts {
                purchase: 3,
                ..Counts::default()
            },
            max: 2,
        };
        let Reconciled::Refused { reason } = reconciled(Err(ApplyError::Refused(refusal))) else {
            panic!("a guard refuses");
        };
        assert!(reason.contains("--max-purchases 2"), "{reason}");
        // Pre-flight refusals may pass later (the OA is added to the
        // account): failed, so retried with backoff.
        let preflight = ApplyError::Preflight(PreflightError::MissingOas {
            oaids: vec!["1001".into()],
        });
        let Reconciled::Failed { reason } = reconciled(Err(preflight)) else {
            panic!("pre-flight fails");
        };
        assert!(reason.contains("1001"), "{reason}");
    }

    #[test]
    fn an_incomplete_run_fails_unless_the_stop_request_ended_it() {
        assert_eq!(
            reconciled(Ok(report(1, None))),
            Reconciled::Failed {
                reason: "Apply complete: 2 purchased, 1 failed, 0 unconfirmed.".into()
            }
        );
        let fatal = StopReason::Fatal {
            code: "103".into(),
            message: "balance".into(),
        };
        let Reconciled::Failed { reason } = reconciled(Ok(report(0, Some(fatal)))) else {
            panic!("a fatal answer fails");
        };
        assert!(reason.contains("(stopped: "), "{reason}");
        assert_eq!(
            reconciled(Ok(report(0, Some(StopReason::Cancelled)))),
            Reconciled::Cancelled {
                report: "Apply complete: 2 purchased, 0 failed, 0 unconfirmed.".into()
            }
        );
    }
}
