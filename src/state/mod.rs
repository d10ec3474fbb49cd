//! The recorded set: what oapkg has bought (or may have bought), on disk.
//!
//! This module owns everything about the state file and the files beside it:
//!
//! | file | module | what it holds |
//! |---|---|---|
//! | `<path>` (default [`DEFAULT_STATE_PATH`]) | [`file`](mod@file) (format, checksum), [`store`] (atomic write) | the state: lineage, serial, checksum, packages |
//! | `<path>.backup` | [`store`] | the previous version, kept by every write; `state restore` brings it back |
//! | `<path>.lock` | [`lock`] (`holder` for the label) | the writer lock and who holds it |
//! | `<path>.journal` | [`journal`] (with the lock it is appended under, [`StateLock`]) | purchases recorded by `apply` since the last write |
//!
//! The files' names and directory (`names`, `disk`) sit below all of them,
//! so no file of this module depends on itself through another.
//!
//! [`in_flight`] reads the lock and journal (or the S3 head) to tell the
//! requests a live holder is sending now from unconfirmed ones.
//!
//! The state may instead live on S3-compatible storage (`--state
//! s3://BUCKET/PREFIX`, [`s3`]): a head object changed only by
//! compare-and-swap, holding the lease and the journal lines, and immutable
//! snapshots in the state file's format. [`Store`] ([`location`]) is the one
//! type commands, `apply` and `watch` use for either; both share the format,
//! checksum, journal lines, replay and fold.
//!
//! It never decides what to buy (that is `plan`), never talks to eSMS and never
//! prints: callers get typed values and a [`StateError`] to render.
//!
//! How the pieces fit, for a writer:
//!
//! 1. [`StateStore::lock`] takes the exclusive lock. If a previous holder died
//!    with purchases still in the journal, they are folded into the file now,
//!    so everything loaded afterwards sees one consistent file.
//! 2. [`StateStore::load`] reads the file and replays the journal over it.
//! 3. `apply` records each purchase in the [`Journal`] (intent before sending,
//!    outcome after the answer): one fsync'd line each, whatever the state's
//!    size; it sends each request only with the journal's [`Fence`] permit
//!    (the lock still held; on S3, the lease not lost nor running out).
//! 4. [`StateStore::write`] replays the journal over the caller's state,
//!    writes the file atomically (keeping the backup), and only then removes
//!    the journal.
//!
//! Readers (`plan`, `state list`) only call [`StateStore::load`]; they take no
//! lock and still see every journaled purchase.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::{Key, Oaid, Spec, SpecHash};

mod disk;
mod error;
pub mod file;
mod holder;
pub mod in_flight;
pub mod journal;
pub mod location;
pub mod lock;
mod names;
pub mod s3;
pub mod store;

pub use error::{BackupSummary, StateError};
pub use in_flight::InFlight;
pub use journal::StateLock;
pub use journal::{Journal, JournalEntry, JournalOutcome};
pub use location::{JournalWriter, Store, WriterLock, state_arg};
pub use lock::{Fence, LockHolder, LockStatus, Proof, SendPermit, UnlockOutcome};
pub use store::{Initialized, Loaded, Restored, StateStore};

/// The only `format_version` this oapkg reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// Where the state file lives when neither `--state` nor `OAPKG_STATE` says
/// otherwise, relative to the current directory.
pub const DEFAULT_STATE_PATH: &str = "state/oapkg.state.json";

/// Everything oapkg has recorded, keyed by package key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Random id fixed when the state file is first written; `None` until then.
    pub lineage: Option<String>,
    /// Grows by one with every write; 0 for a state never written.
    pub serial: u64,
    pub packages: BTreeMap<Key, Record>,
    /// Per key, the last purchase attempt eSMS refused or that never got
    /// through, whether or not the key has a record (a fresh purchase that
    /// failed has none). Cleared when the key is submitted.
    pub failed_attempts: FailedAttempts,
    /// Per OA, what Zalo showed the last time `oapkg refresh` read it
    /// (read-back). Written only when not empty.
    pub observations: Observations,
}

/// The last observation of each OA read through Zalo.
pub type Observations = BTreeMap<Oaid, Observation>;

/// What Zalo's OA profile said about an OA's package when it was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    pub observed_at: jiff::Timestamp,
    /// `package_name` verbatim (free text chosen by Zalo); `None` when
    /// Zalo showed none.
    pub package_name: Option<String>,
    /// `package_valid_through_date`: the last day the OA's package
    /// covers; `None` when Zalo showed no package.
    pub valid_through: Option<jiff::civil::Date>,
}

/// The last failed attempt of each key that has one.
pub type FailedAttempts = BTreeMap<Key, FailedAttempt>;

/// A purchase attempt that definitely bought nothing: eSMS refused it
/// (`code`, e.g. 102) or no request got through (`code` is `None`). The
/// next plan shows it on the key's purchase or replace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedAttempt {
    /// eSMS's result code, when it answered with one.
    pub code: Option<String>,
    /// eSMS's message verbatim, or why no request got through.
    pub message: String,
    /// When the answer came.
    pub at: jiff::Timestamp,
}

/// One recorded package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub spec: Spec,
    pub spec_hash: SpecHash,
    pub name: Option<String>,
    pub status: Status,
    /// eSMS's id for the registration, stored as text whatever the wire type.
    pub service_preview_id: Option<String>,
    pub result_code: Option<String>,
    pub result_message: Option<String>,
    /// When the purchase request was (first) sent, or the import was recorded.
    pub submitted_at: Option<jiff::Timestamp>,
    /// Who settled an unconfirmed record with `oapkg state confirm`, and
    /// when. Written only when present (see [`file`](mod@file)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<Confirmation>,
    /// Bought as a coverage policy's renewal: while the OA has a policy,
    /// the record counts as declared (never an orphan). Written only when
    /// true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_policy: bool,
}

/// A person's `oapkg state confirm` of a record whose outcome was unknown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// `--by NAME`, or `$USER@host` (`$LOGNAME` when `USER` is unset);
    /// `zalo` when `oapkg refresh` settled it from Zalo's read-back.
    pub by: String,
    pub at: jiff::Timestamp,
    /// The observation that settled it, for `by: zalo`. Written only when
    /// present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<Observation>,
}

/// What oapkg knows about a recorded package.
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
pub enum Status {
    /// eSMS answered 100 or 199: the purchase exists.
    Submitted,
    /// A request was sent and its outcome is unknown.
    Unconfirmed,
    /// Recorded by `state import`: bought outside oapkg.
    Imported,
}

impl Status {
    /// The status as the state file, listings and plans name it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Submitted => "submitted",
            Status::Unconfirmed => "unconfirmed",
            Status::Imported => "imported",
        }
    }
}

/// Which state a plan was made against: enough to tell later whether it moved.
///
/// `lineage` and `serial` are the state file's. `checksum` is the file's
/// `checksum` field when no journal is pending; when [`StateStore::load`]
/// replayed journal entries it is the checksum of the state as loaded (file
/// plus journal, computed the same way), so the id changes whenever the
/// content a plan saw changes, even before the journal is folded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateId {
    pub lineage: Option<String>,
    pub serial: u64,
    pub checksum: Option<String>,
}

impl StateId {
    /// Whether a state file stands behind this id. A missing file loads as
    /// an empty state without a lineage (see [`StateStore::load`]); only
    /// `oapkg init` or a write gives it one.
    pub fn exists(&self) -> bool {
        self.lineage.is_some()
    }
}
