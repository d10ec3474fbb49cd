//! Turning watch's [`WatchEvent`]s into what the user sees: each planned
//! cycle's plan on stdout ([`PlanPrinter`]) and one log record per decision
//! on stderr ([`LogLines`]): human lines by default, JSON objects with
//! `--log-format json`. Both are [`Observer`]s; another consumer
//! (notifications, metrics) is one more in the list [`super::run`] builds.
//!
//! The log records keep the targets they had when the library wrote them
//! (`oapkg::watch::cycle` for a cycle's decisions, `oapkg::watch` for the
//! loop, `oapkg::watch::source` for the file watcher), so `RUST_LOG`
//! filters and log queries keep working.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::super::apply::{done_line, unexpected_duplicate_warning};
use super::super::context::print;
use super::super::is_broken_pipe;
use crate::apply::ApplyEvent;
use crate::manifest::ManifestError;
use crate::plan::render;
use crate::state::StateError;
use crate::watch::policy::{ApplyGate, Skip};
use crate::watch::schedule::{Start, Trigger};
use crate::watch::{
    AccountCheck, Canceller, GitEvent, GoodPlan, Observer, Reconciled, Unreadable, WatchEvent,
};

/// Targets of the log records (see the module docs).
const LOOP: &str = "oapkg::watch";
const CYCLE: &str = "oapkg::watch::cycle";
const SOURCE: &str = "oapkg::watch::source";
const CLI: &str = "oapkg::cli::watch";
const GIT: &str = "oapkg::watch::git";

/// Prints each planned cycle on stdout: in text mode a header line
/// (`=== cycle N · time · trigger ===`) and the plan exactly as `oapkg
/// plan` prints it; in JSON mode one object per line, `{"time", "cycle",
/// "trigger", "paths", "plan"}`.
pub(super) struct PlanPrinter {
    pub json: bool,
    pub color: bool,
    /// A closed stdout (`oapkg watch | head`) ends the watch, as it ends
    /// `oapkg plan`.
    pub stop: Arc<Canceller>,
    pub broken: AtomicBool,
}

impl Observer for PlanPrinter {
    fn event(&self, event: &WatchEvent<'_>) {
        let WatchEvent::Planned { start, plan, .. } = event else {
            return;
        };
        if self.broken.load(Ordering::SeqCst) {
            return;
        }
        let time = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now());
        let text = if self.json {
            let record = serde_json::json!({
                "time": time.to_string(),
                "cycle": start.id,
                "trigger": start.trigger.as_str(),
                "paths": start.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "plan": render::JsonPlan::from_plan(plan),
            });
            format!("{record}\n")
        } else {
            let body = render::text(plan, &render::TextOptions { color: self.color });
            format!(
                "=== cycle {} · {time} · {} ===\n{body}\n",
                start.id,
                describe_trigger(start)
            )
        };
        match print(&text) {
            Ok(()) => {}
            Err(error) if is_broken_pipe(&error) => {
                tracing::info!(target: CLI, "stdout is closed: stopping");
                self.broken.store(true, Ordering::SeqCst);
                self.stop.cancel();
            }
            // Logged, not fatal: the plan is also summed up in the log, and
            // an apply step does not depend on it.
            Err(error) => {
                tracing::error!(target: CLI, error = %format!("{error:#}"), "cannot print the plan")
            }
        }
    }
}

/// Logs every decision on stderr, with structured fields (so `--log-format
/// json` carries them).
pub(super) struct LogLines;

impl Observer for LogLines {
    fn event(&self, event: &WatchEvent<'_>) {
        match *event {
            WatchEvent::Watching {
                dirs,
                poll,
                debounce,
                interval,
                apply,
            } => {
                let dirs: Vec<String> = dirs
                    .iter()
                    .map(|d| {
                        format!(
                            "{}{}",
                            d.path.display(),
                            if d.recursive { "/**" } else { "" }
                        )
                    })
                    .collect();
                tracing::info!(
                    target: LOOP,
                    dirs = %dirs.join(", "),
                    mode = if poll.is_some() { "poll" } else { "native" },
                    debounce_ms = debounce.as_millis() as u64,
                    interval_secs = interval.map(|i| i.as_secs_f64()),
                    apply,
                    "watching {}{}",
                    dirs.join(", "),
                    match poll {
                        Some(period) => format!(" (polling every {}s)", period.as_secs_f64()),
                        None => String::new(),
                    }
                );
            }
            WatchEvent::CycleStarted { start } => {
                // A summary (`a.yaml, b.yaml (+3 more)`), not a list: log
                // fields are text; `paths` is the list in stdout's records.
                let changed = describe_paths(start);
                tracing::debug!(
                    target: CYCLE,
                    cycle = start.id,
                    trigger = start.trigger.as_str(),
                    changed,
                    "cycle started"
                );
            }
            WatchEvent::Skipped {
                start,
                inputs,
                since,
                skip,
            } => log_skip(
                start.id,
                start.trigger.as_str(),
                &inputs.manifest_hash,
                inputs.state.serial,
                since,
                skip,
            ),
            WatchEvent::Invalid {
                cycle,
                error,
                last_good,
            } => log_invalid(cycle, error, last_good),
            WatchEvent::Unreadable {
                cycle,
                cause,
                retry_in,
            } => {
                let error = match cause {
                    Unreadable::Today(error) => error.to_owned(),
                    Unreadable::State(error) => state_error(error),
                };
                tracing::error!(
                    target: CYCLE,
                    cycle,
                    retry_in_secs = retry_in.as_secs(),
                    "{error}; nothing is planned or bought; trying again in {}",
                    seconds(retry_in)
                );
            }
            WatchEvent::ReadAbandoned { cycle } => tracing::info!(
                target: CYCLE,
                cycle,
                "stop requested while reading the manifests and the state: nothing was planned or bought"
            ),
            WatchEvent::Planned {
                start,
                inputs,
                plan,
            } => {
                let summary = plan.summary();
                // A summary (`a.yaml, b.yaml (+3 more)`), not a list: log
                // fields are text; `paths` is the list in stdout's records.
                let changed = describe_paths(start);
                tracing::info!(
                    target: CYCLE,
                    cycle = start.id,
                    trigger = start.trigger.as_str(),
                    changed,
                    manifest_hash = inputs.manifest_hash.as_str(),
                    state_serial = inputs.state.serial,
                    purchase = summary.purchase,
                    replace = summary.replace,
                    unconfirmed = summary.unconfirmed,
                    unchanged = summary.unchanged,
                    orphan = summary.orphan,
                    expired = summary.expired,
                    "planned ({}): {}",
                    describe_trigger(start),
                    summary.line()
                );
            }
            WatchEvent::Held {
                cycle,
                inputs,
                gate,
            } => log_hold(cycle, &inputs.manifest_hash, gate),
            WatchEvent::NotAppliedStopping { cycle, inputs } => tracing::info!(
                target: CYCLE,
                cycle,
                manifest_hash = inputs.manifest_hash.as_str(),
                "stopping: this plan is not applied"
            ),
            WatchEvent::NotAppliedSuspended {
                cycle,
                inputs,
                path,
            } => tracing::info!(
                target: CYCLE,
                cycle,
                manifest_hash = inputs.manifest_hash.as_str(),
                suspended = true,
                "suspended ({} exists): this plan is not applied",
                path.display()
            ),
            WatchEvent::Suspended { path } => tracing::warn!(
                target: LOOP,
                path = %path.display(),
                suspended = true,
                "suspended: {} exists; cycles plan but buy nothing until it is removed",
                path.display()
            ),
            WatchEvent::Resumed { path } => tracing::info!(
                target: LOOP,
                path = %path.display(),
                suspended = false,
                "resumed: {} is gone; planning and buying again",
                path.display()
            ),
            WatchEvent::PutOff { cycle, inputs } => tracing::info!(
                target: CYCLE,
                cycle,
                manifest_hash = inputs.manifest_hash.as_str(),
                "the manifests changed while planning: planning again before applying anything"
            ),
            WatchEvent::ApplyStarted { .. } => {}
            // One log line per finished purchase, inside the cycle's span.
            WatchEvent::Apply {
                event:
                    ApplyEvent::PurchaseDone {
                        change,
                        key,
                        result,
                    },
                ..
            } => {
                let line = done_line(change.action(), key.as_str(), result, false);
                tracing::info!(
                    target: CLI,
                    key = key.as_str(),
                    submitted = result.is_submitted(),
                    "{line}"
                );
                if let Some(warning) = unexpected_duplicate_warning(key.as_str(), result) {
                    tracing::warn!(target: CLI, key = key.as_str(), "{warning}");
                }
            }
            WatchEvent::Apply { .. }
            | WatchEvent::Coverage { .. }
            | WatchEvent::CycleFinished { .. } => {}
            WatchEvent::ChangeHeld {
                cycle,
                change,
                reason,
            } => tracing::warn!(
                target: CYCLE,
                cycle,
                key = change.key.as_str(),
                held = true,
                "held {} {}: {reason}; the other packages of the cycle go ahead, this one waits for the manifests or the flags to change",
                change.action(),
                change.key
            ),
            WatchEvent::LowBalance {
                cycle,
                balance,
                cost,
            } => tracing::warn!(
                target: CYCLE,
                cycle,
                balance,
                cost = cost.amount,
                "the eSMS balance ({}) is below what this cycle's purchases cost ({cost})",
                crate::prices::thousands(balance.max(0.0) as u64)
            ),
            WatchEvent::Expiring { cycle, oa } => tracing::warn!(
                target: CYCLE,
                cycle,
                oaid = oa.oaid.as_str(),
                end = %oa.end,
                days_left = oa.days_left,
                "OA {}{}: coverage ends {} ({} day(s) left) with nothing declared after it",
                oa.oaid,
                oa.name.as_deref().map(|n| format!(" ({})", crate::text::escape_controls(n))).unwrap_or_default(),
                oa.end,
                oa.days_left
            ),
            WatchEvent::Applied {
                cycle,
                inputs,
                reconciled,
            } => log_applied(cycle, &inputs.manifest_hash, reconciled),
            WatchEvent::RetryScheduled { cycle, inputs, at } => {
                let wait = at.saturating_duration_since(Instant::now());
                tracing::info!(
                    target: CYCLE,
                    cycle,
                    manifest_hash = inputs.manifest_hash.as_str(),
                    retry_in_secs = wait.as_secs(),
                    "trying these manifests again in {}, sooner if they change",
                    seconds(wait)
                );
            }
            WatchEvent::StopRequested { cycle } => tracing::info!(
                target: LOOP,
                cycle,
                "stop requested: finishing the cycle in progress"
            ),
            WatchEvent::DirGone { dir } => tracing::warn!(
                target: SOURCE,
                dir = %dir.display(),
                "a watched directory is gone; it is watched again when it is back \
                 and a cycle runs (a change elsewhere, or --interval)"
            ),
            WatchEvent::DirRewatched { dir } => tracing::info!(
                target: SOURCE,
                dir = %dir.display(),
                "watching a replaced directory again"
            ),
            WatchEvent::DirRewatchFailed { dir, error } => tracing::warn!(
                target: SOURCE,
                dir = %dir.display(),
                %error,
                "cannot watch a replaced directory"
            ),
            WatchEvent::WatcherError { error } => tracing::warn!(
                target: SOURCE,
                %error,
                "file watcher error; planning again to be safe"
            ),
            WatchEvent::EventsLost => tracing::warn!(
                target: SOURCE,
                "the file watcher lost events (queue overflow); planning again"
            ),
            WatchEvent::AccountChecked {
                cycle,
                check,
                changed,
            } => log_account_check(cycle, check, changed),
            WatchEvent::Git { event } => log_git(event),
            WatchEvent::Stopped => tracing::info!(target: LOOP, "stopped watching"),
        }
    }
}

fn log_account_check(cycle: u64, check: &AccountCheck, changed: bool) {
    match check {
        AccountCheck::Accepted { balance } if changed => tracing::info!(
            target: CYCLE,
            cycle,
            credentials = "accepted",
            balance,
            "eSMS accepted the credentials (balance {})",
            crate::prices::thousands(balance.max(0.0) as u64)
        ),
        AccountCheck::Accepted { balance } => tracing::debug!(
            target: CYCLE,
            cycle,
            credentials = "accepted",
            balance,
            "eSMS still accepts the credentials"
        ),
        AccountCheck::Rejected { reason } => tracing::error!(
            target: CYCLE,
            cycle,
            credentials = "rejected",
            "eSMS rejected the credentials: {reason}; nothing can be bought until the keys (or the \
             account, or this host's IP whitelist) are fixed; /healthz answers 503 until then"
        ),
        AccountCheck::Unreachable { reason } => tracing::warn!(
            target: CYCLE,
            cycle,
            credentials = "unknown",
            "cannot check the credentials: {reason}; checked again on the next --interval"
        ),
    }
}

fn log_git(event: &GitEvent<'_>) {
    let line = event.describe().unwrap_or_default();
    match *event {
        GitEvent::Checkout { commit, .. } => tracing::info!(target: GIT, commit, "{line}"),
        GitEvent::Applied { commit, from, .. } => {
            tracing::info!(target: GIT, commit, from, git = "applied", "{line}")
        }
        GitEvent::Refused {
            commit,
            current,
            reason,
            ..
        } => tracing::error!(
            target: GIT,
            commit,
            current,
            git = "refused",
            refusal = reason.kind(),
            "{line}. See docs/operations.md (\"A refused commit\") to accept it by hand"
        ),
        GitEvent::Cleared { commit, .. } => {
            tracing::info!(target: GIT, commit, git = "cleared", "{line}")
        }
        GitEvent::FetchFailed { error } => tracing::warn!(
            target: GIT,
            "cannot fetch the followed branch: {error}; the checkout is unchanged, fetching again \
             next --git-interval"
        ),
    }
}

fn log_invalid(cycle: u64, error: &ManifestError, last_good: Option<&GoodPlan>) {
    for diagnostic in &error.errors {
        tracing::error!(
            target: CYCLE,
            cycle,
            file = %diagnostic.source.file,
            line = diagnostic.source.line,
            column = diagnostic.source.column,
            "{}",
            one_line(&diagnostic.to_string())
        );
    }
    for warning in &error.warnings {
        tracing::warn!(
            target: CYCLE,
            cycle,
            file = %warning.source.file,
            line = warning.source.line,
            column = warning.source.column,
            "{}",
            one_line(&warning.to_string())
        );
    }
    let errors = error.errors.len();
    let kept = match last_good {
        Some(good) => format!(
            "keeping the last good plan (cycle {}, manifests {}, {} packages)",
            good.cycle,
            short_hash(&good.manifest_hash),
            good.packages
        ),
        None => "no valid manifests seen yet".to_owned(),
    };
    tracing::error!(
        target: CYCLE,
        cycle,
        errors,
        "the manifests are invalid ({errors} error{}): nothing is planned or bought; {kept}; \
         waiting for the files to change",
        if errors == 1 { "" } else { "s" }
    );
}

fn log_skip(
    cycle: u64,
    trigger: &str,
    manifest_hash: &str,
    state_serial: u64,
    since: u64,
    skip: &Skip,
) {
    match skip {
        Skip::Unchanged => tracing::info!(
            target: CYCLE,
            cycle,
            trigger,
            manifest_hash,
            state_serial,
            skipped = "unchanged",
            "skipped ({trigger}): manifests {} and state serial {state_serial} unchanged since cycle {since}",
            short_hash(manifest_hash)
        ),
        Skip::BackingOff { until, failures } => {
            let wait = until.saturating_duration_since(Instant::now());
            tracing::info!(
                target: CYCLE,
                cycle,
                trigger,
                manifest_hash,
                state_serial,
                skipped = "backoff",
                failures,
                "skipped ({trigger}): applying these manifests failed {failures} time(s); next attempt in {}",
                seconds(wait)
            )
        }
        Skip::Refused { reason } => tracing::info!(
            target: CYCLE,
            cycle,
            trigger,
            manifest_hash,
            state_serial,
            skipped = "refused",
            "skipped ({trigger}): applying these manifests was refused ({reason}); waiting for the manifests or the state to change"
        ),
    }
}

fn log_hold(cycle: u64, manifest_hash: &str, gate: &ApplyGate) {
    match gate {
        ApplyGate::Waiting {
            until,
            failures,
            reason,
        } => tracing::warn!(
            target: CYCLE,
            cycle,
            manifest_hash,
            failures,
            "not applying: applying these manifests failed {failures} time(s) ({reason}); next attempt in {}",
            seconds(until.saturating_duration_since(Instant::now()))
        ),
        ApplyGate::Parked { reason } => tracing::warn!(
            target: CYCLE,
            cycle,
            manifest_hash,
            "not applying: applying these manifests with this state was refused ({reason}); change the manifests"
        ),
        ApplyGate::Clear | ApplyGate::RetryDue { .. } => {}
    }
}

fn log_applied(cycle: u64, manifest_hash: &str, reconciled: &Reconciled) {
    match reconciled {
        Reconciled::Done { report } => {
            tracing::info!(target: CYCLE, cycle, manifest_hash, outcome = "done", "{report}")
        }
        Reconciled::Refused { reason } => tracing::error!(
            target: CYCLE,
            cycle,
            manifest_hash,
            outcome = "refused",
            "apply refused: {reason}; not tried again until the manifests or the state change"
        ),
        Reconciled::Failed { reason } => tracing::error!(
            target: CYCLE,
            cycle,
            manifest_hash,
            outcome = "failed",
            "apply failed: {reason}"
        ),
        Reconciled::Cancelled { report } => tracing::info!(
            target: CYCLE,
            cycle,
            manifest_hash,
            outcome = "cancelled",
            "apply stopped: {report}"
        ),
    }
}

/// `startup`, `change: a.yaml, b.yaml (+3 more)`, `interval`, `retry`.
fn describe_trigger(start: &Start) -> String {
    match start.trigger {
        Trigger::Change if start.path_count > 0 => format!("change: {}", describe_paths(start)),
        trigger => trigger.as_str().to_owned(),
    }
}

fn describe_paths(start: &Start) -> String {
    let mut out = start
        .paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if start.path_count > start.paths.len() {
        out.push_str(&format!(
            " (+{} more)",
            start.path_count - start.paths.len()
        ));
    }
    out
}

/// `sha256:0123456789ab` — enough to tell two versions apart in a log line.
fn short_hash(hash: &str) -> &str {
    hash.get(..19).unwrap_or(hash)
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64().ceil() as u64)
}

fn one_line(text: &str) -> String {
    text.replace("\n  ", "; ").replace('\n', "; ")
}

fn state_error(error: &StateError) -> String {
    let mut out = format!("cannot use the state: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    out
}
