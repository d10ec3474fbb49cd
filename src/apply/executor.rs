//! The async part of a run: at most `parallelism` packages sending at once,
//! each one's attempts in order (so never two requests for one key at
//! once), backoff sleeps, journal writes, and stopping.
//!
//! Every package goes through the same steps, and their order is the
//! exactly-once guarantee:
//!
//! 1. its intent is appended to the journal and fsync'd; only then
//! 2. is a request sent (and perhaps, after a backoff, another), each one
//!    only with the fence's leave ([`Fence::permit`]) asked immediately
//!    before it: a retry first proves the lock again (on S3, a fresh
//!    conditional write of the head under the lease);
//! 3. the settled answer is appended and fsync'd; only then is the package
//!    done (its `PurchaseDone` event, its place in the report).
//!
//! A holder that lost its lock (an S3 lease expired, broken or taken
//! over, or too little of it left) sends nothing more: the refusal stops
//! the run like a fatal code ([`StopReason::Fenced`]), said once, and
//! every package it had sent keeps its intent, so that the next holder
//! reads it as `unconfirmed` unless its answer could still be recorded.
//!
//! A process killed anywhere in there leaves the intent on disk without an
//! outcome, which every later load reads as `unconfirmed`.
//!
//! Steps 1–2 hold one of the `parallelism` slots; step 3 does not (the
//! request is over), so the next package's intent and request overlap the
//! previous one's recording. Journal writes go through one [`Recorder`]
//! that groups whatever is waiting into one write and one fsync (group
//! commit): with 16 requests in flight, one fsync covers many packages, so
//! a slow disk costs little throughput and never correctness.
//!
//! Everything runs as futures of the one task that awaits [`run`] (no
//! spawned tasks): events reach the caller's callback in order, and
//! dropping the run drops its requests. The fsync itself runs on the
//! blocking pool.

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot, watch};

use super::decide::{self, Attempts, Budget, Charges, Job, Verdict};
use super::{ApplyEvent, ApplyOptions, CancelSignal, PackageResult, StopReason};
use crate::esms::{Client, PurchaseOutcome};
use crate::state::{
    Fence, JournalEntry, JournalOutcome, JournalWriter as Journal, Proof, StateError,
};

/// Most entries written with one fsync.
const MAX_BATCH: usize = 256;

/// What [`run`] did: one result per job, in the jobs' order.
#[derive(Debug)]
pub(crate) struct Execution {
    pub results: Vec<PackageResult>,
    pub stopped: Option<StopReason>,
    /// Whether anything was appended to the journal (so it must be folded).
    pub journaled: bool,
}

impl Execution {
    /// A run with no request to send (only label changes to record).
    pub fn nothing_sent() -> Execution {
        Execution {
            results: Vec::new(),
            stopped: None,
            journaled: false,
        }
    }

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
        action: job.change.action(),
        reason: format!("not sent: the run stopped ({reason})"),
    }
}

/// A package whose sending is over.
enum Sent {
    /// Its intent could not be recorded: nothing was sent.
    IntentFailed {
        index: usize,
        error: Arc<StateError>,
    },
    /// Settled: `outcome` is to be recorded. `sent` is false when the run
    /// stopped between the intent and the first request.
    Settled {
        index: usize,
        outcome: JournalOutcome,
        attempts: u32,
        sent: bool,
        fatal: Option<StopReason>,
        /// A `199` with no request known to have reached eSMS before.
        unexpected_duplicate: bool,
        charges: Charges,
    },
}

/// A package whose outcome is recorded (or could not be).
struct Done {
    index: usize,
    result: PackageResult,
    error: Option<Arc<StateError>>,
}

/// Sends every job (until stopped) and records each answer. `budget`
/// holds resends to `--max-spend` ([`Budget`]).
pub(crate) async fn run(
    jobs: &[Job<'_>],
    client: &Client,
    journal: &Arc<Mutex<Journal>>,
    options: &ApplyOptions,
    budget: Budget,
    on_event: &(dyn Fn(ApplyEvent<'_>) + Sync),
    cancel: &CancelSignal,
) -> Execution {
    let (recorder, requests) = Recorder::new(journal);
    let budget = Mutex::new(budget);
    let budget = &budget;
    let fence = journal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .fence();
    let work = async move {
        let sender = Sender {
            client,
            recorder: &recorder,
            fence,
            options,
            budget,
            on_event,
        };
        let execution = drive(jobs, &sender, cancel).await;
        // The last sender: the recorder ends once this is gone.
        drop(recorder);
        execution
    };
    let (execution, ()) = tokio::join!(work, group_commit(journal.clone(), requests));
    execution
}

/// What every package's [`send`] shares.
struct Sender<'a> {
    client: &'a Client,
    recorder: &'a Recorder,
    /// Asked before every request: may this holder still send?
    fence: Arc<dyn Fence>,
    options: &'a ApplyOptions,
    /// Holds resends that may charge again to `--max-spend`.
    budget: &'a Mutex<Budget>,
    on_event: &'a (dyn Fn(ApplyEvent<'_>) + Sync),
}

async fn drive(jobs: &[Job<'_>], sender: &Sender<'_>, cancel: &CancelSignal) -> Execution {
    let Sender {
        recorder,
        options,
        on_event,
        ..
    } = *sender;
    let parallelism = options.parallelism.max(1);
    // Tells jobs to send nothing more (no first request, no retry).
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut results: Vec<Option<PackageResult>> = vec![None; jobs.len()];
    let mut stopped: Option<StopReason> = None;
    let mut journaled = false;
    let mut next = 0;
    let mut sending = FuturesUnordered::new();
    let mut recording = FuturesUnordered::new();
    loop {
        while stopped.is_none() && sending.len() < parallelism && next < jobs.len() {
            sending.push(send(next, &jobs[next], sender, stop_rx.clone()));
            next += 1;
        }
        if sending.is_empty() && recording.is_empty() {
            break;
        }
        let stop = tokio::select! {
            Some(sent) = sending.next() => match sent {
                Sent::IntentFailed { index, error } => {
                    results[index] = Some(PackageResult::NotAttempted {
                        action: jobs[index].change.action(),
                        reason: "not sent: its intent could not be recorded".to_owned(),
                    });
                    Some(journal_stop(error))
                }
                Sent::Settled { index, outcome, attempts, sent, fatal, unexpected_duplicate, charges } => {
                    journaled = true;
                    let settled = Settled { outcome, attempts, sent, unexpected_duplicate, charges };
                    recording.push(finish(&jobs[index], index, recorder, settled, on_event));
                    fatal
                }
            },
            Some(done) = recording.next() => {
                results[done.index] = Some(done.result);
                done.error.map(journal_stop)
            }
            () = cancel.cancelled(), if stopped.is_none() => Some(StopReason::Cancelled),
        };
        if let Some(reason) = stop
            && stopped.is_none()
        {
            stop_tx.send_replace(true);
            on_event(ApplyEvent::Stopping {
                reason: &reason,
                in_flight: sending.len(),
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

/// Why the run stops after a journal write failed: the lock or lease was
/// lost ([`StopReason::Fenced`]), or the journal itself failed.
fn journal_stop(error: Arc<StateError>) -> StopReason {
    if error.ends_the_lease() {
        StopReason::Fenced(error)
    } else {
        StopReason::Journal(error)
    }
}

/// One package's intent and attempts, up to its settled outcome.
async fn send(
    index: usize,
    job: &Job<'_>,
    sender: &Sender<'_>,
    mut stop: watch::Receiver<bool>,
) -> Sent {
    let Sender {
        client,
        recorder,
        options,
        budget,
        on_event,
        ..
    } = *sender;
    let fence = &sender.fence;
    let policy = &options.retry;
    let retry_unknown = options.retry_unknown;
    let change = job.change;
    let key = &change.key;

    let intent = JournalEntry::Intent {
        key: key.clone(),
        spec: job.spec.clone(),
        name: job.name.clone(),
        at: job.first_sent.unwrap_or_else(jiff::Timestamp::now),
        by_policy: job.by_policy,
    };
    if let Err(error) = recorder.record(intent).await {
        return Sent::IntentFailed { index, error };
    }

    let mut attempts = Attempts::for_job(job);
    let mut delays = policy.delays();
    let mut fatal = None;
    let mut unexpected_duplicate = false;
    let mut twice = false;
    // The answer before a retry, to settle on if the fence refuses it.
    let mut previous: Option<PurchaseOutcome> = None;
    let mut outcome = loop {
        if attempts.count == 0 && *stop.borrow() {
            return stopped_before_sending(index, None);
        }
        // Fencing: asked right before the request goes out, and again
        // after the event (a caller's event may block, on a full pipe).
        let permit = fence.permit(Proof::Recorded).and_then(|_| {
            on_event(ApplyEvent::PurchaseSent {
                change,
                key,
                attempt: attempts.count + 1,
            });
            fence.permit(Proof::Recorded)
        });
        if let Err(error) = permit {
            let reason = Some(StopReason::Fenced(Arc::new(error)));
            match &previous {
                None => return stopped_before_sending(index, reason),
                Some(answer) => {
                    fatal = reason;
                    break decide::settle(answer, attempts.maybe_received.as_deref());
                }
            }
        }
        attempts.count += 1;
        let outcome = client.purchase(&job.spec).await;
        on_event(ApplyEvent::Answered {
            change,
            key,
            attempt: attempts.count,
            outcome: &outcome,
        });
        if let Some((code, message)) = decide::stops_the_run(&outcome) {
            fatal = Some(StopReason::Fatal { code, message });
        }
        let stopping = fatal.is_some() || *stop.borrow();
        unexpected_duplicate = decide::unexpected_duplicate(&outcome, &attempts);
        twice |= decide::possibly_charged_twice(&outcome, &attempts);
        match decide::judge(&outcome, &mut attempts, policy, retry_unknown, stopping) {
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
                // A resend after a send that may have charged may charge
                // again: held to --max-spend before it goes out.
                let reserved = lock(budget).reserve(&mut attempts, job.price);
                if let Err(over) = reserved {
                    break decide::not_resent(&attempts, &over);
                }
                // The lease may have been lost while this waited: a retry
                // goes out only after a fresh write under it.
                let renewing = fence.clone();
                if let Err(error) = super::blocking(move || renewing.permit(Proof::Renewed)).await {
                    fatal = Some(StopReason::Fenced(Arc::new(error)));
                    break decide::settle(&outcome, attempts.maybe_received.as_deref());
                }
                previous = Some(outcome);
            }
        }
    };
    lock(budget).settle(&attempts, job.price);
    // A failed attempt is kept in the state (until the key is submitted),
    // for the next plan to show when.
    if let JournalOutcome::Failed { at, .. } = &mut outcome {
        *at = Some(jiff::Timestamp::now());
    }
    Sent::Settled {
        index,
        outcome,
        attempts: attempts.count,
        sent: true,
        fatal,
        unexpected_duplicate,
        charges: Charges {
            charged: attempts.charged,
            twice,
        },
    }
}

fn lock(budget: &Mutex<Budget>) -> std::sync::MutexGuard<'_, Budget> {
    budget.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stopped between the intent and the first request (the run stopping,
/// or the fence refusing): nothing was sent, so the intent is voided (an
/// earlier record is kept). If even that cannot be recorded (a lost
/// lease), the intent stays and reads as `unconfirmed`: safe, never lost.
fn stopped_before_sending(index: usize, fatal: Option<StopReason>) -> Sent {
    Sent::Settled {
        index,
        outcome: JournalOutcome::Failed {
            result_code: None,
            result_message: "not sent: the run stopped first".to_owned(),
            // Not an attempt: nothing to remember for the next plan.
            at: None,
        },
        attempts: 0,
        sent: false,
        fatal,
        unexpected_duplicate: false,
        charges: Charges::default(),
    }
}

/// What [`finish`] records and reports for one package.
struct Settled {
    outcome: JournalOutcome,
    attempts: u32,
    sent: bool,
    unexpected_duplicate: bool,
    charges: Charges,
}

/// Records the settled outcome; the package is done once that is durable.
async fn finish(
    job: &Job<'_>,
    index: usize,
    recorder: &Recorder,
    settled: Settled,
    on_event: &(dyn Fn(ApplyEvent<'_>) + Sync),
) -> Done {
    let Settled {
        outcome,
        attempts,
        sent,
        unexpected_duplicate,
        charges,
    } = settled;
    let change = job.change;
    let entry = JournalEntry::Outcome {
        key: change.key.clone(),
        outcome: outcome.clone(),
    };
    let (result, error) = match recorder.record(entry).await {
        Ok(()) if !sent => (
            PackageResult::NotAttempted {
                action: change.action(),
                reason: "not sent: the run stopped first".to_owned(),
            },
            None,
        ),
        Ok(()) => (
            decide::result_of(
                change.action(),
                &outcome,
                attempts,
                charges,
                unexpected_duplicate,
            ),
            None,
        ),
        // The intent is on disk without an outcome: every load reads the
        // package as unconfirmed, whatever eSMS said.
        Err(error) => (
            PackageResult::Unconfirmed {
                action: change.action(),
                reason: format!(
                    "the answer ({}) could not be recorded, so the state shows it unconfirmed",
                    describe(&outcome)
                ),
                attempts,
                charged: charges.charged,
            },
            Some(error),
        ),
    };
    if sent {
        on_event(ApplyEvent::PurchaseDone {
            change,
            key: &change.key,
            result: &result,
        });
    }
    Done {
        index,
        result,
        error,
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
            ..
        } => result_message.clone(),
    }
}

/// One journal entry waiting to be written, and who waits for it.
struct Request {
    entry: JournalEntry,
    done: oneshot::Sender<Result<(), Arc<StateError>>>,
}

/// Hands journal entries to [`group_commit`] and waits until they are
/// durable.
struct Recorder {
    tx: mpsc::UnboundedSender<Request>,
    path: std::path::PathBuf,
}

impl Recorder {
    fn new(journal: &Arc<Mutex<Journal>>) -> (Recorder, mpsc::UnboundedReceiver<Request>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let path = journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .path();
        (Recorder { tx, path }, rx)
    }

    /// `Ok` once `entry` is written and fsync'd.
    async fn record(&self, entry: JournalEntry) -> Result<(), Arc<StateError>> {
        let gone = || {
            Arc::new(StateError::JournalBroken {
                path: self.path.clone(),
            })
        };
        let (done, wait) = oneshot::channel();
        self.tx.send(Request { entry, done }).map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }
}

/// Writes whatever entries are waiting as one batch (one write, one fsync),
/// then answers each; repeats until every [`Recorder`] is gone.
async fn group_commit(
    journal: Arc<Mutex<Journal>>,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let mut waiting = Vec::new();
    while requests.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        let (entries, done): (Vec<JournalEntry>, Vec<_>) =
            waiting.drain(..).map(|r| (r.entry, r.done)).unzip();
        let journal = journal.clone();
        let written = super::blocking(move || {
            // The journal refuses appends itself once a write failed, so a
            // panic elsewhere leaves nothing here to distrust.
            let mut journal = journal.lock().unwrap_or_else(PoisonError::into_inner);
            journal.record_batch(&entries)
        })
        .await
        .map_err(Arc::new);
        for done in done {
            let _ = done.send(written.clone());
        }
    }
}
