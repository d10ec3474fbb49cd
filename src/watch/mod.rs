//! `oapkg watch`: follow the manifest files and plan again (and with
//! `--apply`, apply) whenever they change.
//!
//! This module owns the watching and the reconcile loop, and nothing of
//! planning or applying: a cycle reads its inputs and makes its plan
//! exactly as `oapkg plan` does, and applies through the [`Reconciler`]
//! seam ([`ApplyReconciler`]: the apply engine). It never prints: it
//! reports typed [`WatchEvent`]s to an [`Observer`], which the CLI turns
//! into the plan on stdout and log lines on stderr. It never holds the
//! state lock between cycles (a plan-only watch never takes it at all).
//!
//! ```text
//! notify events ─▶ watcher (filter) ─▶ schedule (debounce) ─▶ cycle ─▶ WatchEvent ─▶ Observer (CLI)
//!                                                               │
//!                                      policy (skip / backoff) ─┤
//!                                                               ▼
//!                                                  Reconciler (apply engine)
//! ```
//!
//! | module | owns | touches |
//! |---|---|---|
//! | [`paths`] | which directories to watch for the `-f` paths; which changed paths matter (manifests, not editor temp files) | the disk once, at start |
//! | [`watcher`] | notify + notify-debouncer-full (native or `--poll`), turning events into [`watcher::FileChange`]s; re-watching replaced directories | the file watcher |
//! | [`schedule`] | trailing-edge debounce, one cycle at a time with one more queued, `--interval`, retry and new-day wake-ups | nothing (instants passed in) |
//! | [`policy`] | skip when the manifests' content hash and the state id are unchanged; refused applies parked, failed ones backed off (backon) | nothing |
//! | [`cycle`] | one cycle: load → validate → plan (→ reconcile), reporting each decision as an event | the manifests and the state (read only) |
//! | [`reconcile`] | the apply seam: [`Reconciler`], [`Reconciled`], [`CancelSignal`]; [`ApplyReconciler`] and the rule turning an apply run into done / refused / failed / cancelled | through the apply engine |
//! | [`git`] | `--git-remote`: fetching the branch, fast-forward only, `git verify-commit`, via the `git` program | the checkout, the remote |
//! | [`events`] | [`WatchEvent`], [`Observer`], [`Observers`] (several consumers) | nothing |
//!
//! [`run`] ties them together: it watches, starts a cycle when the
//! scheduler says so, keeps collecting changes while a cycle runs, and on a
//! stop request lets the cycle in progress finish (its apply step sees the
//! request through [`CancelSignal`]) and returns.

pub mod cycle;
pub mod events;
pub mod git;
pub mod paths;
pub mod policy;
pub mod reconcile;
pub mod schedule;
pub mod watcher;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use crate::clock::Clock;
pub use cycle::Runner;
pub use events::{GoodPlan, Observer, Observers, Unreadable, WatchEvent};
pub use git::{GitEvent, GitOptions, GitSource};
pub use reconcile::{
    AccountCheck, ApplyReconciler, BoxFuture, CancelSignal, Canceller, Progress, Reconciled,
    Reconciler, cancel_pair, reconciled,
};

use paths::{Roots, RootsError};
use schedule::Scheduler;
use watcher::{FileWatcher, WatcherError};

/// How to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// The `-f` paths (empty: `oapkg.yaml`).
    pub files: Vec<PathBuf>,
    /// Quiet time after the last change before a cycle starts.
    pub debounce: Duration,
    /// A cycle when none has run for this long.
    pub interval: Option<Duration>,
    /// Poll with this period instead of native file events.
    pub poll: Option<Duration>,
    /// The wall clock: a new calendar day starts a cycle.
    pub clock: Clock,
    /// While this file exists nothing is bought; checked every
    /// [`SUSPEND_CHECK`] to report the change (and, on resuming, to run a
    /// cycle).
    pub suspend_file: Option<PathBuf>,
    /// Follow a Git branch (`--git-remote`): fetched every
    /// [`GitOptions::interval`]; a new commit starts a cycle.
    pub git: Option<GitOptions>,
}

/// How often the suspend file is looked for between cycles.
pub const SUSPEND_CHECK: Duration = Duration::from_secs(1);

/// Why watching could not start (or stopped by itself).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Roots(#[from] RootsError),
    #[error(transparent)]
    Watcher(#[from] WatcherError),
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error("the file watcher stopped unexpectedly")]
    WatcherGone,
}

/// Watches and runs cycles until `stop` fires; then lets the cycle in
/// progress finish and returns `Ok`. Fails only when watching cannot start.
pub async fn run(
    options: &WatchOptions,
    runner: &mut Runner,
    stop: CancelSignal,
) -> Result<(), WatchError> {
    let observer = runner.observer();
    let roots = Roots::resolve(&options.files)?;
    // `git` runs as a child process: off the runtime's threads.
    let opened = match options.git.clone() {
        Some(git) => tokio::task::spawn_blocking(move || {
            let source = GitSource::open(git)?;
            let head = source.head()?;
            Ok::<_, git::GitError>((source, head))
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
        .map(Some)?,
        None => None,
    };
    let (mut git, head) = match opened {
        Some((source, head)) => (Some(source), Some(head)),
        None => (None, None),
    };
    let (tx, mut changes) = mpsc::unbounded_channel();
    let mut source = FileWatcher::start(
        roots,
        options.debounce,
        options.poll,
        tx,
        runner.change_counter(),
        observer.clone(),
    )?;
    let dirs: Vec<_> = source.dirs().cloned().collect();
    observer.event(&WatchEvent::Watching {
        dirs: &dirs,
        poll: options.poll,
        debounce: options.debounce,
        interval: options.interval,
        apply: runner.applies(),
    });

    let mut scheduler = Scheduler::new(options.debounce, options.interval, Instant::now());
    scheduler.next_day(options.clock.next_day());
    let git_every = options
        .git
        .as_ref()
        .map_or(git::DEFAULT_INTERVAL, |g| g.interval);
    let mut git_tick = tokio::time::interval_at(tokio::time::Instant::now() + git_every, git_every);
    git_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let (Some(source), Some(head)) = (&git, head) {
        let git_options = source.options();
        observer.event(&WatchEvent::Git {
            event: &GitEvent::Checkout {
                commit: &head,
                remote: &git_options.remote,
                branch: &git_options.branch,
            },
        });
        runner.at_commit(head);
        // The first cycle plans the branch's newest commit.
        sync_git(&mut git, runner, &mut scheduler).await;
    }
    let mut suspended = false;
    let mut suspend_check = tokio::time::interval(SUSPEND_CHECK);
    suspend_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check_suspend = |scheduler: &mut Scheduler| {
        let Some(path) = options.suspend_file.as_deref() else {
            return;
        };
        let now = path.exists();
        if now == suspended {
            return;
        }
        suspended = now;
        if now {
            observer.event(&WatchEvent::Suspended { path });
        } else {
            observer.event(&WatchEvent::Resumed { path });
            let at = Instant::now();
            scheduler.on_change(at, at, &[path.to_owned()]);
        }
    };
    check_suspend(&mut scheduler);
    let stopping = stop.clone();
    let mut open = true;
    loop {
        if stop.is_cancelled() {
            break;
        }
        if let Some(start) = scheduler.start(Instant::now()) {
            source.refresh();
            let cycle = runner.run(&start, stop.clone());
            tokio::pin!(cycle);
            let mut told = false;
            let outcome = loop {
                tokio::select! {
                    outcome = &mut cycle => break outcome,
                    change = changes.recv(), if open => match change {
                        Some(change) => scheduler.on_change(change.at, Instant::now(), &change.paths),
                        None => open = false,
                    },
                    () = stopping.cancelled(), if !told => {
                        told = true;
                        observer.event(&WatchEvent::StopRequested { cycle: start.id });
                    }
                }
            };
            observer.event(&WatchEvent::CycleFinished { cycle: start.id });
            scheduler.finish(Instant::now(), outcome.retry_at);
            scheduler.next_day(options.clock.next_day());
            continue;
        }
        if !open {
            return Err(WatchError::WatcherGone);
        }
        let wake = scheduler
            .next_wake()
            .map_or_else(far_future, tokio::time::Instant::from_std);
        tokio::select! {
            change = changes.recv() => match change {
                Some(change) => scheduler.on_change(change.at, Instant::now(), &change.paths),
                None => open = false,
            },
            () = tokio::time::sleep_until(wake) => {}
            _ = suspend_check.tick(), if options.suspend_file.is_some() => check_suspend(&mut scheduler),
            _ = git_tick.tick(), if git.is_some() => sync_git(&mut git, runner, &mut scheduler).await,
            () = stopping.cancelled() => break,
        }
    }
    drop(source);
    observer.event(&WatchEvent::Stopped);
    Ok(())
}

/// Fetches the followed branch (off the runtime: `git` blocks) and
/// reports what came of it; a new commit is one more change for the
/// scheduler, and the commit the next cycles name.
async fn sync_git(git: &mut Option<GitSource>, runner: &mut Runner, scheduler: &mut Scheduler) {
    let Some(mut source) = git.take() else {
        return;
    };
    let (source, synced) = tokio::task::spawn_blocking(move || {
        let synced = source.sync();
        (source, synced)
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
    let observer = runner.observer();
    let (remote, branch) = (&source.options().remote, &source.options().branch);
    match &synced {
        git::Synced::Unchanged => {}
        git::Synced::Applied {
            commit,
            from,
            subject,
            paths,
        } => {
            observer.event(&WatchEvent::Git {
                event: &GitEvent::Applied {
                    commit,
                    from,
                    subject,
                    remote,
                    branch,
                },
            });
            runner.at_commit(commit.clone());
            let now = Instant::now();
            scheduler.on_change(now, now, paths);
        }
        git::Synced::Refused {
            commit,
            current,
            reason,
        } => observer.event(&WatchEvent::Git {
            event: &GitEvent::Refused {
                commit,
                current,
                reason,
                remote,
                branch,
            },
        }),
        git::Synced::Cleared { commit } => {
            observer.event(&WatchEvent::Git {
                event: &GitEvent::Cleared {
                    commit,
                    remote,
                    branch,
                },
            });
            runner.at_commit(commit.clone());
        }
        git::Synced::FetchFailed(error) => observer.event(&WatchEvent::Git {
            event: &GitEvent::FetchFailed { error },
        }),
    }
    *git = Some(source);
}

fn far_future() -> tokio::time::Instant {
    // Far enough to mean "never", near enough not to overflow.
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}
