//! Plan inputs of a given size and one timed run of the release binary.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::median;

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

/// The phases of a plan on the inputs in `dir`, each timed on its own in
/// this process on one thread (the binary reads the manifests and the state
/// on two threads at once, so its wall time is less than the sum).
pub fn phases(dir: &Path, runs: usize) -> Vec<(&'static str, Duration)> {
    use oapkg::manifest::validate::{Origin, check_file, check_together};
    let today = jiff::civil::date(2026, 11, 26);
    let yaml_path = dir.join("oapkg.yaml");
    let state_path = dir.join("state/oapkg.state.json");
    let mut samples: Vec<(&'static str, Vec<Duration>)> = [
        "read the manifest (9.8 MB)",
        "YAML parse with positions (serde-saphyr, raw)",
        "fast reader (the block style, raw)",
        "parse + validate per file (check_file)",
        "cross-file checks (duplicates, overlaps)",
        "state decoded as read (scan + records)",
        "read the state file whole",
        "state decoded whole (parse + re-encode)",
        "diff",
        "render JSON",
    ]
    .into_iter()
    .map(|name| (name, Vec::new()))
    .collect();
    for _ in 0..runs {
        let mut times = Vec::new();
        let mut lap = Instant::now();
        let mut mark = |times: &mut Vec<Duration>| {
            times.push(lap.elapsed());
            lap = Instant::now();
        };
        let text = std::fs::read_to_string(&yaml_path).unwrap();
        mark(&mut times);
        let raw = oapkg::manifest::validate::parse_positioned(&text).expect("the manifest parses");
        assert_eq!(raw.len(), 1, "one YAML document");
        drop(raw);
        mark(&mut times);
        let fast = oapkg::manifest::fast::parse(&text).expect("the fast reader reads it");
        drop(fast);
        mark(&mut times);
        let outcome = check_file("oapkg.yaml", &text, Origin::Named, today);
        mark(&mut times);
        assert!(outcome.errors.is_empty());
        let (desired, errors, _) = check_together(outcome.packages);
        mark(&mut times);
        assert!(errors.is_empty());
        let file = std::fs::File::open(&state_path).unwrap();
        let (disk, _) = oapkg::state::file::stream(&state_path, file, false)
            .expect("the bench's state is canonical")
            .unwrap();
        mark(&mut times);
        let bytes = std::fs::read(&state_path).unwrap();
        mark(&mut times);
        let whole = oapkg::state::file::decode_whole(&state_path, &bytes).unwrap();
        mark(&mut times);
        let plan = oapkg::plan::diff(
            &oapkg::manifest::DesiredSet { packages: desired },
            &disk.packages,
            &disk.failed_attempts,
            Default::default(),
            today,
            vec![],
        );
        mark(&mut times);
        let json = oapkg::plan::render::json(&plan);
        mark(&mut times);
        // Outside the timed phases: freeing 100,000 records takes tens of
        // milliseconds.
        assert_eq!(whole, disk);
        drop((whole, bytes));
        assert!(json.len() > 100);
        for (sample, time) in samples.iter_mut().zip(times) {
            sample.1.push(time);
        }
    }
    samples
        .into_iter()
        .map(|(name, mut times)| (name, median(&mut times)))
        .collect()
}
