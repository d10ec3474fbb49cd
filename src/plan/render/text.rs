//! The terminal plan, laid out like `terraform plan`: a loud first line
//! when the state does not exist ([`Plan::no_state_line`]), a legend of the
//! symbols used, one block per listed change (a change apply refuses without
//! a flag is marked `[needs FLAG]`), the name changes, the warnings, a
//! `Guards:` note naming what apply will refuse and the flags it needs, then
//! the summary line, and when apply would refuse the plan one line naming
//! every flag it needs with the exact command.
//!
//! ```text
//!   # 4097311281936189049@2026-12-01 will be purchased
//!   + package "4097311281936189049@2026-12-01" {
//!       + oaid     = 4097311281936189049
//!       + name     = "SVoucher main"
//!       ...
//!         # declared at packages/svoucher.yaml:7
//!     }
//! ```
//!
//! Apply prints the changes it carries out with [`change_block`], so a plan
//! and its apply read the same. Colour is an argument: this module never
//! looks at the terminal or the environment.

use std::fmt::Write as _;

use super::{Field, Paint, Shown, status_line};
use crate::plan::{Action, Allowed, Change, DEFAULT_MAX_PURCHASES, Need, Plan, Warning};
use crate::spec::key_list;
use crate::text::{cut, escape_controls, months, packages, quoted};

/// How to render text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// ANSI colours: the caller decides (a terminal, no `--no-color`, no
    /// `NO_COLOR`).
    pub color: bool,
}

/// What the text says about apply's guards: the flags the run is given
/// (never reported as needed) and the command that carries out the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guards {
    /// The flags given; the default is none (`oapkg plan`).
    pub allowed: Allowed,
    /// The command that applies this plan, without the flags: `oapkg
    /// apply PLANFILE`, with the `-f` and `--state` it was made with.
    pub command: String,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            allowed: Allowed::default(),
            command: "oapkg apply".to_owned(),
        }
    }
}

/// The whole plan as `oapkg plan` prints it, ending with a newline: see
/// [`text_with`], with no flag given and `oapkg apply` as the command.
pub fn text(plan: &Plan, options: &TextOptions) -> String {
    text_with(plan, options, &Guards::default())
}

/// The whole plan, ending with a newline.
///
/// Unchanged keys are counted in the summary line, not listed. When nothing
/// is to be bought the summary line starts with `No changes.`; orphans are
/// still listed above it. When apply would refuse the plan without flags
/// the run was not given (`guards`), the last line names every one of them
/// and the exact command with them ([`refuse_line`]).
pub fn text_with(plan: &Plan, options: &TextOptions, guards: &Guards) -> String {
    let paint = Paint(options.color);
    let listed = plan.listed_changes();
    let mut out = String::new();

    if let Some(line) = plan.no_state_line() {
        out.push_str(&paint.warning(&line));
        out.push_str("\n\n");
    }

    if !listed.is_empty() {
        out.push_str("Packages are marked with the following symbols:\n");
        for action in [
            Action::Purchase,
            Action::Replace,
            Action::Unconfirmed,
            Action::InFlight,
            Action::Orphan,
            Action::Expired,
        ] {
            if listed.iter().any(|c| c.action() == action) {
                let _ = writeln!(
                    out,
                    "  {} {}",
                    paint.symbol(action, action.symbol()),
                    legend(action)
                );
            }
        }
        out.push('\n');
        out.push_str(if plan.buys_anything() {
            "oapkg will perform the following actions:\n\n"
        } else if listed.iter().all(|c| c.action() == Action::Orphan) {
            "oapkg will buy nothing. These recorded packages are no longer declared:\n\n"
        } else {
            "oapkg will buy nothing. These packages need a look:\n\n"
        });
        for change in listed {
            out.push_str(&block(change, paint, None, &notes(plan, change)));
            out.push('\n');
        }
    }

    let labels = plan.label_changes();
    if !labels.is_empty() {
        out.push_str("Names changed (recorded by apply, nothing is bought):\n");
        for label in labels {
            let _ = writeln!(
                out,
                "  label {}: {} -> {}",
                label.key,
                label_text(label.before.as_deref()),
                label_text(label.after.as_deref())
            );
        }
        out.push('\n');
    }

    if !plan.warnings.is_empty() {
        for warning in &plan.warnings {
            out.push_str(&warning_line(warning, paint));
            out.push('\n');
        }
        out.push('\n');
    }

    let needs = plan.needs_beyond(&guards.allowed);
    if !needs.is_empty() {
        out.push_str(&refusal_note(plan, &needs, paint));
        out.push('\n');
    }

    out.push_str(&error_lines(plan, paint));
    out.push_str(&paint.summary(&plan.summary_line()));
    out.push('\n');
    if let Some(line) = total_cost_line(plan) {
        out.push_str(&paint.summary(&line));
        out.push('\n');
    }
    if let Some(line) = refuse_line(&needs, &guards.command) {
        out.push_str(&paint.warning(&line));
        out.push('\n');
    }
    out
}

/// `apply will refuse without: --allow-replace --max-purchases 25; to apply
/// it as reviewed: oapkg apply --allow-replace --max-purchases 25`: every
/// flag at once and the exact command; `None` when no flag is needed.
pub fn refuse_line(needs: &[Need], command: &str) -> Option<String> {
    if needs.is_empty() {
        return None;
    }
    let flags: Vec<String> = needs.iter().map(Need::flag).collect();
    let flags = flags.join(" ");
    Some(format!(
        "apply will refuse without: {flags}; to apply it as reviewed: {} {flags}",
        escape_controls(command)
    ))
}

/// `Total cost: 4,788,000 VND (2 packages).` when the plan has a price
/// list and buys something; `None` otherwise. A total that does not fit
/// in a `u64` is said so, never shown wrapped or saturated (`plan` and
/// `apply` refuse such a plan before rendering it).
pub fn total_cost_line(plan: &Plan) -> Option<String> {
    let total = plan.total_cost()?;
    let requests = plan.summary().requests();
    (requests > 0).then(|| match total {
        Ok(total) => format!("Total cost: {total} ({}).", packages(requests)),
        Err(error) => format!("Total cost: unknown ({}): {error}.", packages(requests)),
    })
}

/// The comment lines a plan adds to a change's block: what to do with an
/// orphan, where a policy renewal comes from, and what buying the change
/// costs.
pub(crate) fn notes(plan: &Plan, change: &Change) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(note) = orphan_note(plan, change) {
        notes.push(note);
    }
    if change.action() == Action::InFlight {
        notes.push(format!(
            "# held by {}",
            super::holder_line(plan.in_flight_holder.as_ref())
        ));
    }
    if plan.is_from_policy(change) && change.action().buys() {
        notes.push("# renewal by a coverage policy (origin: policy)".to_owned());
    }
    if let (Some(cost), Some(prices), Some(spec)) =
        (plan.cost(change), &plan.prices, Some(change.spec()))
    {
        let monthly = prices.money(prices.monthly.get(&spec.tier).copied().unwrap_or(0));
        notes.push(format!(
            "# costs {cost} ({monthly} a month × {})",
            months(spec.duration_months)
        ));
    }
    notes
}

/// What to do with an orphan, as of the plan's today. A record whose
/// period has not ended still guards its OA against overlapping purchases
/// (and proves those days are paid), so the plan never suggests `state rm`
/// for it; an ended one may go.
fn orphan_note(plan: &Plan, change: &Change) -> Option<String> {
    let spec = &change
        .before()
        .as_ref()
        .filter(|_| change.action() == Action::Orphan)?
        .spec;
    let end = crate::spec::show_end(spec.end());
    Some(if spec.ended_before(plan.today) {
        format!(
            "# (its period ended on {end}: `oapkg state rm {}` drops the record)",
            change.key
        )
    } else {
        format!(
            "# (its period runs to {end}: keep the record, it guards this OA against \
             buying those months again)"
        )
    })
}

/// One change as a block, ending with a newline: the comment line saying
/// what will happen, then the package with one line per field.
///
/// Fields the change alters are marked `~` and shown `old -> new`; recorded
/// packages show their status; declared ones where they are declared.
pub fn change_block(change: &Change, options: &TextOptions) -> String {
    block(change, Paint(options.color), None, &[])
}

/// [`change_block`] with user and eSMS text cut at `limit` characters, for
/// renderings with a size budget (Markdown).
/// `notes` are comment lines added after the header (see [`notes`]).
pub(crate) fn block(
    change: &Change,
    paint: Paint,
    limit: Option<usize>,
    notes: &[String],
) -> String {
    let key = change.key.as_str();
    let mut out = String::new();
    for line in header(change) {
        let _ = writeln!(out, "  {}", paint.bold(&line));
    }
    for note in notes {
        let _ = writeln!(out, "  {note}");
    }
    if let Some(failure) = &change.last_failure {
        let line = format!("# {}", super::failure_line(failure, limit));
        let _ = writeln!(out, "  {}", paint.warning(&line));
    }
    let _ = writeln!(
        out,
        "  {} package \"{key}\" {{",
        paint.symbol(change.action(), change.action().symbol())
    );

    // Purchases mark every field `+` (all of it is new, as Terraform does
    // for a create); other actions mark only the fields they alter.
    let all_new = change.action() == Action::Purchase;
    let mut field = |label: &str, value: String, changed: bool| {
        let mark = if all_new {
            Some('+')
        } else if changed {
            Some('~')
        } else {
            None
        };
        match mark {
            Some(mark) => {
                let _ = writeln!(
                    out,
                    "      {} {label:<8} = {value}",
                    paint.symbol(change.action(), mark)
                );
            }
            None => {
                let _ = writeln!(out, "        {label:<8} = {value}");
            }
        }
    };

    match Shown::of(change) {
        Some(shown) => {
            field("oaid", shown.oaid.to_owned(), false);
            let name = change
                .name()
                .map_or("(none)".to_owned(), |n| quoted(n, limit));
            field("name", name, false);
            field(
                "tier",
                arrow(shown.tier, |t| t.to_string()),
                shown.tier.changed(),
            );
            field(
                "start",
                arrow(shown.start, |d| d.to_string()),
                shown.start.changed(),
            );
            field(
                "duration",
                match shown.duration_months.was {
                    Some(was) => format!("{was} -> {}", months(shown.duration_months.now)),
                    None => months(shown.duration_months.now),
                },
                shown.duration_months.changed(),
            );
            field(
                "end",
                arrow(shown.end, crate::spec::show_end),
                shown.end.changed(),
            );
        }
        None => field("oaid", change.key.oaid().to_owned(), false),
    }
    if let Some(record) = &change.before() {
        let status = status_line(record, limit);
        let status = match change.action() {
            // The record says "unconfirmed, no answer was recorded": true
            // of the journal, not of the request, which is still waiting.
            Action::InFlight => match record.submitted_at {
                Some(at) => format!("in flight, sent {}", super::to_seconds(at)),
                None => "in flight".to_owned(),
            },
            _ => status,
        };
        field("status", status, false);
    }
    if let Some(source) = change.source() {
        let _ = writeln!(
            out,
            "        # declared at {}:{}",
            cut(&escape_controls(&source.file), limit),
            source.line
        );
    }
    out.push_str("    }\n");
    out
}

/// What apply will refuse without flags, and which flags: the closing note
/// of a plan with guards, ending with a newline.
fn refusal_note(plan: &Plan, needs: &[Need], paint: Paint) -> String {
    let flags: Vec<String> = needs.iter().map(Need::flag).collect();
    let mut out = format!(
        "{} apply will refuse this plan unless run with {}:\n",
        paint.warning("Guards:"),
        flags.join(" ")
    );
    for need in needs {
        let keys: Vec<&str> = plan
            .listed_changes()
            .into_iter()
            .filter(|c| c.needs().contains(need))
            .map(|c| c.key.as_str())
            .collect();
        let why = match need {
            Need::AllowReplace => format!(
                "{} bought again with a new spec, not refunded: {}",
                packages(keys.len()),
                key_list(&keys)
            ),
            Need::AllowOverlap => format!(
                "{} over the months of a recorded package of the same OA and tier: {}",
                packages(keys.len()),
                key_list(&keys)
            ),
            Need::MaxPurchases(n) => {
                format!("{n} purchase requests, more than the default of {DEFAULT_MAX_PURCHASES}")
            }
        };
        let _ = writeln!(out, "  {}: {why}", need.flag());
    }
    out
}

fn label_text(name: Option<&str>) -> String {
    name.map_or("(none)".to_owned(), |n| quoted(n, None))
}

/// The comment lines above a block: what apply will do with the key, and
/// the flags it needs for it (`[needs --allow-overlap]`).
fn header(change: &Change) -> Vec<String> {
    let mut lines = action_header(change);
    let needs = change.needs();
    if !needs.is_empty() {
        let flags: Vec<String> = needs.iter().map(Need::flag).collect();
        lines[0].push_str(&format!(" [needs {}]", flags.join(" ")));
    }
    if !change.overlaps.is_empty() && needs.contains(&Need::AllowOverlap) {
        let recorded: Vec<&str> = change.overlaps.iter().map(|k| k.as_str()).collect();
        lines.push(format!(
            "# (overlaps the recorded {}: those months would be paid twice)",
            key_list(&recorded)
        ));
    }
    lines
}

fn action_header(change: &Change) -> Vec<String> {
    let key = change.key.as_str();
    match change.action() {
        Action::Purchase => vec![format!("# {key} will be purchased")],
        Action::Replace => vec![
            format!("# {key} will be bought again with the new spec"),
            "# (the earlier purchase is not refunded)".to_owned(),
        ],
        Action::Unconfirmed => vec![
            format!("# {key} is unconfirmed: a request was sent, its outcome is unknown"),
            "# (resent only with --retry-unconfirmed; once the eSMS portal shows it,".to_owned(),
            format!("#  `oapkg state confirm {key}` records it as bought)"),
        ],
        Action::InFlight => vec![
            format!("# {key} is in flight: another oapkg is buying it now"),
            "# (nothing is sent from here; its outcome is recorded when that run ends)".to_owned(),
        ],
        Action::Unchanged => vec![format!("# {key} is unchanged")],
        Action::Orphan => vec![format!(
            "# {key} is no longer declared: nothing is bought, the record stays"
        )],
        Action::Expired => {
            let end = format!(" on {}", crate::spec::show_end(change.spec().end()));
            if change.before().is_some() {
                vec![
                    format!("# {key}'s new spec ended{end}, before today: it is never bought"),
                    "# (the recorded purchase stays as it is)".to_owned(),
                ]
            } else {
                vec![
                    format!("# {key} ended{end}, before today: it is never bought"),
                    "# (remove it from the manifest, or give it a period that is not over)"
                        .to_owned(),
                ]
            }
        }
    }
}

fn legend(action: Action) -> &'static str {
    match action {
        Action::Purchase => "purchase",
        Action::Replace => "replace (buy again with the new spec)",
        Action::Unconfirmed => "unconfirmed (outcome of an earlier request unknown)",
        Action::InFlight => "in flight (another live oapkg is waiting for eSMS's answer)",
        Action::Unchanged => "unchanged",
        Action::Orphan => "orphan (no longer declared; nothing is bought)",
        Action::Expired => "expired (ended before today; never bought)",
    }
}

fn arrow<T: Copy>(field: Field<T>, show: impl Fn(T) -> String) -> String {
    match field.was {
        Some(was) => format!("{} -> {}", show(was), show(field.now)),
        None => show(field.now),
    }
}

/// The plan's errors (`plan --check-account`), each with its hint, and a
/// blank line; nothing when there are none.
fn error_lines(plan: &Plan, paint: Paint) -> String {
    let mut out = String::new();
    for error in &plan.errors {
        let _ = writeln!(
            out,
            "{} {}",
            paint.error("Error:"),
            escape_controls(&error.message)
        );
        if let Some(hint) = &error.hint {
            let _ = writeln!(out, "  {} {}", paint.hint("hint:"), escape_controls(hint));
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

fn warning_line(warning: &Warning, paint: Paint) -> String {
    let located = warning.located();
    let message = escape_controls(&located);
    match &warning.key {
        Some(key) => format!("{} {key}: {message}", paint.warning("Warning:")),
        None => format!("{} {message}", paint.warning("Warning:")),
    }
}

impl Paint {
    /// The summary line with its leading `Plan:` or `No changes.` styled.
    fn summary(self, line: &str) -> String {
        if let Some(rest) = line.strip_prefix("Plan:") {
            return format!("{}{rest}", self.bold("Plan:"));
        }
        if let Some(rest) = line.strip_prefix("No changes.") {
            return format!("{}{rest}", self.all_good("No changes."));
        }
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::render::fixtures;

    const PLAIN: TextOptions = TextOptions { color: false };

    #[test]
    fn no_changes() {
        insta::assert_snapshot!(text(&fixtures::no_changes(), &PLAIN));
    }

    #[test]
    fn purchases_only() {
        insta::assert_snapshot!(text(&fixtures::purchases_only(), &PLAIN));
    }

    #[test]
    fn orphans_only_buy_nothing_but_are_listed() {
        let out = text(&fixtures::orphans_only(), &PLAIN);
        assert!(out.ends_with("No changes. 5 unchanged, 2 orphaned.\n"));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn mixed() {
        insta::assert_snapshot!(text(&fixtures::mixed(), &PLAIN));
    }

    #[test]
    fn in_flight_names_the_holder_and_is_counted_apart() {
        let out = text(&fixtures::in_flight(), &PLAIN);
        assert!(out.contains(
            "# held by pid 4242 on host build-7 running \"oapkg apply --auto-approve\" since 2026-11-26T09:59:58Z"
        ));
        assert!(
            !out.contains("state confirm"),
            "not a case for the portal: {out}"
        );
        assert!(out.contains(
            "Plan: 1 to purchase, 1 to replace, 0 unconfirmed, 3 unchanged, 1 orphaned, 1 in flight."
        ));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn guards_and_expired() {
        let out = text(&fixtures::guarded(), &PLAIN);
        assert!(out.contains(
            "  # 4097311281936189049@2026-12-15 will be purchased [needs --allow-overlap]\n  \
             # (overlaps the recorded 4097311281936189049@2026-12-01: those months would be paid twice)\n"
        ));
        assert!(out.contains("  x expired (ended before today; never bought)\n"));
        assert!(out.contains(
            "  label 1122334455667788990@2027-01-01: \"Kho Hà Nội\" -> \"Kho hàng Hà Nội\"\n"
        ));
        assert!(out.ends_with(
            "Guards: apply will refuse this plan unless run with --allow-replace --allow-overlap:\n  \
             --allow-replace: 1 package bought again with a new spec, not refunded: 2233445566778899001@2026-12-01\n  \
             --allow-overlap: 1 package over the months of a recorded package of the same OA and tier: 4097311281936189049@2026-12-15\n\n\
             Plan: 1 to purchase, 1 to replace, 0 unconfirmed, 2 unchanged, 1 orphaned, 2 expired.\n\
             apply will refuse without: --allow-replace --allow-overlap; \
             to apply it as reviewed: oapkg apply --allow-replace --allow-overlap\n"
        ));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn a_flag_already_given_is_not_reported() {
        let plan = fixtures::guarded();
        let guards = |replace, overlap| Guards {
            allowed: Allowed {
                replace,
                overlap,
                ..Allowed::default()
            },
            command: "oapkg apply -f 'my dir'".to_owned(),
        };
        let out = text_with(&plan, &PLAIN, &guards(true, false));
        assert!(
            out.contains("Guards: apply will refuse this plan unless run with --allow-overlap:\n")
        );
        assert!(!out.contains("  --allow-replace:"), "{out}");
        assert!(out.ends_with(
            "apply will refuse without: --allow-overlap; \
             to apply it as reviewed: oapkg apply -f 'my dir' --allow-overlap\n"
        ));
        let out = text_with(&plan, &PLAIN, &guards(true, true));
        assert!(
            !out.contains("Guards:") && !out.contains("apply will refuse"),
            "{out}"
        );
        assert!(out.ends_with("2 expired.\n"));
        // A lower --max-purchases than the default is a need of its own.
        let many = fixtures::many_purchases(5);
        let tight = Guards {
            allowed: Allowed {
                max_purchases: 3,
                ..Allowed::default()
            },
            ..Guards::default()
        };
        assert!(
            text_with(&many, &PLAIN, &tight)
                .ends_with("apply will refuse without: --max-purchases 5; to apply it as reviewed: oapkg apply --max-purchases 5\n")
        );
    }

    #[test]
    fn expired_only() {
        let out = text(&fixtures::expired_only(), &PLAIN);
        assert!(out.contains("oapkg will buy nothing. These packages need a look:"));
        assert!(out.ends_with("No changes. 4 unchanged, 0 orphaned, 1 expired.\n"));
        assert!(!out.contains("Guards:"));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn max_purchases_is_a_guard_of_the_whole_plan() {
        let out = text(&fixtures::many_purchases(21), &PLAIN);
        assert!(out.contains(
            "Guards: apply will refuse this plan unless run with --max-purchases 21:\n  \
             --max-purchases 21: 21 purchase requests, more than the default of 20\n"
        ));
        let out = text(&fixtures::many_purchases(20), &PLAIN);
        assert!(!out.contains("Guards:"));
    }

    #[test]
    fn mixed_in_colour() {
        let out = text(&fixtures::mixed(), &TextOptions { color: true });
        assert!(out.contains("\x1b[32m+\x1b[0m package"));
        assert!(out.contains("\x1b[33m~\x1b[0m tier"));
        // Escapes only come from the painter: the uncoloured text is the same.
        assert_eq!(
            strip_ansi(&out),
            text(&fixtures::mixed(), &PLAIN),
            "colour must not change the text"
        );
        insta::assert_snapshot!(out.replace('\x1b', "<ESC>"));
    }

    #[test]
    fn no_escape_sequences_without_colour() {
        for plan in [fixtures::mixed(), fixtures::orphans_only()] {
            assert!(!text(&plan, &PLAIN).contains('\x1b'));
        }
    }

    #[test]
    fn a_name_cannot_fake_a_line() {
        let mut plan = fixtures::purchases_only();
        plan.changes[0].sides.desired_mut().unwrap().name =
            Some("x\"\n  + package \"evil\" {\x1b[2J".to_owned());
        let out = text(&plan, &PLAIN);
        assert!(out.contains(r#"name     = "x\"\n  + package \"evil\" {\u{1b}[2J""#));
        assert!(!out.contains('\x1b'));
        assert_eq!(
            out.matches("package \"").count(),
            2,
            "only the two real blocks"
        );
        assert_eq!(out.lines().filter(|l| l.contains("evil")).count(), 1);
    }

    #[test]
    fn a_purchase_shows_its_last_failed_attempt() {
        let mut plan = fixtures::purchases_only();
        plan.changes[0].last_failure = Some(crate::state::FailedAttempt {
            code: Some("102".to_owned()),
            message: "No price\nlist".to_owned(),
            at: "2026-11-26T10:00:03Z".parse().unwrap(),
        });
        let out = text(&plan, &PLAIN);
        let line = "  # last attempt failed: code 102 (no price list for this service): No price\\nlist, at 2026-11-26T10:00:03Z\n";
        assert_eq!(out.matches(line).count(), 1, "{out}");
        let block = change_block(&plan.changes[0], &PLAIN);
        assert!(block.contains(line), "{block}");
        let markdown = super::super::markdown::markdown(&plan, &Default::default());
        assert!(
            markdown.contains("# last attempt failed: code 102 (no price list for this service)"),
            "{markdown}"
        );
        // No request got through: no code.
        plan.changes[0].last_failure = Some(crate::state::FailedAttempt {
            code: None,
            message: "error sending request".to_owned(),
            at: "2026-11-26T10:00:03Z".parse().unwrap(),
        });
        assert!(text(&plan, &PLAIN).contains(
            "  # last attempt failed: not sent: error sending request, at 2026-11-26T10:00:03Z\n"
        ));
    }

    /// Apart from the notes only a plan knows (an orphan's, as of its
    /// today; a cost), the block alone is what the plan shows.
    #[test]
    fn a_block_alone_is_what_the_plan_shows() {
        let plan = fixtures::mixed();
        let whole = text(&plan, &PLAIN);
        let without_notes: String = whole
            .lines()
            .filter(|line| !line.starts_with("  # (its period"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(plan.changes.iter().any(|c| c.action() == Action::Orphan));
        for change in &plan.changes {
            assert!(without_notes.contains(&change_block(change, &PLAIN)));
        }
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
