//! The diff: desired set × recorded set → [`Plan`], following the SPEC's
//! action table. A pure function of its arguments: "today" comes in as one.
//!
//! Besides each key's action, the diff finds what the action table alone
//! cannot see: a purchase over the months of a recorded package of the same
//! OA and tier under another key (a moved start date; it needs
//! `--allow-overlap`), the same over a different tier (an upgrade: a
//! warning), and a recorded package whose declared name changed (a label
//! change, bought nothing).

use std::collections::BTreeMap;

use jiff::civil::Date;

use super::{Action, Change, LabelChange, Plan, Warning};
use crate::manifest::{DesiredSet, Package};
use crate::spec::{Key, Spec};
use crate::state::{Record, StateId, Status};

/// Compares what the manifests declare with what the state records.
///
/// `warnings` are carried into the plan as they are (manifest warnings are
/// found while loading; [`super::inputs::make`] keeps a "starts before today"
/// one only for a package this plan buys), followed by the diff's own.
/// `today` is the date the plan is made for.
pub fn diff(
    desired: &DesiredSet,
    recorded: &BTreeMap<Key, Record>,
    state: StateId,
    today: Date,
    warnings: Vec<Warning>,
) -> Plan {
    let mut changes = Vec::new();
    let mut unchanged = 0;
    let mut labels = Vec::new();
    let mut upgrades = Vec::new();
    for (key, wanted, record) in merge_join(&desired.packages, recorded) {
        let action = action_for(wanted, record, today);
        if action == Action::Unchanged {
            unchanged += 1;
            if let (Some(package), Some(record)) = (wanted, record)
                && package.name != record.name
            {
                labels.push(LabelChange {
                    key: key.clone(),
                    before: record.name.clone(),
                    after: package.name.clone(),
                });
            }
            continue;
        }
        let mut overlaps = Vec::new();
        if let (Action::Purchase | Action::Replace, Some(package)) = (action, wanted) {
            for (other, other_record) in recorded_overlapping(recorded, &package.spec) {
                if other == key {
                    continue;
                }
                if other_record.spec.tier == package.spec.tier {
                    overlaps.push(other.clone());
                } else {
                    upgrades.push(upgrade_warning(key, package, other, &other_record.spec));
                }
            }
        }
        changes.push(Change {
            key: key.clone(),
            action,
            desired: wanted.cloned(),
            before: record.cloned(),
            overlaps,
        });
    }
    let mut warnings = warnings;
    warnings.extend(upgrades);
    Plan {
        today,
        state,
        manifest_hash: desired.hash(),
        changes,
        unchanged,
        labels,
        warnings,
    }
}

/// Whether a "starts before today" warning still says something about a
/// package whose action is `action`: only when this plan would buy it
/// (`purchase`, `replace`). A recorded package's start passing is what time
/// does, and an `expired` one is never bought.
pub fn starts_before_today_applies(action: Action) -> bool {
    matches!(action, Action::Purchase | Action::Replace)
}

/// The SPEC's action table for one key, on `today`.
///
/// A declared package whose period ended before today is `expired`, both
/// when nothing is recorded (it would be a `purchase`) and when its new
/// spec would replace a recorded one: a period that is over is never
/// bought. The end date is the last day covered, so a package ending today
/// is still bought.
pub fn action_for(desired: Option<&Package>, recorded: Option<&Record>, today: Date) -> Action {
    let ended = |package: &Package| package.spec.end() < today;
    match (desired, recorded) {
        // An unknown outcome is resolved first, whatever the manifests say now:
        // the package may exist, so neither a purchase nor a replace is safe.
        (_, Some(record)) if record.status == Status::Unconfirmed => Action::Unconfirmed,
        (Some(package), None) if ended(package) => Action::Expired,
        (Some(_), None) => Action::Purchase,
        (Some(package), Some(record)) if same_spec_hash(package, record) => Action::Unchanged,
        (Some(package), Some(_)) if ended(package) => Action::Expired,
        (Some(_), Some(_)) => Action::Replace,
        (None, Some(_)) => Action::Orphan,
        (None, None) => Action::Unchanged,
    }
}

/// The recorded packages of `spec`'s OA whose periods overlap `spec`'s (the
/// key itself included), any status, any tier. Keys of one OA are adjacent
/// in key order, so this reads only that OA's records.
fn recorded_overlapping<'a>(
    recorded: &'a BTreeMap<Key, Record>,
    spec: &'a Spec,
) -> impl Iterator<Item = (&'a Key, &'a Record)> {
    let first = Key::new(&spec.oaid, Date::new(1, 1, 1).unwrap_or(Date::MIN));
    let last = Key::new(&spec.oaid, Date::MAX);
    let end = spec.end();
    recorded
        .range(first..=last)
        .filter(move |(_, r)| r.spec.oaid == spec.oaid)
        .filter(move |(_, r)| r.spec.start <= end && spec.start <= r.spec.end())
}

fn upgrade_warning(key: &Key, package: &Package, other: &Key, other_spec: &Spec) -> Warning {
    Warning {
        key: Some(key.clone()),
        file: Some(package.source.file.clone()),
        line: Some(package.source.line),
        column: Some(package.source.column),
        message: format!(
            "the {} package from {} overlaps the recorded {} package {} ({} to {}): \
             an upgrade or downgrade mid-period; both are paid for",
            package.spec.tier,
            package.spec.start,
            other_spec.tier,
            other,
            other_spec.start,
            other_spec.end(),
        ),
    }
}

/// Whether the declared spec hashes to the recorded spec hash.
///
/// Every record is checked on load to carry its own spec's hash, and the
/// canonical encoding is injective, so equal specs are equal hashes: the
/// comparison skips 100,000 SHA-256 computations on a large plan.
fn same_spec_hash(package: &Package, record: &Record) -> bool {
    debug_assert_eq!(
        record.spec.hash(),
        record.spec_hash,
        "records are checked on load"
    );
    package.spec == record.spec
}

/// Walks two key-sorted maps together in key order.
fn merge_join<'a>(
    desired: &'a BTreeMap<Key, Package>,
    recorded: &'a BTreeMap<Key, Record>,
) -> impl Iterator<Item = (&'a Key, Option<&'a Package>, Option<&'a Record>)> {
    let mut left = desired.iter().peekable();
    let mut right = recorded.iter().peekable();
    std::iter::from_fn(move || match (left.peek(), right.peek()) {
        (Some((lk, _)), Some((rk, _))) if lk < rk => left.next().map(|(k, p)| (k, Some(p), None)),
        (Some((lk, _)), Some((rk, _))) if lk > rk => right.next().map(|(k, r)| (k, None, Some(r))),
        (Some(_), Some(_)) => {
            let (k, p) = left.next()?;
            let (_, r) = right.next()?;
            Some((k, Some(p), Some(r)))
        }
        (Some(_), None) => left.next().map(|(k, p)| (k, Some(p), None)),
        (None, Some(_)) => right.next().map(|(k, r)| (k, None, Some(r))),
        (None, None) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Source;
    use crate::spec::{Oaid, Spec, Tier};
    use jiff::civil::date;

    fn package(oaid: &str, start: Date, tier: Tier, months: u8) -> Package {
        Package {
            spec: Spec {
                oaid: Oaid::parse(oaid).unwrap(),
                tier,
                start,
                duration_months: months,
            },
            name: Some(format!("OA {oaid}")),
            source: Source {
                file: "m.yaml".into(),
                line: 1,
                column: 1,
            },
        }
    }

    fn record(p: &Package, status: Status) -> Record {
        Record {
            spec: p.spec.clone(),
            spec_hash: p.spec.hash(),
            name: p.name.clone(),
            status,
            service_preview_id: Some("1".into()),
            result_code: Some("100".into()),
            result_message: None,
            submitted_at: None,
        }
    }

    fn set(packages: &[Package]) -> DesiredSet {
        packages.iter().cloned().collect()
    }

    #[test]
    fn every_action_of_the_table() {
        let d = date(2026, 12, 1);
        let purchase = package("1", d, Tier::Premium, 12);
        let unchanged = package("2", d, Tier::Premium, 12);
        let replaced = package("3", d, Tier::Premium, 12);
        let mut replaced_now = replaced.clone();
        replaced_now.spec.duration_months = 6;
        let unconfirmed = package("4", d, Tier::Advanced, 3);
        let orphan = package("5", d, Tier::Trial, 1);
        let mut renamed = package("6", d, Tier::Trial, 1);

        let mut recorded = BTreeMap::new();
        for (p, status) in [
            (&unchanged, Status::Submitted),
            (&replaced, Status::Submitted),
            (&unconfirmed, Status::Unconfirmed),
            (&orphan, Status::Imported),
            (&renamed, Status::Submitted),
        ] {
            recorded.insert(p.spec.key(), record(p, status));
        }
        renamed.name = Some("a new label".into());
        let desired = set(&[purchase, unchanged, replaced_now, unconfirmed, renamed]);
        let plan = diff(&desired, &recorded, StateId::default(), d, vec![]);

        let actions: Vec<_> = plan
            .changes
            .iter()
            .map(|c| (c.key.oaid().to_owned(), c.action))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("1".to_owned(), Action::Purchase),
                ("3".to_owned(), Action::Replace),
                ("4".to_owned(), Action::Unconfirmed),
                ("5".to_owned(), Action::Orphan),
            ]
        );
        // A name is a label: changing it alone buys nothing.
        assert_eq!(plan.unchanged, 2);
        assert!(plan.changes[0].before.is_none());
        assert!(plan.changes[3].desired.is_none());
        assert_eq!(
            plan.changes[1]
                .before
                .as_ref()
                .unwrap()
                .spec
                .duration_months,
            12
        );
        assert_eq!(
            plan.changes[1]
                .desired
                .as_ref()
                .unwrap()
                .spec
                .duration_months,
            6
        );
    }

    #[test]
    fn unconfirmed_wins_even_when_no_longer_declared() {
        let d = date(2026, 12, 1);
        let p = package("9", d, Tier::Premium, 12);
        let recorded = BTreeMap::from([(p.spec.key(), record(&p, Status::Unconfirmed))]);
        let plan = diff(
            &DesiredSet::default(),
            &recorded,
            StateId::default(),
            d,
            vec![],
        );
        assert_eq!(plan.changes[0].action, Action::Unconfirmed);
    }

    #[test]
    fn changes_are_sorted_by_key_text() {
        let d = date(2026, 12, 1);
        // "12@" sorts after "123@" as text ('@' > '3').
        let desired = set(&[
            package("12", d, Tier::Trial, 1),
            package("123", d, Tier::Trial, 1),
        ]);
        let plan = diff(&desired, &BTreeMap::new(), StateId::default(), d, vec![]);
        let keys: Vec<_> = plan.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["123@2026-12-01", "12@2026-12-01"]);
    }
}
