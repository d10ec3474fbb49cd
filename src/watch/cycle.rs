//! One watch cycle: load → validate → plan → print (→ apply).
//!
//! The runner reads the inputs the way `oapkg plan` does
//! ([`read_inputs`]), makes the plan the
//! way `oapkg plan` does ([`plan::inputs::make`](crate::plan::inputs::make)),
//! hands it to an [`Output`] to print, and with `--apply` to the
//! [`Reconciler`]. What it adds is memory across cycles, with the rules of
//! [`policy`]: the last inputs planned (to skip a cycle that
//! would print the same plan), the last good desired set (named when the
//! manifests turn invalid), and the refused or failed applies (to back off).
//!
//! It logs every decision with the cycle's number (tracing events with
//! structured fields, so `--log-format json` carries them) and prints
//! nothing itself.

use std::error::Error as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::civil::Date;
use tracing::Instrument as _;

use super::policy::{
    self, ApplyStep, Backoff, Decision, Fingerprint, Gate, Retries, Skip, Verdict,
};
use super::reconcile::{CancelSignal, Reconciled, Reconciler};
use super::schedule::{Start, Trigger};
use crate::manifest::{self, DesiredSet, ManifestError};
use crate::ops::plan::read_inputs;
use crate::plan::Plan;
use crate::plan::inputs;
use crate::state::{StateError, StateStore};

/// Today's date for a cycle (`OAPKG_TODAY` or the clock in
/// Asia/Ho_Chi_Minh), asked once per cycle: a watch runs for months.
pub type Today = Box<dyn Fn() -> Result<Date, String> + Send + Sync>;

/// Where a cycle's plan goes: the CLI prints it (text or a JSON line).
pub trait Output: Send {
    fn plan(&mut self, cycle: &Start, plan: &Plan);
}

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

struct LastGood {
    cycle: u64,
    manifest_hash: String,
    desired: DesiredSet,
}

/// Runs cycles and remembers what the next one needs to know.
pub struct Runner {
    files: Vec<PathBuf>,
    store: StateStore,
    today: Today,
    output: Box<dyn Output>,
    reconciler: Option<Box<dyn Reconciler>>,
    backoff: Backoff,
    last: Option<LastPlanned>,
    last_good: Option<LastGood>,
    retries: Retries,
    input_failures: u32,
    changes: Arc<AtomicU64>,
}

impl Runner {
    /// A runner for the manifests under `files` and the state in `store`.
    /// Without a reconciler it only plans.
    pub fn new(
        files: Vec<PathBuf>,
        store: StateStore,
        today: Today,
        output: Box<dyn Output>,
        reconciler: Option<Box<dyn Reconciler>>,
    ) -> Runner {
        Runner {
            files,
            store,
            today,
            output,
            reconciler,
            backoff: Backoff::default(),
            last: None,
            last_good: None,
            retries: Retries::default(),
            input_failures: 0,
            changes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Replaces the retry backoff (5 s doubling to 10 min by default).
    pub fn with_backoff(mut self, backoff: Backoff) -> Runner {
        self.backoff = backoff;
        self.retries = Retries::new(backoff);
        self
    }

    /// The counter the file watcher bumps for every relevant change: a
    /// cycle that sees it move while planning does not apply that plan.
    pub fn change_counter(&self) -> Arc<AtomicU64> {
        self.changes.clone()
    }

    /// Whether this runner applies (has a reconciler).
    pub fn applies(&self) -> bool {
        self.reconciler.is_some()
    }

    /// Runs one cycle. `cancel` is the stop request: an apply step in
    /// progress finishes what is in flight, one not yet started is skipped.
    pub async fn run(&mut self, start: &Start, cancel: CancelSignal) -> Outcome {
        let span = tracing::info_span!("watch", cycle = start.id);
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
        let trigger = start.trigger.as_str();
        let paths = describe_paths(start);
        tracing::debug!(cycle, trigger, paths, "cycle started");
        let changes_at_start = self.changes.load(Ordering::SeqCst);

        let today = match (self.today)() {
            Ok(today) => today,
            Err(error) => return self.unreadable(cycle, &error),
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
                tracing::info!(cycle, "stop requested while reading the manifests and the state: nothing was planned or bought");
                return Ran::Unreadable;
            }
        };
        let inputs = read.unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));

        let manifests = match inputs.manifests {
            Ok(manifests) => manifests,
            Err(error) => return self.invalid(cycle, &error),
        };
        let loaded = match inputs.state {
            Ok(loaded) => loaded,
            Err(error) => return self.unreadable(cycle, &state_error(&error)),
        };
        self.input_failures = 0;

        let fingerprint = Fingerprint {
            manifest_hash: manifests.desired.hash().to_string(),
            state: loaded.id.clone(),
        };
        let manifest_hash = fingerprint.manifest_hash.as_str();
        let state_serial = fingerprint.state.serial;
        let gate = self.retries.gate(&fingerprint, Instant::now());
        let decision = policy::decide(
            self.last.as_ref().map(|l| &l.inputs),
            &fingerprint,
            self.applies(),
            gate,
        );
        let step = match decision {
            Decision::Skip(skip) => {
                let since = self.last.as_ref().map_or(0, |l| l.cycle);
                log_skip(cycle, trigger, manifest_hash, state_serial, since, &skip);
                return Ran::Skipped(skip);
            }
            Decision::Plan(step) => step,
        };

        let plan = inputs::make(&manifests, &loaded, today);
        self.output.plan(start, &plan);
        let summary = plan.summary();
        tracing::info!(
            cycle,
            trigger,
            paths,
            manifest_hash,
            state_serial,
            purchase = summary.purchase,
            replace = summary.replace,
            unconfirmed = summary.unconfirmed,
            unchanged = summary.unchanged,
            orphan = summary.orphan,
            expired = summary.expired,
            "planned ({}): {}",
            describe_trigger(start),
            summary.line()
        );
        self.last = Some(LastPlanned {
            cycle,
            inputs: fingerprint.clone(),
        });
        self.last_good = Some(LastGood {
            cycle,
            manifest_hash: fingerprint.manifest_hash.clone(),
            desired: manifests.desired,
        });

        let applied = match step {
            ApplyStep::Never => Applied::NotAsked,
            ApplyStep::Hold(gate) => {
                log_hold(cycle, manifest_hash, &gate);
                Applied::Held
            }
            ApplyStep::Go if !plan.buys_anything() => {
                self.retries
                    .record(&fingerprint, Verdict::Done, Instant::now());
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
        let manifest_hash = fingerprint.manifest_hash.as_str();
        if cancel.is_cancelled() {
            tracing::info!(cycle, manifest_hash, "stopping: this plan is not applied");
            return Applied::Stopped;
        }
        // A plan made from a file caught in the middle of a save must not
        // be bought: whatever changed since the cycle started (events
        // delivered, or a content hash that moved before the watcher told
        // us) puts the apply off to the cycle that change brings.
        let moved = self.changes.load(Ordering::SeqCst) != changes_at_start
            || !self.still_current(manifest_hash, today).await;
        if moved {
            tracing::info!(
                cycle,
                manifest_hash,
                "the manifests changed while planning: planning again before applying anything"
            );
            self.last = None;
            return Applied::PutOff;
        }
        let Some(reconciler) = self.reconciler.as_mut() else {
            return Applied::NotAsked;
        };
        let reconciled = reconciler.reconcile(cycle, plan, cancel).await;
        let verdict = match &reconciled {
            Reconciled::Done { report } => {
                tracing::info!(cycle, manifest_hash, outcome = "done", "{report}");
                Some(Verdict::Done)
            }
            Reconciled::Refused { reason } => {
                tracing::error!(
                    cycle,
                    manifest_hash,
                    outcome = "refused",
                    "apply refused, nothing bought: {reason}; not tried again until the manifests or the state change"
                );
                Some(Verdict::Refused(reason.clone()))
            }
            Reconciled::Failed { reason } => {
                tracing::error!(
                    cycle,
                    manifest_hash,
                    outcome = "failed",
                    "apply failed: {reason}"
                );
                Some(Verdict::Failed(reason.clone()))
            }
            Reconciled::Cancelled { report } => {
                tracing::info!(
                    cycle,
                    manifest_hash,
                    outcome = "cancelled",
                    "apply stopped: {report}"
                );
                None
            }
        };
        if let Some(verdict) = verdict {
            let retry = self.retries.record(fingerprint, verdict, Instant::now());
            if let Some(at) = retry {
                let wait = at.saturating_duration_since(Instant::now());
                tracing::info!(
                    cycle,
                    manifest_hash,
                    retry_in_secs = wait.as_secs(),
                    "trying these manifests again in {}, sooner if they change",
                    seconds(wait)
                );
            }
        }
        Applied::Reconciled(reconciled)
    }

    /// Whether the manifests on disk still hash to `manifest_hash`.
    async fn still_current(&self, manifest_hash: &str, today: Date) -> bool {
        let files = self.files.clone();
        let read = tokio::task::spawn_blocking(move || manifest::load(&files, today)).await;
        let again = read.unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
        again.is_ok_and(|m| m.desired.hash() == *manifest_hash)
    }

    fn invalid(&mut self, cycle: u64, error: &ManifestError) -> Ran {
        for diagnostic in &error.errors {
            tracing::error!(
                cycle,
                file = %diagnostic.source.file,
                line = diagnostic.source.line,
                column = diagnostic.source.column,
                "{}",
                one_line(&diagnostic.to_string())
            );
        }
        for warning in &error.warnings {
            tracing::warn!(
                cycle,
                file = %warning.source.file,
                line = warning.source.line,
                column = warning.source.column,
                "{}",
                one_line(&warning.to_string())
            );
        }
        let errors = error.errors.len();
        let kept = match &self.last_good {
            Some(good) => format!(
                "keeping the last good plan (cycle {}, manifests {}, {} packages)",
                good.cycle,
                short_hash(&good.manifest_hash),
                good.desired.packages.len()
            ),
            None => "no valid manifests seen yet".to_owned(),
        };
        tracing::error!(
            cycle,
            errors,
            "the manifests are invalid ({errors} error{}): nothing is planned or bought; {kept}; \
             waiting for the files to change",
            if errors == 1 { "" } else { "s" }
        );
        // The next valid cycle plans and prints, even if the content is the
        // same as before: the person fixing the file wants to see it.
        self.last = None;
        Ran::Invalid { errors }
    }

    fn unreadable(&mut self, cycle: u64, error: &str) -> Ran {
        self.input_failures = self.input_failures.saturating_add(1);
        let wait = self.backoff.delay(self.input_failures);
        tracing::error!(
            cycle,
            retry_in_secs = wait.as_secs(),
            "{error}; nothing is planned or bought; trying again in {}",
            seconds(wait)
        );
        self.last = None;
        Ran::Unreadable
    }
}

fn log_skip(
    cycle: u64,
    trigger: &str,
    manifest_hash: &str,
    state_serial: u64,
    since: u64,
    skip: &Skip,
) {
    match skip {
        Skip::Unchanged => tracing::info!(
            cycle,
            trigger,
            manifest_hash,
            state_serial,
            skipped = "unchanged",
            "skipped ({trigger}): manifests {} and state serial {state_serial} unchanged since cycle {since}",
            short_hash(manifest_hash)
        ),
        Skip::BackingOff { until, failures } => {
            let wait = until.saturating_duration_since(Instant::now());
            tracing::info!(
                cycle,
                trigger,
                manifest_hash,
                state_serial,
                skipped = "backoff",
                failures,
                "skipped ({trigger}): applying these manifests failed {failures} time(s); next attempt in {}",
                seconds(wait)
            )
        }
        Skip::Refused { reason } => tracing::info!(
            cycle,
            trigger,
            manifest_hash,
            state_serial,
            skipped = "refused",
            "skipped ({trigger}): applying these manifests was refused ({reason}); waiting for the manifests or the state to change"
        ),
    }
}

fn log_hold(cycle: u64, manifest_hash: &str, gate: &Gate) {
    match gate {
        Gate::Waiting {
            until,
            failures,
            reason,
        } => tracing::warn!(
            cycle,
            manifest_hash,
            failures,
            "not applying: applying these manifests failed {failures} time(s) ({reason}); next attempt in {}",
            seconds(until.saturating_duration_since(Instant::now()))
        ),
        Gate::Parked { reason } => tracing::warn!(
            cycle,
            manifest_hash,
            "not applying: applying these manifests with this state was refused ({reason}); change the manifests"
        ),
        Gate::Clear | Gate::RetryDue { .. } => {}
    }
}

/// `startup`, `change: a.yaml, b.yaml (+3 more)`, `interval`, `retry`.
pub fn describe_trigger(start: &Start) -> String {
    match start.trigger {
        Trigger::Change if start.path_count > 0 => format!("change: {}", describe_paths(start)),
        trigger => trigger.as_str().to_owned(),
    }
}

fn describe_paths(start: &Start) -> String {
    let mut out = start
        .paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if start.path_count > start.paths.len() {
        out.push_str(&format!(
            " (+{} more)",
            start.path_count - start.paths.len()
        ));
    }
    out
}

/// `sha256:0123456789ab` — enough to tell two versions apart in a log line.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..19).unwrap_or(hash)
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64().ceil() as u64)
}

fn one_line(text: &str) -> String {
    text.replace("\n  ", "; ").replace('\n', "; ")
}

fn state_error(error: &StateError) -> String {
    let mut out = format!("cannot use the state: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    //! The runner on real files with a fake reconciler: the apply-side
    //! rules (refusal parking, backoff, putting off an apply) without a
    //! network or a simulator.

    use std::sync::Mutex;

    use super::*;
    use crate::watch::reconcile::BoxFuture;

    const ONE: &str = "apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - oaid: \"4097311281936189049\"\n    tier: premium\n    start: 2026-12-01\n    duration: 12\n";
    const TWO: &str = "apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - oaid: \"4097311281936189049\"\n    tier: premium\n    start: 2026-12-01\n    duration: 12\n  - oaid: \"745830328927467685\"\n    tier: advanced\n    start: 2027-01-01\n    duration: 6\n";

    #[derive(Clone, Default)]
    struct Printed(Arc<Mutex<Vec<String>>>);

    impl Output for Printed {
        fn plan(&mut self, cycle: &Start, plan: &Plan) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{}: {}", cycle.id, plan.summary_line()));
        }
    }

    /// Answers with the queued outcomes, in order; records the plans.
    struct Fake {
        answers: Vec<Reconciled>,
        calls: Arc<Mutex<Vec<u64>>>,
    }

    impl Reconciler for Fake {
        fn reconcile<'a>(
            &'a mut self,
            cycle: u64,
            _plan: &'a Plan,
            _cancel: CancelSignal,
        ) -> BoxFuture<'a, Reconciled> {
            self.calls.lock().unwrap().push(cycle);
            let answer = self.answers.remove(0);
            Box::pin(async move { answer })
        }
    }

    struct Setup {
        dir: tempfile::TempDir,
        runner: Runner,
        printed: Printed,
        calls: Arc<Mutex<Vec<u64>>>,
        next: u64,
    }

    fn setup(reconciler_answers: Option<Vec<Reconciled>>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("oapkg.yaml"), ONE).unwrap();
        let printed = Printed::default();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let reconciler = reconciler_answers.map(|answers| {
            Box::new(Fake {
                answers,
                calls: calls.clone(),
            }) as Box<dyn Reconciler>
        });
        let runner = Runner::new(
            vec![dir.path().join("oapkg.yaml")],
            StateStore::new(dir.path().join("state/oapkg.state.json")),
            Box::new(|| Ok(jiff::civil::date(2026, 11, 26))),
            Box::new(printed.clone()),
            reconciler,
        );
        Setup {
            dir,
            runner,
            printed,
            calls,
            next: 0,
        }
    }

    impl Setup {
        async fn cycle(&mut self, trigger: Trigger) -> Outcome {
            self.next += 1;
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
        let wrapped = Bump(counter, s.printed.clone());
        s.runner.output = Box::new(wrapped);
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

    /// An output that also bumps the change counter, as a save landing
    /// while the plan is printed would.
    struct Bump(Arc<AtomicU64>, Printed);

    impl Output for Bump {
        fn plan(&mut self, cycle: &Start, plan: &Plan) {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.plan(cycle, plan);
        }
    }

    impl Setup {
        fn with_backoff_ms(mut self, initial: u64, max: u64) -> Setup {
            self.runner.backoff = Backoff {
                initial: Duration::from_millis(initial),
                max: Duration::from_millis(max),
            };
            self.runner.retries = Retries::new(self.runner.backoff);
            self
        }
    }
}
