//! Plan inputs of a given size and one timed run of the release binary.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oapkg::spec::{Oaid, Spec, Tier};
use oapkg::state::{Record, StateStore, Status};

/// Writes `oapkg.yaml` with `n` packages and a state recording all of them
/// except every 100th (which the plan will purchase). Returns the YAML size.
pub fn generate(dir: &Path, n: usize) -> usize {
    generate_with(dir, n, true)
}

/// Like [`generate`]; with `recorded` false the state is empty (written,
/// with no package), so the plan purchases all `n`.
pub fn generate_with(dir: &Path, n: usize, recorded: bool) -> usize {
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
        if recorded && i % 100 != 0 {
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
                    confirmed: None,
                    by_policy: false,
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

/// Wall time and peak RSS (KiB) of one run of `binary args` in `dir`.
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reports the peak RSS"
)]
pub fn measure(binary: &Path, dir: &Path, args: &[&str]) -> (Duration, u64) {
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

/// Median wall time and median peak RSS (KiB) of `runs` runs.
pub fn measure_runs(binary: &Path, dir: &Path, args: &[&str], runs: usize) -> Runs {
    let mut walls = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        let (wall, peak) = measure(binary, dir, args);
        walls.push(wall);
        rss.push(peak);
    }
    walls.sort();
    rss.sort();
    Runs {
        median: walls[runs / 2],
        min: walls[0],
        max: walls[runs - 1],
        rss_kib: rss[runs / 2],
    }
}

/// What [`measure_runs`] found.
pub struct Runs {
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
    pub rss_kib: u64,
}
