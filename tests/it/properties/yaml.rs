//! Manifest-level properties: generated package sets written out as YAML
//! text, in every spelling the manifest reference allows, and read back.
//!
//! A package set is generated first (OAIDs with and without leading zeros,
//! every tier, durations 1..=36, periods of one OA that never overlap,
//! names from none to arbitrary Unicode); then a seed picks how it is
//! written: field and key order, quoting, tier as a name in any case or as
//! a number, defaults, block or flow style, comments, documents and files,
//! CRLF line ends, a byte-order mark. The seed is part of the generated
//! input, so a failure reproduces from proptest's report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use jiff::civil::{Date, date};
use oapkg::manifest::validate::{self, Origin};
use oapkg::manifest::{self, DesiredSet, Package, Source};
use oapkg::spec::{Oaid, Spec, Tier};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

/// Before every generated start date: no "starts before today" warnings.
const TODAY: Date = date(2026, 11, 26);

/// One package as declared: what a manifest must give back.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Declared {
    spec: Spec,
    name: Option<String>,
}

/// A name, from the plain words users write to arbitrary Unicode text.
fn name() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        // Plain-safe words, numbers and look-alikes (`2027`, `1e3`, `0x1F`,
        // `True`, `007`): YAML types some of them, oapkg keeps the text.
        3 => "[A-Za-z0-9][A-Za-z0-9._-]{0,8}( [A-Za-z0-9._-]{1,6}){0,2}".prop_map(Some),
        2 => any::<String>().prop_map(Some),
    ]
}

/// Package sets whose keys are unique and whose periods of one OA never
/// overlap, so that `manifest::load` accepts them whole.
fn declared_set() -> impl Strategy<Value = Vec<Declared>> {
    let step = (0u16..90, 0u8..3, 1u8..=36, name());
    proptest::collection::vec(
        (
            "[1-9][0-9]{0,18}",
            0u16..400,
            proptest::collection::vec(step, 1..4),
        ),
        0..8,
    )
    .prop_map(|oas| {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for (oaid, offset, steps) in oas {
            if !seen.insert(oaid.clone()) {
                continue;
            }
            let oaid = Oaid::parse(&oaid).unwrap();
            let mut start = date(2027, 1, 1)
                .checked_add(jiff::Span::new().days(i64::from(offset)))
                .unwrap();
            for (gap, tier, months, name) in steps {
                let spec = Spec {
                    oaid: oaid.clone(),
                    tier: Tier::ALL[usize::from(tier)],
                    start,
                    duration_months: months,
                };
                start = spec
                    .end()
                    .expect("generated periods end in this century")
                    .checked_add(jiff::Span::new().days(1 + i64::from(gap)))
                    .unwrap();
                out.push(Declared { spec, name });
            }
        }
        out
    })
}

/// How a written file ends its lines and starts.
#[derive(Clone, Copy)]
struct FileStyle {
    crlf: bool,
    bom: bool,
    /// Whether a package may be written as a flow mapping (`- {oaid: …}`).
    flow: bool,
}

/// Writes YAML text and remembers, for each package, the line its entry
/// starts on.
struct Writer<'r> {
    rng: &'r mut StdRng,
    flow: bool,
    text: String,
    lines: Vec<(usize, u32)>,
}

impl Writer<'_> {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn current_line(&self) -> u32 {
        u32::try_from(self.text.matches('\n').count() + 1).unwrap()
    }

    fn maybe_comment(&mut self, indent: usize) {
        if self.rng.random_bool(0.15) {
            let comment = format!("{}# note: oaid: 1, tier: premium", " ".repeat(indent));
            self.line(&comment);
        }
    }

    fn trailing_comment(&mut self) -> &'static str {
        if self.rng.random_bool(0.1) {
            "  # was: premium, 12 months"
        } else {
            ""
        }
    }

    /// One YAML document declaring `packages` (indices into `all`).
    fn document(&mut self, all: &[Declared], packages: &[usize]) {
        // Defaults, sometimes, taken from a package so they get used.
        let defaults = if !packages.is_empty() && self.rng.random_bool(0.5) {
            let from = &all[packages[self.rng.random_range(0..packages.len())]].spec;
            Some((
                self.rng.random_bool(0.7).then_some(from.tier),
                self.rng.random_bool(0.7).then_some(from.duration_months),
            ))
        } else {
            None
        };
        let mut keys = vec!["apiVersion", "kind", "packages"];
        if defaults.is_some() {
            keys.push("defaults");
        }
        keys.shuffle(self.rng);
        for key in keys {
            self.maybe_comment(0);
            match key {
                "apiVersion" => {
                    let value =
                        ["oapkg/v1", "\"oapkg/v1\"", "'oapkg/v1'"][self.rng.random_range(0..3)];
                    let comment = self.trailing_comment();
                    self.line(&format!("apiVersion: {value}{comment}"));
                }
                "kind" => {
                    let value = ["PackageSet", "\"PackageSet\""][self.rng.random_range(0..2)];
                    self.line(&format!("kind: {value}"));
                }
                "defaults" => {
                    let (tier, duration) = defaults.unwrap();
                    if tier.is_none() && duration.is_none() {
                        self.line("defaults: {}");
                        continue;
                    }
                    self.line("defaults:");
                    if let Some(tier) = tier {
                        let tier = self.tier(tier);
                        self.line(&format!("  tier: {tier}"));
                    }
                    if let Some(months) = duration {
                        let months = self.duration(months);
                        self.line(&format!("  duration: {months}"));
                    }
                }
                _ => self.packages(all, packages, defaults.unwrap_or_default()),
            }
        }
    }

    fn packages(
        &mut self,
        all: &[Declared],
        packages: &[usize],
        defaults: (Option<Tier>, Option<u8>),
    ) {
        if packages.is_empty() {
            self.line("packages: []");
            return;
        }
        self.line("packages:");
        let indent = if self.rng.random_bool(0.5) { 2 } else { 0 };
        for &i in packages {
            self.maybe_comment(indent);
            let declared = &all[i];
            let mut fields: Vec<(&str, String)> = vec![
                ("oaid", self.oaid(&declared.spec.oaid)),
                ("start", self.start(declared.spec.start)),
            ];
            if defaults.0 != Some(declared.spec.tier) || self.rng.random_bool(0.3) {
                fields.push(("tier", self.tier(declared.spec.tier)));
            }
            if defaults.1 != Some(declared.spec.duration_months) || self.rng.random_bool(0.3) {
                fields.push(("duration", self.duration(declared.spec.duration_months)));
            }
            let flow = self.rng.random_bool(0.25) && self.flow;
            if let Some(name) = self.name(declared.name.as_deref(), flow) {
                fields.push(("name", name));
            }
            fields.shuffle(self.rng);
            self.lines.push((i, self.current_line()));
            let dash = format!("{}- ", " ".repeat(indent));
            if flow {
                let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                let comment = self.trailing_comment();
                self.line(&format!("{dash}{{{}}}{comment}", body.join(", ")));
            } else {
                for (n, (key, value)) in fields.iter().enumerate() {
                    let lead = if n == 0 {
                        dash.clone()
                    } else {
                        " ".repeat(indent + 2)
                    };
                    let comment = self.trailing_comment();
                    let value = if value.is_empty() {
                        String::new()
                    } else {
                        format!(" {value}")
                    };
                    self.line(&format!("{lead}{key}:{value}{comment}"));
                }
            }
        }
    }

    fn oaid(&mut self, oaid: &Oaid) -> String {
        match self.rng.random_range(0..3) {
            0 => oaid.to_string(),
            1 => format!("\"{oaid}\""),
            _ => format!("'{oaid}'"),
        }
    }

    fn start(&mut self, start: Date) -> String {
        match self.rng.random_range(0..3) {
            0 => start.to_string(),
            1 => format!("\"{start}\""),
            _ => format!("'{start}'"),
        }
    }

    fn tier(&mut self, tier: Tier) -> String {
        let name = tier.name();
        match self.rng.random_range(0..6) {
            0 => name.to_owned(),
            1 => name.to_uppercase(),
            2 => format!("{}{}", name[..1].to_uppercase(), &name[1..]),
            3 => tier.api_number().to_string(),
            4 => format!("\"{}\"", tier.api_number()),
            _ => format!("\"{name}\""),
        }
    }

    fn duration(&mut self, months: u8) -> String {
        match self.rng.random_range(0..3) {
            0 => months.to_string(),
            1 => format!("\"{months}\""),
            _ => format!("0{months}"),
        }
    }

    /// The `name` field's value as written, or `None` to leave it out. An
    /// empty string is `name:` with no value (null), in block style only.
    fn name(&mut self, name: Option<&str>, flow: bool) -> Option<String> {
        let Some(name) = name else {
            return match self.rng.random_range(0..4) {
                0 if !flow => Some(String::new()),
                1 => Some("null".to_owned()),
                2 => Some("~".to_owned()),
                _ => None,
            };
        };
        let mut styles = vec![double_quoted(name)];
        if plain_safe(name) {
            styles.push(name.to_owned());
        }
        if name
            .chars()
            .all(|c| (' '..='~').contains(&c) || (c > '\u{a0}' && !special(c)))
        {
            styles.push(format!("'{}'", name.replace('\'', "''")));
        }
        Some(styles.swap_remove(self.rng.random_range(0..styles.len())))
    }
}

/// Characters a YAML double-quoted scalar must escape (not printable, or a
/// line break or BOM that a 1.1 parser could treat specially).
fn special(c: char) -> bool {
    c < ' '
        || ('\u{7f}'..='\u{a0}').contains(&c)
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
}

fn double_quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if special(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Names the generator writes unquoted: what the `name()` regex gives,
/// minus YAML's null words (`name: null` is no name at all).
fn plain_safe(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ' '))
        && !name.ends_with(' ')
        && !name.contains("  ")
        && !matches!(name, "null" | "Null" | "NULL")
}

/// Writes `packages` (indices into `all`) as one file of one or more
/// documents; returns the text and the line of each package's entry.
fn file(
    all: &[Declared],
    packages: &[usize],
    rng: &mut StdRng,
    style: FileStyle,
) -> (String, Vec<(usize, u32)>) {
    let mut writer = Writer {
        rng,
        flow: style.flow,
        text: String::new(),
        lines: Vec::new(),
    };
    if style.bom {
        writer.text.push('\u{feff}');
    }
    let documents = writer.rng.random_range(1..=3).min(packages.len().max(1));
    let mut cuts: Vec<usize> = (0..documents - 1)
        .map(|_| writer.rng.random_range(0..=packages.len()))
        .collect();
    cuts.sort();
    let mut from = 0;
    if writer.rng.random_bool(0.1) {
        // A document of comments only: an empty document, which is skipped.
        writer.line("# generated; see below");
        writer.line("---");
    }
    let leading_marker = writer.rng.random_bool(0.3);
    for (d, to) in cuts.into_iter().chain([packages.len()]).enumerate() {
        if d > 0 || leading_marker {
            writer.line("---");
        }
        writer.document(all, &packages[from..to]);
        if writer.rng.random_bool(0.1) {
            writer.line("...");
        }
        from = to;
    }
    if writer.rng.random_bool(0.1) {
        writer.line("---");
    }
    let Writer {
        mut text, lines, ..
    } = writer;
    if style.crlf {
        text = text.replace('\n', "\r\n");
    }
    (text, lines)
}

fn file_style(rng: &mut StdRng) -> FileStyle {
    FileStyle {
        crlf: rng.random_bool(0.2),
        bom: rng.random_bool(0.1),
        flow: true,
    }
}

/// Writes all of `declared`, in a shuffled order, as files under `dir`: one
/// file, or several in nested directories with `.yaml` and `.yml` names.
fn write_tree(dir: &Path, declared: &[Declared], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..declared.len()).collect();
    order.shuffle(&mut rng);
    let files = rng.random_range(1..=4);
    let mut chunks: Vec<Vec<usize>> = vec![Vec::new(); files];
    for i in order {
        chunks[rng.random_range(0..files)].push(i);
    }
    for (n, chunk) in chunks.iter().enumerate() {
        let style = file_style(&mut rng);
        let (text, _) = file(declared, chunk, &mut rng, style);
        let ext = if rng.random_bool(0.5) { "yaml" } else { "yml" };
        let path = if n % 2 == 1 {
            dir.join(format!("team-{n}"))
                .join(format!("packages.{ext}"))
        } else {
            dir.join(format!("{n:02}-oapkg.{ext}"))
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn by_key(declared: &[Declared]) -> BTreeMap<oapkg::spec::Key, Declared> {
    declared.iter().map(|d| (d.spec.key(), d.clone())).collect()
}

fn as_declared(desired: &DesiredSet) -> BTreeMap<oapkg::spec::Key, Declared> {
    desired
        .packages
        .iter()
        .map(|(k, p)| {
            (
                k.clone(),
                Declared {
                    spec: p.spec.clone(),
                    name: p.name.clone(),
                },
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A manifest written in any allowed spelling parses back, with no
    /// error and no warning, to exactly the packages written, in the order
    /// written, each with the line its entry starts on: OAIDs keep their
    /// leading zeros, names keep their text (even when YAML would type it
    /// as a number or a boolean), defaults fill what a package leaves out.
    #[test]
    fn a_rendered_manifest_parses_back_to_its_packages(declared in declared_set(), seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let order: Vec<usize> = (0..declared.len()).collect();
        let style = file_style(&mut rng);
        let (text, lines) = file(&declared, &order, &mut rng, style);
        let outcome = validate::check_file("m.yaml", &text, Origin::Named, TODAY);
        prop_assert!(outcome.errors.is_empty(), "errors: {:#?}\n{}", outcome.errors, text);
        prop_assert!(outcome.warnings.is_empty(), "warnings: {:#?}\n{}", outcome.warnings, text);
        let got: Vec<Declared> = outcome
            .packages
            .iter()
            .map(|p| Declared { spec: p.spec.clone(), name: p.name.clone() })
            .collect();
        prop_assert_eq!(&got, &declared, "{}", text);
        let found = validate::check_file("m.yaml", &text, Origin::Discovered, TODAY);
        prop_assert!(found.errors.is_empty() && found.warnings.is_empty(), "found in a directory: {:#?}", found);
        prop_assert_eq!(&found.packages, &outcome.packages);
        for ((i, line), package) in lines.iter().zip(&outcome.packages) {
            prop_assert_eq!(package.source.line, *line, "package {} at line {}\n{}", i, line, text);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Two manifests that differ only in how they are written (order of
    /// packages, fields and keys, quoting, tier spelling, defaults, flow or
    /// block style, comments, how they are split into documents, files and
    /// directories, line ends, a BOM) load to the same desired set and the
    /// same manifest hash, which is the hash of the packages alone: a saved
    /// plan stays valid across a reformat, and `watch` skips the save.
    #[test]
    fn equivalent_manifests_have_one_hash(declared in declared_set(), a in any::<u64>(), b in any::<u64>()) {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        write_tree(dirs[0].path(), &declared, a);
        write_tree(dirs[1].path(), &declared, b);
        let expected: DesiredSet = declared
            .iter()
            .map(|d| Package {
                spec: d.spec.clone(),
                name: d.name.clone(),
                source: Source { file: "elsewhere.yaml".into(), line: 1, column: 1 },
            })
            .collect();
        for dir in &dirs {
            let loaded = manifest::load(&[dir.path().to_owned()], TODAY);
            let loaded = match loaded {
                Ok(loaded) => loaded,
                Err(error) => {
                    let mut files = String::new();
                    for file in walk(dir.path()) {
                        let _ = writeln!(files, "== {}\n{}", file.display(), std::fs::read_to_string(&file).unwrap());
                    }
                    return Err(TestCaseError::fail(format!("{error}\n{files}")));
                }
            };
            prop_assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
            prop_assert_eq!(as_declared(&loaded.desired), by_key(&declared));
            prop_assert_eq!(loaded.desired.hash(), expected.hash());
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Small edits that break a manifest slightly, or not at all: a character
/// YAML gives meaning to inserted, a byte range removed, a line repeated,
/// dropped, re-indented or moved.
fn mutate(text: &str, rng: &mut StdRng) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let line = rng.random_range(0..lines.len());
    match rng.random_range(0..6) {
        0 => {
            const MEANINGFUL: &[&str] = &[
                ":", "-", " ", "  ", "#", "\"", "'", "0", "x", "\t", "{", "[", "&a ", "*a", "!",
                "|", ">", "---", "...", "~", "\r", "\u{feff}", "\u{85}", "é", "\\",
            ];
            let insert = MEANINGFUL[rng.random_range(0..MEANINGFUL.len())];
            let target = &mut lines[line];
            let mut at = rng.random_range(0..=target.len());
            while !target.is_char_boundary(at) {
                at -= 1;
            }
            target.insert_str(at, insert);
        }
        1 => {
            let target = &mut lines[line];
            let from = rng.random_range(0..=target.len());
            let to = rng.random_range(from..=target.len().min(from + 3));
            if target.is_char_boundary(from) && target.is_char_boundary(to) {
                target.replace_range(from..to, "");
            }
        }
        2 => {
            let copy = lines[line].clone();
            lines.insert(rng.random_range(0..=lines.len()), copy);
        }
        3 => {
            lines.remove(line);
        }
        4 => {
            let spaces = rng.random_range(0..5);
            let trimmed = lines[line].trim_start().to_owned();
            lines[line] = format!("{}{trimmed}", " ".repeat(spaces));
        }
        _ => {
            let moved = lines.remove(line);
            lines.insert(rng.random_range(0..=lines.len()), moved);
        }
    }
    lines.join("\n")
}

/// The fast reader ([`manifest::fast`]) takes a file only if serde-saphyr
/// reads it to the very same documents, locations included: then the
/// checks, which are a function of the documents and the text, give the
/// same desired set, errors and warnings whichever reader read it.
fn assert_readers_agree(text: &str) -> Result<bool, TestCaseError> {
    let Some(fast) = manifest::fast::parse(text) else {
        return Ok(false);
    };
    match validate::parse_positioned(text) {
        Ok(positioned) => prop_assert_eq!(&fast, &positioned, "{}", text),
        Err(error) => {
            return Err(TestCaseError::fail(format!(
                "the fast reader took a file serde-saphyr refuses ({error}):\n{text}"
            )));
        }
    }
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Manifests in block style (the fast reader's) and every other
    /// spelling, and slightly broken copies of them: whenever the fast
    /// reader takes one, serde-saphyr reads the same documents at the same
    /// places, and the file checks to the same packages.
    #[test]
    fn the_fast_reader_agrees_with_the_positioned_parser(
        declared in declared_set(),
        seed in any::<u64>(),
        block in any::<bool>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let order: Vec<usize> = (0..declared.len()).collect();
        // The block style with the names users write (other names are
        // read by the positioned parser, one is enough to decline a file).
        let declared: Vec<Declared> = declared
            .into_iter()
            .map(|mut d| {
                if block && !d.name.as_deref().is_none_or(plain_safe) {
                    d.name = None;
                }
                d
            })
            .collect();
        let style = if block {
            FileStyle { crlf: false, bom: false, flow: false }
        } else {
            file_style(&mut rng)
        };
        let (text, _) = file(&declared, &order, &mut rng, style);
        assert_readers_agree(&text)?;
        for _ in 0..8 {
            let mut broken = mutate(&text, &mut rng);
            if rng.random_bool(0.3) {
                broken = mutate(&broken, &mut rng);
            }
            assert_readers_agree(&broken)?;
        }
    }
}

/// The block style generators write (one key per line, quoted OAIDs, plain
/// names and dates) is the fast reader's: a large manifest never waits for
/// the positioned parser.
#[test]
fn the_fast_reader_takes_the_block_style() {
    let mut text = String::from(
        "# generated\napiVersion: oapkg/v1\nkind: PackageSet\ndefaults:\n  duration: 12\npackages:\n",
    );
    for i in 0..50u64 {
        let _ = write!(
            text,
            "  - oaid: \"{}\"\n    name: OA number {i}  # a comment\n    tier: {}\n    start: 2027-01-{:02}\n",
            4_000_000_000_000_000_000u64 + i * 7919,
            ["trial", "advanced", "premium"][(i % 3) as usize],
            1 + i % 28,
        );
    }
    text.push_str("---\napiVersion: 'oapkg/v1'\nkind: PackageSet\npackages:\n- oaid: 123\n  tier: 2\n  start: \"2027-03-01\"\n  duration: 6\n  name: 'Cửa hàng số 1'\n");
    assert!(
        assert_readers_agree(&text).unwrap(),
        "the fast reader declined:\n{text}"
    );
    let outcome = validate::check_file("m.yaml", &text, Origin::Named, TODAY);
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    assert_eq!(outcome.packages.len(), 51);
}

/// Every file of the YAML test suite (valid and invalid YAML): the fast
/// reader declines it or reads what serde-saphyr reads.
#[test]
fn the_fast_reader_agrees_on_the_yaml_test_suite() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/yaml-test-suite");
    if !corpus.is_dir() {
        eprintln!("skipped: {} is not present", corpus.display());
        return;
    }
    let mut files = 0;
    for sub in ["valid", "error"] {
        for entry in std::fs::read_dir(corpus.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            files += 1;
            if let Err(error) = assert_readers_agree(&text) {
                panic!("{}: {error}", path.display());
            }
        }
    }
    assert!(
        files > 300,
        "expected the whole corpus, found {files} files"
    );
}
