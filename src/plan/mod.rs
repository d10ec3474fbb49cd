//! The plan: what apply would do, computed purely from the desired set, the
//! recorded set and today's date, plus its renderings and saved plan files.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::manifest::Package;
use crate::spec::Key;
use crate::state::{Record, StateId};

/// What apply will do for one key (the SPEC's action table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Declared, not in state: buy it.
    Purchase,
    /// Declared and recorded with a different spec hash: buy it again (only
    /// with `--allow-replace`; the earlier purchase is not refunded).
    Replace,
    /// Recorded as unconfirmed: nothing, unless `--retry-unconfirmed`.
    Unconfirmed,
    /// Declared and recorded with the same spec hash: nothing.
    Unchanged,
    /// Recorded, no longer declared: nothing; the record stays.
    Orphan,
}

/// One key's action with both sides of the diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: Key,
    pub action: Action,
    /// The declared package, absent for orphans.
    pub desired: Option<Package>,
    /// The recorded package, absent for purchases.
    pub before: Option<Record>,
}

/// A warning about one key (or the whole run when `key` is `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub key: Option<Key>,
    pub message: String,
}

/// The outcome of the diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub today: Date,
    pub state: StateId,
    /// Content hash of the desired set the plan was made from.
    pub manifest_hash: String,
    /// Every key whose action is not `unchanged`, sorted by key.
    pub changes: Vec<Change>,
    /// How many keys are `unchanged` (counted, not listed).
    pub unchanged: usize,
    pub warnings: Vec<Warning>,
}

mod diff;
pub use diff::{action_for, diff};
