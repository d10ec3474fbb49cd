//! `watch --listen ADDR`: what the watch has done, as Prometheus metrics
//! (`GET /metrics`) and a health answer (`GET /healthz`).
//!
//! - this module: [`Metrics`], an [`Observer`] that keeps the counters and
//!   gauges from the [`WatchEvent`]s, and renders them in the Prometheus
//!   text exposition format (HELP and TYPE lines, label values escaped)
//!   and as a health answer. No IO.
//! - [`server`]: the HTTP listener serving both (a minimal HTTP/1.1 GET
//!   server on tokio; nothing else is answered).
//!
//! Every counter is exported from the start with each of its label values
//! at 0 (so `rate()` and `increase()` see the first event, and an alert on
//! a counter is never "absent"); `oapkg_spent_estimated_total` gets its
//! `currency` from the manifests' price list, at 0 from the first plan
//! that has one. A gauge whose value is not known yet (`oapkg_balance`
//! before the first `GetBalance`, `oapkg_cycle_duration_seconds` before
//! the first cycle ends) is left out rather than shown as a made-up 0.
//!
//! A cycle's result (the `result` label of `oapkg_cycles_total`): `ok`
//! (planned, and applied or nothing to apply), `skipped` (inputs
//! unchanged, or held back), `suspended`, `invalid` (manifests), `error`
//! (today's date or the state unreadable), `refused` (a guard), `failed`
//! (the apply step did not complete), `cancelled` (stopped). Health is the
//! result of the last cycle that was not skipped: 200 for `ok` (or before
//! the first cycle ends), 503 otherwise; and 503 whatever the cycles did
//! while the last credentials check was rejected.
//!
//! To add a metric: keep its value in [`State`] from the events that
//! carry it, and write its family in [`Metrics::render`] with [`family`]
//! and [`sample`].

pub mod server;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::apply::{ApplyEvent, PackageResult};
use crate::watch::{AccountCheck, GitEvent, Observer, Reconciled, WatchEvent};

/// The `result` label values of `oapkg_cycles_total`, all exported from
/// the start.
pub const CYCLE_RESULTS: [&str; 8] = [
    "ok",
    "skipped",
    "suspended",
    "invalid",
    "error",
    "refused",
    "failed",
    "cancelled",
];

/// The `result` label values of `oapkg_purchases_total`
/// ([`PackageResult::outcome`]), all exported from the start.
pub const PURCHASE_RESULTS: [&str; 4] = ["purchased", "failed", "unconfirmed", "not_attempted"];

/// The `result` label values of `oapkg_account_checks_total`.
pub const CHECK_RESULTS: [&str; 3] = ["accepted", "rejected", "unreachable"];

/// The `result` label values of `oapkg_git_commits_total`.
pub const GIT_RESULTS: [&str; 2] = ["applied", "refused"];

/// The counters and gauges of one watch.
pub struct Metrics {
    state: Mutex<State>,
    /// `oapkg_build_info`'s labels.
    version: &'static str,
    commit: &'static str,
}

#[derive(Default)]
struct State {
    cycles: BTreeMap<&'static str, u64>,
    purchases: BTreeMap<&'static str, u64>,
    checks: BTreeMap<&'static str, u64>,
    git: BTreeMap<&'static str, u64>,
    /// Currency → the estimated cost (price list) of the packages bought.
    spent: BTreeMap<String, u64>,
    /// The result of the cycle running, decided by its events.
    current: Option<&'static str>,
    /// When the cycle running started.
    cycle_started: Option<Instant>,
    /// How long the last finished cycle took.
    cycle_duration: Option<Duration>,
    /// The last result that was not `skipped`, with why when not `ok`.
    health: Option<(&'static str, String)>,
    last_success: Option<Timestamp>,
    /// OAID → (name, end of coverage).
    coverage: BTreeMap<String, (String, Timestamp)>,
    unconfirmed: Option<usize>,
    balance: Option<f64>,
    held: BTreeMap<String, ()>,
    /// The suspend file, while it exists.
    suspended: Option<String>,
    /// Read-back (`--refresh-interval`): OAID → the local midnight after
    /// the last day Zalo shows it valid through.
    zalo_valid_through: BTreeMap<String, Timestamp>,
    /// OAs that drifted at the last read-back.
    drift_oas: usize,
    /// Whether the last credentials check accepted the keys (`None`: no
    /// check yet, or the last one reached no answer).
    credentials: Option<bool>,
    /// Why the last credentials check was rejected.
    rejected: Option<String>,
    /// The commit of the followed Git branch the watch plans from.
    git_commit: Option<String>,
    /// The branch's new commit is refused (rewritten history, bad
    /// signature): 1 while it is.
    git_refused: Option<bool>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// The metrics of this binary (`oapkg_build_info` names its version
    /// and commit).
    pub fn new() -> Metrics {
        Metrics::for_build(crate::build_info::VERSION, crate::build_info::COMMIT)
    }

    /// The metrics with `oapkg_build_info{version, commit}` as given.
    pub fn for_build(version: &'static str, commit: &'static str) -> Metrics {
        let zeros = |values: &[&'static str]| values.iter().map(|v| (*v, 0)).collect();
        Metrics {
            state: Mutex::new(State {
                cycles: zeros(&CYCLE_RESULTS),
                purchases: zeros(&PURCHASE_RESULTS),
                checks: zeros(&CHECK_RESULTS),
                git: zeros(&GIT_RESULTS),
                ..State::default()
            }),
            version,
            commit,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the last Zalo read-back found (`watch --refresh-interval`):
    /// each OA read with the day Zalo shows it valid through (none: no
    /// package), and how many drifted.
    pub fn zalo_read(&self, read: &[(String, Option<jiff::civil::Date>)], drift_oas: usize) {
        let mut state = self.state();
        for (oaid, day) in read {
            match day.and_then(crate::clock::day_ends) {
                Some(end) => {
                    state.zalo_valid_through.insert(oaid.clone(), end);
                }
                None => {
                    state.zalo_valid_through.remove(oaid);
                }
            }
        }
        state.drift_oas = drift_oas;
    }

    /// `/healthz`: healthy or not, and a one-line reason.
    pub fn health(&self) -> (bool, String) {
        let state = self.state();
        let (healthy, why) = match (&state.rejected, &state.health) {
            (Some(reason), _) => (false, format!("credentials rejected: {reason}")),
            (None, None) => (true, "ok: no cycle has finished yet".to_owned()),
            (None, Some(("ok", _))) => (true, "ok: the last cycle succeeded".to_owned()),
            (None, Some((result, why))) => (false, format!("{result}: {why}")),
        };
        match &state.suspended {
            Some(path) => (
                healthy,
                format!("{why} (suspended: {path} exists, nothing is bought)"),
            ),
            None => (healthy, why),
        }
    }

    /// `/metrics`, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let state = self.state();
        let mut out = String::new();
        family(
            &mut out,
            "oapkg_build_info",
            "gauge",
            "Always 1: the version and Git commit of the oapkg binary.",
        );
        sample(
            &mut out,
            "oapkg_build_info",
            &[("version", self.version), ("commit", self.commit)],
            1,
        );
        family(
            &mut out,
            "oapkg_cycles_total",
            "counter",
            "Watch cycles finished, by result (ok, skipped, suspended, invalid, error, refused, failed, cancelled).",
        );
        for (result, n) in &state.cycles {
            sample(&mut out, "oapkg_cycles_total", &[("result", result)], n);
        }
        family(
            &mut out,
            "oapkg_purchases_total",
            "counter",
            "Packages whose purchase ended, by result (purchased, failed, unconfirmed, not_attempted).",
        );
        for (result, n) in &state.purchases {
            sample(&mut out, "oapkg_purchases_total", &[("result", result)], n);
        }
        family(
            &mut out,
            "oapkg_spent_estimated_total",
            "counter",
            "What the packages bought cost by the manifests' price list (an estimate: eSMS charges its own prices), by currency.",
        );
        for (currency, amount) in &state.spent {
            sample(
                &mut out,
                "oapkg_spent_estimated_total",
                &[("currency", currency)],
                amount,
            );
        }
        family(
            &mut out,
            "oapkg_account_checks_total",
            "counter",
            "Credentials checks (one GetBalance at start-up and on each --interval cycle), by result (accepted, rejected, unreachable).",
        );
        for (result, n) in &state.checks {
            sample(
                &mut out,
                "oapkg_account_checks_total",
                &[("result", result)],
                n,
            );
        }
        family(
            &mut out,
            "oapkg_git_commits_total",
            "counter",
            "New commits of the followed Git branch (--git-remote), by result (applied: planned from; refused: rewritten history or a signature git verify-commit did not accept).",
        );
        for (result, n) in &state.git {
            sample(
                &mut out,
                "oapkg_git_commits_total",
                &[("result", result)],
                n,
            );
        }
        family(
            &mut out,
            "oapkg_last_success_timestamp_seconds",
            "gauge",
            "When a cycle last succeeded (Unix time); 0 before one has.",
        );
        sample(
            &mut out,
            "oapkg_last_success_timestamp_seconds",
            &[],
            state.last_success.map_or(0, |t| t.as_second()),
        );
        if let Some(took) = state.cycle_duration {
            family(
                &mut out,
                "oapkg_cycle_duration_seconds",
                "gauge",
                "How long the last finished cycle took (read, plan and apply), in seconds.",
            );
            sample(
                &mut out,
                "oapkg_cycle_duration_seconds",
                &[],
                took.as_secs_f64(),
            );
        }
        family(
            &mut out,
            "oapkg_coverage_end_timestamp_seconds",
            "gauge",
            "When each OA's last declared or recorded package ends (Unix time of the local midnight after its last day).",
        );
        for (oaid, (name, end)) in &state.coverage {
            sample(
                &mut out,
                "oapkg_coverage_end_timestamp_seconds",
                &[("oaid", oaid), ("name", name)],
                end.as_second(),
            );
        }
        family(
            &mut out,
            "oapkg_unconfirmed_packages",
            "gauge",
            "Packages recorded unconfirmed in the state as of the last plan.",
        );
        sample(
            &mut out,
            "oapkg_unconfirmed_packages",
            &[],
            state.unconfirmed.unwrap_or(0),
        );
        family(
            &mut out,
            "oapkg_held_changes",
            "gauge",
            "Changes held by the last apply step (they need a flag, or their OA failed the pre-flight).",
        );
        sample(&mut out, "oapkg_held_changes", &[], state.held.len());
        family(
            &mut out,
            "oapkg_suspended",
            "gauge",
            "1 while the suspend file exists (cycles plan but buy nothing), else 0.",
        );
        sample(
            &mut out,
            "oapkg_suspended",
            &[],
            u8::from(state.suspended.is_some()),
        );
        family(
            &mut out,
            "oapkg_zalo_valid_through_timestamp_seconds",
            "gauge",
            "When each OA's package ends as Zalo shows it, at the last read-back (Unix time of the local midnight after its last day).",
        );
        for (oaid, end) in &state.zalo_valid_through {
            let _ = writeln!(
                out,
                "oapkg_zalo_valid_through_timestamp_seconds{{oaid=\"{}\"}} {}",
                escape_label(oaid),
                end.as_second()
            );
        }
        family(
            &mut out,
            "oapkg_drift_oas",
            "gauge",
            "OAs whose recorded coverage and Zalo's date disagreed at the last read-back.",
        );
        let _ = writeln!(out, "oapkg_drift_oas {}", state.drift_oas);
        if let Some(balance) = state.balance {
            family(
                &mut out,
                "oapkg_balance",
                "gauge",
                "The eSMS account balance the last GetBalance read (credentials check or pre-flight).",
            );
            sample(&mut out, "oapkg_balance", &[], balance);
        }
        if let Some(valid) = state.credentials {
            family(
                &mut out,
                "oapkg_credentials_valid",
                "gauge",
                "1 when the last credentials check was accepted, 0 when eSMS rejected the keys, IP or account.",
            );
            sample(&mut out, "oapkg_credentials_valid", &[], u8::from(valid));
        }
        if let Some(commit) = &state.git_commit {
            family(
                &mut out,
                "oapkg_git_commit_info",
                "gauge",
                "Always 1: the commit of the followed Git branch the watch plans from.",
            );
            sample(&mut out, "oapkg_git_commit_info", &[("commit", commit)], 1);
        }
        if let Some(refused) = state.git_refused {
            family(
                &mut out,
                "oapkg_git_refused",
                "gauge",
                "1 while the followed branch's newest commit is refused (rewritten history, or no signature git verify-commit accepts), else 0.",
            );
            sample(&mut out, "oapkg_git_refused", &[], u8::from(refused));
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line, its label values escaped.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        let labels: Vec<String> = labels
            .iter()
            .map(|(label, value)| format!("{label}=\"{}\"", escape_label(value)))
            .collect();
        let _ = write!(out, "{{{}}}", labels.join(","));
    }
    let _ = writeln!(out, " {value}");
}

/// A label value as the exposition format wants it: `\`, `"` and newline
/// escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl Observer for Metrics {
    fn event(&self, event: &WatchEvent<'_>) {
        let mut state = self.state();
        let mut set = |result: &'static str| state.current = Some(result);
        match *event {
            WatchEvent::CycleStarted { .. } => {
                state.current = None;
                state.cycle_started = Some(Instant::now());
            }
            WatchEvent::Skipped { .. } => set("skipped"),
            WatchEvent::Invalid { error, .. } => {
                set("invalid");
                let why = error
                    .errors
                    .first()
                    .map(|d| {
                        format!(
                            "the manifests are invalid: {}:{}:{}: {}",
                            d.source.file, d.source.line, d.source.column, d.message
                        )
                    })
                    .unwrap_or_else(|| "the manifests are invalid".to_owned());
                state.health = Some(("invalid", crate::text::escape_controls(&why).into_owned()));
            }
            WatchEvent::Unreadable { .. } | WatchEvent::ReadAbandoned { .. } => {
                set("error");
                state.health = Some(("error", "the inputs could not be read".to_owned()));
            }
            WatchEvent::Planned { plan, .. } => {
                set("ok");
                state.unconfirmed = Some(plan.summary().unconfirmed);
                if let Some(prices) = &plan.prices {
                    state.spent.entry(prices.currency.clone()).or_default();
                }
            }
            WatchEvent::Held { .. } | WatchEvent::PutOff { .. } => set("skipped"),
            WatchEvent::NotAppliedStopping { .. } => set("cancelled"),
            WatchEvent::NotAppliedSuspended { .. } => set("suspended"),
            WatchEvent::Suspended { path } => {
                state.suspended =
                    Some(crate::text::escape_controls(&path.display().to_string()).into_owned());
            }
            WatchEvent::Resumed { .. } => state.suspended = None,
            WatchEvent::Coverage { ends, .. } => {
                state.coverage = ends
                    .iter()
                    .filter_map(|oa| {
                        Some((
                            oa.oaid.to_string(),
                            (
                                oa.name.clone().unwrap_or_default(),
                                crate::clock::day_ends(oa.end)?,
                            ),
                        ))
                    })
                    .collect();
            }
            WatchEvent::ApplyStarted { .. } => state.held.clear(),
            WatchEvent::Apply { event, cost, .. } => match *event {
                ApplyEvent::PurchaseDone { result, .. } => {
                    *state.purchases.entry(result.outcome()).or_default() += 1;
                    if let (PackageResult::Submitted { .. }, Some(cost)) = (result, cost) {
                        let spent = state.spent.entry(cost.currency.clone()).or_default();
                        *spent = spent.saturating_add(cost.amount);
                    }
                }
                ApplyEvent::Balance { amount, .. } => state.balance = Some(amount),
                ApplyEvent::Held { key, .. } => {
                    state.held.insert(key.to_string(), ());
                }
                _ => {}
            },
            WatchEvent::AccountChecked { check, .. } => {
                let result = match check {
                    AccountCheck::Accepted { balance } => {
                        state.balance = Some(*balance);
                        state.credentials = Some(true);
                        state.rejected = None;
                        "accepted"
                    }
                    AccountCheck::Rejected { reason } => {
                        state.credentials = Some(false);
                        state.rejected = Some(crate::text::escape_controls(reason).into_owned());
                        "rejected"
                    }
                    AccountCheck::Unreachable { .. } => "unreachable",
                };
                *state.checks.entry(result).or_default() += 1;
            }
            WatchEvent::Git { event } => match *event {
                GitEvent::Applied { commit, .. } => {
                    state.git_commit = Some(commit.to_owned());
                    state.git_refused = Some(false);
                    *state.git.entry("applied").or_default() += 1;
                }
                GitEvent::Checkout { commit, .. } => {
                    state.git_commit = Some(commit.to_owned());
                    state.git_refused.get_or_insert(false);
                }
                GitEvent::Cleared { commit, .. } => {
                    state.git_commit = Some(commit.to_owned());
                    state.git_refused = Some(false);
                }
                GitEvent::Refused { .. } => {
                    state.git_refused = Some(true);
                    *state.git.entry("refused").or_default() += 1;
                }
                GitEvent::FetchFailed { .. } => {}
            },
            WatchEvent::Applied { reconciled, .. } => {
                let (result, why) = match reconciled {
                    Reconciled::Done { .. } => ("ok", String::new()),
                    Reconciled::Refused { reason } => ("refused", reason.clone()),
                    Reconciled::Failed { reason } => ("failed", reason.clone()),
                    Reconciled::Cancelled { report } => ("cancelled", report.clone()),
                };
                state.current = Some(result);
                if result != "ok" {
                    state.health = Some((result, crate::text::escape_controls(&why).into_owned()));
                }
            }
            WatchEvent::CycleFinished { .. } => {
                let result = state.current.take().unwrap_or("ok");
                *state.cycles.entry(result).or_default() += 1;
                if let Some(started) = state.cycle_started.take() {
                    state.cycle_duration = Some(started.elapsed());
                }
                match result {
                    "ok" => {
                        state.health = Some(("ok", String::new()));
                        state.last_success = Some(Timestamp::now());
                    }
                    "skipped" | "suspended" => {}
                    _ if state.health.as_ref().is_some_and(|(r, _)| *r == result) => {}
                    other => state.health = Some((other, "see the log".to_owned())),
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(metrics: &Metrics, id: u64) {
        metrics.event(&WatchEvent::CycleStarted {
            start: &crate::watch::schedule::Start {
                id,
                trigger: crate::watch::schedule::Trigger::Startup,
                paths: Vec::new(),
                path_count: 0,
            },
        });
    }

    #[test]
    fn every_counter_starts_at_zero_with_each_label_and_build_info_is_one() {
        let text = Metrics::for_build("1.2.3", "0123456789ab").render();
        for (family, labels) in [
            ("oapkg_cycles_total", &CYCLE_RESULTS[..]),
            ("oapkg_purchases_total", &PURCHASE_RESULTS[..]),
            ("oapkg_account_checks_total", &CHECK_RESULTS[..]),
            ("oapkg_git_commits_total", &GIT_RESULTS[..]),
        ] {
            for label in labels {
                let line = format!("{family}{{result=\"{label}\"}} 0\n");
                assert!(text.contains(&line), "{line} in\n{text}");
            }
        }
        assert!(
            text.contains("oapkg_build_info{version=\"1.2.3\",commit=\"0123456789ab\"} 1\n"),
            "{text}"
        );
        // Not known yet: not made up.
        assert!(!text.contains("oapkg_balance "), "{text}");
        assert!(!text.contains("oapkg_cycle_duration_seconds "), "{text}");
    }

    #[test]
    fn rejected_credentials_make_health_fail_whatever_the_cycles_did_until_accepted() {
        let metrics = Metrics::new();
        start(&metrics, 1);
        let rejected = AccountCheck::Rejected {
            reason: "eSMS refused the call with code 101".into(),
        };
        metrics.event(&WatchEvent::AccountChecked {
            cycle: 1,
            check: &rejected,
            changed: true,
        });
        metrics.event(&WatchEvent::CycleFinished { cycle: 1 });
        let (healthy, why) = metrics.health();
        assert!(!healthy);
        assert!(why.starts_with("credentials rejected: "), "{why}");
        assert!(metrics.render().contains("oapkg_credentials_valid 0\n"));
        start(&metrics, 2);
        metrics.event(&WatchEvent::AccountChecked {
            cycle: 2,
            check: &AccountCheck::Accepted { balance: 10.0 },
            changed: true,
        });
        metrics.event(&WatchEvent::CycleFinished { cycle: 2 });
        assert!(metrics.health().0);
        let text = metrics.render();
        assert!(text.contains("oapkg_balance 10\n"), "{text}");
        assert!(text.contains("oapkg_account_checks_total{result=\"rejected\"} 1\n"));
        assert!(text.contains("oapkg_cycle_duration_seconds "), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_family_has_help_and_type() {
        let metrics = Metrics::new();
        metrics.event(&WatchEvent::CycleStarted {
            start: &crate::watch::schedule::Start {
                id: 1,
                trigger: crate::watch::schedule::Trigger::Startup,
                paths: Vec::new(),
                path_count: 0,
            },
        });
        metrics.event(&WatchEvent::CycleFinished { cycle: 1 });
        let text = metrics.render();
        assert!(
            text.contains("oapkg_cycles_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(metrics.health().0);
    }
}
