//! Helpers shared by the benchmark examples (`bench`, `bench_apply`,
//! `bench_watch`, `bench_all`): each includes this module with
//! `#[path = "common/mod.rs"] mod common;` and uses the parts it needs.
//!
//! - [`plan`]: generated plan inputs and one timed process run (wall, peak RSS);
//! - [`apply`]: library applies against the in-process simulator, the
//!   journal's recording cost, the release binary end to end, a `curl` loop;
//! - [`watch`]: save → printed plan delays and idle cost of `oapkg watch`.
//!
//! Nothing here prints: the examples own their output.

pub mod apply;
pub mod plan;
pub mod watch;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The release binary, built if needed.
pub fn build_binary() -> PathBuf {
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

/// The median of `values` (the upper one for an even count); sorts them.
/// The runtime the benchmarks drive the library with: two workers, like
/// the machine's two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
