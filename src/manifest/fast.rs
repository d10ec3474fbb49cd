//! The fast reader: manifests written in the plain block style that
//! `oapkg` documents and generators write, read line by line into the same
//! [`raw`](super::raw) documents, with the same locations, as serde-saphyr
//! gives — about twenty times faster, since a large manifest is five lines
//! per package and no general YAML machinery is needed to read them.
//!
//! The style it knows: `PackageSet` documents (separated by `---` lines) of
//! `apiVersion`, `kind`, `defaults` (a block mapping of `tier` and
//! `duration`) and `packages` (a block sequence of block mappings of the
//! package fields, indented under `packages:` or not), each key once; values
//! on the key's line, plain, `"double-quoted"` without escapes or
//! `'single-quoted'` without `''`; whole-line and trailing comments, blank
//! lines, LF line ends. Plain values are only those whose YAML type is
//! certain: decimal integers without a leading zero, `YYYY-MM-DD` dates
//! (text), and text that starts with a letter and holds no YAML indicator
//! and is no null, boolean or special float word.
//!
//! Anything else — a flow collection, an anchor, a tag, an unknown or
//! repeated key, an empty value, another kind, a tab, CR, a byte-order mark,
//! a control character — makes [`parse`] answer `None`, and the file is
//! read by serde-saphyr as before. So every file with a problem, and every
//! YAML error, is reported by the positioned parser exactly as without this
//! reader; this one only ever reads files both agree on (a property test in
//! `tests/it/properties/yaml.rs` holds them to it).

use super::raw::{
    Field, Location, PackageEntry, PackageList, RawDefaults, RawDocument, RawPackage, Scalar,
    Spanned,
};

/// The documents of `text` when all of it is in the style this reader
/// knows, else `None` (read it with serde-saphyr).
pub fn parse(text: &str) -> Option<Vec<Spanned<RawDocument>>> {
    if !plain_characters(text) {
        return None;
    }
    Reader {
        text,
        next: 0,
        number: 0,
        peeked: None,
    }
    .stream()
}

/// No byte-order mark, CR, tab or other control character, and no
/// character YAML 1.1 reads as a line break or does not print.
fn plain_characters(text: &str) -> bool {
    let bytes_ok = text.bytes().all(|b| (b >= 0x20 && b != 0x7f) || b == b'\n');
    bytes_ok
        && (text.is_ascii()
            || !text.chars().any(|c| {
                matches!(
                    c,
                    '\u{80}'
                        ..='\u{a0}'
                            | '\u{2028}'
                            | '\u{2029}'
                            | '\u{feff}'
                            | '\u{fffe}'
                            | '\u{ffff}'
                )
            }))
}

/// One line that holds something (not blank, not only a comment).
#[derive(Clone, Copy)]
struct Line<'a> {
    /// 1-based.
    number: usize,
    /// Byte offset of the line's first character.
    start: usize,
    /// Leading spaces.
    indent: usize,
    /// The line after its indentation, without the line end.
    rest: &'a str,
}

impl Line<'_> {
    /// The location of the token at byte `at` of `rest`, `len` bytes long.
    fn location(&self, at: usize, len: usize) -> Location {
        // Everything before a token is ASCII (indentation, `- `, `key: `),
        // so its column in characters is its column in bytes.
        let column = self.indent + at;
        Location::new(self.number, column + 1, self.start + column, len)
    }

    fn is_document_marker(&self) -> bool {
        self.indent == 0 && self.rest.trim_end_matches(' ') == "---"
    }

    /// `key:` at byte `at` of `rest`: the key and the byte after the colon.
    fn key(&self, at: usize) -> Option<(&str, usize)> {
        let text = self.rest.get(at..)?;
        let colon = text.find(':')?;
        let key = &text[..colon];
        let after = at + colon + 1;
        let well_formed = !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_alphanumeric())
            && matches!(self.rest.as_bytes().get(after), None | Some(b' '));
        well_formed.then_some((key, after))
    }

    /// The value after a key's colon (byte `after`): `None` when the line
    /// ends there (or holds only a comment), else the scalar, or a failure
    /// when it is not one this reader knows.
    fn value(&self, after: usize) -> Result<Option<Field>, Unknown> {
        let text = &self.rest[after..];
        let at = after + (text.len() - text.trim_start_matches(' ').len());
        let text = &self.rest[at..];
        if text.is_empty() || text.starts_with('#') {
            return Ok(None);
        }
        let (value, len) = match text.as_bytes()[0] {
            b'"' => {
                let close = 1 + text[1..].find('"').ok_or(Unknown)?;
                let content = &text[1..close];
                if content.contains('\\') || !ends_the_line(&text[close + 1..]) {
                    return Err(Unknown);
                }
                (Scalar::Text(content.to_owned()), close + 1)
            }
            b'\'' => {
                let (content, len) = single_quoted(text).ok_or(Unknown)?;
                if !ends_the_line(&text[len..]) {
                    return Err(Unknown);
                }
                (Scalar::Text(content), len)
            }
            _ => {
                let end = text.find(" #").unwrap_or(text.len());
                let written = text[..end].trim_end_matches(' ');
                (plain(written).ok_or(Unknown)?, written.len())
            }
        };
        Ok(Some(Spanned {
            value,
            referenced: self.location(at, len),
        }))
    }
}

/// What follows a closing quote: nothing, or spaces and a comment.
fn ends_the_line(text: &str) -> bool {
    let trimmed = text.trim_start_matches(' ');
    trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < text.len())
}

/// A single-quoted value on one line (`''` is a quote): its text and the
/// bytes it takes, quotes included.
fn single_quoted(text: &str) -> Option<(String, usize)> {
    let mut content = String::new();
    let mut from = 1;
    loop {
        let quote = from + text[from..].find('\'')?;
        content.push_str(&text[from..quote]);
        if text.as_bytes().get(quote + 1) == Some(&b'\'') {
            content.push('\'');
            from = quote + 2;
        } else {
            return Some((content, quote + 1));
        }
    }
}

/// A plain value whose YAML type is certain, as YAML types it (with the
/// manifest's parser settings: YAML 1.2 booleans, numbers with a leading
/// zero kept as text).
fn plain(written: &str) -> Option<Scalar> {
    let bytes = written.as_bytes();
    let first = written.chars().next()?;
    if matches!(written, "~" | "null" | "Null" | "NULL") {
        return Some(Scalar::Null);
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return match bytes {
            [b'0'] => None,
            [b'0', ..] => Some(Scalar::Text(written.to_owned())),
            // 18 digits always fit an i64.
            _ if bytes.len() <= 18 => written.parse().ok().map(Scalar::Unsigned),
            _ => None,
        };
    }
    if first.is_ascii_digit() {
        return is_date(bytes).then(|| Scalar::Text(written.to_owned()));
    }
    const INDICATORS: &[char] = &[
        ':', '#', '{', '}', '[', ']', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`', '\\',
    ];
    const WORDS: &[&str] = &[
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf", "infinity",
    ];
    let special = !first.is_alphabetic()
        || written.contains(INDICATORS)
        || WORDS.iter().any(|w| w.eq_ignore_ascii_case(written));
    (!special).then(|| Scalar::Text(written.to_owned()))
}

/// `YYYY-MM-DD` in digits (a plain value YAML keeps as text).
fn is_date(bytes: &[u8]) -> bool {
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// Something this reader does not know: read the file with serde-saphyr.
struct Unknown;

struct Reader<'a> {
    text: &'a str,
    /// Byte offset of the next line not yet looked at.
    next: usize,
    /// Number of the last line looked at.
    number: usize,
    peeked: Option<Line<'a>>,
}

impl<'a> Reader<'a> {
    /// The next line that holds something, without consuming it.
    fn peek(&mut self) -> Option<Line<'a>> {
        if self.peeked.is_none() {
            self.peeked = self.read_line();
        }
        self.peeked
    }

    fn bump(&mut self) {
        self.peeked = None;
    }

    fn read_line(&mut self) -> Option<Line<'a>> {
        while self.next < self.text.len() {
            let start = self.next;
            let end = self.text[start..]
                .find('\n')
                .map_or(self.text.len(), |i| start + i);
            self.next = end + 1;
            self.number += 1;
            let line = &self.text[start..end];
            let rest = line.trim_start_matches(' ');
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            return Some(Line {
                number: self.number,
                start,
                indent: line.len() - rest.len(),
                rest,
            });
        }
        None
    }

    fn stream(mut self) -> Option<Vec<Spanned<RawDocument>>> {
        let mut documents = Vec::new();
        // A `---` was read and its document not yet.
        let mut marker = false;
        while let Some(line) = self.peek() {
            if line.is_document_marker() {
                if marker {
                    // An empty document.
                    return None;
                }
                marker = true;
                self.bump();
                continue;
            }
            documents.push(self.document().ok()?);
            marker = false;
        }
        (!marker && !documents.is_empty()).then_some(documents)
    }

    fn document(&mut self) -> Result<Spanned<RawDocument>, Unknown> {
        let first = self.peek().ok_or(Unknown)?;
        let at = first.location(0, 0);
        let mut doc = RawDocument::default();
        while let Some(line) = self.peek() {
            if line.is_document_marker() {
                break;
            }
            if line.indent != 0 {
                return Err(Unknown);
            }
            let (key, after) = line.key(0).ok_or(Unknown)?;
            let value = line.value(after)?;
            self.bump();
            match (key, value) {
                ("apiVersion", Some(value)) if doc.api_version.is_none() => {
                    doc.api_version = Some(value);
                }
                ("kind", Some(value)) if doc.kind.is_none() => doc.kind = Some(value),
                ("defaults", None) if doc.defaults.is_none() => {
                    doc.defaults = Some(self.defaults()?);
                }
                ("packages", None) if doc.packages.is_none() => {
                    doc.packages = Some(self.packages()?);
                }
                _ => return Err(Unknown),
            }
        }
        Ok(Spanned {
            value: doc,
            referenced: at,
        })
    }

    /// The block mapping under `defaults:`.
    fn defaults(&mut self) -> Result<Spanned<RawDefaults>, Unknown> {
        let first = self.peek().filter(|l| l.indent > 0).ok_or(Unknown)?;
        let indent = first.indent;
        let mut defaults = RawDefaults::default();
        while let Some(line) = self.peek().filter(|l| l.indent != 0) {
            if line.indent != indent {
                return Err(Unknown);
            }
            let (key, after) = line.key(0).ok_or(Unknown)?;
            let value = line.value(after)?.ok_or(Unknown)?;
            self.bump();
            let slot = match key {
                "tier" => &mut defaults.tier,
                "duration" => &mut defaults.duration,
                _ => return Err(Unknown),
            };
            if slot.replace(value).is_some() {
                return Err(Unknown);
            }
        }
        Ok(Spanned {
            value: defaults,
            referenced: first.location(0, 0),
        })
    }

    /// The block sequence under `packages:`, indented or not.
    fn packages(&mut self) -> Result<Spanned<PackageList>, Unknown> {
        let first = self.peek().ok_or(Unknown)?;
        let indent = first.indent;
        let mut entries = Vec::new();
        let mut at = None;
        while let Some(line) = self.peek() {
            if line.indent < indent || (line.indent == indent && !line.rest.starts_with("- ")) {
                // The next key of the document, or something else.
                if line.indent == 0 {
                    break;
                }
                return Err(Unknown);
            }
            if line.indent > indent {
                return Err(Unknown);
            }
            let (entry, entry_at) = self.package(line)?;
            // The parser places an indented sequence at its first dash, a
            // sequence at its key's own indentation at its first entry.
            at.get_or_insert(if indent == 0 {
                entry_at
            } else {
                line.location(0, 0)
            });
            entries.push(Spanned {
                value: PackageEntry::Package(Box::new(entry)),
                referenced: entry_at,
            });
        }
        Ok(Spanned {
            value: PackageList::Entries(entries),
            referenced: at.ok_or(Unknown)?,
        })
    }

    /// One `- key: value` entry and the lines of its other keys.
    fn package(&mut self, line: Line<'a>) -> Result<(RawPackage, Location), Unknown> {
        let after_dash = &line.rest[2..];
        let key_at = 2 + (after_dash.len() - after_dash.trim_start_matches(' ').len());
        let column = line.indent + key_at;
        let at = line.location(key_at, 0);
        let mut package = RawPackage::default();
        let mut current = line;
        let mut from = key_at;
        loop {
            let (key, after) = current.key(from).ok_or(Unknown)?;
            let value = match current.value(after)? {
                Some(value) => value,
                // `name:` with nothing after it (a null).
                None => Spanned {
                    value: Scalar::Null,
                    // The parser places it at the colon.
                    referenced: current.location(after - 1, 0),
                },
            };
            self.bump();
            let slot = match key {
                "oaid" => &mut package.oaid,
                "name" => &mut package.name,
                "tier" => &mut package.tier,
                "start" => &mut package.start,
                "duration" => &mut package.duration,
                _ => return Err(Unknown),
            };
            if slot.replace(value).is_some() {
                return Err(Unknown);
            }
            match self.peek() {
                Some(next) if next.indent == column => {
                    current = next;
                    from = 0;
                }
                Some(next) if next.indent > column => return Err(Unknown),
                _ => return Ok((package, at)),
            }
        }
    }
}
