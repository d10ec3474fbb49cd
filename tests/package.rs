//! The Debian package, for real: built with `packaging/debian/build.sh`
//! (the `dist` binary, cargo-deb), installed with `dpkg -i` into this
//! machine's /usr, /etc and /var/lib, run as the package's system user,
//! upgraded to a rebuilt package while an installed `watch --apply` is
//! buying from the simulator, and purged.
//!
//! It changes the machine, so it runs only with `CI=true` (CI's machine is
//! a throwaway Debian one, and CI runs as root); elsewhere it skips with a
//! message. It refuses to touch an /var/lib/oapkg it did not make.
//!
//! Its own test binary (not in tests/it/) so that cargo runs it alone,
//! after the others: a `dist` build takes both cores for minutes, and the
//! timing-sensitive tests of tests/it/ should not share them with it.
//!
//! There is no running systemd here: the package's maintainer scripts skip
//! the `systemctl try-restart` of a running unit (they check
//! /run/systemd/system, as Debian's do), so the test does what systemd
//! would: SIGTERM to the old process after `dpkg -i`, then the new binary
//! started the way the unit starts it (as `oapkg`, in /var/lib/oapkg, with
//! the environment file's variables and no other).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use esms_sim::{BlockingSimHandle, SimConfig, Simulator};

const HOME: &str = "/var/lib/oapkg";
const STATE: &str = "/var/lib/oapkg/state/oapkg.state.json";
const MANIFESTS: &str = "/var/lib/oapkg/repo/packages";
const ENV_FILE: &str = "/etc/oapkg/oapkg.env";
const UNIT: &str = "/usr/lib/systemd/system/oapkg-watch.service";
const EXAMPLE: &str = "/usr/share/doc/oapkg/examples/oapkg.yaml";
/// Left in /var/lib/oapkg by this test: the only /var/lib/oapkg it removes.
const MARKER: &str = "/var/lib/oapkg/.made-by-the-package-test";
/// The OAs the watch buys for, one package each.
const OAS: std::ops::Range<u32> = 4000..4020;
const TODAY: &str = "2026-11-26";

#[test]
fn the_debian_package_installs_upgrades_under_a_buying_watch_and_purges_keeping_the_state() {
    if std::env::var("CI").as_deref() != Ok("true") {
        eprintln!(
            "SKIPPED: the Debian package test installs into this machine's /usr, /etc and /var/lib; \
             it runs only with CI=true (as root, on Debian)"
        );
        return;
    }
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "the package test installs packages: run it as root"
    );
    assert!(
        Path::new("/usr/bin/dpkg").exists(),
        "the package test needs dpkg (Debian)"
    );
    clean_slate();
    let started = Instant::now();

    // 1. Build (the dist binary, man pages, completions, cargo-deb), and
    //    the same binary again as a higher Debian version for the upgrade.
    let debs = tempfile::tempdir().unwrap();
    // OAPKG_PACKAGE_TEST_NO_BUILD=1 packages the dist binary already built
    // (iterating on the packaging without a rebuild); CI builds it.
    let reuse = std::env::var_os("OAPKG_PACKAGE_TEST_NO_BUILD").is_some();
    let first = build(if reuse { &["--no-build"] } else { &[] }, debs.path());
    let built = started.elapsed();
    let second = build(&["--no-build", "--deb-version", "0.1.0-2"], debs.path());
    assert_ne!(first, second);
    eprintln!(
        "package test: built {} in {built:?}, {} in {:?} more",
        first.display(),
        second.display(),
        started.elapsed() - built
    );

    // 2. Install, and the files it put in place.
    let install = dpkg(&["-i", first.to_str().unwrap()]);
    assert_success("dpkg -i", &install);
    std::fs::write(MARKER, "").unwrap();
    assert_eq!(installed_version(), "0.1.0-1");
    let user = User::lookup("oapkg");
    assert!(user.uid < 1000, "a system user: {user:?}");
    let passwd = run(Command::new("getent").args(["passwd", "oapkg"]));
    assert!(
        String::from_utf8_lossy(&passwd.stdout)
            .trim_end()
            .ends_with(":/var/lib/oapkg:/usr/sbin/nologin"),
        "{passwd:?}"
    );
    assert_file("/usr/bin/oapkg", 0o755, 0);
    assert_file(ENV_FILE, 0o600, 0);
    assert_file(UNIT, 0o644, 0);
    assert_file("/usr/share/man/man1/oapkg.1.gz", 0o644, 0);
    assert_file("/usr/share/man/man1/oapkg-watch.1.gz", 0o644, 0);
    assert_file("/usr/share/man/man1/oapkg-state-import.1.gz", 0o644, 0);
    assert_file("/usr/share/bash-completion/completions/oapkg", 0o644, 0);
    assert_file("/usr/share/zsh/vendor-completions/_oapkg", 0o644, 0);
    assert_file("/usr/share/fish/vendor_completions.d/oapkg.fish", 0o644, 0);
    assert_file("/usr/share/doc/oapkg/README.Debian", 0o644, 0);
    assert_file(EXAMPLE, 0o644, 0);
    assert_dir(HOME, 0o750, user.uid);
    assert_dir("/var/lib/oapkg/state", 0o750, user.uid);
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "oapkg"]));
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains(ENV_FILE),
        "{conffiles:?}"
    );
    let version = run(Command::new("/usr/bin/oapkg").arg("version"));
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(
        version.starts_with("oapkg 0.1.0 (commit ") && version.ends_with(", dist)\n"),
        "{version}"
    );

    // 3. The unit as installed: what systemd would run, and that it verifies.
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "Type=notify",
        "User=oapkg",
        "StateDirectory=oapkg",
        "EnvironmentFile=/etc/oapkg/oapkg.env",
        "Environment=OAPKG_STATE=/var/lib/oapkg/state/oapkg.state.json",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=120",
        "ExecStart=/usr/bin/oapkg watch \\",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.lines().any(|l| l == line), "{UNIT} lacks {line}");
    }
    let verify = run(Command::new("systemd-analyze").args(["verify", UNIT]));
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify {UNIT}: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // 4. First steps as the package's user (README.Debian): init, the
    //    checks, a plan of the bundled example.
    let sim = simulator();
    let credentials = format!(
        "ESMS_API_KEY={}\nESMS_SECRET_KEY={}\nESMS_ENDPOINT={}\n",
        esms_sim::DEFAULT_API_KEY,
        esms_sim::DEFAULT_SECRET_KEY,
        sim.endpoint()
    );
    let mut env_file = std::fs::read_to_string(ENV_FILE).unwrap();
    env_file.push_str(&credentials);
    std::fs::write(ENV_FILE, &env_file).unwrap();
    let init = as_service(&user, &["init"]).output().unwrap();
    assert_success("oapkg init", &init);
    // doctor: the manifests, the state, its lock and backup, and the eSMS
    // endpoint, keys and balance (the simulator's) from the environment file.
    let doctor = as_service(&user, &["doctor", "-f", EXAMPLE, "--format", "json"])
        .output()
        .unwrap();
    assert_success("oapkg doctor", &doctor);
    let doctor: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(doctor["ok"], true, "{doctor}");
    let passed: Vec<&str> = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "pass")
        .filter_map(|c| c["name"].as_str())
        .collect();
    for name in ["manifests", "state", "esms", "balance"] {
        assert!(passed.contains(&name), "{name} not passed: {doctor}");
    }
    let plan = as_service(&user, &["plan", "-f", EXAMPLE, "--format", "json"])
        .output()
        .unwrap();
    assert_success("oapkg plan", &plan);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert!(plan["summary"]["purchase"].as_u64().unwrap() > 0, "{plan}");

    // 5. The upgrade while the installed watch buys: 20 purchases, one at a
    //    time, 1.5 s each.
    let repo = Path::new(MANIFESTS);
    std::fs::create_dir_all(repo).unwrap();
    std::fs::write(repo.join("oas.yaml"), manifest()).unwrap();
    chown_tree(Path::new("/var/lib/oapkg/repo"), &user);
    let logs = tempfile::tempdir().unwrap();
    let exec = exec_start(&unit);
    assert_eq!(exec[..2], ["/usr/bin/oapkg", "watch"], "{exec:?}");
    assert!(exec.iter().any(|w| w == "--apply"), "{exec:?}");
    let mut old = Service::start(&user, &exec, logs.path().join("old.log"));
    wait_until("the first purchase", Duration::from_secs(60), || {
        !sim.ledger().is_empty()
    });
    let upgrading = Instant::now();
    let upgrade = dpkg(&["-i", second.to_str().unwrap()]);
    assert_success("dpkg -i (upgrade)", &upgrade);
    eprintln!(
        "package test: dpkg -i (upgrade) took {:?}",
        upgrading.elapsed()
    );
    assert_eq!(installed_version(), "0.1.0-2");
    // What the postinst's `systemctl try-restart oapkg-watch` does: SIGTERM,
    // wait (TimeoutStopSec=120), start the new binary.
    let during = sim.ledger().len();
    assert!(
        during < OAS.len(),
        "the upgrade finished while the watch was still buying ({during} bought)"
    );
    old.stop(Duration::from_secs(120));
    let stopped_with = sim.ledger().len();
    assert!(stopped_with < OAS.len(), "{}", old.log());
    eprintln!(
        "package test: {during} bought when the upgrade was installed, {stopped_with} when the old watch had stopped"
    );
    // Every charge so far is recorded, and nothing else: the in-flight
    // purchase finished and was recorded before the process exited.
    let so_far = recorded(&user);
    assert_eq!(
        so_far.keys().cloned().collect::<Vec<_>>(),
        charged_keys(&sim),
        "{}",
        old.log()
    );
    let mut new = Service::start(&user, &exec, logs.path().join("new.log"));
    wait_until("the rest bought", Duration::from_secs(60), || {
        new.log().contains("\"outcome\":\"done\"")
    });
    new.stop(Duration::from_secs(120));

    // Nothing doubled, nothing lost, the state intact and complete.
    let ledger = sim.ledger();
    let mut charges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &ledger {
        charges
            .entry(format!("{}@{}", c.oaid, c.dateactive))
            .or_default()
            .push(c.service_preview_id.clone());
    }
    assert_eq!(charges.len(), OAS.len(), "{}", new.log());
    let recorded = recorded(&user);
    assert_eq!(recorded.len(), OAS.len());
    for (key, ids) in &charges {
        assert_eq!(ids.len(), 1, "{key} charged {} times", ids.len());
        assert_eq!(recorded[key]["status"], "submitted", "{key}");
        assert_eq!(recorded[key]["service_preview_id"], ids[0].as_str());
    }
    let again = as_service(&user, &["plan", "-f", MANIFESTS])
        .output()
        .unwrap();
    assert_success("oapkg plan after the upgrade", &again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("No changes."));
    // The conffile kept the credentials through the upgrade, still 0600.
    assert_eq!(std::fs::read_to_string(ENV_FILE).unwrap(), env_file);
    assert_file(ENV_FILE, 0o600, 0);

    // 6. A state from a newer oapkg (as after a downgrade) is refused and
    //    left as it is.
    let newer = logs.path().join("newer.state.json");
    let text = std::fs::read_to_string(STATE).unwrap();
    let bumped = text.replacen("\"format_version\": 1,", "\"format_version\": 2,", 1);
    assert_ne!(text, bumped);
    std::fs::write(&newer, &bumped).unwrap();
    let refused = run(Command::new("/usr/bin/oapkg")
        .args(["state", "list", "--state"])
        .arg(&newer));
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("format_version 2") && stderr.contains("reads only format_version 1"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&newer).unwrap(), bumped);

    // 7. Purge: the program, the unit and the credentials go; the state
    //    (the record of what was paid) and the user stay, and it says so.
    let state_before = std::fs::read(STATE).unwrap();
    let purge = dpkg(&["--purge", "oapkg"]);
    assert_success("dpkg --purge", &purge);
    for gone in ["/usr/bin/oapkg", ENV_FILE, UNIT, "/usr/share/doc/oapkg"] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    assert_eq!(std::fs::read(STATE).unwrap(), state_before);
    assert!(
        String::from_utf8_lossy(&purge.stderr).contains("/var/lib/oapkg is kept"),
        "{purge:?}"
    );
    User::lookup("oapkg");
    eprintln!("package test: {:?} in all", started.elapsed());
    clean_slate();
}

/// Removes what an earlier run of this test left (package, state, user);
/// refuses an /var/lib/oapkg it did not make.
fn clean_slate() {
    let _ = dpkg(&["--purge", "oapkg"]);
    if Path::new(HOME).exists() {
        assert!(
            Path::new(MARKER).exists(),
            "{HOME} exists and was not made by this test: refusing to touch it"
        );
        std::fs::remove_dir_all(HOME).unwrap();
    }
    let _ = Command::new("deluser").args(["--system", "oapkg"]).output();
}

/// `packaging/debian/build.sh ARGS`: the .deb it printed, copied into
/// `keep` (cargo-deb clears its output directory of older builds).
fn build(args: &[&str], keep: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run(Command::new("sh")
        .arg(root.join("packaging/debian/build.sh"))
        .args(args)
        .current_dir(root)
        .stderr(Stdio::inherit()));
    assert!(out.status.success(), "build.sh {args:?} failed");
    let path = String::from_utf8_lossy(&out.stdout);
    let path = root.join(
        path.trim()
            .lines()
            .last()
            .expect("build.sh prints the .deb"),
    );
    assert!(path.extension().is_some_and(|e| e == "deb"), "{path:?}");
    let kept = keep.join(path.file_name().unwrap());
    std::fs::copy(&path, &kept).unwrap();
    kept
}

fn dpkg(args: &[&str]) -> Output {
    run(Command::new("dpkg")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn installed_version() -> String {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Version}", "oapkg"]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

#[track_caller]
fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[track_caller]
fn assert_file(path: &str, mode: u32, uid: u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(meta.is_file(), "{path} is not a file");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid()),
        (mode, uid),
        "{path}: mode {:o}, owner {}",
        meta.mode() & 0o7777,
        meta.uid()
    );
}

#[track_caller]
fn assert_dir(path: &str, mode: u32, uid: u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(meta.is_dir(), "{path} is not a directory");
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (mode, uid), "{path}");
}

#[derive(Debug)]
struct User {
    uid: u32,
    gid: u32,
}

impl User {
    fn lookup(name: &str) -> User {
        let id = |flag: &str| -> u32 {
            let out = run(Command::new("id").args([flag, name]));
            assert_success(&format!("id {flag} {name}"), &out);
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        User {
            uid: id("-u"),
            gid: id("-g"),
        }
    }
}

fn chown_tree(path: &Path, user: &User) {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), user);
        }
    }
}

/// The environment the unit gives oapkg: the environment file's variables
/// (read as systemd's EnvironmentFile= reads them), the unit's own, and
/// nothing from this process.
fn service_environment(cmd: &mut Command) {
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", HOME)
        .env("OAPKG_STATE", STATE)
        .env("OAPKG_TODAY", TODAY);
    let file = std::fs::read_to_string(ENV_FILE).unwrap();
    for line in file.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').expect("NAME=value");
        cmd.env(name, value);
    }
}

/// `/usr/bin/oapkg ARGS` as the unit runs it: as `user`, in its home.
fn as_service(user: &User, args: &[&str]) -> Command {
    let mut cmd = Command::new("/usr/bin/oapkg");
    cmd.args(args)
        .current_dir(HOME)
        .uid(user.uid)
        .gid(user.gid)
        .stdin(Stdio::null());
    service_environment(&mut cmd);
    cmd
}

/// The state as the package's user lists it (journal replayed), by key.
fn recorded(user: &User) -> BTreeMap<String, serde_json::Value> {
    let out = as_service(user, &["state", "list", "--format", "json"])
        .output()
        .unwrap();
    assert_success("oapkg state list", &out);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["key"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

/// The words of the unit's `ExecStart=` (its continuation lines joined).
fn exec_start(unit: &str) -> Vec<String> {
    let mut words = Vec::new();
    for line in unit.lines().skip_while(|l| !l.starts_with("ExecStart=")) {
        let line = line.trim_start_matches("ExecStart=").trim_end();
        let more = line.ends_with('\\');
        words.extend(
            line.trim_end_matches('\\')
                .split_whitespace()
                .map(String::from),
        );
        if !more {
            break;
        }
    }
    words
}

/// `oapkg watch --apply` started as the unit starts it (its ExecStart, with
/// one purchase at a time so that the upgrade meets one in flight), output
/// into `log`.
struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(user: &User, exec: &[String], log: PathBuf) -> Service {
        let out = std::fs::File::create(&log).unwrap();
        // The unit follows a Git branch (--git-remote, --git-branch); here
        // the manifests are a plain directory (the Git source has its own
        // tests), so those two flags are left out.
        let mut args: Vec<&str> = Vec::new();
        let mut words = exec[1..].iter().map(String::as_str);
        while let Some(word) = words.next() {
            if word == "--git-remote" || word == "--git-branch" {
                words.next();
            } else {
                args.push(word);
            }
        }
        args.extend(["--parallelism", "1"]);
        let child = as_service(user, &args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start /usr/bin/oapkg watch");
        Service { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as `systemctl stop` sends it (KillSignal=SIGTERM), and at
    /// most `within` (TimeoutStopSec=) for a clean exit 0.
    fn stop(&mut self, within: Duration) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0), "{}", self.log());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still running {within:?} after SIGTERM\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulator, on loopback, with the OAs and 1.5 s per request (30 s
/// for all of them, one at a time): the upgrade happens while purchases
/// are in flight.
fn simulator() -> BlockingSimHandle {
    let config = OAS
        .map(|n| n.to_string())
        .fold(SimConfig::new(), SimConfig::oaid)
        .latency(Duration::from_millis(1500));
    Simulator::spawn_blocking(config).expect("start the simulator")
}

fn manifest() -> String {
    let mut text = String::from("apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n");
    for oaid in OAS {
        text.push_str(&format!(
            "  - oaid: \"{oaid}\"\n    name: OA {oaid}\n    tier: advanced\n    start: 2027-01-01\n    duration: 12\n"
        ));
    }
    text
}

fn charged_keys(sim: &BlockingSimHandle) -> Vec<String> {
    let mut keys: Vec<String> = sim
        .ledger()
        .iter()
        .map(|c| format!("{}@{}", c.oaid, c.dateactive))
        .collect();
    keys.sort();
    keys
}

#[track_caller]
fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "not {what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
