//! Hostile input: whatever the file holds, oapkg answers with exit 1 and a
//! message, never a panic, and quickly.

use std::time::{Duration, Instant};

use crate::support::{Env, Run};

/// Runs `validate -f FILE` on `contents` and checks the hostile-input promise.
#[track_caller]
fn refuses(contents: &[u8]) -> Run {
    let env = Env::new();
    env.file("input.yaml", contents);
    let started = Instant::now();
    let run = env.run(&["validate", "-f", "input.yaml"]);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "expected exit 1\n--- stderr\n{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "panic:\n{}", run.stderr);
    assert!(
        run.stderr.contains("input.yaml"),
        "the message names the file:\n{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    run
}

#[test]
fn empty_and_blank_files() {
    refuses(b"").stderr_has("holds no YAML document");
    refuses(b"\n\n# only a comment\n").stderr_has("holds no YAML document");
}

#[test]
fn binary_garbage() {
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    refuses(&bytes).stderr_has("not UTF-8");
    refuses(b"\x00\x01\x02apiVersion: oapkg/v1\x00");
}

#[test]
fn deeply_nested_collections() {
    let depth = 100_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    refuses(nested.as_bytes());
    let nested_map = format!("packages: {}1{}\n", "{a: ".repeat(5_000), "}".repeat(5_000));
    refuses(nested_map.as_bytes());
    let block: String = (0..3_000)
        .map(|i| format!("{}- \n", " ".repeat(i * 2)))
        .collect();
    refuses(block.as_bytes());
}

#[test]
fn alias_bombs() {
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (i, name) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().enumerate() {
        let prev = if i == 0 {
            "a".to_owned()
        } else {
            ["b", "c", "d", "e", "f", "g", "h"][i - 1].to_owned()
        };
        bomb.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 9].join(",")
        ));
    }
    refuses(format!("apiVersion: oapkg/v1\nkind: PackageSet\n{bomb}packages: *i\n").as_bytes());
    refuses(b"apiVersion: oapkg/v1\nkind: PackageSet\npackages: &p [*p]\n");
}

#[test]
fn a_200000_digit_oaid() {
    let digits = "7".repeat(200_000);
    for oaid in [digits.clone(), format!("\"{digits}\"")] {
        let yaml = format!(
            "apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - oaid: {oaid}\n    tier: trial\n    start: 2026-12-01\n    duration: 1\n"
        );
        let run = refuses(yaml.as_bytes());
        run.stderr_has("input.yaml:4:11: bad OAID")
            .stderr_has("200000-digit");
        assert!(
            run.stderr.len() < 2_000,
            "the message does not repeat the input: {} bytes",
            run.stderr.len()
        );
    }
}

#[test]
fn every_file_of_the_yaml_test_suite() {
    let corpus =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/yaml-test-suite");
    if !corpus.is_dir() {
        eprintln!("skipped: {} is not present", corpus.display());
        return;
    }
    let mut files: Vec<_> = ["valid", "error"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(corpus.join(sub)).into_iter().flatten())
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(
        files.len() > 300,
        "expected the whole corpus, found {} files",
        files.len()
    );
    let env = Env::new();
    let mut slowest = Duration::ZERO;
    for path in &files {
        let started = Instant::now();
        let run = env.run(&["validate", "-f", path.to_str().unwrap()]);
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            run.code,
            1,
            "{}: expected exit 1\n{}",
            path.display(),
            run.stderr
        );
        assert!(
            !run.stderr.contains("panicked"),
            "{}: panic\n{}",
            path.display(),
            run.stderr
        );
        assert!(
            run.stderr
                .contains(path.file_name().unwrap().to_str().unwrap()),
            "{}: message names the file\n{}",
            path.display(),
            run.stderr
        );
    }
    assert!(
        slowest < Duration::from_secs(5),
        "slowest file took {slowest:?}"
    );
    eprintln!(
        "{} corpus files refused cleanly; slowest {slowest:?}",
        files.len()
    );
}
