//! What every subcommand needs from the outside world, gathered in one place:
//! today's date, colour, the manifests, the state store, and stdout.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use jiff::civil::Date;

use super::{GlobalArgs, no_color_requested};
use crate::clock::{Clock, ClockError};
use crate::manifest::{self, Diagnostic, Manifests};
use crate::plan::render::Paint;
use crate::state::{Loaded, StateError, StateId, Store};

pub struct Context {
    pub global: GlobalArgs,
    pub store: Store,
    /// The process's one async runtime (built by [`super::run`]): every
    /// command that waits on the network blocks on it, and the S3 store
    /// runs its requests there.
    pub runtime: tokio::runtime::Handle,
    /// The process's one clock; a bad `OAPKG_TODAY` is reported by the
    /// commands that need a date, not by every command.
    clock: Result<Clock, ClockError>,
}

impl Context {
    /// The context of `global`, with the store `--state` names; refuses a
    /// malformed `--state s3://…` location.
    pub fn new(global: GlobalArgs, runtime: tokio::runtime::Handle) -> Result<Context, StateError> {
        let store = Store::open(&global.state, &runtime)?;
        Ok(Context {
            global,
            store,
            runtime,
            clock: Clock::from_env(),
        })
    }

    /// Colour on stdout: only on a terminal, never with --no-color/NO_COLOR.
    pub fn color_stdout(&self) -> bool {
        std::io::stdout().is_terminal() && !no_color_requested(&self.global)
    }

    pub fn color_stderr(&self) -> bool {
        super::stderr_paint(&self.global).0
    }

    /// The process's clock ([`crate::clock`]).
    pub fn clock(&self) -> anyhow::Result<Clock> {
        match &self.clock {
            Ok(clock) => Ok(*clock),
            Err(error) => Err(anyhow::anyhow!("{error}")),
        }
    }

    /// The calendar date in Asia/Ho_Chi_Minh, or `OAPKG_TODAY`.
    pub fn today(&self) -> anyhow::Result<Date> {
        Ok(self.clock()?.today()?)
    }

    /// The plan of the manifests named by `-f` against the state, today.
    pub fn make_plan(&self) -> anyhow::Result<crate::plan::Plan> {
        let today = self.today()?;
        Ok(crate::ops::plan::make_plan(
            &self.global.files,
            &self.store,
            today,
        )?)
    }

    /// Loads and validates the manifests named by `-f`.
    pub fn manifests(&self, today: Date) -> anyhow::Result<Manifests> {
        self.manifests_from(&self.global.files, today)
    }

    /// Loads and validates the manifests at `files`.
    pub fn manifests_from(&self, files: &[PathBuf], today: Date) -> anyhow::Result<Manifests> {
        // The warnings found alongside errors are printed with the error.
        Ok(manifest::load(files, today)?)
    }

    /// Loads the state for a command that only reads it, saying on stderr
    /// when there is no state file (it reads as empty).
    pub fn load_state(&self) -> anyhow::Result<Loaded> {
        let loaded = self.store.load()?;
        self.note_missing_state(&loaded.id);
        Ok(loaded)
    }

    /// For commands that read the state: a missing file reads as empty,
    /// which is right before the first apply and wrong after a typo in
    /// `--state`, so say it on stderr.
    pub fn note_missing_state(&self, id: &StateId) {
        if id.exists() || self.global.quiet {
            return;
        }
        let label = Paint(self.color_stderr()).warning("warning");
        eprintln!(
            "{label}: no state file at {}: reading it as empty (nothing recorded). \
             If packages were bought, pass the right --state; to start, create it with `oapkg init`",
            self.store.path().display()
        );
    }

    /// Manifest warnings on stderr, for commands whose output has no place
    /// for them.
    pub fn print_warnings(&self, warnings: &[Diagnostic]) {
        if self.global.quiet {
            return;
        }
        let label = Paint(self.color_stderr()).warning("warning");
        for warning in warnings {
            eprintln!("{label}: {}", warning.to_string().replace('\n', "\n  "));
        }
    }
}

/// Writes to stdout; a closed pipe surfaces as an io error the caller maps
/// to a quiet exit.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
