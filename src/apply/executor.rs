//! The async part of a run: a pool of at most `parallelism` packages in
//! flight, each one's attempts in order (so never two requests for one key
//! at once), backoff sleeps, journal writes, and stopping.
//!
//! Every package goes through the same steps, and the order is the
//! exactly-once guarantee:
//!
//! 1. its intent is appended to the journal and fsync'd; only then
//! 2. is a request sent (and perhaps, after a backoff, another);
//! 3. the settled answer is appended and fsync'd; only then is the package
//!    done (its `PurchaseDone` event, its place in the report).
//!
//! A process killed anywhere in there leaves the intent on disk without an
//! outcome, which every later load reads as `unconfirmed`.
//!
//! All packages run as futures of the one task that awaits [`run`] (no
//! spawned tasks): events reach the caller's callback in order, and
//! dropping the run drops its requests. Journal writes go to the blocking
//! pool, as they fsync.

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;

use super::decide::{self, Attempts, Job, Verdict};
use super::{ApplyEvent, ApplyOptions, CancelSignal, PackageResult, RetryPolicy, StopReason};
use crate::esms::Client;
use crate::state::{Journal, JournalOutcome, StateError};

/// What [`run`] did: one result per job, in the jobs' order.
#[derive(Debug)]
pub(crate) struct Execution {
    pub results: Vec<PackageResult>,
    pub stopped: Option<StopReason>,
    /// Whether anything was appended to the journal (so it must be folded).
    pub journaled: bool,
}

impl Execution {
    /// A run stopped before its first request.
    pub fn stopped_before_start(jobs: &[Job<'_>], reason: StopReason) -> Execution {
        let results = jobs.iter().map(|job| not_attempted(job, &reason)).collect();
        Execution {
            results,
            stopped: Some(reason),
            journaled: false,
        }
    }
}

fn not_attempted(job: &Job<'_>, reason: &StopReason) -> PackageResult {
    PackageResult::NotAttempted {
        action: job.change.action,
        reason: format!("not sent: the run stopped ({reason})"),
    }
}

/// One finished job.
struct Done {
    index: usize,
    result: PackageResult,
    journaled: bool,
    stop: Option<StopReason>,
}

/// Sends every job (until stopped) and records each answer.
pub(crate) async fn run(
    jobs: &[Job<'_>],
    client: &Client,
    journal: &Arc<Mutex<Journal>>,
    options: &ApplyOptions,
    on_event: &(dyn Fn(ApplyEvent<'_>) + Sync),
    cancel: &CancelSignal,
) -> Execution {
    let parallelism = options.parallelism.max(1);
    // Tells jobs to send nothing more (no first request, no retry).
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut results: Vec<Option<PackageResult>> = vec![None; jobs.len()];
    let mut stopped: Option<StopReason> = None;
    let mut journaled = false;
    let mut next = 0;
    let mut running = FuturesUnordered::new();
    loop {
        while stopped.is_none() && running.len() < parallelism && next < jobs.len() {
            running.push(run_job(
                next,
                &jobs[next],
                client,
                journal,
                &options.retry,
                on_event,
                stop_rx.clone(),
            ));
            next += 1;
        }
        if running.is_empty() {
            break;
        }
        let stop = tokio::select! {
            Some(done) = running.next() => {
                journaled |= done.journaled;
                results[done.index] = Some(done.result);
                done.stop
            }
            () = cancel.cancelled(), if stopped.is_none() => Some(StopReason::Cancelled),
        };
        if let Some(reason) = stop
            && stopped.is_none()
        {
            stop_tx.send_replace(true);
            on_event(ApplyEvent::Stopping {
                reason: &reason,
                in_flight: running.len(),
            });
            stopped = Some(reason);
        }
    }
    let results = results
        .into_iter()
        .zip(jobs)
        .map(|(result, job)| match (result, &stopped) {
            (Some(result), _) => result,
            (None, Some(reason)) => not_attempted(job, reason),
            (None, None) => unreachable!("every job runs unless the run stopped"),
        })
        .collect();
    Execution {
        results,
        stopped,
        journaled,
    }
}

/// One package: intent, attempts, outcome.
async fn run_job(
    index: usize,
    job: &Job<'_>,
    client: &Client,
    journal: &Arc<Mutex<Journal>>,
    policy: &RetryPolicy,
    on_event: &(dyn Fn(ApplyEvent<'_>) + Sync),
    mut stop: watch::Receiver<bool>,
) -> Done {
    let change = job.change;
    let key = &change.key;
    let action = change.action;

    let at = job.first_sent.unwrap_or_else(jiff::Timestamp::now);
    let intent = {
        let (key, spec, name) = (key.clone(), job.spec.clone(), job.name.clone());
        record(journal, move |j| {
            j.record_intent(&key, &spec, name.as_deref(), at)
        })
        .await
    };
    if let Err(error) = intent {
        return Done {
            index,
            result: PackageResult::NotAttempted {
                action,
                reason: "not sent: its intent could not be recorded".to_owned(),
            },
            journaled: false,
            stop: Some(StopReason::Journal(error)),
        };
    }

    let mut attempts = Attempts::for_job(job);
    let mut delays = policy.delays();
    let mut fatal = None;
    let outcome = loop {
        if attempts.count == 0 && *stop.borrow() {
            // Stopped between the intent and the first request: nothing was
            // sent, so the intent is voided (an earlier record is kept).
            let voided = JournalOutcome::Failed {
                result_code: None,
                result_message: "not sent: the run stopped first".to_owned(),
            };
            return finish(index, job, journal, voided, 0, None, on_event)
                .await
                .map_result(|_| PackageResult::NotAttempted {
                    action,
                    reason: "not sent: the run stopped first".to_owned(),
                });
        }
        attempts.count += 1;
        on_event(ApplyEvent::PurchaseSent {
            change,
            key,
            attempt: attempts.count,
        });
        let outcome = client.purchase(&job.spec).await;
        tracing::debug!(%key, attempt = attempts.count, ?outcome, "purchase answered");
        if let Some((code, message)) = decide::stops_the_run(&outcome) {
            fatal = Some(StopReason::Fatal { code, message });
        }
        let stopping = fatal.is_some() || *stop.borrow();
        match decide::judge(&outcome, &mut attempts, policy, stopping) {
            Verdict::Settle(settled) => break settled,
            Verdict::Retry => {
                let delay = delays.next().unwrap_or(policy.max_delay);
                on_event(ApplyEvent::Retrying {
                    change,
                    key,
                    attempt: attempts.count,
                    delay,
                    outcome: &outcome,
                });
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|stopped| *stopped) => {}
                }
                if *stop.borrow() {
                    break decide::settle(&outcome, attempts.maybe_received.as_deref());
                }
            }
        }
    };
    finish(
        index,
        job,
        journal,
        outcome,
        attempts.count,
        fatal,
        on_event,
    )
    .await
}

/// Records the settled outcome; the package is done once that is durable.
async fn finish(
    index: usize,
    job: &Job<'_>,
    journal: &Arc<Mutex<Journal>>,
    outcome: JournalOutcome,
    attempts: u32,
    fatal: Option<StopReason>,
    on_event: &(dyn Fn(ApplyEvent<'_>) + Sync),
) -> Done {
    let change = job.change;
    let recorded = {
        let (key, outcome) = (change.key.clone(), outcome.clone());
        record(journal, move |j| j.record_outcome(&key, &outcome)).await
    };
    let (result, stop) = match recorded {
        Ok(()) => (decide::result_of(change.action, &outcome, attempts), fatal),
        // The intent is on disk without an outcome: every load reads the
        // package as unconfirmed, whatever eSMS said.
        Err(error) => (
            PackageResult::Unconfirmed {
                action: change.action,
                reason: format!(
                    "the answer ({}) could not be recorded, so the state shows it unconfirmed",
                    describe(&outcome)
                ),
                attempts,
            },
            Some(StopReason::Journal(error)),
        ),
    };
    on_event(ApplyEvent::PurchaseDone {
        change,
        key: &change.key,
        result: &result,
    });
    Done {
        index,
        result,
        journaled: true,
        stop,
    }
}

impl Done {
    fn map_result(mut self, f: impl FnOnce(PackageResult) -> PackageResult) -> Done {
        // A voided intent that was recorded becomes "not attempted"; one
        // that could not be recorded stays unconfirmed.
        if !matches!(self.result, PackageResult::Unconfirmed { .. }) {
            self.result = f(self.result);
        }
        self
    }
}

fn describe(outcome: &JournalOutcome) -> String {
    match outcome {
        JournalOutcome::Submitted {
            service_preview_id,
            result_code,
            ..
        } => format!(
            "code {result_code}, ServicePreviewId {}",
            service_preview_id.as_deref().unwrap_or("none")
        ),
        JournalOutcome::Unconfirmed { reason } => reason.clone(),
        JournalOutcome::Failed {
            result_code: Some(code),
            ..
        } => format!("refused with code {code}"),
        JournalOutcome::Failed {
            result_code: None,
            result_message,
        } => result_message.clone(),
    }
}

/// Appends to the journal on the blocking pool (each append fsyncs).
async fn record(
    journal: &Arc<Mutex<Journal>>,
    append: impl FnOnce(&mut Journal) -> Result<(), StateError> + Send + 'static,
) -> Result<(), StateError> {
    let journal = journal.clone();
    super::blocking(move || {
        // The journal refuses appends itself once a write failed, so a
        // panic elsewhere leaves nothing here to distrust.
        let mut journal = journal.lock().unwrap_or_else(PoisonError::into_inner);
        append(&mut journal)
    })
    .await
}
