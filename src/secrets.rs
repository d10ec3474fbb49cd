//! The secrets oapkg holds (the eSMS account keys, an S3 state's AWS
//! credentials, the webhook signing key): which variables hold them, the one [`Scrubber`] that every
//! text leaving the process goes through (an answer from eSMS, an S3 error
//! message, a webhook notification), and the check that keeps the eSMS
//! keys out of manifests ([`in_manifests`]): a key pasted into a `name`
//! would reach plans, the state and `/metrics` labels.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use crate::manifest::{Diagnostic, DiagnosticKind, Source};

/// The eSMS account keys.
pub const ESMS_VARS: [&str; 2] = ["ESMS_API_KEY", "ESMS_SECRET_KEY"];

/// An S3 state's credentials.
pub const AWS_VARS: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// The key that signs webhook notifications (`--notify`).
pub const NOTIFY_VARS: [&str; 1] = ["OAPKG_NOTIFY_SECRET"];

/// What `Debug`, `Display` and a scrubbed text print in place of a secret.
pub const REDACTED: &str = "[redacted]";

/// The values of the variables `names` that are set and not blank.
pub fn from_env<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .collect()
}

/// The one way secrets leave text that leaves the process (errors, log
/// lines, notifications, S3 messages, answers from eSMS): every whole
/// value, and every piece of one at least [`KEY_PIECE_CHARS`] characters
/// long, becomes [`REDACTED`]. Pieces count too: a server may echo a
/// request cut short, and a text cut for an excerpt may end in the middle
/// of a key. Fed by every secret the process knows (the eSMS keys, the S3
/// credentials); cheap to clone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scrubber {
    secrets: Arc<[String]>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} secrets)", self.secrets.len())
    }
}

impl Scrubber {
    /// A scrubber for `secrets` (trimmed; blank ones dropped).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Scrubber {
        let secrets: Vec<String> = secrets
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        Scrubber {
            secrets: secrets.into(),
        }
    }

    /// This one and `other`'s secrets too.
    pub fn and(&self, other: &Scrubber) -> Scrubber {
        Scrubber::new(self.secrets.iter().chain(other.secrets.iter()).cloned())
    }

    /// `text` with every secret, whole or in pieces, replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        let keys: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        redact_pieces(&out, &keys)
    }

    /// `body` with every whole secret replaced, before anything is cut
    /// from it for a message (a secret cut in two by an excerpt would no
    /// longer be found whole). Borrows when none is there, which is the
    /// usual case, so a large answer is not copied.
    pub fn scrub_bytes<'a>(&self, body: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out = Cow::Borrowed(body);
        for secret in self.secrets.iter() {
            let needle = secret.as_bytes();
            if find(&out, needle).is_none() {
                continue;
            }
            let mut replaced = Vec::with_capacity(out.len());
            let mut rest: &[u8] = &out;
            while let Some(at) = find(rest, needle) {
                replaced.extend_from_slice(&rest[..at]);
                replaced.extend_from_slice(REDACTED.as_bytes());
                rest = &rest[at + needle.len()..];
            }
            replaced.extend_from_slice(rest);
            out = Cow::Owned(replaced);
        }
        out
    }
}

/// The shortest run of a key's characters that [`Scrubber::scrub`]
/// treats as a piece of the key. Shorter runs are left: they tell little
/// about a key and would redact ordinary words.
pub(crate) const KEY_PIECE_CHARS: usize = 6;

/// The first run of [`KEY_PIECE_CHARS`] characters of one of `keys` that
/// occurs in `text`, if any: what [`Scrubber::scrub`] must leave none
/// of. For tests and the fuzz targets, which check output against it.
pub fn key_piece_in(text: &str, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|key| {
        let chars: Vec<char> = key.chars().collect();
        chars
            .windows(KEY_PIECE_CHARS)
            .map(|w| w.iter().collect::<String>())
            .find(|piece| text.contains(piece.as_str()))
    })
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut from = 0;
    while let Some(offset) = haystack.get(from..)?.iter().position(|&b| b == first) {
        let at = from + offset;
        if haystack.get(at..at + needle.len())? == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `text` with every run of at least [`KEY_PIECE_CHARS`] characters that
/// also occurs in one of `keys` replaced by `[redacted]` (longest run
/// first, left to right).
fn redact_pieces(text: &str, keys: &[&str]) -> String {
    let keys: Vec<Vec<char>> = keys.iter().map(|k| k.chars().collect()).collect();
    // Every window of KEY_PIECE_CHARS characters of a key: a run can only
    // start where one of them does, which keeps the scan linear.
    let windows: std::collections::HashSet<&[char]> = keys
        .iter()
        .flat_map(|k| k.windows(KEY_PIECE_CHARS))
        .collect();
    if windows.is_empty() {
        return text.to_owned();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let hit = chars
            .get(i..i + KEY_PIECE_CHARS)
            .is_some_and(|w| windows.contains(w));
        if !hit {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let longest = keys
            .iter()
            .flat_map(|key| (0..key.len()).map(move |j| &key[j..]))
            .map(|tail| {
                tail.iter()
                    .zip(&chars[i..])
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .max()
            .unwrap_or(KEY_PIECE_CHARS);
        out.push_str(REDACTED);
        i += longest.max(KEY_PIECE_CHARS);
    }
    out
}

/// The shortest secret value [`in_manifests`] looks for. eSMS keys are 32
/// characters; a value this short or shorter (a test account's
/// `test-key`) says nothing about a key and could be an ordinary word in a
/// manifest, which would then be refused.
pub const MIN_MANIFEST_SECRET_CHARS: usize = 16;

/// A secret to keep out of manifests: what it is called (never its value)
/// and its value.
#[derive(Clone)]
pub struct Forbidden {
    name: &'static str,
    value: String,
}

impl std::fmt::Debug for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Forbidden({}, {REDACTED})", self.name)
    }
}

impl Forbidden {
    /// `value` (trimmed) under `name`, e.g. `"the eSMS ApiKey"`; `None`
    /// when it is shorter than [`MIN_MANIFEST_SECRET_CHARS`] characters.
    pub fn new(name: &'static str, value: &str) -> Option<Forbidden> {
        let value = value.trim();
        (value.chars().count() >= MIN_MANIFEST_SECRET_CHARS).then(|| Forbidden {
            name,
            value: value.to_owned(),
        })
    }
}

/// Where `value` first occurs in `text`, ASCII letters in any case: the
/// 1-based line and column (in characters).
fn locate(text: &str, value: &str) -> Option<(u32, u32)> {
    let (haystack, needle) = (text.as_bytes(), value.as_bytes());
    let at = haystack
        .windows(needle.len().max(1))
        .position(|w| w.eq_ignore_ascii_case(needle))?;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Some((
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    ))
}

/// The manifest files among `files` holding one of `secrets` anywhere (a
/// name, a comment), one error each, naming the file, line and column and
/// which secret it is, never the value. Reads the files (regular files
/// only); one that cannot be read is skipped: loading the manifests
/// reports it.
pub fn in_manifests(files: &[PathBuf], secrets: &[Forbidden]) -> Vec<Diagnostic> {
    if secrets.is_empty() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for path in files {
        let Ok(bytes) = crate::files::read_regular(path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for secret in secrets {
            if let Some((line, column)) = locate(&text, &secret.value) {
                found.push(Diagnostic {
                    source: Source {
                        file: path.display().to_string(),
                        line,
                        column,
                    },
                    message: format!(
                        "this manifest holds {}'s value: remove it (a key in a manifest would reach plans, \
                         the state and /metrics labels, so nothing is bought from it); if the file was \
                         committed or shared, rotate the key on the eSMS portal",
                        secret.name
                    ),
                    key: None,
                    related: None,
                    kind: DiagnosticKind::General,
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "9B4F2C7D1E8A3F6B0C5D9E2A7F1B4C8D";

    #[test]
    fn a_key_is_found_with_its_line_and_column_in_any_case() {
        let text = format!("a: 1\n  name: \"Shop {}\"\n", KEY.to_lowercase());
        assert_eq!(locate(&text, KEY), Some((2, 15)));
        assert_eq!(
            locate("Cửa hàng 9B4F2C7D1E8A3F6B0C5D9E2A7F1B4C8D", KEY),
            Some((1, 10))
        );
        assert_eq!(
            locate("9B4F2C7D1E8A3F6B0C5D9E2A7F1B4C8", KEY),
            None,
            "a part is not the key"
        );
    }

    #[test]
    fn short_values_are_not_looked_for_and_never_shown() {
        assert!(Forbidden::new("the eSMS ApiKey", "test-key").is_none());
        assert!(Forbidden::new("the eSMS ApiKey", "  0123456789abcde  ").is_none());
        let key = Forbidden::new("the eSMS ApiKey", KEY).unwrap();
        assert!(!format!("{key:?}").contains(KEY));

        let dir = tempfile::tempdir().unwrap();
        let clean = dir.path().join("clean.yaml");
        let pasted = dir.path().join("pasted.yaml");
        std::fs::write(&clean, "name: Shop\n").unwrap();
        std::fs::write(&pasted, format!("# ok\n# {KEY}\n")).unwrap();
        let found = in_manifests(&[clean, pasted.clone(), dir.path().join("gone")], &[key]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].source.file, pasted.display().to_string());
        assert_eq!((found[0].source.line, found[0].source.column), (2, 3));
        assert!(found[0].message.contains("the eSMS ApiKey"));
        assert!(!found[0].to_string().contains(KEY));
    }

    #[test]
    fn every_occurrence_is_redacted() {
        let scrubber = Scrubber::new(["wJalrXUtnFEMI/K7MDENG".to_owned(), String::new()]);
        assert_eq!(
            scrubber.scrub("key wJalrXUtnFEMI/K7MDENG, again wJalrXUtnFEMI/K7MDENG"),
            "key [redacted], again [redacted]"
        );
        assert_eq!(scrubber.scrub("nothing"), "nothing");
        // Pieces too, for every secret: an S3 key cut short by an excerpt.
        assert_eq!(scrubber.scrub("sent wJalrXUt…"), "sent [redacted]…");
        let both = scrubber.and(&Scrubber::new(["SECRET-51ab".to_owned()]));
        assert_eq!(
            both.scrub("a SECRET-51ab b K7MDENG"),
            "a [redacted] b [redacted]"
        );
    }
}
