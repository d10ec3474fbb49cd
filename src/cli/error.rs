//! Errors as the user sees them: what went wrong, what kind of failure it
//! is, and what to do about it (jj's `CommandError` with hints, Terraform's
//! summary and detail).
//!
//! A command returns any error; [`CliError::new`] reads its cause chain for
//! the library errors it knows and takes from them
//!
//! - the [`ErrorKind`]: a [`User`](ErrorKind::User) error (input, files,
//!   network, a refusal) exits 1; a [`Bug`](ErrorKind::Bug) (an error only a
//!   mistake in oapkg can cause) exits [`ExitStatus::Bug`] and asks for a
//!   report;
//! - the hints: the "what to do" of the errors that keep it apart from their
//!   message (`StateError::hint`, `StalePlan::hint`, the guards' flags...),
//!   plus any a command attached with [`with_hint`];
//! - the warnings of invalid manifests, printed before the error.
//!
//! ```text
//! warning: <manifest warning>          (invalid manifests only)
//! error: <message>
//!   caused by: <cause>                 (one line per cause)
//! hint: <what to do>                   (zero or more)
//! ```
//!
//! A panic is a bug too: [`install_panic_hook`] prints it in the same shape
//! (the panic's own text only, never the process's data).

use std::error::Error as StdError;
use std::fmt;

use crate::apply::{ApplyError, GuardRefusal, PreflightError};
use crate::exit::ExitStatus;
use crate::manifest::ManifestError;
use crate::ops::apply::ApplyInputsError;
use crate::ops::plan::InputsError;
use crate::ops::plan_file::{PlanFileError, SavedPlanError};
use crate::ops::state_edit::EditRefused;
use crate::plan::render::Paint;
use crate::plan::saved::StalePlan;
use crate::state::StateError;
use crate::text::escape_controls;

/// What kind of failure an error is, which decides the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input, a refused file, a guard, the network, a held lock: exit 1.
    User,
    /// A mistake in oapkg itself: exit [`ExitStatus::Bug`], asking for a report.
    Bug,
}

/// The words that ask for a report, after a bug.
pub const REPORT_HINT: &str =
    "oapkg hit an internal bug; please report it with this message and the command that was run";

/// An error ready to be shown: the error with its cause chain, its kind, and
/// the hints printed after it.
#[derive(Debug)]
pub struct CliError {
    pub kind: ErrorKind,
    pub error: anyhow::Error,
    pub hints: Vec<String>,
}

impl CliError {
    /// Classifies `error` by the library errors in its chain.
    pub fn new(error: anyhow::Error) -> CliError {
        let mut kind = ErrorKind::User;
        let mut hints: Vec<String> = Vec::new();
        for cause in error.chain() {
            let known = Known::of(cause);
            if known.bug {
                kind = ErrorKind::Bug;
            }
            if let Some(hint) = known.hint
                && !hints.contains(&hint)
            {
                hints.push(hint);
            }
        }
        if kind == ErrorKind::Bug {
            hints.push(REPORT_HINT.to_owned());
        }
        CliError { kind, error, hints }
    }

    /// The same error with one more hint.
    pub fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hints.push(hint.into());
        self
    }

    pub fn exit_status(&self) -> ExitStatus {
        match self.kind {
            ErrorKind::User => ExitStatus::Failure,
            ErrorKind::Bug => ExitStatus::Bug,
        }
    }

    /// The warnings found alongside invalid manifests, if that is the error.
    pub fn manifest_warnings(&self) -> &[crate::manifest::Diagnostic] {
        self.error
            .chain()
            .find_map(|cause| Known::of(cause).manifests)
            .map_or(&[], |e| &e.warnings)
    }

    /// `error: <message>`, the cause chain one cause per line, then the
    /// hints as `hint: …` lines.
    pub fn render(&self, style: Paint) -> String {
        // Messages quote file names, manifest text and server answers: their
        // control characters, line breaks included, are escaped so that none
        // can move the cursor or fake a line. Only a manifest error keeps its
        // line breaks (one line per problem): its diagnostics escape what
        // they quote; so does a refused state edit (one line per reason).
        let escaped = |cause: &(dyn StdError + 'static)| {
            let text = cause.to_string();
            let known = Known::of(cause);
            if known.manifests.is_some() || known.lines_escaped {
                text
            } else {
                escape_controls(&text).into_owned()
            }
        };
        let mut chain = self.error.chain();
        let mut out = format!(
            "{}: {}",
            style.error("error"),
            chain.next().map(escaped).unwrap_or_default()
        );
        for cause in chain {
            out.push_str(&format!("\n  caused by: {}", escaped(cause)));
        }
        for hint in &self.hints {
            out.push_str(&format!(
                "\n{}: {}",
                style.hint("hint"),
                escape_controls(hint)
            ));
        }
        out
    }
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(error: E) -> CliError {
        CliError::new(error.into())
    }
}

/// An error with a hint a command attached ([`with_hint`]): shows as the
/// error it wraps; the hint is printed after the cause chain.
#[derive(Debug)]
pub struct Hinted {
    error: anyhow::Error,
    hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl StdError for Hinted {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.chain().nth(1)
    }
}

/// `error` with `hint` printed after it: what to do, apart from what went
/// wrong.
pub fn with_hint(error: impl Into<anyhow::Error>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        error: error.into(),
        hint: hint.into(),
    })
}

/// What one cause of the chain says about the whole error.
#[derive(Default)]
struct Known<'a> {
    hint: Option<String>,
    bug: bool,
    manifests: Option<&'a ManifestError>,
    /// Its message escapes what it quotes itself, line by line: its line
    /// breaks are kept.
    lines_escaped: bool,
}

impl<'a> Known<'a> {
    fn of(cause: &'a (dyn StdError + 'static)) -> Known<'a> {
        let hint = |hint: Option<String>| Known {
            hint,
            ..Known::default()
        };
        if let Some(e) = cause.downcast_ref::<Hinted>() {
            // Its wrapped error's own head is not a chain element: read it too.
            let inner = Known::of(e.error.as_ref());
            return Known {
                hint: Some(e.hint.clone()),
                bug: inner.bug,
                manifests: inner.manifests,
                lines_escaped: inner.lines_escaped,
            };
        }
        if let Some(e) = cause.downcast_ref::<ManifestError>() {
            return Known {
                manifests: Some(e),
                ..Known::default()
            };
        }
        if cause.is::<EditRefused>() {
            return Known {
                lines_escaped: true,
                ..Known::default()
            };
        }
        if let Some(e) = cause.downcast_ref::<StateError>() {
            return Known {
                hint: e.hint(),
                bug: e.is_bug(),
                ..Known::default()
            };
        }
        if let Some(e) = cause.downcast_ref::<InputsError>() {
            return match e {
                InputsError::Manifests(e) => Known::of(e),
                InputsError::State(e) => Known::of(e),
                InputsError::Cost(_) => Known::default(),
            };
        }
        if let Some(e) = cause.downcast_ref::<ApplyInputsError>() {
            return match e {
                ApplyInputsError::KeyInManifests(e) => Known::of(e),
                ApplyInputsError::Saved(e) => Known::of(e),
                ApplyInputsError::Inputs(e) => Known::of(e),
                ApplyInputsError::NoState(e) => Known::of(e),
                ApplyInputsError::JsonUnapproved => hint(e.hint().map(str::to_owned)),
            };
        }
        if let Some(e) = cause.downcast_ref::<SavedPlanError>() {
            return match e {
                SavedPlanError::File(e) => Known::of(e),
                SavedPlanError::Inputs(e) => Known::of(e),
                SavedPlanError::Stale { stale, .. } => Known::of(stale),
            };
        }
        if let Some(e) = cause.downcast_ref::<ApplyError>() {
            return Known {
                hint: e.hint(),
                bug: e.is_bug(),
                ..Known::default()
            };
        }
        if let Some(e) = cause.downcast_ref::<PlanFileError>() {
            return hint(e.hint().map(str::to_owned));
        }
        if let Some(e) = cause.downcast_ref::<StalePlan>() {
            return hint(Some(e.hint().to_owned()));
        }
        if let Some(e) = cause.downcast_ref::<GuardRefusal>() {
            return hint(e.hint().map(str::to_owned));
        }
        if let Some(e) = cause.downcast_ref::<PreflightError>() {
            return hint(e.hint().map(str::to_owned));
        }
        Known::default()
    }
}

/// Prints a panic as an internal bug (the panic's text and place only) in
/// the shape of an error. A panic on the main thread then ends the process
/// with Rust's panic status, 101 ([`ExitStatus::Bug`]); one on another
/// thread reaches the main thread as an error or a panic of its own.
pub fn install_panic_hook(style: Paint) {
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "{}: internal error{place}: {}\n{}: {REPORT_HINT}",
            style.error("error"),
            escape_controls(text),
            style.hint("hint"),
        );
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const PLAIN: Paint = Paint(false);

    #[test]
    fn a_user_error_exits_1_with_its_hint_after_the_chain() {
        let missing = StateError::Missing {
            path: PathBuf::from("s.json"),
        };
        let error = CliError::from(anyhow::Error::new(missing).context("cannot apply"));
        assert_eq!(error.kind, ErrorKind::User);
        assert_eq!(error.exit_status(), ExitStatus::Failure);
        let shown = error.render(PLAIN);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0], "error: cannot apply");
        assert!(lines[1].starts_with("  caused by: no state file at s.json"));
        assert!(
            lines[2].starts_with("hint: Pass the right --state"),
            "{shown}"
        );
        assert!(lines[2].contains("`oapkg init --state s.json`"), "{shown}");
    }

    #[test]
    fn an_error_only_a_bug_can_cause_exits_101_and_asks_for_a_report() {
        let wrong = StateError::WrongLock {
            path: PathBuf::from("a"),
            locked: PathBuf::from("b"),
        };
        // Wherever it sits in the chain, and wrapped by the ops' errors.
        let wrapped = InputsError::State(wrong);
        let error = CliError::from(anyhow::Error::new(wrapped).context("cannot plan"));
        assert_eq!(error.kind, ErrorKind::Bug);
        assert_eq!(error.exit_status().code(), 101);
        assert!(
            error
                .render(PLAIN)
                .ends_with(&format!("hint: {REPORT_HINT}"))
        );
    }

    #[test]
    fn a_hint_a_command_attaches_follows_the_error_unchanged() {
        let plain = anyhow::anyhow!("refusing to purchase");
        let hinted = CliError::from(with_hint(plain, "Run again with --auto-approve"));
        assert_eq!(
            hinted.render(PLAIN),
            "error: refusing to purchase\nhint: Run again with --auto-approve"
        );
        // Hints escape control characters like every message.
        let evil = CliError::new(anyhow::anyhow!("x")).hint("a\x1b[2Jb");
        assert!(evil.render(PLAIN).ends_with("hint: a\\u{1b}[2Jb"));
    }

    #[test]
    fn labels_are_coloured_only_when_asked() {
        let error = CliError::new(with_hint(anyhow::anyhow!("x"), "y"));
        assert_eq!(error.render(PLAIN), "error: x\nhint: y");
        let coloured = error.render(Paint(true));
        assert!(
            coloured.starts_with("\x1b[1m\x1b[31merror\x1b[0m: x"),
            "{coloured:?}"
        );
    }
}
