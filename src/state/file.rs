//! The state file's bytes: how a [`State`](super::State) is encoded, how its
//! checksum is computed, and every check that makes [`decode`] refuse a file.
//!
//! Pure: bytes in, values out. Reading, writing and locking are
//! [`store`](super::store)'s job.
//!
//! The format, field by field, with the checksum's definition and the
//! rules that keep old files' bytes, is `docs/state-format.md` in the
//! repository; this module is its one implementation. In short: pretty JSON,
//! top-level fields in a fixed order (`format_version`, `lineage`,
//! `serial`, `checksum`, `packages`, then `failed_attempts` when not empty),
//! records in [`Record`]'s field order with `null` for absent values except
//! fields added later (`confirmed`), which are written only when present;
//! the checksum is [`sha256_tagged`](crate::spec::sha256_tagged) of the compact content without it;
//! unknown fields and repeated keys are refused.
//!
//! A file in this canonical encoding is decoded as it is read ([`stream`]):
//! the checksum is computed over the file's own bytes ([`canonical`]) and
//! each record is parsed from its own, so a large file's bytes are never
//! all in memory. Any other file (hand-edited, or refused) is read whole
//! and parsed at once ([`decode_whole`]), its checksum computed by
//! re-encoding the content; both ways accept the same files with the same
//! content, and every refusal comes from the whole parse.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;

use super::{FailedAttempt, FailedAttempts, Observations, Record, StateError};
use crate::spec::{Key, MAX_DURATION_MONTHS, Sha256Writer};

mod canonical;

/// From this many records, [`decode`] computes the checksum on a second
/// thread while it checks the records.
const PARALLEL_CHECKS_FROM: usize = 4096;

pub use super::FORMAT_VERSION;

/// A state file that passed every check of [`decode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskState {
    pub lineage: String,
    pub serial: u64,
    pub checksum: String,
    pub packages: BTreeMap<Key, Record>,
    pub failed_attempts: FailedAttempts,
    pub observations: Observations,
}

/// The file as written (field order = order in the file).
#[derive(Serialize)]
struct FileOut<'a> {
    format_version: u64,
    lineage: &'a str,
    serial: u64,
    checksum: &'a str,
    packages: &'a BTreeMap<Key, Record>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    failed_attempts: &'a FailedAttempts,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    observations: &'a Observations,
}

/// The file as read. `lineage` is required: a written file always has one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    format_version: u64,
    lineage: String,
    serial: u64,
    checksum: String,
    #[serde(deserialize_with = "unique_packages")]
    packages: BTreeMap<Key, Record>,
    #[serde(default, deserialize_with = "unique_keys")]
    failed_attempts: FailedAttempts,
    #[serde(default)]
    observations: Observations,
}

/// What the checksum is computed over: the file without its checksum.
#[derive(Serialize)]
struct Body<'a> {
    format_version: u64,
    lineage: Option<&'a str>,
    serial: u64,
    packages: &'a BTreeMap<Key, Record>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    failed_attempts: &'a FailedAttempts,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    observations: &'a Observations,
}

/// The checksum of a state's content, as stored in the file's `checksum`.
///
/// `lineage` is `None` only for a state never written (a journal replayed
/// over a missing file); a file always passes `Some`.
pub fn checksum(
    path: &Path,
    lineage: Option<&str>,
    serial: u64,
    packages: &BTreeMap<Key, Record>,
    failed_attempts: &FailedAttempts,
    observations: &Observations,
) -> Result<String, StateError> {
    let body = Body {
        format_version: FORMAT_VERSION,
        lineage,
        serial,
        packages,
        failed_attempts,
        observations,
    };
    // Hashed as it is encoded: the compact encoding of a large state is
    // tens of megabytes that nothing else needs.
    let mut hasher = std::io::BufWriter::with_capacity(1 << 16, Sha256Writer::default());
    serde_json::to_writer(&mut hasher, &body).map_err(|source| StateError::Encode {
        path: path.to_owned(),
        source,
    })?;
    let hasher = hasher.into_inner().map_err(|error| StateError::Encode {
        path: path.to_owned(),
        source: serde_json::Error::io(error.into_error()),
    })?;
    Ok(hasher.finish())
}

/// The bytes of a state file and the checksum they carry.
pub fn encode(
    path: &Path,
    lineage: &str,
    serial: u64,
    packages: &BTreeMap<Key, Record>,
    failed_attempts: &FailedAttempts,
    observations: &Observations,
) -> Result<(Vec<u8>, String), StateError> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    let checksum = encode_to(
        path,
        &mut bytes,
        lineage,
        serial,
        packages,
        failed_attempts,
        observations,
    )?;
    Ok((bytes.into_inner(), checksum))
}

/// [`encode`], written into `out` as it is encoded (a large state's file
/// is tens of megabytes that need not be in memory at once); returns the
/// checksum. Encoded once: the compact encoding the checksum is defined
/// over is hashed as the file is written ([`Tee`]), and the checksum,
/// which comes before the records, is written over a placeholder of its
/// length at the end. A failure to write into `out` is a
/// [`StateError::Encode`] whose source [`is_io`](serde_json::Error::is_io).
pub fn encode_to<W: std::io::Write + std::io::Seek>(
    path: &Path,
    out: &mut W,
    lineage: &str,
    serial: u64,
    packages: &BTreeMap<Key, Record>,
    failed_attempts: &FailedAttempts,
    observations: &Observations,
) -> Result<String, StateError> {
    let encode_error = |source| StateError::Encode {
        path: path.to_owned(),
        source,
    };
    let io_error = |error| encode_error(serde_json::Error::io(error));
    let file = |packages, failed_attempts, observations| FileOut {
        format_version: FORMAT_VERSION,
        lineage,
        serial,
        checksum: PLACEHOLDER,
        packages,
        failed_attempts,
        observations,
    };
    // Where the checksum goes: the head of the file is the same whatever
    // the records, and its last placeholder is the checksum's (the lineage
    // comes before it).
    let (no_packages, no_failures, no_observations) =
        (BTreeMap::new(), FailedAttempts::new(), Observations::new());
    let head = serde_json::to_vec_pretty(&file(&no_packages, &no_failures, &no_observations))
        .map_err(encode_error)?;
    let at = head
        .windows(PLACEHOLDER.len())
        .rposition(|w| w == PLACEHOLDER.as_bytes())
        .ok_or_else(|| io_error(std::io::Error::other("no checksum in the file's head")))?;
    let start = out.stream_position().map_err(io_error)?;

    let mut hasher = std::io::BufWriter::with_capacity(1 << 16, Sha256Writer::default());
    let tee = Tee {
        pretty: serde_json::ser::PrettyFormatter::new(),
        hash: &mut hasher,
        depth: 0,
        member: 0,
        skipping: false,
    };
    let mut serializer = serde_json::Serializer::with_formatter(&mut *out, tee);
    file(packages, failed_attempts, observations)
        .serialize(&mut serializer)
        .map_err(encode_error)?;
    out.write_all(b"\n").map_err(io_error)?;
    let checksum = hasher
        .into_inner()
        .map_err(|error| io_error(error.into_error()))?
        .finish();
    if checksum.len() != PLACEHOLDER.len() {
        return Err(io_error(std::io::Error::other(
            "a checksum of another length",
        )));
    }
    out.seek(std::io::SeekFrom::Start(start + at as u64))
        .and_then(|_| out.write_all(checksum.as_bytes()))
        .and_then(|_| out.seek(std::io::SeekFrom::End(0)))
        .map_err(io_error)?;
    Ok(checksum)
}

/// A checksum's length: `sha256:` and 64 hex digits.
const PLACEHOLDER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Writes the pretty encoding into the output and, beside it, the compact
/// encoding into a hasher, leaving out the top-level `checksum` member (the
/// fourth of [`FileOut`]): that is [`Body`]'s compact encoding, which the
/// checksum is defined over, so the file is encoded once.
struct Tee<'h, H> {
    pretty: serde_json::ser::PrettyFormatter<'static>,
    hash: &'h mut H,
    depth: usize,
    member: usize,
    skipping: bool,
}

impl<H: std::io::Write> Tee<'_, H> {
    fn hashed(
        &mut self,
        f: impl FnOnce(&mut serde_json::ser::CompactFormatter, &mut H) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if self.skipping {
            return Ok(());
        }
        f(&mut serde_json::ser::CompactFormatter, self.hash)
    }
}

/// Forwards formatter methods to both encodings.
macro_rules! tee {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $name<W: ?Sized + std::io::Write>(
                &mut self,
                writer: &mut W,
                $($arg: $ty),*
            ) -> std::io::Result<()> {
                self.pretty.$name(writer, $($arg),*)?;
                self.hashed(|compact, hash| compact.$name(hash, $($arg),*))
            }
        )*
    };
}

impl<H: std::io::Write> serde_json::ser::Formatter for Tee<'_, H> {
    tee! {
        write_null();
        write_bool(value: bool);
        write_i8(value: i8);
        write_i16(value: i16);
        write_i32(value: i32);
        write_i64(value: i64);
        write_i128(value: i128);
        write_u8(value: u8);
        write_u16(value: u16);
        write_u32(value: u32);
        write_u64(value: u64);
        write_u128(value: u128);
        write_f32(value: f32);
        write_f64(value: f64);
        write_number_str(value: &str);
        begin_string();
        end_string();
        write_string_fragment(fragment: &str);
        write_byte_array(value: &[u8]);
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        end_object_key();
        begin_object_value();
        write_raw_fragment(fragment: &str);
    }

    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: serde_json::ser::CharEscape,
    ) -> std::io::Result<()> {
        use serde_json::ser::CharEscape::*;
        // Not `Clone`: the same escape again, for the compact side.
        let again = match &char_escape {
            Quote => Quote,
            ReverseSolidus => ReverseSolidus,
            Solidus => Solidus,
            Backspace => Backspace,
            FormFeed => FormFeed,
            LineFeed => LineFeed,
            CarriageReturn => CarriageReturn,
            Tab => Tab,
            AsciiControl(byte) => AsciiControl(*byte),
        };
        self.pretty.write_char_escape(writer, char_escape)?;
        self.hashed(|compact, hash| compact.write_char_escape(hash, again))
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        self.pretty.begin_object(writer)?;
        self.hashed(|compact, hash| compact.begin_object(hash))
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        self.pretty.end_object(writer)?;
        self.hashed(|compact, hash| compact.end_object(hash))
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if self.depth == 1 {
            self.member += 1;
            // `checksum`, with the comma before it.
            self.skipping = self.member == 4;
        }
        self.pretty.begin_object_key(writer, first)?;
        self.hashed(|compact, hash| compact.begin_object_key(hash, first))
    }

    fn end_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        self.pretty.end_object_value(writer)?;
        self.hashed(|compact, hash| compact.end_object_value(hash))?;
        if self.depth == 1 {
            self.skipping = false;
        }
        Ok(())
    }
}

/// Parses and verifies a state file's bytes; `path` is only for messages.
///
/// Refuses, each with its own [`StateError`] variant: an empty file, a
/// truncated one, one that is not JSON, an unknown `format_version`, a JSON
/// document that is not a state file (unknown or missing field, duplicate
/// key), a checksum mismatch, and a record that contradicts itself.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<DiskState, StateError> {
    match stream(path, bytes, false) {
        Some(decoded) => decoded.map(|(disk, _)| disk),
        None => decode_whole(path, bytes),
    }
}

/// The length and `sha256:` of a file's bytes.
pub type RawSum = (u64, String);

/// [`decode`] of a file in the canonical encoding read from `input` as it
/// is read, so that only a block of its bytes is ever in memory, with the
/// length and SHA-256 of the bytes when `sum`. `None` when the bytes are
/// not in the canonical encoding or a read failed: the caller reads the
/// file whole and hands it to [`decode_whole`], which answers the same for
/// every file (and reports every refusal with its place).
///
/// One thread scans the bytes ([`canonical::scan`]: the layout, the
/// checksum of the content) and hands each record's bytes in batches to a
/// second one, which parses and checks them.
pub fn stream<R: std::io::Read>(
    path: &Path,
    input: R,
    sum: bool,
) -> Option<Result<(DiskState, Option<RawSum>), StateError>> {
    stream_in_blocks(path, input, sum, canonical::BLOCK)
}

/// Records' bytes handed from the scan to the parse at a time.
const BATCH_BYTES: usize = 1 << 16;

fn stream_in_blocks<R: std::io::Read>(
    path: &Path,
    input: R,
    sum: bool,
    block: usize,
) -> Option<Result<(DiskState, Option<RawSum>), StateError>> {
    std::thread::scope(|scope| {
        let (batches, received) = std::sync::mpsc::sync_channel::<Batch>(4);
        let parsing = std::thread::Builder::new()
            .spawn_scoped(scope, move || Members::parse(path, received))
            .ok()?;
        let mut batch = Batch::default();
        let scanned = canonical::scan(input, block, sum, |member, key, value| {
            batch.push(member, key, value);
            batch.bytes.len() < BATCH_BYTES || batches.send(std::mem::take(&mut batch)).is_ok()
        });
        let sent = scanned.is_some() && batches.send(batch).is_ok();
        drop(batches);
        let members = parsing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let (scanned, members) = (scanned.filter(|_| sent)?, members?);
        let top = &scanned.top;
        let file = FileIn {
            format_version: serde_json::from_slice(&top.format_version).ok()?,
            lineage: serde_json::from_slice(&top.lineage).ok()?,
            serial: serde_json::from_slice(&top.serial).ok()?,
            checksum: serde_json::from_slice(&top.checksum).ok()?,
            packages: members.packages,
            failed_attempts: members.failed_attempts,
            // The scan reads no `observations` member: a file with one is
            // not canonical for it and is read whole.
            observations: Observations::new(),
        };
        let records = members.invalid.map_or(Ok(()), Err);
        let disk = check_version(path, &file)
            .and_then(|()| finish(path, file, Ok(scanned.checksum), records));
        Some(disk.map(|disk| (disk, scanned.raw)))
    })
}

/// Members of a canonical file as [`canonical::scan`] hands them out: their
/// bytes, and where each key (a JSON string) and value is in them.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    members: Vec<(
        canonical::Member,
        std::ops::Range<usize>,
        std::ops::Range<usize>,
    )>,
}

impl Batch {
    fn push(&mut self, member: canonical::Member, key: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        let middle = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.members
            .push((member, start..middle, middle..self.bytes.len()));
    }
}

/// The two maps of a streamed file, and the first record (in key order)
/// that contradicts itself.
struct Members {
    packages: BTreeMap<Key, Record>,
    failed_attempts: FailedAttempts,
    invalid: Option<StateError>,
}

impl Members {
    /// Parses every batch as the whole file's typed parse would parse its
    /// members; `None` at the first that does not parse (the whole file's
    /// parse then says where and why).
    fn parse(path: &Path, batches: std::sync::mpsc::Receiver<Batch>) -> Option<Members> {
        let mut members = Members {
            packages: BTreeMap::new(),
            failed_attempts: FailedAttempts::new(),
            invalid: None,
        };
        for batch in batches {
            for (member, key, value) in batch.members {
                let key: Key = serde_json::from_slice(&batch.bytes[key]).ok()?;
                let value = &batch.bytes[value];
                match member {
                    canonical::Member::Package => {
                        let record: Record = serde_json::from_slice(value).ok()?;
                        if members.invalid.is_none() {
                            members.invalid = check_record(path, &key, &record).err();
                        }
                        members.packages.insert(key, record);
                    }
                    canonical::Member::FailedAttempt => {
                        let attempt = serde_json::from_slice(value).ok()?;
                        members.failed_attempts.insert(key, attempt);
                    }
                }
            }
        }
        Some(members)
    }
}

/// [`decode`] of bytes held whole: the typed parse of the file, then the
/// checksum by re-encoding the parsed content. Answers as [`stream`] does
/// for a canonical file, and also reads every other spelling of the same
/// content (a hand-edited file), reporting every refusal with its place.
pub fn decode_whole(path: &Path, bytes: &[u8]) -> Result<DiskState, StateError> {
    verify(path, parse(path, bytes)?)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<FileIn, StateError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StateError::Empty {
            path: path.to_owned(),
        });
    }
    // One typed parse on the happy path; the cheaper questions ("which
    // version is this?") are only asked once it failed, to pick the message.
    serde_json::from_slice(bytes).map_err(|source| classify_parse_error(path, bytes, source))
}

/// The checks after the whole file's parse, the checksum computed by
/// re-encoding the content.
fn verify(path: &Path, file: FileIn) -> Result<DiskState, StateError> {
    check_version(path, &file)?;
    let computed = || {
        checksum(
            path,
            Some(&file.lineage),
            file.serial,
            &file.packages,
            &file.failed_attempts,
            &file.observations,
        )
    };
    let records = || validate_records(path, &file.packages);
    // Two independent passes over every record; a large state does them on
    // two threads. The checksum's refusal comes first either way.
    let (computed, records) = if file.packages.len() >= PARALLEL_CHECKS_FROM {
        std::thread::scope(|scope| {
            match std::thread::Builder::new().spawn_scoped(scope, computed) {
                Ok(hashing) => {
                    let records = records();
                    let computed = hashing
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    (computed, records)
                }
                Err(_) => (computed(), records()),
            }
        })
    } else {
        (computed(), records())
    };
    finish(path, file, computed, records)
}

/// Refuses a `format_version` this oapkg does not read.
fn check_version(path: &Path, file: &FileIn) -> Result<(), StateError> {
    if file.format_version != FORMAT_VERSION {
        return Err(StateError::UnknownFormatVersion {
            path: path.to_owned(),
            found: file.format_version.to_string(),
        });
    }
    Ok(())
}

/// The checksum's refusal first, then the records'.
fn finish(
    path: &Path,
    file: FileIn,
    computed: Result<String, StateError>,
    records: Result<(), StateError>,
) -> Result<DiskState, StateError> {
    let computed = computed?;
    if computed != file.checksum {
        return Err(StateError::ChecksumMismatch {
            path: path.to_owned(),
            recorded: file.checksum,
            computed,
        });
    }
    records?;
    Ok(DiskState {
        lineage: file.lineage,
        serial: file.serial,
        checksum: file.checksum,
        packages: file.packages,
        failed_attempts: file.failed_attempts,
        observations: file.observations,
    })
}

/// Checks that each record agrees with itself: its key is its spec's key, its
/// spec hash is its spec's hash, its duration is in range.
///
/// The checksum cannot catch these when someone recomputed it after an edit,
/// and `write` runs this too, so oapkg never writes a file it would refuse.
pub fn validate_records(path: &Path, packages: &BTreeMap<Key, Record>) -> Result<(), StateError> {
    packages
        .iter()
        .try_for_each(|(key, record)| check_record(path, key, record))
}

/// [`validate_records`] for one record.
fn check_record(path: &Path, key: &Key, record: &Record) -> Result<(), StateError> {
    let problem = if !key.is_for(&record.spec) {
        format!(
            "its spec is for {} (oaid {}, start {}), not for its key",
            record.spec.key(),
            record.spec.oaid,
            record.spec.start
        )
    } else if !record.spec_hash.is_of(&record.spec) {
        format!(
            "spec_hash {} does not match its spec (which hashes to {})",
            record.spec_hash,
            record.spec.hash()
        )
    } else if !(1..=MAX_DURATION_MONTHS).contains(&record.spec.duration_months) {
        format!(
            "duration_months {} is outside 1..={MAX_DURATION_MONTHS}",
            record.spec.duration_months
        )
    } else if record.spec.end().is_none() {
        // No end date is ever saturated: a period past the calendar has no
        // end oapkg can compare (for overlaps, expiry) or show.
        format!(
            "its period ({} for {} months) would end after 9999-12-31, the last date oapkg can record",
            record.spec.start, record.spec.duration_months
        )
    } else {
        return Ok(());
    };
    Err(StateError::InvalidRecord {
        path: path.to_owned(),
        key: key.clone(),
        problem,
    })
}

/// Turns a failed typed parse into the most precise refusal.
fn classify_parse_error(path: &Path, bytes: &[u8], source: serde_json::Error) -> StateError {
    let path = path.to_owned();
    match source.classify() {
        Category::Eof => StateError::Truncated { path, source },
        Category::Syntax | Category::Io => StateError::NotJson { path, source },
        Category::Data => {
            // Valid JSON of the wrong shape. If it says it is another format
            // version, that is the useful message (a newer oapkg wrote it);
            // otherwise report the field serde complained about.
            #[derive(Deserialize)]
            struct Probe {
                format_version: Option<serde_json::Value>,
            }
            match serde_json::from_slice::<Probe>(bytes) {
                Ok(Probe {
                    format_version: Some(found),
                }) if found != FORMAT_VERSION => StateError::UnknownFormatVersion {
                    path,
                    found: found.to_string(),
                },
                Ok(Probe {
                    format_version: None,
                }) => StateError::UnknownFormatVersion {
                    path,
                    found: "missing".to_owned(),
                },
                _ => StateError::Malformed { path, source },
            }
        }
    }
}

/// Deserializes `packages`, refusing a key listed twice (a plain `BTreeMap`
/// would keep the last one and silently drop the other).
fn unique_packages<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<Key, Record>, D::Error> {
    deserializer.deserialize_map(UniqueKeys::<Record>::new(
        "an object of package records by key",
        "package",
    ))
}

fn unique_keys<'de, D: Deserializer<'de>>(deserializer: D) -> Result<FailedAttempts, D::Error> {
    deserializer.deserialize_map(UniqueKeys::<FailedAttempt>::new(
        "an object of failed attempts by key",
        "failed attempt of",
    ))
}

/// A map by package key that refuses a key listed twice (serde's own
/// `BTreeMap` keeps the last one silently).
struct UniqueKeys<V> {
    expecting: &'static str,
    what: &'static str,
    value: std::marker::PhantomData<V>,
}

impl<V> UniqueKeys<V> {
    fn new(expecting: &'static str, what: &'static str) -> Self {
        UniqueKeys {
            expecting,
            what,
            value: std::marker::PhantomData,
        }
    }
}

impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueKeys<V> {
    type Value = BTreeMap<Key, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = BTreeMap::new();
        while let Some(key) = map.next_key::<Key>()? {
            // A written file lists its keys in order: a key after the last
            // one is new without a lookup.
            let after_last = values.last_key_value().is_none_or(|(last, _)| *last < key);
            if !after_last && values.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "{} {key} is listed twice",
                    self.what
                )));
            }
            let value = map.next_value::<V>()?;
            values.insert(key, value);
        }
        Ok(values)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spec::{Oaid, Spec, Tier};
    use crate::state::Status;
    use jiff::civil::date;

    pub(crate) fn record(oaid: &str, start: jiff::civil::Date, status: Status) -> Record {
        let spec = Spec {
            oaid: Oaid::parse(oaid).unwrap(),
            tier: Tier::Premium,
            start,
            duration_months: 12,
        };
        Record {
            spec_hash: spec.hash(),
            spec,
            name: Some("SVoucher main".to_owned()),
            status,
            service_preview_id: Some("98765".to_owned()),
            result_code: Some("100".to_owned()),
            result_message: Some("Success".to_owned()),
            submitted_at: Some("2026-11-26T10:00:00Z".parse().unwrap()),
            confirmed: None,
            by_policy: false,
        }
    }

    pub(crate) fn packages() -> BTreeMap<Key, Record> {
        [
            record("745830328927467685", date(2027, 1, 1), Status::Unconfirmed),
            record("4097311281936189049", date(2026, 12, 1), Status::Submitted),
            record("4097311281936189049", date(2027, 12, 1), Status::Imported),
        ]
        .into_iter()
        .map(|r| (r.spec.key(), r))
        .collect()
    }

    /// A bad file's name, bytes, and the refusal it must get.
    pub(crate) type Case = (&'static str, Vec<u8>, fn(&StateError) -> bool);

    fn path() -> &'static Path {
        Path::new("state/oapkg.state.json")
    }

    fn encoded() -> Vec<u8> {
        encode(
            path(),
            "lineage-1",
            3,
            &packages(),
            &FailedAttempts::new(),
            &Default::default(),
        )
        .unwrap()
        .0
    }

    /// Re-seals a hand-edited document with a correct checksum, to reach the
    /// checks that come after the checksum.
    fn reseal(mut doc: serde_json::Value) -> Vec<u8> {
        let packages: BTreeMap<Key, Record> =
            serde_json::from_value(doc["packages"].clone()).unwrap();
        let sum = checksum(
            path(),
            doc["lineage"].as_str(),
            doc["serial"].as_u64().unwrap(),
            &packages,
            &serde_json::from_value(doc["failed_attempts"].clone()).unwrap_or_default(),
            &serde_json::from_value(doc["observations"].clone()).unwrap_or_default(),
        )
        .unwrap();
        doc["checksum"] = sum.into();
        serde_json::to_vec_pretty(&doc).unwrap()
    }

    #[test]
    fn encoding_is_deterministic_sorted_and_ends_with_a_newline() {
        let bytes = encoded();
        assert_eq!(bytes, encoded());
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.ends_with("}\n"));
        assert!(text.starts_with("{\n  \"format_version\": 1,\n  \"lineage\": \"lineage-1\",\n  \"serial\": 3,\n  \"checksum\": \"sha256:"));
        let a = text.find("4097311281936189049@2026-12-01").unwrap();
        let b = text.find("4097311281936189049@2027-12-01").unwrap();
        let c = text.find("745830328927467685@2027-01-01").unwrap();
        assert!(a < b && b < c, "packages sorted by key");
        // Absent values are written, not left out.
        let empty = encode(
            path(),
            "l",
            1,
            &BTreeMap::new(),
            &FailedAttempts::new(),
            &Default::default(),
        )
        .unwrap()
        .0;
        assert!(
            String::from_utf8(empty)
                .unwrap()
                .contains("\"packages\": {}\n")
        );
    }

    /// The file is encoded once, the checksum hashed beside it and written
    /// over a placeholder: the same bytes and checksum as encoding the
    /// checksummed body and the file separately, also with escapes,
    /// failed attempts, and a lineage that looks like the placeholder.
    #[test]
    fn encoding_once_gives_the_checksum_of_the_body_and_the_pretty_file() {
        let mut packages = packages();
        for record in packages.values_mut() {
            record.name = Some("quote \" back \\ tab \t nul \u{0} é \u{2028} 🎉".to_owned());
        }
        let failed: FailedAttempts = [(
            packages.keys().next().unwrap().clone(),
            FailedAttempt {
                code: Some("102".to_owned()),
                message: "refused \"x\"\n".to_owned(),
                at: "2026-11-26T10:00:00.5Z".parse().unwrap(),
            },
        )]
        .into_iter()
        .collect();
        for (lineage, failed) in [
            ("lineage-1", &FailedAttempts::new()),
            ("line\"age\n", &failed),
            (PLACEHOLDER, &failed),
        ] {
            let (bytes, sum) =
                encode(path(), lineage, 7, &packages, failed, &Default::default()).unwrap();
            let expected = checksum(
                path(),
                Some(lineage),
                7,
                &packages,
                failed,
                &Default::default(),
            )
            .unwrap();
            assert_eq!(sum, expected);
            let out = FileOut {
                format_version: FORMAT_VERSION,
                lineage,
                serial: 7,
                checksum: &expected,
                packages: &packages,
                failed_attempts: failed,
                observations: &Default::default(),
            };
            let mut pretty = serde_json::to_vec_pretty(&out).unwrap();
            pretty.push(b'\n');
            assert_eq!(
                String::from_utf8(bytes.clone()).unwrap(),
                String::from_utf8(pretty).unwrap()
            );
            let disk = decode(path(), &bytes).unwrap();
            assert_eq!(disk.checksum, expected);
            assert_eq!(&disk.failed_attempts, failed);
        }
    }

    #[test]
    fn decode_gives_back_what_was_encoded() {
        let (bytes, sum) = encode(
            path(),
            "lineage-1",
            3,
            &packages(),
            &FailedAttempts::new(),
            &Default::default(),
        )
        .unwrap();
        let disk = decode(path(), &bytes).unwrap();
        assert_eq!(disk.lineage, "lineage-1");
        assert_eq!(disk.serial, 3);
        assert_eq!(disk.checksum, sum);
        assert_eq!(disk.packages, packages());
    }

    #[test]
    fn checksum_ignores_whitespace_but_not_content() {
        let doc: serde_json::Value = serde_json::from_slice(&encoded()).unwrap();
        let compact = serde_json::to_vec(&doc).unwrap();
        assert!(decode(path(), &compact).is_ok());

        let mut edited = doc.clone();
        edited["packages"]["4097311281936189049@2026-12-01"]["status"] = "unconfirmed".into();
        let err = decode(path(), &serde_json::to_vec(&edited).unwrap()).unwrap_err();
        assert!(matches!(err, StateError::ChecksumMismatch { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("state/oapkg.state.json"), "{message}");
        // No backup beside it (this test writes none): the message points
        // at none (tests/it/truthful.rs has the case with one).
        assert!(
            message.contains("restore it from Git (there is no backup beside it)")
                && !message.contains(".backup"),
            "{message}"
        );

        let mut edited = doc;
        edited["serial"] = 4.into();
        let err = decode(path(), &serde_json::to_vec(&edited).unwrap()).unwrap_err();
        assert!(matches!(err, StateError::ChecksumMismatch { .. }), "{err}");
    }

    #[test]
    fn each_kind_of_bad_file_has_its_own_error_naming_the_file() {
        let good = encoded();
        let doc: serde_json::Value = serde_json::from_slice(&good).unwrap();
        let mut v2 = doc.clone();
        v2["format_version"] = 2.into();
        v2["something_new"] = true.into();
        let mut no_version = doc.clone();
        no_version.as_object_mut().unwrap().remove("format_version");
        let mut extra_top = doc.clone();
        extra_top["note"] = "hand-added".into();
        let mut extra_record = doc.clone();
        extra_record["packages"]["4097311281936189049@2026-12-01"]["comment"] = "x".into();
        let mut bad_hash = doc.clone();
        bad_hash["packages"]["4097311281936189049@2026-12-01"]["spec_hash"] = "sha256:0000".into();
        let mut moved = doc.clone();
        let record = moved["packages"]["4097311281936189049@2026-12-01"].clone();
        moved["packages"]["4097311281936189049@2026-12-02"] = record;
        let text = String::from_utf8(good.clone()).unwrap();
        let twice = text.replacen(
            "\"4097311281936189049@2027-12-01\"",
            "\"4097311281936189049@2026-12-01\"",
            1,
        );

        let cases: Vec<Case> = vec![
            ("0 bytes", vec![], |e| matches!(e, StateError::Empty { .. })),
            ("whitespace", b" \n\t\n".to_vec(), |e| {
                matches!(e, StateError::Empty { .. })
            }),
            ("truncated", good[..good.len() / 2].to_vec(), |e| {
                matches!(e, StateError::Truncated { .. })
            }),
            ("not json", b"lineage = 3\n".to_vec(), |e| {
                matches!(e, StateError::NotJson { .. })
            }),
            ("trailing garbage", [good.as_slice(), b"}"].concat(), |e| {
                matches!(e, StateError::NotJson { .. })
            }),
            (
                "version 2",
                serde_json::to_vec(&v2).unwrap(),
                |e| matches!(e, StateError::UnknownFormatVersion { found, .. } if found == "2"),
            ),
            (
                "no version",
                serde_json::to_vec(&no_version).unwrap(),
                |e| matches!(e, StateError::UnknownFormatVersion { found, .. } if found == "missing"),
            ),
            (
                "unknown top-level field",
                serde_json::to_vec(&extra_top).unwrap(),
                |e| matches!(e, StateError::Malformed { .. }),
            ),
            (
                "unknown record field",
                serde_json::to_vec(&extra_record).unwrap(),
                |e| matches!(e, StateError::Malformed { .. }),
            ),
            ("not an object", b"[1, 2]".to_vec(), |e| {
                matches!(e, StateError::Malformed { .. })
            }),
            (
                "key listed twice",
                twice.into_bytes(),
                |e| matches!(e, StateError::Malformed { source, .. } if source.to_string().contains("listed twice")),
            ),
            (
                "spec hash resealed",
                reseal(bad_hash),
                |e| matches!(e, StateError::InvalidRecord { problem, .. } if problem.contains("spec_hash")),
            ),
            (
                "record under another key",
                reseal(moved),
                |e| matches!(e, StateError::InvalidRecord { key, .. } if key.as_str() == "4097311281936189049@2026-12-02"),
            ),
        ];
        for (name, bytes, expected) in cases {
            let err = decode(path(), &bytes).expect_err(name);
            assert!(expected(&err), "{name}: got {err:?}");
            assert!(
                err.to_string().contains("state/oapkg.state.json"),
                "{name}: message must name the file: {err}"
            );
        }
    }
}
