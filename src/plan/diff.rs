//! The diff: desired set × recorded set → [`Plan`], following the SPEC's
//! action table. A pure function of its arguments.

use std::collections::BTreeMap;

use jiff::civil::Date;

use super::{Action, Change, LabelChange, Plan, Warning};
use crate::manifest::{DesiredSet, Package};
use crate::spec::Key;
use crate::state::{Record, StateId, Status};

/// Compares what the manifests declare with what the state records.
///
/// `warnings` are carried into the plan as they are (manifest warnings are
/// found while loading); `today` is the date the plan is made for.
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
    for (key, wanted, record) in merge_join(&desired.packages, recorded) {
        let action = action_for(wanted, record);
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
        changes.push(Change {
            key: key.clone(),
            action,
            desired: wanted.cloned(),
            before: record.cloned(),
        });
    }
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

/// The SPEC's action table for one key.
pub fn action_for(desired: Option<&Package>, recorded: Option<&Record>) -> Action {
    match (desired, recorded) {
        // An unknown outcome is resolved first, whatever the manifests say now:
        // the package may exist, so neither a purchase nor a replace is safe.
        (_, Some(record)) if record.status == Status::Unconfirmed => Action::Unconfirmed,
        (Some(_), None) => Action::Purchase,
        (Some(package), Some(record)) if same_spec_hash(package, record) => Action::Unchanged,
        (Some(_), Some(_)) => Action::Replace,
        (None, Some(_)) => Action::Orphan,
        (None, None) => Action::Unchanged,
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
            confirmed: None,
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
        assert_eq!(
            plan.labels,
            vec![LabelChange {
                key: Key::parse("6@2026-12-01").unwrap(),
                before: Some("OA 6".into()),
                after: Some("a new label".into()),
            }]
        );
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
