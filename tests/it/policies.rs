//! `kind: CoveragePolicy`: renewals planned and bought exactly once as
//! "today" (`OAPKG_TODAY`) moves across the renewal window, never orphans,
//! lapsed OAs renewed from today.

use esms_sim::SimConfig;

use crate::support::Env;
use crate::support::{last_line, purchase_requests, recorded, start};

const MANIFEST: &str = "apiVersion: oapkg/v1
kind: PackageSet
packages:
  - oaid: \"4097311281936189049\"
    name: SVoucher main
    tier: premium
    start: 2026-12-01
    duration: 12
---
apiVersion: oapkg/v1
kind: CoveragePolicy
policies:
  - oaid: \"4097311281936189049\"
    name: SVoucher main
    tier: premium
    months: 12
    renew_before_days: 30
";
const OA: &str = "4097311281936189049";

/// `oapkg ARGS` on `today` against the simulator.
fn on(env: &Env, sim: &esms_sim::SimControl, today: &str, args: &[&str]) -> crate::support::Run {
    let mut cmd = crate::support::oapkg(env, sim, args);
    cmd.env("OAPKG_TODAY", today);
    crate::support::Run::from(cmd.output().expect("run oapkg"))
}

fn plan_json(env: &Env, sim: &esms_sim::SimControl, today: &str) -> serde_json::Value {
    on(env, sim, today, &["plan", "--format", "json"]).json()
}

#[test]
fn a_policy_renews_once_when_due_and_again_a_year_later() {
    let env = Env::with_state();
    env.file("oapkg.yaml", MANIFEST);
    let sim = start(SimConfig::new().oaid(OA));
    on(&env, &sim, "2026-11-26", &["apply", "--auto-approve"]).code(0);
    assert_eq!(purchase_requests(&sim), 1);

    // Coverage ends 2027-11-30; due from 2027-10-31 (30 days before).
    for early in ["2026-12-01", "2027-06-01", "2027-10-30"] {
        on(&env, &sim, early, &["plan"])
            .code(0)
            .stdout_has("No changes.");
    }
    let due = plan_json(&env, &sim, "2027-10-31");
    let changes = due["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{due}");
    let renewal = &changes[0];
    assert_eq!(renewal["key"], format!("{OA}@2027-12-01"));
    assert_eq!(renewal["action"], "purchase");
    assert_eq!(renewal["origin"], "policy");
    assert_eq!(renewal["tier"], "premium");
    assert_eq!(renewal["duration_months"], 12);
    assert_eq!(renewal["source"]["file"], "oapkg.yaml");
    assert_eq!(renewal["source"]["line"], 13, "the policy's entry");
    let text = on(&env, &sim, "2027-10-31", &["plan"]).stdout.clone();
    assert!(
        text.contains("# renewal by a coverage policy (origin: policy)"),
        "{text}"
    );

    let run = on(&env, &sim, "2027-10-31", &["apply", "--auto-approve"]);
    run.code(0);
    assert_eq!(
        last_line(&run),
        "Apply complete: 1 purchased, 0 failed, 0 unconfirmed."
    );
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 2);
    assert_eq!(
        ledger[1].dateactive, "2027-12-01",
        "the day after coverage ends"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&env.read("state/oapkg.state.json")).unwrap();
    let record = &state["packages"][format!("{OA}@2027-12-01")];
    assert_eq!(record["by_policy"], true, "{state}");
    assert!(
        state["packages"][format!("{OA}@2026-12-01")]
            .get("by_policy")
            .is_none()
    );
    // `state list --format json` and `state show` say so too.
    let listed = env.run(&["state", "list", "--format", "json"]);
    let by_policy: Vec<(String, bool)> = listed
        .code(0)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_owned(),
                r["by_policy"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_policy,
        [
            (format!("{OA}@2026-12-01"), false),
            (format!("{OA}@2027-12-01"), true)
        ]
    );
    env.run(&["state", "show", &format!("{OA}@2027-12-01")])
        .code(0)
        .stdout_has("by_policy");

    // Bought: nothing more that day, nor later in the window; never an orphan.
    for after in ["2027-10-31", "2027-11-15", "2027-12-01", "2028-10-30"] {
        let plan = plan_json(&env, &sim, after);
        assert_eq!(plan["summary"]["purchase"], 0, "{after}: {plan}");
        assert_eq!(plan["summary"]["orphan"], 0, "{after}: {plan}");
        on(&env, &sim, after, &["plan"]).stdout_has("No changes.");
    }
    // A year later: the next one, from the day after the renewal ends.
    on(&env, &sim, "2028-10-31", &["apply", "--auto-approve"]).code(0);
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 3);
    assert_eq!(ledger[2].dateactive, "2028-12-01");
    assert_eq!(recorded(&env).len(), 3);
    assert_eq!(purchase_requests(&sim), 3, "each package bought once");
}

#[test]
fn a_lapsed_oa_is_renewed_from_today() {
    let env = Env::with_state();
    env.file(
        "oapkg.yaml",
        "apiVersion: oapkg/v1
kind: CoveragePolicy
policies:
  - {oaid: \"7\", tier: advanced, months: 6, renew_before_days: 14}
  - {oaid: \"8\", name: New OA, tier: trial, months: 1, renew_before_days: 3, first_start: 2027-03-01}
",
    );
    // OA 7's last package ended 2027-01-31: lapsed.
    env.import("7", "advanced", "2026-08-01", "6", &[]).code(0);
    let sim = start(SimConfig::new().oaid("7").oaid("8"));
    let plan = plan_json(&env, &sim, "2027-02-10");
    // The imported package is undeclared (an orphan); only renewals a
    // policy bought count as declared.
    let keys: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "purchase")
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    // OA 8 has no package at all: it starts at first_start, due 3 days
    // before (2027-02-25).
    assert_eq!(keys, ["7@2027-02-10"], "{plan}");
    on(&env, &sim, "2027-02-10", &["apply", "--auto-approve"]).code(0);
    assert_eq!(sim.ledger()[0].dateactive, "2027-02-10");
    on(&env, &sim, "2027-02-24", &["plan"]).stdout_has("No changes.");
    let plan = plan_json(&env, &sim, "2027-02-25");
    let renewal = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "purchase")
        .unwrap();
    assert_eq!(renewal["key"], "8@2027-03-01", "{plan}");
    assert_eq!(renewal["name"], "New OA");
}

#[test]
fn expiring_leaves_out_an_oa_its_policy_renews() {
    let env = Env::new().today("2027-11-10");
    env.file("oapkg.yaml", MANIFEST.replace("4097311281936189049", "1"));
    env.file(
        "other.yaml",
        "apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - {oaid: \"2\", tier: premium, start: 2026-12-01, duration: 12}\n",
    );
    let run = env.run(&[
        "expiring",
        "-f",
        "oapkg.yaml",
        "-f",
        "other.yaml",
        "--format",
        "json",
    ]);
    let json = run.code(2).json();
    let oaids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["oaid"].as_str().unwrap())
        .collect();
    assert_eq!(oaids, ["2"]);
}

#[test]
fn policies_are_validated_with_places() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        "apiVersion: oapkg/v1
kind: CoveragePolicy
policies:
  - {oaid: \"1\", tier: gold, months: 0, renew_before_days: -1, first_strat: 2027-01-01}
  - {oaid: \"2\", tier: premium, months: 12, renew_before_days: 30}
  - {oaid: \"2\", tier: trial, months: 1, renew_before_days: 3}
  - {tier: trial, months: 1}
",
    );
    env.run(&["validate"])
        .code(1)
        .stderr_has("oapkg.yaml:4:63: unknown field `first_strat` in a policy (did you mean `first_start`?)")
        .stderr_has("oapkg.yaml:4:23: unknown tier: found the text \"gold\"")
        .stderr_has("oapkg.yaml:4:37: months out of range: found the number 0")
        .stderr_has("renew_before_days out of range: found the negative number -1")
        .stderr_has("oapkg.yaml:6:5: OA 2 has two coverage policies; keep one policy per OA")
        .stderr_has("oapkg.yaml:5:5: the other policy")
        .stderr_has("oapkg.yaml:7:5: policy has no `oaid`")
        .stderr_has("oapkg.yaml:7:5: policy has no `renew_before_days`");
}
