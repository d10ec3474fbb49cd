//! `oapkg coverage`: per OA, the periods its packages cover, the gaps from
//! today on, when coverage ends, its policy and the next renewal
//! ([`crate::coverage::report()`]). Reads the manifests and the state; no
//! network unless `--online`, which adds the account's OAs (`GetListZOA`)
//! that nothing declares, records or keeps covered.

use anyhow::Context as _;
use clap::Args;

use super::apply::{ConnectionArgs, client};
use super::context::print;
use super::{Context, PlanFormat};
use crate::coverage::{self, OaCoverage, render};
use crate::exit::ExitStatus;
use crate::spec::Oaid;

#[derive(Debug, Args)]
// The connection flags mean nothing without `--online`.
#[command(
    mut_arg("timeout", |a| a.requires("online")),
    mut_arg("connect_timeout", |a| a.requires("online")),
    mut_arg("credentials", |a| a.requires("online"))
)]
pub struct CoverageArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Also list the account's OAs (eSMS `GetListZOA`) that nothing covers;
    /// needs credentials, like apply
    #[arg(long)]
    pub online: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Read the OAs that have a Zalo token first and show Zalo's date beside
    /// the recorded coverage, and the drift (records nothing)
    #[arg(long)]
    pub refresh: bool,
    #[command(flatten)]
    pub zalo: super::refresh::ZaloArgs,
}

pub fn run(context: &Context, args: &CoverageArgs) -> anyhow::Result<ExitStatus> {
    // Credentials first, like apply: a missing key is reported before
    // anything else happens.
    let client = if args.online {
        Some(client(&args.connection)?)
    } else {
        None
    };
    let today = context.today()?;
    let manifests = context.manifests(today)?;
    let state = context.load_state()?.state;
    // As `validate` reports them: no "starts before today" for a recorded package.
    context.print_warnings(&crate::plan::inputs::validate_warnings(
        &manifests,
        &state.packages,
        today,
    ));
    let mut report = coverage::report(
        &manifests.desired,
        &state.packages,
        &manifests.policies,
        today,
    );
    if let Some(client) = client {
        add_account_oas(&mut report, &client, &context.runtime)?;
    }
    if args.refresh {
        for row in super::refresh::zalo_rows_of(context, &args.zalo, &state, today)? {
            match report.iter_mut().find(|oa| oa.oaid == row.oaid) {
                Some(oa) => oa.zalo = Some(row.zalo),
                None => {
                    let mut oa = OaCoverage::uncovered(row.oaid, None);
                    oa.zalo = Some(row.zalo);
                    report.push(oa);
                }
            }
        }
        report.sort_by(|a, b| a.oaid.cmp(&b.oaid));
    }
    let out = match args.format {
        PlanFormat::Text => render::text(&report, today),
        PlanFormat::Json => render::json(&report)?,
        PlanFormat::Markdown => render::markdown(&report, today),
    };
    print(&out)?;
    Ok(ExitStatus::Success)
}

/// The account's OAs that are not in the report yet, as entries with no
/// periods, the report kept sorted by OAID. An OAID eSMS sends that is not
/// one (not all digits) is skipped with a warning.
fn add_account_oas(
    report: &mut Vec<OaCoverage>,
    client: &crate::esms::Client,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let oas = runtime
        .block_on(client.list_oas())
        .context("coverage --online: could not list the account's OAs (ZNS/GetListZOA)")?;
    for oa in oas {
        let Ok(oaid) = Oaid::parse(&oa.oaid) else {
            tracing::warn!(oaid = %oa.oaid, "eSMS listed an OA whose id is not an OAID; skipped");
            continue;
        };
        if let Err(at) = report.binary_search_by(|c| c.oaid.cmp(&oaid)) {
            let name = (!oa.name.is_empty()).then_some(oa.name);
            report.insert(at, OaCoverage::uncovered(oaid, name));
        }
    }
    Ok(())
}
