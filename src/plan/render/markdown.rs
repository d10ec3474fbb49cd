//! The `--format markdown` plan: a pull-request comment.
//!
//! Layout, top to bottom: the summary line (bold), a caution banner when
//! the state does not exist (the plan then assumes nothing was ever
//! bought), a caution banner naming
//! the flags apply needs ([`Plan::needs`]: a `replace`, an overlap with a
//! recorded package, more requests than the default maximum) and a warning
//! banner for `unconfirmed` keys, a note when the comment had to be cut, the
//! table of changes to buy, the orphans, the expired packages, the name
//! changes, one `<details>` block per change (the text plan's block), the
//! warnings, then the manifest hash and state serial and the hidden
//! [`marker`] a bot uses to find and update its own comment. When the
//! caller names the [`Project`] (the state and the manifests), a line under
//! the summary names them and the marker carries the state, so two oapkg
//! roots in one repository each update their own comment.
//!
//! The comment is always shorter than [`MarkdownOptions::limit`] bytes
//! (GitHub refuses comments over 65,536 characters). When the plan does not
//! fit, entries are taken by priority — the table rows and then the details
//! of `replace` and `unconfirmed` keys (money spent again, unknown outcomes),
//! then `purchase` rows, orphans, warnings, the remaining details, and last
//! the chart (whole or not at all: it is the first thing dropped) — while
//! the layout stays in key order. Every cut section says how many of its
//! entries it leaves out and how to see them all, and a note under the
//! banners sums it up. The summary line and banners always carry the full
//! counts.
//!
//! Names, file paths and messages are user or foreign text: they are escaped
//! so they cannot break the table, open HTML, or close a code block.

use std::fmt::Write as _;

use super::Paint;
use super::text::block;
use super::{Field, Shown};
use crate::plan::{Action, Change, DEFAULT_MAX_PURCHASES, Need, Plan, Summary};
use crate::text::{
    cut, longest_backtick_run, markdown as text, markdown_code as code, months, packages,
};

/// GitHub's comment limit is 65,536 characters; this leaves room for
/// whatever a bot wraps around the comment.
pub const COMMENT_LIMIT: usize = 60_000;

/// The hidden line that identifies an oapkg plan comment of no named
/// project; see [`marker`].
pub const MARKER: &str = "<!-- oapkg-plan -->";

/// The hidden line that identifies an oapkg plan comment:
/// `<!-- oapkg-plan: STATE -->` with the state as given (`--state`), or
/// [`MARKER`] when the project is not named.
pub fn marker(project: Option<&Project>) -> String {
    match project {
        // An HTML comment ends at the first `--`: a path holding one is
        // written with `-%2D`.
        Some(project) => format!(
            "<!-- oapkg-plan: {} -->",
            project
                .state
                .replace(|c: char| c.is_control(), " ")
                .replace("--", "-%2D")
        ),
        None => MARKER.to_owned(),
    }
}

/// What the comment is about: the state and the manifests, as the user
/// named them (`--state`, `-f`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Project {
    pub state: String,
    pub manifests: Vec<String>,
}

/// Limits below this leave no room for the parts that are never cut (summary,
/// banners, notes, footer); the comment is then as short as it can be but may
/// exceed the limit.
pub const MIN_LIMIT: usize = 4_096;

/// Characters of a name shown in the table.
const TABLE_NAME_CHARS: usize = 80;
/// Characters of user or eSMS text shown in a details block or a warning.
const DETAIL_TEXT_CHARS: usize = 200;
const WARNING_CHARS: usize = 500;
/// Room kept for section headings and "not shown" notes, which are written
/// after the rows are chosen.
const RESERVE: usize = 2_048;

const SEE_ALL: &str = "run `oapkg plan --format json` (or `--format text`) to see all of it";

/// How to render Markdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkdownOptions {
    /// The comment is shorter than this many bytes (at least [`MIN_LIMIT`]).
    pub limit: usize,
    /// The state and manifests the plan is about, named under the summary
    /// and in the marker.
    pub project: Option<Project>,
}

impl Default for MarkdownOptions {
    fn default() -> Self {
        MarkdownOptions {
            limit: COMMENT_LIMIT,
            project: None,
        }
    }
}

/// The plan as a pull-request comment, ending with a newline.
pub fn markdown(plan: &Plan, options: &MarkdownOptions) -> String {
    let summary = plan.summary();
    let listed = plan.listed_changes();
    let buying: Vec<&Change> = listed
        .iter()
        .copied()
        .filter(|c| c.action().buys())
        .collect();
    let orphans: Vec<&Change> = listed
        .iter()
        .copied()
        .filter(|c| c.action() == Action::Orphan)
        .collect();
    let expired: Vec<&Change> = listed
        .iter()
        .copied()
        .filter(|c| c.action() == Action::Expired)
        .collect();

    let head = head(plan, &summary, options.project.as_ref());
    let foot = foot(plan, options.project.as_ref());
    let mut budget = options
        .limit
        .saturating_sub(1 + head.len() + foot.len() + RESERVE);

    // Fill in priority order, display in the layout's order (by key). What
    // a reviewer must not miss comes first: rows and details of the keys
    // that spend money again or have an unknown outcome.
    let mut risky: Vec<&Change> = buying
        .iter()
        .copied()
        .filter(|c| c.action() != Action::Purchase)
        .collect();
    risky.sort_by_key(|c| rank(c));
    let purchases: Vec<&Change> = buying
        .iter()
        .copied()
        .filter(|c| c.action() == Action::Purchase)
        .collect();
    let others: Vec<&Change> = listed
        .iter()
        .copied()
        .filter(|c| {
            matches!(
                c.action(),
                Action::Purchase | Action::Orphan | Action::Expired
            )
        })
        .collect();
    let warnings: Vec<usize> = (0..plan.warnings.len()).collect();
    let labels: Vec<usize> = (0..plan.labels.len()).collect();

    let changes_row = |change: &Change| changes_row(plan, change);
    let details_block = |change: &Change| details_block(plan, change);
    let risky_rows = fit(&risky, &mut budget, changes_row);
    let risky_details = fit(&risky, &mut budget, details_block);
    let purchase_rows = fit(&purchases, &mut budget, changes_row);
    let orphan_rows = fit(&orphans, &mut budget, orphan_row);
    let expired_rows = fit(&expired, &mut budget, expired_row);
    let label_lines = fit(&labels, &mut budget, |i| label_line(plan, i));
    let warning_lines = fit(&warnings, &mut budget, |i| warning_line(plan, i));
    let other_details = fit(&others, &mut budget, details_block);
    let chart = timeline(plan);
    let chart_dropped = chart.as_ref().is_some_and(|c| c.len() > budget);

    let rows = by_key(risky_rows, purchase_rows);
    let details = by_key(risky_details, other_details);
    let orphan_rows = by_key(orphan_rows, Fitted::default());
    let expired_rows = by_key(expired_rows, Fitted::default());
    let label_lines = label_lines.into_section();
    let warning_lines = warning_lines.into_section();

    let mut out = head;
    let cut_note = cut_note(&[
        (rows.omitted, buying.len(), "changes to buy"),
        (orphan_rows.omitted, orphans.len(), "orphans"),
        (expired_rows.omitted, expired.len(), "expired packages"),
        (label_lines.omitted, plan.labels.len(), "name changes"),
        (warning_lines.omitted, plan.warnings.len(), "warnings"),
        (details.omitted, listed.len(), "details blocks"),
    ]);
    out.push_str(&cut_note);

    if !buying.is_empty() {
        out.push_str("### Changes\n\n");
        if plan.prices.is_some() {
            out.push_str("| Action | OAID | Name | Tier | Start | End | Months | Cost |\n");
            out.push_str("|---|---|---|---|---|---|---:|---:|\n");
        } else {
            out.push_str("| Action | OAID | Name | Tier | Start | End | Months |\n");
            out.push_str("|---|---|---|---|---|---|---:|\n");
        }
        out.push_str(&rows.text);
        section_note(&mut out, rows.omitted, buying.len(), "changes to buy");
        out.push('\n');
        match &chart {
            Some(_) if chart_dropped => out.push_str(
                "_The timeline chart does not fit in this comment; \
                 `oapkg coverage --format markdown` draws every OA's periods._\n\n",
            ),
            Some(chart) => out.push_str(chart),
            None => {}
        }
    }
    if !orphans.is_empty() {
        // `state rm` only where it gives up no guard (see text::orphan_note).
        let ended = orphans.iter().any(|c| {
            c.before()
                .as_ref()
                .is_some_and(|r| r.spec.ended_before(plan.today))
        });
        let intro = format!(
            "Recorded in the state but no longer declared: nothing is bought and the records \
             stay. A record whose period has not ended still guards its OA against buying \
             those months again: keep it.{}\n\n\
             | OAID | Name | Tier | Start | End | Months | Status |\n\
             |---|---|---|---|---|---:|---|\n",
            if ended {
                " One whose period has ended may go: `oapkg state rm KEY`."
            } else {
                ""
            }
        );
        section(
            &mut out,
            "Orphaned",
            &intro,
            &orphan_rows,
            orphans.len(),
            "orphans",
        );
    }
    if !expired.is_empty() {
        section(
            &mut out,
            "Expired",
            "Declared, but their periods ended before today: a period that is over is never \
             bought. Remove them from the manifests, or give them a period that is not over.\n\n\
             | OAID | Name | Tier | Start | End | Months | Recorded |\n\
             |---|---|---|---|---|---:|---|\n",
            &expired_rows,
            expired.len(),
            "expired packages",
        );
    }
    if !plan.labels.is_empty() {
        section(
            &mut out,
            "Names changed",
            "Apply records the new names; nothing is bought.\n\n",
            &label_lines,
            plan.labels.len(),
            "name changes",
        );
    }
    if !listed.is_empty() {
        out.push_str("### Details\n\n");
        out.push_str(&details.text);
        section_note(&mut out, details.omitted, listed.len(), "details blocks");
        if details.omitted > 0 {
            out.push('\n');
        }
    }
    if !plan.warnings.is_empty() {
        section(
            &mut out,
            "Warnings",
            "",
            &warning_lines,
            plan.warnings.len(),
            "warnings",
        );
    }
    out.push_str(&foot);

    if out.len() >= options.limit {
        // Only reachable below MIN_LIMIT: keep what is never cut.
        let mut short = head_only(&summary);
        short.push_str(&foot);
        return short;
    }
    out
}

/// The mermaid `gantt` chart of the OAs the plan buys for, in a collapsed
/// `<details>` block: per OA, its listed changes with a period — `purchase`
/// bars `active`, `replace` and `unconfirmed` bars `crit`, orphans `done`
/// (unchanged packages are not in the plan; `oapkg coverage` shows them).
/// `None` when the plan buys nothing.
fn timeline(plan: &Plan) -> Option<String> {
    use crate::coverage::gantt::{self, Section, Tag, Task};
    use crate::coverage::report::oa_title;
    let listed = plan.listed_changes();
    let mut oaids: Vec<&str> = listed
        .iter()
        .filter(|c| c.action().buys())
        .map(|c| c.key.oaid())
        .collect();
    oaids.sort_unstable();
    oaids.dedup();
    let sections: Vec<Section> = oaids
        .iter()
        .map(|oaid| {
            let changes: Vec<&&Change> = listed.iter().filter(|c| c.key.oaid() == *oaid).collect();
            let title = oa_title(changes.iter().find_map(|c| c.name()), oaid);
            let tasks = changes
                .iter()
                .filter_map(|c| {
                    let tag = match c.action() {
                        Action::Purchase => Tag::Active,
                        Action::Replace | Action::Unconfirmed | Action::InFlight => Tag::Crit,
                        Action::Orphan => Tag::Done,
                        Action::Unchanged | Action::Expired => return None,
                    };
                    let spec = c.spec();
                    // A period past the calendar (which no valid input
                    // holds) has no bar to draw.
                    Some(Task {
                        name: format!("{} ({})", spec.tier, c.action()),
                        tag,
                        from: spec.start,
                        to: spec.end()?,
                    })
                })
                .collect();
            Section { title, tasks }
        })
        .collect();
    let chart = gantt::chart(&format!("Changes planned on {}", plan.today), &sections)?;
    Some(format!(
        "<details><summary>Timeline of the OAs this plan buys for</summary>\n\n{chart}\n</details>\n\n"
    ))
}

/// Summary line and banners: never cut.
fn head(plan: &Plan, summary: &Summary, project: Option<&Project>) -> String {
    // The summary line first (what a bot or a reviewer's eye reads first),
    // then at once the banner of a plan against no state.
    let mut out = head_only(summary);
    out.push_str(&no_state_banner(plan, project));
    if let Some(project) = project {
        let manifests: Vec<String> = project
            .manifests
            .iter()
            .map(|m| code(&cut(m, Some(200))))
            .collect();
        let _ = writeln!(
            out,
            "State {} · manifests {}\n",
            code(&cut(&project.state, Some(200))),
            manifests.join(", ")
        );
    }
    if let Some(line) = super::text::total_cost_line(plan) {
        let _ = writeln!(out, "**{line}**\n");
    }
    out.push_str(&errors_banner(plan));
    let needs = plan.needs();
    if !needs.is_empty() {
        let flags: Vec<String> = needs.iter().map(|n| code(&n.flag())).collect();
        let _ = writeln!(
            out,
            "> [!CAUTION]\n> **Apply will refuse this plan unless run with {}.**",
            flags.join(" ")
        );
        let needing = |need: &Need| {
            plan.listed_changes()
                .into_iter()
                .filter(|c| c.needs().contains(need))
                .count()
        };
        for need in &needs {
            let why = match need {
                Need::AllowReplace => format!(
                    "**{} will be bought again** (`replace`): the tier or duration changed \
                     after the purchase. The earlier purchase is not refunded.",
                    packages(needing(need))
                ),
                Need::AllowOverlap => format!(
                    "**{} over the months of a recorded package** of the same OA and tier \
                     under another key (a moved start date?): those months would be paid twice.",
                    packages(needing(need))
                ),
                Need::MaxPurchases(n) => format!(
                    "**{n} purchase requests**, more than the default maximum of \
                     {DEFAULT_MAX_PURCHASES}."
                ),
            };
            let _ = writeln!(out, "> - {}: {why}", code(&need.flag()));
        }
        out.push('\n');
    }
    if summary.unconfirmed > 0 {
        let _ = write!(
            out,
            "> [!WARNING]\n> **{} unconfirmed**: a purchase request was sent and its outcome \
             is unknown. If the eSMS portal shows it, run `oapkg state confirm KEY`; apply \
             resends it only with `--retry-unconfirmed`.\n\n",
            packages(summary.unconfirmed)
        );
    }
    if summary.in_flight > 0 {
        let holder = super::holder_line(plan.in_flight_holder.as_ref());
        let _ = write!(
            out,
            "> [!NOTE]\n> **{} in flight**: {} sent the purchase request and is waiting \
             for eSMS's answer; that run records the outcome. Plan again when it is done.\n\n",
            packages(summary.in_flight),
            text(&cut(&holder, Some(WARNING_CHARS)))
        );
    }
    out
}

/// The CAUTION banner a plan against no state opens with: every package
/// is then a purchase, which a reviewer must not take for the real plan.
/// Empty when the state exists.
fn no_state_banner(plan: &Plan, project: Option<&Project>) -> String {
    if plan.state.exists() {
        return String::new();
    }
    let location = plan
        .state_location
        .as_deref()
        .or(project.map(|p| p.state.as_str()));
    let at = location.map_or(String::new(), |l| {
        format!(" at {}", code(&cut(l, Some(200))))
    });
    format!(
        "> [!CAUTION]\n> **No state{at}: this plan assumes nothing has ever been bought.** \
         If packages were bought, the state is missing or `--state` names the wrong place: \
         do not merge until it names the real state.\n\n"
    )
}

fn head_only(summary: &Summary) -> String {
    format!("**{}**\n\n", summary.line())
}

/// Manifest hash, state serial and the marker: never cut.
fn foot(plan: &Plan, project: Option<&Project>) -> String {
    let mut out = String::from("---\n<sub>");
    let _ = write!(
        out,
        "Manifests {} · state serial {}",
        code(&cut(plan.manifest_hash.as_str(), Some(80))),
        plan.state.serial
    );
    if let Some(lineage) = &plan.state.lineage {
        let _ = write!(out, " (lineage {})", code(&cut(lineage, Some(80))));
    }
    let _ = write!(
        out,
        " · planned on {}</sub>\n\n{}\n",
        plan.today,
        marker(project)
    );
    out
}

fn cut_note(cuts: &[(usize, usize, &str)]) -> String {
    let parts: Vec<String> = cuts
        .iter()
        .filter(|(omitted, _, _)| *omitted > 0)
        .map(|(omitted, total, what)| format!("{omitted} of {total} {what}"))
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "> [!NOTE]\n> This plan is too large for one comment. Not shown: {}. The counts \
         above are complete; {SEE_ALL}.\n\n",
        parts.join(", ")
    )
}

/// Says under a cut section how much of it is missing. A blank line comes
/// first: a line right after a table would be read as one more row.
/// A `### heading` section: its intro (and table head), the entries that
/// fit, and a note on those that did not.
fn section(
    out: &mut String,
    heading: &str,
    intro: &str,
    fitted: &Section,
    total: usize,
    what: &str,
) {
    let _ = write!(out, "### {heading}\n\n{intro}");
    out.push_str(&fitted.text);
    section_note(out, fitted.omitted, total, what);
    out.push('\n');
}

fn section_note(out: &mut String, omitted: usize, total: usize, what: &str) {
    if omitted > 0 {
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "_{omitted} of {total} {what} are not shown; {SEE_ALL}._"
        );
    }
}

/// Which rows survive a cut first: money spent again, then unknown outcomes.
fn rank(change: &Change) -> u8 {
    match change.action() {
        Action::Replace => 0,
        Action::Unconfirmed | Action::InFlight => 1,
        Action::Purchase | Action::Orphan | Action::Unchanged | Action::Expired => 2,
    }
}

/// Entries chosen to fit, with what they render to.
struct Fitted<T> {
    chosen: Vec<(T, String)>,
    omitted: usize,
}

impl<T> Fitted<T> {
    /// The chosen entries' text in the order chosen.
    fn into_section(self) -> Section {
        Section {
            text: self.chosen.into_iter().map(|(_, t)| t).collect(),
            omitted: self.omitted,
        }
    }
}

impl<T> Default for Fitted<T> {
    fn default() -> Self {
        Fitted {
            chosen: Vec::new(),
            omitted: 0,
        }
    }
}

/// Takes `items` in order while they fit in `budget`, stopping at the first
/// that does not, so a cut section shows a prefix of its priority order.
/// Entries are rendered only when considered.
fn fit<T: Copy>(items: &[T], budget: &mut usize, render: impl Fn(T) -> String) -> Fitted<T> {
    let mut chosen = Vec::new();
    for &item in items {
        let text = render(item);
        if text.len() > *budget {
            break;
        }
        *budget -= text.len();
        chosen.push((item, text));
    }
    Fitted {
        omitted: items.len() - chosen.len(),
        chosen,
    }
}

/// Two fitted sets of changes as one section: text in key order, omissions
/// added up.
struct Section {
    text: String,
    omitted: usize,
}

fn by_key(a: Fitted<&Change>, b: Fitted<&Change>) -> Section {
    let mut chosen: Vec<(&Change, String)> = a.chosen.into_iter().chain(b.chosen).collect();
    chosen.sort_by(|x, y| x.0.key.cmp(&y.0.key));
    Section {
        text: chosen.into_iter().map(|(_, t)| t).collect(),
        omitted: a.omitted + b.omitted,
    }
}

fn changes_row(plan: &Plan, change: &Change) -> String {
    let mut action = match change.action() {
        Action::Purchase if change.needs().is_empty() => "purchase".to_owned(),
        other => format!("**{other}**"),
    };
    if plan.is_from_policy(change) {
        action.push_str(" (policy renewal)");
    }
    let cost = match (&plan.prices, plan.cost(change)) {
        (None, _) => String::new(),
        (Some(_), Some(cost)) => format!(" {cost} |"),
        (Some(_), None) => " — |".to_owned(),
    };
    let needs = change.needs();
    if !needs.is_empty() {
        let flags: Vec<String> = needs.iter().map(|n| code(&n.flag())).collect();
        let _ = write!(action, " (needs {})", flags.join(" "));
    }
    match Shown::of(change) {
        Some(shown) => format!(
            "| {action} | {} | {} | {} | {} | {} | {} |{cost}\n",
            code(shown.oaid),
            name_cell(change),
            arrow(shown.tier, |t| t.to_string()),
            arrow(shown.start, |d| d.to_string()),
            arrow(shown.end, crate::spec::show_end),
            arrow(shown.duration_months, |m| m.to_string()),
        ),
        None => format!(
            "| {action} | {} | {} | | | | |{cost}\n",
            code(change.key.oaid()),
            name_cell(change)
        ),
    }
}

fn orphan_row(change: &Change) -> String {
    match &change.before() {
        Some(record) => {
            let spec = &record.spec;
            format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                code(spec.oaid.as_str()),
                name_cell(change),
                spec.tier,
                spec.start,
                crate::spec::show_end(spec.end()),
                spec.duration_months,
                record.status.name()
            )
        }
        None => format!(
            "| {} | {} | | | | | |\n",
            code(change.key.oaid()),
            name_cell(change)
        ),
    }
}

fn expired_row(change: &Change) -> String {
    let spec = change.spec();
    format!(
        "| {} | {} | {} | {} | {} | {} | {} |\n",
        code(spec.oaid.as_str()),
        name_cell(change),
        spec.tier,
        spec.start,
        crate::spec::show_end(spec.end()),
        spec.duration_months,
        change.before().map_or("no", |record| record.status.name()),
    )
}

fn label_line(plan: &Plan, index: usize) -> String {
    let label = &plan.labels[index];
    let name = |n: Option<&str>| {
        n.map_or("(none)".to_owned(), |n| {
            text(&cut(n, Some(TABLE_NAME_CHARS)))
        })
    };
    format!(
        "- {}: {} → **{}**\n",
        code(label.key.as_str()),
        name(label.before.as_deref()),
        name(label.after.as_deref())
    )
}

fn name_cell(change: &Change) -> String {
    change
        .name()
        .map_or("—".to_owned(), |n| text(&cut(n, Some(TABLE_NAME_CHARS))))
}

fn details_block(plan: &Plan, change: &Change) -> String {
    let notes = super::text::notes(plan, change);
    let body = block(change, Paint(false), Some(DETAIL_TEXT_CHARS), &notes);
    let fence = fence_for(&body);
    format!(
        "<details><summary>{} <code>{}</code> ({})</summary>\n\n{fence}\n{body}{fence}\n\n</details>\n\n",
        change.action().symbol(),
        change.key,
        months_summary(change),
    )
}

/// `purchase, 12 months` — a few words for the collapsed line.
fn months_summary(change: &Change) -> String {
    format!(
        "{}, {}",
        change.action(),
        months(change.spec().duration_months)
    )
}

/// The plan's errors (`plan --check-account`) as a caution banner, each
/// with its hint; empty when there are none. Never cut.
fn errors_banner(plan: &Plan) -> String {
    if plan.errors.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "> [!CAUTION]\n> **The eSMS account check failed: apply would refuse this plan.**\n",
    );
    for error in &plan.errors {
        let _ = write!(
            out,
            "> - {}",
            text(&cut(&error.message, Some(WARNING_CHARS)))
        );
        if let Some(hint) = &error.hint {
            let _ = write!(out, " {}", text(&cut(hint, Some(WARNING_CHARS))));
        }
        out.push('\n');
    }
    out.push('\n');
    out
}

fn warning_line(plan: &Plan, index: usize) -> String {
    let warning = &plan.warnings[index];
    let message = text(&cut(&warning.located(), Some(WARNING_CHARS)));
    match &warning.key {
        Some(key) => format!("- {}: {message}\n", code(key.as_str())),
        None => format!("- {message}\n"),
    }
}

fn arrow<T: Copy>(field: Field<T>, show: impl Fn(T) -> String) -> String {
    match field.was {
        Some(was) => format!("{} → **{}**", show(was), show(field.now)),
        None => show(field.now),
    }
}

/// A code fence that the block cannot close: longer than any backtick run.
fn fence_for(body: &str) -> String {
    "`".repeat((longest_backtick_run(body) + 1).max(3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::render::fixtures;

    fn render(plan: &Plan) -> String {
        markdown(plan, &MarkdownOptions::default())
    }

    #[test]
    fn the_marker_names_the_state_and_cannot_end_the_html_comment_early() {
        let project = |state: &str| Project {
            state: state.to_owned(),
            manifests: vec!["packages".to_owned()],
        };
        assert_eq!(
            marker(Some(&project("state/oapkg.state.json"))),
            "<!-- oapkg-plan: state/oapkg.state.json -->"
        );
        assert_eq!(
            marker(Some(&project("a-->b\n--c"))),
            "<!-- oapkg-plan: a-%2D>b -%2Dc -->"
        );
        assert_eq!(marker(None), MARKER);
        let options = MarkdownOptions {
            project: Some(project("s3://bucket/shop")),
            ..MarkdownOptions::default()
        };
        let out = markdown(&fixtures::purchases_only(), &options);
        assert!(out.contains("\n\nState `s3://bucket/shop` · manifests `packages`\n\n"));
        assert!(out.ends_with("<!-- oapkg-plan: s3://bucket/shop -->\n"));
    }

    #[test]
    fn no_changes() {
        insta::assert_snapshot!(render(&fixtures::no_changes()));
    }

    #[test]
    fn purchases_only() {
        insta::assert_snapshot!(render(&fixtures::purchases_only()));
    }

    #[test]
    fn orphans_only() {
        insta::assert_snapshot!(render(&fixtures::orphans_only()));
    }

    #[test]
    fn mixed() {
        let out = render(&fixtures::mixed());
        assert!(out.starts_with(&format!("**{}**\n", fixtures::mixed().summary_line())));
        assert!(out.contains("> [!CAUTION]"));
        assert!(out.contains("> [!WARNING]"));
        assert!(out.ends_with(&format!("{MARKER}\n")));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn in_flight_has_a_note_naming_the_holder() {
        let out = render(&fixtures::in_flight());
        assert!(out.starts_with(
            "**Plan: 1 to purchase, 1 to replace, 0 unconfirmed, 3 unchanged, 1 orphaned, 1 in flight.**\n"
        ));
        assert!(out.contains("> **1 package in flight**: pid 4242 on host build-7"));
        assert!(!out.contains("unconfirmed**:"), "{out}");
        insta::assert_snapshot!(out);
    }

    #[test]
    fn guards_and_expired() {
        let out = render(&fixtures::guarded());
        assert!(out.starts_with(
            "**Plan: 1 to purchase, 1 to replace, 0 unconfirmed, 2 unchanged, 1 orphaned, 2 expired.**\n\n> [!CAUTION]\n> **Apply will refuse this plan unless run with `--allow-replace` `--allow-overlap`.**\n"
        ));
        assert!(out.contains("| **purchase** (needs `--allow-overlap`) | `4097311281936189049`"));
        assert!(out.contains("### Expired\n"));
        assert!(out.contains("### Names changed\n"));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn expired_only() {
        let out = render(&fixtures::expired_only());
        assert!(out.starts_with("**No changes. 4 unchanged, 0 orphaned, 1 expired.**\n"));
        assert!(!out.contains("[!CAUTION]"));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn ten_thousand_purchases_fit_with_a_note_and_full_counts() {
        let plan = fixtures::many_purchases(10_000);
        let out = render(&plan);
        assert!(out.len() < 60_000, "{} bytes", out.len());
        assert!(out.starts_with(
            "**Plan: 10000 to purchase, 0 to replace, 0 unconfirmed, 0 unchanged, 0 orphaned.**\n"
        ));
        assert!(out.contains("> [!NOTE]\n> This plan is too large for one comment."));
        let shown = out
            .lines()
            .filter(|l| l.starts_with("| purchase |"))
            .count();
        assert!(shown > 100, "only {shown} rows shown");
        let omitted = 10_000 - shown;
        assert!(
            out.contains(&format!(
                "\n\n_{omitted} of 10000 changes to buy are not shown; run `oapkg plan --format json`"
            )),
            "the cut note names the omitted count"
        );
        assert!(out.contains(&format!("Not shown: {omitted} of 10000 changes to buy")));
        // The first rows in key order are the ones shown.
        assert!(out.contains("| purchase | `4000000000000000000` | Store \\#0 |"));
        assert!(out.contains("### Details\n\n_10000 of 10000 details blocks are not shown;"));
        assert!(out.ends_with(&format!("{MARKER}\n")));
        // What a reviewer reads first and last: the summary, the cut note,
        // the first rows; the omitted counts and the footer.
        let head: Vec<&str> = out.lines().take(12).collect();
        let tail: Vec<&str> = out.lines().rev().take(12).collect::<Vec<_>>();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        insta::assert_snapshot!(format!("{}\n[…]\n{}", head.join("\n"), tail.join("\n")));
    }

    #[test]
    fn risky_rows_survive_a_cut_first() {
        let mut plan = fixtures::many_purchases(5_000);
        let mixed = fixtures::mixed();
        plan.changes.extend(mixed.changes);
        plan.changes.sort_by(|a, b| a.key.cmp(&b.key));
        let out = render(&plan);
        assert!(out.len() < COMMENT_LIMIT);
        // The replace and unconfirmed keys sort last, after all 5,000 purchases.
        assert!(out.contains("| **replace** (needs `--allow-replace`) | `2233445566778899001`"));
        assert!(out.contains("| **unconfirmed** | `1122334455667788990`"));
        assert!(out.contains("<code>2233445566778899001@2026-12-01</code>"));
    }

    #[test]
    fn stays_under_any_limit_for_any_plan() {
        let mut plan = fixtures::many_purchases(3_000);
        let huge = "é|<`\n".repeat(20_000);
        plan.changes[0].sides.desired_mut().unwrap().name = Some(huge.clone());
        plan.changes[1].sides.desired_mut().unwrap().source.file = huge.clone();
        plan.warnings = (0..3_000)
            .map(|i| crate::plan::Warning::about(None, format!("{i} {huge}")))
            .collect();
        plan.state.lineage = Some(huge);
        for limit in [MIN_LIMIT, 10_000, 30_000, COMMENT_LIMIT] {
            let out = markdown(
                &plan,
                &MarkdownOptions {
                    limit,
                    ..MarkdownOptions::default()
                },
            );
            assert!(out.len() < limit, "{} bytes for limit {limit}", out.len());
            assert!(out.starts_with("**Plan: 3000 to purchase,"));
            assert!(out.ends_with(&format!("{MARKER}\n")));
        }
    }

    #[test]
    fn names_cannot_break_the_table_or_open_html() {
        assert_eq!(
            text("a|b <b>`x`</b>\n*y* [l](u) \\ &"),
            "a\\|b &lt;b&gt;\\`x\\`&lt;/b&gt; \\*y\\* \\[l\\](u) \\\\ &amp;"
        );
        assert_eq!(code("12"), "`12`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`a"), "`` `a ``");
        assert_eq!(fence_for("x ```` y"), "`````");
        assert_eq!(fence_for("plain"), "```");
    }
}
