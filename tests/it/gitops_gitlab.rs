//! The state-in-repository GitLab pipeline (`examples/gitops/state-in-repo/
//! .gitlab-ci.yml`) run for real by `gitlab-ci-local` (shell executor)
//! against a local bare Git repository, the eSMS simulator, the state in
//! the repository and a local stub of the GitLab API (notes, the merged
//! merge request, its pipelines and the saved plan artifact).
//!
//! The story: a merge request plans and keeps one note up to date (also
//! when a later push fails validation: the note then shows the error, never
//! the old plan); its plan needs `--allow-replace`; an approver approves the
//! plan's checksum at one commit; a later push invalidates that approval;
//! after the merge the main pipeline runs `oapkg doctor`, refuses (nothing
//! bought, a note says why), and once the last push is approved applies
//! exactly the reviewed plan and pushes the state.
//!
//! The S3-state example's pipeline (`examples/gitops/s3-state/
//! .gitlab-ci.yml`, the same `ci/` scripts) runs the same way against a
//! moto server holding its bucket: read-only plans, a refusal without the
//! approval, the approved plan applied into the bucket, nothing committed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use esms_sim::{Call, SimConfig, Simulator};
use serde_json::{Value, json};

use crate::gitops_tools;
use crate::s3::server::{self as s3_server, S3Server};
use crate::support::{API_KEY, Run, SECRET_KEY, TODAY};

const PROJECT: &str = "team/packages";
const HOST: &str = "gitlab.example.com";
const MR: u64 = 7;
const REPLACED: &str = "4097311281936189049@2026-12-01";
const ADDED: &str = "745830328927467685@2027-01-01";

/// One note on the merge request (or a comment on a commit).
#[derive(Clone, Debug)]
struct Note {
    id: u64,
    author: String,
    body: String,
}

/// What the stub GitLab knows.
#[derive(Default)]
struct Gitlab {
    notes: Vec<Note>,
    commit_comments: Vec<String>,
    /// The merge request's head commit, and the commit that merged it.
    head: String,
    merged_by: Option<String>,
    /// Pipelines of the merge request: (id, sha, status, plan artifact).
    pipelines: Vec<(u64, String, String, Option<Vec<u8>>)>,
    next_id: u64,
}

struct Stub {
    url: String,
    state: Arc<Mutex<Gitlab>>,
}

impl Stub {
    fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/v4", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(Gitlab {
            next_id: 100,
            ..Gitlab::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        Stub { url, state }
    }

    fn gitlab(&self) -> std::sync::MutexGuard<'_, Gitlab> {
        self.state.lock().unwrap()
    }

    fn note(&self, author: &str, body: &str) {
        let mut g = self.gitlab();
        g.next_id += 1;
        let id = g.next_id;
        g.notes.push(Note {
            id,
            author: author.into(),
            body: body.into(),
        });
    }

    /// The notes holding oapkg's marker for the example's state.
    fn plan_notes(&self) -> Vec<Note> {
        self.plan_notes_for("state/oapkg.state.json")
    }

    /// The notes holding oapkg's marker for `state`.
    fn plan_notes_for(&self, state: &str) -> Vec<Note> {
        let marker = format!("<!-- oapkg-plan: {state} -->");
        self.gitlab()
            .notes
            .iter()
            .filter(|n| n.body.contains(&marker))
            .cloned()
            .collect()
    }

    /// The bot's notes saying that nothing was applied.
    fn refusals(&self) -> Vec<String> {
        self.gitlab()
            .notes
            .iter()
            .filter(|n| {
                n.author == "oapkg-bot" && n.body.starts_with("**oapkg did not apply anything.")
            })
            .map(|n| n.body.clone())
            .collect()
    }
}

fn serve(stream: TcpStream, state: &Mutex<Gitlab>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut length = 0;
    let mut token_ok = false;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower == "private-token: api-token" {
            token_ok = true;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let path = target.split('?').next().unwrap_or("");
    let path = path
        .strip_prefix("/api/v4/projects/1/")
        .unwrap_or("")
        .to_owned();
    let segments: Vec<&str> = path.split('/').collect();
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut g = state.lock().unwrap();
    let mr = MR.to_string();
    let (status, answer): (u16, Vec<u8>) = if !token_ok {
        (401, b"{\"message\":\"401 Unauthorized\"}".to_vec())
    } else {
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["merge_requests", iid, "notes"]) if *iid == mr => {
                let list: Vec<Value> = g
                    .notes
                    .iter()
                    .map(|n| json!({"id": n.id, "body": n.body, "author": {"username": n.author}}))
                    .collect();
                (200, serde_json::to_vec(&list).unwrap())
            }
            ("POST", ["merge_requests", iid, "notes"]) if *iid == mr => {
                g.next_id += 1;
                let id = g.next_id;
                let body = sent["body"].as_str().unwrap_or_default().to_owned();
                g.notes.push(Note {
                    id,
                    author: "oapkg-bot".into(),
                    body,
                });
                (201, json!({"id": id}).to_string().into_bytes())
            }
            ("PUT", ["merge_requests", iid, "notes", id]) if *iid == mr => {
                let body = sent["body"].as_str().unwrap_or_default().to_owned();
                match g.notes.iter_mut().find(|n| n.id.to_string() == *id) {
                    Some(note) => {
                        note.body = body;
                        (200, b"{}".to_vec())
                    }
                    None => (404, b"{}".to_vec()),
                }
            }
            ("GET", ["repository", "commits", sha, "merge_requests"]) => {
                let list = match &g.merged_by {
                    Some(merge) if merge == sha => {
                        vec![json!({"iid": MR, "sha": g.head, "state": "merged"})]
                    }
                    _ => Vec::new(),
                };
                (200, serde_json::to_vec(&list).unwrap())
            }
            ("POST", ["repository", "commits", _, "comments"]) => {
                let note = sent["note"].as_str().unwrap_or_default().to_owned();
                g.commit_comments.push(note);
                (201, b"{}".to_vec())
            }
            ("GET", ["merge_requests", iid, "pipelines"]) if *iid == mr => {
                let mut list: Vec<Value> = g
                    .pipelines
                    .iter()
                    .map(|(id, sha, status, _)| json!({"id": id, "sha": sha, "status": status}))
                    .collect();
                list.reverse(); // newest first, as GitLab lists them
                (200, serde_json::to_vec(&list).unwrap())
            }
            ("GET", ["pipelines", id, "jobs"]) => {
                let found = g.pipelines.iter().find(|p| p.0.to_string() == *id);
                let list = match found {
                    Some((pid, _, status, _)) if status == "success" => {
                        vec![json!({"id": pid * 10, "name": "plan", "status": "success"})]
                    }
                    _ => Vec::new(),
                };
                (200, serde_json::to_vec(&list).unwrap())
            }
            ("GET", ["jobs", id, "artifacts", "oapkg.plan"]) => {
                let found = g
                    .pipelines
                    .iter()
                    .find(|p| (p.0 * 10).to_string() == *id)
                    .and_then(|p| p.3.clone());
                match found {
                    Some(bytes) => (200, bytes),
                    None => (404, b"{\"message\":\"404 Not found\"}".to_vec()),
                }
            }
            _ => (404, b"{\"message\":\"404 Not found\"}".to_vec()),
        }
    };
    drop(g);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.len()
    )?;
    stream.write_all(&answer)?;
    stream.flush()
}

/// `git ARGS` in `dir`, isolated from the user's configuration.
#[track_caller]
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    let run = Run::from(out);
    assert_eq!(run.code, 0, "git {args:?}: {}{}", run.stdout, run.stderr);
    run.stdout.trim().to_owned()
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

struct Pipeline<'a> {
    glc: PathBuf,
    work: &'a Path,
    origin: &'a Path,
    stub: &'a Stub,
    esms: String,
    /// More CI/CD variables for every pipeline, and for default-branch
    /// pipelines only (protected variables).
    extra: Vec<String>,
    protected: Vec<String>,
}

impl Pipeline<'_> {
    /// Runs `gitlab-ci-local` in the checkout: a merge request pipeline
    /// (`mr`) or a default-branch pipeline.
    fn run(&self, mr: bool) -> Run {
        let bin = Path::new(env!("CARGO_BIN_EXE_oapkg")).parent().unwrap();
        let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
        let push_url = format!("https://oauth2:push-token@{HOST}/{PROJECT}.git");
        let mut variables = vec![
            format!("CI_API_V4_URL={}", self.stub.url),
            "CI_PROJECT_ID=1".to_owned(),
            format!("CI_SERVER_HOST={HOST}"),
            format!("CI_PROJECT_PATH={PROJECT}"),
            "GITLAB_API_TOKEN=api-token".to_owned(),
            "STATE_PUSH_TOKEN=push-token".to_owned(),
            "OAPKG_APPROVERS=alice".to_owned(),
            format!("ESMS_API_KEY={API_KEY}"),
            format!("ESMS_SECRET_KEY={SECRET_KEY}"),
        ];
        if mr {
            variables.push("CI_PIPELINE_SOURCE=merge_request_event".to_owned());
            variables.push(format!("CI_MERGE_REQUEST_IID={MR}"));
        } else {
            variables.push("CI_PIPELINE_SOURCE=push".to_owned());
            variables.extend(self.protected.iter().cloned());
        }
        variables.extend(self.extra.iter().cloned());
        let mut cmd = Command::new(&self.glc);
        cmd.arg("--force-shell-executor")
            .arg("--no-color")
            .args(["--ignore-predefined-vars", "CI_API_V4_URL,CI_PROJECT_ID,CI_SERVER_HOST,CI_PROJECT_PATH,CI_PIPELINE_SOURCE,CI_MERGE_REQUEST_IID"]);
        for variable in &variables {
            cmd.args(["--variable", variable]);
        }
        cmd.current_dir(self.work)
            .env("PATH", path)
            .env("OAPKG_TODAY", TODAY)
            .env("ESMS_ENDPOINT", &self.esms)
            .env("OAPKG_RETRY_MIN_DELAY_MS", "10")
            .env("OAPKG_PUSH_PAUSE", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_COUNT", "1")
            .env(
                "GIT_CONFIG_KEY_0",
                format!("url.{}.insteadOf", self.origin.display()),
            )
            .env("GIT_CONFIG_VALUE_0", push_url)
            .env_remove("OAPKG_STATE")
            .env_remove("ESMS_API_KEY")
            .env_remove("ESMS_SECRET_KEY")
            .env_remove("RUST_LOG");
        // Nothing of this machine's S3 settings: only the variables given.
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
        Run::from(cmd.output().expect("run gitlab-ci-local"))
    }

    /// A merge request pipeline at the checkout's head; its saved plan is
    /// kept as the stub's artifact of that pipeline.
    fn merge_request(&self) -> Run {
        let run = self.run(true);
        let sha = git(self.work, &["rev-parse", "HEAD"]);
        let artifact = self.work.join(".gitlab-ci-local/artifacts/plan/oapkg.plan");
        let plan = std::fs::read(&artifact).ok();
        let mut g = self.stub.gitlab();
        g.next_id += 1;
        let id = g.next_id;
        let status = if run.code == 0 { "success" } else { "failed" };
        g.pipelines.push((id, sha.clone(), status.into(), plan));
        g.head = sha;
        drop(g);
        let _ = std::fs::remove_dir_all(self.work.join(".gitlab-ci-local/artifacts"));
        run
    }
}

fn transcript(run: &Run) -> String {
    format!("exit {}\n{}{}", run.code, run.stdout, run.stderr)
}

/// A GitLab project as the tests use it: a bare `origin`, a checkout of
/// it on `main` (the example, declaring the first OA's package as
/// advanced, and a state recording it, imported: bought before oapkg), the
/// simulator holding both OAs, the stub API, and gitlab-ci-local. `None`
/// (after saying why) where a tool is missing outside CI.
struct World {
    sim: esms_sim::BlockingSimHandle,
    stub: Stub,
    origin: tempfile::TempDir,
    work: tempfile::TempDir,
    glc: PathBuf,
    /// The example's manifest (both packages, the first premium).
    manifest: String,
}

impl World {
    fn new() -> Option<World> {
        if Command::new("git").arg("--version").output().is_err() {
            return gitops_tools::unavailable("git is not installed");
        }
        if Command::new("curl").arg("--version").output().is_err()
            || Command::new("jq").arg("--version").output().is_err()
        {
            return gitops_tools::unavailable("the pipeline's scripts need curl and jq");
        }
        let tools = gitops_tools::tools()?;
        let glc = tools.join("npm/node_modules/.bin/gitlab-ci-local");
        let example =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/gitops/state-in-repo");
        let sim = Simulator::spawn_blocking(
            SimConfig::new()
                .keys(API_KEY, SECRET_KEY)
                .oaid("4097311281936189049")
                .oaid("745830328927467685"),
        )
        .unwrap();
        let origin = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().to_path_buf();
        let dir = dir.as_path();
        git(origin.path(), &["init", "-q", "--bare", "-b", "main"]);
        copy_dir(&example, dir);
        let manifest = std::fs::read_to_string(dir.join("packages/svoucher.yaml")).unwrap();
        let (first, _) = manifest
            .split_once("  - oaid: \"745830328927467685\"")
            .unwrap();
        std::fs::write(
            dir.join("packages/svoucher.yaml"),
            first.replace("tier: premium", "tier: advanced"),
        )
        .unwrap();
        let world = World {
            sim,
            stub: Stub::start(),
            origin,
            work,
            glc,
            manifest,
        };
        world
            .oapkg(&[
                "state",
                "import",
                "--oaid",
                "4097311281936189049",
                "--tier",
                "advanced",
                "--start",
                "2026-12-01",
                "--duration",
                "12",
            ])
            .code(0);
        std::fs::write(dir.join(".gitignore"), ".gitlab-ci-local/\n").unwrap();
        git(dir, &["init", "-q", "-b", "main"]);
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", "Manifests and the state"]);
        let url = world.origin.path().display().to_string();
        git(dir, &["remote", "add", "origin", &url]);
        git(dir, &["push", "-q", "origin", "main"]);
        git(dir, &["remote", "set-head", "origin", "main"]);
        Some(world)
    }

    /// `oapkg ARGS` in the checkout, on its state.
    fn oapkg(&self, args: &[&str]) -> Run {
        Run::from(
            Command::new(env!("CARGO_BIN_EXE_oapkg"))
                .args(args)
                .current_dir(self.work.path())
                .env("OAPKG_TODAY", TODAY)
                .env_remove("OAPKG_STATE")
                .output()
                .unwrap(),
        )
    }

    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            glc: self.glc.clone(),
            work: self.work.path(),
            origin: self.origin.path(),
            stub: &self.stub,
            esms: self.sim.control().endpoint(),
            extra: Vec::new(),
            protected: Vec::new(),
        }
    }
}

#[test]
fn the_gitlab_pipeline_applies_exactly_the_approved_reviewed_plan_run_by_gitlab_ci_local() {
    let Some(world) = World::new() else {
        return;
    };
    let pipeline = world.pipeline();
    let stub = &world.stub;
    let sim = world.sim.control();
    let work = world.work.path();
    let origin = &world.origin;
    let manifest = &world.manifest;

    // 1. A merge request: the first package becomes premium (a replace,
    //    which needs --allow-replace) and a second one is added.
    git(work, &["checkout", "-q", "-b", "more-packages"]);
    std::fs::write(work.join("packages/svoucher.yaml"), manifest).unwrap();
    git(work, &["commit", "-q", "-am", "Premium for main, add care"]);
    let run = pipeline.merge_request();
    assert_eq!(run.code, 0, "{}", transcript(&run));
    let notes = stub.plan_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0].body;
    assert!(
        note.starts_with("**Plan: 1 to purchase, 1 to replace"),
        "{note}"
    );
    assert!(note.contains("`--allow-replace`"), "{note}");
    let h1 = git(work, &["rev-parse", "HEAD"]);
    let approval_line = |note: &str| -> String {
        note.lines()
            .find_map(|l| {
                l.strip_prefix("> `oapkg-approve ")
                    .and_then(|l| l.strip_suffix('`'))
            })
            .map(|token| format!("oapkg-approve {token}"))
            .unwrap_or_else(|| panic!("no approval line in:\n{note}"))
    };
    let approve_h1 = approval_line(note);
    assert!(approve_h1.ends_with(&format!("@{h1}")), "{approve_h1}");
    // --check-account asked the account (read-only); nothing bought.
    assert!(sim.requests().iter().any(|r| r.call == Call::ListOas));
    assert!(sim.ledger().is_empty());

    // 2. A push that breaks validation: the same note now shows the error,
    //    never the old plan; the pipeline fails.
    std::fs::write(
        work.join("packages/svoucher.yaml"),
        manifest.replace("tier: premium", "tier: platinum"),
    )
    .unwrap();
    git(work, &["commit", "-q", "-am", "Typo"]);
    let run = pipeline.merge_request();
    assert_ne!(run.code, 0, "{}", transcript(&run));
    let notes = stub.plan_notes();
    assert_eq!(notes.len(), 1, "one note per root: {notes:?}");
    assert!(
        notes[0].body.contains("the manifests are invalid"),
        "{}",
        notes[0].body
    );
    assert!(notes[0].body.contains("platinum"), "{}", notes[0].body);
    assert!(!notes[0].body.contains("**Plan:"), "{}", notes[0].body);

    // 3. Fixed; an approver approves the plan at this commit; someone who
    //    is not an approver "approves" too (ignored).
    std::fs::write(work.join("packages/svoucher.yaml"), manifest).unwrap();
    git(work, &["commit", "-q", "-am", "Fix the typo"]);
    let run = pipeline.merge_request();
    assert_eq!(run.code, 0, "{}", transcript(&run));
    let approve_h3 = approval_line(&stub.plan_notes()[0].body);
    stub.note("alice", &approve_h3);
    stub.note("mallory", &approve_h3.replace("@", "@x"));

    // 4. A later push (a comment: the same changes) invalidates it.
    let edited = format!("# Reviewed by the shop team.\n{manifest}");
    std::fs::write(work.join("packages/svoucher.yaml"), &edited).unwrap();
    git(work, &["commit", "-q", "-am", "A comment"]);
    let run = pipeline.merge_request();
    assert_eq!(run.code, 0, "{}", transcript(&run));
    let h4 = git(work, &["rev-parse", "HEAD"]);
    let approve_h4 = approval_line(&stub.plan_notes()[0].body);
    assert_ne!(approve_h4, approve_h3);
    assert!(approve_h4.ends_with(&format!("@{h4}")), "{approve_h4}");
    assert_eq!(stub.plan_notes().len(), 1);

    // 5. Merged. The main pipeline: doctor, then the reviewed plan, whose
    //    approval is for an earlier push: refused, nothing bought, a note
    //    says why, the job fails.
    git(work, &["checkout", "-q", "main"]);
    git(
        work,
        &["merge", "-q", "--no-ff", "more-packages", "-m", "Merge !7"],
    );
    let merge = git(work, &["rev-parse", "HEAD"]);
    stub.gitlab().merged_by = Some(merge.clone());
    let state_before = std::fs::read(work.join("state/oapkg.state.json")).unwrap();
    let run = pipeline.run(false);
    assert_ne!(run.code, 0, "{}", transcript(&run));
    assert!(run.stdout.contains("oapkg doctor"), "{}", transcript(&run));
    assert!(sim.ledger().is_empty(), "nothing bought");
    let refusals: Vec<String> = stub
        .gitlab()
        .notes
        .iter()
        .filter(|n| {
            n.author == "oapkg-bot" && n.body.starts_with("**oapkg did not apply anything.")
        })
        .map(|n| n.body.clone())
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0].contains("needs `--allow-replace`"),
        "{}",
        refusals[0]
    );
    assert!(refusals[0].contains(&approve_h4), "{}", refusals[0]);
    assert_eq!(
        std::fs::read(work.join("state/oapkg.state.json")).unwrap(),
        state_before
    );

    // 6. The approver approves the last push: the main pipeline applies
    //    exactly the reviewed plan, once, and pushes the state.
    stub.note("alice", &approve_h4);
    let run = pipeline.run(false);
    assert_eq!(run.code, 0, "{}", transcript(&run));
    let charged: BTreeMap<String, usize> = sim.ledger().iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(format!("{}@{}", c.oaid, c.dateactive)).or_default() += 1;
        m
    });
    assert_eq!(
        charged,
        BTreeMap::from([(ADDED.to_owned(), 1), (REPLACED.to_owned(), 1)])
    );
    let pushed = git(origin.path(), &["show", "main:state/oapkg.state.json"]);
    let state: Value = serde_json::from_str(&pushed).unwrap();
    assert_eq!(state["packages"][ADDED]["status"], "submitted", "{pushed}");
    assert_eq!(
        state["packages"][REPLACED]["spec"]["tier"], "premium",
        "{pushed}"
    );
    assert!(h4 != merge);
    assert!(stub.gitlab().commit_comments.is_empty());
}

#[test]
fn the_gitlab_pipeline_buys_nothing_when_main_moved_since_the_review_and_says_why() {
    let Some(world) = World::new() else {
        return;
    };
    let pipeline = world.pipeline();
    let work = world.work.path();
    let sim = world.sim.control();
    // A merge request adding the second package only (no flag needed).
    git(work, &["checkout", "-q", "-b", "add-care"]);
    let yaml = std::fs::read_to_string(work.join("packages/svoucher.yaml")).unwrap();
    let (_, care) = world
        .manifest
        .split_once("  - oaid: \"745830328927467685\"")
        .unwrap();
    std::fs::write(
        work.join("packages/svoucher.yaml"),
        format!("{yaml}  - oaid: \"745830328927467685\"{care}"),
    )
    .unwrap();
    git(work, &["commit", "-q", "-am", "Add care"]);
    let run = pipeline.merge_request();
    assert_eq!(run.code, 0, "{}", transcript(&run));
    assert!(
        world.stub.plan_notes()[0]
            .body
            .starts_with("**Plan: 1 to purchase, 0 to replace")
    );
    assert!(!world.stub.plan_notes()[0].body.contains("oapkg-approve"));

    // Meanwhile main's state moved: a purchase recorded by hand.
    git(work, &["checkout", "-q", "main"]);
    world
        .oapkg(&[
            "state",
            "import",
            "--oaid",
            "4097311281936189049",
            "--tier",
            "advanced",
            "--start",
            "2027-12-01",
            "--duration",
            "1",
        ])
        .code(0);
    git(
        work,
        &[
            "commit",
            "-q",
            "-am",
            "Record a purchase made on the portal",
        ],
    );
    git(
        work,
        &["merge", "-q", "--no-ff", "add-care", "-m", "Merge !7"],
    );
    let merge = git(work, &["rev-parse", "HEAD"]);
    world.stub.gitlab().merged_by = Some(merge);

    let run = pipeline.run(false);
    assert_ne!(run.code, 0, "{}", transcript(&run));
    assert!(sim.ledger().is_empty(), "nothing bought");
    let g = world.stub.gitlab();
    let refusal = g
        .notes
        .iter()
        .find(|n| n.body.starts_with("**oapkg did not apply anything."))
        .unwrap_or_else(|| panic!("no refusal note: {:?}", g.notes));
    assert!(
        refusal
            .body
            .contains("the state moved (serial 1 when reviewed, 2 now)"),
        "{}",
        refusal.body
    );
}

/// The S3-state example's GitLab pipeline, run for real by gitlab-ci-local
/// against moto holding the example's bucket: a merge request plans with
/// the read-only key only (one note: a replace needing `--allow-replace`
/// and the approval line); after the merge, without an approval of that
/// plan, the main pipeline runs `oapkg doctor`, buys nothing and a note
/// says why; once approved it applies exactly the reviewed plan into the
/// bucket, and nothing is committed.
#[test]
fn the_s3_state_gitlab_pipeline_applies_the_approved_reviewed_plan_into_the_bucket_run_by_gitlab_ci_local()
 {
    const STATE: &str = "s3://example-oapkg-state/prod";
    const READ_KEY: &str = "AKIAOAPKGREADONLY7Q2Z";
    const READ_SECRET: &str = "oapkgReadOnlySecretKey1a2b3c4d5e6f7g8h";
    if Command::new("git").arg("--version").output().is_err() {
        gitops_tools::unavailable::<()>("git is not installed");
        return;
    }
    if Command::new("curl").arg("--version").output().is_err()
        || Command::new("jq").arg("--version").output().is_err()
    {
        gitops_tools::unavailable::<()>("the pipeline's scripts need curl and jq");
        return;
    }
    let Some(tools) = gitops_tools::tools() else {
        return;
    };
    let Some(server) = S3Server::moto_recording() else {
        return;
    };
    server.create_bucket("example-oapkg-state");
    let sim = Simulator::spawn_blocking(
        SimConfig::new()
            .keys(API_KEY, SECRET_KEY)
            .oaid("4097311281936189049")
            .oaid("745830328927467685"),
    )
    .unwrap();
    let origin = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    git(origin.path(), &["init", "-q", "--bare", "-b", "main"]);
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/gitops/s3-state"),
        dir,
    );
    let oapkg = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oapkg"));
        cmd.args(args)
            .current_dir(dir)
            .env("OAPKG_TODAY", TODAY)
            .env_remove("OAPKG_STATE");
        server.configure(&mut cmd);
        Run::from(cmd.output().unwrap())
    };
    // The bucket's state records the first OA's package as advanced; main
    // declares just that.
    oapkg(&["init", "--state", STATE]).code(0);
    oapkg(&[
        "state",
        "import",
        "--state",
        STATE,
        "--oaid",
        "4097311281936189049",
        "--tier",
        "advanced",
        "--start",
        "2026-12-01",
        "--duration",
        "12",
    ])
    .code(0);
    let manifest = std::fs::read_to_string(dir.join("packages/svoucher.yaml")).unwrap();
    let (first, _) = manifest
        .split_once("  - oaid: \"745830328927467685\"")
        .unwrap();
    std::fs::write(
        dir.join("packages/svoucher.yaml"),
        first.replace("tier: premium", "tier: advanced"),
    )
    .unwrap();
    std::fs::write(dir.join(".gitignore"), ".gitlab-ci-local/\n").unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "Manifests"]);
    let url = origin.path().display().to_string();
    git(dir, &["remote", "add", "origin", &url]);
    git(dir, &["push", "-q", "origin", "main"]);
    git(dir, &["remote", "set-head", "origin", "main"]);

    let stub = Stub::start();
    let pipeline = Pipeline {
        glc: tools.join("npm/node_modules/.bin/gitlab-ci-local"),
        work: dir,
        origin: origin.path(),
        stub: &stub,
        esms: sim.control().endpoint(),
        extra: vec![
            format!("AWS_ENDPOINT_URL={}", server.endpoint),
            format!("OAPKG_READ_AWS_ACCESS_KEY_ID={READ_KEY}"),
            format!("OAPKG_READ_AWS_SECRET_ACCESS_KEY={READ_SECRET}"),
        ],
        protected: vec![
            format!("AWS_ACCESS_KEY_ID={}", s3_server::ACCESS_KEY),
            format!("AWS_SECRET_ACCESS_KEY={}", s3_server::SECRET_KEY),
        ],
    };

    // 1. A merge request: premium for the first OA (a replace), and a
    //    second package. The plan reads the bucket with the read key only.
    git(dir, &["checkout", "-q", "-b", "more-packages"]);
    std::fs::write(dir.join("packages/svoucher.yaml"), &manifest).unwrap();
    git(dir, &["commit", "-q", "-am", "Premium for main, add care"]);
    let seen = server.requests().len();
    let run = pipeline.merge_request();
    assert_eq!(run.code, 0, "{}", transcript(&run));
    let requests = server.requests().split_off(seen);
    assert!(!requests.is_empty(), "the plan read the bucket");
    for request in &requests {
        assert!(
            matches!(request.method.as_str(), "GET" | "HEAD") && request.access_key == READ_KEY,
            "a merge request only reads, with the read key: {request:?}"
        );
    }
    let notes = stub.plan_notes_for(STATE);
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0].body;
    assert!(
        note.starts_with("**Plan: 1 to purchase, 1 to replace")
            && note.contains("`--allow-replace`"),
        "{note}"
    );
    let approval = note
        .lines()
        .find_map(|l| l.strip_prefix("> `").and_then(|l| l.strip_suffix('`')))
        .filter(|l| l.starts_with("oapkg-approve "))
        .unwrap_or_else(|| panic!("no approval line in:\n{note}"))
        .to_owned();
    let head = git(dir, &["rev-parse", "HEAD"]);
    assert!(approval.ends_with(&format!("@{head}")), "{approval}");
    assert!(sim.control().ledger().is_empty(), "planning buys nothing");

    // 2. Merged without an approval: doctor, then nothing bought, a note.
    git(dir, &["checkout", "-q", "main"]);
    git(
        dir,
        &["merge", "-q", "--no-ff", "more-packages", "-m", "Merge !7"],
    );
    let merge = git(dir, &["rev-parse", "HEAD"]);
    stub.gitlab().merged_by = Some(merge);
    let run = pipeline.run(false);
    assert_ne!(run.code, 0, "{}", transcript(&run));
    assert!(run.stdout.contains("oapkg doctor"), "{}", transcript(&run));
    assert!(sim.control().ledger().is_empty(), "nothing bought");
    let refusals = stub.refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0].contains("needs `--allow-replace`") && refusals[0].contains(&approval),
        "{}",
        refusals[0]
    );

    // 3. Approved: exactly the reviewed plan, once, into the bucket.
    stub.note("alice", &approval);
    let run = pipeline.run(false);
    assert_eq!(run.code, 0, "{}", transcript(&run));
    let charged: BTreeMap<String, usize> =
        sim.control()
            .ledger()
            .iter()
            .fold(BTreeMap::new(), |mut m, c| {
                *m.entry(format!("{}@{}", c.oaid, c.dateactive)).or_default() += 1;
                m
            });
    assert_eq!(
        charged,
        BTreeMap::from([(ADDED.to_owned(), 1), (REPLACED.to_owned(), 1)])
    );
    let listed = oapkg(&["state", "list", "--format", "json", "--state", STATE]);
    listed.code(0);
    let keys: Vec<String> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap().to_owned())
        .collect();
    assert!(keys.contains(&ADDED.to_owned()), "{keys:?}");
    assert_eq!(
        git(origin.path(), &["rev-list", "--count", "main"]),
        "1",
        "nothing committed back"
    );
    assert!(!dir.join("state").exists(), "no state file");
}
