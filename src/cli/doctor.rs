//! `oapkg doctor`: prints [`crate::ops::doctor`]'s checks, one line each
//! with its fix, as text or JSON; exit 0 when none failed, 1 otherwise.

use clap::Args;
use serde::Serialize;

use super::context::print;
use super::{Context, ListFormat};
use crate::exit::ExitStatus;
use crate::ops::doctor::{self, Check, Outcome};
use crate::plan::render::Paint;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    #[command(flatten)]
    pub connection: super::apply::ConnectionArgs,
}

/// The `--format json` document (`docs/json-outputs.md`).
#[derive(Serialize)]
struct JsonReport<'a> {
    ok: bool,
    checks: Vec<JsonCheck<'a>>,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    name: &'a str,
    status: &'a str,
    detail: &'a str,
    fix: Option<&'a str>,
}

pub fn run(context: &Context, args: &DoctorArgs) -> anyhow::Result<ExitStatus> {
    let today = context.today()?;
    // Why no client could be made is the eSMS check's failure, not the
    // command's: every other check still runs.
    let client = super::apply::client(&args.connection).map_err(|error| format!("{error:#}"));
    let checks = doctor::run(&doctor::Inputs {
        files: &context.global.files,
        store: &context.store,
        today,
        esms: client.as_ref().map_err(Clone::clone),
        runtime: &context.runtime,
    });
    let ok = doctor::all_pass(&checks);
    match args.format {
        ListFormat::Json => {
            let report = JsonReport {
                ok,
                checks: checks
                    .iter()
                    .map(|c| JsonCheck {
                        name: c.name,
                        status: c.outcome.name(),
                        detail: &c.detail,
                        fix: c.fix.as_deref(),
                    })
                    .collect(),
            };
            print(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
        }
        ListFormat::Text => print(&text(&checks, Paint(context.color_stdout())))?,
    }
    Ok(if ok {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// One line per check (`ok`, `FAIL` or `skip`, its name, what was found,
/// and the fix after `->`), then a summary line.
fn text(checks: &[Check], paint: Paint) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        let mark = match check.outcome {
            Outcome::Pass => paint.good("ok  "),
            Outcome::Fail => paint.bad("FAIL"),
            Outcome::Skip => "skip".to_owned(),
        };
        out.push_str(&format!(
            "{mark}  {:width$}  {}",
            check.name,
            crate::text::escape_controls(&check.detail)
        ));
        if let Some(fix) = &check.fix {
            out.push_str(&format!(
                " -> {}",
                paint.hint(&crate::text::escape_controls(fix))
            ));
        }
        out.push('\n');
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    out.push('\n');
    out.push_str(&if failed == 0 {
        paint.all_good(&format!("All checks passed ({} run).", checks.len()))
    } else {
        paint.bad(&format!(
            "{failed} of {} checks failed: a run would fail or might; fix them as shown.",
            checks.len()
        ))
    });
    out.push('\n');
    out
}
