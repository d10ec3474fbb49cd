//! Properties of the pure core over generated desired and recorded sets:
//! what must hold for every input, not only the cases someone thought of.

use std::collections::BTreeMap;
use std::path::Path;

use jiff::civil::Date;
use oapkg::manifest::{DesiredSet, Package, Source};
use oapkg::plan::{Action, diff, render};
use oapkg::spec::{Oaid, Spec, Tier};
use oapkg::state::{Record, StateId, Status};
use proptest::prelude::*;

fn spec() -> impl Strategy<Value = Spec> {
    (1u64..40, 0u8..3, 0i64..60, 1u8..=36).prop_map(|(oaid, tier, day, months)| Spec {
        oaid: Oaid::parse(&oaid.to_string()).unwrap(),
        tier: Tier::ALL[usize::from(tier)],
        start: jiff::civil::date(2027, 1, 1).saturating_add(jiff::Span::new().days(day)),
        duration_months: months,
    })
}

fn desired() -> impl Strategy<Value = DesiredSet> {
    proptest::collection::vec((spec(), proptest::option::of("[a-z ]{0,8}")), 0..30).prop_map(
        |specs| {
            specs
                .into_iter()
                .map(|(spec, name)| {
                    let source = Source {
                        file: "m.yaml".into(),
                        line: 1,
                        column: 1,
                    };
                    Package { spec, name, source }
                })
                .collect()
        },
    )
}

fn recorded() -> impl Strategy<Value = BTreeMap<oapkg::spec::Key, Record>> {
    proptest::collection::vec((spec(), 0u8..3), 0..30).prop_map(|specs| {
        specs
            .into_iter()
            .map(|(spec, status)| {
                let record = Record {
                    spec_hash: spec.hash(),
                    spec: spec.clone(),
                    name: None,
                    status: [Status::Submitted, Status::Unconfirmed, Status::Imported]
                        [usize::from(status)],
                    service_preview_id: Some("1".into()),
                    result_code: Some("100".into()),
                    result_message: None,
                    submitted_at: None,
                };
                (spec.key(), record)
            })
            .collect()
    })
}

fn today() -> Date {
    jiff::civil::date(2026, 11, 26)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The same inputs give the same bytes, in every rendering.
    #[test]
    fn plan_is_deterministic(desired in desired(), recorded in recorded()) {
        let a = diff(&desired, &recorded, StateId::default(), today(), vec![]);
        let b = diff(&desired.clone(), &recorded.clone(), StateId::default(), today(), vec![]);
        prop_assert_eq!(render::json(&a), render::json(&b));
        prop_assert_eq!(
            render::text(&a, &render::TextOptions { color: false }),
            render::text(&b, &render::TextOptions { color: false })
        );
    }

    /// Never proposes to buy a key whose spec hash is already recorded, never
    /// buys an orphan, and accounts for every key exactly once.
    #[test]
    fn the_diff_never_buys_what_is_recorded(desired in desired(), recorded in recorded()) {
        let plan = diff(&desired, &recorded, StateId::default(), today(), vec![]);
        for change in &plan.changes {
            match change.action {
                Action::Purchase => prop_assert!(!recorded.contains_key(&change.key)),
                Action::Replace => {
                    let record = &recorded[&change.key];
                    let wanted = &desired.packages[&change.key];
                    prop_assert_ne!(&record.spec_hash, &wanted.spec.hash());
                    prop_assert_ne!(record.status, Status::Unconfirmed);
                }
                Action::Orphan => prop_assert!(!desired.packages.contains_key(&change.key)),
                Action::Unconfirmed => prop_assert_eq!(recorded[&change.key].status, Status::Unconfirmed),
                Action::Unchanged => prop_assert!(false, "unchanged keys are counted, not listed"),
            }
        }
        let keys: std::collections::BTreeSet<_> = desired.packages.keys().chain(recorded.keys()).collect();
        prop_assert_eq!(plan.changes.len() + plan.unchanged, keys.len());
        let listed: Vec<_> = plan.changes.iter().map(|c| c.key.clone()).collect();
        let mut sorted = listed.clone();
        sorted.sort();
        prop_assert_eq!(listed, sorted);
    }

    /// After every purchase and replace is recorded as submitted, the next
    /// plan buys nothing.
    #[test]
    fn recording_the_plan_leaves_nothing_to_buy(desired in desired(), mut recorded in recorded()) {
        recorded.retain(|_, r| r.status != Status::Unconfirmed);
        let plan = diff(&desired, &recorded, StateId::default(), today(), vec![]);
        for change in &plan.changes {
            if let (Action::Purchase | Action::Replace, Some(package)) = (change.action, &change.desired) {
                recorded.insert(change.key.clone(), Record {
                    spec_hash: package.spec.hash(),
                    spec: package.spec.clone(),
                    name: package.name.clone(),
                    status: Status::Submitted,
                    service_preview_id: None,
                    result_code: Some("100".into()),
                    result_message: None,
                    submitted_at: None,
                });
            }
        }
        let again = diff(&desired, &recorded, StateId::default(), today(), vec![]);
        prop_assert!(!again.buys_anything(), "{}", again.summary_line());
    }

    /// Different specs never share a canonical encoding (so never a hash input).
    #[test]
    fn the_canonical_encoding_is_injective(a in spec(), b in spec()) {
        prop_assert_eq!(a == b, a.canonical_encoding() == b.canonical_encoding());
    }

    /// A state written and read back is the same state, byte for byte.
    #[test]
    fn the_state_file_round_trips(recorded in recorded(), serial in 1u64..1000) {
        let path = Path::new("state.json");
        let (bytes, checksum) = oapkg::state::file::encode(path, "lineage-1", serial, &recorded).unwrap();
        let read = oapkg::state::file::decode(path, &bytes).unwrap();
        prop_assert_eq!(&read.packages, &recorded);
        prop_assert_eq!(read.serial, serial);
        prop_assert_eq!(&read.checksum, &checksum);
        let (again, _) = oapkg::state::file::encode(path, "lineage-1", serial, &read.packages).unwrap();
        prop_assert_eq!(again, bytes);
    }
}
