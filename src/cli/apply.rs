//! `oapkg apply [PLANFILE]`: show the plan, get a yes, buy exactly it.
//!
//! This file gathers the inputs (credentials and endpoint first, then the
//! plan: made now, or read from PLANFILE and checked for staleness), asks
//! for confirmation, wires SIGINT/SIGTERM to the run's cancel signal, and
//! prints progress and the result. The run itself, with every guarantee, is
//! [`crate::apply::apply`].
//!
//! `--only KEY|OAID` narrows the plan ([`crate::plan::narrow`]) right after
//! it is made or read, so the plan shown, the guards and the count in the
//! question are all about the named changes. It is apply's flag alone, not
//! one of the [`ApplyFlags`] `watch --apply` shares: a watch reconciles the
//! whole manifests, cycle after cycle, and a narrowed watch would leave the
//! rest unbought without anyone asking for it each time.
//!
//! Credentials are required even when the plan turns out to buy nothing:
//! missing credentials are reported "before anything else
//! happens", and a pipeline whose keys are missing should learn it on the
//! first run, not on the day a purchase is finally needed.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::apply_json::JsonApply;
use super::context::print;
use super::error::with_hint;
use super::{Context, ListFormat};
use crate::apply::{
    self, ApplyError, ApplyEvent, ApplyOptions, ApplyReport, PackageResult, RetryPolicy, StopReason,
};
use crate::esms::{Client, ClientOptions, Credentials, Endpoint, PurchaseOutcome};
use crate::exit::ExitStatus;
use crate::ops::apply::{self as ops_apply, ToApply};
use crate::ops::approval::Approval;
use crate::plan::narrow::{Selector, narrow};
use crate::plan::render::{self, Paint};
use crate::plan::{Action, Plan};
use crate::text::escape_controls;

/// Shortens the first retry delay (milliseconds; later ones double from
/// it), for tests and the simulator. Not a user setting.
pub const RETRY_DELAY_VAR: &str = "OAPKG_RETRY_MIN_DELAY_MS";

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `oapkg plan --out`: apply exactly it, without asking
    /// (refused if the state or the manifests changed since)
    #[arg(value_name = "PLANFILE")]
    pub planfile: Option<PathBuf>,
    /// Do not ask for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// Only the changes of this package key (OAID@YYYY-MM-DD) or OAID
    /// (repeatable); the guards then apply to them alone. A value that
    /// names no change of the plan is an error
    #[arg(long, value_name = "KEY|OAID")]
    pub only: Vec<Selector>,
    /// Output format: text (the plan, a line per package, a summary), or
    /// json (one document with each package's result, for pipelines; needs
    /// --auto-approve or a PLANFILE)
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    #[command(flatten)]
    pub flags: ApplyFlags,
}

/// How to buy: the flags `oapkg apply` and `oapkg watch --apply` share.
#[derive(Debug, Args)]
pub struct ApplyFlags {
    /// Most purchase requests in flight at once
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    /// Refuse the run if it would send more purchase requests than this
    /// (purchases + replaces + resent unconfirmed packages)
    #[arg(long, value_name = "N", default_value_t = crate::plan::DEFAULT_MAX_PURCHASES)]
    pub max_purchases: usize,
    /// Allow buying a package again whose tier or duration changed (the
    /// earlier purchase is not refunded)
    #[arg(long)]
    pub allow_replace: bool,
    /// Allow buying a package over the months of a recorded package of the
    /// same OA and tier under another key (a moved start date, a second
    /// package over the same months): those months are paid twice
    #[arg(long)]
    pub allow_overlap: bool,
    /// Resend packages recorded as unconfirmed, after checking on the eSMS
    /// portal that they are absent (eSMS answers 199 to a request it still
    /// has, but documents no time window for that: a resend may charge
    /// twice). Not with `watch`
    #[arg(long)]
    pub retry_unconfirmed: bool,
    /// Resend within the run a request that got no definite answer (timeout,
    /// reset, HTTP 5xx, an unreadable or undocumented answer) instead of
    /// recording it unconfirmed at once. Relies on eSMS answering 199 to a
    /// request it already has; eSMS documents no time window for that, so a
    /// resend may charge twice. Not with `watch`
    #[arg(long)]
    pub retry_unknown: bool,
    /// Do not check first that the account holds every OA to be bought
    /// (and, with a price list, that its balance covers the run)
    #[arg(long)]
    pub skip_preflight: bool,
    /// Refuse the run if it would cost more than AMOUNT (a whole amount in
    /// the price list's currency; needs a `kind: PriceList`)
    #[arg(long, value_name = "AMOUNT")]
    pub max_spend: Option<u64>,
    /// POST a JSON notification to URL for each purchase bought, failed or
    /// unconfirmed (and, with `watch`, each change held, cycle refused,
    /// OA expiring, low balance, error). Repeatable; https://, or http://
    /// to this machine only
    // Checked by [`ApplyFlags::webhooks`], not by clap: clap's error
    // would echo the whole URL, whose path or user info is often a secret.
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    /// Send only these events to the --notify URLs (comma-separated:
    /// purchased, failed, unconfirmed, held, refused, expiring,
    /// low_balance, error, suspended, resumed, cycle, git, drift,
    /// settled); all of them by default
    #[arg(long = "notify-events", value_name = "LIST", requires = "notify")]
    pub notify_events: Option<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

impl ApplyFlags {
    /// The `--notify` URLs and `--notify-events`, checked; the error never
    /// echoes a URL.
    pub fn webhooks(&self) -> anyhow::Result<crate::notify::Webhooks> {
        let targets = self
            .notify
            .iter()
            .map(|url| crate::notify::Target::parse(url))
            .collect::<Result<_, _>>()?;
        let events = match &self.notify_events {
            Some(list) => crate::notify::Events::parse(list)?,
            None => crate::notify::Events::all(),
        };
        Ok(crate::notify::Webhooks { targets, events })
    }
}

/// Where eSMS is and how to reach it: the flags of every command that
/// calls it (`apply`, `watch --apply`, `coverage --online`).
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// eSMS API base URL [default: the production URL]
    #[arg(
        long,
        value_name = "URL",
        env = "ESMS_ENDPOINT",
        hide_env_values = true
    )]
    pub endpoint: Option<String>,
    /// Seconds allowed for one whole request and its answer
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,
    /// Seconds allowed to connect to eSMS
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// File holding ESMS_API_KEY=... and ESMS_SECRET_KEY=... lines (mode 600);
    /// default: those environment variables
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
}

pub fn run(context: &Context, args: &ApplyArgs) -> anyhow::Result<ExitStatus> {
    // Before anything else: whom to tell, where to buy and with which keys.
    let notify = args.flags.webhooks()?;
    let credentials = credentials(&args.flags.connection)?;
    let keys = credentials.forbidden();
    let client = client_for(&args.flags.connection, credentials)?;
    let options = options(context, &args.flags, "oapkg apply")?;
    let json = args.format == ListFormat::Json;
    let source = ops_apply::Source::of(args.planfile.as_deref());
    ops_apply::check_json_approval(json, source, args.auto_approve)?;
    let ToApply { mut plan, reviewed } = ops_apply::plan_to_carry_out(
        source,
        &context.global.files,
        &context.store,
        context.today()?,
        &keys,
    )?;
    // Purchases another live process has in flight are not unconfirmed:
    // apply waits for that process's lock and finds this plan stale.
    if let Some(in_flight) = super::state::in_flight(context) {
        plan.mark_in_flight(&in_flight.keys, in_flight.holder);
    }
    // In JSON the document is the only thing on stdout.
    let quiet = context.global.quiet || json;
    let plan = if args.only.is_empty() {
        plan
    } else {
        let narrowed = narrow(&plan, &args.only)?;
        if !quiet && narrowed.left_out > 0 {
            print(&format!(
                "--only: {} change(s) of the plan left out of this run; `oapkg plan` shows them.\n\n",
                narrowed.left_out
            ))?;
        }
        narrowed.plan
    };
    // The plan as this run sees it: flags given are not reported as
    // needed, and the command that gets past the guards is this one.
    let command = this_command();
    let text = render::text_with(
        &plan,
        &render::TextOptions {
            color: context.color_stdout(),
        },
        &render::Guards {
            allowed: options.allowed(),
            command: command.clone(),
        },
    );
    if !plan.buys_anything() && plan.label_changes().is_empty() {
        if json {
            print_json(&plan, &ApplyReport::default())?;
        } else {
            // The plan's text ends with its `No changes.` line.
            print(&text)?;
        }
        return Ok(ExitStatus::Success);
    }
    let counts = apply::check_guards(&plan, &options);
    let approval = Approval::of(
        reviewed,
        args.auto_approve,
        counts.as_ref().map_or(0, |c| c.requests()),
        std::io::stdin().is_terminal(),
    );
    if !quiet || approval.shows_the_plan() {
        print(&text)?;
    }
    let counts = match counts {
        Ok(counts) => counts,
        Err(refusal) => {
            notify_refused(context, &notify, &client, &refusal);
            let flags: Vec<String> = refusal.flags().iter().map(|n| n.flag()).collect();
            if flags.is_empty() {
                return Err(refusal.into());
            }
            // Every flag at once, with the exact command.
            let hint = format!("If the plan is right, run: {command} {}", flags.join(" "));
            return Err(with_hint(refusal, hint));
        }
    };
    match approval {
        Approval::Given => {}
        Approval::Ask => confirm(counts.requests(), apply::planned_cost(&plan, &options))?,
        Approval::Refuse => return Err(unapproved(counts.requests())),
    }

    let progress = Progress::new(context, counts.requests(), !json);
    let result = run_apply(context, &plan, &client, &options, &progress, &notify);
    progress.finish();
    let report = match result {
        Ok(report) => report,
        Err(ApplyError::Record {
            report,
            journal,
            source,
        }) => {
            if json {
                report_stop(context, &report);
                print_json(&plan, &report)?;
            } else {
                summarize(context, &plan, &report)?;
            }
            if matches!(
                source,
                crate::state::StateError::Moved { .. } | crate::state::StateError::LeaseLost { .. }
            ) {
                // Its message says where the purchases are and what to do.
                return Err(source.into());
            }
            let words = context.store.words();
            return Err(anyhow::Error::new(source).context(format!(
                "the purchase requests above were sent, but the {} {} could not be updated. \
                 Nothing is lost: the {} {} keeps every purchase (one whose answer could not be recorded shows as unconfirmed), \
                 and `oapkg plan` already sees them. {}, then run oapkg again: \
                 the next command that writes the state (apply, state import, ...) folds them in",
                words.state,
                context.store.path().display(),
                words.journal,
                journal.display(),
                words.fix,
            )));
        }
        Err(error) => return Err(error.into()),
    };
    if json {
        report_stop(context, &report);
        print_json(&plan, &report)?;
    } else {
        if report.labels > 0 && !quiet {
            print(&labels_recorded(&plan))?;
        }
        summarize(context, &plan, &report)?;
    }
    Ok(if report.succeeded() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// The eSMS client the flags describe: credentials, endpoint, timeouts.
pub(super) fn client(args: &ConnectionArgs) -> anyhow::Result<Client> {
    client_for(args, credentials(args)?)
}

/// The eSMS credentials the flags name: `--credentials FILE`, or the
/// environment.
pub(super) fn credentials(args: &ConnectionArgs) -> anyhow::Result<Credentials> {
    Ok(match &args.credentials {
        Some(path) => Credentials::from_file(path)?,
        None => Credentials::from_env()?,
    })
}

/// [`client`] with `credentials` already read.
pub(super) fn client_for(
    args: &ConnectionArgs,
    credentials: Credentials,
) -> anyhow::Result<Client> {
    let endpoint = match &args.endpoint {
        Some(url) => Endpoint::parse(url).context("--endpoint / ESMS_ENDPOINT")?,
        None => Endpoint::production(),
    };
    let seconds = |value: f64, flag: &str| -> anyhow::Result<Duration> {
        match Duration::try_from_secs_f64(value) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => bail!("{flag} {value}: expected a number of seconds greater than 0"),
        }
    };
    let options = ClientOptions {
        connect_timeout: seconds(args.connect_timeout, "--connect-timeout")?,
        request_timeout: seconds(args.timeout, "--timeout")?,
    };
    Ok(Client::new(endpoint, credentials, options)?)
}

/// The apply engine's options the flags describe; `command` names the lock holder.
pub(super) fn options(
    context: &Context,
    args: &ApplyFlags,
    command: &str,
) -> anyhow::Result<ApplyOptions> {
    let retry = retry_policy()?;
    Ok(ApplyOptions {
        parallelism: usize::from(args.parallelism),
        max_purchases: args.max_purchases,
        allow_replace: args.allow_replace,
        allow_overlap: args.allow_overlap,
        retry_unconfirmed: args.retry_unconfirmed,
        retry_unknown: args.retry_unknown,
        skip_preflight: args.skip_preflight,
        max_spend: args.max_spend,
        lock_timeout: context.global.lock_timeout(),
        command: command.to_owned(),
        retry,
        hold: false,
    })
}

/// This run's command line (`oapkg` and its arguments, shell-quoted): what
/// to run again with the flags the guards ask for. The values of `--notify`
/// and `--endpoint` are left out (a webhook's path or a URL's user info is
/// often a secret), shown as `URL`.
fn this_command() -> String {
    let mut words = vec!["oapkg".to_owned()];
    let mut hide_next = false;
    for arg in std::env::args_os().skip(1) {
        let arg = arg.to_string_lossy();
        let word = if std::mem::take(&mut hide_next) {
            "URL".to_owned()
        } else if let Some((flag, _)) = arg
            .split_once('=')
            .filter(|(flag, _)| matches!(*flag, "--notify" | "--endpoint"))
        {
            format!("{flag}=URL")
        } else {
            hide_next = matches!(arg.as_ref(), "--notify" | "--endpoint");
            crate::text::shell_word(&arg)
        };
        words.push(word);
    }
    words.join(" ")
}

/// The waits between attempts of a call: the default, or shortened by
/// [`RETRY_DELAY_VAR`] (tests).
pub(super) fn retry_policy() -> anyhow::Result<RetryPolicy> {
    let mut retry = RetryPolicy::default();
    if let Some(ms) = std::env::var_os(RETRY_DELAY_VAR) {
        let ms: u64 = ms
            .to_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("{RETRY_DELAY_VAR} must be a whole number of milliseconds"))?;
        retry.min_delay = Duration::from_millis(ms);
        retry.max_delay = Duration::from_millis(ms.saturating_mul(16));
    }
    Ok(retry)
}

/// Why a purchase nobody can approve is refused ([`Approval::Refuse`]).
fn unapproved(requests: usize) -> anyhow::Error {
    with_hint(
        anyhow::anyhow!(
            "refusing to purchase {requests} package(s) without confirmation: standard input is not a terminal"
        ),
        "Review the plan above, then run again with --auto-approve, or save it with \
         `oapkg plan --out PLANFILE` and run `oapkg apply PLANFILE`",
    )
}

/// `Type 'yes' to purchase N package(s):` on the terminal
/// ([`Approval::Ask`]). With a price list, the question says what the
/// purchases cost.
fn confirm(requests: usize, cost: Option<crate::prices::Money>) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    match cost {
        Some(cost) => eprint!("\nType 'yes' to purchase {requests} package(s) for {cost}: "),
        None => eprint!("\nType 'yes' to purchase {requests} package(s): "),
    }
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if answer.trim() != "yes" {
        bail!("apply cancelled (the answer was not `yes`); nothing was bought");
    }
    Ok(())
}

/// How long `apply` waits at exit for its notifications to be delivered.
const NOTIFY_DRAIN: Duration = Duration::from_secs(5);

/// The `--notify` webhooks (none: a notifier that sends nothing), with the
/// account keys scrubbed from every body. Inside a runtime.
pub(super) fn notifier(
    webhooks: &crate::notify::Webhooks,
    client: &Client,
) -> crate::notify::Notifier {
    crate::notify::Notifier::start(
        &webhooks.targets,
        crate::notify::Delivery::default(),
        &client.scrubber(),
    )
    .only(webhooks.events.clone())
}

/// Tells the `--notify` webhooks that the guards refused the run.
fn notify_refused(
    context: &Context,
    webhooks: &crate::notify::Webhooks,
    client: &Client,
    refusal: &apply::GuardRefusal,
) {
    if webhooks.targets.is_empty() {
        return;
    }
    context.runtime.block_on(async {
        let notifier = notifier(webhooks, client);
        notifier.event("refused", refusal.to_string());
        notifier.drain(NOTIFY_DRAIN).await;
    });
}

/// The run on the process's runtime, with SIGINT/SIGTERM asking it to stop.
// One error per run: its size costs nothing worth boxing the variants for.
#[allow(clippy::result_large_err)]
fn run_apply(
    context: &Context,
    plan: &Plan,
    client: &Client,
    options: &ApplyOptions,
    progress: &Progress,
    notify: &crate::notify::Webhooks,
) -> Result<ApplyReport, ApplyError> {
    context.runtime.block_on(async {
        let (canceller, signal) = apply::cancel_pair();
        let watcher = watch_signals(canceller);
        let notifier = notifier(notify, client);
        let on_event = |event: ApplyEvent<'_>| {
            progress.event(event);
            let cost = event.change().and_then(|change| plan.cost(change));
            notifier.apply_event(&event, cost.as_ref());
        };
        let result = apply::apply(plan, &context.store, client, options, &on_event, signal).await;
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        match &result {
            Err(ApplyError::Refused(refusal)) => notifier.event("refused", refusal.to_string()),
            Err(error) => notifier.event("error", format!("{:#}", anyhow::anyhow!("{error}"))),
            Ok(_) => {}
        }
        notifier.drain(NOTIFY_DRAIN).await;
        result
    })
}

/// Cancels on the first SIGINT or SIGTERM; a second one ends the process at
/// once (requests still in flight then stay `unconfirmed` in the journal).
fn watch_signals(canceller: apply::Canceller) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // Registered before the run starts, so no signal can slip through
        // to the default handler once requests may be in flight.
        let (mut int, mut term) = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => (int, term),
            _ => {
                tracing::warn!(
                    "cannot listen for SIGINT/SIGTERM; an interrupt will end apply at once"
                );
                return None;
            }
        };
        Some(tokio::spawn(async move {
            let mut received = 0;
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                received += 1;
                if received == 1 {
                    canceller.cancel();
                } else {
                    eprintln!(
                        "Interrupted again: exiting now. Requests still in flight are recorded as unconfirmed; \
                         the next oapkg command that writes the state folds them in."
                    );
                    std::process::exit(i32::from(ExitStatus::Failure.code()));
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        Some(tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                canceller.cancel();
            }
        }))
    }
}

/// Progress as the run reports it: a bar on a terminal, one line per
/// finished package on stdout either way (above the bar on a terminal).
struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    color: bool,
    done: AtomicUsize,
}

impl Progress {
    /// `lines`: a line per finished package on stdout (not with `--format
    /// json`, whose document is the only thing there).
    fn new(context: &Context, requests: usize, lines: bool) -> Progress {
        let quiet = context.global.quiet;
        let bar = (!quiet && requests > 0 && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(requests as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} packages {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            lines: lines && !quiet,
            color: context.color_stdout(),
            done: AtomicUsize::new(0),
        }
    }

    fn event(&self, event: ApplyEvent<'_>) {
        match event {
            ApplyEvent::Started {
                requests,
                parallelism,
            } => {
                tracing::info!(requests, parallelism, "sending purchase requests");
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("(up to {parallelism} at once)"));
                }
            }
            ApplyEvent::PurchaseSent { key, attempt, .. } => {
                tracing::info!(%key, attempt, "purchase request sent");
            }
            ApplyEvent::Answered {
                key,
                attempt,
                outcome,
                ..
            } => {
                tracing::trace!(%key, attempt, outcome = %retry_reason(outcome), "purchase answered");
            }
            ApplyEvent::Retrying {
                change,
                key,
                attempt,
                delay,
                outcome,
            } => {
                tracing::info!(%key, attempt, delay_ms = delay.as_millis() as u64, reason = %retry_reason(outcome), "retrying");
                self.err_line(&format!(
                    "  {} {key}: {} (attempt {attempt}); retrying in {:.1}s",
                    change.action(),
                    escape_controls(&retry_reason(outcome)),
                    delay.as_secs_f64()
                ));
            }
            ApplyEvent::PurchaseDone {
                change,
                key,
                result,
            } => {
                self.done.fetch_add(1, Ordering::Relaxed);
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                tracing::info!(%key, result = result.word(), "purchase recorded");
                self.out_line(&done_line(
                    change.action(),
                    key.as_str(),
                    result,
                    self.color,
                ));
                if let Some(warning) = unexpected_duplicate_warning(key.as_str(), result) {
                    self.err_line(&warning);
                }
            }
            ApplyEvent::Stopping { reason, in_flight } => {
                self.err_line(&format!(
                    "Stopping: {reason}. No further purchase requests will be sent; waiting for {in_flight} request(s) in flight to be answered and recorded."
                ));
            }
            // `apply` refuses instead of holding; watch reports these.
            ApplyEvent::Held { key, reason, .. } => {
                self.err_line(&format!("  held {key}: {reason}"));
            }
            ApplyEvent::Balance { amount, cost } => {
                tracing::debug!(balance = amount, cost = cost.amount, "balance read");
            }
        }
    }

    fn out_line(&self, line: &str) {
        if !self.lines {
            return;
        }
        let write = || {
            // A closed stdout must not stop the run; the state records it all.
            let _ = print(&format!("{line}\n"));
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    fn err_line(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn retry_reason(outcome: &PurchaseOutcome) -> String {
    match outcome {
        PurchaseOutcome::RateLimited { reason } => format!("rate limited ({reason})"),
        PurchaseOutcome::NotSent { reason } => format!("not sent ({reason})"),
        PurchaseOutcome::Unknown { reason } => format!("no definite answer ({reason})"),
        other => other.message().to_owned(),
    }
}

/// What eSMS's `199` means when no request for the package was known to
/// have reached it: said loudly, on stderr.
pub(super) const UNEXPECTED_DUPLICATE: &str =
    "eSMS already had this purchase: the state may have been lost or another tool bought it";

/// `warning: KEY: eSMS already had this purchase …` for a surprising `199`.
pub(super) fn unexpected_duplicate_warning(key: &str, result: &PackageResult) -> Option<String> {
    matches!(
        result,
        PackageResult::Submitted {
            unexpected_duplicate: true,
            ..
        }
    )
    .then(|| {
        format!(
            "warning: {key}: {UNEXPECTED_DUPLICATE} (code 199, recorded as submitted). \
             Check that --state names the right state file, and the eSMS portal for who bought it"
        )
    })
}

/// The mark in front of a result line: the plan's symbol when the package
/// is now submitted (`+` purchase, `~` replace, `?` a resent unconfirmed
/// one), `!` submitted but possibly charged twice (a `100` after an
/// earlier request may have charged), `x` failed (not bought), `?`
/// unconfirmed (may have been bought), `-` not sent (the run stopped
/// first; a resend not sent stays `?`).
pub(super) fn result_mark(action: Action, result: &PackageResult) -> char {
    match result {
        PackageResult::Submitted {
            possibly_charged_twice: true,
            ..
        } => POSSIBLY_CHARGED_TWICE_MARK,
        PackageResult::Submitted { .. } => action.symbol(),
        PackageResult::Failed { .. } => 'x',
        PackageResult::Unconfirmed { .. } | PackageResult::LeftUnconfirmed => '?',
        PackageResult::NotAttempted { .. } if action == Action::Unconfirmed => '?',
        PackageResult::NotAttempted { .. } => '-',
    }
}

/// The result mark of a package possibly charged twice.
pub(super) const POSSIBLY_CHARGED_TWICE_MARK: char = '!';

/// What a `100` after an earlier request that may have charged means.
pub(super) const POSSIBLY_CHARGED_TWICE: &str = "possibly charged twice — check the eSMS portal";

/// `+ purchase KEY: submitted, ServicePreviewId 52330 (code 100: …)`: the
/// result's mark ([`result_mark`]) and the plan's action, then what became
/// of it.
pub(super) fn done_line(action: Action, key: &str, result: &PackageResult, color: bool) -> String {
    let paint = Paint(color);
    let attempts = |n: u32| {
        if n > 1 {
            format!(" after {n} attempts")
        } else {
            String::new()
        }
    };
    let what = match result {
        PackageResult::Submitted {
            service_preview_id,
            code,
            message,
            attempts: n,
            possibly_charged_twice,
            ..
        } => format!(
            "{}, ServicePreviewId {} (code {code}: {}){}{}",
            paint.good("submitted"),
            escape_controls(service_preview_id.as_deref().unwrap_or("none")),
            escape_controls(message),
            attempts(*n),
            if *possibly_charged_twice {
                format!("; {}", paint.bad(POSSIBLY_CHARGED_TWICE))
            } else {
                String::new()
            }
        ),
        PackageResult::Failed {
            code,
            message,
            attempts: n,
            ..
        } => {
            let detail = match code {
                Some(code) => match crate::esms::code_meaning(code) {
                    Some(meaning) => {
                        format!("code {code}, {meaning}: {}", escape_controls(message))
                    }
                    None => format!("code {code}: {}", escape_controls(message)),
                },
                None => escape_controls(message).into_owned(),
            };
            format!(
                "{} ({detail}){}; not bought",
                paint.bad("failed"),
                attempts(*n)
            )
        }
        PackageResult::Unconfirmed {
            reason,
            attempts: n,
            ..
        } => format!(
            "{} ({}){}",
            paint.open("unconfirmed"),
            escape_controls(reason),
            attempts(*n)
        ),
        PackageResult::NotAttempted { reason, .. } => {
            format!("{} ({})", paint.open("not sent"), escape_controls(reason))
        }
        PackageResult::LeftUnconfirmed => format!(
            "{} (not resent without --retry-unconfirmed)",
            paint.open("unconfirmed")
        ),
    };
    format!("{} {action} {key}: {what}", result_mark(action, result))
}

/// The label changes apply wrote to the state, one line each:
/// `= label KEY: name "old" -> "new" (recorded; no request)`.
fn labels_recorded(plan: &Plan) -> String {
    let name = |n: &Option<String>| match n {
        Some(n) => format!("\"{}\"", escape_controls(n)),
        None => "(none)".to_owned(),
    };
    let mut out = String::new();
    for label in plan.label_changes() {
        out.push_str(&format!(
            "= label {}: name {} -> {} (recorded; no request)\n",
            label.key,
            name(&label.before),
            name(&label.after)
        ));
    }
    out
}

/// `apply --format json`: the result document.
fn print_json(plan: &Plan, report: &ApplyReport) -> anyhow::Result<()> {
    let document = JsonApply::new(plan, report);
    print(&format!("{}\n", serde_json::to_string_pretty(&document)?))
}

/// On stderr: why the run stopped early and what was not sent, if it did.
fn report_stop(context: &Context, report: &ApplyReport) {
    if let Some(reason) = &report.stopped {
        let not_sent = report
            .outcomes
            .iter()
            .filter(|(_, r)| matches!(r, PackageResult::NotAttempted { .. }))
            .count();
        eprintln!(
            "Stopped early: {reason}. {not_sent} planned package(s) were not sent; run `oapkg plan` to see what is left."
        );
        if matches!(reason, StopReason::Journal(_)) {
            let what_to_do = format!("{}, then run oapkg again.", context.store.words().fix);
            eprintln!(
                "No new purchase was started after the journal failed. The journal {} keeps every purchase recorded before that \
                 (one whose answer could not be recorded shows as unconfirmed, and is not resent without --retry-unconfirmed). \
                 {what_to_do}",
                context.store.journal_path().display()
            );
        }
    }
}

/// What is left to do, then the final `Apply complete: …` line.
fn summarize(context: &Context, plan: &Plan, report: &ApplyReport) -> anyhow::Result<()> {
    let mut out = String::new();
    report_stop(context, report);
    let unconfirmed: Vec<_> = report
        .outcomes
        .iter()
        .filter(|(_, r)| {
            matches!(
                r,
                PackageResult::Unconfirmed { .. }
                    | PackageResult::LeftUnconfirmed
                    | PackageResult::NotAttempted {
                        action: Action::Unconfirmed,
                        ..
                    }
            )
        })
        .collect();
    if !unconfirmed.is_empty() {
        out.push_str(
            "\nUnconfirmed: eSMS may or may not have received these purchase requests, so they are neither bought again nor forgotten:\n",
        );
        for (key, _) in &unconfirmed {
            out.push_str(&format!("  ? {key}\n"));
        }
        out.push_str(
            "Check them on the eSMS portal, then record each one bought with `oapkg state confirm KEY`, \
             or run `oapkg apply --retry-unconfirmed` to resend them (eSMS answers 199 to a request it already has).\n",
        );
    }
    let twice: Vec<_> = report
        .outcomes
        .iter()
        .filter(|(_, r)| r.possibly_charged_twice())
        .collect();
    if !twice.is_empty() {
        out.push_str(
            "\nPossibly charged twice: eSMS accepted (code 100) a resend of these while an earlier request for each may have charged already:\n",
        );
        for (key, _) in &twice {
            out.push_str(&format!("  {POSSIBLY_CHARGED_TWICE_MARK} {key}\n"));
        }
        out.push_str(
            "They are recorded as submitted. Check them on the eSMS portal for a second purchase; the spent line counts every request that may have charged.\n",
        );
    }
    let surprises: Vec<_> = report
        .outcomes
        .iter()
        .filter(|(key, r)| unexpected_duplicate_warning(key.as_str(), r).is_some())
        .collect();
    if !surprises.is_empty() {
        out.push_str(&format!(
            "\nWarning: {UNEXPECTED_DUPLICATE}. eSMS answered 199 (already exists) to a first request for:\n"
        ));
        for (key, _) in &surprises {
            out.push_str(&format!("  ! {key}\n"));
        }
        out.push_str(
            "They are recorded as submitted. Check that --state names the right state file, and the eSMS portal for who bought them.\n",
        );
    }
    if !context.global.quiet || !out.is_empty() {
        out.insert(0, '\n');
    }
    out.push_str(&report.summary_line());
    out.push('\n');
    match report.spent(plan) {
        Some(Ok(spent)) => out.push_str(&format!(
            "Spent (estimated from the price list): {spent}.\n"
        )),
        Some(Err(error)) => out.push_str(&format!(
            "Spent (estimated from the price list): unknown: {error}.\n"
        )),
        None => {}
    }
    print(&out)
}
