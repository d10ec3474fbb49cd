//! `watch --git-remote NAME --git-branch BRANCH`: follow a Git branch the
//! way Flux's GitRepository source follows a repository — fetch, check,
//! move the checkout forward, say which commit the watch now plans from.
//!
//! This module owns the Git side and nothing else: it runs the `git`
//! program (the one the operator already configured, with its SSH deploy
//! key, `known_hosts`, credential helpers and allowed signers, exactly as
//! `git fetch` by hand would use them — which is why it shells out, as
//! Flux's `git` implementation and Argo CD do, rather than linking a Git
//! library with its own idea of SSH and signatures). The watch loop calls
//! [`GitSource::sync`] every `--git-interval`, off its runtime (it blocks),
//! and reports what it found as a [`GitEvent`]; a new commit then starts a
//! cycle, which reads the files the fast-forward wrote.
//!
//! The rules:
//! - only a fast-forward moves the checkout: a branch whose new commit
//!   does not contain the checked-out one (a force-push, a rewritten
//!   history) is refused and reported once per new commit, never applied;
//! - with `--git-verify`, only a commit whose signature `git verify-commit`
//!   accepts (GPG keyring, or SSH `gpg.ssh.allowedSignersFile`) is
//!   applied; the branch's newest commit is the one checked, as Flux does;
//! - a failed fetch changes nothing (logged; tried again next interval).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How to follow a branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitOptions {
    /// A remote configured in the checkout (`git remote -v`).
    pub remote: String,
    pub branch: String,
    /// How often to fetch.
    pub interval: Duration,
    /// Only apply commits `git verify-commit` accepts.
    pub verify: bool,
    /// A directory inside the checkout (the first `-f` path's).
    pub dir: PathBuf,
}

/// The default `--git-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// How long one `git` command may take before it is stopped (a fetch from
/// an unreachable host).
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// What the Git source did, for the observers.
#[derive(Clone, Copy, Debug)]
pub enum GitEvent<'a> {
    /// At start-up: the commit checked out, before the first fetch.
    Checkout {
        commit: &'a str,
        remote: &'a str,
        branch: &'a str,
    },
    /// The checkout moved forward to `commit` (from `from`); the cycle
    /// that follows plans (and with `--apply` applies) it.
    Applied {
        commit: &'a str,
        from: &'a str,
        /// The commit's subject line, as written (escape before showing).
        subject: &'a str,
        remote: &'a str,
        branch: &'a str,
    },
    /// The branch's new commit is refused: nothing is planned from it.
    /// Reported once per commit.
    Refused {
        commit: &'a str,
        /// The commit still checked out.
        current: &'a str,
        reason: &'a Refusal,
        remote: &'a str,
        branch: &'a str,
    },
    /// The branch and the checkout agree again after a refusal (the
    /// history was restored, or a person moved the checkout to the
    /// refused commit): nothing is refused any more.
    Cleared {
        commit: &'a str,
        remote: &'a str,
        branch: &'a str,
    },
    /// `git fetch` (or reading the result) failed; the checkout is as it
    /// was and the next interval tries again.
    FetchFailed { error: &'a str },
}

/// The first 12 hex digits of a commit id, as logs name it.
pub fn short_commit(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

impl GitEvent<'_> {
    /// What happened, in one line for logs and notifications (foreign text
    /// escaped); `None` for a failed fetch (its error is the message).
    pub fn describe(&self) -> Option<String> {
        let short = short_commit;
        Some(match *self {
            GitEvent::Checkout {
                commit,
                remote,
                branch,
            } => format!("following {remote}/{branch} from commit {}", short(commit)),
            GitEvent::Applied {
                commit,
                from,
                subject,
                remote,
                branch,
            } => format!(
                "{remote}/{branch} moved to commit {} ({}) by fast-forward from {}: planning it",
                short(commit),
                crate::text::escape_controls(subject),
                short(from)
            ),
            GitEvent::Refused {
                commit,
                current,
                reason,
                remote,
                branch,
            } => format!(
                "{remote}/{branch} commit {} refused, nothing planned from it: {}; still at {}",
                short(commit),
                crate::text::escape_controls(&reason.to_string()),
                short(current)
            ),
            GitEvent::Cleared {
                commit,
                remote,
                branch,
            } => format!(
                "{remote}/{branch} is at commit {} again, as the checkout: nothing refused any more",
                short(commit)
            ),
            GitEvent::FetchFailed { .. } => return None,
        })
    }
}

/// Why a new commit is not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It does not contain the checked-out commit: the branch was
    /// rewritten (force-pushed).
    Rewritten,
    /// `git verify-commit` did not accept its signature (`--git-verify`).
    Unverified { why: String },
    /// The fast-forward itself failed (local changes in the checkout…).
    NotMerged { why: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Rewritten => f.write_str(
                "the branch was rewritten (a force-push?): its new commit does not contain the checked-out one, and the watch only moves forward",
            ),
            Refusal::Unverified { why } => write!(
                f,
                "git verify-commit does not accept its signature (--git-verify): {why}"
            ),
            Refusal::NotMerged { why } => write!(f, "the fast-forward failed: {why}"),
        }
    }
}

impl Refusal {
    /// Which flag or label the refusal is known by (logs, notifications).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Rewritten => "rewritten",
            Refusal::Unverified { .. } => "unverified",
            Refusal::NotMerged { .. } => "not_merged",
        }
    }
}

/// Why following the branch cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(
        "--git-remote: cannot run the `git` program ({0}); install Git (e.g. `apt-get install git`)"
    )]
    NoGit(String),
    #[error(
        "--git-remote: {dir} is not inside a Git checkout ({why}); clone the repository there first (docs/operations.md, \"Follow a Git branch\")"
    )]
    NotACheckout { dir: String, why: String },
    #[error(
        "--git-remote {remote}: no such remote in {top} ({why}); `git -C {top} remote -v` lists them"
    )]
    NoRemote {
        remote: String,
        top: String,
        why: String,
    },
    #[error("--git-branch {0:?} is not a valid branch name")]
    BadBranch(String),
    #[error("git: {0}")]
    Failed(String),
}

/// What one [`GitSource::sync`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Synced {
    /// The branch has no new commit (or only the one already refused).
    Unchanged,
    /// The checkout moved forward; `paths` are the files that changed.
    Applied {
        commit: String,
        from: String,
        subject: String,
        paths: Vec<PathBuf>,
    },
    Refused {
        commit: String,
        current: String,
        reason: Refusal,
    },
    /// The branch is where the checkout is, after a refusal.
    Cleared {
        commit: String,
    },
    FetchFailed(String),
}

/// A checkout that follows one branch of one remote.
#[derive(Debug)]
pub struct GitSource {
    options: GitOptions,
    /// The checkout's top-level directory.
    top: PathBuf,
    /// The last commit refused: not reported again while the branch stays
    /// there.
    refused: Option<String>,
}

impl GitSource {
    /// Checks that `git` runs, `options.dir` is in a checkout and the
    /// remote exists.
    pub fn open(options: GitOptions) -> Result<GitSource, GitError> {
        let version = Command::new("git")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match version {
            Ok(status) if status.success() => {}
            Ok(status) => return Err(GitError::NoGit(status.to_string())),
            Err(error) => return Err(GitError::NoGit(error.to_string())),
        }
        // Git's own rule for a branch name (no `..`, no leading `-`, …).
        let valid = Command::new("git")
            .args(["check-ref-format", "--branch", &options.branch])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !valid || options.branch.starts_with('-') {
            return Err(GitError::BadBranch(options.branch.clone()));
        }
        let dir = &options.dir;
        let top =
            git(dir, &["rev-parse", "--show-toplevel"]).map_err(|why| GitError::NotACheckout {
                dir: dir.display().to_string(),
                why,
            })?;
        let top = PathBuf::from(top);
        git(&top, &["remote", "get-url", "--", &options.remote]).map_err(|why| {
            GitError::NoRemote {
                remote: options.remote.clone(),
                top: top.display().to_string(),
                why,
            }
        })?;
        Ok(GitSource {
            options,
            top,
            refused: None,
        })
    }

    pub fn options(&self) -> &GitOptions {
        &self.options
    }

    /// The commit checked out.
    pub fn head(&self) -> Result<String, GitError> {
        git(&self.top, &["rev-parse", "--verify", "HEAD^{commit}"]).map_err(GitError::Failed)
    }

    /// `refs/remotes/REMOTE/BRANCH`, where the fetch puts the branch.
    fn tracking_ref(&self) -> String {
        format!(
            "refs/remotes/{}/{}",
            self.options.remote, self.options.branch
        )
    }

    /// Fetches the branch and moves the checkout forward to its newest
    /// commit if the rules allow; blocks (run it off the async runtime).
    pub fn sync(&mut self) -> Synced {
        let refspec = format!(
            "+refs/heads/{}:{}",
            self.options.branch,
            self.tracking_ref()
        );
        if let Err(why) = git(
            &self.top,
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--",
                &self.options.remote,
                &refspec,
            ],
        ) {
            return Synced::FetchFailed(why);
        }
        let tip = format!("{}^{{commit}}", self.tracking_ref());
        let (new, current) = match (
            git(&self.top, &["rev-parse", "--verify", &tip]),
            git(&self.top, &["rev-parse", "--verify", "HEAD^{commit}"]),
        ) {
            (Ok(new), Ok(current)) => (new, current),
            (Err(why), _) | (_, Err(why)) => return Synced::FetchFailed(why),
        };
        if new == current {
            return match self.refused.take() {
                Some(_) => Synced::Cleared { commit: current },
                None => Synced::Unchanged,
            };
        }
        if self.refused.as_deref() == Some(new.as_str()) {
            return Synced::Unchanged;
        }
        match self.check(&new, &current) {
            Ok(()) => {}
            Err(reason) => {
                self.refused = Some(new.clone());
                return Synced::Refused {
                    commit: new,
                    current,
                    reason,
                };
            }
        }
        let paths = git(
            &self.top,
            &["diff", "--name-only", "--no-renames", &current, &new],
        )
        .map(|list| list.lines().map(|p| self.top.join(p)).collect())
        .unwrap_or_default();
        if let Err(why) = git(&self.top, &["merge", "--ff-only", "--quiet", &new]) {
            self.refused = Some(new.clone());
            return Synced::Refused {
                commit: new,
                current,
                reason: Refusal::NotMerged { why },
            };
        }
        self.refused = None;
        let subject = git(&self.top, &["log", "-1", "--format=%s", &new]).unwrap_or_default();
        Synced::Applied {
            commit: new,
            from: current,
            subject,
            paths,
        }
    }

    /// Whether `new` may replace `current`: a descendant, signed if asked.
    fn check(&self, new: &str, current: &str) -> Result<(), Refusal> {
        let ancestor = run(&self.top, &["merge-base", "--is-ancestor", current, new]);
        match ancestor {
            Ok(output) if output.status.success() => {}
            Ok(output) if output.status.code() == Some(1) => return Err(Refusal::Rewritten),
            Ok(output) => {
                return Err(Refusal::NotMerged {
                    why: first_line(&output.stderr),
                });
            }
            Err(why) => return Err(Refusal::NotMerged { why }),
        }
        if self.options.verify {
            match run(&self.top, &["verify-commit", new]) {
                Ok(output) if output.status.success() => {}
                Ok(output) => {
                    let why = first_line(&output.stderr);
                    return Err(Refusal::Unverified {
                        why: if why.is_empty() {
                            "no signature".to_owned()
                        } else {
                            why
                        },
                    });
                }
                Err(why) => return Err(Refusal::Unverified { why }),
            }
        }
        Ok(())
    }
}

/// `git -C dir ARGS`: its trimmed stdout, or why it failed.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let output = run(dir, args)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        let why = first_line(&output.stderr);
        Err(if why.is_empty() {
            format!("git {} exited with {}", args[0], output.status)
        } else {
            why
        })
    }
}

/// Runs `git -C dir ARGS` without a terminal prompt, stopped after
/// [`GIT_TIMEOUT`].
fn run(dir: &Path, args: &[&str]) -> Result<std::process::Output, String> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        // Never wait on a password prompt: a service has no terminal.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run git: {error}"))?;
    let deadline = Instant::now() + GIT_TIMEOUT;
    // Read the pipes on threads so a chatty command never blocks on a
    // full pipe while we wait for it.
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "git {} took more than {} s: stopped",
                    args[0],
                    GIT_TIMEOUT.as_secs()
                ));
            }
            Err(error) => return Err(format!("git {}: {error}", args[0])),
        }
    };
    let collect = |pipe: Option<std::thread::JoinHandle<Vec<u8>>>| {
        pipe.and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    };
    Ok(std::process::Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The first non-empty line of a command's error output, control
/// characters escaped.
fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    crate::text::escape_controls(line).into_owned()
}
