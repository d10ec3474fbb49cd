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

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
        let r = run(&binary, debounce, &args);
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

struct Measured {
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    idle_cpu_percent: f64,
    rss_kib: u64,
    hwm_kib: u64,
}

fn manifest(packages: usize, months: usize) -> String {
    let mut out = String::from("apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n");
    for i in 0..packages {
        out.push_str(&format!(
            "  - oaid: \"{}\"\n    tier: advanced\n    start: 2027-01-01\n    duration: {}\n",
            4_000_000 + i,
            1 + (months + i) % 36
        ));
    }
    out
}

fn run(binary: &Path, debounce: u64, args: &Args) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oapkg.yaml");
    std::fs::write(&file, manifest(args.packages, 0)).unwrap();
    let mut child = Command::new(binary)
        .args(["watch", "--log-format", "json", "--debounce"])
        .arg(debounce.to_string())
        .current_dir(dir.path())
        .env("OAPKG_TODAY", "2026-11-26")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start oapkg watch");
    let (tx, plans) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let cycle = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["cycle"].as_u64());
            if let Some(cycle) = cycle
                && tx.send((cycle, Instant::now())).is_err()
            {
                break;
            }
        }
    });
    let next_plan = |expected: u64| loop {
        let (cycle, at) = plans
            .recv_timeout(Duration::from_secs(30))
            .expect("a plan within 30 s");
        if cycle == expected {
            return at;
        }
    };
    next_plan(1);

    let mut delays = Vec::new();
    for save in 0..args.saves {
        let content = manifest(args.packages, save + 1);
        let saved = Instant::now();
        std::fs::write(&file, content).unwrap();
        let printed = next_plan(save as u64 + 2);
        delays.push(printed.duration_since(saved).as_secs_f64() * 1e3);
    }
    delays.sort_by(f64::total_cmp);

    let pid = child.id();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(args.idle));
    let ticks = cpu_ticks(pid) - before;
    let elapsed = started.elapsed().as_secs_f64();
    // SAFETY: sysconf has no memory effects.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (rss_kib, hwm_kib) = memory(pid);

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "watch exited with {status}");

    Measured {
        median_ms: delays[delays.len() / 2],
        min_ms: delays[0],
        max_ms: delays[delays.len() - 1],
        idle_cpu_percent: ticks as f64 / per_sec / elapsed * 100.0,
        rss_kib,
        hwm_kib,
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name may hold spaces; fields count from after its `)`.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// (VmRSS, VmHWM) of `pid`, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
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
