//! The apply library against an in-process simulator over real HTTP, and its
//! pure decisions on their own. The CLI-level cases (the binary, kill -9,
//! secrets in output) are in `tests/it/apply.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use jiff::civil::{Date, date};

use super::decide::{self, Attempts, Verdict};
use super::*;
use crate::esms::{AccountOa, ClientOptions, Credentials, PurchaseOutcome};
use crate::manifest::{DesiredSet, Package, Source};
use crate::plan::diff;
use crate::spec::{Oaid, Spec, Tier};
use crate::state::{JournalOutcome, StateStore, Status};
use esms_sim::{Fault, FaultRule, SimConfig, SimHandle, Simulator, Stage};

const TODAY: Date = date(2026, 11, 26);

fn spec(oaid: &str, start: Date, tier: Tier, months: u8) -> Spec {
    Spec {
        oaid: Oaid::parse(oaid).unwrap(),
        tier,
        start,
        duration_months: months,
    }
}

/// `n` advanced 12-month packages on OAIDs 1001, 1002, …
fn specs(n: usize) -> Vec<Spec> {
    (0..n)
        .map(|i| {
            spec(
                &(1001 + i).to_string(),
                date(2027, 1, 1),
                Tier::Advanced,
                12,
            )
        })
        .collect()
}

fn desired(specs: &[Spec]) -> DesiredSet {
    specs
        .iter()
        .map(|s| Package {
            spec: s.clone(),
            name: Some(format!("OA {}", s.oaid)),
            source: Source {
                file: "m.yaml".into(),
                line: 1,
                column: 1,
            },
        })
        .collect()
}

fn plan_for(store: &StateStore, specs: &[Spec]) -> Plan {
    let loaded = store.load().unwrap();
    diff(
        &desired(specs),
        &loaded.state.packages,
        &loaded.state.failed_attempts,
        loaded.id,
        TODAY,
        vec![],
    )
}

fn config_for(specs: &[Spec]) -> SimConfig {
    specs
        .iter()
        .fold(SimConfig::new(), |c, s| c.oaid(s.oaid.as_str()))
}

fn client(sim: &SimHandle) -> Client {
    Client::new(
        crate::esms::Endpoint::parse(&sim.endpoint()).unwrap(),
        Credentials::new("test-key", "test-secret").unwrap(),
        ClientOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
        },
    )
    .unwrap()
}

fn fast() -> ApplyOptions {
    ApplyOptions {
        max_purchases: 1000,
        retry: RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
        },
        ..ApplyOptions::default()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: StateStore,
}

fn store() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(dir.path().join("state").join("oapkg.state.json"));
    store.init("test", Duration::ZERO).unwrap();
    Fixture { _dir: dir, store }
}

/// Events as short lines, for assertions on order and concurrency.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn on(&self, event: ApplyEvent<'_>) {
        let line = match event {
            ApplyEvent::Started { requests, .. } => format!("started {requests}"),
            ApplyEvent::PurchaseSent { key, attempt, .. } => format!("sent {key} {attempt}"),
            ApplyEvent::Answered { key, attempt, .. } => format!("answered {key} {attempt}"),
            ApplyEvent::Retrying { key, attempt, .. } => format!("retry {key} {attempt}"),
            ApplyEvent::PurchaseDone { key, .. } => format!("done {key}"),
            ApplyEvent::Stopping { in_flight, .. } => format!("stopping {in_flight}"),
            ApplyEvent::Held { key, .. } => format!("held {key}"),
            // Only watch acts on it.
            ApplyEvent::Balance { .. } => return,
        };
        self.0.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

async fn run(
    plan: &Plan,
    store: &StateStore,
    sim: &SimHandle,
    options: &ApplyOptions,
    log: &Log,
) -> Result<ApplyReport, ApplyError> {
    let client = client(sim);
    apply(
        plan,
        store,
        &client,
        options,
        &|e| log.on(e),
        CancelSignal::never(),
    )
    .await
}

fn statuses(store: &StateStore) -> BTreeMap<String, Status> {
    store
        .load()
        .unwrap()
        .state
        .packages
        .into_iter()
        .map(|(k, r)| (k.to_string(), r.status))
        .collect()
}

// ---- pure decisions -------------------------------------------------------

/// Records `specs` in the state as submitted, as an earlier apply would.
fn record_submitted(store: &StateStore, specs: &[Spec]) {
    let lock = store.lock("test", Duration::ZERO).unwrap();
    let mut state = store.load().unwrap().state;
    for s in specs {
        state.packages.insert(
            s.key(),
            crate::state::Record {
                spec_hash: s.hash(),
                spec: s.clone(),
                name: None,
                status: Status::Submitted,
                service_preview_id: Some("1".into()),
                result_code: Some("100".into()),
                result_message: None,
                submitted_at: None,
                confirmed: None,
                by_policy: false,
            },
        );
    }
    store.write(&lock, &mut state).unwrap();
}

#[test]
fn an_overlap_with_a_recorded_package_needs_allow_overlap_as_the_plan_says() {
    let f = store();
    let bought = spec("1001", date(2026, 12, 1), Tier::Premium, 12);
    let moved = spec("1001", date(2026, 12, 15), Tier::Premium, 12);
    let upgrade = spec("1002", date(2027, 1, 1), Tier::Premium, 12);
    let under = spec("1002", date(2026, 12, 1), Tier::Advanced, 12);
    record_submitted(&f.store, &[bought.clone(), under]);
    let plan = plan_for(&f.store, &[moved.clone(), upgrade]);
    // The plan shows the flag; apply's guard refuses without it.
    assert_eq!(plan.needs(), vec![crate::plan::Need::AllowOverlap]);
    let refused = check_guards(&plan, &ApplyOptions::default()).unwrap_err();
    assert_eq!(
        refused,
        GuardRefusal::OverlapNotAllowed {
            overlaps: vec![(moved.key(), vec![bought.key()])]
        }
    );
    // The refusal, then its hint (what to do).
    let message = format!("{refused}. {}", refused.hint().unwrap_or_default());
    assert!(
        message.contains("1001@2026-12-15 overlaps 1001@2026-12-01")
            && message.contains("--allow-overlap")
            && message.contains("nothing was bought")
            && message.contains("oapkg state mv"),
        "{message}"
    );
    // The other tier is an upgrade: bought without the flag once allowed.
    let allowed = ApplyOptions {
        allow_overlap: true,
        ..ApplyOptions::default()
    };
    assert_eq!(check_guards(&plan, &allowed).unwrap().purchase, 2);
}

#[test]
fn expired_changes_are_never_requests() {
    let f = store();
    let ended = spec("1001", date(2026, 10, 1), Tier::Premium, 1);
    let plan = plan_for(&f.store, &[ended]);
    assert_eq!(plan.changes[0].action(), Action::Expired);
    let counts = check_guards(&plan, &ApplyOptions::default()).unwrap();
    assert_eq!(counts.requests(), 0);
}

#[test]
fn the_plans_max_purchases_need_is_the_guards_limit() {
    let f = store();
    let plan = plan_for(&f.store, &specs(21));
    assert_eq!(plan.needs(), vec![crate::plan::Need::MaxPurchases(21)]);
    assert!(matches!(
        check_guards(&plan, &ApplyOptions::default()),
        Err(GuardRefusal::TooManyPurchases { max: 20, .. })
    ));
    let plan = plan_for(&f.store, &specs(20));
    assert!(plan.needs().is_empty());
    assert!(check_guards(&plan, &ApplyOptions::default()).is_ok());
}

#[test]
fn guards_count_every_request_that_may_charge() {
    let f = store();
    let all = specs(3);
    // Record: 1001 bought as premium (so the manifest's advanced is a
    // replace), 1002 unconfirmed, 1003 not recorded (a purchase).
    let lock = f.store.lock("test", Duration::ZERO).unwrap();
    let mut state = f.store.load().unwrap().state;
    for (s, status) in [
        (
            spec("1001", date(2027, 1, 1), Tier::Premium, 12),
            Status::Submitted,
        ),
        (all[1].clone(), Status::Unconfirmed),
    ] {
        state.packages.insert(
            s.key(),
            crate::state::Record {
                spec_hash: s.hash(),
                spec: s,
                name: None,
                status,
                service_preview_id: None,
                result_code: None,
                result_message: None,
                submitted_at: None,
                confirmed: None,
                by_policy: false,
            },
        );
    }
    f.store.write(&lock, &mut state).unwrap();
    drop(lock);
    let plan = plan_for(&f.store, &all);

    let refused = check_guards(&plan, &ApplyOptions::default()).unwrap_err();
    assert_eq!(
        refused,
        GuardRefusal::ReplaceNotAllowed {
            keys: vec![all[0].key()]
        }
    );
    assert!(refused.to_string().contains("--allow-replace"), "{refused}");

    let allowed = ApplyOptions {
        allow_replace: true,
        ..ApplyOptions::default()
    };
    let counts = check_guards(&plan, &allowed).unwrap();
    assert_eq!((counts.requests(), counts.left_unconfirmed), (2, 1));
    let retrying = ApplyOptions {
        retry_unconfirmed: true,
        ..allowed.clone()
    };
    assert_eq!(check_guards(&plan, &retrying).unwrap().requests(), 3);
    let tight = ApplyOptions {
        max_purchases: 2,
        ..retrying
    };
    let refused = check_guards(&plan, &tight).unwrap_err();
    assert!(
        matches!(refused, GuardRefusal::TooManyPurchases { max: 2, counts } if counts.requests() == 3),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(
        message.contains("3 purchase request(s) (1 purchase, 1 replace, 1 unconfirmed resent)")
            && message.contains("--max-purchases 2"),
        "{message}"
    );
    // Exactly at the limit is allowed.
    assert!(
        check_guards(
            &plan,
            &ApplyOptions {
                max_purchases: 3,
                ..tight
            }
        )
        .is_ok()
    );
}

#[test]
fn an_unconfirmed_package_is_resent_with_its_recorded_spec() {
    let f = store();
    let recorded = spec("1001", date(2027, 1, 1), Tier::Premium, 6);
    let lock = f.store.lock("test", Duration::ZERO).unwrap();
    let mut journal = f.store.journal(&lock).unwrap();
    journal
        .record_intent(
            &recorded.key(),
            &recorded,
            None,
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
    drop((journal, lock));
    // The manifest now says advanced/12 for the same key.
    let plan = plan_for(&f.store, &specs(1));
    let options = ApplyOptions {
        retry_unconfirmed: true,
        ..ApplyOptions::default()
    };
    let selection = decide::select(&plan, &options).unwrap();
    assert_eq!(selection.jobs.len(), 1);
    assert_eq!(selection.jobs[0].spec, recorded);
    assert_eq!(
        selection.jobs[0].first_sent,
        Some(jiff::Timestamp::UNIX_EPOCH)
    );
}

#[test]
fn retries_only_where_an_answer_allows_and_never_unlearns_a_maybe() {
    let policy = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let unknown = PurchaseOutcome::Unknown {
        reason: "HTTP 500".into(),
    };
    let not_sent = PurchaseOutcome::NotSent {
        reason: "refused".into(),
    };
    let limited = PurchaseOutcome::RateLimited {
        reason: "160".into(),
    };
    let refused = PurchaseOutcome::PackageFailed {
        code: "204".into(),
        message: "no such OA".into(),
    };
    let fatal = PurchaseOutcome::Fatal {
        code: "103".into(),
        message: "Balance not enough".into(),
    };
    let exists = PurchaseOutcome::AlreadyExists {
        service_preview_id: Some("7".into()),
        code: "199".into(),
        message: "exists".into(),
    };
    let judged_with = |outcomes: &[&PurchaseOutcome], retry_unknown: bool, stopping: bool| {
        let mut attempts = Attempts::default();
        let mut last = None;
        for outcome in outcomes {
            attempts.count += 1;
            last = Some(decide::judge(
                outcome,
                &mut attempts,
                &policy,
                retry_unknown,
                stopping,
            ));
        }
        last.unwrap()
    };
    let judged = |outcomes: &[&PurchaseOutcome], stopping: bool| {
        // With --retry-unknown, which the settlements below need.
        judged_with(outcomes, true, stopping)
    };
    for retryable in [&unknown, &not_sent, &limited] {
        assert_eq!(judged(&[retryable], false), Verdict::Retry);
        // Not once the run is stopping, nor after the last attempt.
        assert!(matches!(judged(&[retryable], true), Verdict::Settle(_)));
        assert!(matches!(
            judged(&[retryable, retryable, retryable], false),
            Verdict::Settle(_)
        ));
    }
    // Without --retry-unknown an unknown outcome is never resent: it is
    // unconfirmed at once. Not sent and rate limited still are retried.
    assert!(matches!(
        judged_with(&[&unknown], false, false),
        Verdict::Settle(JournalOutcome::Unconfirmed { .. })
    ));
    assert!(matches!(
        judged_with(&[&limited, &unknown], false, false),
        Verdict::Settle(JournalOutcome::Unconfirmed { .. })
    ));
    for retryable in [&not_sent, &limited] {
        assert_eq!(judged_with(&[retryable], false, false), Verdict::Retry);
    }
    for definite in [&refused, &fatal, &exists] {
        assert!(matches!(judged(&[definite], false), Verdict::Settle(_)));
        assert!(matches!(
            judged_with(&[definite], false, false),
            Verdict::Settle(_)
        ));
    }
    // A 199 is a surprise only when no request can have reached eSMS
    // before it: first, or after "not sent" / rate limits; not after an
    // unknown outcome (the resend's expected confirmation).
    let surprise = |outcomes: &[&PurchaseOutcome]| {
        let mut attempts = Attempts::default();
        for outcome in outcomes {
            attempts.count += 1;
            let _ = decide::judge(outcome, &mut attempts, &policy, true, false);
        }
        decide::unexpected_duplicate(outcomes.last().unwrap(), &attempts)
    };
    assert!(surprise(&[&exists]));
    assert!(surprise(&[&limited, &not_sent, &exists]));
    assert!(!surprise(&[&unknown, &exists]));
    assert!(!surprise(&[&refused]));
    // Settlements.
    let settle = |outcomes: &[&PurchaseOutcome]| match judged(outcomes, true) {
        Verdict::Settle(o) => o,
        Verdict::Retry => unreachable!(),
    };
    assert!(matches!(
        settle(&[&exists]),
        JournalOutcome::Submitted { service_preview_id: Some(id), .. } if id == "7"
    ));
    assert!(matches!(
        settle(&[&unknown]),
        JournalOutcome::Unconfirmed { .. }
    ));
    // The executor stamps the time of a failed attempt; the pure part
    // leaves it out.
    assert!(matches!(
        settle(&[&refused]),
        JournalOutcome::Failed { result_code: Some(c), at: None, .. } if c == "204"
    ));
    assert!(matches!(
        settle(&[&not_sent]),
        JournalOutcome::Failed {
            result_code: None,
            ..
        }
    ));
    // A definite refusal after an unknown outcome cannot prove nothing was
    // bought: the earlier request may have been committed.
    for after in [&refused, &fatal, &not_sent, &limited] {
        let outcome = settle(&[&unknown, after]);
        assert!(
            matches!(&outcome, JournalOutcome::Unconfirmed { reason } if reason.contains("HTTP 500")),
            "{after:?}: {outcome:?}"
        );
    }
    assert!(matches!(
        settle(&[&unknown, &exists]),
        JournalOutcome::Submitted { .. }
    ));
}

#[test]
fn retry_delays_grow_with_jitter_and_are_bounded() {
    let policy = RetryPolicy {
        max_attempts: 5,
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(300),
    };
    let delays: Vec<Duration> = policy.delays().collect();
    assert_eq!(delays.len(), 4, "one delay before each retry");
    for (i, d) in delays.iter().enumerate() {
        let base = Duration::from_millis((100u64 << i).min(300));
        assert!(*d >= base && *d <= base * 2, "delay {i}: {d:?}");
    }
    let once = RetryPolicy {
        max_attempts: 1,
        ..policy
    };
    assert_eq!(once.delays().count(), 0);
}

#[test]
fn missing_oaids_are_listed_once_in_order() {
    let all = [
        spec("9", date(2027, 1, 1), Tier::Trial, 1),
        spec("5", date(2027, 1, 1), Tier::Trial, 1),
        spec("5", date(2027, 3, 1), Tier::Trial, 1),
        spec("7", date(2027, 1, 1), Tier::Trial, 1),
    ];
    let f = store();
    let plan = plan_for(&f.store, &all);
    let selection = decide::select(&plan, &ApplyOptions::default()).unwrap();
    let account = [AccountOa {
        oaid: "7".into(),
        name: "x".into(),
    }];
    assert_eq!(
        decide::missing_oaids(&selection.jobs, &account),
        vec!["5".to_owned(), "9".to_owned()]
    );
}

#[test]
fn folding_a_crashed_runs_journal_does_not_make_a_plan_stale() {
    let f = store();
    let a = specs(2);
    // A state file, then a crashed run's journal over it.
    let lock = f.store.lock("test", Duration::ZERO).unwrap();
    let mut journal = f.store.journal(&lock).unwrap();
    journal
        .record_intent(&a[0].key(), &a[0], None, jiff::Timestamp::UNIX_EPOCH)
        .unwrap();
    drop(journal);
    let mut state = f.store.load().unwrap().state;
    f.store.write(&lock, &mut state).unwrap();
    let mut journal = f.store.journal(&lock).unwrap();
    journal
        .record_intent(&a[1].key(), &a[1], None, jiff::Timestamp::UNIX_EPOCH)
        .unwrap();
    drop((journal, lock));
    let before = f.store.load().unwrap();
    // Taking the lock folds the journal: the serial grows, the content stays.
    let (_lock, after) = f.store.lock_and_load("test", Duration::ZERO).unwrap();
    assert_eq!(after.id.serial, before.id.serial + 1);
    assert_ne!(after.id, before.id);
    assert!(state_unmoved(&before.id, &after, f.store.path()));
    assert!(state_unmoved(&after.id, &after, f.store.path()));
    // Real changes are moves: content, lineage, or a plan against no file.
    let mut changed = after.clone();
    changed.state.packages.remove(&a[0].key());
    assert!(!state_unmoved(&before.id, &changed, f.store.path()));
    let mut other = after.clone();
    other.id.lineage = Some("another".into());
    assert!(!state_unmoved(&before.id, &other, f.store.path()));
    assert!(!state_unmoved(&StateId::default(), &after, f.store.path()));
}

// ---- against the simulator ------------------------------------------------

#[tokio::test]
async fn a_missing_state_is_refused_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(dir.path().join("typo").join("oapkg.state.json"));
    let all = specs(2);
    let sim = Simulator::start(config_for(&all)).await.unwrap();
    let plan = plan_for(&store, &all);
    let error = run(&plan, &store, &sim, &fast(), &Log::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApplyError::State(StateError::Missing { .. })),
        "{error:?}"
    );
    // What to do is the error's hint, printed after it.
    let hint = error.hint().unwrap_or_default();
    assert!(hint.contains("oapkg init"), "{error}: {hint}");
    assert!(sim.ledger().is_empty());
    assert!(sim.requests().is_empty(), "not even the pre-flight");
    assert!(!store.path().exists(), "nothing is created");
}

#[tokio::test]
async fn buys_exactly_the_plan_and_records_every_answer() {
    let f = store();
    let all = specs(6);
    let sim = Simulator::start(config_for(&all)).await.unwrap();
    let plan = plan_for(&f.store, &all);
    let log = Log::default();
    let report = run(&plan, &f.store, &sim, &fast(), &log).await.unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.purchased, 6);
    assert_eq!(
        report.summary_line(),
        "Apply complete: 6 purchased, 0 failed, 0 unconfirmed."
    );
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 6);
    let state = f.store.load().unwrap();
    assert_eq!(Some(&state.id), report.state.as_ref());
    for charge in &ledger {
        let key = format!("{}@{}", charge.oaid, charge.dateactive);
        let record = &state.state.packages[&crate::spec::Key::parse(&key).unwrap()];
        assert_eq!(record.status, Status::Submitted);
        assert_eq!(
            record.service_preview_id.as_deref(),
            Some(charge.service_preview_id.as_str())
        );
        assert_eq!(record.result_code.as_deref(), Some("100"));
        assert!(record.submitted_at.is_some());
    }
    assert!(!f.store.journal_path().exists(), "the journal is folded");
    // Every package: sent, then done, in that order.
    let lines = log.lines();
    assert_eq!(lines[0], "started 6");
    for s in &all {
        let sent = lines
            .iter()
            .position(|l| *l == format!("sent {} 1", s.key()));
        let done = lines.iter().position(|l| *l == format!("done {}", s.key()));
        assert!(sent.unwrap() < done.unwrap(), "{lines:?}");
    }
    // A second run with a fresh plan sends nothing and takes no lock.
    let again = plan_for(&f.store, &all);
    assert!(!again.buys_anything());
    let report = run(&again, &f.store, &sim, &fast(), &log).await.unwrap();
    assert!(report.succeeded() && report.outcomes.is_empty());
    assert_eq!(sim.ledger().len(), 6);
}

#[tokio::test]
async fn never_more_than_parallelism_in_flight() {
    let f = store();
    let all = specs(10);
    let sim = Simulator::start(config_for(&all).latency(Duration::from_millis(30)))
        .await
        .unwrap();
    let plan = plan_for(&f.store, &all);
    let log = Log::default();
    let options = ApplyOptions {
        parallelism: 3,
        ..fast()
    };
    let report = run(&plan, &f.store, &sim, &options, &log).await.unwrap();
    assert_eq!(report.purchased, 10);
    let mut in_flight = 0i32;
    let mut peak = 0;
    for line in log.lines() {
        if line.starts_with("sent ") {
            in_flight += 1;
        } else if line.starts_with("answered ") {
            in_flight -= 1;
        }
        peak = peak.max(in_flight);
    }
    assert_eq!(peak, 3);
}

#[tokio::test]
async fn an_unknown_outcome_is_unconfirmed_at_once_and_the_others_go_on() {
    let f = store();
    let all = specs(3);
    // The first package's request is charged but its answer is lost; the
    // simulator would charge a resend again (no duplicate detection).
    let sim = Simulator::start(config_for(&all).dedupe(false).fault(FaultRule::for_oaid(
        "1001",
        Fault::DropConnection {
            stage: Stage::AfterCommit,
        },
    )))
    .await
    .unwrap();
    let plan = plan_for(&f.store, &all);
    let log = Log::default();
    let report = run(&plan, &f.store, &sim, &fast(), &log).await.unwrap();
    assert_eq!((report.purchased, report.unconfirmed), (2, 1), "{report:?}");
    assert!(matches!(
        report.outcomes[0].1,
        PackageResult::Unconfirmed { attempts: 1, .. }
    ));
    assert_eq!(sim.ledger().len(), 3, "each charged once, none resent");
    assert!(!log.lines().iter().any(|l| l.starts_with("retry")));
    assert_eq!(
        statuses(&f.store)[&all[0].key().to_string()],
        Status::Unconfirmed
    );
}

#[tokio::test]
async fn with_retry_unknown_an_unknown_outcome_is_resent_and_199_confirms_it() {
    let f = store();
    let all = specs(1);
    // The first request is charged but its answer is lost.
    let sim = Simulator::start(config_for(&all).fault(FaultRule::next(
        1,
        Fault::DropConnection {
            stage: Stage::AfterCommit,
        },
    )))
    .await
    .unwrap();
    let plan = plan_for(&f.store, &all);
    let log = Log::default();
    let options = ApplyOptions {
        retry_unknown: true,
        ..fast()
    };
    let report = run(&plan, &f.store, &sim, &options, &log).await.unwrap();
    assert!(report.succeeded(), "{report:?}");
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 1, "charged once");
    let PackageResult::Submitted {
        code,
        service_preview_id,
        attempts,
        unexpected_duplicate,
        ..
    } = &report.outcomes[0].1
    else {
        panic!("{report:?}")
    };
    assert_eq!((code.as_str(), *attempts), ("199", 2));
    assert!(
        !unexpected_duplicate,
        "the 199 a resend expects is no surprise"
    );
    assert_eq!(
        service_preview_id.as_deref(),
        Some(ledger[0].service_preview_id.as_str())
    );
    let key = all[0].key();
    assert_eq!(
        log.lines(),
        vec![
            "started 1".to_owned(),
            format!("sent {key} 1"),
            format!("answered {key} 1"),
            format!("retry {key} 1"),
            format!("sent {key} 2"),
            format!("answered {key} 2"),
            format!("done {key}"),
        ]
    );
}

#[tokio::test]
async fn with_retry_unknown_unknown_until_retries_run_out_is_unconfirmed_and_never_dropped() {
    let f = store();
    let all = specs(2);
    let sim = Simulator::start(config_for(&all).fault(FaultRule::for_oaid(
        "1001",
        Fault::ServerError {
            stage: Stage::BeforeCommit,
        },
    )))
    .await
    .unwrap();
    let plan = plan_for(&f.store, &all);
    let retrying = ApplyOptions {
        retry_unknown: true,
        ..fast()
    };
    let report = run(&plan, &f.store, &sim, &retrying, &Log::default())
        .await
        .unwrap();
    assert!(!report.succeeded());
    assert_eq!((report.purchased, report.unconfirmed), (1, 1));
    assert!(matches!(
        report.outcomes[0].1,
        PackageResult::Unconfirmed { attempts: 4, .. }
    ));
    assert_eq!(
        statuses(&f.store),
        BTreeMap::from([
            (all[0].key().to_string(), Status::Unconfirmed),
            (all[1].key().to_string(), Status::Submitted),
        ])
    );
    // Without --retry-unconfirmed the next run leaves it alone.
    sim.clear_faults();
    let plan = plan_for(&f.store, &all);
    let report = run(&plan, &f.store, &sim, &fast(), &Log::default())
        .await
        .unwrap();
    assert_eq!(report.unconfirmed, 1);
    assert!(matches!(
        report.outcomes[0].1,
        PackageResult::LeftUnconfirmed
    ));
    assert_eq!(
        sim.requests()
            .iter()
            .filter(|r| r.body["OAID"] == "1001")
            .count(),
        4
    );
    // With it, the package is bought (it never reached eSMS: 100).
    let options = ApplyOptions {
        retry_unconfirmed: true,
        ..fast()
    };
    let report = run(&plan, &f.store, &sim, &options, &Log::default())
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(sim.ledger().len(), 2);
    assert!(statuses(&f.store).values().all(|s| *s == Status::Submitted));
}

#[tokio::test]
async fn a_199_to_a_first_request_is_submitted_and_flagged() {
    let f = store();
    let all = specs(2);
    let sim = Simulator::start(config_for(&all).fault(FaultRule::for_oaid(
        "1002",
        Fault::Code {
            code: "199".into(),
            message: Some("This request already exists and is being processed".into()),
        },
    )))
    .await
    .unwrap();
    let plan = plan_for(&f.store, &all);
    let report = run(&plan, &f.store, &sim, &fast(), &Log::default())
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    let flags: Vec<bool> = report
        .outcomes
        .iter()
        .map(|(_, r)| match r {
            PackageResult::Submitted {
                unexpected_duplicate,
                ..
            } => *unexpected_duplicate,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(flags, [false, true]);
    assert!(statuses(&f.store).values().all(|s| *s == Status::Submitted));
}

#[tokio::test]
async fn a_failed_attempt_is_kept_until_the_key_is_submitted() {
    let f = store();
    let all = specs(2);
    let sim = Simulator::start(config_for(&all).fault(FaultRule::for_oaid(
        "1001",
        Fault::Code {
            code: "102".into(),
            message: Some("No price list".into()),
        },
    )))
    .await
    .unwrap();
    let plan = plan_for(&f.store, &all);
    let report = run(&plan, &f.store, &sim, &fast(), &Log::default())
        .await
        .unwrap();
    assert_eq!((report.purchased, report.failed), (1, 1));
    let state = f.store.load().unwrap().state;
    let kept = &state.failed_attempts[&all[0].key()];
    assert_eq!(
        (kept.code.as_deref(), kept.message.as_str()),
        (Some("102"), "No price list")
    );
    assert!(!state.packages.contains_key(&all[0].key()));
    // The next plan carries it on the purchase; once bought, it is gone.
    let plan = plan_for(&f.store, &all);
    assert_eq!(plan.changes[0].last_failure.as_ref(), Some(kept));
    sim.clear_faults();
    let report = run(&plan, &f.store, &sim, &fast(), &Log::default())
        .await
        .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert!(f.store.load().unwrap().state.failed_attempts.is_empty());
}

#[tokio::test]
async fn a_fatal_code_stops_new_requests_and_in_flight_ones_are_recorded() {
    let f = store();
    let all = specs(8);
    // Enough balance for 3 advanced 12-month packages (1,200,000 each).
    let sim = Simulator::start(
        config_for(&all)
            .balance(3_600_000)
            .latency(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let plan = plan_for(&f.store, &all);
    let log = Log::default();
    let options = ApplyOptions {
        parallelism: 2,
        ..fast()
    };
    let report = run(&plan, &f.store, &sim, &options, &log).await.unwrap();
    assert!(matches!(&report.stopped, Some(StopReason::Fatal { code, .. }) if code == "103"));
    assert_eq!(report.purchased, 3);
    assert_eq!(sim.ledger().len(), 3);
    // At most the one in flight beside the refused one was still answered.
    assert!(report.failed >= 1 && report.failed <= 2, "{report:?}");
    assert_eq!(report.purchased + report.failed + report.not_attempted, 8);
    let purchases = sim
        .requests()
        .iter()
        .filter(|r| r.call == esms_sim::Call::Purchase)
        .count();
    assert_eq!(purchases, report.purchased + report.failed);
    let recorded = statuses(&f.store);
    assert_eq!(recorded.len(), 3);
    assert!(recorded.values().all(|s| *s == Status::Submitted));
    assert!(log.lines().iter().any(|l| l.starts_with("stopping")));
}

#[tokio::test]
async fn a_per_package_refusal_fails_that_package_only() {
    let f = store();
    let all = specs(4);
    let sim = Simulator::start(config_for(&all).fault(FaultRule::for_oaid(
        "1002",
        Fault::Code {
            code: "204".into(),
            message: None,
        },
    )))
    .await
    .unwrap();
    let plan = plan_for(&f.store, &all);
    let report = run(&plan, &f.store, &sim, &fast(), &Log::default())
        .await
        .unwrap();
    assert_eq!((report.purchased, report.failed), (3, 1));
    assert!(report.stopped.is_none());
    assert!(!statuses(&f.store).contains_key(&all[1].key().to_string()));
}

#[tokio::test]
async fn cancelling_stops_sending_and_records_what_was_in_flight() {
    let f = store();
    let all = specs(12);
    let sim = Simulator::start(config_for(&all).latency(Duration::from_millis(60)))
        .await
        .unwrap();
    let plan = plan_for(&f.store, &all);
    let client = client(&sim);
    let (canceller, signal) = cancel_pair();
    let log = Log::default();
    let options = ApplyOptions {
        parallelism: 3,
        ..fast()
    };
    let on_event = |e: ApplyEvent<'_>| {
        // Cancel as soon as the first wave is in flight.
        if let ApplyEvent::PurchaseSent { .. } = e
            && log.lines().iter().filter(|l| l.starts_with("sent")).count() == 2
        {
            canceller.cancel();
        }
        log.on(e);
    };
    let report = apply(&plan, &f.store, &client, &options, &on_event, signal)
        .await
        .unwrap();
    assert!(matches!(report.stopped, Some(StopReason::Cancelled)));
    // The three in flight were answered and recorded; nothing else was sent.
    assert_eq!(report.purchased, 3, "{report:?}");
    assert_eq!(report.not_attempted, 9);
    assert_eq!(sim.ledger().len(), 3);
    assert_eq!(statuses(&f.store).len(), 3);
    assert!(!f.store.journal_path().exists());
}

#[tokio::test]
async fn a_moved_state_refuses_the_plan_before_sending() {
    let f = store();
    let all = specs(2);
    let sim = Simulator::start(config_for(&all)).await.unwrap();
    let plan = plan_for(&f.store, &all);
    // Another writer records something meanwhile.
    let lock = f.store.lock("test", Duration::ZERO).unwrap();
    let mut state = f.store.load().unwrap().state;
    let other = spec("42", date(2027, 1, 1), Tier::Trial, 1);
    state.packages.insert(
        other.key(),
        crate::state::Record {
            spec_hash: other.hash(),
            spec: other,
            name: None,
            status: Status::Imported,
            service_preview_id: None,
            result_code: None,
            result_message: None,
            submitted_at: None,
            confirmed: None,
            by_policy: false,
        },
    );
    f.store.write(&lock, &mut state).unwrap();
    drop(lock);
    let err = run(&plan, &f.store, &sim, &fast(), &Log::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Stale(_)), "{err}");
    assert!(err.to_string().starts_with("stale plan"), "{err}");
    assert!(
        sim.requests().is_empty(),
        "nothing sent, not even the pre-flight"
    );
}

#[tokio::test]
async fn preflight_names_the_missing_oas_and_sends_no_purchase() {
    let f = store();
    let all = specs(3);
    let sim = Simulator::start(config_for(&all[..1])).await.unwrap();
    let plan = plan_for(&f.store, &all);
    let err = run(&plan, &f.store, &sim, &fast(), &Log::default())
        .await
        .unwrap_err();
    // The error, then its hint (what to do).
    let message = format!("{err}. {}", err.hint().unwrap_or_default());
    assert!(
        matches!(&err, ApplyError::Preflight(PreflightError::MissingOas { oaids }) if *oaids == ["1002", "1003"]),
        "{message}"
    );
    assert!(message.contains("1002, 1003") && message.contains("--skip-preflight"));
    assert_eq!(sim.requests().len(), 1, "only the OA list");
    let untouched = f.store.load().unwrap();
    assert_eq!(untouched.id.serial, 0, "the state is not written");
    assert!(untouched.state.packages.is_empty());
    // Skipped, the purchases go out and the unknown OAs are refused (799).
    let options = ApplyOptions {
        skip_preflight: true,
        ..fast()
    };
    let report = run(&plan, &f.store, &sim, &options, &Log::default())
        .await
        .unwrap();
    assert_eq!((report.purchased, report.failed), (1, 2));
}

#[tokio::test]
async fn a_second_apply_waits_for_the_lock_then_finds_the_plan_stale() {
    let f = store();
    let all = specs(4);
    let sim = Simulator::start(config_for(&specs(5)).latency(Duration::from_millis(80)))
        .await
        .unwrap();
    let plan = plan_for(&f.store, &all);
    let waiting = ApplyOptions {
        lock_timeout: Duration::from_secs(10),
        ..fast()
    };
    let quick = fast();
    let log = Log::default();
    let (first, second) = tokio::join!(run(&plan, &f.store, &sim, &quick, &log), async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        run(&plan, &f.store, &sim, &waiting, &Log::default()).await
    });
    assert_eq!(first.unwrap().purchased, 4);
    assert!(matches!(second, Err(ApplyError::Stale(_))), "{second:?}");
    assert_eq!(sim.ledger().len(), 4);
    // Without waiting, the second fails on the lock naming the holder.
    let plan = plan_for(&f.store, &specs(5));
    let (first, second) = tokio::join!(run(&plan, &f.store, &sim, &quick, &log), async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        run(&plan, &f.store, &sim, &fast(), &Log::default()).await
    });
    assert_eq!(first.unwrap().purchased, 1);
    let err = second.unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::State(crate::state::StateError::Locked { .. })
        ),
        "{err}"
    );
    assert_eq!(sim.ledger().len(), 5);
}

#[tokio::test]
async fn with_a_high_fault_rate_repeated_runs_converge_without_double_charges() {
    let f = store();
    let all = specs(12);
    let sim = Simulator::start(
        config_for(&all)
            .fault_rate(0.6)
            .seed(7)
            .hang_limit(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let options = ApplyOptions {
        retry_unconfirmed: true,
        ..fast()
    };
    let mut converged = false;
    for _ in 0..20 {
        let plan = plan_for(&f.store, &all);
        if !plan.buys_anything() {
            converged = true;
            break;
        }
        run(&plan, &f.store, &sim, &options, &Log::default())
            .await
            .unwrap();
    }
    assert!(converged);
    let faults = sim.requests().iter().filter(|r| r.fault.is_some()).count();
    assert!(faults >= 10, "only {faults} faults");
    let mut charges: HashMap<(String, String), usize> = HashMap::new();
    for c in sim.ledger() {
        *charges.entry((c.oaid, c.dateactive)).or_default() += 1;
    }
    assert_eq!(charges.len(), 12);
    assert!(charges.values().all(|n| *n == 1), "{charges:?}");
}

#[test]
fn the_apply_future_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let f = store();
    let plan = plan_for(&f.store, &[]);
    let client = Client::new(
        crate::esms::Endpoint::production(),
        Credentials::new("k", "s").unwrap(),
        ClientOptions::default(),
    )
    .unwrap();
    let options = ApplyOptions::default();
    let on_event = |_: ApplyEvent<'_>| {};
    let future = apply(
        &plan,
        &f.store,
        &client,
        &options,
        &on_event,
        CancelSignal::never(),
    );
    assert_send(&future);
}
