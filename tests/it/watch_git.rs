//! `watch --git-remote origin --git-branch main` with real Git: a bare
//! remote, a second clone that pushes (the team), and the watch's own
//! checkout. Commits pushed are applied, once each, and named in the logs,
//! the `git` notification and `oapkg_git_commit_info`; a force-push is
//! refused and reported, never applied; with `--git-verify` an unsigned
//! commit is refused and an SSH-signed one (key made here by `ssh-keygen`,
//! `gpg.format=ssh`, an allowed signers file) is applied.
//!
//! Needs `git` (and `ssh-keygen` for the signed commit): outside CI a
//! missing tool skips with a message; with `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use esms_sim::SimConfig;
use serde_json::Value;

use crate::support::Env;
use crate::watch::{Watch, doc, pkg};
use crate::watch_apply::{charged, keys, outcome, simulator, start_apply_with, wait_until};
use crate::watch_service::{Receiver, free_addr, get, parse_prometheus, sample};

/// Whether `tool --version` runs; skips (outside CI) or fails (CI) when not.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg(if tool == "ssh-keygen" {
            "-?"
        } else {
            "--version"
        })
        .output()
        .is_ok();
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is needed by the Git source tests");
        }
        eprintln!("SKIPPED: {tool} is not installed; the Git source test does not run");
    }
    ok
}

/// `git ARGS` in `dir`, hermetic (no global or system config), failing
/// the test with Git's error.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .envs(GIT_ENV)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const GIT_ENV: [(&str, &str); 6] = [
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_AUTHOR_NAME", "Team"),
    ("GIT_AUTHOR_EMAIL", "team@example.com"),
    ("GIT_COMMITTER_NAME", "Team"),
    ("GIT_COMMITTER_EMAIL", "team@example.com"),
];

/// A bare remote, the team's clone (`team`) and the watch's checkout
/// (`repo`, inside the Env so the state sits beside it).
struct Repos {
    env: Env,
    team: PathBuf,
}

impl Repos {
    fn new(first: &str) -> Repos {
        let env = Env::with_state();
        let remote = env.path("remote.git");
        let team = env.path("team");
        std::fs::create_dir_all(&remote).unwrap();
        git(
            &remote,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
        );
        git(
            env.path("").as_path(),
            &["clone", "--quiet", remote.to_str().unwrap(), "team"],
        );
        git(&team, &["checkout", "--quiet", "-b", "main"]);
        let repos = Repos { env, team };
        repos.commit(first, "first packages", &[]);
        git(
            repos.env.path("").as_path(),
            &["clone", "--quiet", remote.to_str().unwrap(), "repo"],
        );
        repos
    }

    /// Writes `oapkg.yaml` in the team's clone, commits (with `extra`
    /// flags, e.g. `-S`) and pushes; the new commit's id.
    fn commit(&self, manifest: &str, subject: &str, extra: &[&str]) -> String {
        std::fs::write(self.team.join("oapkg.yaml"), manifest).unwrap();
        git(&self.team, &["add", "oapkg.yaml"]);
        let mut args = vec!["commit", "--quiet", "--allow-empty", "-m", subject];
        args.extend_from_slice(extra);
        git(&self.team, &args);
        git(&self.team, &["push", "--quiet", "origin", "main"]);
        git(&self.team, &["rev-parse", "HEAD"])
    }

    /// The watch's checkout.
    fn repo(&self) -> PathBuf {
        self.env.path("repo")
    }

    fn head(&self) -> String {
        git(&self.repo(), &["rev-parse", "HEAD"])
    }
}

/// `watch --apply -f repo/oapkg.yaml --git-remote origin --git-branch main
/// --git-interval 0.2 ARGS…`, git hermetic as in the tests.
fn start(repos: &Repos, sim: &esms_sim::BlockingSimHandle, args: &[&str]) -> Watch {
    let mut all = vec![
        "-f",
        "repo/oapkg.yaml",
        "--git-remote",
        "origin",
        "--git-branch",
        "main",
        "--git-interval",
        "0.2",
    ];
    all.extend_from_slice(args);
    start_apply_with(&repos.env, sim, &all, |cmd| {
        cmd.envs(GIT_ENV).env("OAPKG_TEST_NOTIFY_DELAY_MS", "50");
    })
}

/// [`start`] with `--listen` and `--notify`, once its first cycle (1001
/// bought) is done: the watch, the metrics address and the receiver.
fn start_observed(repos: &Repos, sim: &esms_sim::BlockingSimHandle) -> (Watch, String, Receiver) {
    let addr = free_addr();
    let receiver = Receiver::start(0, false);
    let mut watch = start(
        repos,
        sim,
        &["--listen", &addr, "--notify", &receiver.url()],
    );
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(charged(sim), keys(&["1001@2027-01-01"]));
    (watch, addr, receiver)
}

/// The `git` log records so far with `git` = `what` (applied, refused).
fn git_records(watch: &Watch, what: &str) -> Vec<Value> {
    watch
        .0
        .lines()
        .filter_map(|(_, line)| crate::watch::json(line))
        .filter(|v| v["git"] == what)
        .collect()
}

#[test]
fn commits_pushed_by_another_clone_are_applied_once_each_and_named() {
    if !have("git") {
        return;
    }
    let sim = simulator(SimConfig::new());
    let repos = Repos::new(&doc(&[pkg(1001, 12)]));
    let (mut watch, addr, receiver) = start_observed(&repos, &sim);
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01"]));

    // The team pushes a new package.
    let second = repos.commit(&doc(&[pkg(1001, 12), pkg(1002, 12)]), "add 1002", &[]);
    let moved = watch.record("the new commit applied", |v| v["git"] == "applied");
    assert_eq!(moved["commit"], second.as_str(), "{moved}");
    let done = outcome(&mut watch);
    assert_eq!(done["outcome"], "done");
    // The cycle's records name the commit (their span).
    assert_eq!(done["span"]["commit"], &second[..12], "{done}");
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01", "1002@2027-01-01"]));
    assert_eq!(repos.head(), second);

    // A commit that changes no package: applied (planned), nothing bought.
    let third = repos.commit(&doc(&[pkg(1001, 12), pkg(1002, 12)]), "docs only", &[]);
    watch.record("the third commit applied", |v| {
        v["git"] == "applied" && v["commit"] == third.as_str()
    });
    wait_until(
        "the metric names the third commit",
        Duration::from_secs(10),
        || {
            let samples = parse_prometheus(&get(&addr, "/metrics").1);
            sample(&samples, "oapkg_git_commit_info", &[("commit", &third)]) == Some(1.0)
        },
    );
    // Several more fetches: each commit applied once, each package bought once.
    std::thread::sleep(Duration::from_millis(1000));
    let applied: Vec<String> = git_records(&watch, "applied")
        .iter()
        .map(|v| v["commit"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(applied, [second.clone(), third.clone()]);
    assert_eq!(sim.ledger().len(), 2);
    let samples = parse_prometheus(&get(&addr, "/metrics").1);
    assert_eq!(
        sample(
            &samples,
            "oapkg_git_commits_total",
            &[("result", "applied")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&samples, "oapkg_git_commit_info", &[("commit", &second)]),
        None
    );
    wait_until("two git notifications", Duration::from_secs(10), || {
        receiver.count("git") == 2
    });
    let notified: Vec<Value> = receiver
        .received()
        .into_iter()
        .filter(|n| n["event"] == "git")
        .collect();
    assert_eq!(notified[0]["commit"], second.as_str());
    assert!(
        notified[0]["text"].as_str().unwrap().contains(&format!(
            "origin/main moved to commit {} (add 1002)",
            &second[..12]
        )),
        "{}",
        notified[0]
    );
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn a_force_push_is_refused_reported_once_and_never_applied() {
    if !have("git") {
        return;
    }
    let sim = simulator(SimConfig::new());
    let repos = Repos::new(&doc(&[pkg(1001, 12)]));
    let (mut watch, addr, receiver) = start_observed(&repos, &sim);
    let first = repos.head();

    // The team rewrites history: the first commit amended to add 1003,
    // force-pushed.
    std::fs::write(
        repos.team.join("oapkg.yaml"),
        doc(&[pkg(1001, 12), pkg(1003, 12)]),
    )
    .unwrap();
    git(
        &repos.team,
        &["commit", "--quiet", "--all", "--amend", "-m", "rewritten"],
    );
    git(
        &repos.team,
        &["push", "--quiet", "--force", "origin", "main"],
    );
    let rewritten = git(&repos.team, &["rev-parse", "HEAD"]);
    let refused = watch.record("the force-push refused", |v| v["git"] == "refused");
    assert_eq!(refused["commit"], rewritten.as_str());
    assert_eq!(refused["refusal"], "rewritten");
    assert_eq!(refused["level"], "ERROR");
    // Fetched again and again: reported once, the checkout where it was,
    // 1003 never bought.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(git_records(&watch, "refused").len(), 1);
    assert_eq!(repos.head(), first);
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01"]));
    let samples = parse_prometheus(&get(&addr, "/metrics").1);
    assert_eq!(sample(&samples, "oapkg_git_refused", &[]), Some(1.0));
    assert_eq!(
        sample(&samples, "oapkg_git_commit_info", &[("commit", &first)]),
        Some(1.0)
    );
    wait_until("the refusal notified", Duration::from_secs(10), || {
        receiver.count("git") == 1
    });
    let n = receiver
        .received()
        .into_iter()
        .find(|n| n["event"] == "git")
        .unwrap();
    assert!(
        n["message"].as_str().unwrap().contains("refused") && n["commit"] == rewritten.as_str(),
        "{n}"
    );

    // A person reviews and accepts it (docs/operations.md, "A refused
    // commit"): the refusal clears and the files it wrote are applied.
    git(
        &repos.repo(),
        &["reset", "--quiet", "--hard", "origin/main"],
    );
    // The reset rewrites the manifest: the file event's cycle may apply it
    // before the next fetch reports the refusal cleared, or after.
    let (mut cleared, mut applied) = (false, false);
    while !(cleared && applied) {
        let v = watch.record("the refusal cleared and the change applied", |v| {
            (v["git"] == "cleared" && v["commit"] == rewritten.as_str()) || v["outcome"].is_string()
        });
        if v["git"] == "cleared" {
            cleared = true;
        } else {
            assert_eq!(v["outcome"], "done", "{v}");
            applied = true;
        }
    }
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01", "1003@2027-01-01"]));
    let samples = parse_prometheus(&get(&addr, "/metrics").1);
    assert_eq!(sample(&samples, "oapkg_git_refused", &[]), Some(0.0));
    assert_eq!(
        sample(&samples, "oapkg_git_commit_info", &[("commit", &rewritten)]),
        Some(1.0)
    );
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn with_git_verify_an_unsigned_commit_is_refused_and_an_ssh_signed_one_applied() {
    if !have("git") || !have("ssh-keygen") {
        return;
    }
    let sim = simulator(SimConfig::new());
    let repos = Repos::new(&doc(&[pkg(1001, 12)]));
    // The signer's key, made here, and the checkout's allowed signers.
    let key = repos.env.path("signer");
    let made = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "team@example.com",
            "-f",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = repos.env.path("allowed_signers");
    std::fs::write(&allowed, format!("team@example.com {public}")).unwrap();
    git(
        &repos.repo(),
        &[
            "config",
            "gpg.ssh.allowedSignersFile",
            allowed.to_str().unwrap(),
        ],
    );
    git(&repos.team, &["config", "gpg.format", "ssh"]);
    git(
        &repos.team,
        &["config", "user.signingkey", key.to_str().unwrap()],
    );

    let mut watch = start(&repos, &sim, &["--git-verify"]);
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    let first = repos.head();

    let unsigned = repos.commit(&doc(&[pkg(1001, 12), pkg(1002, 12)]), "unsigned", &[]);
    let refused = watch.record("the unsigned commit refused", |v| v["git"] == "refused");
    assert_eq!(refused["commit"], unsigned.as_str());
    assert_eq!(refused["refusal"], "unverified");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(repos.head(), first);
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01"]));

    // A signed commit on top: its signature vouches for its tree (the
    // branch's newest commit is the one checked, as Flux does).
    let signed = repos.commit(
        &doc(&[pkg(1001, 12), pkg(1002, 12), pkg(1003, 12)]),
        "signed",
        &["-S"],
    );
    let applied = watch.record("the signed commit applied", |v| v["git"] == "applied");
    assert_eq!(applied["commit"], signed.as_str());
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(
        charged(&sim),
        keys(&["1001@2027-01-01", "1002@2027-01-01", "1003@2027-01-01"])
    );
    assert_eq!(repos.head(), signed);
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn git_flags_are_checked_before_anything_runs() {
    if !have("git") {
        return;
    }
    let env = Env::new();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    // Not a checkout.
    let run = env
        .command(&["watch", "--git-remote", "origin", "--git-branch", "main"])
        .envs(GIT_ENV)
        .env("GIT_CEILING_DIRECTORIES", env.path("").parent().unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not inside a Git checkout"), "{stderr}");
    // A remote that does not exist.
    git(&env.path(""), &["init", "--quiet"]);
    let run = env
        .command(&["watch", "--git-remote", "upstream", "--git-branch", "main"])
        .envs(GIT_ENV)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--git-remote upstream: no such remote"),
        "{stderr}"
    );
    // A branch name Git refuses.
    let run = env
        .command(&["watch", "--git-remote", "origin", "--git-branch", "a..b"])
        .envs(GIT_ENV)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--git-branch \"a..b\" is not a valid branch name"),
        "{stderr}"
    );
    // One without the other: a usage error.
    let run = env
        .command(&["watch", "--git-remote", "origin"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--git-branch"), "{stderr}");
}
