//! The `--format json` document, for scripts and CI.
//!
//! The shape is a contract, written down field by field in
//! `docs/plan-json.md` in the repository: every field is present with its
//! name and type, in order; fields may be added, never renamed or removed.
//! [`FORMAT_VERSION`] changes only when a field changes meaning. The types
//! below are that document; keep the two together.

use jiff::civil::Date;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::{DateSchema, HashSchema, KeySchema, NeedSchema, TimestampSchema};

use crate::plan::{Action, Change, LabelChange, Need, Plan, Summary, Warning};
use crate::spec::{Key, SpecHash, Tier};
use crate::state::{LockHolder, Record, StateId, Status};

/// The version of the JSON plan document.
pub const FORMAT_VERSION: u32 = 2;

/// The whole `--format json` document.
// (Not in the schema's description: `C` is how the changes are held, a
// list to read a document back, or `ListedChanges`, which encodes each
// change only as it is written.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Plan")]
pub struct JsonPlan<C = Vec<JsonChange>> {
    pub format_version: u32,
    pub oapkg_version: String,
    #[schemars(with = "DateSchema")]
    pub today: Date,
    /// The state the plan was made against.
    pub state: JsonState,
    /// Content hash of the manifests the plan was made from.
    #[schemars(with = "HashSchema")]
    pub manifest_hash: crate::spec::ManifestHash,
    /// Every key whose action is not `unchanged`, sorted by key.
    #[schemars(with = "Vec<JsonChange>")]
    pub changes: C,
    pub warnings: Vec<JsonWarning>,
    /// The flags apply needs for the whole plan.
    #[schemars(with = "Vec<NeedSchema>")]
    pub needs: Vec<Need>,
    pub summary: JsonSummary,
    /// Names edited on unchanged recorded packages.
    pub labels: Vec<LabelChange>,
    /// What makes the plan fail (exit 1) though it renders: what
    /// `--check-account` found on the eSMS account. Empty otherwise.
    #[serde(default)]
    pub errors: Vec<JsonPlanError>,
}

/// One plan error: `kind` is `oa_not_on_account`, `balance_too_low`,
/// `credentials_rejected` or `account_unreachable`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "PlanError")]
pub struct JsonPlanError {
    pub kind: String,
    pub message: String,
    pub hint: Option<String>,
    /// The OAIDs concerned (`oa_not_on_account`); empty otherwise.
    pub oaids: Vec<String>,
}

impl From<&crate::plan::PlanError> for JsonPlanError {
    fn from(error: &crate::plan::PlanError) -> Self {
        JsonPlanError {
            kind: error.kind.to_owned(),
            message: error.message.clone(),
            hint: error.hint.clone(),
            oaids: error.oaids.clone(),
        }
    }
}

/// A warning with its place; `null` where there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Warning")]
pub struct JsonWarning {
    #[schemars(with = "Option<KeySchema>")]
    pub key: Option<Key>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
}

impl From<&Warning> for JsonWarning {
    fn from(warning: &Warning) -> Self {
        JsonWarning {
            key: warning.key.clone(),
            file: warning.file.clone(),
            line: warning.line,
            column: warning.column,
            message: warning.message.clone(),
        }
    }
}

/// An amount of money: `{"amount": 4788000, "currency": "VND"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Cost {
    pub amount: u64,
    pub currency: String,
}

impl From<crate::prices::Money> for Cost {
    fn from(money: crate::prices::Money) -> Self {
        Cost {
            amount: money.amount,
            currency: money.currency,
        }
    }
}

/// Where a change comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A package declared in a manifest (or recorded, for orphans).
    Manifest,
    /// A renewal made by a coverage policy.
    Policy,
}

/// The counts per action and the plan's total cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Summary")]
pub struct JsonSummary {
    pub purchase: usize,
    pub replace: usize,
    pub unconfirmed: usize,
    pub unchanged: usize,
    pub orphan: usize,
    pub expired: usize,
    pub cost: Option<Cost>,
    /// Unconfirmed keys another live process is buying now (not counted
    /// in `unconfirmed`).
    #[serde(default)]
    pub in_flight: usize,
}

impl From<Summary> for JsonSummary {
    fn from(summary: Summary) -> Self {
        JsonSummary {
            purchase: summary.purchase,
            replace: summary.replace,
            unconfirmed: summary.unconfirmed,
            unchanged: summary.unchanged,
            orphan: summary.orphan,
            expired: summary.expired,
            cost: None,
            in_flight: summary.in_flight,
        }
    }
}

/// Which state the plan was made against. Its own type, so that the
/// document's shape does not follow changes to the state module's types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "State", description = "The state the plan was made against.")]
pub struct JsonState {
    /// Where the state is: the `--state` path or `s3://BUCKET/PREFIX`.
    /// Left out when the plan was made without one (never by `oapkg plan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Whether the state exists. `false`: the plan assumes nothing has ever
    /// been bought (every declared package is a purchase).
    #[serde(default)]
    pub exists: bool,
    /// `null` for a state never written.
    pub lineage: Option<String>,
    pub serial: u64,
    /// `sha256:…`; `null` for a state never written.
    pub checksum: Option<String>,
}

impl JsonState {
    /// The plan's state, with where it is.
    pub fn of(plan: &Plan) -> Self {
        JsonState {
            location: plan.state_location.clone(),
            ..JsonState::from(&plan.state)
        }
    }
}

impl From<&StateId> for JsonState {
    fn from(state: &StateId) -> Self {
        JsonState {
            location: None,
            exists: state.exists(),
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    rename = "Change",
    description = "One change: a key whose action is not `unchanged`. The spec fields are `null` only for a malformed change, which the plan never holds."
)]
pub struct JsonChange {
    #[schemars(with = "KeySchema")]
    pub key: Key,
    pub action: Action,
    pub oaid: String,
    pub name: Option<String>,
    pub tier: Option<Tier>,
    #[schemars(with = "Option<DateSchema>")]
    pub start: Option<Date>,
    pub duration_months: Option<u8>,
    #[schemars(with = "Option<DateSchema>")]
    pub end: Option<Date>,
    /// What the state holds for this key; `null` for `purchase`.
    pub before: Option<JsonBefore>,
    pub origin: Origin,
    /// The flags apply needs for this change.
    #[schemars(with = "Vec<NeedSchema>")]
    pub needs: Vec<Need>,
    /// What buying it costs; `null` without a price list.
    pub cost: Option<Cost>,
    /// Where the package is declared; `null` when it is not.
    pub source: Option<JsonSource>,
    /// For a purchase or replace: the recorded keys of the same OA and tier
    /// whose months it overlaps.
    #[schemars(with = "Vec<KeySchema>")]
    pub overlaps: Vec<Key>,
    /// The key's last failed purchase attempt, on a `purchase` or
    /// `replace`; `null` when there is none.
    pub last_failure: Option<JsonFailure>,
    /// For `in_flight`: who holds the state's lock with the request in
    /// flight; `null` otherwise (and when the holder left no label).
    #[serde(default)]
    pub holder: Option<JsonHolder>,
}

/// Who holds the state's lock (or S3 lease): the label it wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Holder")]
pub struct JsonHolder {
    pub pid: u32,
    pub host: String,
    /// The command line that took the lock, e.g. `oapkg apply`.
    pub command: String,
    /// When it took the lock.
    #[schemars(with = "TimestampSchema")]
    pub since: jiff::Timestamp,
    /// The CI job running it, when known; `null` otherwise.
    pub ci_job: Option<String>,
}

impl From<&LockHolder> for JsonHolder {
    fn from(holder: &LockHolder) -> Self {
        JsonHolder {
            pid: holder.pid,
            host: holder.host.clone(),
            command: holder.command.clone(),
            since: holder.since,
            ci_job: holder.ci_job.as_deref().map(str::to_owned),
        }
    }
}

/// A purchase attempt that bought nothing: eSMS's code (`null` when no
/// request got through), its message verbatim, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Failure")]
pub struct JsonFailure {
    pub code: Option<String>,
    pub message: String,
    #[schemars(with = "TimestampSchema")]
    pub at: jiff::Timestamp,
}

/// The recorded package a change replaces, retries or leaves alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Recorded")]
pub struct JsonBefore {
    pub oaid: String,
    pub name: Option<String>,
    pub tier: Tier,
    #[schemars(with = "DateSchema")]
    pub start: Date,
    pub duration_months: u8,
    // Always a date: a period past 9999-12-31 is refused by validation and
    // by every state load, so no plan holds one (the schema, part of the
    // format's contract, stays as it was).
    #[schemars(with = "DateSchema")]
    pub end: Option<Date>,
    #[schemars(with = "HashSchema")]
    pub spec_hash: SpecHash,
    pub status: Status,
    pub service_preview_id: Option<String>,
}

/// A declaration's place: the manifest file and 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Source")]
pub struct JsonSource {
    pub file: String,
    pub line: u32,
}

impl JsonPlan {
    pub fn from_plan(plan: &Plan) -> JsonPlan {
        let changes = ListedChanges { plan }.iter().collect();
        JsonPlan::with_changes(plan, changes)
    }
}

impl<C> JsonPlan<C> {
    fn with_changes(plan: &Plan, changes: C) -> JsonPlan<C> {
        JsonPlan {
            format_version: FORMAT_VERSION,
            oapkg_version: env!("CARGO_PKG_VERSION").to_owned(),
            today: plan.today,
            state: JsonState::of(plan),
            manifest_hash: plan.manifest_hash.clone(),
            changes,
            warnings: plan.warnings.iter().map(JsonWarning::from).collect(),
            needs: plan.needs(),
            summary: JsonSummary {
                // A total that does not fit is `null`, never a wrapped
                // amount (`plan` refuses such a plan before rendering it).
                cost: plan.total_cost().and_then(Result::ok).map(Cost::from),
                ..plan.summary().into()
            },
            labels: plan.labels.clone(),
            errors: plan.errors.iter().map(JsonPlanError::from).collect(),
        }
    }
}

/// A plan's listed changes, each made a [`JsonChange`] only as it is
/// serialized: a plan of many purchases need not hold them all twice.
struct ListedChanges<'a> {
    plan: &'a Plan,
}

impl<'a> ListedChanges<'a> {
    fn iter(&self) -> impl ExactSizeIterator<Item = JsonChange> + 'a {
        let plan = self.plan;
        plan.listed_changes()
            .into_iter()
            .map(move |change| JsonChange::from_change(plan, change))
    }
}

impl Serialize for ListedChanges<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl JsonChange {
    pub fn from_change(plan: &Plan, change: &Change) -> JsonChange {
        let spec = change.spec();
        JsonChange {
            key: change.key.clone(),
            action: change.action(),
            oaid: spec.oaid.to_string(),
            name: change.name().map(str::to_owned),
            tier: Some(spec.tier),
            start: Some(spec.start),
            duration_months: Some(spec.duration_months),
            end: spec.end(),
            before: change.before().map(JsonBefore::from_record),
            origin: if plan.is_from_policy(change) {
                Origin::Policy
            } else {
                Origin::Manifest
            },
            needs: change.needs(),
            cost: plan.cost(change).map(Cost::from),
            last_failure: change.last_failure.as_ref().map(|f| JsonFailure {
                code: f.code.clone(),
                message: f.message.clone(),
                at: f.at,
            }),
            source: change.source().map(|s| JsonSource {
                file: s.file.clone(),
                line: s.line,
            }),
            overlaps: change.overlaps.clone(),
            holder: (change.action() == Action::InFlight)
                .then(|| plan.in_flight_holder.as_ref().map(JsonHolder::from))
                .flatten(),
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
    let mut out = Vec::new();
    write_json(plan, &mut out).expect("a JSON plan has only string keys and always serializes");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// [`json`], written to `out` as it is encoded (buffered): a plan of many
/// purchases is tens of megabytes that need not be held in memory.
pub fn write_json(plan: &Plan, out: impl std::io::Write) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let document = JsonPlan::with_changes(plan, ListedChanges { plan });
    serde_json::to_writer_pretty(&mut out, &document)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The JSON Schema of [`JsonPlan`]: the document's types are its schema.
pub fn plan_schema() -> schemars::Schema {
    schemars::schema_for!(JsonPlan)
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
    fn in_flight_is_an_action_with_its_holder() {
        let out = pinned(&fixtures::in_flight());
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let change = &doc["changes"][0];
        assert_eq!(change["action"], "in_flight");
        assert_eq!(change["holder"]["pid"], 4242);
        assert_eq!(change["holder"]["command"], "oapkg apply --auto-approve");
        assert_eq!(doc["summary"]["in_flight"], 1);
        assert_eq!(doc["summary"]["unconfirmed"], 0);
        // Every other change has `holder: null`.
        assert!(
            doc["changes"].as_array().unwrap()[1..]
                .iter()
                .all(|c| c["holder"].is_null())
        );
        insta::assert_snapshot!(out);
    }

    #[test]
    fn has_every_spec_field_with_its_type() {
        let value: serde_json::Value = serde_json::from_str(&json(&fixtures::mixed())).unwrap();
        assert_eq!(value["format_version"], 2);
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
                "origin",
                "needs",
                "cost",
                "source",
            ] {
                assert!(change.get(field).is_some(), "{field} missing in {change}");
            }
            assert!(change["oaid"].is_string());
            assert_eq!(change["origin"], "manifest");
            assert!(change["cost"].is_null());
            assert!(change["needs"].is_array());
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
            serde_json::json!({"purchase": 1, "replace": 1, "unconfirmed": 1, "unchanged": 3,
                               "orphan": 1, "expired": 0, "cost": null, "in_flight": 0})
        );
        assert_eq!(value["needs"], serde_json::json!(["--allow-replace"]));
        assert_eq!(
            value["warnings"][0],
            serde_json::json!({"key": "1122334455667788990@2027-01-01",
                               "file": "packages/hanoi.yaml", "line": 3, "column": 5,
                               "message": "periods of advanced and premium packages of this OA overlap (an upgrade bought mid-period)"})
        );
        assert_eq!(
            value["warnings"][1],
            serde_json::json!({"key": null, "file": "packages/notes.yaml", "line": null, "column": null,
                               "message": "skipped, its document lacks `apiVersion: oapkg/v1`"})
        );
    }

    #[test]
    fn guards_expired_and_labels() {
        let plan = fixtures::guarded();
        let value: serde_json::Value = serde_json::from_str(&json(&plan)).unwrap();
        let change = |key: &str| {
            value["changes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["key"] == key)
                .unwrap()
                .clone()
        };
        let moved = change("4097311281936189049@2026-12-15");
        assert_eq!(moved["action"], "purchase");
        assert_eq!(moved["needs"], serde_json::json!(["--allow-overlap"]));
        assert_eq!(
            moved["overlaps"],
            serde_json::json!(["4097311281936189049@2026-12-01"])
        );
        assert_eq!(
            change("2233445566778899001@2026-12-01")["needs"],
            serde_json::json!(["--allow-replace"])
        );
        let ended = change("745830328927467685@2026-10-01");
        assert_eq!(ended["action"], "expired");
        assert_eq!(ended["end"], "2026-10-31");
        assert!(ended["before"].is_null());
        assert_eq!(ended["needs"], serde_json::json!([]));
        let ended_replace = change("5520017735810466321@2026-09-01");
        assert_eq!(ended_replace["action"], "expired");
        assert_eq!(ended_replace["before"]["duration_months"], 1);
        assert_eq!(ended_replace["duration_months"], 2);
        assert_eq!(
            value["needs"],
            serde_json::json!(["--allow-replace", "--allow-overlap"])
        );
        assert_eq!(value["summary"]["expired"], 2);
        assert!(value["summary"]["cost"].is_null());
        assert_eq!(
            value["labels"],
            serde_json::json!([{"key": "1122334455667788990@2027-01-01",
                                "before": "Kho Hà Nội", "after": "Kho hàng Hà Nội"}])
        );
        insta::assert_snapshot!(pinned(&plan));
    }

    #[test]
    fn max_purchases_need_names_the_count() {
        let value: serde_json::Value =
            serde_json::from_str(&json(&fixtures::many_purchases(25))).unwrap();
        assert_eq!(value["needs"], serde_json::json!(["--max-purchases 25"]));
        let value: serde_json::Value =
            serde_json::from_str(&json(&fixtures::many_purchases(20))).unwrap();
        assert_eq!(value["needs"], serde_json::json!([]));
    }

    #[test]
    fn reads_back_as_the_same_document() {
        let plan = fixtures::mixed();
        let parsed: JsonPlan = serde_json::from_str(&json(&plan)).unwrap();
        assert_eq!(parsed, JsonPlan::from_plan(&plan));
    }
}
