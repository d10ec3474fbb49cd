//! The real tools the GitOps examples are checked with, installed by the
//! project's own `tests/gitops/setup.sh` under `target/gitops-tools` (once,
//! under a file lock): `actionlint` on every GitHub workflow in
//! `examples/`, and `gitlab-ci-local` (see `gitops_gitlab.rs`). Where a tool
//! cannot be installed the test says why and skips; with `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/gitops-tools`, set up; `None` (after saying why) where it cannot
/// be outside CI.
pub fn tools() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let dir = target.join("gitops-tools");
    for (tool, why) in [
        ("python3", "python3 is not installed"),
        ("npm", "npm (node) is not installed"),
    ] {
        if Command::new(tool).arg("--version").output().is_err() {
            return unavailable(why);
        }
    }
    std::fs::create_dir_all(&target).expect("target dir");
    let lock = std::fs::File::create(target.join("gitops-tools.lock")).expect("lock file");
    lock.lock().expect("lock the tools");
    let output = Command::new("sh")
        .arg(root.join("tests/gitops/setup.sh"))
        .arg(&dir)
        .output()
        .expect("run tests/gitops/setup.sh");
    drop(lock);
    if !output.status.success() {
        return unavailable(&format!(
            "tests/gitops/setup.sh failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Some(dir)
}

/// Skips (prints why), or fails on CI where the tools must run.
pub fn unavailable<T>(why: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the GitOps tool tests must run on CI, but: {why}");
    }
    eprintln!("SKIPPED: GitOps tool test: {why}");
    None
}

fn workflows(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            workflows(&path, found);
        } else if path
            .parent()
            .is_some_and(|p| p.ends_with(".github/workflows"))
            && path.extension().is_some_and(|e| e == "yml" || e == "yaml")
        {
            found.push(path);
        }
    }
}

#[test]
fn actionlint_passes_every_github_workflow_in_examples() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    workflows(&root.join("examples"), &mut found);
    found.sort();
    assert!(found.len() >= 3, "the workflows: {found:?}");
    let Some(tools) = tools() else { return };
    // ShellCheck and pyflakes are not installed: their checks are off, so
    // the result does not depend on what else the machine has.
    let output = Command::new(tools.join("venv/bin/actionlint"))
        .args(["-shellcheck=", "-pyflakes=", "-no-color"])
        .args(&found)
        .current_dir(&root)
        .output()
        .expect("run actionlint");
    assert!(
        output.status.success(),
        "actionlint on {found:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // It really reads them: a broken copy fails.
    let broken = tempfile::tempdir().unwrap();
    let wf = broken.path().join(".github/workflows");
    std::fs::create_dir_all(&wf).unwrap();
    let text = std::fs::read_to_string(&found[0]).unwrap();
    std::fs::write(wf.join("broken.yml"), text.replace("runs-on:", "runs-onn:")).unwrap();
    let output = Command::new(tools.join("venv/bin/actionlint"))
        .args(["-shellcheck=", "-pyflakes=", "-no-color"])
        .arg(wf.join("broken.yml"))
        .output()
        .expect("run actionlint");
    assert!(
        !output.status.success(),
        "actionlint accepted a broken workflow"
    );
}
