//! Unknown outcomes and failed attempts: the real binary against
//! the simulator over real HTTP, with the simulator's duplicate detection
//! **off** wherever a resend would show as a second charge.
//!
//! - a 5xx, a reset, or a code the documentation does not list, each after
//!   eSMS charged: exactly one charge, an `unconfirmed` record, the run goes
//!   on with the others; a plain second `apply` and a `watch --apply` send
//!   nothing for it; `state confirm` settles it;
//! - `--retry-unknown` resends within the run and a 199 confirms it;
//! - a 199 to a first request (the state was lost) is recorded and warned
//!   about;
//! - the last failed attempt is kept in the state and shown by the next plan;
//! - `watch` refuses `--retry-unconfirmed` and `--retry-unknown`.

use esms_sim::Call;
use esms_sim::{BlockingSimHandle, Fault, FaultRule, Stage};
use serde_json::Value;

use crate::support::{
    Env, Pkg, STATE, account, apply, last_line, point_at, recorded, run, start, write_manifest,
};
use crate::watch::Watch;

/// Purchase requests received for `key` so far.
fn requests_for(sim: &BlockingSimHandle, key: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| {
            r.call == Call::Purchase
                && format!(
                    "{}@{}",
                    r.body["OAID"].as_str().unwrap_or("?"),
                    r.body["Dateactive"].as_str().unwrap_or("?")
                ) == key
        })
        .count()
}

fn charges_for(sim: &BlockingSimHandle, key: &str) -> usize {
    sim.ledger()
        .iter()
        .filter(|c| format!("{}@{}", c.oaid, c.dateactive) == key)
        .count()
}

fn status(env: &Env, key: &str) -> Option<String> {
    recorded(env)
        .get(key)
        .map(|r| r["status"].as_str().unwrap_or("?").to_owned())
}

/// One unknown outcome after the charge, then everything that must not
/// resend it, then `state confirm`.
fn charged_once_unconfirmed_and_never_resent(fault: Fault, why: &str) {
    let env = Env::with_state();
    let struck = Pkg::new("7001", "2027-01-01", "advanced", 12);
    let other = Pkg::new("7002", "2027-01-01", "premium", 6);
    write_manifest(&env, &[struck.clone(), other.clone()]);
    let sim = start(
        account(&[struck.clone(), other.clone()])
            .dedupe(false)
            .fault(FaultRule::for_oaid(&struck.oaid, fault)),
    );
    let key = struck.key();

    // The faulted run: one request, unconfirmed at once, the other bought.
    let first = apply(&env, &sim, &["--parallelism", "1"]);
    first.code(1).stdout_has(&format!(
        "? purchase {key}: unconfirmed (no definite answer: {why}"
    ));
    assert_eq!(
        last_line(&first),
        "Apply complete: 1 purchased, 0 failed, 1 unconfirmed.",
        "{}",
        first.stdout
    );
    assert!(
        !first.stderr.contains("retrying"),
        "an unknown outcome was resent:\n{}",
        first.stderr
    );
    assert_eq!(requests_for(&sim, &key), 1, "sent once");
    assert_eq!(charges_for(&sim, &key), 1, "charged once");
    assert_eq!(charges_for(&sim, &other.key()), 1);
    assert_eq!(status(&env, &key).as_deref(), Some("unconfirmed"));

    // A plain second apply sends nothing for it, even with the fault gone.
    sim.clear_faults();
    let ledger = sim.ledger().len();
    let second = apply(&env, &sim, &[]);
    second.code(1).stdout_has(&format!("\n  ? {key}\n"));
    assert_eq!(requests_for(&sim, &key), 1, "resent by a plain apply");
    assert_eq!(sim.ledger().len(), ledger);

    // Nor does `watch --apply`.
    let mut watch = Watch::start_with(&env, &["--apply"], |cmd| point_at(cmd, &sim));
    let outcome = watch.record("an apply outcome", |v| v["outcome"].is_string());
    assert_eq!(outcome["outcome"], "failed", "{outcome}");
    assert_eq!(watch.terminate(), 0);
    assert_eq!(requests_for(&sim, &key), 1, "resent by watch --apply");
    assert_eq!(sim.ledger().len(), ledger);

    // A person finds it on the portal and confirms it: settled.
    let id = sim
        .ledger()
        .iter()
        .find(|c| format!("{}@{}", c.oaid, c.dateactive) == key)
        .map(|c| c.service_preview_id.clone())
        .unwrap();
    run(
        &env,
        &sim,
        &["state", "confirm", &key, "--service-preview-id", &id],
    )
    .code(0);
    assert_eq!(status(&env, &key).as_deref(), Some("submitted"));
    env.run(&["plan"]).code(0).stdout_has("No changes.");
    assert_eq!(sim.ledger().len(), ledger);
}

#[test]
fn http_500_after_the_charge_is_unconfirmed_and_never_resent() {
    charged_once_unconfirmed_and_never_resent(
        Fault::ServerError {
            stage: Stage::AfterCommit,
        },
        "HTTP 500 from the server",
    );
}

#[test]
fn a_reset_after_the_charge_is_unconfirmed_and_never_resent() {
    charged_once_unconfirmed_and_never_resent(
        Fault::DropConnection {
            stage: Stage::AfterCommit,
        },
        "",
    );
}

#[test]
fn an_undocumented_code_after_the_charge_is_unconfirmed_and_never_resent() {
    charged_once_unconfirmed_and_never_resent(
        Fault::CodeAfterCommit {
            code: "777".into(),
            message: Some("Hệ thống bận\u{1b}[2J".into()),
        },
        // The code quoted as received, the message verbatim but escaped.
        "eSMS answered code \"777\", which its documentation does not list for this call: Hệ thống bận\\u{1b}[2J)",
    );
    // A code that only looks like a listed one is not one.
    charged_once_unconfirmed_and_never_resent(
        Fault::CodeAfterCommit {
            code: "100.0".into(),
            message: None,
        },
        "eSMS answered code \"100.0\"",
    );
}

#[test]
fn retry_unknown_resends_within_the_run_and_a_199_confirms() {
    let env = Env::with_state();
    let pkg = Pkg::new("7101", "2027-01-01", "advanced", 12);
    write_manifest(&env, std::slice::from_ref(&pkg));
    // eSMS's duplicate detection (on by default in the simulator) is what
    // the flag relies on.
    let sim = start(
        account(std::slice::from_ref(&pkg)).fault(
            FaultRule::for_oaid(
                &pkg.oaid,
                Fault::DropConnection {
                    stage: Stage::AfterCommit,
                },
            )
            .times(1),
        ),
    );
    let run = apply(&env, &sim, &["--retry-unknown"]);
    let id = &sim.ledger()[0].service_preview_id;
    run.code(0).stdout_has(&format!(
        "+ purchase {}: submitted, ServicePreviewId {id} (code 199: ",
        pkg.key()
    ));
    assert!(run.stdout.contains("after 2 attempts"), "{}", run.stdout);
    assert!(!run.stderr.contains("already had"), "{}", run.stderr);
    assert!(!run.stdout.contains("Warning"), "{}", run.stdout);
    assert_eq!(requests_for(&sim, &pkg.key()), 2);
    assert_eq!(sim.ledger().len(), 1, "charged once");
    assert_eq!(status(&env, &pkg.key()).as_deref(), Some("submitted"));
}

#[test]
fn retry_unknown_says_in_its_help_what_it_relies_on() {
    let help = Env::new().run(&["apply", "--help"]);
    help.code(0);
    let text = help.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "--retry-unknown",
        "Relies on eSMS answering 199 to a request it already has; eSMS documents no time window for that, so a resend may charge twice",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{}", help.stdout);
    }
}

#[test]
fn a_199_to_a_first_request_is_recorded_and_warned_about() {
    let env = Env::with_state();
    let all = [
        Pkg::new("7201", "2027-01-01", "advanced", 12),
        Pkg::new("7202", "2027-01-01", "trial", 1),
    ];
    write_manifest(&env, &all[..1]);
    let sim = start(account(&all));
    apply(&env, &sim, &[]).code(0);
    // The state is lost and made again (on purpose, over its backup: plain
    // `init` refuses that): eSMS still has the purchase.
    std::fs::remove_file(env.path(STATE)).unwrap();
    env.run(&["init"]).code(1).stderr_has("oapkg state restore");
    env.run(&["init", "--force"]).code(0);
    write_manifest(&env, &all);
    let run = apply(&env, &sim, &[]);
    let key = all[0].key();
    run.code(0)
        .stdout_has(&format!("+ purchase {key}: submitted, ServicePreviewId "))
        .stdout_has(&format!(
            "Warning: eSMS already had this purchase: the state may have been lost or another tool bought it. eSMS answered 199 (already exists) to a first request for:\n  ! {key}\n"
        ))
        .stderr_has(&format!(
            "warning: {key}: eSMS already had this purchase: the state may have been lost or another tool bought it (code 199, recorded as submitted)"
        ));
    assert!(
        !run.stdout.contains(&format!("! {}", all[1].key())),
        "{}",
        run.stdout
    );
    assert_eq!(sim.ledger().len(), 2, "no second charge");
    assert_eq!(status(&env, &key).as_deref(), Some("submitted"));
}

#[test]
fn the_last_failed_attempt_is_kept_and_shown_by_the_next_plan() {
    let env = Env::with_state();
    let all = [
        Pkg::new("7301", "2027-01-01", "advanced", 12),
        Pkg::new("7302", "2027-01-01", "premium", 6),
    ];
    write_manifest(&env, &all);
    let sim = start(account(&all).fault(FaultRule::for_oaid(
        &all[0].oaid,
        Fault::Code {
            code: "102".into(),
            message: Some("No price list".into()),
        },
    )));
    let key = all[0].key();
    let run = apply(&env, &sim, &[]);
    run.code(1).stdout_has(&format!(
        "x purchase {key}: failed (code 102, no price list for this service: No price list); not bought"
    ));
    // In the state file: no record, the failed attempt.
    let file: Value = serde_json::from_slice(&env.read(STATE)).unwrap();
    assert!(file["packages"].get(&key).is_none());
    let attempt = &file["failed_attempts"][&key];
    assert_eq!(attempt["code"], "102");
    assert_eq!(attempt["message"], "No price list");
    let at = attempt["at"].as_str().expect("when").to_owned();

    // The next plan shows it, in every format: people read the time to the
    // second, the JSON keeps it as recorded.
    let shown = oapkg::plan::render::to_seconds(at.parse().expect("an RFC 3339 time"));
    let line = format!(
        "# last attempt failed: code 102 (no price list for this service): No price list, at {shown}"
    );
    env.run(&["plan"])
        .code(0)
        .stdout_has(&format!("  {line}\n  + package \"{key}\""));
    env.run(&["plan", "--format", "markdown"])
        .code(0)
        .stdout_has(&line);
    let json = env.run(&["plan", "--format", "json"]).code(0).json();
    let changes = json["changes"].as_array().unwrap();
    let change = changes.iter().find(|c| c["key"] == key.as_str()).unwrap();
    assert_eq!(
        change["last_failure"],
        serde_json::json!({"code": "102", "message": "No price list", "at": at})
    );
    // Keys without a failure carry an explicit null.
    for c in changes.iter().filter(|c| c["key"] != key.as_str()) {
        assert!(c["last_failure"].is_null(), "{c}");
    }

    // Bought, the failure is cleared and the file is as before it existed.
    sim.clear_faults();
    apply(&env, &sim, &[]).code(0);
    let file: Value = serde_json::from_slice(&env.read(STATE)).unwrap();
    assert!(file.get("failed_attempts").is_none(), "{file}");
    env.run(&["plan"]).code(0).stdout_has("No changes.");
}

#[test]
fn watch_refuses_the_resend_flags() {
    let env = Env::with_state();
    env.file("oapkg.yaml", crate::support::manifest(""));
    for flag in ["--retry-unconfirmed", "--retry-unknown"] {
        for args in [vec!["watch", flag], vec!["watch", "--apply", flag]] {
            let run = env.run(&args);
            run.code(1)
                .stderr_has(&format!("watch does not take {flag}"))
                .stderr_has("oapkg state confirm KEY")
                .stderr_has("oapkg apply --retry-unconfirmed");
        }
    }
    // Not advertised either.
    let help = env.run(&["watch", "--help"]);
    help.code(0);
    assert!(!help.stdout.contains("--retry-un"), "{}", help.stdout);
}

/// A priced manifest of `pkgs` (the price list of `crate::costs`) and an
/// account charging those prices, its duplicate detection off: every
/// request eSMS processes is a charge in the ledger.
fn priced_charging_every_request(env: &Env, pkgs: &[Pkg]) -> esms_sim::SimConfig {
    let body: String = pkgs.iter().map(Pkg::yaml).collect();
    env.file(
        "oapkg.yaml",
        format!(
            "{}---\n{}",
            crate::costs::PRICES,
            crate::support::manifest(&body)
        ),
    );
    account(pkgs)
        .dedupe(false)
        .balance(1_000_000_000)
        .price_per_month(esms_sim::Package::Trial, 10_000)
        .price_per_month(esms_sim::Package::Advanced, 59_000)
        .price_per_month(esms_sim::Package::Premium, 399_000)
}

fn ledger_total(sim: &BlockingSimHandle) -> u64 {
    sim.ledger().iter().map(|c| c.price).sum()
}

fn spent_line(run: &crate::support::Run) -> String {
    run.stdout
        .lines()
        .find(|l| l.starts_with("Spent (estimated from the price list): "))
        .unwrap_or_else(|| panic!("no spent line:\n{}", run.stdout))
        .to_owned()
}

#[test]
fn retry_unknown_resends_are_spent_and_a_100_after_them_is_possibly_charged_twice() {
    // 12 months of advanced: 708,000 VND a request. 6 of premium: 2,394,000.
    let struck = Pkg::new("7401", "2027-01-01", "advanced", 12);
    let other = Pkg::new("7402", "2027-01-01", "premium", 6);
    let both = [struck.clone(), other.clone()];
    for format in ["text", "json"] {
        let env = Env::with_state();
        // Three HTTP 500s after the charge, then eSMS's own answer (100,
        // charged again: duplicate detection off): four charges.
        let sim = start(
            priced_charging_every_request(&env, &both).fault(
                FaultRule::for_oaid(
                    &struck.oaid,
                    Fault::ServerError {
                        stage: Stage::AfterCommit,
                    },
                )
                .times(3),
            ),
        );
        let run = apply(
            &env,
            &sim,
            &["--retry-unknown", "--parallelism", "1", "--format", format],
        );
        run.code(0);
        assert_eq!(requests_for(&sim, &struck.key()), 4);
        assert_eq!(
            charges_for(&sim, &struck.key()),
            4,
            "the ledger: four charges"
        );
        assert_eq!(charges_for(&sim, &other.key()), 1);
        let spent = 4 * 708_000 + 2_394_000;
        assert_eq!(ledger_total(&sim), spent, "the account paid");
        assert_eq!(status(&env, &struck.key()).as_deref(), Some("submitted"));
        if format == "json" {
            let document = run.json();
            assert_eq!(
                document["summary"]["cost"],
                serde_json::json!({"amount": spent, "currency": "VND"}),
                "{document}"
            );
            assert_eq!(document["summary"]["possibly_charged_twice"], 1);
            assert_eq!(document["summary"]["purchased"], 2);
            let results = document["results"].as_array().unwrap();
            assert_eq!(results[0]["key"], struck.key().as_str());
            assert_eq!(results[0]["possibly_charged_twice"], true);
            assert_eq!(results[0]["charged_requests"], 4);
            assert_eq!(results[0]["attempts"], 4);
            assert_eq!(results[1]["possibly_charged_twice"], false);
            assert_eq!(results[1]["charged_requests"], 1);
            continue;
        }
        run.stdout_has(&format!(
            "! purchase {}: submitted, ServicePreviewId ",
        struck.key()
        ))
        .stdout_has("after 4 attempts; possibly charged twice — check the eSMS portal\n")
        .stdout_has(&format!(
            "\nPossibly charged twice: eSMS accepted (code 100) a resend of these while an earlier request for each may have charged already:\n  ! {}\n",
            struck.key()
        ))
        .stdout_has(&format!("+ purchase {}: submitted", other.key()))
        .stdout_has(
            "Apply complete: 2 purchased, 0 failed, 0 unconfirmed, 1 possibly charged twice.\n",
        );
        // Every request that may have charged, priced: what the ledger says.
        assert_eq!(
            spent_line(&run),
            "Spent (estimated from the price list): 5,226,000 VND."
        );
        assert_eq!(spent, 5_226_000);
    }
}

#[test]
fn max_spend_stops_a_resend_that_may_charge_again() {
    let pkg = Pkg::new("7501", "2027-01-01", "advanced", 12); // 708,000 a request
    // Every request charged, then an HTTP 500.
    let charged_then_500 = |env: &Env| {
        start(
            priced_charging_every_request(env, std::slice::from_ref(&pkg)).fault(
                FaultRule::for_oaid(
                    &pkg.oaid,
                    Fault::ServerError {
                        stage: Stage::AfterCommit,
                    },
                ),
            ),
        )
    };
    let env = Env::with_state();
    let sim = charged_then_500(&env);
    // Room for the planned request and one resend, not two.
    let run = apply(&env, &sim, &["--retry-unknown", "--max-spend", "1416000"]);
    run.code(1)
        .stdout_has(&format!(
            "? purchase {}: unconfirmed (no definite answer (HTTP 500 from the server",
            pkg.key()
        ))
        .stdout_has(
            "); not resent: this resend may charge again, and 1,416,000 spent or reserved so far \
             plus its 708,000 would pass --max-spend 1,416,000) after 2 attempts\n",
        )
        .stdout_has("Apply complete: 0 purchased, 0 failed, 1 unconfirmed.\n");
    assert_eq!(
        requests_for(&sim, &pkg.key()),
        2,
        "the third request was not sent"
    );
    assert_eq!(charges_for(&sim, &pkg.key()), 2);
    assert_eq!(ledger_total(&sim), 1_416_000, "no charge past --max-spend");
    assert_eq!(
        spent_line(&run),
        "Spent (estimated from the price list): 1,416,000 VND."
    );
    assert_eq!(status(&env, &pkg.key()).as_deref(), Some("unconfirmed"));

    // With room for the planned request only, no resend goes out at all.
    let env = Env::with_state();
    let sim = charged_then_500(&env);
    let run = apply(&env, &sim, &["--retry-unknown", "--max-spend", "708000"]);
    run.code(1).stdout_has("would pass --max-spend 708,000)\n");
    assert_eq!(requests_for(&sim, &pkg.key()), 1);
    assert_eq!(ledger_total(&sim), 708_000);
    assert_eq!(
        spent_line(&run),
        "Spent (estimated from the price list): 708,000 VND."
    );
}

#[test]
fn a_100_to_a_resent_unconfirmed_package_is_possibly_charged_twice() {
    let pkg = Pkg::new("7601", "2027-01-01", "trial", 1); // 10,000 a request
    let env = Env::with_state();
    let sim = start(
        priced_charging_every_request(&env, std::slice::from_ref(&pkg)).fault(
            FaultRule::for_oaid(
                &pkg.oaid,
                Fault::DropConnection {
                    stage: Stage::AfterCommit,
                },
            )
            .times(1),
        ),
    );
    let first = apply(&env, &sim, &[]);
    first.code(1);
    // The unknown outcome may have charged: it is spent.
    assert_eq!(
        spent_line(&first),
        "Spent (estimated from the price list): 10,000 VND."
    );
    assert_eq!(status(&env, &pkg.key()).as_deref(), Some("unconfirmed"));

    // A person resends it without checking the portal; eSMS (no duplicate
    // detection here) charges again and answers 100.
    let resent = apply(&env, &sim, &["--retry-unconfirmed"]);
    resent
        .code(0)
        .stdout_has(&format!(
            "! unconfirmed {}: submitted, ServicePreviewId ",
            pkg.key()
        ))
        .stdout_has("(code 100: ")
        .stdout_has("; possibly charged twice — check the eSMS portal\n")
        .stdout_has(
            "Apply complete: 1 purchased, 0 failed, 0 unconfirmed, 1 possibly charged twice.\n",
        );
    assert_eq!(
        spent_line(&resent),
        "Spent (estimated from the price list): 10,000 VND."
    );
    assert_eq!(
        charges_for(&sim, &pkg.key()),
        2,
        "the ledger: charged twice"
    );
    assert_eq!(status(&env, &pkg.key()).as_deref(), Some("submitted"));
}
