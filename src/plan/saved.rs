//! Saved plans: what `oapkg plan --out PLANFILE` writes and
//! `oapkg apply PLANFILE` carries out.
//!
//! A saved plan holds everything apply needs to do exactly the reviewed
//! plan and nothing else: per change the key, the action, the declared
//! package (spec, name, where it is declared) and the recorded package it
//! replaces, retries or leaves alone (with its spec hash); and which state
//! and manifests it was made from, so that [`SavedPlan::check_fresh`] can
//! refuse a plan the world has moved past. [`SavedPlan::to_plan`] parses
//! it into the [`Plan`], so apply prints it with the same renderers as
//! `plan` and carries out a plan whose type holds only well-formed changes.
//!
//! The file is pretty JSON ending with a `checksum` of its content, read
//! strictly: [`SavedPlan::decode`] refuses a content that is not a plan, has
//! an unknown format version, does not parse or fails its checksum;
//! [`SavedPlan::to_plan`], the one check of the changes' shape, refuses one
//! that contradicts itself.
//! This module is pure: it encodes and decodes the content; reading and
//! writing the file (atomically, naming it in errors) is
//! [`crate::ops::plan_file`]'s, and so is deciding whether a saved plan is
//! still fresh against the state and manifests of now.
//!
//! ```json
//! {
//!   "kind": "oapkg/plan",
//!   "format_version": 1,
//!   "oapkg_version": "0.1.0",
//!   "today": "2026-11-26",
//!   "state": {"lineage": "…", "serial": 7, "checksum": "sha256:…"},
//!   "state_location": "state/oapkg.state.json",
//!   "manifest_hash": "sha256:…",
//!   "manifest_files": ["packages"],
//!   "manifest_file_hashes": {"packages/shop.yaml": "sha256:…"},
//!   "unchanged": 3,
//!   "changes": [
//!     {"key": "…@2026-12-01", "action": "replace",
//!      "desired": {"spec": {"oaid": "…", "tier": "premium", "start": "2026-12-01", "duration_months": 12},
//!                  "name": "Shop", "source": {"file": "packages/shop.yaml", "line": 12, "column": 5}},
//!      "before": {"spec": {…}, "spec_hash": "sha256:…", "name": "Shop", "status": "submitted", …}}
//!   ],
//!   "warnings": [{"key": null, "message": "…"}],
//!   "checksum": "sha256:…"
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::{Action, Change, LabelChange, Plan, Sides, Warning};
use crate::manifest::{Package, Source};
use crate::spec::{Key, ManifestHash, Spec, sha256_tagged, short_hash};
use crate::state::{FailedAttempt, Record, StateId, Status};

/// The version of the plan file format this oapkg writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The `kind` every plan file carries, so that a state file or a JSON plan
/// given as PLANFILE is refused for what it is.
pub const KIND: &str = "oapkg/plan";

/// A plan as saved for a later apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    pub format_version: u32,
    /// The oapkg that made the plan (informative; not checked).
    pub oapkg_version: String,
    pub today: Date,
    /// The state the plan was made against.
    pub state: StateId,
    /// Where that state was (see [`Plan::state_location`]); left out when
    /// unknown, so files written before it existed read the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_location: Option<String>,
    /// The content hash of the manifests the plan was made from.
    pub manifest_hash: ManifestHash,
    /// The `-f` paths the plan read, as given (empty: the default
    /// `oapkg.yaml`), so `apply PLANFILE` re-reads the same manifests for
    /// its staleness check without being told again.
    pub manifest_files: Vec<String>,
    /// Each manifest file read and the `sha256:` of its bytes, so a stale
    /// plan's error names the files that changed; left out when unknown
    /// (files written before it existed read the same).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub manifest_file_hashes: BTreeMap<String, String>,
    /// How many keys were unchanged, for the summary line.
    pub unchanged: usize,
    /// The listed changes as the file holds them, sorted by key, once
    /// each; [`SavedPlan::to_plan`] parses them.
    pub changes: Vec<SavedChange>,
    /// Names edited on unchanged recorded packages, for apply to record;
    /// left out of the file when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<LabelChange>,
    pub warnings: Vec<Warning>,
    /// The price list the plan's costs come from; left out when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<crate::prices::PriceList>,
    /// Keys bought for a coverage policy; left out when none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub from_policy: std::collections::BTreeSet<Key>,
}

/// One change as the file holds it: the action beside optional sides.
/// Only [`SavedChange::parse`] turns it into a [`Change`], whose [`Sides`]
/// fit the action: the one check of a saved change's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedChange {
    pub key: Key,
    pub action: Action,
    /// The declared package: what to buy. `None` for orphans.
    pub desired: Option<SavedPackage>,
    /// The record as the plan saw it: for `replace` apply checks that its
    /// spec hash is still the recorded one. `None` for purchases.
    pub before: Option<Record>,
    /// The recorded keys a purchase or replace overlaps ([`Change::overlaps`]);
    /// left out of the file when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlaps: Vec<Key>,
    /// The key's last failed attempt, as the plan showed it. Left out when
    /// there is none, so plan files written before it existed read the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<FailedAttempt>,
}

/// A declared package: the spec to buy, its label and where it is declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPackage {
    pub spec: Spec,
    pub name: Option<String>,
    pub source: Source,
}

impl SavedChange {
    fn of(change: &Change) -> SavedChange {
        SavedChange {
            key: change.key.clone(),
            action: change.action(),
            desired: change.desired().map(|p| SavedPackage {
                spec: p.spec.clone(),
                name: p.name.clone(),
                source: p.source.clone(),
            }),
            before: change.before().cloned(),
            overlaps: change.overlaps.clone(),
            last_failure: change.last_failure.clone(),
        }
    }

    /// The change, or why the file's change cannot be in a plan: its sides
    /// do not fit its action ([`Sides::new`]), a package in it has another
    /// key, or an unconfirmed key's record is not unconfirmed.
    fn parse(&self) -> Result<Change, String> {
        let desired = self.desired.as_ref().map(|p| Package {
            spec: p.spec.clone(),
            name: p.name.clone(),
            source: p.source.clone(),
        });
        let sides = Sides::new(self.action, desired, self.before.clone())?;
        let specs = [
            sides.desired().map(|p| &p.spec),
            sides.before().map(|r| &r.spec),
        ];
        for spec in specs.into_iter().flatten() {
            if spec.key() != self.key {
                return Err(format!("holds a package whose key is {}", spec.key()));
            }
        }
        if let Sides::Unconfirmed { before, .. } | Sides::InFlight { before, .. } = &sides
            && before.status != Status::Unconfirmed
        {
            return Err(format!(
                "is listed as `{}` but its record is {}",
                self.action,
                before.status.name()
            ));
        }
        Ok(Change {
            key: self.key.clone(),
            sides,
            overlaps: self.overlaps.clone(),
            last_failure: self.last_failure.clone(),
        })
    }
}

/// The on-disk shape: the plan between a `kind` tag and its checksum.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    kind: String,
    format_version: u32,
    oapkg_version: String,
    today: Date,
    state: StateId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_location: Option<String>,
    manifest_hash: ManifestHash,
    manifest_files: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    manifest_file_hashes: BTreeMap<String, String>,
    unchanged: usize,
    changes: Vec<SavedChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    labels: Vec<LabelChange>,
    warnings: Vec<Warning>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prices: Option<crate::prices::PriceList>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    from_policy: std::collections::BTreeSet<Key>,
    checksum: String,
}

impl SavedPlan {
    /// The plan as apply will need it. `unchanged` entries, which a plan
    /// does not list, are left out; changes are sorted by key.
    pub fn from_plan(plan: &Plan) -> SavedPlan {
        SavedPlan {
            format_version: FORMAT_VERSION,
            oapkg_version: env!("CARGO_PKG_VERSION").to_owned(),
            today: plan.today,
            state: plan.state.clone(),
            state_location: plan.state_location.clone(),
            manifest_hash: plan.manifest_hash.clone(),
            manifest_files: Vec::new(),
            manifest_file_hashes: BTreeMap::new(),
            unchanged: plan.unchanged,
            changes: plan
                .listed_changes()
                .into_iter()
                .map(SavedChange::of)
                .collect(),
            labels: plan.labels.clone(),
            warnings: plan.warnings.clone(),
            prices: plan.prices.clone(),
            from_policy: plan.from_policy.clone(),
        }
    }

    /// The [`Plan`] this file was saved from, to render it as `plan` did:
    /// the one parse of its changes ([`SavedChange::parse`]), refusing a
    /// file that contradicts itself (a change whose sides do not fit its
    /// action, a package under another key, keys out of order or listed
    /// twice), whatever its checksum says.
    pub fn to_plan(&self) -> Result<Plan, DecodeError> {
        let mut changes: Vec<Change> = Vec::with_capacity(self.changes.len());
        for saved in &self.changes {
            let parsed = if changes.last().is_some_and(|p| p.key >= saved.key) {
                Err("is out of order or listed twice".to_owned())
            } else {
                saved.parse()
            };
            changes.push(parsed.map_err(|reason| DecodeError::Inconsistent {
                key: saved.key.to_string(),
                reason,
            })?);
        }
        Ok(Plan {
            today: self.today,
            state: self.state.clone(),
            state_location: self.state_location.clone(),
            manifest_hash: self.manifest_hash.clone(),
            changes,
            unchanged: self.unchanged,
            labels: self.labels.clone(),
            warnings: self.warnings.clone(),
            prices: self.prices.clone(),
            from_policy: self.from_policy.clone(),
            // Not saved: who was buying is news at `plan` time only.
            in_flight_holder: None,
            // Not saved: a plan with errors is not saved.
            errors: Vec::new(),
        })
    }

    /// `Ok` when the state and the manifests are still the ones the plan was
    /// made from; otherwise everything that moved. The caller names the
    /// plan file when it reports the error.
    pub fn check_fresh(
        &self,
        current_state: &StateId,
        current_manifest_hash: &ManifestHash,
    ) -> Result<(), StalePlan> {
        let mut moved = state_moves(&self.state, current_state);
        if self.manifest_hash != *current_manifest_hash {
            moved.push(Moved::Manifests {
                planned: self.manifest_hash.clone(),
                current: current_manifest_hash.clone(),
                files: Vec::new(),
            });
        }
        if moved.is_empty() {
            Ok(())
        } else {
            Err(StalePlan { moved })
        }
    }

    /// The file's content: pretty JSON ending with a newline, the checksum
    /// last.
    pub fn encode(&self) -> String {
        let file = PlanFile {
            kind: KIND.to_owned(),
            format_version: self.format_version,
            oapkg_version: self.oapkg_version.clone(),
            today: self.today,
            state: self.state.clone(),
            state_location: self.state_location.clone(),
            manifest_hash: self.manifest_hash.clone(),
            manifest_files: self.manifest_files.clone(),
            manifest_file_hashes: self.manifest_file_hashes.clone(),
            unchanged: self.unchanged,
            changes: self.changes.clone(),
            labels: self.labels.clone(),
            warnings: self.warnings.clone(),
            prices: self.prices.clone(),
            from_policy: self.from_policy.clone(),
            checksum: self.checksum(),
        };
        let mut out =
            serde_json::to_string_pretty(&file).expect("a plan file has only string keys");
        out.push('\n');
        out
    }

    /// Reads a plan file's content, strictly: a content that is not a plan,
    /// has another format version, does not parse or fails its checksum is
    /// refused (one that contradicts itself is refused by
    /// [`SavedPlan::to_plan`]). Pure; whoever read the content names the
    /// file ([`crate::ops::plan_file`]).
    pub fn decode(content: &str) -> Result<SavedPlan, DecodeError> {
        let value: serde_json::Value =
            serde_json::from_str(content).map_err(DecodeError::Syntax)?;
        if value.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
            return Err(DecodeError::NotAPlan);
        }
        let version = value.get("format_version");
        if version.and_then(|v| v.as_u64()) != Some(u64::from(FORMAT_VERSION)) {
            return Err(DecodeError::UnknownVersion {
                found: version.map_or("none".to_owned(), |v| v.to_string()),
            });
        }
        let file: PlanFile = serde_json::from_value(value).map_err(DecodeError::Invalid)?;
        let recorded = file.checksum;
        let plan = SavedPlan {
            format_version: file.format_version,
            oapkg_version: file.oapkg_version,
            today: file.today,
            state: file.state,
            state_location: file.state_location,
            manifest_hash: file.manifest_hash,
            manifest_files: file.manifest_files,
            manifest_file_hashes: file.manifest_file_hashes,
            unchanged: file.unchanged,
            changes: file.changes,
            labels: file.labels,
            warnings: file.warnings,
            prices: file.prices,
            from_policy: file.from_policy,
        };
        let computed = plan.checksum();
        if recorded != computed {
            return Err(DecodeError::ChecksumMismatch { recorded, computed });
        }
        Ok(plan)
    }

    /// `sha256:` of a versioned, compact encoding of the plan: any change to
    /// what apply would do changes it, reformatting the file does not.
    fn checksum(&self) -> String {
        let body = serde_json::to_string(self).expect("a plan has only string keys");
        sha256_tagged(format!("{KIND}/v{}\n{body}", self.format_version).as_bytes())
    }
}

/// How the state moved from `planned` to `current`: lineage, serial, and the
/// checksum only when lineage and serial say it is the same state (a state
/// edited without its serial growing). Empty when nothing moved.
pub fn state_moves(planned: &StateId, current: &StateId) -> Vec<Moved> {
    let mut moved = Vec::new();
    if planned.lineage != current.lineage {
        moved.push(Moved::Lineage {
            planned: planned.lineage.clone(),
            current: current.lineage.clone(),
        });
    }
    if planned.serial != current.serial {
        moved.push(Moved::Serial {
            planned: planned.serial,
            current: current.serial,
        });
    }
    if moved.is_empty() && planned.checksum != current.checksum {
        moved.push(Moved::Checksum {
            planned: planned.checksum.clone(),
            current: current.checksum.clone(),
        });
    }
    moved
}

/// Why a plan file's content is not a plan oapkg can carry out: a predicate
/// of the file, which whoever read it names
/// ([`crate::ops::plan_file::PlanFileError`]): "plan file X is not valid JSON".
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("is not valid JSON")]
    Syntax(#[source] serde_json::Error),
    #[error("is not an oapkg plan file (no \"kind\": \"{KIND}\")")]
    NotAPlan,
    #[error(
        "has format version {found}, but this oapkg ({}) reads version {FORMAT_VERSION}",
        env!("CARGO_PKG_VERSION")
    )]
    UnknownVersion { found: String },
    #[error("does not hold a valid plan")]
    Invalid(#[source] serde_json::Error),
    #[error(
        "was changed after `oapkg plan` wrote it (its checksum {recorded} does not match its content, {computed})"
    )]
    ChecksumMismatch { recorded: String, computed: String },
    #[error("holds change {key}, which {reason}")]
    Inconsistent { key: String, reason: String },
}

impl DecodeError {
    /// What to do about it, for the user.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            DecodeError::NotAPlan => Some("Give the file written by `oapkg plan --out`"),
            DecodeError::UnknownVersion { .. } => {
                Some("Run `oapkg plan --out` again with this oapkg")
            }
            DecodeError::ChecksumMismatch { .. } => Some("Run `oapkg plan --out` again"),
            _ => None,
        }
    }
}

/// A saved plan made against a state or manifests that have since changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct StalePlan {
    /// Everything that moved, in the order checked.
    pub moved: Vec<Moved>,
}

/// One thing that moved since a plan was saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Moved {
    /// The state file is another one (or was created or re-created).
    Lineage {
        planned: Option<String>,
        current: Option<String>,
    },
    /// The state was written since.
    Serial { planned: u64, current: u64 },
    /// The state's content changed without its serial growing.
    Checksum {
        planned: Option<String>,
        current: Option<String>,
    },
    /// The manifests' content changed; `files` names the files whose
    /// bytes changed, came or went (empty when the plan file recorded no
    /// file hashes).
    Manifests {
        planned: ManifestHash,
        current: ManifestHash,
        files: Vec<FileMoved>,
    },
    /// The state or the manifests moved, and planning again now gives this
    /// key another action (`None`: not listed, i.e. `unchanged`).
    Action {
        key: Key,
        planned: Option<Action>,
        current: Option<Action>,
    },
    /// Planning again from the same manifests and state, today, does not
    /// give this change as saved: the file was edited (its checksum
    /// recomputed), or time moved the package on (e.g. it has ended since
    /// and is now `expired`). `None`: the key is not listed on that side.
    Change {
        key: Key,
        planned: Option<Action>,
        current: Option<Action>,
    },
    /// A package the plan buys starts before today (apply's clock). The
    /// plan file's own `today` is not trusted to say it had started
    /// already when the plan was reviewed.
    Started { key: Key, start: Date, today: Date },
    /// The count of unchanged packages differs from planning again.
    Unchanged { planned: usize, current: usize },
    /// The declared prices differ from the plan's.
    Prices,
    /// Which changes come from a coverage policy differs.
    Policies,
}

/// A manifest file whose bytes differ from when the plan was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileMoved {
    Changed(String),
    Added(String),
    Removed(String),
}

impl fmt::Display for FileMoved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileMoved::Changed(file) => write!(f, "{file} changed"),
            FileMoved::Added(file) => write!(f, "{file} is new"),
            FileMoved::Removed(file) => write!(f, "{file} is gone"),
        }
    }
}

/// The files whose hashes differ between `planned` and `current` (file ->
/// `sha256:` of its bytes), sorted by file. Empty when the plan recorded
/// none.
pub fn file_moves(
    planned: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> Vec<FileMoved> {
    if planned.is_empty() {
        return Vec::new();
    }
    let files: std::collections::BTreeSet<&String> = planned.keys().chain(current.keys()).collect();
    files
        .into_iter()
        .filter_map(|file| match (planned.get(file), current.get(file)) {
            (Some(a), Some(b)) if a != b => Some(FileMoved::Changed(file.clone())),
            (Some(_), None) => Some(FileMoved::Removed(file.clone())),
            (None, Some(_)) => Some(FileMoved::Added(file.clone())),
            _ => None,
        })
        .collect()
}

impl StalePlan {
    /// The stale plan with what its reader needs to see what changed: the
    /// manifest files whose bytes changed (`current_files`, as
    /// [`SavedPlan::manifest_file_hashes`]), and each key whose action
    /// differs between the saved plan (`planned`) and planning again now
    /// (`current`). Pure.
    pub fn explained(
        mut self,
        saved: &SavedPlan,
        planned: &Plan,
        current: &Plan,
        current_files: &BTreeMap<String, String>,
    ) -> StalePlan {
        for moved in &mut self.moved {
            if let Moved::Manifests { files, .. } = moved {
                *files = file_moves(&saved.manifest_file_hashes, current_files);
            }
        }
        let actions = |plan: &Plan| -> BTreeMap<Key, Action> {
            plan.listed_changes()
                .into_iter()
                .map(|c| (c.key.clone(), c.action()))
                .collect()
        };
        let (before, now) = (actions(planned), actions(current));
        let keys: std::collections::BTreeSet<&Key> = before.keys().chain(now.keys()).collect();
        for key in keys {
            let (a, b) = (before.get(key).copied(), now.get(key).copied());
            if a != b {
                self.moved.push(Moved::Action {
                    key: key.clone(),
                    planned: a,
                    current: b,
                });
            }
        }
        self
    }
}

/// Whether two changes do the same: the same action on the same declared
/// package (spec and name), the same record and the same recorded packages
/// overlapped (what the `--allow-overlap` guard reads). Where a package is declared
/// is left out: reformatting a manifest moves lines, not purchases (the
/// manifests' hash, which [`SavedPlan::check_fresh`] compares, ignores them too).
fn same_change(a: Option<&Change>, b: Option<&Change>) -> bool {
    fn declared(c: &Change) -> Option<(&Spec, &Option<String>)> {
        c.desired().map(|p| (&p.spec, &p.name))
    }
    match (a, b) {
        (Some(a), Some(b)) => {
            a.key == b.key
                && a.action() == b.action()
                && declared(a) == declared(b)
                && a.before() == b.before()
                && a.overlaps == b.overlaps
        }
        (None, None) => true,
        _ => false,
    }
}

/// What differs between a saved plan (`saved`) and the plan made again now
/// from the same manifests and state (`current`): apply carries out a
/// saved plan only when planning again gives exactly the same changes, so a
/// plan file edited by hand (even with its checksum recomputed) or one that
/// time has moved past buys nothing. Empty when they agree.
///
/// Changes are compared whole (action, declared package, record seen). A
/// package the plan buys that starts before today now is a difference too:
/// the saved plan's own `today` is never trusted (a forged one, checksum
/// recomputed, would otherwise say it had started already when the plan
/// was made), so a saved plan never buys a package that has started.
/// Pure: `current.today` is the date of the apply (apply's clock), the
/// only date this reads.
pub fn rederive(saved: &Plan, current: &Plan) -> Vec<Moved> {
    let mut moved = Vec::new();
    let by_key = |plan: &'_ Plan| -> std::collections::BTreeMap<Key, Change> {
        plan.listed_changes()
            .into_iter()
            .map(|c| (c.key.clone(), c.clone()))
            .collect()
    };
    let (planned, now) = (by_key(saved), by_key(current));
    let keys: std::collections::BTreeSet<&Key> = planned.keys().chain(now.keys()).collect();
    for key in keys {
        let (a, b) = (planned.get(key), now.get(key));
        if !same_change(a, b) {
            moved.push(Moved::Change {
                key: key.clone(),
                planned: a.map(Change::action),
                current: b.map(Change::action),
            });
        }
    }
    for change in now.values() {
        if let Some(package) = change.to_buy() {
            let start = package.spec.start;
            if start < current.today {
                moved.push(Moved::Started {
                    key: change.key.clone(),
                    start,
                    today: current.today,
                });
            }
        }
    }
    if saved.prices != current.prices {
        moved.push(Moved::Prices);
    }
    if saved.from_policy != current.from_policy {
        moved.push(Moved::Policies);
    }
    if saved.unchanged != current.unchanged {
        moved.push(Moved::Unchanged {
            planned: saved.unchanged,
            current: current.unchanged,
        });
    }
    moved
}

impl fmt::Display for StalePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stale plan: ")?;
        for (i, moved) in self.moved.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{moved}")?;
        }
        Ok(())
    }
}

impl StalePlan {
    /// What to do about it, for the user.
    pub fn hint(&self) -> &'static str {
        "Run `oapkg plan` again and review the new plan before applying"
    }
}

/// An action as a stale-plan message quotes it, `none` when not listed.
fn shown(action: &Option<Action>, none: &str) -> String {
    match action {
        Some(action) => format!("`{action}`"),
        None => none.to_owned(),
    }
}

impl fmt::Display for Moved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_none = |s: &Option<String>| s.clone().unwrap_or_else(|| "(none)".to_owned());
        match self {
            Moved::Lineage { planned, current } => write!(
                f,
                "the state is not the one planned against (lineage {} -> {})",
                or_none(planned),
                or_none(current)
            ),
            Moved::Serial { planned, current } => write!(
                f,
                "the state was written since the plan was made (state serial {planned} -> {current})"
            ),
            Moved::Checksum { planned, current } => write!(
                f,
                "the state's content changed at the same serial (checksum {} -> {})",
                short_hash(&or_none(planned)),
                short_hash(&or_none(current))
            ),
            Moved::Manifests {
                planned,
                current,
                files,
            } => {
                write!(
                    f,
                    "the manifests changed since the plan was made (hash {} -> {})",
                    planned.short(),
                    current.short()
                )?;
                if !files.is_empty() {
                    let files: Vec<String> = files.iter().map(ToString::to_string).collect();
                    write!(f, ": {}", files.join(", "))?;
                }
                Ok(())
            }
            Moved::Action {
                key,
                planned,
                current,
            } => write!(
                f,
                "{key} was {} in the plan and is {} now",
                shown(planned, "`unchanged`"),
                shown(current, "`unchanged`")
            ),
            Moved::Change {
                key,
                planned,
                current,
            } => {
                let action = |a: &Option<Action>| shown(a, "not listed");
                write!(
                    f,
                    "planning again from the same manifests and state does not give {key} as saved \
                     (saved {}, now {}): the plan file was edited, or its package has ended since",
                    action(planned),
                    action(current)
                )
            }
            Moved::Started { key, start, today } => write!(
                f,
                "{key} starts on {start}, before today ({today}): a saved plan never buys a package that has started \
                 (the plan file's own date is not trusted); run `oapkg apply` without a plan file to buy it anyway"
            ),
            Moved::Unchanged { planned, current } => write!(
                f,
                "the plan counts {planned} unchanged package(s), planning again counts {current}: the plan file was edited"
            ),
            Moved::Prices => f.write_str(
                "the declared prices differ from the plan's: its costs are not what apply would pay"
            ),
            Moved::Policies => f.write_str(
                "the coverage policies behind the plan's renewals differ from planning again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::render::{self, TextOptions, fixtures};

    fn saved() -> SavedPlan {
        SavedPlan::from_plan(&fixtures::mixed())
    }

    #[test]
    fn round_trips_through_its_file_content() {
        let plan = fixtures::mixed();
        let saved = SavedPlan::from_plan(&plan);
        let decoded = SavedPlan::decode(&saved.encode()).unwrap();
        assert_eq!(decoded, saved);
        // The rebuilt plan is the plan: apply renders what plan showed.
        assert_eq!(decoded.to_plan().unwrap(), plan);
        let plain = TextOptions { color: false };
        assert_eq!(
            render::text(&decoded.to_plan().unwrap(), &plain),
            render::text(&plan, &plain)
        );
    }

    #[test]
    fn keeps_what_apply_needs() {
        let saved = saved();
        let replace = saved
            .changes
            .iter()
            .find(|c| c.action == Action::Replace)
            .unwrap();
        let before = replace.before.as_ref().unwrap();
        assert_eq!(before.spec_hash, before.spec.hash());
        let desired = replace.desired.as_ref().unwrap();
        let parsed = replace.parse().unwrap();
        assert_eq!(parsed.to_buy().map(|p| &p.spec), Some(&desired.spec));
        assert_eq!(desired.source.file, "packages/shop.yaml");
        let encoded = saved.encode();
        assert!(encoded.starts_with("{\n  \"kind\": \"oapkg/plan\",\n  \"format_version\": 1,"));
        assert!(encoded.trim_end().ends_with('}'));
        let value: serde_json::Value = serde_json::from_str(&encoded).unwrap();
        assert!(value["checksum"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(value["state"]["serial"], 7);
        assert_eq!(value["manifest_hash"], fixtures::MANIFEST_HASH);
    }

    #[test]
    fn the_new_action_and_guards_round_trip() {
        let plan = fixtures::guarded();
        let saved = SavedPlan::from_plan(&plan);
        let read = SavedPlan::decode(&saved.encode()).unwrap();
        assert_eq!(read, saved);
        let again = read.to_plan().unwrap();
        assert_eq!(
            again.changes,
            plan.listed_changes()
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        );
        assert_eq!(again.labels, plan.labels);
        assert_eq!(again.needs(), plan.needs());
        // The same changes; only the purchase that starts before today is
        // refused, whatever the file's own date says (it is not trusted).
        let moved = rederive(&again, &plan);
        assert!(
            !moved.is_empty() && moved.iter().all(|m| matches!(m, Moved::Started { .. })),
            "{moved:?}"
        );
        let mut later = again.clone();
        later.today = plan.today.tomorrow().unwrap();
        assert_eq!(
            rederive(&later, &plan),
            moved,
            "the file's today changes nothing"
        );
        // A file whose overlaps were dropped (checksum recomputed) would
        // slip past the --allow-overlap guard: planning again refuses it.
        let mut edited = again.clone();
        for change in &mut edited.changes {
            change.overlaps.clear();
        }
        assert!(
            edited
                .needs()
                .iter()
                .all(|n| *n != crate::plan::Need::AllowOverlap)
        );
        let moved = rederive(&edited, &plan);
        let changed: Vec<_> = moved
            .iter()
            .filter(|m| !matches!(m, Moved::Started { .. }))
            .collect();
        assert_eq!(changed.len(), 1, "{moved:?}");
        // A plan without overlaps or labels writes neither key, so files of
        // plans without them keep their bytes.
        let plain = SavedPlan::from_plan(&fixtures::mixed()).encode();
        assert!(!plain.contains("\"overlaps\"") && !plain.contains("\"labels\""));
    }

    #[test]
    fn identical_state_and_manifests_are_fresh() {
        let saved = saved();
        assert_eq!(
            saved.check_fresh(&fixtures::state_id(), &fixtures::manifest_hash()),
            Ok(())
        );
    }

    #[test]
    fn an_empty_state_planned_against_is_fresh_while_still_empty() {
        let mut plan = fixtures::purchases_only();
        plan.state = StateId::default();
        let saved = SavedPlan::from_plan(&plan);
        assert!(
            saved
                .check_fresh(&StateId::default(), &fixtures::manifest_hash())
                .is_ok()
        );
        let written = StateId {
            lineage: Some("l".into()),
            serial: 1,
            checksum: Some("sha256:00".into()),
        };
        let stale = saved
            .check_fresh(&written, &fixtures::manifest_hash())
            .unwrap_err();
        assert_eq!(stale.moved.len(), 2, "{stale}");
    }

    #[test]
    fn a_state_written_since_is_stale() {
        let mut current = fixtures::state_id();
        current.serial = 9;
        current.checksum = Some("sha256:ffff".into());
        let stale = saved()
            .check_fresh(&current, &fixtures::manifest_hash())
            .unwrap_err();
        assert_eq!(
            stale.moved,
            vec![Moved::Serial {
                planned: 7,
                current: 9
            }]
        );
        assert_eq!(
            stale.to_string(),
            "stale plan: the state was written since the plan was made (state serial 7 -> 9)"
        );
        assert_eq!(
            stale.hint(),
            "Run `oapkg plan` again and review the new plan before applying"
        );
    }

    #[test]
    fn another_state_file_is_stale() {
        let mut current = fixtures::state_id();
        current.lineage = Some("another-lineage".into());
        let stale = saved()
            .check_fresh(&current, &fixtures::manifest_hash())
            .unwrap_err();
        assert!(matches!(stale.moved[..], [Moved::Lineage { .. }]));
        assert!(stale.to_string().contains("-> another-lineage"));
    }

    #[test]
    fn a_state_edited_at_the_same_serial_is_stale() {
        let mut current = fixtures::state_id();
        current.checksum = Some("sha256:0123456789abcdef0123".into());
        let stale = saved()
            .check_fresh(&current, &fixtures::manifest_hash())
            .unwrap_err();
        assert!(matches!(stale.moved[..], [Moved::Checksum { .. }]));
        assert!(
            stale
                .to_string()
                .contains("checksum sha256:5f2b1c0e9d8a… -> sha256:0123456789ab…"),
            "{stale}"
        );
    }

    #[test]
    fn changed_manifests_are_stale() {
        let stale = saved()
            .check_fresh(
                &fixtures::state_id(),
                &ManifestHash::from_tagged("sha256:1111111111111111".into()),
            )
            .unwrap_err();
        assert!(matches!(stale.moved[..], [Moved::Manifests { .. }]));
        let message = stale.to_string();
        assert!(message.contains("the manifests changed"), "{message}");
        assert!(stale.hint().contains("Run `oapkg plan` again"), "{message}");
    }

    #[test]
    fn unknown_format_version_is_refused() {
        let encoded =
            saved()
                .encode()
                .replacen("\"format_version\": 1,", "\"format_version\": 2,", 1);
        let error = SavedPlan::decode(&encoded).unwrap_err();
        assert!(matches!(error, DecodeError::UnknownVersion { ref found, .. } if found == "2"));
        let message = error.to_string();
        assert!(message.contains("format version 2"), "{message}");
    }

    #[test]
    fn an_edited_plan_is_refused() {
        let encoded =
            saved()
                .encode()
                .replacen("\"duration_months\": 12", "\"duration_months\": 36", 1);
        let error = SavedPlan::decode(&encoded).unwrap_err();
        assert!(matches!(error, DecodeError::ChecksumMismatch { .. }));
    }

    #[test]
    fn reformatting_keeps_the_checksum() {
        let value: serde_json::Value = serde_json::from_str(&saved().encode()).unwrap();
        let compact = serde_json::to_string(&value).unwrap();
        assert_eq!(SavedPlan::decode(&compact).unwrap(), saved());
    }

    #[test]
    fn other_files_are_refused_for_what_they_are() {
        let state_file = r#"{"format_version": 1, "lineage": "x", "serial": 3, "packages": {}}"#;
        let cases = [
            ("{not json", "Syntax"),
            (state_file, "NotAPlan"),
            (r#"{"kind": "oapkg/plan", "format_version": 1}"#, "Invalid"),
            (
                r#"{"kind": "oapkg/plan", "format_version": "1"}"#,
                "UnknownVersion",
            ),
        ];
        for (content, expected) in cases {
            let error = SavedPlan::decode(content).unwrap_err();
            assert!(
                format!("{error:?}").starts_with(expected),
                "{content}: {error:?}"
            );
        }
    }

    #[test]
    fn a_self_contradicting_plan_is_refused_even_with_a_good_checksum() {
        let mut bad = saved();
        let orphan = bad
            .changes
            .iter_mut()
            .find(|c| c.action == Action::Orphan)
            .unwrap();
        orphan.action = Action::Purchase;
        // The checksum holds: the file reads, and its one parse refuses it.
        let read = SavedPlan::decode(&bad.encode()).unwrap();
        let error = read.to_plan().unwrap_err();
        assert!(
            matches!(error, DecodeError::Inconsistent { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("is `purchase` but has no declared package and has a record"),
            "{error}"
        );

        let mut twice = saved();
        twice.changes.push(twice.changes[0].clone());
        let error = SavedPlan::decode(&twice.encode())
            .unwrap()
            .to_plan()
            .unwrap_err();
        assert!(error.to_string().contains("out of order or listed twice"));

        // An unconfirmed key whose record says it was bought, and a
        // package filed under another key.
        let mut submitted = saved();
        let unconfirmed = submitted
            .changes
            .iter_mut()
            .find(|c| c.action == Action::Unconfirmed)
            .unwrap();
        unconfirmed.before.as_mut().unwrap().status = Status::Submitted;
        let error = submitted.to_plan().unwrap_err().to_string();
        assert!(
            error.contains("is listed as `unconfirmed` but its record is submitted"),
            "{error}"
        );
        let mut moved = saved();
        moved.changes[0].desired.as_mut().unwrap().spec.start = jiff::civil::date(2030, 1, 1);
        let error = moved.to_plan().unwrap_err().to_string();
        assert!(error.contains("holds a package whose key is"), "{error}");
    }
}
