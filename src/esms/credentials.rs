//! The eSMS account keys: where they come from (environment or a private
//! file) and how they are kept out of every output.
//!
//! This module owns [`Secret`] and [`Credentials`]. A key's value leaves a
//! `Secret` only through `Secret::expose`, which is visible inside the
//! `esms` module alone, and only the wire encoder calls it. Every `Debug`,
//! `Display` and error message here is written so that it cannot contain a
//! value: errors name the file, the line number and the variable, never what
//! was on the line.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::files::{FileKind, OpenError};

/// Environment variable holding the account's ApiKey.
pub const API_KEY_VAR: &str = "ESMS_API_KEY";
/// Environment variable holding the account's SecretKey.
pub const SECRET_KEY_VAR: &str = "ESMS_SECRET_KEY";

pub use crate::secrets::REDACTED;
use crate::secrets::Scrubber;

/// Largest credentials file read: two short lines need far less, and a cap
/// keeps a wrong path (a log, a device) from being slurped into memory.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// A string that must never be printed: `Debug` and `Display` show
/// `[redacted]`, and there is no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the request body and nothing else.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The ApiKey and SecretKey of one eSMS account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    api_key: Secret,
    secret_key: Secret,
    /// Both keys, made once: every answer from eSMS goes through it.
    scrubber: Scrubber,
}

/// Why credentials could not be had. No variant holds a key's value, nor the
/// text of a line that might be one.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no eSMS credentials: set {API_KEY_VAR} and {SECRET_KEY_VAR}, or pass --credentials FILE"
    )]
    MissingEnv,
    #[error("{name} is set but empty")]
    EmptyEnv { name: &'static str },
    #[error("{name} is not valid UTF-8")]
    NotUnicodeEnv { name: &'static str },
    #[error("{name} is set but {other} is not: both keys are needed")]
    HalfEnv {
        name: &'static str,
        other: &'static str,
    },
    #[error("the {name} value must not be empty")]
    EmptyValue { name: &'static str },
    #[error("cannot read credentials file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials file {} is {kind}; it must be a regular file (nothing was read)", path.display())]
    NotAFile { path: PathBuf, kind: FileKind },
    #[error(
        "credentials file {} is readable by group or others (mode {mode:04o}); \
         it holds the account keys, so run `chmod 600 {}` and try again",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("credentials file {} is larger than {MAX_FILE_BYTES} bytes; is it the right file?", path.display())]
    TooLarge { path: PathBuf },
    #[error("credentials file {} is not valid UTF-8", path.display())]
    NotUnicodeFile { path: PathBuf },
    #[error(
        "credentials file {}, line {line}: expected NAME=value \
         ({API_KEY_VAR}=... or {SECRET_KEY_VAR}=...)",
        path.display()
    )]
    Malformed { path: PathBuf, line: usize },
    // The name is shown only when it starts with `ESMS_` (a likely typo of a
    // known name); anything else on the left of `=` might itself be a key
    // pasted in the wrong place, so it is not echoed.
    #[error(
        "credentials file {}, line {line}: unknown name{}; expected {API_KEY_VAR} or {SECRET_KEY_VAR}",
        path.display(),
        shown_name.as_deref().map(|n| format!(" `{n}`")).unwrap_or_default()
    )]
    UnknownName {
        path: PathBuf,
        line: usize,
        shown_name: Option<String>,
    },
    #[error("credentials file {}, line {line}: {name} is set a second time", path.display())]
    Duplicate {
        path: PathBuf,
        line: usize,
        name: &'static str,
    },
    #[error("credentials file {}, line {line}: {name} has an empty value", path.display())]
    EmptyInFile {
        path: PathBuf,
        line: usize,
        name: &'static str,
    },
    #[error("credentials file {} does not set {name}", path.display())]
    MissingInFile { path: PathBuf, name: &'static str },
}

impl Credentials {
    /// Credentials from two values, refusing empty ones.
    pub fn new(
        api_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Result<Self, CredentialsError> {
        let api_key = api_key.into();
        let secret_key = secret_key.into();
        if api_key.trim().is_empty() {
            return Err(CredentialsError::EmptyValue { name: API_KEY_VAR });
        }
        if secret_key.trim().is_empty() {
            return Err(CredentialsError::EmptyValue {
                name: SECRET_KEY_VAR,
            });
        }
        let (api_key, secret_key) = (api_key.trim().to_owned(), secret_key.trim().to_owned());
        Ok(Credentials {
            scrubber: Scrubber::new([api_key.clone(), secret_key.clone()]),
            api_key: Secret(api_key),
            secret_key: Secret(secret_key),
        })
    }

    /// `ESMS_API_KEY` and `ESMS_SECRET_KEY` from the process environment.
    pub fn from_env() -> Result<Self, CredentialsError> {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// The same as [`Credentials::from_env`] over any variable lookup, so the
    /// rules can be tested without touching the process environment.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, CredentialsError> {
        let read = |name: &'static str| -> Result<Option<String>, CredentialsError> {
            match lookup(name) {
                None => Ok(None),
                Some(value) => {
                    let value = value
                        .into_string()
                        .map_err(|_| CredentialsError::NotUnicodeEnv { name })?;
                    if value.trim().is_empty() {
                        return Err(CredentialsError::EmptyEnv { name });
                    }
                    Ok(Some(value))
                }
            }
        };
        match (read(API_KEY_VAR)?, read(SECRET_KEY_VAR)?) {
            (Some(api), Some(secret)) => Credentials::new(api, secret),
            (None, None) => Err(CredentialsError::MissingEnv),
            (Some(_), None) => Err(CredentialsError::HalfEnv {
                name: API_KEY_VAR,
                other: SECRET_KEY_VAR,
            }),
            (None, Some(_)) => Err(CredentialsError::HalfEnv {
                name: SECRET_KEY_VAR,
                other: API_KEY_VAR,
            }),
        }
    }

    /// Credentials from a file of `NAME=value` lines (`ESMS_API_KEY`,
    /// `ESMS_SECRET_KEY`; blank lines and `#` comments allowed, an `export `
    /// prefix and quotes around the value tolerated so a shell env file
    /// works as is).
    ///
    /// On Unix the file is refused when group or others may read it: a key
    /// that others can read is already leaked, and refusing is the only way
    /// to make someone notice.
    pub fn from_file(path: &Path) -> Result<Self, CredentialsError> {
        let read_err = |source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        };
        // The checks are made on the opened file, not on the path, so the
        // file that is checked is the file that is read.
        let (file, meta) = crate::files::open_regular(path).map_err(|err| match err {
            OpenError::NotRegular(kind) => CredentialsError::NotAFile {
                path: path.to_owned(),
                kind,
            },
            OpenError::Io(source) => read_err(source),
        })?;
        check_private(path, &meta)?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(CredentialsError::TooLarge {
                path: path.to_owned(),
            });
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(CredentialsError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| CredentialsError::NotUnicodeFile {
            path: path.to_owned(),
        })?;
        parse_file(path, &text)
    }

    pub(crate) fn api_key(&self) -> &Secret {
        &self.api_key
    }

    pub(crate) fn secret_key(&self) -> &Secret {
        &self.secret_key
    }

    /// The one scrubber ([`Scrubber`]) fed with both keys: applied to
    /// everything the server sends back that ends up in an outcome or
    /// error (messages, body excerpts). eSMS never echoes the keys as far
    /// as we know, but a proxy error page or a misbehaving server could,
    /// and what we print must not depend on that.
    pub fn scrubber(&self) -> Scrubber {
        self.scrubber.clone()
    }

    /// The ApiKey and SecretKey as secrets no manifest may hold, as far as
    /// they are long enough to look for
    /// ([`MIN_MANIFEST_SECRET_CHARS`](crate::secrets::MIN_MANIFEST_SECRET_CHARS)).
    pub fn forbidden(&self) -> Vec<crate::secrets::Forbidden> {
        [
            crate::secrets::Forbidden::new("the eSMS ApiKey", self.api_key.expose()),
            crate::secrets::Forbidden::new("the eSMS SecretKey", self.secret_key.expose()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        self.scrubber.scrub(text)
    }

    pub(crate) fn scrub_bytes<'a>(&self, body: &'a [u8]) -> Cow<'a, [u8]> {
        self.scrubber.scrub_bytes(body)
    }
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), CredentialsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), CredentialsError> {
    // No portable notion of "group or others"; ACLs are the user's business.
    Ok(())
}

fn parse_file(path: &Path, text: &str) -> Result<Credentials, CredentialsError> {
    let mut api_key = None;
    let mut secret_key = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let trimmed = trimmed
            .strip_prefix("export ")
            .unwrap_or(trimmed)
            .trim_start();
        let Some((name, value)) = trimmed.split_once('=') else {
            return Err(CredentialsError::Malformed {
                path: path.to_owned(),
                line,
            });
        };
        let name = name.trim();
        let (name, slot) = match name {
            API_KEY_VAR => (API_KEY_VAR, &mut api_key),
            SECRET_KEY_VAR => (SECRET_KEY_VAR, &mut secret_key),
            _ => {
                let shown_name = (name.starts_with("ESMS_")
                    && name.len() <= 40
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
                .then(|| name.to_owned());
                return Err(CredentialsError::UnknownName {
                    path: path.to_owned(),
                    line,
                    shown_name,
                });
            }
        };
        let value = unquote(value.trim());
        if value.is_empty() {
            return Err(CredentialsError::EmptyInFile {
                path: path.to_owned(),
                line,
                name,
            });
        }
        if slot.replace(value.to_owned()).is_some() {
            return Err(CredentialsError::Duplicate {
                path: path.to_owned(),
                line,
                name,
            });
        }
    }
    let missing = |name| CredentialsError::MissingInFile {
        path: path.to_owned(),
        name,
    };
    let api_key = api_key.ok_or_else(|| missing(API_KEY_VAR))?;
    let secret_key = secret_key.ok_or_else(|| missing(SECRET_KEY_VAR))?;
    Credentials::new(api_key, secret_key)
}

/// `"v"` or `'v'` becomes `v`; anything else is kept as written.
fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const API: &str = "API-9f2c1e77d0";
    const SECRET: &str = "SECRET-51ab03c8e4";

    fn assert_no_values(text: &str) {
        assert!(!text.contains(API), "api key leaked in: {text}");
        assert!(!text.contains(SECRET), "secret key leaked in: {text}");
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: BTreeMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn write_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
        path
    }

    #[test]
    fn debug_and_display_never_show_values() {
        let creds = Credentials::new(API, SECRET).unwrap();
        assert_no_values(&format!("{creds:?}"));
        assert_no_values(&format!("{creds:#?}"));
        assert_no_values(&format!("{} {}", creds.api_key(), creds.secret_key()));
        assert_no_values(&format!("{:?} {:?}", creds.api_key(), creds.secret_key()));
        assert!(format!("{creds:?}").contains(REDACTED));
        assert_eq!(creds.api_key().expose(), API);
        assert_eq!(creds.secret_key().expose(), SECRET);
    }

    #[test]
    fn scrub_replaces_both_keys() {
        let creds = Credentials::new(API, SECRET).unwrap();
        let scrubbed = creds.scrub(&format!("bad key {API} / {SECRET} / {API}"));
        assert_no_values(&scrubbed);
        assert_eq!(scrubbed, "bad key [redacted] / [redacted] / [redacted]");
    }

    #[test]
    fn scrub_removes_pieces_of_a_key_but_not_short_runs() {
        let creds = Credentials::new(API, SECRET).unwrap();
        // A key cut short at either end, and one cut in the middle.
        assert_eq!(creds.scrub("x SECRET-51ab…"), "x [redacted]…");
        assert_eq!(creds.scrub("9f2c1e77d0\""), "[redacted]\"");
        assert_eq!(creds.scrub("a 1ab03c b"), "a [redacted] b");
        // Five characters are not a piece; ordinary words stay.
        assert_eq!(creds.scrub("SECRE API-9 done"), "SECRE API-9 done");
    }

    #[test]
    fn scrub_bytes_borrows_unless_a_key_is_there() {
        let creds = Credentials::new(API, SECRET).unwrap();
        assert!(matches!(creds.scrub_bytes(b"plain"), Cow::Borrowed(_)));
        let body = format!("{{\"ApiKey\":\"{API}\",\"SecretKey\":\"{SECRET}\"}}");
        assert_eq!(
            &*creds.scrub_bytes(body.as_bytes()),
            br#"{"ApiKey":"[redacted]","SecretKey":"[redacted]"}"#
        );
    }

    #[test]
    fn env_needs_both_keys() {
        let both = Credentials::from_vars(vars(&[(API_KEY_VAR, API), (SECRET_KEY_VAR, SECRET)]));
        assert_eq!(both.unwrap(), Credentials::new(API, SECRET).unwrap());

        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![], "no eSMS credentials"),
            (vec![(API_KEY_VAR, API)], "ESMS_SECRET_KEY is not"),
            (vec![(SECRET_KEY_VAR, SECRET)], "ESMS_API_KEY is not"),
            (vec![(API_KEY_VAR, "  "), (SECRET_KEY_VAR, SECRET)], "empty"),
        ];
        for (pairs, expected) in cases {
            let err = Credentials::from_vars(vars(&pairs)).unwrap_err();
            let text = format!("{err} / {err:?}");
            assert!(text.contains(expected), "{text}");
            assert_no_values(&text);
        }
    }

    #[cfg(unix)]
    #[test]
    fn file_readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let body = format!("{API_KEY_VAR}={API}\n{SECRET_KEY_VAR}={SECRET}\n");
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let path = write_file(dir.path(), "creds.env", &body, mode);
            let err = Credentials::from_file(&path).unwrap_err();
            let text = format!("{err} / {err:?}");
            assert!(matches!(err, CredentialsError::TooOpen { .. }), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            assert_no_values(&text);
        }
        for mode in [0o600, 0o400] {
            let path = write_file(dir.path(), "creds.env", &body, mode);
            let creds = Credentials::from_file(&path).unwrap();
            assert_eq!(creds, Credentials::new(API, SECRET).unwrap());
        }
    }

    #[test]
    fn file_format_tolerates_comments_export_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let body = format!(
            "# eSMS account\n\nexport {API_KEY_VAR}=\"{API}\"\r\n  {SECRET_KEY_VAR} = '{SECRET}'  \n"
        );
        let path = write_file(dir.path(), "creds.env", &body, 0o600);
        assert_eq!(
            Credentials::from_file(&path).unwrap(),
            Credentials::new(API, SECRET).unwrap()
        );
    }

    #[test]
    fn file_errors_name_the_line_but_never_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            // A key pasted alone on a line.
            (
                format!("{API}\n{SECRET_KEY_VAR}={SECRET}\n"),
                "line 1: expected NAME=value",
            ),
            // A key pasted as a name.
            (format!("{API}={SECRET}\n"), "line 1: unknown name;"),
            (format!("ESMS_APIKEY={API}\n"), "unknown name `ESMS_APIKEY`"),
            (
                format!("{API_KEY_VAR}={API}\n{API_KEY_VAR}={SECRET}\n"),
                "line 2: ESMS_API_KEY is set a second time",
            ),
            (
                format!("{API_KEY_VAR}={API}\n"),
                "does not set ESMS_SECRET_KEY",
            ),
            (
                format!("{API_KEY_VAR}=\n{SECRET_KEY_VAR}={SECRET}\n"),
                "empty value",
            ),
        ];
        for (body, expected) in cases {
            let path = write_file(dir.path(), "creds.env", &body, 0o600);
            let err = Credentials::from_file(&path).unwrap_err();
            let text = format!("{err} / {err:?}");
            assert!(text.contains(expected), "expected {expected:?} in {text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert_no_values(&text);
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Credentials::from_file(Path::new("/nonexistent/oapkg-creds")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/oapkg-creds"));
    }
}
