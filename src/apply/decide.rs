//! The pure decisions of a run: which changes become requests (and whether
//! the guards allow them), whether the state moved since the plan, which
//! OAs the account lacks, whether an answer is retried, and what a finished
//! package is recorded as. No IO, no clock, no randomness (backoff jitter is
//! drawn by `backon` where the delays are consumed).

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::{ApplyOptions, GuardRefusal, HoldReason, PackageResult, RetryPolicy};
use crate::esms::{AccountOa, PurchaseOutcome};
use crate::plan::saved::{StalePlan, state_moves};
use crate::plan::{Action, Change, Need, Plan, Sides, max_purchases_need};
use crate::spec::Spec;
use crate::state::{JournalOutcome, Loaded, StateId, file};

/// How many purchase requests a plan means, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub purchase: usize,
    pub replace: usize,
    /// `unconfirmed` packages that will be resent (`--retry-unconfirmed`).
    pub retry_unconfirmed: usize,
    /// `unconfirmed` packages left alone (no `--retry-unconfirmed`).
    pub left_unconfirmed: usize,
}

impl Counts {
    /// Purchase requests the run sends (one per package; retries of one
    /// package within the run are not counted again).
    pub fn requests(&self) -> usize {
        self.purchase + self.replace + self.retry_unconfirmed
    }

    /// `3 purchase, 1 replace, 2 unconfirmed resent`, the non-zero parts.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.purchase, "purchase"),
            (self.replace, "replace"),
            (self.retry_unconfirmed, "unconfirmed resent"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// One package to send: the change it carries out and exactly what is sent.
#[derive(Clone, Debug)]
pub(crate) struct Job<'p> {
    pub change: &'p Change,
    pub spec: Spec,
    pub name: Option<String>,
    /// For a resent unconfirmed package, when it was first sent (kept as
    /// its `submitted_at`).
    pub first_sent: Option<jiff::Timestamp>,
    /// A coverage policy's renewal: recorded as bought by the policy.
    pub by_policy: bool,
    /// What one request for `spec` costs with the plan's price list;
    /// `None` without one.
    pub price: Option<u64>,
}

/// The plan split into what is sent and what is left alone.
#[derive(Debug)]
pub(crate) struct Selection<'p> {
    /// In key order.
    pub jobs: Vec<Job<'p>>,
    /// `unconfirmed` changes not resent.
    pub left_alone: Vec<&'p Change>,
    /// Changes set aside ([`ApplyOptions::hold`]): they need a flag the
    /// run was not given. In key order.
    pub held: Vec<(&'p Change, HoldReason)>,
    pub counts: Counts,
    /// What the jobs cost with the plan's price list (one request each);
    /// `None` without one.
    pub cost: Option<crate::prices::Money>,
}

/// What the run `apply` would carry out costs (every request it would
/// send, priced with the plan's price list): `None` without a price list,
/// or when the guards refuse the run.
pub fn planned_cost(plan: &Plan, options: &ApplyOptions) -> Option<crate::prices::Money> {
    select(plan, options).ok().and_then(|s| s.cost)
}

/// The guards, on their own: the counts of requests `apply` would send, or
/// why it would refuse. Pure; touches nothing.
pub fn check_guards(plan: &Plan, options: &ApplyOptions) -> Result<Counts, GuardRefusal> {
    select(plan, options).map(|s| s.counts)
}

/// The spec a request for `change` sends: the declared one for purchases
/// and replaces; for an unconfirmed package the recorded one, the request
/// that may have been received (only an identical request is answered
/// 199). `None` for a change that sends nothing.
pub(crate) fn spec_sent(change: &Change) -> Option<&Spec> {
    match &change.sides {
        Sides::Purchase { desired } | Sides::Replace { desired, .. } => Some(&desired.spec),
        Sides::Unconfirmed { before, .. } => Some(&before.spec),
        Sides::InFlight { .. } | Sides::Orphan { .. } | Sides::Expired { .. } => None,
    }
}

/// Turns the plan's changes into jobs, applying the guards. The plan's
/// changes are well formed by their type ([`Sides`]) and listed once each
/// ([`Plan::changes`]), so nothing here checks their shape.
pub(crate) fn select<'p>(
    plan: &'p Plan,
    options: &ApplyOptions,
) -> Result<Selection<'p>, GuardRefusal> {
    let mut jobs = Vec::new();
    let mut left_alone = Vec::new();
    let mut counts = Counts::default();
    let mut replaces = Vec::new();
    let mut overlaps = Vec::new();
    let mut held = Vec::new();
    for change in plan.listed_changes() {
        // What is sent: `spec_sent`, the one rule. In-flight keys (another
        // process is sending them now), orphans and expired keys send nothing.
        let Some(spec) = spec_sent(change) else {
            continue;
        };
        let spec = spec.clone();
        // A resent unconfirmed package keeps the time of its first request.
        let first_sent = match &change.sides {
            Sides::Unconfirmed { before, .. } => before.submitted_at,
            _ => None,
        };
        // The flags the plan showed this change needs (one computation),
        // and not given: the change is held (watch) or refuses the run.
        // Every flag missing is reported (all at once, never one per run);
        // watch holds the change on the first.
        let allowed = options.allowed();
        let missing: Vec<HoldReason> = change
            .needs()
            .into_iter()
            .filter(|need| !allowed.permits(*need))
            .filter_map(|need| match need {
                Need::AllowReplace => Some(HoldReason::NeedsAllowReplace),
                Need::AllowOverlap => Some(HoldReason::NeedsAllowOverlap {
                    overlaps: change.overlaps.clone(),
                }),
                Need::MaxPurchases(_) => None,
            })
            .collect();
        if options.hold
            && let Some(reason) = missing.first()
        {
            held.push((change, reason.clone()));
            continue;
        }
        for reason in missing {
            match reason {
                HoldReason::NeedsAllowReplace => replaces.push(change.key.clone()),
                HoldReason::NeedsAllowOverlap { overlaps: recorded } => {
                    overlaps.push((change.key.clone(), recorded));
                }
                HoldReason::OaNotOnAccount => {}
            }
        }
        match change.action() {
            Action::Purchase => counts.purchase += 1,
            Action::Replace => counts.replace += 1,
            Action::Unconfirmed if options.retry_unconfirmed => counts.retry_unconfirmed += 1,
            Action::Unconfirmed => {
                counts.left_unconfirmed += 1;
                left_alone.push(change);
                continue;
            }
            Action::Unchanged | Action::Orphan | Action::Expired | Action::InFlight => continue,
        }
        let price = plan
            .prices
            .as_ref()
            .and_then(|prices| prices.cost(&spec))
            .map(|cost| cost.amount);
        jobs.push(Job {
            change,
            spec,
            name: change.name().map(str::to_owned),
            first_sent,
            by_policy: plan.is_from_policy(change),
            price,
        });
    }
    let mut refusals = Vec::new();
    if !replaces.is_empty() {
        refusals.push(GuardRefusal::ReplaceNotAllowed { keys: replaces });
    }
    if !overlaps.is_empty() {
        refusals.push(GuardRefusal::OverlapNotAllowed { overlaps });
    }
    if max_purchases_need(counts.requests(), options.max_purchases).is_some() {
        refusals.push(GuardRefusal::TooManyPurchases {
            counts,
            max: options.max_purchases,
        });
    }
    if let Some(refusal) = GuardRefusal::of_flags(refusals) {
        return Err(refusal);
    }
    // A cost that does not fit in a u64 refuses the run: no amount is
    // ever saturated or wrapped, with or without --max-spend.
    let cost = plan
        .prices
        .as_ref()
        .map(|prices| prices.total(jobs.iter().map(|job| &job.spec)))
        .transpose()
        .map_err(GuardRefusal::CostOverflow)?;
    if let Some(max) = options.max_spend
        && counts.requests() > 0
    {
        match &cost {
            None => return Err(GuardRefusal::CostUnknown { max }),
            Some(cost) if cost.amount > max => {
                return Err(GuardRefusal::OverBudget {
                    cost: cost.clone(),
                    max,
                });
            }
            Some(_) => {}
        }
    }
    Ok(Selection {
        jobs,
        left_alone,
        held,
        counts,
        cost,
    })
}

/// Whether the state loaded under the lock is still the one a plan was
/// made against (`planned`).
///
/// The same [`StateId`] is the plain case. The other accepted case is a
/// state whose *content* is what the plan saw, in the same lineage (or a
/// first lineage when the plan saw no file): that is what folding a
/// journal left by a crashed run does (the serial grows, the packages stay).
/// A plan's id over a journal carries the checksum of the packages it saw
/// at its generation, so the test is to compute that checksum over the
/// packages loaded now.
pub fn state_unmoved(planned: &StateId, now: &Loaded, state_path: &Path) -> bool {
    if *planned == now.id {
        return true;
    }
    if planned.lineage.is_some() && planned.lineage != now.id.lineage {
        return false;
    }
    match &planned.checksum {
        None => now.state.packages.is_empty(),
        Some(checksum) => file::checksum(
            state_path,
            planned.lineage.as_deref(),
            planned.serial,
            &now.state.packages,
            &now.state.failed_attempts,
            &now.state.observations,
        )
        .is_ok_and(|c| c == *checksum),
    }
}

/// The stale-plan error for a state that moved from `planned` to `now`.
pub(crate) fn stale_state(planned: &StateId, now: &StateId) -> StalePlan {
    StalePlan {
        moved: state_moves(planned, now),
    }
}

/// The OAIDs of `jobs` that the account's OA list lacks, sorted, once each.
pub(crate) fn missing_oaids(jobs: &[Job<'_>], account: &[AccountOa]) -> Vec<String> {
    let held: HashSet<&str> = account.iter().map(|oa| oa.oaid.as_str()).collect();
    jobs.iter()
        .map(|job| job.spec.oaid.as_str())
        .filter(|oaid| !held.contains(oaid))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

impl RetryPolicy {
    /// The waits before the 2nd, 3rd, … attempt (`max_attempts - 1` of them),
    /// with jitter.
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay.max(self.min_delay))
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
            .build()
    }
}

/// What one package's attempts have established so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Attempts {
    pub count: u32,
    /// Why an earlier attempt may have been received (the first unknown
    /// outcome), if one may have been.
    pub maybe_received: Option<String>,
    /// Requests of this run whose answer says they may have charged: a
    /// `100`, or an unknown outcome ([`may_have_charged`]).
    pub charged: u32,
    /// Requests of this run the budget holds a price for: the first one
    /// (in the plan's cost, which the guards checked), plus one for each
    /// resend reserved with [`Budget::reserve`]. A send needs one of its
    /// own only after a send that may have charged: a resend after a rate
    /// limit or "not sent" pays at most once between them.
    pub reserved: u32,
}

/// Whether the request that got `outcome` may have charged: eSMS accepted
/// it (`100`), or nobody knows (an unknown outcome). A `199` (eSMS already
/// had it), a refusal, a rate limit and "not sent" did not.
pub(crate) fn may_have_charged(outcome: &PurchaseOutcome) -> bool {
    matches!(outcome, PurchaseOutcome::Accepted { .. }) || outcome.is_unknown()
}

/// Whether `outcome` (already judged) makes the package "possibly charged
/// twice": a `100`, so this request charged, while an earlier request for
/// it may have charged too (an unknown outcome earlier in the run, or a
/// resent `unconfirmed` record). Checked before [`judge`] sees `outcome`.
pub(crate) fn possibly_charged_twice(outcome: &PurchaseOutcome, attempts: &Attempts) -> bool {
    matches!(outcome, PurchaseOutcome::Accepted { .. }) && attempts.maybe_received.is_some()
}

/// What the run may still spend with `--max-spend`: every request the run
/// may send that may charge, priced. It starts at the plan's cost (one
/// request per package, which the guards held to `--max-spend`); each
/// resend after a send that may have charged adds its price before it is
/// sent, and a package that settles gives back what it reserved and did
/// not use. So "spent so far, plus what is reserved for the packages not
/// yet answered" never passes `--max-spend`. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    max: Option<u64>,
    committed: u64,
}

/// A resend not sent: with it the run could spend more than `--max-spend`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OverBudget {
    pub committed: u64,
    pub price: Option<u64>,
    pub max: u64,
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::prices::thousands;
        match self.price {
            Some(price) => write!(
                f,
                "not resent: this resend may charge again, and {} spent or reserved so far plus its {} would pass --max-spend {}",
                thousands(self.committed),
                thousands(price),
                thousands(self.max)
            ),
            None => write!(
                f,
                "not resent: its price is unknown, so it cannot be held to --max-spend {}",
                thousands(self.max)
            ),
        }
    }
}

impl Budget {
    /// A run whose first requests cost `planned` (the jobs' total).
    pub(crate) fn new(max: Option<u64>, planned: u64) -> Budget {
        Budget {
            max,
            committed: planned,
        }
    }

    /// Before a send of a package with `attempts` (already counted, the
    /// send not yet): reserves its `price` when it needs a reservation of
    /// its own, or says why it must not be sent. Without `--max-spend` it
    /// always may.
    pub(crate) fn reserve(
        &mut self,
        attempts: &mut Attempts,
        price: Option<u64>,
    ) -> Result<(), OverBudget> {
        if attempts.charged < attempts.reserved {
            return Ok(());
        }
        if let Some(max) = self.max {
            let over = || OverBudget {
                committed: self.committed,
                price,
                max,
            };
            let after = price
                .and_then(|price| self.committed.checked_add(price))
                .ok_or_else(over)?;
            if after > max {
                return Err(over());
            }
            self.committed = after;
        }
        attempts.reserved += 1;
        Ok(())
    }

    /// A package settled with `attempts`: what it reserved and did not
    /// spend goes back.
    pub(crate) fn settle(&mut self, attempts: &Attempts, price: Option<u64>) {
        // A send is reserved before it goes out, so `charged <= reserved`
        // and what goes back was added before; checked all the same, and
        // on any doubt nothing goes back (a larger reservation only makes
        // the budget stricter).
        let left = attempts
            .reserved
            .checked_sub(attempts.charged)
            .zip(price)
            .and_then(|(unused, price)| price.checked_mul(u64::from(unused)))
            .and_then(|back| self.committed.checked_sub(back));
        if let (Some(_), Some(left)) = (self.max, left) {
            self.committed = left;
        }
    }
}

/// The settled outcome of a package whose resend [`Budget::reserve`]
/// refused: `unconfirmed` (an earlier request may have charged), saying why
/// it was not resent.
pub(crate) fn not_resent(attempts: &Attempts, over: &OverBudget) -> JournalOutcome {
    let earlier = attempts
        .maybe_received
        .as_deref()
        .unwrap_or("an earlier request may have charged");
    JournalOutcome::Unconfirmed {
        reason: format!("no definite answer ({earlier}); {over}"),
    }
}

/// After an attempt: send another, or settle with what to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Retry,
    Settle(JournalOutcome),
}

/// Decides after `outcome`, the answer to attempt `attempts.count` (already
/// counted). A retry needs an outcome that allows one, an attempt left,
/// and a run that is not stopping.
///
/// Only "not sent" and rate limits allow one on their own. An unknown
/// outcome allows one only with `retry_unknown` (`--retry-unknown`): the
/// resend relies on eSMS answering `199` to a request it already has, for
/// which eSMS documents no time window, so it may charge twice. Without
/// it the package settles `unconfirmed` at once and a person decides.
pub(crate) fn judge(
    outcome: &PurchaseOutcome,
    attempts: &mut Attempts,
    policy: &RetryPolicy,
    retry_unknown: bool,
    stopping: bool,
) -> Verdict {
    if may_have_charged(outcome) {
        attempts.charged += 1;
    }
    if outcome.is_unknown() && attempts.maybe_received.is_none() {
        attempts.maybe_received = Some(outcome.message().to_owned());
    }
    let may_resend = outcome.is_retryable() || (retry_unknown && outcome.is_unknown());
    if may_resend && attempts.count < policy.max_attempts && !stopping {
        return Verdict::Retry;
    }
    Verdict::Settle(settle(outcome, attempts.maybe_received.as_deref()))
}

/// Whether a `199` is a surprise: no request for the package can have
/// reached eSMS before this answer as far as oapkg knows (no intent
/// recorded before this run, no unknown outcome earlier in it). eSMS
/// already had the purchase, so the state may have been lost or something
/// else bought it. After a resend (`--retry-unconfirmed`,
/// `--retry-unknown`) a `199` is the expected confirmation.
pub(crate) fn unexpected_duplicate(outcome: &PurchaseOutcome, attempts: &Attempts) -> bool {
    matches!(outcome, PurchaseOutcome::AlreadyExists { .. }) && attempts.maybe_received.is_none()
}

/// What a package's last answer is recorded as, given whether an earlier
/// attempt may have been received (`maybe_received`, its reason).
pub(crate) fn settle(last: &PurchaseOutcome, maybe_received: Option<&str>) -> JournalOutcome {
    match last {
        PurchaseOutcome::Accepted {
            service_preview_id,
            code,
            message,
        }
        | PurchaseOutcome::AlreadyExists {
            service_preview_id,
            code,
            message,
        } => JournalOutcome::Submitted {
            service_preview_id: service_preview_id.clone(),
            result_code: code.clone(),
            result_message: message.clone(),
        },
        PurchaseOutcome::Unknown { reason } => JournalOutcome::Unconfirmed {
            reason: format!("no definite answer: {reason}"),
        },
        definite => {
            let last = match definite.code() {
                Some(code) => format!("code {code}: {}", definite.message()),
                None => definite.message().to_owned(),
            };
            match maybe_received {
                // A refusal now does not undo a request that may have been
                // committed earlier.
                Some(earlier) => JournalOutcome::Unconfirmed {
                    reason: format!(
                        "an earlier request got no definite answer ({earlier}); the last one got {last}"
                    ),
                },
                None => JournalOutcome::Failed {
                    result_code: definite.code().map(str::to_owned),
                    result_message: definite.message().to_owned(),
                    // Stamped by the executor, which has the clock.
                    at: None,
                },
            }
        }
    }
}

/// The report's view of a recorded outcome; `unexpected_duplicate` as
/// [`unexpected_duplicate`] found it.
pub(crate) fn result_of(
    action: Action,
    outcome: &JournalOutcome,
    attempts: u32,
    charges: Charges,
    unexpected_duplicate: bool,
) -> PackageResult {
    match outcome {
        JournalOutcome::Submitted {
            service_preview_id,
            result_code,
            result_message,
        } => PackageResult::Submitted {
            action,
            service_preview_id: service_preview_id.clone(),
            code: result_code.clone(),
            message: result_message.clone(),
            attempts,
            charged: charges.charged,
            possibly_charged_twice: charges.twice,
            unexpected_duplicate,
        },
        JournalOutcome::Unconfirmed { reason } => PackageResult::Unconfirmed {
            action,
            reason: reason.clone(),
            attempts,
            charged: charges.charged,
        },
        JournalOutcome::Failed {
            result_code,
            result_message,
            ..
        } => PackageResult::Failed {
            action,
            code: result_code.clone(),
            message: result_message.clone(),
            attempts,
        },
    }
}

/// What a package's requests of this run may have charged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Charges {
    /// Requests that may have charged ([`Attempts::charged`]).
    pub charged: u32,
    /// [`possibly_charged_twice`].
    pub twice: bool,
}

/// Whether this answer stops the whole run (101, 103, 140, 143).
pub(crate) fn stops_the_run(outcome: &PurchaseOutcome) -> Option<(String, String)> {
    match outcome {
        PurchaseOutcome::Fatal { code, message } => Some((code.clone(), message.clone())),
        _ => None,
    }
}

impl Attempts {
    /// Nothing sent yet for `job`. A resent `unconfirmed` package starts out
    /// "maybe received": its earlier request may have been committed, so no
    /// refusal now can record it as not bought.
    pub(crate) fn for_job(job: &Job<'_>) -> Attempts {
        Attempts {
            count: 0,
            charged: 0,
            // The first request is in the plan's cost.
            reserved: 1,
            maybe_received: (job.change.action() == Action::Unconfirmed).then(|| {
                "it was recorded unconfirmed: a request sent by an earlier run may have been received"
                    .to_owned()
            }),
        }
    }
}
