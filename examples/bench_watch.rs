//! Measures `oapkg watch` (release build, plan-only): the delay from a file
//! save to the plan being printed, and the idle cost of the process.
//!
//! For each `--debounce` setting it starts `oapkg watch --log-format json`
//! on a manifest of `--packages` packages in a temporary directory, saves
//! the manifest `--saves` times (truncate-and-write, new content each time,
//! the next save once the previous plan is printed), and times each save
//! until its plan's JSON line arrives on stdout. Then it leaves the process
//! alone for `--idle` seconds and reads its CPU time (utime + stime from
//! `/proc/PID/stat`) and memory (VmRSS, VmHWM from `/proc/PID/status`).
//!
//! Run: `cargo run --release --example bench_watch -- [--debounce 500,50]
//! [--saves 20] [--idle 60] [--packages 10]` (Linux: it reads /proc).

#[path = "common/mod.rs"]
#[allow(dead_code, reason = "each benchmark uses part of the shared helpers")]
mod common;

use common::build_binary;

struct Args {
    debounces: Vec<u64>,
    saves: usize,
    idle: u64,
    packages: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        debounces: vec![500, 50],
        saves: 20,
        idle: 60,
        packages: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--debounce" => {
                args.debounces = value
                    .split(',')
                    .map(|v| v.parse().expect("--debounce MILLIS[,MILLIS...]"))
                    .collect()
            }
            "--saves" => args.saves = value.parse().expect("--saves N"),
            "--idle" => args.idle = value.parse().expect("--idle SECS"),
            "--packages" => args.packages = value.parse().expect("--packages N"),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let binary = build_binary();
    println!(
        "oapkg {} — watch benchmark: {} saves per setting, {} packages, idle {} s",
        env!("CARGO_PKG_VERSION"),
        args.saves,
        args.packages,
        args.idle
    );
    println!(
        "{:<10} {:>28} {:>12} {:>12} {:>12}",
        "debounce", "save → plan ms: median (min–max)", "idle CPU %", "VmRSS MB", "VmHWM MB"
    );
    for &debounce in &args.debounces {
        let r = common::watch::run(&binary, debounce, args.saves, args.idle, args.packages);
        println!(
            "{:<10} {:>12.0} ({:>5.0}–{:>5.0}) {:>12.3} {:>12.1} {:>12.1}",
            format!("{debounce} ms"),
            r.median_ms,
            r.min_ms,
            r.max_ms,
            r.idle_cpu_percent,
            r.rss_kib as f64 / 1024.0,
            r.hwm_kib as f64 / 1024.0,
        );
    }
}
