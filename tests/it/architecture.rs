//! The shape of the code, checked: no file of `src/` depends on itself
//! through others (a circle), no top-level module depends on one that
//! depends back on it (an import running back up), and the codemap in
//! `ARCHITECTURE.md` names every top-level module and nothing else.
//!
//! Dependencies are read from the source text: every `use` of a `crate::`,
//! `super::`, `self::` or child-module path, and every such path written
//! inline in code, resolved to the file that defines the item (following
//! `pub use` re-exports, which are a facade, not a dependency). Test-only
//! code (`#[cfg(test)]` modules, `tests.rs` files) is left out: a test may
//! look anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file of the library, as a module.
struct Module {
    /// `["state", "journal"]` for `src/state/journal.rs`; empty for `lib.rs`.
    path: Vec<String>,
    /// The code with comments, strings and test-only modules removed.
    code: String,
}

/// Every library module under `src/` (not `main.rs`), by module path.
fn modules(root: &Path) -> BTreeMap<Vec<String>, (PathBuf, Module)> {
    let mut found = BTreeMap::new();
    let mut todo = vec![(Vec::new(), root.join("src/lib.rs"))];
    while let Some((path, file)) = todo.pop() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let (code, children) = strip(&text);
        for child in children {
            let mut child_path = path.clone();
            child_path.push(child.clone());
            if let Some(child_file) = module_file(root, &child_path) {
                todo.push((child_path, child_file));
            }
        }
        found.insert(path.clone(), (file, Module { path, code }));
    }
    found
}

/// `src/a/b.rs` or `src/a/b/mod.rs` for `["a", "b"]`.
fn module_file(root: &Path, path: &[String]) -> Option<PathBuf> {
    let base = path
        .iter()
        .fold(root.join("src"), |dir, segment| dir.join(segment));
    let file = base.with_extension("rs");
    if file.is_file() {
        return Some(file);
    }
    let file = base.join("mod.rs");
    file.is_file().then_some(file)
}

/// The code without comments, string and char literals and `#[cfg(test)]`
/// modules, and the child modules it declares in files (test-only ones left out).
fn strip(text: &str) -> (String, Vec<String>) {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |end| end + 2);
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].bytes().take_while(|b| *b == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            i += rest[body..]
                .find(&close)
                .map_or(rest.len(), |end| body + end + close.len());
            out.push_str("\"\"");
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() {
                match rest.as_bytes()[j] {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            i += (j + 1).min(rest.len());
            out.push_str("\"\"");
        } else if let Some(len) = char_literal(rest) {
            i += len;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    // Test-only modules: `#[cfg(test)] mod name;` and `#[cfg(test)] mod name { … }`.
    let mut code = String::with_capacity(out.len());
    let mut children = Vec::new();
    let mut rest = out.as_str();
    loop {
        let Some(at) = rest.find("#[cfg(test)]") else {
            code.push_str(rest);
            break;
        };
        code.push_str(&rest[..at]);
        let after = rest[at + "#[cfg(test)]".len()..].trim_start();
        let after = after
            .strip_prefix("pub ")
            .or_else(|| after.strip_prefix("pub(crate) "))
            .unwrap_or(after);
        let Some(module) = after.strip_prefix("mod ") else {
            rest = &rest[at + 1..];
            code.push('#');
            continue;
        };
        let end = match module.find([';', '{']) {
            Some(end) if module.as_bytes()[end] == b'{' => {
                let mut depth = 0;
                let mut close = module.len();
                for (k, b) in module.bytes().enumerate().skip(end) {
                    match b {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                close = k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                close
            }
            Some(end) => end + 1,
            None => module.len(),
        };
        rest = &module[end..];
    }
    for line in code.lines() {
        let line = line.trim();
        let line = line
            .strip_prefix("pub ")
            .or_else(|| line.strip_prefix("pub(crate) "))
            .unwrap_or(line);
        if let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
            children.push(name.trim().to_owned());
        }
    }
    (code, children)
}

/// The length of a char literal at the start of `text` (`'a'`, `'\n'`,
/// `'\u{1F600}'`), not a lifetime.
fn char_literal(text: &str) -> Option<usize> {
    let rest = text.strip_prefix('\'')?;
    if let Some(escaped) = rest.strip_prefix('\\') {
        let close = escaped.find('\'')?;
        return (close <= 10).then_some(close + 3);
    }
    let c = rest.chars().next()?;
    rest[c.len_utf8()..]
        .starts_with('\'')
        .then_some(2 + c.len_utf8())
}

/// A `use` statement, flattened into its paths, and whether it re-exports.
struct Use {
    public: bool,
    paths: Vec<Vec<String>>,
}

/// Every `use` statement of `code`, and the code with them removed.
fn uses(code: &str) -> (Vec<Use>, String) {
    let mut found = Vec::new();
    let mut rest_code = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        if rest[at + 3..].trim_start().starts_with('<') {
            // `impl Trait + use<'a>`: precise capturing, not an import.
            rest_code.push_str(&rest[..at + 3]);
            rest = &rest[at + 3..];
            continue;
        }
        let before = &rest[..at];
        let line_start = before.rfind(['\n', ';', '{', '}']).map_or(0, |p| p + 1);
        let prefix = before[line_start..].trim();
        let public = prefix.starts_with("pub");
        let Some(end) = rest[at..].find(';') else {
            break;
        };
        rest_code.push_str(&rest[..at]);
        // `a::B as C` -> `a::B@C`, then no white space at all.
        let tree: String = rest[at + 3..at + end]
            .split_whitespace()
            .map(|word| if word == "as" { "@" } else { word })
            .collect();
        let mut paths = Vec::new();
        flatten(&tree, &mut Vec::new(), &mut paths);
        found.push(Use { public, paths });
        rest = &rest[at + end + 1..];
    }
    rest_code.push_str(rest);
    (found, rest_code)
}

/// `word` as a whole word in `text`.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text[from..].find(word) {
        let at = from + at;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !ident(before) && !ident(after) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Flattens a use tree (`a::{b, c::{d as e}}`) into its paths.
fn flatten(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let depth = prefix.len();
        prefix.extend(head);
        for part in split_top(inner) {
            flatten(part, prefix, out);
        }
        prefix.truncate(depth);
    } else {
        let path = tree.split('@').next().unwrap_or(tree);
        let mut full = prefix.clone();
        full.extend(
            path.split("::")
                .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
                .map(str::to_owned),
        );
        out.push(full);
    }
}

/// Splits `a,b::{c,d},e` at its top-level commas.
fn split_top(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Paths written inline in code: `crate::a::b`, `super::c`, `child::d`.
fn inline_paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut segments = Vec::new();
        loop {
            let start = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            segments.push(code[start..j].to_owned());
            if code[j..].starts_with("::") && j + 2 < bytes.len() && ident(bytes[j + 2]) {
                j += 2;
            } else {
                break;
            }
        }
        let root = segments[0].as_str();
        if segments.len() > 1
            && (matches!(root, "crate" | "super" | "self") || children.contains(root))
        {
            paths.push(segments);
        }
        i = j.max(i + 1);
    }
    paths
}

/// The library's modules and the dependency edges between their files.
struct Graph {
    files: BTreeMap<Vec<String>, PathBuf>,
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn graph(root: &Path) -> Graph {
    let modules = modules(root);
    let files: BTreeMap<_, _> = modules
        .iter()
        .map(|(path, (file, _))| (path.clone(), file.clone()))
        .collect();
    // Per module: what it re-exports (name -> absolute path) and defines.
    let mut exports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut parsed = BTreeMap::new();
    for (path, (_, module)) in &modules {
        let (uses, rest) = uses(&module.code);
        let children = children_of(&files, path);
        for u in uses.iter().filter(|u| u.public) {
            for p in &u.paths {
                if let (Some(abs), Some(name)) = (absolute(&module.path, &children, p), p.last()) {
                    exports
                        .entry(path.clone())
                        .or_default()
                        .insert(name.clone(), abs);
                }
            }
        }
        parsed.insert(path.clone(), (uses, rest, children));
    }
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (path, (uses, rest, children)) in &parsed {
        let mut wanted: Vec<Vec<String>> = uses
            .iter()
            .filter(|u| !u.public)
            .flat_map(|u| u.paths.iter().cloned())
            .collect();
        wanted.extend(inline_paths(rest, children));
        for p in wanted {
            let Some(abs) = absolute(path, children, &p) else {
                continue;
            };
            // A file may use what its enclosing modules define: they are
            // the room it is part of, not a module beside it.
            if let Some(target) = resolve(&files, &exports, &abs, 0)
                && !path.starts_with(&target)
            {
                edges.entry(path.clone()).or_default().insert(target);
            }
        }
    }
    Graph { files, edges }
}

fn children_of(files: &BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> BTreeSet<String> {
    files
        .keys()
        .filter(|p| p.len() == path.len() + 1 && p.starts_with(path))
        .filter_map(|p| p.last().cloned())
        .collect()
}

/// `p` as a path from the crate root, or `None` for another crate's path.
fn absolute(module: &[String], children: &BTreeSet<String>, p: &[String]) -> Option<Vec<String>> {
    let (first, rest) = p.split_first()?;
    let mut base = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => {
            let mut base = module.to_vec();
            base.pop();
            let mut rest = rest;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            return Some(base);
        }
        name if children.contains(name) => {
            let mut base = module.to_vec();
            base.push(name.to_owned());
            base
        }
        _ => return None,
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The module file that defines the item at `abs`, through re-exports.
fn resolve(
    files: &BTreeMap<Vec<String>, PathBuf>,
    exports: &BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
    abs: &[String],
    depth: usize,
) -> Option<Vec<String>> {
    let module_len = (0..=abs.len())
        .rev()
        .find(|n| files.contains_key(&abs[..*n]))?;
    let module = abs[..module_len].to_vec();
    if depth < 8
        && let Some(item) = abs.get(module_len)
        && let Some(target) = exports.get(&module).and_then(|e| e.get(item))
        && target.as_slice() != abs
    {
        let mut next = target.clone();
        next.extend(abs[module_len + 1..].iter().cloned());
        return resolve(files, exports, &next, depth + 1).or(Some(module));
    }
    Some(module)
}

/// The strongly connected components of more than one node (Tarjan).
fn circles<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct Walk<'a, N> {
        edges: &'a BTreeMap<N, BTreeSet<N>>,
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on_stack: BTreeSet<N>,
        found: Vec<Vec<N>>,
    }
    impl<N: Ord + Clone> Walk<'_, N> {
        fn visit(&mut self, node: &N) {
            let n = self.index.len();
            self.index.insert(node.clone(), n);
            self.low.insert(node.clone(), n);
            self.stack.push(node.clone());
            self.on_stack.insert(node.clone());
            for next in self.edges.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node.clone(), low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node.clone(), low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(&top);
                    let done = &top == node;
                    component.push(top);
                    if done {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !walk.index.contains_key(node) {
            walk.visit(node);
        }
    }
    walk.found
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The top-level module a file belongs to (`state` for `src/state/s3.rs`).
fn top(path: &[String]) -> String {
    path.first().cloned().unwrap_or_else(|| "lib".to_owned())
}

fn describe(graph: &Graph, component: &[Vec<String>]) -> String {
    let mut text = String::new();
    for from in component {
        for to in graph.edges[from].iter().filter(|t| component.contains(t)) {
            text.push_str(&format!(
                "\n  {} -> {}",
                graph.files[from].display(),
                graph.files[to].display()
            ));
        }
    }
    text
}

#[test]
fn no_file_of_the_library_depends_on_itself_through_others() {
    let graph = graph(&root());
    assert!(graph.files.len() > 50, "the walk found the modules");
    assert!(
        graph.edges.values().map(BTreeSet::len).sum::<usize>() > 100,
        "the walk found the imports"
    );
    let found = circles(&graph.edges);
    let report: Vec<String> = found
        .iter()
        .map(|c| format!("a circle of {} files:{}", c.len(), describe(&graph, c)))
        .collect();
    assert!(
        found.is_empty(),
        "move what both sides need into a module below both:\n{}",
        report.join("\n")
    );
}

#[test]
fn no_top_level_module_imports_one_that_imports_it_back() {
    let graph = graph(&root());
    let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut why: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (from, targets) in &graph.edges {
        for to in targets {
            let (a, b) = (top(from), top(to));
            if a != b && !from.is_empty() {
                rooms.entry(a.clone()).or_default().insert(b.clone());
                why.entry((a, b)).or_default().push(format!(
                    "{} -> {}",
                    graph.files[from].display(),
                    graph.files[to].display()
                ));
            }
        }
    }
    let found = circles(&rooms);
    let report: Vec<String> = found
        .iter()
        .map(|component| {
            let mut lines = vec![format!(
                "modules {} import each other:",
                component.join(", ")
            )];
            for ((a, b), files) in &why {
                if component.contains(a) && component.contains(b) {
                    lines.extend(files.iter().map(|f| format!("  {f}")));
                }
            }
            lines.join("\n")
        })
        .collect();
    assert!(
        found.is_empty(),
        "an import runs back up; move what both need below both:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_checker_sees_a_circle_and_a_re_export() {
    // A circle through a `use` and an inline path, a re-export followed to
    // its definition, and test-only code ignored.
    let a = "use crate::b::{Thing as Other};\npub fn f() -> impl Sized + use<> {}\n#[cfg(test)]\nmod tests { use crate::c::X; }";
    let (code, _) = strip(a);
    assert!(
        !code.contains("crate::c"),
        "test-only module removed: {code}"
    );
    let (found, rest) = uses(&code);
    assert_eq!(found[0].paths, vec![vec!["crate", "b", "Thing"]]);
    assert!(
        !rest.contains("crate::b"),
        "the import is read out of the code"
    );
    let (code, _) = strip("let x = crate::a::f(); // crate::z");
    let inline = inline_paths(&code, &BTreeSet::new());
    assert_eq!(inline, vec![vec!["crate", "a", "f"]]);
    let mut paths = Vec::new();
    flatten("crate::{a::{B,C@D},e::*}", &mut Vec::new(), &mut paths);
    assert_eq!(
        paths,
        vec![
            vec!["crate", "a", "B"],
            vec!["crate", "a", "C"],
            vec!["crate", "e"]
        ]
    );
    let edges: BTreeMap<u8, BTreeSet<u8>> = [
        (1, BTreeSet::from([2])),
        (2, BTreeSet::from([3])),
        (3, BTreeSet::from([1])),
        (4, BTreeSet::from([1])),
    ]
    .into();
    assert_eq!(circles(&edges), vec![vec![1, 2, 3]]);
}

/// The codemap's rows: the first column of the table under `## Codemap`.
fn codemap_rows(text: &str) -> BTreeSet<String> {
    text.split("## Codemap")
        .nth(1)
        .unwrap_or("")
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .map(|cell| cell.trim().trim_matches('`').to_owned())
        .filter(|cell| cell.starts_with("src/"))
        .collect()
}

#[test]
fn the_codemap_names_every_top_level_module_and_nothing_else() {
    let root = root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let listed = codemap_rows(&text);
    let mut actual = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("src")).expect("src/") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            actual.insert(format!("src/{name}/"));
        } else if name.ends_with(".rs") {
            actual.insert(format!("src/{name}"));
        }
    }
    let missing: Vec<_> = actual.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&actual).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "ARCHITECTURE.md's codemap is out of date: add a row for {missing:?}, remove {stale:?}"
    );
}
