//! The `oapkg coverage` report as people read it: aligned text columns, a
//! JSON array, or Markdown (a table and a mermaid `gantt` chart). Pure:
//! each returns a `String` ending with a newline. User text (names, file
//! paths) is escaped for its target.

use std::fmt::Write as _;

use jiff::civil::Date;

use super::report::{Covered, Gap, OaCoverage, PolicyView, chart_sections};
use crate::text::{escape_controls, plural};
use crate::text::{markdown as md_text, markdown_code as code};

/// `Coverage on 2026-11-26: 2 OAs.`
fn headline(report: &[OaCoverage], today: Date) -> String {
    let n = report.len();
    format!("Coverage on {today}: {n} OA{}.", plural(n))
}

const NOTHING: &str = "No OA is declared, recorded or kept covered by a policy.";

/// The JSON array (sorted by OAID, as the report is).
pub fn json(report: &[OaCoverage]) -> serde_json::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(report)?))
}

/// Aligned columns: one row per OA, then one row per period.
pub fn text(report: &[OaCoverage], today: Date) -> String {
    let mut out = format!("{}\n", headline(report, today));
    if report.is_empty() {
        let _ = writeln!(out, "{NOTHING}");
        return out;
    }
    out.push('\n');
    let refreshed = report.iter().any(|oa| oa.zalo.is_some());
    let mut rows = vec![cells([
        "OAID",
        "NAME",
        "COVERED UNTIL",
        "GAPS FROM TODAY",
        "POLICY",
        "NEXT RENEWAL",
    ])];
    if refreshed {
        rows[0].push("ZALO VALID THROUGH".to_owned());
    }
    for oa in report {
        let mut row = vec![
            oa.oaid.to_string(),
            escape_controls(oa.name.as_deref().unwrap_or("-")).into_owned(),
            until(oa.covered_until),
            gaps(&oa.gaps),
            policy(oa.policy.as_ref()),
            renewal(oa),
        ];
        if refreshed {
            row.push(oa.zalo.as_ref().map_or("-".to_owned(), |z| z.cell()));
        }
        rows.push(row);
    }
    out.push_str(&columns(&rows));
    let notes = zalo_notes(report);
    if !notes.is_empty() {
        out.push_str("\nZalo read-back:\n");
        for note in notes {
            let _ = writeln!(out, "  {}", escape_controls(&note));
        }
    }
    let periods: Vec<Vec<String>> = report
        .iter()
        .flat_map(|oa| {
            oa.periods.iter().map(|p| {
                vec![
                    oa.oaid.to_string(),
                    p.from.to_string(),
                    p.to.to_string(),
                    p.tier.to_string(),
                    p.status.as_str().to_owned(),
                ]
            })
        })
        .collect();
    if !periods.is_empty() {
        out.push_str("\nPeriods:\n");
        let mut rows = vec![cells(["OAID", "FROM", "TO", "TIER", "STATUS"])];
        rows.extend(periods);
        for line in columns(&rows).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// A table (one row per OA) and the chart of every period.
pub fn markdown(report: &[OaCoverage], today: Date) -> String {
    let mut out = format!("**{}**\n\n", headline(report, today));
    if report.is_empty() {
        let _ = writeln!(out, "{NOTHING}");
        return out;
    }
    let refreshed = report.iter().any(|oa| oa.zalo.is_some());
    let (zalo_head, zalo_rule) = if refreshed {
        (" Zalo valid through |", "---|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        out,
        "| OAID | Name | Covered until | Covered | Gaps from today | Policy | Next renewal |{zalo_head}"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|{zalo_rule}");
    for oa in report {
        let zalo = if refreshed {
            let cell = oa.zalo.as_ref().map_or("—".to_owned(), |z| {
                let marker = if z.drift.is_some() { "⚠ " } else { "" };
                format!("{marker}{}", md_text(&z.cell()))
            });
            format!(" {cell} |")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |{zalo}",
            code(oa.oaid.as_str()),
            oa.name.as_deref().map_or("—".to_owned(), md_text),
            until(oa.covered_until),
            covered(&oa.covered),
            gaps(&oa.gaps),
            md_text(&policy(oa.policy.as_ref())),
            renewal(oa),
        );
    }
    let notes = zalo_notes(report);
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            let _ = writeln!(out, "- {}", md_text(&note));
        }
    }
    out.push('\n');
    match super::gantt::chart(&format!("Coverage on {today}"), &chart_sections(report)) {
        Some(chart) => out.push_str(&chart),
        None => out.push_str("_No period to chart._\n"),
    }
    out
}

/// One line per OA that drifted or could not be read (`--refresh`).
fn zalo_notes(report: &[OaCoverage]) -> Vec<String> {
    report
        .iter()
        .filter_map(|oa| {
            let zalo = oa.zalo.as_ref()?;
            match (&zalo.drift, &zalo.not_read) {
                (Some(drift), _) => Some(format!("drift {}: {}", oa.oaid, drift.describe())),
                (None, Some(why)) => Some(format!("not read {}: {why}", oa.oaid)),
                (None, None) => None,
            }
        })
        .collect()
}

fn cells<const N: usize>(names: [&str; N]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Rows padded to their columns' widths (in characters), two spaces apart,
/// trailing spaces trimmed.
fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let len = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(len),
                None => widths.push(len),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            let pad = widths[i] - cell.chars().count() + 2;
            line.extend(std::iter::repeat_n(' ', pad));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn until(date: Option<Date>) -> String {
    date.map_or("-".to_owned(), |d| d.to_string())
}

fn span(from: Date, to: Date) -> String {
    if from == to {
        from.to_string()
    } else {
        format!("{from}..{to}")
    }
}

fn gaps(gaps: &[Gap]) -> String {
    if gaps.is_empty() {
        return "none".to_owned();
    }
    let spans: Vec<String> = gaps.iter().map(|g| span(g.from, g.to)).collect();
    spans.join(", ")
}

fn covered(covered: &[Covered]) -> String {
    if covered.is_empty() {
        return "—".to_owned();
    }
    let spans: Vec<String> = covered
        .iter()
        .map(|c| {
            let tiers: Vec<String> = c.tiers.iter().map(ToString::to_string).collect();
            format!("{} ({})", span(c.from, c.to), tiers.join("+"))
        })
        .collect();
    spans.join("<br>")
}

/// `premium 12 months, 30 days ahead`, or `-`.
fn policy(policy: Option<&PolicyView>) -> String {
    match policy {
        Some(p) => format!(
            "{} {} month{}, {} day{} ahead",
            p.tier,
            p.months,
            if p.months == 1 { "" } else { "s" },
            p.renew_before_days,
            if p.renew_before_days == 1 { "" } else { "s" },
        ),
        None => "-".to_owned(),
    }
}

/// `2027-10-31 (starts 2027-12-01)`: when the renewal is due, and where the
/// package starts.
fn renewal(oa: &OaCoverage) -> String {
    match (oa.next_renewal, oa.next_renewal_start) {
        (Some(due), Some(start)) => format!("{due} (starts {start})"),
        (Some(due), None) => due.to_string(),
        _ => "-".to_owned(),
    }
}
