//! Benchmark of the offline path: generates N packages (a manifest and a
//! state of the same size, all unchanged but 1%; and the same manifest with
//! an empty state, so that the plan purchases and renders all N), runs the
//! release binary's `plan --format json` and `validate` several times, and
//! prints the median wall time and peak RSS of each, beside the floor of
//! its row: what merely reading its inputs costs.
//!
//! Run: `cargo run --release --example bench -- [N...] [--runs R]
//! [--bin NAME=PATH]...` (default sizes 1000 10000 100000, 5 runs each).
//! `--bin` compares binaries (e.g. `--bin before=/tmp/old/oapkg --bin
//! after=target/release/oapkg`): their runs alternate, so a change of load
//! hits both alike. Without it the release binary is built and measured.
//! `--fold N` times the end-of-apply fold (100 journaled purchases into a
//! state of N packages) in this process. `--generate DIR N` only writes the inputs for N packages into DIR, for
//! profiling; `--phases` also times each phase of a plan of the largest
//! size in this process (the library as built with this example).
//!
//! Floors: `cat` is a `cat` process reading the manifest and the state to
//! /dev/null (`validate` reads both too); the row's floor is the larger of
//! it and `json`, `serde_json` parsing the state file into nothing
//! (`IgnoredAny`) in a process of its own — the least any reader of the
//! state must do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
#[allow(dead_code, reason = "each benchmark uses part of the shared helpers")]
mod common;

use common::plan::{generate_with, measure, phases};
use common::{build_binary, median, ms};

fn main() {
    let mut sizes = Vec::new();
    let mut runs = 5;
    let mut show_phases = false;
    let mut binaries: Vec<(String, PathBuf)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--phases" => show_phases = true,
            "--runs" => runs = args.next().and_then(|r| r.parse().ok()).expect("--runs N"),
            "--bin" => {
                let spec = args.next().expect("--bin NAME=PATH");
                let (name, path) = spec.split_once('=').expect("--bin NAME=PATH");
                binaries.push((name.to_owned(), PathBuf::from(path)));
            }
            "--generate" | "--generate-empty" => {
                // Inputs for profiling: `--generate DIR N` writes them,
                // prints the manifest's size and stops.
                let dir = PathBuf::from(args.next().expect("--generate DIR N"));
                std::fs::create_dir_all(&dir).expect("create DIR");
                let n = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--generate DIR N");
                println!("{}", generate_with(&dir, n, arg == "--generate"));
                return;
            }
            "--fold" => {
                // `--fold N`: the end-of-apply fold of 100 journaled
                // purchases into a state of N packages, in this process.
                let n = args.next().and_then(|n| n.parse().ok()).expect("--fold N");
                let mut cpus = Vec::new();
                let mut folds: Vec<Duration> = (0..runs)
                    .map(|run| {
                        let dir = tempfile::tempdir().unwrap();
                        let store = oapkg::state::StateStore::new(
                            dir.path().join("state/oapkg.state.json"),
                        );
                        common::apply::write_state(&store, n);
                        common::apply::settle();
                        let fresh = common::apply::specs(100, 1_000_000 + run * 100);
                        let wall = common::apply::journal_cost(&store, &fresh).1;
                        cpus.push(*common::apply::LAST_FOLD_CPU.lock().unwrap());
                        wall
                    })
                    .collect();
                println!(
                    "fold of 100 journaled purchases into {n} packages: {:.0} ms, CPU time {:.0} ms (medians of {runs})",
                    ms(median(&mut folds)),
                    ms(median(&mut cpus))
                );
                return;
            }
            "--json-floor" => {
                // `--json-floor FILE RUNS`: prints the floor in nanoseconds.
                let file = PathBuf::from(args.next().expect("--json-floor FILE RUNS"));
                let runs = args.next().and_then(|r| r.parse().ok()).expect("RUNS");
                println!("{}", json_floor(&file, runs).as_nanos());
                return;
            }
            n => sizes.push(n.parse::<usize>().expect("sizes are numbers")),
        }
    }
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000, 100_000];
    }
    if binaries.is_empty() {
        binaries.push(("oapkg".to_owned(), build_binary()));
    }
    println!(
        "oapkg {} — plan benchmark, {runs} runs each (binaries alternating), median (min–max)",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "{:<9} {:<14} {:<8} {:>6} {:>20} {:>8} {:>9} {:>16}",
        "packages", "command", "binary", "MB in", "wall ms", "RSS MB", "µs/pkg", "floor ms (ratio)"
    );
    // Per binary: (n, µs per package) of the in-sync plan.
    let mut per_package: Vec<Vec<(usize, f64)>> = vec![Vec::new(); binaries.len()];
    for &n in &sizes {
        for recorded in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let yaml_bytes = in_child(&[
                if recorded {
                    "--generate"
                } else {
                    "--generate-empty"
                },
                &dir.path().display().to_string(),
                &n.to_string(),
            ]);
            let manifest = dir.path().join("oapkg.yaml");
            let state = dir.path().join("state/oapkg.state.json");
            let state_bytes = std::fs::metadata(&state).map_or(0, |m| m.len() as usize);
            let json = Duration::from_nanos(in_child(&[
                "--json-floor",
                &state.display().to_string(),
                &runs.to_string(),
            ]) as u64);
            let commands: &[(&str, &[&str])] = if recorded {
                &[
                    ("plan", &["plan", "--format", "json"]),
                    ("validate", &["validate"]),
                ]
            } else {
                &[("plan (empty)", &["plan", "--format", "json"])]
            };
            for (label, command) in commands {
                // `validate` reads the state too (for the warnings that
                // depend on it), so every row's floor is both files.
                let cat = cat_floor(&[&manifest, &state], runs);
                let floor = cat.max(json);
                let results = measure_alternating(&binaries, dir.path(), command, runs);
                for (b, ((name, _), runs)) in binaries.iter().zip(results).enumerate() {
                    let us = runs.median.as_secs_f64() * 1e6 / n as f64;
                    if *label == "plan" {
                        per_package[b].push((n, us));
                    }
                    let input = yaml_bytes + state_bytes;
                    println!(
                        "{:<9} {:<14} {:<8} {:>6.1} {:>6.0} ({:>5.0}–{:>5.0}) {:>8.1} {:>9.2} {:>6.0} ({:>5.1}x)",
                        n,
                        label,
                        name,
                        input as f64 / 1e6,
                        ms(runs.median),
                        ms(runs.min),
                        ms(runs.max),
                        runs.rss_kib as f64 / 1024.0,
                        us,
                        ms(floor),
                        runs.median.as_secs_f64() / floor.as_secs_f64(),
                    );
                }
            }
            println!(
                "{:<9} floors: cat of the manifest and state {:.1} ms, serde_json parse of the state {:.1} ms",
                n,
                ms(cat_floor(&[&manifest, &state], runs)),
                ms(json)
            );
        }
    }
    if show_phases && let Some(&n) = sizes.iter().max() {
        let dir = tempfile::tempdir().unwrap();
        in_child(&[
            "--generate",
            &dir.path().display().to_string(),
            &n.to_string(),
        ]);
        println!("plan phases, {n} packages, in this process, one thread, median of {runs}:");
        for (phase, time) in phases(dir.path(), runs) {
            println!("  {phase:<48} {:>6.0} ms", ms(time));
        }
    }
    for ((name, _), per_package) in binaries.iter().zip(&per_package) {
        if let (Some(first), Some(last)) = (per_package.first(), per_package.last()) {
            println!(
                "growth ({name}): plan cost per package at {} vs {} packages: {:.2}x (1.0 = linear)",
                last.0,
                first.0,
                last.1 / first.1
            );
        }
    }
}

/// Runs this benchmark with `args` in a child process (so that this one
/// stays small: a child started by `fork` starts its peak RSS from its
/// parent's) and returns the number it prints.
fn in_child(args: &[&str]) -> usize {
    let out = std::process::Command::new(std::env::current_exe().expect("this benchmark"))
        .args(args)
        .output()
        .expect("run the benchmark in a child");
    assert!(out.status.success(), "{args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a number")
}

/// What [`measure_alternating`] found for one binary.
struct Runs {
    median: Duration,
    min: Duration,
    max: Duration,
    rss_kib: u64,
}

/// `runs` runs of each binary, one of each in turn.
fn measure_alternating(
    binaries: &[(String, PathBuf)],
    dir: &Path,
    args: &[&str],
    runs: usize,
) -> Vec<Runs> {
    let mut walls = vec![Vec::new(); binaries.len()];
    let mut rss = vec![Vec::new(); binaries.len()];
    for _ in 0..runs {
        for (b, (_, binary)) in binaries.iter().enumerate() {
            let (wall, peak) = measure(binary, dir, args);
            walls[b].push(wall);
            rss[b].push(peak);
        }
    }
    walls
        .iter_mut()
        .zip(rss.iter_mut())
        .map(|(walls, rss)| {
            rss.sort();
            let median = median(walls);
            Runs {
                median,
                min: walls[0],
                max: walls[walls.len() - 1],
                rss_kib: rss[rss.len() / 2],
            }
        })
        .collect()
}

/// Median wall time of a `cat` process reading `files` to /dev/null.
fn cat_floor(files: &[&Path], runs: usize) -> Duration {
    let mut walls: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let status = std::process::Command::new("cat")
                .args(files)
                .stdout(std::process::Stdio::null())
                .status()
                .expect("run cat");
            assert!(status.success(), "cat failed");
            started.elapsed()
        })
        .collect();
    median(&mut walls)
}

/// Median time to read the state file and parse it with serde_json into
/// nothing; zero when there is no state file.
fn json_floor(state: &Path, runs: usize) -> Duration {
    let mut walls: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let bytes = std::fs::read(state).unwrap_or_default();
            if !bytes.is_empty() {
                serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).expect("the state is JSON");
            }
            started.elapsed()
        })
        .collect();
    median(&mut walls)
}
