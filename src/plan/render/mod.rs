//! What people read: a [`Plan`](super::Plan) as terminal text, as one JSON
//! document, or as a Markdown pull-request comment.
//!
//! The three renderers share one reading of a change (which spec is shown,
//! which fields the change alters, how a record's status is described), kept
//! here so that text, JSON and Markdown never disagree. Renderers are pure:
//! they get everything (colour or not, size limits) as arguments and return a
//! `String`; whether stdout is a terminal or `NO_COLOR` is set is the CLI's
//! business. User text (names, eSMS messages, file paths) is escaped for each
//! target so that it can never fake a line of the plan.
//!
//! - [`text()`] / [`change_block`]: the terminal plan; apply prints its own
//!   progress with the same blocks (one vocabulary for plan and apply).
//! - [`json()`]: the `--format json` document (`docs/plan-json.md`), and
//!   [`plan_schema`] its JSON Schema (`oapkg schema --plan`).
//! - [`markdown()`]: the `--format markdown` comment, always under
//!   [`markdown::COMMENT_LIMIT`] bytes, naming its [`Project`] (state and
//!   manifests) so that a bot finds its own comment.
//!
//! Times are shown to the second ([`to_seconds`]).

pub mod json;
pub mod markdown;
pub mod paint;
pub mod schema;
pub mod text;

#[cfg(test)]
pub(crate) mod fixtures;

use crate::text::{cut, escape_controls};

use jiff::civil::Date;

pub use json::{JsonPlan, json, plan_schema, write_json};
pub use markdown::{MarkdownOptions, Project, markdown};
pub use paint::Paint;
pub use text::{Guards, TextOptions, change_block, text, text_with};

use super::Change;
use crate::spec::{Spec, Tier};
use crate::state::{FailedAttempt, Record, Status};

/// A field as shown for one change: its value, and the recorded value when
/// the change alters it (shown as `was -> now`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field<T> {
    pub now: T,
    pub was: Option<T>,
}

impl<T: Copy + PartialEq> Field<T> {
    fn of(now: &Spec, was: Option<&Spec>, get: impl Fn(&Spec) -> T) -> Field<T> {
        let value = get(now);
        Field {
            now: value,
            was: was.map(&get).filter(|old| *old != value),
        }
    }

    pub fn changed(&self) -> bool {
        self.was.is_some()
    }
}

/// The spec fields of a change as every renderer shows them.
///
/// The shown spec is the declared one when there is one (purchase, replace, a
/// declared unconfirmed key) and the recorded one otherwise (orphans, an
/// undeclared unconfirmed key). When both sides exist, fields whose recorded
/// value differs carry it in `was`.
#[derive(Clone, Debug)]
pub(crate) struct Shown<'a> {
    pub oaid: &'a str,
    pub tier: Field<Tier>,
    pub start: Field<Date>,
    pub duration_months: Field<u8>,
    /// `None`: past the calendar's end (never for a valid package).
    pub end: Field<Option<Date>>,
}

impl<'a> Shown<'a> {
    pub fn of(change: &'a Change) -> Option<Shown<'a>> {
        let now = change.spec();
        let was = match (change.desired(), change.before()) {
            (Some(_), Some(record)) => Some(&record.spec),
            _ => None,
        };
        Some(Shown {
            oaid: now.oaid.as_str(),
            tier: Field::of(now, was, |s| s.tier),
            start: Field::of(now, was, |s| s.start),
            duration_months: Field::of(now, was, |s| s.duration_months),
            end: Field::of(now, was, Spec::end),
        })
    }
}

/// A time as people read it in plans and listings: to the second
/// (`2026-10-01T02:00:03Z`), the fraction cut off.
pub fn to_seconds(at: jiff::Timestamp) -> jiff::Timestamp {
    at.round(
        jiff::TimestampRound::new()
            .smallest(jiff::Unit::Second)
            .mode(jiff::RoundMode::Trunc),
    )
    .unwrap_or(at)
}

/// What a record says about the purchase, in one line:
/// `submitted, ServicePreviewId 98765, sent 2026-10-01T02:00:00Z, result 100: Success`.
///
/// The eSMS message is foreign text: control characters are escaped and it
/// is cut at `limit` characters when one is given.
pub(crate) fn status_line(record: &Record, limit: Option<usize>) -> String {
    let mut parts = vec![record.status.name().to_owned()];
    if let Some(id) = &record.service_preview_id {
        parts.push(format!(
            "ServicePreviewId {}",
            cut(&escape_controls(id), limit)
        ));
    }
    if let Some(at) = record.submitted_at {
        let verb = match record.status {
            Status::Imported => "recorded",
            Status::Submitted | Status::Unconfirmed => "sent",
        };
        parts.push(format!("{verb} {}", to_seconds(at)));
    }
    let result = match (&record.result_code, &record.result_message) {
        (Some(code), Some(message)) => Some(format!("result {code}: {message}")),
        (Some(code), None) => Some(format!("result {code}")),
        (None, Some(message)) => Some(format!("result: {message}")),
        (None, None) => None,
    };
    if let Some(result) = result {
        parts.push(cut(&escape_controls(&result), limit).into_owned());
    }
    parts.join(", ")
}

/// A key's last failed attempt, in one line:
/// `last attempt failed: code 102 (no price list for this service): No price, at 2026-11-26T10:00:03Z`.
/// The message is foreign text: escaped, and cut at `limit` characters.
pub fn failure_line(failure: &FailedAttempt, limit: Option<usize>) -> String {
    let what = match &failure.code {
        Some(code) => match crate::esms::code_meaning(code) {
            Some(meaning) => format!("code {} ({meaning})", escape_controls(code)),
            None => format!("code {}", escape_controls(code)),
        },
        None => "not sent".to_owned(),
    };
    let message = cut(&escape_controls(&failure.message), limit).into_owned();
    if message.is_empty() {
        format!("last attempt failed: {what}, at {}", to_seconds(failure.at))
    } else {
        format!(
            "last attempt failed: {what}: {message}, at {}",
            to_seconds(failure.at)
        )
    }
}

/// Who holds a state's lock, in one line: `pid 4242 on host build-7 running
/// "oapkg apply" since 2026-11-26T10:00:00Z` (and the CI job, when known);
/// `another process` when it left no readable label. Foreign text
/// (host, command) is escaped.
pub fn holder_line(holder: Option<&crate::state::LockHolder>) -> String {
    let Some(holder) = holder else {
        return "another process (it left no label)".to_owned();
    };
    let mut line = format!(
        "pid {} on host {} running \"{}\" since {}",
        holder.pid,
        escape_controls(&holder.host),
        escape_controls(&holder.command),
        to_seconds(holder.since)
    );
    if let Some(job) = &holder.ci_job {
        line.push_str(&format!(" (CI job {})", escape_controls(job)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Summary};

    #[test]
    fn summary_line_counts_every_action() {
        let plan = fixtures::mixed();
        assert_eq!(
            plan.summary(),
            Summary {
                purchase: 1,
                replace: 1,
                unconfirmed: 1,
                in_flight: 0,
                unchanged: 3,
                orphan: 1,
                expired: 0,
            }
        );
        assert!(plan.buys_anything());
        assert_eq!(
            plan.summary_line(),
            "Plan: 1 to purchase, 1 to replace, 1 unconfirmed, 3 unchanged, 1 orphaned."
        );
    }

    #[test]
    fn summary_line_says_no_changes_when_nothing_is_bought() {
        let plan = fixtures::no_changes();
        assert!(!plan.buys_anything());
        assert_eq!(plan.summary_line(), "No changes. 12 unchanged, 0 orphaned.");
        // Orphans alone buy nothing, but are counted.
        let plan = fixtures::orphans_only();
        assert!(!plan.buys_anything());
        assert_eq!(plan.summary_line(), "No changes. 5 unchanged, 2 orphaned.");
        let empty = Summary::default();
        assert_eq!(empty.line(), "No changes. 0 unchanged, 0 orphaned.");
    }

    #[test]
    fn any_action_that_may_send_a_request_buys_something() {
        for (action, buys) in [
            (Action::Purchase, true),
            (Action::Replace, true),
            (Action::Unconfirmed, true),
            // Not settled: another process is buying it (exit 2, as unconfirmed).
            (Action::InFlight, true),
            (Action::Unchanged, false),
            (Action::Orphan, false),
            (Action::Expired, false),
        ] {
            assert_eq!(action.buys(), buys, "{action}");
            let mut summary = Summary::default();
            match action {
                Action::Purchase => summary.purchase = 1,
                Action::Replace => summary.replace = 1,
                Action::Unconfirmed => summary.unconfirmed = 1,
                Action::InFlight => summary.in_flight = 1,
                Action::Unchanged => summary.unchanged = 1,
                Action::Orphan => summary.orphan = 1,
                Action::Expired => summary.expired = 1,
            }
            assert_eq!(summary.buys_anything(), buys, "{action}");
            assert_eq!(summary.count(action), 1);
            assert_eq!(summary.line().starts_with("Plan: "), buys, "{action}");
        }
    }

    #[test]
    fn an_unchanged_key_cannot_be_a_listed_change() {
        // Counted in `unchanged`, never listed: the type has no such sides.
        let package = fixtures::purchases_only().changes[0].desired().cloned();
        let error = crate::plan::Sides::new(Action::Unchanged, package, None).unwrap_err();
        assert!(error.contains("a plan lists no such key"), "{error}");
    }

    #[test]
    fn listed_changes_are_sorted_by_key() {
        let mut plan = fixtures::mixed();
        plan.changes.reverse();
        let keys: Vec<&str> = plan
            .listed_changes()
            .iter()
            .map(|c| c.key.as_str())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
    }
}
