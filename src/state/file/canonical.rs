//! The scan of a state file in the canonical encoding [`encode`](super::encode)
//! writes: its checksum computed over the file's own bytes, and each member
//! handed out as it passes, read block by block.
//!
//! The checksum is defined over the compact re-encoding of the parsed
//! content without the `checksum` field ([`checksum`](super::checksum)).
//! When every value in the file is already written the way that encoding
//! writes it (fields in their order and presence, strings with exactly
//! serde_json's escapes, plain integers, dates and timestamps as jiff
//! prints them), that re-encoding is the file's own tokens without their
//! whitespace and without the `checksum` member: this module hashes those
//! directly, in one pass over the bytes, without building or encoding any
//! value, keeping in memory only the member being scanned. Anything else (a
//! field out of order, an escape serde_json would not write, a timestamp
//! with an offset, ...) makes it answer `None`, and the file is read whole
//! and re-encoded ([`decode_whole`](super::decode_whole)). The scan never
//! decides whether a file is valid: [`stream`](super::stream) uses it only
//! beside the typed parse of every member it hands out.

use std::io::{Read, Write};
use std::ops::Range;

use crate::spec::Sha256Writer;

/// The checksum [`checksum`](super::checksum) would compute for these
/// bytes' content, or `None` when the bytes are not in the canonical
/// encoding (then only the re-encoding can tell).
#[cfg(test)]
pub(super) fn checksum(bytes: &[u8]) -> Option<String> {
    scan(bytes, BLOCK, false, |_, _, _| true).map(|scanned| scanned.checksum)
}

/// Reads `input` to its end once, block by block, keeping in memory only
/// the record being scanned: when the bytes are in the canonical encoding,
/// hands each package and failed attempt to `member` as it passes (its key
/// as a JSON string, its value as written) and answers the top-level
/// values, the checksum of the content and, if `raw`, the length and
/// SHA-256 of every byte read. `None` when the bytes are not canonical, a
/// read failed, or `member` answered `false` (stop).
pub(super) fn scan<R: Read>(
    input: R,
    block: usize,
    raw: bool,
    member: impl FnMut(Member, &[u8], &[u8]) -> bool,
) -> Option<Scanned> {
    let mut scan = Scan {
        input,
        block: block.max(1),
        buf: Vec::with_capacity(block.max(1) * 2),
        at: 0,
        eof: false,
        read: 0,
        raw: raw.then(Sha256Writer::default),
        out: Vec::with_capacity(BUFFER),
        hasher: Sha256Writer::default(),
        member,
        top: Top::default(),
    };
    scan.file()?;
    scan.flush()?;
    let raw = match scan.raw {
        Some(hasher) => Some((scan.read, hasher.finish())),
        None => None,
    };
    Some(Scanned {
        top: scan.top,
        checksum: scan.hasher.finish(),
        raw,
    })
}

/// How much [`scan`] reads at a time from a file.
pub(super) const BLOCK: usize = 1 << 18;

const BUFFER: usize = 1 << 16;

/// Which map a member handed out by [`scan`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Member {
    Package,
    FailedAttempt,
}

/// What [`scan`] found in a canonical file.
pub(super) struct Scanned {
    pub top: Top,
    /// The checksum of the content, computed from the bytes.
    pub checksum: String,
    /// The length and `sha256:` of every byte read, when asked.
    pub raw: Option<(u64, String)>,
}

/// The top-level values other than the two maps, each as written: JSON
/// text for the typed parse.
#[derive(Default)]
pub(super) struct Top {
    pub format_version: Vec<u8>,
    pub lineage: Vec<u8>,
    pub serial: Vec<u8>,
    pub checksum: Vec<u8>,
}

/// The record's fields in [`Record`](crate::state::Record)'s order, with
/// what each value may be; `confirmed` and `by_policy` follow, each only
/// when present.
const RECORD_FIELDS: [(&[u8], Value); 7] = [
    (b"spec_hash", Value::Text),
    (b"name", Value::OptionalText),
    (b"status", Value::Text),
    (b"service_preview_id", Value::OptionalText),
    (b"result_code", Value::OptionalText),
    (b"result_message", Value::OptionalText),
    (b"submitted_at", Value::OptionalTimestamp),
];

#[derive(Clone, Copy)]
enum Value {
    Text,
    OptionalText,
    Timestamp,
    OptionalTimestamp,
}

/// The scan's place in the input: `buf` holds the bytes from some point
/// before `at` on; bytes before the member being scanned are dropped
/// ([`release`](Scan::release)), so positions are only kept within one.
struct Scan<R, M> {
    input: R,
    block: usize,
    buf: Vec<u8>,
    at: usize,
    eof: bool,
    /// How many bytes were read from `input`.
    read: u64,
    /// Every byte read, when asked.
    raw: Option<Sha256Writer>,
    /// Compact tokens not yet hashed.
    out: Vec<u8>,
    hasher: Sha256Writer,
    member: M,
    top: Top,
}

impl<R: Read, M: FnMut(Member, &[u8], &[u8]) -> bool> Scan<R, M> {
    fn file(&mut self) -> Option<()> {
        self.punct(b'{')?;
        self.field(b"format_version")?;
        self.top.format_version = self.integer()?;
        self.punct(b',')?;
        self.field(b"lineage")?;
        self.top.lineage = self.quoted()?;
        self.punct(b',')?;
        self.field(b"serial")?;
        self.top.serial = self.integer()?;
        self.punct(b',')?;
        // The checksum member is not part of what it sums.
        let start = self.out.len();
        self.field(b"checksum")?;
        self.top.checksum = self.quoted()?;
        self.punct(b',')?;
        self.out.truncate(start);
        self.field(b"packages")?;
        self.keyed(Member::Package, |scan| scan.record())?;
        if self.peek()? == b',' {
            self.punct(b',')?;
            self.field(b"failed_attempts")?;
            // Written only when not empty.
            if self.keyed(Member::FailedAttempt, |scan| scan.failed_attempt())? == 0 {
                return None;
            }
        }
        self.punct(b'}')?;
        self.skip_ws();
        (self.byte(self.at).is_none() && self.eof).then_some(())
    }

    /// An object of values by package key, keys in ascending order (a
    /// `BTreeMap`'s), each handed to `self.member`; returns how many.
    fn keyed(
        &mut self,
        kind: Member,
        mut value: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<usize> {
        self.punct(b'{')?;
        let mut count = 0;
        let mut previous: Option<Vec<u8>> = None;
        if self.peek()? == b'}' {
            self.punct(b'}')?;
            return Some(0);
        }
        loop {
            self.release();
            let key = self.string()?;
            let text = &self.buf[key.clone()];
            if !is_key(text) || previous.as_deref().is_some_and(|previous| previous >= text) {
                return None;
            }
            previous = Some(text.to_vec());
            self.punct(b':')?;
            self.skip_ws();
            let start = self.at;
            value(self)?;
            let quoted = &self.buf[key.start - 1..key.end + 1];
            if !(self.member)(kind, quoted, &self.buf[start..self.at]) {
                return None;
            }
            self.maybe_flush()?;
            count += 1;
            match self.peek()? {
                b',' => self.punct(b',')?,
                _ => {
                    self.punct(b'}')?;
                    return Some(count);
                }
            }
        }
    }

    fn record(&mut self) -> Option<()> {
        self.punct(b'{')?;
        self.field(b"spec")?;
        self.punct(b'{')?;
        self.field(b"oaid")?;
        self.string()?;
        self.punct(b',')?;
        self.field(b"tier")?;
        self.string()?;
        self.punct(b',')?;
        self.field(b"start")?;
        let start = self.string()?;
        if !is_date(&self.buf[start]) {
            return None;
        }
        self.punct(b',')?;
        self.field(b"duration_months")?;
        self.integer()?;
        self.punct(b'}')?;
        for (name, value) in RECORD_FIELDS {
            self.punct(b',')?;
            self.field(name)?;
            self.value(value)?;
        }
        let mut next = self.peek()?;
        if next == b',' && self.next_field_is(b"confirmed") {
            self.punct(b',')?;
            self.field(b"confirmed")?;
            self.punct(b'{')?;
            self.field(b"by")?;
            self.string()?;
            self.punct(b',')?;
            self.field(b"at")?;
            self.value(Value::Timestamp)?;
            self.punct(b'}')?;
            next = self.peek()?;
        }
        if next == b',' {
            self.punct(b',')?;
            self.field(b"by_policy")?;
            // Written only when true.
            self.literal(b"true")?;
        }
        self.punct(b'}')
    }

    fn failed_attempt(&mut self) -> Option<()> {
        self.punct(b'{')?;
        self.field(b"code")?;
        self.value(Value::OptionalText)?;
        self.punct(b',')?;
        self.field(b"message")?;
        self.value(Value::Text)?;
        self.punct(b',')?;
        self.field(b"at")?;
        self.value(Value::Timestamp)?;
        self.punct(b'}')
    }

    fn value(&mut self, value: Value) -> Option<()> {
        let optional = matches!(value, Value::OptionalText | Value::OptionalTimestamp);
        if optional && self.peek()? == b'n' {
            return self.literal(b"null");
        }
        let text = self.string()?;
        match value {
            Value::Timestamp | Value::OptionalTimestamp
                if !is_timestamp(&self.buf[text.clone()]) =>
            {
                None
            }
            _ => Some(()),
        }
    }

    /// `"name":`.
    fn field(&mut self, name: &[u8]) -> Option<()> {
        let key = self.string()?;
        if self.buf[key] != *name {
            return None;
        }
        self.punct(b':')
    }

    /// Whether the next tokens are `, "name"`, without consuming them.
    fn next_field_is(&mut self, name: &[u8]) -> bool {
        let (at, len) = (self.at, self.out.len());
        let found =
            self.punct(b',').is_some() && self.string().is_some_and(|key| self.buf[key] == *name);
        self.at = at;
        self.out.truncate(len);
        found
    }

    /// [`string`](Self::string), quotes included, as an owned copy.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        let content = self.string()?;
        Some(self.buf[content.start - 1..content.end + 1].to_vec())
    }

    /// A string in exactly the escaping serde_json writes; emits it and
    /// returns where its content between the quotes is in `buf`.
    fn string(&mut self) -> Option<Range<usize>> {
        self.skip_ws();
        if self.byte(self.at)? != b'"' {
            return None;
        }
        self.at += 1;
        let start = self.at;
        loop {
            // Plain bytes in bulk; the loop below reads the one that ends them.
            let rest = &self.buf[self.at..];
            self.at += rest
                .iter()
                .position(|&b| matches!(b, b'"' | b'\\' | 0..0x20))
                .unwrap_or(rest.len());
            let byte = self.byte(self.at)?;
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let escape = self.byte(self.at)?;
                    self.at += 1;
                    match escape {
                        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => {}
                        b'u' => {
                            // serde_json writes `\u00xx`, lowercase, only for
                            // the control characters without a short escape.
                            self.byte(self.at + 3)?;
                            let hex = &self.buf[self.at..self.at + 4];
                            self.at += 4;
                            let digit = |d: u8| match d {
                                b'0'..=b'9' => Some(d - b'0'),
                                b'a'..=b'f' => Some(d - b'a' + 10),
                                _ => None,
                            };
                            if hex[..2] != *b"00" {
                                return None;
                            }
                            let code = digit(hex[2])? * 16 + digit(hex[3])?;
                            if code >= 0x20 || matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                }
                0..0x20 => return None,
                _ => {}
            }
        }
        self.emit(start - 1..self.at);
        Some(start..self.at - 1)
    }

    /// An unsigned integer as serde_json writes one: digits, no sign,
    /// fraction or exponent (the typed parse refuses leading zeros); its
    /// digits.
    fn integer(&mut self) -> Option<Vec<u8>> {
        self.skip_ws();
        let start = self.at;
        while self.byte(self.at).is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        if self.at == start || matches!(self.byte(self.at), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.emit(start..self.at);
        Some(self.buf[start..self.at].to_vec())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.skip_ws();
        self.byte(self.at + word.len() - 1)?;
        if !self.buf[self.at..].starts_with(word) {
            return None;
        }
        self.at += word.len();
        self.out.extend_from_slice(word);
        Some(())
    }

    fn punct(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        if self.byte(self.at)? != byte {
            return None;
        }
        self.at += 1;
        self.out.push(byte);
        Some(())
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.byte(self.at)
    }

    fn skip_ws(&mut self) {
        loop {
            let rest = &self.buf[self.at..];
            let blank = rest
                .iter()
                .position(|b| !matches!(b, b' ' | b'\n' | b'\t' | b'\r'))
                .unwrap_or(rest.len());
            self.at += blank;
            // Stop at a byte that is not blank, or at the end of the input.
            if self
                .byte(self.at)
                .is_none_or(|b| !matches!(b, b' ' | b'\n' | b'\t' | b'\r'))
            {
                return;
            }
        }
    }

    /// The byte at `i` in `buf`, reading on as far as needed; `None` at
    /// the end of the input or when a read fails (the caller then reads
    /// the file whole, and meets the failure again).
    #[inline(always)]
    fn byte(&mut self, i: usize) -> Option<u8> {
        match self.buf.get(i) {
            Some(&byte) => Some(byte),
            None => self.byte_after_reading(i),
        }
    }

    #[cold]
    #[inline(never)]
    fn byte_after_reading(&mut self, i: usize) -> Option<u8> {
        while i >= self.buf.len() {
            if self.eof || !self.fill() {
                return None;
            }
        }
        Some(self.buf[i])
    }

    /// Reads one more block onto `buf`; `false` on a failed read.
    fn fill(&mut self) -> bool {
        let old = self.buf.len();
        self.buf.resize(old + self.block, 0);
        let n = loop {
            match self.input.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.buf.truncate(old);
                    return false;
                }
            }
        };
        self.buf.truncate(old + n);
        self.eof = n == 0;
        self.read += n as u64;
        if let Some(raw) = &mut self.raw {
            raw.write_all(&self.buf[old..])
                .expect("hashing does not fail");
        }
        true
    }

    /// Forgets the bytes before `at`, once they are a block's worth: only
    /// called between members, when no position before `at` is kept.
    fn release(&mut self) {
        if self.at >= self.block {
            self.buf.drain(..self.at);
            self.at = 0;
        }
    }

    fn emit(&mut self, range: Range<usize>) {
        self.out.extend_from_slice(&self.buf[range]);
    }

    /// Hashes the buffered tokens once there are enough; only called
    /// between records, so the `truncate`s above stay within the buffer.
    fn maybe_flush(&mut self) -> Option<()> {
        if self.out.len() >= BUFFER {
            self.flush()?;
        }
        Some(())
    }

    fn flush(&mut self) -> Option<()> {
        self.hasher.write_all(&self.out).ok()?;
        self.out.clear();
        Some(())
    }
}

/// `OAID@YYYY-MM-DD` as [`Key`](crate::spec::Key) writes it.
fn is_key(text: &[u8]) -> bool {
    text.len() > 11
        && text[text.len() - 11] == b'@'
        && text[..text.len() - 11].iter().all(u8::is_ascii_digit)
        && is_date(&text[text.len() - 10..])
}

/// `YYYY-MM-DD`, which jiff prints back the same for every date it reads.
fn is_date(text: &[u8]) -> bool {
    text.len() == 10 && shape(text, b"dddd-dd-dd")
}

/// `YYYY-MM-DDTHH:MM:SS[.f]Z` as jiff prints a timestamp: the fraction only
/// when not zero, without trailing zeros. A leap second (`:60`) reads as
/// `:59`, so it is not canonical.
fn is_timestamp(text: &[u8]) -> bool {
    let Some((whole, rest)) = text.split_at_checked(19) else {
        return false;
    };
    if !shape(whole, b"dddd-dd-ddTdd:dd:dd") || &whole[17..] == b"60" {
        return false;
    }
    match rest {
        [b'Z'] => true,
        [b'.', fraction @ .., b'Z'] => {
            (1..=9).contains(&fraction.len())
                && fraction.iter().all(u8::is_ascii_digit)
                && fraction.last() != Some(&b'0')
        }
        _ => false,
    }
}

/// Whether `text` has a digit wherever `pattern` has `d` and the same byte
/// elsewhere.
fn shape(text: &[u8], pattern: &[u8]) -> bool {
    text.len() == pattern.len()
        && text.iter().zip(pattern).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            _ => c == p,
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use proptest::prelude::*;

    use super::super::{
        FailedAttempts, checksum as encoded_checksum, decode, encode, parse, stream_in_blocks,
        verify,
    };
    use crate::spec::{Oaid, Spec, Tier, sha256_tagged};
    use crate::state::{Confirmation, FailedAttempt, Record, Status};

    fn path() -> &'static Path {
        Path::new("state/oapkg.state.json")
    }

    /// What `decode` answered before this module: the content re-encoded.
    fn decode_by_reencoding(bytes: &[u8]) -> Result<super::super::DiskState, String> {
        let file = parse(path(), bytes).map_err(|e| e.to_string())?;
        verify(path(), file).map_err(|e| e.to_string())
    }

    /// The bytes without whitespace outside strings.
    fn compact(bytes: &[u8]) -> Vec<u8> {
        let (mut out, mut in_string, mut escaped) = (Vec::new(), false, false);
        for &b in bytes {
            if in_string {
                out.push(b);
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else if !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                in_string = b == b'"';
                out.push(b);
            }
        }
        out
    }

    /// Seals the bytes as a tool would that summed the file's own compact
    /// tokens (whatever their encoding) instead of re-encoding the content.
    fn reseal_raw(bytes: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let compact = String::from_utf8(compact(bytes)).ok()?;
        let start = compact.find(",\"checksum\":\"")?;
        let end = start + 13 + compact[start + 13..].find('"')? + 1;
        let recorded = &compact[start + 13..end - 1];
        let body = format!("{}{}", &compact[..start], &compact[end..]);
        let sum = sha256_tagged(body.as_bytes());
        Some(text.replacen(recorded, &sum, 1).into_bytes())
    }

    /// From year 0000 on: an earlier year prints with a sign, which the scan
    /// leaves to the re-encoding (`a_year_before_0000_is_re_encoded`).
    fn timestamp() -> impl Strategy<Value = jiff::Timestamp> {
        (
            -62_167_219_200_i64..253_402_207_000,
            prop_oneof![
                Just(0_i32),
                0..1_000_000_000,
                (0..1000).prop_map(|ms| ms * 1_000_000)
            ],
        )
            .prop_map(|(s, ns)| jiff::Timestamp::new(s, ns).unwrap())
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 ]{0,12}",
            any::<String>(),
            "[\"\\\\/\u{0}-\u{1f}\u{7f}é😀a]{0,8}",
        ]
    }

    fn record() -> impl Strategy<Value = Record> {
        (
            (
                "[1-9][0-9]{0,18}",
                0_i16..=9999,
                1_i8..=12,
                1_i8..=28,
                1_u8..=36,
            ),
            prop::option::of(text()),
            prop::sample::select(vec![
                Status::Submitted,
                Status::Unconfirmed,
                Status::Imported,
            ]),
            prop::collection::vec(prop::option::of(text()), 3),
            prop::option::of(timestamp()),
            prop::option::of((text(), timestamp())),
            any::<bool>(),
        )
            .prop_map(
                |(
                    (oaid, y, m, d, months),
                    name,
                    status,
                    texts,
                    submitted_at,
                    confirmed,
                    by_policy,
                )| {
                    let spec = Spec {
                        oaid: Oaid::parse(&oaid).unwrap(),
                        tier: Tier::Advanced,
                        start: jiff::civil::date(y, m, d),
                        duration_months: months,
                    };
                    Record {
                        spec_hash: spec.hash(),
                        spec,
                        name,
                        status,
                        service_preview_id: texts[0].clone(),
                        result_code: texts[1].clone(),
                        result_message: texts[2].clone(),
                        submitted_at,
                        confirmed: confirmed.map(|(by, at)| Confirmation {
                            by,
                            at,
                            observation: None,
                        }),
                        by_policy,
                    }
                },
            )
            // A state holds only periods that end on the calendar.
            .prop_filter("ends by 9999-12-31", |r| r.spec.end().is_some())
    }

    fn state() -> impl Strategy<Value = Vec<u8>> {
        (
            text(),
            prop_oneof![Just(0_u64), any::<u64>()],
            prop::collection::vec(record(), 0..6),
            prop::collection::vec(
                (record(), prop::option::of(text()), text(), timestamp()),
                0..3,
            ),
        )
            .prop_map(|(lineage, serial, records, failed)| {
                let packages: BTreeMap<_, _> =
                    records.into_iter().map(|r| (r.spec.key(), r)).collect();
                let failed: FailedAttempts = failed
                    .into_iter()
                    .map(|(r, code, message, at)| {
                        (r.spec.key(), FailedAttempt { code, message, at })
                    })
                    .collect();
                encode(
                    path(),
                    &lineage,
                    serial,
                    &packages,
                    &failed,
                    &Default::default(),
                )
                .unwrap()
                .0
            })
    }

    /// Edits of a written file: whitespace, escapes serde_json would not
    /// write, keys out of order, values spelled otherwise, random bytes.
    fn mutate(bytes: &[u8], which: usize, at: usize, byte: u8) -> Vec<u8> {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let swap_lines = |text: &str, field: &str| {
            let mut lines: Vec<&str> = text.lines().collect();
            if let Some(i) = lines.iter().position(|l| l.trim_start().starts_with(field))
                && i + 2 < lines.len()
                && lines[i + 1].ends_with(',')
            {
                lines.swap(i, i + 1);
            }
            lines.join("\n")
        };
        let replaced = |from: &str, to: &str| text.replacen(from, to, 1).into_bytes();
        match which % 16 {
            0 => bytes.to_vec(),
            1 => compact(bytes),
            2 => text.replace('\n', "\r\n \t").into_bytes(),
            3 => serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(bytes).unwrap())
                .unwrap(),
            4 => replaced("\"advanced\"", "\"adv\\u0061nced\""),
            5 => replaced("Z\"", "+00:00\""),
            6 => replaced(":00Z\"", ":60Z\""),
            7 => replaced("\"name\": null,", ""),
            8 => replaced("\"by_policy\": true", "\"by_policy\": false"),
            9 => replaced("\n    }\n  }", ",\n      \"confirmed\": null\n    }\n  }"),
            10 => swap_lines(&text, "\"spec_hash\"").into_bytes(),
            11 => swap_lines(&text, "\"serial\"").into_bytes(),
            12 => replaced("\\\\", "\\u005c"),
            13 => replaced("/", "\\/"),
            14 => replaced("\"serial\": 0", "\"serial\": -0"),
            _ => {
                let mut bytes = bytes.to_vec();
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
                bytes
            }
        }
    }

    #[test]
    fn a_written_file_is_summed_over_its_own_bytes() {
        let (bytes, sum) = encode(
            path(),
            "lineage-1",
            3,
            &super::super::tests::packages(),
            &FailedAttempts::new(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(super::checksum(&bytes), Some(sum.clone()));
        assert_eq!(super::checksum(&compact(&bytes)), Some(sum));
    }

    #[test]
    fn a_leap_second_or_an_offset_is_not_canonical_even_when_summed_raw() {
        let (bytes, _) = encode(
            path(),
            "lineage-1",
            3,
            &super::super::tests::packages(),
            &FailedAttempts::new(),
            &Default::default(),
        )
        .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        for edited in [
            text.replacen(":00Z\"", ":60Z\"", 1),
            text.replacen("Z\"", "+00:00\"", 1),
            text.replacen("\"Success\"", "\"Succ\\u0065ss\"", 1),
        ] {
            let sealed = reseal_raw(edited.as_bytes()).unwrap();
            assert_eq!(super::checksum(&sealed), None, "{edited}");
            let err = decode(path(), &sealed).unwrap_err();
            assert!(err.to_string().contains("checksum"), "{err}");
        }
    }

    #[test]
    fn a_year_before_0000_is_re_encoded() {
        let mut packages = super::super::tests::packages();
        for record in packages.values_mut() {
            record.submitted_at = Some(jiff::Timestamp::new(-62_167_219_201, 0).unwrap());
        }
        let (bytes, sum) = encode(
            path(),
            "lineage-1",
            3,
            &packages,
            &FailedAttempts::new(),
            &Default::default(),
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains("\"-000001-12-31T23:59:59Z\""));
        assert_eq!(super::checksum(&bytes), None);
        assert_eq!(decode(path(), &bytes).unwrap().checksum, sum);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the bytes, `decode` answers what re-encoding answers:
        /// the same state or the same refusal.
        #[test]
        fn the_fast_check_accepts_exactly_what_reencoding_accepts(
            bytes in state(),
            which in 0..32_usize,
            at in any::<usize>(),
            byte in any::<u8>(),
        ) {
            let canonical = super::checksum(&bytes);
            let disk = decode_by_reencoding(&bytes).unwrap();
            prop_assert_eq!(canonical, Some(disk.checksum.clone()));
            // A written file streams, in blocks of any size, to the same
            // state, with the length and SHA-256 of its bytes.
            for block in [1, 7, super::BLOCK] {
                let (streamed, raw) = stream_in_blocks(path(), &bytes[..], true, block).unwrap().unwrap();
                prop_assert_eq!(&streamed, &disk);
                prop_assert_eq!(raw, Some((bytes.len() as u64, sha256_tagged(&bytes))));
            }
            let edited = mutate(&bytes, which, at, byte);
            // Also sealed over its own compact tokens, as a tool that does
            // not re-encode would seal it.
            let sealed = if which >= 16 { reseal_raw(&edited) } else { None };
            for bytes in [Some(edited), sealed].into_iter().flatten() {
                let fast = decode(path(), &bytes).map_err(|e| e.to_string());
                prop_assert_eq!(&fast, &decode_by_reencoding(&bytes));
                // Streamed in small blocks: the same answer, or none (then
                // the file is read whole).
                for block in [1, 7] {
                    if let Some(streamed) = stream_in_blocks(path(), &bytes[..], false, block) {
                        let streamed = streamed.map(|(disk, _)| disk).map_err(|e| e.to_string());
                        prop_assert_eq!(&streamed, &fast);
                    }
                }
                if let (Ok(disk), Some(sum)) = (&fast, super::checksum(&bytes)) {
                    prop_assert_eq!(&sum, &disk.checksum);
                    prop_assert_eq!(
                        sum,
                        encoded_checksum(path(), Some(&disk.lineage), disk.serial, &disk.packages, &disk.failed_attempts, &disk.observations).unwrap()
                    );
                }
            }
        }
    }
}
