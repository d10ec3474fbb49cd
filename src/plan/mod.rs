//! The plan: what apply would do, computed purely from the desired set, the
//! recorded set and today's date, plus its renderings and saved plan files.
//!
//! This module owns the [`Plan`] type and its vocabulary ([`Action`],
//! [`Change`], [`Summary`]); [`render`] turns a plan into what people read
//! (text, JSON, Markdown) and [`saved`] into what `plan --out` writes and
//! `apply PLANFILE` reads; [`inputs`] reads what a plan is made from;
//! [`narrow`] keeps the changes `apply --only` names.
//! Nothing here touches the clock, the environment or the network; only
//! [`saved`] and [`inputs`] read files.

pub mod inputs;
pub mod narrow;
pub mod render;
pub mod saved;

use std::fmt;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::manifest::{Package, Source};
use crate::spec::{Key, Spec};
use crate::state::{FailedAttempt, LockHolder, Record, StateId};

/// What apply will do for one key (the action table of the README's "Concepts").
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Declared, not in state: buy it.
    Purchase,
    /// Declared and recorded with a different spec hash: buy it again (only
    /// with `--allow-replace`; the earlier purchase is not refunded).
    Replace,
    /// Recorded as unconfirmed: nothing, unless `--retry-unconfirmed`.
    Unconfirmed,
    /// Recorded as unconfirmed because another live process holds the
    /// state's lock with this key's purchase request in flight (an intent
    /// with no outcome yet in its journal): nothing is sent for it from
    /// here; that process records its outcome. (`oapkg plan` shows it;
    /// apply never resends it.)
    #[serde(rename = "in_flight")]
    InFlight,
    /// Declared and recorded with the same spec hash: nothing.
    Unchanged,
    /// Recorded, no longer declared: nothing; the record stays.
    Orphan,
    /// Declared, and its period ended before today: nothing, ever. A
    /// period that is over is never bought: a package not in the state, or
    /// a recorded one whose new spec (a `replace`) has already ended.
    Expired,
}

/// One key's action with both sides of the diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: Key,
    /// The action with the sides it acts on; see [`Sides`].
    pub sides: Sides,
    /// For a `purchase` or `replace`: the recorded packages of the same OA
    /// and tier under other keys whose periods overlap this one (a moved
    /// start date, a second package over the same months), sorted. Buying
    /// them needs `--allow-overlap` ([`Change::needs`]).
    pub overlaps: Vec<Key>,
    /// The key's last failed purchase attempt (eSMS refused it, or no
    /// request got through), shown on a `purchase` or `replace`; `None`
    /// for every other action.
    pub last_failure: Option<FailedAttempt>,
}

/// A listed change's action with exactly the sides that action has: the
/// declared package (`desired`) and the recorded one (`before`). A plan
/// cannot hold a `purchase` without the package to buy, a `replace`
/// without the record it replaces, or an `unchanged` key (counted, never
/// listed), so nothing downstream (renderers, apply's guards) checks the
/// shape again: the diff builds these ([`sides_for`]) and a saved plan is
/// parsed into them ([`saved`]), once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sides {
    /// Declared, not in state: buy `desired`.
    Purchase { desired: Package },
    /// Declared and recorded with another spec: buy `desired` again.
    Replace { desired: Package, before: Record },
    /// Recorded as unconfirmed (declared or not): resent as recorded only
    /// with `--retry-unconfirmed`.
    Unconfirmed {
        desired: Option<Package>,
        before: Record,
    },
    /// Recorded as unconfirmed, its request in flight in another process.
    InFlight {
        desired: Option<Package>,
        before: Record,
    },
    /// Recorded, no longer declared.
    Orphan { before: Record },
    /// Declared, its period over (recorded under another spec or not).
    Expired {
        desired: Package,
        before: Option<Record>,
    },
}

impl Sides {
    /// The action these sides are for (never `unchanged`).
    pub fn action(&self) -> Action {
        match self {
            Sides::Purchase { .. } => Action::Purchase,
            Sides::Replace { .. } => Action::Replace,
            Sides::Unconfirmed { .. } => Action::Unconfirmed,
            Sides::InFlight { .. } => Action::InFlight,
            Sides::Orphan { .. } => Action::Orphan,
            Sides::Expired { .. } => Action::Expired,
        }
    }

    /// The declared package; `None` for orphans (and undeclared
    /// unconfirmed keys).
    pub fn desired(&self) -> Option<&Package> {
        match self {
            Sides::Purchase { desired }
            | Sides::Replace { desired, .. }
            | Sides::Expired { desired, .. } => Some(desired),
            Sides::Unconfirmed { desired, .. } | Sides::InFlight { desired, .. } => {
                desired.as_ref()
            }
            Sides::Orphan { .. } => None,
        }
    }

    /// The recorded package; `None` for purchases (and expired packages
    /// never bought).
    pub fn before(&self) -> Option<&Record> {
        match self {
            Sides::Replace { before, .. }
            | Sides::Unconfirmed { before, .. }
            | Sides::InFlight { before, .. }
            | Sides::Orphan { before } => Some(before),
            Sides::Expired { before, .. } => before.as_ref(),
            Sides::Purchase { .. } => None,
        }
    }

    /// The declared package, to edit (tests and fixtures).
    pub fn desired_mut(&mut self) -> Option<&mut Package> {
        match self {
            Sides::Purchase { desired }
            | Sides::Replace { desired, .. }
            | Sides::Expired { desired, .. } => Some(desired),
            Sides::Unconfirmed { desired, .. } | Sides::InFlight { desired, .. } => {
                desired.as_mut()
            }
            Sides::Orphan { .. } => None,
        }
    }

    /// The sides of `action` from what is declared and recorded, or why
    /// they do not fit it (`is \`purchase\` but has a record`): the one
    /// check of a change's shape, for a saved plan read back.
    pub fn new(
        action: Action,
        desired: Option<Package>,
        before: Option<Record>,
    ) -> Result<Sides, String> {
        let (declared, recorded) = (desired.is_some(), before.is_some());
        let sides = match (action, desired, before) {
            (Action::Purchase, Some(desired), None) => Sides::Purchase { desired },
            (Action::Replace, Some(desired), Some(before)) => Sides::Replace { desired, before },
            (Action::Unconfirmed, desired, Some(before)) => Sides::Unconfirmed { desired, before },
            (Action::InFlight, desired, Some(before)) => Sides::InFlight { desired, before },
            (Action::Orphan, None, Some(before)) => Sides::Orphan { before },
            (Action::Expired, Some(desired), before) => Sides::Expired { desired, before },
            (Action::Unchanged, _, _) => {
                return Err("is `unchanged`; a plan lists no such key".into());
            }
            (action, _, _) => {
                let has = |yes: bool| if yes { "has a" } else { "has no" };
                return Err(format!(
                    "is `{action}` but {} declared package and {} record",
                    has(declared),
                    has(recorded),
                ));
            }
        };
        Ok(sides)
    }
}

/// A warning about one key (or the whole run when `key` is `None`), with
/// the place in a manifest it is about when there is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub key: Option<Key>,
    /// The manifest file, line and column (1-based); `None` when the
    /// warning is about no place in a file (or, for line and column, about
    /// a whole file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// What is wrong, without the place.
    pub message: String,
}

impl Warning {
    /// A warning about `key` with no place in a file.
    pub fn about(key: Option<Key>, message: String) -> Warning {
        Warning {
            key,
            file: None,
            line: None,
            column: None,
            message,
        }
    }

    /// `file:line:column: message`, or as much of the place as is known.
    pub fn located(&self) -> String {
        match (&self.file, self.line, self.column) {
            (Some(file), Some(line), Some(column)) => {
                format!("{file}:{line}:{column}: {}", self.message)
            }
            (Some(file), Some(line), None) => format!("{file}:{line}: {}", self.message),
            (Some(file), _, _) => format!("{file}: {}", self.message),
            (None, _, _) => self.message.clone(),
        }
    }
}

/// The default of `apply --max-purchases`: more purchase requests than this
/// in one run need the flag.
pub const DEFAULT_MAX_PURCHASES: usize = 20;

/// A flag apply needs before it carries out a change (or the whole plan):
/// what the plan shows as `needs`, and what apply's guards check. One
/// computation for both ([`Change::needs`], [`Plan::needs`],
/// [`max_purchases_need`]), so the plan never promises what apply refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// A `replace`: the package is bought again, not refunded.
    AllowReplace,
    /// A purchase or replace over the months of a recorded package of the
    /// same OA and tier under another key.
    AllowOverlap,
    /// More purchase requests than the maximum: `--max-purchases N`, N the
    /// number of requests.
    MaxPurchases(usize),
}

impl Need {
    /// The flag as typed: `--allow-replace`, `--max-purchases 25`.
    pub fn flag(&self) -> String {
        match self {
            Need::AllowReplace => "--allow-replace".to_owned(),
            Need::AllowOverlap => "--allow-overlap".to_owned(),
            Need::MaxPurchases(n) => format!("--max-purchases {n}"),
        }
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.flag())
    }
}

impl Serialize for Need {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.flag())
    }
}

impl<'de> Deserialize<'de> for Need {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "--allow-replace" => Ok(Need::AllowReplace),
            "--allow-overlap" => Ok(Need::AllowOverlap),
            other => other
                .strip_prefix("--max-purchases ")
                .and_then(|n| n.parse().ok())
                .map(Need::MaxPurchases)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown need {other:?}"))),
        }
    }
}

/// The guard flags a run is given: what lets a [`Need`] through. The
/// default is a run given none (`--max-purchases` at its default), the
/// run `oapkg plan` describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowed {
    /// `--allow-replace`.
    pub replace: bool,
    /// `--allow-overlap`.
    pub overlap: bool,
    /// `--max-purchases`.
    pub max_purchases: usize,
}

impl Default for Allowed {
    fn default() -> Self {
        Allowed {
            replace: false,
            overlap: false,
            max_purchases: DEFAULT_MAX_PURCHASES,
        }
    }
}

impl Allowed {
    /// Whether these flags let `need` through.
    pub fn permits(&self, need: Need) -> bool {
        match need {
            Need::AllowReplace => self.replace,
            Need::AllowOverlap => self.overlap,
            Need::MaxPurchases(n) => n <= self.max_purchases,
        }
    }
}

/// `--max-purchases N` when `requests` purchase requests are more than
/// `max`. The plan asks it with [`DEFAULT_MAX_PURCHASES`] and the requests
/// it lists; apply with the `--max-purchases` it was given and the requests
/// it would send.
pub fn max_purchases_need(requests: usize, max: usize) -> Option<Need> {
    (requests > max).then_some(Need::MaxPurchases(requests))
}

/// A recorded package whose declared `name` differs, spec unchanged: a
/// label change. It buys nothing; apply records the new name without any
/// request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelChange {
    #[schemars(with = "render::schema::KeySchema")]
    pub key: Key,
    /// The recorded name.
    pub before: Option<String>,
    /// The declared name.
    pub after: Option<String>,
}

impl Action {
    /// Every action, in the order the summary line counts them.
    pub const ALL: [Action; 7] = [
        Action::Purchase,
        Action::Replace,
        Action::Unconfirmed,
        Action::InFlight,
        Action::Unchanged,
        Action::Orphan,
        Action::Expired,
    ];

    /// The action's name, as in JSON and saved plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Purchase => "purchase",
            Action::Replace => "replace",
            Action::Unconfirmed => "unconfirmed",
            Action::InFlight => "in_flight",
            Action::Unchanged => "unchanged",
            Action::Orphan => "orphan",
            Action::Expired => "expired",
        }
    }

    /// The one-character mark the text plan puts in front of a block.
    pub fn symbol(self) -> char {
        match self {
            Action::Purchase => '+',
            Action::Replace => '~',
            Action::Unconfirmed => '?',
            Action::InFlight => '*',
            Action::Unchanged => ' ',
            Action::Orphan => '!',
            Action::Expired => 'x',
        }
    }

    /// Whether the key is not settled: apply may send a purchase request
    /// for it, or (`in_flight`) another process is sending one now. What
    /// `--detailed-exitcode` reports as "something to buy": an in-flight
    /// key is counted as an unconfirmed one is, since the state is not
    /// settled until its outcome is recorded (apply itself never resends it).
    pub fn buys(self) -> bool {
        matches!(
            self,
            Action::Purchase | Action::Replace | Action::Unconfirmed | Action::InFlight
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Change {
    /// A change with no overlaps and no failed attempt.
    pub fn new(key: Key, sides: Sides) -> Change {
        Change {
            key,
            sides,
            overlaps: Vec::new(),
            last_failure: None,
        }
    }

    /// What apply will do for the key.
    pub fn action(&self) -> Action {
        self.sides.action()
    }

    /// The declared package, absent for orphans.
    pub fn desired(&self) -> Option<&Package> {
        self.sides.desired()
    }

    /// The recorded package, absent for purchases.
    pub fn before(&self) -> Option<&Record> {
        self.sides.before()
    }

    /// The spec the change is about: the declared one when there is one, the
    /// recorded one otherwise (orphans, undeclared unconfirmed keys).
    pub fn spec(&self) -> &Spec {
        match &self.sides {
            Sides::Purchase { desired }
            | Sides::Replace { desired, .. }
            | Sides::Expired { desired, .. }
            | Sides::Unconfirmed {
                desired: Some(desired),
                ..
            }
            | Sides::InFlight {
                desired: Some(desired),
                ..
            } => &desired.spec,
            Sides::Unconfirmed {
                desired: None,
                before,
            }
            | Sides::InFlight {
                desired: None,
                before,
            }
            | Sides::Orphan { before } => &before.spec,
        }
    }

    /// The package a `purchase` or `replace` buys; `None` for every other
    /// action.
    pub fn to_buy(&self) -> Option<&Package> {
        match &self.sides {
            Sides::Purchase { desired } | Sides::Replace { desired, .. } => Some(desired),
            _ => None,
        }
    }

    /// The label: the declared name when declared, else the recorded one.
    pub fn name(&self) -> Option<&str> {
        match (self.desired(), self.before()) {
            (Some(package), _) => package.name.as_deref(),
            (None, Some(record)) => record.name.as_deref(),
            (None, None) => None,
        }
    }

    /// Where the package is declared; `None` when it is not (orphans).
    pub fn source(&self) -> Option<&Source> {
        self.desired().map(|p| &p.source)
    }

    /// The flags apply needs to carry out this change, sorted: a `replace`
    /// needs `--allow-replace`; a `purchase` or `replace` over a recorded
    /// package's months ([`Change::overlaps`]) needs `--allow-overlap`.
    pub fn needs(&self) -> Vec<Need> {
        let mut needs = Vec::new();
        if self.action() == Action::Replace {
            needs.push(Need::AllowReplace);
        }
        if matches!(self.action(), Action::Purchase | Action::Replace) && !self.overlaps.is_empty()
        {
            needs.push(Need::AllowOverlap);
        }
        needs
    }
}

/// How many keys take each action: the numbers of the summary line and of
/// the JSON `summary` object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub purchase: usize,
    pub replace: usize,
    pub unconfirmed: usize,
    /// Unconfirmed keys another live process is buying now (not counted in
    /// `unconfirmed`).
    #[serde(default)]
    pub in_flight: usize,
    pub unchanged: usize,
    pub orphan: usize,
    pub expired: usize,
}

impl Summary {
    /// The count for one action.
    pub fn count(&self, action: Action) -> usize {
        match action {
            Action::Purchase => self.purchase,
            Action::Replace => self.replace,
            Action::Unconfirmed => self.unconfirmed,
            Action::InFlight => self.in_flight,
            Action::Unchanged => self.unchanged,
            Action::Orphan => self.orphan,
            Action::Expired => self.expired,
        }
    }

    /// True when apply may send a purchase request (`purchase`, `replace`
    /// or `unconfirmed`), or another process is sending one (`in_flight`:
    /// not settled, see [`Action::buys`]); orphans and unchanged packages
    /// buy nothing.
    pub fn buys_anything(&self) -> bool {
        self.purchase + self.replace + self.unconfirmed + self.in_flight > 0
    }

    /// Purchase requests the plan lists: every `purchase` and `replace`
    /// (unconfirmed packages are resent only on request).
    pub fn requests(&self) -> usize {
        self.purchase + self.replace
    }

    /// `Plan: N to purchase, N to replace, N unconfirmed, N unchanged, N orphaned.`
    /// or, when nothing is to be bought, `No changes. N unchanged, N orphaned.`;
    /// `, N expired` and `, N in flight` before the period when there are any.
    pub fn line(&self) -> String {
        let mut expired = if self.expired > 0 {
            format!(", {} expired", self.expired)
        } else {
            String::new()
        };
        if self.in_flight > 0 {
            expired.push_str(&format!(", {} in flight", self.in_flight));
        }
        if self.buys_anything() {
            format!(
                "Plan: {} to purchase, {} to replace, {} unconfirmed, {} unchanged, {} orphaned{expired}.",
                self.purchase, self.replace, self.unconfirmed, self.unchanged, self.orphan
            )
        } else {
            format!(
                "No changes. {} unchanged, {} orphaned{expired}.",
                self.unchanged, self.orphan
            )
        }
    }
}

impl Plan {
    /// The counts per action. Unchanged keys are counted by
    /// [`Plan::unchanged`] alone: `changes` cannot list them ([`Sides`]).
    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            unchanged: self.unchanged,
            ..Summary::default()
        };
        for change in &self.changes {
            match change.action() {
                Action::Purchase => summary.purchase += 1,
                Action::Replace => summary.replace += 1,
                Action::Unconfirmed => summary.unconfirmed += 1,
                Action::InFlight => summary.in_flight += 1,
                Action::Orphan => summary.orphan += 1,
                Action::Expired => summary.expired += 1,
                Action::Unchanged => {}
            }
        }
        summary
    }

    /// True when apply may buy something: what `--detailed-exitcode` turns
    /// into exit status 2.
    pub fn buys_anything(&self) -> bool {
        self.summary().buys_anything()
    }

    /// The flags apply needs to carry out the whole plan, sorted, once
    /// each: every change's [`Change::needs`], and `--max-purchases N` when
    /// the plan lists more purchase requests than [`DEFAULT_MAX_PURCHASES`].
    pub fn needs(&self) -> Vec<Need> {
        self.needs_beyond(&Allowed::default())
    }

    /// The flags apply still needs for the whole plan when run with
    /// `allowed`: [`Plan::needs`] without those given, `--max-purchases N`
    /// counted against the maximum given. What a plan shown by `apply`
    /// reports: never a flag already given.
    pub fn needs_beyond(&self, allowed: &Allowed) -> Vec<Need> {
        let mut needs: Vec<Need> = self
            .listed_changes()
            .into_iter()
            .flat_map(Change::needs)
            .filter(|need| !allowed.permits(*need))
            .collect();
        needs.extend(max_purchases_need(
            self.summary().requests(),
            allowed.max_purchases,
        ));
        needs.sort();
        needs.dedup();
        needs
    }

    /// The action the plan takes for `key`: `None` when it does not list
    /// the key (unchanged, or not in the plan at all). `changes` are sorted
    /// by key, as the diff makes them.
    pub fn action_of(&self, key: &Key) -> Option<Action> {
        self.changes
            .binary_search_by(|c| c.key.cmp(key))
            .ok()
            .map(|i| self.changes[i].action())
    }

    /// The label changes of recorded packages (a `name` edited, the spec
    /// unchanged), sorted by key: what apply records without a request.
    pub fn label_changes(&self) -> &[LabelChange] {
        &self.labels
    }

    /// `No state at LOCATION: this plan assumes nothing has ever been
    /// bought.` when the state the plan was made against does not exist
    /// (every package is then a purchase, which a reviewer must not take
    /// for the real plan); `None` when it exists. The location is escaped.
    pub fn no_state_line(&self) -> Option<String> {
        if self.state.exists() {
            return None;
        }
        let at = match &self.state_location {
            Some(location) => format!(" at {}", crate::text::escape_controls(location)),
            None => String::new(),
        };
        Some(format!(
            "No state{at}: this plan assumes nothing has ever been bought."
        ))
    }

    /// The final line of every rendering; see [`Summary::line`].
    pub fn summary_line(&self) -> String {
        self.summary().line()
    }

    /// What buying `change` costs with the plan's price list: `None`
    /// without one, for a change that buys nothing as planned (only a
    /// `purchase` or `replace` is a purchase request the plan lists), or
    /// when the cost does not fit in a `u64` ([`Plan::total_cost`] is then
    /// the error).
    pub fn cost(&self, change: &Change) -> Option<crate::prices::Money> {
        let prices = self.prices.as_ref()?;
        change.to_buy().and_then(|p| prices.cost(&p.spec))
    }

    /// The plan's total cost: every `purchase` and `replace`. `None`
    /// without a price list; the error when it does not fit in a `u64`
    /// (never a saturated amount).
    pub fn total_cost(&self) -> Option<Result<crate::prices::Money, crate::prices::CostOverflow>> {
        let prices = self.prices.as_ref()?;
        let specs = self
            .listed_changes()
            .into_iter()
            .filter_map(|c| c.to_buy().map(|p| &p.spec));
        Some(prices.total(specs))
    }

    /// `Err` when the plan's total cost does not fit in a `u64`: `plan`
    /// and `apply` refuse such a plan (exit 1) instead of showing or
    /// checking a wrapped or saturated amount.
    pub fn check_cost(&self) -> Result<(), crate::prices::CostOverflow> {
        self.total_cost().transpose().map(drop)
    }

    /// Whether `change` comes from a coverage policy (`origin: policy`).
    pub fn is_from_policy(&self, change: &Change) -> bool {
        self.from_policy.contains(&change.key)
    }

    /// The changes to show, sorted by key (a change is never `unchanged`).
    ///
    /// The diff already sorts them; sorting again here keeps every renderer
    /// deterministic even for a plan built by hand.
    pub fn listed_changes(&self) -> Vec<&Change> {
        let mut listed: Vec<&Change> = self.changes.iter().collect();
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        listed
    }
}

/// The outcome of the diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub today: Date,
    pub state: StateId,
    /// Where the state is, as messages name it (the `--state` path or
    /// `s3://BUCKET/PREFIX`); `None` when the plan was made without a
    /// store (tests, the diff alone). Every rendering names it when the
    /// state does not exist ([`Plan::no_state_line`]).
    pub state_location: Option<String>,
    /// Content hash of the desired set the plan was made from.
    pub manifest_hash: crate::spec::ManifestHash,
    /// Every key whose action is not `unchanged`, sorted by key, once
    /// each: the diff builds them so and a saved plan is parsed only when
    /// they are ([`saved::SavedPlan::decode`]); apply does not check again.
    pub changes: Vec<Change>,
    /// How many keys are `unchanged` (counted, not listed).
    pub unchanged: usize,
    /// Names edited on unchanged recorded packages, sorted by key.
    pub labels: Vec<LabelChange>,
    pub warnings: Vec<Warning>,
    /// The manifests' price list: what each change costs. `None` when none
    /// is declared.
    pub prices: Option<crate::prices::PriceList>,
    /// The keys whose declared package comes from a coverage policy (a
    /// renewal, or a renewal the policy bought earlier): `origin: policy`.
    pub from_policy: std::collections::BTreeSet<Key>,
    /// Who holds the state's lock with the `in_flight` changes' requests
    /// in flight (see [`Plan::mark_in_flight`]); `None` when no change is
    /// in flight, or the holder left no readable label.
    pub in_flight_holder: Option<LockHolder>,
    /// What makes this plan fail though it renders (exit 1): what `plan
    /// --check-account` found on the eSMS account. Empty otherwise; never
    /// saved.
    pub errors: Vec<PlanError>,
}

/// A problem found beside the diff that apply would refuse the plan for:
/// today, one found by `plan --check-account` (apply's pre-flight, asked at
/// plan time). Shown in every format; `plan` then exits 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    /// A stable name for programs (the JSON `errors[].kind`):
    /// `oa_not_on_account`, `balance_too_low`, `credentials_rejected`,
    /// `account_unreachable`.
    pub kind: &'static str,
    /// What is wrong, in one sentence (scrubbed, escaped by the renderers).
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The OAIDs concerned (`oa_not_on_account`), sorted; empty otherwise.
    pub oaids: Vec<String>,
}

mod diff;
pub use diff::{action_for, diff, sides_for, starts_before_today_applies};
