//! The command line: clap types, one small function per subcommand, and the
//! one place where errors become messages and exit codes.
//!
//! Subcommands gather their inputs (manifests, state, today's date) through
//! [`Context`], call the library, and print. They hold no planning logic of
//! their own.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod apply;
mod context;
mod coverage;
pub mod error;
mod expiring;
mod init;
mod plan;
mod state;
mod validate;
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
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after the subcommand name.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Manifest file or directory (repeatable; directories are read recursively
    /// for *.yaml / *.yml). Default: oapkg.yaml
    #[arg(short = 'f', long = "file", value_name = "PATH", global = true)]
    pub files: Vec<PathBuf>,

    /// State file
    #[arg(long, value_name = "PATH", env = "OAPKG_STATE", hide_env_values = true, global = true,
          default_value = crate::state::DEFAULT_STATE_PATH)]
    pub state: PathBuf,

    /// How long a command that writes state waits for another writer's lock
    #[arg(long, value_name = "SECS", global = true, default_value_t = 0.0)]
    pub lock_timeout: f64,

    /// Never colour the output (also: the NO_COLOR environment variable)
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Log format on stderr
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides
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
    Init,
    /// Check the manifests only (no state, no network)
    Validate,
    /// Show which purchases the manifests need (no network, no credentials)
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
    /// Follow the manifest files and plan again (with --apply: apply) when
    /// they change
    Watch(watch::WatchArgs),
    /// Print the JSON Schema of the manifest format (for editors)
    Schema,
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    let context = match Context::new(cli.global) {
        Ok(context) => context,
        Err(error) => {
            let error = CliError::new(error.into());
            eprintln!("{}", error.render(paint));
            return error.exit_status();
        }
    };
    let result = match cli.command {
        Command::Init => init::run(&context),
        Command::Validate => validate::run(&context),
        Command::Plan(args) => plan::run(&context, &args),
        Command::Apply(args) => apply::run(&context, &args),
        Command::Show(args) => plan::show(&context, &args),
        Command::State(command) => state::run(&context, command),
        Command::Expiring(args) => expiring::run(&context, &args),
        Command::Coverage(args) => coverage::run(&context, &args),
        Command::Watch(args) => watch::run(&context, &args),
        Command::Schema => print_schema(),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "oapkg", &mut std::io::stdout());
            Ok(ExitStatus::Success)
        }
    };
    match result {
        Ok(status) => status,
        Err(error) if is_broken_pipe(&error) => ExitStatus::Success,
        Err(error) => {
            let error = CliError::new(error);
            context.print_warnings(error.manifest_warnings());
            eprintln!("{}", error.render(Paint(context.color_stderr())));
            error.exit_status()
        }
    }
}

fn print_schema() -> anyhow::Result<ExitStatus> {
    let schema = schemars::schema_for!(crate::manifest::raw::RawDocument);
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
fn init_logging(global: &GlobalArgs, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => default_level,
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color_requested(global));
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

pub(crate) fn no_color_requested(global: &GlobalArgs) -> bool {
    global.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Colour on stderr for these flags: only on a terminal, never with
/// --no-color/NO_COLOR.
pub fn stderr_paint(global: &GlobalArgs) -> Paint {
    Paint(std::io::stderr().is_terminal() && !no_color_requested(global))
}
