//! The command line: clap types, one small function per subcommand, and the
//! one place where errors become messages and exit codes.
//!
//! Subcommands gather their inputs (manifests, state, today's date) through
//! [`Context`], call the library, and print. They hold no planning logic of
//! their own.

// The one module that prints (see the crate's lint settings).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod apply;
mod apply_json;
mod context;
mod coverage;
mod doctor;
pub mod error;
mod expiring;
mod init;
mod plan;
pub mod refresh;
mod state;
mod validate;
mod version;
mod watch;

pub use context::Context;
pub use error::{CliError, ErrorKind};

use crate::exit::ExitStatus;
use crate::plan::render::Paint;

/// Keep Zalo OA packages bought through eSMS the way Terraform keeps
/// infrastructure: declare them in YAML, review the plan, buy exactly once.
#[derive(Debug, Parser)]
#[command(
    name = "oapkg",
    version = crate::build_info::long_version(),
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after the subcommand name, listed in `--help`
/// under their own heading.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Manifest file or directory (repeatable; directories are read recursively
    /// for *.yaml / *.yml). Default: oapkg.yaml
    #[arg(short = 'f', long = "file", value_name = "PATH", global = true)]
    pub files: Vec<PathBuf>,

    /// State file
    #[arg(long, value_name = "PATH", env = "OAPKG_STATE", hide_env_values = true, global = true,
          default_value = crate::state::DEFAULT_STATE_PATH, value_parser = crate::state::state_arg)]
    pub state: PathBuf,

    /// How long a command that writes state waits for another writer's lock
    #[arg(long, value_name = "SECS", global = true, default_value_t = 0.0)]
    pub lock_timeout: f64,

    /// Never colour the output (also: the NO_COLOR environment variable)
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Log format on stderr
    #[arg(long, value_enum, value_name = "FORMAT", global = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log output (-v: oapkg's debug lines, -vv: its trace lines, -vvv:
    /// everything, the HTTP and TLS libraries included); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Less output: errors only
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl GlobalArgs {
    pub fn lock_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.lock_timeout).unwrap_or(Duration::ZERO)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an empty state file (apply refuses to run without one)
    Init(init::InitArgs),
    /// Check the manifests only (no state, no network)
    Validate(validate::ValidateArgs),
    /// Show which purchases the manifests need (no network, no credentials, unless --check-account)
    Plan(plan::PlanArgs),
    /// Buy what the plan lists, exactly once (shows the plan and asks first)
    Apply(apply::ApplyArgs),
    /// Print a plan saved by `plan --out` (what `apply PLANFILE` would do)
    Show(plan::ShowArgs),
    /// Inspect or edit the state file
    #[command(subcommand)]
    State(state::StateCommand),
    /// List OAs whose last package ends soon with nothing declared after it
    Expiring(expiring::ExpiringArgs),
    /// Per OA: the periods covered, the gaps from today on, the policy and
    /// its next renewal (no network unless --online)
    Coverage(coverage::CoverageArgs),
    /// Read the OAs that have a Zalo token: record what Zalo shows, settle,
    /// report drift
    Refresh(refresh::RefreshArgs),
    /// Follow the manifest files and plan again (with --apply: apply) when
    /// they change
    Watch(watch::WatchArgs),
    /// Check everything a run depends on (manifests, state, lock, backup,
    /// S3, eSMS), one line each with the fix; read-only
    Doctor(doctor::DoctorArgs),
    /// Print the JSON Schema of the manifest format (for editors), or with
    /// --plan of the `plan --format json` document
    Schema(SchemaArgs),
    /// Print shell completions
    Completions {
        /// The shell to print completions for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the version, the Git commit and the build profile of this
    /// binary (also: --version)
    Version(version::VersionArgs),
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The schema of the `plan --format json` document (format_version 2)
    /// instead of the manifest's
    #[arg(long)]
    pub plan: bool,
}

/// Global options about the manifests and the state, which `schema` and
/// `completions` accept but do not use: hidden from their `--help`.
const PROJECT_OPTIONS: [&str; 3] = ["files", "state", "lock_timeout"];
const WITHOUT_PROJECT: [&str; 3] = ["schema", "completions", "version"];

/// The clap command tree: [`Cli`]'s, with the options a subcommand ignores
/// hidden from its help. Parse, complete and document with this one.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let command = Cli::command();
    // Global options are copied into each subcommand that has no argument
    // of the same id when the tree is built: give these two a hidden copy
    // first (same parser, default and environment variable).
    let hidden: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|a| PROJECT_OPTIONS.contains(&a.get_id().as_str()))
        .map(|a| a.clone().global(false).hide(true))
        .collect();
    WITHOUT_PROJECT.iter().fold(command, |command, name| {
        command.mut_subcommand(name, |sub| sub.args(hidden.iter().cloned()))
    })
}

/// Parses the process's arguments with [`command`].
pub fn parse() -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let mut command = command();
    let mut matches = command.try_get_matches_from_mut(std::env::args_os())?;
    Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))
}

/// Runs the parsed command line and turns its outcome into an exit status,
/// printing any error.
pub fn run(cli: Cli) -> ExitStatus {
    // A long-running watch reports its cycles at info level; one-shot
    // commands print their results and log only warnings.
    let default_level = match cli.command {
        Command::Watch(_) => "info",
        _ => "warn",
    };
    init_logging(&cli.global, default_level);
    let paint = stderr_paint(&cli.global);
    // The one async runtime of the process (commands, the S3 store, watch,
    // notifications), its handle passed down through the context.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("oapkg")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let error =
                CliError::new(anyhow::Error::new(error).context("cannot start the async runtime"));
            eprintln!("{}", error.render(paint));
            return error.exit_status();
        }
    };
    let context = match Context::new(cli.global, runtime.handle().clone()) {
        Ok(context) => context,
        Err(error) => {
            let error = CliError::new(error.into());
            eprintln!("{}", error.render(paint));
            return error.exit_status();
        }
    };
    let result = match cli.command {
        Command::Init(args) => init::run(&context, &args),
        Command::Validate(args) => validate::run(&context, &args),
        Command::Plan(args) => plan::run(&context, &args),
        Command::Apply(args) => apply::run(&context, &args),
        Command::Show(args) => plan::show(&context, &args),
        Command::State(command) => state::run(&context, command),
        Command::Expiring(args) => expiring::run(&context, &args),
        Command::Coverage(args) => coverage::run(&context, &args),
        Command::Watch(args) => watch::run(&context, &args),
        Command::Doctor(args) => doctor::run(&context, &args),
        Command::Refresh(args) => refresh::run(&context, &args),
        Command::Schema(args) => print_schema(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "oapkg", &mut std::io::stdout());
            Ok(ExitStatus::Success)
        }
        Command::Version(args) => version::run(&args),
    };
    let status = match result {
        Ok(status) => status,
        Err(error) if is_broken_pipe(&error) => ExitStatus::Success,
        Err(error) => {
            let error = CliError::new(error);
            context.print_warnings(error.manifest_warnings());
            eprintln!("{}", error.render(Paint(context.color_stderr())));
            error.exit_status()
        }
    };
    drop(context);
    // A read abandoned by a stop may still be blocked in its thread:
    // waiting for it would undo a prompt stop.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    status
}

/// How long the end of a command waits for work left on the runtime.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

fn print_schema(args: &SchemaArgs) -> anyhow::Result<ExitStatus> {
    let schema = if args.plan {
        crate::plan::render::plan_schema()
    } else {
        schemars::schema_for!(crate::manifest::raw::RawDocument)
    };
    context::print(&format!("{}\n", serde_json::to_string_pretty(&schema)?))?;
    Ok(ExitStatus::Success)
}

/// A closed stdout (`oapkg plan | head`) is not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs on stderr: human lines, or with `--log-format json` one JSON object
/// per line with the event's fields at the top level (`timestamp`, `level`,
/// `message`, `target`, the fields, and `span` for the enclosing span, e.g.
/// a watch cycle).
///
/// The filter ([`log_filter`]) raises oapkg's own level with `-v`; the
/// libraries (hyper, rustls, notify) stay at warnings until `-vvv`. Human
/// lines name their module (`oapkg::apply`) only from `-v` on.
fn init_logging(global: &GlobalArgs, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(log_filter(global.quiet, global.verbose, default_level))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color_requested(global));
    let _ = match global.log_format {
        LogFormat::Text => builder.with_target(global.verbose > 0).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// The log filter for `-q`/`-v` (when `RUST_LOG` is not set): `-q` errors
/// only; none: `default_level` for oapkg, warnings from libraries; `-v`
/// oapkg's debug lines; `-vv` oapkg's trace lines; `-vvv` everything at
/// trace, the HTTP and TLS libraries included.
fn log_filter(quiet: bool, verbose: u8, default_level: &str) -> String {
    match (quiet, verbose) {
        (true, _) => "error".to_owned(),
        (false, 0) => format!("warn,oapkg={default_level}"),
        (false, 1) => "warn,oapkg=debug".to_owned(),
        (false, 2) => "warn,oapkg=trace".to_owned(),
        (false, _) => "trace".to_owned(),
    }
}

pub(crate) fn no_color_requested(global: &GlobalArgs) -> bool {
    global.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Colour on stderr for these flags: only on a terminal, never with
/// --no-color/NO_COLOR.
pub fn stderr_paint(global: &GlobalArgs) -> Paint {
    Paint(std::io::stderr().is_terminal() && !no_color_requested(global))
}

#[cfg(test)]
mod tests {
    #[test]
    fn verbosity_raises_oapkgs_level_before_the_libraries() {
        assert_eq!(super::log_filter(false, 0, "warn"), "warn,oapkg=warn");
        assert_eq!(super::log_filter(false, 0, "info"), "warn,oapkg=info");
        assert_eq!(super::log_filter(false, 1, "warn"), "warn,oapkg=debug");
        assert_eq!(super::log_filter(false, 2, "info"), "warn,oapkg=trace");
        assert_eq!(super::log_filter(false, 3, "warn"), "trace");
        assert_eq!(super::log_filter(true, 0, "info"), "error");
    }
    /// Every argument and option of every subcommand (clap's own help and
    /// version flags aside) says what it is for.
    #[test]
    fn every_argument_has_a_help_line() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut command = super::command();
        command.build();
        assert!(command.get_subcommands().count() > 5);
        let mut missing = Vec::new();
        walk(&command, "oapkg", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
