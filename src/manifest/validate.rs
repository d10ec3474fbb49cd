//! From text to packages: parses one file's YAML into [`raw`](super::raw) documents and
//! checks every value, then checks the packages of all files together
//! (duplicate keys, overlapping periods).
//!
//! Pure: the file's name and text and "today" come in as arguments, nothing
//! here reads the disk or the clock. Every problem becomes a [`Diagnostic`];
//! validation never stops at the first one.

use std::collections::BTreeMap;

use jiff::civil::Date;

use super::raw::{
    Field, KeyProblem, Location, PackageEntry, PackageList, RawDefaults, RawDocument, RawPackage,
    Scalar, Spanned,
};
use super::{Diagnostic, DiagnosticKind, Package};
use crate::spec::{self, Key, MAX_DURATION_MONTHS, Oaid, OaidError, Spec, Tier, show_end};

mod kinds;
pub use kinds::check_together as check_prices_and_policies;

pub const API_VERSION: &str = "oapkg/v1";
pub const KIND: &str = "PackageSet";
/// `kind: PriceList`: the prices of the tiers (at most one across manifests).
pub const KIND_PRICES: &str = "PriceList";
/// `kind: CoveragePolicy`: policies that keep OAs covered.
pub const KIND_POLICIES: &str = "CoveragePolicy";

/// How a file came to be read, which decides what a non-manifest means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Named with `-f`: it must be a manifest.
    Named,
    /// Found while walking a directory: a YAML file that is not an oapkg
    /// manifest is skipped with a warning.
    Discovered,
}

/// What one file contributed.
#[derive(Debug, Default)]
pub struct FileOutcome {
    pub packages: Vec<Package>,
    /// Every `PriceList` document (more than one across all files is an
    /// error, reported by [`super::kinds`]).
    pub prices: Vec<crate::prices::PriceList>,
    pub policies: Vec<super::Policy>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Parses and validates one file. `file` is the name used in messages.
pub fn check_file(file: &str, text: &str, origin: Origin, today: Date) -> FileOutcome {
    let mut out = FileOutcome::default();
    let documents = match parse_documents(text) {
        Ok(documents) => documents,
        Err(error) => {
            // A directory may hold YAML that is not ours and that we cannot
            // read; skip it unless it claims to be a manifest.
            if origin == Origin::Discovered && !text.contains(API_VERSION) {
                out.warnings.push(Diagnostic::file(
                    file,
                    format!("skipped: not an oapkg manifest (no `apiVersion: {API_VERSION}`), and not readable YAML"),
                ).of_kind(DiagnosticKind::Skipped));
            } else {
                let at = error.location().map_or(Location::UNKNOWN, Location::from);
                out.errors.push(Diagnostic::at(
                    file,
                    at,
                    format!("invalid YAML: {}", yaml_message(&error)),
                ));
            }
            return out;
        }
    };
    if documents.is_empty() {
        let message = "holds no YAML document: expected a PackageSet (apiVersion: oapkg/v1, kind: PackageSet, packages: [...])";
        match origin {
            Origin::Named => out.errors.push(Diagnostic::file(file, message.to_owned())),
            Origin::Discovered => out.warnings.push(
                Diagnostic::file(file, format!("skipped: {message}"))
                    .of_kind(DiagnosticKind::Skipped),
            ),
        }
        return out;
    }
    if origin == Origin::Discovered && !documents.iter().any(|d| is_ours(&d.value)) {
        out.warnings.push(
            Diagnostic::file(
                file,
                format!("skipped: not an oapkg manifest (no `apiVersion: {API_VERSION}`)"),
            )
            .of_kind(DiagnosticKind::Skipped),
        );
        return out;
    }
    let mut checker = Checker {
        file,
        text,
        today,
        out,
    };
    for document in &documents {
        checker.document(document);
    }
    checker.out
}

/// Checks the packages of every file together: the same key declared twice,
/// and periods of one OA that overlap.
pub fn check_together(
    packages: Vec<Package>,
) -> (BTreeMap<Key, Package>, Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut keyed: Vec<(Key, Package)> = packages.into_iter().map(|p| (p.spec.key(), p)).collect();
    // Stable: of two packages with one key, the one read first stays first.
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut unique: Vec<(Key, Package)> = Vec::with_capacity(keyed.len());
    for (key, package) in keyed {
        if let Some((_, first)) = unique.last().filter(|(last, _)| *last == key) {
            errors.push(
                Diagnostic::with_related(
                    &package.source,
                    format!("package {key} is declared twice; remove one of them"),
                    &first.source,
                    "first declared here".to_owned(),
                )
                .about(key),
            );
            continue;
        }
        unique.push((key, package));
    }

    // A key's text is its OAID, `@` and its start date, so in key order the
    // packages of one OA are adjacent and sorted by start date.
    for packages in unique.chunk_by(|a, b| a.1.spec.oaid == b.1.spec.oaid) {
        for (i, (_, earlier)) in packages.iter().enumerate() {
            // Sorted by start: the later ones that overlap come first.
            for (later_key, later) in packages[i + 1..]
                .iter()
                .take_while(|(_, p)| earlier.spec.overlaps(&p.spec))
            {
                let (a, b) = (&earlier.spec, &later.spec);
                let diagnostic = if a.tier == b.tier {
                    let message = format!(
                        "OA {} has two {} packages whose periods overlap: {} to {} and {} to {}; \
                         start the later one on {} or shorten the earlier one",
                        a.oaid,
                        a.tier,
                        a.start,
                        show_end(a.end()),
                        b.start,
                        show_end(b.end()),
                        show_end(a.end().and_then(|end| end.tomorrow().ok())),
                    );
                    Diagnostic::with_related(
                        &later.source,
                        message,
                        &earlier.source,
                        "the other package".to_owned(),
                    )
                } else {
                    let message = format!(
                        "OA {}: {} package from {} overlaps the {} package {} to {} \
                         (an upgrade or downgrade mid-period; both are bought)",
                        a.oaid,
                        b.tier,
                        b.start,
                        a.tier,
                        a.start,
                        show_end(a.end()),
                    );
                    Diagnostic::with_related(
                        &later.source,
                        message,
                        &earlier.source,
                        "the other package".to_owned(),
                    )
                };
                let diagnostic = diagnostic.about(later_key.clone());
                if a.tier == b.tier {
                    errors.push(diagnostic);
                } else {
                    warnings.push(diagnostic);
                }
            }
        }
    }
    // Built in bulk from sorted input.
    let by_key: BTreeMap<Key, Package> = unique.into_iter().collect();
    (by_key, errors, warnings)
}

/// The error for a package or policy whose period would end after
/// 9999-12-31, the last date oapkg can write.
pub(super) fn past_the_calendar(what: &str, start: jiff::civil::Date, months: u8) -> String {
    format!(
        "{what} starting {start} for {months} month(s) would end after 9999-12-31, the last date oapkg can record; \
         expected a period that ends by 9999-12-31 (start earlier or shorten it)"
    )
}

/// The YAML parser's settings for manifests.
fn options(text: &str) -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // Repeated keys reach our visitors, which report both places.
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    // `oaid: 0123` stays "0123" instead of becoming 123.
    options.leading_zero_numbers_as_strings = true;
    // YAML 1.2 booleans only: `name: yes` is the text "yes".
    options.strict_booleans = true;
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    options.with_snippet = false;
    if let Some(budget) = options.budget.as_mut() {
        // The default budget is sized for configuration files; a large
        // manifest has ~12 events and ~11 nodes per package. Events, nodes,
        // scalar bytes and documents cannot outnumber input bytes, so tying
        // these limits to the file's size still bounds the work by it, while
        // the depth limit and the alias limits keep bombs out.
        let size = text.len().saturating_add(1024);
        budget.max_events = budget.max_events.max(size);
        budget.max_nodes = budget.max_nodes.max(size);
        budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(size);
        budget.max_documents = budget.max_documents.max(size / 16);
    }
    options
}

/// The file's documents: read by the fast reader when the file is in the
/// plain block style it knows, else by serde-saphyr. Both give the same
/// documents with the same locations (a property test holds them to it), so
/// which one read a file shows only in the time taken; every YAML error is
/// serde-saphyr's.
fn parse_documents(text: &str) -> Result<Vec<Spanned<RawDocument>>, serde_saphyr::Error> {
    match super::fast::parse(text) {
        Some(documents) => Ok(documents),
        None => parse_positioned(text),
    }
}

/// The file's documents as serde-saphyr reads them: any YAML, every error
/// with its place. Public for the property test that compares it with the
/// fast reader.
#[doc(hidden)]
pub fn parse_positioned(text: &str) -> Result<Vec<Spanned<RawDocument>>, serde_saphyr::Error> {
    serde_saphyr::from_multiple_with_options(text, options(text))
}

fn yaml_message(error: &serde_saphyr::Error) -> String {
    let message = error.without_snippet().to_string();
    // The location is printed by the diagnostic itself.
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    }
}

fn is_ours(document: &RawDocument) -> bool {
    matches!(&document.api_version, Some(f) if matches!(&f.value, Scalar::Text(t) if t == API_VERSION))
}

struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    today: Date,
    out: FileOutcome,
}

/// `tier` and `duration` after applying `defaults`.
#[derive(Default)]
struct Defaults {
    tier: Option<Tier>,
    duration: Option<u8>,
}

impl Checker<'_> {
    fn error(&mut self, at: Location, message: String) {
        self.out.errors.push(Diagnostic::at(self.file, at, message));
    }

    fn key_problems(&mut self, problems: &[KeyProblem], what: &str) {
        for problem in problems {
            match problem {
                KeyProblem::Unknown { key, at, expected } => {
                    let hint = closest(key, expected)
                        .map(|k| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default();
                    self.error(
                        *at,
                        format!(
                            "unknown field `{key}` in {what}{hint}; expected one of: {}",
                            expected.join(", ")
                        ),
                    );
                }
                KeyProblem::Duplicate { key, at, first } => {
                    let first = format!("{}:{}:{}", self.file, first.line(), first.column());
                    self.error(
                        *at,
                        format!(
                            "field `{key}` is set twice in one {what} (first at {first}); keep one"
                        ),
                    );
                }
            }
        }
    }

    fn document(&mut self, document: &Spanned<RawDocument>) {
        let doc = &document.value;
        let at = document.referenced;
        self.key_problems(&doc.problems, "the document");
        match &doc.api_version {
            None => self.error(at, format!("missing `apiVersion: {API_VERSION}`")),
            Some(f) if !matches!(&f.value, Scalar::Text(t) if t == API_VERSION) => self.error(
                f.referenced,
                format!(
                    "unsupported apiVersion {}; expected `{API_VERSION}`",
                    f.value.describe()
                ),
            ),
            Some(_) => {}
        }
        let kind = match &doc.kind {
            None => {
                self.error(at, format!("missing `kind: {KIND}`"));
                KIND
            }
            Some(f) => match &f.value {
                Scalar::Text(t) if t == KIND => KIND,
                Scalar::Text(t) if t == KIND_PRICES => KIND_PRICES,
                Scalar::Text(t) if t == KIND_POLICIES => KIND_POLICIES,
                other => {
                    self.error(
                        f.referenced,
                        format!(
                            "unsupported kind {}; expected `{KIND}`, `{KIND_PRICES}` or `{KIND_POLICIES}`",
                            other.describe()
                        ),
                    );
                    return;
                }
            },
        };
        self.fields_of_other_kinds(doc, kind);
        match kind {
            KIND_PRICES => return self.price_list(doc, at),
            KIND_POLICIES => return self.policy_list(doc, at),
            _ => {}
        }
        let defaults = match &doc.defaults {
            Some(d) => self.defaults(&d.value),
            None => Defaults::default(),
        };
        match &doc.packages {
            None => self.error(at, "missing `packages:` (a list of packages)".to_owned()),
            Some(list) => match &list.value {
                PackageList::NotAList(found) => self.error(
                    list.referenced,
                    format!(
                        "`packages` must be a list of packages, found {}",
                        found.describe()
                    ),
                ),
                PackageList::Entries(entries) => {
                    for entry in entries {
                        match &entry.value {
                            PackageEntry::Package(raw) => {
                                if let Some(package) = self.package(raw, entry.referenced, &defaults) {
                                    self.out.packages.push(package);
                                }
                            }
                            PackageEntry::NotAMapping(found) => self.error(
                                entry.referenced,
                                format!(
                                    "each entry of `packages` must be a mapping (oaid, tier, start, duration), found {}",
                                    found.describe()
                                ),
                            ),
                        }
                    }
                }
            },
        }
    }

    /// A field of one kind written in a document of another.
    fn fields_of_other_kinds(&mut self, doc: &RawDocument, kind: &str) {
        let mut wrong: Vec<(&str, Location, &str)> = Vec::new();
        if kind != KIND {
            if let Some(d) = &doc.defaults {
                wrong.push(("defaults", d.referenced, KIND));
            }
            if let Some(p) = &doc.packages {
                wrong.push(("packages", p.referenced, KIND));
            }
        }
        if kind != KIND_PRICES {
            if let Some(c) = &doc.currency {
                wrong.push(("currency", c.referenced, KIND_PRICES));
            }
            if let Some(m) = &doc.monthly {
                wrong.push(("monthly", m.referenced, KIND_PRICES));
            }
        }
        if kind != KIND_POLICIES
            && let Some(p) = &doc.policies
        {
            wrong.push(("policies", p.referenced, KIND_POLICIES));
        }
        for (field, at, belongs) in wrong {
            self.error(
                at,
                format!("`{field}` belongs to a `kind: {belongs}` document, not `kind: {kind}`; move it to a document of its own"),
            );
        }
    }

    fn defaults(&mut self, raw: &RawDefaults) -> Defaults {
        self.key_problems(&raw.problems, "`defaults`");
        Defaults {
            tier: raw.tier.as_ref().and_then(|f| self.tier(f)),
            duration: raw.duration.as_ref().and_then(|f| self.duration(f)),
        }
    }

    fn package(&mut self, raw: &RawPackage, at: Location, defaults: &Defaults) -> Option<Package> {
        let errors_before = self.out.errors.len();
        self.key_problems(&raw.problems, "a package");
        let oaid = match &raw.oaid {
            Some(f) => self.oaid(f),
            None => {
                self.error(
                    at,
                    "package has no `oaid` (the OA's id, 1–19 digits)".to_owned(),
                );
                None
            }
        };
        let start = match &raw.start {
            Some(f) => self.start(f),
            None => {
                self.error(
                    at,
                    "package has no `start` (its first day, YYYY-MM-DD)".to_owned(),
                );
                None
            }
        };
        let tier = match &raw.tier {
            Some(f) => self.tier(f),
            None if defaults.tier.is_some() => defaults.tier,
            None => {
                self.error(at, "package has no `tier` and its document sets no `defaults.tier`; expected trial, advanced or premium".to_owned());
                None
            }
        };
        let duration = match &raw.duration {
            Some(f) => self.duration(f),
            None if defaults.duration.is_some() => defaults.duration,
            None => {
                self.error(at, format!("package has no `duration` and its document sets no `defaults.duration`; expected whole months, 1 to {MAX_DURATION_MONTHS}"));
                None
            }
        };
        let name = raw.name.as_ref().and_then(|f| self.name(f));
        if self.out.errors.len() != errors_before {
            return None;
        }
        let spec = Spec {
            oaid: oaid?,
            tier: tier?,
            start: start?,
            duration_months: duration?,
        };
        if spec.end().is_none() {
            // Never a saturated end date (an end before the start, no
            // overlap guard): the period must fit the calendar.
            let at = raw.start.as_ref().map_or(at, |f| f.referenced);
            self.error(
                at,
                past_the_calendar("package", spec.start, spec.duration_months),
            );
            return None;
        }
        let source = super::source_at(self.file, at);
        if spec.start < self.today {
            let at = raw.start.as_ref().map_or(at, |f| f.referenced);
            let message = format!(
                "package {} starts on {}, before today ({}); eSMS may refuse a start date in the past",
                spec.key(),
                spec.start,
                self.today
            );
            self.out.warnings.push(
                Diagnostic::at(self.file, at, message)
                    .about(spec.key())
                    .of_kind(DiagnosticKind::StartsBeforeToday),
            );
        }
        Some(Package { spec, name, source })
    }

    /// The token as written in the file, for plain (unquoted) numbers whose
    /// parsed value may hide the spelling (`0x1F`, `1e3`, 20 digits).
    fn written(&self, at: Location) -> Option<&str> {
        self.text.get(at.bytes()?)
    }

    fn oaid(&mut self, field: &Field) -> Option<Oaid> {
        const EXPECTED: &str = "an OAID is 1 to 19 digits, e.g. \"4097311281936189049\"";
        let text = match &field.value {
            Scalar::Text(text) => text.clone(),
            Scalar::Unsigned(_) | Scalar::BigInteger(_) => self
                .written(field.referenced)
                .unwrap_or_default()
                .to_owned(),
            Scalar::Float(_) => {
                let written = self
                    .written(field.referenced)
                    .unwrap_or_default()
                    .to_owned();
                if !written.is_empty() && written.bytes().all(|b| b.is_ascii_digit()) {
                    written
                } else {
                    self.error(field.referenced, format!("bad OAID: found {} (a YAML float is never rounded into an id); {EXPECTED}", describe_written(&field.value, &written)));
                    return None;
                }
            }
            other => {
                self.error(
                    field.referenced,
                    format!("bad OAID: found {}; {EXPECTED}", other.describe()),
                );
                return None;
            }
        };
        match Oaid::parse_declared(&text) {
            Ok(oaid) => Some(oaid),
            Err(error) => {
                let found = match error {
                    OaidError::TooLong(n) if n > 40 => format!("a {n}-digit number"),
                    OaidError::Empty => "an empty text".to_owned(),
                    _ => format!("{text:?}"),
                };
                self.error(
                    field.referenced,
                    format!("bad OAID: found {found}: {error}; {EXPECTED}"),
                );
                None
            }
        }
    }

    fn tier(&mut self, field: &Field) -> Option<Tier> {
        let tier = match &field.value {
            Scalar::Text(text) => Tier::from_name(text),
            Scalar::Unsigned(n) => Tier::from_number(*n),
            _ => None,
        };
        if tier.is_none() {
            self.error(
                field.referenced,
                format!("unknown tier: found {}; expected trial, advanced or premium (any case), or 1, 2 or 3", field.value.describe()),
            );
        }
        tier
    }

    fn duration(&mut self, field: &Field) -> Option<u8> {
        let months = match &field.value {
            Scalar::Unsigned(n) => Some(*n),
            Scalar::Text(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
                text.parse().ok()
            }
            _ => None,
        };
        match months.and_then(|m| u8::try_from(m).ok()) {
            Some(m @ 1..=MAX_DURATION_MONTHS) => Some(m),
            _ => {
                self.error(
                    field.referenced,
                    format!("duration out of range: found {}; expected whole months, 1 to {MAX_DURATION_MONTHS}", field.value.describe()),
                );
                None
            }
        }
    }

    fn start(&mut self, field: &Field) -> Option<Date> {
        let date = match &field.value {
            Scalar::Text(text) => spec::parse_date(text),
            _ => None,
        };
        if date.is_none() {
            self.error(
                field.referenced,
                format!(
                    "bad date: found {}; expected a calendar date as YYYY-MM-DD, e.g. 2026-12-01",
                    field.value.describe()
                ),
            );
        }
        date
    }

    fn name(&mut self, field: &Field) -> Option<String> {
        match &field.value {
            Scalar::Text(text) => Some(text.clone()),
            Scalar::Null => None,
            Scalar::Unsigned(_)
            | Scalar::Negative(_)
            | Scalar::Float(_)
            | Scalar::BigInteger(_)
            | Scalar::Bool(_) => self.written(field.referenced).map(str::to_owned),
            Scalar::Collection(_) => {
                self.error(
                    field.referenced,
                    format!(
                        "`name` must be a text label, found {}",
                        field.value.describe()
                    ),
                );
                None
            }
        }
    }
}

fn describe_written(value: &Scalar, written: &str) -> String {
    if written.is_empty() || written.len() > 40 {
        value.describe()
    } else {
        format!("`{written}`")
    }
}

/// The known field nearest to a misspelt one, if any is close.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}
