//! The fault matrix: every failure class of the eSMS result codes and
//! outcome classes, injected at the first, the middle and the last of five
//! purchases, at parallelism 1 and 8, through the real binary (`oapkg apply
//! --auto-approve`) against the simulator on 127.0.0.1.
//!
//! The classes are one table (`classes!`, one test per row), each row with what it does to
//! the package it strikes: the run-stopping codes (101, 140, 143, 103), the
//! codes that fail one package (102, 204, 799), rate limits (code 160, HTTP
//! 429), 199, a refused connection (not sent), and the unknown outcomes (a
//! hang, a reset and HTTP 500, each before and after the charge; a 200 that
//! is not JSON or has no code; a code the documentation does not list,
//! before and after the charge). A retryable class is there twice: brief
//! (the retries then succeed) and persisting (the retries run out). An
//! unknown outcome is never resent by default: each is there once as it
//! comes (unconfirmed at once, one request), and, but for the undocumented
//! code, brief and persisting with `--retry-unknown`, the opt-in to resends
//! that rely on eSMS's 199.
//!
//! **40 classes × 3 positions × 2 parallelisms = 240 cells**: one test per
//! class (`cargo test faults::http_500_after_the_charge` runs that class's
//! six cells), its cells run at once, each with its own simulator and
//! directory. Every cell checks, in messages that name it:
//!
//! - the faulted run: its exit code, its `Apply complete: …` line, each
//!   package's line and how many requests each package got (at parallelism
//!   1 a run-stopping code sends nothing after the package it strikes; at 8
//!   all five are in flight and the others finish and are recorded);
//! - after every run: no package charged twice, and every charged package
//!   recorded `submitted` with its ServicePreviewId, or `unconfirmed`;
//! - with the fault cleared: a second `apply` buys what is left and sends
//!   nothing for an `unconfirmed` package; the README's runbook then
//!   resolves it: `state confirm KEY --service-preview-id ID` when the
//!   charge is there (on the "portal", the simulator's ledger), `apply
//!   --retry-unconfirmed` when it is not; and `plan` says `No changes.` with
//!   each package charged exactly once.
//!
//! The simulator deduplicates (answers 199 to a repeat of a charged request,
//! as eSMS does) only in the cells that need it (see [`Class::dedupe`]):
//! everywhere else a second request for a package would be a second charge.
//!
//! `OAPKG_FAULT_CELLS=TEXT` runs only the cells whose description contains
//! TEXT (e.g. `parallelism 8`).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use esms_sim::{
    BASE_PATH, BlockingSimHandle, Call, Charge, Fault, FaultRule, SimConfig, Simulator, Stage,
};
use oapkg::esms::code_meaning;
use serde_json::{Value, json};

use crate::support::{API_KEY, Env, Run, SECRET_KEY, STATE, Stream, last_line, manifest};

/// Packages per run, all starting on [`START`].
const PACKAGES: usize = 5;
const START: &str = "2027-01-01";
/// Where the fault strikes, in plan (key) order: first, middle, last.
const POSITIONS: [usize; 3] = [0, PACKAGES / 2, PACKAGES - 1];
const PARALLELISMS: [usize; 2] = [1, 8];
/// The simulator's latency at parallelism 8, so that all five requests are
/// in flight together before the first answer comes back.
const LATENCY_AT_8: Duration = Duration::from_millis(200);
/// `--timeout` beyond the latency, in the cells where requests hang.
const HANG_TIMEOUT: Duration = Duration::from_millis(500);
/// `OAPKG_RETRY_MIN_DELAY_MS`: the first retry wait; later ones double.
const RETRY_DELAY_MS: u64 = 5;
/// The same where the test ends an outage between two attempts.
const OUTAGE_RETRY_DELAY_MS: u64 = 200;
/// The message of an undocumented code, to see it shown verbatim.
const UNDOCUMENTED_MESSAGE: &str = "Hệ thống bận, vui lòng thử lại sau";

/// What eSMS, or the way to it, does to a purchase request.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A code after which nothing can succeed: 101, 140, 143, 103.
    Stops(&'static str),
    /// A code that fails this package: 102, 204, 799.
    Refused(&'static str),
    /// Code 160: nothing processed.
    Code160,
    /// HTTP 429 from a rate limiter in front of the API: nothing processed.
    Http429,
    /// 199: the package was bought before (on the portal, say).
    AlreadyExists,
    /// The connection is refused: the request certainly never left.
    NotSent,
    /// The request may have been received: the outcome is unknown.
    Unknown(Transport),
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    Hang(Stage),
    Reset(Stage),
    Http500(Stage),
    /// HTTP 200 with a body that is not JSON.
    NotJson,
    /// HTTP 200 with JSON but no `CodeResult`.
    NoCode,
    /// HTTP 200 with a code the documentation does not list (777, with
    /// [`UNDOCUMENTED_MESSAGE`]), before or after the charge.
    Undocumented(Stage),
}

/// How long a fault lasts for the package it strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lasts {
    /// A definite answer: one request.
    Once,
    /// The first two attempts; the third gets through.
    Briefly,
    /// Every attempt, until the retries run out.
    Persists,
}

/// What became of a package in the faulted run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Recorded `submitted`.
    Bought,
    /// Definitely not bought; not recorded.
    Failed,
    /// Recorded `unconfirmed`.
    Unconfirmed,
    /// Never sent: the run stopped first.
    NotAttempted,
}

/// A failure class and what it must do to the package it strikes.
struct Class {
    name: &'static str,
    kind: Kind,
    lasts: Lasts,
    end: End,
    /// Whether the faulted run opts in to resending unknown outcomes
    /// (`--retry-unknown`).
    retry_unknown: bool,
}

const fn class(name: &'static str, kind: Kind, lasts: Lasts, end: End) -> Class {
    Class {
        name,
        kind,
        lasts,
        end,
        retry_unknown: false,
    }
}

/// A class whose faulted run passes `--retry-unknown`.
const fn opt_in(name: &'static str, kind: Kind, lasts: Lasts, end: End) -> Class {
    Class {
        retry_unknown: true,
        ..class(name, kind, lasts, end)
    }
}

use End::{Bought, Failed, Unconfirmed};
use Kind::*;
use Lasts::*;
use Stage::{AfterCommit as After, BeforeCommit as Before};
use Transport::*;

/// One test per failure class (`cargo test faults::code_160_brief`), each
/// running the class's six cells (three positions, two parallelisms) at
/// once: the cells mostly wait (for processes, latency, timeouts), so they
/// overlap well, and the test names the failing cells.
macro_rules! classes {
    ($($(#[$doc:meta])* $test:ident: $class:expr;)*) => {$(
        $(#[$doc])*
        #[test]
        fn $test() {
            static CLASS: Class = $class;
            run_class(&CLASS);
        }
    )*};
}

// Every failure class (the eSMS result codes and outcome classes,
// README's table) and what the package it strikes ends as.
#[rustfmt::skip]
classes! {
    code_101:                                            class("code 101",                                 Stops("101"),                  Once,     Failed);
    code_140:                                            class("code 140",                                 Stops("140"),                  Once,     Failed);
    code_143:                                            class("code 143",                                 Stops("143"),                  Once,     Failed);
    code_103:                                            class("code 103",                                 Stops("103"),                  Once,     Failed);
    code_102:                                            class("code 102",                                 Refused("102"),                Once,     Failed);
    code_204:                                            class("code 204",                                 Refused("204"),                Once,     Failed);
    code_799:                                            class("code 799",                                 Refused("799"),                Once,     Failed);
    code_160_brief:                                      class("code 160, brief",                          Code160,                       Briefly,  Bought);
    code_160_persisting:                                 class("code 160, persisting",                     Code160,                       Persists, Failed);
    http_429_brief:                                      class("HTTP 429, brief",                          Http429,                       Briefly,  Bought);
    http_429_persisting:                                 class("HTTP 429, persisting",                     Http429,                       Persists, Failed);
    code_199_bought_before:                              class("code 199 (bought before)",                 AlreadyExists,                 Once,     Bought);
    not_sent_brief:                                      class("not sent, brief",                          NotSent,                       Briefly,  Bought);
    not_sent_persisting:                                 class("not sent, persisting",                     NotSent,                       Persists, Failed);
    // Unknown outcomes as they come: unconfirmed at once, never resent.
    hang_before_the_charge:                              class("hang before the charge",                   Unknown(Hang(Before)),         Once,     Unconfirmed);
    hang_after_the_charge:                               class("hang after the charge",                    Unknown(Hang(After)),          Once,     Unconfirmed);
    reset_before_the_charge:                             class("reset before the charge",                  Unknown(Reset(Before)),        Once,     Unconfirmed);
    reset_after_the_charge:                              class("reset after the charge",                   Unknown(Reset(After)),         Once,     Unconfirmed);
    http_500_before_the_charge:                          class("HTTP 500 before the charge",               Unknown(Http500(Before)),      Once,     Unconfirmed);
    http_500_after_the_charge:                           class("HTTP 500 after the charge",                Unknown(Http500(After)),       Once,     Unconfirmed);
    http_200_not_json:                                   class("200 not JSON",                             Unknown(NotJson),              Once,     Unconfirmed);
    http_200_without_a_code:                             class("200 without a code",                       Unknown(NoCode),               Once,     Unconfirmed);
    code_777_undocumented:                               class("code 777 (undocumented)",                  Unknown(Undocumented(Before)), Once,     Unconfirmed);
    code_777_undocumented_after_the_charge:              class("code 777 (undocumented) after the charge", Unknown(Undocumented(After)),  Once,     Unconfirmed);
    // With --retry-unknown: resent, relying on eSMS's 199.
    retry_unknown_hang_before_the_charge_brief:          opt_in("hang before the charge, brief",            Unknown(Hang(Before)),         Briefly,  Bought);
    retry_unknown_hang_before_the_charge_persisting:     opt_in("hang before the charge, persisting",       Unknown(Hang(Before)),         Persists, Unconfirmed);
    retry_unknown_hang_after_the_charge_brief:           opt_in("hang after the charge, brief",             Unknown(Hang(After)),          Briefly,  Bought);
    retry_unknown_hang_after_the_charge_persisting:      opt_in("hang after the charge, persisting",        Unknown(Hang(After)),          Persists, Unconfirmed);
    retry_unknown_reset_before_the_charge_brief:         opt_in("reset before the charge, brief",           Unknown(Reset(Before)),        Briefly,  Bought);
    retry_unknown_reset_before_the_charge_persisting:    opt_in("reset before the charge, persisting",      Unknown(Reset(Before)),        Persists, Unconfirmed);
    retry_unknown_reset_after_the_charge_brief:          opt_in("reset after the charge, brief",            Unknown(Reset(After)),         Briefly,  Bought);
    retry_unknown_reset_after_the_charge_persisting:     opt_in("reset after the charge, persisting",       Unknown(Reset(After)),         Persists, Unconfirmed);
    retry_unknown_http_500_before_the_charge_brief:      opt_in("HTTP 500 before the charge, brief",        Unknown(Http500(Before)),      Briefly,  Bought);
    retry_unknown_http_500_before_the_charge_persisting: opt_in("HTTP 500 before the charge, persisting",   Unknown(Http500(Before)),      Persists, Unconfirmed);
    retry_unknown_http_500_after_the_charge_brief:       opt_in("HTTP 500 after the charge, brief",         Unknown(Http500(After)),       Briefly,  Bought);
    retry_unknown_http_500_after_the_charge_persisting:  opt_in("HTTP 500 after the charge, persisting",    Unknown(Http500(After)),       Persists, Unconfirmed);
    retry_unknown_http_200_not_json_brief:               opt_in("200 not JSON, brief",                      Unknown(NotJson),              Briefly,  Bought);
    retry_unknown_http_200_not_json_persisting:          opt_in("200 not JSON, persisting",                 Unknown(NotJson),              Persists, Unconfirmed);
    retry_unknown_http_200_without_a_code_brief:         opt_in("200 without a code, brief",                Unknown(NoCode),               Briefly,  Bought);
    retry_unknown_http_200_without_a_code_persisting:    opt_in("200 without a code, persisting",           Unknown(NoCode),               Persists, Unconfirmed);
}

impl Class {
    /// Whether a request this fault strikes is charged before its answer
    /// is lost.
    fn charges(&self) -> bool {
        matches!(
            self.kind,
            Unknown(Hang(After) | Reset(After) | Http500(After) | Undocumented(After))
        )
    }

    /// Whether the simulator answers 199 to a repeat of a charged request.
    /// Only where the class needs it: a resend after a charge under
    /// `--retry-unknown` relies on it (as that flag relies on eSMS), and a
    /// 199 needs an earlier charge. Everywhere else, the unknown outcomes
    /// after the charge without the flag included, the simulator charges
    /// every request it processes, so a second request for a bought
    /// package would show as a second charge.
    fn dedupe(&self) -> bool {
        (self.retry_unknown && self.charges()) || matches!(self.kind, AlreadyExists)
    }

    /// Whether the struck package, once bought, is reported "possibly
    /// charged twice": a `100` to a resend after an unknown outcome (SPEC,
    /// Apply). oapkg cannot know that the unknown outcome charged nothing.
    fn possibly_charged_twice(&self) -> bool {
        self.retry_unknown && self.end == Bought && self.bought_code() == "100"
    }

    /// The result code the struck package is recorded with once bought:
    /// 199 when an earlier request had charged it.
    fn bought_code(&self) -> &'static str {
        if self.dedupe() { "199" } else { "100" }
    }

    /// The fault on the struck package's requests; `None` for the classes
    /// with no such fault ([`Cell::rules`] places an outage).
    fn fault(&self) -> Option<Fault> {
        let code = |code: &str| Fault::Code {
            code: code.to_owned(),
            message: code_meaning(code)
                .is_none()
                .then(|| UNDOCUMENTED_MESSAGE.to_owned()),
        };
        let undocumented = Some(UNDOCUMENTED_MESSAGE.to_owned());
        let raw = |body: &str| Fault::Raw {
            status: 200,
            body: body.to_owned(),
        };
        Some(match self.kind {
            Stops(c) | Refused(c) => code(c),
            Code160 => Fault::RateLimitCode,
            Http429 => Fault::TooManyRequests,
            AlreadyExists | NotSent => return None,
            Unknown(Hang(stage)) => Fault::Hang { stage },
            Unknown(Reset(stage)) => Fault::DropConnection { stage },
            Unknown(Http500(stage)) => Fault::ServerError { stage },
            Unknown(NotJson) => raw("<html><body>Service Unavailable</body></html>"),
            Unknown(NoCode) => raw(r#"{"ErrorMessage":"OK"}"#),
            Unknown(Undocumented(Before)) => code("777"),
            Unknown(Undocumented(After)) => Fault::CodeAfterCommit {
                code: "777".to_owned(),
                message: undocumented,
            },
        })
    }

    /// What the struck package's `failed` line says about why.
    fn failure(&self) -> String {
        match self.kind {
            Stops(code) | Refused(code) => {
                let meaning = code_meaning(code).expect("a documented code");
                format!("(code {code}, {meaning}: ")
            }
            Code160 => "(code 160: ".to_owned(),
            Http429 => "(HTTP 429 ".to_owned(),
            NotSent => "(error sending request: client error (Connect)".to_owned(),
            AlreadyExists | Unknown(_) => unreachable!("{} never fails", self.name),
        }
    }
}

/// One package of every cell.
struct Pkg {
    oaid: String,
    tier: &'static str,
    /// eSMS's number for the tier.
    package: u8,
    months: u8,
}

impl Pkg {
    fn key(&self) -> String {
        format!("{}@{START}", self.oaid)
    }

    fn yaml(&self) -> String {
        format!(
            "  - oaid: \"{}\"\n    tier: {}\n    start: {START}\n    duration: {}\n",
            self.oaid, self.tier, self.months
        )
    }
}

/// The packages of every cell, in plan order.
fn packages() -> Vec<Pkg> {
    (0..PACKAGES)
        .map(|i| {
            let (tier, package, months) =
                [("advanced", 2, 12), ("premium", 3, 6), ("trial", 1, 1)][i % 3];
            Pkg {
                oaid: (4_097_311_281_936_189_041 + i as u64).to_string(),
                tier,
                package,
                months,
            }
        })
        .collect()
}

/// One cell of the matrix.
#[derive(Clone, Copy)]
struct Cell {
    class: &'static Class,
    /// The struck package's index, in plan order.
    position: usize,
    parallelism: usize,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.position {
            0 => "first",
            p if p == PACKAGES - 1 => "last",
            _ => "middle",
        };
        write!(
            f,
            "[{}{} at the {place} purchase ({} of {PACKAGES}), parallelism {}, dedupe {}]",
            self.class.name,
            if self.class.retry_unknown {
                ", --retry-unknown"
            } else {
                ""
            },
            self.position + 1,
            self.parallelism,
            if self.class.dedupe() { "on" } else { "off" }
        )
    }
}

impl Cell {
    fn brief_outage(&self) -> bool {
        matches!(self.class.kind, NotSent) && self.class.lasts == Briefly
    }

    fn latency(&self) -> Duration {
        if self.parallelism > 1 {
            LATENCY_AT_8
        } else {
            Duration::ZERO
        }
    }

    /// The simulator's fault rules, each for one OAID.
    ///
    /// A refused connection carries no request, so no rule can refuse one
    /// by OAID: the outage ([`Fault::GoDown`]) starts right after a chosen
    /// request instead. At parallelism 1 packages are sent one after the
    /// other, so going down as the request before the struck package is
    /// answered (the pre-flight's, for the first package) refuses the
    /// struck package's every attempt. At parallelism 8 all five are sent
    /// at once, so the struck package's own first request is rate limited
    /// and takes the simulator down: its later attempts are refused, while
    /// the other requests, already received, are answered.
    fn rules(&self, pkgs: &[Pkg]) -> Vec<FaultRule> {
        let struck = &pkgs[self.position].oaid;
        let down = |answer: Option<Fault>| Fault::GoDown {
            answer: answer.map(Box::new),
        };
        let rule = match (self.class.kind, self.parallelism, self.position) {
            (NotSent, 1, 0) => FaultRule::next(1, down(None)).on_all_calls(),
            (NotSent, 1, p) => FaultRule::for_oaid(&pkgs[p - 1].oaid, down(None)).times(1),
            (NotSent, _, _) => {
                FaultRule::for_oaid(struck, down(Some(Fault::RateLimitCode))).times(1)
            }
            _ => {
                let Some(fault) = self.class.fault() else {
                    return Vec::new();
                };
                let rule = FaultRule::for_oaid(struck, fault);
                match self.class.lasts {
                    Briefly => rule.times(2),
                    Once | Persists => rule,
                }
            }
        };
        vec![rule]
    }

    /// What each package ends as in the faulted run.
    fn ends(&self) -> [End; PACKAGES] {
        std::array::from_fn(|i| match (self.class.kind, self.class.lasts) {
            _ if i < self.position => Bought,
            _ if i == self.position => self.class.end,
            // Nothing is sent after a run-stopping answer…
            (Stops(_), _) if self.parallelism == 1 => End::NotAttempted,
            // … and the outage outlasts the struck package.
            (NotSent, Persists) if self.parallelism == 1 => Failed,
            _ => Bought,
        })
    }

    /// How many requests reach the simulator for each package in the
    /// faulted run (a refused connection never does), and how many
    /// attempts the struck package makes.
    fn requests(&self) -> ([usize; PACKAGES], u32) {
        let mut requests = self.ends().map(|end| usize::from(end == Bought));
        let (struck, attempts) = match (self.class.kind, self.class.lasts, self.parallelism) {
            (_, Once, _) => (1, 1),
            // Refused, then let through once the test ends the outage.
            (NotSent, Briefly, 1) => (1, 2),
            // Rate limited, refused, then let through.
            (NotSent, Briefly, _) => (2, 3),
            (NotSent, Persists, 1) => (0, 4),
            (NotSent, Persists, _) => (1, 4),
            (_, Briefly, _) => (3, 3),
            (_, Persists, _) => (4, 4),
        };
        requests[self.position] = struck;
        (requests, attempts)
    }
}

/// One cell's directory and simulator, and its checks.
struct Check<'a> {
    cell: Cell,
    pkgs: &'a [Pkg],
    env: Env,
    sim: BlockingSimHandle,
}

type State = BTreeMap<String, Value>;
type Charges = BTreeMap<String, Vec<Charge>>;

impl Check<'_> {
    fn start(cell: Cell, pkgs: &[Pkg]) -> Check<'_> {
        let config = pkgs
            .iter()
            .fold(SimConfig::new(), |c, p| c.oaid(p.oaid.as_str()))
            .dedupe(cell.class.dedupe())
            .latency(cell.latency())
            .hang_limit(Duration::from_secs(5));
        let config = cell.rules(pkgs).into_iter().fold(config, SimConfig::fault);
        let env = Env::with_state();
        let body: String = pkgs.iter().map(Pkg::yaml).collect();
        env.file("oapkg.yaml", manifest(&body));
        Check {
            cell,
            pkgs,
            env,
            sim: Simulator::spawn_blocking(config).expect("start the simulator"),
        }
    }

    /// Panics naming the cell, with the run's output if there is one.
    #[track_caller]
    fn assert(&self, ok: bool, what: impl fmt::Display, run: Option<&Run>) {
        if !ok {
            let output = run.map_or(String::new(), |run| {
                format!("\n--- stdout\n{}--- stderr\n{}", run.stdout, run.stderr)
            });
            panic!("{} {what}{output}", self.cell);
        }
    }

    fn point_at_simulator(&self, cmd: &mut Command) {
        let delay = if self.cell.brief_outage() {
            OUTAGE_RETRY_DELAY_MS
        } else {
            RETRY_DELAY_MS
        };
        cmd.env("ESMS_ENDPOINT", self.sim.endpoint().as_str())
            .env("ESMS_API_KEY", API_KEY)
            .env("ESMS_SECRET_KEY", SECRET_KEY)
            .env("OAPKG_RETRY_MIN_DELAY_MS", delay.to_string());
    }

    fn apply_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "apply".to_owned(),
            "--auto-approve".to_owned(),
            "--parallelism".to_owned(),
            self.cell.parallelism.to_string(),
        ];
        if matches!(self.cell.class.kind, Unknown(Hang(_))) {
            let timeout = self.cell.latency() + HANG_TIMEOUT;
            args.extend(["--timeout".to_owned(), timeout.as_secs_f64().to_string()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    fn apply(&self, extra: &[&str]) -> Run {
        let args = self.apply_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.env.command(&args);
        self.point_at_simulator(&mut cmd);
        let run = Run::from(cmd.output().expect("run oapkg"));
        self.wait_idle();
        run
    }

    /// The faulted run. A brief outage ends (the test clears the faults)
    /// once the struck package has been refused, before its next attempt.
    fn faulted_apply(&self) -> Run {
        let flags: &[&str] = if self.cell.class.retry_unknown {
            &["--retry-unknown"]
        } else {
            &[]
        };
        let args = self.apply_args(flags);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut running = self
            .env
            .spawn_with(&args, |cmd| self.point_at_simulator(cmd));
        if self.cell.brief_outage() {
            let refused = format!("{}: not sent (", self.pkgs[self.cell.position].key());
            running.wait_for(
                Stream::Stderr,
                "saying the struck package was not sent",
                Duration::from_secs(30),
                |line| line.contains(&refused),
            );
            self.sim.clear_faults();
        }
        let code = running.wait_exit(Duration::from_secs(60));
        let text = |stream| -> String {
            running
                .lines()
                .filter(|(s, _)| *s == stream)
                .map(|(_, line)| format!("{line}\n"))
                .collect()
        };
        let run = Run {
            code,
            stdout: text(Stream::Stdout),
            stderr: text(Stream::Stderr),
        };
        self.wait_idle();
        run
    }

    /// Until no request is being processed (no charge can still happen).
    fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.sim.idle() {
            let busy = Instant::now() < deadline;
            self.assert(busy, "the simulator never went idle", None);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Purchase requests received from request number `from` on, by key.
    fn requests_since(&self, from: usize) -> BTreeMap<String, usize> {
        let mut by_key = BTreeMap::new();
        for request in &self.sim.requests()[from..] {
            if request.call == Call::Purchase {
                let oaid = request.body["OAID"].as_str().unwrap_or("?");
                let start = request.body["Dateactive"].as_str().unwrap_or("?");
                *by_key.entry(format!("{oaid}@{start}")).or_default() += 1;
            }
        }
        by_key
    }

    /// After every run: the journal folded into the state file, no package
    /// charged twice, and every charged package recorded `submitted` with
    /// its ServicePreviewId, or `unconfirmed`.
    fn invariants(&self, after: &str) -> (State, Charges) {
        let mut charges = Charges::new();
        for charge in self.sim.ledger() {
            let key = format!("{}@{}", charge.oaid, charge.dateactive);
            charges.entry(key).or_default().push(charge);
        }
        let listed = self.env.run(&["state", "list", "--format", "json"]);
        self.assert(listed.code == 0, "state list failed", Some(&listed));
        let state: State = listed
            .json()
            .as_array()
            .expect("an array")
            .iter()
            .map(|r| (r["key"].as_str().unwrap().to_owned(), r.clone()))
            .collect();
        // `state list` replays any journal; the file itself must say the same.
        let journal = self.env.path(&format!("{STATE}.journal"));
        self.assert(
            !journal.exists(),
            format_args!("after {after}: the journal was not folded into the state file"),
            None,
        );
        let file: Value = match std::fs::read(self.env.path(STATE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).expect("the state file is JSON"),
            Err(_) => json!({"packages": {}}),
        };
        let in_file: BTreeMap<&str, (&Value, &Value)> = file["packages"]
            .as_object()
            .expect("packages")
            .iter()
            .map(|(key, r)| (key.as_str(), (&r["status"], &r["service_preview_id"])))
            .collect();
        let listed: BTreeMap<&str, (&Value, &Value)> = state
            .iter()
            .map(|(key, r)| (key.as_str(), (&r["status"], &r["service_preview_id"])))
            .collect();
        self.assert(
            in_file == listed,
            format_args!("after {after}: the state file holds {in_file:?}, state list {listed:?}"),
            None,
        );
        for (key, list) in &charges {
            let n = list.len();
            self.assert(
                n == 1,
                format_args!("after {after}: {key} charged {n} times"),
                None,
            );
            let record = &state.get(key);
            let status = record.map(|r| r["status"].as_str().unwrap_or("?"));
            self.assert(
                matches!(status, Some("submitted" | "unconfirmed")),
                format_args!("after {after}: {key} was charged, but the state says {status:?}"),
                None,
            );
            if let Some(record) = record.filter(|_| status == Some("submitted")) {
                let id = &record["service_preview_id"];
                self.assert(
                    *id == list[0].service_preview_id.as_str(),
                    format_args!(
                        "after {after}: {key} recorded with ServicePreviewId {id}, charged as {}",
                        list[0].service_preview_id
                    ),
                    None,
                );
            }
        }
        (state, charges)
    }

    /// Buys the struck package straight from the simulator, as someone on
    /// the eSMS portal would, so that oapkg's request gets a genuine 199.
    /// Returns its ServicePreviewId.
    fn buy_on_the_portal(&self) -> String {
        let pkg = &self.pkgs[self.cell.position];
        let body = json!({
            "ApiKey": API_KEY, "SecretKey": SECRET_KEY, "OAID": pkg.oaid,
            "Package": pkg.package, "Dateactive": START, "Duaration": pkg.months.to_string(),
        })
        .to_string();
        let addr = self.sim.addr();
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        write!(
            stream,
            "POST {BASE_PATH}{} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            Call::Purchase.path(),
            body.len()
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        assert!(answer.contains(r#""CodeResult":"100""#), "{answer}");
        self.sim.ledger()[0].service_preview_id.clone()
    }
}

fn summary(purchased: usize, failed: usize, unconfirmed: usize) -> String {
    format!("Apply complete: {purchased} purchased, {failed} failed, {unconfirmed} unconfirmed.")
}

/// [`summary`] of a run where `twice` packages are possibly charged twice.
fn summary_twice(purchased: usize, failed: usize, unconfirmed: usize, twice: usize) -> String {
    match twice {
        0 => summary(purchased, failed, unconfirmed),
        n => format!(
            "Apply complete: {purchased} purchased, {failed} failed, {unconfirmed} unconfirmed, {n} possibly charged twice."
        ),
    }
}

/// One cell: the faulted run, then the runs that clear it up.
fn run_cell(cell: Cell, pkgs: &[Pkg]) {
    let check = Check::start(cell, pkgs);
    let bought_before = matches!(cell.class.kind, AlreadyExists).then(|| check.buy_on_the_portal());
    let ends = cell.ends();
    faulted_run(&check, &ends, bought_before.as_deref());
    check.sim.clear_faults();
    let keys = |wanted: &[End]| -> Vec<String> {
        (0..PACKAGES)
            .filter(|i| wanted.contains(&ends[*i]))
            .map(|i| pkgs[i].key())
            .collect()
    };
    let unconfirmed = keys(&[Unconfirmed]);
    second_run(&check, &keys(&[Failed, End::NotAttempted]), &unconfirmed);
    if !unconfirmed.is_empty() {
        // The runbook: on the "portal" (charged), confirm it; absent, resend.
        // Where eSMS deduplicates, a resend is answered 199, which the
        // opt-in classes check.
        if cell.class.charges() && !cell.class.dedupe() {
            confirm(&check, &unconfirmed);
        } else {
            retry_unconfirmed(&check, &unconfirmed);
        }
    }
    converged(&check);
}

/// The run with the fault: the exit code, the last line, each package's
/// line, requests, charges and record.
fn faulted_run(check: &Check<'_>, ends: &[End; PACKAGES], bought_before: Option<&str>) {
    let cell = check.cell;
    let from = check.sim.requests().len();
    let run = check.faulted_apply();
    let count = |end| ends.iter().filter(|e| **e == end).count();
    let all_bought = count(Bought) == PACKAGES;
    check.assert(
        run.code == i32::from(!all_bought),
        format_args!("faulted run: exit code {}", run.code),
        Some(&run),
    );
    let twice = usize::from(cell.class.possibly_charged_twice());
    let expected = summary_twice(count(Bought), count(Failed), count(Unconfirmed), twice);
    check.assert(
        last_line(&run) == expected,
        format_args!("faulted run: the last line is not {expected:?}"),
        Some(&run),
    );
    if let Stops(code) = cell.class.kind {
        let meaning = code_meaning(code).unwrap();
        let stopped = format!("Stopped early: eSMS answered code {code} ({meaning})");
        let not_sent = format!(
            "{} planned package(s) were not sent",
            count(End::NotAttempted)
        );
        for needle in [stopped, not_sent] {
            check.assert(
                run.stderr.contains(&needle),
                format_args!("faulted run: stderr lacks {needle:?}"),
                Some(&run),
            );
        }
    }

    let (requests, attempts) = cell.requests();
    let sent = check.requests_since(from);
    let (state, charges) = check.invariants("the faulted run");
    for (i, pkg) in check.pkgs.iter().enumerate() {
        let key = pkg.key();
        let got = sent.get(&key).copied().unwrap_or(0);
        check.assert(
            got == requests[i],
            format_args!(
                "faulted run: {key} got {got} request(s), not {}",
                requests[i]
            ),
            Some(&run),
        );
        let line = run.stdout.lines().find(|l| {
            l.get(1..)
                .is_some_and(|l| l.starts_with(&format!(" purchase {key}: ")))
        });
        let charged = charges.get(&key).map_or(0, Vec::len);
        let status = state.get(&key).map(|r| r["status"].as_str().unwrap_or("?"));
        let struck = i == cell.position;
        let attempts = match ends[i] {
            _ if struck => attempts,
            // Refused by the outage that struck an earlier package.
            Failed => 4,
            _ => 1,
        };
        // How a line ends: the attempts if more than one.
        let after = if attempts > 1 {
            format!(" after {attempts} attempts")
        } else {
            String::new()
        };
        let (line_ok, what, record_ok) = match ends[i] {
            Bought => {
                let code = if struck {
                    cell.class.bought_code()
                } else {
                    "100"
                };
                let id = charges.get(&key).map(|c| c[0].service_preview_id.as_str());
                let twice = struck && cell.class.possibly_charged_twice();
                let start = format!(
                    "{} purchase {key}: submitted, ServicePreviewId {} (code {code}: ",
                    if twice { '!' } else { '+' },
                    id.unwrap_or("?")
                );
                let end = if attempts > 1 { after } else { ")".to_owned() };
                let end = if twice {
                    format!("{end}; possibly charged twice — check the eSMS portal")
                } else {
                    end
                };
                let recorded = state.get(&key).map(|r| r["result_code"].clone());
                (
                    line.is_some_and(|l| l.starts_with(&start) && l.ends_with(&end)),
                    format!("a line {start:?}…{end:?}"),
                    charged == 1
                        && status == Some("submitted")
                        && recorded == Some(Value::from(code))
                        && (!struck || bought_before.is_none_or(|before| id == Some(before))),
                )
            }
            Failed => {
                let start = format!("x purchase {key}: failed ");
                let why = cell.class.failure();
                let end = format!("{after}; not bought");
                (
                    line.is_some_and(|l| {
                        l.starts_with(&start) && l.contains(&why) && l.ends_with(&end)
                    }),
                    format!("a line {start:?}…{why:?}…{end:?}"),
                    charged == 0 && status.is_none(),
                )
            }
            Unconfirmed => {
                let start = format!("? purchase {key}: unconfirmed (no definite answer: ");
                (
                    line.is_some_and(|l| l.starts_with(&start) && l.ends_with(&after)),
                    format!("a line {start:?}…{after:?}"),
                    charged == usize::from(cell.class.charges()) && status == Some("unconfirmed"),
                )
            }
            End::NotAttempted => (
                line.is_none(),
                "no line".to_owned(),
                charged == 0 && status.is_none(),
            ),
        };
        check.assert(
            line_ok,
            format_args!("faulted run: {key} should have {what}"),
            Some(&run),
        );
        check.assert(
            record_ok,
            format_args!(
                "faulted run: {key}, {:?}, is charged {charged} time(s) and recorded {status:?}",
                ends[i]
            ),
            Some(&run),
        );
    }
}

/// The fault cleared, a plain `apply`: it buys what is left and sends
/// nothing for the unconfirmed packages.
fn second_run(check: &Check<'_>, left: &[String], unconfirmed: &[String]) {
    let from = check.sim.requests().len();
    let run = check.apply(&[]);
    let sent = check.requests_since(from);
    if left.is_empty() && unconfirmed.is_empty() {
        let nothing_sent = check.sim.requests().len() == from;
        check.assert(
            run.code == 0 && run.stdout.contains("No changes.") && nothing_sent,
            "second run: not `No changes.` with nothing sent",
            Some(&run),
        );
    } else {
        let expected = summary(left.len(), 0, unconfirmed.len());
        check.assert(
            run.code == i32::from(!unconfirmed.is_empty()) && last_line(&run) == expected,
            format_args!("second run: exit code {}, expected {expected:?}", run.code),
            Some(&run),
        );
        for key in unconfirmed {
            check.assert(
                !sent.contains_key(key),
                format_args!(
                    "second run: {key} is unconfirmed and was resent without --retry-unconfirmed"
                ),
                Some(&run),
            );
            let listed = format!("\n  ? {key}\n");
            check.assert(
                run.stdout.contains(&listed),
                format_args!("second run: {key} is not listed as unconfirmed"),
                Some(&run),
            );
        }
        let expected: BTreeMap<String, usize> = left.iter().map(|k| (k.clone(), 1)).collect();
        check.assert(
            sent == expected,
            format_args!("second run: requests {sent:?}, not one each for {left:?}"),
            Some(&run),
        );
    }
    check.invariants("the second run");
}

/// `apply --retry-unconfirmed` resolves them: 199 if the lost request was
/// charged, 100 if it never was. A 100 to a resent unconfirmed record is
/// reported "possibly charged twice" (SPEC, Apply): oapkg cannot know that
/// the lost request charged nothing.
fn retry_unconfirmed(check: &Check<'_>, unconfirmed: &[String]) {
    let from = check.sim.requests().len();
    let run = check.apply(&["--retry-unconfirmed"]);
    let code = check.cell.class.bought_code();
    let twice = if code == "100" { unconfirmed.len() } else { 0 };
    let expected = summary_twice(unconfirmed.len(), 0, 0, twice);
    check.assert(
        run.code == 0 && last_line(&run) == expected,
        format_args!(
            "--retry-unconfirmed: exit code {}, expected {expected:?}",
            run.code
        ),
        Some(&run),
    );
    let sent = check.requests_since(from);
    let once: BTreeMap<String, usize> = unconfirmed.iter().map(|k| (k.clone(), 1)).collect();
    check.assert(
        sent == once,
        format_args!("--retry-unconfirmed: requests {sent:?}, not one each for {unconfirmed:?}"),
        Some(&run),
    );
    let (_, charges) = check.invariants("--retry-unconfirmed");
    let mark = if twice > 0 { '!' } else { '?' };
    for key in unconfirmed {
        let id = charges
            .get(key)
            .map_or("?", |c| c[0].service_preview_id.as_str());
        let line =
            format!("{mark} unconfirmed {key}: submitted, ServicePreviewId {id} (code {code}: ");
        check.assert(
            run.stdout.contains(&line),
            format_args!("--retry-unconfirmed: no line {line:?}"),
            Some(&run),
        );
    }
}

/// The charge is on the "portal" (the simulator's ledger): `state confirm
/// KEY --service-preview-id ID` records it, sending nothing.
fn confirm(check: &Check<'_>, unconfirmed: &[String]) {
    let from = check.sim.requests().len();
    for key in unconfirmed {
        let id = check
            .sim
            .ledger()
            .iter()
            .find(|c| format!("{}@{}", c.oaid, c.dateactive) == *key)
            .map(|c| c.service_preview_id.clone());
        check.assert(
            id.is_some(),
            format_args!("state confirm: {key} was never charged"),
            None,
        );
        let id = id.unwrap_or_default();
        let run = check
            .env
            .run(&["state", "confirm", key, "--service-preview-id", &id]);
        check.assert(
            run.code == 0,
            format_args!("state confirm {key}: exit code {}", run.code),
            Some(&run),
        );
    }
    check.assert(
        check.sim.requests().len() == from,
        "state confirm sent a request",
        None,
    );
    check.invariants("state confirm");
}

/// Nothing left to do, and each package charged exactly once.
fn converged(check: &Check<'_>) {
    let plan = check.env.run(&["plan"]);
    check.assert(
        plan.code == 0 && plan.stdout.contains("No changes."),
        "at the end: plan is not `No changes.`",
        Some(&plan),
    );
    let (state, charges) = check.invariants("clearing up");
    for pkg in check.pkgs {
        let key = pkg.key();
        let status = state.get(&key).map(|r| r["status"].clone());
        check.assert(
            charges.get(&key).map(Vec::len) == Some(1) && status == Some(Value::from("submitted")),
            format_args!("at the end: {key} is not charged once and submitted ({status:?})"),
            None,
        );
    }
    check.assert(
        charges.len() == PACKAGES && state.len() == PACKAGES,
        format_args!(
            "at the end: {} keys charged, {} recorded",
            charges.len(),
            state.len()
        ),
        None,
    );
}

/// The six cells of `class` (or those `OAPKG_FAULT_CELLS` names).
fn cells(class: &'static Class) -> Vec<Cell> {
    let filter = std::env::var("OAPKG_FAULT_CELLS").ok();
    PARALLELISMS
        .into_iter()
        .flat_map(|parallelism| {
            POSITIONS.into_iter().map(move |position| Cell {
                class,
                position,
                parallelism,
            })
        })
        .filter(|cell| {
            filter
                .as_deref()
                .is_none_or(|f| cell.to_string().contains(f))
        })
        .collect()
}

/// Runs the cells of `class` at once, each with its own simulator and
/// directory, and fails naming every cell that broke a promise.
fn run_class(class: &'static Class) {
    let cells = cells(class);
    let pkgs = packages();
    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let running: Vec<_> = cells
            .iter()
            .map(|&cell| {
                let pkgs = &pkgs;
                (cell, scope.spawn(move || run_cell(cell, pkgs)))
            })
            .collect();
        running
            .into_iter()
            .filter_map(|(cell, handle)| {
                let panic = handle.join().err()?;
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                // Panics from the helpers do not name the cell.
                Some(if message.starts_with(&cell.to_string()) {
                    message
                } else {
                    format!("{cell} {message}")
                })
            })
            .collect()
    });
    eprintln!(
        "fault matrix, {}: {} cells in {:.1} s, {} failed",
        class.name,
        cells.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cells failed:\n\n{}",
        failures.len(),
        cells.len(),
        failures.join("\n\n")
    );
}
