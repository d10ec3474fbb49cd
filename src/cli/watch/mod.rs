//! `oapkg watch`: the flags, the signal handling, and the wiring; the
//! watching and the cycle are [`crate::watch`]'s, which reports through
//! [`WatchEvent`](crate::watch::WatchEvent)s that [`report`] turns into
//! output.
//!
//! Output: each planned cycle prints its plan on stdout — in text mode a
//! header line (`=== cycle N · time · trigger ===`) and the plan exactly as
//! `oapkg plan` prints it; with `--log-format json`, one JSON object per
//! line, `{"time", "cycle", "trigger", "paths", "plan"}`, where `plan` is
//! the `oapkg plan --format json` document. Decisions (skips, invalid
//! manifests with file:line:column, apply outcomes) are log records on
//! stderr: human lines by default, one JSON object per line with
//! `--log-format json`. So with `--log-format json` every line the process
//! writes, on either stream, is a JSON object.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::apply::ApplyFlags;
use super::{Context, LogFormat};
use crate::exit::ExitStatus;
use crate::notify::NotifyObserver;
use crate::secrets::Scrubber;
use crate::watch::{
    self, ApplyReconciler, Canceller, Observers, Reconciler, Runner, WatchOptions, cancel_pair,
};

mod readback;
mod report;
mod systemd;

#[derive(Debug, Args)]
// `apply`'s flags mean nothing without `--apply`: say so instead of ignoring
// them. Not `--endpoint`: a plan-only service's environment may set
// ESMS_ENDPOINT.
#[command(
    mut_arg("parallelism", |a| a.requires("apply")),
    mut_arg("max_purchases", |a| a.requires("apply")),
    mut_arg("allow_replace", |a| a.requires("apply")),
    mut_arg("allow_overlap", |a| a.requires("apply")),
    // Refused in `run`, with the reason: watch never resends a package
    // whose earlier request may have been received.
    mut_arg("retry_unconfirmed", |a| a.hide(true)),
    mut_arg("retry_unknown", |a| a.hide(true)),
    mut_arg("skip_preflight", |a| a.requires("apply")),
    mut_arg("timeout", |a| a.requires("apply")),
    mut_arg("connect_timeout", |a| a.requires("apply")),
    mut_arg("credentials", |a| a.requires("apply"))
)]
pub struct WatchArgs {
    /// Apply each new plan without asking (the guards of `apply` hold for
    /// every cycle)
    #[arg(long)]
    pub apply: bool,

    /// Also plan every SECS seconds when no file changed (picks up state
    /// changes, e.g. a manual apply); with --apply, also check that eSMS
    /// takes the credentials (one GetBalance)
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub interval: Option<Duration>,

    /// Quiet time after the last file change before planning
    #[arg(long, value_name = "MILLIS", default_value_t = 500)]
    pub debounce: u64,

    /// Poll the files every SECS seconds instead of using file-system
    /// events (network file systems)
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub poll: Option<Duration>,

    /// Serve GET /metrics (Prometheus) and GET /healthz on ADDR, e.g.
    /// 127.0.0.1:9184
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// While PATH exists, plan but buy nothing (`touch PATH` to suspend,
    /// `rm PATH` to resume; checked every second)
    #[arg(long, value_name = "PATH")]
    pub suspend_file: Option<std::path::PathBuf>,

    /// Read the OAs that have a Zalo token every SECS seconds: record,
    /// settle, and notify `drift` and `settled` (needs --zalo-tokens or
    /// --zalo-token-command)
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub refresh_interval: Option<Duration>,

    #[command(flatten)]
    pub zalo: super::refresh::ZaloArgs,
    /// Follow a Git branch: fetch it from the remote NAME of the checkout
    /// holding the manifests, move forward by fast-forward only, and plan
    /// (or apply) each new commit
    #[arg(long, value_name = "NAME", requires = "git_branch")]
    pub git_remote: Option<String>,

    /// The branch --git-remote follows
    #[arg(long, value_name = "BRANCH", requires = "git_remote")]
    pub git_branch: Option<String>,

    /// Fetch the branch every SECS seconds [default: 60]
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "git_remote")]
    pub git_interval: Option<Duration>,

    /// Apply only commits whose signature `git verify-commit` accepts (GPG,
    /// or SSH with gpg.ssh.allowedSignersFile)
    #[arg(long, requires = "git_remote")]
    pub git_verify: bool,

    #[command(flatten)]
    pub apply_flags: ApplyFlags,
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    // Also refuses NaN.
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be more than 0 seconds".to_owned());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} seconds is too long"))
}

pub fn run(context: &Context, args: &WatchArgs) -> anyhow::Result<ExitStatus> {
    refuse_resends(&args.apply_flags)?;
    if args.refresh_interval.is_some() && !args.zalo.given() {
        anyhow::bail!(
            "--refresh-interval needs the OAs' Zalo tokens: --zalo-tokens FILE (or OAPKG_ZALO_TOKENS) or \
             --zalo-token-command CMD"
        );
    }
    let notify = args.apply_flags.webhooks()?;
    let listen = args
        .listen
        .as_deref()
        .map(crate::metrics::server::parse)
        .transpose()?;
    if let Some(addr) = listen {
        warn_if_not_loopback(addr);
    }
    // Fail before watching anything: a date that cannot be read would fail
    // every cycle.
    context.today()?;
    let clock = context.clock()?;
    let (reconciler, scrubber, keys) = reconciler(context, args)?;
    // A service that buys must never start against a missing state (a
    // wrong path would buy every package again); one that only plans says
    // so once.
    let state = context.store.load()?.id;
    if args.apply && !state.exists() {
        return Err(crate::state::StateError::Missing {
            path: context.store.path().to_owned(),
        }
        .into());
    }
    context.note_missing_state(&state);
    let options = WatchOptions {
        files: context.global.files.clone(),
        debounce: Duration::from_millis(args.debounce),
        interval: args.interval,
        poll: args.poll,
        clock,
        suspend_file: args.suspend_file.clone(),
        git: git_options(context, args),
    };
    context.runtime.block_on(async {
        let (handle, stop) = cancel_pair();
        let handle = Arc::new(handle);
        listen_for_signals(handle.clone())?;
        let notifier = Arc::new(
            crate::notify::Notifier::start(
                &notify.targets,
                crate::notify::Delivery::default(),
                &scrubber,
            )
            .only(notify.events.clone()),
        );
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let server = match listen {
            Some(addr) => {
                let listener = crate::metrics::server::bind(addr).await?;
                Some(tokio::spawn(crate::metrics::server::serve(
                    listener,
                    metrics.clone(),
                )))
            }
            None => None,
        };
        // The plan on stdout first, then the log record that sums it up.
        let mut observers = Observers::new()
            .with(Arc::new(report::PlanPrinter {
                json: context.global.log_format == LogFormat::Json,
                color: context.color_stdout(),
                stop: handle,
                broken: AtomicBool::new(false),
            }))
            .with(Arc::new(report::LogLines));
        if server.is_some() {
            observers = observers.with(metrics.clone());
        }
        let watchdog = if systemd::enabled() {
            let ready = Arc::new(tokio::sync::Notify::new());
            observers = observers.with(Arc::new(systemd::Readiness {
                ready: ready.clone(),
            }));
            systemd::watchdog(ready)
        } else {
            None
        };
        if !notifier.is_empty() {
            observers = observers.with(Arc::new(NotifyObserver::new(notifier.clone())));
        }
        let mut runner = Runner::new(
            options.files.clone(),
            context.store.clone(),
            clock,
            Arc::new(observers),
            reconciler,
        )
        .suspend_with(options.suspend_file.clone())
        .refuse_secrets(keys);
        let read_back = args.refresh_interval.map(|every| {
            readback::start(
                context,
                every,
                args.zalo.clone(),
                notifier.clone(),
                metrics.clone(),
            )
        });
        let watched = watch::run(&options, &mut runner, stop).await;
        drop(runner);
        if let Some(read_back) = read_back {
            read_back.stop().await;
        }
        notifier.drain(NOTIFY_DRAIN).await;
        for task in [server, watchdog].into_iter().flatten() {
            task.abort();
        }
        watched?;
        anyhow::Ok(ExitStatus::Success)
    })
}

/// `--git-remote` and its companions; the checkout is the one holding the
/// first `-f` path (the current directory without one).
fn git_options(context: &Context, args: &WatchArgs) -> Option<crate::watch::GitOptions> {
    let (remote, branch) = (args.git_remote.clone()?, args.git_branch.clone()?);
    let dir = match context.global.files.first() {
        Some(path) if path.is_dir() => path.clone(),
        Some(path) => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(
                || std::path::PathBuf::from("."),
                std::path::Path::to_path_buf,
            ),
        None => std::path::PathBuf::from("."),
    };
    Some(crate::watch::GitOptions {
        remote,
        branch,
        interval: args
            .git_interval
            .unwrap_or(crate::watch::git::DEFAULT_INTERVAL),
        verify: args.git_verify,
        dir,
    })
}

/// `--listen` on an address other networks reach: `/metrics` labels name
/// every OA (its id and name), so say who can read them.
fn warn_if_not_loopback(addr: std::net::SocketAddr) {
    if addr.ip().to_canonical().is_loopback() {
        return;
    }
    tracing::warn!(
        listen = %addr,
        "--listen {addr} is not a loopback address: /metrics shows the OA ids and names \
         (and coverage dates) to anything on the networks it reaches; listen on 127.0.0.1 \
         (behind a proxy with access control) unless that is intended"
    );
}

/// How long stopping waits for the notifications still queued.
const NOTIFY_DRAIN: Duration = Duration::from_secs(5);

/// `--retry-unconfirmed` and `--retry-unknown` are usage errors here: a
/// resend relies on eSMS's `199`, for which eSMS documents no time window,
/// so it may charge twice; an unattended loop must never make that call.
fn refuse_resends(flags: &ApplyFlags) -> anyhow::Result<()> {
    let flag = match (flags.retry_unconfirmed, flags.retry_unknown) {
        (true, _) => "--retry-unconfirmed",
        (_, true) => "--retry-unknown",
        _ => return Ok(()),
    };
    anyhow::bail!(
        "watch does not take {flag}: it never resends a purchase whose earlier request may have been received \
         (eSMS documents no time window for its 199 duplicate answer, so a resend may charge twice). \
         Check unconfirmed packages on the eSMS portal, then run `oapkg state confirm KEY` for each one there, \
         or `oapkg apply --retry-unconfirmed` for those absent"
    )
}

/// The reconciler of `--apply`, the scrubber of its keys, and the keys no
/// manifest may hold.
type ApplyStep = (
    Option<Box<dyn Reconciler>>,
    Scrubber,
    Vec<crate::secrets::Forbidden>,
);

/// The apply step for `--apply`: the apply engine of `oapkg apply`, with
/// its guards, pre-flight, journal and lock, run on each plan that buys
/// something. Built before watching starts, so missing credentials or a
/// refused endpoint stop the service at once instead of at the first change.
/// With it, what scrubs the account keys from notifications. Without
/// `--apply` no credentials are needed, but keys found in the environment
/// are kept out of the manifests all the same (they would reach the
/// printed plans and `/metrics` labels).
fn reconciler(context: &Context, args: &WatchArgs) -> anyhow::Result<ApplyStep> {
    if !args.apply {
        let keys = crate::esms::Credentials::from_env()
            .map(|credentials| credentials.forbidden())
            .unwrap_or_default();
        return Ok((None, Scrubber::default(), keys));
    }
    let options = crate::apply::ApplyOptions {
        // Hold, don't block: a change that needs a flag not given waits,
        // the others are bought.
        hold: true,
        ..super::apply::options(context, &args.apply_flags, "oapkg watch --apply")?
    };
    let credentials = super::apply::credentials(&args.apply_flags.connection)?;
    let keys = credentials.forbidden();
    let client = super::apply::client_for(&args.apply_flags.connection, credentials)?;
    let scrubber = client.scrubber();
    Ok((
        Some(Box::new(ApplyReconciler::new(
            context.store.clone(),
            client,
            options,
        ))),
        scrubber,
        keys,
    ))
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere) fire `stop`. A second signal is
/// only logged: in-flight purchases are being recorded, and cutting that
/// short is what `kill -9` is for (the journal copes with it).
fn listen_for_signals(stop: Arc<Canceller>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::spawn(async move {
            let mut received = 0;
            loop {
                let name = tokio::select! {
                    _ = interrupt.recv() => "SIGINT",
                    _ = terminate.recv() => "SIGTERM",
                };
                received += 1;
                if received == 1 {
                    tracing::info!(signal = name, "received {name}: stopping");
                } else {
                    tracing::warn!(
                        signal = name,
                        "received {name} again: still finishing the cycle in progress"
                    );
                }
                stop.cancel();
            }
        });
    }
    #[cfg(not(unix))]
    {
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("received Ctrl-C: stopping");
                stop.cancel();
            }
        });
    }
    Ok(())
}
