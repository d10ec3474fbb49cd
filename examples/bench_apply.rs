//! Benchmark of `apply` against the local simulator (issue 3):
//!
//! 1. **Throughput**: N purchases (default 1,000) at a simulated latency
//!    (default 20 ms) for each parallelism (default 16, 64, 4, 1), through
//!    the library (`oapkg::apply::apply`: lock, load, pre-flight, every
//!    request with its two fsync'd journal lines, the fold), compared with
//!    the ideal `ceil(N / P) × latency`; plus one end-to-end run of the
//!    release binary at the first parallelism.
//! 2. **Recording**: 100 purchases recorded onto an empty state and onto a
//!    100,000-package state: the durable cost per purchase (journal intent
//!    plus outcome, each fsync'd) measured on its own, and the send phase of
//!    a sequential apply at 0 ms latency; the ratios should stay near 1.
//!
//! Run: `cargo run --release --example bench_apply -- [--purchases N]
//! [--latency-ms L] [--parallelism P,P,...] [--big N] [--runs R]`.
//! Everything stays on 127.0.0.1; temporary files go under the system
//! temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oapkg::apply::{self, ApplyEvent, ApplyOptions, CancelSignal};
use oapkg::esms::sim::{SimConfig, Simulator};
use oapkg::esms::{Client, ClientOptions, Credentials};
use oapkg::manifest::{DesiredSet, Package, Source};
use oapkg::spec::{Oaid, Spec, Tier};
use oapkg::state::{JournalOutcome, Record, State, StateStore, Status};

struct Args {
    purchases: usize,
    latency: Duration,
    parallelism: Vec<usize>,
    big: usize,
    runs: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        purchases: 1000,
        latency: Duration::from_millis(20),
        parallelism: vec![16, 64, 4, 1],
        big: 100_000,
        runs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--purchases" => args.purchases = value.parse().expect("--purchases N"),
            "--latency-ms" => {
                args.latency = Duration::from_millis(value.parse().expect("--latency-ms L"))
            }
            "--parallelism" => {
                args.parallelism = value
                    .split(',')
                    .map(|p| p.parse().expect("--parallelism P,P"))
                    .collect()
            }
            "--big" => args.big = value.parse().expect("--big N"),
            "--runs" => args.runs = value.parse().expect("--runs R"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "oapkg {} — apply benchmark ({} cores)",
        env!("CARGO_PKG_VERSION"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1. Throughput.
    println!(
        "\n{} purchases at {} ms simulated latency (library run: lock, load, pre-flight, requests, journal, fold)",
        args.purchases,
        args.latency.as_millis()
    );
    println!(
        "{:>11} {:>10} {:>10} {:>8}",
        "parallelism", "ideal ms", "wall ms", "x ideal"
    );
    let wanted = specs(args.purchases, 0);
    for &p in &args.parallelism {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("state/oapkg.state.json"));
        let sim = Simulator::spawn_blocking(account(&wanted).latency(args.latency)).unwrap();
        let (wall, _) = runtime.block_on(run_apply(&store, &sim.endpoint(), &wanted, p));
        assert_eq!(
            sim.ledger().len(),
            wanted.len(),
            "every purchase charged once"
        );
        let ideal = args.latency * args.purchases.div_ceil(p) as u32;
        println!(
            "{:>11} {:>10.0} {:>10.0} {:>8.2}",
            p,
            ms(ideal),
            ms(wall),
            wall.as_secs_f64() / ideal.as_secs_f64()
        );
    }
    if let Some(&p) = args.parallelism.first() {
        let (wall, ideal) = binary_run(&wanted, args.latency, p);
        println!(
            "end to end, release binary `oapkg apply --auto-approve --parallelism {p}` (process, manifests, plan, pre-flight, purchases, fold): {:.0} ms, {:.2}x ideal",
            ms(wall),
            wall.as_secs_f64() / ideal.as_secs_f64()
        );
    }

    // 2. Recording cost against the state's size.
    let n = 100;
    println!(
        "\nrecording {n} purchases onto an empty state vs a {}-package state (median of {} runs)",
        args.big, args.runs
    );
    println!(
        "{:>10} {:>22} {:>24} {:>14} {:>16}",
        "state", "journal µs/purchase", "send phase µs/purchase", "fold ms", "whole apply ms"
    );
    // Interleaved (empty, big, empty, big, …) so that drift in the disk's
    // fsync latency, which dominates these numbers, hits both sizes alike.
    let sizes = [0, args.big];
    let mut samples: Vec<[Vec<Duration>; 4]> = vec![Default::default(), Default::default()];
    for run in 0..args.runs {
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
            let (wall, phase) = runtime.block_on(run_apply(&store, &sim.endpoint(), &more, 1));
            let sample = &mut samples[s];
            sample[0].push(per_purchase);
            sample[1].push(phase / n as u32);
            sample[2].push(fold_time);
            sample[3].push(wall);
        }
    }
    let mut rows = Vec::new();
    for (s, &size) in sizes.iter().enumerate() {
        let [journal, send, fold, whole] = &mut samples[s];
        let row = (
            size,
            median(journal),
            median(send),
            median(fold),
            median(whole),
        );
        println!(
            "{:>10} {:>22.0} {:>24.0} {:>14.1} {:>16.1}",
            row.0,
            us(row.1),
            us(row.2),
            ms(row.3),
            ms(row.4)
        );
        rows.push(row);
    }
    let (small, big) = (&rows[0], &rows[1]);
    println!(
        "ratio {} / empty: journal {:.2}x, send phase {:.2}x (target <= 1.2); the fold and the load are once per run",
        args.big,
        big.1.as_secs_f64() / small.1.as_secs_f64(),
        big.2.as_secs_f64() / small.2.as_secs_f64()
    );
}

/// `n` advanced 12-month packages on distinct OAIDs from `first`.
fn specs(n: usize, first: usize) -> Vec<Spec> {
    (0..n)
        .map(|i| Spec {
            oaid: Oaid::parse(&(5_000_000_000 + first + i).to_string()).unwrap(),
            tier: Tier::Advanced,
            start: jiff::civil::date(2027, 1, 1),
            duration_months: 12,
        })
        .collect()
}

fn account(specs: &[Spec]) -> SimConfig {
    specs
        .iter()
        .fold(SimConfig::new().balance(u64::MAX / 2), |c, s| {
            c.oaid(s.oaid.as_str())
        })
}

/// One library apply of `specs`; returns the wall time of the whole call
/// and of its send phase (first `Started` to last `PurchaseDone`).
async fn run_apply(
    store: &StateStore,
    endpoint: &oapkg::esms::Endpoint,
    specs: &[Spec],
    parallelism: usize,
) -> (Duration, Duration) {
    let loaded = store.load().unwrap();
    let desired = DesiredSet {
        packages: specs
            .iter()
            .map(|s| {
                (
                    s.key(),
                    Package {
                        spec: s.clone(),
                        name: None,
                        source: Source {
                            file: "bench".into(),
                            line: 1,
                            column: 1,
                        },
                    },
                )
            })
            .collect(),
    };
    // Only the new packages are declared: the big state's records are
    // orphans, which cost the diff nothing and apply nothing.
    let plan = oapkg::plan::diff(
        &desired,
        &loaded.state.packages,
        loaded.id,
        jiff::civil::date(2026, 11, 26),
        vec![],
    );
    let client = Client::new(
        endpoint.clone(),
        Credentials::new(
            oapkg::esms::sim::DEFAULT_API_KEY,
            oapkg::esms::sim::DEFAULT_SECRET_KEY,
        )
        .unwrap(),
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
        store,
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

/// The durable recording cost alone: intent + submitted outcome for each
/// spec, under the lock, as apply appends them; then the fold.
fn journal_cost(store: &StateStore, specs: &[Spec]) -> (Duration, Duration) {
    let lock = store.lock("bench", Duration::ZERO).unwrap();
    let mut state = store.load().unwrap().state;
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
    store.write(&lock, &mut state).unwrap();
    (per_purchase, started.elapsed())
}

/// Lets the writeback of the state file just written finish, so that the
/// measurement that follows does not pay for the benchmark's own setup (a
/// 100,000-package file is tens of megabytes; a real apply writes it only
/// at the end, in the fold).
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_millis(300));
}

/// A state file with `n` submitted packages (none of them the benchmark's).
fn write_state(store: &StateStore, n: usize) {
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
            },
        );
    }
    let lock = store.lock("bench", Duration::ZERO).unwrap();
    store.write(&lock, &mut state).unwrap();
}

/// The release binary buying `specs` end to end; (wall, ideal).
fn binary_run(specs: &[Spec], latency: Duration, parallelism: usize) -> (Duration, Duration) {
    let binary = build_binary();
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
        .env("ESMS_API_KEY", oapkg::esms::sim::DEFAULT_API_KEY)
        .env("ESMS_SECRET_KEY", oapkg::esms::sim::DEFAULT_SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    let wall = started.elapsed();
    assert!(status.success());
    assert_eq!(sim.ledger().len(), specs.len());
    (wall, latency * specs.len().div_ceil(parallelism) as u32)
}

fn build_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bin", "oapkg"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(status.success(), "cargo build --release failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("release/oapkg")
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
