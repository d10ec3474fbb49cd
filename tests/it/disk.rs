//! Disk faults through the real binary: a state directory
//! that cannot be written, a disk that fills up while the journal or the
//! state file is being written, and paths that are not what they should be.
//! Each must end in a clear error naming the path and what to do, leave the
//! state file byte-for-byte as it was (or a valid newer one), and buy
//! nothing after the first failed write (the simulator's request log and
//! ledger say what was sent and charged).
//!
//! How the faults are made, so the tests run both unprivileged and as root
//! (CI runs them as root, where permissions stop nothing):
//!
//! - **a full disk**: `RLIMIT_FSIZE` on the child, with `SIGXFSZ` ignored,
//!   so every write past N bytes of a file fails with `EFBIG`, unprivileged
//!   and everywhere; and where a mount namespace can be made (root, or
//!   unprivileged user namespaces), a real `ENOSPC` from a small tmpfs;
//! - **a read-only state directory**: `chmod 555` (not as root: root
//!   ignores it), `chattr +i` (root, on a file system that supports it), and
//!   a read-only bind mount in a mount namespace. A mechanism that is not
//!   available here is skipped with a message saying so.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use esms_sim::Call;
use esms_sim::{BlockingSimHandle, SimControl};

use crate::support::{
    Env, Pkg, Run, STATE, account, assert_bought_once_each, charges_by_key, last_line, manifest,
    oapkg, pkgs, recorded, start,
};

const JOURNAL: &str = "state/oapkg.state.json.journal";
const BACKUP: &str = "state/oapkg.state.json.backup";
const LOCK: &str = "state/oapkg.state.json.lock";

// ---- helpers --------------------------------------------------------------

/// Runs `cmd` with every file it writes limited to `bytes` (writes past it
/// fail with EFBIG instead of killing it with SIGXFSZ): a disk that is full
/// from that size on.
fn with_file_size_limit(mut cmd: Command, bytes: u64) -> Run {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls are made.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0
                || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Run::from(cmd.output().expect("run oapkg"))
}

/// The manifest of `pkgs`, each named `OA <oaid>` padded with `x` to
/// `name_len(i)` characters: names make intent lines (and state records)
/// as long as a test needs, outcome lines stay short.
fn write_named(env: &Env, pkgs: &[Pkg], name_len: impl Fn(usize) -> usize) {
    let body: String = pkgs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = padded(&format!("OA {}", p.oaid), name_len(i));
            format!(
                "  - oaid: \"{}\"\n    name: {name}\n    tier: {}\n    start: {}\n    duration: {}\n",
                p.oaid, p.tier, p.start, p.months
            )
        })
        .collect();
    env.file("oapkg.yaml", manifest(&body));
}

fn padded(name: &str, len: usize) -> String {
    format!("{name}{}", "x".repeat(len.saturating_sub(name.len())))
}

/// `state import` of a trial package for `oaid` with a `name_len` name.
fn import(env: &Env, oaid: u64, name_len: usize) {
    let oaid = oaid.to_string();
    let name = padded(&format!("imported {oaid}"), name_len);
    env.import(&oaid, "trial", "2026-12-01", "1", &["--name", &name])
        .code(0);
}

/// The OAIDs of the purchase requests the simulator received, in order.
fn purchased_oaids(sim: &SimControl) -> Vec<String> {
    sim.requests()
        .iter()
        .filter(|r| r.call == Call::Purchase)
        .map(|r| r.body["OAID"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// What is in the state directory besides the journal, lock and files
/// oapkg keeps: temporary files left behind would show here.
fn leftovers(env: &Env) -> BTreeSet<String> {
    let keep = [
        "oapkg.state.json",
        "oapkg.state.json.backup",
        "oapkg.state.json.journal",
        "oapkg.state.json.lock",
    ];
    std::fs::read_dir(env.path("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

fn read_opt(env: &Env, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(env.path(rel)).ok()
}

/// The same command as `cmd` (program, arguments, environment, directory),
/// run by `prefix` (e.g. `unshare -m sh -c ...`).
fn wrapped(prefix: &[String], cmd: &Command) -> Command {
    let mut outer = Command::new(&prefix[0]);
    outer
        .args(&prefix[1..])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        outer.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => outer.env(key, value),
            None => outer.env_remove(key),
        };
    }
    outer
}

/// The memory page size: what a tmpfs allocates in.
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `unshare ARGS true` works here; `-r` (a user namespace) first,
/// which works unprivileged, then without it (root only).
fn unshare_flags() -> Option<Vec<&'static str>> {
    [vec!["-r", "-m"], vec!["-m"]].into_iter().find(|flags| {
        Command::new("unshare")
            .args(flags)
            .arg("true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

// ---- a full disk: the journal ---------------------------------------------

#[test]
fn disk_full_at_the_first_intent_sends_nothing_and_changes_nothing() {
    let env = Env::new();
    import(&env, 9001, 0);
    let before = env.read(STATE);
    let all = pkgs(1001, 3);
    // Each intent line is over 1 KiB; the lock label fits well under it.
    write_named(&env, &all, |_| 1200);
    let sim = start(account(&all));
    let run = with_file_size_limit(oapkg(&env, &sim, &["apply", "--auto-approve"]), 1024);
    run.code(1)
        .stderr_has("Stopped early: the journal could not be written: could not append to the journal state/oapkg.state.json.journal")
        .stderr_has("free disk space")
        .stderr_has("File too large")
        .stderr_has("No new purchase was started after the journal failed")
        .stderr_has("3 planned package(s) were not sent");
    assert_eq!(
        last_line(&run),
        "Apply complete: 0 purchased, 0 failed, 0 unconfirmed."
    );
    assert!(purchased_oaids(&sim).is_empty(), "nothing was sent");
    assert!(sim.ledger().is_empty());
    assert_eq!(env.read(STATE), before, "the state file is untouched");
    assert!(leftovers(&env).is_empty(), "{:?}", leftovers(&env));
    assert!(!env.path(LOCK).exists());

    // With room again, the plan is what it was and apply buys it, once.
    env.run(&["plan"]).code(0).stdout_has("Plan: 3 to purchase");
    crate::support::apply(&env, &sim, &[]).code(0);
    assert_bought_once_each(&env, &sim, &all);
}

#[test]
fn disk_full_at_a_later_intent_stops_there_and_sends_nothing_after() {
    let env = Env::with_state();
    let all = pkgs(1101, 5);
    // 1101 and 1102 record their lines in well under 2 KiB; 1103's intent
    // alone is bigger than what is left.
    write_named(&env, &all, |i| if i == 2 { 3000 } else { 0 });
    let sim = start(account(&all));
    let run = with_file_size_limit(
        oapkg(
            &env,
            &sim,
            &["apply", "--auto-approve", "--parallelism", "1"],
        ),
        2048,
    );
    run.code(1)
        .stdout_has("+ purchase 1101@2027-01-01: submitted")
        .stderr_has("Stopped early: the journal could not be written")
        .stderr_has("state/oapkg.state.json.journal")
        .stderr_has("free disk space");
    // 1102's answer is written with 1103's intent (one batch), or before
    // it: recorded, or unconfirmed if it shared the failed write.
    assert_eq!(
        purchased_oaids(&sim),
        ["1101", "1102"],
        "nothing after 1102"
    );
    let state = recorded(&env);
    assert_eq!(state["1101@2027-01-01"]["status"], "submitted");
    let status = state["1102@2027-01-01"]["status"].as_str().unwrap();
    assert!(status == "submitted" || status == "unconfirmed", "{status}");
    assert_eq!(state.len(), 2, "{state:?}");
    assert!(leftovers(&env).is_empty(), "{:?}", leftovers(&env));

    // With room again: the rest is bought, 1102 confirmed (199) if it was
    // unconfirmed, and nothing is charged twice.
    crate::support::apply(&env, &sim, &["--retry-unconfirmed"]).code(0);
    assert_bought_once_each(&env, &sim, &all);
}

#[test]
fn disk_full_recording_answers_stops_new_requests_and_keeps_the_sent_ones_unconfirmed() {
    let env = Env::new();
    import(&env, 9001, 0);
    let before = env.read(STATE);
    let all = pkgs(1201, 6);
    write_named(&env, &all, |_| 1000);
    let sim = start(account(&all).latency(std::time::Duration::from_millis(50)));
    // Room for the three intents in flight (about 1.3 KiB each), not for
    // an answer after them; nor for the folded state file.
    let run = with_file_size_limit(
        oapkg(
            &env,
            &sim,
            &["apply", "--auto-approve", "--parallelism", "3"],
        ),
        4096,
    );
    run.code(1)
        .stderr_has("Stopped early: the journal could not be written")
        .stderr_has("3 planned package(s) were not sent")
        .stderr_has("(one whose answer could not be recorded shows as unconfirmed")
        // The final fold failed too: the journal is kept.
        .stderr_has("error: the purchase requests above were sent, but the state file state/oapkg.state.json could not be updated")
        .stderr_has("Nothing is lost: the journal state/oapkg.state.json.journal keeps every purchase")
        .stderr_has("Free disk space or fix the permissions, then run oapkg again")
        .stderr_has("File too large");
    assert_eq!(
        last_line(&run),
        "Apply complete: 0 purchased, 0 failed, 3 unconfirmed."
    );
    // The three in flight finished; nothing else was sent.
    let sent: BTreeSet<String> = purchased_oaids(&sim).into_iter().collect();
    assert_eq!(sent, ["1201", "1202", "1203"].map(String::from).into());
    assert_eq!(sim.ledger().len(), 3);
    assert_eq!(env.read(STATE), before, "the state file is untouched");
    assert!(env.path(JOURNAL).exists(), "the journal is kept");
    assert!(leftovers(&env).is_empty(), "{:?}", leftovers(&env));

    // Never dropped, never resent silently: plan and apply see them
    // unconfirmed, and apply without --retry-unconfirmed leaves them alone.
    env.run(&["plan"])
        .code(0)
        .stdout_has("Plan: 3 to purchase, 0 to replace, 3 unconfirmed");
    crate::support::apply(&env, &sim, &[])
        .code(1)
        .stdout_has("Apply complete: 3 purchased, 0 failed, 3 unconfirmed.");
    assert!(!env.path(JOURNAL).exists(), "folded");
    assert_eq!(sim.ledger().len(), 6);
    crate::support::apply(&env, &sim, &["--retry-unconfirmed"]).code(0);
    assert_bought_once_each(&env, &sim, &all);
}

// ---- a full disk: the state file ------------------------------------------

/// A state of twelve imported packages with long names: about 17 KiB, more
/// than the 8 KiB the tests below leave for any file.
fn env_with_big_state() -> Env {
    let env = Env::new();
    // Declares nothing: `state rm` reads the manifests (it refuses a
    // declared key) and must get to the disk; `--force` because the
    // packages' periods have not ended (these tests are about the disk).
    env.file(
        "oapkg.yaml",
        "apiVersion: oapkg/v1\nkind: PackageSet\npackages: []\n",
    );
    for oaid in 9001..9013 {
        import(&env, oaid, 1000);
    }
    assert!(env.read(STATE).len() > 16 * 1024);
    env
}

#[test]
fn disk_full_at_the_final_fold_keeps_the_journal_and_the_next_run_folds_it() {
    let env = env_with_big_state();
    let before = env.read(STATE);
    let backup = read_opt(&env, BACKUP);
    let all = pkgs(1301, 3);
    crate::support::write_manifest(&env, &all[..2]);
    let sim = start(account(&all));
    let run = with_file_size_limit(oapkg(&env, &sim, &["apply", "--auto-approve"]), 8192);
    run.code(1)
        .stdout_has("Apply complete: 2 purchased, 0 failed, 0 unconfirmed.")
        .stderr_has("the state file state/oapkg.state.json could not be updated")
        .stderr_has("the journal state/oapkg.state.json.journal keeps every purchase")
        .stderr_has("could not write the new version of")
        .stderr_has("File too large");
    assert_eq!(env.read(STATE), before, "the state file is untouched");
    assert_eq!(read_opt(&env, BACKUP), backup, "so is its backup");
    assert!(leftovers(&env).is_empty(), "{:?}", leftovers(&env));
    assert!(!env.path(LOCK).exists());
    assert_eq!(sim.ledger().len(), 2);

    // Every purchase is visible before the fold...
    env.run(&["plan"])
        .code(0)
        .stdout_has("No changes.")
        .stdout_has("12 orphaned");
    let state = recorded(&env);
    assert_eq!(state["1301@2027-01-01"]["status"], "submitted");
    assert_eq!(state["1302@2027-01-01"]["status"], "submitted");
    // ...and the next writer folds the journal, then buys only what is new.
    crate::support::write_manifest(&env, &all);
    crate::support::apply(&env, &sim, &[])
        .code(0)
        .stdout_has("Plan: 1 to purchase");
    assert!(!env.path(JOURNAL).exists());
    let text = String::from_utf8(env.read(STATE)).unwrap();
    for key in ["1301@2027-01-01", "1302@2027-01-01", "1303@2027-01-01"] {
        assert!(text.contains(key), "{key} is in the state file");
    }
    let by_key = charges_by_key(&sim.ledger());
    assert_eq!(by_key.len(), 3);
    assert!(by_key.values().all(|c| c.len() == 1));
}

#[test]
fn disk_full_at_state_import_and_rm_changes_nothing() {
    let env = env_with_big_state();
    let before = env.read(STATE);
    let backup = read_opt(&env, BACKUP);
    let import = [
        "state",
        "import",
        "--oaid",
        "42",
        "--tier",
        "trial",
        "--start",
        "2026-12-01",
        "--duration",
        "1",
    ];
    for args in [&import[..], &["state", "rm", "--force", "9001@2026-12-01"]] {
        with_file_size_limit(env.command(args), 8192)
            .code(1)
            .stderr_has("error: could not write the new version of state/oapkg.state.json")
            .stderr_has("free disk space, then run oapkg again")
            .stderr_has("File too large");
        assert_eq!(env.read(STATE), before, "{args:?}");
        assert_eq!(read_opt(&env, BACKUP), backup, "{args:?}");
        assert!(leftovers(&env).is_empty(), "{:?}", leftovers(&env));
        assert!(!env.path(LOCK).exists());
        assert!(!env.path(JOURNAL).exists());
    }
    // With room again both work.
    env.run(&import).code(0);
    env.run(&["state", "rm", "--force", "9001@2026-12-01"])
        .code(0);
    let state = recorded(&env);
    assert!(state.contains_key("42@2026-12-01"));
    assert!(!state.contains_key("9001@2026-12-01"));
}

// ---- a full disk for real: ENOSPC on a small tmpfs -------------------------

/// A small tmpfs mounted over a directory in a mount namespace of its own,
/// kept alive by a sleeping process; commands run inside with `nsenter`.
struct SmallDisk {
    holder: Child,
    flags: Vec<&'static str>,
}

impl SmallDisk {
    /// Mounts a tmpfs of `pages` pages over `dir`, then fills all but
    /// `free` of them with a file named `filler`. `None` where no mount
    /// namespace can be made.
    fn mount(dir: &Path, pages: u64, free: u64) -> Option<SmallDisk> {
        let flags = unshare_flags()?;
        let page = page_size();
        let script = "mount -t tmpfs -o size=$1 tmpfs \"$3\" && head -c $2 /dev/zero > \"$3/filler\" && echo mounted && exec sleep 600";
        let mut holder = Command::new("unshare")
            .args(&flags)
            .args(["sh", "-c", script, "sh"])
            .arg((pages * page).to_string())
            .arg(((pages - free) * page).to_string())
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take()?).read_line(&mut line);
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let _ = holder.wait();
            return None;
        }
        Some(SmallDisk { holder, flags })
    }

    /// `cmd`, run inside the namespace.
    fn inside(&self, cmd: &Command) -> Command {
        let mut prefix: Vec<String> = ["nsenter", "-t", &self.holder.id().to_string(), "-m"]
            .map(String::from)
            .into();
        if self.flags.contains(&"-r") {
            prefix.extend(["-U", "--preserve-credentials"].map(String::from));
        }
        // Entering a mount namespace moves to its root; the directory must
        // be looked up again inside (nsenter's --wd opens it outside, where
        // the tmpfs is not mounted).
        let dir = cmd.get_current_dir().unwrap_or(Path::new("/"));
        prefix.extend(
            ["--", "sh", "-c", "cd \"$1\" && shift && exec \"$@\"", "sh"].map(String::from),
        );
        prefix.push(dir.display().to_string());
        wrapped(&prefix, cmd)
    }

    fn run(&self, cmd: &Command) -> Run {
        Run::from(self.inside(cmd).output().expect("nsenter"))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn no_space_left_mid_apply_then_freeing_space_loses_and_double_buys_nothing() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("state")).unwrap();
    // Three free pages: one for the empty state `init` writes, one for the
    // lock label (init's and apply's), one for the journal (the lines of
    // two or three packages, with names a quarter page long); none for the
    // new state file at the fold.
    let Some(disk) = SmallDisk::mount(&env.path("state"), 16, 3) else {
        eprintln!(
            "skipped: cannot mount a small tmpfs in a mount namespace here (unshare -rm / -m)"
        );
        return;
    };
    disk.run(&env.command(&["init"])).code(0);
    let all = pkgs(1401, 10);
    let name_len = usize::try_from(page_size() / 4).unwrap();
    write_named(&env, &all, |_| name_len);
    let sim = start(account(&all));
    let run = disk.run(&oapkg(
        &env,
        &sim,
        &["apply", "--auto-approve", "--parallelism", "1"],
    ));
    run.code(1)
        .stderr_has("Stopped early: the journal could not be written")
        .stderr_has("No space left on device")
        .stderr_has("state/oapkg.state.json.journal");
    // What was sent is a prefix of the plan (key order, one at a time),
    // each charged once; nothing was sent after the failed write.
    let sent = purchased_oaids(&sim);
    let bought = sent.len();
    assert!((1..all.len()).contains(&bought), "{sent:?}");
    let expected: Vec<String> = all[..bought].iter().map(|p| p.oaid.clone()).collect();
    assert_eq!(sent, expected);
    assert_eq!(sim.ledger().len(), bought);
    // Every one of them is recorded, as bought or unconfirmed.
    let listed = disk.run(&env.command(&["state", "list", "--format", "json"]));
    listed.code(0);
    let state = listed.json();
    let state = state.as_array().unwrap();
    assert_eq!(state.len(), bought, "{state:?}");
    assert!(
        state
            .iter()
            .all(|r| r["status"] == "submitted" || r["status"] == "unconfirmed")
    );

    // Free the space: the next plan sees every purchase, the next apply
    // folds them and buys the rest, confirming (199) any unconfirmed one.
    let mut rm = Command::new("rm");
    rm.arg(env.path("state/filler"));
    disk.run(&rm).code(0);
    disk.run(&env.command(&["plan"]))
        .code(0)
        .stdout_has(&format!("Plan: {} to purchase", all.len() - bought));
    disk.run(&oapkg(
        &env,
        &sim,
        &["apply", "--auto-approve", "--retry-unconfirmed"],
    ))
    .code(0);
    let by_key = charges_by_key(&sim.ledger());
    assert_eq!(by_key.len(), all.len());
    assert!(by_key.values().all(|c| c.len() == 1), "{by_key:?}");
    let state = disk.run(&env.command(&["state", "list", "--format", "json"]));
    let state = state.json();
    assert!(
        state
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "submitted")
    );
    disk.run(&env.command(&["plan"]))
        .code(0)
        .stdout_has("No changes.");
    // Folded: a state file and no journal (looked at inside the namespace,
    // the only place the tmpfs is seen).
    for check in [&["-f", STATE][..], &["!", "-e", JOURNAL]] {
        let mut test = Command::new("test");
        test.args(check).current_dir(env.path(""));
        disk.run(&test).code(0);
    }
}

// ---- a state directory that cannot be written -------------------------------

/// One way of making the state directory read-only, undone on drop.
enum ReadOnly {
    /// `chmod 555`: stops everyone but root.
    Chmod(PathBuf),
    /// `chattr +i`: no entry may be created, removed or renamed, even by root.
    Immutable(PathBuf),
    /// A read-only bind mount, in a mount namespace each command runs in.
    Mount(Vec<String>),
}

impl ReadOnly {
    /// Every mechanism, each returning `None` (and saying why on stderr)
    /// where it is not available.
    const ALL: [fn(&Path) -> Option<ReadOnly>; 3] =
        [ReadOnly::chmod, ReadOnly::immutable, ReadOnly::mount];

    fn chmod(dir: &Path) -> Option<ReadOnly> {
        use std::os::unix::fs::PermissionsExt;
        if is_root() {
            eprintln!("skipped chmod 555: running as root, which permissions do not stop");
            return None;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).ok()?;
        Some(ReadOnly::Chmod(dir.to_owned()))
    }

    fn immutable(dir: &Path) -> Option<ReadOnly> {
        let done = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            eprintln!(
                "skipped chattr +i: not available here (needs root and a file system that supports it)"
            );
            return None;
        }
        Some(ReadOnly::Immutable(dir.to_owned()))
    }

    fn mount(dir: &Path) -> Option<ReadOnly> {
        let Some(flags) = unshare_flags() else {
            eprintln!("skipped read-only bind mount: no mount namespace here");
            return None;
        };
        let mut prefix = vec!["unshare".to_owned()];
        prefix.extend(flags.iter().map(|f| (*f).to_owned()));
        prefix.extend(
            [
                "sh",
                "-c",
                "d=$1; shift; mount --bind \"$d\" \"$d\" && mount -o remount,bind,ro \"$d\" && exec \"$@\"",
                "sh",
            ]
            .map(String::from),
        );
        prefix.push(dir.display().to_string());
        let mut probe = Command::new(&prefix[0]);
        probe.args(&prefix[1..]).arg("true").stderr(Stdio::null());
        if !probe.status().is_ok_and(|s| s.success()) {
            eprintln!("skipped read-only bind mount: mounting is not allowed here");
            return None;
        }
        Some(ReadOnly::Mount(prefix))
    }

    fn name(&self) -> &'static str {
        match self {
            ReadOnly::Chmod(_) => "chmod 555",
            ReadOnly::Immutable(_) => "chattr +i",
            ReadOnly::Mount(_) => "read-only mount",
        }
    }

    fn run(&self, cmd: Command) -> Run {
        let mut cmd = match self {
            ReadOnly::Mount(prefix) => wrapped(prefix, &cmd),
            _ => cmd,
        };
        Run::from(cmd.output().expect("run oapkg"))
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        match self {
            ReadOnly::Chmod(dir) => {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
            }
            ReadOnly::Immutable(dir) => {
                let _ = Command::new("chattr").arg("-i").arg(dir).status();
            }
            ReadOnly::Mount(_) => {}
        }
    }
}

#[test]
fn an_unwritable_state_directory_is_named_and_nothing_is_bought() {
    let mut tried = 0;
    for make in ReadOnly::ALL {
        for lock_left_behind in [false, true] {
            let env = Env::new();
            import(&env, 9001, 0);
            if lock_left_behind {
                // As a run killed with -9 leaves it: the label of a dead process.
                env.file(LOCK, "{\"pid\":999999,\"host\":\"gone\",\"command\":\"oapkg apply\",\"since\":\"2026-11-26T10:00:00Z\"}\n");
            }
            let before = env.read(STATE);
            let all = pkgs(1501, 2);
            crate::support::write_manifest(&env, &all);
            let sim = start(account(&all));
            let Some(ro) = make(&env.path("state")) else {
                break;
            };
            tried += 1;
            let what = format!("{} (lock file left behind: {lock_left_behind})", ro.name());

            // Readers need no write.
            let plan = ro.run(env.command(&["plan"]));
            plan.code(0).stdout_has("Plan: 2 to purchase");
            // Writers fail, naming what they could not write, at the lock
            // or (when a lock file is already there to be reused) at the
            // first intent.
            let run = ro.run(env.command(&IMPORT_ONE));
            run.code(1)
                .stderr_has("could not ")
                .stderr_has("state/oapkg.state.json")
                .stderr_has("its permissions and the free disk space, then run oapkg again");
            let run = ro.run(oapkg(&env, &sim, &["apply", "--auto-approve"]));
            run.code(1).stderr_has("state/oapkg.state.json");
            if run.stderr.contains("Stopped early") {
                run.stderr_has("could not create the journal state/oapkg.state.json.journal");
            } else {
                run.stderr_has("lock file state/oapkg.state.json.lock");
            }
            assert!(purchased_oaids(&sim).is_empty(), "{what}: nothing was sent");
            assert!(sim.ledger().is_empty(), "{what}");
            drop(ro);
            assert_eq!(
                env.read(STATE),
                before,
                "{what}: the state file is untouched"
            );
            assert!(
                !env.path(JOURNAL).exists() || env.read(JOURNAL).is_empty(),
                "{what}"
            );
            assert!(leftovers(&env).is_empty(), "{what}: {:?}", leftovers(&env));
            eprintln!("checked: {what}");

            // Writable again: everything works.
            crate::support::apply(&env, &sim, &[]).code(0);
            assert_bought_once_each(&env, &sim, &all);
        }
    }
    eprintln!("{tried} read-only check(s) made");
}

// ---- paths that are not what they should be --------------------------------

/// A state writer that sends nothing: records one package bought elsewhere.
const IMPORT_ONE: [&str; 10] = [
    "state",
    "import",
    "--oaid",
    "7",
    "--tier",
    "trial",
    "--start",
    "2026-12-01",
    "--duration",
    "1",
];

/// Everything that reads or writes the state refuses with `expect`, buys
/// nothing and leaves the state directory as it was.
#[track_caller]
fn every_command_refuses(env: &Env, sim: &SimControl, expect: &str, readers_too: bool) {
    let before = dir_snapshot(&env.path("state"));
    let mut commands: Vec<&[&str]> =
        vec![&IMPORT_ONE, &["state", "rm", "--force", "9001@2026-12-01"]];
    if readers_too {
        commands.extend([&["plan"][..], &["state", "list"]]);
    }
    for args in commands {
        env.run(args).code(1).stderr_has(expect);
    }
    crate::support::apply(env, sim, &[])
        .code(1)
        .stderr_has(expect);
    assert!(sim.requests().iter().all(|r| r.call != Call::Purchase));
    assert!(sim.ledger().is_empty());
    assert_eq!(dir_snapshot(&env.path("state")), before, "nothing changed");
}

/// Every entry under `dir` with its kind and content (a link: its target).
fn dir_snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_symlink() {
                format!("link to {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else {
                format!("file {:?}", std::fs::read(&path).unwrap())
            };
            out.push((path, what));
        }
    }
    out
}

/// A state with one imported package, a manifest buying one more, and a
/// simulator to buy it from.
fn env_for_paths() -> (Env, BlockingSimHandle) {
    let env = Env::new();
    import(&env, 9001, 0);
    let all = pkgs(1601, 1);
    crate::support::write_manifest(&env, &all);
    let sim = start(account(&all));
    (env, sim)
}

#[test]
fn a_directory_at_the_state_path_is_refused() {
    let env = Env::new();
    let all = pkgs(1601, 1);
    crate::support::write_manifest(&env, &all);
    let sim = start(account(&all));
    std::fs::create_dir_all(env.path(STATE)).unwrap();
    env.file(&format!("{STATE}/keep"), "someone's file");
    every_command_refuses(
        &env,
        &sim,
        "state path state/oapkg.state.json is not a regular file",
        true,
    );
}

#[test]
fn a_symlinked_state_path_is_refused_naming_the_real_path() {
    let (env, sim) = env_for_paths();
    // The real file elsewhere, a link where the state is expected.
    std::fs::create_dir_all(env.path("real")).unwrap();
    std::fs::rename(env.path(STATE), env.path("real/oapkg.state.json")).unwrap();
    std::os::unix::fs::symlink("../real/oapkg.state.json", env.path(STATE)).unwrap();
    let real = env.read("real/oapkg.state.json");
    let real_path = std::fs::canonicalize(env.path("real/oapkg.state.json")).unwrap();
    every_command_refuses(
        &env,
        &sim,
        &format!(
            "state path state/oapkg.state.json is a symbolic link to {}; oapkg does not follow it",
            real_path.display()
        ),
        true,
    );
    env.run(&["plan"]).stderr_has(&format!(
        "pass the real path instead (--state {})",
        real_path.display()
    ));
    assert_eq!(env.read("real/oapkg.state.json"), real);
    // The real path works.
    env.run(&["plan", "--state", "real/oapkg.state.json"])
        .code(0)
        .stdout_has("Plan: 1 to purchase");
}

#[test]
fn a_dangling_symlink_at_the_state_path_is_refused_not_replaced() {
    let (env, sim) = env_for_paths();
    std::fs::remove_file(env.path(STATE)).unwrap();
    std::os::unix::fs::symlink("../elsewhere/oapkg.state.json", env.path(STATE)).unwrap();
    every_command_refuses(&env, &sim, "(which does not exist)", true);
    assert!(!env.path("elsewhere").exists());
}

#[test]
fn a_directory_at_the_journal_path_is_refused_by_every_command() {
    let (env, sim) = env_for_paths();
    std::fs::create_dir(env.path(JOURNAL)).unwrap();
    every_command_refuses(
        &env,
        &sim,
        "journal state/oapkg.state.json.journal is not a regular file",
        true,
    );
}

#[test]
fn a_journal_linked_to_dev_full_is_refused_not_read_forever() {
    // Reading /dev/full never ends: this used to exhaust memory.
    let (env, sim) = env_for_paths();
    std::os::unix::fs::symlink("/dev/full", env.path(JOURNAL)).unwrap();
    every_command_refuses(
        &env,
        &sim,
        "journal state/oapkg.state.json.journal is not a regular file",
        true,
    );
}

#[test]
fn a_directory_at_the_lock_path_stops_writers_only() {
    let (env, sim) = env_for_paths();
    std::fs::create_dir(env.path(LOCK)).unwrap();
    every_command_refuses(
        &env,
        &sim,
        "could not open the lock file state/oapkg.state.json.lock",
        false,
    );
    env.run(&["plan"]).code(0).stdout_has("Plan: 1 to purchase");
}

#[test]
fn a_directory_at_the_backup_path_stops_the_fold_and_the_journal_keeps_the_purchase() {
    let (env, sim) = env_for_paths();
    let before = env.read(STATE);
    std::fs::create_dir(env.path(BACKUP)).unwrap();
    let expect = "could not update the backup state/oapkg.state.json.backup";
    env.run(&["state", "rm", "--force", "9001@2026-12-01"])
        .code(1)
        .stderr_has(expect);
    // The backup is written at the fold, after the purchases: they are
    // made, and kept in the journal.
    crate::support::apply(&env, &sim, &[])
        .code(1)
        .stdout_has("Apply complete: 1 purchased, 0 failed, 0 unconfirmed.")
        .stderr_has("the journal state/oapkg.state.json.journal keeps every purchase")
        .stderr_has(expect);
    assert_eq!(env.read(STATE), before);
    assert!(leftovers(&env).is_empty(), "{:?}", leftovers(&env));
    env.run(&["plan"]).code(0).stdout_has("No changes.");
    std::fs::remove_dir(env.path(BACKUP)).unwrap();
    env.run(&["state", "rm", "--force", "9001@2026-12-01"])
        .code(0);
    assert!(!env.path(JOURNAL).exists(), "folded by the next writer");
    assert_eq!(recorded(&env)["1601@2027-01-01"]["status"], "submitted");
    assert_eq!(sim.ledger().len(), 1);
}
