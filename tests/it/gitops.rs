//! GitOps: the example CI and hook files under `examples/gitops/`
//! run for real, and the state-in-repository flow followed with real `git`.
//!
//! The CI files are parsed, every shell step is extracted and run in order
//! with `bash` in a copy of its example directory checked out from a bare
//! Git repository standing in for GitHub or GitLab, `oapkg` on `PATH` being
//! the binary under test and eSMS being the simulator. The state push
//! (`ci/push-state.sh`) runs for real against that repository. Only steps
//! that need the outside world (installing, GitHub's `gh`, `curl`, `apk`,
//! `uses:` actions) are skipped, and the test names each one it skipped.
//! The pipelines that keep the state on S3 run the same way against a moto
//! server holding the example's own bucket (`example-oapkg-state`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use esms_sim::{BlockingSimHandle, Charge, SimConfig, SimControl, Simulator};
use serde::Deserialize;
use serde_json::Value;

use crate::s3::server::{self, S3Server};
use crate::support::{API_KEY, Run, SECRET_KEY, TODAY};

/// The OAs the example manifests declare.
const EXAMPLE_OAIDS: [&str; 2] = ["4097311281936189049", "745830328927467685"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> PathBuf {
    repo_root().join("examples/gitops")
}

/// `PATH` with the `oapkg` under test first.
fn path_with_oapkg() -> std::ffi::OsString {
    let bin = Path::new(env!("CARGO_BIN_EXE_oapkg")).parent().unwrap();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&rest)))
        .unwrap()
}

fn simulator(extra_oaids: &[&str]) -> BlockingSimHandle {
    let config = EXAMPLE_OAIDS
        .iter()
        .chain(extra_oaids)
        .fold(SimConfig::new().keys(API_KEY, SECRET_KEY), |c, oaid| {
            c.oaid(*oaid)
        });
    Simulator::spawn_blocking(config).expect("start the simulator")
}

/// Every charge by key (`OAID@START`).
fn charges(sim: &SimControl) -> BTreeMap<String, Vec<Charge>> {
    let mut by_key: BTreeMap<String, Vec<Charge>> = BTreeMap::new();
    for charge in sim.ledger() {
        by_key
            .entry(format!("{}@{}", charge.oaid, charge.dateactive))
            .or_default()
            .push(charge);
    }
    by_key
}

#[track_caller]
fn assert_charged_once(sim: &SimControl, keys: &[&str]) {
    let charges = charges(sim);
    let charged: Vec<&str> = charges.keys().map(String::as_str).collect();
    assert_eq!(charged, keys, "charged keys");
    for (key, list) in &charges {
        assert_eq!(list.len(), 1, "{key} charged {} times", list.len());
    }
}

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

// ---------------------------------------------------------------------------
// The CI files, parsed in file order.

/// A YAML mapping with its keys in file order (jobs run in the order written).
struct Ordered<V>(Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct GithubWorkflow {
    #[serde(default)]
    env: Ordered<String>,
    jobs: Ordered<GithubJob>,
}

#[derive(Deserialize)]
struct GithubJob {
    #[serde(default)]
    env: Ordered<String>,
    steps: Vec<GithubStep>,
}

#[derive(Deserialize)]
struct GithubStep {
    name: Option<String>,
    #[serde(rename = "if")]
    condition: Option<String>,
    uses: Option<String>,
    run: Option<String>,
    #[serde(default)]
    env: Ordered<String>,
}

#[derive(Deserialize)]
struct PreCommitConfig {
    repos: Vec<PreCommitRepo>,
}

#[derive(Deserialize)]
struct PreCommitRepo {
    hooks: Vec<PreCommitHook>,
}

#[derive(Deserialize)]
struct PreCommitHook {
    id: String,
    entry: String,
    #[serde(default)]
    args: Vec<String>,
}

/// One step of a CI file: a shell script to run, or a reason it is skipped.
struct Step {
    label: String,
    script: Option<String>,
    /// The step's environment, `${{ secrets.X }}` not yet resolved.
    env: Vec<(String, String)>,
    /// When it runs: GitHub's `if: always()` or `failure()` (GitLab has no
    /// such step: after a failed entry, later entries never run).
    when: When,
}

#[derive(Clone, Copy, PartialEq)]
enum When {
    /// Only while every earlier step succeeded (the default).
    Success,
    /// Whatever happened before.
    Always,
    /// Only after an earlier step failed.
    Failure,
}

impl When {
    fn of(condition: Option<&str>) -> When {
        match condition {
            Some(c) if c.contains("always()") => When::Always,
            Some(c) if c.contains("failure()") => When::Failure,
            _ => When::Success,
        }
    }

    fn runs(self, failed: bool) -> bool {
        match self {
            When::Success => !failed,
            When::Always => true,
            When::Failure => failed,
        }
    }
}

impl Step {
    fn clone_step(&self) -> Step {
        Step {
            label: self.label.clone(),
            script: self.script.clone(),
            env: self.env.clone(),
            when: self.when,
        }
    }

    fn run(label: String, script: &str, env: Vec<(String, String)>) -> Step {
        Step {
            label,
            script: Some(script.to_owned()),
            env,
            when: When::Success,
        }
    }
}

/// Why a script cannot run in a test, if it cannot: it needs the outside
/// world (a registry, the GitHub API, a URL, a remote).
fn needs_outside_world(script: &str) -> Option<&'static str> {
    let words: Vec<&str> = script
        .split(|c: char| c.is_whitespace() || "();|&$\"'".contains(c))
        .collect();
    if script.contains("cargo install") {
        Some("cargo install")
    } else if script.contains("apk add") {
        Some("apk add")
    } else if script.contains("git push") || script.contains("git commit") {
        Some("git commit/push")
    } else if words.contains(&"gh") {
        Some("gh")
    } else if words.contains(&"curl") {
        Some("curl")
    } else {
        None
    }
}

fn github_steps(yaml: &str) -> Vec<Step> {
    let workflow: GithubWorkflow = serde_saphyr::from_str(yaml).expect("a GitHub workflow");
    let mut steps = Vec::new();
    for (job_name, job) in workflow.jobs.0 {
        for (i, step) in job.steps.into_iter().enumerate() {
            let name = step
                .name
                .clone()
                .or_else(|| step.uses.clone())
                .unwrap_or_else(|| format!("step {i}"));
            let label = format!("job {job_name}: {name}");
            let env: Vec<_> = workflow
                .env
                .0
                .iter()
                .chain(&job.env.0)
                .chain(&step.env.0)
                .cloned()
                .collect();
            let when = When::of(step.condition.as_deref());
            match (&step.uses, &step.run) {
                (Some(uses), _) => steps.push(Step {
                    label: match &step.name {
                        Some(_) => format!("{label} (uses: {uses})"),
                        None => format!("job {job_name}: uses: {uses}"),
                    },
                    script: None,
                    env,
                    when,
                }),
                (None, Some(run)) => steps.push(Step {
                    when,
                    ..Step::run(label, run, env)
                }),
                (None, None) => panic!("{label}: neither `uses` nor `run`"),
            }
        }
    }
    steps
}

/// GitLab jobs in stage order (file order within a stage), each job's
/// `before_script` (or the default one), `script` and `after_script`
/// entries in turn.
fn gitlab_steps(yaml: &str) -> Vec<Step> {
    const RESERVED: [&str; 10] = [
        "stages",
        "variables",
        "default",
        "include",
        "workflow",
        "image",
        "services",
        "before_script",
        "after_script",
        "cache",
    ];
    let root: Ordered<Value> = serde_saphyr::from_str(yaml).expect("a GitLab CI file");
    let get = |key: &str| root.0.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let stages: Vec<&str> = get("stages")
        .and_then(Value::as_array)
        .expect("stages")
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let pairs = |vars: Option<Value>| -> Vec<(String, String)> {
        vars.as_ref()
            .and_then(Value::as_object)
            .map(|vars| {
                vars.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let variables = pairs(get("variables").cloned());
    let default = get("default").cloned().unwrap_or(Value::Null);
    let mut jobs: Vec<(&String, &Value)> = root
        .0
        .iter()
        .filter(|(name, _)| !RESERVED.contains(&name.as_str()) && !name.starts_with('.'))
        .map(|(name, job)| (name, job))
        .collect();
    let stage_of = |job: &Value| {
        let stage = job["stage"].as_str().unwrap_or("test");
        stages
            .iter()
            .position(|s| *s == stage)
            .expect("a declared stage")
    };
    jobs.sort_by_key(|(_, job)| stage_of(job));
    let mut steps = Vec::new();
    // `extends: .hidden` (one name or a list): the job's own keys win.
    let extended = |job: &Value, part: &str| -> Option<Value> {
        let parents = match &job["extends"] {
            Value::String(one) => vec![one.clone()],
            Value::Array(many) => many
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        parents.iter().rev().find_map(|parent| {
            let (_, template) = root
                .0
                .iter()
                .find(|(k, _)| k == parent)
                .expect("an extended job");
            template.get(part).cloned()
        })
    };
    for (name, job) in jobs {
        // Global variables, then the template's, then the job's own: later
        // ones win. A `$NAME` value is expanded when the step runs.
        let env: Vec<(String, String)> = variables
            .iter()
            .cloned()
            .chain(pairs(extended(job, "variables")))
            .chain(pairs(job.get("variables").cloned()))
            .collect();
        for part in ["before_script", "script", "after_script"] {
            let entries = job
                .get(part)
                .cloned()
                .or_else(|| extended(job, part))
                .or_else(|| default.get(part).cloned());
            let Some(entries) = entries else { continue };
            for (i, entry) in entries.as_array().expect("a list").iter().enumerate() {
                let label = format!("job {name}: {part}[{i}]");
                let script = entry.as_str().expect("a string");
                steps.push(Step::run(label, script, env.clone()));
            }
        }
    }
    steps
}

fn hook_steps(hooks: Vec<PreCommitHook>, extra_args: &[String]) -> Vec<Step> {
    hooks
        .into_iter()
        .map(|hook| {
            let mut script = hook.entry;
            for arg in hook.args.iter().chain(extra_args) {
                script.push(' ');
                script.push_str(arg);
            }
            Step::run(format!("hook {}", hook.id), &script, Vec::new())
        })
        .collect()
}

/// What running a CI file's steps did.
struct Ran {
    /// Labels of the skipped steps, with the reason.
    skipped: Vec<String>,
    /// The `oapkg` commands run (the scripts that call it).
    oapkg_scripts: usize,
    /// `$GITHUB_OUTPUT`'s content afterwards.
    github_output: String,
    /// Every step that ran, in order, with what it printed.
    log: Vec<(String, Run)>,
    /// The first step that failed; after it, only the steps marked to run
    /// after a failure ran.
    failed: Option<String>,
}

impl Ran {
    /// Every step's output, for failure messages.
    fn transcript(&self) -> String {
        self.log
            .iter()
            .map(|(label, run)| {
                format!(
                    "--- {label} (exit {})\n{}{}",
                    run.code, run.stdout, run.stderr
                )
            })
            .collect()
    }
}

/// The environment a CI runner gives a step (beyond the step's own): the
/// secrets that resolve `${{ secrets.NAME }}` in GitHub `env:` entries, and
/// the ambient variables (GitLab's CI/CD variables, `GITHUB_SHA`, AWS
/// settings, and the like). The S3 pipelines run with the same runner and
/// an S3 server's `AWS_*` here.
#[derive(Default)]
struct RunnerEnv<'a> {
    secrets: Vec<(&'a str, String)>,
    /// GitHub's configuration variables, for `${{ vars.NAME }}` (empty
    /// when not set, as on GitHub).
    vars: Vec<(&'a str, String)>,
    ambient: Vec<(String, String)>,
}

/// Runs `steps` in order in `dir`, as a CI runner would, and panics on the
/// first step that fails.
fn run_steps(file: &str, steps: Vec<Step>, dir: &Path, sim: &SimControl, env: &RunnerEnv) -> Ran {
    let ran = try_run_steps(file, steps, dir, sim, env);
    if let Some(label) = &ran.failed {
        panic!(
            "{file}: {label} failed\n{}\n--- script outputs end",
            ran.transcript()
        );
    }
    ran
}

/// Runs `steps` in order in `dir`, as a CI runner would: `bash -e` (with
/// pipefail, as GitHub's default shell), `oapkg` on `PATH`, the simulator
/// as eSMS, `$GITHUB_OUTPUT` and `$GITHUB_ENV` as on GitHub. After a step
/// fails, only the steps marked to run after a failure run.
fn try_run_steps(
    file: &str,
    steps: Vec<Step>,
    dir: &Path,
    sim: &SimControl,
    env: &RunnerEnv,
) -> Ran {
    let output = dir.join(".github-output");
    let github_env = dir.join(".github-env");
    std::fs::write(&output, "").unwrap();
    std::fs::write(&github_env, "").unwrap();
    let mut ran = Ran {
        skipped: Vec::new(),
        oapkg_scripts: 0,
        github_output: String::new(),
        log: Vec::new(),
        failed: None,
    };
    for step in steps {
        if !step.when.runs(ran.failed.is_some()) {
            continue;
        }
        let Some(script) = step.script else {
            ran.skipped.push(step.label);
            continue;
        };
        if let Some(reason) = needs_outside_world(&script) {
            ran.skipped.push(format!("{} ({reason})", step.label));
            continue;
        }
        assert!(
            !script.contains("${{"),
            "{file}: {}: an expression in a script the test cannot resolve:\n{script}",
            step.label
        );
        let mut cmd = Command::new("bash");
        cmd.args([
            "--noprofile",
            "--norc",
            "-e",
            "-o",
            "pipefail",
            "-c",
            &script,
        ])
        .current_dir(dir)
        .env("PATH", path_with_oapkg())
        .env("CI", "true")
        .env("GITHUB_OUTPUT", &output)
        .env("GITHUB_ENV", &github_env)
        .env("OAPKG_TODAY", TODAY)
        .env("ESMS_ENDPOINT", sim.endpoint().as_str())
        .env("OAPKG_RETRY_MIN_DELAY_MS", "10")
        .env("OAPKG_PUSH_PAUSE", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("OAPKG_STATE")
        .env_remove("ESMS_API_KEY")
        .env_remove("ESMS_SECRET_KEY")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
        // Nothing of this machine's S3 settings: a step sees only its own.
        for name in [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ] {
            cmd.env_remove(name);
        }
        cmd.envs(env.ambient.iter().map(|(k, v)| (k, v)));
        // What earlier steps exported through $GITHUB_ENV.
        for line in std::fs::read_to_string(&github_env).unwrap().lines() {
            if let Some((name, value)) = line.split_once('=') {
                cmd.env(name, value);
            }
        }
        for (name, value) in &step.env {
            let expression = value.trim();
            let context = |prefix: &str| {
                expression
                    .strip_prefix(prefix)
                    .and_then(|v| v.strip_suffix("}}"))
                    .map(str::trim)
            };
            let value = match (context("${{ secrets."), context("${{ vars.")) {
                (Some(secret), _) => {
                    let found = env.secrets.iter().find(|(n, _)| *n == secret);
                    match found {
                        Some((_, value)) => value.clone(),
                        None => panic!("{file}: {}: unknown secret {secret}", step.label),
                    }
                }
                (None, Some(var)) => env
                    .vars
                    .iter()
                    .find(|(n, _)| *n == var)
                    .map(|(_, value)| value.clone())
                    .unwrap_or_default(),
                // GitHub's context, as the runner gives it.
                (None, None) if expression.starts_with("${{ github.") => {
                    let name = match expression {
                        "${{ github.event.pull_request.head.sha }}" => "GITHUB_HEAD_SHA",
                        "${{ github.sha }}" => "GITHUB_SHA",
                        other => panic!("{file}: {}: unknown context {other}", step.label),
                    };
                    env.ambient
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                }
                // GitLab expands a variable naming another (`$NAME`).
                (None, None) => match value.strip_prefix('$') {
                    Some(var) if var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                        let found = env.ambient.iter().find(|(n, _)| n == var);
                        match found {
                            Some((_, value)) => value.clone(),
                            None => panic!("{file}: {}: unknown variable {var}", step.label),
                        }
                    }
                    _ => value.clone(),
                },
            };
            cmd.env(name, value);
        }
        let run = Run::from(cmd.output().expect("run bash"));
        if run.code != 0 && ran.failed.is_none() {
            ran.failed = Some(step.label.clone());
        }
        if script.contains("oapkg ") {
            ran.oapkg_scripts += 1;
        }
        ran.log.push((step.label, run));
    }
    ran.github_output = std::fs::read_to_string(&output).unwrap();
    ran
}

/// Every YAML file under `examples/gitops/` that is not a manifest.
fn ci_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().unwrap() != "packages" {
                ci_files(&path, found);
            }
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        ) {
            found.push(path);
        }
    }
}

/// The steps of a CI file (`rel` is its path in the repository), in the
/// order a runner would take them.
fn ci_steps(rel: &str, yaml: &str) -> Vec<Step> {
    let name = rel.rsplit('/').next().unwrap();
    if rel.contains("/.github/workflows/") {
        github_steps(yaml)
    } else if name == ".gitlab-ci.yml" {
        gitlab_steps(yaml)
    } else if name == ".pre-commit-config.yaml" {
        let config: PreCommitConfig = serde_saphyr::from_str(yaml).unwrap();
        hook_steps(
            config.repos.into_iter().flat_map(|r| r.hooks).collect(),
            &[],
        )
    } else if name == ".pre-commit-hooks.yaml" {
        // Its comment shows the `args` a using repository passes.
        let args = r#"args: ["-f", "packages"]"#;
        assert!(yaml.contains(args), "{rel} documents {args}");
        let hooks: Vec<PreCommitHook> = serde_saphyr::from_str(yaml).unwrap();
        hook_steps(hooks, &["-f".to_owned(), "packages".to_owned()])
    } else {
        panic!("{rel}: a YAML file of no known CI kind");
    }
}

/// The example pipelines that keep the state on S3: they run against an S3
/// server (see [`Example`]).
fn uses_s3_state(rel: &str) -> bool {
    rel.starts_with("examples/gitops/s3-state/")
}

const GITLAB_HOST: &str = "gitlab.example.com";
const GITLAB_PROJECT: &str = "team/packages";
const PUSH_TOKEN: &str = "push-token";

/// A CI checkout: `dir` (a copy of an example) as a Git repository on
/// `main`, cloned from a bare repository standing in for GitHub or GitLab.
struct Checkout {
    remote: tempfile::TempDir,
}

impl Checkout {
    #[track_caller]
    fn new(dir: &Path) -> Checkout {
        let remote = tempfile::tempdir().unwrap();
        git_in(remote.path(), &["init", "-q", "--bare", "-b", "main"]);
        git_in(dir, &["init", "-q", "-b", "main"]);
        git_in(dir, &["add", "."]);
        git_in(dir, &["commit", "-q", "-m", "Manifests and an empty state"]);
        let url = remote.path().to_string_lossy().into_owned();
        git_in(dir, &["remote", "add", "origin", &url]);
        git_in(dir, &["push", "-q", "origin", "main"]);
        Checkout { remote }
    }

    fn url(&self) -> String {
        self.remote.path().to_string_lossy().into_owned()
    }

    /// What GitHub's or GitLab's runner provides: the GitLab push URL the
    /// example builds (token and all) leads to the bare repository.
    fn runner_env(&self, dir: &Path) -> RunnerEnv<'static> {
        let head = git_in(dir, &["rev-parse", "HEAD"]).trim().to_owned();
        let gitlab_url = format!("https://oauth2:{PUSH_TOKEN}@{GITLAB_HOST}/{GITLAB_PROJECT}.git");
        let ambient = [
            ("GITHUB_SHA", head.as_str()),
            // The merged pull request, as the apply job's fetch step (`gh`,
            // skipped here) finds it: its head is this commit.
            ("GITHUB_HEAD_SHA", &head),
            ("OAPKG_REVIEWED_HEAD", &head),
            ("OAPKG_REVIEW_REF", "#7"),
            ("CI_COMMIT_SHA", &head),
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_DEFAULT_BRANCH", "main"),
            ("CI_SERVER_HOST", GITLAB_HOST),
            ("CI_PROJECT_PATH", GITLAB_PROJECT),
            ("STATE_PUSH_TOKEN", PUSH_TOKEN),
            // GitLab hands CI/CD variables to every job as environment.
            ("ESMS_API_KEY", API_KEY),
            ("ESMS_SECRET_KEY", SECRET_KEY),
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", &format!("url.{}.insteadOf", self.url())),
            ("GIT_CONFIG_VALUE_0", &gitlab_url),
        ];
        RunnerEnv {
            secrets: vec![
                ("ESMS_API_KEY", API_KEY.to_owned()),
                ("ESMS_SECRET_KEY", SECRET_KEY.to_owned()),
                // The keys a pull request's plan checks the account with.
                ("ESMS_CHECK_API_KEY", API_KEY.to_owned()),
                ("ESMS_CHECK_SECRET_KEY", SECRET_KEY.to_owned()),
            ],
            vars: vec![("OAPKG_APPROVERS", "alice".to_owned())],
            ambient: ambient
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// A file on the remote's `main`.
    fn file_on_main(&self, path: &str) -> String {
        git_in(self.remote.path(), &["show", &format!("main:{path}")])
    }

    /// Someone else's change pushed to the remote's `main` meanwhile: `change`
    /// runs in a fresh clone, whose changes are then committed and pushed.
    fn push_meanwhile(&self, message: &str, change: impl FnOnce(&Path)) {
        let clone = tempfile::tempdir().unwrap();
        git_in(clone.path(), &["clone", "-q", &self.url(), "."]);
        change(clone.path());
        git_in(clone.path(), &["add", "-A"]);
        git_in(clone.path(), &["commit", "-q", "-m", message]);
        git_in(clone.path(), &["push", "-q", "origin", "main"]);
    }
}

/// `git ARGS` in `dir`, isolated from the user's configuration.
#[track_caller]
fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Reviewer")
        .env("GIT_AUTHOR_EMAIL", "reviewer@example.com")
        .env("GIT_COMMITTER_NAME", "Reviewer")
        .env("GIT_COMMITTER_EMAIL", "reviewer@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    let run = Run::from(out);
    assert_eq!(
        run.code,
        0,
        "git {args:?} in {} failed\n{}\n{}",
        dir.display(),
        run.stdout,
        run.stderr
    );
    run.stdout
}

fn rel_path(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The merged merge request's or pull request's labels (and its
/// reference), as the pipelines' API steps (skipped here) leave them in
/// `dir`.
fn write_labels(dir: &Path, labels: &[&str]) {
    let text: String = labels.iter().map(|l| format!("{l}\n")).collect();
    for file in ["pr-labels.txt", "mr-labels.txt"] {
        std::fs::write(dir.join(file), &text).unwrap();
    }
    std::fs::write(dir.join("mr-ref.txt"), "!7\n").unwrap();
    write_comments(dir, &[]);
}

/// The merged pull request's comments, as the apply job's fetch step
/// (skipped here) leaves them: `approvals.json`.
fn write_comments(dir: &Path, comments: &[(&str, &str)]) {
    let list: Vec<Value> = comments
        .iter()
        .map(|(author, body)| serde_json::json!({"author": author, "body": body}))
        .collect();
    std::fs::write(
        dir.join("approvals.json"),
        serde_json::to_vec(&list).unwrap(),
    )
    .unwrap();
}

/// `oapkg state list --format json` keys of the state at `state` (a file
/// under `dir`).
fn recorded_keys(dir: &Path, state: &str) -> Vec<String> {
    recorded_keys_on(dir, state, None)
}

/// [`recorded_keys`] of a state on `server`, when given.
fn recorded_keys_on(dir: &Path, state: &str, server: Option<&S3Server>) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oapkg"));
    cmd.args(["state", "list", "--format", "json", "--state", state])
        .current_dir(dir)
        .env("OAPKG_TODAY", TODAY)
        .env_remove("OAPKG_STATE");
    if let Some(server) = server {
        server.configure(&mut cmd);
    }
    let run = Run::from(cmd.output().unwrap());
    run.code(0);
    run.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap().to_owned())
        .collect()
}

const EXAMPLE_KEYS: [&str; 2] = [
    "4097311281936189049@2026-12-01",
    "745830328927467685@2027-01-01",
];

/// The pipelines whose jobs call the GitLab API from their scripts
/// (`ci/gitlab-*.sh`): `gitops_gitlab.rs` runs the state-in-repo one with
/// gitlab-ci-local against a stub of the GitLab API; not step by step here.
const GITLAB_RUN_FOR_REAL: [&str; 2] = [
    "examples/gitops/state-in-repo/.gitlab-ci.yml",
    "examples/gitops/s3-state/.gitlab-ci.yml",
];

#[test]
fn every_example_ci_and_hook_file_runs_the_oapkg_commands_it_calls() {
    if git_missing() {
        return;
    }
    let mut files = Vec::new();
    ci_files(&examples(), &mut files);
    files.push(repo_root().join(".pre-commit-hooks.yaml"));
    files.sort();

    let mut skipped = Vec::new();
    let mut exercised = Vec::new();
    let mut ran_files = Vec::new();
    for path in &files {
        let rel = rel_path(path);
        let yaml = std::fs::read_to_string(path).unwrap();
        // Valid YAML, whatever the tool reading it.
        serde_saphyr::from_str::<Value>(&yaml).unwrap_or_else(|e| panic!("{rel}: {e}"));
        if GITLAB_RUN_FOR_REAL.contains(&rel.as_str()) {
            // Run for real, with its API calls, by gitlab-ci-local.
            continue;
        }
        let Some(example) = Example::new(&rel) else {
            continue;
        };
        ran_files.push(rel.clone());
        let work = &example.work;
        let sim = example.sim();
        let steps = example.all_steps();
        let applies = steps.iter().any(|s| {
            s.script
                .as_deref()
                .is_some_and(|s| s.contains("oapkg apply") || s.contains("ci/apply-reviewed.sh"))
        });
        let ran = run_steps(&rel, steps, work.path(), &sim, &example.runner_env());
        assert!(ran.oapkg_scripts > 0, "{rel}: no oapkg command was run");
        exercised.push(format!("{rel}: {} oapkg step(s)", ran.oapkg_scripts));
        skipped.extend(ran.skipped.iter().map(|s| format!("{rel}: {s}")));

        // A workflow that plans to markdown left the comment to post.
        let comment = std::fs::read_to_string(work.path().join("plan.md"))
            .or_else(|_| std::fs::read_to_string(work.path().join("comment.md")));
        if let Ok(comment) = comment {
            assert!(
                comment.starts_with("**Plan: 2 to purchase,"),
                "{rel}: the summary comes first:\n{comment}"
            );
            // The marker names the state the comment is about.
            assert!(comment.contains("<!-- oapkg-plan: "), "{rel}: the marker");
            assert!(
                !comment.contains("oapkg:allow-"),
                "{rel}: nothing to approve:\n{comment}"
            );
        }
        if rel.ends_with("/.github/workflows/oapkg.yml") {
            // The comment the job keeps up to date: the plan, its checksum.
            let comment = std::fs::read_to_string(work.path().join("comment.md")).unwrap();
            assert!(comment.starts_with("**Plan: 2 to purchase,"), "{comment}");
            assert!(comment.contains("Plan checksum `sha256:"), "{comment}");
            let state = if example.server.is_some() {
                EXAMPLE_S3_STATE
            } else {
                "state/oapkg.state.json"
            };
            assert!(comment.contains(&format!("<!-- oapkg-plan: {state} -->")));
            assert!(
                !comment.contains("oapkg-approve"),
                "nothing to approve: {comment}"
            );
        }
        if applies {
            // The apply job bought what the plan showed, once each.
            assert_charged_once(&sim, &EXAMPLE_KEYS);
            let mut again = Command::new(env!("CARGO_BIN_EXE_oapkg"));
            again
                .args(["plan", "-f", "packages", "--detailed-exitcode"])
                .current_dir(work.path())
                .env("OAPKG_TODAY", TODAY)
                .env_remove("OAPKG_STATE");
            if let Some(server) = &example.server {
                server.configure(&mut again);
                again.env("OAPKG_STATE", EXAMPLE_S3_STATE);
            }
            Run::from(again.output().unwrap())
                .code(0)
                .stdout_has("No changes.");
            if example.server.is_some() {
                // ... recorded in the bucket, nothing committed.
                assert_eq!(example.recorded(), EXAMPLE_KEYS, "{rel}");
                example.assert_nothing_committed();
            } else {
                // ... and pushed the state to main, where the next plan reads it.
                let pushed = example.checkout.file_on_main("state/oapkg.state.json");
                let local =
                    std::fs::read_to_string(work.path().join("state/oapkg.state.json")).unwrap();
                assert_eq!(pushed, local, "{rel}: the state on main is the run's");
                assert_eq!(
                    recorded_keys(work.path(), "state/oapkg.state.json"),
                    EXAMPLE_KEYS
                );
            }
        } else {
            assert!(sim.ledger().is_empty(), "{rel} bought something");
        }
        example.sim_handle.shutdown();
    }

    let expected_skips = [
        "examples/gitops/admin-host/.github/workflows/oapkg-check.yml: job check: uses: actions/checkout@v5",
        "examples/gitops/admin-host/.github/workflows/oapkg-check.yml: job check: Cached oapkg binary (uses: actions/cache@v5)",
        "examples/gitops/admin-host/.github/workflows/oapkg-check.yml: job check: Install oapkg (cargo install)",
        "examples/gitops/admin-host/.github/workflows/oapkg-check.yml: job check: Fetch a read-only copy of the admin host's state (curl)",
        "examples/gitops/admin-host/.github/workflows/oapkg-check.yml: job check: Post or update the plan comment (uses: actions/github-script@v8)",
        "examples/gitops/s3-state/.github/workflows/oapkg.yml: job plan: uses: actions/checkout@v5",
        "examples/gitops/s3-state/.github/workflows/oapkg.yml: job plan: Cached oapkg binary (uses: actions/cache@v5)",
        "examples/gitops/s3-state/.github/workflows/oapkg.yml: job plan: Install oapkg (cargo install)",
        "examples/gitops/s3-state/.github/workflows/oapkg.yml: job plan: Keep the saved plan for the apply job (uses: actions/upload-artifact@v6)",
        "examples/gitops/s3-state/.github/workflows/oapkg.yml: job plan: Post or update the plan comment (uses: actions/github-script@v8)",
        "examples/gitops/s3-state/.github/workflows/oapkg.yml: job apply: uses: actions/checkout@v5",
        "examples/gitops/s3-state/.github/workflows/oapkg.yml: job apply: Cached oapkg binary (uses: actions/cache@v5)",
        "examples/gitops/s3-state/.github/workflows/oapkg.yml: job apply: Install oapkg (cargo install)",
        "examples/gitops/s3-state/.github/workflows/oapkg.yml: job apply: Fetch the plan reviewed in the merged pull request, and its comments (gh)",
        "examples/gitops/state-in-repo/.github/workflows/oapkg.yml: job plan: uses: actions/checkout@v5",
        "examples/gitops/state-in-repo/.github/workflows/oapkg.yml: job plan: Cached oapkg binary (uses: actions/cache@v5)",
        "examples/gitops/state-in-repo/.github/workflows/oapkg.yml: job plan: Install oapkg (cargo install)",
        "examples/gitops/state-in-repo/.github/workflows/oapkg.yml: job plan: Keep the saved plan for the apply job (uses: actions/upload-artifact@v6)",
        "examples/gitops/state-in-repo/.github/workflows/oapkg.yml: job plan: Post or update the plan comment (uses: actions/github-script@v8)",
        "examples/gitops/state-in-repo/.github/workflows/oapkg.yml: job apply: uses: actions/checkout@v5",
        "examples/gitops/state-in-repo/.github/workflows/oapkg.yml: job apply: Cached oapkg binary (uses: actions/cache@v5)",
        "examples/gitops/state-in-repo/.github/workflows/oapkg.yml: job apply: Install oapkg (cargo install)",
        "examples/gitops/state-in-repo/.github/workflows/oapkg.yml: job apply: Fetch the plan reviewed in the merged pull request, and its comments (gh)",
    ];
    // The S3 example's files, where an S3 server could run.
    let expected_skips: Vec<&str> = expected_skips
        .into_iter()
        .filter(|s| ran_files.iter().any(|f| s.starts_with(&format!("{f}: "))))
        .collect();
    assert!(
        skipped == expected_skips,
        "only steps needing the outside world are skipped; skipped:\n{}\nexercised:\n{}",
        skipped.join("\n"),
        exercised.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The state-in-repository flow with real git.

/// A Git repository of manifests with the state committed in it, the way
/// `examples/gitops/state-in-repo` keeps it; plans are saved beside it,
/// as CI keeps them as build artifacts.
struct Repo {
    root: tempfile::TempDir,
    sim: SimControl,
}

impl Repo {
    fn dir(&self) -> PathBuf {
        self.root.path().join("repo")
    }

    fn plan_file(&self, name: &str) -> String {
        self.root.path().join(name).to_string_lossy().into_owned()
    }

    #[track_caller]
    fn git(&self, args: &[&str]) -> String {
        git_in(&self.dir(), args)
    }

    /// `oapkg ARGS` in the repository, eSMS being the simulator.
    fn oapkg(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_oapkg"))
            .args(args)
            .current_dir(self.dir())
            .env("OAPKG_TODAY", TODAY)
            .env("ESMS_ENDPOINT", self.sim.endpoint().as_str())
            .env("ESMS_API_KEY", API_KEY)
            .env("ESMS_SECRET_KEY", SECRET_KEY)
            .env("OAPKG_RETRY_MIN_DELAY_MS", "10")
            .env_remove("OAPKG_STATE")
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .output()
            .expect("run oapkg");
        Run::from(out)
    }

    /// A pull request's branch off main adding one manifest file.
    fn pull_request(&self, branch: &str, file: &str, oaid: &str, name: &str) {
        self.git(&["checkout", "-q", "-b", branch, "main"]);
        let manifest = format!(
            "apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - oaid: \"{oaid}\"\n    name: {name}\n    tier: advanced\n    start: 2027-02-01\n    duration: 3\n"
        );
        std::fs::write(self.dir().join("packages").join(file), manifest).unwrap();
        self.git(&["add", "packages"]);
        self.git(&["commit", "-q", "-m", &format!("{branch}: add {name}")]);
    }

    /// The pull request's CI plan: the comment, and the plan saved for apply.
    #[track_caller]
    fn plan_pr(&self, branch: &str, plan: &str) -> String {
        self.git(&["checkout", "-q", branch]);
        let run = self.oapkg(&[
            "plan",
            "-f",
            "packages",
            "--format",
            "markdown",
            "--detailed-exitcode",
            "--out",
            &self.plan_file(plan),
        ]);
        run.code(2);
        run.stdout
    }

    fn merge(&self, branch: &str) {
        self.git(&["checkout", "-q", "main"]);
        self.git(&[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            &format!("Merge {branch}"),
            branch,
        ]);
    }

    /// The apply job's "commit the state back".
    fn commit_state(&self, message: &str) {
        self.git(&["add", "state"]);
        self.git(&["commit", "-q", "-m", message]);
    }

    /// The saved plan's state serial.
    fn planned_serial(&self, plan: &str) -> u64 {
        let saved: Value =
            serde_json::from_str(&std::fs::read_to_string(self.plan_file(plan)).unwrap()).unwrap();
        saved["state"]["serial"].as_u64().expect("a serial")
    }
}

#[test]
fn state_in_repository_flow_with_git_refuses_the_second_of_two_racing_plans() {
    if git_missing() {
        return;
    }
    const PR1: &str = "1000000000000000001";
    const PR2: &str = "1000000000000000002";
    const PR3: &str = "1000000000000000003";
    let sim_handle = simulator(&[PR1, PR2, PR3]);
    let repo = Repo {
        root: tempfile::tempdir().unwrap(),
        sim: sim_handle.control(),
    };
    let example = examples().join("state-in-repo");
    copy_dir(&example.join("packages"), &repo.dir().join("packages"));
    copy_dir(&example.join("state"), &repo.dir().join("state"));
    let empty = repo.oapkg(&["state", "list", "--format", "json"]);
    assert_eq!(
        empty.code(0).json(),
        serde_json::json!([]),
        "the example starts with the empty state `oapkg init` writes"
    );
    assert!(!empty.stderr.contains("no state file"), "{}", empty.stderr);
    repo.git(&["-c", "init.defaultBranch=main", "init", "-q"]);
    repo.git(&["add", "."]);
    repo.git(&["commit", "-q", "-m", "Manifests and an empty state"]);

    // Pull request 1: the comment shows what merging it buys.
    repo.pull_request("pr-1", "pr1.yaml", PR1, "Shop one");
    let comment = repo.plan_pr("pr-1", "pr1.plan");
    assert!(
        comment.starts_with(
            "**Plan: 3 to purchase, 0 to replace, 0 unconfirmed, 0 unchanged, 0 orphaned.**\n"
        ),
        "{comment}"
    );
    assert!(
        comment.contains(&format!(
            "| purchase | `{PR1}` | Shop one | advanced | 2027-02-01 | 2027-04-30 | 3 |"
        )),
        "{comment}"
    );
    assert!(
        comment.ends_with("<!-- oapkg-plan: state/oapkg.state.json -->\n"),
        "{comment}"
    );
    assert!(
        comment.contains("State `state/oapkg.state.json` · manifests `packages`\n"),
        "{comment}"
    );
    assert!(
        sim_handle.control().ledger().is_empty(),
        "planning buys nothing"
    );

    // Merged: main applies exactly the reviewed plan and commits the state.
    repo.merge("pr-1");
    repo.oapkg(&["apply", "-f", "packages", &repo.plan_file("pr1.plan")])
        .code(0)
        .stdout_has("Apply complete: 3 purchased, 0 failed, 0 unconfirmed.");
    let pr1_key = format!("{PR1}@2027-02-01");
    let mut bought = vec![
        pr1_key.as_str(),
        "4097311281936189049@2026-12-01",
        "745830328927467685@2027-01-01",
    ];
    assert_charged_once(&repo.sim, &bought);
    repo.commit_state("oapkg: record purchases of pr-1");
    assert_eq!(
        repo.git(&["status", "--porcelain"]),
        "",
        "the state is all committed"
    );
    repo.oapkg(&["plan", "-f", "packages", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");

    // The race: two pull requests planned from the same state.
    repo.pull_request("pr-2", "pr2.yaml", PR2, "Shop two");
    repo.pull_request("pr-3", "pr3.yaml", PR3, "Shop three");
    let comment2 = repo.plan_pr("pr-2", "pr2.plan");
    let comment3 = repo.plan_pr("pr-3", "pr3.plan");
    for (comment, oaid) in [(&comment2, PR2), (&comment3, PR3)] {
        assert!(
            comment.starts_with("**Plan: 1 to purchase, 0 to replace, 0 unconfirmed, 3 unchanged"),
            "{comment}"
        );
        assert!(comment.contains(&format!("`{oaid}`")), "{comment}");
    }
    let serial = repo.planned_serial("pr2.plan");
    assert_eq!(
        repo.planned_serial("pr3.plan"),
        serial,
        "planned from one state"
    );

    // pr-2 wins: merged, applied, state committed.
    repo.merge("pr-2");
    repo.oapkg(&["apply", "-f", "packages", &repo.plan_file("pr2.plan")])
        .code(0)
        .stdout_has("Apply complete: 1 purchased, 0 failed, 0 unconfirmed.");
    repo.commit_state("oapkg: record purchases of pr-2");
    let pr2_key = format!("{PR2}@2027-02-01");
    bought.insert(1, &pr2_key);
    assert_charged_once(&repo.sim, &bought);

    // pr-3 merges cleanly, but its plan was made before pr-2's purchase was
    // recorded: refused, nothing bought.
    repo.merge("pr-3");
    let pr3_plan = repo.plan_file("pr3.plan");
    let refused = repo.oapkg(&["apply", "-f", "packages", &pr3_plan]);
    refused
        .code(1)
        .stderr_has(&format!("plan file {pr3_plan} cannot be applied"))
        .stderr_has(&format!(
            "stale plan: the state was written since the plan was made (state serial {serial} -> {})",
            serial + 1
        ))
        .stderr_has("the manifests changed since the plan was made")
        .stderr_has("Run `oapkg plan` again");
    assert_charged_once(&repo.sim, &bought);

    // Re-plan on main (what CI does next) and apply that: pr-3's package only.
    let fresh = repo.plan_file("main.plan");
    repo.oapkg(&["plan", "-f", "packages", "--out", &fresh])
        .code(0)
        .stdout_has("Plan: 1 to purchase, 0 to replace, 0 unconfirmed, 4 unchanged, 0 orphaned.");
    repo.oapkg(&["apply", "-f", "packages", &fresh])
        .code(0)
        .stdout_has("Apply complete: 1 purchased, 0 failed, 0 unconfirmed.");
    repo.commit_state("oapkg: record purchases of pr-3");
    let pr3_key = format!("{PR3}@2027-02-01");
    bought.insert(2, &pr3_key);
    repo.oapkg(&["plan", "-f", "packages", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");

    // Across the whole flow, every package was bought exactly once.
    assert_charged_once(&repo.sim, &bought);
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    sim_handle.shutdown();
}

// ---------------------------------------------------------------------------
// The state-in-repository pipelines, step by step, where it gets hard:
// guarded changes approved by a label, and a push that main refuses.

const GITHUB_WORKFLOW: &str = "examples/gitops/state-in-repo/.github/workflows/oapkg.yml";

/// The state-in-repository example as CI checks it out on `main`: an
/// earlier merge bought the example packages and committed the state, then
/// a merged pull request changed the manifest by `edit` (old text, new).
struct Merged {
    work: tempfile::TempDir,
    checkout: Checkout,
    sim_handle: BlockingSimHandle,
}

impl Merged {
    fn new(edit: (&str, &str)) -> Merged {
        let work = tempfile::tempdir().unwrap();
        copy_dir(&examples().join("state-in-repo"), work.path());
        let sim_handle = simulator(&[]);
        let earlier = Command::new(env!("CARGO_BIN_EXE_oapkg"))
            .args(["apply", "-f", "packages", "--auto-approve"])
            .current_dir(work.path())
            .env("OAPKG_TODAY", TODAY)
            .env("ESMS_ENDPOINT", sim_handle.control().endpoint().as_str())
            .env("ESMS_API_KEY", API_KEY)
            .env("ESMS_SECRET_KEY", SECRET_KEY)
            .env_remove("OAPKG_STATE")
            .output()
            .unwrap();
        Run::from(earlier).code(0);
        assert_charged_once(&sim_handle.control(), &EXAMPLE_KEYS);
        let checkout = Checkout::new(work.path());
        let manifest = work.path().join("packages/svoucher.yaml");
        let yaml = std::fs::read_to_string(&manifest).unwrap();
        assert!(yaml.contains(edit.0), "{yaml}");
        std::fs::write(&manifest, yaml.replace(edit.0, edit.1)).unwrap();
        git_in(
            work.path(),
            &["commit", "-q", "-am", "Merge the pull request"],
        );
        git_in(work.path(), &["push", "-q", "origin", "main"]);
        Merged {
            work,
            checkout,
            sim_handle,
        }
    }

    fn dir(&self) -> &Path {
        self.work.path()
    }

    fn sim(&self) -> SimControl {
        self.sim_handle.control()
    }

    /// The merge request's or pull request's labels (see [`write_labels`]).
    fn label(&self, labels: &[&str]) {
        write_labels(self.dir(), labels);
    }

    /// The steps of the CI file `rel`.
    fn steps(&self, rel: &str) -> Vec<Step> {
        ci_steps(
            rel,
            &std::fs::read_to_string(repo_root().join(rel)).unwrap(),
        )
    }

    fn run(&self, rel: &str, steps: Vec<Step>) -> Ran {
        let env = self.checkout.runner_env(self.dir());
        try_run_steps(rel, steps, self.dir(), &self.sim(), &env)
    }

    /// Charges per key since the earlier merge.
    fn new_charges(&self) -> Vec<(String, String)> {
        let earlier: Vec<String> = EXAMPLE_KEYS.iter().map(|k| (*k).to_owned()).collect();
        let mut seen = BTreeMap::<String, usize>::new();
        self.sim()
            .ledger()
            .into_iter()
            .filter_map(|c| {
                let key = format!("{}@{}", c.oaid, c.dateactive);
                let n = seen.entry(key.clone()).or_default();
                *n += 1;
                // The earlier merge bought each example key once, first.
                (!(earlier.contains(&key) && *n == 1)).then_some((key, c.duaration))
            })
            .collect()
    }
}

/// A guarded change: its manifest edit, the flag it needs, and the
/// purchase (key, months) it makes once approved.
struct Guarded {
    edit: (&'static str, &'static str),
    flag: &'static str,
    bought: (&'static str, &'static str),
}

const GUARDED: [Guarded; 2] = [
    // A longer duration: the package is bought again.
    Guarded {
        edit: (
            "start: 2027-01-01\n    duration: 6",
            "start: 2027-01-01\n    duration: 9",
        ),
        flag: "--allow-replace",
        bought: ("745830328927467685@2027-01-01", "9"),
    },
    // A moved start date: a new key over months already bought.
    Guarded {
        edit: ("start: 2027-01-01", "start: 2027-01-15"),
        flag: "--allow-overlap",
        bought: ("745830328927467685@2027-01-15", "6"),
    },
];

#[test]
fn a_guarded_change_is_applied_once_when_its_plan_is_approved_and_refused_otherwise() {
    if git_missing() {
        return;
    }
    // The GitLab pipeline of this example runs for real in
    // `gitops_gitlab.rs` (gitlab-ci-local).
    let rel = GITHUB_WORKFLOW;
    let split = |steps: Vec<Step>| -> (Vec<Step>, Vec<Step>) {
        steps
            .into_iter()
            .partition(|s| s.label.starts_with("job plan:"))
    };
    for guarded in &GUARDED {
        let what = format!("{rel}, {}", guarded.flag);
        // The plan job: the comment names the flag and the approval line
        // for this plan at this commit.
        let merged = Merged::new(guarded.edit);
        let (plan, apply) = split(merged.steps(rel));
        let ran = merged.run(rel, plan);
        assert_eq!(ran.failed, None, "{what}\n{}", ran.transcript());
        let comment = std::fs::read_to_string(merged.dir().join("comment.md")).unwrap();
        let head = git_in(merged.dir(), &["rev-parse", "HEAD"])
            .trim()
            .to_owned();
        let approval = comment
            .lines()
            .find_map(|l| l.strip_prefix("> `").and_then(|l| l.strip_suffix('`')))
            .filter(|l| l.starts_with("oapkg-approve "))
            .unwrap_or_else(|| panic!("{what}: no approval line:\n{comment}"))
            .to_owned();
        assert!(
            comment.contains(&format!("with `{}`", guarded.flag)),
            "{what}:\n{comment}"
        );
        assert!(approval.ends_with(&format!("@{head}")), "{approval}");

        // Not approved (a non-approver's approval, and an approval of an
        // earlier push by an approver): refused, nothing bought, the state
        // unchanged, refusal.md says why.
        write_comments(
            merged.dir(),
            &[
                ("mallory", &approval),
                ("alice", &approval.replace('@', "@0")),
            ],
        );
        let ran = merged.run(rel, apply.iter().map(Step::clone_step).collect());
        assert!(
            ran.failed.is_some(),
            "{what}: the job fails\n{}",
            ran.transcript()
        );
        let refusal = std::fs::read_to_string(merged.dir().join("refusal.md")).unwrap();
        assert!(
            refusal.contains(guarded.flag) && refusal.contains(&approval),
            "{what}: the refusal names the flag and the approval needed:\n{refusal}"
        );
        assert_eq!(merged.new_charges(), [], "{what}: nothing bought");
        assert_eq!(
            git_in(merged.dir(), &["status", "--porcelain", "state"]),
            "",
            "{what}: the state is unchanged"
        );

        // Approved by an approver: apply buys the reviewed change, once,
        // and the state reaches main.
        write_comments(merged.dir(), &[("alice", &approval)]);
        let ran = merged.run(rel, apply);
        assert_eq!(ran.failed, None, "{what}\n{}", ran.transcript());
        assert!(
            ran.transcript()
                .contains(&format!("Approved: {}", guarded.flag)),
            "{what}\n{}",
            ran.transcript()
        );
        let (key, months) = guarded.bought;
        assert_eq!(
            merged.new_charges(),
            [(key.to_owned(), months.to_owned())],
            "{what}: bought exactly once"
        );
        assert!(
            merged
                .checkout
                .file_on_main("state/oapkg.state.json")
                .contains(&format!("\"{key}\"")),
            "{what}: the state on main records {key}"
        );
    }
}

/// Whether `git` is missing here (then the test says it skipped).
fn git_missing() -> bool {
    let missing = Command::new("git").arg("--version").output().is_err();
    if missing {
        eprintln!("skipped: `git` is not installed");
    }
    missing
}

/// A pull request adding a package, merged, and `rel` run up to the step
/// that pushes the state: the merge and the steps still to run.
fn merged_and_applied_up_to_the_push(rel: &str) -> (Merged, Vec<Step>) {
    let merged = Merged::new((
        "duration: 6",
        "duration: 6\n  - oaid: \"4097311281936189049\"\n    start: 2027-12-01",
    ));
    merged.label(&[]);
    let (before, after) = split_at_push(merged.steps(rel));
    let ran = merged.run(rel, before);
    assert_eq!(ran.failed, None, "{rel}\n{}", ran.transcript());
    (merged, after)
}

/// The steps of `rel` split before the one that pushes the state.
fn split_at_push(steps: Vec<Step>) -> (Vec<Step>, Vec<Step>) {
    let mut before = steps;
    let at = before
        .iter()
        .position(|s| {
            s.script
                .as_deref()
                .is_some_and(|s| s.contains("ci/push-state.sh"))
        })
        .expect("a step that pushes the state");
    let after = before.split_off(at);
    (before, after)
}

#[test]
fn the_state_push_rebases_onto_a_moved_main_and_keeps_every_record() {
    if git_missing() {
        return;
    }
    // The GitLab pipeline of this example runs for real in
    // `gitops_gitlab.rs` (gitlab-ci-local), push included.
    #[allow(clippy::single_element_loop)] // the GitLab file runs in gitops_gitlab.rs
    for rel in [GITHUB_WORKFLOW] {
        // A pull request adding a package is merged and applied...
        let (merged, after) = merged_and_applied_up_to_the_push(rel);
        assert_eq!(
            merged.new_charges(),
            [("4097311281936189049@2027-12-01".to_owned(), "12".to_owned())]
        );
        // ... while another merge moves main (not its state).
        merged.checkout.push_meanwhile("Another merge", |clone| {
            std::fs::write(clone.join("NOTES.md"), "# Notes\n").unwrap();
        });
        let ran = merged.run(rel, after);
        assert_eq!(ran.failed, None, "{rel}\n{}", ran.transcript());
        assert!(
            ran.transcript().contains("Push refused (attempt 1 of 5)"),
            "{rel}\n{}",
            ran.transcript()
        );
        assert!(
            ran.transcript()
                .contains("State pushed to main (attempt 2)."),
            "{rel}\n{}",
            ran.transcript()
        );
        // Main holds both: the other merge and the run's state.
        assert_eq!(merged.checkout.file_on_main("NOTES.md"), "# Notes\n");
        let on_main = merged.checkout.file_on_main("state/oapkg.state.json");
        let local = std::fs::read_to_string(merged.dir().join("state/oapkg.state.json")).unwrap();
        assert_eq!(on_main, local, "{rel}");
        assert!(
            on_main.contains("\"4097311281936189049@2027-12-01\""),
            "{rel}"
        );
        assert!(!merged.dir().join("oapkg-state-rescue").exists(), "{rel}");
    }
}

#[test]
fn a_state_push_that_cannot_merge_fails_loudly_and_keeps_the_state_as_an_artifact() {
    if git_missing() {
        return;
    }
    // The GitLab pipeline of this example runs for real in
    // `gitops_gitlab.rs` (gitlab-ci-local), push included.
    #[allow(clippy::single_element_loop)] // the GitLab file runs in gitops_gitlab.rs
    for rel in [GITHUB_WORKFLOW] {
        let (merged, after) = merged_and_applied_up_to_the_push(rel);
        // Meanwhile someone records a purchase on main: two states now.
        merged
            .checkout
            .push_meanwhile("Import a package bought by hand", |clone| {
                let import = Command::new(env!("CARGO_BIN_EXE_oapkg"))
                    .args([
                        "state",
                        "import",
                        "--oaid",
                        "745830328927467685",
                        "--tier",
                        "premium",
                        "--start",
                        "2027-09-01",
                        "--duration",
                        "1",
                    ])
                    .current_dir(clone)
                    .env("OAPKG_TODAY", TODAY)
                    .env_remove("OAPKG_STATE")
                    .output()
                    .unwrap();
                Run::from(import).code(0);
            });
        let theirs = merged.checkout.file_on_main("state/oapkg.state.json");
        let ran = merged.run(rel, after);
        let log = ran.transcript();
        assert!(ran.failed.is_some(), "{rel}: the job fails\n{log}");
        assert!(
            log.contains("ERROR: the oapkg state was NOT pushed to main"),
            "{rel}\n{log}"
        );
        assert!(
            log.contains("changed since this job checked out"),
            "{rel}\n{log}"
        );
        assert!(
            log.contains("oapkg state import"),
            "{rel}: says what to do\n{log}"
        );
        // The log lists the run's records too.
        assert!(
            log.contains("4097311281936189049@2027-12-01"),
            "{rel}\n{log}"
        );
        // Main's state is untouched; the artifact holds the run's state.
        assert_eq!(
            merged.checkout.file_on_main("state/oapkg.state.json"),
            theirs
        );
        let rescued = merged.dir().join("oapkg-state-rescue");
        let mut keys = EXAMPLE_KEYS.map(String::from).to_vec();
        keys.insert(1, "4097311281936189049@2027-12-01".to_owned());
        assert_eq!(
            recorded_keys(merged.dir(), "oapkg-state-rescue/oapkg.state.json"),
            keys,
            "{rel}"
        );
        assert!(rescued.join("oapkg.state.json.backup").is_file(), "{rel}");
    }
}

const S3_PIPELINES: [&str; 2] = [
    "examples/gitops/s3-state/.github/workflows/oapkg.yml",
    "examples/gitops/s3-state/.gitlab-ci.yml",
];

/// Whether `script` runs an `oapkg` command (not `oapkg` as part of a word).
fn calls_oapkg(script: &str) -> bool {
    script
        .split(|c: char| c.is_whitespace() || "();|&".contains(c))
        .any(|word| word == "oapkg")
}

#[test]
fn s3_state_pipelines_use_the_bucket_hold_the_lease_only_to_apply_and_commit_nothing() {
    for rel in S3_PIPELINES {
        let yaml = std::fs::read_to_string(repo_root().join(rel)).unwrap();
        let doc: Value = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let steps = ci_steps(rel, &yaml);
        let mut applies = 0;
        let mut plans = 0;
        let mut first_apply_step = None;
        for step in &steps {
            let Some(script) = &step.script else { continue };
            let what = format!("{rel}: {}", step.label);
            for git in ["git push", "git commit", "git add", "push-state"] {
                assert!(!script.contains(git), "{what}: no state commits ({git})");
            }
            let applies_here = script.contains("oapkg apply")
                || script.contains("ci/apply-reviewed.sh")
                || script.contains("ci/gitlab-apply.sh");
            let plans_here = script.contains("oapkg plan")
                || script.contains("ci/plan-comment.sh")
                || script.contains("ci/gitlab-plan.sh");
            if !calls_oapkg(script) && !applies_here && !plans_here {
                continue;
            }
            if step.label.contains("job apply")
                && first_apply_step.is_none()
                && !script.contains("cargo install")
            {
                first_apply_step = Some(script.clone());
            }
            let state = step
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == "OAPKG_STATE")
                .map(|(_, v)| v.as_str());
            assert!(
                script.contains("--state s3://") || state.is_some_and(|s| s.starts_with("s3://")),
                "{what}: the state is on S3 (OAPKG_STATE={state:?})"
            );
            if applies_here {
                applies += 1;
                // The scripts apply with OAPKG_APPLY_ARGS.
                let args = step
                    .env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "OAPKG_APPLY_ARGS")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or_default();
                assert!(
                    args.contains("--lock-timeout"),
                    "{what}: waits for the lease (OAPKG_APPLY_ARGS={args:?})"
                );
                assert!(
                    step.label.contains("job apply"),
                    "{what}: only the apply job applies"
                );
            }
            if plans_here && step.label.contains("job plan") {
                plans += 1;
            }
            if step.label.contains("job plan") {
                for writer in ["oapkg apply", "oapkg init", "oapkg state", "oapkg watch"] {
                    assert!(
                        !script.contains(writer),
                        "{what}: a plan job only reads ({writer})"
                    );
                }
            }
        }
        assert!(applies > 0 && plans > 0, "{rel}: plans and applies");

        // Keys from the CI's secret store; a read-only one for plans.
        if rel.contains("/.github/") {
            for (job, key) in [("plan", "OAPKG_READ_AWS_"), ("apply", "OAPKG_AWS_")] {
                let job_yaml = serde_json::to_string(&doc["jobs"][job]).unwrap();
                for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                    let wanted = format!("\"{var}\":\"${{{{ secrets.{key}{}", &var[4..]);
                    assert!(
                        job_yaml.contains(&wanted),
                        "{rel}: job {job} takes {var} from secrets.{key}…: {job_yaml}"
                    );
                }
            }
        } else {
            let vars = &doc["plan"]["variables"];
            assert_eq!(
                vars["AWS_ACCESS_KEY_ID"], "$OAPKG_READ_AWS_ACCESS_KEY_ID",
                "{rel}"
            );
            assert_eq!(
                vars["AWS_SECRET_ACCESS_KEY"], "$OAPKG_READ_AWS_SECRET_ACCESS_KEY",
                "{rel}"
            );
            assert!(
                doc["variables"].get("AWS_SECRET_ACCESS_KEY").is_none(),
                "{rel}: no key in the file"
            );
            assert_eq!(doc["apply"]["resource_group"], "oapkg-apply", "{rel}");
        }
        // `oapkg doctor` first in the apply job; no label approves anything
        // (the approval is bound to the plan's checksum, in ci/).
        let first = first_apply_step.unwrap_or_default();
        assert!(
            first.trim_start().starts_with("oapkg doctor"),
            "{rel}: the apply job checks everything first: {first}"
        );
        assert!(!yaml.contains("oapkg:allow-"), "{rel}: no approval label");
    }
}

// ---------------------------------------------------------------------------
// An example as CI checks it out, and the S3-state pipelines step by step
// against moto holding the example's own bucket.

/// The bucket and state the S3 examples name.
const EXAMPLE_BUCKET: &str = "example-oapkg-state";
const EXAMPLE_S3_STATE: &str = "s3://example-oapkg-state/prod";
/// The read-only key pair the examples give plan jobs. moto does not enforce
/// key policies: its recording shows which key each request used.
const READ_ACCESS_KEY: &str = "AKIAOAPKGREADONLY7Q2Z";
const READ_SECRET_KEY: &str = "oapkgReadOnlySecretKey1a2b3c4d5e6f7g8h";

/// An example as CI checks it out: a copy of its directory under
/// `examples/gitops/` in a Git repository (see [`Checkout`]), the simulator
/// as eSMS, and for the S3-state example its bucket on a moto server, set
/// up as its README says (`oapkg init` with the write key).
struct Example {
    rel: String,
    work: tempfile::TempDir,
    checkout: Checkout,
    server: Option<S3Server>,
    sim_handle: BlockingSimHandle,
}

impl Example {
    /// The example `rel` belongs to; `None` (with a message) when it keeps
    /// its state on S3 and the S3 servers cannot run here.
    fn new(rel: &str) -> Option<Example> {
        let dir = match rel.split('/').nth(2) {
            Some(name) if rel.starts_with("examples/gitops/") => examples().join(name),
            // The root hook is for other repositories: try it on one.
            _ => examples().join("state-in-repo"),
        };
        let server = if uses_s3_state(rel) {
            let server = S3Server::moto_recording()?;
            server.create_bucket(EXAMPLE_BUCKET);
            Some(server)
        } else {
            None
        };
        let work = tempfile::tempdir().unwrap();
        copy_dir(&dir, work.path());
        let checkout = Checkout::new(work.path());
        if let Some(server) = &server {
            let mut init = Command::new(env!("CARGO_BIN_EXE_oapkg"));
            init.args(["init", "--state", EXAMPLE_S3_STATE])
                .current_dir(work.path())
                .env("OAPKG_TODAY", TODAY)
                .env_remove("OAPKG_STATE");
            server.configure(&mut init);
            Run::from(init.output().unwrap())
                .code(0)
                .stdout_has("Created an empty state at s3://example-oapkg-state/prod");
        }
        Some(Example {
            rel: rel.to_owned(),
            work,
            checkout,
            server,
            sim_handle: simulator(&[]),
        })
    }

    fn server(&self) -> &S3Server {
        self.server
            .as_ref()
            .expect("an example with its state on S3")
    }

    fn dir(&self) -> &Path {
        self.work.path()
    }

    fn sim(&self) -> SimControl {
        self.sim_handle.control()
    }

    /// The runner's environment: the checkout's and, for the S3 example,
    /// the store and its keys. GitHub: the keys as secrets, the endpoint as
    /// the repository variable the workflow passes on (the runner's own
    /// `AWS_ENDPOINT_URL` is a dead loopback port: a workflow that failed
    /// to pass it on would fail here, never reach AWS). GitLab: CI/CD
    /// variables, the write pair as `AWS_*` (protected variables, which
    /// GitLab gives no merge-request pipeline; here the plan job's own
    /// `variables:` replace them by the read pair).
    fn runner_env(&self) -> RunnerEnv<'static> {
        let mut env = self.checkout.runner_env(self.dir());
        let Some(server) = &self.server else {
            return env;
        };
        let read_pair = [
            ("OAPKG_READ_AWS_ACCESS_KEY_ID", READ_ACCESS_KEY),
            ("OAPKG_READ_AWS_SECRET_ACCESS_KEY", READ_SECRET_KEY),
        ];
        let mut ambient = vec![("AWS_REGION", "us-east-1")];
        if self.rel.contains("/.github/") {
            let write_pair = [
                ("OAPKG_AWS_ACCESS_KEY_ID", server::ACCESS_KEY),
                ("OAPKG_AWS_SECRET_ACCESS_KEY", server::SECRET_KEY),
            ];
            env.secrets.extend(
                read_pair
                    .iter()
                    .chain(&write_pair)
                    .map(|(k, v)| (*k, (*v).to_owned())),
            );
            env.vars.push(("AWS_ENDPOINT_URL", server.endpoint.clone()));
            ambient.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:9"));
            // As on GitHub's runners (validate then annotates the lines).
            ambient.push(("GITHUB_ACTIONS", "true"));
        } else {
            ambient.extend([
                ("AWS_ENDPOINT_URL", server.endpoint.as_str()),
                ("AWS_ACCESS_KEY_ID", server::ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", server::SECRET_KEY),
            ]);
            ambient.extend(read_pair);
        }
        env.ambient.extend(
            ambient
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env
    }

    /// Every step of the CI file, in order.
    fn all_steps(&self) -> Vec<Step> {
        let yaml = std::fs::read_to_string(repo_root().join(&self.rel)).unwrap();
        ci_steps(&self.rel, &yaml)
    }

    /// The steps of the jobs that run on a pull request (`plan`) or on a
    /// merge to main (`apply`).
    fn steps(&self, on: &str) -> Vec<Step> {
        let jobs: &[&str] = match on {
            "plan" => &["plan", "plan-note"],
            _ => &["reviewed-plan", "apply"],
        };
        self.all_steps()
            .into_iter()
            .filter(|s| {
                jobs.iter()
                    .any(|j| s.label.starts_with(&format!("job {j}:")))
            })
            .collect()
    }

    fn run(&self, on: &str) -> Ran {
        try_run_steps(
            &self.rel,
            self.steps(on),
            self.dir(),
            &self.sim(),
            &self.runner_env(),
        )
    }

    /// Every object in the bucket with its ETag: equal before and after
    /// means nothing was written (no lease taken either: it lives in the
    /// head).
    fn bucket_listing(&self) -> String {
        self.server().get(&format!("/{EXAMPLE_BUCKET}?list-type=2"))
    }

    /// The state's head object.
    fn head(&self) -> Value {
        let text = self
            .server()
            .get(&format!("/{EXAMPLE_BUCKET}/prod/head.json"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("head.json: {e}: {text}"))
    }

    /// `oapkg state list` of the bucket's state, with the write key.
    fn recorded(&self) -> Vec<String> {
        recorded_keys_on(self.dir(), EXAMPLE_S3_STATE, self.server.as_ref())
    }

    /// Charges (key, months) made after the first `since` ones.
    fn charges_since(&self, since: usize) -> Vec<(String, String)> {
        self.sim()
            .ledger()
            .into_iter()
            .skip(since)
            .map(|c| (format!("{}@{}", c.oaid, c.dateactive), c.duaration))
            .collect()
    }

    /// Nothing went back to the repository: `main` holds only the checkout's
    /// commit, and no state file exists in the working copy.
    #[track_caller]
    fn assert_nothing_committed(&self) {
        let commits = git_in(
            self.checkout.remote.path(),
            &["rev-list", "--count", "main"],
        );
        assert_eq!(commits.trim(), "1", "{}: nothing pushed to main", self.rel);
        assert!(
            !self.dir().join("state").exists(),
            "{}: no state file in the checkout",
            self.rel
        );
    }

    /// The requests the S3 server answered while `run` ran, and its result.
    fn requests_during(&self, run: impl FnOnce() -> Ran) -> (Ran, Vec<server::Request>) {
        let seen = self.server().requests().len();
        let ran = run();
        (ran, self.server().requests().split_off(seen))
    }

    /// A pull request's plan job: it must succeed, buy nothing, and only
    /// read the bucket, with the read-only key. Returns the comment.
    #[track_caller]
    fn plan_pull_request(&self) -> (Ran, String) {
        let before = self.bucket_listing();
        let charged = self.sim().ledger().len();
        let (ran, requests) = self.requests_during(|| self.run("plan"));
        assert_eq!(ran.failed, None, "{}\n{}", self.rel, ran.transcript());
        assert!(
            !requests.is_empty(),
            "{}: the plan read the state",
            self.rel
        );
        for request in &requests {
            assert!(
                matches!(request.method.as_str(), "GET" | "HEAD")
                    && request.access_key == READ_ACCESS_KEY
                    && request.url.contains(&format!("/{EXAMPLE_BUCKET}/prod/")),
                "{}: a plan job only reads, with the read-only key: {request:?}",
                self.rel
            );
        }
        assert_eq!(
            self.bucket_listing(),
            before,
            "{}: planning took no lease and wrote nothing",
            self.rel
        );
        assert_eq!(self.sim().ledger().len(), charged, "planning buys nothing");
        let comment = std::fs::read_to_string(self.dir().join("comment.md")).unwrap();
        assert!(
            comment.contains(&format!("<!-- oapkg-plan: {EXAMPLE_S3_STATE} -->")),
            "{}: the marker names the bucket's state:\n{comment}",
            self.rel
        );
        (ran, comment)
    }
}

/// The approval line a plan comment asks an approver to post.
#[track_caller]
fn approval_line(comment: &str) -> String {
    comment
        .lines()
        .find_map(|l| l.strip_prefix("> `").and_then(|l| l.strip_suffix('`')))
        .filter(|l| l.starts_with("oapkg-approve "))
        .unwrap_or_else(|| panic!("no approval line:\n{comment}"))
        .to_owned()
}

/// The S3-state GitHub workflow step by step: a PR is planned read-only
/// (one comment: the plan and its checksum, or the error when validation
/// fails), the merge applies exactly the reviewed plan (bought once,
/// recorded in the bucket, lease given back, nothing committed), a second
/// run buys nothing, guarded changes are bought only when an approver
/// approved that plan's checksum, and a plan reviewed before the bucket's
/// state moved buys nothing and says why. The GitLab pipeline runs the
/// same scripts (ci/, identical copies of state-in-repo's, which
/// `gitops_gitlab.rs` runs with gitlab-ci-local).
#[test]
fn the_s3_state_github_workflow_plans_read_only_applies_the_reviewed_plan_into_the_bucket() {
    let rel = S3_PIPELINES[0];
    if git_missing() {
        return;
    }
    let Some(example) = Example::new(rel) else {
        return;
    };

    // Pull request: the plan, read-only, with its checksum.
    let (_, comment) = example.plan_pull_request();
    assert!(
        comment.starts_with("**Plan: 2 to purchase,") && comment.contains("Plan checksum `sha256:"),
        "{rel}:\n{comment}"
    );
    assert!(
        !comment.contains("oapkg-approve"),
        "{rel}: nothing to approve"
    );
    assert!(example.recorded().is_empty(), "{rel}: nothing recorded yet");

    // Merge: `oapkg doctor` first, then apply buys exactly the reviewed
    // plan, once, into the bucket.
    write_comments(example.dir(), &[]);
    let (ran, requests) = example.requests_during(|| example.run("apply"));
    assert_eq!(ran.failed, None, "{rel}\n{}", ran.transcript());
    let first = ran
        .log
        .iter()
        .find(|(_, run)| !run.stdout.is_empty() || !run.stderr.is_empty())
        .map(|(label, _)| label.as_str());
    assert_eq!(
        first,
        Some("job apply: Check everything a run depends on"),
        "{rel}: doctor first\n{}",
        ran.transcript()
    );
    assert!(
        requests.iter().any(|r| r.method == "PUT")
            && requests.iter().all(|r| r.access_key == server::ACCESS_KEY),
        "{rel}: apply writes the state with the write key: {requests:?}"
    );
    assert_charged_once(&example.sim(), &EXAMPLE_KEYS);
    assert_eq!(example.recorded(), EXAMPLE_KEYS, "{rel}");
    assert_eq!(
        example.head()["lease"],
        Value::Null,
        "{rel}: lease given back"
    );
    example.assert_nothing_committed();

    // A second run (no manifest change): no changes, nothing bought.
    let (_, comment) = example.plan_pull_request();
    assert!(comment.contains("No changes."), "{rel}:\n{comment}");
    let charged = example.sim().ledger().len();
    let ran = example.run("apply");
    assert_eq!(ran.failed, None, "{rel}\n{}", ran.transcript());
    assert_eq!(example.charges_since(charged), [], "{rel}: bought nothing");

    // A push that fails validation: the job fails, the lines are annotated,
    // and the comment shows the error, never the earlier plan.
    let manifest = example.dir().join("packages/svoucher.yaml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, original.replace("duration: 6", "duration: six")).unwrap();
    let ran = example.run("plan");
    assert!(ran.failed.is_some(), "{rel}: the plan job fails");
    assert!(
        ran.transcript()
            .contains("::error file=packages/svoucher.yaml"),
        "{rel}: annotations\n{}",
        ran.transcript()
    );
    let comment = std::fs::read_to_string(example.dir().join("comment.md")).unwrap();
    assert!(
        comment.contains("the manifests are invalid, so there is no plan")
            && !comment.contains("Plan checksum")
            && comment.contains(&format!("<!-- oapkg-plan: {EXAMPLE_S3_STATE} -->")),
        "{rel}: the error, in the same comment:\n{comment}"
    );
    assert!(!example.dir().join("oapkg.plan").exists(), "{rel}: no plan");

    // Guarded changes: refused without an approval of this plan's checksum
    // at this commit, bought once with it.
    for guarded in &GUARDED {
        let what = format!("{rel}, {}", guarded.flag);
        std::fs::write(&manifest, original.replace(guarded.edit.0, guarded.edit.1)).unwrap();
        let (_, comment) = example.plan_pull_request();
        assert!(
            comment.contains(&format!("with `{}`", guarded.flag)),
            "{what}: the comment says what is approved:\n{comment}"
        );
        let approval = approval_line(&comment);
        let recorded = example.recorded();
        let charged = example.sim().ledger().len();

        // A non-approver's approval, and an approver's of another commit.
        write_comments(
            example.dir(),
            &[
                ("mallory", &approval),
                ("alice", &approval.replace('@', "@0")),
            ],
        );
        let ran = example.run("apply");
        assert!(
            ran.failed.is_some(),
            "{what}: the job fails\n{}",
            ran.transcript()
        );
        let refusal = std::fs::read_to_string(example.dir().join("refusal.md")).unwrap();
        assert!(
            refusal.contains(guarded.flag) && refusal.contains(&approval),
            "{what}: the refusal names the flag and the approval needed:\n{refusal}"
        );
        assert_eq!(example.charges_since(charged), [], "{what}: nothing bought");
        assert_eq!(example.recorded(), recorded, "{what}: state unchanged");
        assert_eq!(
            example.head()["lease"],
            Value::Null,
            "{what}: no lease left"
        );

        write_comments(example.dir(), &[("alice", &approval)]);
        let ran = example.run("apply");
        assert_eq!(ran.failed, None, "{what}\n{}", ran.transcript());
        assert!(
            ran.transcript()
                .contains(&format!("Approved: {}", guarded.flag)),
            "{what}\n{}",
            ran.transcript()
        );
        let (key, months) = guarded.bought;
        assert_eq!(
            example.charges_since(charged),
            [(key.to_owned(), months.to_owned())],
            "{what}: bought exactly once"
        );
        assert!(
            example.recorded().iter().any(|k| k == key),
            "{what}: the bucket's state records {key}"
        );
    }

    // A plan reviewed before someone else recorded a purchase in the
    // bucket: nothing bought, the refusal says the state moved.
    std::fs::write(
        &manifest,
        original.replace(
            "duration: 6",
            "duration: 6\n  - oaid: \"4097311281936189049\"\n    start: 2027-12-01",
        ),
    )
    .unwrap();
    let (_, comment) = example.plan_pull_request();
    assert!(comment.contains("Plan checksum"), "{rel}:\n{comment}");
    let mut import = Command::new(env!("CARGO_BIN_EXE_oapkg"));
    import
        .args([
            "state",
            "import",
            "--state",
            EXAMPLE_S3_STATE,
            "--oaid",
            "745830328927467685",
            "--tier",
            "advanced",
            "--start",
            "2028-06-01",
            "--duration",
            "1",
        ])
        .current_dir(example.dir())
        .env("OAPKG_TODAY", TODAY)
        .env_remove("OAPKG_STATE");
    example.server().configure(&mut import);
    Run::from(import.output().unwrap()).code(0);
    let charged = example.sim().ledger().len();
    write_comments(example.dir(), &[]);
    let ran = example.run("apply");
    assert!(
        ran.failed.is_some(),
        "{rel}: the job fails\n{}",
        ran.transcript()
    );
    let refusal = std::fs::read_to_string(example.dir().join("refusal.md")).unwrap();
    assert!(
        refusal.contains("did not apply anything") && refusal.contains("the state moved (serial"),
        "{rel}: the refusal says why:\n{refusal}"
    );
    assert_eq!(example.charges_since(charged), [], "{rel}: nothing bought");
    example.assert_nothing_committed();
    example.sim_handle.shutdown();
}

/// The ci/ scripts the S3 example shares with the state-in-repo example:
/// each example directory stays whole for users who copy one, so the
/// scripts are copies, kept identical.
#[test]
fn the_s3_state_examples_ci_scripts_are_the_state_in_repo_ones() {
    let ours = examples().join("s3-state/ci");
    let mut names: Vec<String> = std::fs::read_dir(&ours)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "apply-reviewed.sh",
            "gitlab-api.sh",
            "gitlab-apply.sh",
            "gitlab-plan.sh",
            "plan-comment.sh"
        ]
    );
    for name in names {
        let theirs = std::fs::read(examples().join("state-in-repo/ci").join(&name)).unwrap();
        assert!(
            std::fs::read(ours.join(&name)).unwrap() == theirs,
            "examples/gitops/s3-state/ci/{name} differs from state-in-repo's: copy it \
             (cp examples/gitops/state-in-repo/ci/{name} examples/gitops/s3-state/ci/)"
        );
    }
}
