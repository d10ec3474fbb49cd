//! Benchmark of `oapkg refresh` (read-back through Zalo) against the local
//! simulator: N OAs (default 6,000), each with a refresh token in a token
//! file and a package Zalo knows of, read by the release binary.
//!
//! 1. **First run**: every OA's refresh token is exchanged (the new pairs
//!    written to the token file in chunks of 64 before use), then every OA
//!    is read: 2 × N requests.
//! 2. **Second run**: the access tokens are reused, N reads.
//!
//! Reports wall time, peak RSS and the requests the simulator answered, at
//! the default concurrency (16 requests in flight).
//!
//! Run: `cargo run --release --example bench_refresh -- [--oas N]
//! [--concurrency C]`. Everything stays on 127.0.0.1.

use esms_sim::{SimConfig, Simulator};

#[path = "common/mod.rs"]
#[allow(dead_code, reason = "each benchmark uses part of the shared helpers")]
mod common;

use common::plan::measure;
use common::{build_binary, ms};

fn main() {
    let mut oas = 6000usize;
    let mut concurrency = 16usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--oas" => oas = value.parse().expect("--oas N"),
            "--concurrency" => concurrency = value.parse().expect("--concurrency C"),
            other => panic!("unknown flag {other}"),
        }
    }
    let binary = build_binary();
    let runtime = common::runtime();
    let first: u64 = 3_000_000_000_000_000_000;
    let mut config = SimConfig::new();
    for i in 0..oas as u64 {
        config = config.zalo_package(
            (first + i).to_string(),
            // Ended before "today": no drift, so `refresh` exits 0.
            "2026-06-30".parse().unwrap(),
            "Gói Nâng cao",
        );
    }
    let sim = runtime
        .block_on(Simulator::start(config))
        .expect("start the simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut tokens = String::new();
    for i in 0..oas as u64 {
        let pair = sim.zalo_authorize(&(first + i).to_string());
        tokens.push_str(&format!(
            "\"{}\":\n  refresh_token: \"{}\"\n  app_id: \"{}\"\n",
            pair.oaid,
            pair.refresh_token,
            esms_sim::zalo::DEFAULT_APP_ID
        ));
    }
    let path = dir.path().join("tokens.yaml");
    std::fs::write(&path, tokens).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // SAFETY: set before any thread of this process reads the environment
    // for these names; the child processes inherit them.
    unsafe {
        std::env::set_var("ZALO_OPENAPI_ENDPOINT", sim.zalo_endpoint());
        std::env::set_var("ZALO_OAUTH_ENDPOINT", sim.zalo_endpoint());
        std::env::set_var("ZALO_APP_SECRET", esms_sim::zalo::DEFAULT_APP_SECRET);
    }
    let status = std::process::Command::new(&binary)
        .arg("init")
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    println!(
        "oapkg {} — refresh benchmark: {oas} OAs, concurrency {concurrency} ({} cores)",
        env!("CARGO_PKG_VERSION"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let concurrency_arg = concurrency.to_string();
    let args = [
        "refresh",
        "--zalo-tokens",
        "tokens.yaml",
        "--concurrency",
        concurrency_arg.as_str(),
        "-q",
    ];
    for (label, expected) in [("exchange + read", 2 * oas), ("read (tokens reused)", oas)] {
        let before = sim.zalo_stats();
        let (wall, peak) = measure(&binary, dir.path(), &args);
        let after = sim.zalo_stats();
        let requests = (after.getoa - before.getoa) + (after.exchanges - before.exchanges);
        assert_eq!(requests as usize, expected, "{label}: requests");
        assert_eq!(
            after.getoa_ok - before.getoa_ok,
            oas as u64,
            "{label}: every OA read"
        );
        println!(
            "{label:<22} {:>8.0} ms  {:>6.1} MiB peak  {requests} requests ({:.0} requests/s)",
            ms(wall),
            peak as f64 / 1024.0,
            requests as f64 / wall.as_secs_f64().max(1e-9)
        );
    }
    let state = std::fs::read(dir.path().join("state/oapkg.state.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(
        doc["observations"].as_object().map_or(0, |o| o.len()),
        oas,
        "every OA observed"
    );
    assert_eq!(sim.zalo_stats().refresh_token_reuses, 0);
}
