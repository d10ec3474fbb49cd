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

    /// A temp dir holding an empty state made by `oapkg init` at the default
    /// path: what a test that applies starts from (apply refuses a missing
    /// state).
    pub fn with_state() -> Env {
        let env = Env::new();
        env.run(&["init"]).code(0);
        env
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

    /// `oapkg state import` of one package (plus `extra` flags): the way
    /// tests record a package without buying it.
    pub fn import(&self, oaid: &str, tier: &str, start: &str, months: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "state",
            "import",
            "--oaid",
            oaid,
            "--tier",
            tier,
            "--start",
            start,
            "--duration",
            months,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
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

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A long-running `oapkg` child (e.g. `watch`) whose output is read line
/// by line as it comes, so a test can wait for "a line matching X, within
/// N seconds" instead of sleeping. Stdout and stderr are consumed
/// separately, each in order. Killed if still running when dropped.
pub struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(Stream, String)>,
    /// Lines read but not yet consumed, per stream.
    stdout: std::collections::VecDeque<String>,
    stderr: std::collections::VecDeque<String>,
    /// Everything read so far, for failure messages.
    transcript: Vec<(Stream, String)>,
}

impl Env {
    /// Starts `oapkg ARGS` in the temp dir with piped output.
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_with(args, |_| {})
    }

    /// [`Env::spawn`] with extra set-up of the command (environment, ...).
    pub fn spawn_with(
        &self,
        args: &[&str],
        setup: impl FnOnce(&mut std::process::Command),
    ) -> Running {
        use std::process::Stdio;
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        setup(&mut cmd);
        let mut child = cmd.spawn().expect("start oapkg");
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        read_lines(stdout, Stream::Stdout, tx.clone());
        read_lines(stderr, Stream::Stderr, tx);
        Running {
            child,
            lines,
            stdout: Default::default(),
            stderr: Default::default(),
            transcript: Vec::new(),
        }
    }
}

fn read_lines(
    source: impl std::io::Read + Send + 'static,
    stream: Stream,
    tx: std::sync::mpsc::Sender<(Stream, String)>,
) {
    std::thread::spawn(move || {
        use std::io::BufRead;
        for text in std::io::BufReader::new(source).lines() {
            let Ok(text) = text else { break };
            if tx.send((stream, text)).is_err() {
                break;
            }
        }
    });
}

impl Running {
    /// The next line of `stream` (after those already consumed) for which
    /// `matches` holds, waiting at most `within`; panics with the whole
    /// transcript otherwise (or if the process ends first). Lines of
    /// `stream` before it are consumed; the other stream is left alone.
    #[track_caller]
    pub fn wait_for(
        &mut self,
        stream: Stream,
        what: &str,
        within: std::time::Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let queue = match stream {
                Stream::Stdout => &mut self.stdout,
                Stream::Stderr => &mut self.stderr,
            };
            while let Some(line) = queue.pop_front() {
                if matches(&line) {
                    return line;
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.take(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {stream:?} line {what} within {within:?}\n{}",
                        self.transcript()
                    )
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "the process ended ({status:?}) before a {stream:?} line {what}\n{}",
                        self.transcript()
                    )
                }
            }
        }
    }

    fn take(&mut self, (stream, text): (Stream, String)) {
        self.transcript.push((stream, text.clone()));
        match stream {
            Stream::Stdout => self.stdout.push_back(text),
            Stream::Stderr => self.stderr.push_back(text),
        }
    }

    /// Every line read so far, each prefixed with `out| ` or `err| `.
    pub fn transcript(&self) -> String {
        let mut out = String::from("--- transcript\n");
        for (stream, text) in &self.transcript {
            let tag = match stream {
                Stream::Stdout => "out",
                Stream::Stderr => "err",
            };
            out.push_str(&format!("{tag}| {text}\n"));
        }
        out
    }

    /// Every line read so far, without tags.
    pub fn lines(&self) -> impl Iterator<Item = &(Stream, String)> {
        self.transcript.iter()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
    }

    /// Waits at most `within` for the process to end; returns its exit code
    /// and reads the rest of its output.
    #[track_caller]
    pub fn wait_exit(&mut self, within: std::time::Duration) -> i32 {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The pipes are closed now: collect what is left.
                while let Ok(line) = self
                    .lines
                    .recv_timeout(std::time::Duration::from_millis(500))
                {
                    self.take(line);
                }
                return status.code().unwrap_or(-1);
            }
            if std::time::Instant::now() >= deadline {
                panic!("still running after {within:?}\n{}", self.transcript());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
