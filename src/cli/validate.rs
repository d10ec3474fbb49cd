//! `oapkg validate`: manifest checks only. It never reads the state (a
//! missing, damaged or remote one changes nothing, and no network is
//! used): its date warnings ("starts before today", "expired") are about
//! the manifests alone, as if nothing were recorded; `oapkg plan`, which
//! reads the state, repeats them only for packages it would buy.
//!
//! Three formats: `text` (a summary line on stdout, problems on stderr, as
//! every command reports them), `json` (one document for CI systems) and
//! `github` (GitHub Actions workflow commands, so each problem is an
//! annotation on its line of the pull request's diff). In `json` and
//! `github` every diagnostic, errors and warnings, goes to stdout, sorted
//! by file, line and column; the exit status is 1 when there is an error.
//! Paths that hold no manifest at all (an empty directory, one with only
//! foreign YAML) are an error in every format: a wrong `-f` must not pass
//! as a valid empty set.

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::Context;
use super::context::print;
use crate::exit::ExitStatus;
use crate::manifest::{Diagnostic, DiagnosticKind, Manifests};
use crate::text::{escape_controls, plural};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Output format: text (for people), json (for CI systems), github
    /// (GitHub Actions annotations on the pull request's lines)
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
    Github,
}

/// Why `validate` found nothing to check.
#[derive(Debug, thiserror::Error)]
#[error(
    "no manifest found in {}: no *.yaml / *.yml file with `apiVersion: oapkg/v1` there; \
     pass the manifests with -f PATH",
    paths
)]
pub struct NoManifest {
    paths: String,
}

pub fn run(context: &Context, args: &ValidateArgs) -> anyhow::Result<ExitStatus> {
    let today = context.today()?;
    let manifests = match crate::manifest::load(&context.global.files, today) {
        Ok(manifests) => manifests,
        // Text reports invalid manifests as every command does: an error.
        Err(error) if args.format == ValidateFormat::Text => return Err(error.into()),
        Err(invalid) => {
            let report = Report::new(0, &invalid.errors, &invalid.warnings);
            print_report(args.format, &report)?;
            return Ok(ExitStatus::Failure);
        }
    };
    let files = manifests_read(&manifests);
    if files == 0 {
        let paths = crate::manifest::paths_or_default(&context.global.files)
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // The skipped files say why they were not read.
        context.print_warnings(&manifests.warnings);
        return Err(NoManifest { paths }.into());
    }
    // Nothing recorded is known here: the state is never read.
    let warnings = crate::plan::inputs::validate_warnings(&manifests, &Default::default(), today);
    let packages = manifests.desired.packages.len();
    // The process ends after this report: freeing every declared package
    // one by one would only delay it (~7 % of a large validate).
    // `validate` runs once per process.
    std::mem::forget(manifests);
    if args.format == ValidateFormat::Text {
        context.print_warnings(&warnings);
        if !context.global.quiet {
            print(&format!(
                "The manifests are valid: {packages} package{} in {files} file{}.\n",
                plural(packages),
                plural(files)
            ))?;
        }
    } else {
        print_report(args.format, &Report::new(packages, &[], &warnings))?;
    }
    Ok(ExitStatus::Success)
}

fn print_report(format: ValidateFormat, report: &Report) -> anyhow::Result<()> {
    if format == ValidateFormat::Github {
        print(&github(report))
    } else {
        print(&format!("{}\n", serde_json::to_string_pretty(report)?))
    }
}

/// The files read as manifests: those found, less those skipped as not ours.
fn manifests_read(manifests: &Manifests) -> usize {
    let skipped = manifests
        .warnings
        .iter()
        .filter(|w| w.kind == DiagnosticKind::Skipped)
        .count();
    manifests.files.len().saturating_sub(skipped)
}

/// The `--format json` document: `{"valid", "packages", "diagnostics"}`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub valid: bool,
    /// Packages declared (0 when the manifests are invalid).
    pub packages: usize,
    /// Errors and warnings, sorted by file, line and column.
    pub diagnostics: Vec<JsonDiagnostic>,
}

/// One problem at one place. `line` and `column` are 1-based, `null` for
/// a problem about a whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsonDiagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Report {
    pub fn new(packages: usize, errors: &[Diagnostic], warnings: &[Diagnostic]) -> Report {
        let mut diagnostics: Vec<JsonDiagnostic> = errors
            .iter()
            .map(|d| JsonDiagnostic::new(Severity::Error, d))
            .chain(
                warnings
                    .iter()
                    .map(|d| JsonDiagnostic::new(Severity::Warning, d)),
            )
            .collect();
        // A whole-file problem (no line) comes first in its file.
        diagnostics.sort_by(|a, b| {
            (&a.file, a.line, a.column, a.severity, &a.message)
                .cmp(&(&b.file, b.line, b.column, b.severity, &b.message))
        });
        Report {
            valid: errors.is_empty(),
            packages,
            diagnostics,
        }
    }
}

impl JsonDiagnostic {
    /// The second place a diagnostic names (the other duplicate) is kept in
    /// the message, as the plan's warnings keep it.
    fn new(severity: Severity, diagnostic: &Diagnostic) -> JsonDiagnostic {
        let source = &diagnostic.source;
        let message = match &diagnostic.related {
            Some((other, note)) => format!("{} ({other}: {note})", diagnostic.message),
            None => diagnostic.message.clone(),
        };
        JsonDiagnostic {
            file: source.file.clone(),
            line: (source.line > 0).then_some(source.line),
            column: (source.line > 0 && source.column > 0).then_some(source.column),
            severity,
            message,
        }
    }
}

/// GitHub Actions workflow commands, one per diagnostic:
/// `::error file=F,line=L,col=C::message` (`::warning` for warnings), then
/// a plain summary line.
pub fn github(report: &Report) -> String {
    let mut out = String::new();
    for d in &report.diagnostics {
        let command = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut properties = vec![format!(
            "file={}",
            escape_property(&escape_controls(&d.file))
        )];
        if let Some(line) = d.line {
            properties.push(format!("line={line}"));
        }
        if let Some(column) = d.column {
            properties.push(format!("col={column}"));
        }
        properties.push(format!("title={}", escape_property("oapkg validate")));
        out.push_str(&format!(
            "::{command} {}::{}\n",
            properties.join(","),
            // No control character reaches the Actions log raw.
            escape_data(&escape_controls(&d.message))
        ));
    }
    let errors = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if report.valid {
        out.push_str(&format!(
            "The manifests are valid: {} package{}.\n",
            report.packages,
            plural(report.packages)
        ));
    } else {
        out.push_str(&format!(
            "The manifests have {errors} error{}.\n",
            plural(errors)
        ));
    }
    out
}

/// A workflow command's message: `%`, CR and LF escaped (GitHub's
/// `escapeData`).
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: as a message, plus `:` and `,`
/// (GitHub's `escapeProperty`).
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_command_escapes_follow_githubs_rules() {
        assert_eq!(escape_data("100% a\r\nb: c,d"), "100%25 a%0D%0Ab: c,d");
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
    }
}
