//! Applies against the in-process simulator: through the library, through
//! the release binary, and as the `curl` loop a user would otherwise write.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use esms_sim::{SimConfig, SimControl, Simulator};
use oapkg::apply::{self, ApplyEvent, ApplyOptions, CancelSignal};
use oapkg::esms::endpoint::Call;
use oapkg::esms::{Client, ClientOptions, Credentials};
use oapkg::manifest::{DesiredSet, Package, Source};
use oapkg::spec::{Oaid, Spec, Tier};
use oapkg::state::{JournalOutcome, Record, State, StateStore, Status, Store};

/// `n` advanced 12-month packages on distinct OAIDs from `first`.
pub fn specs(n: usize, first: usize) -> Vec<Spec> {
    (0..n)
        .map(|i| Spec {
            oaid: Oaid::parse(&(5_000_000_000 + first + i).to_string()).unwrap(),
            tier: Tier::Advanced,
            start: jiff::civil::date(2027, 1, 1),
            duration_months: 12,
        })
        .collect()
}

/// The simulator's base URL, checked as oapkg checks any endpoint.
pub fn endpoint(sim: &SimControl) -> oapkg::esms::Endpoint {
    oapkg::esms::Endpoint::parse(&sim.endpoint()).expect("a loopback URL")
}

pub fn account(specs: &[Spec]) -> SimConfig {
    specs
        .iter()
        .fold(SimConfig::new().balance(u64::MAX / 2), |c, s| {
            c.oaid(s.oaid.as_str())
        })
}

/// One library apply of `specs`; returns the wall time of the whole call
/// and of its send phase (first `Started` to last `PurchaseDone`).
pub async fn run_apply(
    store: impl Into<Store>,
    endpoint: &oapkg::esms::Endpoint,
    specs: &[Spec],
    parallelism: usize,
) -> (Duration, Duration) {
    let store: Store = store.into();
    let loaded = store.load().unwrap();
    let desired: DesiredSet = specs
        .iter()
        .map(|s| Package {
            spec: s.clone(),
            name: None,
            source: Source {
                file: "bench".into(),
                line: 1,
                column: 1,
            },
        })
        .collect();
    // Only the new packages are declared: the big state's records are
    // orphans, which cost the diff nothing and apply nothing.
    let plan = oapkg::plan::diff(
        &desired,
        &loaded.state.packages,
        &loaded.state.failed_attempts,
        loaded.id,
        jiff::civil::date(2026, 11, 26),
        vec![],
    );
    let client = Client::new(
        endpoint.clone(),
        Credentials::new(esms_sim::DEFAULT_API_KEY, esms_sim::DEFAULT_SECRET_KEY).unwrap(),
        ClientOptions::default(),
    )
    .unwrap();
    let options = ApplyOptions {
        parallelism,
        max_purchases: specs.len(),
        command: "bench".into(),
        ..ApplyOptions::default()
    };
    let marks: Mutex<(Option<Instant>, Option<Instant>)> = Mutex::new((None, None));
    let on_event = |event: ApplyEvent<'_>| match event {
        ApplyEvent::Started { .. } => marks.lock().unwrap().0 = Some(Instant::now()),
        ApplyEvent::PurchaseDone { .. } => marks.lock().unwrap().1 = Some(Instant::now()),
        _ => {}
    };
    let started = Instant::now();
    let report = apply::apply(
        &plan,
        &store,
        &client,
        &options,
        &on_event,
        CancelSignal::never(),
    )
    .await
    .unwrap();
    let wall = started.elapsed();
    assert!(report.succeeded(), "{report:?}");
    let (first, last) = *marks.lock().unwrap();
    (wall, last.unwrap() - first.unwrap())
}

/// The CPU time this process has used so far (user + system, all threads).
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The durable recording cost alone: intent + submitted outcome for each
/// spec, under the lock, as apply appends them; then the fold (its wall
/// time, and its CPU time in [`LAST_FOLD_CPU`]).
pub fn journal_cost(store: &StateStore, specs: &[Spec]) -> (Duration, Duration) {
    // As `apply` does: the state loaded under the lock, once.
    let (lock, loaded) = store.lock_and_load("bench", Duration::ZERO).unwrap();
    let mut state = loaded.state;
    let mut journal = store.journal(&lock).unwrap();
    let started = Instant::now();
    for (i, spec) in specs.iter().enumerate() {
        let key = spec.key();
        journal
            .record_intent(&key, spec, None, jiff::Timestamp::now())
            .unwrap();
        journal
            .record_outcome(
                &key,
                &JournalOutcome::Submitted {
                    service_preview_id: Some(i.to_string()),
                    result_code: "100".into(),
                    result_message: "ok".into(),
                },
            )
            .unwrap();
    }
    let per_purchase = started.elapsed() / specs.len() as u32;
    drop(journal);
    let started = Instant::now();
    let cpu = cpu_time();
    store.write(&lock, &mut state).unwrap();
    let wall = started.elapsed();
    *LAST_FOLD_CPU.lock().unwrap() = cpu_time() - cpu;
    (per_purchase, wall)
}

/// The CPU time of the last fold [`journal_cost`] timed.
pub static LAST_FOLD_CPU: std::sync::Mutex<Duration> = std::sync::Mutex::new(Duration::ZERO);

/// Lets the writeback of the state file just written finish, so that the
/// measurement that follows does not pay for the benchmark's own setup (a
/// 100,000-package file is tens of megabytes; a real apply writes it only
/// at the end, in the fold).
pub fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_millis(300));
}

/// A state file with `n` submitted packages (none of them the benchmark's).
pub fn write_state(store: &StateStore, n: usize) {
    let mut state = big_state(n);
    let lock = store.lock("bench", Duration::ZERO).unwrap();
    store.write(&lock, &mut state).unwrap();
}

/// A state of `n` submitted packages (none of them the benchmark's).
pub fn big_state(n: usize) -> State {
    let mut state = State::default();
    for spec in specs(n, 3_000_000) {
        state.packages.insert(
            spec.key(),
            Record {
                spec_hash: spec.hash(),
                name: Some("recorded earlier".into()),
                spec,
                status: Status::Submitted,
                service_preview_id: Some("50000".into()),
                result_code: Some("100".into()),
                result_message: Some("ViHAT is censoring trademark ownership".into()),
                submitted_at: Some(jiff::Timestamp::UNIX_EPOCH),
                confirmed: None,
                by_policy: false,
            },
        );
    }
    state
}

/// The release binary buying `specs` end to end; (wall, ideal).
pub fn binary_run(
    binary: &Path,
    specs: &[Spec],
    latency: Duration,
    parallelism: usize,
) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n");
    for s in specs {
        yaml.push_str(&format!(
            "  - oaid: \"{}\"\n    tier: {}\n    start: {}\n    duration: {}\n",
            s.oaid, s.tier, s.start, s.duration_months
        ));
    }
    std::fs::write(dir.path().join("oapkg.yaml"), yaml).unwrap();
    let sim = Simulator::spawn_blocking(account(specs).latency(latency)).unwrap();
    let init = Command::new(binary)
        .arg("init")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .status()
        .expect("run oapkg init");
    assert!(init.success(), "oapkg init failed");
    let started = Instant::now();
    let status = Command::new(binary)
        .args([
            "apply",
            "--auto-approve",
            "--max-purchases",
            &specs.len().to_string(),
            "--parallelism",
            &parallelism.to_string(),
        ])
        .current_dir(dir.path())
        .env("OAPKG_TODAY", "2026-11-26")
        .env("ESMS_ENDPOINT", sim.endpoint().as_str())
        .env("ESMS_API_KEY", esms_sim::DEFAULT_API_KEY)
        .env("ESMS_SECRET_KEY", esms_sim::DEFAULT_SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    let wall = started.elapsed();
    assert!(status.success());
    assert_eq!(sim.ledger().len(), specs.len());
    (wall, latency * specs.len().div_ceil(parallelism) as u32)
}

/// The same purchases as the shell loop a user would otherwise write: one
/// `curl` process per purchase, one after the other, against a fresh
/// simulator at `latency`. No journal, no state: nothing records an intent
/// before a request or its outcome after, so a loop cut short cannot tell
/// which purchases went through (not exactly-once). Returns the wall time
/// of `sh` running the loop; asserts every purchase was charged once.
pub fn curl_loop(specs: &[Spec], latency: Duration) -> Duration {
    let sim = Simulator::spawn_blocking(account(specs).latency(latency)).unwrap();
    let url = endpoint(&sim).url_for(Call::Purchase);
    let dir = tempfile::tempdir().unwrap();
    let mut script = String::from("set -e\n");
    for s in specs {
        script.push_str(&format!(
            "curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{{\"ApiKey\":\"{}\",\"SecretKey\":\"{}\",\"Dateactive\":\"{}\",\"Duaration\":\"{}\",\"OAID\":\"{}\",\"Package\":{}}}' '{url}'\n",
            esms_sim::DEFAULT_API_KEY,
            esms_sim::DEFAULT_SECRET_KEY,
            s.start,
            s.duration_months,
            s.oaid,
            s.tier.api_number(),
        ));
    }
    let path = dir.path().join("buy.sh");
    std::fs::write(&path, script).unwrap();
    let started = Instant::now();
    let status = Command::new("sh")
        .arg(&path)
        .stdout(Stdio::null())
        .status()
        .expect("run sh (and curl)");
    let wall = started.elapsed();
    assert!(status.success(), "the curl loop failed: {status}");
    assert_eq!(
        sim.ledger().len(),
        specs.len(),
        "every curl purchase charged once"
    );
    wall
}

/// Recording `RECORDED` purchases onto a state of one size, medians.
pub struct RecordingRow {
    /// Packages in the state before the run.
    pub size: usize,
    /// Journal intent + outcome (each fsync'd), per purchase.
    pub journal: Duration,
    /// Send phase of a sequential apply at 0 ms latency, per purchase.
    pub send: Duration,
    /// Folding the journal into the state file, once per run.
    pub fold: Duration,
    /// The whole library apply (lock, load, purchases, fold).
    pub whole: Duration,
}

/// Purchases recorded per run by [`recording`].
pub const RECORDED: usize = 100;

/// Recording [`RECORDED`] purchases onto an empty state and onto a state of
/// `big` packages, `runs` times each: one row per size, medians.
pub fn recording(runtime: &tokio::runtime::Runtime, big: usize, runs: usize) -> [RecordingRow; 2] {
    let n = RECORDED;
    // Interleaved (empty, big, empty, big, …) so that drift in the disk's
    // fsync latency, which dominates these numbers, hits both sizes alike.
    let sizes = [0, big];
    let mut samples: [[Vec<Duration>; 4]; 2] = Default::default();
    for run in 0..runs {
        for (s, &size) in sizes.iter().enumerate() {
            // The journal alone, then the fold.
            let dir = tempfile::tempdir().unwrap();
            let store = StateStore::new(dir.path().join("state/oapkg.state.json"));
            write_state(&store, size);
            settle();
            let fresh = specs(n, 1_000_000 + (run * 2 + s) * n);
            let (per_purchase, fold_time) = journal_cost(&store, &fresh);
            // A sequential apply of 100 at 0 ms latency, on a state of the
            // same size written beforehand.
            let dir = tempfile::tempdir().unwrap();
            let store = StateStore::new(dir.path().join("state/oapkg.state.json"));
            write_state(&store, size);
            settle();
            let more = specs(n, 2_000_000 + (run * 2 + s) * n);
            let sim = Simulator::spawn_blocking(account(&more)).unwrap();
            let (wall, phase) = runtime.block_on(run_apply(&store, &endpoint(&sim), &more, 1));
            let sample = &mut samples[s];
            sample[0].push(per_purchase);
            sample[1].push(phase / n as u32);
            sample[2].push(fold_time);
            sample[3].push(wall);
        }
    }
    let row = |s: usize, samples: &mut [Vec<Duration>; 4]| {
        let [journal, send, fold, whole] = samples;
        RecordingRow {
            size: sizes[s],
            journal: super::median(journal),
            send: super::median(send),
            fold: super::median(fold),
            whole: super::median(whole),
        }
    };
    let [empty, large] = &mut samples;
    [row(0, empty), row(1, large)]
}
