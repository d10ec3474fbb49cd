//! Saved plans are derived again at apply time: `apply PLANFILE` buys only
//! when planning again from the current manifests, state and today gives
//! exactly the saved plan; `show PLANFILE` prints what was reviewed.

use oapkg::ops::plan_file;

use crate::support::{Env, Pkg, Run, account, oapkg, start, write_manifest};

/// `apply PLANFILE` on `today`.
fn apply_on(env: &Env, sim: &esms_sim::SimControl, plan: &str, today: &str) -> Run {
    Run::from(
        oapkg(env, sim, &["apply", plan])
            .env("OAPKG_TODAY", today)
            .output()
            .expect("run oapkg"),
    )
}

#[test]
fn an_old_saved_plan_whose_package_has_ended_buys_nothing() {
    let env = Env::with_state().today("2026-12-01");
    // One month from 2026-12-10: ends 2027-01-09.
    let short = Pkg::new("4097311281936189049", "2026-12-10", "advanced", 1);
    write_manifest(&env, std::slice::from_ref(&short));
    let sim = start(account(std::slice::from_ref(&short)));
    env.run(&["plan", "--out", "december.plan"])
        .code(0)
        .stdout_has("Plan: 1 to purchase");

    let late = apply_on(&env, &sim.control(), "december.plan", "2027-03-01");
    late.code(1)
        .stderr_has("plan file december.plan cannot be applied")
        .stderr_has("stale plan")
        .stderr_has("4097311281936189049@2026-12-10");
    assert!(sim.control().requests().is_empty(), "nothing was sent");
    assert!(sim.control().ledger().is_empty());
}

#[test]
fn a_saved_plan_whose_package_started_since_buys_nothing() {
    let env = Env::with_state().today("2026-11-26");
    let pkg = Pkg::new("4097311281936189049", "2026-12-01", "premium", 12);
    write_manifest(&env, std::slice::from_ref(&pkg));
    let sim = start(account(std::slice::from_ref(&pkg)));
    env.run(&["plan", "--out", "p.plan"]).code(0);

    apply_on(&env, &sim.control(), "p.plan", "2026-12-05")
        .code(1)
        .stderr_has(
            "4097311281936189049@2026-12-01 starts on 2026-12-01, before today (2026-12-05)",
        );
    assert!(sim.control().ledger().is_empty());

    // The next day, nothing has started yet: a plan reviewed yesterday is
    // still exactly what planning again gives, and it is bought.
    env.run(&["plan", "--out", "p.plan"]).code(0);
    apply_on(&env, &sim.control(), "p.plan", "2026-11-27")
        .code(0)
        .stdout_has("Apply complete: 1 purchased");
    assert_eq!(sim.control().ledger().len(), 1);
}

#[test]
fn a_plan_file_edited_by_hand_with_its_checksum_recomputed_buys_nothing() {
    let env = Env::with_state();
    let pkg = Pkg::new("4097311281936189049", "2027-01-01", "advanced", 3);
    write_manifest(&env, std::slice::from_ref(&pkg));
    let sim = start(account(std::slice::from_ref(&pkg)));
    env.run(&["plan", "--out", "p.plan"]).code(0);

    // Premium for twelve months instead, re-signed so the file's own
    // checksum holds: only planning again can tell.
    let path = env.path("p.plan");
    let mut saved = plan_file::read(&path).unwrap();
    let desired = saved.changes[0].desired.as_mut().unwrap();
    desired.spec.tier = oapkg::spec::Tier::Premium;
    desired.spec.duration_months = 12;
    plan_file::write(&saved, &path).unwrap();
    assert!(
        plan_file::read(&path).is_ok(),
        "the edited file is well formed"
    );

    apply_on(&env, &sim.control(), "p.plan", crate::support::TODAY)
        .code(1)
        .stderr_has("does not give 4097311281936189049@2027-01-01 as saved")
        .stderr_has("edited");
    assert!(sim.control().requests().is_empty(), "nothing was sent");

    // A change dropped from the file: refused the same way.
    env.run(&["plan", "--out", "p.plan"]).code(0);
    let mut saved = plan_file::read(&path).unwrap();
    saved.changes.clear();
    plan_file::write(&saved, &path).unwrap();
    apply_on(&env, &sim.control(), "p.plan", crate::support::TODAY)
        .code(1)
        .stderr_has("(saved not listed, now `purchase`)");
    assert!(sim.control().ledger().is_empty());
}

#[test]
fn show_prints_a_saved_plan_as_plan_printed_it() {
    let env = Env::with_state();
    write_manifest(
        &env,
        &[
            Pkg::new("4097311281936189049", "2027-01-01", "advanced", 3),
            Pkg::new("745830328927467685", "2027-02-01", "premium", 12),
        ],
    );
    for format in ["text", "json", "markdown"] {
        let planned = env.run(&["plan", "--format", format, "--out", "p.plan"]);
        planned.code(0);
        // Later, elsewhere: the manifests are gone, the plan file speaks
        // for itself.
        let shown = env.run(&["show", "p.plan", "--format", format, "-f", "nowhere.yaml"]);
        shown.code(0);
        let expected = planned
            .stdout
            .split("\nSaved the plan to")
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(shown.stdout.trim_end(), expected.trim_end(), "{format}");
    }
    env.run(&["show", "missing.plan"])
        .code(1)
        .stderr_has("cannot read plan file missing.plan");
}

#[test]
fn a_saved_plan_with_a_forged_today_buys_nothing_that_has_started_or_ended() {
    let env = Env::with_state().today("2026-11-26");
    let starts = Pkg::new("4097311281936189049", "2026-12-01", "premium", 12);
    // One month from 2026-12-10: ends 2027-01-09.
    let short = Pkg::new("745830328927467685", "2026-12-10", "advanced", 1);
    let both = [starts.clone(), short.clone()];
    write_manifest(&env, &both);
    let sim = start(account(&both));
    env.run(&["plan", "--out", "p.plan"]).code(0);

    // The file claims it was made on 2026-12-04, after the first package
    // started (so "it had started already when reviewed"), its checksum
    // recomputed the way `plan --out` writes it.
    let forge = |today: &str| {
        let path = env.path("p.plan");
        let mut saved = plan_file::read(&path).unwrap();
        saved.today = today.parse().unwrap();
        plan_file::write(&saved, &path).unwrap();
        let read = plan_file::read(&path).expect("the forged file is well formed");
        assert_eq!(read.today.to_string(), today);
    };
    forge("2026-12-04");
    apply_on(&env, &sim.control(), "p.plan", "2026-12-05")
        .code(1)
        .stderr_has("plan file p.plan cannot be applied")
        .stderr_has(
            "4097311281936189049@2026-12-01 starts on 2026-12-01, before today (2026-12-05): \
             a saved plan never buys a package that has started",
        );
    assert!(sim.control().requests().is_empty(), "nothing was sent");

    // Dated after the short package ended, applied later still: apply's
    // own clock finds it expired.
    env.run(&["plan", "--out", "p.plan"]).code(0);
    forge("2027-03-01");
    apply_on(&env, &sim.control(), "p.plan", "2027-03-02")
        .code(1)
        .stderr_has("stale plan")
        .stderr_has("745830328927467685@2026-12-10 as saved (saved `purchase`, now `expired`)");
    assert!(sim.control().requests().is_empty(), "nothing was sent");
    assert!(sim.control().ledger().is_empty());
    assert!(
        crate::support::recorded(&env).is_empty(),
        "nothing recorded"
    );
}
