//! `oapkg validate`: manifest checks only.

use super::Context;
use super::context::print;
use crate::exit::ExitStatus;

pub fn run(context: &Context) -> anyhow::Result<ExitStatus> {
    let today = context.today()?;
    let manifests = context.manifests(today)?;
    context.print_warnings(&manifests.warnings);
    if !context.global.quiet {
        let files = manifests.files.len();
        let packages = manifests.desired.packages.len();
        print(&format!(
            "The manifests are valid: {packages} package{} in {files} file{}.\n",
            plural(packages),
            plural(files)
        ))?;
    }
    Ok(ExitStatus::Success)
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
