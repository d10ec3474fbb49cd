//! A plan from its inputs, once they are read: the manifests (with their
//! warnings) and the loaded state. Pure; reading them is
//! [`crate::ops::plan::read_inputs`].

use jiff::civil::Date;

use std::collections::BTreeMap;

use super::{Action, Plan, Warning, action_for, diff, starts_before_today_applies};
use crate::manifest::{Diagnostic, DiagnosticKind, Manifests};
use crate::spec::Key;
use crate::state::Loaded;
use crate::state::Record;

/// The plan for valid manifests against a loaded state: the diff, with the
/// manifests' warnings carried into it — a "starts before today" warning
/// only for a package the plan buys (never for a recorded or expired one).
/// Pure: reads nothing.
///
/// The coverage policies' renewals due today, and the renewals they bought
/// earlier, are planned like declared packages ([`crate::coverage::with_renewals`]);
/// the price list prices the changes.
pub fn make(manifests: &Manifests, loaded: &Loaded, today: Date) -> Plan {
    let recorded = &loaded.state.packages;
    let (desired, from_policy) = if manifests.policies.is_empty() {
        (
            std::borrow::Cow::Borrowed(&manifests.desired),
            Default::default(),
        )
    } else {
        let (set, keys) = crate::coverage::with_renewals(
            &manifests.desired,
            &manifests.policies,
            recorded,
            today,
        );
        (std::borrow::Cow::Owned(set), keys)
    };
    let mut plan = diff(
        &desired,
        recorded,
        &loaded.state.failed_attempts,
        loaded.id.clone(),
        today,
        Vec::new(),
    );
    plan.manifest_hash = manifests.hash();
    plan.prices.clone_from(&manifests.prices);
    plan.from_policy = from_policy;
    let kept = manifests.warnings.iter().filter(|d| match d.kind {
        DiagnosticKind::General | DiagnosticKind::Skipped => true,
        DiagnosticKind::StartsBeforeToday => d
            .key
            .as_ref()
            .and_then(|key| plan.action_of(key))
            .is_some_and(starts_before_today_applies),
    });
    let mut warnings: Vec<Warning> = kept.map(warning).collect();
    warnings.append(&mut plan.warnings);
    plan.warnings = warnings;
    plan
}

/// The manifests' warnings as `oapkg validate` reports them against the
/// recorded packages: a "starts before today" warning only for a package a
/// plan would buy; for one whose period is over, a warning that it is
/// `expired` (never bought) instead; none for a recorded package. Pure.
pub fn validate_warnings(
    manifests: &Manifests,
    recorded: &BTreeMap<Key, Record>,
    today: Date,
) -> Vec<Diagnostic> {
    manifests
        .warnings
        .iter()
        .filter_map(|d| {
            let key = match (d.kind, &d.key) {
                (DiagnosticKind::StartsBeforeToday, Some(key)) => key,
                _ => return Some(d.clone()),
            };
            let declared = manifests.desired.packages.get(key);
            let action = action_for(declared, recorded.get(key), today);
            if starts_before_today_applies(action) {
                return Some(d.clone());
            }
            let spec = &declared?.spec;
            (action == Action::Expired).then(|| {
                let mut expired = d.clone();
                expired.message = format!(
                    "package {key} ended on {}, before today ({today}): it is never bought \
                     (`expired`); remove it, or give it a period that is not over",
                    crate::spec::show_end(spec.end())
                );
                expired
            })
        })
        .collect()
}

/// Manifest warnings as plan warnings.
pub fn warnings(diagnostics: &[Diagnostic]) -> Vec<Warning> {
    diagnostics.iter().map(warning).collect()
}

/// A manifest warning as a plan warning: its place, and its message with the
/// second place it names (if any) appended. A place of line 0 is a whole
/// file (no line, no column).
fn warning(diagnostic: &Diagnostic) -> Warning {
    let source = &diagnostic.source;
    let message = match &diagnostic.related {
        Some((other, note)) => format!("{} ({other}: {note})", diagnostic.message),
        None => diagnostic.message.clone(),
    };
    Warning {
        key: diagnostic.key.clone(),
        file: Some(source.file.clone()),
        line: (source.line > 0).then_some(source.line),
        column: (source.line > 0 && source.column > 0).then_some(source.column),
        message,
    }
}
