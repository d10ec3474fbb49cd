//! State safety through the real binary: refused files stay byte-for-byte
//! untouched, writers exclude each other, and a killed writer's lock does
//! not block the next one.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Env, STATE, manifest};

/// Today is 2027-01-15: `2@2026-12-01` (December only) has ended, so
/// `state rm` drops it without `--force`; `1@2026-12-01` runs on.
fn env_with_state() -> Env {
    let env = Env::new().today("2027-01-15");
    env.file(
        "oapkg.yaml",
        manifest("  - {oaid: \"1\", tier: premium, start: 2026-12-01, duration: 12}\n"),
    );
    env.import("1", "premium", "2026-12-01", "12", &[]).code(0);
    env.import("2", "trial", "2026-12-01", "1", &[]).code(0);
    env
}

/// Every command that reads or writes the state refuses `bytes` with a
/// message naming the file, and leaves it exactly as it was.
#[track_caller]
fn refused_and_untouched(bytes: &[u8], expect: &str) {
    let env = env_with_state();
    env.file(STATE, bytes);
    for args in [
        &["plan"][..],
        &["state", "list"],
        &["state", "rm", "2@2026-12-01"],
        &[
            "state",
            "import",
            "--oaid",
            "3",
            "--tier",
            "trial",
            "--start",
            "2026-12-01",
            "--duration",
            "1",
        ],
        &["state", "confirm", "1@2026-12-01"],
    ] {
        let run = env.run(args);
        run.code(1).stderr_has(STATE).stderr_has(expect);
        assert_eq!(
            env.read(STATE),
            bytes,
            "{args:?} changed the refused state file"
        );
    }
}

#[test]
fn an_edited_state_is_refused_and_untouched() {
    let env = env_with_state();
    let good = String::from_utf8(env.read(STATE)).unwrap();
    let edited = good.replacen("\"premium\"", "\"trial\"", 1);
    assert_ne!(good, edited);
    refused_and_untouched(edited.as_bytes(), "checksum");
}

#[test]
fn a_truncated_state_is_refused_and_untouched() {
    let env = env_with_state();
    let good = env.read(STATE);
    refused_and_untouched(&good[..good.len() / 2], "truncated");
}

#[test]
fn an_empty_state_is_refused_and_untouched() {
    refused_and_untouched(b"", "empty");
}

#[test]
fn an_unknown_format_version_is_refused_and_untouched() {
    let env = env_with_state();
    let good = String::from_utf8(env.read(STATE)).unwrap();
    let future = good.replacen("\"format_version\": 1", "\"format_version\": 99", 1);
    assert_ne!(good, future);
    refused_and_untouched(future.as_bytes(), "99");
}

/// A downgrade: the state was written by the next oapkg (format_version
/// 2). Every command refuses it, naming both versions and the way out, and
/// leaves it as it is.
#[test]
fn a_state_from_a_newer_oapkg_is_refused_naming_both_versions_and_the_way_out() {
    let env = env_with_state();
    let good = String::from_utf8(env.read(STATE)).unwrap();
    let newer = good.replacen("\"format_version\": 1,", "\"format_version\": 2,", 1);
    assert_ne!(good, newer);
    refused_and_untouched(newer.as_bytes(), "format_version 2");
    env.file(STATE, &newer);
    env.run(&["state", "list"])
        .code(1)
        .stderr_has(&format!(
            "this oapkg ({}) reads only format_version 1",
            env!("CARGO_PKG_VERSION")
        ))
        .stderr_has("use the oapkg release that wrote it");
}

#[test]
fn writes_are_deterministic_and_keep_a_backup() {
    let env = env_with_state();
    let before = env.read(STATE);
    let listed = env
        .run(&["state", "list", "--format", "json"])
        .code(0)
        .json();
    let keys: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["1@2026-12-01", "2@2026-12-01"]);
    for field in [
        "key",
        "oaid",
        "name",
        "tier",
        "start",
        "duration_months",
        "end",
        "status",
        "service_preview_id",
        "submitted_at",
    ] {
        assert!(
            listed[0].get(field).is_some(),
            "state list JSON lacks {field}"
        );
    }
    env.run(&["state", "rm", "2@2026-12-01"]).code(0);
    assert_eq!(
        env.read(&format!("{STATE}.backup")),
        before,
        "the backup is the previous version"
    );
    // Read-only commands write nothing.
    let after_rm = env.read(STATE);
    env.run(&["plan"]).code(0);
    env.run(&["state", "list"]).code(0);
    assert_eq!(env.read(STATE), after_rm);
}

#[test]
fn state_show_and_rm_of_unknown_keys() {
    let env = env_with_state();
    env.run(&["state", "show", "1@2026-12-01"])
        .code(0)
        .stdout_has("premium")
        .stdout_has("imported");
    env.run(&["state", "show", "9@2026-12-01"])
        .code(1)
        .stderr_has("not in the state file");
    let before = env.read(STATE);
    env.run(&["state", "rm", "1@2026-12-01", "9@2026-12-01"])
        .code(1)
        .stderr_has("nothing was removed");
    assert_eq!(env.read(STATE), before);
    env.run(&["state", "rm", "not-a-key"])
        .code(1)
        .stderr_has("OAID@YYYY-MM-DD");
}

/// Holds the state lock in a separate process (this test binary, re-run to
/// execute only [`lock_holder_child`]) until it is killed.
fn spawn_lock_holder(env: &Env) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "state::lock_holder_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OAPKG_IT_HOLD_LOCK", env.path(STATE))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lines.next().expect("lock holder exited").unwrap();
        if line.contains("LOCKED") {
            break;
        }
        assert!(Instant::now() < deadline, "lock holder never locked");
    }
    child
}

#[test]
#[ignore = "helper process for lock tests; run by spawn_lock_holder"]
fn lock_holder_child() {
    let Some(path) = std::env::var_os("OAPKG_IT_HOLD_LOCK") else {
        return;
    };
    let store = oapkg::state::StateStore::new(path);
    let _lock = store.lock("oapkg apply", Duration::ZERO).unwrap();
    println!("LOCKED");
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_second_writer_fails_fast_naming_the_holder() {
    let env = env_with_state();
    let before = env.read(STATE);
    let mut holder = spawn_lock_holder(&env);
    let started = Instant::now();
    let run = env.run(&["state", "rm", "2@2026-12-01"]);
    let took = started.elapsed();
    run.code(1)
        .stderr_has(&format!("pid {}", holder.id()))
        .stderr_has("oapkg apply")
        .stderr_has("since");
    assert!(
        took < Duration::from_secs(5),
        "fails at once, took {took:?}"
    );
    assert_eq!(env.read(STATE), before);
    // Readers are not blocked by a writer.
    env.run(&["plan"]).code(0);
    env.run(&["state", "list"]).code(0);

    // With --lock-timeout it waits, and gets the lock once the holder is gone.
    let waiter = env
        .command(&["state", "rm", "2@2026-12-01", "--lock-timeout", "20"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SIGKILL: no chance to clean up. The OS drops the lock with the process.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let waited = waiter.wait_with_output().unwrap();
    assert_eq!(
        waited.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    env.run(&["state", "list"]).code(0);
    assert!(!env.run(&["state", "list"]).stdout.contains("2@2026-12-01"));
}

#[test]
fn a_killed_writer_leaves_no_lock_that_blocks() {
    let env = env_with_state();
    let mut holder = spawn_lock_holder(&env);
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The lock file (with the dead holder's details) may remain; it must not block.
    env.run(&["state", "rm", "2@2026-12-01"]).code(0);
    env.run(&["state", "unlock"]).code(0);
}
