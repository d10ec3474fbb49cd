//! Carrying out a [`Plan`]: buying exactly the packages it lists, each at
//! most once, and recording every request durably before and after it is
//! sent.
//!
//! This module owns the decisions between a plan and the eSMS client: which
//! changes become purchase requests (the guards), whether the account holds
//! the OAs (the pre-flight), how many requests are in flight, which answers
//! are retried and when, what each final answer means for the state, and when
//! the whole run stops. It prints nothing (callers get [`ApplyEvent`]s and an
//! [`ApplyReport`]), reads no flags and no environment, and never decides
//! *what* to buy: that is the plan's.
//!
//! - `decide.rs` (crate-private): the pure part: guards, the stale-state check,
//!   the pre-flight comparison, the retry and settlement rules. No IO.
//! - `executor.rs` (crate-private): the async part: the pool of requests in
//!   flight, backoff sleeps, journal writes, cancellation.
//! - `cancel.rs`: [`Canceller`] / [`CancelSignal`], how a caller asks a run to
//!   stop (the CLI on SIGINT/SIGTERM, `watch` on shutdown).
//!
//! # Using it
//!
//! ```no_run
//! # async fn example(plan: &oapkg::plan::Plan, store: &oapkg::state::StateStore,
//! #                  client: &oapkg::esms::Client) -> Result<(), oapkg::apply::ApplyError> {
//! use oapkg::apply::{self, ApplyOptions, CancelSignal};
//! let options = ApplyOptions { command: "oapkg watch --apply".into(), ..ApplyOptions::default() };
//! let report = apply::apply(plan, store, client, &options, &|event| tracing::info!(?event), CancelSignal::never()).await?;
//! println!("{}", report.summary_line());
//! # Ok(()) }
//! ```
//!
//! [`apply`] is the whole run. [`check_guards`] is its first step on its own,
//! for a caller that wants the number of requests (to ask "Type 'yes' to
//! purchase N package(s)") or a refusal before taking the lock.
//!
//! # What one run does, in order
//!
//! 1. **Guards** ([`check_guards`]), before anything else: a `replace`
//!    without [`ApplyOptions::allow_replace`], a purchase over a recorded
//!    package's months without [`ApplyOptions::allow_overlap`], or more
//!    requests than [`ApplyOptions::max_purchases`], refuses the run
//!    ([`ApplyError::Refused`]): nothing is locked, written or sent. The
//!    requests counted are every `purchase`, every `replace` and, with
//!    [`ApplyOptions::retry_unconfirmed`], every `unconfirmed` package
//!    (each of those is a purchase request that may charge). The flags
//!    checked are the plan's own `needs` ([`Change::needs`],
//!    [`crate::plan::max_purchases_need`]): what a reviewed plan shows is
//!    what apply checks.
//! 2. Nothing to send (no purchase or replace, and unconfirmed packages not
//!    retried) and no label change to record: returns at once, without
//!    lock, file or network. Label changes alone take the lock and write
//!    the state (steps 3 and 6) with no request and no pre-flight.
//! 3. **Lock and load**: takes the state's writer lock for the run (waiting
//!    up to [`ApplyOptions::lock_timeout`]) and loads the state under it; a
//!    run that will send checks the store first (on S3, that it enforces
//!    conditional writes: [`Store::lock_to_buy`]). A
//!    missing state file is refused ([`StateError::Missing`]): only
//!    `oapkg init` creates one, so a wrong path never buys everything
//!    again. If the state is not the one the plan was made against
//!    ([`Plan::state`]), the run is refused as a stale plan
//!    ([`ApplyError::Stale`]): a second `apply` racing the first waits for
//!    or fails on the lock, then finds the state moved. Folding a journal
//!    left by a crashed run moves the serial but not the content; that
//!    alone does not make a plan stale.
//! 4. **Pre-flight** (unless [`ApplyOptions::skip_preflight`]): one
//!    `ZNS/GetListZOA/` call; OAIDs to be bought that the account does not
//!    hold refuse the run, naming them ([`ApplyError::Preflight`]).
//! 5. **Requests**: at most [`ApplyOptions::parallelism`] in flight, in key
//!    order, never two for one key (each key's attempts run one after the
//!    other in one future). For each package: the intent is appended to the
//!    journal and fsync'd *before* the first request is sent, and every
//!    request (retries too) goes out only with the lock's leave to send
//!    ([`crate::state::Fence`]: on S3, a third of the lease left since the
//!    last write under it; a lost lease stops the run,
//!    [`StopReason::Fenced`]); the final
//!    answer is appended and fsync'd *before* the package counts as done
//!    (before its [`ApplyEvent::PurchaseDone`]). A package holds its place
//!    among the `parallelism` from its intent to its last answer; recording
//!    that answer overlaps the next package's request. Journal lines that
//!    wait at the same moment are written with one fsync (group commit,
//!    [`Journal::record_batch`](crate::state::Journal::record_batch)). A
//!    journal write that fails (a full disk) stops the run like a fatal
//!    code: that package is not sent, and the journal refuses every later
//!    intent, so no new request starts; requests in flight finish, and one
//!    whose answer cannot be recorded stays `unconfirmed`.
//! 6. **Fold**: if anything was journaled (or a label change recorded: the
//!    plan's new names are set on the loaded state before the requests),
//!    the state file is rewritten with the journal folded in ([`StateStore::write`]), then the lock is
//!    released. If that write fails the purchases are still in the journal
//!    (the next command that takes the lock folds them) and the error
//!    carries the report ([`ApplyError::Record`]).
//!
//! # What each answer does
//!
//! | answer ([`PurchaseOutcome`]) | next step | recorded as |
//! |---|---|---|
//! | 100 / 199 (`Accepted`, `AlreadyExists`) | done | `submitted`, with ServicePreviewId, code, message, first-sent time; the key's last failed attempt is cleared |
//! | 101 / 103 / 140 / 143 (`Fatal`) | done; **stop**: no new request (nor retry) is sent, requests in flight finish and are recorded | the key's last failed attempt (the intent is voided) |
//! | 102 / 204 / 799 (`PackageFailed`) | done; the others go on | the key's last failed attempt |
//! | 160 / HTTP 429 (`RateLimited`), connection failed (`NotSent`) | retried after a backoff, up to [`RetryPolicy::max_attempts`] | the key's last failed attempt, if the attempts run out |
//! | timeout, reset, 5xx, garbage, a code the table does not list (`Unknown`) | done, **never resent** on the tool's own initiative; the others go on. With [`ApplyOptions::retry_unknown`]: retried like a rate limit (a `199` then confirms it) | `unconfirmed` |
//!
//! A failed attempt (code, message, when) is kept per key in the state,
//! whether or not the key has a record, until the key is submitted; the next
//! plan shows it on the purchase or replace.
//!
//! A `199` for a purchase or replace whose request was not known to have
//! reached eSMS before (no intent recorded before this run, no unknown
//! outcome earlier in it) is recorded `submitted` and flagged
//! (`unexpected_duplicate` in [`PackageResult::Submitted`]): eSMS already had
//! it, so the state may have been lost or another tool bought it.
//!
//! Once any attempt for a package got an unknown outcome, the package can
//! never be recorded as "not bought": a later refusal does not prove the
//! earlier request was not committed, so it ends `unconfirmed` unless a
//! later answer is 100/199.
//!
//! `--retry-unconfirmed` resends an unconfirmed package with the spec it
//! was recorded with (the request that may have been received), so a `199`
//! confirms it; a definite refusal leaves it `unconfirmed`.
//!
//! # Cancellation and dropping
//!
//! When the [`CancelSignal`] fires, no new request or retry is sent, every
//! request in flight gets its answer (bounded by the client's timeout) and is
//! recorded, the journal is folded, and the report says
//! [`StopReason::Cancelled`]. Prefer that to dropping the future: a dropped
//! run leaves its requests in flight as `unconfirmed` in the journal and the
//! journal unfolded until the next writer (safe, but it needs a person).
//!
//! [`StateStore::write`]: crate::state::StateStore::write

mod cancel;
pub(crate) mod decide;
pub(crate) mod executor;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use cancel::{CancelSignal, Canceller, cancel_pair};
pub use decide::{Counts, check_guards, planned_cost, state_unmoved};

use crate::esms::{CallError, Client, PurchaseOutcome, code_meaning};
use crate::plan::saved::StalePlan;
use crate::plan::{Action, Allowed, Change, Need, Plan};
use crate::prices::Money;
use crate::spec::{Key, key_list};
use crate::state::{JournalWriter, Loaded, State, StateError, StateId, Store, WriterLock};

/// How to carry out a plan. `Default` gives the CLI's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Most purchase requests in flight at once (at least 1).
    pub parallelism: usize,
    /// Most purchase requests one run may send (purchases + replaces +
    /// retried unconfirmed packages); more refuses the whole run.
    pub max_purchases: usize,
    /// Whether `replace` changes may be bought (again, not refunded).
    pub allow_replace: bool,
    /// Whether purchases over the months of a recorded package of the same
    /// OA and tier under another key may be bought.
    pub allow_overlap: bool,
    /// Whether `unconfirmed` packages are resent (a `199` confirms them).
    pub retry_unconfirmed: bool,
    /// Whether a request that got an unknown outcome is resent within the
    /// run (`--retry-unknown`), relying on eSMS to answer `199` if it has
    /// the first one. eSMS documents no time window for that answer, so a
    /// resend may charge twice; without it the package is `unconfirmed`
    /// at once.
    pub retry_unknown: bool,
    /// Skip the pre-flight calls: `ZNS/GetListZOA/` (the account holds
    /// every OA) and, when the plan has a cost, `GetBalance_json`.
    pub skip_preflight: bool,
    /// `--max-spend`: the most the run may cost with the manifests' price
    /// list; a run that costs more (or whose cost is unknown: no price
    /// list) is refused by the guards.
    pub max_spend: Option<u64>,
    /// How long to wait for another writer's lock (zero: fail at once).
    pub lock_timeout: Duration,
    /// Labels the lock holder, e.g. `oapkg apply`.
    pub command: String,
    /// When to retry a request that got no definite answer.
    pub retry: RetryPolicy,
    /// Hold, don't refuse (`watch --apply`): a change that needs
    /// `--allow-replace` or `--allow-overlap` not given, or whose OA the
    /// pre-flight does not find on the account, is set aside
    /// ([`ApplyEvent::Held`], [`ApplyReport::held`]) and the rest of the
    /// run goes ahead. `--max-purchases` and `--max-spend` still refuse
    /// the whole run (counted over what would be sent).
    pub hold: bool,
}

impl ApplyOptions {
    /// The guard flags this run is given.
    pub fn allowed(&self) -> Allowed {
        Allowed {
            replace: self.allow_replace,
            overlap: self.allow_overlap,
            max_purchases: self.max_purchases,
        }
    }
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 4,
            max_purchases: crate::plan::DEFAULT_MAX_PURCHASES,
            allow_replace: false,
            allow_overlap: false,
            retry_unconfirmed: false,
            retry_unknown: false,
            skip_preflight: false,
            max_spend: None,
            lock_timeout: Duration::ZERO,
            command: "oapkg apply".to_owned(),
            retry: RetryPolicy::default(),
            hold: false,
        }
    }
}

/// Retries within one run, for the outcomes that allow them (rate limited,
/// not sent; unknown only with [`ApplyOptions::retry_unknown`]). Delays grow exponentially from `min_delay` (doubling,
/// capped at `max_delay`), each with random jitter of up to the same again,
/// so parallel requests that failed together do not retry together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests per package per run, the first one included (at least 1).
    pub max_attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, waiting about 0.5–1 s, 1–2 s, then 2–4 s between them:
    /// long enough for a brief outage or a TPS limit to pass, short enough
    /// that a run with every request failing ends within seconds of its
    /// timeouts.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// Progress of a run, in order, for progress bars, log lines and `watch`'s
/// JSON logs. Borrowed from the run: copy what you keep.
#[derive(Clone, Copy, Debug)]
pub enum ApplyEvent<'a> {
    /// Guards, lock, stale check and pre-flight passed; `requests` packages
    /// will be sent, at most `parallelism` at once.
    Started { requests: usize, parallelism: usize },
    /// The intent is durable and attempt `attempt` (1-based) was sent.
    PurchaseSent {
        change: &'a Change,
        key: &'a Key,
        attempt: u32,
    },
    /// Attempt `attempt` got its answer (or its lack of one): the request
    /// is no longer in flight. Its result is recorded later
    /// ([`ApplyEvent::PurchaseDone`]), unless a retry follows.
    Answered {
        change: &'a Change,
        key: &'a Key,
        attempt: u32,
        outcome: &'a PurchaseOutcome,
    },
    /// Attempt `attempt` got `outcome`, which allows a retry; the next one
    /// goes out after `delay`.
    Retrying {
        change: &'a Change,
        key: &'a Key,
        attempt: u32,
        delay: Duration,
        outcome: &'a PurchaseOutcome,
    },
    /// The package's final result is durable in the journal.
    PurchaseDone {
        change: &'a Change,
        key: &'a Key,
        result: &'a PackageResult,
    },
    /// No new requests will be sent; `in_flight` requests are still
    /// awaited and will be recorded.
    Stopping {
        reason: &'a StopReason,
        in_flight: usize,
    },
    /// The change is set aside and not bought in this run
    /// ([`ApplyOptions::hold`]).
    Held {
        change: &'a Change,
        key: &'a Key,
        reason: &'a HoldReason,
    },
    /// The pre-flight read the account's balance (`amount`, as eSMS sent
    /// it); `cost` is what the run costs with the plan's price list.
    Balance { amount: f64, cost: &'a Money },
}

impl ApplyEvent<'_> {
    /// The change the event is about, if it is about one.
    pub fn change(&self) -> Option<&Change> {
        match *self {
            ApplyEvent::PurchaseSent { change, .. }
            | ApplyEvent::Answered { change, .. }
            | ApplyEvent::Retrying { change, .. }
            | ApplyEvent::PurchaseDone { change, .. }
            | ApplyEvent::Held { change, .. } => Some(change),
            ApplyEvent::Started { .. }
            | ApplyEvent::Stopping { .. }
            | ApplyEvent::Balance { .. } => None,
        }
    }
}

/// Why a change was held rather than bought ([`ApplyOptions::hold`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldReason {
    /// A `replace`, and `--allow-replace` was not given.
    NeedsAllowReplace,
    /// A purchase over the months of these recorded packages, and
    /// `--allow-overlap` was not given.
    NeedsAllowOverlap { overlaps: Vec<Key> },
    /// The pre-flight did not find its OA on the eSMS account.
    OaNotOnAccount,
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldReason::NeedsAllowReplace => f.write_str(
                "it buys a package already bought again (not refunded): needs --allow-replace",
            ),
            HoldReason::NeedsAllowOverlap { overlaps } => write!(
                f,
                "it overlaps the months of {} (paid twice): needs --allow-overlap",
                key_list(overlaps)
            ),
            HoldReason::OaNotOnAccount => {
                f.write_str("the pre-flight did not find its OA on the eSMS account")
            }
        }
    }
}

/// What became of one planned package in this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageResult {
    /// eSMS answered 100 or 199: recorded `submitted`.
    Submitted {
        action: Action,
        service_preview_id: Option<String>,
        code: String,
        message: String,
        attempts: u32,
        /// A `199` although no request for the package was known to have
        /// reached eSMS (no intent recorded before this run, no unknown
        /// outcome earlier in it): eSMS already had this purchase, so the
        /// state may have been lost or something else bought it. Recorded
        /// `submitted` all the same; callers warn about it.
        unexpected_duplicate: bool,
        /// Requests of this run that may have charged: `100` answers and
        /// unknown outcomes (see [`ApplyReport::spent`]).
        charged: u32,
        /// eSMS answered `100` (this request charged) while an earlier
        /// request for the package may have charged too: an unknown
        /// outcome earlier in the run, or a resent `unconfirmed` record.
        /// "Possibly charged twice — check the eSMS portal".
        possibly_charged_twice: bool,
    },
    /// eSMS definitely did not buy it (a refusal, or no request got
    /// through): not recorded as bought (an earlier record is kept).
    Failed {
        action: Action,
        /// eSMS's result code, when it answered with one.
        code: Option<String>,
        message: String,
        attempts: u32,
    },
    /// A request may have been received and no attempt said whether:
    /// recorded `unconfirmed`.
    Unconfirmed {
        action: Action,
        reason: String,
        attempts: u32,
        /// Requests of this run that may have charged (unknown outcomes,
        /// or a `100` whose answer could not be recorded).
        charged: u32,
    },
    /// Never sent: the run stopped (fatal code, cancellation, a journal
    /// failure) before its turn.
    NotAttempted { action: Action, reason: String },
    /// An `unconfirmed` package left alone (no
    /// [`ApplyOptions::retry_unconfirmed`]): still unconfirmed.
    LeftUnconfirmed,
}

impl PackageResult {
    /// One word for what became of the package, as `apply --format json`
    /// and the log lines name it: `purchased` (recorded submitted), `failed`
    /// (not bought), `unconfirmed` (may have been bought), `not_sent` (the
    /// run stopped before its turn).
    pub fn word(&self) -> &'static str {
        match self {
            PackageResult::Submitted { .. } => "purchased",
            PackageResult::Failed { .. } => "failed",
            PackageResult::Unconfirmed { .. } | PackageResult::LeftUnconfirmed => "unconfirmed",
            PackageResult::NotAttempted { .. } => "not_sent",
        }
    }

    /// The plan's action for the package.
    pub fn action(&self) -> Action {
        match self {
            PackageResult::Submitted { action, .. }
            | PackageResult::Failed { action, .. }
            | PackageResult::Unconfirmed { action, .. }
            | PackageResult::NotAttempted { action, .. } => *action,
            PackageResult::LeftUnconfirmed => Action::Unconfirmed,
        }
    }

    pub fn is_submitted(&self) -> bool {
        matches!(self, PackageResult::Submitted { .. })
    }

    /// Requests of this run for the package that may have charged: each
    /// `100` answer and each unknown outcome.
    pub fn charged(&self) -> u32 {
        match self {
            PackageResult::Submitted { charged, .. }
            | PackageResult::Unconfirmed { charged, .. } => *charged,
            _ => 0,
        }
    }

    /// eSMS answered `100` to a request for the package while an earlier
    /// one may have charged already.
    pub fn possibly_charged_twice(&self) -> bool {
        matches!(
            self,
            PackageResult::Submitted {
                possibly_charged_twice: true,
                ..
            }
        )
    }

    /// The result in one word, as notifications (`event`) and metrics
    /// (`result`) name it: `purchased`, `failed`, `unconfirmed` or
    /// `not_attempted` (a package left unconfirmed counts as not attempted).
    pub fn outcome(&self) -> &'static str {
        match self {
            PackageResult::Submitted { .. } => "purchased",
            PackageResult::Failed { .. } => "failed",
            PackageResult::Unconfirmed { .. } => "unconfirmed",
            PackageResult::NotAttempted { .. } | PackageResult::LeftUnconfirmed => "not_attempted",
        }
    }
}

/// Why a run stopped sending before it had sent everything.
#[derive(Debug)]
pub enum StopReason {
    /// eSMS answered a code after which nothing else can succeed
    /// (101, 103, 140, 143).
    Fatal { code: String, message: String },
    /// The caller's [`CancelSignal`] fired.
    Cancelled,
    /// The journal could not be written, so no further purchase could be
    /// recorded safely.
    Journal(Arc<StateError>),
    /// This process no longer holds the state (its S3 lease was lost or
    /// had too little time left; a local lock file left its path): it
    /// sends nothing more ([`crate::state::Fence`]).
    Fenced(Arc<StateError>),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Fatal { code, message } => {
                write!(f, "eSMS answered code {code}")?;
                if let Some(meaning) = code_meaning(code) {
                    write!(f, " ({meaning})")?;
                }
                if !message.is_empty() {
                    write!(f, ": {}", crate::text::escape_controls(message))?;
                }
                Ok(())
            }
            StopReason::Cancelled => f.write_str("interrupted"),
            StopReason::Fenced(error) => write!(f, "{error}"),
            StopReason::Journal(error) => {
                write!(f, "the journal could not be written: {error}")?;
                // The operating system's reason ("No space left on device"):
                // this line is all the user sees of a stop.
                let mut cause = std::error::Error::source(error.as_ref());
                while let Some(inner) = cause {
                    write!(f, " ({inner})")?;
                    cause = inner.source();
                }
                Ok(())
            }
        }
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Packages recorded `submitted` by this run.
    pub purchased: usize,
    /// Packages eSMS definitely did not buy.
    pub failed: usize,
    /// Planned packages that are `unconfirmed` after the run: left so by
    /// this run's requests, or not retried.
    pub unconfirmed: usize,
    /// Packages never sent because the run stopped first.
    pub not_attempted: usize,
    /// Packages recorded `submitted` by a `100` while an earlier request
    /// may have charged too ([`PackageResult::possibly_charged_twice`]);
    /// also counted in `purchased`.
    pub possibly_charged_twice: usize,
    /// Every package the plan would buy or retry, in key order.
    pub outcomes: Vec<(Key, PackageResult)>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<StopReason>,
    /// The state after the fold; `None` when nothing was written.
    pub state: Option<StateId>,
    /// Label changes (new names of recorded packages) written to the state
    /// by this run, without any request.
    pub labels: usize,
    /// Changes set aside ([`ApplyOptions::hold`]), in key order.
    pub held: Vec<(Key, HoldReason)>,
}

impl ApplyReport {
    /// Everything the plan would buy is now `submitted`: the CLI's exit 0.
    pub fn succeeded(&self) -> bool {
        self.failed == 0
            && self.unconfirmed == 0
            && self.not_attempted == 0
            && self.stopped.is_none()
    }

    /// What this run spent with `plan`'s price list: every request that
    /// may have charged (each `100` answer and each unknown outcome,
    /// resends included) × the price of the spec it sent. `None` without
    /// a price list; the error when the amount does not fit in a `u64`.
    pub fn spent(
        &self,
        plan: &Plan,
    ) -> Option<Result<crate::prices::Money, crate::prices::CostOverflow>> {
        let prices = plan.prices.as_ref()?;
        let amount = self
            .outcomes
            .iter()
            .filter(|(_, result)| result.charged() > 0)
            .try_fold(0u64, |sum, (key, result)| {
                let price = plan
                    .changes
                    .binary_search_by(|c| c.key.cmp(key))
                    .ok()
                    .and_then(|at| decide::spec_sent(&plan.changes[at]))
                    .and_then(|spec| prices.cost(spec))
                    .ok_or_else(|| prices.overflow())?;
                let cost = prices.times(price.amount, u64::from(result.charged()))?;
                sum.checked_add(cost).ok_or_else(|| prices.overflow())
            });
        Some(amount.map(|amount| prices.money(amount)))
    }

    /// `Apply complete: N purchased, N failed, N unconfirmed.`, with
    /// `, N possibly charged twice` before the period when there are any.
    pub fn summary_line(&self) -> String {
        let twice = if self.possibly_charged_twice > 0 {
            format!(", {} possibly charged twice", self.possibly_charged_twice)
        } else {
            String::new()
        };
        format!(
            "Apply complete: {} purchased, {} failed, {} unconfirmed{twice}.",
            self.purchased, self.failed, self.unconfirmed
        )
    }

    fn push(&mut self, key: Key, result: PackageResult) {
        if result.possibly_charged_twice() {
            self.possibly_charged_twice += 1;
        }
        match &result {
            PackageResult::Submitted { .. } => self.purchased += 1,
            PackageResult::Failed { .. } => self.failed += 1,
            PackageResult::Unconfirmed { .. } | PackageResult::LeftUnconfirmed => {
                self.unconfirmed += 1
            }
            // A resent unconfirmed package that was not sent after all is
            // still unconfirmed in the state.
            PackageResult::NotAttempted {
                action: Action::Unconfirmed,
                ..
            } => self.unconfirmed += 1,
            PackageResult::NotAttempted { .. } => self.not_attempted += 1,
        }
        self.outcomes.push((key, result));
    }
}

/// A refusal by the guards: nothing was locked, written or sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuardRefusal {
    /// The plan buys packages again and `--allow-replace` was not given.
    #[error("{}; nothing was bought", self.reason())]
    ReplaceNotAllowed { keys: Vec<Key> },
    /// Purchases over the months of recorded packages of the same OA and
    /// tier under other keys, and `--allow-overlap` was not given: each key
    /// with the recorded keys it overlaps.
    #[error("{}; nothing was bought", self.reason())]
    OverlapNotAllowed { overlaps: Vec<(Key, Vec<Key>)> },
    /// More purchase requests than `--max-purchases`.
    #[error("{}; nothing was bought", self.reason())]
    TooManyPurchases { counts: Counts, max: usize },
    /// More than one of the three above, all at once (never one per run):
    /// in that order, each at most once.
    #[error(
        "apply will refuse without {}: {}; nothing was bought",
        self.flags().iter().map(Need::flag).collect::<Vec<_>>().join(" "),
        .refusals.iter().map(GuardRefusal::reason).collect::<Vec<_>>().join("; ")
    )]
    NeedsFlags { refusals: Vec<GuardRefusal> },
    /// The run costs more than `--max-spend`.
    #[error(
        "the plan costs {cost}, more than --max-spend {}; nothing was bought",
        crate::prices::thousands(*.max)
    )]
    OverBudget {
        cost: crate::prices::Money,
        max: u64,
    },
    /// `--max-spend` was given but no price list is declared, so the run's
    /// cost is unknown.
    #[error(
        "--max-spend {} needs prices to check against, and the manifests declare no `kind: PriceList`; nothing was bought",
        crate::prices::thousands(*.max)
    )]
    CostUnknown { max: u64 },
    /// What the run would cost does not fit in a `u64`.
    #[error("{0}; nothing was bought")]
    CostOverflow(crate::prices::CostOverflow),
}

/// Why the pre-flight check refused the run (nothing was bought).
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// OAs to be bought for that the account does not hold.
    #[error(
        "pre-flight: the eSMS account does not hold {} OA(s) to be bought for: {}; nothing was bought",
        .oaids.len(), .oaids.join(", ")
    )]
    MissingOas { oaids: Vec<String> },
    /// The `ZNS/GetListZOA/` call failed.
    #[error("pre-flight: could not list the account's OAs; nothing was bought")]
    Call(#[source] CallError),
    /// The account's balance is below what the run costs.
    #[error(
        "pre-flight: the eSMS balance is {}, below the {cost} this run costs; nothing was bought",
        crate::prices::thousands(*.balance)
    )]
    LowBalance {
        balance: u64,
        cost: crate::prices::Money,
    },
    /// The `GetBalance_json` call failed.
    #[error("pre-flight: could not read the account's balance; nothing was bought")]
    Balance(#[source] CallError),
}

/// Why a run did not happen, or could not record what it did.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The guards refused the plan: nothing was locked, written or sent.
    #[error(transparent)]
    Refused(GuardRefusal),
    /// The state moved since the plan was made: nothing was sent.
    #[error("{0}")]
    Stale(StalePlan),
    /// The pre-flight check refused the run: nothing was sent.
    #[error(transparent)]
    Preflight(PreflightError),
    /// Locking, loading or opening the journal failed: nothing was sent.
    #[error(transparent)]
    State(StateError),
    /// Requests were sent (see `report`) but the state file could not be
    /// updated. Every purchase is in the journal (an answer that could not
    /// be recorded there leaves its package `unconfirmed`), which the next
    /// command that takes the lock folds in.
    #[error("{} were sent, but the state file could not be updated; the journal {} keeps every purchase (one whose answer could not be recorded shows as unconfirmed) and the next oapkg command that writes the state folds it in: free disk space or fix the permissions, then run oapkg again", requests_sent(.report), .journal.display())]
    Record {
        report: Box<ApplyReport>,
        journal: std::path::PathBuf,
        #[source]
        source: StateError,
    },
}

impl GuardRefusal {
    /// The refusals a run's missing flags make, together: `None` when no
    /// flag is missing, the one refusal alone, or [`GuardRefusal::NeedsFlags`]
    /// with all of them.
    pub fn of_flags(mut refusals: Vec<GuardRefusal>) -> Option<GuardRefusal> {
        match refusals.len() {
            0 => None,
            1 => refusals.pop(),
            _ => Some(GuardRefusal::NeedsFlags { refusals }),
        }
    }

    /// Why a flag is needed, without the "nothing was bought".
    fn reason(&self) -> String {
        match self {
            GuardRefusal::ReplaceNotAllowed { keys } => format!(
                "the plan replaces {} package(s) already bought ({}): buying a package again with its new spec is not refunded, so it needs --allow-replace",
                keys.len(),
                key_list(keys)
            ),
            GuardRefusal::OverlapNotAllowed { overlaps } => format!(
                "the plan buys {} package(s) over the months of packages already recorded for the same OA and tier: {}. Those months would be paid twice (a moved start date is a new key), so it needs --allow-overlap",
                overlaps.len(),
                overlap_list(overlaps)
            ),
            GuardRefusal::TooManyPurchases { counts, max } => format!(
                "the plan would send {} purchase request(s) ({}), more than --max-purchases {max}",
                counts.requests(),
                counts.describe()
            ),
            other => other.to_string(),
        }
    }

    /// The flags that would let the run through: `--allow-replace`,
    /// `--allow-overlap`, `--max-purchases N` (N the requests); empty for
    /// a refusal no flag of these lifts.
    pub fn flags(&self) -> Vec<Need> {
        match self {
            GuardRefusal::ReplaceNotAllowed { .. } => vec![Need::AllowReplace],
            GuardRefusal::OverlapNotAllowed { .. } => vec![Need::AllowOverlap],
            GuardRefusal::TooManyPurchases { counts, .. } => {
                vec![Need::MaxPurchases(counts.requests())]
            }
            GuardRefusal::NeedsFlags { refusals } => {
                refusals.iter().flat_map(GuardRefusal::flags).collect()
            }
            _ => Vec::new(),
        }
    }

    /// What to do about it, for the user: the flag that lets it through.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            GuardRefusal::NeedsFlags { refusals } => refusals.iter().find_map(GuardRefusal::hint),
            GuardRefusal::OverlapNotAllowed { .. } => Some(
                "If the old record is wrong, fix it first (`oapkg state mv OLDKEY NEWKEY` when eSMS registered \
                 the package under another start, `oapkg state rm` when it was never bought); \
                 if both packages are wanted, run again with --allow-overlap",
            ),
            GuardRefusal::TooManyPurchases { .. } => {
                Some("If the plan is right, raise --max-purchases")
            }
            GuardRefusal::OverBudget { .. } => {
                Some("If the plan is right, raise --max-spend (or narrow the run with --only)")
            }
            GuardRefusal::CostUnknown { .. } => {
                Some("Declare a price list, or run without --max-spend")
            }
            GuardRefusal::ReplaceNotAllowed { .. } | GuardRefusal::CostOverflow(_) => None,
        }
    }
}

impl PreflightError {
    /// The refusal as a plan error (`plan --check-account`): the same facts,
    /// worded for a plan (nothing was going to be bought yet).
    pub fn to_plan_error(&self) -> crate::plan::PlanError {
        let call = |what: &str, error: &CallError| {
            let kind = if error.is_fatal() {
                "credentials_rejected"
            } else {
                "account_unreachable"
            };
            let hint = if error.is_fatal() {
                "Check ESMS_API_KEY / ESMS_SECRET_KEY (or --credentials FILE) and the account on the eSMS portal"
            } else {
                "Check --endpoint / ESMS_ENDPOINT and the network, then plan again"
            };
            crate::plan::PlanError {
                kind,
                message: format!("account check: could not {what}: {error}"),
                hint: Some(hint.to_owned()),
                oaids: Vec::new(),
            }
        };
        match self {
            PreflightError::MissingOas { oaids } => crate::plan::PlanError {
                kind: "oa_not_on_account",
                message: format!(
                    "account check: the eSMS account does not hold {} OA{} to be bought for: {}; apply would refuse this plan",
                    oaids.len(),
                    crate::text::plural(oaids.len()),
                    oaids.join(", ")
                ),
                hint: Some(
                    "Add them to the eSMS account (or fix the OAIDs in the manifests)".to_owned(),
                ),
                oaids: oaids.clone(),
            },
            PreflightError::LowBalance { balance, cost } => crate::plan::PlanError {
                kind: "balance_too_low",
                message: format!(
                    "account check: the eSMS balance is {}, below the {cost} this plan costs; apply would refuse it",
                    crate::prices::thousands(*balance)
                ),
                hint: Some(
                    "Top up the account before merging, or buy less in this change".to_owned(),
                ),
                oaids: Vec::new(),
            },
            PreflightError::Call(error) => call("list the account's OAs", error),
            PreflightError::Balance(error) => call("read the account's balance", error),
        }
    }

    /// What to do about it, for the user.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            PreflightError::MissingOas { .. } => {
                Some("Add them to the account (or fix the OAIDs), or pass --skip-preflight")
            }
            PreflightError::LowBalance { .. } => {
                Some("Top up the account, narrow the run with --only, or pass --skip-preflight")
            }
            PreflightError::Call(_) | PreflightError::Balance(_) => None,
        }
    }
}

impl ApplyError {
    /// What to do about it, for the user, apart from what went wrong.
    pub fn hint(&self) -> Option<String> {
        match self {
            ApplyError::Refused(refusal) => refusal.hint().map(str::to_owned),
            ApplyError::Stale(stale) => Some(stale.hint().to_owned()),
            ApplyError::Preflight(error) => error.hint().map(str::to_owned),
            ApplyError::State(error) => error.hint(),
            ApplyError::Record { .. } => None,
        }
    }

    /// Whether this error can only come from a mistake in oapkg itself.
    pub fn is_bug(&self) -> bool {
        match self {
            ApplyError::State(error) | ApplyError::Record { source: error, .. } => error.is_bug(),
            _ => false,
        }
    }
}

/// Writes the plan's label changes into the state loaded under the lock:
/// each recorded package takes its declared name. No request: a name is a
/// label, not part of what eSMS sold. Returns how many records changed.
fn record_labels(state: &mut crate::state::State, labels: &[crate::plan::LabelChange]) -> usize {
    let mut changed = 0;
    for label in labels {
        if let Some(record) = state.packages.get_mut(&label.key)
            && record.name != label.after
        {
            record.name.clone_from(&label.after);
            changed += 1;
        }
    }
    changed
}

fn requests_sent(report: &ApplyReport) -> String {
    let sent = report
        .outcomes
        .iter()
        .filter(|(_, r)| {
            !matches!(
                r,
                PackageResult::NotAttempted { .. } | PackageResult::LeftUnconfirmed
            )
        })
        .count();
    format!("purchase requests for {sent} package(s)")
}

/// `KEY overlaps OLD, KEY2 overlaps OLD2 and OLD3 and 4 more`.
fn overlap_list(overlaps: &[(Key, Vec<Key>)]) -> String {
    const SHOWN: usize = 10;
    let mut out: Vec<String> = overlaps
        .iter()
        .take(SHOWN)
        .map(|(key, recorded)| {
            let recorded: Vec<&str> = recorded.iter().map(Key::as_str).collect();
            format!("{key} overlaps {}", recorded.join(" and "))
        })
        .collect();
    if overlaps.len() > SHOWN {
        out.push(format!("{} more", overlaps.len() - SHOWN));
    }
    out.join(", ")
}

/// Carries out `plan` against the account behind `client`, recording in
/// `store`. See the module docs for the steps and the guarantees.
///
/// `on_event` is called from the task running this future, in order; it
/// should be quick (print a line, bump a counter). `cancel` asks the run to
/// stop sending (see [Cancellation](self#cancellation-and-dropping)).
///
/// `Ok` means the run happened, whatever its packages' results: look at
/// [`ApplyReport::succeeded`]. `Err` means it was refused before sending
/// anything, except [`ApplyError::Record`].
pub async fn apply(
    plan: &Plan,
    store: impl Into<Store>,
    client: &Client,
    options: &ApplyOptions,
    on_event: &(dyn Fn(ApplyEvent<'_>) + Sync),
    cancel: CancelSignal,
) -> Result<ApplyReport, ApplyError> {
    let store = &store.into();
    let mut selection = decide::select(plan, options).map_err(ApplyError::Refused)?;
    let mut report = ApplyReport::default();
    hold(&mut report, &selection.held, on_event);
    let labels = plan.label_changes();
    if selection.jobs.is_empty() && labels.is_empty() {
        if plan.summary().in_flight > 0 {
            // Another live process is buying these: wait for its lock.
            // By then it has recorded their outcomes, so this plan is stale
            // and says so, rather than calling them unconfirmed.
            let (_lock, loaded, _journal) = lock_and_load(store, options, false).await?;
            if !state_unmoved(&plan.state, &loaded, store.path()) {
                return Err(ApplyError::Stale(decide::stale_state(
                    &plan.state,
                    &loaded.id,
                )));
            }
            // Its holder is gone and left them as they were: unconfirmed.
            for change in plan
                .changes
                .iter()
                .filter(|c| c.action() == Action::InFlight)
            {
                report.push(change.key.clone(), PackageResult::LeftUnconfirmed);
            }
        }
        for change in &selection.left_alone {
            report.push(change.key.clone(), PackageResult::LeftUnconfirmed);
        }
        return Ok(report);
    }
    let (lock, loaded, journal) = lock_and_load(store, options, !selection.jobs.is_empty()).await?;
    if !state_unmoved(&plan.state, &loaded, store.path()) {
        return Err(ApplyError::Stale(decide::stale_state(
            &plan.state,
            &loaded.id,
        )));
    }
    if !options.skip_preflight && !selection.jobs.is_empty() {
        check_account(
            plan,
            &mut selection,
            &mut report,
            client,
            options,
            on_event,
            &cancel,
        )
        .await?;
    }
    let mut state = loaded.state;
    report.labels = record_labels(&mut state, labels);
    let journal = Arc::new(Mutex::new(journal));
    let execution = send_all(&selection, client, &journal, options, on_event, &cancel).await;
    let journaled = report_results(&mut report, &selection, execution);
    if journaled || report.labels > 0 {
        let written = fold(store, lock, state).await;
        drop(journal);
        match written {
            Ok(id) => report.state = Some(id),
            Err(source) => {
                // Where the run's purchases are: beside the state, unless
                // the state directory was moved away during the run.
                let journal = match &source {
                    StateError::Moved { journal, .. } => journal.clone(),
                    _ => store.journal_path(),
                };
                return Err(ApplyError::Record {
                    report: Box::new(report),
                    journal,
                    source,
                });
            }
        }
    }
    Ok(report)
}

/// Phase 1: the lock (a run that will send checks the store first: on S3,
/// that it enforces conditional writes, which the fence stands on), the
/// state as of it (a missing one is refused), and the journal. All of it
/// reads (and may fold) the state file: off the async threads, and
/// together, so the allocations of a large state stay on one blocking
/// thread.
async fn lock_and_load(
    store: &Store,
    options: &ApplyOptions,
    buys: bool,
) -> Result<(WriterLock, Loaded, JournalWriter), ApplyError> {
    let store = store.clone();
    let command = options.command.clone();
    let timeout = options.lock_timeout;
    blocking(move || {
        let (lock, loaded) = if buys {
            store.lock_to_buy(&command, timeout)?
        } else {
            store.lock_and_load(&command, timeout)?
        };
        if !loaded.id.exists() {
            return Err(StateError::Missing {
                path: store.path().to_owned(),
            });
        }
        let journal = store.journal(&lock)?;
        Ok((lock, loaded, journal))
    })
    .await
    .map_err(ApplyError::State)
}

/// Phase 2, the pre-flight: OAs the account lacks refuse the run (or, when
/// holding, set their jobs aside), then a balance below the run's cost
/// refuses it.
async fn check_account(
    plan: &Plan,
    selection: &mut decide::Selection<'_>,
    report: &mut ApplyReport,
    client: &Client,
    options: &ApplyOptions,
    on_event: &(dyn Fn(ApplyEvent<'_>) + Sync),
    cancel: &CancelSignal,
) -> Result<(), ApplyError> {
    let missing = preflight(client, &selection.jobs, &options.retry, cancel)
        .await
        .map_err(ApplyError::Preflight)?;
    if !missing.is_empty() {
        if !options.hold {
            return Err(ApplyError::Preflight(PreflightError::MissingOas {
                oaids: missing,
            }));
        }
        let (kept, set_aside) = std::mem::take(&mut selection.jobs)
            .into_iter()
            .partition(|job| !missing.iter().any(|oaid| *oaid == job.spec.oaid.as_str()));
        selection.jobs = kept;
        let set_aside: Vec<_> = set_aside
            .into_iter()
            .map(|job: decide::Job<'_>| (job.change, HoldReason::OaNotOnAccount))
            .collect();
        hold(report, &set_aside, on_event);
        // Fewer jobs than the guards priced: a part of a sum that fitted
        // fits.
        selection.cost = plan.prices.as_ref().and_then(|prices| {
            prices
                .total(selection.jobs.iter().map(|job| &job.spec))
                .ok()
        });
    }
    if let Some(cost) = &selection.cost
        && !selection.jobs.is_empty()
    {
        preflight_balance(client, cost, &options.retry, cancel, on_event)
            .await
            .map_err(ApplyError::Preflight)?;
    }
    Ok(())
}

/// `plan --check-account`: the pre-flight of [`apply`] (step 4) asked at
/// plan time, for every purchase and replace of `plan` as if every guard's
/// flag were given (the guards are the plan's `needs`, shown apart): one
/// `ZNS/GetListZOA/` call and, when the plan has a cost, one
/// `GetBalance_json` call, each retried like apply's when it got no answer
/// (the OA list is asked even when nothing is to be bought). Buys nothing, takes no lock, reads no state. Returns every problem apply's
/// pre-flight would refuse the run for, as plan errors (none: the account
/// lets the plan through). Rejected credentials or an unreachable endpoint
/// end the check at the first call.
pub async fn plan_account_check(
    plan: &Plan,
    client: &Client,
    retry: &RetryPolicy,
    cancel: &CancelSignal,
) -> Vec<crate::plan::PlanError> {
    let options = ApplyOptions {
        allow_replace: true,
        allow_overlap: true,
        max_purchases: usize::MAX,
        ..ApplyOptions::default()
    };
    let selection = match decide::select(plan, &options) {
        Ok(selection) => selection,
        Err(refusal) => {
            // Only a malformed or unpriceable plan: the plan says so itself.
            tracing::debug!(%refusal, "account check skipped");
            return Vec::new();
        }
    };
    // Asked even when nothing is to be bought: the answer also says whether
    // the keys are accepted, which the next real change depends on.
    let mut errors = Vec::new();
    match preflight(client, &selection.jobs, retry, cancel).await {
        Ok(missing) if missing.is_empty() => {}
        Ok(missing) => errors.push(PreflightError::MissingOas { oaids: missing }),
        Err(error) => return vec![error.to_plan_error()],
    }
    if let Some(cost) = &selection.cost
        && let Err(error) = preflight_balance(client, cost, retry, cancel, &|_| {}).await
    {
        errors.push(error);
    }
    errors.iter().map(PreflightError::to_plan_error).collect()
}

/// Phase 3: every request, each with its durable intent and outcome (see
/// [`executor`]), unless there is none or the run was stopped first.
async fn send_all(
    selection: &decide::Selection<'_>,
    client: &Client,
    journal: &Arc<Mutex<JournalWriter>>,
    options: &ApplyOptions,
    on_event: &(dyn Fn(ApplyEvent<'_>) + Sync),
    cancel: &CancelSignal,
) -> executor::Execution {
    if selection.jobs.is_empty() {
        return executor::Execution::nothing_sent();
    }
    if cancel.is_cancelled() {
        let reason = StopReason::Cancelled;
        on_event(ApplyEvent::Stopping {
            reason: &reason,
            in_flight: 0,
        });
        return executor::Execution::stopped_before_start(&selection.jobs, reason);
    }
    on_event(ApplyEvent::Started {
        requests: selection.jobs.len(),
        parallelism: options.parallelism.max(1),
    });
    // The guards held the first request of every job to --max-spend; the
    // budget holds each resend that may charge again.
    let planned = selection.cost.as_ref().map_or(0, |cost| cost.amount);
    executor::run(
        &selection.jobs,
        client,
        journal,
        options,
        decide::Budget::new(options.max_spend, planned),
        on_event,
        cancel,
    )
    .await
}

/// The report of phase 3, in key order: jobs and packages left alone
/// interleaved. Returns whether anything was journaled (to be folded).
fn report_results(
    report: &mut ApplyReport,
    selection: &decide::Selection<'_>,
    execution: executor::Execution,
) -> bool {
    let mut results: Vec<(Key, PackageResult)> = selection
        .jobs
        .iter()
        .zip(execution.results)
        .map(|(job, result)| (job.change.key.clone(), result))
        .chain(
            selection
                .left_alone
                .iter()
                .map(|c| (c.key.clone(), PackageResult::LeftUnconfirmed)),
        )
        .collect();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, result) in results {
        report.push(key, result);
    }
    report.stopped = execution.stopped;
    execution.journaled
}

/// Phase 4: the journal folded into the state, under the lock, which is
/// then released.
async fn fold(store: &Store, lock: WriterLock, mut state: State) -> Result<StateId, StateError> {
    let store = store.clone();
    blocking(move || {
        let result = store.write(&lock, &mut state);
        drop(lock);
        result
    })
    .await
}

/// Reports each held change and keeps it in the report.
fn hold(
    report: &mut ApplyReport,
    held: &[(&Change, HoldReason)],
    on_event: &(dyn Fn(ApplyEvent<'_>) + Sync),
) {
    for (change, reason) in held {
        on_event(ApplyEvent::Held {
            change,
            key: &change.key,
            reason,
        });
        report.held.push((change.key.clone(), reason.clone()));
    }
    report.held.sort_by(|a, b| a.0.cmp(&b.0));
}

/// One `ZNS/GetListZOA/` call (retried when it got no answer: it buys
/// nothing); answers the OAIDs to be bought that the account does not list.
async fn preflight(
    client: &Client,
    jobs: &[decide::Job<'_>],
    policy: &RetryPolicy,
    cancel: &CancelSignal,
) -> Result<Vec<String>, PreflightError> {
    let oas = read_call("pre-flight", || client.list_oas(), policy, cancel)
        .await
        .map_err(PreflightError::Call)?;
    let missing = decide::missing_oaids(jobs, &oas);
    if missing.is_empty() {
        tracing::debug!(oas = oas.len(), "pre-flight passed");
    }
    Ok(missing)
}

/// A call that reads the account and buys nothing (the OA list, the
/// balance): retried with `policy`'s delays while it got no answer, was not
/// sent or was rate limited, until the delays run out or `cancel` fires.
async fn read_call<T, F, Fut>(
    what: &str,
    call: F,
    policy: &RetryPolicy,
    cancel: &CancelSignal,
) -> Result<T, CallError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let mut delays = policy.delays();
    loop {
        let error = match call().await {
            Ok(answer) => return Ok(answer),
            Err(error) => error,
        };
        let retryable = matches!(
            error,
            CallError::NotSent { .. } | CallError::NoAnswer { .. } | CallError::RateLimited { .. }
        );
        match delays.next() {
            Some(delay) if retryable && !cancel.is_cancelled() => {
                tracing::warn!(%error, delay_ms = delay.as_millis() as u64, "{what} failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = cancel.cancelled() => return Err(error),
                }
            }
            _ => return Err(error),
        }
    }
}

/// One `GetBalance_json` call (retried like the OA list when it got no
/// answer); a balance below `cost` refuses the run.
async fn preflight_balance(
    client: &Client,
    cost: &crate::prices::Money,
    policy: &RetryPolicy,
    cancel: &CancelSignal,
    on_event: &(dyn Fn(ApplyEvent<'_>) + Sync),
) -> Result<(), PreflightError> {
    let balance = read_call("balance check", || client.balance(), policy, cancel)
        .await
        .map_err(PreflightError::Balance)?;
    on_event(ApplyEvent::Balance {
        amount: balance.amount,
        cost,
    });
    // eSMS sends a number; a fractional or negative balance is compared as
    // it is (a cost is whole).
    if balance.amount < cost.amount as f64 {
        let shown = if balance.amount.is_finite() && balance.amount > 0.0 {
            balance.amount.floor() as u64
        } else {
            0
        };
        return Err(PreflightError::LowBalance {
            balance: shown,
            cost: cost.clone(),
        });
    }
    tracing::debug!(
        balance = balance.amount,
        cost = cost.amount,
        "balance check passed"
    );
    Ok(())
}

/// Runs blocking file work (locking, fsync, writing) off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled only when the runtime shuts down under us.
            Err(error) => panic!("blocking state work was cancelled: {error}"),
        },
    }
}

#[cfg(test)]
mod tests;
