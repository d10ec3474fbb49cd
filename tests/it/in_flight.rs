//! `in flight`: while a live `apply` waits for eSMS's answer to a purchase
//! request, `plan`, `state list` and `state show` in another process show
//! that package as in flight, naming the holder; once that apply is killed
//! (`kill -9`) the same package reads as unconfirmed, as before.
//!
//! The simulator charges the purchase of one OA and then holds its answer,
//! so the apply is genuinely waiting with a request in flight.

use std::time::{Duration, Instant};

use esms_sim::{Fault, FaultRule, Stage};
use serde_json::Value;

use crate::s3::server::S3Server;
use crate::support::{
    Backend, Env, Pkg, account, charges_by_key, pkgs, recorded, start, write_manifest,
};

/// Polls `check` until it holds, at most `within`.
#[track_caller]
fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn listed<'a>(list: &'a Value, key: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == key)
        .unwrap_or_else(|| panic!("{key} not in {list}"))
}

fn in_flight_then_unconfirmed(backend: &Backend<'_>) {
    let all = pkgs(9101, 3);
    let [hanging, answered, earlier]: [&Pkg; 3] = [&all[0], &all[1], &all[2]];
    let sim = start(
        account(&all)
            .hang_limit(Duration::from_secs(600))
            .fault(FaultRule::for_oaid(
                hanging.oaid.as_str(),
                Fault::Hang {
                    stage: Stage::AfterCommit,
                },
            ))
            .fault(FaultRule::for_oaid(
                earlier.oaid.as_str(),
                Fault::ServerError {
                    stage: Stage::AfterCommit,
                },
            )),
    );
    let env = Env::with_state_on(backend).with_sim(&sim);

    // An earlier run left one package unconfirmed: that one is not in flight.
    write_manifest(&env, std::slice::from_ref(earlier));
    env.run(&["apply", "--auto-approve"]).code(1);
    assert_eq!(recorded(&env)[&earlier.key()]["status"], "unconfirmed");

    write_manifest(&env, &all);
    let mut apply = env.spawn(&["apply", "--auto-approve", "--timeout", "600"]);
    let pid = apply.pid();
    wait_until(
        "the hanging purchase is charged",
        Duration::from_secs(60),
        || charges_by_key(&sim.ledger()).contains_key(&hanging.key()),
    );
    wait_until(
        "the answered purchase is recorded",
        Duration::from_secs(60),
        || {
            recorded(&env)
                .get(&answered.key())
                .is_some_and(|r| r["status"] == "submitted")
        },
    );
    assert!(apply.alive(), "{}", apply.transcript());

    // plan: text, exit code, JSON.
    let plan = env.run(&["plan"]);
    plan.code(0)
        .stdout_has(&format!("# {} is in flight", hanging.key()))
        .stdout_has(&format!("# held by pid {pid} on host "))
        .stdout_has("running \"oapkg apply")
        .stdout_has(&format!("* package \"{}\"", hanging.key()))
        .stdout_has(&format!("? package \"{}\"", earlier.key()))
        .stdout_has(
            "Plan: 0 to purchase, 0 to replace, 1 unconfirmed, 1 unchanged, 0 orphaned, 1 in flight.",
        );
    assert!(
        !plan
            .stdout
            .contains(&format!("oapkg state confirm {}", hanging.key())),
        "{}",
        plan.stdout
    );
    env.run(&["plan", "--detailed-exitcode"]).code(2);
    let json = env.run(&["plan", "--format", "json"]);
    json.code(0);
    let doc = json.json();
    let change = listed(&doc["changes"], &hanging.key());
    assert_eq!(change["action"], "in_flight");
    assert_eq!(change["holder"]["pid"], pid);
    assert!(
        change["holder"]["command"]
            .as_str()
            .unwrap()
            .starts_with("oapkg apply")
    );
    let other = listed(&doc["changes"], &earlier.key());
    assert_eq!(other["action"], "unconfirmed");
    assert!(other["holder"].is_null());
    assert_eq!(doc["summary"]["in_flight"], 1);
    assert_eq!(doc["summary"]["unconfirmed"], 1);

    // state list and state show.
    let list = env.run(&["state", "list"]);
    list.code(0)
        .stdout_has(&format!("In flight: pid {pid} on host "))
        .stdout_has(&hanging.key());
    let row = |out: &str, key: &str| {
        out.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no row for {key} in {out}"))
            .to_owned()
    };
    assert!(row(&list.stdout, &hanging.key()).contains("in flight"));
    assert!(row(&list.stdout, &earlier.key()).contains("unconfirmed"));
    let records = recorded(&env);
    assert_eq!(records[&hanging.key()]["status"], "in_flight");
    assert_eq!(records[&hanging.key()]["holder"]["pid"], pid);
    assert_eq!(records[&earlier.key()]["status"], "unconfirmed");
    assert!(records[&earlier.key()].get("holder").is_none());
    env.run(&["state", "show", &hanging.key()])
        .code(0)
        .stdout_has("status              in flight\n")
        .stdout_has(&format!("holder              pid {pid} on host "));

    // Looking did not disturb the holder: it still holds the lock, and a
    // writer is refused, naming it.
    assert!(apply.alive(), "{}", apply.transcript());
    env.run(&["state", "confirm", &earlier.key()])
        .code(1)
        .stderr_has(&format!("pid {pid}"));

    // Killed: the request's outcome is unknown now.
    apply.signal(libc::SIGKILL);
    apply.wait_exit(Duration::from_secs(10));
    let plan = env.run(&["plan"]);
    plan.code(0)
        .stdout_has(&format!("? package \"{}\"", hanging.key()))
        .stdout_has(&format!("oapkg state confirm {}", hanging.key()))
        .stdout_has("Plan: 0 to purchase, 0 to replace, 2 unconfirmed, 1 unchanged, 0 orphaned.");
    assert!(!plan.stdout.contains("in flight"), "{}", plan.stdout);
    let records = recorded(&env);
    assert_eq!(records[&hanging.key()]["status"], "unconfirmed");
    assert!(records[&hanging.key()].get("holder").is_none());
    env.run(&["state", "show", &hanging.key()])
        .code(0)
        .stdout_has("status              unconfirmed\n");
    let plan = env.run(&["plan", "--format", "json"]).json();
    assert_eq!(plan["summary"]["in_flight"], 0);
    assert_eq!(plan["summary"]["unconfirmed"], 2);

    // One charge each: nothing above sent anything.
    for (key, charges) in charges_by_key(&sim.ledger()) {
        assert_eq!(charges.len(), 1, "{key} charged {} times", charges.len());
    }
}

#[test]
fn a_live_applys_request_is_in_flight_until_it_is_killed() {
    in_flight_then_unconfirmed(&Backend::Local);
}

#[test]
fn on_s3_a_live_leases_request_is_in_flight_until_its_holder_is_killed() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    in_flight_then_unconfirmed(&Backend::S3(&server));
}

/// A second `apply` while the first has a request in flight does not call
/// that package unconfirmed and stop at once: it waits for the first one's
/// lock. Had the first finished, its outcomes would make this plan stale
/// (`apply::concurrent_applies_never_buy_a_package_twice`); killed, it
/// left the request unconfirmed, which the second reports and never resends.
#[test]
fn an_apply_during_anothers_request_in_flight_waits_for_its_lock_and_never_resends() {
    let all = pkgs(9201, 2);
    let hanging = &all[0];
    let sim = start(
        account(&all)
            .hang_limit(Duration::from_secs(600))
            .fault(FaultRule::for_oaid(
                hanging.oaid.as_str(),
                Fault::Hang {
                    stage: Stage::AfterCommit,
                },
            )),
    );
    let env = Env::with_state_on(&Backend::Local).with_sim(&sim);
    write_manifest(&env, &all);
    let mut first = env.spawn(&["apply", "--auto-approve", "--timeout", "600"]);
    wait_until(
        "both purchases are charged",
        Duration::from_secs(60),
        || charges_by_key(&sim.ledger()).len() == all.len(),
    );

    let mut second = env.spawn(&["apply", "--auto-approve", "--lock-timeout", "60"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        second.alive(),
        "the second apply did not wait for the first one's lock:\n{}",
        second.transcript()
    );
    assert!(first.alive(), "{}", first.transcript());

    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    assert_eq!(second.wait_exit(Duration::from_secs(60)), 1);
    let transcript = second.transcript();
    assert!(transcript.contains("is in flight"), "{transcript}");
    assert!(
        transcript.contains("Apply complete: 0 purchased, 0 failed, 1 unconfirmed."),
        "{transcript}"
    );
    for (key, charges) in charges_by_key(&sim.ledger()) {
        assert_eq!(charges.len(), 1, "{key} charged {} times", charges.len());
    }
    assert_eq!(recorded(&env)[&hanging.key()]["status"], "unconfirmed");
}
