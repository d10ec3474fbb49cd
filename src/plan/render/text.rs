//! The terminal plan, laid out like `terraform plan`: a legend of the
//! symbols used, one block per listed change, the warnings, then the summary
//! line.
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

use super::{Field, Shown, cut, escape_controls, months, quoted, status_line};
use crate::plan::{Action, Change, Plan, Warning};

/// How to render text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// ANSI colours: the caller decides (a terminal, no `--no-color`, no
    /// `NO_COLOR`).
    pub color: bool,
}

/// The whole plan as `oapkg plan` prints it, ending with a newline.
///
/// Unchanged keys are counted in the summary line, not listed. When nothing
/// is to be bought the last line starts with `No changes.`; orphans are still
/// listed above it.
pub fn text(plan: &Plan, options: &TextOptions) -> String {
    let paint = Paint(options.color);
    let listed = plan.listed_changes();
    let mut out = String::new();

    if !listed.is_empty() {
        out.push_str("Packages are marked with the following symbols:\n");
        for action in [
            Action::Purchase,
            Action::Replace,
            Action::Unconfirmed,
            Action::Orphan,
        ] {
            if listed.iter().any(|c| c.action == action) {
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
        } else {
            "oapkg will buy nothing. These recorded packages are no longer declared:\n\n"
        });
        for change in listed {
            out.push_str(&block(change, paint, None));
            out.push('\n');
        }
    }

    if !plan.warnings.is_empty() {
        for warning in &plan.warnings {
            out.push_str(&warning_line(warning, paint));
            out.push('\n');
        }
        out.push('\n');
    }

    out.push_str(&paint.summary(&plan.summary_line()));
    out.push('\n');
    out
}

/// One change as a block, ending with a newline: the comment line saying
/// what will happen, then the package with one line per field.
///
/// Fields the change alters are marked `~` and shown `old -> new`; recorded
/// packages show their status; declared ones where they are declared.
pub fn change_block(change: &Change, options: &TextOptions) -> String {
    block(change, Paint(options.color), None)
}

/// [`change_block`] with user and eSMS text cut at `limit` characters, for
/// renderings with a size budget (Markdown).
pub(crate) fn block(change: &Change, paint: Paint, limit: Option<usize>) -> String {
    let key = change.key.as_str();
    let mut out = String::new();
    for line in header(change) {
        let _ = writeln!(out, "  {}", paint.bold(&line));
    }
    if let Some(failure) = &change.last_failure {
        let line = format!("# {}", super::failure_line(failure, limit));
        let _ = writeln!(out, "  {}", paint.warning(&line));
    }
    let _ = writeln!(
        out,
        "  {} package \"{key}\" {{",
        paint.symbol(change.action, change.action.symbol())
    );

    // Purchases mark every field `+` (all of it is new, as Terraform does
    // for a create); other actions mark only the fields they alter.
    let all_new = change.action == Action::Purchase;
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
                    paint.symbol(change.action, mark)
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
                arrow(shown.end, |d| d.to_string()),
                shown.end.changed(),
            );
        }
        None => field("oaid", change.key.oaid().to_owned(), false),
    }
    if let Some(record) = &change.before {
        field("status", status_line(record, limit), false);
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

/// The comment lines above a block: what apply will do with the key.
fn header(change: &Change) -> Vec<String> {
    let key = change.key.as_str();
    match change.action {
        Action::Purchase => vec![format!("# {key} will be purchased")],
        Action::Replace => vec![
            format!("# {key} will be bought again with the new spec"),
            "# (needs --allow-replace; the earlier purchase is not refunded)".to_owned(),
        ],
        Action::Unconfirmed => vec![
            format!("# {key} is unconfirmed: a request was sent, its outcome is unknown"),
            "# (resent only with --retry-unconfirmed; once the eSMS portal shows it,".to_owned(),
            format!("#  `oapkg state confirm {key}` records it as bought)"),
        ],
        Action::Unchanged => vec![format!("# {key} is unchanged")],
        Action::Orphan => vec![
            format!("# {key} is no longer declared: nothing is bought, the record stays"),
            format!("# (`oapkg state rm {key}` drops it)"),
        ],
    }
}

fn legend(action: Action) -> &'static str {
    match action {
        Action::Purchase => "purchase",
        Action::Replace => "replace (buy again with the new spec)",
        Action::Unconfirmed => "unconfirmed (outcome of an earlier request unknown)",
        Action::Unchanged => "unchanged",
        Action::Orphan => "orphan (no longer declared; nothing is bought)",
    }
}

fn arrow<T: Copy>(field: Field<T>, show: impl Fn(T) -> String) -> String {
    match field.was {
        Some(was) => format!("{} -> {}", show(was), show(field.now)),
        None => show(field.now),
    }
}

fn warning_line(warning: &Warning, paint: Paint) -> String {
    let message = escape_controls(&warning.message);
    match &warning.key {
        Some(key) => format!("{} {key}: {message}", paint.warning("Warning:")),
        None => format!("{} {message}", paint.warning("Warning:")),
    }
}

/// ANSI colouring, or none. Only the symbols, the block comments, the word
/// `Warning:` and the start of the summary line are coloured, as Terraform
/// does, so the plain text stays readable in logs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Paint(pub bool);

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    fn symbol(self, action: Action, symbol: char) -> String {
        let code = match action {
            Action::Purchase => "\x1b[32m",    // green
            Action::Replace => "\x1b[33m",     // yellow
            Action::Unconfirmed => "\x1b[36m", // cyan
            Action::Orphan => "\x1b[31m",      // red
            Action::Unchanged => "",
        };
        self.wrap(code, &symbol.to_string())
    }

    fn bold(self, text: &str) -> String {
        self.wrap(BOLD, text)
    }

    fn warning(self, text: &str) -> String {
        self.wrap("\x1b[1;33m", text)
    }

    fn summary(self, line: &str) -> String {
        for (prefix, code) in [("Plan:", BOLD), ("No changes.", "\x1b[1;32m")] {
            if let Some(rest) = line.strip_prefix(prefix) {
                return format!("{}{rest}", self.wrap(code, prefix));
            }
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
        plan.changes[0].desired.as_mut().unwrap().name =
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

    #[test]
    fn a_block_alone_is_what_the_plan_shows() {
        let plan = fixtures::mixed();
        let whole = text(&plan, &PLAIN);
        for change in &plan.changes {
            assert!(whole.contains(&change_block(change, &PLAIN)));
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
