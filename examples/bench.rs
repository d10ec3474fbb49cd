//! Benchmark of the offline path: generates N packages (a manifest and a
//! state of the same size, all unchanged but 1%), runs the release binary's
//! `plan --format json` and `validate` several times, and prints the median
//! wall time and peak RSS of each.
//!
//! Run: `cargo run --release --example bench -- [N...] [--runs R]`
//! (default sizes 1000 10000 100000, 5 runs each). `--generate DIR N`
//! only writes the inputs for N packages into DIR, for profiling.

use std::path::PathBuf;

#[path = "common/mod.rs"]
#[allow(dead_code, reason = "each benchmark uses part of the shared helpers")]
mod common;

use common::plan::{generate, measure_runs};
use common::{build_binary, ms};

fn main() {
    let mut sizes = Vec::new();
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().and_then(|r| r.parse().ok()).expect("--runs N"),
            "--generate" => {
                // Inputs for profiling: `--generate DIR N` writes them and stops.
                let dir = PathBuf::from(args.next().expect("--generate DIR N"));
                std::fs::create_dir_all(&dir).expect("create DIR");
                let n = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--generate DIR N");
                generate(&dir, n);
                return;
            }
            n => sizes.push(n.parse::<usize>().expect("sizes are numbers")),
        }
    }
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000, 100_000];
    }
    let binary = build_binary();
    println!(
        "oapkg {} — plan benchmark, {runs} runs each, median (min–max)",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "{:<10} {:<10} {:>10} {:>22} {:>14} {:>12}",
        "packages", "command", "yaml MB", "wall ms", "peak RSS MB", "µs/package"
    );
    let mut per_package = Vec::new();
    for &n in &sizes {
        let dir = tempfile::tempdir().unwrap();
        let yaml_bytes = generate(dir.path(), n);
        for command in [&["plan", "--format", "json"][..], &["validate"]] {
            let runs = measure_runs(&binary, dir.path(), command, runs);
            let median = runs.median;
            let us = median.as_secs_f64() * 1e6 / n as f64;
            if command[0] == "plan" {
                per_package.push((n, us));
            }
            println!(
                "{:<10} {:<10} {:>10.1} {:>10.0} ({:>4.0}–{:>4.0}) {:>14.1} {:>12.2}",
                n,
                command[0],
                yaml_bytes as f64 / 1e6,
                ms(median),
                ms(runs.min),
                ms(runs.max),
                runs.rss_kib as f64 / 1024.0,
                us
            );
        }
    }
    if let (Some(first), Some(last)) = (per_package.first(), per_package.last()) {
        println!(
            "growth: plan cost per package at {} vs {} packages: {:.2}x (1.0 = linear)",
            last.0,
            first.0,
            last.1 / first.1
        );
    }
}
