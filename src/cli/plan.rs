//! `oapkg plan`: the diff of manifests against state, rendered for a person,
//! a program, or a pull-request comment; optionally saved for `apply`.

use std::path::{Path, PathBuf};

use clap::Args;

use super::context::print;
use super::{Context, PlanFormat};
use crate::exit::ExitStatus;
use crate::ops::plan_file;
use crate::plan::{Plan, render, saved::SavedPlan};
use crate::text::shell_word;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Save the plan to this file, for `oapkg apply PLANFILE`
    #[arg(long, value_name = "PLANFILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when nothing is to be bought, 2 when something is, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Ask eSMS (read-only, nothing is bought) what apply's pre-flight would:
    /// that the account holds every OA to be bought and, with a price list,
    /// that its balance covers the plan. Problems are plan errors (exit 1).
    /// Needs the eSMS credentials
    #[arg(long)]
    pub check_account: bool,
    #[command(flatten)]
    pub connection: super::apply::ConnectionArgs,
    /// Read the OAs that have a Zalo token first and show Zalo's date beside
    /// the recorded coverage, and the drift (records nothing)
    #[arg(long)]
    pub refresh: bool,
    #[command(flatten)]
    pub zalo: super::refresh::ZaloArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A plan saved by `oapkg plan --out`
    #[arg(value_name = "PLANFILE")]
    pub planfile: PathBuf,
    /// Output format
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

pub fn run(context: &Context, args: &PlanArgs) -> anyhow::Result<ExitStatus> {
    // Before anything else, as apply: the keys, and manifests free of them
    // (a key pasted into a name would be printed with the plan).
    let client = match args.check_account {
        true => {
            let credentials = super::apply::credentials(&args.connection)?;
            crate::ops::apply::refuse_keys_in_manifests(
                &context.global.files,
                &credentials.forbidden(),
            )?;
            Some(super::apply::client_for(&args.connection, credentials)?)
        }
        false => None,
    };
    let mut plan = context.make_plan()?;
    context.note_missing_state(&plan.state);
    if let Some(in_flight) = super::state::in_flight(context) {
        plan.mark_in_flight(&in_flight.keys, in_flight.holder);
    }
    if let Some(client) = &client {
        let retry = super::apply::retry_policy()?;
        plan.errors = context.runtime.block_on(crate::apply::plan_account_check(
            &plan,
            client,
            &retry,
            &crate::apply::CancelSignal::never(),
        ));
    }
    let zalo = if args.refresh {
        Some(super::refresh::zalo_rows(context, &args.zalo)?)
    } else {
        None
    };
    match (args.format, &zalo) {
        // Streamed: a plan of many purchases is a large document.
        (PlanFormat::Json, None) => render::write_json(&plan, std::io::stdout().lock())?,
        // With Zalo's rows: one more top-level member, `zalo`.
        (PlanFormat::Json, Some(rows)) => {
            let mut document: serde_json::Value = serde_json::from_str(&render::json(&plan))?;
            if let Some(map) = document.as_object_mut() {
                map.insert("zalo".to_owned(), serde_json::to_value(rows)?);
            }
            print(&format!("{}\n", serde_json::to_string_pretty(&document)?))?;
        }
        (format, rows) => {
            let mut out = rendered(
                context,
                &plan,
                format,
                &context.global.files,
                args.out.as_deref(),
            );
            match (format, rows) {
                (PlanFormat::Markdown, Some(rows)) => {
                    out.push_str(&crate::readback::rows_markdown(rows))
                }
                (_, Some(rows)) => out.push_str(&crate::readback::rows_text(rows)),
                _ => {}
            }
            print(&out)?
        }
    }
    if !plan.errors.is_empty() {
        // Shown in the plan itself; a plan apply would refuse is not saved.
        if !context.global.quiet {
            let label = crate::plan::render::Paint(context.color_stderr()).error("error");
            eprintln!(
                "{label}: the eSMS account check found {} problem(s), shown in the plan{}",
                plan.errors.len(),
                if args.out.is_some() {
                    "; the plan was not saved"
                } else {
                    ""
                }
            );
        }
        return Ok(ExitStatus::Failure);
    }
    if let Some(path) = &args.out {
        let mut saved = SavedPlan::from_plan(&plan);
        saved.manifest_files = context
            .global
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        saved.manifest_file_hashes = plan_file::file_hashes(&context.global.files);
        plan_file::write(&saved, path)?;
        if args.format == PlanFormat::Text && !context.global.quiet {
            print(&format!(
                "\nSaved the plan to {0}. To perform exactly this plan, run: oapkg apply {0}\n",
                path.display()
            ))?;
        }
    }
    Ok(if args.detailed_exitcode && plan.buys_anything() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

/// `oapkg show PLANFILE`: a saved plan rendered as `plan` rendered it, so the
/// apply job of a pipeline can print what was reviewed. Reads nothing else.
pub fn show(context: &Context, args: &ShowArgs) -> anyhow::Result<ExitStatus> {
    let saved = plan_file::read(&args.planfile)?;
    let manifests: Vec<PathBuf> = saved.manifest_files.iter().map(PathBuf::from).collect();
    let plan = plan_file::parse(&saved, &args.planfile)?;
    print(&rendered(
        context,
        &plan,
        args.format,
        &manifests,
        Some(&args.planfile),
    ))?;
    Ok(ExitStatus::Success)
}

/// `oapkg apply [PLANFILE | -f PATH...] [--state STATE]`: the command that
/// carries out a plan made from `manifests` (saved at `planfile`, which
/// then names them), shell-quoted, without the guard flags.
pub(super) fn apply_command(
    context: &Context,
    planfile: Option<&Path>,
    manifests: &[PathBuf],
) -> String {
    let mut words = vec!["oapkg".to_owned(), "apply".to_owned()];
    let word = |path: &Path| shell_word(&path.display().to_string());
    match planfile {
        Some(planfile) => words.push(word(planfile)),
        None => {
            for file in manifests {
                words.extend(["-f".to_owned(), word(file)]);
            }
        }
    }
    if context.global.state != Path::new(crate::state::DEFAULT_STATE_PATH) {
        words.extend(["--state".to_owned(), word(&context.global.state)]);
    }
    words.join(" ")
}

/// `manifests` are the `-f` paths the plan was made from (empty: the
/// default), named in the markdown comment with the state; `planfile` is
/// where the plan is saved, if it is.
fn rendered(
    context: &Context,
    plan: &Plan,
    format: PlanFormat,
    manifests: &[PathBuf],
    planfile: Option<&Path>,
) -> String {
    match format {
        PlanFormat::Text => render::text_with(
            plan,
            &render::TextOptions {
                color: context.color_stdout(),
            },
            &render::Guards {
                command: apply_command(context, planfile, manifests),
                ..render::Guards::default()
            },
        ),
        PlanFormat::Json => render::json(plan),
        PlanFormat::Markdown => render::markdown(
            plan,
            &render::MarkdownOptions {
                project: Some(project(context, manifests)),
                ..render::MarkdownOptions::default()
            },
        ),
    }
}

/// The state (`--state`, as given) and the manifests, for the markdown
/// comment's header line and marker.
fn project(context: &Context, manifests: &[PathBuf]) -> render::Project {
    render::Project {
        state: context.global.state.display().to_string(),
        manifests: crate::manifest::paths_or_default(manifests)
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    }
}
