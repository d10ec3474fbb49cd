use std::collections::BTreeMap;

use jiff::civil::{Date, date};
use proptest::prelude::*;

use super::*;
use crate::manifest::Source;
use crate::plan::{Action, diff};
use crate::spec::{Oaid, Tier};
use crate::state::{FailedAttempts, Status};

fn oaid() -> Oaid {
    Oaid::parse_declared("4097311281936189049").unwrap()
}

fn policy(tier: Tier, months: u8, renew_before_days: u16, first_start: Option<Date>) -> Policy {
    Policy {
        oaid: oaid(),
        name: Some("Shop".into()),
        tier,
        months,
        renew_before_days,
        first_start,
        source: Source {
            file: "p.yaml".into(),
            line: 4,
            column: 5,
        },
    }
}

fn spec(tier: Tier, start: Date, months: u8) -> Spec {
    Spec {
        oaid: oaid(),
        tier,
        start,
        duration_months: months,
    }
}

fn record(spec: Spec, by_policy: bool) -> Record {
    Record {
        spec_hash: spec.hash(),
        spec,
        name: None,
        status: Status::Submitted,
        service_preview_id: Some("1".into()),
        result_code: Some("100".into()),
        result_message: None,
        submitted_at: None,
        confirmed: None,
        by_policy,
    }
}

#[test]
fn due_from_end_minus_days_starting_the_day_after() {
    let p = policy(Tier::Premium, 12, 30, None);
    let held = [spec(Tier::Premium, date(2026, 12, 1), 12)]; // ends 2027-11-30
    assert_eq!(renewal(&p, &held, date(2027, 10, 30)), None);
    let due = renewal(&p, &held, date(2027, 10, 31)).unwrap();
    assert_eq!(due.start, date(2027, 12, 1));
    assert_eq!(due.duration_months, 12);
    // Lapsed: from today.
    assert_eq!(
        renewal(&p, &held, date(2028, 1, 5)).unwrap().start,
        date(2028, 1, 5)
    );
    // Nothing held: first_start, or today.
    let first = policy(Tier::Trial, 1, 3, Some(date(2027, 3, 1)));
    assert_eq!(renewal(&first, &[], date(2027, 2, 24)), None);
    assert_eq!(
        renewal(&first, &[], date(2027, 2, 25)).unwrap().start,
        date(2027, 3, 1)
    );
    assert_eq!(
        renewal(&p, &[], date(2027, 2, 25)).unwrap().start,
        date(2027, 2, 25)
    );
    assert_eq!(
        next_renewal_due(&p, &held, date(2027, 1, 1)),
        date(2027, 10, 31)
    );
}

/// Plans and "applies" (records every purchase) one day at a time.
fn walk(
    declared: Vec<Spec>,
    mut recorded: BTreeMap<Key, Record>,
    policy: &Policy,
    from: Date,
    days: i32,
) -> (BTreeMap<Key, Record>, Vec<Key>) {
    let desired: DesiredSet = declared
        .into_iter()
        .map(|spec| Package {
            spec,
            name: None,
            source: Source::default(),
        })
        .collect();
    let mut bought = Vec::new();
    let mut today = from;
    for _ in 0..days {
        let (set, from_policy) =
            with_renewals(&desired, std::slice::from_ref(policy), &recorded, today);
        let plan = diff(
            &set,
            &recorded,
            &FailedAttempts::default(),
            Default::default(),
            today,
            Vec::new(),
        );
        for change in &plan.changes {
            // A renewal the policy bought is never an orphan (undeclared
            // records of the history may be).
            let by_policy = change.before().is_some_and(|r| r.by_policy);
            assert!(
                !(by_policy && change.action() == Action::Orphan),
                "{today}: {}",
                change.key
            );
            if change.action() == Action::Purchase {
                let package = change.desired().unwrap();
                assert!(
                    !bought.contains(&change.key),
                    "bought twice: {}",
                    change.key
                );
                bought.push(change.key.clone());
                let by_policy = from_policy.contains(&change.key);
                recorded.insert(change.key.clone(), record(package.spec.clone(), by_policy));
            }
        }
        today = today.tomorrow().unwrap();
    }
    (recorded, bought)
}

fn tier() -> impl Strategy<Value = Tier> {
    prop_oneof![Just(Tier::Trial), Just(Tier::Advanced), Just(Tier::Premium)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever was declared and recorded before, walking today forward
    /// and applying each day's plan keeps the OA covered from the first
    /// renewal on, never overlaps two packages of the policy's tier that it
    /// bought, and never buys a key twice.
    #[test]
    fn walking_today_forward_keeps_coverage_continuous(
        history in proptest::collection::vec((tier(), 0i32..400, 1u8..=12, any::<bool>()), 0..4),
        policy_tier in tier(),
        months in 1u8..=12,
        renew_before_days in 0u16..60,
        first_offset in proptest::option::of(0i32..90),
    ) {
        let from = date(2027, 1, 1);
        let mut declared = Vec::new();
        let mut recorded = BTreeMap::new();
        for (tier, offset, months, is_recorded) in history {
            let s = spec(tier, from.checked_add(jiff::Span::new().days(offset - 200)).unwrap(), months);
            if is_recorded {
                recorded.insert(s.key(), record(s, false));
            } else if !declared.iter().any(|d: &Spec| d.key() == s.key()) {
                declared.push(s);
            }
        }
        let first_start = first_offset.map(|d| from.checked_add(jiff::Span::new().days(d)).unwrap());
        let p = policy(policy_tier, months, renew_before_days, first_start);
        let days = 800;
        let (recorded, bought) = walk(declared.clone(), recorded, &p, from, days);

        let last_day = from.checked_add(jiff::Span::new().days(i64::from(days - 1))).unwrap();
        let renewals: Vec<&Spec> = recorded.values().filter(|r| r.by_policy).map(|r| &r.spec).collect();
        prop_assert!(!renewals.is_empty(), "800 days always need a renewal");
        // Continuous: from the first renewal's start to the last day, every
        // day is covered by some package (declared or recorded).
        let first = renewals.iter().map(|s| s.start).min().unwrap();
        let all: Vec<&Spec> = recorded.values().map(|r| &r.spec).chain(declared.iter()).collect();
        let mut day = first;
        while day <= last_day {
            prop_assert!(all.iter().any(|s| s.start <= day && s.end().is_some_and(|end| day <= end)), "gap on {day}");
            day = day.tomorrow().unwrap();
        }
        // No overlap among the renewals the policy bought.
        let mut sorted = renewals.clone();
        sorted.sort_by_key(|s| s.start);
        for pair in sorted.windows(2) {
            prop_assert!(pair[0].end().is_some_and(|end| end < pair[1].start), "{:?} overlaps {:?}", pair[0], pair[1]);
        }
        // Nothing bought twice.
        let mut keys = bought.clone();
        keys.sort();
        keys.dedup();
        prop_assert_eq!(keys.len(), bought.len());
    }
}
