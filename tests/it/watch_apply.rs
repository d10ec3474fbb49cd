//! `oapkg watch --apply` against the simulator: the apply half of watch's
//! "Must show" list.
//!
//! NOT YET WIRED: this file is not in `tests/it/main.rs`, because this build
//! has no apply engine (`watch --apply` refuses to start). When `src/apply`
//! lands and `cli::watch::reconciler` builds the apply adapter, add
//! `mod watch_apply;` to `tests/it/main.rs`.
//!
//! The tests rely only on what exists now — the watch log records (`planned
//! …`, `outcome` = done | refused | failed | cancelled, `skipped` = refused),
//! the simulator's ledger and request log, and `oapkg state list` — not on
//! how the apply engine words its own lines.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use esms_sim::Call;
use esms_sim::{BlockingSimHandle, SimConfig, Simulator};
use serde_json::Value;

use crate::support::{API_KEY, Backend, Env, SECRET_KEY};
use crate::watch::{WAIT, Watch, assert_counts, doc, message, pkg};

/// A simulator that knows the OAIDs the tests use.
pub(crate) fn simulator(config: SimConfig) -> BlockingSimHandle {
    let config = ["1001", "1002", "1003", "2001", "3001"]
        .map(String::from)
        .into_iter()
        .chain((4000..4020).map(|n: u32| n.to_string()))
        .fold(config, SimConfig::oaid);
    Simulator::spawn_blocking(config).expect("start the simulator")
}

/// `oapkg watch --apply ARGS...` pointed at `sim`.
pub(crate) fn start_apply(env: &Env, sim: &BlockingSimHandle, args: &[&str]) -> Watch {
    start_apply_with(env, sim, args, |_| {})
}

/// [`start_apply`] with extra set-up of the command (environment, ...).
pub(crate) fn start_apply_with(
    env: &Env,
    sim: &BlockingSimHandle,
    args: &[&str],
    setup: impl FnOnce(&mut std::process::Command),
) -> Watch {
    let endpoint = sim.endpoint().as_str().to_owned();
    let mut all = vec!["--apply"];
    all.extend_from_slice(args);
    Watch::start_with(env, &all, |cmd| {
        cmd.env("ESMS_ENDPOINT", &endpoint)
            .env("ESMS_API_KEY", API_KEY)
            .env("ESMS_SECRET_KEY", SECRET_KEY);
        setup(cmd);
    })
}

/// The next apply outcome record (`done`, `refused`, `failed`, `cancelled`).
#[track_caller]
pub(crate) fn outcome(watch: &mut Watch) -> Value {
    watch.record("with an apply outcome", |v| v["outcome"].is_string())
}

/// `OAID@Dateactive` of every charge.
pub(crate) fn charged(sim: &BlockingSimHandle) -> BTreeSet<String> {
    sim.ledger()
        .iter()
        .map(|c| format!("{}@{}", c.oaid, c.dateactive))
        .collect()
}

fn purchase_requests(sim: &BlockingSimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.call == Call::Purchase)
        .count()
}

/// Keys recorded in the state as submitted.
fn submitted(env: &Env) -> BTreeSet<String> {
    let list = env
        .run(&["state", "list", "--format", "json"])
        .code(0)
        .json();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "submitted")
        .map(|r| r["key"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `condition` until it holds, at most `within`.
#[track_caller]
pub(crate) fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "not {what} within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn keys(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|k| (*k).to_owned()).collect()
}

#[test]
fn apply_watch_buys_what_each_kind_of_save_adds_and_nothing_for_a_deleted_file() {
    apply_watch_buys_what_each_save_adds_on(&Backend::Local);
}

/// The same watch, keeping its state on S3 (moto).
#[test]
fn apply_watch_buys_what_each_kind_of_save_adds_and_nothing_for_a_deleted_file_on_s3() {
    if let Some(server) = crate::s3::server::S3Server::moto() {
        apply_watch_buys_what_each_save_adds_on(&Backend::S3(&server));
    }
}

fn apply_watch_buys_what_each_save_adds_on(backend: &Backend<'_>) {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state_on(backend);
    env.file("packages/a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = start_apply(&env, &sim, &["-f", "packages"]);
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01"]));

    // Truncate and write.
    std::fs::write(
        env.path("packages/a.yaml"),
        doc(&[pkg(1001, 12), pkg(1002, 12)]),
    )
    .unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(sim.ledger().len(), 2);

    // Write a temporary file and rename it over.
    let three = doc(&[pkg(1001, 12), pkg(1002, 12), pkg(1003, 12)]);
    env.file("packages/.a.yaml.tmp", &three);
    std::fs::rename(
        env.path("packages/.a.yaml.tmp"),
        env.path("packages/a.yaml"),
    )
    .unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(sim.ledger().len(), 3);

    // `sed -i`: 1003 moves to a new start date after its recorded period, a
    // new key (the old one stays recorded, as an orphan). A start inside the
    // recorded period would pay its months twice and be refused without
    // --allow-overlap.
    let sed = std::process::Command::new("sed")
        .args([
            "-i",
            "/1003/,/duration/ s/start: 2027-01-01/start: 2028-01-01/",
        ])
        .arg(env.path("packages/a.yaml"))
        .status()
        .expect("sed");
    assert!(sed.success());
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert!(
        charged(&sim).contains("1003@2028-01-01"),
        "{:?}",
        charged(&sim)
    );

    // A new file.
    env.file("packages/b.yaml", doc(&[pkg(2001, 6)]));
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(sim.ledger().len(), 5);

    // A deleted file: its package becomes an orphan, nothing is bought.
    std::fs::remove_file(env.path("packages/b.yaml")).unwrap();
    let planned = watch.planned();
    assert_counts(&planned, 0, 2); // 2001 and 1003@2027-01-01
    assert_eq!(watch.terminate(), 0);
    assert_eq!(sim.ledger().len(), 5);
    assert_eq!(
        purchase_requests(&sim),
        5,
        "one request per package, no more"
    );
    assert_eq!(submitted(&env), charged(&sim), "every charge is recorded");
    // On S3 nothing was written beside the manifests.
    let local = env.path(crate::support::STATE).exists();
    assert_eq!(local, env.s3().is_none());
}

#[test]
fn a_broken_manifest_buys_nothing_and_fixing_it_resumes() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = start_apply(&env, &sim, &["-f", "a.yaml"]);
    assert_eq!(outcome(&mut watch)["outcome"], "done");

    // 1002 is new but its document is broken: nothing from it is bought.
    let broken = doc(&[pkg(1001, 12), pkg(1002, 12).replace("advanced", "gold")]);
    std::fs::write(env.path("a.yaml"), broken).unwrap();
    let error = watch.record("an error with its location", |v| v["file"] == "a.yaml");
    assert!(message(&error).starts_with("a.yaml:9:11: "), "{error}");
    watch.record("the summary", |v| {
        message(v).starts_with("the manifests are invalid")
    });
    assert!(watch.0.alive());
    assert_eq!(sim.ledger().len(), 1);

    std::fs::write(env.path("a.yaml"), doc(&[pkg(1001, 12), pkg(1002, 12)])).unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01", "1002@2027-01-01"]));
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn a_burst_of_fifty_writes_is_one_cycle_and_one_apply() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = start_apply(&env, &sim, &["-f", "a.yaml", "--debounce", "1500"]);
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    // Fifty saves of 2001 with changing durations: had any intermediate one
    // been applied, a later one would be a `replace` (refused) or a second
    // purchase.
    for i in 0..50 {
        std::fs::write(
            env.path("a.yaml"),
            doc(&[pkg(1001, 12), pkg(2001, 1 + i % 30)]),
        )
        .unwrap();
    }
    let done = outcome(&mut watch);
    assert_eq!(
        (done["cycle"].as_u64(), done["outcome"].as_str()),
        (Some(2), Some("done"))
    );
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[1].duaration, "20", "the last save was bought");
    // A distinct change is the very next cycle.
    std::fs::write(
        env.path("a.yaml"),
        doc(&[pkg(1001, 12), pkg(2001, 20), pkg(3001, 1)]),
    )
    .unwrap();
    assert_eq!(outcome(&mut watch)["cycle"], 3);
    assert_eq!(sim.ledger().len(), 3);
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn over_max_purchases_buys_nothing_and_waits_for_the_manifests_to_change() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file(
        "a.yaml",
        doc(&[pkg(1001, 12), pkg(1002, 12), pkg(1003, 12)]),
    );
    let mut watch = start_apply(
        &env,
        &sim,
        &["-f", "a.yaml", "--max-purchases", "2", "--interval", "0.3"],
    );
    let refused = outcome(&mut watch);
    assert_eq!(
        (refused["cycle"].as_u64(), refused["outcome"].as_str()),
        (Some(1), Some("refused"))
    );
    // Interval cycles come and go: each is skipped, none retries.
    for _ in 0..3 {
        let skipped = watch.record("a skipped cycle", |v| v["skipped"].is_string());
        assert_eq!(skipped["skipped"], "refused", "{skipped}");
    }
    assert!(sim.ledger().is_empty());
    assert_eq!(purchase_requests(&sim), 0);

    // Within the limit now: bought at once.
    std::fs::write(env.path("a.yaml"), doc(&[pkg(1001, 12), pkg(1002, 12)])).unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(sim.ledger().len(), 2);
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn sigterm_during_an_apply_cycle_records_every_charge_and_exits_zero() {
    let sim = simulator(SimConfig::new().latency(Duration::from_millis(300)));
    let env = Env::with_state();
    let many: Vec<String> = (0..20).map(|i| pkg(4000 + i, 12)).collect();
    env.file("a.yaml", doc(&many));
    let mut watch = start_apply(
        &env,
        &sim,
        &[
            "-f",
            "a.yaml",
            "--parallelism",
            "1",
            "--max-purchases",
            "20",
        ],
    );
    wait_until("charging", WAIT, || !sim.ledger().is_empty());
    let sent = Instant::now();
    watch.0.signal(libc::SIGTERM);
    assert_eq!(watch.0.wait_exit(WAIT), 0, "{}", watch.0.transcript());
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "took {:?}",
        sent.elapsed()
    );
    let charged = charged(&sim);
    assert!(
        charged.len() < 20,
        "stopped early: {} charged",
        charged.len()
    );
    // Every charge is recorded; nothing is recorded that was not charged.
    assert_eq!(submitted(&env), charged, "{}", watch.0.transcript());
    // No lock left behind: a writer gets it at once.
    assert!(!env.path("state/oapkg.state.json.lock").exists());
    env.import("1001", "advanced", "2027-01-01", "12", &[])
        .code(0);
    // The rest is still to buy.
    let plan = env
        .run(&["plan", "--format", "json", "-f", "a.yaml"])
        .json();
    assert_eq!(
        plan["summary"]["purchase"].as_u64(),
        Some(20 - charged.len() as u64)
    );
}
