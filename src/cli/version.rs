//! `oapkg version`: what this binary is (version, Git commit, cargo
//! profile) and which formats it reads and writes, so an operator can tell
//! which build runs on a host and whether it reads a given state file.

use clap::Args;
use serde::Serialize;

use super::ListFormat;
use super::context::print;
use crate::build_info;
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

/// The `--format json` document (docs/json-outputs.md).
#[derive(Debug, Serialize)]
struct Version {
    name: &'static str,
    version: &'static str,
    commit: &'static str,
    profile: &'static str,
    /// The one state `format_version` this binary reads and writes.
    state_format_version: u64,
    /// The `plan --format json` document's `format_version`.
    plan_format_version: u32,
}

pub fn run(args: &VersionArgs) -> anyhow::Result<ExitStatus> {
    match args.format {
        ListFormat::Text => print(&format!("oapkg {}\n", build_info::long_version()))?,
        ListFormat::Json => {
            let version = Version {
                name: "oapkg",
                version: build_info::VERSION,
                commit: build_info::COMMIT,
                profile: build_info::PROFILE,
                state_format_version: crate::state::FORMAT_VERSION,
                plan_format_version: crate::plan::render::json::FORMAT_VERSION,
            };
            print(&format!("{}\n", serde_json::to_string_pretty(&version)?))?
        }
    }
    Ok(ExitStatus::Success)
}
