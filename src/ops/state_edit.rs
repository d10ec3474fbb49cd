//! The rules of hand edits to the recorded set (`state rm`, `state mv`):
//! which edits could make a later apply buy a package twice, and what
//! `--force` gives up.
//!
//! Pure: the records, what the manifests declare and today come in as
//! arguments; the CLI reads them, takes the lock and writes. A record is
//! the evidence that a package was paid for (or may have been), so:
//!
//! - removing one that is still declared makes the next apply buy it again;
//! - removing or moving an unconfirmed one loses a charge eSMS may have
//!   made (and `--retry-unconfirmed` would charge the moved key again);
//! - removing one whose period has not ended drops the overlap guard it
//!   gives its OA: a package over the same months under another start date
//!   is then bought again without `--allow-overlap`;
//! - moving a record away from a declared key, or to a key nothing
//!   declares, turns one `unchanged` into a `purchase`.
//!
//! `--force` overrides the declared and period checks of `rm` and the
//! declared checks of `mv`, and says which guard goes; an unconfirmed
//! record is never moved (confirm it first).

use std::fmt;

use jiff::civil::Date;

use crate::manifest::Source;
use crate::spec::{Key, show_end};
use crate::state::{Record, Status};
use crate::text::escape_controls;

/// Why removing a record could cost money: one guard the record gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RmGuard {
    /// The key is still declared (at this place): the next apply buys it
    /// again.
    Declared(Source),
    /// eSMS may have charged for it; removing it forgets that charge.
    Unconfirmed,
    /// Its period runs until this day (inclusive): it guards its OA
    /// against overlapping purchases and proves those days are paid.
    PeriodNotEnded(Option<Date>),
}

impl RmGuard {
    /// Why `rm` refuses, for the refusal's line about `key`.
    pub fn refusal(&self, key: &Key) -> String {
        match self {
            RmGuard::Declared(source) => {
                format!("declared at {source}: the next apply would buy it again")
            }
            RmGuard::Unconfirmed => format!(
                "unconfirmed: eSMS may have charged for it; settle it with `oapkg state confirm {key}` \
                 (found on the eSMS portal) or `oapkg apply --retry-unconfirmed` (not found)"
            ),
            RmGuard::PeriodNotEnded(end) => format!(
                "its period has not ended (it runs to {}): the record is the evidence those days \
                 are paid and guards its OA against buying them again",
                show_end(*end)
            ),
        }
    }

    /// What goes with the record when `--force` removes it anyway.
    pub fn forced(&self) -> String {
        match self {
            RmGuard::Declared(source) => format!(
                "still declared at {source}: the next plan shows it as a purchase and apply buys it again"
            ),
            RmGuard::Unconfirmed => {
                "unconfirmed: if eSMS charged for it, that charge is no longer \
                 recorded anywhere in oapkg"
                    .to_owned()
            }
            RmGuard::PeriodNotEnded(end) => format!(
                "its period runs to {}: a package of this OA and tier over those months is no \
                 longer refused without --allow-overlap",
                show_end(*end)
            ),
        }
    }
}

/// The guards removing `record` (under `key`) gives up: `declared` is
/// where the manifests declare the key, if they do.
pub fn rm_guards(record: &Record, declared: Option<&Source>, today: Date) -> Vec<RmGuard> {
    let mut guards = Vec::new();
    if let Some(source) = declared {
        guards.push(RmGuard::Declared(source.clone()));
    }
    if record.status == Status::Unconfirmed {
        guards.push(RmGuard::Unconfirmed);
    }
    if !record.spec.ended_before(today) {
        guards.push(RmGuard::PeriodNotEnded(record.spec.end()));
    }
    guards
}

/// Why `state mv OLDKEY NEWKEY` could cost money (or cannot be done).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MvProblem {
    /// OLDKEY is not recorded: nothing to move.
    NotRecorded,
    /// NEWKEY is recorded already: two records cannot share it.
    TargetRecorded,
    /// OLDKEY is unconfirmed: moving it would let `--retry-unconfirmed`
    /// charge NEWKEY while the first charge stays unrecorded. Never
    /// overridden.
    Unconfirmed,
    /// OLDKEY is still declared: the next apply would buy it again.
    OldDeclared(Source),
    /// NEWKEY is declared nowhere: the record would be an orphan, and the
    /// key it guards today (if declared elsewhere) bought again.
    NewNotDeclared,
}

impl MvProblem {
    /// Whether `--force` overrides it (the declared checks only).
    pub fn forceable(&self) -> bool {
        matches!(self, MvProblem::OldDeclared(_) | MvProblem::NewNotDeclared)
    }

    /// The refusal's line about this problem.
    pub fn refusal(&self, old: &Key, new: &Key) -> String {
        match self {
            MvProblem::NotRecorded => {
                format!("{old} is not in the state file; see `oapkg state list`")
            }
            MvProblem::TargetRecorded => {
                format!("{new} is already recorded; see both with `oapkg state show`")
            }
            MvProblem::Unconfirmed => format!(
                "{old} is unconfirmed: eSMS may have charged for it under {old}; check the eSMS \
                 portal and `oapkg state confirm {old}` first (--force does not override this)"
            ),
            MvProblem::OldDeclared(source) => format!(
                "{old} is still declared at {source}: once its record moves, the next apply would \
                 buy it again; change the manifest to {new} first"
            ),
            MvProblem::NewNotDeclared => format!(
                "{new} is not declared in the manifests: the moved record would be an orphan; \
                 declare {new} (the start eSMS registered) first"
            ),
        }
    }

    /// What `--force` gives up, for the problems it overrides.
    pub fn forced(&self, old: &Key, new: &Key) -> String {
        match self {
            MvProblem::OldDeclared(source) => {
                format!("{old} is still declared at {source}: the next plan shows it as a purchase")
            }
            MvProblem::NewNotDeclared => {
                format!("{new} is not declared: the moved record shows as an orphan")
            }
            other => other.refusal(old, new),
        }
    }
}

/// Everything wrong with moving `old` (recorded as `record`, if it is) to
/// `new` (`new_recorded` when it is recorded already), given where the
/// manifests declare each key. Empty: the move is safe.
pub fn mv_problems(
    record: Option<&Record>,
    new_recorded: bool,
    old_declared: Option<&Source>,
    new_declared: Option<&Source>,
) -> Vec<MvProblem> {
    let mut problems = Vec::new();
    match record {
        None => problems.push(MvProblem::NotRecorded),
        Some(r) if r.status == Status::Unconfirmed => problems.push(MvProblem::Unconfirmed),
        Some(_) => {}
    }
    if new_recorded {
        problems.push(MvProblem::TargetRecorded);
    }
    if let Some(source) = old_declared {
        problems.push(MvProblem::OldDeclared(source.clone()));
    }
    if new_declared.is_none() {
        problems.push(MvProblem::NewNotDeclared);
    }
    problems
}

/// The problems that stop a move: all of them, or with `--force` those it
/// does not override.
pub fn mv_blocking(problems: &[MvProblem], force: bool) -> Vec<&MvProblem> {
    problems
        .iter()
        .filter(|p| !force || !p.forceable())
        .collect()
}

/// A hand edit refused: what was refused, one line per reason, and what to
/// do. Shown on several lines (each line's foreign text escaped here, so
/// that the CLI may keep the line breaks).
#[derive(Debug, thiserror::Error)]
pub struct EditRefused {
    /// The first line: what was refused and that nothing changed.
    pub summary: String,
    /// One reason per line.
    pub reasons: Vec<String>,
    /// What to do, on the last line.
    pub advice: String,
}

impl fmt::Display for EditRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_controls(&self.summary))?;
        for reason in &self.reasons {
            write!(f, "\n  {}", escape_controls(reason))?;
        }
        if !self.advice.is_empty() {
            write!(f, "\n{}", escape_controls(&self.advice))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Oaid, Spec, Tier};

    fn record(start: &str, months: u8, status: Status) -> Record {
        let spec = Spec {
            oaid: Oaid::parse("1").unwrap(),
            tier: Tier::Premium,
            start: start.parse().unwrap(),
            duration_months: months,
        };
        Record {
            spec_hash: spec.hash(),
            spec,
            name: None,
            status,
            service_preview_id: None,
            result_code: None,
            result_message: None,
            submitted_at: None,
            confirmed: None,
            by_policy: false,
        }
    }

    fn source() -> Source {
        Source {
            file: "oapkg.yaml".into(),
            line: 4,
            column: 5,
        }
    }

    fn day(text: &str) -> Date {
        text.parse().unwrap()
    }

    #[test]
    fn a_period_ends_after_its_last_day_not_on_it() {
        // 2026-01-01 for one month: its last day is 2026-01-31.
        let spec = record("2026-01-01", 1, Status::Submitted).spec;
        assert!(!spec.ended_before(day("2025-12-01")), "not started");
        assert!(!spec.ended_before(day("2026-01-31")), "its last day");
        assert!(spec.ended_before(day("2026-02-01")));
    }

    #[test]
    fn rm_guards_name_every_reason_and_none_for_an_ended_undeclared_record() {
        let ended = record("2025-01-01", 1, Status::Submitted);
        assert_eq!(rm_guards(&ended, None, day("2026-11-26")), []);
        let running = record("2026-11-01", 12, Status::Unconfirmed);
        assert_eq!(
            rm_guards(&running, Some(&source()), day("2026-11-26")),
            [
                RmGuard::Declared(source()),
                RmGuard::Unconfirmed,
                RmGuard::PeriodNotEnded(Some(day("2027-10-31"))),
            ]
        );
        // The last day still guards.
        assert_eq!(
            rm_guards(&running, None, day("2027-10-31")),
            [
                RmGuard::Unconfirmed,
                RmGuard::PeriodNotEnded(Some(day("2027-10-31")))
            ]
        );
        let key = Key::parse("1@2026-11-01").unwrap();
        assert!(
            RmGuard::Unconfirmed
                .refusal(&key)
                .contains("state confirm 1@2026-11-01")
        );
        assert!(
            RmGuard::PeriodNotEnded(Some(day("2027-10-31")))
                .forced()
                .contains("--allow-overlap")
        );
    }

    #[test]
    fn mv_needs_a_declared_unrecorded_target_and_a_settled_undeclared_source() {
        let submitted = record("2026-12-01", 12, Status::Submitted);
        let unconfirmed = record("2026-12-01", 12, Status::Unconfirmed);
        // The one safe move: eSMS registered another start, the manifest
        // now declares it.
        assert_eq!(
            mv_problems(Some(&submitted), false, None, Some(&source())),
            []
        );
        let all = mv_problems(Some(&unconfirmed), true, Some(&source()), None);
        assert_eq!(
            all,
            [
                MvProblem::Unconfirmed,
                MvProblem::TargetRecorded,
                MvProblem::OldDeclared(source()),
                MvProblem::NewNotDeclared,
            ]
        );
        // --force overrides the declared checks only.
        assert_eq!(
            mv_blocking(&all, true),
            [&MvProblem::Unconfirmed, &MvProblem::TargetRecorded]
        );
        assert_eq!(mv_blocking(&all, false).len(), 4);
        let undeclared = mv_problems(Some(&submitted), false, None, None);
        assert_eq!(mv_blocking(&undeclared, true), Vec::<&MvProblem>::new());
        assert_eq!(
            mv_problems(None, false, None, Some(&source())),
            [MvProblem::NotRecorded]
        );
    }

    #[test]
    fn a_refusal_keeps_its_line_breaks_and_escapes_what_it_quotes() {
        let refused = EditRefused {
            summary: "refusing; nothing was removed:".into(),
            reasons: vec!["a\nfake line".into(), "b".into()],
            advice: "Pass --force".into(),
        };
        assert_eq!(
            refused.to_string(),
            "refusing; nothing was removed:\n  a\\nfake line\n  b\nPass --force"
        );
    }
}
