//! Tells the binary what it is: the Git commit it was built from and the
//! cargo profile (`src/build_info.rs` reads both). Outside a Git checkout
//! (a source archive) the commit comes from `OAPKG_GIT_COMMIT`, else it is
//! `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=OAPKG_GIT_COMMIT");
    let commit = std::env::var("OAPKG_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=OAPKG_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=OAPKG_BUILD_PROFILE={}", profile());
}

/// `git rev-parse HEAD`, shortened to 12 hex digits, and a rerun of this
/// script whenever HEAD or the branch it points at moves.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--git-path", "HEAD"])?;
    println!("cargo:rerun-if-changed={head}");
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(file) = git(&["rev-parse", "--git-path", &branch])
            && Path::new(&file).exists()
        {
            println!("cargo:rerun-if-changed={file}");
        }
        if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"])
            && Path::new(&packed).exists()
        {
            println!("cargo:rerun-if-changed={packed}");
        }
    }
    let commit = git(&["rev-parse", "HEAD"])?;
    Some(commit.chars().take(12).collect())
}

/// The cargo profile's name (`debug`, `release`, `dist`, …): the directory
/// `target/PROFILE/build/oapkg-…/out` is built in. Cargo's own `PROFILE`
/// variable says only `debug` or `release`.
fn profile() -> String {
    let out_dir = std::env::var("OUT_DIR").unwrap_or_default();
    Path::new(&out_dir)
        .ancestors()
        .nth(3)
        .and_then(|dir| dir.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
