//! `oapkg init`: create the state on purpose.
//!
//! `apply` and `watch --apply` refuse a missing state, so that a wrong
//! `--state` path or a lost file never buys every package again; this is
//! the one command that creates an empty state where none exists. A
//! backup beside a missing state is a lost state: `init` refuses it (and
//! points at `oapkg state restore`); `--force` starts a new lineage and
//! keeps that backup aside under a new name.

use clap::Args;

use super::Context;
use super::context::print;
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Start a new state even where the backup of a lost one is; the
    /// backup is kept aside under a new name (never overwritten)
    #[arg(long)]
    pub force: bool,
}

pub fn run(context: &Context, args: &InitArgs) -> anyhow::Result<ExitStatus> {
    let timeout = context.global.lock_timeout();
    let (id, backup_aside) = if args.force {
        let done = context.store.init_force("oapkg init --force", timeout)?;
        (done.id, done.backup_aside)
    } else {
        (context.store.init("oapkg init", timeout)?, None)
    };
    if !context.global.quiet {
        let mut out = format!(
            "Created an empty state at {} (lineage {}, serial {}).\n",
            context.store.path().display(),
            id.lineage.as_deref().unwrap_or("none"),
            id.serial
        );
        if let Some(aside) = backup_aside {
            out.push_str(&format!(
                "The backup of the lost state was kept aside as {} (never overwritten); \
                 `oapkg state import` records what it holds that is still paid for.\n",
                aside.display()
            ));
        }
        print(&out)?;
    }
    Ok(ExitStatus::Success)
}
