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
//! A cycle's result (the `result` label of `oapkg_cycles_total`): `ok`
//! (planned, and applied or nothing to apply), `skipped` (inputs
//! unchanged, or held back), `invalid` (manifests), `error` (today's date
//! or the state unreadable), `refused` (a guard), `failed` (the apply step
//! did not complete), `cancelled` (stopped). Health is the result of the
//! last cycle that was not skipped: 200 for `ok` (or before the first
//! cycle ends), 503 otherwise.

pub mod server;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use jiff::Timestamp;

use crate::apply::ApplyEvent;
use crate::watch::{Observer, Reconciled, WatchEvent};

/// The counters and gauges of one watch.
#[derive(Default)]
pub struct Metrics(Mutex<State>);

#[derive(Default)]
struct State {
    cycles: BTreeMap<&'static str, u64>,
    purchases: BTreeMap<&'static str, u64>,
    /// The result of the cycle running, decided by its events.
    current: Option<&'static str>,
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
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0
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
        let (healthy, why) = match &state.health {
            None => (true, "ok: no cycle has finished yet".to_owned()),
            Some(("ok", _)) => (true, "ok: the last cycle succeeded".to_owned()),
            Some((result, why)) => (false, format!("{result}: {why}")),
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
            "oapkg_cycles_total",
            "counter",
            "Watch cycles finished, by result (ok, skipped, suspended, invalid, error, refused, failed, cancelled).",
        );
        for (result, n) in &state.cycles {
            let _ = writeln!(out, "oapkg_cycles_total{{result=\"{result}\"}} {n}");
        }
        family(
            &mut out,
            "oapkg_purchases_total",
            "counter",
            "Packages whose purchase ended, by result (purchased, failed, unconfirmed, not_attempted).",
        );
        for (result, n) in &state.purchases {
            let _ = writeln!(out, "oapkg_purchases_total{{result=\"{result}\"}} {n}");
        }
        family(
            &mut out,
            "oapkg_last_success_timestamp_seconds",
            "gauge",
            "When a cycle last succeeded (Unix time); 0 before one has.",
        );
        let _ = writeln!(
            out,
            "oapkg_last_success_timestamp_seconds {}",
            state.last_success.map_or(0, |t| t.as_second())
        );
        family(
            &mut out,
            "oapkg_coverage_end_timestamp_seconds",
            "gauge",
            "When each OA's last declared or recorded package ends (Unix time of the local midnight after its last day).",
        );
        for (oaid, (name, end)) in &state.coverage {
            let _ = writeln!(
                out,
                "oapkg_coverage_end_timestamp_seconds{{oaid=\"{}\",name=\"{}\"}} {}",
                escape_label(oaid),
                escape_label(name),
                end.as_second()
            );
        }
        family(
            &mut out,
            "oapkg_unconfirmed_packages",
            "gauge",
            "Packages recorded unconfirmed in the state as of the last plan.",
        );
        let _ = writeln!(
            out,
            "oapkg_unconfirmed_packages {}",
            state.unconfirmed.unwrap_or(0)
        );
        family(
            &mut out,
            "oapkg_held_changes",
            "gauge",
            "Changes held by the last apply step (they need a flag, or their OA failed the pre-flight).",
        );
        let _ = writeln!(out, "oapkg_held_changes {}", state.held.len());
        family(
            &mut out,
            "oapkg_suspended",
            "gauge",
            "1 while the suspend file exists (cycles plan but buy nothing), else 0.",
        );
        let _ = writeln!(
            out,
            "oapkg_suspended {}",
            u8::from(state.suspended.is_some())
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
                "The eSMS account balance the last pre-flight read.",
            );
            let _ = writeln!(out, "oapkg_balance {balance}");
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
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
            WatchEvent::CycleStarted { .. } => state.current = None,
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
            WatchEvent::Apply { event, .. } => match *event {
                ApplyEvent::PurchaseDone { result, .. } => {
                    *state.purchases.entry(result.outcome()).or_default() += 1;
                }
                ApplyEvent::Balance { amount, .. } => state.balance = Some(amount),
                ApplyEvent::Held { key, .. } => {
                    state.held.insert(key.to_string(), ());
                }
                _ => {}
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
