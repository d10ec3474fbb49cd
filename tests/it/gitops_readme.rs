//! The README's GitOps section shows the plan comment a reviewer sees on a
//! fresh clone of `examples/gitops/state-in-repo`: this test makes it with
//! the example's own `ci/plan-comment.sh` and the binary under test, and
//! fails when the README's copy differs. `OAPKG_UPDATE_README=1` rewrites
//! the README's copy instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Run, TODAY};

const BEGIN: &str = "<!-- gitops-comment:begin (tests/it/gitops_readme.rs) -->\n";
const END: &str = "<!-- gitops-comment:end -->\n";
/// The pull request's head commit the example comment names.
const COMMIT: &str = "4f9c2e1b7a6d5c3e2f1a0b9c8d7e6f5a4b3c2d1e";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The comment as a quote: GitHub renders it as the reviewer sees it.
fn quoted(comment: &str) -> String {
    comment
        .lines()
        .map(|line| {
            if line.is_empty() {
                ">\n".to_owned()
            } else {
                format!("> {line}\n")
            }
        })
        .collect()
}

#[test]
fn the_readme_shows_the_plan_comment_the_example_makes() {
    if Command::new("jq").arg("--version").output().is_err() {
        crate::gitops_tools::unavailable::<()>("ci/plan-comment.sh needs jq");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    copy_dir(&root.join("examples/gitops/state-in-repo"), work.path());
    let bin = Path::new(env!("CARGO_BIN_EXE_oapkg")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let run = Run::from(
        Command::new("bash")
            .arg("ci/plan-comment.sh")
            .current_dir(work.path())
            .env("PATH", path)
            .env("OAPKG_COMMIT", COMMIT)
            .env("OAPKG_TODAY", TODAY)
            .env_remove("OAPKG_STATE")
            .env_remove("ESMS_API_KEY")
            .env_remove("ESMS_SECRET_KEY")
            .env_remove("GITHUB_ACTIONS")
            .output()
            .unwrap(),
    );
    run.code(0);
    let comment = std::fs::read_to_string(work.path().join("comment.md")).unwrap();
    assert!(comment.starts_with("**Plan: 2 to purchase"), "{comment}");
    let shown = quoted(&comment);

    let readme_path = root.join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let start = readme.find(BEGIN).expect("the README's comment block") + BEGIN.len();
    let end = start + readme[start..].find(END).expect("its end");
    if std::env::var("OAPKG_UPDATE_README").is_ok_and(|v| v == "1") {
        let updated = format!("{}{shown}{}", &readme[..start], &readme[end..]);
        std::fs::write(&readme_path, updated).unwrap();
        return;
    }
    assert!(
        readme[start..end] == shown,
        "the README's plan comment is out of date: run \
         `OAPKG_UPDATE_README=1 cargo test --test it gitops_readme`. It should be:\n{shown}"
    );
}
