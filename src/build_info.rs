//! What this binary is: its version, the Git commit it was built from and the
//! cargo profile it was built with (`build.rs` finds the last two).

/// The package version, as in `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The Git commit (12 hex digits), or `unknown` when built outside a checkout
/// without `OAPKG_GIT_COMMIT`.
pub const COMMIT: &str = env!("OAPKG_GIT_COMMIT");

/// The cargo profile: `debug`, `release`, `dist`, ….
pub const PROFILE: &str = env!("OAPKG_BUILD_PROFILE");

/// `0.1.0 (commit 1234567890ab, dist)`, as `--version` prints it.
pub fn long_version() -> String {
    format!("{VERSION} (commit {COMMIT}, {PROFILE})")
}
