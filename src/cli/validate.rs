//! `oapkg validate`: manifest checks only. The state is read (a missing one
//! is empty) only so that a "starts before today" warning is not repeated
//! for packages already recorded.

use super::Context;
use super::context::print;
use crate::exit::ExitStatus;

pub fn run(context: &Context) -> anyhow::Result<ExitStatus> {
    let today = context.today()?;
    let manifests = context.manifests(today)?;
    let loaded = context.load_state()?;
    let warnings =
        crate::plan::inputs::validate_warnings(&manifests, &loaded.state.packages, today);
    context.print_warnings(&warnings);
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
