//! `watch --refresh-interval SECS`: the read-back of `oapkg refresh`
//! ([`super::super::refresh::refresh_pass`]) run every SECS seconds beside
//! the watch's cycles, from the first second on. Each pass is logged; a
//! settled record fires `settled`, a drift that is new (or changed) since
//! the last pass fires `drift`; `/metrics` gets
//! `oapkg_zalo_valid_through_timestamp_seconds{oaid}` and
//! `oapkg_drift_oas`. A pass that cannot take the state lock (a cycle is
//! applying) or fails is logged and tried again at the next interval. On
//! stop, a pass under way is finished (it may have exchanged refresh
//! tokens whose new pair must be written) before the watch exits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::super::Context;
use super::super::refresh::{ZaloArgs, refresh_pass};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::readback::Drift;
use crate::spec::Oaid;

/// How long a pass waits for a cycle holding the state lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The running read-back loop.
pub struct ReadBack {
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadBack {
    /// Lets a pass under way finish, then ends the loop.
    pub async fn stop(self) {
        self.stop.notify_one();
        let _ = self.task.await;
    }
}

/// Starts the loop on the current runtime.
pub fn start(
    context: &Context,
    every: Duration,
    zalo: ZaloArgs,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
) -> ReadBack {
    let stop = Arc::new(tokio::sync::Notify::new());
    let store = context.store.clone();
    let runtime = context.runtime.clone();
    let clock = context.clock().unwrap_or_default();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let mut last_drift: BTreeMap<Oaid, Drift> = BTreeMap::new();
        loop {
            let (store, runtime, zalo) = (store.clone(), runtime.clone(), zalo.clone());
            let pass = tokio::task::spawn_blocking(move || {
                refresh_pass(
                    &store,
                    &runtime,
                    clock,
                    "oapkg watch --refresh-interval",
                    LOCK_WAIT,
                    false,
                    &zalo,
                    &[],
                    crate::ops::refresh::DEFAULT_CONCURRENCY,
                )
            })
            .await;
            match pass {
                Ok(Ok((report, _, serial))) => {
                    let r = &report.readings;
                    tracing::info!(
                        read = r.observed.len(),
                        not_read = r.not_read.len(),
                        settled = report.settled().len(),
                        drifted = report.drifted(),
                        serial,
                        "Zalo read-back: {} read, {} settled, {} drifted, {} not read",
                        r.observed.len(),
                        report.settled().len(),
                        report.drifted(),
                        r.not_read.len()
                    );
                    for (oaid, why) in &r.not_read {
                        tracing::warn!(%oaid, "Zalo read-back: not read {oaid}: {why}");
                    }
                    for key in report.settled() {
                        tracing::info!(%key, "settled {key} from Zalo's read-back: now submitted");
                        notifier.event(
                            "settled",
                            format!(
                                "{key}: Zalo shows its OA's package valid through its end; the unconfirmed \
                                 purchase is recorded as submitted (confirmed by zalo)"
                            ),
                        );
                    }
                    let mut now_drift = BTreeMap::new();
                    for a in &report.assessments {
                        if let Some(drift) = &a.drift {
                            if last_drift.get(&a.oaid) != Some(drift) {
                                tracing::warn!(oaid = %a.oaid, "drift {}: {}", a.oaid, drift.describe());
                                notifier
                                    .event("drift", format!("OA {}: {}", a.oaid, drift.describe()));
                            }
                            now_drift.insert(a.oaid.clone(), drift.clone());
                        }
                    }
                    // OAs not read this time keep their last drift.
                    for (oaid, drift) in &last_drift {
                        if r.not_read.contains_key(oaid) {
                            now_drift.insert(oaid.clone(), drift.clone());
                        }
                    }
                    last_drift = now_drift;
                    let read: Vec<(String, Option<jiff::civil::Date>)> = r
                        .observed
                        .iter()
                        .map(|(oaid, o)| (oaid.to_string(), o.valid_through))
                        .collect();
                    metrics.zalo_read(&read, last_drift.len());
                }
                Ok(Err(error)) => {
                    tracing::warn!("Zalo read-back failed: {error:#}; trying again in {every:?}");
                }
                Err(error) => tracing::warn!(%error, "Zalo read-back stopped unexpectedly"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stopped.notified() => break,
            }
        }
    });
    ReadBack { stop, task }
}
