//! A mermaid `gantt` chart of packages' periods, as GitHub renders it in a
//! Markdown comment: `oapkg coverage --format markdown` and the plan's
//! Markdown comment draw their periods with it.
//!
//! One section per OA, one task per period:
//! `    premium (imported) :done, p1, 2026-12-01, 2027-12-01`. Mermaid's end
//! date is exclusive (a bar stops at the start of that day), so a task ends
//! on the day after the period's last day. Names are user text: whatever
//! mermaid reads as syntax (`:` ends a task name, `;` a statement, `#` an
//! entity, `%%` a comment, a backtick the Markdown fence, `<` `>` HTML, `"`) is
//! replaced by a space, and sections without tasks are left out.

use std::fmt::Write as _;

use jiff::civil::Date;

/// How mermaid draws a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// Bought (recorded): grey.
    Done,
    /// To be bought: highlighted.
    Active,
    /// Needs attention (an unknown outcome, money spent again): red.
    Crit,
    /// A day, not a period (Zalo's date with `--refresh`).
    Milestone,
    /// A day that needs attention (Zalo's date of an OA that drifted).
    CritMilestone,
}

impl Tag {
    fn as_str(self) -> &'static str {
        match self {
            Tag::Done => "done",
            Tag::Active => "active",
            Tag::Crit => "crit",
            Tag::Milestone => "milestone",
            Tag::CritMilestone => "crit, milestone",
        }
    }
}

/// One bar: days `from` to `to`, both inclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub name: String,
    pub tag: Tag,
    pub from: Date,
    pub to: Date,
}

/// One OA's bars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    pub tasks: Vec<Task>,
}

/// Characters of a section title or task name kept.
const NAME_CHARS: usize = 60;

/// The chart as a fenced ```` ```mermaid ```` block ending with a newline,
/// or `None` when no section has a task.
pub fn chart(title: &str, sections: &[Section]) -> Option<String> {
    if sections.iter().all(|s| s.tasks.is_empty()) {
        return None;
    }
    let mut out = String::from("```mermaid\ngantt\n    dateFormat YYYY-MM-DD\n");
    let _ = writeln!(out, "    title {}", clean(title));
    let mut id = 0usize;
    for section in sections.iter().filter(|s| !s.tasks.is_empty()) {
        let _ = writeln!(out, "    section {}", clean(&section.title));
        for task in &section.tasks {
            id += 1;
            let end = match task.tag {
                Tag::Milestone | Tag::CritMilestone => "0d".to_owned(),
                _ => task.to.tomorrow().unwrap_or(task.to).to_string(),
            };
            let _ = writeln!(
                out,
                "    {} :{}, p{id}, {}, {end}",
                clean(&task.name),
                task.tag.as_str(),
                task.from
            );
        }
    }
    out.push_str("```\n");
    Some(out)
}

/// `s` safe as a mermaid section title or task name: syntax characters and
/// control characters become spaces, runs of spaces one space, cut to
/// [`NAME_CHARS`]; `-` when nothing is left.
pub fn clean(s: &str) -> String {
    let replaced: String = s
        .chars()
        .map(|c| match c {
            ':' | ';' | '#' | '%' | '`' | '"' | '<' | '>' | '{' | '}' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let words: Vec<&str> = replaced.split_whitespace().collect();
    let joined = words.join(" ");
    let cut: String = joined.chars().take(NAME_CHARS).collect();
    let cut = cut.trim_end().to_owned();
    if cut.is_empty() { "-".to_owned() } else { cut }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn one_section_per_oa_and_exclusive_end_dates() {
        let sections = [
            Section {
                title: "Shop #1: main; (123)".into(),
                tasks: vec![Task {
                    name: "premium (imported)".into(),
                    tag: Tag::Done,
                    from: date(2026, 12, 1),
                    to: date(2027, 11, 30),
                }],
            },
            Section {
                title: "empty".into(),
                tasks: vec![],
            },
        ];
        assert_eq!(
            chart("Coverage on 2026-11-26", &sections).unwrap(),
            "```mermaid\ngantt\n    dateFormat YYYY-MM-DD\n    title Coverage on 2026-11-26\n    \
             section Shop 1 main (123)\n    premium (imported) :done, p1, 2026-12-01, 2027-12-01\n```\n"
        );
        assert_eq!(chart("t", &sections[1..]), None);
        assert_eq!(clean("```\n%%{init}%%"), "init");
        assert_eq!(clean(":;#"), "-");
    }
}
