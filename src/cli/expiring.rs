//! `oapkg expiring`: OAs whose packages run out soon, for cron alerts.

use clap::Args;

use super::context::print;
use super::{Context, ListFormat};
use crate::exit::ExitStatus;
use crate::expiring;
use crate::text::escape_controls;

#[derive(Debug, Args)]
pub struct ExpiringArgs {
    /// Window in days from today
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub within: u32,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

pub fn run(context: &Context, args: &ExpiringArgs) -> anyhow::Result<ExitStatus> {
    let today = context.today()?;
    let manifests = context.manifests(today)?;
    context.print_warnings(&manifests.warnings);
    let state = context.load_state()?.state;
    let mut found = expiring::find(&manifests.desired, &state.packages, today, args.within);
    // A coverage policy renews its OA before it runs out: not an alert.
    found.retain(|e| !manifests.policies.iter().any(|p| p.oaid == e.oaid));
    match args.format {
        ListFormat::Json => print(&format!("{}\n", serde_json::to_string_pretty(&found)?))?,
        ListFormat::Text if found.is_empty() => print(&format!(
            "No OA runs out within {} days (today is {today}).\n",
            args.within
        ))?,
        ListFormat::Text => {
            let mut out = format!(
                "{} OA{} run{} out within {} days (today is {today}), the soonest first:\n\n",
                found.len(),
                if found.len() == 1 { "" } else { "s" },
                if found.len() == 1 { "s" } else { "" },
                args.within
            );
            let header = [
                "DAYS LEFT",
                "ENDS",
                "OAID",
                "NAME",
                "TIER",
                "LAST PACKAGE",
                "KNOWN FROM",
            ]
            .map(String::from);
            // Names come from files.
            let rows: Vec<[String; 7]> = found
                .iter()
                .map(|e| {
                    [
                        e.days_left.to_string(),
                        e.end.to_string(),
                        e.oaid.to_string(),
                        escape_controls(e.name.as_deref().unwrap_or("-")).into_owned(),
                        e.tier.to_string(),
                        e.key.to_string(),
                        e.known_from.to_owned(),
                    ]
                })
                .collect();
            out.push_str(&super::state::table(&header, &rows));
            out.push_str(
                "\nDeclare a renewal starting the day after the end date to keep the OA running.\n",
            );
            print(&out)?;
        }
    }
    Ok(if found.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Changes
    })
}
