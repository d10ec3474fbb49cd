//! `oapkg apply --format json`: the run's result as one JSON document on
//! stdout, for pipelines (`format_version` 1; additions are new keys, never
//! changed meanings). Documented in `docs/json-outputs.md`, "`oapkg apply --format json`".

use serde::Serialize;

use crate::apply::{ApplyReport, PackageResult};
use crate::plan::Plan;
use crate::plan::render::json::{Cost, JsonState};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct JsonApply {
    pub format_version: u32,
    pub oapkg_version: String,
    /// The state after the run (`null` when nothing was written).
    pub state: Option<JsonState>,
    /// Every package the plan would buy or retry, sorted by key.
    pub results: Vec<JsonResult>,
    /// Label changes (new names of recorded packages) recorded, without any
    /// request.
    pub labels: usize,
    /// Why the run stopped sending before it had sent everything; `null`
    /// when it did not stop early.
    pub stopped: Option<String>,
    pub summary: JsonSummary,
}

/// What became of one package.
#[derive(Debug, Serialize)]
pub struct JsonResult {
    pub key: String,
    pub oaid: String,
    pub name: Option<String>,
    /// The plan's action: `purchase`, `replace` or `unconfirmed`.
    pub action: crate::plan::Action,
    /// `purchased`, `failed`, `unconfirmed` or `not_sent`.
    pub result: &'static str,
    /// eSMS answered `100` to a request for it while an earlier request
    /// may have charged too: check the eSMS portal.
    pub possibly_charged_twice: bool,
    /// Requests of this run for it that may have charged (`100` answers
    /// and unknown outcomes).
    pub charged_requests: u32,
    /// eSMS's result code, when it answered with one.
    pub code: Option<String>,
    /// eSMS's message, or why there is no answer or no request.
    pub message: Option<String>,
    pub service_preview_id: Option<String>,
    /// Requests sent for it in this run (0 when none was).
    pub attempts: u32,
}

/// Counts of the results, and what the purchased packages cost.
#[derive(Debug, Serialize)]
pub struct JsonSummary {
    pub purchased: usize,
    pub failed: usize,
    pub unconfirmed: usize,
    pub not_sent: usize,
    /// Packages bought by a `100` while an earlier request may have
    /// charged too (also counted in `purchased`).
    pub possibly_charged_twice: usize,
    /// What this run spent: every request that may have charged (`100`
    /// answers and unknown outcomes, resends included) × its price; `null`
    /// without a price list (or when the amount does not fit in 64 bits,
    /// which `cost_error` then says).
    pub cost: Option<Cost>,
    /// Why `cost` is `null` although prices are declared; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_error: Option<String>,
}

impl JsonApply {
    pub fn new(plan: &Plan, report: &ApplyReport) -> JsonApply {
        let spent = report.spent(plan);
        let results = report
            .outcomes
            .iter()
            .map(|(key, result)| {
                let change = plan
                    .changes
                    .binary_search_by(|c| c.key.cmp(key))
                    .ok()
                    .map(|at| &plan.changes[at]);
                let (code, message, service_preview_id, attempts) = details(result);
                JsonResult {
                    key: key.to_string(),
                    oaid: key.oaid().to_owned(),
                    name: change.and_then(|c| c.name()).map(str::to_owned),
                    action: result.action(),
                    result: result.word(),
                    possibly_charged_twice: result.possibly_charged_twice(),
                    charged_requests: result.charged(),
                    code,
                    message,
                    service_preview_id,
                    attempts,
                }
            })
            .collect();
        JsonApply {
            format_version: FORMAT_VERSION,
            oapkg_version: env!("CARGO_PKG_VERSION").to_owned(),
            state: report.state.as_ref().map(JsonState::from),
            results,
            labels: report.labels,
            stopped: report.stopped.as_ref().map(ToString::to_string),
            summary: JsonSummary {
                purchased: report.purchased,
                failed: report.failed,
                unconfirmed: report.unconfirmed,
                not_sent: report.not_attempted,
                possibly_charged_twice: report.possibly_charged_twice,
                cost: spent.clone().and_then(Result::ok).map(Cost::from),
                cost_error: spent.and_then(Result::err).map(|e| e.to_string()),
            },
        }
    }
}

/// A result's code, message, ServicePreviewId and attempts.
fn details(result: &PackageResult) -> (Option<String>, Option<String>, Option<String>, u32) {
    match result {
        PackageResult::Submitted {
            service_preview_id,
            code,
            message,
            attempts,
            ..
        } => (
            Some(code.clone()),
            Some(message.clone()),
            service_preview_id.clone(),
            *attempts,
        ),
        PackageResult::Failed {
            code,
            message,
            attempts,
            ..
        } => (code.clone(), Some(message.clone()), None, *attempts),
        PackageResult::Unconfirmed {
            reason, attempts, ..
        } => (None, Some(reason.clone()), None, *attempts),
        PackageResult::NotAttempted { reason, .. } => (None, Some(reason.clone()), None, 0),
        PackageResult::LeftUnconfirmed => (
            None,
            Some("not resent without --retry-unconfirmed".to_owned()),
            None,
            0,
        ),
    }
}
