//! The `--format json` document of the SPEC, for scripts and CI.
//!
//! The shape is a contract: every field of the SPEC's example is present with
//! that name and type, in that order; fields may be added (`manifest_hash`
//! is), never renamed or removed. [`FORMAT_VERSION`] changes only when a field
//! changes meaning.
//!
//! Per change, the top-level fields describe the spec the change is about:
//! the declared one, or the recorded one for a key that is not declared
//! (orphans). `before` describes what the state holds for the key (for
//! `replace`, `unconfirmed` and `orphan`; `null` for `purchase`):
//! `{oaid, name, tier, start, duration_months, end, spec_hash, status,
//! service_preview_id}` — the recorded spec with its end date, plus what a
//! reviewer needs to recognise the earlier purchase. eSMS result codes and
//! timestamps stay in the state (`oapkg state show KEY`).

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::plan::{Action, Change, Plan, Summary, Warning};
use crate::spec::{Key, SpecHash, Tier};
use crate::state::{Record, StateId, Status};

/// The version of the JSON plan document.
pub const FORMAT_VERSION: u32 = 1;

/// The whole `--format json` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonPlan {
    pub format_version: u32,
    pub oapkg_version: String,
    pub today: Date,
    /// The state the plan was made against.
    pub state: JsonState,
    /// Content hash of the manifests the plan was made from.
    pub manifest_hash: String,
    /// Every key whose action is not `unchanged`, sorted by key.
    pub changes: Vec<JsonChange>,
    pub warnings: Vec<Warning>,
    pub summary: Summary,
}

/// Which state the plan was made against. Its own type, so that the
/// document's shape does not follow changes to the state module's types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonState {
    /// `null` for a state never written.
    pub lineage: Option<String>,
    pub serial: u64,
    /// `sha256:…`; `null` for a state never written.
    pub checksum: Option<String>,
}

impl From<&StateId> for JsonState {
    fn from(state: &StateId) -> Self {
        JsonState {
            lineage: state.lineage.clone(),
            serial: state.serial,
            checksum: state.checksum.clone(),
        }
    }
}

/// One listed change.
///
/// The spec fields are `Option` only so that a malformed change (neither
/// declared nor recorded, which the diff never produces) still renders; for
/// every real change they are present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonChange {
    pub key: Key,
    pub action: Action,
    pub oaid: String,
    pub name: Option<String>,
    pub tier: Option<Tier>,
    pub start: Option<Date>,
    pub duration_months: Option<u8>,
    pub end: Option<Date>,
    /// What the state holds for this key; `null` for `purchase`.
    pub before: Option<JsonBefore>,
    /// Where the package is declared; `null` when it is not.
    pub source: Option<JsonSource>,
    /// The key's last failed purchase attempt, on a `purchase` or
    /// `replace`; `null` when there is none.
    pub last_failure: Option<JsonFailure>,
}

/// A purchase attempt that bought nothing: eSMS's code (`null` when no
/// request got through), its message verbatim, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonFailure {
    pub code: Option<String>,
    pub message: String,
    pub at: jiff::Timestamp,
}

/// The recorded package a change replaces, retries or leaves alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonBefore {
    pub oaid: String,
    pub name: Option<String>,
    pub tier: Tier,
    pub start: Date,
    pub duration_months: u8,
    pub end: Date,
    pub spec_hash: SpecHash,
    pub status: Status,
    pub service_preview_id: Option<String>,
}

/// A declaration's place: the manifest file and 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonSource {
    pub file: String,
    pub line: u32,
}

impl JsonPlan {
    pub fn from_plan(plan: &Plan) -> JsonPlan {
        JsonPlan {
            format_version: FORMAT_VERSION,
            oapkg_version: env!("CARGO_PKG_VERSION").to_owned(),
            today: plan.today,
            state: JsonState::from(&plan.state),
            manifest_hash: plan.manifest_hash.clone(),
            changes: plan
                .listed_changes()
                .into_iter()
                .map(JsonChange::from_change)
                .collect(),
            warnings: plan.warnings.clone(),
            summary: plan.summary(),
        }
    }
}

impl JsonChange {
    pub fn from_change(change: &Change) -> JsonChange {
        let spec = change.spec();
        JsonChange {
            key: change.key.clone(),
            action: change.action,
            oaid: spec.map_or_else(|| change.key.oaid().to_owned(), |s| s.oaid.to_string()),
            name: change.name().map(str::to_owned),
            tier: spec.map(|s| s.tier),
            start: spec.map(|s| s.start),
            duration_months: spec.map(|s| s.duration_months),
            end: spec.map(|s| s.end()),
            before: change.before.as_ref().map(JsonBefore::from_record),
            last_failure: change.last_failure.as_ref().map(|f| JsonFailure {
                code: f.code.clone(),
                message: f.message.clone(),
                at: f.at,
            }),
            source: change.source().map(|s| JsonSource {
                file: s.file.clone(),
                line: s.line,
            }),
        }
    }
}

impl JsonBefore {
    pub fn from_record(record: &Record) -> JsonBefore {
        JsonBefore {
            oaid: record.spec.oaid.to_string(),
            name: record.name.clone(),
            tier: record.spec.tier,
            start: record.spec.start,
            duration_months: record.spec.duration_months,
            end: record.spec.end(),
            spec_hash: record.spec_hash.clone(),
            status: record.status,
            service_preview_id: record.service_preview_id.clone(),
        }
    }
}

/// The plan as one pretty-printed JSON document, ending with a newline.
pub fn json(plan: &Plan) -> String {
    let mut out = serde_json::to_string_pretty(&JsonPlan::from_plan(plan))
        .expect("a JSON plan has only string keys and always serializes");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::render::fixtures;

    /// The document with the crate version pinned, so a release does not
    /// churn every snapshot.
    fn pinned(plan: &Plan) -> String {
        let version = format!("\"oapkg_version\": \"{}\"", env!("CARGO_PKG_VERSION"));
        let out = json(plan);
        assert!(out.contains(&version));
        out.replacen(&version, "\"oapkg_version\": \"[version]\"", 1)
    }

    #[test]
    fn no_changes() {
        insta::assert_snapshot!(pinned(&fixtures::no_changes()));
    }

    #[test]
    fn purchases_only() {
        insta::assert_snapshot!(pinned(&fixtures::purchases_only()));
    }

    #[test]
    fn mixed() {
        insta::assert_snapshot!(pinned(&fixtures::mixed()));
    }

    #[test]
    fn has_every_spec_field_with_its_type() {
        let value: serde_json::Value = serde_json::from_str(&json(&fixtures::mixed())).unwrap();
        assert_eq!(value["format_version"], 1);
        assert!(value["oapkg_version"].is_string());
        assert_eq!(value["today"], "2026-11-26");
        assert_eq!(value["state"]["serial"], 7);
        assert!(value["state"]["lineage"].is_string());
        assert!(value["state"]["checksum"].is_string());
        let changes = value["changes"].as_array().unwrap();
        let keys: Vec<&str> = changes.iter().map(|c| c["key"].as_str().unwrap()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "changes are sorted by key");
        for change in changes {
            for field in [
                "key",
                "action",
                "oaid",
                "name",
                "tier",
                "start",
                "duration_months",
                "end",
                "before",
                "source",
            ] {
                assert!(change.get(field).is_some(), "{field} missing in {change}");
            }
            assert!(change["oaid"].is_string());
            assert!(change["duration_months"].is_u64());
            match change["action"].as_str().unwrap() {
                "purchase" => assert!(change["before"].is_null()),
                "orphan" => {
                    assert!(change["source"].is_null());
                    assert!(change["before"].is_object());
                }
                "replace" | "unconfirmed" => {
                    assert!(change["before"].is_object());
                    assert!(change["source"]["line"].is_u64());
                }
                other => panic!("unexpected action {other}"),
            }
        }
        assert_eq!(
            value["summary"],
            serde_json::json!({"purchase": 1, "replace": 1, "unconfirmed": 1, "unchanged": 3, "orphan": 1})
        );
        assert_eq!(value["warnings"][1]["key"], serde_json::Value::Null);
    }

    #[test]
    fn reads_back_as_the_same_document() {
        let plan = fixtures::mixed();
        let parsed: JsonPlan = serde_json::from_str(&json(&plan)).unwrap();
        assert_eq!(parsed, JsonPlan::from_plan(&plan));
    }
}
