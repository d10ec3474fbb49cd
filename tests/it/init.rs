//! `oapkg init` and the refusal of a missing state: a wrong `--state` path
//! or a lost state file must never buy every package again.

use std::time::Duration;

use crate::support::{Env, Pkg, STATE, Stream, account, apply, oapkg, run, start, write_manifest};

const MISSING: &str = "no state file at";

#[test]
fn init_creates_an_empty_state_once_and_never_replaces_it() {
    let env = Env::new();
    let created = env.run(&["init"]);
    created
        .code(0)
        .stdout_has("Created an empty state at state/oapkg.state.json");
    let state: serde_json::Value = serde_json::from_slice(&env.read(STATE)).unwrap();
    assert_eq!(state["serial"], 0);
    assert_eq!(state["packages"], serde_json::json!({}));
    assert!(state["lineage"].as_str().is_some_and(|l| l.len() == 36));

    env.import("4097311281936189049", "premium", "2026-12-01", "12", &[])
        .code(0);
    let before = env.read(STATE);
    env.run(&["init"])
        .code(1)
        .stderr_has("state file state/oapkg.state.json already exists")
        .stderr_has("1 package(s)")
        .stderr_has("never replaces a state");
    assert_eq!(env.read(STATE), before, "the state is untouched");

    // Elsewhere, on purpose: --state names the new file.
    env.run(&["init", "--state", "other/dir/s.json"]).code(0);
    assert!(env.path("other/dir/s.json").is_file());
}

#[test]
fn apply_on_a_missing_or_mistyped_state_path_is_refused_and_sends_nothing() {
    let env = Env::with_state();
    let all = vec![Pkg::new("4097311281936189049", "2027-01-01", "premium", 12)];
    write_manifest(&env, &all);
    let sim = start(account(&all));
    apply(&env, &sim.control(), &[]).code(0);
    assert_eq!(sim.control().ledger().len(), 1);
    let sent_before = sim.control().requests().len();

    // A typo in --state, and the same through OAPKG_STATE.
    let typo = apply(&env, &sim.control(), &["--state", "state/oapkg.json"]);
    typo.code(1)
        .stderr_has("no state file at state/oapkg.json")
        .stderr_has("oapkg init")
        .stderr_has("nothing was bought");
    assert!(
        !typo.stdout.contains("to purchase"),
        "the plan against nothing is not even shown:\n{}",
        typo.stdout
    );
    let through_env = oapkg(&env, &sim.control(), &["apply", "--auto-approve"])
        .env("OAPKG_STATE", "elsewhere.json")
        .output()
        .unwrap();
    assert_eq!(through_env.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&through_env.stderr).contains("no state file at elsewhere.json")
    );

    // The state file lost: the same refusal.
    std::fs::rename(env.path(STATE), env.path("lost.json")).unwrap();
    apply(&env, &sim.control(), &[])
        .code(1)
        .stderr_has("no state file at state/oapkg.state.json");

    assert_eq!(
        sim.control().requests().len(),
        sent_before,
        "nothing was sent, not even the pre-flight"
    );
    assert_eq!(sim.control().ledger().len(), 1, "nothing was bought again");
    assert!(!env.path("state/oapkg.json").exists());
    assert!(!env.path("elsewhere.json").exists());
}

#[test]
fn a_saved_plan_made_against_a_missing_state_buys_nothing() {
    let env = Env::new();
    let all = vec![Pkg::new("4097311281936189049", "2027-01-01", "premium", 12)];
    write_manifest(&env, &all);
    let sim = start(account(&all));
    env.run(&["plan", "--out", "p.plan"])
        .code(0)
        .stderr_has(MISSING);
    run(&env, &sim.control(), &["apply", "p.plan"])
        .code(1)
        .stderr_has("no state file at state/oapkg.state.json");
    assert!(sim.control().requests().is_empty());
}

#[test]
fn watch_apply_refuses_to_start_without_a_state_and_sends_nothing() {
    let env = Env::new();
    let all = vec![Pkg::new("4097311281936189049", "2027-01-01", "premium", 12)];
    write_manifest(&env, &all);
    let sim = start(account(&all));
    let out = run(&env, &sim.control(), &["watch", "--apply"]);
    out.code(1)
        .stderr_has("no state file at state/oapkg.state.json")
        .stderr_has("oapkg init");
    assert!(sim.control().requests().is_empty());

    // Plan-only, it starts and says once that the state reads as empty.
    let mut watch = env.spawn(&["watch"]);
    watch.wait_for(
        Stream::Stderr,
        "naming the missing state",
        Duration::from_secs(10),
        |l| l.contains(MISSING),
    );
    watch.wait_for(
        Stream::Stdout,
        "with the plan",
        Duration::from_secs(10),
        |l| l.starts_with("Plan: 1 to purchase"),
    );
    watch.signal(libc::SIGTERM);
    assert_eq!(watch.wait_exit(Duration::from_secs(10)), 0);
}

#[test]
fn commands_that_only_read_say_when_the_state_is_missing() {
    let env = Env::new();
    write_manifest(
        &env,
        &[Pkg::new("4097311281936189049", "2027-01-01", "premium", 12)],
    );
    for args in [
        &["plan"][..],
        &["state", "list"],
        &["state", "show", "4097311281936189049@2027-01-01"],
        &["expiring"],
    ] {
        let out = env.run(args);
        assert!(
            out.stderr
                .contains("no state file at state/oapkg.state.json: reading it as empty"),
            "{args:?}:\n{}",
            out.stderr
        );
    }
    env.run(&["plan"]).code(0).stdout_has("Plan: 1 to purchase");
    // With a state, not a word about it.
    env.run(&["init"]).code(0);
    let planned = env.run(&["plan"]);
    assert!(!planned.stderr.contains(MISSING), "{}", planned.stderr);
    assert!(!env.path("state/oapkg.state.json.lock").exists());
}

/// The state file is created like a saved plan: its owner's only (0600, or
/// narrower with the umask); a mode given on purpose is kept by later
/// writes.
#[cfg(unix)]
#[test]
fn the_state_file_is_created_owner_only_like_a_plan_file() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |env: &Env, rel: &str| {
        std::fs::metadata(env.path(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    let env = Env::new();
    env.run(&["init"]).code(0);
    assert_eq!(mode(&env, STATE), 0o600);
    env.file(
        "oapkg.yaml",
        crate::support::manifest(
            "  - {oaid: \"7\", tier: trial, start: 2026-12-01, duration: 1}\n",
        ),
    );
    env.run(&["plan", "--out", "p.plan"]).code(0);
    assert_eq!(mode(&env, "p.plan"), mode(&env, STATE));
    // Every write after the first keeps the file's mode.
    env.import("7", "trial", "2027-01-01", "1", &[]).code(0);
    assert_eq!(mode(&env, STATE), 0o600);
    std::fs::set_permissions(env.path(STATE), std::fs::Permissions::from_mode(0o640)).unwrap();
    env.import("7", "trial", "2027-02-01", "1", &[]).code(0);
    assert_eq!(mode(&env, STATE), 0o640);
}
