//! A small fluent helper so a test is a few lines: a temp dir, files in it,
//! the real binary run there with "today" pinned, assertions on the result;
//! and the simulator set-up shared by the tests that buy.
//!
//! A new test that buys, in a few lines:
//!
//! ```ignore
//! let all = pkgs(3001, 2);
//! let sim = start(account(&all));
//! let env = Env::with_state().with_sim(&sim);
//! write_manifest(&env, &all);
//! env.run(&["apply", "--auto-approve"]).code(0);
//! assert_eq!(sim.ledger().len(), 2);
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use esms_sim::{BlockingSimHandle, Call, Charge, SimConfig, SimControl, Simulator};
use serde_json::Value;

/// "Today" for every test unless a test says otherwise.
pub const TODAY: &str = "2026-11-26";
/// The keys the simulator accepts by default, given to oapkg by [`oapkg`]
/// and [`Env::with_sim`].
pub const API_KEY: &str = esms_sim::DEFAULT_API_KEY;
pub const SECRET_KEY: &str = esms_sim::DEFAULT_SECRET_KEY;
/// The default state path, relative to the test's directory.
pub const STATE: &str = "state/oapkg.state.json";

pub struct Env {
    dir: tempfile::TempDir,
    today: String,
    /// The simulator every command is pointed at, if any.
    sim: Option<SimControl>,
    /// The S3 state every command uses (`OAPKG_STATE` and the `AWS_*`
    /// variables), if any; otherwise the state is the local default file.
    s3: Option<S3State>,
}

/// Where the tests that run on both kinds of state keep it.
pub enum Backend<'a> {
    /// The local file [`STATE`].
    Local,
    /// A fresh prefix on this server.
    S3(&'a crate::s3::server::S3Server),
}

/// An `s3://` state and the server behind it.
#[derive(Clone, Debug)]
pub struct S3State {
    pub endpoint: String,
    pub location: String,
}

impl S3State {
    /// The prefix inside `bucket` (`s3://BUCKET/PREFIX` without
    /// `s3://BUCKET/`): where the state's objects are.
    pub fn prefix(&self, bucket: &str) -> String {
        self.location
            .strip_prefix(&format!("s3://{bucket}/"))
            .expect("the state is in that bucket")
            .to_owned()
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
            today: TODAY.to_owned(),
            sim: None,
            s3: None,
        }
    }

    /// Every later command keeps its state on `backend` (a fresh prefix
    /// of an S3 server, named after the temp dir).
    pub fn on(mut self, backend: &Backend<'_>) -> Env {
        if let Backend::S3(server) = backend {
            let prefix = self
                .dir
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
            self.s3 = Some(S3State {
                endpoint: server.endpoint.clone(),
                location: server.location(&format!("states/{prefix}")),
            });
        }
        self
    }

    /// Every later command uses the same state as `other` (another
    /// "machine": its own directory, one S3 state).
    pub fn sharing_state_of(mut self, other: &Env) -> Env {
        self.s3 = other.s3.clone();
        self
    }

    /// [`Env::with_state`] on `backend`.
    pub fn with_state_on(backend: &Backend<'_>) -> Env {
        let env = Env::new().on(backend);
        env.run(&["init"]).code(0);
        env
    }

    /// The S3 state, when the state is on S3.
    pub fn s3(&self) -> Option<&S3State> {
        self.s3.as_ref()
    }

    /// Every later command run in this Env talks to `sim`, with its keys
    /// and short retry delays (see [`oapkg`]).
    pub fn with_sim(mut self, sim: &SimControl) -> Env {
        self.sim = Some(sim.clone());
        self
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
            .env_remove("OAPKG_RETRY_MIN_DELAY_MS")
            .env_remove("OAPKG_ZALO_TOKENS")
            .env_remove("ZALO_APP_SECRET")
            .env_remove("ZALO_OPENAPI_ENDPOINT")
            .env_remove("ZALO_OAUTH_ENDPOINT")
            // Messages naming a lock holder would name the CI job.
            .env_remove("GITHUB_RUN_ID")
            .env_remove("CI_JOB_URL");
        if let Some(sim) = &self.sim {
            point_at(&mut cmd, sim);
        }
        if let Some(s3) = &self.s3 {
            cmd.env("OAPKG_STATE", &s3.location);
            crate::s3::server::configure(&mut cmd, &s3.endpoint);
        }
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

/// One package of a test manifest.
#[derive(Clone, Debug)]
pub struct Pkg {
    pub oaid: String,
    pub start: &'static str,
    pub tier: &'static str,
    pub package: u8,
    pub months: u8,
}

impl Pkg {
    pub fn new(
        oaid: impl Into<String>,
        start: &'static str,
        tier: &'static str,
        months: u8,
    ) -> Pkg {
        let package = match tier {
            "trial" => 1,
            "advanced" => 2,
            _ => 3,
        };
        Pkg {
            oaid: oaid.into(),
            start,
            tier,
            package,
            months,
        }
    }

    pub fn key(&self) -> String {
        format!("{}@{}", self.oaid, self.start)
    }

    pub fn yaml(&self) -> String {
        format!(
            "  - oaid: \"{}\"\n    name: OA {}\n    tier: {}\n    start: {}\n    duration: {}\n",
            self.oaid, self.oaid, self.tier, self.start, self.months
        )
    }
}

/// `n` packages on OAIDs `first`, `first + 1`, …, tiers and durations mixed.
pub fn pkgs(first: u64, n: usize) -> Vec<Pkg> {
    (0..n)
        .map(|i| {
            let (tier, months) = [("advanced", 12), ("premium", 6), ("trial", 1)][i % 3];
            Pkg::new((first + i as u64).to_string(), "2027-01-01", tier, months)
        })
        .collect()
}

pub fn write_manifest(env: &Env, pkgs: &[Pkg]) {
    let body: String = pkgs.iter().map(Pkg::yaml).collect();
    env.file("oapkg.yaml", manifest(&body));
}

/// A simulator account holding the OAs of `pkgs`.
pub fn account(pkgs: &[Pkg]) -> SimConfig {
    pkgs.iter()
        .fold(SimConfig::new(), |c, p| c.oaid(p.oaid.as_str()))
}

pub fn start(config: SimConfig) -> BlockingSimHandle {
    Simulator::spawn_blocking(config).expect("start the simulator")
}

/// `oapkg ARGS` pointed at the simulator with the right keys and short
/// retry delays (as every command of an [`Env::with_sim`]).
pub fn oapkg(env: &Env, sim: &SimControl, args: &[&str]) -> Command {
    let mut cmd = env.command(args);
    point_at(&mut cmd, sim);
    cmd
}

/// Points `cmd` at `sim`: its endpoint, the keys it accepts, short retry
/// delays.
pub fn point_at(cmd: &mut Command, sim: &SimControl) {
    cmd.env("ESMS_ENDPOINT", sim.endpoint())
        .env("ESMS_API_KEY", API_KEY)
        .env("ESMS_SECRET_KEY", SECRET_KEY)
        .env("OAPKG_RETRY_MIN_DELAY_MS", "10")
        // The simulator serves Zalo's OA API on the same port.
        .env("ZALO_OPENAPI_ENDPOINT", sim.zalo_endpoint())
        .env("ZALO_OAUTH_ENDPOINT", sim.zalo_endpoint());
}

pub fn run(env: &Env, sim: &SimControl, args: &[&str]) -> Run {
    Run::from(oapkg(env, sim, args).output().expect("run oapkg"))
}

pub fn apply(env: &Env, sim: &SimControl, extra: &[&str]) -> Run {
    let mut args = vec!["apply", "--auto-approve"];
    args.extend_from_slice(extra);
    run(env, sim, &args)
}

pub fn purchase_requests(sim: &SimControl) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.call == Call::Purchase)
        .count()
}

pub fn charges_by_key(ledger: &[Charge]) -> BTreeMap<String, Vec<Charge>> {
    let mut by_key: BTreeMap<String, Vec<Charge>> = BTreeMap::new();
    for charge in ledger {
        by_key
            .entry(format!("{}@{}", charge.oaid, charge.dateactive))
            .or_default()
            .push(charge.clone());
    }
    by_key
}

/// `state list --format json` (which replays the journal), by key.
pub fn recorded(env: &Env) -> BTreeMap<String, Value> {
    let listed = env.run(&["state", "list", "--format", "json"]);
    listed.code(0);
    listed
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| (r["key"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

pub fn last_line(run: &Run) -> &str {
    run.stdout.trim_end().lines().last().unwrap_or("")
}

/// Each of `all` charged exactly once and recorded `submitted` with its
/// ServicePreviewId; nothing else charged; `plan` has nothing to do.
pub fn assert_bought_once_each(env: &Env, sim: &SimControl, all: &[Pkg]) {
    let by_key = charges_by_key(&sim.ledger());
    let state = recorded(env);
    for p in all {
        let charges = by_key.get(&p.key()).map_or(0, Vec::len);
        assert_eq!(charges, 1, "{} charged {charges} times", p.key());
        let charge = &by_key[&p.key()][0];
        assert_eq!(state[&p.key()]["status"], "submitted");
        assert_eq!(
            state[&p.key()]["service_preview_id"],
            charge.service_preview_id.as_str()
        );
    }
    assert_eq!(by_key.len(), all.len());
    env.run(&["plan"]).code(0).stdout_has("No changes.");
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

    /// The process id (what a lock holder's label names).
    pub fn pid(&self) -> u32 {
        self.child.id()
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
