//! The domain vocabulary (README "Concepts"): [`Oaid`], [`Tier`], [`Spec`], [`Key`],
//! [`SpecHash`] and the date arithmetic that gives a package its end date.
//!
//! Everything here is pure: no clock, no files, no environment. A [`Spec`] is
//! the part of a package that decides what is bought (oaid, tier, start,
//! duration); labels such as `name` live beside it, never inside it, so they can
//! change without a purchase.

use std::fmt;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest duration one package may have, in months (1..=36).
pub const MAX_DURATION_MONTHS: u8 = 36;
/// Longest OAID, in digits (1–19 digits).
pub const MAX_OAID_DIGITS: usize = 19;

/// A Zalo Official Account id: 1 to 19 ASCII digits, kept exactly as written.
///
/// It is a string, not an integer, because it is an identifier: it is sent to
/// eSMS as a string and must never be rounded through a float.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Oaid(String);

/// Why a text is not an [`Oaid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OaidError {
    #[error("an OAID must not be empty")]
    Empty,
    #[error("an OAID has at most {MAX_OAID_DIGITS} digits, this one has {0}")]
    TooLong(usize),
    #[error("an OAID holds digits only (0-9)")]
    NotDigits,
    #[error(
        "Zalo OA ids never start with 0 (eSMS may take 0123 and 123 for the same OA); copy the OAID from the eSMS portal"
    )]
    LeadingZero,
}

impl Oaid {
    pub fn parse(text: &str) -> Result<Self, OaidError> {
        if text.is_empty() {
            return Err(OaidError::Empty);
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OaidError::NotDigits);
        }
        if text.len() > MAX_OAID_DIGITS {
            return Err(OaidError::TooLong(text.len()));
        }
        Ok(Oaid(text.to_owned()))
    }

    /// An OAID being declared (in a manifest, or by `state import --oaid`):
    /// [`Oaid::parse`], and no leading zero. Recorded OAIDs (state files,
    /// journals, saved plans, keys naming them) are read with
    /// [`Oaid::parse`], so a state written before this rule still loads and
    /// its package can be seen and removed; no manifest can declare it.
    pub fn parse_declared(text: &str) -> Result<Self, OaidError> {
        let oaid = Oaid::parse(text)?;
        if text.starts_with('0') {
            return Err(OaidError::LeadingZero);
        }
        Ok(oaid)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Oaid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Oaid {
    type Error = OaidError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Oaid::parse(&text)
    }
}

impl From<Oaid> for String {
    fn from(oaid: Oaid) -> String {
        oaid.0
    }
}

/// The package tier, with the number eSMS uses for it in `Package`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[schemars(description = "The package tier.")]
pub enum Tier {
    Trial,
    Advanced,
    Premium,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Trial, Tier::Advanced, Tier::Premium];

    /// The name used in manifests, plans and state.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Trial => "trial",
            Tier::Advanced => "advanced",
            Tier::Premium => "premium",
        }
    }

    /// The number eSMS expects in the `Package` field.
    pub fn api_number(self) -> u8 {
        match self {
            Tier::Trial => 1,
            Tier::Advanced => 2,
            Tier::Premium => 3,
        }
    }

    /// A tier by name in any case (`Premium`, `PREMIUM`) or by its number as text.
    pub fn from_name(text: &str) -> Option<Tier> {
        let text = text.trim();
        Tier::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(text) || t.api_number().to_string() == text)
    }

    pub fn from_number(n: u64) -> Option<Tier> {
        Tier::ALL
            .into_iter()
            .find(|t| u64::from(t.api_number()) == n)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A package's identity, `OAID@START` (e.g. `4097311281936189049@2026-12-01`).
///
/// Ordered as its text, so "sorted by key" means the same thing everywhere:
/// in the plan, in the state file and to `jq 'sort_by(.key)'`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key(String);

/// Why a text is not a [`Key`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a package key: expected OAID@YYYY-MM-DD, e.g. 4097311281936189049@2026-12-01"
)]
pub struct KeyError(String);

impl Key {
    pub fn new(oaid: &Oaid, start: Date) -> Key {
        Key(format!("{oaid}@{start}"))
    }

    pub fn parse(text: &str) -> Result<Key, KeyError> {
        let (oaid, start) = Key::parse_parts(text)?;
        Ok(Key::new(&oaid, start))
    }

    /// The OAID and start date a key's text names (what [`Key::parse`]
    /// checks), for callers that need the parts themselves.
    pub fn parse_parts(text: &str) -> Result<(Oaid, Date), KeyError> {
        let bad = || KeyError(text.to_owned());
        let (oaid, start) = text.split_once('@').ok_or_else(bad)?;
        let oaid = Oaid::parse(oaid).map_err(|_| bad())?;
        let start = parse_date(start).ok_or_else(bad)?;
        Ok((oaid, start))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The OAID part of the key.
    pub fn oaid(&self) -> &str {
        self.0.split_once('@').map_or(&self.0, |(oaid, _)| oaid)
    }

    /// Whether this is `spec`'s key: `spec.key() == *self`, without
    /// building the text when the date is written `YYYY-MM-DD` (checking a
    /// large state's records does this once per record).
    pub fn is_for(&self, spec: &Spec) -> bool {
        spells(&self.0, &spec.oaid, spec.start)
    }
}

/// Whether `text` is `OAID@START` exactly as [`Key::new`] writes it, without
/// writing it when the date is `YYYY-MM-DD`.
fn spells(text: &str, oaid: &Oaid, start: Date) -> bool {
    let Some((text_oaid, text_start)) = text.split_once('@') else {
        return false;
    };
    let digits = |text: &[u8]| {
        text.iter().try_fold(0_i16, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i16::from(d - b'0'))
        })
    };
    match text_start.as_bytes() {
        [year @ .., b'-', m0, m1, b'-', d0, d1] if year.len() == 4 => {
            text_oaid == oaid.as_str()
                && digits(year) == Some(start.year())
                && digits(&[*m0, *m1]) == Some(i16::from(start.month()))
                && digits(&[*d0, *d1]) == Some(i16::from(start.day()))
        }
        _ => text == Key::new(oaid, start).0,
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Key {
    type Error = KeyError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        let (oaid, start) = Key::parse_parts(&text)?;
        // Kept as read when already written the way `Key::new` writes it
        // (a state file's keys are): one text fewer per key read.
        Ok(if spells(&text, &oaid, start) {
            Key(text)
        } else {
            Key::new(&oaid, start)
        })
    }
}

impl From<Key> for String {
    fn from(key: Key) -> String {
        key.0
    }
}

/// A calendar date written strictly as `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    text.parse::<Date>().ok()
}

/// The fields that decide what is bought. Two packages with the same `Spec`
/// are the same purchase; `name` and comments are not part of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub oaid: Oaid,
    pub tier: Tier,
    pub start: Date,
    pub duration_months: u8,
}

impl Spec {
    pub fn key(&self) -> Key {
        Key::new(&self.oaid, self.start)
    }

    /// The last day the package covers: the day before `start + duration`
    /// months, where adding months clamps to the end of a shorter month
    /// (2027-01-31 + 1 month = 2027-02-28, so it ends 2027-02-27). `None`
    /// when that day would be after 9999-12-31, the calendar's end (or the
    /// duration is 0): a validation error for a manifest, a refused record
    /// in a state, never a saturated date ([`end_date`]).
    pub fn end(&self) -> Option<Date> {
        end_date(self.start, self.duration_months)
    }

    /// Whether the package's period is over before `day`. A period with no
    /// end on the calendar never is.
    pub fn ended_before(&self, day: Date) -> bool {
        self.end().is_some_and(|end| end < day)
    }

    /// Whether the two periods share a day. A period with no end on the
    /// calendar runs to its end.
    pub fn overlaps(&self, other: &Spec) -> bool {
        let covers =
            |spec: &Spec, day: Date| spec.start <= day && spec.end().is_none_or(|end| day <= end);
        covers(self, other.start) || covers(other, self.start)
    }

    /// The canonical encoding hashed into the [`SpecHash`].
    ///
    /// One `name=value` line per field in a fixed order, behind a version tag.
    /// No field can contain a newline (digits, a tier name, an ISO date, a
    /// number), so two different specs never share an encoding.
    pub fn canonical_encoding(&self) -> String {
        format!(
            "oapkg-spec/v1\noaid={}\ntier={}\nstart={}\nduration_months={}\n",
            self.oaid, self.tier, self.start, self.duration_months
        )
    }

    pub fn hash(&self) -> SpecHash {
        SpecHash(sha256_tagged(self.canonical_encoding().as_bytes()))
    }
}

/// The last day covered by a package starting on `start` for `months`
/// months; `None` when `months` is 0 or that day would be after 9999-12-31
/// (the last date oapkg can write). Exact: never saturated, never before
/// `start`.
pub fn end_date(start: Date, months: u8) -> Option<Date> {
    if months == 0 {
        return None;
    }
    // Always add the whole duration to the original start date: adding one
    // month twice is not adding two months (Jan 31 -> Feb 28 -> Mar 28).
    match start.checked_add(jiff::Span::new().months(i64::from(months))) {
        Ok(after) => after.yesterday().ok(),
        // `start + months` is past 9999-12-31. The end is the day before
        // it, which is still on the calendar only when that date is
        // 10000-01-01 exactly: a start on the 1st of a month whose months
        // end with December 9999.
        Err(_) => {
            let month_index = i32::from(start.year()) * 12 + i32::from(start.month()) - 1;
            let last = 9999 * 12 + 11;
            (start.day() == 1 && month_index + i32::from(months) == last + 1)
                .then_some(CALENDAR_END)
        }
    }
}

/// The calendar's last day, 9999-12-31: the last date oapkg can write.
pub const CALENDAR_END: Date = jiff::civil::date(9999, 12, 31);

/// An end date as people read it: the date, or `after 9999-12-31` for a
/// period that runs past the calendar ([`Spec::end`] is `None`; every
/// input refuses such a package, so this is only ever a safe rendering).
pub fn show_end(end: Option<Date>) -> String {
    match end {
        Some(end) => end.to_string(),
        None => "after 9999-12-31".to_owned(),
    }
}

/// `sha256:<hex>` of a spec's canonical encoding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpecHash(String);

impl SpecHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `spec`'s hash: `spec.hash() == *self`, without
    /// building its text.
    pub fn is_of(&self, spec: &Spec) -> bool {
        let digest = Sha256::digest(spec.canonical_encoding().as_bytes());
        let mut hex = [0_u8; 64];
        hex::encode_to_slice(digest, &mut hex).expect("32 bytes are 64 hex digits");
        self.0.strip_prefix("sha256:").map(str::as_bytes) == Some(&hex[..])
    }
}

impl fmt::Display for SpecHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SpecHash {
    /// `sha256:5f2b1c0e9d8a…`, for messages ([`short_hash`]).
    pub fn short(&self) -> String {
        short_hash(&self.0)
    }
}

/// `sha256:<hex>` of the manifests' content: every declared key with its
/// spec and name ([`crate::manifest::DesiredSet::hash`]). A plan records the
/// one it was made from; a saved plan whose manifests hash otherwise now is
/// stale.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ManifestHash(String);

impl ManifestHash {
    /// A hash as [`sha256_tagged`] wrote it.
    pub fn from_tagged(hash: String) -> ManifestHash {
        ManifestHash(hash)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sha256:5f2b1c0e9d8a…`, for messages ([`short_hash`]).
    pub fn short(&self) -> String {
        short_hash(&self.0)
    }
}

impl fmt::Display for ManifestHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for ManifestHash {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// `sha256:5f2b1c0e9d8a…`: enough of a hash (spec hash, manifest hash,
/// state checksum) to tell two apart in a message. The one shortener.
pub fn short_hash(hash: &str) -> String {
    const SHOWN: usize = "sha256:".len() + 12;
    if hash.chars().count() > SHOWN {
        format!("{}…", hash.chars().take(SHOWN).collect::<String>())
    } else {
        hash.to_owned()
    }
}

/// `a, b, c and 4 more`: at most ten keys (or other names) listed, in the
/// order given, then how many more there are. The one way oapkg lists keys
/// in a message.
pub fn key_list<T: fmt::Display>(keys: &[T]) -> String {
    const SHOWN: usize = 10;
    let mut out = keys
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > SHOWN {
        out.push_str(&format!(" and {} more", keys.len() - SHOWN));
    }
    out
}

/// `sha256:` followed by the lowercase hex SHA-256 of `bytes`: the one hash
/// format used by spec hashes, manifest hashes and state checksums.
pub fn sha256_tagged(bytes: &[u8]) -> String {
    Sha256Writer::default().tagged_of(bytes)
}

/// [`sha256_tagged`] of everything written into it, for content too large
/// to encode into memory first (the state's checksum).
#[derive(Default)]
pub struct Sha256Writer(Sha256);

impl Sha256Writer {
    /// The `sha256:<hex>` of what was written.
    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.0.finalize()))
    }

    fn tagged_of(mut self, bytes: &[u8]) -> String {
        self.0.update(bytes);
        self.finish()
    }
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where something was written: a file (as given on the command line, or
/// found under a directory given there), a 1-based line and column.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Source {
    pub file: String,
    pub line: u32,
    #[serde(default)]
    pub column: u32,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.file),
            (line, 0) => write!(f, "{}:{line}", self.file),
            (line, column) => write!(f, "{}:{line}:{column}", self.file),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn any_spec() -> impl Strategy<Value = Spec> {
        (
            "0?[1-9][0-9]{0,3}",
            prop::sample::select(vec![Tier::Trial, Tier::Advanced, Tier::Premium]),
            prop_oneof![-9999_i16..=-1, 0_i16..=9999, Just(9999_i16)],
            1_i8..=12,
            1_i8..=28,
            1_u8..=36,
        )
            .prop_map(|(oaid, tier, year, month, day, duration_months)| Spec {
                oaid: Oaid::parse(&oaid).unwrap(),
                tier,
                start: date(year, month, day),
                duration_months,
            })
    }

    proptest! {
        /// The checks of a large state's records answer as comparing the
        /// texts would, for matching and for neighbouring specs.
        #[test]
        fn key_and_hash_checks_agree_with_the_texts(a in any_spec(), b in any_spec(), same in any::<bool>()) {
            let b = if same { a.clone() } else { b };
            let (key, hash) = (a.key(), a.hash());
            prop_assert_eq!(key.is_for(&b), key == b.key());
            prop_assert_eq!(hash.is_of(&b), hash == b.hash());
            prop_assert!(key.is_for(&a) && hash.is_of(&a));
            let text = key.as_str().to_owned();
            prop_assert_eq!(Key::try_from(text.clone()), Key::parse(&text));
        }

        /// A key read from text is the key `Key::parse` makes of it.
        #[test]
        fn a_key_read_as_written_is_the_parsed_key(text in "[0-9+ -]{0,4}@?[0-9+-]{1,5}-[0-9]{1,2}-[0-9]{1,3}") {
            prop_assert_eq!(Key::try_from(text.clone()), Key::parse(&text));
        }
    }

    #[test]
    fn a_declared_oaid_has_no_leading_zero_a_recorded_one_still_reads() {
        assert_eq!(Oaid::parse_declared("0123"), Err(OaidError::LeadingZero));
        assert_eq!(Oaid::parse_declared("0"), Err(OaidError::LeadingZero));
        assert_eq!(Oaid::parse_declared("123").unwrap().as_str(), "123");
        // State files, journals and plans written before the rule load.
        let recorded: Oaid = serde_json::from_str("\"0123\"").unwrap();
        assert_eq!(recorded.as_str(), "0123");
        assert!(Key::parse("0123@2026-12-01").is_ok());
    }

    fn spec(start: Date, months: u8) -> Spec {
        Spec {
            oaid: Oaid::parse("4097311281936189049").unwrap(),
            tier: Tier::Premium,
            start,
            duration_months: months,
        }
    }

    /// Reference: the end date by counting months by hand (no library date
    /// arithmetic past the month), `None` past 9999-12-31.
    fn end_by_hand(start: Date, months: u8) -> Option<Date> {
        if months == 0 {
            return None;
        }
        let index = i32::from(start.year()) * 12 + i32::from(start.month()) - 1 + i32::from(months);
        let (year, month) = (index.div_euclid(12), index.rem_euclid(12) + 1);
        if year > 9999 {
            // 10000-01-01 less a day is the calendar's last day.
            return (year == 10000 && month == 1 && start.day() == 1).then(|| date(9999, 12, 31));
        }
        let (year, month) = (i16::try_from(year).ok()?, i8::try_from(month).ok()?);
        let last_day = Date::new(year, month, 1).ok()?.days_in_month();
        Date::new(year, month, start.day().min(last_day))
            .ok()?
            .yesterday()
            .ok()
    }

    proptest! {
        /// Near the calendar's end: never a panic, never an end before the
        /// start, an end exactly where it is on the calendar and none past
        /// it (never a saturated 9999-12-31 or 9999-12-30).
        #[test]
        fn end_dates_near_the_calendar_end_are_exact_or_none(
            year in 9990i16..=9999,
            month in 1i8..=12,
            day in 1i8..=31,
            months in 0u8..=255,
        ) {
            prop_assume!(Date::new(year, month, day).is_ok());
            let start = date(year, month, day);
            let end = end_date(start, months);
            prop_assert_eq!(end, end_by_hand(start, months), "{} + {} months", start, months);
            if let Some(end) = end {
                prop_assert!(end >= start, "{end} before {start}");
                prop_assert!(months > 0);
            }
            let spec = spec(start, months);
            // A spec with no end never counts as ended and overlaps every
            // later start of its OA: the overlap guard still holds.
            prop_assert!(!spec.ended_before(date(9999, 12, 31)) || end.is_some());
            prop_assert!(spec.overlaps(&spec) || months == 0);
            prop_assert!(spec.overlaps(&self::spec(date(9999, 12, 31), 1)) || end.is_some_and(|e| e < date(9999, 12, 31)));
        }

        /// Anywhere on the calendar, for the durations a manifest allows.
        #[test]
        fn end_dates_anywhere_match_counting_by_hand(
            year in 0i16..=9999,
            month in 1i8..=12,
            day in 1i8..=31,
            months in 1u8..=MAX_DURATION_MONTHS,
        ) {
            prop_assume!(Date::new(year, month, day).is_ok());
            let start = date(year, month, day);
            let end = end_date(start, months);
            prop_assert_eq!(end, end_by_hand(start, months));
            prop_assert!(end.is_none_or(|end| end >= start));
        }
    }

    #[test]
    fn the_calendar_end_is_exact_never_saturated() {
        // Ends on the last day exactly.
        assert_eq!(end_date(date(9999, 1, 1), 12), Some(date(9999, 12, 31)));
        assert_eq!(end_date(date(9999, 12, 1), 1), Some(date(9999, 12, 31)));
        assert_eq!(end_date(date(9997, 1, 1), 36), Some(date(9999, 12, 31)));
        // One day more is past it: no end, not 9999-12-30 or -31.
        assert_eq!(end_date(date(9999, 1, 2), 12), None);
        assert_eq!(end_date(date(9999, 12, 31), 1), None);
        assert_eq!(end_date(date(9999, 6, 1), 12), None);
        assert_eq!(end_date(date(2026, 1, 1), 0), None);
        assert_eq!(show_end(None), "after 9999-12-31");
        let late = spec(date(9999, 12, 31), 1);
        assert!(!late.ended_before(date(9999, 12, 31)));
        assert!(late.overlaps(&spec(date(9999, 11, 1), 3)));
        assert!(!spec(date(9999, 1, 1), 1).overlaps(&late));
    }

    #[test]
    fn end_dates_follow_the_esms_rule() {
        assert_eq!(spec(date(2026, 12, 1), 12).end(), Some(date(2027, 11, 30)));
        assert_eq!(spec(date(2027, 1, 31), 1).end(), Some(date(2027, 2, 27)));
        // Leap year: Jan 31 + 1 month clamps to Feb 29.
        assert_eq!(spec(date(2028, 1, 31), 1).end(), Some(date(2028, 2, 28)));
        assert_eq!(spec(date(2028, 2, 29), 12).end(), Some(date(2029, 2, 27)));
        assert_eq!(
            spec(date(2028, 2, 29), 48 / 2).end(),
            Some(date(2030, 2, 27))
        );
        // Whole duration from the original start, not month by month.
        assert_eq!(spec(date(2027, 1, 31), 2).end(), Some(date(2027, 3, 30)));
        assert_eq!(spec(date(2026, 12, 31), 36).end(), Some(date(2029, 12, 30)));
    }

    #[test]
    fn keys_parse_and_print_round_trip() {
        let key = Key::parse("4097311281936189049@2026-12-01").unwrap();
        assert_eq!(key.as_str(), "4097311281936189049@2026-12-01");
        assert_eq!(key.oaid(), "4097311281936189049");
        for bad in [
            "",
            "@",
            "12@2026-1-01",
            "x@2026-12-01",
            "12@2026-02-30",
            "12",
        ] {
            assert!(Key::parse(bad).is_err(), "{bad} must not parse");
        }
    }

    #[test]
    fn oaids_are_digits_only_and_at_most_19() {
        assert!(Oaid::parse("1").is_ok());
        assert!(Oaid::parse("9999999999999999999").is_ok());
        assert_eq!(
            Oaid::parse("99999999999999999999"),
            Err(OaidError::TooLong(20))
        );
        assert_eq!(Oaid::parse("-1"), Err(OaidError::NotDigits));
        assert_eq!(Oaid::parse("1.5"), Err(OaidError::NotDigits));
        assert_eq!(Oaid::parse(""), Err(OaidError::Empty));
    }

    #[test]
    fn tiers_by_name_in_any_case_or_number() {
        assert_eq!(Tier::from_name("PREMIUM"), Some(Tier::Premium));
        assert_eq!(Tier::from_name("Advanced"), Some(Tier::Advanced));
        assert_eq!(Tier::from_name("1"), Some(Tier::Trial));
        assert_eq!(Tier::from_name("gold"), None);
        assert_eq!(Tier::from_number(3), Some(Tier::Premium));
        assert_eq!(Tier::from_number(4), None);
    }

    #[test]
    fn spec_hash_changes_with_every_field_and_only_those() {
        let base = spec(date(2026, 12, 1), 12);
        let mut variants = vec![base.clone()];
        let mut v = base.clone();
        v.tier = Tier::Advanced;
        variants.push(v);
        let mut v = base.clone();
        v.duration_months = 6;
        variants.push(v);
        let mut v = base.clone();
        v.start = date(2026, 12, 2);
        variants.push(v);
        let mut v = base.clone();
        v.oaid = Oaid::parse("745830328927467685").unwrap();
        variants.push(v);
        let hashes: std::collections::BTreeSet<_> = variants.iter().map(Spec::hash).collect();
        assert_eq!(hashes.len(), variants.len());
        assert_eq!(base.hash(), base.clone().hash());
        assert!(base.hash().as_str().starts_with("sha256:"));
        assert_eq!(base.hash().as_str().len(), "sha256:".len() + 64);
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(parse_date("2026-12-01"), Some(date(2026, 12, 1)));
        for bad in [
            "2026-2-01",
            "2026-02-30",
            "26-12-01",
            "2026/12/01",
            "2026-12-01 ",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
