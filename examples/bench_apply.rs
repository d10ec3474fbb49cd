//! Benchmark of `apply` against the local simulator:
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

use std::time::Duration;

use esms_sim::Simulator;
use oapkg::state::StateStore;

#[path = "common/mod.rs"]
#[allow(dead_code, reason = "each benchmark uses part of the shared helpers")]
mod common;

use common::apply::{account, binary_run, endpoint, recording, run_apply, specs};
use common::{build_binary, ms, us};

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
    let runtime = common::runtime();
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
        store
            .init("bench", std::time::Duration::ZERO)
            .expect("create the state");
        let sim = Simulator::spawn_blocking(account(&wanted).latency(args.latency)).unwrap();
        let (wall, _) = runtime.block_on(run_apply(&store, &endpoint(&sim), &wanted, p));
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
        let (wall, ideal) = binary_run(&build_binary(), &wanted, args.latency, p);
        println!(
            "end to end, release binary `oapkg apply --auto-approve --parallelism {p}` (process, manifests, plan, pre-flight, purchases, fold): {:.0} ms, {:.2}x ideal",
            ms(wall),
            wall.as_secs_f64() / ideal.as_secs_f64()
        );
    }

    // 2. Recording cost against the state's size.
    let n = common::apply::RECORDED;
    println!(
        "\nrecording {n} purchases onto an empty state vs a {}-package state (median of {} runs)",
        args.big, args.runs
    );
    println!(
        "{:>10} {:>22} {:>24} {:>14} {:>16}",
        "state", "journal µs/purchase", "send phase µs/purchase", "fold ms", "whole apply ms"
    );
    let rows = recording(&runtime, args.big, args.runs);
    for row in &rows {
        println!(
            "{:>10} {:>22.0} {:>24.0} {:>14.1} {:>16.1}",
            row.size,
            us(row.journal),
            us(row.send),
            ms(row.fold),
            ms(row.whole)
        );
    }
    let (small, big) = (&rows[0], &rows[1]);
    println!(
        "ratio {} / empty: journal {:.2}x, send phase {:.2}x (target <= 1.2); the fold and the load are once per run",
        args.big,
        big.journal.as_secs_f64() / small.journal.as_secs_f64(),
        big.send.as_secs_f64() / small.send.as_secs_f64()
    );
}
