//! Fencing on an S3 state: a holder that lost its lease sends nothing more.
//!
//! A randomized loop (seeded: `OAPKG_FENCE_SEED`; 50 rounds, or
//! `OAPKG_FENCE_ROUNDS` to replay a few) against one real S3 server and one
//! simulator that charges every request it processes (no `199`
//! deduplication, so any resend shows on its ledger). Each round buys two
//! fresh packages with holder A, and loses A's lease at a point where a
//! send can happen:
//!
//! - **waiting for a retry**: eSMS answered `160` and A sleeps in its
//!   backoff;
//! - **between intent and send**: A's intent is durable and its request
//!   not yet sent (`OAPKG_S3_PAUSE_AFTER_INTENT_MS` widens that moment so
//!   that a stop can land in it);
//!
//! in one of these ways:
//!
//! - A stopped (SIGSTOP) past the lease, then **taken over** by a second
//!   apply (which waits for the lease to expire);
//! - A stopped, its lease broken with **`state unlock`**, then taken over
//!   at once;
//! - A stopped past the lease and **nobody** takes over (A may go on: its
//!   lease was never used by anyone else);
//! - (waiting for a retry only) `state unlock` while A runs.
//!
//! While A is stopped, the next holder runs and a person settles what it
//! shows as unconfirmed the README's way: `state confirm` when the charge
//! is on the eSMS ledger, `apply --retry-unconfirmed` when it is not —
//! exactly the resend that would charge twice if A later sent its own.
//! Then A is let go. Afterwards, in every round: no package charged twice,
//! every charge recorded, and a holder that lost its lease sent nothing
//! after it was let go.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use esms_sim::{BlockingSimHandle, Call, Fault, FaultRule};
use rand::{RngExt, SeedableRng};

use super::server::S3Server;
use crate::support::{Backend, Env, Pkg, Run, account, charges_by_key, oapkg, pkgs, recorded};

/// The lease every process in the loop uses (`OAPKG_LEASE_SECONDS`).
const LEASE: Duration = Duration::from_millis(1200);
/// A's first backoff after a `160`: 0.8–1.6 s.
const RETRY_DELAY_MS: &str = "800";
/// How long A stalls after an intent's write, before the permit and the
/// request, in the rounds that stop it there.
const PAUSE_AFTER_INTENT_MS: &str = "500";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Point {
    RetryWait,
    IntentSent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loss {
    StopThenTakeover,
    StopThenUnlock,
    StopOnly,
    UnlockRunning,
}

/// What the loop saw, for the closing line.
#[derive(Default)]
struct Figures {
    rounds: usize,
    sends: usize,
    charges: usize,
    double: usize,
    unrecorded: usize,
    fenced: usize,
    sent_after_loss: usize,
}

/// A child that is let go and killed if the test fails while it is
/// stopped.
struct Holder(Option<Child>);

impl Holder {
    fn signal(&self, signal: i32) {
        let pid = self.0.as_ref().expect("running").id() as i32;
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
    }

    fn wait(mut self) -> Run {
        let child = self.0.take().expect("running");
        Run::from(child.wait_with_output().unwrap())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut()
            && let Ok(None) = child.try_wait()
        {
            let _ = unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn purchases_for(sim: &BlockingSimHandle, oaid: &str) -> Vec<esms_sim::ReceivedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| r.call == Call::Purchase && r.body["OAID"] == oaid)
        .collect()
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The next holder, as a person would run it after a run died or was
/// unlocked: apply (waiting for the lease), then settle every unconfirmed
/// package of `round` — confirmed when eSMS charged it, resent when not.
/// Another writer takes the stopped holder's lease once it has expired and
/// writes under it, whatever is left to buy: `state import` of a package
/// of its own (an orphan for the later rounds, never bought). An `apply`
/// with nothing to buy would take no lease, and the holder's lease would
/// only have expired, with nobody acting on it (then a holder that wakes
/// up may renew it and send: safe, and not the case this loss is about).
fn take_over(env: &Env, sim: &BlockingSimHandle, number: usize) {
    let mut cmd = oapkg(
        env,
        sim,
        &[
            "state",
            "import",
            "--oaid",
            &format!("{}", 990_000 + number),
            "--tier",
            "trial",
            "--start",
            "2027-01-01",
            "--duration",
            "1",
            "--lock-timeout",
            "20",
        ],
    );
    cmd.env("OAPKG_LEASE_SECONDS", format!("{}", LEASE.as_secs_f64()));
    Run::from(cmd.output().unwrap()).code(0);
}

fn next_holder_settles(env: &Env, sim: &BlockingSimHandle, round: &[Pkg]) {
    let lease = format!("{}", LEASE.as_secs_f64());
    let run = |args: &[&str]| {
        let mut cmd = oapkg(env, sim, args);
        cmd.env("OAPKG_LEASE_SECONDS", &lease);
        Run::from(cmd.output().unwrap())
    };
    let next = run(&["apply", "--auto-approve", "--lock-timeout", "20"]);
    assert!(next.code == 0 || next.code == 1, "{}", next.stderr);
    // Whatever is still being processed is charged (or not) first.
    wait_until("the simulator to answer", Duration::from_secs(10), || {
        sim.idle()
    });
    let state = recorded(env);
    let ledger = charges_by_key(&sim.ledger());
    let mut resend = false;
    for p in round {
        let Some(record) = state.get(&p.key()) else {
            continue;
        };
        if record["status"] != "unconfirmed" {
            continue;
        }
        match ledger.get(&p.key()).and_then(|c| c.first()) {
            Some(charge) => {
                run(&[
                    "state",
                    "confirm",
                    &p.key(),
                    "--service-preview-id",
                    &charge.service_preview_id,
                    "--lock-timeout",
                    "20",
                ])
                .code(0);
            }
            None => resend = true,
        }
    }
    if resend {
        let resent = run(&[
            "apply",
            "--auto-approve",
            "--retry-unconfirmed",
            "--lock-timeout",
            "20",
        ]);
        assert!(resent.code == 0 || resent.code == 1, "{}", resent.stderr);
    }
}

#[test]
fn a_holder_that_lost_its_lease_never_sends_again_randomized() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    let rounds: usize = std::env::var("OAPKG_FENCE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("OAPKG_FENCE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("fencing loop: {rounds} rounds, OAPKG_FENCE_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let all = pkgs(910_001, rounds * 2);
    let sim = crate::support::start(
        account(&all)
            .dedupe(false)
            .balance(u64::MAX / 2)
            .latency(Duration::from_millis(20)),
    );
    let env = Env::with_state_on(&Backend::S3(&server));
    let location = env.s3().unwrap().location.clone();
    let head_path = format!(
        "/{}",
        location.trim_start_matches("s3://").to_owned() + "/head.json"
    );
    let mut figures = Figures::default();
    let mut seen: Vec<(Point, Loss)> = Vec::new();

    for (number, round) in all.chunks(2).enumerate() {
        let point = if rng.random_bool(0.5) {
            Point::RetryWait
        } else {
            Point::IntentSent
        };
        let loss = match (point, rng.random_range(0..4)) {
            (_, 0) => Loss::StopThenTakeover,
            (_, 1) => Loss::StopThenUnlock,
            (_, 2) => Loss::StopOnly,
            (Point::RetryWait, _) => Loss::UnlockRunning,
            (Point::IntentSent, _) => Loss::StopThenTakeover,
        };
        seen.push((point, loss));
        let context = format!("round {number} ({point:?}, {loss:?}, seed {seed})");
        crate::support::write_manifest(&env, round);
        // The package A is caught on: the first or the second.
        let target = &round[rng.random_range(0..2)];
        if point == Point::RetryWait {
            sim.inject(FaultRule::for_oaid(&target.oaid, Fault::RateLimitCode).times(1));
        }
        let parallelism = if rng.random_bool(0.5) { "1" } else { "2" };
        let mut cmd = oapkg(
            &env,
            &sim,
            &[
                "apply",
                "--auto-approve",
                "--parallelism",
                parallelism,
                "--lock-timeout",
                "20",
            ],
        );
        cmd.env("OAPKG_LEASE_SECONDS", format!("{}", LEASE.as_secs_f64()))
            .env("OAPKG_RETRY_MIN_DELAY_MS", RETRY_DELAY_MS)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if point == Point::IntentSent {
            cmd.env("OAPKG_S3_PAUSE_AFTER_INTENT_MS", PAUSE_AFTER_INTENT_MS);
        }
        let holder = Holder(Some(cmd.spawn().unwrap()));

        // Catch A at the point.
        match point {
            Point::RetryWait => {
                wait_until(
                    &format!("the 160 for {} ({context})", target.key()),
                    Duration::from_secs(20),
                    || {
                        purchases_for(&sim, &target.oaid)
                            .iter()
                            .any(|r| r.fault == Some(Fault::RateLimitCode) && r.answer.is_some())
                    },
                );
                // Well inside the backoff (at least 800 ms).
                std::thread::sleep(Duration::from_millis(rng.random_range(20..200)));
            }
            Point::IntentSent => {
                let key = format!("\"key\":\"{}\"", target.key());
                wait_until(
                    &format!("the intent of {} ({context})", target.key()),
                    Duration::from_secs(20),
                    || {
                        let head = server.get(&head_path);
                        head.contains(&key.replace('"', "\\\"")) && head.contains("intent")
                    },
                );
            }
        }
        let caught_at = Instant::now();
        let sends_before = purchases_for(&sim, &target.oaid).len();
        let stopped = loss != Loss::UnlockRunning;
        if stopped {
            holder.signal(libc::SIGSTOP);
        }
        match loss {
            Loss::StopThenTakeover => {
                take_over(&env, &sim, number);
                next_holder_settles(&env, &sim, round);
            }
            Loss::StopThenUnlock | Loss::UnlockRunning => {
                let unlocked = env.run(&["state", "unlock"]);
                unlocked.code(0);
                if loss == Loss::StopThenUnlock {
                    next_holder_settles(&env, &sim, round);
                }
            }
            Loss::StopOnly => {}
        }
        if stopped {
            // Past the lease, whatever the next holder took.
            let past = LEASE + Duration::from_millis(rng.random_range(100..400));
            if let Some(rest) = past.checked_sub(caught_at.elapsed()) {
                std::thread::sleep(rest);
            }
            wait_until("the simulator to answer", Duration::from_secs(10), || {
                sim.idle()
            });
        }
        let requests_before_release = sim.requests().len();
        if stopped {
            holder.signal(libc::SIGCONT);
        }
        let a = holder.wait();
        let lost_lease = matches!(
            loss,
            Loss::StopThenTakeover | Loss::StopThenUnlock | Loss::UnlockRunning
        );
        if lost_lease {
            // Nothing sent by A once let go (or, unstopped, once unlocked:
            // the one it was waiting to retry).
            let after = sim.requests().len() - requests_before_release;
            let sent_after = if loss == Loss::UnlockRunning {
                purchases_for(&sim, &target.oaid).len() - sends_before
            } else {
                after
            };
            figures.sent_after_loss += sent_after;
            assert_eq!(
                sent_after, 0,
                "{context}: A sent after losing its lease\n{}",
                a.stderr
            );
            assert_eq!(a.code, 1, "{context}: {}", a.stderr);
            assert!(
                a.stderr.contains("nothing more is bought"),
                "{context}: A did not say it stopped\n{}",
                a.stderr
            );
            figures.fenced += 1;
        } else {
            assert!(a.code == 0 || a.code == 1, "{context}: {}", a.stderr);
        }

        // The next holder's run, then the person's settling.
        next_holder_settles(&env, &sim, round);
        let state = recorded(&env);
        let ledger = charges_by_key(&sim.ledger());
        for p in round {
            let charges = ledger.get(&p.key()).map_or(0, Vec::len);
            if charges > 1 {
                figures.double += 1;
            }
            let status = state.get(&p.key()).map(|r| r["status"].clone());
            if charges > 0
                && !matches!(
                    status.as_ref().and_then(|s| s.as_str()),
                    Some("submitted" | "unconfirmed")
                )
            {
                figures.unrecorded += 1;
            }
            assert_eq!(charges, 1, "{context}: {} charged {charges} times", p.key());
            assert_eq!(
                status,
                Some(serde_json::json!("submitted")),
                "{context}: {}",
                p.key()
            );
        }
        figures.rounds += 1;
    }
    figures.sends = sim
        .requests()
        .iter()
        .filter(|r| r.call == Call::Purchase)
        .count();
    figures.charges = sim.ledger().len();
    let count = |p: Point, l: Loss| seen.iter().filter(|s| **s == (p, l)).count();
    eprintln!(
        "fencing loop (seed {seed}): {} rounds in {:.0?}: {} purchase requests sent, {} charges, \
         {} double charges, {} charges unrecorded; {} holders lost their lease and sent {} \
         requests after; rounds by point and loss: retry-wait takeover {}, unlock {}, stop-only {}, \
         unlock-running {}; between-intent-and-send takeover {}, unlock {}, stop-only {}",
        figures.rounds,
        started.elapsed(),
        figures.sends,
        figures.charges,
        figures.double,
        figures.unrecorded,
        figures.fenced,
        figures.sent_after_loss,
        count(Point::RetryWait, Loss::StopThenTakeover),
        count(Point::RetryWait, Loss::StopThenUnlock),
        count(Point::RetryWait, Loss::StopOnly),
        count(Point::RetryWait, Loss::UnlockRunning),
        count(Point::IntentSent, Loss::StopThenTakeover),
        count(Point::IntentSent, Loss::StopThenUnlock),
        count(Point::IntentSent, Loss::StopOnly),
    );
    assert_eq!(figures.double, 0);
    assert_eq!(figures.unrecorded, 0);
    assert_eq!(figures.charges, rounds * 2, "every package bought once");
}
