//! The secrets that come from the environment (the eSMS account keys, an
//! S3 state's AWS credentials): which variables hold them, the one way
//! their values are scrubbed from text that leaves the process (an S3
//! error message, a webhook notification), and the check that keeps the
//! eSMS keys out of manifests ([`in_manifests`]): a key pasted into a
//! `name` would reach plans, the state and `/metrics` labels.

use std::path::PathBuf;

use crate::manifest::{Diagnostic, DiagnosticKind, Source};

/// The eSMS account keys.
pub const ESMS_VARS: [&str; 2] = ["ESMS_API_KEY", "ESMS_SECRET_KEY"];

/// An S3 state's credentials.
pub const AWS_VARS: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// What a scrubbed secret reads as.
pub use crate::esms::credentials::REDACTED;

/// The values of the variables `names` that are set and not blank.
pub fn from_env<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .collect()
}

/// `text` with every occurrence of each of `secrets` replaced by
/// [`REDACTED`].
pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |out, secret| {
        if !secret.is_empty() && out.contains(secret.as_str()) {
            out.replace(secret.as_str(), REDACTED)
        } else {
            out
        }
    })
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

/// The eSMS ApiKey and SecretKey of `credentials`, as far as they are long
/// enough to look for (see [`MIN_MANIFEST_SECRET_CHARS`]).
pub fn esms_keys(credentials: &crate::esms::Credentials) -> Vec<Forbidden> {
    [
        Forbidden::new("the eSMS ApiKey", credentials.api_key().expose()),
        Forbidden::new("the eSMS SecretKey", credentials.secret_key().expose()),
    ]
    .into_iter()
    .flatten()
    .collect()
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
        let secrets = vec!["wJalrXUtnFEMI/K7MDENG".to_owned(), String::new()];
        assert_eq!(
            super::scrub(
                "key wJalrXUtnFEMI/K7MDENG, again wJalrXUtnFEMI/K7MDENG",
                &secrets
            ),
            "key [redacted], again [redacted]"
        );
        assert_eq!(super::scrub("nothing", &secrets), "nothing");
    }
}
