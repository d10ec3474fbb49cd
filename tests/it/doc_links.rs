//! Documentation links: every relative link in the repository's markdown
//! (the README, `docs/*.md`, the examples' READMEs, `state/README.md`, …)
//! points at a file or directory that exists in the repository, and every
//! link to a `#section` (in the same file or in `FILE.md#section`), and
//! every `FILE.md#section` named in `.gitignore`, resolves to a heading of
//! a markdown file that exists.
//!
//! Links are resolved as GitHub resolves them: relative to the file that
//! holds them, or to the repository's root when they start with `/`; a
//! link that leaves the repository is broken even if the path exists on
//! this machine. Links with a scheme (`https:`, `mailto:`) are not checked.
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

/// Whether `target` names something outside the repository: a URL with a
/// scheme (`https://…`, `mailto:…`), not checked here.
fn is_external(target: &str) -> bool {
    let scheme = target.split(':').next().unwrap_or("");
    target.contains(':')
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// `%20` and the like, as a browser decodes a link's path.
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` with `.` and `..` folded away, without touching the disk;
/// `None` when `..` climbs above the root of the path.
fn normalize(path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// `path` as the messages show it: from the repository's root.
fn shown(root: &Path, path: &Path) -> String {
    normalize(path)
        .as_deref()
        .and_then(|p| p.strip_prefix(root).ok())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Checks one link from `from` (a file in the repository at `root`) to
/// `target`; the problem, if any. A link with a scheme is not checked.
fn check(root: &Path, from: &Path, target: &str) -> Option<String> {
    let target = target.trim_start_matches('<').trim_end_matches('>');
    if is_external(target) {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let path = percent_decode(path.split('?').next().unwrap_or(""));
    let file = if path.is_empty() {
        from.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        root.join(from_root)
    } else {
        from.parent().unwrap().join(&path)
    };
    let inside = normalize(&file).is_some_and(|f| f.starts_with(root));
    if !inside {
        return Some(format!(
            "{target}: {} is outside the repository",
            shown(root, &file)
        ));
    }
    if !file.exists() {
        return Some(format!("{target}: no such file {}", shown(root, &file)));
    }
    let anchor = anchor?;
    if file.is_dir() || file.extension().is_none_or(|e| e != "md") {
        return Some(format!("{target}: a section of something not markdown"));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let known = anchors(&text);
    (!known.contains(anchor)).then(|| {
        format!(
            "{target}: no heading with the anchor #{anchor} in {}",
            shown(root, &file)
        )
    })
}

/// The repository's markdown files, sorted, after checking that the scan
/// finds the ones it is for.
fn repository_markdown(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    files.sort();
    assert!(files.contains(&root.join("README.md")));
    assert!(files.contains(&root.join("state/README.md")));
    assert!(files.iter().any(|f| f.starts_with(root.join("docs"))));
    assert!(files.iter().any(|f| f.starts_with(root.join("examples"))));
    files
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
fn the_link_checker_finds_broken_links_and_passes_good_ones() {
    let root = repo_root();
    let readme = root.join("README.md");
    let docs = root.join("docs/state-format.md");
    for good in [
        "docs/state-format.md",
        "docs/",
        "docs",
        "./docs/plan-json.md",
        "crates/esms-sim/",
        "/docs/state-format.md",
        "docs/state-format.md#example",
        "#state-and-recovery",
        "<docs/state-format.md>",
        "https://example.com/no/such/page.md",
        "mailto:someone@example.com",
    ] {
        assert_eq!(check(&root, &readme, good), None, "{good}");
    }
    assert_eq!(check(&root, &docs, "../README.md#apply"), None);
    assert_eq!(check(&root, &docs, "plan-json.md"), None);
    for (bad, says) in [
        ("docs/no-such-file.md", "no such file"),
        ("docs/state-format.md#no-such-section", "no heading"),
        ("#no-such-section", "no heading"),
        ("docs/#example", "not markdown"),
        ("Cargo.toml#package", "not markdown"),
        ("../README.md", "outside the repository"),
        ("/../README.md", "outside the repository"),
        ("state-format.md", "no such file"),
    ] {
        let problem = check(&root, &readme, bad);
        assert!(
            problem.as_deref().is_some_and(|p| p.contains(says)),
            "{bad}: {problem:?}"
        );
    }
    assert_eq!(percent_decode("a%20b%2"), "a b%2");
    assert!(is_external("HTTPS://x"));
    assert!(!is_external("docs/a:b.md"));
}

#[test]
fn every_section_link_in_the_docs_resolves_to_a_heading() {
    let root = repo_root();
    let files = repository_markdown(&root);

    let mut broken = Vec::new();
    let mut sections = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in link_targets(&text) {
            if target.contains('#') && !is_external(&target) {
                sections += 1;
            } else {
                continue;
            }
            if let Some(problem) = check(&root, file, &target) {
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
                    if let Some(problem) = check(&root, &file, word) {
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

#[test]
fn every_relative_file_link_in_the_docs_points_at_a_file_that_exists() {
    let root = repo_root();
    let files = repository_markdown(&root);

    let mut broken = Vec::new();
    let mut links = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in link_targets(&text) {
            // Links within the file are the section test's.
            if is_external(&target) || target.is_empty() || target.starts_with('#') {
                continue;
            }
            links += 1;
            if let Some(problem) = check(&root, file, &target) {
                let rel = file.strip_prefix(&root).unwrap().display();
                broken.push(format!("{rel}:{line}: {problem}"));
            }
        }
    }
    assert!(
        links > 15,
        "only {links} relative file links found: is the scan right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
