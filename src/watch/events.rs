//! What watch reports: every decision and happening as a typed
//! [`WatchEvent`], handed to an [`Observer`].
//!
//! The library never prints: the CLI's observer turns events into the plan
//! on stdout and log lines on stderr (text or JSON); a second consumer
//! (notifications, metrics) is one more [`Observer`] in an [`Observers`]
//! list. Events borrow from the cycle that emits them: copy what you keep.
//!
//! Events of a cycle are emitted inside its tracing span (`watch`, with the
//! cycle number), in order, from the task running the cycle; the
//! file-watcher events ([`WatchEvent::WatcherError`],
//! [`WatchEvent::EventsLost`]) come from the watcher's own thread.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::git::GitEvent;
use super::paths::WatchDir;
use super::policy::{ApplyGate, Fingerprint, Skip};
use super::reconcile::{AccountCheck, Reconciled};
use super::schedule::Start;
use crate::apply::{ApplyEvent, HoldReason};
use crate::expiring::Expiring;
use crate::manifest::ManifestError;
use crate::plan::{Change, Plan};
use crate::prices::Money;
use crate::state::StateError;

/// One thing watch did or decided.
#[derive(Clone, Copy, Debug)]
pub enum WatchEvent<'a> {
    /// The file watcher is set up; cycles follow.
    Watching {
        dirs: &'a [WatchDir],
        /// Polling period, or `None` for native file events.
        poll: Option<Duration>,
        debounce: Duration,
        interval: Option<Duration>,
        /// Whether cycles apply (`--apply`).
        apply: bool,
    },
    /// A cycle started: its number, trigger and changed paths.
    CycleStarted { start: &'a Start },
    /// The inputs are those of cycle `since` (and nothing holds an apply
    /// back that a new plan would show): nothing is planned.
    Skipped {
        start: &'a Start,
        inputs: &'a Fingerprint,
        since: u64,
        skip: &'a Skip,
    },
    /// The manifests are invalid: nothing is planned or bought until the
    /// files change.
    Invalid {
        cycle: u64,
        error: &'a ManifestError,
        /// The last cycle that planned from valid manifests, if any.
        last_good: Option<&'a GoodPlan>,
    },
    /// Today's date or the state could not be read: nothing is planned or
    /// bought; the cycle runs again after `retry_in`.
    Unreadable {
        cycle: u64,
        cause: Unreadable<'a>,
        retry_in: Duration,
    },
    /// A stop came while the inputs were being read, and the reading did
    /// not finish in time: the cycle is left, nothing planned or bought.
    ReadAbandoned { cycle: u64 },
    /// The plan of cycle `start` (printed on stdout by the CLI).
    Planned {
        start: &'a Start,
        inputs: &'a Fingerprint,
        plan: &'a Plan,
    },
    /// The plan is not applied: an earlier apply of the same manifests
    /// failed (its backoff runs) or was refused.
    Held {
        cycle: u64,
        inputs: &'a Fingerprint,
        gate: &'a ApplyGate,
    },
    /// The watch is suspended (its suspend file exists): the plan is not
    /// applied. The first cycle after it resumes plans again.
    NotAppliedSuspended {
        cycle: u64,
        inputs: &'a Fingerprint,
        path: &'a Path,
    },
    /// The suspend file appeared: cycles plan but buy nothing.
    Suspended { path: &'a Path },
    /// The suspend file is gone: buying resumes (a cycle follows).
    Resumed { path: &'a Path },
    /// A stop was requested before the apply step: the plan is not applied.
    NotAppliedStopping { cycle: u64, inputs: &'a Fingerprint },
    /// The manifests changed while the cycle planned: the apply is put off
    /// to the cycle that change brings.
    PutOff { cycle: u64, inputs: &'a Fingerprint },
    /// The apply step starts for a plan that buys something.
    ApplyStarted {
        cycle: u64,
        inputs: &'a Fingerprint,
        plan: &'a Plan,
    },
    /// Progress of the apply step, as the apply engine reports it.
    Apply {
        cycle: u64,
        event: &'a ApplyEvent<'a>,
        /// What the change the event is about costs with the plan's price
        /// list (an estimate: eSMS charges its own prices); `None` without
        /// a price list or for an event about no change.
        cost: Option<&'a Money>,
    },
    /// The apply step ended: done, refused, failed or cancelled.
    Applied {
        cycle: u64,
        inputs: &'a Fingerprint,
        reconciled: &'a Reconciled,
    },
    /// A failed apply of these manifests runs again at `at` (sooner if
    /// they change).
    RetryScheduled {
        cycle: u64,
        inputs: &'a Fingerprint,
        at: Instant,
    },
    /// A change of the cycle's plan is held, not bought: it needs a flag
    /// the watch was not given, or its OA failed the pre-flight. The rest
    /// of the plan goes ahead. Reported once while it stays held.
    ChangeHeld {
        cycle: u64,
        change: &'a Change,
        reason: &'a HoldReason,
    },
    /// The pre-flight read a balance below what the cycle's purchases cost
    /// (the apply step fails and is retried with backoff). Reported when
    /// the balance becomes too low, not again while each later pre-flight
    /// still finds it too low; once one finds enough, a new shortfall is
    /// reported again.
    LowBalance {
        cycle: u64,
        balance: f64,
        cost: &'a Money,
    },
    /// The credentials check of `--apply` (one `GetBalance`, at start-up
    /// and on each `--interval` cycle): accepted with the balance read,
    /// rejected, or eSMS unreachable.
    AccountChecked {
        cycle: u64,
        check: &'a AccountCheck,
        /// The first check, or one whose kind (accepted, rejected,
        /// unreachable) differs from the check before: notified, where
        /// the same result again is only logged.
        changed: bool,
    },
    /// Every OA's last coverage (declared or recorded) that has not ended,
    /// after each plan: for metrics.
    Coverage { cycle: u64, ends: &'a [Expiring] },
    /// An OA's coverage ends within 30 days with nothing declared or
    /// recorded after it. Reported at most once per OA per local day.
    Expiring { cycle: u64, oa: &'a Expiring },
    /// Cycle `cycle` ended (whatever it did: the events before say).
    CycleFinished { cycle: u64 },
    /// A stop was requested while cycle `cycle` runs: it finishes first.
    StopRequested { cycle: u64 },
    /// A watched directory is gone; it is watched again once it is back
    /// and a cycle runs.
    DirGone { dir: &'a Path },
    /// A watched directory was replaced and is watched again.
    DirRewatched { dir: &'a Path },
    /// A replaced directory cannot be watched again.
    DirRewatchFailed { dir: &'a Path, error: &'a str },
    /// The file watcher reported an error (not seen before): a cycle runs
    /// to be safe.
    WatcherError { error: &'a str },
    /// The file watcher lost events (queue overflow): a cycle runs.
    EventsLost,
    /// What following the Git branch found (`--git-remote`): the commit
    /// checked out, one moved to, one refused, a fetch that failed.
    Git { event: &'a GitEvent<'a> },
    /// Watching ended after a stop request.
    Stopped,
}

/// Why a cycle could not read its inputs.
#[derive(Clone, Copy, Debug)]
pub enum Unreadable<'a> {
    /// Today's date (`OAPKG_TODAY` or the clock).
    Today(&'a str),
    State(&'a StateError),
}

/// The last cycle planned from valid manifests, named when they turn
/// invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoodPlan {
    pub cycle: u64,
    pub manifest_hash: String,
    /// How many packages the manifests declared.
    pub packages: usize,
}

impl WatchEvent<'_> {
    /// A stable snake_case name for the kind of event (metrics, tests).
    pub fn name(&self) -> &'static str {
        match self {
            WatchEvent::Watching { .. } => "watching",
            WatchEvent::CycleStarted { .. } => "cycle_started",
            WatchEvent::Skipped { .. } => "skipped",
            WatchEvent::Invalid { .. } => "invalid",
            WatchEvent::Unreadable { .. } => "unreadable",
            WatchEvent::ReadAbandoned { .. } => "read_abandoned",
            WatchEvent::Planned { .. } => "planned",
            WatchEvent::Held { .. } => "held",
            WatchEvent::NotAppliedStopping { .. } => "not_applied_stopping",
            WatchEvent::NotAppliedSuspended { .. } => "not_applied_suspended",
            WatchEvent::Suspended { .. } => "suspended",
            WatchEvent::Resumed { .. } => "resumed",
            WatchEvent::PutOff { .. } => "put_off",
            WatchEvent::ApplyStarted { .. } => "apply_started",
            WatchEvent::Apply { .. } => "apply",
            WatchEvent::Applied { .. } => "applied",
            WatchEvent::RetryScheduled { .. } => "retry_scheduled",
            WatchEvent::ChangeHeld { .. } => "change_held",
            WatchEvent::LowBalance { .. } => "low_balance",
            WatchEvent::AccountChecked { .. } => "account_checked",
            WatchEvent::Coverage { .. } => "coverage",
            WatchEvent::Expiring { .. } => "expiring",
            WatchEvent::CycleFinished { .. } => "cycle_finished",
            WatchEvent::StopRequested { .. } => "stop_requested",
            WatchEvent::DirGone { .. } => "dir_gone",
            WatchEvent::DirRewatched { .. } => "dir_rewatched",
            WatchEvent::DirRewatchFailed { .. } => "dir_rewatch_failed",
            WatchEvent::WatcherError { .. } => "watcher_error",
            WatchEvent::EventsLost => "events_lost",
            WatchEvent::Git { .. } => "git",
            WatchEvent::Stopped => "stopped",
        }
    }
}

/// Receives watch's events. Called from the cycle's task and from the file
/// watcher's thread, so it must be cheap and must not block for long.
pub trait Observer: Send + Sync {
    fn event(&self, event: &WatchEvent<'_>);
}

impl<F: Fn(&WatchEvent<'_>) + Send + Sync> Observer for F {
    fn event(&self, event: &WatchEvent<'_>) {
        self(event);
    }
}

/// Several observers, each given every event, in order.
#[derive(Clone, Default)]
pub struct Observers(Vec<Arc<dyn Observer>>);

impl Observers {
    pub fn new() -> Observers {
        Observers::default()
    }

    /// Adds `observer` after the ones already there.
    pub fn with(mut self, observer: Arc<dyn Observer>) -> Observers {
        self.0.push(observer);
        self
    }
}

impl Observer for Observers {
    fn event(&self, event: &WatchEvent<'_>) {
        for observer in &self.0 {
            observer.event(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn observers_hand_every_event_to_each_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tagged = |tag: &'static str| -> Arc<dyn Observer> {
            let seen = seen.clone();
            Arc::new(move |event: &WatchEvent<'_>| {
                seen.lock().unwrap().push(format!("{tag} {}", event.name()));
            })
        };
        let observers = Observers::new().with(tagged("log")).with(tagged("metrics"));
        observers.event(&WatchEvent::StopRequested { cycle: 3 });
        observers.event(&WatchEvent::Stopped);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "log stop_requested",
                "metrics stop_requested",
                "log stopped",
                "metrics stopped"
            ]
        );
    }
}
