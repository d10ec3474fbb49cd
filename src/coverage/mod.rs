//! Coverage: which days an OA's packages cover, and the coverage policies
//! (`kind: CoveragePolicy`) that keep it covered by buying the next package
//! before the last one ends.
//!
//! Pure: "today" is an argument, nothing here reads a file or the clock.
//! [`renewal`] decides one policy's next package; [`with_renewals`] adds
//! every due renewal (and every recorded renewal a policy bought) to the
//! desired set the plan is made from, so the diff treats them like declared
//! packages. [`report`] is what `oapkg coverage` shows, and [`gantt`] draws
//! periods as a mermaid chart (the coverage report's and the plan's
//! Markdown).

use std::collections::BTreeMap;

use jiff::civil::Date;

use crate::manifest::{DesiredSet, Package};
pub use crate::manifest::{MAX_RENEW_BEFORE_DAYS, Policy};
use crate::spec::{Key, Spec};
use crate::state::Record;

pub mod gantt;
pub mod render;
pub mod report;

pub use report::{OaCoverage, report};

/// The last day covered by `specs` (any tier), `None` when there are none.
/// A package whose period runs past the calendar (which every input
/// refuses) covers every day the calendar has: its last, 9999-12-31, after
/// which nothing can be renewed.
pub fn coverage_end<'a>(specs: impl IntoIterator<Item = &'a Spec>) -> Option<Date> {
    specs
        .into_iter()
        .map(|spec| spec.end().unwrap_or(crate::spec::CALENDAR_END))
        .max()
}

/// The package `policy` buys on `today`, if one is due.
///
/// Coverage ends at the latest end among `specs` (the OA's declared and
/// recorded packages, any tier); with none, the day before `first_start`
/// (or before today). The renewal is due when today is on or after that
/// end minus `renew_before_days`; it starts the day after coverage ends,
/// or today when coverage has already lapsed.
pub fn renewal<'a>(
    policy: &Policy,
    specs: impl IntoIterator<Item = &'a Spec>,
    today: Date,
) -> Option<Spec> {
    let end = match coverage_end(specs) {
        Some(end) => end,
        None => policy.first_start.unwrap_or(today).yesterday().ok()?,
    };
    // Due from `renew_before_days` before the end; an end so early that
    // the subtraction leaves the calendar has been due all along.
    let due_from = end
        .checked_sub(jiff::Span::new().days(i64::from(policy.renew_before_days)))
        .ok();
    if due_from.is_some_and(|due_from| today < due_from) {
        return None;
    }
    // No renewal after the calendar's last day, nor one that would end
    // past it (validation refuses such a policy's first package; a renewal
    // computed near 9999 is not bought rather than given a saturated end).
    let start = end.tomorrow().ok()?.max(today);
    let renewal = Spec {
        oaid: policy.oaid.clone(),
        tier: policy.tier,
        start,
        duration_months: policy.months,
    };
    renewal.end().is_some().then_some(renewal)
}

/// The date the next renewal of `policy` is due (bought), given `specs`.
pub fn next_renewal_due<'a>(
    policy: &Policy,
    specs: impl IntoIterator<Item = &'a Spec>,
    today: Date,
) -> Date {
    let end = coverage_end(specs).or_else(|| {
        policy
            .first_start
            .and_then(|d| d.yesterday().ok())
            .filter(|d| *d >= today)
    });
    match end {
        None => today,
        // An end so early that the subtraction leaves the calendar: due now.
        Some(end) => end
            .checked_sub(jiff::Span::new().days(i64::from(policy.renew_before_days)))
            .map_or(today, |due| due.max(today)),
    }
}

/// The desired set with the policies' packages: every recorded package a
/// policy bought, for an OA that still has a policy (so it is never an
/// orphan), and every renewal due today. Returns the set and the keys that
/// come from a policy. Without policies, the set is returned unchanged.
pub fn with_renewals(
    desired: &DesiredSet,
    policies: &[Policy],
    recorded: &BTreeMap<Key, Record>,
    today: Date,
) -> (DesiredSet, std::collections::BTreeSet<Key>) {
    let mut set = desired.clone();
    let mut from_policy = std::collections::BTreeSet::new();
    for policy in policies {
        let range = Key::new(&policy.oaid, Date::MIN)..=Key::new(&policy.oaid, Date::MAX);
        for (key, record) in recorded.range(range.clone()) {
            if record.by_policy && !set.packages.contains_key(key) {
                set.packages.insert(
                    key.clone(),
                    Package {
                        spec: record.spec.clone(),
                        name: record.name.clone(),
                        source: policy.source.clone(),
                    },
                );
                from_policy.insert(key.clone());
            }
        }
        let declared = set.packages.range(range.clone()).map(|(_, p)| &p.spec);
        let specs: Vec<&Spec> = declared
            .chain(recorded.range(range).map(|(_, r)| &r.spec))
            .collect();
        if let Some(spec) = renewal(policy, specs, today)
            && let std::collections::btree_map::Entry::Vacant(slot) = set.packages.entry(spec.key())
        {
            from_policy.insert(slot.key().clone());
            slot.insert(Package {
                spec,
                name: policy.name.clone(),
                source: policy.source.clone(),
            });
        }
    }
    (set, from_policy)
}

#[cfg(test)]
mod tests;
