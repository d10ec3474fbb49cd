//! `examples/monitoring/` checked by real Prometheus tools from Debian's
//! `prometheus` package (installed by `tests/monitoring/setup.sh` when
//! missing; these machines and CI run as root): `promtool check rules`,
//! `promtool test rules` with a unit test for every alert, each
//! `runbook_url` resolving to a section of `docs/operations.md`, and a
//! real `prometheus` server scraping a running `watch --apply --listen`
//! until the unconfirmed and held alerts are `firing` in its HTTP API,
//! then evaluating every query of the Grafana dashboard.
//!
//! Outside CI a missing tool skips with a message; with `CI=true` it fails.
//! The live test takes about ten seconds (1 s scrape and evaluation).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use esms_sim::{Fault, FaultRule, SimConfig, Stage};
use serde_json::Value;

use crate::support::Env;
use crate::watch::{doc, pkg};
use crate::watch_apply::{outcome, simulator, wait_until};
use crate::watch_service::{free_addr, get, start_service};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn monitoring() -> PathBuf {
    root().join("examples/monitoring")
}

fn runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `promtool` and `prometheus` run, installing them with the
/// project's set-up script (under a lock: tests run in parallel) when not.
fn tools() -> bool {
    if runs("promtool") && runs("prometheus") {
        return true;
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    std::fs::create_dir_all(&target).unwrap();
    // One lock for every test that installs with apt-get.
    let lock = std::fs::File::create(target.join("apt-setup.lock")).unwrap();
    lock.lock().unwrap();
    let setup = Command::new("sh")
        .arg(root().join("tests/monitoring/setup.sh"))
        .output();
    drop(lock);
    if runs("promtool") && runs("prometheus") {
        return true;
    }
    let why = match setup {
        Ok(out) => format!(
            "tests/monitoring/setup.sh could not install them: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(error) => format!("cannot run tests/monitoring/setup.sh: {error}"),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the monitoring tests need promtool and prometheus on CI: {why}");
    }
    eprintln!("SKIPPED: monitoring test: promtool/prometheus missing; {why}");
    false
}

/// A YAML or JSON file as JSON.
fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every alerting rule of alerts.yml.
fn alerts() -> Vec<Value> {
    yaml(&monitoring().join("alerts.yml"))["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .filter(|r| r["alert"].is_string())
        .collect()
}

/// GitHub's anchor for a markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_has_a_promtool_unit_test_and_a_runbook_section() {
    let rules = alerts();
    assert!(rules.len() >= 9, "{}", rules.len());
    // The runbook: each alert's runbook_url names a heading of the
    // operations guide.
    let guide = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let anchors: BTreeSet<String> = guide
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let tests = yaml(&monitoring().join("alerts.test.yml"));
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .collect();
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap();
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or("");
        let fragment = url
            .strip_prefix("https://github.com/your-org/oapkg/blob/main/docs/operations.md#")
            .unwrap_or_else(|| {
                panic!("{name}: runbook_url {url:?} is not into docs/operations.md")
            });
        assert!(
            anchors.contains(fragment),
            "{name}: no section #{fragment} in docs/operations.md"
        );
        for field in ["summary", "description"] {
            assert!(rule["annotations"][field].is_string(), "{name}: {field}");
        }
        // A unit test where it fires.
        assert!(
            cases.iter().any(|c| c["alertname"] == name
                && c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())),
            "{name}: no promtool unit test expects it to fire"
        );
    }
    if !tools() {
        return;
    }
    let check = Command::new("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(monitoring())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let test = Command::new("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(monitoring())
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

/// `GET path` on 127.0.0.1:port as HTTP/1.0 (no chunked answer): the
/// status and the body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `oapkg_…` metric names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("oapkg_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// A running `prometheus`, stopped when dropped.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second and evaluates alerts.yml every second,
    /// each `for:` shortened to 1 s (the expressions are the file's own).
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = std::fs::read_to_string(monitoring().join("alerts.yml")).unwrap();
        let rules: String = rules
            .lines()
            .map(|line| {
                if line.trim_start().starts_with("for: ") {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    format!("{indent}for: 1s\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(dir.path().join("alerts.yml"), rules).unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\nscrape_configs:\n  - job_name: oapkg-watch\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port: u16 = free_addr().rsplit(':').next().unwrap().parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            port,
            _dir: dir,
        };
        wait_until("prometheus ready", Duration::from_secs(30), || {
            http_get(port, "/-/ready").is_some_and(|(status, _)| status == 200)
        });
        prometheus
    }

    fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(self.port, path).expect("an answer from prometheus");
        let value: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
        assert_eq!(status, 200, "{path}: {body}");
        value
    }

    /// The states of the alerts, by name.
    fn alert_states(&self) -> Vec<(String, String)> {
        self.api("/api/v1/alerts")["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap().to_owned(),
                    a["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

#[test]
fn a_real_prometheus_scraping_a_watch_fires_the_unconfirmed_and_held_alerts_and_runs_every_dashboard_query()
 {
    if !tools() {
        return;
    }
    let started = Instant::now();
    // 1003's answer is lost after eSMS charged it: unconfirmed. 9999 is
    // not on the account: held by the pre-flight.
    let sim = simulator(SimConfig::new().fault(FaultRule::for_oaid(
        "1003",
        Fault::ServerError {
            stage: Stage::AfterCommit,
        },
    )));
    let env = Env::with_state();
    env.file(
        "a.yaml",
        doc(&[pkg(1001, 12), pkg(1003, 12), pkg(9999, 12)]),
    );
    let addr = free_addr();
    let mut watch = start_service(&env, &sim, &["-f", "a.yaml", "--listen", &addr]);
    assert_eq!(outcome(&mut watch)["outcome"], "failed");
    let prometheus = Prometheus::start(&addr);
    wait_until(
        "OapkgUnconfirmedPackages and OapkgHeldChanges firing",
        Duration::from_secs(60),
        || {
            let states = prometheus.alert_states();
            ["OapkgUnconfirmedPackages", "OapkgHeldChanges"]
                .iter()
                .all(|name| states.iter().any(|(n, s)| n == name && s == "firing"))
        },
    );
    let states = prometheus.alert_states();
    // Nothing that is not the case fires: the watch is up, its keys good.
    for quiet in [
        "OapkgWatchDown",
        "OapkgWatchAbsent",
        "OapkgCredentialsRejected",
        "OapkgDrift",
    ] {
        assert!(
            !states.iter().any(|(n, _)| n == quiet),
            "{quiet}: {states:?}"
        );
    }

    // Every dashboard query, as Grafana would send it, evaluates; each
    // metric it names is one the watch exports (or one a feature this
    // watch does not run exports: read-back, the Git source).
    let exported: BTreeSet<String> = get(&addr, "/metrics")
        .1
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    let elsewhere = [
        "oapkg_drift_oas",
        "oapkg_git_commit_info",
        "oapkg_git_refused",
    ];
    let dashboard = yaml(&monitoring().join("grafana-dashboard.json"));
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in metric_names(expr) {
                assert!(
                    exported.contains(&name) || elsewhere.contains(&name.as_str()),
                    "{}: {name} is no oapkg metric",
                    panel["title"]
                );
            }
            let promql = expr.replace("$__rate_interval", "1m");
            let answer =
                prometheus.api(&format!("/api/v1/query?query={}", percent_encode(&promql)));
            assert_eq!(answer["status"], "success", "{promql}: {answer}");
            queries += 1;
        }
    }
    assert!(queries >= 15, "{queries}");
    // The alert rules name only metrics that exist, too.
    for rule in alerts() {
        for name in metric_names(rule["expr"].as_str().unwrap()) {
            assert!(
                exported.contains(&name) || elsewhere.contains(&name.as_str()),
                "{}: {name}",
                rule["alert"]
            );
        }
    }
    assert_eq!(watch.terminate(), 0);
    eprintln!("live Prometheus test: {:?}", started.elapsed());
}
