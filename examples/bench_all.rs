//! The whole performance table in one run: plan and validate
//! (release binary, generated inputs), where a 100,000-package plan spends
//! its time (each phase timed in-process), apply at parallelism 1/4/16/64
//! against the latency-bound ideal, the same purchases as a sequential
//! `curl` loop, recording on an empty vs a large state, and `oapkg watch`'s
//! save → plan delay. Prints the machine first and one table at the end,
//! each row with its target and whether it was met.
//!
//! Run: `cargo run --release --example bench_all -- [--quick] [--runs R]`.
//! `--quick` skips parallelism 1 (about 20 s). Needs `curl` and `sh` on the
//! PATH and Linux (/proc). Everything stays on 127.0.0.1; inputs are
//! generated under the system temporary directory.
//!
//! The sections reuse the helpers of `bench`, `bench_apply` and
//! `bench_watch` (examples/common/), which remain for finer questions.

use std::time::{Duration, Instant};

use esms_sim::Simulator;
use oapkg::state::StateStore;

#[path = "common/mod.rs"]
#[allow(dead_code, reason = "each benchmark uses part of the shared helpers")]
mod common;

use common::apply::{
    RECORDED, account, binary_run, curl_loop, endpoint, recording, run_apply, specs,
};
use common::plan::{generate, measure_runs, phases};
use common::{build_binary, ms, us};

const LATENCY: Duration = Duration::from_millis(20);
const PURCHASES: usize = 1000;
const BIG: usize = 100_000;
const DEBOUNCE_MS: u64 = 500;
const SAVES: usize = 20;
const IDLE_SECS: u64 = 10;

/// One line of the final table.
struct Row {
    what: String,
    measured: String,
    target: String,
    /// `None`: no target, just a figure.
    met: Option<bool>,
}

fn row(what: impl Into<String>, measured: impl Into<String>) -> Row {
    Row {
        what: what.into(),
        measured: measured.into(),
        target: String::new(),
        met: None,
    }
}

fn target(what: impl Into<String>, measured: impl Into<String>, target: &str, met: bool) -> Row {
    Row {
        what: what.into(),
        measured: measured.into(),
        target: target.into(),
        met: Some(met),
    }
}

fn main() {
    let mut quick = false;
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--runs" => runs = args.next().and_then(|r| r.parse().ok()).expect("--runs R"),
            other => panic!("unknown argument {other} (expected --quick, --runs R)"),
        }
    }
    let started = Instant::now();
    let binary = build_binary();
    println!("oapkg {} — bench_all", env!("CARGO_PKG_VERSION"));
    println!("machine: {}", machine());
    println!("load average at start: {}", load_average());
    let mut table = Vec::new();

    // 1. plan and validate, release binary.
    println!("\n[plan] --format json and validate, median of {runs} runs");
    let mut plan_ms = Vec::new();
    for n in [1_000, 10_000, BIG] {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), n);
        let plan = measure_runs(&binary, dir.path(), &["plan", "--format", "json"], runs);
        println!(
            "  plan {n:>7}: {:>6.0} ms ({:.0}–{:.0}), peak RSS {:.0} MB",
            ms(plan.median),
            ms(plan.min),
            ms(plan.max),
            mb(plan.rss_kib)
        );
        let measured = format!("{:.0} ms, {:.0} MB peak", ms(plan.median), mb(plan.rss_kib));
        table.push(if n == BIG {
            target(
                format!("plan, {n} packages"),
                measured,
                "<= 0.5 s and <= 150 MB",
                plan.median <= Duration::from_millis(500) && plan.rss_kib <= 150 * 1024,
            )
        } else {
            row(format!("plan, {n} packages"), measured)
        });
        plan_ms.push(ms(plan.median));
        if n == BIG {
            let validate = measure_runs(&binary, dir.path(), &["validate"], runs);
            println!(
                "  validate {n}: {:>6.0} ms ({:.0}–{:.0}), peak RSS {:.0} MB",
                ms(validate.median),
                ms(validate.min),
                ms(validate.max),
                mb(validate.rss_kib)
            );
            table.push(target(
                format!("validate, {n} packages"),
                format!(
                    "{:.0} ms, {:.0} MB peak",
                    ms(validate.median),
                    mb(validate.rss_kib)
                ),
                "<= 0.4 s and <= 150 MB",
                validate.median <= Duration::from_millis(400) && validate.rss_kib <= 150 * 1024,
            ));
            println!("\n[plan phases] {n} packages, in-process, one thread, median of {runs}");
            for (phase, time) in phases(dir.path(), runs) {
                println!("  {phase:<48} {:>6.0} ms", ms(time));
            }
        }
    }
    let growth = plan_ms[2] / plan_ms[1];
    table.push(target(
        "plan growth, 100,000 vs 10,000 packages",
        format!("{growth:.1}x the time"),
        "<= 11x",
        growth <= 11.0,
    ));

    // 2. apply throughput, the library against the in-process simulator.
    let runtime = common::runtime();
    println!(
        "\n[apply] {PURCHASES} purchases at {} ms latency (library: lock, load, pre-flight, journal, fold)",
        LATENCY.as_millis()
    );
    let wanted = specs(PURCHASES, 0);
    let parallelisms: &[usize] = if quick { &[4, 16, 64] } else { &[1, 4, 16, 64] };
    let mut at16 = Duration::ZERO;
    let mut at1 = None;
    for &p in parallelisms {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("state/oapkg.state.json"));
        store
            .init("bench", std::time::Duration::ZERO)
            .expect("create the state");
        let sim = Simulator::spawn_blocking(account(&wanted).latency(LATENCY)).unwrap();
        let (wall, _) = runtime.block_on(run_apply(&store, &endpoint(&sim), &wanted, p));
        assert_eq!(
            sim.ledger().len(),
            wanted.len(),
            "every purchase charged once"
        );
        let ideal = LATENCY * PURCHASES.div_ceil(p) as u32;
        let ratio = wall.as_secs_f64() / ideal.as_secs_f64();
        println!(
            "  parallelism {p:>2}: {:>7.0} ms, ideal {:>6.0} ms, {ratio:.2}x",
            ms(wall),
            ms(ideal)
        );
        let what = format!("apply {PURCHASES} @20 ms, parallelism {p}");
        let measured = format!(
            "{:.0} ms = {ratio:.2}x ideal ({:.0} ms)",
            ms(wall),
            ms(ideal)
        );
        table.push(if p == 16 {
            at16 = wall;
            target(what, measured, "<= 1.25x ideal", ratio <= 1.25)
        } else {
            row(what, measured)
        });
        if p == 1 {
            at1 = Some(wall);
        }
    }
    let (e2e, ideal) = binary_run(&binary, &wanted, LATENCY, 16);
    println!(
        "  release binary end to end, parallelism 16: {:.0} ms, {:.2}x ideal",
        ms(e2e),
        e2e.as_secs_f64() / ideal.as_secs_f64()
    );
    table.push(row(
        "apply 1000 @20 ms, parallelism 16, `oapkg apply` process end to end",
        format!(
            "{:.0} ms = {:.2}x ideal",
            ms(e2e),
            e2e.as_secs_f64() / ideal.as_secs_f64()
        ),
    ));

    // 3. the curl loop, same simulator and latency.
    println!("\n[curl] the same {PURCHASES} purchases, one `curl` process each, sequentially");
    let curl = curl_loop(&wanted, LATENCY);
    println!("  curl loop: {:.0} ms", ms(curl));
    table.push(row(
        format!("sequential curl loop, {PURCHASES} @20 ms (no journal: not exactly-once)"),
        format!("{:.0} ms", ms(curl)),
    ));
    let speedup = curl.as_secs_f64() / at16.as_secs_f64();
    table.push(target(
        "  speed-up of oapkg (parallelism 16) over it",
        format!("{speedup:.1}x"),
        ">= 10x",
        speedup >= 10.0,
    ));
    let speedup_e2e = curl.as_secs_f64() / e2e.as_secs_f64();
    table.push(row(
        "  speed-up of the `oapkg apply` process over it",
        format!("{speedup_e2e:.1}x"),
    ));
    if let Some(at1) = at1 {
        table.push(row(
            "  oapkg at parallelism 1 vs curl (both sequential)",
            format!("{:.2}x curl's time", at1.as_secs_f64() / curl.as_secs_f64()),
        ));
    }

    // 4. recording onto an empty vs a large state.
    println!(
        "\n[recording] {RECORDED} purchases onto an empty vs a {BIG}-package state, median of {runs}"
    );
    let [empty, large] = recording(&runtime, BIG, runs);
    for r in [&empty, &large] {
        println!(
            "  state {:>6}: journal {:>4.0} µs/purchase, send phase {:>4.0} µs/purchase, fold {:>5.0} ms, whole {:>5.0} ms",
            r.size,
            us(r.journal),
            us(r.send),
            ms(r.fold),
            ms(r.whole)
        );
    }
    let journal_ratio = large.journal.as_secs_f64() / empty.journal.as_secs_f64();
    let send_ratio = large.send.as_secs_f64() / empty.send.as_secs_f64();
    table.push(target(
        format!("recording {RECORDED}: journal per purchase, {BIG} vs empty"),
        format!(
            "{:.0} vs {:.0} µs = {journal_ratio:.2}x",
            us(large.journal),
            us(empty.journal)
        ),
        "<= 1.2x",
        journal_ratio <= 1.2,
    ));
    table.push(target(
        format!("recording {RECORDED}: apply send phase per purchase, {BIG} vs empty"),
        format!(
            "{:.0} vs {:.0} µs = {send_ratio:.2}x",
            us(large.send),
            us(empty.send)
        ),
        "<= 1.2x",
        send_ratio <= 1.2,
    ));
    table.push(row(
        format!("  once per run: fold into the state, {BIG} vs empty"),
        format!("{:.0} vs {:.0} ms", ms(large.fold), ms(empty.fold)),
    ));

    // 5. watch.
    println!(
        "\n[watch] --debounce {DEBOUNCE_MS}, 10 packages, {SAVES} saves, then idle {IDLE_SECS} s"
    );
    let w = common::watch::run(&binary, DEBOUNCE_MS, SAVES, IDLE_SECS, 10);
    println!(
        "  save → plan {:.0} ms median ({:.0}–{:.0}); idle CPU {:.3} %, VmRSS {:.1} MB",
        w.median_ms,
        w.min_ms,
        w.max_ms,
        w.idle_cpu_percent,
        w.rss_kib as f64 / 1024.0
    );
    table.push(target(
        format!("watch: save → plan printed, median of {SAVES}"),
        format!("{:.0} ms ({:.0}–{:.0})", w.median_ms, w.min_ms, w.max_ms),
        "<= debounce 500 + 100 ms",
        w.median_ms <= (DEBOUNCE_MS + 100) as f64,
    ));
    table.push(target(
        format!("watch: idle CPU over {IDLE_SECS} s"),
        format!(
            "{:.3} % ({:.1} MB RSS)",
            w.idle_cpu_percent,
            w.rss_kib as f64 / 1024.0
        ),
        "near zero (< 1 %)",
        w.idle_cpu_percent < 1.0,
    ));

    println!(
        "\nload average at end: {}; whole run {:.0} s{}",
        load_average(),
        started.elapsed().as_secs_f64(),
        if quick {
            " (--quick: parallelism 1 skipped)"
        } else {
            ""
        }
    );
    print_table(&table);
}

/// The table as Markdown, so it can go into BENCHMARKS.md as printed.
fn print_table(table: &[Row]) {
    println!("\n| benchmark | measured | target | met |");
    println!("|---|---|---|---|");
    for r in table {
        let met = match r.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "",
        };
        println!("| {} | {} | {} | {met} |", r.what, r.measured, r.target);
    }
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `nproc` and the CPU model, from /proc/cpuinfo.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores (nproc), {model}")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
