//! One watch cycle: load → validate → plan → report (→ apply).
//!
//! The runner reads the inputs the way `oapkg plan` does
//! ([`read_inputs`]), makes the plan the
//! way `oapkg plan` does ([`plan::inputs::make`](crate::plan::inputs::make)),
//! reports it as a [`WatchEvent::Planned`], and with `--apply` hands it to
//! the [`Reconciler`]. What it adds is memory across cycles, with the rules
//! of [`policy`]: the last inputs planned (to skip a cycle that would print
//! the same plan), the last good plan (named when the manifests turn
//! invalid), and the refused or failed applies (to back off); the changes
//! the apply step held (each reported once as [`WatchEvent::ChangeHeld`]
//! while it stays held), the OAs reported expiring today (once per OA
//! per day), and whether a low balance was reported (once until a
//! pre-flight finds enough). After each plan it reports every OA's coverage end
//! ([`WatchEvent::Coverage`]). With a suspend file that exists, the plan
//! is not applied ([`WatchEvent::NotAppliedSuspended`]) and, while the
//! inputs stay the same, not printed again; the first cycle after the file
//! is gone plans and applies.
//!
//! It reports every decision as a [`WatchEvent`] to its [`Observer`],
//! inside the cycle's tracing span, and prints nothing itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::civil::Date;
use tracing::Instrument as _;

use super::events::{GoodPlan, Observer, Unreadable, WatchEvent};
use super::git::short_commit;
use super::policy::{
    self, ApplyResult, ApplyStep, CycleBackoff, CycleDecision, Fingerprint, Retries, Skip,
};
use super::reconcile::{AccountCheck, CancelSignal, Reconciled, Reconciler};
use super::schedule::{Start, Trigger};
use crate::apply::{ApplyEvent, HoldReason};
use crate::clock::Clock;
use crate::expiring;
use crate::manifest::{self, ManifestError};
use crate::ops::plan::read_inputs;
use crate::plan::Plan;
use crate::plan::inputs;
use crate::spec::{Key, Oaid};

/// How long a stop waits for the reading of the inputs to finish.
const STOP_READ_GRACE: Duration = Duration::from_millis(500);

/// What a cycle did, for the loop and for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ran {
    Skipped(Skip),
    /// The manifests are invalid (`errors` problems); nothing planned.
    Invalid {
        errors: usize,
    },
    /// Today's date or the state could not be read; retried with backoff.
    Unreadable,
    Planned(Applied),
}

/// What happened after a plan was printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Plan-only watch.
    NotAsked,
    /// The plan buys nothing.
    NothingToBuy,
    /// A refused or failed apply of the same manifests holds it back.
    Held,
    /// The manifests changed while planning: the next cycle plans again.
    PutOff,
    /// A stop was requested before the apply step.
    Stopped,
    /// The watch is suspended (its suspend file exists).
    Suspended,
    Reconciled(Reconciled),
}

/// A finished cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ran: Ran,
    /// When a backed-off cycle should run again, if one should.
    pub retry_at: Option<Instant>,
}

struct LastPlanned {
    cycle: u64,
    inputs: Fingerprint,
}

/// Runs cycles and remembers what the next one needs to know.
pub struct Runner {
    files: Vec<PathBuf>,
    store: crate::state::Store,
    /// Asked for today's date once per cycle: a watch runs for months.
    clock: Clock,
    observer: Arc<dyn Observer>,
    reconciler: Option<Box<dyn Reconciler>>,
    backoff: CycleBackoff,
    last: Option<LastPlanned>,
    last_good: Option<GoodPlan>,
    retries: Retries,
    input_failures: u32,
    changes: Arc<AtomicU64>,
    /// The changes held by the last apply step, with why: a change is
    /// reported when it becomes held (or held for another reason), not
    /// again while it stays so.
    held: BTreeMap<Key, HoldReason>,
    /// The day each expiring OA was last reported.
    expiring_told: BTreeMap<Oaid, Date>,
    /// While this file exists, nothing is bought.
    suspend_file: Option<PathBuf>,
    /// A plan was not applied because the watch was suspended: the first
    /// cycle that finds the suspend file gone plans (and applies) again,
    /// while the cycles before it skip unchanged inputs like any other.
    suspended_plan: bool,
    /// A low balance was reported and no pre-flight since found enough:
    /// [`WatchEvent::LowBalance`] is reported when the balance becomes too
    /// low, not again on each retry while it stays so.
    low_balance_told: bool,
    /// Values no manifest may hold (the eSMS keys): a cycle whose manifests
    /// hold one is invalid (see [`crate::secrets::in_manifests`]).
    forbidden: Vec<crate::secrets::Forbidden>,
    /// The kind of the last credentials check's result.
    account_checked: Option<std::mem::Discriminant<AccountCheck>>,
    /// The commit of the followed Git branch the files come from
    /// (`--git-remote`), named in each cycle's span.
    commit: Option<String>,
}

/// How far ahead [`WatchEvent::Expiring`] looks, as `oapkg expiring`.
const EXPIRING_WITHIN_DAYS: u32 = 30;

impl Runner {
    /// A runner for the manifests under `files` and the state in `store`,
    /// reporting to `observer`. Without a reconciler it only plans.
    pub fn new(
        files: Vec<PathBuf>,
        store: crate::state::Store,
        clock: Clock,
        observer: Arc<dyn Observer>,
        reconciler: Option<Box<dyn Reconciler>>,
    ) -> Runner {
        Runner {
            files,
            store,
            clock,
            observer,
            reconciler,
            backoff: CycleBackoff::default(),
            last: None,
            last_good: None,
            retries: Retries::default(),
            input_failures: 0,
            changes: Arc::new(AtomicU64::new(0)),
            held: BTreeMap::new(),
            expiring_told: BTreeMap::new(),
            suspend_file: None,
            suspended_plan: false,
            low_balance_told: false,
            forbidden: Vec::new(),
            account_checked: None,
            commit: None,
        }
    }

    /// Cycles whose manifests hold one of `secrets` (the eSMS keys) are
    /// invalid: logged with file and line, never the value, and nothing is
    /// planned or bought from them.
    pub fn refuse_secrets(mut self, secrets: Vec<crate::secrets::Forbidden>) -> Runner {
        self.forbidden = secrets;
        self
    }

    /// The files now come from Git commit `commit`: the next cycles name
    /// it in their span (`commit` field of every log record).
    pub fn at_commit(&mut self, commit: String) {
        self.commit = Some(commit);
    }

    /// While `path` exists, cycles plan but buy nothing.
    pub fn suspend_with(mut self, path: Option<PathBuf>) -> Runner {
        self.suspend_file = path;
        self
    }

    /// The counter the file watcher bumps for every relevant change: a
    /// cycle that sees it move while planning does not apply that plan.
    pub fn change_counter(&self) -> Arc<AtomicU64> {
        self.changes.clone()
    }

    /// Where this runner's events go (the watch loop and the file watcher
    /// report there too).
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.observer.clone()
    }

    /// Whether this runner applies (has a reconciler).
    pub fn applies(&self) -> bool {
        self.reconciler.is_some()
    }

    fn emit(&self, event: WatchEvent<'_>) {
        self.observer.event(&event);
    }

    /// Runs one cycle. `cancel` is the stop request: an apply step in
    /// progress finishes what is in flight, one not yet started is skipped.
    pub async fn run(&mut self, start: &Start, cancel: CancelSignal) -> Outcome {
        let commit = self.commit.as_deref().map(short_commit);
        let span = tracing::info_span!("watch", cycle = start.id, commit);
        let ran = self.cycle(start, cancel).instrument(span).await;
        let now = Instant::now();
        // Only retries in the future: one that is due but was not served
        // (the manifests turned invalid meanwhile) waits for a change, or
        // the loop would spin on it.
        let retry_at = [self.retries.next_retry(), self.input_retry(now, &ran)]
            .into_iter()
            .flatten()
            .filter(|at| *at > now)
            .min();
        Outcome { ran, retry_at }
    }

    fn input_retry(&self, now: Instant, ran: &Ran) -> Option<Instant> {
        (*ran == Ran::Unreadable).then(|| now + self.backoff.delay(self.input_failures))
    }

    async fn cycle(&mut self, start: &Start, cancel: CancelSignal) -> Ran {
        let cycle = start.id;
        self.emit(WatchEvent::CycleStarted { start });
        if matches!(start.trigger, Trigger::Startup | Trigger::Interval) {
            self.check_account(cycle).await;
        }
        let changes_at_start = self.changes.load(Ordering::SeqCst);

        let today = match self.clock.today().map_err(|e| e.to_string()) {
            Ok(today) => today,
            Err(error) => return self.unreadable(cycle, Unreadable::Today(&error)),
        };
        let files = self.files.clone();
        let store = self.store.clone();
        let reading = tokio::task::spawn_blocking(move || read_inputs(&files, &store, today));
        // A read that blocks (a file system that hangs) must not hold up a
        // stop: if it has not finished [`STOP_READ_GRACE`] after a stop,
        // the cycle is left (nothing has been planned or sent yet) and the
        // reading thread with it.
        let read = tokio::select! {
            read = reading => read,
            () = async {
                cancel.cancelled().await;
                tokio::time::sleep(STOP_READ_GRACE).await;
            } => {
                self.emit(WatchEvent::ReadAbandoned { cycle });
                return Ran::Unreadable;
            }
        };
        let inputs = read.unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));

        let manifests = match inputs.manifests {
            Ok(manifests) => manifests,
            Err(error) => return self.invalid(cycle, &error),
        };
        let secrets = crate::secrets::in_manifests(&manifests.files, &self.forbidden);
        if !secrets.is_empty() {
            let error = ManifestError {
                errors: secrets,
                warnings: Vec::new(),
            };
            return self.invalid(cycle, &error);
        }
        let loaded = match inputs.state {
            Ok(loaded) => loaded,
            Err(error) => return self.unreadable(cycle, Unreadable::State(&error)),
        };
        self.input_failures = 0;
        if self.suspended_plan && !self.suspended() {
            // Resumed: the plan last shown was not applied.
            self.suspended_plan = false;
            self.last = None;
        }

        let fingerprint = Fingerprint {
            manifest_hash: manifests.hash().to_string(),
            state: loaded.id.clone(),
            today,
        };
        let gate = self.retries.gate(&fingerprint, Instant::now());
        let decision = policy::decide(
            self.last.as_ref().map(|l| &l.inputs),
            &fingerprint,
            self.applies(),
            gate,
        );
        let step = match decision {
            CycleDecision::Skip(skip) => {
                let since = self.last.as_ref().map_or(0, |l| l.cycle);
                self.emit(WatchEvent::Skipped {
                    start,
                    inputs: &fingerprint,
                    since,
                    skip: &skip,
                });
                return Ran::Skipped(skip);
            }
            CycleDecision::Plan(step) => step,
        };

        let plan = inputs::make(&manifests, &loaded, today);
        self.emit(WatchEvent::Planned {
            start,
            inputs: &fingerprint,
            plan: &plan,
        });
        self.coverage(cycle, &manifests.desired, &loaded.state.packages, today);
        self.last = Some(LastPlanned {
            cycle,
            inputs: fingerprint.clone(),
        });
        self.last_good = Some(GoodPlan {
            cycle,
            manifest_hash: fingerprint.manifest_hash.clone(),
            packages: manifests.desired.packages.len(),
        });

        let applied = match step {
            ApplyStep::Never => Applied::NotAsked,
            ApplyStep::Hold(gate) => {
                self.emit(WatchEvent::Held {
                    cycle,
                    inputs: &fingerprint,
                    gate: &gate,
                });
                Applied::Held
            }
            ApplyStep::Go if !plan.buys_anything() => {
                self.retries
                    .record(&fingerprint, ApplyResult::Done, Instant::now());
                Applied::NothingToBuy
            }
            ApplyStep::Go => {
                self.apply(cycle, &plan, &fingerprint, changes_at_start, today, cancel)
                    .await
            }
        };
        Ran::Planned(applied)
    }

    async fn apply(
        &mut self,
        cycle: u64,
        plan: &Plan,
        fingerprint: &Fingerprint,
        changes_at_start: u64,
        today: Date,
        cancel: CancelSignal,
    ) -> Applied {
        let inputs = fingerprint;
        if cancel.is_cancelled() {
            self.emit(WatchEvent::NotAppliedStopping { cycle, inputs });
            return Applied::Stopped;
        }
        if self.suspended()
            && let Some(path) = self.suspend_file.as_deref()
        {
            self.emit(WatchEvent::NotAppliedSuspended {
                cycle,
                inputs,
                path,
            });
            // Planned again (and applied) once resumed; until then an
            // unchanged plan is not printed again.
            self.suspended_plan = true;
            return Applied::Suspended;
        }
        // A plan made from a file caught in the middle of a save must not
        // be bought: whatever changed since the cycle started (events
        // delivered, or a content hash that moved before the watcher told
        // us) puts the apply off to the cycle that change brings.
        let moved = self.changes.load(Ordering::SeqCst) != changes_at_start
            || !self.still_current(&fingerprint.manifest_hash, today).await;
        if moved {
            self.emit(WatchEvent::PutOff { cycle, inputs });
            self.last = None;
            return Applied::PutOff;
        }
        let observer = self.observer.clone();
        let Some(reconciler) = self.reconciler.as_mut() else {
            return Applied::NotAsked;
        };
        observer.event(&WatchEvent::ApplyStarted {
            cycle,
            inputs,
            plan,
        });
        let told = std::mem::take(&mut self.held);
        let held = Mutex::new(BTreeMap::new());
        let low_balance = Mutex::new(self.low_balance_told);
        let progress = |event: ApplyEvent<'_>| {
            match event {
                ApplyEvent::Held {
                    change,
                    key,
                    reason,
                } => {
                    if told.get(key) != Some(reason) {
                        observer.event(&WatchEvent::ChangeHeld {
                            cycle,
                            change,
                            reason,
                        });
                    }
                    lock(&held).insert(key.clone(), reason.clone());
                }
                ApplyEvent::Balance { amount, cost } => {
                    let low = amount < cost.amount as f64;
                    let was = std::mem::replace(&mut *lock(&low_balance), low);
                    if low && !was {
                        observer.event(&WatchEvent::LowBalance {
                            cycle,
                            balance: amount,
                            cost,
                        });
                    }
                }
                _ => {}
            }
            let cost = event.change().and_then(|change| plan.cost(change));
            observer.event(&WatchEvent::Apply {
                cycle,
                event: &event,
                cost: cost.as_ref(),
            });
        };
        let reconciled = reconciler.reconcile(plan, &progress, cancel).await;
        self.low_balance_told = low_balance
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A step that ended before the holds were known (a refusal, a
        // failure) forgets nothing: what was held stays reported.
        let held = held
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.held = if matches!(reconciled, Reconciled::Done { .. }) || !held.is_empty() {
            held
        } else {
            told
        };
        self.emit(WatchEvent::Applied {
            cycle,
            inputs,
            reconciled: &reconciled,
        });
        let result = match &reconciled {
            Reconciled::Done { .. } => Some(ApplyResult::Done),
            Reconciled::Refused { reason } => Some(ApplyResult::Refused(reason.clone())),
            Reconciled::Failed { reason } => Some(ApplyResult::Failed(reason.clone())),
            Reconciled::Cancelled { .. } => None,
        };
        if let Some(result) = result
            && let Some(at) = self.retries.record(fingerprint, result, Instant::now())
        {
            self.emit(WatchEvent::RetryScheduled { cycle, inputs, at });
        }
        Applied::Reconciled(reconciled)
    }

    /// The credentials check (with `--apply`): one `GetBalance`, reported
    /// as [`WatchEvent::AccountChecked`].
    async fn check_account(&mut self, cycle: u64) {
        let Some(reconciler) = self.reconciler.as_mut() else {
            return;
        };
        let Some(check) = reconciler.check_account().await else {
            return;
        };
        let kind = std::mem::discriminant(&check);
        let changed = self.account_checked.replace(kind) != Some(kind);
        self.emit(WatchEvent::AccountChecked {
            cycle,
            check: &check,
            changed,
        });
    }

    /// Reports every OA's coverage end, and the OAs expiring within
    /// [`EXPIRING_WITHIN_DAYS`] not yet reported today.
    fn coverage(
        &mut self,
        cycle: u64,
        desired: &crate::manifest::DesiredSet,
        recorded: &BTreeMap<Key, crate::state::Record>,
        today: Date,
    ) {
        let ends = expiring::find(desired, recorded, today, u32::MAX);
        self.emit(WatchEvent::Coverage { cycle, ends: &ends });
        let horizon = today.saturating_add(jiff::Span::new().days(i64::from(EXPIRING_WITHIN_DAYS)));
        for oa in ends.iter().filter(|oa| oa.end <= horizon) {
            if self.expiring_told.get(&oa.oaid) != Some(&today) {
                self.expiring_told.insert(oa.oaid.clone(), today);
                self.emit(WatchEvent::Expiring { cycle, oa });
            }
        }
    }

    /// Whether the suspend file exists.
    fn suspended(&self) -> bool {
        self.suspend_file
            .as_deref()
            .is_some_and(std::path::Path::exists)
    }

    /// Whether the manifests on disk still hash to `manifest_hash`.
    async fn still_current(&self, manifest_hash: &str, today: Date) -> bool {
        let files = self.files.clone();
        let read = tokio::task::spawn_blocking(move || manifest::load(&files, today)).await;
        let again = read.unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
        again.is_ok_and(|m| m.hash() == *manifest_hash)
    }

    fn invalid(&mut self, cycle: u64, error: &ManifestError) -> Ran {
        self.emit(WatchEvent::Invalid {
            cycle,
            error,
            last_good: self.last_good.as_ref(),
        });
        // The next valid cycle plans and prints, even if the content is the
        // same as before: the person fixing the file wants to see it.
        self.last = None;
        Ran::Invalid {
            errors: error.errors.len(),
        }
    }

    fn unreadable(&mut self, cycle: u64, cause: Unreadable<'_>) -> Ran {
        self.input_failures = self.input_failures.saturating_add(1);
        let retry_in = self.backoff.delay(self.input_failures);
        self.emit(WatchEvent::Unreadable {
            cycle,
            cause,
            retry_in,
        });
        self.last = None;
        Ran::Unreadable
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    //! The runner on real files with a fake reconciler: the apply-side
    //! rules (refusal parking, backoff, putting off an apply) without a
    //! network or a simulator.

    use std::sync::Mutex;

    use super::*;
    use crate::state::StateStore;
    use crate::watch::policy::ApplyGate;
    use crate::watch::reconcile::{BoxFuture, Progress};

    const ONE: &str = "apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - oaid: \"4097311281936189049\"\n    tier: premium\n    start: 2026-12-01\n    duration: 12\n";
    const TWO: &str = "apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - oaid: \"4097311281936189049\"\n    tier: premium\n    start: 2026-12-01\n    duration: 12\n  - oaid: \"745830328927467685\"\n    tier: advanced\n    start: 2027-01-01\n    duration: 6\n";

    /// Records each planned cycle's summary, and every event in short.
    #[derive(Clone, Default)]
    struct Printed(Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<String>>>);

    impl Observer for Printed {
        fn event(&self, event: &WatchEvent<'_>) {
            self.1.lock().unwrap().push(describe(event));
            if let WatchEvent::Planned { start, plan, .. } = event {
                self.0
                    .lock()
                    .unwrap()
                    .push(format!("{}: {}", start.id, plan.summary_line()));
            }
        }
    }

    /// Answers with the queued outcomes, in order; records the cycles it
    /// was called in (the number of the cycle started last).
    struct Fake {
        answers: Vec<Reconciled>,
        calls: Arc<Mutex<Vec<u64>>>,
        cycle: Arc<AtomicU64>,
    }

    impl Reconciler for Fake {
        fn reconcile<'a>(
            &'a mut self,
            _plan: &'a Plan,
            progress: Progress<'a>,
            _cancel: CancelSignal,
        ) -> BoxFuture<'a, Reconciled> {
            self.calls
                .lock()
                .unwrap()
                .push(self.cycle.load(Ordering::SeqCst));
            progress(ApplyEvent::Started {
                requests: 1,
                parallelism: 1,
            });
            let answer = self.answers.remove(0);
            Box::pin(async move { answer })
        }
    }

    struct Setup {
        dir: tempfile::TempDir,
        runner: Runner,
        printed: Printed,
        calls: Arc<Mutex<Vec<u64>>>,
        cycle: Arc<AtomicU64>,
        next: u64,
    }

    fn setup(reconciler_answers: Option<Vec<Reconciled>>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("oapkg.yaml"), ONE).unwrap();
        let printed = Printed::default();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let cycle = Arc::new(AtomicU64::new(0));
        let reconciler = reconciler_answers.map(|answers| {
            Box::new(Fake {
                answers,
                calls: calls.clone(),
                cycle: cycle.clone(),
            }) as Box<dyn Reconciler>
        });
        let runner = Runner::new(
            vec![dir.path().join("oapkg.yaml")],
            StateStore::new(dir.path().join("state/oapkg.state.json")).into(),
            crate::clock::Clock::pinned(jiff::civil::date(2026, 11, 26)),
            Arc::new(printed.clone()),
            reconciler,
        );
        Setup {
            dir,
            runner,
            printed,
            calls,
            cycle,
            next: 0,
        }
    }

    impl Setup {
        async fn cycle(&mut self, trigger: Trigger) -> Outcome {
            self.next += 1;
            self.cycle.store(self.next, Ordering::SeqCst);
            let start = Start {
                id: self.next,
                trigger,
                paths: Vec::new(),
                path_count: 0,
            };
            self.runner.run(&start, CancelSignal::never()).await
        }

        fn write(&self, text: &str) {
            std::fs::write(self.dir.path().join("oapkg.yaml"), text).unwrap();
        }

        fn printed(&self) -> Vec<String> {
            self.printed.0.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn plan_only_skips_unchanged_content_and_keeps_going_after_errors() {
        let mut s = setup(None);
        assert_eq!(
            s.cycle(Trigger::Startup).await.ran,
            Ran::Planned(Applied::NotAsked)
        );
        // A comment changes nothing that matters.
        s.write(&format!("# a comment\n{ONE}"));
        assert_eq!(
            s.cycle(Trigger::Change).await.ran,
            Ran::Skipped(Skip::Unchanged)
        );
        // Broken, then fixed back to the same content: printed again.
        s.write("apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - oaid: x\n");
        assert!(matches!(
            s.cycle(Trigger::Change).await.ran,
            Ran::Invalid { .. }
        ));
        s.write(ONE);
        assert_eq!(
            s.cycle(Trigger::Change).await.ran,
            Ran::Planned(Applied::NotAsked)
        );
        s.write(TWO);
        assert_eq!(
            s.cycle(Trigger::Change).await.ran,
            Ran::Planned(Applied::NotAsked)
        );
        assert_eq!(
            s.printed(),
            [
                "1: Plan: 1 to purchase, 0 to replace, 0 unconfirmed, 0 unchanged, 0 orphaned.",
                "4: Plan: 1 to purchase, 0 to replace, 0 unconfirmed, 0 unchanged, 0 orphaned.",
                "5: Plan: 2 to purchase, 0 to replace, 0 unconfirmed, 0 unchanged, 0 orphaned.",
            ]
        );
    }

    #[tokio::test]
    async fn an_unreadable_state_is_retried_with_backoff() {
        let mut s = setup(None);
        std::fs::create_dir_all(s.dir.path().join("state")).unwrap();
        std::fs::write(s.dir.path().join("state/oapkg.state.json"), "{ not json").unwrap();
        let before = Instant::now();
        let outcome = s.cycle(Trigger::Startup).await;
        assert_eq!(outcome.ran, Ran::Unreadable);
        let wait = outcome.retry_at.unwrap() - before;
        assert!(
            wait >= Duration::from_secs(5) && wait < Duration::from_secs(6),
            "{wait:?}"
        );
        let outcome = s.cycle(Trigger::Retry).await;
        let wait = outcome.retry_at.unwrap() - before;
        assert!(wait >= Duration::from_secs(10), "doubles: {wait:?}");
        std::fs::remove_file(s.dir.path().join("state/oapkg.state.json")).unwrap();
        let outcome = s.cycle(Trigger::Retry).await;
        assert_eq!(outcome.ran, Ran::Planned(Applied::NotAsked));
        assert_eq!(outcome.retry_at, None);
    }

    #[tokio::test]
    async fn a_refused_apply_is_not_retried_until_the_manifests_change() {
        let refused = Reconciled::Refused {
            reason: "1 purchase > --max-purchases 0".into(),
        };
        let mut s = setup(Some(vec![refused.clone(), refused.clone()]));
        let outcome = s.cycle(Trigger::Startup).await;
        assert_eq!(
            outcome.ran,
            Ran::Planned(Applied::Reconciled(refused.clone()))
        );
        assert_eq!(outcome.retry_at, None, "no timer");
        for trigger in [Trigger::Interval, Trigger::Change, Trigger::Interval] {
            assert!(matches!(
                s.cycle(trigger).await.ran,
                Ran::Skipped(Skip::Refused { .. })
            ));
        }
        assert_eq!(*s.calls.lock().unwrap(), [1]);
        s.write(TWO);
        assert_eq!(
            s.cycle(Trigger::Change).await.ran,
            Ran::Planned(Applied::Reconciled(refused))
        );
        assert_eq!(*s.calls.lock().unwrap(), [1, 5]);
    }

    #[tokio::test]
    async fn a_failed_apply_backs_off_and_new_content_starts_fresh() {
        let failed = Reconciled::Failed {
            reason: "network".into(),
        };
        let done = Reconciled::Done {
            report: "Apply complete: 1 purchased, 0 failed, 0 unconfirmed.".into(),
        };
        let mut s = setup(Some(vec![failed.clone(), failed.clone(), done.clone()]))
            .with_backoff_ms(200, 1000);
        let t0 = Instant::now();
        let first = s.cycle(Trigger::Startup).await;
        let retry = first.retry_at.expect("a retry is scheduled");
        assert!(retry - t0 < Duration::from_millis(400));
        // Before the backoff ends: skipped.
        assert!(matches!(
            s.cycle(Trigger::Interval).await.ran,
            Ran::Skipped(Skip::BackingOff { failures: 1, .. })
        ));
        tokio::time::sleep_until(retry.into()).await;
        let second = s.cycle(Trigger::Retry).await;
        assert_eq!(second.ran, Ran::Planned(Applied::Reconciled(failed)));
        assert!(
            second.retry_at.unwrap() - retry >= Duration::from_millis(400),
            "doubled"
        );
        // New content: applied at once, whatever the backoff.
        s.write(TWO);
        assert_eq!(
            s.cycle(Trigger::Change).await.ran,
            Ran::Planned(Applied::Reconciled(done))
        );
        assert_eq!(*s.calls.lock().unwrap(), [1, 3, 4]);
    }

    #[tokio::test]
    async fn nothing_to_buy_never_calls_the_reconciler() {
        let mut s = setup(Some(Vec::new()));
        s.write("apiVersion: oapkg/v1\nkind: PackageSet\npackages: []\n");
        assert_eq!(
            s.cycle(Trigger::Startup).await.ran,
            Ran::Planned(Applied::NothingToBuy)
        );
        assert!(s.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_apply_is_put_off_when_the_manifests_move_while_planning() {
        let mut s = setup(Some(Vec::new()));
        // The watcher reports a change after the cycle started.
        let counter = s.runner.change_counter();
        let printed = s.printed.clone();
        s.runner.observer = Arc::new(move |event: &WatchEvent<'_>| {
            if let WatchEvent::Planned { .. } = event {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            printed.event(event);
        });
        assert_eq!(
            s.cycle(Trigger::Startup).await.ran,
            Ran::Planned(Applied::PutOff)
        );
        assert!(s.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_stop_before_the_apply_step_buys_nothing() {
        let mut s = setup(Some(Vec::new()));
        let (handle, cancel) = crate::watch::cancel_pair();
        handle.cancel();
        let start = Start {
            id: 1,
            trigger: Trigger::Startup,
            paths: Vec::new(),
            path_count: 0,
        };
        let outcome = s.runner.run(&start, cancel).await;
        assert_eq!(outcome.ran, Ran::Planned(Applied::Stopped));
        assert!(s.calls.lock().unwrap().is_empty());
    }

    impl Setup {
        fn with_backoff_ms(mut self, initial: u64, max: u64) -> Setup {
            self.runner.backoff = CycleBackoff {
                initial: Duration::from_millis(initial),
                max: Duration::from_millis(max),
            };
            self.runner.retries = Retries::new(self.runner.backoff);
            self
        }
    }

    /// An event in a few words: its name and what a test checks of it.
    fn describe(event: &WatchEvent<'_>) -> String {
        match event {
            WatchEvent::CycleStarted { start } => {
                format!("cycle_started {} {}", start.id, start.trigger.as_str())
            }
            WatchEvent::Skipped { skip, since, .. } => {
                let why = match skip {
                    Skip::Unchanged => "unchanged",
                    Skip::BackingOff { .. } => "backoff",
                    Skip::Refused { .. } => "refused",
                };
                format!("skipped {why} since {since}")
            }
            WatchEvent::Invalid {
                error, last_good, ..
            } => format!(
                "invalid {} error(s), last good {:?}",
                error.errors.len(),
                last_good.map(|good| (good.cycle, good.packages))
            ),
            WatchEvent::Held { gate, .. } => match gate {
                ApplyGate::Waiting { failures, .. } => format!("held: {failures} failure(s)"),
                ApplyGate::Parked { .. } => "held: refused".to_owned(),
                ApplyGate::Clear | ApplyGate::RetryDue { .. } => "held: open?".to_owned(),
            },
            WatchEvent::Apply { event, .. } => match event {
                ApplyEvent::Started { requests, .. } => format!("apply: {requests} request(s)"),
                _ => "apply".to_owned(),
            },
            WatchEvent::Applied { reconciled, .. } => format!(
                "applied {}",
                match reconciled {
                    Reconciled::Done { .. } => "done",
                    Reconciled::Refused { .. } => "refused",
                    Reconciled::Failed { .. } => "failed",
                    Reconciled::Cancelled { .. } => "cancelled",
                }
            ),
            WatchEvent::Unreadable { cause, .. } => format!(
                "unreadable {}",
                match cause {
                    Unreadable::Today(_) => "today",
                    Unreadable::State(_) => "state",
                }
            ),
            other => other.name().to_owned(),
        }
    }

    impl Setup {
        /// The events since the last call.
        fn events(&self) -> Vec<String> {
            std::mem::take(&mut *self.printed.1.lock().unwrap())
        }
    }

    #[tokio::test]
    async fn each_decision_of_an_apply_watch_is_an_event() {
        let failed = Reconciled::Failed {
            reason: "network".into(),
        };
        let refused = Reconciled::Refused {
            reason: "2 purchases > --max-purchases 1".into(),
        };
        let mut s = setup(Some(vec![failed, refused])).with_backoff_ms(60_000, 60_000);
        s.cycle(Trigger::Startup).await;
        assert_eq!(
            s.events(),
            [
                "cycle_started 1 startup",
                "planned",
                "coverage",
                "apply_started",
                "apply: 1 request(s)",
                "applied failed",
                "retry_scheduled",
            ]
        );
        // Same inputs while the backoff runs.
        s.cycle(Trigger::Interval).await;
        assert_eq!(
            s.events(),
            ["cycle_started 2 interval", "skipped backoff since 1"]
        );
        // Broken: reported with the last good plan; fixed to the same
        // content: planned again (shown), but the backoff holds the apply.
        s.write("apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - oaid: x\n");
        s.cycle(Trigger::Change).await;
        let events = s.events();
        assert_eq!(events[0], "cycle_started 3 change");
        assert!(
            events[1].starts_with("invalid ") && events[1].ends_with("last good Some((1, 1))"),
            "{events:?}"
        );
        s.write(ONE);
        s.cycle(Trigger::Change).await;
        assert_eq!(
            s.events(),
            [
                "cycle_started 4 change",
                "planned",
                "coverage",
                "held: 1 failure(s)"
            ]
        );
        // New content applies at once; a refusal schedules no retry.
        s.write(TWO);
        s.cycle(Trigger::Change).await;
        assert_eq!(
            s.events(),
            [
                "cycle_started 5 change",
                "planned",
                "coverage",
                "apply_started",
                "apply: 1 request(s)",
                "applied refused",
            ]
        );
        s.cycle(Trigger::Interval).await;
        assert_eq!(
            s.events(),
            ["cycle_started 6 interval", "skipped refused since 5"]
        );
    }

    #[tokio::test]
    async fn a_plan_only_cycle_reports_plans_skips_and_unreadable_inputs() {
        let mut s = setup(None);
        s.cycle(Trigger::Startup).await;
        s.cycle(Trigger::Interval).await;
        std::fs::create_dir_all(s.dir.path().join("state")).unwrap();
        std::fs::write(s.dir.path().join("state/oapkg.state.json"), "{ not json").unwrap();
        s.cycle(Trigger::Interval).await;
        assert_eq!(
            s.events(),
            [
                "cycle_started 1 startup",
                "planned",
                "coverage",
                "cycle_started 2 interval",
                "skipped unchanged since 1",
                "cycle_started 3 interval",
                "unreadable state",
            ]
        );
    }

    #[tokio::test]
    async fn a_stop_or_a_save_while_planning_is_reported_and_nothing_applied() {
        let mut s = setup(Some(Vec::new()));
        let counter = s.runner.change_counter();
        let printed = s.printed.clone();
        s.runner.observer = Arc::new(move |event: &WatchEvent<'_>| {
            if let WatchEvent::Planned { .. } = event {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            printed.event(event);
        });
        s.cycle(Trigger::Startup).await;
        assert_eq!(
            s.events(),
            ["cycle_started 1 startup", "planned", "coverage", "put_off"]
        );
        let (handle, cancel) = crate::watch::cancel_pair();
        handle.cancel();
        let start = Start {
            id: 2,
            trigger: Trigger::Change,
            paths: Vec::new(),
            path_count: 0,
        };
        s.runner.run(&start, cancel).await;
        assert_eq!(
            s.events(),
            [
                "cycle_started 2 change",
                "planned",
                "coverage",
                "not_applied_stopping"
            ]
        );
        assert!(s.calls.lock().unwrap().is_empty());
    }

    /// Reads the queued balances in turn against a cost of 1,000: below it
    /// the step fails, as the pre-flight makes it.
    struct Balances(Vec<u64>);

    impl Reconciler for Balances {
        fn reconcile<'a>(
            &'a mut self,
            _plan: &'a Plan,
            progress: Progress<'a>,
            _cancel: CancelSignal,
        ) -> BoxFuture<'a, Reconciled> {
            let amount = self.0.remove(0);
            let cost = crate::prices::Money {
                amount: 1_000,
                currency: "VND".into(),
            };
            progress(ApplyEvent::Balance {
                amount: amount as f64,
                cost: &cost,
            });
            let answer = if amount < cost.amount {
                Reconciled::Failed {
                    reason: "low balance".into(),
                }
            } else {
                Reconciled::Done {
                    report: "Apply complete".into(),
                }
            };
            Box::pin(async move { answer })
        }
    }

    #[tokio::test]
    async fn a_low_balance_is_told_when_it_becomes_low_not_while_it_stays_low() {
        let mut s = setup(None);
        s.runner.reconciler = Some(Box::new(Balances(vec![10, 20, 5_000, 30])));
        // Each cycle plans other manifests, so each one applies.
        for text in [ONE, TWO, ONE, TWO] {
            s.write(text);
            s.cycle(Trigger::Change).await;
        }
        let told: Vec<String> = s
            .events()
            .into_iter()
            .filter(|e| e.starts_with("low_balance") || e.starts_with("applied"))
            .collect();
        assert_eq!(
            told,
            [
                "low_balance",
                "applied failed",
                "applied failed",
                "applied done",
                "low_balance",
                "applied failed",
            ]
        );
    }

    #[tokio::test]
    async fn while_suspended_unchanged_inputs_are_planned_once_and_resuming_applies() {
        let mut s = setup(Some(vec![Reconciled::Done {
            report: "Apply complete".into(),
        }]));
        let suspend = s.dir.path().join("oapkg.suspend");
        std::fs::write(&suspend, "").unwrap();
        s.runner.suspend_file = Some(suspend.clone());
        assert_eq!(
            s.cycle(Trigger::Startup).await.ran,
            Ran::Planned(Applied::Suspended)
        );
        for _ in 0..2 {
            assert_eq!(
                s.cycle(Trigger::Interval).await.ran,
                Ran::Skipped(Skip::Unchanged)
            );
        }
        std::fs::remove_file(&suspend).unwrap();
        assert!(matches!(
            s.cycle(Trigger::Change).await.ran,
            Ran::Planned(Applied::Reconciled(Reconciled::Done { .. }))
        ));
        assert_eq!(s.printed().len(), 2, "{:?}", s.printed());
        assert_eq!(*s.calls.lock().unwrap(), [4]);
    }

    /// Answers the credentials checks with the queued results, in turn.
    struct Checks(Vec<AccountCheck>);

    impl Reconciler for Checks {
        fn reconcile<'a>(
            &'a mut self,
            _plan: &'a Plan,
            _progress: Progress<'a>,
            _cancel: CancelSignal,
        ) -> BoxFuture<'a, Reconciled> {
            Box::pin(async {
                Reconciled::Done {
                    report: "Apply complete".into(),
                }
            })
        }

        fn check_account(&mut self) -> BoxFuture<'_, Option<AccountCheck>> {
            let check = self.0.remove(0);
            Box::pin(async move { Some(check) })
        }
    }

    #[tokio::test]
    async fn credentials_are_checked_at_start_up_and_on_interval_cycles_and_a_change_of_result_is_marked()
     {
        let mut s = setup(None);
        let rejected = AccountCheck::Rejected {
            reason: "code 101".into(),
        };
        s.runner.reconciler = Some(Box::new(Checks(vec![
            AccountCheck::Accepted { balance: 5.0 },
            rejected.clone(),
            rejected,
            AccountCheck::Accepted { balance: 6.0 },
        ])));
        let checks = Arc::new(Mutex::new(Vec::new()));
        let seen = checks.clone();
        s.runner.observer = Arc::new(move |event: &WatchEvent<'_>| {
            if let WatchEvent::AccountChecked {
                cycle,
                check,
                changed,
            } = event
            {
                let kind = match check {
                    AccountCheck::Accepted { .. } => "accepted",
                    AccountCheck::Rejected { .. } => "rejected",
                    AccountCheck::Unreachable { .. } => "unreachable",
                };
                seen.lock()
                    .unwrap()
                    .push(format!("{cycle} {kind} {changed}"));
            }
        });
        for trigger in [
            Trigger::Startup,
            Trigger::Change,
            Trigger::Interval,
            Trigger::Day,
            Trigger::Interval,
            Trigger::Retry,
            Trigger::Interval,
        ] {
            s.cycle(trigger).await;
        }
        assert_eq!(
            *checks.lock().unwrap(),
            [
                "1 accepted true",
                "3 rejected true",
                "5 rejected false",
                "7 accepted true"
            ]
        );
    }
}
