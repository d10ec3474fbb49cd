//! Who holds a state's lock or lease: the label written into the lock file
//! (or the S3 lease) so that a blocked writer, `plan`'s `in flight` and
//! every error can name the process (pid, host, command, since, CI job).
//! A leaf: errors carry it, so it depends on nothing of the state's.

use std::fs;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Who holds the lock, as written into the lock file.
///
/// Read leniently (no `deny_unknown_fields`, unreadable means `None`): it is
/// only a label for messages, and a label from another oapkg version must
/// not stop anyone from reporting who holds the lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    /// The command line that took the lock, e.g. `oapkg apply`.
    pub command: String,
    /// When the lock was taken (whole seconds).
    pub since: Timestamp,
    /// The CI job that runs the holder, where there is one (GitHub Actions'
    /// run URL, GitLab's `CI_JOB_URL`): on a shared state the host alone
    /// (a runner) says little. Written only when known. (A boxed `str`
    /// keeps `StateError`, which carries a holder, small.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_job: Option<Box<str>>,
}

impl LockHolder {
    pub(crate) fn current(command: &str) -> LockHolder {
        let now = Timestamp::now();
        LockHolder {
            pid: std::process::id(),
            host: hostname(),
            command: command.to_owned(),
            since: Timestamp::from_second(now.as_second()).unwrap_or(now),
            ci_job: ci_job(),
        }
    }
}

/// The CI job this process runs in, from the variables GitHub Actions and
/// GitLab CI set.
fn ci_job() -> Option<Box<str>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let (Some(server), Some(repository), Some(run)) = (
        var("GITHUB_SERVER_URL"),
        var("GITHUB_REPOSITORY"),
        var("GITHUB_RUN_ID"),
    ) {
        return Some(format!("{server}/{repository}/actions/runs/{run}").into());
    }
    var("CI_JOB_URL").map(String::into_boxed_str)
}

/// This machine's name, for the holder label and `state confirm`'s "by"
/// (no libc call needed on Linux).
pub(crate) fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
