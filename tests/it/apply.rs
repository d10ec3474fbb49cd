//! `oapkg apply`: the real binary against the eSMS simulator over real HTTP
//! on 127.0.0.1.
//!
//! `OAPKG_KILL_ITERATIONS` (default 25) sets how many times the crash test
//! kills apply; `OAPKG_KILL_SEED` replays one of its runs (each run prints
//! its seed).
//!
//! The buying, concurrency and kill tests run twice: on a local state file
//! and on an S3 state (a moto or ministack server started by the test; see
//! `s3/server.rs`), from one body taking a [`Backend`].

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use esms_sim::Call;
use esms_sim::{Fault, FaultRule, SimControl, Stage};
use rand::{RngExt, SeedableRng};

use crate::s3::server::S3Server;
use crate::support::{
    API_KEY, Backend, Env, Pkg, Run, SECRET_KEY, STATE, account, apply, assert_bought_once_each,
    charges_by_key, last_line, manifest, oapkg, pkgs, purchase_requests, recorded, run, start,
    write_manifest,
};

fn wait_idle(sim: &SimControl) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sim.idle() {
        assert!(Instant::now() < deadline, "the simulator never went idle");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn buys_exactly_the_plan_then_has_nothing_left_to_do() {
    buys_exactly_the_plan_on(&Backend::Local);
}

#[test]
fn buys_exactly_the_plan_then_has_nothing_left_to_do_on_s3() {
    if let Some(server) = S3Server::moto() {
        buys_exactly_the_plan_on(&Backend::S3(&server));
    }
}

fn buys_exactly_the_plan_on(backend: &Backend<'_>) {
    let env = Env::with_state_on(backend);
    let all = vec![
        Pkg::new("4097311281936189049", "2026-12-01", "premium", 12),
        Pkg::new("745830328927467685", "2027-01-01", "advanced", 6),
        Pkg::new("5520017735810466321", "2026-12-15", "trial", 1),
    ];
    write_manifest(&env, &all);
    let sim = start(account(&all));

    let first = apply(&env, &sim, &[]);
    first
        .code(0)
        .stdout_has("Plan: 3 to purchase, 0 to replace")
        .stdout_has("+ purchase 4097311281936189049@2026-12-01: submitted, ServicePreviewId");
    assert_eq!(
        last_line(&first),
        "Apply complete: 3 purchased, 0 failed, 0 unconfirmed."
    );

    // The ledger holds exactly the planned purchases, field for field.
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 3);
    let by_key = charges_by_key(&ledger);
    let state = recorded(&env);
    for p in &all {
        let charge = &by_key[&p.key()][..];
        assert_eq!(charge.len(), 1, "{}", p.key());
        let charge = &charge[0];
        assert_eq!(charge.package, p.package, "{}", p.key());
        assert_eq!(charge.dateactive, p.start);
        assert_eq!(charge.duaration, p.months.to_string());
        let record = &state[&p.key()];
        assert_eq!(record["status"], "submitted");
        assert_eq!(
            record["service_preview_id"],
            charge.service_preview_id.as_str()
        );
        assert_eq!(record["result_code"], "100");
        assert!(record["submitted_at"].is_string());
    }
    assert!(!env.path("state/oapkg.state.json.journal").exists());
    // On S3 nothing was written beside the manifests.
    assert_eq!(env.path(STATE).exists(), env.s3().is_none());

    env.run(&["plan"]).code(0).stdout_has("No changes.");
    // A second apply says so, sends nothing and writes nothing.
    let bytes = state_bytes(&env);
    let requests = sim.requests().len();
    let second = apply(&env, &sim, &[]);
    second.code(0);
    assert!(
        last_line(&second).starts_with("No changes."),
        "{}",
        second.stdout
    );
    assert_eq!(sim.requests().len(), requests, "no request at all");
    assert_eq!(state_bytes(&env), bytes);
}

/// What stands for the state's version: the file's bytes, or on S3 the
/// listing with its lineage and serial (`state list` would not show a write).
fn state_bytes(env: &Env) -> Vec<u8> {
    if env.s3().is_some() {
        let id = env.run(&["plan", "--format", "json"]);
        id.code(0);
        let plan = id.json();
        format!(
            "{} {}",
            plan["state"],
            env.run(&["state", "list", "--format", "json"]).stdout
        )
        .into_bytes()
    } else {
        env.read(STATE)
    }
}

#[test]
fn guards_refuse_before_anything_is_sent_or_written() {
    let env = Env::with_state();
    let all = pkgs(1001, 4);
    let sim = start(account(&all));
    write_manifest(&env, &all[..1]);
    apply(&env, &sim, &[]).code(0);
    let bytes = env.read(STATE);
    let requests = sim.requests().len();
    let untouched = |env: &Env| {
        assert_eq!(env.read(STATE), bytes, "state bytes changed");
        for leftover in ["journal", "lock"] {
            assert!(
                !env.path(&format!("{STATE}.{leftover}")).exists(),
                "{leftover}"
            );
        }
        assert_eq!(sim.requests().len(), requests, "something was sent");
    };

    // Three more purchases against --max-purchases 2.
    write_manifest(&env, &all);
    apply(&env, &sim, &["--max-purchases", "2"])
        .code(1)
        .stdout_has("Plan: 3 to purchase")
        .stderr_has("the plan would send 3 purchase request(s) (3 purchase), more than --max-purchases 2; nothing was bought");
    untouched(&env);

    // A changed tier is a replace, refused without --allow-replace.
    let mut changed = all[..1].to_vec();
    changed[0].tier = "premium";
    changed[0].package = 3;
    write_manifest(&env, &changed);
    apply(&env, &sim, &[])
        .code(1)
        .stdout_has("~ package \"1001@2027-01-01\"")
        .stderr_has("needs --allow-replace; nothing was bought");
    untouched(&env);
    // The same plan as a saved plan is refused the same way.
    env.run(&["plan", "--out", "replace.plan"]).code(0);
    run(&env, &sim, &["apply", "replace.plan"])
        .code(1)
        .stderr_has("--allow-replace");
    untouched(&env);

    // Allowed, it is bought again with the new spec (not refunded).
    apply(&env, &sim, &["--allow-replace"])
        .code(0)
        .stdout_has("~ replace 1001@2027-01-01: submitted");
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 2);
    assert_eq!((ledger[1].oaid.as_str(), ledger[1].package), ("1001", 3));
    assert_eq!(recorded(&env)["1001@2027-01-01"]["tier"], "premium");
}

#[test]
fn a_moved_start_date_is_refused_without_allow_overlap_and_bought_once_with_it() {
    let env = Env::with_state();
    let bought = Pkg::new("4097311281936189049", "2026-12-01", "premium", 12);
    let sim = start(account(std::slice::from_ref(&bought)));
    write_manifest(&env, std::slice::from_ref(&bought));
    apply(&env, &sim, &[]).code(0);
    assert_eq!(sim.ledger().len(), 1);

    // A "typo fix" of the start date: a new key over the same months.
    let moved = Pkg::new("4097311281936189049", "2026-12-15", "premium", 12);
    write_manifest(&env, std::slice::from_ref(&moved));
    let plan = env.run(&["plan", "--format", "json"]).code(0).json();
    let purchase = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == moved.key())
        .unwrap();
    assert_eq!(purchase["action"], "purchase");
    assert_eq!(purchase["needs"], serde_json::json!(["--allow-overlap"]));

    let bytes = env.read(STATE);
    let requests = sim.requests().len();
    apply(&env, &sim, &[])
        .code(1)
        .stdout_has("[needs --allow-overlap]")
        .stderr_has("4097311281936189049@2026-12-15 overlaps 4097311281936189049@2026-12-01")
        .stderr_has("--allow-overlap")
        .stderr_has("nothing was bought");
    assert_eq!(sim.ledger().len(), 1, "nothing charged");
    assert_eq!(
        sim.requests().len(),
        requests,
        "nothing sent, not even the pre-flight"
    );
    assert_eq!(env.read(STATE), bytes, "nothing written");
    // A saved plan is refused the same way.
    env.run(&["plan", "--out", "moved.plan"]).code(0);
    run(&env, &sim, &["apply", "moved.plan"])
        .code(1)
        .stderr_has("--allow-overlap");
    assert_eq!(sim.ledger().len(), 1);
    assert_eq!(sim.requests().len(), requests);

    // With the flag it is bought, exactly once; the next apply has nothing to do.
    apply(&env, &sim, &["--allow-overlap"]).code(0);
    let by_key = charges_by_key(&sim.ledger());
    assert_eq!(by_key.len(), 2);
    assert_eq!(by_key[&bought.key()].len(), 1);
    assert_eq!(by_key[&moved.key()].len(), 1);
    assert_eq!(recorded(&env)[&moved.key()]["status"], "submitted");
    apply(&env, &sim, &["--allow-overlap"])
        .code(0)
        .stdout_has("No changes.");
    assert_eq!(sim.ledger().len(), 2);
}

#[test]
fn an_overlap_with_an_imported_package_sends_nothing_until_allowed() {
    let env = Env::with_state();
    env.import("4097311281936189049", "premium", "2026-12-01", "12", &[])
        .code(0);
    let moved = Pkg::new("4097311281936189049", "2026-12-15", "premium", 12);
    let sim = start(account(std::slice::from_ref(&moved)));
    write_manifest(&env, std::slice::from_ref(&moved));
    apply(&env, &sim, &[]).code(1).stderr_has("--allow-overlap");
    assert!(sim.ledger().is_empty());
    assert!(sim.requests().is_empty());
    apply(&env, &sim, &["--allow-overlap"]).code(0);
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].dateactive, "2026-12-15");
}

#[test]
fn an_expired_package_is_never_bought() {
    let env = Env::with_state().today("2027-01-15");
    let ended = Pkg::new("1001", "2026-12-01", "trial", 1);
    let sim = start(account(std::slice::from_ref(&ended)));
    write_manifest(&env, std::slice::from_ref(&ended));
    apply(&env, &sim, &[])
        .code(0)
        .stdout_has("No changes. 0 unchanged, 0 orphaned, 1 expired.");
    assert!(sim.requests().is_empty());
}

#[test]
fn preflight_names_the_oas_the_account_lacks_and_buys_nothing() {
    let env = Env::with_state();
    let fresh_state = env.read(STATE);
    let all = pkgs(2001, 4);
    write_manifest(&env, &all);
    let sim = start(account(&all[..2]));
    apply(&env, &sim, &[])
        .code(1)
        .stderr_has("does not hold 2 OA(s) to be bought for: 2003, 2004; nothing was bought");
    let requests = sim.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].call, Call::ListOas);
    assert_eq!(env.read(STATE), fresh_state, "the state is not written");
    // --skip-preflight sends them; eSMS refuses the unknown ones (799).
    let skipped = apply(&env, &sim, &["--skip-preflight"]);
    skipped
        .code(1)
        .stdout_has("x purchase 2003@2027-01-01: failed (code 799");
    assert_eq!(
        last_line(&skipped),
        "Apply complete: 2 purchased, 2 failed, 0 unconfirmed."
    );
}

#[test]
fn code_101_stops_everything_at_once() {
    let env = Env::with_state();
    let all = pkgs(3001, 5);
    write_manifest(&env, &all);
    let sim = start(account(&all).keys(API_KEY, "another-secret"));
    // With the pre-flight, the wrong keys are found before any purchase.
    apply(&env, &sim, &[])
        .code(1)
        .stderr_has("code 101 (wrong ApiKey or SecretKey)");
    assert_eq!(purchase_requests(&sim), 0);
    // Without it, the first answer stops the run: one request, nothing else.
    let run = apply(&env, &sim, &["--skip-preflight", "--parallelism", "1"]);
    run.code(1)
        .stderr_has("Stopped early: eSMS answered code 101 (wrong ApiKey or SecretKey)")
        .stderr_has("4 planned package(s) were not sent");
    assert_eq!(
        last_line(&run),
        "Apply complete: 0 purchased, 1 failed, 0 unconfirmed."
    );
    assert_eq!(purchase_requests(&sim), 1);
    assert!(sim.ledger().is_empty());
    assert!(recorded(&env).is_empty());
    // At parallelism 4, at most the first wave went out.
    apply(&env, &sim, &["--skip-preflight"]).code(1);
    assert!(purchase_requests(&sim) <= 1 + 4);
}

#[test]
fn code_103_stops_after_what_was_bought_and_records_it() {
    let env = Env::with_state();
    let all: Vec<Pkg> = (0..5)
        .map(|i| Pkg::new((4001 + i).to_string(), "2027-01-01", "advanced", 12))
        .collect();
    write_manifest(&env, &all);
    // 1,200,000 per package: room for two.
    let sim = start(account(&all).balance(2_500_000));
    let run = apply(&env, &sim, &["--parallelism", "1"]);
    run.code(1)
        .stderr_has("Stopped early: eSMS answered code 103 (balance too low)")
        .stdout_has("x purchase 4003@2027-01-01: failed (code 103");
    assert_eq!(
        last_line(&run),
        "Apply complete: 2 purchased, 1 failed, 0 unconfirmed."
    );
    assert_eq!(purchase_requests(&sim), 3);
    let ledger = sim.ledger();
    let state = recorded(&env);
    assert_eq!(ledger.len(), 2);
    assert_eq!(state.len(), 2);
    for charge in &ledger {
        let record = &state[&format!("{}@{}", charge.oaid, charge.dateactive)];
        assert_eq!(record["status"], "submitted");
        assert_eq!(
            record["service_preview_id"],
            charge.service_preview_id.as_str()
        );
    }
    env.run(&["plan"])
        .stdout_has("Plan: 3 to purchase, 0 to replace, 0 unconfirmed, 2 unchanged");
}

#[test]
fn code_204_fails_one_package_while_the_others_are_bought() {
    let env = Env::with_state();
    let all = pkgs(5001, 4);
    write_manifest(&env, &all);
    let sim = start(account(&all).fault(FaultRule::for_oaid(
        "5002",
        Fault::Code {
            code: "204".into(),
            message: Some("OAID does not exist".into()),
        },
    )));
    let run = apply(&env, &sim, &[]);
    run.code(1).stdout_has(
        "x purchase 5002@2027-01-01: failed (code 204, OAID does not exist in the system: OAID does not exist); not bought",
    );
    assert_eq!(
        last_line(&run),
        "Apply complete: 3 purchased, 1 failed, 0 unconfirmed."
    );
    assert_eq!(sim.ledger().len(), 3);
    let state = recorded(&env);
    assert_eq!(state.len(), 3);
    assert!(!state.contains_key("5002@2027-01-01"));
    env.run(&["plan"]).stdout_has("Plan: 1 to purchase");
}

#[test]
fn without_a_terminal_or_auto_approve_it_refuses() {
    let env = Env::with_state();
    let fresh_state = env.read(STATE);
    let all = pkgs(6001, 2);
    write_manifest(&env, &all);
    let sim = start(account(&all));
    run(&env, &sim, &["apply"])
        .code(1)
        .stdout_has("Plan: 2 to purchase")
        .stderr_has("refusing to purchase 2 package(s) without confirmation: standard input is not a terminal");
    assert!(sim.requests().is_empty());
    assert_eq!(env.read(STATE), fresh_state, "the state is not written");
}

#[test]
fn on_a_terminal_it_asks_and_only_yes_buys() {
    // `script` gives apply a pseudo-terminal; skip where it is missing.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` command");
        return;
    }
    let env = Env::with_state();
    let all = pkgs(6101, 2);
    write_manifest(&env, &all);
    let sim = start(account(&all));
    let on_tty = |answer: &str| {
        let cmd = oapkg(&env, &sim, &[]);
        let line = format!("{} apply --no-color", env!("CARGO_BIN_EXE_oapkg"));
        let mut script = Command::new("script");
        script
            .args(["-qfec", &line, "/dev/null"])
            .current_dir(env.path(""))
            .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = script.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{answer}\n").as_bytes())
            .unwrap();
        Run::from(child.wait_with_output().unwrap())
    };
    let no = on_tty("no");
    no.code(1)
        .stdout_has("Type 'yes' to purchase 2 package(s):")
        .stdout_has("apply cancelled");
    assert!(sim.ledger().is_empty());
    let yes = on_tty("yes");
    yes.code(0)
        .stdout_has("Apply complete: 2 purchased, 0 failed, 0 unconfirmed.");
    assert_eq!(sim.ledger().len(), 2);

    // With a price list the question says how much (a trial month here).
    let more = pkgs(6101, 3);
    let body: String = more.iter().map(Pkg::yaml).collect();
    env.file(
        "oapkg.yaml",
        format!(
            "{}---\napiVersion: oapkg/v1\nkind: PriceList\ncurrency: VND\nmonthly:\n  trial: 10000\n  advanced: 59000\n  premium: 399000\n",
            manifest(&body)
        ),
    );
    on_tty("no")
        .code(1)
        .stdout_has("Type 'yes' to purchase 1 package(s) for 10,000 VND:");
    assert_eq!(sim.ledger().len(), 2, "nothing more was bought");
}

#[test]
fn a_saved_plan_is_applied_as_saved_without_a_question() {
    let env = Env::with_state();
    let all = pkgs(7001, 3);
    write_manifest(&env, &all);
    let sim = start(account(&all));
    env.run(&["plan", "--out", "reviewed.plan"]).code(0);
    // Reformatting the manifest changes nothing the plan depends on.
    let body: String = all
        .iter()
        .map(|p| format!("# a comment\n{}", p.yaml()))
        .collect();
    env.file("oapkg.yaml", manifest(&body));
    let run = run(&env, &sim, &["apply", "reviewed.plan"]);
    run.code(0);
    assert_eq!(
        last_line(&run),
        "Apply complete: 3 purchased, 0 failed, 0 unconfirmed."
    );
    assert_eq!(sim.ledger().len(), 3);
    env.run(&["plan"]).stdout_has("No changes.");
}

#[test]
fn a_saved_plan_remembers_its_manifest_paths() {
    // `plan -f DIR --out` then `apply PLANFILE` with no -f: the staleness
    // check re-reads DIR, not the default oapkg.yaml.
    let env = Env::with_state();
    let all = pkgs(7201, 2);
    let body: String = all.iter().map(|p| p.yaml()).collect();
    env.file("packages/a.yaml", manifest(&body));
    let sim = start(account(&all));
    env.run(&["plan", "-f", "packages", "--out", "reviewed.plan"])
        .code(0);
    run(&env, &sim, &["apply", "reviewed.plan"]).code(0);
    assert_eq!(sim.ledger().len(), 2);
    // And a later change to those manifests makes an older plan stale.
    env.run(&["plan", "-f", "packages", "--out", "again.plan"])
        .code(0);
    env.file("packages/b.yaml", manifest(&pkgs(7301, 1)[0].yaml()));
    run(&env, &sim, &["apply", "again.plan"])
        .code(1)
        .stderr_has("stale plan");
}

#[test]
fn a_stale_saved_plan_is_refused_naming_what_moved() {
    a_stale_saved_plan_is_refused_on(&Backend::Local);
}

#[test]
fn a_stale_saved_plan_is_refused_naming_what_moved_on_s3() {
    if let Some(server) = S3Server::moto() {
        a_stale_saved_plan_is_refused_on(&Backend::S3(&server));
    }
}

fn a_stale_saved_plan_is_refused_on(backend: &Backend<'_>) {
    // A local state is created by the import below; an S3 one only by init.
    let env = match backend {
        Backend::Local => Env::new(),
        Backend::S3(_) => Env::with_state_on(backend),
    };
    let all = pkgs(7101, 3);
    write_manifest(&env, &all);
    let sim = start(account(&all));
    env.run(&["plan", "--out", "old.plan"]).code(0);
    // The state moved: something was recorded since.
    env.import("99", "trial", "2027-01-01", "1", &[]).code(0);
    let bytes = state_bytes(&env);
    // Planned against no state (local), or against the empty one init made.
    let moved = match backend {
        Backend::Local => "stale plan: the state is not the one planned against",
        Backend::S3(_) => {
            "stale plan: the state was written since the plan was made (state serial 0 -> 1)"
        }
    };
    run(&env, &sim, &["apply", "old.plan"])
        .code(1)
        .stderr_has(moved)
        .stderr_has("Run `oapkg plan` again");
    // The manifests moved.
    env.run(&["plan", "--out", "new.plan"]).code(0);
    write_manifest(&env, &all[..2]);
    run(&env, &sim, &["apply", "new.plan"])
        .code(1)
        .stderr_has("stale plan: the manifests changed since the plan was made");
    assert!(sim.requests().is_empty());
    assert_eq!(state_bytes(&env), bytes);
}

/// Applies until the plan is clean (or `runs` runs), retrying unconfirmed
/// packages; returns how many runs it took.
fn converge(env: &Env, sim: &SimControl, runs: usize) -> usize {
    for n in 1..=runs {
        let run = apply(
            env,
            sim,
            &[
                "--retry-unconfirmed",
                "--max-purchases",
                "100",
                "--timeout",
                "2",
            ],
        );
        assert!(
            run.code == 0 || run.code == 1,
            "{}\n{}",
            run.stdout,
            run.stderr
        );
        if run.code == 0 {
            return n;
        }
    }
    panic!("no convergence after {runs} runs");
}

#[test]
fn with_many_faults_repeated_applies_converge_with_zero_double_charges() {
    // Every kind of fault, before and after the charge: 5xx, dropped
    // connections, hangs, 160, 429. The simulator deduplicates (199), as
    // eSMS does.
    let env = Env::with_state();
    let all = pkgs(8001, 12);
    write_manifest(&env, &all);
    let sim = start(
        account(&all)
            .fault_rate(0.6)
            .seed(2)
            .hang_limit(Duration::from_millis(100)),
    );
    let runs = converge(&env, &sim, 15);
    assert_bought_once_each(&env, &sim, &all);
    let requests = sim.requests();
    let faults: Vec<_> = requests.iter().filter_map(|r| r.fault.clone()).collect();
    eprintln!(
        "converged after {runs} run(s), {} requests, faults: {faults:?}",
        requests.len()
    );
    // The run met what it is about: many faults, some after a charge.
    assert!(faults.len() >= 10, "{faults:?}");
    assert!(faults.iter().any(|f| matches!(
        f,
        Fault::DropConnection {
            stage: Stage::AfterCommit
        } | Fault::ServerError {
            stage: Stage::AfterCommit
        } | Fault::Hang {
            stage: Stage::AfterCommit
        }
    )));
}

#[test]
fn without_deduplication_faults_before_the_charge_never_cause_a_second_one() {
    // A simulator that charges every request it processes: any resend of a
    // committed purchase would show as a second charge.
    let env = Env::with_state();
    let all = pkgs(8101, 12);
    write_manifest(&env, &all);
    let before = Stage::BeforeCommit;
    let sim = start(
        account(&all)
            .dedupe(false)
            .fault_rate(0.6)
            .seed(12)
            .hang_limit(Duration::from_millis(100))
            .fault_mix(vec![
                Fault::ServerError { stage: before },
                Fault::DropConnection { stage: before },
                Fault::Hang { stage: before },
                Fault::RateLimitCode,
                Fault::TooManyRequests,
            ]),
    );
    converge(&env, &sim, 15);
    assert_bought_once_each(&env, &sim, &all);
    let faults = sim.requests().iter().filter(|r| r.fault.is_some()).count();
    assert!(faults >= 10, "only {faults} faults");
}

#[test]
fn an_unconfirmed_package_is_left_alone_until_resent_and_199_confirms_it() {
    let env = Env::with_state();
    let all = pkgs(8301, 2);
    write_manifest(&env, &all);
    // Every request for 8301 is charged, then never answered.
    let sim = start(
        account(&all)
            .hang_limit(Duration::from_secs(5))
            .fault(FaultRule::for_oaid(
                "8301",
                Fault::Hang {
                    stage: Stage::AfterCommit,
                },
            )),
    );
    let first = apply(&env, &sim, &["--timeout", "0.3"]);
    first
        .code(1)
        .stdout_has("? purchase 8301@2027-01-01: unconfirmed (no definite answer:")
        .stdout_has("oapkg state confirm KEY")
        .stdout_has("--retry-unconfirmed");
    assert_eq!(
        last_line(&first),
        "Apply complete: 1 purchased, 0 failed, 1 unconfirmed."
    );
    let charged = sim.ledger();
    assert_eq!(charged.len(), 2, "one charge each");
    assert_eq!(purchase_requests(&sim), 2, "nothing resent within the run");
    assert_eq!(recorded(&env)["8301@2027-01-01"]["status"], "unconfirmed");

    // Left alone: nothing is sent, and the run says it is not done.
    sim.clear_faults();
    let requests = sim.requests().len();
    let second = apply(&env, &sim, &[]);
    second
        .code(1)
        .stdout_has("Plan: 0 to purchase, 0 to replace, 1 unconfirmed")
        .stdout_has("\n  ? 8301@2027-01-01\n");
    assert_eq!(
        last_line(&second),
        "Apply complete: 0 purchased, 0 failed, 1 unconfirmed."
    );
    assert_eq!(sim.requests().len(), requests);

    // Resent: eSMS has it, answers 199, and it is recorded with its id.
    let third = apply(&env, &sim, &["--retry-unconfirmed"]);
    third
        .code(0)
        .stdout_has("? unconfirmed 8301@2027-01-01: submitted")
        .stdout_has("(code 199:");
    assert_eq!(sim.ledger().len(), 2, "no second charge");
    let record = &recorded(&env)["8301@2027-01-01"];
    assert_eq!(record["status"], "submitted");
    let charge = charged.iter().find(|c| c.oaid == "8301").unwrap();
    assert_eq!(
        record["service_preview_id"],
        charge.service_preview_id.as_str()
    );
    env.run(&["plan"]).stdout_has("No changes.");
}

#[test]
fn sigint_stops_sending_and_records_what_was_in_flight() {
    let env = Env::with_state();
    let all = pkgs(9001, 6);
    write_manifest(&env, &all);
    let sim = start(account(&all).latency(Duration::from_millis(400)));
    let child = oapkg(
        &env,
        &sim,
        &["apply", "--auto-approve", "--parallelism", "2"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while purchase_requests(&sim) < 2 {
        assert!(Instant::now() < deadline, "no purchase arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let run = Run::from(child.wait_with_output().unwrap());
    run.code(1)
        .stderr_has("Stopping: interrupted")
        .stderr_has("4 planned package(s) were not sent");
    assert_eq!(
        last_line(&run),
        "Apply complete: 2 purchased, 0 failed, 0 unconfirmed."
    );
    assert_eq!(purchase_requests(&sim), 2);
    assert_eq!(sim.ledger().len(), 2);
    let state = recorded(&env);
    assert_eq!(state.len(), 2);
    assert!(state.values().all(|r| r["status"] == "submitted"));
    assert!(!env.path(&format!("{STATE}.journal")).exists(), "folded");
}

#[test]
fn concurrent_applies_never_buy_a_package_twice() {
    concurrent_applies_on(&Backend::Local);
}

#[test]
fn concurrent_applies_never_buy_a_package_twice_on_s3() {
    if let Some(server) = S3Server::ministack() {
        concurrent_applies_on(&Backend::S3(&server));
    }
}

fn concurrent_applies_on(backend: &Backend<'_>) {
    let env = Env::with_state_on(backend);
    let all = pkgs(9101, 8);
    write_manifest(&env, &all);
    let sim = start(
        account(&all)
            .dedupe(false)
            .latency(Duration::from_millis(30)),
    );
    let spawn = || {
        oapkg(
            &env,
            &sim,
            &["apply", "--auto-approve", "--lock-timeout", "10"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let runs: Vec<Run> = [spawn(), spawn(), spawn()]
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().unwrap()))
        .collect();
    let ok = runs.iter().filter(|r| r.code == 0).count();
    assert!(ok >= 1);
    for r in runs.iter().filter(|r| r.code != 0) {
        assert!(
            r.stderr.contains("stale plan"),
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            r.code,
            r.stdout,
            r.stderr
        );
    }
    assert_bought_once_each(&env, &sim, &all);
}

#[test]
fn sigkill_at_random_moments_never_double_charges_or_loses_a_purchase() {
    sigkill_at_random_moments_on(&Backend::Local);
}

#[test]
fn sigkill_at_random_moments_never_double_charges_or_loses_a_purchase_on_s3() {
    if let Some(server) = S3Server::ministack() {
        sigkill_at_random_moments_on(&Backend::S3(&server));
    }
}

/// On S3 a killed holder's lease lives on until it expires (a second here),
/// so each run waits for it (`--lock-timeout`), and sees what the killed
/// run recorded, in journal segments as well as in the head.
fn sigkill_at_random_moments_on(backend: &Backend<'_>) {
    let iterations: usize = std::env::var("OAPKG_KILL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let seed: u64 = std::env::var("OAPKG_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill test: {iterations} iterations, OAPKG_KILL_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let per_round = 5;
    let all = pkgs(100_001, iterations * per_round);
    let env = Env::with_state_on(backend);
    // Charges every request it processes (a resend would show), and takes
    // its time, so kills land while requests are in flight.
    let sim = start(
        account(&all)
            .dedupe(false)
            .balance(u64::MAX / 2)
            .latency(Duration::from_millis(25)),
    );
    // An S3 run takes longer to start (lease, reads) and to record: kills
    // spread over a longer window land in the same phases.
    let kill_window_micros = match backend {
        Backend::Local => 120_000,
        Backend::S3(_) => 600_000,
    };
    let mut seen = KillStats::default();
    for round in 0..iterations {
        // New packages every round, so every run has something to buy.
        write_manifest(&env, &all[..(round + 1) * per_round]);
        let mut child = oapkg(
            &env,
            &sim,
            &[
                "apply",
                "--auto-approve",
                "--max-purchases",
                "1000",
                "--parallelism",
                "3",
                "--lock-timeout",
                "30",
            ],
        )
        .env("OAPKG_LEASE_SECONDS", "1")
        // On S3, seal the journal into a segment every 4 lines, so that
        // kills also land around sealing (a local state ignores it).
        .env("OAPKG_S3_SEGMENT_LINES", "4")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        std::thread::sleep(Duration::from_micros(
            rng.random_range(0..kill_window_micros),
        ));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // A request the dead process sent may still be charged: wait.
        wait_idle(&sim);
        check_after_kill(&env, &sim, round, &mut seen);
    }
    eprintln!(
        "kill test: {} package(s) left unconfirmed, {} of them charged; {} kill(s) left a journal",
        seen.unconfirmed.len(),
        seen.charged_but_unconfirmed.len(),
        seen.rounds_with_journal
    );
    if iterations >= 10 {
        // Not vacuous: some kills landed with a request in flight.
        assert!(!seen.unconfirmed.is_empty(), "{seen:?}");
    }
    // Every package is now bought or unconfirmed or not yet sent. Resending
    // the unconfirmed ones against a deduplicating eSMS (199 for what it
    // already has) must buy each missing one once and confirm the rest.
    sim.set_dedupe(true);
    write_manifest(&env, &all);
    apply(
        &env,
        &sim,
        &[
            "--retry-unconfirmed",
            "--max-purchases",
            "1000",
            "--parallelism",
            "8",
            "--lock-timeout",
            "30",
        ],
    )
    .code(0);
    assert_bought_once_each(&env, &sim, &all);
}

/// What the kills left behind, to show the test reached the cases it is for.
#[derive(Debug, Default)]
struct KillStats {
    /// Packages left unconfirmed by a kill.
    unconfirmed: std::collections::BTreeSet<String>,
    /// Of those, the ones eSMS did charge (the answer died with the process).
    charged_but_unconfirmed: std::collections::BTreeSet<String>,
    /// Kills that left a journal for the next run to fold.
    rounds_with_journal: usize,
}

/// The crash-safety invariants, after a kill.
fn check_after_kill(env: &Env, sim: &SimControl, round: usize, stats: &mut KillStats) {
    let by_key = charges_by_key(&sim.ledger());
    let state = recorded(env);
    for (key, charges) in &by_key {
        assert_eq!(charges.len(), 1, "round {round}: {key} charged twice");
        let record = state
            .get(key)
            .unwrap_or_else(|| panic!("round {round}: {key} was charged but is not in the state"));
        let status = record["status"].as_str().unwrap();
        assert!(
            status == "submitted" || status == "unconfirmed",
            "round {round}: {key} is {status}"
        );
        assert_eq!(
            record["duration_months"],
            charges[0].duaration.parse::<u64>().unwrap()
        );
    }
    for (key, record) in &state {
        if record["status"] == "unconfirmed" {
            stats.unconfirmed.insert(key.clone());
            if by_key.contains_key(key) {
                stats.charged_but_unconfirmed.insert(key.clone());
            }
        }
        if record["status"] == "submitted" {
            let charge = by_key.get(key).unwrap_or_else(|| {
                panic!("round {round}: {key} is submitted but was never charged")
            });
            assert_eq!(
                record["service_preview_id"],
                charge[0].service_preview_id.as_str()
            );
        }
    }
    for file in ["", ".journal", ".backup"] {
        if let Ok(bytes) = std::fs::read(env.path(&format!("{STATE}{file}"))) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(API_KEY) && !text.contains(SECRET_KEY));
        }
    }
    stats.rounds_with_journal += usize::from(env.path(&format!("{STATE}.journal")).exists());
}

#[test]
fn secrets_appear_nowhere_even_at_trace_level_or_on_an_auth_failure() {
    let api_key = "AK-8f2c61d9e0b34a7c";
    let secret_key = "SK-41e7a93bd5c2f086";
    let wrong_secret = "SK-wrong-7c1d2e3f4a5b";
    let env = Env::with_state();
    let all = pkgs(9901, 3);
    write_manifest(&env, &all);
    let sim = start(
        account(&all)
            .keys(api_key, secret_key)
            .fault(FaultRule::next(
                1,
                Fault::ServerError {
                    stage: Stage::AfterCommit,
                },
            )),
    );
    let mut outputs = Vec::new();
    let traced = |args: &[&str], secret: &str| {
        let mut cmd = oapkg(&env, &sim, args);
        cmd.env("RUST_LOG", "trace")
            .env("ESMS_API_KEY", api_key)
            .env("ESMS_SECRET_KEY", secret);
        Run::from(cmd.output().unwrap())
    };
    env.run(&["plan", "--out", "p.plan"]).code(0);
    // The lost answer is resent (--retry-unknown) and confirmed by a 199.
    let run = traced(&["apply", "p.plan", "-vv", "--retry-unknown"], secret_key);
    run.code(0);
    assert!(run.stderr.contains("TRACE"), "trace logging is on");
    outputs.push(run);
    // From a credentials file too.
    env.file(
        "creds.env",
        format!("ESMS_API_KEY={api_key}\nESMS_SECRET_KEY={wrong_secret}\n"),
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            env.path("creds.env"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let more = pkgs(9951, 2);
    let mut grown = all.clone();
    grown.extend(more.iter().cloned());
    write_manifest(&env, &grown);
    // Wrong keys: refused at the pre-flight, then (skipped) on purchase.
    for extra in [&[][..], &["--skip-preflight"][..]] {
        let mut args = vec!["apply", "--auto-approve", "--credentials", "creds.env"];
        args.extend_from_slice(extra);
        let run = traced(&args, "unused-env-secret");
        run.code(1).stderr_has("101");
        outputs.push(run);
    }
    let run = traced(&["state", "list", "--format", "json"], secret_key);
    outputs.push(run);
    for run in &outputs {
        for key in [api_key, secret_key, wrong_secret] {
            assert!(
                !run.stdout.contains(key),
                "stdout holds a key:\n{}",
                run.stdout
            );
            assert!(!run.stderr.contains(key), "stderr holds a key");
        }
    }
    for entry in walk(&env.path("")) {
        if entry.file_name().is_some_and(|n| n == "creds.env") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        for key in [api_key, secret_key, wrong_secret] {
            assert!(!text.contains(key), "{} holds a key", entry.display());
        }
    }
    assert!(
        sim.requests()
            .iter()
            .all(|r| !r.body.to_string().contains(secret_key))
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
