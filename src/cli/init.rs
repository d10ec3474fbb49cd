//! `oapkg init`: create the state on purpose.
//!
//! `apply` and `watch --apply` refuse a missing state, so that a wrong
//! `--state` path or a lost file never buys every package again; this is
//! the one command that creates an empty state where none exists.

use super::Context;
use super::context::print;
use crate::exit::ExitStatus;

pub fn run(context: &Context) -> anyhow::Result<ExitStatus> {
    let id = context
        .store
        .init("oapkg init", context.global.lock_timeout())?;
    if !context.global.quiet {
        print(&format!(
            "Created an empty state at {} (lineage {}, serial {}).\n",
            context.store.path().display(),
            id.lineage.as_deref().unwrap_or("none"),
            id.serial
        ))?;
    }
    Ok(ExitStatus::Success)
}
