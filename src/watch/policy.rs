//! What a cycle does with the inputs it loaded: skip, plan, or plan and
//! apply; and when a refused or failed apply may be tried again. Pure:
//! instants come in as arguments.
//!
//! The rules (README "Running watch on an admin host"):
//!
//! - A cycle whose inputs — the manifests' content hash
//!   ([`DesiredSet::hash`](crate::manifest::DesiredSet::hash)) and the
//!   state's id — are those of the previous cycle is skipped: nothing a
//!   comment, a reformat or a touch changed can change the plan.
//! - A **refused** apply (a guard: more purchases than `--max-purchases`, a
//!   `replace` without `--allow-replace`) is refused again for the same
//!   inputs, so it is **parked**: not tried again until the manifests or
//!   the state change.
//! - A **failed** apply (network, eSMS, lock held, pre-flight) may succeed
//!   later, so it is tried again with exponential backoff (5 s doubling to
//!   10 minutes) while the manifests' content stays the same; the state may
//!   move meanwhile (a partial apply recorded some purchases) without
//!   resetting the backoff. New manifest content starts fresh.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::state::StateId;

/// The backoff between failed cycles: `initial`, doubling per failure, at
/// most `max`, drawn by `backon` (as apply's retries are), without jitter:
/// a long-running service's log says exactly when it tries again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CycleBackoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for CycleBackoff {
    fn default() -> Self {
        CycleBackoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(600),
        }
    }
}

impl CycleBackoff {
    /// The waits after the 1st, 2nd, … failure in a row.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::new()
            .with_min_delay(self.initial.min(self.max))
            .with_max_delay(self.max)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }

    /// The wait after the `failures`-th failure in a row (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        // Past 31 doublings every wait is `max`.
        let nth = failures.saturating_sub(1).min(31) as usize;
        self.delays().nth(nth).unwrap_or(self.max)
    }
}

/// The inputs of a cycle, as far as deciding is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub manifest_hash: String,
    pub state: StateId,
    /// Today's date: a new day is new input (policies renew, packages
    /// expire).
    pub today: jiff::civil::Date,
}

/// How an apply step ended, for the retry rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyResult {
    /// Everything planned is done (or nothing was to be bought).
    Done,
    /// A guard refused; the same inputs will be refused again.
    Refused(String),
    /// It did not complete; trying again later may succeed.
    Failed(String),
}

/// Whether an apply may run now for some inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyGate {
    /// Nothing held against these inputs.
    Clear,
    /// A failure's backoff is over: try again (`failures` so far).
    RetryDue { failures: u32 },
    /// A failure's backoff runs until `until`.
    Waiting {
        until: Instant,
        failures: u32,
        reason: String,
    },
    /// Refused for exactly these inputs; waiting for them to change.
    Parked { reason: String },
}

#[derive(Clone, Debug)]
struct Setback {
    fingerprint: Fingerprint,
    refused: bool,
    failures: u32,
    not_before: Instant,
    reason: String,
}

/// The memory of the last refused or failed apply.
#[derive(Clone, Debug, Default)]
pub struct Retries {
    backoff: CycleBackoff,
    setback: Option<Setback>,
}

impl Retries {
    pub fn new(backoff: CycleBackoff) -> Retries {
        Retries {
            backoff,
            setback: None,
        }
    }

    /// Whether an apply for `inputs` may run at `now`.
    pub fn gate(&self, inputs: &Fingerprint, now: Instant) -> ApplyGate {
        let Some(setback) = &self.setback else {
            return ApplyGate::Clear;
        };
        if setback.fingerprint.manifest_hash != inputs.manifest_hash {
            return ApplyGate::Clear;
        }
        if setback.refused {
            return if setback.fingerprint.state == inputs.state {
                ApplyGate::Parked {
                    reason: setback.reason.clone(),
                }
            } else {
                ApplyGate::Clear
            };
        }
        if now >= setback.not_before {
            ApplyGate::RetryDue {
                failures: setback.failures,
            }
        } else {
            ApplyGate::Waiting {
                until: setback.not_before,
                failures: setback.failures,
                reason: setback.reason.clone(),
            }
        }
    }

    /// Records how an apply for `inputs` ended at `now`; returns when it may
    /// be tried again, for a failure.
    pub fn record(
        &mut self,
        inputs: &Fingerprint,
        result: ApplyResult,
        now: Instant,
    ) -> Option<Instant> {
        let previous = self
            .setback
            .take()
            .filter(|s| s.fingerprint.manifest_hash == inputs.manifest_hash);
        match result {
            ApplyResult::Done => None,
            ApplyResult::Refused(reason) => {
                self.setback = Some(Setback {
                    fingerprint: inputs.clone(),
                    refused: true,
                    failures: 0,
                    not_before: now,
                    reason,
                });
                None
            }
            ApplyResult::Failed(reason) => {
                let failures = previous
                    .filter(|s| !s.refused)
                    .map_or(1, |s| s.failures.saturating_add(1));
                let not_before = now + self.backoff.delay(failures);
                self.setback = Some(Setback {
                    fingerprint: inputs.clone(),
                    refused: false,
                    failures,
                    not_before,
                    reason,
                });
                Some(not_before)
            }
        }
    }

    /// When a failed apply may be tried again, if one is waiting.
    pub fn next_retry(&self) -> Option<Instant> {
        self.setback
            .as_ref()
            .filter(|s| !s.refused)
            .map(|s| s.not_before)
    }
}

/// What a cycle does once its inputs are loaded and valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CycleDecision {
    /// Nothing to do; the reason is logged.
    Skip(Skip),
    /// Make and print the plan; then apply according to `apply`.
    Plan(ApplyStep),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Same manifest content and state as the last cycle.
    Unchanged,
    /// Same inputs; the last apply failed and its backoff runs until then.
    BackingOff { until: Instant, failures: u32 },
    /// Same inputs; the last apply was refused.
    Refused { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyStep {
    /// Plan-only watch.
    Never,
    /// Apply the plan (if it buys anything).
    Go,
    /// Print the plan, do not apply it: the gate is closed.
    Hold(ApplyGate),
}

/// The decision for a cycle whose inputs are `inputs`, when the last cycle
/// that planned had `last` (`None`: no cycle planned yet, or the last one
/// had invalid inputs, or its apply was put off).
pub fn decide(
    last: Option<&Fingerprint>,
    inputs: &Fingerprint,
    apply: bool,
    gate: ApplyGate,
) -> CycleDecision {
    let unchanged = last == Some(inputs);
    if !apply {
        return if unchanged {
            CycleDecision::Skip(Skip::Unchanged)
        } else {
            CycleDecision::Plan(ApplyStep::Never)
        };
    }
    match (unchanged, gate) {
        (true, ApplyGate::Clear) => CycleDecision::Skip(Skip::Unchanged),
        (
            true,
            ApplyGate::Waiting {
                until, failures, ..
            },
        ) => CycleDecision::Skip(Skip::BackingOff { until, failures }),
        (true, ApplyGate::Parked { reason }) => CycleDecision::Skip(Skip::Refused { reason }),
        (_, ApplyGate::Clear | ApplyGate::RetryDue { .. }) => CycleDecision::Plan(ApplyStep::Go),
        (false, gate) => CycleDecision::Plan(ApplyStep::Hold(gate)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(hash: &str, serial: u64) -> Fingerprint {
        Fingerprint {
            today: jiff::civil::date(2026, 11, 26),
            manifest_hash: hash.to_owned(),
            state: StateId {
                lineage: Some("l".into()),
                serial,
                checksum: Some(format!("c{serial}")),
            },
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn backoff_doubles_from_five_seconds_to_ten_minutes() {
        let b = CycleBackoff::default();
        let delays: Vec<u64> = (1..=10).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(b.delay(u32::MAX), secs(600), "no overflow");
        assert_eq!(b.delay(0), secs(5));
    }

    #[test]
    fn failures_back_off_for_the_same_manifest_content() {
        let t0 = Instant::now();
        let mut r = Retries::default();
        let a = inputs("A", 1);
        assert_eq!(r.gate(&a, t0), ApplyGate::Clear);
        assert_eq!(
            r.record(&a, ApplyResult::Failed("network".into()), t0),
            Some(t0 + secs(5))
        );
        assert!(matches!(
            r.gate(&a, t0 + secs(4)),
            ApplyGate::Waiting { failures: 1, .. }
        ));
        assert_eq!(
            r.gate(&a, t0 + secs(5)),
            ApplyGate::RetryDue { failures: 1 }
        );
        // It fails again: twice as long.
        let t1 = t0 + secs(5);
        assert_eq!(
            r.record(&a, ApplyResult::Failed("network".into()), t1),
            Some(t1 + secs(10))
        );
        assert_eq!(r.next_retry(), Some(t1 + secs(10)));
        // The state moved (a partial apply): the backoff still holds.
        let a2 = inputs("A", 2);
        assert!(matches!(
            r.gate(&a2, t1 + secs(1)),
            ApplyGate::Waiting { failures: 2, .. }
        ));
        assert_eq!(
            r.record(&a2, ApplyResult::Failed("103".into()), t1 + secs(10)),
            Some(t1 + secs(30))
        );
        // New manifest content starts fresh.
        let b = inputs("B", 2);
        assert_eq!(r.gate(&b, t1 + secs(11)), ApplyGate::Clear);
        assert_eq!(
            r.record(&b, ApplyResult::Failed("x".into()), t1),
            Some(t1 + secs(5))
        );
        // Success forgets.
        r.record(&b, ApplyResult::Done, t1);
        assert_eq!(r.gate(&b, t1), ApplyGate::Clear);
        assert_eq!(r.next_retry(), None);
    }

    #[test]
    fn refusals_park_until_the_inputs_change() {
        let t0 = Instant::now();
        let mut r = Retries::default();
        let a = inputs("A", 1);
        assert_eq!(
            r.record(&a, ApplyResult::Refused("22 purchases > 20".into()), t0),
            None
        );
        assert_eq!(r.next_retry(), None, "no timer: only a change retries");
        for later in [secs(5), secs(3600), secs(86_400 * 30)] {
            assert!(matches!(r.gate(&a, t0 + later), ApplyGate::Parked { .. }));
        }
        // A state change (someone applied by hand) or new content: clear.
        assert_eq!(r.gate(&inputs("A", 2), t0), ApplyGate::Clear);
        assert_eq!(r.gate(&inputs("B", 1), t0), ApplyGate::Clear);
        // A failure after a refusal starts its own count.
        assert_eq!(
            r.record(&a, ApplyResult::Failed("x".into()), t0),
            Some(t0 + secs(5))
        );
    }

    #[test]
    fn decide_skips_unchanged_inputs_and_plans_changed_ones() {
        let t0 = Instant::now();
        let a = inputs("A", 1);
        let b = inputs("B", 1);
        // Plan-only.
        assert_eq!(
            decide(None, &a, false, ApplyGate::Clear),
            CycleDecision::Plan(ApplyStep::Never)
        );
        assert_eq!(
            decide(Some(&a), &a, false, ApplyGate::Clear),
            CycleDecision::Skip(Skip::Unchanged)
        );
        assert_eq!(
            decide(Some(&a), &b, false, ApplyGate::Clear),
            CycleDecision::Plan(ApplyStep::Never)
        );
        // A state change alone re-plans (an interval cycle after a manual apply).
        assert_eq!(
            decide(Some(&a), &inputs("A", 2), false, ApplyGate::Clear),
            CycleDecision::Plan(ApplyStep::Never)
        );
        // Apply.
        assert_eq!(
            decide(Some(&a), &b, true, ApplyGate::Clear),
            CycleDecision::Plan(ApplyStep::Go)
        );
        assert_eq!(
            decide(Some(&a), &a, true, ApplyGate::Clear),
            CycleDecision::Skip(Skip::Unchanged)
        );
        assert_eq!(
            decide(Some(&a), &a, true, ApplyGate::RetryDue { failures: 2 }),
            CycleDecision::Plan(ApplyStep::Go)
        );
        let waiting = ApplyGate::Waiting {
            until: t0,
            failures: 1,
            reason: "r".into(),
        };
        assert_eq!(
            decide(Some(&a), &a, true, waiting.clone()),
            CycleDecision::Skip(Skip::BackingOff {
                until: t0,
                failures: 1
            })
        );
        // Changed inputs under a running backoff: show the plan, hold the apply.
        assert_eq!(
            decide(None, &a, true, waiting.clone()),
            CycleDecision::Plan(ApplyStep::Hold(waiting))
        );
        let parked = ApplyGate::Parked { reason: "r".into() };
        assert_eq!(
            decide(Some(&a), &a, true, parked.clone()),
            CycleDecision::Skip(Skip::Refused { reason: "r".into() })
        );
        assert_eq!(
            decide(None, &a, true, parked.clone()),
            CycleDecision::Plan(ApplyStep::Hold(parked))
        );
    }

    #[test]
    fn a_refused_cycle_is_not_retried_until_the_manifests_change() {
        // The Must-show rule end to end through `decide`: refuse once, then
        // every later cycle with the same inputs (interval, retry, touch) is
        // skipped; editing the manifests applies again.
        let t0 = Instant::now();
        let mut r = Retries::default();
        let a = inputs("A", 1);
        assert_eq!(
            decide(None, &a, true, r.gate(&a, t0)),
            CycleDecision::Plan(ApplyStep::Go)
        );
        r.record(&a, ApplyResult::Refused("over --max-purchases".into()), t0);
        for minutes in [1, 10, 600] {
            let now = t0 + secs(60 * minutes);
            assert!(matches!(
                decide(Some(&a), &a, true, r.gate(&a, now)),
                CycleDecision::Skip(Skip::Refused { .. })
            ));
        }
        let b = inputs("B", 1);
        assert_eq!(
            decide(Some(&a), &b, true, r.gate(&b, t0)),
            CycleDecision::Plan(ApplyStep::Go)
        );
    }
}
