//! The diff: desired set × recorded set → [`Plan`], following the
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

use super::{Action, Change, LabelChange, Plan, Sides, Warning};
use crate::manifest::{DesiredSet, Package};
use crate::spec::{Key, Spec};
use crate::state::{FailedAttempts, Record, StateId, Status};

/// Compares what the manifests declare with what the state records.
///
/// `warnings` are carried into the plan as they are (manifest warnings are
/// found while loading; [`super::inputs::make`] keeps a "starts before today"
/// one only for a package this plan buys), followed by the diff's own.
/// `today` is the date the plan is made for.
pub fn diff(
    desired: &DesiredSet,
    recorded: &BTreeMap<Key, Record>,
    failed_attempts: &FailedAttempts,
    state: StateId,
    today: Date,
    warnings: Vec<Warning>,
) -> Plan {
    let mut changes = Vec::new();
    let mut unchanged = 0;
    let mut labels = Vec::new();
    let mut upgrades = Vec::new();
    for (key, wanted, record) in merge_join(&desired.packages, recorded) {
        let Some(sides) = sides_for(wanted, record, today) else {
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
        };
        let action = sides.action();
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
        let last_failure = matches!(action, Action::Purchase | Action::Replace)
            .then(|| failed_attempts.get(key).cloned())
            .flatten();
        changes.push(Change {
            key: key.clone(),
            sides,
            overlaps,
            last_failure,
        });
    }
    let mut warnings = warnings;
    warnings.extend(upgrades);
    Plan {
        today,
        state,
        state_location: None,
        manifest_hash: desired.hash(),
        changes,
        unchanged,
        labels,
        warnings,
        prices: None,
        from_policy: Default::default(),
        in_flight_holder: None,
        errors: Vec::new(),
    }
}

impl Plan {
    /// Marks as `in_flight` the `unconfirmed` changes whose keys another
    /// live process has a purchase request in flight for (`keys`, read by
    /// [`crate::state::Store::in_flight`]), naming `holder`. Other actions
    /// are left as they are: a key is in flight only while its record says
    /// a request may have been sent. Pure.
    pub fn mark_in_flight(
        &mut self,
        keys: &std::collections::BTreeSet<Key>,
        holder: Option<crate::state::LockHolder>,
    ) {
        let mut marked = false;
        for change in &mut self.changes {
            if let Sides::Unconfirmed { desired, before } = &change.sides
                && keys.contains(&change.key)
            {
                change.sides = Sides::InFlight {
                    desired: desired.clone(),
                    before: before.clone(),
                };
                marked = true;
            }
        }
        if marked {
            self.in_flight_holder = holder;
        }
    }
}

/// Whether a "starts before today" warning still says something about a
/// package whose action is `action`: only when this plan would buy it
/// (`purchase`, `replace`). A recorded package's start passing is what time
/// does, and an `expired` one is never bought.
pub fn starts_before_today_applies(action: Action) -> bool {
    matches!(action, Action::Purchase | Action::Replace)
}

/// The action table for one key, on `today`: the action with its sides,
/// or `None` when the key is `unchanged` (or neither declared nor
/// recorded).
///
/// A declared package whose period ended before today is `expired`, both
/// when nothing is recorded (it would be a `purchase`) and when its new
/// spec would replace a recorded one: a period that is over is never
/// bought. The end date is the last day covered, so a package ending today
/// is still bought.
pub fn sides_for(
    desired: Option<&Package>,
    recorded: Option<&Record>,
    today: Date,
) -> Option<Sides> {
    let ended = |package: &Package| package.spec.ended_before(today);
    let sides = match (desired, recorded) {
        // An unknown outcome is resolved first, whatever the manifests say now:
        // the package may exist, so neither a purchase nor a replace is safe.
        (_, Some(record)) if record.status == Status::Unconfirmed => Sides::Unconfirmed {
            desired: desired.cloned(),
            before: record.clone(),
        },
        (Some(package), None) if ended(package) => Sides::Expired {
            desired: package.clone(),
            before: None,
        },
        (Some(package), None) => Sides::Purchase {
            desired: package.clone(),
        },
        (Some(package), Some(record)) if same_spec_hash(package, record) => return None,
        (Some(package), Some(record)) if ended(package) => Sides::Expired {
            desired: package.clone(),
            before: Some(record.clone()),
        },
        (Some(package), Some(record)) => Sides::Replace {
            desired: package.clone(),
            before: record.clone(),
        },
        (None, Some(record)) => Sides::Orphan {
            before: record.clone(),
        },
        (None, None) => return None,
    };
    Some(sides)
}

/// The action of [`sides_for`] alone: `unchanged` where it has no sides.
pub fn action_for(desired: Option<&Package>, recorded: Option<&Record>, today: Date) -> Action {
    sides_for(desired, recorded, today).map_or(Action::Unchanged, |sides| sides.action())
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
    recorded
        .range(first..=last)
        .filter(move |(_, r)| r.spec.oaid == spec.oaid)
        .filter(move |(_, r)| r.spec.overlaps(spec))
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
            crate::spec::show_end(other_spec.end()),
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
    use crate::plan::Need;
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
            by_policy: false,
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
        let plan = diff(
            &desired,
            &recorded,
            &FailedAttempts::new(),
            StateId::default(),
            d,
            vec![],
        );
        assert_eq!(
            plan.labels,
            vec![LabelChange {
                key: Key::parse("6@2026-12-01").unwrap(),
                before: Some("OA 6".into()),
                after: Some("a new label".into()),
            }]
        );

        let actions: Vec<_> = plan
            .changes
            .iter()
            .map(|c| (c.key.oaid().to_owned(), c.action()))
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
        assert!(plan.changes[0].before().is_none());
        assert!(plan.changes[3].desired().is_none());
        assert_eq!(
            plan.changes[1]
                .before()
                .as_ref()
                .unwrap()
                .spec
                .duration_months,
            12
        );
        assert_eq!(
            plan.changes[1]
                .desired()
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
            &FailedAttempts::new(),
            StateId::default(),
            d,
            vec![],
        );
        assert_eq!(plan.changes[0].action(), Action::Unconfirmed);
    }

    #[test]
    fn changes_are_sorted_by_key_text() {
        let d = date(2026, 12, 1);
        // "12@" sorts after "123@" as text ('@' > '3').
        let desired = set(&[
            package("12", d, Tier::Trial, 1),
            package("123", d, Tier::Trial, 1),
        ]);
        let plan = diff(
            &desired,
            &BTreeMap::new(),
            &FailedAttempts::new(),
            StateId::default(),
            d,
            vec![],
        );
        let keys: Vec<_> = plan.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["123@2026-12-01", "12@2026-12-01"]);
    }

    fn recorded_as(packages: &[(&Package, Status)]) -> BTreeMap<Key, Record> {
        packages
            .iter()
            .map(|(p, status)| (p.spec.key(), record(p, *status)))
            .collect()
    }

    #[test]
    fn a_package_ending_before_today_is_expired_and_one_ending_today_is_bought() {
        // 2026-11-30 + 1 month = 2026-12-30, so it ends 2026-12-29.
        let p = package("1", date(2026, 11, 30), Tier::Trial, 1);
        assert_eq!(p.spec.end(), Some(date(2026, 12, 29)));
        let on = |today| {
            diff(
                &set(std::slice::from_ref(&p)),
                &BTreeMap::new(),
                &crate::state::FailedAttempts::new(),
                StateId::default(),
                today,
                vec![],
            )
            .changes[0]
                .action()
        };
        assert_eq!(on(date(2026, 12, 29)), Action::Purchase, "ends today");
        assert_eq!(on(date(2026, 12, 30)), Action::Expired, "ended yesterday");
        let plan = diff(
            &set(&[p]),
            &BTreeMap::new(),
            &crate::state::FailedAttempts::new(),
            StateId::default(),
            date(2027, 1, 5),
            vec![],
        );
        assert_eq!(plan.summary().expired, 1);
        assert!(!plan.buys_anything());
        assert!(plan.needs().is_empty());
    }

    #[test]
    fn month_clamping_decides_the_last_day() {
        // 2027-01-31 + 1 month clamps to 2027-02-28: the package ends 2027-02-27.
        let p = package("1", date(2027, 1, 31), Tier::Trial, 1);
        let on = |today| {
            diff(
                &set(std::slice::from_ref(&p)),
                &BTreeMap::new(),
                &crate::state::FailedAttempts::new(),
                StateId::default(),
                today,
                vec![],
            )
            .changes[0]
                .action()
        };
        assert_eq!(on(date(2027, 2, 27)), Action::Purchase);
        assert_eq!(on(date(2027, 2, 28)), Action::Expired);
    }

    #[test]
    fn a_replace_whose_new_spec_has_ended_is_expired_with_its_record() {
        let bought = package("1", date(2026, 1, 1), Tier::Advanced, 1);
        let mut longer = bought.clone();
        longer.spec.duration_months = 2;
        let recorded = recorded_as(&[(&bought, Status::Submitted)]);
        let plan = diff(
            &set(&[longer.clone()]),
            &recorded,
            &crate::state::FailedAttempts::new(),
            StateId::default(),
            date(2026, 5, 1),
            vec![],
        );
        assert_eq!(plan.changes[0].action(), Action::Expired);
        assert_eq!(plan.changes[0].before().unwrap().spec, bought.spec);
        // Still running: a replace.
        let plan = diff(
            &set(&[longer]),
            &recorded,
            &crate::state::FailedAttempts::new(),
            StateId::default(),
            date(2026, 2, 1),
            vec![],
        );
        assert_eq!(plan.changes[0].action(), Action::Replace);
        // Recorded with the same spec, long over: unchanged, never expired.
        let plan = diff(
            &set(&[bought]),
            &recorded,
            &crate::state::FailedAttempts::new(),
            StateId::default(),
            date(2026, 5, 1),
            vec![],
        );
        assert!(plan.changes.is_empty());
        assert_eq!(plan.unchanged, 1);
    }

    #[test]
    fn a_moved_start_date_overlaps_the_recorded_package() {
        let bought = package("7", date(2026, 12, 1), Tier::Premium, 12);
        let moved = package("7", date(2026, 12, 15), Tier::Premium, 12);
        for status in [Status::Submitted, Status::Unconfirmed, Status::Imported] {
            let recorded = recorded_as(&[(&bought, status)]);
            let plan = diff(
                &set(std::slice::from_ref(&moved)),
                &recorded,
                &crate::state::FailedAttempts::new(),
                StateId::default(),
                date(2026, 11, 26),
                vec![],
            );
            let purchase = plan
                .changes
                .iter()
                .find(|c| c.key == moved.spec.key())
                .unwrap();
            assert_eq!(purchase.action(), Action::Purchase);
            assert_eq!(purchase.overlaps, vec![bought.spec.key()], "{status:?}");
            assert_eq!(purchase.needs(), vec![Need::AllowOverlap]);
            assert_eq!(plan.needs(), vec![Need::AllowOverlap]);
        }
    }

    #[test]
    fn overlap_edges() {
        let bought = package("7", date(2026, 12, 1), Tier::Premium, 1); // ends 2026-12-31
        let recorded = recorded_as(&[(&bought, Status::Submitted)]);
        let today = date(2026, 11, 1);
        let overlaps = |p: Package| {
            let plan = diff(
                &set(std::slice::from_ref(&p)),
                &recorded,
                &crate::state::FailedAttempts::new(),
                StateId::default(),
                today,
                vec![],
            );
            let change = plan
                .changes
                .iter()
                .find(|c| c.key == p.spec.key())
                .unwrap()
                .clone();
            (change.overlaps, plan.warnings)
        };
        // Starting on the recorded package's last day overlaps; the day after does not.
        assert_eq!(
            overlaps(package("7", date(2026, 12, 31), Tier::Premium, 1))
                .0
                .len(),
            1
        );
        assert!(
            overlaps(package("7", date(2027, 1, 1), Tier::Premium, 1))
                .0
                .is_empty()
        );
        // Ending the day before it starts does not overlap (2026-11-01 + 1 month ends 2026-11-30).
        assert!(
            overlaps(package("7", date(2026, 11, 1), Tier::Premium, 1))
                .0
                .is_empty()
        );
        assert_eq!(
            overlaps(package("7", date(2026, 11, 2), Tier::Premium, 1))
                .0
                .len(),
            1
        );
        // Another OA, even one whose OAID is a prefix: nothing.
        assert!(
            overlaps(package("77", date(2026, 12, 15), Tier::Premium, 1))
                .0
                .is_empty()
        );
        // Another tier: an upgrade, a warning only.
        let (keys, warnings) = overlaps(package("7", date(2026, 12, 15), Tier::Advanced, 1));
        assert!(keys.is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0]
                .message
                .contains("overlaps the recorded premium package 7@2026-12-01")
        );
        assert_eq!(warnings[0].line, Some(1));
    }

    #[test]
    fn a_replace_over_another_recorded_key_needs_both_flags() {
        let a = package("7", date(2026, 12, 1), Tier::Premium, 1);
        let b = package("7", date(2027, 1, 1), Tier::Premium, 1);
        // a's replacement runs into b's months.
        let mut a_longer = a.clone();
        a_longer.spec.duration_months = 2;
        let recorded = recorded_as(&[(&a, Status::Submitted), (&b, Status::Submitted)]);
        let plan = diff(
            &set(&[a_longer, b]),
            &recorded,
            &crate::state::FailedAttempts::new(),
            StateId::default(),
            date(2026, 11, 1),
            vec![],
        );
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].action(), Action::Replace);
        assert_eq!(
            plan.changes[0].overlaps,
            vec![Key::parse("7@2027-01-01").unwrap()]
        );
        assert_eq!(
            plan.changes[0].needs(),
            vec![Need::AllowReplace, Need::AllowOverlap]
        );
    }

    #[test]
    fn unconfirmed_orphaned_and_expired_changes_need_nothing() {
        let old = package("7", date(2026, 1, 1), Tier::Premium, 1);
        let unconfirmed = package("8", date(2026, 12, 1), Tier::Premium, 1);
        let recorded = recorded_as(&[
            (&old, Status::Submitted),
            (&unconfirmed, Status::Unconfirmed),
        ]);
        // Expired over a recorded package of the same tier: still nothing.
        let expired = package("7", date(2026, 1, 15), Tier::Premium, 1);
        let plan = diff(
            &set(&[expired, unconfirmed]),
            &recorded,
            &crate::state::FailedAttempts::new(),
            StateId::default(),
            date(2026, 11, 1),
            vec![],
        );
        assert_eq!(plan.changes.len(), 3);
        for change in &plan.changes {
            assert!(change.overlaps.is_empty());
            assert!(change.needs().is_empty(), "{:?}", change.action());
        }
        assert!(plan.needs().is_empty());
    }
}
