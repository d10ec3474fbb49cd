//! `watch --listen` metrics as Prometheus reads them (every counter at 0
//! from the start, build info, balance, estimated spend, held changes,
//! cycle duration), and the credentials check of `watch --apply`: one
//! `GetBalance` at start-up and on each `--interval`, rejected keys turning
//! `/healthz` to 503 and firing `error` even when nothing is to be bought.

use std::time::Duration;

use esms_sim::{Call, Fault, FaultRule, SimConfig};

use crate::support::{API_KEY, Env, SECRET_KEY};
use crate::watch::{Watch, doc, message, pkg};
use crate::watch_apply::{outcome, simulator, start_apply_with, wait_until};
use crate::watch_service::{
    Receiver, free_addr, get, parse_prometheus, priced, sample, start_service,
};

/// A manifest that declares nothing: nothing is to be bought.
const NOTHING: &str = "apiVersion: oapkg/v1\nkind: PackageSet\npackages: []\n";

/// The samples of `name`, as (labels, value).
fn series(samples: &[crate::watch_service::Sample], name: &str) -> Vec<(String, f64)> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (labels.join(","), s.value)
        })
        .collect()
}

#[test]
fn every_counter_is_at_zero_with_all_its_labels_from_the_start_and_build_info_names_the_binary() {
    let env = Env::new();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    let addr = free_addr();
    let mut watch = Watch::start(&env, &["--listen", &addr]);
    watch.planned();
    let samples = parse_prometheus(&get(&addr, "/metrics").1);
    let mut cycles = series(&samples, "oapkg_cycles_total");
    cycles.sort_by(|a, b| a.0.cmp(&b.0));
    // The first cycle may still be finishing: `ok` is 0 or 1, the rest 0.
    let names: Vec<&str> = cycles.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        names,
        [
            "result=cancelled",
            "result=error",
            "result=failed",
            "result=invalid",
            "result=ok",
            "result=refused",
            "result=skipped",
            "result=suspended",
        ]
    );
    for (label, value) in &cycles {
        assert!(
            *value == 0.0 || (label == "result=ok" && *value == 1.0),
            "{cycles:?}"
        );
    }
    let purchases = series(&samples, "oapkg_purchases_total");
    assert_eq!(
        purchases,
        [
            ("result=failed".to_owned(), 0.0),
            ("result=not_attempted".to_owned(), 0.0),
            ("result=purchased".to_owned(), 0.0),
            ("result=unconfirmed".to_owned(), 0.0),
        ]
    );
    assert_eq!(
        series(&samples, "oapkg_account_checks_total").len(),
        3,
        "accepted, rejected, unreachable"
    );
    assert_eq!(series(&samples, "oapkg_git_commits_total").len(), 2);
    // A plan-only watch reads no balance: not made up as 0.
    assert_eq!(sample(&samples, "oapkg_balance", &[]), None);
    assert_eq!(sample(&samples, "oapkg_held_changes", &[]), Some(0.0));

    // build_info names the version and the commit `build.rs` found (it
    // sets the same variable for this test crate).
    let commit = env!("OAPKG_GIT_COMMIT");
    assert!(!commit.is_empty());
    assert_eq!(
        sample(
            &samples,
            "oapkg_build_info",
            &[("version", env!("CARGO_PKG_VERSION")), ("commit", commit)]
        ),
        Some(1.0)
    );
    assert_eq!(series(&samples, "oapkg_build_info").len(), 1);
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn spend_balance_held_changes_and_cycle_duration_follow_an_apply_cycle() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    // 1001: 12 months of advanced at 59,000 = 708,000 VND by the price
    // list; 9999 is not on the account: held by the pre-flight.
    env.file("a.yaml", priced(&[pkg(1001, 12), pkg(9999, 12)]));
    let addr = free_addr();
    let mut watch = start_service(&env, &sim, &["-f", "a.yaml", "--listen", &addr]);
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    wait_until("the cycle counted", Duration::from_secs(10), || {
        let samples = parse_prometheus(&get(&addr, "/metrics").1);
        sample(&samples, "oapkg_cycles_total", &[("result", "ok")]) == Some(1.0)
    });
    let samples = parse_prometheus(&get(&addr, "/metrics").1);
    assert_eq!(sim.ledger().len(), 1);
    assert_eq!(
        sample(
            &samples,
            "oapkg_spent_estimated_total",
            &[("currency", "VND")]
        ),
        Some(708_000.0)
    );
    // The simulator's own price (100,000 a month) is what it charged: the
    // metric is the price list's estimate, not the charge.
    assert_eq!(sim.ledger()[0].price, 1_200_000);
    // The last GetBalance (the pre-flight, before the purchase).
    assert_eq!(sample(&samples, "oapkg_balance", &[]), Some(100_000_000.0));
    assert_eq!(sample(&samples, "oapkg_held_changes", &[]), Some(1.0));
    assert_eq!(sample(&samples, "oapkg_credentials_valid", &[]), Some(1.0));
    assert_eq!(
        sample(
            &samples,
            "oapkg_account_checks_total",
            &[("result", "accepted")]
        ),
        Some(1.0)
    );
    let took = sample(&samples, "oapkg_cycle_duration_seconds", &[]).expect("a duration");
    assert!(took > 0.0 && took < 30.0, "{took}");
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn rejected_credentials_at_start_make_healthz_503_and_notify_an_error_with_nothing_to_buy() {
    // The account takes other keys than the ones the watch is given.
    let sim = simulator(SimConfig::new().keys("another-api-key", "another-secret-key"));
    let env = Env::with_state();
    env.file("a.yaml", NOTHING);
    let addr = free_addr();
    let receiver = Receiver::start(0, false);
    let mut watch = start_service(
        &env,
        &sim,
        &[
            "-f",
            "a.yaml",
            "--listen",
            &addr,
            "--notify",
            &receiver.url(),
        ],
    );
    let logged = watch.record("the rejection logged", |v| v["credentials"] == "rejected");
    assert_eq!(logged["level"], "ERROR", "{logged}");
    assert!(message(&logged).contains("101"), "{logged}");
    watch.planned();
    wait_until("503", Duration::from_secs(10), || {
        get(&addr, "/healthz").0 == 503
    });
    let (_, body) = get(&addr, "/healthz");
    assert!(body.starts_with("credentials rejected: "), "{body}");
    let samples = parse_prometheus(&get(&addr, "/metrics").1);
    assert_eq!(sample(&samples, "oapkg_credentials_valid", &[]), Some(0.0));
    wait_until("the error notified", Duration::from_secs(10), || {
        receiver.count("error") == 1
    });
    let error = receiver.received().pop().unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("rejected the credentials"),
        "{error}"
    );
    for body in receiver.raw() {
        assert!(
            !body.contains(API_KEY) && !body.contains(SECRET_KEY),
            "{body}"
        );
    }
    // One GetBalance, nothing else asked, nothing bought.
    let calls: Vec<Call> = sim.requests().iter().map(|r| r.call).collect();
    assert_eq!(calls, [Call::Balance]);
    assert!(sim.ledger().is_empty());
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn credentials_are_checked_again_each_interval_and_a_rejection_is_notified_once() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("a.yaml", NOTHING);
    let addr = free_addr();
    let receiver = Receiver::start(0, false);
    let mut watch = start_apply_with(
        &env,
        &sim,
        &[
            "-f",
            "a.yaml",
            "--interval",
            "0.3",
            "--listen",
            &addr,
            "--notify",
            &receiver.url(),
        ],
        |cmd| {
            cmd.env("OAPKG_TEST_NOTIFY_DELAY_MS", "50");
        },
    );
    watch.record("accepted at start", |v| v["credentials"] == "accepted");
    wait_until("healthy", Duration::from_secs(10), || {
        get(&addr, "/healthz").0 == 200
    });
    // The keys stop working (eSMS answers 101 to every call).
    sim.inject(
        FaultRule::always(Fault::Code {
            code: "101".into(),
            message: Some("Authorize Failed".into()),
        })
        .on_all_calls(),
    );
    watch.record("rejected on an interval", |v| {
        v["credentials"] == "rejected"
    });
    wait_until("503", Duration::from_secs(10), || {
        get(&addr, "/healthz").0 == 503
    });
    // Several more interval checks, still rejected: one notification.
    wait_until("three rejections counted", Duration::from_secs(10), || {
        let samples = parse_prometheus(&get(&addr, "/metrics").1);
        sample(
            &samples,
            "oapkg_account_checks_total",
            &[("result", "rejected")],
        )
        .unwrap_or(0.0)
            >= 3.0
    });
    assert_eq!(receiver.count("error"), 1, "{:#?}", receiver.received());
    sim.clear_faults();
    wait_until("healthy again", Duration::from_secs(10), || {
        get(&addr, "/healthz").0 == 200
    });
    assert!(sim.ledger().is_empty());
    assert_eq!(watch.terminate(), 0);
}
