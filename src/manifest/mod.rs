//! The desired set: reading manifest files and directories, validating every
//! document into [`Package`]s, and reporting every problem with its location.
//!
//! [`load`] is the only function here that touches the disk (it finds and
//! reads the files); parsing and validation in [`validate`] are pure. A
//! file is parsed by [`fast`] when it is in the plain block style (large
//! generated manifests), else by serde-saphyr; both give the same
//! [`raw`] documents with the same locations.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use jiff::civil::Date;

pub use crate::spec::Source;
use crate::spec::{Key, ManifestHash, Oaid, Spec, Tier, sha256_tagged};

pub mod fast;
pub mod kinds;
pub mod raw;
pub mod validate;
pub mod yaml;

use validate::Origin;

/// The manifest read when no `-f` is given.
pub const DEFAULT_MANIFEST: &str = "oapkg.yaml";
/// Larger files are refused before they are read: no real manifest comes near.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Where `at` is in `file`, as a [`Source`].
pub(crate) fn source_at(file: &str, at: raw::Location) -> Source {
    Source {
        file: file.to_owned(),
        line: u32::try_from(at.line()).unwrap_or(u32::MAX),
        column: u32::try_from(at.column()).unwrap_or(u32::MAX),
    }
}

/// One entry of a `CoveragePolicy`: keep `oaid` covered with packages of
/// `tier` for `months`, bought `renew_before_days` before coverage ends.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    pub oaid: Oaid,
    pub name: Option<String>,
    pub tier: Tier,
    pub months: u8,
    pub renew_before_days: u16,
    /// Where the first package starts when the OA has none at all.
    pub first_start: Option<Date>,
    /// Where the policy is declared (its entry's line).
    pub source: Source,
}

/// Most days a policy may renew ahead.
pub const MAX_RENEW_BEFORE_DAYS: u16 = 366;

/// One declared package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub spec: Spec,
    pub name: Option<String>,
    pub source: Source,
}

/// Every package the manifests declare, by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredSet {
    pub packages: BTreeMap<Key, Package>,
}

/// Keyed by each package's own key. For packages already known to be unique
/// (tests, benchmarks): manifests go through [`load`], which reports a key
/// declared twice instead of keeping one.
impl FromIterator<Package> for DesiredSet {
    fn from_iter<I: IntoIterator<Item = Package>>(packages: I) -> Self {
        DesiredSet {
            packages: packages.into_iter().map(|p| (p.spec.key(), p)).collect(),
        }
    }
}

impl DesiredSet {
    /// Content hash of the desired set: every key with its spec hash and name,
    /// in key order. Comments, formatting, file layout and source lines do not
    /// change it, so a saved plan stays valid across a reformat, and watch
    /// skips a cycle when a save changed nothing that matters.
    pub fn hash(&self) -> ManifestHash {
        // Each package is its spec's canonical encoding (which holds the key)
        // followed by its name, JSON-quoted so that a name can never run into
        // the next package.
        let mut encoding = String::from("oapkg-desired/v1\n");
        for package in self.packages.values() {
            encoding.push_str(&package.spec.canonical_encoding());
            encoding.push_str("name=");
            encoding.push_str(&serde_json::to_string(&package.name).unwrap_or_default());
            encoding.push('\n');
        }
        ManifestHash::from_tagged(sha256_tagged(encoding.as_bytes()))
    }
}

/// A problem (or a warning) about a place in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub source: Source,
    pub message: String,
    /// The package the message is about, when there is one.
    pub key: Option<Key>,
    /// A second place the message is about (the other duplicate, ...).
    pub related: Option<(Source, String)>,
    /// Which warning it is, for the one a plan keeps only for some
    /// packages.
    pub kind: DiagnosticKind,
}

/// Kinds of diagnostics that readers treat apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiagnosticKind {
    #[default]
    General,
    /// "starts before today": said only about a package the plan would buy
    /// ([`crate::plan::starts_before_today_applies`]), never about one
    /// already recorded.
    StartsBeforeToday,
    /// A file found in a directory that is not an oapkg manifest, skipped.
    Skipped,
}

impl Diagnostic {
    fn at(file: &str, at: raw::Location, message: String) -> Diagnostic {
        Diagnostic {
            source: source_at(file, at),
            message,
            key: None,
            related: None,
            kind: DiagnosticKind::General,
        }
    }

    fn file(file: &str, message: String) -> Diagnostic {
        let source = Source {
            file: file.to_owned(),
            line: 0,
            column: 0,
        };
        Diagnostic {
            source,
            message,
            key: None,
            related: None,
            kind: DiagnosticKind::General,
        }
    }

    fn about(mut self, key: Key) -> Diagnostic {
        self.key = Some(key);
        self
    }

    fn of_kind(mut self, kind: DiagnosticKind) -> Diagnostic {
        self.kind = kind;
        self
    }

    fn with_related(source: &Source, message: String, other: &Source, note: String) -> Diagnostic {
        Diagnostic {
            source: source.clone(),
            message,
            key: None,
            related: Some((other.clone(), note)),
            kind: DiagnosticKind::General,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message may quote the file's text: no control character of
        // it reaches a terminal.
        let escape = crate::text::escape_controls;
        write!(f, "{}: {}", self.source, escape(&self.message))?;
        if let Some((other, note)) = &self.related {
            write!(f, "\n  {other}: {}", escape(note))?;
        }
        Ok(())
    }
}

/// The manifests read, validated and merged.
#[derive(Debug, Default)]
pub struct Manifests {
    pub desired: DesiredSet,
    /// The `kind: PriceList`, when one is declared.
    pub prices: Option<crate::prices::PriceList>,
    /// The coverage policies, one per OA, sorted by OAID.
    pub policies: Vec<Policy>,
    pub warnings: Vec<Diagnostic>,
    /// Every file read, in the order read (directories walked in name order).
    pub files: Vec<PathBuf>,
    /// [`hash`](Self::hash), once computed: the manifests are not changed
    /// after [`load`], and a large set takes tens of milliseconds to hash.
    hash: std::sync::OnceLock<ManifestHash>,
}

impl Manifests {
    /// Content hash of everything the manifests say that changes a plan:
    /// the desired set ([`DesiredSet::hash`]), and the price list and
    /// coverage policies when there are any (without them it is the desired
    /// set's hash, as before they existed).
    pub fn hash(&self) -> ManifestHash {
        self.hash.get_or_init(|| self.compute_hash()).clone()
    }

    fn compute_hash(&self) -> ManifestHash {
        if self.prices.is_none() && self.policies.is_empty() {
            return self.desired.hash();
        }
        // Places (file, line) are left out, like the desired set's.
        let policies: Vec<_> = self
            .policies
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p.source = Source::default();
                p
            })
            .collect();
        let prices = self.prices.as_ref().map(|p| (&p.currency, &p.monthly));
        let extra = serde_json::to_string(&(prices, policies)).unwrap_or_default();
        ManifestHash::from_tagged(sha256_tagged(
            format!("oapkg-manifests/v1\n{}\n{extra}\n", self.desired.hash()).as_bytes(),
        ))
    }
}

/// Why the manifests cannot be used: every problem found, not just the first.
#[derive(Debug, thiserror::Error)]
#[error("{}", render_errors(.errors))]
pub struct ManifestError {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

fn render_errors(errors: &[Diagnostic]) -> String {
    let mut out = format!(
        "the manifests have {} error{}:",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for error in errors {
        out.push_str("\n  ");
        out.push_str(&error.to_string().replace('\n', "\n  "));
    }
    out
}

/// Reads every manifest under `paths` (files, or directories walked
/// recursively for `*.yaml`/`*.yml`, hidden entries skipped) and validates
/// them together. An empty `paths` means [`DEFAULT_MANIFEST`].
pub fn load(paths: &[PathBuf], today: Date) -> Result<Manifests, ManifestError> {
    let (files, mut errors) = discover(paths);

    let mut warnings = Vec::new();
    let mut packages = Vec::new();
    let mut prices = Vec::new();
    let mut policies = Vec::new();
    for (path, origin) in &files {
        let name = path.display().to_string();
        let text = match read_text(path) {
            Ok(text) => text,
            Err(message) => {
                errors.push(Diagnostic::file(&name, message));
                continue;
            }
        };
        let outcome = validate::check_file(&name, &text, *origin, today);
        packages.extend(outcome.packages);
        prices.extend(outcome.prices);
        policies.extend(outcome.policies);
        errors.extend(outcome.errors);
        warnings.extend(outcome.warnings);
    }
    let (packages, set_errors, set_warnings) = validate::check_together(packages);
    errors.extend(set_errors);
    warnings.extend(set_warnings);
    let (prices, policies, kind_errors) = validate::check_prices_and_policies(prices, policies);
    errors.extend(kind_errors);

    if errors.is_empty() {
        let files = files.into_iter().map(|(path, _)| path).collect();
        Ok(Manifests {
            desired: DesiredSet { packages },
            prices,
            policies,
            warnings,
            files,
            hash: std::sync::OnceLock::new(),
        })
    } else {
        Err(ManifestError { errors, warnings })
    }
}

/// The files [`load`] reads under `paths`, in the order it reads them; a
/// path that cannot be read is left out (`load` reports it).
pub fn files(paths: &[PathBuf]) -> Vec<PathBuf> {
    discover(paths)
        .0
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// The files under `paths` (an empty `paths` means [`DEFAULT_MANIFEST`])
/// and how each was found, and the paths that cannot be read.
fn discover(paths: &[PathBuf]) -> (Vec<(PathBuf, Origin)>, Vec<Diagnostic>) {
    let paths = paths_or_default(paths);
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths.iter() {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, &mut files, &mut errors),
            Ok(_) => files.push((path.clone(), Origin::Named)),
            Err(error) => errors.push(io_diagnostic(path, "cannot read", &error)),
        }
    }
    files.dedup_by(|a, b| a.0 == b.0);
    (files, errors)
}

fn read_text(path: &Path) -> Result<String, String> {
    let (file, meta) = crate::files::open_regular(path).map_err(|e| format!("cannot read: {e}"))?;
    let len = meta.len();
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "file is {len} bytes; manifests larger than {MAX_FILE_BYTES} bytes are refused (split it into several files)"
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_FILE_BYTES + 1),
        &mut bytes,
    )
    .map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {}); a manifest is a YAML text file",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Collects `*.yaml`/`*.yml` files under `dir`, in name order, skipping
/// hidden entries (editor swap files, `.git`).
fn walk(dir: &Path, files: &mut Vec<(PathBuf, Origin)>, errors: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => return errors.push(io_diagnostic(dir, "cannot read directory", &error)),
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(is_hidden);
        if hidden {
            continue;
        }
        // Follows symlinks, like the files named on the command line.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk(&path, files, errors),
            Ok(_) if is_yaml(&path) => files.push((path, Origin::Discovered)),
            Ok(_) => {}
            Err(error) => errors.push(io_diagnostic(&path, "cannot read", &error)),
        }
    }
}

/// The `-f` paths, or [`DEFAULT_MANIFEST`] when none was given: what
/// `load` reads and what `watch` follows.
pub fn paths_or_default(paths: &[PathBuf]) -> std::borrow::Cow<'_, [PathBuf]> {
    if paths.is_empty() {
        std::borrow::Cow::Owned(vec![PathBuf::from(DEFAULT_MANIFEST)])
    } else {
        std::borrow::Cow::Borrowed(paths)
    }
}

/// Whether a file found in a directory is read as a possible manifest.
pub fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Whether a directory entry is skipped as hidden (`.git`, editor files).
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn io_diagnostic(path: &Path, what: &str, error: &std::io::Error) -> Diagnostic {
    let hint = if error.kind() == std::io::ErrorKind::NotFound {
        format!("; pass manifest files or directories with -f (default: {DEFAULT_MANIFEST})")
    } else {
        String::new()
    };
    Diagnostic::file(
        &path.display().to_string(),
        format!("{what}: {error}{hint}"),
    )
}
