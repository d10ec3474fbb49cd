//! `oapkg doctor`: everything a run depends on, checked, each result typed
//! with what was found and how to fix it.
//!
//! A check is one function in [`CHECKS`]; adding one (the Zalo tokens, say)
//! is writing a function of [`Inputs`] and appending it there. Each gives
//! zero or more [`Check`]s (zero: it does not apply here, e.g. the S3 check
//! on a local state), in the order printed.
//!
//! Read-only: no purchase request (the eSMS check is one `GetBalance_json`
//! call), no state written, no lock taken (a local lock is only tested, as
//! `plan` does for `in flight`, and an S3 lease only read). The one write is
//! S3's conditional-write check, which every buying process makes too: it
//! writes and removes probe objects beside the state, never the state.
//! This module prints nothing; `cli/doctor.rs` renders the checks.

use std::path::PathBuf;

use jiff::civil::Date;

use crate::esms::{CallError, Client};
use crate::manifest;
use crate::state::{BackupSummary, LockHolder, LockStatus, Store};

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Could not be checked because something it needs failed (named in
    /// `detail`); not a failure of its own.
    Skip,
}

impl Outcome {
    /// The word for programs: `pass`, `fail`, `skip`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// A stable name: `manifests`, `state`, `lock`, `backup`,
    /// `conditional_writes`, `esms`, `balance`.
    pub name: &'static str,
    pub outcome: Outcome,
    /// What was found, in one sentence.
    pub detail: String,
    /// How to fix it (failures, and passes worth a note).
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Skip,
            detail: detail.into(),
            fix: None,
        }
    }
}

/// What the checks look at. The eSMS client is made by the caller (from
/// flags and environment); when it could not be, `esms` holds why.
pub struct Inputs<'a> {
    pub files: &'a [PathBuf],
    pub store: &'a Store,
    pub today: Date,
    pub esms: Result<&'a Client, String>,
    /// Where the eSMS call runs (the process's one runtime).
    pub runtime: &'a tokio::runtime::Handle,
}

/// One check: its lines of the report.
pub type CheckFn = fn(&Inputs<'_>) -> Vec<Check>;

/// Every check, in the order run and shown.
pub const CHECKS: &[CheckFn] = &[manifests, state, lock, backup, conditional_writes, esms];

/// Runs every check in [`CHECKS`].
pub fn run(inputs: &Inputs<'_>) -> Vec<Check> {
    CHECKS.iter().flat_map(|check| check(inputs)).collect()
}

/// Whether every check passed (skips are not failures).
pub fn all_pass(checks: &[Check]) -> bool {
    checks.iter().all(|check| check.outcome != Outcome::Fail)
}

fn manifests(inputs: &Inputs<'_>) -> Vec<Check> {
    const NAME: &str = "manifests";
    let check = match manifest::load(inputs.files, inputs.today) {
        Ok(manifests) => Check::pass(
            NAME,
            format!(
                "{} declared in {} file{}, valid",
                crate::text::packages(manifests.desired.packages.len()),
                manifests.files.len(),
                crate::text::plural(manifests.files.len())
            ),
        ),
        Err(error) => {
            let first = error
                .errors
                .first()
                .map(|d| d.to_string().replace('\n', " "))
                .unwrap_or_default();
            let found = match error.errors.len() {
                1 => first,
                n => format!("{n} errors, the first: {first}"),
            };
            Check::fail(
                NAME,
                found,
                "Run `oapkg validate` to see every error with its file and line, and fix them",
            )
        }
    };
    vec![check]
}

fn state(inputs: &Inputs<'_>) -> Vec<Check> {
    const NAME: &str = "state";
    let location = inputs.store.path().display();
    let check = match inputs.store.load() {
        Ok(loaded) if loaded.id.exists() => Check::pass(
            NAME,
            format!(
                "{location} readable, checksum good: serial {}, {} recorded",
                loaded.id.serial,
                crate::text::packages(loaded.state.packages.len())
            ),
        ),
        Ok(_) => Check::fail(
            NAME,
            format!("no state at {location}: apply refuses to run without one"),
            "Pass the right --state (or OAPKG_STATE) if packages were bought; to start, create it with `oapkg init`",
        ),
        Err(error) => Check::fail(
            NAME,
            format!("{location} refused: {error}"),
            error
                .hint()
                .unwrap_or_else(|| {
                    "Fix what the error names (a damaged state file comes back with `oapkg state restore` \
                     when its backup is good), then run `oapkg doctor` again"
                        .into()
                }),
        ),
    };
    vec![check]
}

fn lock(inputs: &Inputs<'_>) -> Vec<Check> {
    const NAME: &str = "lock";
    let words = inputs.store.words();
    let check = match inputs.store.lock_status() {
        Ok(LockStatus::Free) => Check::pass(NAME, format!("the {} is free", words.lock)),
        Ok(LockStatus::Left { holder }) => Check {
            fix: Some(
                "Nothing to do: the next writer takes the lock over it (`oapkg state unlock` removes it)"
                    .into(),
            ),
            ..Check::pass(
                NAME,
                format!(
                    "free; a lock file left by a process that is gone ({})",
                    holder_text(holder.as_ref())
                ),
            )
        },
        Ok(LockStatus::Held { holder }) => Check::fail(
            NAME,
            format!("the {} is held by {}", words.lock, holder_text(holder.as_ref())),
            format!(
                "Wait for that run to finish (apply waits with --lock-timeout SECS); if it is gone, `oapkg state unlock` frees the {}",
                words.lock
            ),
        ),
        Err(error) => Check::fail(
            NAME,
            format!("could not read the {}: {error}", words.lock),
            error
                .hint()
                .unwrap_or_else(|| "Fix what the error names".into()),
        ),
    };
    vec![check]
}

fn holder_text(holder: Option<&LockHolder>) -> String {
    match holder {
        Some(h) => {
            let mut text = format!(
                "pid {} on {}, `{}`, since {}",
                h.pid, h.host, h.command, h.since
            );
            if let Some(job) = &h.ci_job {
                text.push_str(&format!(", job {job}"));
            }
            crate::text::escape_controls(&text).into_owned()
        }
        None => "a holder that left no readable label".into(),
    }
}

fn backup(inputs: &Inputs<'_>) -> Vec<Check> {
    const NAME: &str = "backup";
    let check = match inputs.store.backup() {
        None => Check::skip(
            NAME,
            "an s3:// state keeps no backup object: turn on the bucket's versioning",
        ),
        Some(Ok(Some(BackupSummary::Valid {
            serial, packages, ..
        }))) => Check::pass(
            NAME,
            format!(
                "present, checksum good: serial {serial}, {} recorded (what `oapkg state restore` brings back)",
                crate::text::packages(packages)
            ),
        ),
        Some(Ok(Some(BackupSummary::Refused(why)))) => Check::fail(
            NAME,
            format!("present but refused: {why}"),
            "It is rewritten at the next write of the state; until then `oapkg state restore` has nothing to bring back",
        ),
        Some(Ok(None)) => Check::pass(NAME, "none yet: the next write of the state makes one"),
        Some(Err(error)) => Check::fail(
            NAME,
            format!("present but refused: {error}"),
            "It is rewritten at the next write of the state; until then `oapkg state restore` has nothing to bring back",
        ),
    };
    vec![check]
}

fn conditional_writes(inputs: &Inputs<'_>) -> Vec<Check> {
    const NAME: &str = "conditional_writes";
    match inputs.store.check_conditional_writes() {
        None => Vec::new(),
        Some(Ok(())) => vec![Check::pass(
            NAME,
            "the bucket is reachable and refuses conflicting conditional writes (If-None-Match, If-Match)",
        )],
        Some(Err(error)) => vec![Check::fail(
            NAME,
            error.to_string(),
            error.hint().unwrap_or_else(|| {
                "Check the bucket, AWS_ENDPOINT_URL and the AWS credentials; use a store that enforces conditional writes"
                    .into()
            }),
        )],
    }
}

fn esms(inputs: &Inputs<'_>) -> Vec<Check> {
    const NAME: &str = "esms";
    let client = match &inputs.esms {
        Ok(client) => *client,
        Err(why) => {
            return vec![
                Check::fail(
                    NAME,
                    why.clone(),
                    "Set ESMS_API_KEY and ESMS_SECRET_KEY (or pass --credentials FILE) and, for another endpoint, ESMS_ENDPOINT",
                ),
                Check::skip("balance", "not asked: no eSMS client"),
            ];
        }
    };
    let endpoint = client.endpoint().to_string();
    match inputs.runtime.block_on(client.balance()) {
        Ok(balance) => {
            let amount = if balance.amount.is_finite() && balance.amount >= 0.0 {
                crate::prices::thousands(balance.amount.floor() as u64)
            } else {
                crate::text::escape_controls(&balance.amount.to_string()).into_owned()
            };
            vec![
                Check::pass(NAME, format!("{endpoint} answered; credentials accepted")),
                Check::pass("balance", format!("{amount} on the account")),
            ]
        }
        Err(error) => {
            let fix = match &error {
                CallError::Refused { .. } if error.is_fatal() => {
                    "Check ESMS_API_KEY / ESMS_SECRET_KEY (or --credentials FILE), the caller's IP whitelist and the account on the eSMS portal"
                }
                CallError::Refused { .. } => "Check the account on the eSMS portal",
                CallError::NotSent { .. } | CallError::NoAnswer { .. } => {
                    "Check --endpoint / ESMS_ENDPOINT, the network and any proxy"
                }
                CallError::RateLimited { .. } => "Wait a moment and run `oapkg doctor` again",
            };
            vec![
                Check::fail(NAME, format!("{endpoint}: {error}"), fix),
                Check::skip("balance", "not read: the eSMS call failed"),
            ]
        }
    }
}
