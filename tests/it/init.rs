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

const BACKUP: &str = "state/oapkg.state.json.backup";

/// A state of serial 2 holding two packages, whose backup (serial 1) holds
/// one; then the state file is lost.
fn lost_state() -> Env {
    let env = Env::new();
    env.run(&["init"]).code(0);
    env.import("7", "premium", "2026-12-01", "12", &[]).code(0);
    env.import("8", "trial", "2026-12-01", "1", &[]).code(0);
    std::fs::remove_file(env.path(STATE)).unwrap();
    env
}

fn lineage_of(bytes: &[u8]) -> String {
    let state: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    state["lineage"].as_str().unwrap().to_owned()
}

#[test]
fn init_over_the_backup_of_a_lost_state_is_refused_naming_it() {
    let env = lost_state();
    let backup = env.read(BACKUP);
    env.run(&["init"])
        .code(1)
        .stderr_has("no state file at state/oapkg.state.json but its backup state/oapkg.state.json.backup is there")
        .stderr_has("serial 1, 1 package(s)")
        .stderr_has("a lost state, not a new one")
        .stderr_has("oapkg state restore")
        .stderr_has("init --force");
    assert!(!env.path(STATE).exists(), "no state was created");
    assert_eq!(env.read(BACKUP), backup, "the backup is untouched");
    // A damaged backup is still a lost state.
    let damaged =
        String::from_utf8(backup.clone())
            .unwrap()
            .replacen("\"premium\"", "\"trial\"", 1);
    env.file(BACKUP, &damaged);
    env.run(&["init"])
        .code(1)
        .stderr_has("its backup state/oapkg.state.json.backup is there (itself refused")
        .stderr_has("checksum");
    assert!(!env.path(STATE).exists());
}

#[test]
fn init_force_starts_a_new_lineage_and_keeps_the_old_backup_aside() {
    let env = lost_state();
    let backup = env.read(BACKUP);
    let old_lineage = lineage_of(&backup);
    let aside = format!("{BACKUP}.{old_lineage}");
    env.run(&["init", "--force"])
        .code(0)
        .stdout_has("Created an empty state at state/oapkg.state.json")
        .stdout_has(&format!("kept aside as {aside}"));
    assert_eq!(env.read(&aside), backup, "kept as it was");
    assert!(!env.path(BACKUP).exists());
    // --force never replaces a state that is there.
    let created = env.read(STATE);
    env.run(&["init", "--force"])
        .code(1)
        .stderr_has("already exists");
    assert_eq!(env.read(STATE), created);
    let new_lineage = lineage_of(&env.read(STATE));
    assert_ne!(new_lineage, old_lineage);
    // The new lineage's writes make their own backup; the old one stays.
    env.import("9", "trial", "2026-12-01", "1", &[]).code(0);
    env.import("9", "trial", "2027-01-01", "1", &[]).code(0);
    assert_eq!(lineage_of(&env.read(BACKUP)), new_lineage);
    assert_eq!(env.read(&aside), backup);
    // Lost again and forced again: another name, nothing overwritten.
    std::fs::remove_file(env.path(STATE)).unwrap();
    let second = env.read(BACKUP);
    env.run(&["init", "--force"])
        .code(0)
        .stdout_has(&format!("kept aside as {BACKUP}.{new_lineage}"));
    assert_eq!(env.read(&format!("{BACKUP}.{new_lineage}")), second);
    assert_eq!(env.read(&aside), backup);
}

#[test]
fn state_restore_brings_back_the_backup_and_says_its_serial() {
    let env = lost_state();
    let backup = env.read(BACKUP);
    env.run(&["state", "restore"])
        .code(0)
        .stdout_has("Restored state/oapkg.state.json from state/oapkg.state.json.backup")
        .stdout_has("serial 1, 1 package(s)")
        .stdout_has("oapkg state import");
    assert_eq!(
        env.read(STATE),
        backup,
        "the backup's bytes, checksum and all"
    );
    assert_eq!(env.read(BACKUP), backup, "the backup stays");
    assert!(!env.path("state/oapkg.state.json.lock").exists());
    env.run(&["state", "list"])
        .code(0)
        .stdout_has("7@2026-12-01");

    // A damaged state: restored too, the damaged file kept aside.
    env.import("8", "trial", "2026-12-01", "1", &[]).code(0);
    env.import("9", "trial", "2026-12-01", "1", &[]).code(0);
    let good = String::from_utf8(env.read(STATE)).unwrap();
    let damaged = good.replacen("\"premium\"", "\"trial\"", 1);
    env.file(STATE, &damaged);
    let backup = env.read(BACKUP);
    env.run(&["state", "restore"])
        .code(0)
        .stdout_has("serial 2, 2 package(s)")
        .stdout_has("The refused state file was kept aside as state/oapkg.state.json.refused.");
    assert_eq!(env.read(STATE), backup);
    let kept: Vec<_> = std::fs::read_dir(env.path("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("oapkg.state.json.refused."))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(env.read(&format!("state/{}", kept[0])), damaged.as_bytes());
}

#[test]
fn state_restore_of_a_bad_backup_is_refused_and_changes_nothing() {
    let env = lost_state();
    let good = String::from_utf8(env.read(BACKUP)).unwrap();
    let bad = good.replacen("\"premium\"", "\"trial\"", 1);
    env.file(BACKUP, &bad);
    env.run(&["state", "restore"])
        .code(1)
        .stderr_has("the backup state/oapkg.state.json.backup is refused, so it is not restored")
        .stderr_has("does not match its checksum");
    assert!(!env.path(STATE).exists());
    assert_eq!(env.read(BACKUP), bad.as_bytes());
    // No backup at all: nothing to restore from.
    std::fs::remove_file(env.path(BACKUP)).unwrap();
    env.run(&["state", "restore"])
        .code(1)
        .stderr_has("no backup at state/oapkg.state.json.backup");
    assert!(!env.path(STATE).exists());
}

#[test]
fn state_restore_with_nothing_to_restore_is_refused_and_changes_nothing() {
    let env = Env::new();
    env.run(&["init"]).code(0);
    env.import("7", "premium", "2026-12-01", "12", &[]).code(0);
    let (state, backup) = (env.read(STATE), env.read(BACKUP));
    env.run(&["state", "restore"])
        .code(1)
        .stderr_has("state file state/oapkg.state.json loads")
        .stderr_has("serial 1, 1 package(s)")
        .stderr_has("nothing to restore");
    assert_eq!(env.read(STATE), state);
    assert_eq!(env.read(BACKUP), backup);
}

/// Leaves a journal beside the state, as a run that died after sending
/// leaves it: the intent of one purchase of `9@2026-12-01`, recorded
/// against the state at the path now.
fn leave_a_journal(env: &Env) {
    use oapkg::spec::{Oaid, Spec, Tier};
    let store = oapkg::state::StateStore::new(env.path(STATE));
    let (lock, _) = store.lock_and_load("oapkg apply", Duration::ZERO).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let spec = Spec {
        oaid: Oaid::parse("9").unwrap(),
        tier: Tier::Trial,
        start: "2026-12-01".parse().unwrap(),
        duration_months: 1,
    };
    journal
        .record_intent(&spec.key(), &spec, None, jiff::Timestamp::now())
        .unwrap();
    assert!(env.path(JOURNAL).is_file());
}

const JOURNAL: &str = "state/oapkg.state.json.journal";

/// A journal beside a lost state is kept with the state it belongs to:
/// restore brings the backup back only when the journal was recorded
/// against the backup's version (its purchases then show), and refuses
/// when it was recorded against the lost version (the backup would hide
/// them).
#[test]
fn state_restore_keeps_a_journal_that_fits_and_refuses_one_that_does_not() {
    // Recorded against the lost state (serial 2): refused.
    let env = lost_state();
    env.run(&["state", "restore"]).code(0);
    env.import("8", "trial", "2026-12-01", "1", &[]).code(0);
    leave_a_journal(&env);
    std::fs::remove_file(env.path(STATE)).unwrap();
    let journal = env.read(JOURNAL);
    env.run(&["state", "restore"])
        .code(1)
        .stderr_has(
            "the journal state/oapkg.state.json.journal beside the state does not fit the backup",
        )
        .stderr_has("nothing was changed");
    assert!(!env.path(STATE).exists());
    assert_eq!(env.read(JOURNAL), journal);

    // Recorded against the backup's version (a run died before its write
    // after the backup was made... or a crash right after): restored, and
    // the journaled purchase shows (unconfirmed: sent, outcome unknown).
    let env = lost_state();
    env.run(&["state", "restore"]).code(0);
    leave_a_journal(&env);
    std::fs::remove_file(env.path(STATE)).unwrap();
    env.run(&["state", "restore"])
        .code(0)
        .stdout_has("serial 1, 1 package(s)")
        .stdout_has("The journal state/oapkg.state.json.journal holds purchases recorded since");
    let list = env
        .run(&["state", "list", "--format", "json"])
        .code(0)
        .json();
    let nine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "9@2026-12-01")
        .expect("the journaled purchase shows");
    assert_eq!(nine["status"], "unconfirmed");
}
