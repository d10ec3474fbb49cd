//! Properties over generated manifests, desired sets and states: what must
//! hold for every input, not only the cases someone thought of.
//!
//! Cases per property (proptest's `cases`), chosen so the whole module
//! runs in 6 to 8 s in a debug build on the 2-core build machine
//! (`cargo test --test it properties`); each passed once at 6 to 20 times as
//! many cases before these were settled:
//!
//! | property | cases | what it runs |
//! |---|---|---|
//! | `plan_is_deterministic` | 256 | pure diff, three renderings |
//! | `the_diff_never_buys_what_is_recorded` | 256 | pure diff |
//! | `recording_the_plan_leaves_nothing_to_buy` | 256 | pure diff, twice |
//! | `orphans_are_never_bought` | 256 | pure diff and guards |
//! | `the_canonical_encoding_is_injective` | 256 | pure |
//! | `near_miss_specs_never_share_a_hash` | 256 | pure, whole spec domain |
//! | `the_state_file_round_trips` | 256 | pure encode / decode |
//! | `saved_plans_round_trip` | 64 | `plan_file` write / read in a temp dir, three renderings |
//! | `the_state_store_round_trips` | 64 | `StateStore` write / load in a temp dir |
//! | `yaml::a_rendered_manifest_parses_back_to_its_packages` | 256 | `validate::check_file` |
//! | `yaml::equivalent_manifests_have_one_hash` | 96 | `manifest::load` of two temp dirs |
//! | `against_sim::apply_converges_and_charges_each_key_once` | 48 | `apply::apply` against the simulator on 127.0.0.1 |
//! | `against_sim::faults_never_lose_or_repeat_a_purchase` | 32 | the same, with transport faults |
//!
//! The simulator properties build a tokio runtime and a simulator per case;
//! see `against_sim.rs`.

mod against_sim;
mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

use jiff::civil::Date;
use oapkg::manifest::{DesiredSet, Package, Source};
use oapkg::ops::plan_file;
use oapkg::plan::saved::SavedPlan;
use oapkg::plan::{Action, diff, render};
use oapkg::spec::{Oaid, Spec, Tier};
use oapkg::state::{Record, StateId, StateStore, Status};
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
                    confirmed: None,
                    by_policy: false,
                };
                (spec.key(), record)
            })
            .collect()
    })
}

fn today() -> Date {
    jiff::civil::date(2026, 11, 26)
}

/// Any spec the types allow, not only valid manifests' (OAIDs with leading
/// zeros, any date, any `u8` duration): the encoding must be injective on
/// all of them.
fn any_spec() -> impl Strategy<Value = Spec> {
    spec_with_durations(any::<u8>())
}

/// Specs with any OAID and any date, and durations from `durations`.
fn spec_with_durations(durations: impl Strategy<Value = u8>) -> impl Strategy<Value = Spec> {
    (
        "[0-9]{1,19}",
        0u8..3,
        1i16..=9999,
        1i8..=12,
        1i8..=31,
        durations,
    )
        .prop_map(|(oaid, tier, year, month, day, months)| {
            let first = Date::new(year, month, 1).unwrap();
            Spec {
                oaid: Oaid::parse(&oaid).unwrap(),
                tier: Tier::ALL[usize::from(tier)],
                start: Date::new(year, month, day.min(first.days_in_month())).unwrap(),
                duration_months: months,
            }
        })
}

/// A spec and one of its nearest neighbours: one field moved by the
/// smallest step, or the OAID spelt with one more leading zero (the same
/// number, a different id).
fn near_miss() -> impl Strategy<Value = (Spec, Spec)> {
    (any_spec(), 0u8..6).prop_map(|(spec, how)| {
        let mut other = spec.clone();
        match how {
            0 => other.oaid = Oaid::parse(&format!("0{}", spec.oaid)).unwrap_or(spec.oaid.clone()),
            1 => {
                other.tier =
                    Tier::ALL[(Tier::ALL.iter().position(|t| *t == spec.tier).unwrap() + 1) % 3]
            }
            2 => other.start = spec.start.tomorrow().unwrap_or(Date::MIN),
            3 => other.start = spec.start.yesterday().unwrap_or(Date::MAX),
            4 => other.duration_months = spec.duration_months.wrapping_add(1),
            _ => other.duration_months = spec.duration_months.wrapping_sub(1),
        }
        (spec, other)
    })
}

/// Recorded sets whose every optional field is filled with arbitrary text
/// (control characters, quotes, any Unicode) or a timestamp anywhere in
/// jiff's range, in any status: what a state file must carry unchanged.
fn rich_recorded() -> impl Strategy<Value = BTreeMap<oapkg::spec::Key, Record>> {
    let timestamp = (
        jiff::Timestamp::MIN.as_second()..=jiff::Timestamp::MAX.as_second(),
        0i32..1_000_000_000,
    )
        .prop_filter_map("in range", |(s, ns)| jiff::Timestamp::new(s, ns).ok());
    let text = || proptest::option::of(any::<String>());
    // A state holds only periods that end on the calendar (the rest are
    // refused: `calendar_end` below).
    let record = (
        spec_with_durations(1u8..=36).prop_filter("ends by 9999-12-31", |s| s.end().is_some()),
        0u8..3,
        text(),
        text(),
        text(),
        text(),
        proptest::option::of(timestamp),
    )
        .prop_map(|(spec, status, name, id, code, message, at)| Record {
            spec_hash: spec.hash(),
            spec,
            name,
            status: [Status::Submitted, Status::Unconfirmed, Status::Imported][usize::from(status)],
            service_preview_id: id,
            result_code: code,
            result_message: message,
            submitted_at: at,
            confirmed: None,
            by_policy: false,
        });
    proptest::collection::vec(record, 0..12)
        .prop_map(|records| records.into_iter().map(|r| (r.spec.key(), r)).collect())
}

/// Desired sets with any names and any source file names. About half the
/// specs come from the small key space of [`spec`], which [`recorded`]
/// shares, so that paired with it every action occurs.
fn rich_desired() -> impl Strategy<Value = DesiredSet> {
    let package = (
        prop_oneof![spec_with_durations(1u8..=36), spec()],
        proptest::option::of(any::<String>()),
        any::<String>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(spec, name, file, line, column)| Package {
            spec,
            name,
            source: Source { file, line, column },
        });
    proptest::collection::vec(package, 0..12).prop_map(|packages| packages.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The same inputs give the same bytes, in every rendering.
    #[test]
    fn plan_is_deterministic(desired in desired(), recorded in recorded()) {
        let a = diff(&desired, &recorded, &Default::default(), StateId::default(), today(), vec![]);
        let b = diff(&desired.clone(), &recorded.clone(), &Default::default(), StateId::default(), today(), vec![]);
        prop_assert_eq!(render::json(&a), render::json(&b));
        prop_assert_eq!(
            render::text(&a, &render::TextOptions { color: false }),
            render::text(&b, &render::TextOptions { color: false })
        );
        let markdown = render::MarkdownOptions::default();
        prop_assert_eq!(render::markdown(&a, &markdown), render::markdown(&b, &markdown));
    }

    /// Never proposes to buy a key whose spec hash is already recorded, never
    /// buys an orphan, and accounts for every key exactly once.
    #[test]
    fn the_diff_never_buys_what_is_recorded(desired in desired(), recorded in recorded()) {
        let plan = diff(&desired, &recorded, &Default::default(), StateId::default(), today(), vec![]);
        for change in &plan.changes {
            match change.action() {
                Action::Purchase => prop_assert!(!recorded.contains_key(&change.key)),
                Action::Replace => {
                    let record = &recorded[&change.key];
                    let wanted = &desired.packages[&change.key];
                    prop_assert_ne!(&record.spec_hash, &wanted.spec.hash());
                    prop_assert_ne!(record.status, Status::Unconfirmed);
                }
                Action::Orphan => prop_assert!(!desired.packages.contains_key(&change.key)),
                Action::Unconfirmed => prop_assert_eq!(recorded[&change.key].status, Status::Unconfirmed),
                Action::Expired => {
                    let wanted = &desired.packages[&change.key];
                    prop_assert!(wanted.spec.ended_before(today()));
                    if let Some(record) = recorded.get(&change.key) {
                        prop_assert_ne!(&record.spec_hash, &wanted.spec.hash());
                        prop_assert_ne!(record.status, Status::Unconfirmed);
                    }
                }
                Action::Unchanged => prop_assert!(false, "unchanged keys are counted, not listed"),
                // Only a plan marked with another process's requests holds it.
                Action::InFlight => prop_assert!(false, "the diff alone never says in flight"),
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
        let plan = diff(&desired, &recorded, &Default::default(), StateId::default(), today(), vec![]);
        for change in &plan.changes {
            if let (Action::Purchase | Action::Replace, Some(package)) = (change.action(), &change.desired()) {
                recorded.insert(change.key.clone(), Record {
                    spec_hash: package.spec.hash(),
                    spec: package.spec.clone(),
                    name: package.name.clone(),
                    status: Status::Submitted,
                    service_preview_id: None,
                    result_code: Some("100".into()),
                    result_message: None,
                    submitted_at: None,
                    confirmed: None,
                    by_policy: false,
                });
            }
        }
        let again = diff(&desired, &recorded, &Default::default(), StateId::default(), today(), vec![]);
        prop_assert!(!again.buys_anything(), "{}", again.summary_line());
    }

    /// Orphans (recorded, no longer declared) are never bought: their action
    /// is `orphan` (or `unconfirmed`, which wins), apply's guards count no
    /// request for them even with every flag on, and declaring one again with
    /// its recorded spec (another name, another file) is `unchanged`, never
    /// a second purchase; with another tier it is a `replace`.
    #[test]
    fn orphans_are_never_bought(desired in desired(), recorded in recorded(), name in "[a-z]{1,8}") {
        let plan = diff(&desired, &recorded, &Default::default(), StateId::default(), today(), vec![]);
        let orphans: Vec<_> = recorded
            .iter()
            .filter(|(key, _)| !desired.packages.contains_key(*key))
            .collect();
        for (key, record) in &orphans {
            let change = plan.changes.iter().find(|c| &c.key == *key);
            let expected = if record.status == Status::Unconfirmed { Action::Unconfirmed } else { Action::Orphan };
            prop_assert_eq!(change.map(|c| c.action()), Some(expected), "{}", key);
        }
        let everything = oapkg::apply::ApplyOptions {
            allow_replace: true,
            allow_overlap: true,
            retry_unconfirmed: true,
            max_purchases: usize::MAX,
            ..Default::default()
        };
        let counts = oapkg::apply::check_guards(&plan, &everything).unwrap();
        let summary = plan.summary();
        prop_assert_eq!(counts.requests(), summary.purchase + summary.replace + summary.unconfirmed);

        // Declare every orphan again, as it was recorded and with a new tier.
        let mut same = desired.clone();
        let mut other_tier = desired.clone();
        for (key, record) in &orphans {
            let source = Source { file: "again.yaml".into(), line: 7, column: 5 };
            same.packages.insert((*key).clone(), Package { spec: record.spec.clone(), name: Some(name.clone()), source: source.clone() });
            let mut spec = record.spec.clone();
            spec.tier = Tier::ALL[(Tier::ALL.iter().position(|t| *t == spec.tier).unwrap() + 1) % 3];
            other_tier.packages.insert((*key).clone(), Package { spec, name: None, source });
        }
        let same = diff(&same, &recorded, &Default::default(), StateId::default(), today(), vec![]);
        let other_tier = diff(&other_tier, &recorded, &Default::default(), StateId::default(), today(), vec![]);
        for (key, record) in &orphans {
            let action = |plan: &oapkg::plan::Plan| plan.changes.iter().find(|c| &c.key == *key).map(|c| c.action());
            if record.status == Status::Unconfirmed {
                prop_assert_eq!(action(&same), Some(Action::Unconfirmed));
                prop_assert_eq!(action(&other_tier), Some(Action::Unconfirmed));
            } else {
                prop_assert_eq!(action(&same), None, "{} is unchanged", key);
                prop_assert_eq!(action(&other_tier), Some(Action::Replace));
            }
        }
        prop_assert_eq!(same.summary().purchase, plan.summary().purchase);
        prop_assert_eq!(other_tier.summary().purchase, plan.summary().purchase);
    }

    /// Different specs never share a canonical encoding (so never a hash input).
    #[test]
    fn the_canonical_encoding_is_injective(a in spec(), b in spec()) {
        prop_assert_eq!(a == b, a.canonical_encoding() == b.canonical_encoding());
    }

    /// Over the whole domain of the types (leading zeros, any date, any
    /// duration), a spec and its nearest neighbour never share an encoding
    /// or a hash, and equal specs always share both: the diff compares specs
    /// where the state compares hashes, and the two must agree.
    #[test]
    fn near_miss_specs_never_share_a_hash((a, b) in near_miss(), c in any_spec()) {
        prop_assert_eq!(a == b, a.canonical_encoding() == b.canonical_encoding());
        prop_assert_eq!(a == b, a.hash() == b.hash());
        prop_assert_eq!(a == c, a.hash() == c.hash());
        prop_assert_eq!(a.hash(), a.clone().hash());
    }

    /// A state written and read back is the same state, byte for byte,
    /// whatever text and timestamps its records carry.
    #[test]
    fn the_state_file_round_trips(recorded in rich_recorded(), serial in 1u64..1000) {
        let path = Path::new("state.json");
        let (bytes, checksum) = oapkg::state::file::encode(path, "lineage-1", serial, &recorded, &Default::default(), &Default::default()).unwrap();
        let read = oapkg::state::file::decode(path, &bytes).unwrap();
        prop_assert_eq!(&read.packages, &recorded);
        prop_assert_eq!(read.serial, serial);
        prop_assert_eq!(&read.checksum, &checksum);
        let (again, _) = oapkg::state::file::encode(path, "lineage-1", serial, &read.packages, &read.failed_attempts, &read.observations).unwrap();
        prop_assert_eq!(again, bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A saved plan (`plan --out`) read back is the plan that was saved:
    /// the same changes, records, sources and warnings, rendered to the same
    /// bytes in every format, fresh against the state and manifests it was
    /// made from. What apply carries out is what was reviewed.
    #[test]
    fn saved_plans_round_trip(
        desired in rich_desired(),
        recorded in prop_oneof![rich_recorded(), recorded()],
        warnings in proptest::collection::vec(
            (
                proptest::option::of(spec().prop_map(|s| s.key())),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>()),
                any::<String>(),
            )
                .prop_map(|(key, file, line, column, message)| oapkg::plan::Warning {
                    key,
                    file,
                    line,
                    column,
                    message,
                }),
            0..3,
        ),
        serial in any::<u64>(),
        lineage in proptest::option::of("[a-f0-9-]{1,36}"),
    ) {
        let state = StateId { lineage, serial, checksum: Some(oapkg::spec::sha256_tagged(&serial.to_be_bytes())) };
        let plan = diff(&desired, &recorded, &Default::default(), state.clone(), today(), warnings);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reviewed.plan");
        let saved = SavedPlan::from_plan(&plan);
        plan_file::write(&saved, &path).unwrap();
        let read = plan_file::read(&path).unwrap();
        prop_assert_eq!(&read, &saved);
        prop_assert!(read.check_fresh(&state, &desired.hash()).is_ok());
        let again = read.to_plan().unwrap();
        prop_assert_eq!(render::json(&again), render::json(&plan));
        let text = render::TextOptions { color: false };
        prop_assert_eq!(render::text(&again, &text), render::text(&plan, &text));
        let markdown = render::MarkdownOptions::default();
        prop_assert_eq!(render::markdown(&again, &markdown), render::markdown(&plan, &markdown));
        prop_assert_eq!(again.changes, plan.changes);
    }

    /// A rich state (any text, any timestamp, every status) survives the
    /// real store: written atomically into a temp dir and loaded back, it is
    /// the same state with the id the write returned; writing what was
    /// loaded again changes nothing but the serial and checksum, keeps the
    /// first file as the backup, and leaves no temporary file or journal.
    #[test]
    fn the_state_store_round_trips(recorded in rich_recorded()) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("state").join("oapkg.state.json"));
        let lock = store.lock("proptest", std::time::Duration::ZERO).unwrap();
        let mut state = store.load().unwrap().state;
        state.packages = recorded.clone();
        let first = store.write(&lock, &mut state).unwrap();
        let first_bytes = std::fs::read(store.path()).unwrap();

        let loaded = store.load().unwrap();
        prop_assert_eq!(&loaded.state.packages, &recorded);
        prop_assert_eq!(&loaded.id, &first);
        prop_assert_eq!(loaded.id.serial, 1);
        let lineage = loaded.state.lineage.clone().unwrap();
        let (encoded, _) = oapkg::state::file::encode(store.path(), &lineage, 1, &recorded, &Default::default(), &Default::default()).unwrap();
        prop_assert_eq!(&encoded, &first_bytes, "the file is the canonical encoding");

        let mut again = loaded.state.clone();
        let second = store.write(&lock, &mut again).unwrap();
        prop_assert_eq!(second.serial, 2);
        prop_assert_eq!(&second.lineage, &first.lineage);
        prop_assert_eq!(&store.load().unwrap().state.packages, &recorded);
        prop_assert_eq!(std::fs::read(store.backup_path()).unwrap(), first_bytes);
        drop(lock);
        let left: Vec<String> = std::fs::read_dir(store.path().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp") || name.ends_with(".journal"))
            .collect();
        prop_assert!(left.is_empty(), "left behind: {:?}", left);
    }
}

/// Manifests of packages that start in the calendar's last years, with any
/// duration a manifest allows, through the validator and the plan: no
/// panic; a package whose period would end after 9999-12-31 is a
/// validation error at its `start`; every other is planned with an end on
/// or after its start, and one of them starting inside another's months
/// (same OA, same tier) is an overlap error.
mod calendar_end {
    use jiff::civil::{Date, date};
    use oapkg::manifest::validate::{self, Origin};
    use oapkg::spec::end_date;
    use proptest::prelude::*;

    const TODAY: Date = date(2026, 11, 26);

    fn start() -> impl Strategy<Value = Date> {
        (9995i16..=9999, 1i8..=12, 1i8..=31)
            .prop_filter_map("a real date", |(y, m, d)| Date::new(y, m, d).ok())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn periods_past_the_calendar_are_validation_errors(
            packages in proptest::collection::vec((start(), 1u8..=36), 1..6),
        ) {
            let mut text = String::from("apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n");
            let mut lines = Vec::new();
            for (i, (start, months)) in packages.iter().enumerate() {
                // One OA per package: only the calendar is under test here.
                lines.push(4 + 4 * i + 2);
                text.push_str(&format!(
                    "  - oaid: \"{}\"\n    tier: premium\n    start: {start}\n    duration: {months}\n",
                    9000 + i
                ));
            }
            let outcome = validate::check_file("m.yaml", &text, Origin::Named, TODAY);
            let mut expected_errors = Vec::new();
            for ((start, months), line) in packages.iter().zip(&lines) {
                match end_date(*start, *months) {
                    None => expected_errors.push(*line),
                    Some(end) => prop_assert!(end >= *start, "{start} + {months}: {end}"),
                }
            }
            let got: Vec<usize> = outcome
                .errors
                .iter()
                .map(|e| {
                    prop_assert!(
                        e.message.contains("would end after 9999-12-31")
                            && e.message.contains("expected a period that ends by 9999-12-31"),
                        "{}", e.message
                    );
                    prop_assert_eq!(e.source.column, 12, "at the start value");
                    Ok(e.source.line as usize)
                })
                .collect::<Result<_, TestCaseError>>()?;
            // Every one of them, together.
            prop_assert_eq!(got, expected_errors, "{}", text);
            for package in &outcome.packages {
                let end = package.spec.end();
                prop_assert!(end.is_some_and(|end| end >= package.spec.start));
            }
        }
    }

    /// Through the binary: every period past the calendar (packages and a
    /// policy's first package) is an error naming file, line and column,
    /// all reported together with exit 1; and two packages of one OA and
    /// tier whose months end exactly on 9999-12-31 are an overlap error
    /// (with a saturated end date the later one had none).
    #[test]
    fn validate_names_every_period_past_the_calendar_and_keeps_the_overlap_guard() {
        let env = crate::support::Env::new();
        env.file(
            "oapkg.yaml",
            "apiVersion: oapkg/v1
kind: PackageSet
packages:
  - oaid: \"9001\"
    tier: premium
    start: 9999-01-01
    duration: 12
  - oaid: \"9001\"
    tier: premium
    start: 9999-12-31
    duration: 1
  - oaid: \"9001\"
    tier: premium
    start: 9999-12-01
    duration: 1
  - oaid: \"9002\"
    tier: trial
    start: 9999-06-01
    duration: 12
---
apiVersion: oapkg/v1
kind: CoveragePolicy
policies:
  - oaid: \"9003\"
    tier: premium
    months: 3
    renew_before_days: 30
    first_start: 9999-11-01
",
        );
        let run = env.run(&["validate"]);
        run.code(1)
            .stderr_has(
                "oapkg.yaml:10:12: package starting 9999-12-31 for 1 month(s) would end after 9999-12-31",
            )
            .stderr_has(
                "oapkg.yaml:18:12: package starting 9999-06-01 for 12 month(s) would end after 9999-12-31",
            )
            .stderr_has(
                "oapkg.yaml:28:18: policy's first package starting 9999-11-01 for 3 month(s) would end after 9999-12-31",
            )
            .stderr_has("overlap: 9999-01-01 to 9999-12-31 and 9999-12-01 to 9999-12-31");
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        env.run(&["plan"]).code(1);
    }
}
