//! Benchmark of a shared state on S3-compatible storage (`--state s3://…`)
//! against a local state file, with moto on 127.0.0.1 (from the virtual
//! environment `tests/s3/setup.sh` creates under `target/`):
//!
//! 1. **Throughput**: N purchases (default 1,000) at a simulated eSMS
//!    latency (default 20 ms), parallelism 16, through the library
//!    (`oapkg::apply::apply`), local file vs S3.
//! 2. **Recording**: the durable cost of one purchase (intent + outcome,
//!    each one conditional write of the head) onto an empty S3 state and
//!    onto a 100,000-package one; the ratio should stay near 1.
//! 3. **A long run**: the same cost at the first vs around the `--long`th
//!    (default 2,000th) purchase of one run, and the size of the head then:
//!    the head's journal tail is sealed into segments, so neither grows
//!    with the run.
//!
//! Run: `cargo run --release --example bench_s3 -- [--purchases N]
//! [--latency-ms L] [--parallelism P] [--big N] [--runs R] [--long N]
//! [--long-only 1]`. For the long run without segments (the head keeping
//! every line, as before), add `OAPKG_S3_SEGMENT_LINES=100000000
//! OAPKG_S3_SEGMENT_BYTES=100000000000` to the environment.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use esms_sim::Simulator;
use oapkg::spec::Spec;
use oapkg::state::{JournalEntry, JournalOutcome, JournalWriter, State, StateStore, Store};

#[path = "common/mod.rs"]
#[allow(dead_code, reason = "each benchmark uses part of the shared helpers")]
mod common;

use common::apply::{account, endpoint, run_apply, specs};
use common::{median, ms, us};

struct Moto(Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// moto on a free loopback port with bucket `bench`.
fn moto() -> Moto {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/s3-venv");
    let status = Command::new("sh")
        .arg(root.join("tests/s3/setup.sh"))
        .arg(&venv)
        .status()
        .expect("run tests/s3/setup.sh (needs python3)");
    assert!(status.success(), "tests/s3/setup.sh failed");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(venv.join("bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto(child, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "moto did not start");
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(
                format!("PUT /bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                return moto;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// A state of `n` submitted packages (none of them the benchmark's).
fn big_state(n: usize) -> State {
    State {
        lineage: Some(uuid_like()),
        serial: 1,
        ..common::apply::big_state(n)
    }
}

fn uuid_like() -> String {
    format!("bench-{}", jiff::Timestamp::now().as_nanosecond())
}

/// Records `n` purchases in one run (one lease), timing each: the mean
/// cost of the first `window` purchases and of the last `window`, and the
/// largest head seen in the last window (in bytes, read from the bucket).
fn long_run(store: &Store, head: &str, n: usize, window: usize) -> (Duration, Duration, usize) {
    let (lock, _) = store.lock_and_load("bench", Duration::ZERO).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let mut costs = Vec::with_capacity(n);
    let mut largest = 0;
    for (i, spec) in specs(n, 40_000_000).into_iter().enumerate() {
        let started = Instant::now();
        record_purchase(&mut journal, spec, i);
        costs.push(started.elapsed());
        // Read in both windows (outside the timing), so that both see the
        // same load on the server.
        let size = if i < window || i + window >= n {
            head_size(head)
        } else {
            0
        };
        if i + window >= n {
            largest = largest.max(size);
        }
    }
    let mean = |c: &[Duration]| c.iter().sum::<Duration>() / c.len() as u32;
    (mean(&costs[..window]), mean(&costs[n - window..]), largest)
}

/// The size of object `key` in bucket `bench`, from a listing.
fn head_size(key: &str) -> usize {
    let port: u16 = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .and_then(|u| u.rsplit(':').next().and_then(|p| p.parse().ok()))
        .unwrap_or(0);
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.write_all(
        format!(
            "GET /bench/?list-type=2&prefix={key} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split("<Size>")
        .nth(1)
        .and_then(|r| r.split("</Size>").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One purchase as a sequential apply records it: the intent, then the
/// outcome, one batch (one durable write) each.
fn record_purchase(journal: &mut JournalWriter, spec: Spec, i: usize) {
    let key = spec.key();
    journal
        .record_batch(&[JournalEntry::Intent {
            key: key.clone(),
            spec,
            name: None,
            at: jiff::Timestamp::now(),
            by_policy: false,
        }])
        .unwrap();
    journal
        .record_batch(&[JournalEntry::Outcome {
            key,
            outcome: JournalOutcome::Submitted {
                service_preview_id: Some(i.to_string()),
                result_code: "100".into(),
                result_message: "ok".into(),
            },
        }])
        .unwrap();
}

/// Intent + outcome of each of `n` new packages, one batch each (as a
/// sequential apply records them): time per purchase.
fn recording_cost(store: &Store, n: usize, first: usize) -> Duration {
    let (lock, _) = store.lock_and_load("bench", Duration::ZERO).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let started = Instant::now();
    for (i, spec) in specs(n, first).into_iter().enumerate() {
        record_purchase(&mut journal, spec, i);
    }
    started.elapsed() / n as u32
}

fn main() {
    let purchases = arg("--purchases", 1000);
    let latency = Duration::from_millis(arg("--latency-ms", 20) as u64);
    let parallelism = arg("--parallelism", 16);
    let big = arg("--big", 100_000);
    let runs = arg("--runs", 3);
    let long = arg("--long", 2000);
    let moto = moto();
    // SAFETY: set before any other thread of this process reads the
    // environment (the runtime and the stores are created below).
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", moto.1));
        std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench-secret");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    let runtime = common::runtime();
    println!(
        "oapkg {} — S3 state benchmark ({} cores), moto on 127.0.0.1:{}",
        env!("CARGO_PKG_VERSION"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        moto.1
    );

    let long_only = arg("--long-only", 0) != 0;

    if !long_only {
        throughput_and_recording(&runtime, purchases, latency, parallelism, big, runs);
    }
    long_run_part(&runtime, long);
}

fn throughput_and_recording(
    runtime: &tokio::runtime::Runtime,
    purchases: usize,
    latency: Duration,
    parallelism: usize,
    big: usize,
    runs: usize,
) {
    // 1. Throughput, local vs S3, interleaved.
    println!(
        "\n[throughput] {purchases} purchases @{} ms, parallelism {parallelism}, median of {runs}",
        latency.as_millis()
    );
    let ideal = latency * purchases.div_ceil(parallelism) as u32;
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for run in 0..runs {
        let batch = specs(purchases, 10_000 * (run + 1));
        let mut config = account(&batch);
        config = config.latency(latency);
        let sim = Simulator::spawn_blocking(config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("state/oapkg.state.json"));
        store.init("bench", Duration::ZERO).unwrap();
        let (wall, _) = runtime.block_on(run_apply(&store, &endpoint(&sim), &batch, parallelism));
        local.push(wall);

        let batch = specs(purchases, 10_000 * (run + 1) + 5_000);
        let sim = Simulator::spawn_blocking(account(&batch).latency(latency)).unwrap();
        let store = Store::open(
            std::path::Path::new(&format!("s3://bench/throughput-{run}")),
            runtime.handle(),
        )
        .unwrap();
        store.init("bench", Duration::ZERO).unwrap();
        let (wall, _) = runtime.block_on(run_apply(&store, &endpoint(&sim), &batch, parallelism));
        remote.push(wall);
    }
    let (local, remote) = (median(&mut local), median(&mut remote));
    println!(
        "  local state: {:.0} ms = {:.2}x ideal ({:.0} ms)",
        ms(local),
        local.as_secs_f64() / ideal.as_secs_f64(),
        ms(ideal)
    );
    println!(
        "  S3 state:    {:.0} ms = {:.2}x ideal, {:.2}x local",
        ms(remote),
        remote.as_secs_f64() / ideal.as_secs_f64(),
        remote.as_secs_f64() / local.as_secs_f64()
    );

    // 2. Recording cost, empty vs big S3 state, interleaved.
    let n = 50;
    println!(
        "\n[recording] {n} purchases (intent + outcome) onto an empty vs a {big}-package S3 state, median of {runs}"
    );
    let empty_store = Store::open(
        std::path::Path::new("s3://bench/recording-empty"),
        runtime.handle(),
    )
    .unwrap();
    empty_store.init("bench", Duration::ZERO).unwrap();
    let big_store = Store::open(
        std::path::Path::new("s3://bench/recording-big"),
        runtime.handle(),
    )
    .unwrap();
    let started = Instant::now();
    big_store.create_copy(&big_state(big)).unwrap();
    println!(
        "  (writing the {big}-package snapshot once: {:.0} ms)",
        ms(started.elapsed())
    );
    let mut empty = Vec::new();
    let mut large = Vec::new();
    for run in 0..runs {
        empty.push(recording_cost(&empty_store, n, 20_000_000 + run * 2 * n));
        large.push(recording_cost(
            &big_store,
            n,
            20_000_000 + (run * 2 + 1) * n,
        ));
    }
    let (empty, large) = (median(&mut empty), median(&mut large));
    println!(
        "  per purchase: {:.0} µs on {big} vs {:.0} µs on empty = {:.2}x (target <= 1.2x)",
        us(large),
        us(empty),
        large.as_secs_f64() / empty.as_secs_f64()
    );
}

fn long_run_part(runtime: &tokio::runtime::Runtime, long: usize) {
    // 3. One long run: the first purchases vs the last ones, each window
    // about one segment's worth (the tail grows from empty to sealed in it).
    let window = 100.min(long / 2).max(1);
    println!(
        "\n[long run] {long} purchases (intent + outcome) in one run: mean of the first {window} vs the last {window}"
    );
    let long_store = Store::open(
        std::path::Path::new("s3://bench/long-run"),
        runtime.handle(),
    )
    .unwrap();
    long_store.init("bench", Duration::ZERO).unwrap();
    let (first, last, largest) = long_run(&long_store, "long-run/head.json", long, window);
    println!(
        "  per purchase: {:.0} µs up to the {long}th vs {:.0} µs from the first = {:.2}x; head at most {largest} bytes then",
        us(last),
        us(first),
        last.as_secs_f64() / first.as_secs_f64()
    );
}
