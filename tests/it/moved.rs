//! The state directory renamed or replaced while an apply runs: the fold
//! refuses (the lock and journal at the path are not the ones the run
//! opened), names the journal holding the run's purchases, and nothing is
//! ever bought twice afterwards.

use std::process::Stdio;
use std::time::{Duration, Instant};

use esms_sim::BlockingSimHandle;

use crate::support::{
    Env, Run, account, charges_by_key, oapkg, pkgs, purchase_requests, recorded, start,
    write_manifest,
};

/// Runs a slow sequential apply of `n` packages (OAIDs from `first`) and,
/// once the first one is charged, lets `swap` move the state directory
/// away; returns the run, the simulator and the env.
fn apply_and_swap_after_the_first_charge(
    first: u64,
    n: usize,
    swap: impl FnOnce(&Env),
) -> (Run, BlockingSimHandle, Env) {
    let env = Env::with_state();
    let all = pkgs(first, n);
    write_manifest(&env, &all);
    let sim = start(account(&all).latency(Duration::from_millis(250)));
    let control = sim.control();
    let child = oapkg(
        &env,
        &control,
        &["apply", "--auto-approve", "--parallelism", "1"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while control.ledger().is_empty() {
        assert!(Instant::now() < deadline, "no purchase was made");
        std::thread::sleep(Duration::from_millis(5));
    }
    swap(&env);
    let run = Run::from(child.wait_with_output().unwrap());
    (run, sim, env)
}

#[test]
fn a_state_directory_swapped_mid_apply_is_refused_at_the_fold_and_nothing_is_bought_twice() {
    // `cp -r state state.new && mv state state.old && mv state.new state`:
    // the replacement is made first, so the run (which stops sending as
    // soon as its lock file has left the path, and folds at once) finds a
    // state directory at the path whenever it looks, as it would with
    // `mv state state.old && mkdir state && cp …` done by a person between
    // two of its requests.
    let (run, sim, env) = apply_and_swap_after_the_first_charge(8101, 8, |env| {
        std::fs::create_dir(env.path("state.new")).unwrap();
        std::fs::copy(
            env.path("state/oapkg.state.json"),
            env.path("state.new/oapkg.state.json"),
        )
        .unwrap();
        std::fs::rename(env.path("state"), env.path("state.old")).unwrap();
        std::fs::rename(env.path("state.new"), env.path("state")).unwrap();
    });
    let control = sim.control();
    run.code(1)
        .stderr_has("was moved or replaced during this run")
        .stderr_has("state.old/oapkg.state.json.journal")
        .stderr_has("a copy of it was left at state/oapkg.state.json.journal");
    let bought = control.ledger().len();
    assert!(bought >= 1, "the run bought something before the swap");

    // The state at the path people use knows every purchase of the run.
    let now = recorded(&env);
    for (key, charges) in charges_by_key(&control.ledger()) {
        assert_eq!(charges.len(), 1, "{key} charged once");
        assert_eq!(now[&key]["status"], "submitted", "{key}");
    }
    // The next apply folds the copy in and buys only what the run did not.
    let sent_before = purchase_requests(&control);
    crate::support::apply(&env, &control, &[]).code(0);
    assert_eq!(purchase_requests(&control) - sent_before, 8 - bought);
    let ledger = control.ledger();
    assert_eq!(ledger.len(), 8);
    assert!(charges_by_key(&ledger).values().all(|c| c.len() == 1));
    env.run(&["plan"]).code(0).stdout_has("No changes.");
}

#[test]
fn when_no_copy_can_be_left_the_error_says_where_the_journal_is_and_putting_it_back_recovers() {
    // Replaced by a directory that cannot take the copy: something sits at
    // the journal path already.
    let (run, sim, env) = apply_and_swap_after_the_first_charge(8201, 6, |env| {
        std::fs::rename(env.path("state"), env.path("state.old")).unwrap();
        std::fs::create_dir_all(env.path("state/oapkg.state.json.journal")).unwrap();
    });
    let control = sim.control();
    run.code(1)
        .stderr_has("state.old/oapkg.state.json.journal")
        .stderr_has("put the state directory back");
    let bought = control.ledger().len();

    // The recovery the message gives: put the directory back.
    std::fs::remove_dir_all(env.path("state")).unwrap();
    std::fs::rename(env.path("state.old"), env.path("state")).unwrap();
    crate::support::apply(&env, &control, &[]).code(0);
    let ledger = control.ledger();
    assert_eq!(ledger.len(), 6, "bought {bought} before, the rest after");
    assert!(charges_by_key(&ledger).values().all(|c| c.len() == 1));
}
