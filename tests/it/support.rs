//! A small fluent helper so a test is a few lines: a temp dir, files in it,
//! the real binary run there with "today" pinned, assertions on the result.

use std::path::PathBuf;
use std::process::Output;

/// "Today" for every test unless a test says otherwise.
pub const TODAY: &str = "2026-11-26";

pub struct Env {
    dir: tempfile::TempDir,
    today: String,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
            today: TODAY.to_owned(),
        }
    }

    pub fn today(mut self, today: &str) -> Env {
        self.today = today.to_owned();
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating directories), returning self for chaining.
    pub fn file(&self, rel: &str, contents: impl AsRef<[u8]>) -> &Env {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, contents).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_oapkg"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("OAPKG_TODAY", &self.today)
            .env_remove("OAPKG_STATE")
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .env_remove("ESMS_API_KEY")
            .env_remove("ESMS_SECRET_KEY")
            .env_remove("ESMS_ENDPOINT")
            .env_remove("OAPKG_RETRY_MIN_DELAY_MS");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run oapkg"))
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(
            self.code, expected,
            "exit code {} (expected {expected})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A manifest of one document with the given package entries (YAML lines).
pub fn manifest(packages: &str) -> String {
    format!("apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n{packages}")
}
