//! Documentation links: every link to a `#section` in the repository's
//! markdown (the README, `docs/*.md`, the examples' READMEs, …) and every
//! `FILE.md#section` named in `.gitignore` resolves to a heading in a file
//! that exists.
//!
//! Anchors follow GitHub's rules: the heading's text (markdown marks and
//! link targets removed), lowercased, punctuation other than `-` and `_`
//! dropped, spaces turned into `-`; a repeated heading gets `-1`, `-2`, ….

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.md` under `dir`, skipping build output and hidden directories
/// other than the examples' `.github`.
fn markdown_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let skip = ["target", "node_modules", ".git"].contains(&name.as_str())
                || (name.starts_with('.') && name != ".github");
            if !skip {
                markdown_files(&path, found);
            }
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
}

/// The lines of `text` outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        match fence {
            Some(open) if trimmed.starts_with(open) => fence = None,
            Some(_) => {}
            None if trimmed.starts_with("```") => fence = Some("```"),
            None if trimmed.starts_with("~~~") => fence = Some("~~~"),
            None => lines.push(line),
        }
    }
    lines
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    // `[text](target)` → `text`.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a markdown file's headings (`#` to `######`).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in prose_lines(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim_end_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while !found.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
    }
    found
}

/// The targets of the inline links `[text](target)` in a file's prose
/// (inline code spans removed).
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    let mut number = 0;
    let mut fence: Option<&str> = None;
    for line in text.lines() {
        number += 1;
        let trimmed = line.trim_start();
        match fence {
            Some(open) if trimmed.starts_with(open) => {
                fence = None;
                continue;
            }
            Some(_) => continue,
            None if trimmed.starts_with("```") => {
                fence = Some("```");
                continue;
            }
            None if trimmed.starts_with("~~~") => {
                fence = Some("~~~");
                continue;
            }
            None => {}
        }
        // Drop inline code: a `](#x)` inside backticks is not a link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            targets.push((number, target.to_owned()));
            rest = &after[end..];
        }
    }
    targets
}

/// Checks one link from `from` (a file) to `target`; the problem, if any.
fn check(from: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = target.split_once('#')?;
    let file = if path.is_empty() {
        from.to_path_buf()
    } else {
        from.parent().unwrap().join(path)
    };
    if !file.exists() {
        return Some(format!("{target}: no such file {}", file.display()));
    }
    if file.is_dir() || file.extension().is_none_or(|e| e != "md") {
        return Some(format!("{target}: a section of something not markdown"));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let known = anchors(&text);
    (!known.contains(anchor)).then(|| {
        format!(
            "{target}: no heading with the anchor #{anchor} in {}",
            file.display()
        )
    })
}

#[test]
fn github_anchors_follow_its_slug_rules() {
    assert_eq!(slug("State and recovery"), "state-and-recovery");
    assert_eq!(slug("How to add …"), "how-to-add-");
    assert_eq!(
        slug("What each result code makes oapkg do"),
        "what-each-result-code-makes-oapkg-do"
    );
    assert_eq!(slug("`oapkg apply`: the flags"), "oapkg-apply-the-flags");
    assert_eq!(slug("Shared state (team scale)"), "shared-state-team-scale");
    assert_eq!(
        slug("snake_case and kebab-case"),
        "snake_case-and-kebab-case"
    );
    assert_eq!(slug("See [the docs](docs/x.md)"), "see-the-docs");
    let twice = anchors("# Notes\n\n```sh\n# not a heading\n```\n## Notes\n");
    assert_eq!(twice, ["notes".to_owned(), "notes-1".to_owned()].into());
}

#[test]
fn every_section_link_in_the_docs_resolves_to_a_heading() {
    let root = repo_root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    files.sort();
    assert!(files.contains(&root.join("README.md")));
    assert!(files.contains(&root.join("state/README.md")));
    assert!(files.iter().any(|f| f.starts_with(root.join("docs"))));
    assert!(files.iter().any(|f| f.starts_with(root.join("examples"))));

    let mut broken = Vec::new();
    let mut sections = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in link_targets(&text) {
            if target.contains('#') && !target.contains("://") {
                sections += 1;
            } else {
                continue;
            }
            if let Some(problem) = check(file, &target) {
                let rel = file.strip_prefix(&root).unwrap().display();
                broken.push(format!("{rel}:{line}: {problem}"));
            }
        }
    }
    // Plain-text references in files that are not markdown.
    for name in [".gitignore"] {
        let file = root.join(name);
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            for word in line.split(|c: char| c.is_whitespace() || "()\"',".contains(c)) {
                let word = word.trim_end_matches('.');
                if word.contains(".md#") {
                    sections += 1;
                    if let Some(problem) = check(&file, word) {
                        broken.push(format!("{name}:{}: {problem}", i + 1));
                    }
                }
            }
        }
    }
    assert!(
        sections > 20,
        "only {sections} section links found: is the scan right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
