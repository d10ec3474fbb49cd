//! The recorded set: what oapkg has bought (or may have bought), on disk.
//!
//! This module owns the state file's model ([`State`], [`Record`], [`Status`]),
//! its checksum, the atomic store with its backup, and the writer lock. It
//! never decides what to buy (that is `plan`) and never talks to eSMS.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::{Key, Spec, SpecHash};

/// Everything oapkg has recorded, keyed by package key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Random id fixed when the state file is first written; `None` until then.
    pub lineage: Option<String>,
    /// Grows by one with every write; 0 for a state never written.
    pub serial: u64,
    pub packages: BTreeMap<Key, Record>,
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
}

/// What oapkg knows about a recorded package.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// eSMS answered 100 or 199: the purchase exists.
    Submitted,
    /// A request was sent and its outcome is unknown.
    Unconfirmed,
    /// Recorded by `state import`: bought outside oapkg.
    Imported,
}

/// Which state a plan was made against: enough to tell later whether it moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateId {
    pub lineage: Option<String>,
    pub serial: u64,
    pub checksum: Option<String>,
}
