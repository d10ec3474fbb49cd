//! Benchmark of the offline path: generates N packages (a manifest and a
//! state of the same size, all unchanged but 1%), runs the release binary's
//! `plan --format json` and `validate` several times, and prints the median
//! wall time and peak RSS of each.
//!
//! Run: `cargo run --release --example bench -- [N...] [--runs R]`
//! (default sizes 1000 10000 100000, 5 runs each). `--generate DIR N`
//! only writes the inputs for N packages into DIR, for profiling.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oapkg::spec::{Oaid, Spec, Tier};
use oapkg::state::{Record, StateStore, Status};

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
            let mut walls = Vec::new();
            let mut rss = Vec::new();
            for _ in 0..runs {
                let (wall, peak) = measure(&binary, dir.path(), command);
                walls.push(wall);
                rss.push(peak);
            }
            walls.sort();
            rss.sort();
            let median = walls[runs / 2];
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
                ms(walls[0]),
                ms(walls[runs - 1]),
                rss[runs / 2] as f64 / 1024.0,
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The release binary, built if needed.
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

/// Writes `oapkg.yaml` with `n` packages and a state recording all of them
/// except every 100th (which the plan will purchase). Returns the YAML size.
fn generate(dir: &Path, n: usize) -> usize {
    let tiers = [Tier::Trial, Tier::Advanced, Tier::Premium];
    let mut yaml = String::from(
        "apiVersion: oapkg/v1\nkind: PackageSet\ndefaults:\n  duration: 12\npackages:\n",
    );
    let mut state = oapkg::state::State::default();
    let base = jiff::civil::date(2027, 1, 1);
    for i in 0..n {
        let oaid = format!("{}", 4_000_000_000_000_000_000u64 + i as u64 * 7919);
        let start = base.saturating_add(jiff::Span::new().days((i % 365) as i64));
        let tier = tiers[i % 3];
        yaml.push_str(&format!(
            "  - oaid: \"{oaid}\"\n    name: OA number {i}\n    tier: {tier}\n    start: {start}\n"
        ));
        if i % 100 != 0 {
            let spec = Spec {
                oaid: Oaid::parse(&oaid).unwrap(),
                tier,
                start,
                duration_months: 12,
            };
            state.packages.insert(
                spec.key(),
                Record {
                    spec_hash: spec.hash(),
                    spec,
                    name: Some(format!("OA number {i}")),
                    status: Status::Submitted,
                    service_preview_id: Some(format!("{}", 50_000 + i)),
                    result_code: Some("100".into()),
                    result_message: Some("ViHAT is censoring trademark ownership".into()),
                    submitted_at: Some(jiff::Timestamp::UNIX_EPOCH),
                },
            );
        }
    }
    std::fs::write(dir.join("oapkg.yaml"), &yaml).unwrap();
    let store = StateStore::new(dir.join("state/oapkg.state.json"));
    let lock = store.lock("bench", Duration::ZERO).unwrap();
    store.write(&lock, &mut state).unwrap();
    yaml.len()
}

/// Wall time and peak RSS (KiB) of one run.
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reports the peak RSS"
)]
fn measure(binary: &Path, dir: &Path, args: &[&str]) -> (Duration, u64) {
    let started = Instant::now();
    let child = Command::new(binary)
        .args(args)
        .current_dir(dir)
        .env("OAPKG_TODAY", "2026-11-26")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run oapkg");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(waited, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "oapkg {args:?} failed"
    );
    (wall, usage.ru_maxrss as u64)
}
