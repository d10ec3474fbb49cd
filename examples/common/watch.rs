//! `oapkg watch` measured from outside (Linux: reads /proc): the delay from
//! a file save to the printed plan, and the idle cost of the process.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What [`run`] measured.
pub struct Measured {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub idle_cpu_percent: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn manifest(packages: usize, months: usize) -> String {
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

/// Starts a plan-only `oapkg watch` with `debounce` ms on `packages`
/// packages, saves the manifest `saves` times (each next save once the
/// previous plan is printed), then leaves it idle for `idle` seconds.
pub fn run(binary: &Path, debounce: u64, saves: usize, idle: u64, packages: usize) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oapkg.yaml");
    std::fs::write(&file, manifest(packages, 0)).unwrap();
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
    for save in 0..saves {
        let content = manifest(packages, save + 1);
        let saved = Instant::now();
        std::fs::write(&file, content).unwrap();
        let printed = next_plan(save as u64 + 2);
        delays.push(printed.duration_since(saved).as_secs_f64() * 1e3);
    }
    delays.sort_by(f64::total_cmp);

    let pid = child.id();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(idle));
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
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name may hold spaces; fields count from after its `)`.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// (VmRSS, VmHWM) of `pid`, in KiB.
pub fn memory(pid: u32) -> (u64, u64) {
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
