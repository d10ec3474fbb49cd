//! The modes of the files oapkg writes: the state, its backup, journal and
//! lock, saved plans and temporary files are created `0600` whatever the
//! umask (000 here), and a state file or directory writable by group or
//! others is warned about on every write.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use esms_sim::{Fault, FaultRule, Stage};

use crate::support::{Env, Run, STATE, account, charges_by_key, pkgs, start, write_manifest};

const WARNING: &str = "is writable by group or others";

/// `cmd` run with umask 000: every mode oapkg asks for is the mode it gets.
fn umask_000(cmd: &mut Command) -> &mut Command {
    // SAFETY: between fork and exec only umask(2) is called, which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        })
    }
}

fn run(env: &Env, args: &[&str]) -> Run {
    Run::from(umask_000(&mut env.command(args)).output().unwrap())
}

fn mode(env: &Env, rel: &str) -> u32 {
    std::fs::metadata(env.path(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

fn no_warning(run: &Run) {
    assert!(!run.stderr.contains(WARNING), "{}", run.stderr);
}

/// Files left in the state directory, besides those named.
fn others_in_state_dir(env: &Env, known: &[&str]) -> Vec<String> {
    std::fs::read_dir(env.path("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !known.contains(&name.as_str()))
        .collect()
}

#[test]
fn every_file_written_is_owner_only_even_with_umask_000() {
    let all = pkgs(9201, 2);
    let [bought, hanging] = [&all[0], &all[1]];
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
    let env = Env::new().with_sim(&sim);

    let init = run(&env, &["init"]);
    init.code(0);
    no_warning(&init);
    // The directory oapkg made is not writable by others; the state is
    // its owner's only.
    assert_eq!(mode(&env, "state"), 0o755);
    assert_eq!(mode(&env, STATE), 0o600);

    write_manifest(&env, std::slice::from_ref(bought));
    let plan = run(&env, &["plan", "--out", "saved.plan"]);
    plan.code(0);
    assert_eq!(mode(&env, "saved.plan"), 0o600);
    let apply = run(&env, &["apply", "saved.plan"]);
    apply.code(0);
    no_warning(&apply);
    assert_eq!(mode(&env, STATE), 0o600);
    assert_eq!(mode(&env, &format!("{STATE}.backup")), 0o600);

    // The journal and the lock exist while a run is buying: look at them
    // while a request waits for its answer.
    write_manifest(&env, &all);
    let mut cmd = env.command(&["apply", "--auto-approve", "--timeout", "600"]);
    umask_000(&mut cmd);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !charges_by_key(&sim.ledger()).contains_key(&hanging.key()) {
        assert!(Instant::now() < deadline, "the purchase was not sent");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(mode(&env, &format!("{STATE}.lock")), 0o600);
    assert_eq!(mode(&env, &format!("{STATE}.journal")), 0o600);
    child.kill().unwrap();
    child.wait().unwrap();
    // The next write folds the killed run's journal: still 0600, and no
    // temporary file is left behind.
    let import = run(
        &env,
        &[
            "state",
            "import",
            "--oaid",
            "9",
            "--tier",
            "trial",
            "--start",
            "2027-03-01",
            "--duration",
            "1",
        ],
    );
    import.code(0);
    no_warning(&import);
    assert_eq!(mode(&env, STATE), 0o600);
    assert_eq!(mode(&env, &format!("{STATE}.backup")), 0o600);
    let leftovers = others_in_state_dir(&env, &["oapkg.state.json", "oapkg.state.json.backup"]);
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_state_or_directory_writable_by_others_is_warned_about_on_every_write() {
    let env = Env::with_state();
    let state = env.path(STATE);
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o666)).unwrap();
    for start in ["2027-01-01", "2027-02-01"] {
        let import = env.import("9", "trial", start, "1", &[]);
        import
            .code(0)
            .stderr_has(&format!("the state file {STATE} {WARNING} (mode 0666)"))
            .stderr_has(&format!("fix it with `chmod go-w {STATE}`"));
        assert!(
            !import.stderr.contains("state directory"),
            "{}",
            import.stderr
        );
    }
    // Reading is not a write: no warning.
    let list = env.run(&["state", "list"]);
    list.code(0);
    no_warning(&list);

    // Fixed, then the directory opened to everyone.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o600)).unwrap();
    let quiet = env.import("9", "trial", "2027-03-01", "1", &[]);
    quiet.code(0);
    no_warning(&quiet);
    let dir = env.path("state");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    env.import("9", "trial", "2027-04-01", "1", &[])
        .code(0)
        .stderr_has(&format!("the state directory state {WARNING} (mode 0777)"))
        .stderr_has("fix it with `chmod go-w state`");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}
