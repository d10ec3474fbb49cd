//! Apply against the real simulator, in-process on 127.0.0.1: generated
//! desired sets over generated prior states (submitted, unconfirmed and
//! imported records; unchanged, changed and orphaned keys), each case with
//! a fresh temp state, a fresh simulator and its own tokio runtime.
//!
//! The simulator's ledger is the ground truth of what was charged; the
//! state file is what oapkg believes. The properties compare the two.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use esms_sim::Call;
use esms_sim::{Charge, Fault, SimConfig, SimHandle, Simulator, Stage};
use oapkg::apply::{self, ApplyOptions, ApplyReport, CancelSignal, RetryPolicy};
use oapkg::esms::{Client, ClientOptions, Credentials, Endpoint};
use oapkg::manifest::{DesiredSet, Package, Source};
use oapkg::plan::{Action, Plan, diff};
use oapkg::spec::{Key, Oaid, Spec, Tier};
use oapkg::state::{Record, StateStore, Status};
use proptest::prelude::*;

use super::{desired, recorded, today};

/// What the prior state holds for one declared package.
#[derive(Clone, Copy, Debug)]
enum Prior {
    /// Not recorded: a purchase.
    Nothing,
    /// Recorded with the declared spec: unchanged (or unconfirmed).
    Same(Status),
    /// Recorded with another tier or duration: a replace (or unconfirmed).
    Changed(Status, u8),
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Submitted),
        Just(Status::Unconfirmed),
        Just(Status::Imported)
    ]
}

fn prior() -> impl Strategy<Value = Prior> {
    prop_oneof![
        Just(Prior::Nothing),
        status().prop_map(Prior::Same),
        (status(), 1u8..36).prop_map(|(s, by)| Prior::Changed(s, by)),
    ]
}

fn record(spec: Spec, status: Status) -> Record {
    Record {
        spec_hash: spec.hash(),
        spec,
        name: Some("before".into()),
        status,
        service_preview_id: (status != Status::Unconfirmed).then(|| "1".into()),
        result_code: (status == Status::Submitted).then(|| "100".into()),
        result_message: None,
        submitted_at: Some(jiff::Timestamp::UNIX_EPOCH),
        confirmed: None,
        by_policy: false,
    }
}

/// A desired set and a prior state that shares keys with it in every way
/// the action table distinguishes, plus records of keys no longer declared
/// (orphans, some of them unconfirmed).
fn scenario() -> impl Strategy<Value = (DesiredSet, BTreeMap<Key, Record>)> {
    sim_desired()
        .prop_flat_map(|desired| {
            let n = desired.packages.len();
            (
                Just(desired),
                proptest::collection::vec(prior(), n),
                recorded(),
            )
        })
        .prop_map(|(desired, priors, mut others)| {
            others.retain(|key, _| !desired.packages.contains_key(key));
            for (package, prior) in desired.packages.values().zip(priors) {
                let spec = package.spec.clone();
                let (spec, status) = match prior {
                    Prior::Nothing => continue,
                    Prior::Same(status) => (spec, status),
                    Prior::Changed(status, by) => {
                        let mut spec = spec;
                        if by % 2 == 0 {
                            spec.tier = Tier::ALL[(usize::from(by) / 2) % 3];
                        }
                        spec.duration_months = (spec.duration_months + by - 1) % 36 + 1;
                        (spec, status)
                    }
                };
                others.insert(spec.key(), record(spec, status));
            }
            (desired, others)
        })
}

/// Desired sets over a small pool of OAIDs, some spelt with leading zeros
/// (`7`, `07` and `007` are three OAs), with names that are any text.
fn sim_desired() -> impl Strategy<Value = DesiredSet> {
    let package = (
        1u8..20,
        0usize..3,
        0u8..3,
        0i64..60,
        1u8..=36,
        proptest::option::of(any::<String>()),
    )
        .prop_map(|(n, zeros, tier, day, months, name)| Package {
            spec: Spec {
                oaid: Oaid::parse(&format!("{}{n}", "0".repeat(zeros))).unwrap(),
                tier: Tier::ALL[usize::from(tier)],
                start: jiff::civil::date(2027, 1, 1).saturating_add(jiff::Span::new().days(day)),
                duration_months: months,
            },
            name,
            source: Source {
                file: "m.yaml".into(),
                line: 1,
                column: 1,
            },
        });
    prop_oneof![
        desired(),
        proptest::collection::vec(package, 0..30).prop_map(|p| p.into_iter().collect())
    ]
}

/// A temp dir holding a state made by `init`, written through the store as `prior`.
struct Case {
    _dir: tempfile::TempDir,
    store: StateStore,
}

fn case_with(prior: &BTreeMap<Key, Record>) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(dir.path().join("state").join("oapkg.state.json"));
    // Apply refuses a missing state: start from `oapkg init`'s empty one.
    store.init("proptest", Duration::ZERO).unwrap();
    if !prior.is_empty() {
        let lock = store.lock("proptest", Duration::ZERO).unwrap();
        let mut state = store.load().unwrap().state;
        state.packages = prior.clone();
        store.write(&lock, &mut state).unwrap();
    }
    Case { _dir: dir, store }
}

fn plan(desired: &DesiredSet, store: &StateStore) -> Plan {
    let loaded = store.load().unwrap();
    diff(
        desired,
        &loaded.state.packages,
        &loaded.state.failed_attempts,
        loaded.id,
        today(),
        vec![],
    )
}

fn sim_config(desired: &DesiredSet, prior: &BTreeMap<Key, Record>) -> SimConfig {
    let oaids: BTreeSet<&str> = desired
        .packages
        .values()
        .map(|p| p.spec.oaid.as_str())
        .chain(prior.values().map(|r| r.spec.oaid.as_str()))
        .collect();
    oaids
        .into_iter()
        .fold(SimConfig::new(), |c, oaid| c.oaid(oaid))
        .balance(u64::MAX / 2)
}

fn client(sim: &SimHandle) -> Client {
    Client::new(
        Endpoint::parse(&sim.control().endpoint()).unwrap(),
        Credentials::new("test-key", "test-secret").unwrap(),
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        },
    )
    .unwrap()
}

fn options(parallelism: usize, retry_unconfirmed: bool) -> ApplyOptions {
    ApplyOptions {
        parallelism,
        max_purchases: usize::MAX,
        allow_replace: true,
        allow_overlap: true,
        retry_unconfirmed,
        command: "oapkg proptest".into(),
        retry: RetryPolicy {
            max_attempts: 3,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        },
        ..ApplyOptions::default()
    }
}

async fn run(
    plan: &Plan,
    store: &StateStore,
    client: &Client,
    options: &ApplyOptions,
) -> ApplyReport {
    apply::apply(plan, store, client, options, &|_| {}, CancelSignal::never())
        .await
        .unwrap_or_else(|e| panic!("apply refused or failed to record: {e}"))
}

/// The spec a charge bought.
fn charged(charge: &Charge) -> Spec {
    Spec {
        oaid: Oaid::parse(&charge.oaid).unwrap(),
        tier: Tier::from_number(u64::from(charge.package)).unwrap(),
        start: oapkg::spec::parse_date(&charge.dateactive).unwrap(),
        duration_months: charge.duaration.parse().unwrap(),
    }
}

/// The spec each purchase request of a run is sent with: the declared spec
/// for `purchase` and `replace`, the recorded one for a retried
/// `unconfirmed` (the request that may already have been received).
fn requests_of(plan: &Plan, retry_unconfirmed: bool) -> BTreeMap<Key, Spec> {
    plan.changes
        .iter()
        .filter_map(|c| match c.action() {
            Action::Purchase | Action::Replace => Some((c.key.clone(), c.desired()?.spec.clone())),
            Action::Unconfirmed if retry_unconfirmed => {
                Some((c.key.clone(), c.before()?.spec.clone()))
            }
            _ => None,
        })
        .collect()
}

fn keys_with(plan: &Plan, action: Action) -> BTreeSet<Key> {
    plan.changes
        .iter()
        .filter(|c| c.action() == action)
        .map(|c| c.key.clone())
        .collect()
}

/// The charges of `ledger[from..]` by key.
fn charges_by_key(ledger: &[Charge], from: usize) -> BTreeMap<Key, Vec<Spec>> {
    let mut out: BTreeMap<Key, Vec<Spec>> = BTreeMap::new();
    for charge in &ledger[from..] {
        let spec = charged(charge);
        out.entry(spec.key()).or_default().push(spec);
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Plan, apply against the simulator, plan again: the second plan buys
    /// nothing new. Precisely, with the simulator charging every request
    /// (no deduplication to hide a second one):
    ///
    /// - the first run charges each planned key exactly once, with the spec
    ///   the plan shows (the recorded one for a retried unconfirmed
    ///   package), and nothing else: never an orphan, never an unchanged key;
    /// - the state then records each of them `submitted` with that spec and
    ///   eSMS's id, and every other record is byte-for-byte what it was;
    /// - the second plan has no `purchase`; its only `replace`s are retried
    ///   unconfirmed packages whose manifest spec differs from the one
    ///   resent, its only `unconfirmed` ones those not retried;
    /// - applying that plan and planning a third time leaves no `purchase`
    ///   and no `replace` (and, with `--retry-unconfirmed`, `No changes.`).
    #[test]
    fn apply_converges_and_charges_each_key_once(
        (desired, prior) in scenario(),
        retry_unconfirmed in any::<bool>(),
        parallelism in 1usize..=8,
    ) {
        let case = case_with(&prior);
        let options = options(parallelism, retry_unconfirmed);
        runtime().block_on(async {
            let sim = Simulator::start(sim_config(&desired, &prior).dedupe(false)).await.unwrap();
            let control = sim.control();
            let client = client(&sim);

            let first = plan(&desired, &case.store);
            let sent = requests_of(&first, retry_unconfirmed);
            let report = run(&first, &case.store, &client, &options).await;
            prop_assert_eq!((report.failed, report.not_attempted, report.purchased), (0, 0, sent.len()));
            prop_assert!(report.stopped.is_none());
            prop_assert!(!case.store.journal_path().exists(), "the journal is folded");

            let ledger = control.ledger();
            let charges = charges_by_key(&ledger, 0);
            let expected: BTreeMap<Key, Vec<Spec>> = sent.iter().map(|(k, s)| (k.clone(), vec![s.clone()])).collect();
            prop_assert_eq!(&charges, &expected, "one charge per planned key, with the planned spec");

            let after = case.store.load().unwrap().state.packages;
            for (key, record) in &after {
                match (sent.get(key), ledger.iter().find(|c| charged(c).key() == *key)) {
                    (Some(spec), Some(charge)) => {
                        prop_assert_eq!(record.status, Status::Submitted);
                        prop_assert_eq!(&record.spec, spec);
                        prop_assert_eq!(record.service_preview_id.as_deref(), Some(charge.service_preview_id.as_str()));
                    }
                    // Untouched but for a label change (a new name,
                    // recorded without any request).
                    _ => {
                        let mut expected = prior.get(key).cloned();
                        if let (Some(expected), Some(label)) = (
                            expected.as_mut(),
                            first.label_changes().iter().find(|l| l.key == *key),
                        ) {
                            expected.name.clone_from(&label.after);
                        }
                        prop_assert_eq!(Some(record), expected.as_ref(), "{} untouched", key)
                    }
                }
            }
            prop_assert_eq!(after.len(), prior.keys().chain(sent.keys()).collect::<BTreeSet<_>>().len(), "no record lost");

            let second = plan(&desired, &case.store);
            let retried = if retry_unconfirmed { keys_with(&first, Action::Unconfirmed) } else { BTreeSet::new() };
            let resent_other_spec: BTreeSet<Key> = retried
                .iter()
                .filter(|k| desired.packages.get(*k).is_some_and(|p| p.spec != sent[*k]))
                .cloned()
                .collect();
            let retried_orphans: BTreeSet<Key> = retried.iter().filter(|k| !desired.packages.contains_key(*k)).cloned().collect();
            prop_assert!(keys_with(&second, Action::Purchase).is_empty(), "{}", second.summary_line());
            prop_assert_eq!(keys_with(&second, Action::Replace), resent_other_spec);
            prop_assert_eq!(keys_with(&second, Action::Unconfirmed), if retry_unconfirmed { BTreeSet::new() } else { keys_with(&first, Action::Unconfirmed) });
            prop_assert_eq!(keys_with(&second, Action::Orphan), keys_with(&first, Action::Orphan).union(&retried_orphans).cloned().collect::<BTreeSet<_>>());

            let sent_again = requests_of(&second, retry_unconfirmed);
            run(&second, &case.store, &client, &options).await;
            let ledger = control.ledger();
            let expected: BTreeMap<Key, Vec<Spec>> = sent_again.iter().map(|(k, s)| (k.clone(), vec![s.clone()])).collect();
            prop_assert_eq!(charges_by_key(&ledger, charges.values().map(Vec::len).sum()), expected);

            let third = plan(&desired, &case.store);
            prop_assert!(keys_with(&third, Action::Purchase).is_empty(), "{}", third.summary_line());
            prop_assert!(keys_with(&third, Action::Replace).is_empty(), "{}", third.summary_line());
            if retry_unconfirmed {
                prop_assert!(!third.buys_anything(), "{}", third.summary_line());
                prop_assert!(third.summary_line().starts_with("No changes."));
            }
            let orphans = keys_with(&first, Action::Orphan);
            prop_assert!(ledger.iter().all(|c| !orphans.contains(&charged(c).key())), "an orphan was charged");
            prop_assert!(each_spec_charged_once(&ledger), "a spec was charged twice");
            sim.shutdown().await;
            Ok::<(), TestCaseError>(())
        })?;
    }
}

/// Transport faults the run can get through quickly: every way a request
/// ends without a definite answer except a hang (which only costs time),
/// before and after the simulator commits the charge, plus rate limits.
fn quick_faults() -> Vec<Fault> {
    let mut mix = vec![Fault::RateLimitCode, Fault::TooManyRequests];
    for stage in [Stage::BeforeCommit, Stage::AfterCommit] {
        mix.push(Fault::ServerError { stage });
        mix.push(Fault::DropConnection { stage });
    }
    mix
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// With transport faults on purchase requests (the simulator
    /// deduplicating, as eSMS does), exactly-once still holds:
    ///
    /// - never lost: every charge is recorded (`submitted` or
    ///   `unconfirmed`) with the charged spec, after the faulty run and
    ///   after every later one;
    /// - never resent blindly: once a request for a spec got a definite
    ///   answer (100 or 199, no fault), no request for it is sent again;
    /// - orphans are never even requested;
    /// - once the faults stop, apply with `--retry-unconfirmed` converges
    ///   within three runs to a plan that buys nothing, each spec charged
    ///   once.
    #[test]
    fn faults_never_lose_or_repeat_a_purchase(
        (desired, prior) in scenario(),
        fault_rate in 0.0f64..0.6,
        seed in any::<u64>(),
        retry_unconfirmed in any::<bool>(),
        parallelism in 1usize..=8,
    ) {
        let case = case_with(&prior);
        runtime().block_on(async {
            let config = sim_config(&desired, &prior)
                .fault_rate(fault_rate)
                .fault_mix(quick_faults())
                .seed(seed);
            let sim = Simulator::start(config).await.unwrap();
            let control = sim.control();
            let client = client(&sim);

            let first = plan(&desired, &case.store);
            let orphans = keys_with(&first, Action::Orphan);
            run(&first, &case.store, &client, &options(parallelism, retry_unconfirmed)).await;
            check_recorded(&case.store, &control.ledger())?;

            control.clear_faults();
            let mut runs = 0;
            loop {
                let next = plan(&desired, &case.store);
                if !next.buys_anything() {
                    break;
                }
                runs += 1;
                prop_assert!(runs <= 3, "no convergence after 3 runs: {}", next.summary_line());
                run(&next, &case.store, &client, &options(parallelism, true)).await;
                check_recorded(&case.store, &control.ledger())?;
            }

            let requests: Vec<_> = control.requests().into_iter().filter(|r| r.call == Call::Purchase).collect();
            // Canonical encodings: `Spec` is not `Ord`.
            let mut settled: BTreeSet<String> = BTreeSet::new();
            for request in &requests {
                let body = &request.body;
                let spec = Spec {
                    oaid: Oaid::parse(body["OAID"].as_str().unwrap()).unwrap(),
                    tier: Tier::from_number(body["Package"].as_u64().unwrap()).unwrap(),
                    start: oapkg::spec::parse_date(body["Dateactive"].as_str().unwrap()).unwrap(),
                    duration_months: body["Duaration"].as_str().unwrap().parse().unwrap(),
                };
                prop_assert!(!orphans.contains(&spec.key()), "orphan {} was requested", spec.key());
                prop_assert!(!settled.contains(&spec.canonical_encoding()), "{:?} was sent again after a definite answer", spec);
                let answer = request.answer.as_deref().unwrap_or("");
                if request.fault.is_none() && (answer == "code 100" || answer == "code 199") {
                    settled.insert(spec.canonical_encoding());
                }
            }
            prop_assert!(each_spec_charged_once(&control.ledger()), "a spec was charged twice");
            sim.shutdown().await;
            Ok::<(), TestCaseError>(())
        })?;
    }
}

fn each_spec_charged_once(ledger: &[Charge]) -> bool {
    let specs: BTreeSet<String> = ledger
        .iter()
        .map(|c| charged(c).canonical_encoding())
        .collect();
    specs.len() == ledger.len()
}

/// Every charge in `ledger` is in the state, `submitted` or `unconfirmed`,
/// with the spec that was charged (a later replace may have bought the key
/// again with another spec, which is then in the ledger too).
fn check_recorded(store: &StateStore, ledger: &[Charge]) -> Result<(), TestCaseError> {
    let state = store.load().unwrap().state.packages;
    let last_charge: BTreeMap<Key, Spec> = ledger
        .iter()
        .map(|c| (charged(c).key(), charged(c)))
        .collect();
    for (key, spec) in last_charge {
        let record = state.get(&key);
        prop_assert!(record.is_some(), "{} was charged and is not recorded", key);
        let record = record.unwrap();
        prop_assert!(
            matches!(record.status, Status::Submitted | Status::Unconfirmed),
            "{}: {:?}",
            key,
            record.status
        );
        prop_assert_eq!(
            &record.spec,
            &spec,
            "{} is recorded with another spec than charged",
            key
        );
    }
    Ok(())
}
