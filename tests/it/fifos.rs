//! A FIFO (or a directory) where oapkg expects a file is refused at once,
//! never waited on: the state file, its journal,
//! the credentials file, a manifest named with `-f`, a `*.yaml` in a
//! manifest directory and a saved plan; for `plan`, `state list`, `apply`
//! and `validate`, exit 1 within a second, naming the file. `watch` with a
//! FIFO among its manifests logs the error and still stops promptly on
//! SIGTERM.

use std::path::Path;
use std::time::{Duration, Instant};

use esms_sim::SimConfig;

use crate::support::{Env, Run, manifest, run as run_against, start};
use crate::watch::{Watch, message};

const OAID: &str = "4097311281936189049";

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo(3) touches no other memory.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn good_manifest(env: &Env) {
    env.file(
        "oapkg.yaml",
        manifest(&format!(
            "  - oaid: \"{OAID}\"\n    tier: trial\n    start: 2027-01-01\n    duration: 1\n"
        )),
    );
}

/// Exit 1 within a second, the file named, "must be a regular file" said.
#[track_caller]
fn refused_at_once(what: &str, started: Instant, run: &Run, file: &str) {
    let took = started.elapsed();
    assert_eq!(
        run.code, 1,
        "{what}: exit code\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout, run.stderr
    );
    assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
    assert!(
        run.stderr.contains(file),
        "{what}: the message names {file}\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("must be a regular file") || run.stderr.contains("it must be one"),
        "{what}: the message says what is wrong\n{}",
        run.stderr
    );
}

/// Runs `args` (pointed at a simulator with the right keys, for `apply`)
/// and checks the refusal.
#[track_caller]
fn check(env: &Env, what: &str, args: &[&str], file: &str) {
    let sim = start(SimConfig::new().oaid(OAID));
    let started = Instant::now();
    let run = run_against(env, &sim, args);
    refused_at_once(what, started, &run, file);
    assert!(sim.requests().is_empty(), "{what}: nothing was sent");
}

#[test]
fn a_fifo_manifest_is_refused_by_plan_validate_and_apply() {
    let env = Env::with_state();
    mkfifo(&env.path("pipe.yaml"));
    for args in [
        &["plan", "-f", "pipe.yaml"][..],
        &["validate", "-f", "pipe.yaml"],
        &["apply", "--auto-approve", "-f", "pipe.yaml"],
    ] {
        check(&env, &args.join(" "), args, "pipe.yaml");
    }
}

#[test]
fn a_fifo_yaml_in_a_manifest_directory_is_refused() {
    let env = Env::with_state();
    env.file(
        "packages/a.yaml",
        manifest(&format!(
            "  - oaid: \"{OAID}\"\n    tier: trial\n    start: 2027-01-01\n    duration: 1\n"
        )),
    );
    mkfifo(&env.path("packages/b.yaml"));
    for args in [
        &["plan", "-f", "packages"][..],
        &["validate", "-f", "packages"],
        &["apply", "--auto-approve", "-f", "packages"],
    ] {
        check(&env, &args.join(" "), args, "b.yaml");
    }
}

#[test]
fn a_fifo_state_file_or_journal_is_refused() {
    let env = Env::new();
    good_manifest(&env);
    mkfifo(&env.path("state/oapkg.state.json"));
    for args in [
        &["plan"][..],
        &["state", "list"],
        &["state", "show", "4097311281936189049@2027-01-01"],
        &["apply", "--auto-approve"],
        &["expiring"],
    ] {
        check(
            &env,
            &format!("state FIFO: {}", args.join(" ")),
            args,
            "oapkg.state.json",
        );
    }
    // A directory there is refused the same way.
    let env = Env::new();
    good_manifest(&env);
    std::fs::create_dir_all(env.path("state/oapkg.state.json")).unwrap();
    check(
        &env,
        "state directory",
        &["state", "list"],
        "oapkg.state.json",
    );

    let env = Env::new();
    good_manifest(&env);
    env.import(OAID, "trial", "2026-01-01", "1", &[]).code(0);
    mkfifo(&env.path("state/oapkg.state.json.journal"));
    for args in [
        &["plan"][..],
        &["state", "list"],
        &["apply", "--auto-approve"],
    ] {
        check(
            &env,
            &format!("journal FIFO: {}", args.join(" ")),
            args,
            "oapkg.state.json.journal",
        );
    }
}

#[test]
fn a_fifo_credentials_file_or_plan_file_is_refused() {
    let env = Env::with_state();
    good_manifest(&env);
    let sim = start(SimConfig::new().oaid(OAID));
    mkfifo(&env.path("creds.env"));
    let started = Instant::now();
    let run = run_against(
        &env,
        &sim,
        &["apply", "--auto-approve", "--credentials", "creds.env"],
    );
    refused_at_once("credentials FIFO", started, &run, "creds.env");

    mkfifo(&env.path("saved.plan"));
    let started = Instant::now();
    let run = run_against(&env, &sim, &["apply", "saved.plan"]);
    refused_at_once("plan file FIFO", started, &run, "saved.plan");
    assert!(sim.requests().is_empty(), "nothing was sent");
}

#[test]
fn watch_with_a_fifo_manifest_logs_the_error_and_stops_on_sigterm() {
    for poll in [false, true] {
        let env = Env::new();
        env.file(
            "packages/a.yaml",
            manifest(&format!(
                "  - oaid: \"{OAID}\"\n    tier: trial\n    start: 2027-01-01\n    duration: 1\n"
            )),
        );
        mkfifo(&env.path("packages/b.yaml"));
        let mut args = vec!["-f", "packages", "--interval", "1"];
        if poll {
            args.extend(["--poll", "1"]);
        }
        let mut watch = Watch::start(&env, &args);
        let error = watch.record("an error about b.yaml", |v| {
            v["level"] == "ERROR" && message(v).contains("b.yaml")
        });
        assert!(
            message(&error).contains("must be a regular file"),
            "{error}"
        );
        let sent = Instant::now();
        watch.0.signal(libc::SIGTERM);
        let code = watch.0.wait_exit(Duration::from_secs(5));
        assert_eq!(code, 0, "poll={poll}\n{}", watch.0.transcript());
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "poll={poll}: SIGTERM took {:?}",
            sent.elapsed()
        );
    }
}
