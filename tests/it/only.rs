//! `apply --only KEY|OAID` with the real binary against
//! the simulator: only the named packages are bought, the guards and the
//! question count them alone, the others stay in the next plan, and a value
//! that names nothing is an error before anything is sent.

use esms_sim::Call;

use crate::support::{Env, Pkg, STATE, account, apply, recorded, start, write_manifest};

/// Four packages: two of OA 3001 (a renewal), one each of 3002 and 3003.
pub(crate) fn packages() -> Vec<Pkg> {
    vec![
        Pkg::new("3001", "2027-01-01", "advanced", 12),
        Pkg::new("3001", "2028-01-01", "advanced", 12),
        Pkg::new("3002", "2027-01-01", "premium", 6),
        Pkg::new("3003", "2027-01-01", "trial", 1),
    ]
}

#[test]
fn only_the_named_packages_are_bought_and_the_others_stay_planned() {
    let env = Env::with_state();
    let all = packages();
    write_manifest(&env, &all);
    let sim = start(account(&all));
    // Four to buy, but --max-purchases 3 counts the narrowed run alone.
    let run = apply(
        &env,
        &sim,
        &[
            "--only",
            "3001",
            "--only",
            "3003@2027-01-01",
            "--max-purchases",
            "3",
        ],
    );
    run.code(0)
        .stdout_has("--only: 1 change(s) of the plan left out of this run")
        .stdout_has("Plan: 3 to purchase, 0 to replace")
        .stdout_has("Apply complete: 3 purchased, 0 failed, 0 unconfirmed.");
    assert!(!run.stdout.contains("3002"), "{}", run.stdout);
    let mut bought: Vec<String> = sim
        .ledger()
        .iter()
        .map(|c| format!("{}@{}", c.oaid, c.dateactive))
        .collect();
    bought.sort();
    assert_eq!(
        bought,
        ["3001@2027-01-01", "3001@2028-01-01", "3003@2027-01-01"]
    );
    let state = recorded(&env);
    assert!(!state.contains_key("3002@2027-01-01"));
    // The one left out is still in the next plan, and the next apply buys it.
    env.run(&["plan"])
        .code(0)
        .stdout_has("+ package \"3002@2027-01-01\"")
        .stdout_has("Plan: 1 to purchase");
    apply(&env, &sim, &[])
        .code(0)
        .stdout_has("Apply complete: 1 purchased");
    assert_eq!(sim.ledger().len(), 4);
}

#[test]
fn the_question_counts_the_narrowed_plan() {
    let env = Env::with_state();
    let all = packages();
    write_manifest(&env, &all);
    let sim = start(account(&all));
    // No terminal and no --auto-approve: refused, naming the narrowed count.
    crate::support::run(&env, &sim, &["apply", "--only", "3002"])
        .code(1)
        .stdout_has("Plan: 1 to purchase")
        .stderr_has("refusing to purchase 1 package(s) without confirmation");
    assert!(sim.requests().is_empty());
}

#[test]
fn a_value_naming_no_change_or_no_key_is_an_error_and_nothing_is_sent() {
    let env = Env::with_state();
    let all = packages();
    write_manifest(&env, &all);
    let sim = start(account(&all));
    let before = env.read(STATE);
    // A typo in the OAID, a start date nobody declared.
    apply(
        &env,
        &sim,
        &[
            "--only",
            "3002",
            "--only",
            "30002",
            "--only",
            "3003@2027-01-02",
        ],
    )
    .code(1)
    .stderr_has("--only 30002, --only 3003@2027-01-02: no change in the plan")
    .stderr_has("nothing was bought");
    // Not a key, not an OAID: a usage error.
    apply(&env, &sim, &["--only", "3003@2027-13-01"])
        .code(1)
        .stderr_has("OAID@YYYY-MM-DD");
    apply(&env, &sim, &["--only", "SVoucher"])
        .code(1)
        .stderr_has("--only");
    assert!(
        !sim.requests().iter().any(|r| r.call == Call::Purchase),
        "nothing was sent"
    );
    assert_eq!(env.read(STATE), before);
    // An already bought (unchanged) package has no change to narrow to.
    apply(&env, &sim, &["--only", "3003"]).code(0);
    apply(&env, &sim, &["--only", "3003"])
        .code(1)
        .stderr_has("--only 3003: no change in the plan")
        .stderr_has("unchanged");
}

#[test]
fn guards_see_only_the_named_changes() {
    let env = Env::with_state();
    let all = packages();
    write_manifest(&env, &all[2..3]);
    let sim = start(account(&all));
    apply(&env, &sim, &[]).code(0);
    // 3002 changes tier (a replace) and 3003 is new: narrowed to 3003 the
    // run needs no --allow-replace; narrowed to 3002 it does.
    let mut changed = all.clone();
    changed[2].tier = "advanced";
    changed[2].package = 2;
    write_manifest(&env, &changed[2..]);
    apply(&env, &sim, &["--only", "3002"])
        .code(1)
        .stderr_has("--allow-replace");
    apply(&env, &sim, &["--only", "3003"])
        .code(0)
        .stdout_has("Apply complete: 1 purchased");
    assert_eq!(sim.ledger().len(), 2);
    assert_eq!(recorded(&env)["3002@2027-01-01"]["tier"], "premium");
}
