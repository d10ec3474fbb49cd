//! Where each OA's access token comes from: a token file, or a token
//! command (SPEC "Read-back").
//!
//! **Token file** (`--zalo-tokens FILE`, `OAPKG_ZALO_TOKENS`): YAML, a
//! mapping from OAID to `{access_token, expires_at?}` or `{refresh_token,
//! app_id}` (oapkg adds `access_token` and `expires_at` when it
//! exchanges). Refused when group or others have any permission on it.
//! A refresh token is single-use, so losing the new one after an exchange
//! locks the OA out until an admin authorises the app again. Hence, for
//! every batch of exchanges:
//!
//! 1. the lock beside the file (`FILE.lock`) is held for the whole run and
//!    the file is read again under it, so two processes never exchange the
//!    same refresh token, and one run never exchanges twice for one OA;
//! 2. the file's directory must take a new file *before* any exchange (a
//!    temporary file is created and removed): the usual reasons a write
//!    fails (read-only directory, full quota, permissions) stop the run
//!    before a token is spent;
//! 3. the new pairs are written atomically (temporary file `0600`, fsync,
//!    rename, fsync of the directory) *before* any new access token is
//!    used.
//!
//! What remains is a crash (or a disk failing) between Zalo's answer and
//! the rename: the new refresh token is then lost and the old one no
//! longer works. oapkg cannot undo that; the OA admin authorises the app
//! again and puts the new refresh token in the file (README, "Knowing what
//! is true").
//!
//! Access tokens are reused until [`EXPIRY_MARGIN`] before they expire.
//!
//! **Token command** (`--zalo-token-command CMD`): split into words (no
//! shell), run as `CMD OAID`, printing `{"access_token": "…",
//! "expires_at": "RFC 3339"}`; empty output, `{}` or a null
//! `access_token` means "no token for this OA". oapkg never sees a
//! refresh token then.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::client::ZaloClient;
use super::wire::{ReadError, TokenPair};
use crate::secrets::REDACTED;
use crate::spec::Oaid;

/// An access token is exchanged again this long before it expires, so
/// that it cannot expire between the check and the read.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// The test hook that stops the process right after an exchange, before
/// the new pair is written (the crash the rotation cannot cover).
pub const CRASH_AFTER_EXCHANGE_VAR: &str = "OAPKG_TEST_CRASH_AFTER_EXCHANGE";

/// How long a token command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest token file read (some 20,000 OAs with both tokens).
const FILE_LIMIT: u64 = 16 * 1024 * 1024;

/// An OA access token: `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// What stops the tokens from being used at all (the whole run), as
/// opposed to one OA's token being refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the Zalo token file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error(
        "the Zalo token file {} can be read by group or others (mode {mode:04o}); it holds OA tokens: \
         run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the Zalo token file {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "ZALO_APP_SECRET is not set: the token file {} holds refresh tokens, and exchanging one needs \
         the Zalo app's secret",
        path.display()
    )]
    NoAppSecret { path: PathBuf },
    #[error(
        "cannot write beside the Zalo token file {} ({reason}): no refresh token was exchanged, since \
         a new one that cannot be saved is lost (the old one stops working). Make the directory \
         writable and run again",
        path.display()
    )]
    NotWritable { path: PathBuf, reason: String },
    #[error(
        "the new tokens of {} could not be written to {} ({reason}). Zalo has already replaced their \
         refresh tokens: those OAs cannot be read until an OA admin authorises the app again and the \
         new refresh token is put in the file",
        oaids.join(", "),
        path.display()
    )]
    Lost {
        path: PathBuf,
        oaids: Vec<String>,
        reason: String,
    },
    #[error("--zalo-token-command: {0}")]
    BadCommand(String),
}

/// One OA's entry in the token file.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_at: Option<jiff::Timestamp>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    app_id: Option<AppId>,
}

/// An app id, quoted or not (a plain number is read as written).
#[derive(Clone, PartialEq, Eq)]
struct AppId(String);

impl<'de> Deserialize<'de> for AppId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DigitsOrText::deserialize(d).map(|t| AppId(t.0))
    }
}

/// An OAID key of the token file: quoted or plain digits (a plain number
/// is never read through a float).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DigitsOrText(String);

impl<'de> Deserialize<'de> for DigitsOrText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = DigitsOrText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an OAID (digits) or a text")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DigitsOrText, E> {
                Ok(DigitsOrText(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DigitsOrText, E> {
                Ok(DigitsOrText(v.to_string()))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<DigitsOrText, E> {
                Ok(DigitsOrText(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DigitsOrText, E> {
                Err(E::custom(format!("{v} is not an OAID (negative)")))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<DigitsOrText, E> {
                Err(E::custom(
                    "a decimal number is never rounded into an id; quote the OAID",
                ))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The token file, read under its lock (held while this lives).
pub struct TokenFile {
    path: PathBuf,
    entries: BTreeMap<Oaid, Entry>,
    /// OAs exchanged in this run: never twice.
    exchanged: BTreeSet<Oaid>,
    _lock: std::fs::File,
}

impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFile")
            .field("path", &self.path)
            .field("oas", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// The path of the lock beside a token file.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl TokenFile {
    /// Takes the lock beside `path` (waiting for another run to finish
    /// with it), then reads and checks the file.
    pub fn open(path: &Path) -> Result<TokenFile, TokenError> {
        let read_error = |reason: String| TokenError::Read {
            path: path.to_owned(),
            reason,
        };
        // Checked before anything else, lock included.
        let (_, meta) = crate::files::open_regular(path).map_err(|e| read_error(e.to_string()))?;
        check_private(path, &meta)?;
        let lock = crate::files::owner_only(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true),
        )
        .open(lock_path(path))
        .map_err(|e| {
            read_error(format!(
                "cannot open its lock {}: {e}",
                lock_path(path).display()
            ))
        })?;
        lock.lock()
            .map_err(|e| read_error(format!("cannot lock {}: {e}", lock_path(path).display())))?;
        // Read again under the lock: another run may have rotated it.
        let (mut file, meta) =
            crate::files::open_regular(path).map_err(|e| read_error(e.to_string()))?;
        check_private(path, &meta)?;
        if meta.len() > FILE_LIMIT {
            return Err(read_error(format!("larger than {FILE_LIMIT} bytes")));
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text)
            .map_err(|e| read_error(e.to_string()))?;
        let entries = parse(path, &text)?;
        Ok(TokenFile {
            path: path.to_owned(),
            entries,
            exchanged: BTreeSet::new(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file has an entry for `oaid`.
    pub fn has(&self, oaid: &Oaid) -> bool {
        self.entries.contains_key(oaid)
    }

    pub fn oaids(&self) -> Vec<Oaid> {
        self.entries.keys().cloned().collect()
    }

    /// Every token in the file, for the scrubber.
    pub fn secrets(&self) -> Vec<String> {
        self.entries
            .values()
            .flat_map(|e| [e.access_token.clone(), e.refresh_token.clone()])
            .flatten()
            .collect()
    }

    /// Whether any entry holds a refresh token.
    pub fn has_refresh_tokens(&self) -> bool {
        self.entries.values().any(|e| e.refresh_token.is_some())
    }

    /// Whether `oaid` needs an exchange before it can be read: it has a
    /// refresh token, was not exchanged in this run, and has no access
    /// token valid for [`EXPIRY_MARGIN`] more.
    pub fn needs_exchange(&self, oaid: &Oaid, now: jiff::Timestamp) -> bool {
        let Some(entry) = self.entries.get(oaid) else {
            return false;
        };
        entry.refresh_token.is_some()
            && !self.exchanged.contains(oaid)
            && !valid_for_margin(entry, now)
    }

    /// Whether an exchange is still possible for `oaid` in this run.
    pub fn can_exchange(&self, oaid: &Oaid) -> bool {
        self.entries
            .get(oaid)
            .is_some_and(|e| e.refresh_token.is_some())
            && !self.exchanged.contains(oaid)
    }

    /// The access token to read `oaid` with, or why there is none.
    pub fn access_token(&self, oaid: &Oaid, now: jiff::Timestamp) -> Result<AccessToken, String> {
        let Some(entry) = self.entries.get(oaid) else {
            return Err("no token".to_owned());
        };
        match (&entry.access_token, entry.expires_at) {
            (Some(token), Some(at)) if at <= now => {
                let _ = token;
                Err(format!(
                    "its access token expired at {at}{}",
                    if entry.refresh_token.is_some() {
                        ""
                    } else {
                        " and the file has no refresh token for it"
                    }
                ))
            }
            (Some(token), _) => Ok(AccessToken(token.clone())),
            (None, _) => Err("no access token (the exchange did not happen)".to_owned()),
        }
    }

    /// Checks that a new version of the file can be written beside it:
    /// a temporary file in its directory takes the file's content and an
    /// fsync, then is removed.
    pub fn check_writable(&self) -> Result<(), TokenError> {
        let dir = parent(&self.path);
        crate::files::new_version_builder()
            .prefix(".oapkg-tokens-check")
            .tempfile_in(dir)
            .and_then(|mut temp| {
                temp.write_all(render(&self.entries).as_bytes())?;
                temp.as_file().sync_all()?;
                temp.close()
            })
            .map_err(|e| TokenError::NotWritable {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    /// Exchanges the refresh tokens of `oaids` (each at most once per
    /// run), `concurrency` at a time, after checking that the file can be
    /// written; writes every new pair before returning. Per OA, the
    /// exchange's error; a [`TokenError`] when nothing may go on.
    pub async fn rotate(
        &mut self,
        oaids: &[Oaid],
        client: &ZaloClient,
        app_secret: &str,
        concurrency: usize,
        now: jiff::Timestamp,
    ) -> Result<BTreeMap<Oaid, ReadError>, TokenError> {
        use futures_util::StreamExt;
        let todo: Vec<(Oaid, String, String)> = oaids
            .iter()
            .filter(|oaid| self.can_exchange(oaid))
            .filter_map(|oaid| {
                let entry = self.entries.get(oaid)?;
                let app_id = entry.app_id.clone()?.0;
                Some((oaid.clone(), app_id, entry.refresh_token.clone()?))
            })
            .collect();
        if todo.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.check_writable()?;
        for (oaid, _, _) in &todo {
            self.exchanged.insert(oaid.clone());
        }
        let answers: Vec<(Oaid, Result<TokenPair, ReadError>)> = futures_util::stream::iter(
            todo.into_iter().map(|(oaid, app_id, refresh)| async move {
                let answer = client.exchange(&app_id, &refresh, app_secret).await;
                (oaid, answer)
            }),
        )
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
        if std::env::var_os(CRASH_AFTER_EXCHANGE_VAR).is_some() {
            // The crash the rotation cannot cover, for tests: Zalo has
            // answered, nothing is written.
            std::process::abort();
        }
        let mut errors = BTreeMap::new();
        let mut rotated = Vec::new();
        for (oaid, answer) in answers {
            match answer {
                Ok(pair) => {
                    let expires = now
                        .checked_add(jiff::SignedDuration::from_secs(
                            i64::try_from(pair.expires_in).unwrap_or(i64::MAX / 2),
                        ))
                        .ok();
                    if let Some(entry) = self.entries.get_mut(&oaid) {
                        entry.access_token = Some(pair.access_token);
                        entry.refresh_token = Some(pair.refresh_token);
                        entry.expires_at = expires;
                    }
                    rotated.push(oaid);
                }
                Err(err) => {
                    errors.insert(oaid, err);
                }
            }
        }
        if !rotated.is_empty() {
            self.save().map_err(|reason| TokenError::Lost {
                path: self.path.clone(),
                oaids: rotated.iter().map(|o| o.to_string()).collect(),
                reason,
            })?;
            tracing::debug!(oas = rotated.len(), file = %self.path.display(), "new Zalo tokens written");
        }
        Ok(errors)
    }

    /// Writes the entries atomically: temporary file `0600` beside the
    /// file, fsync, rename over it, fsync of the directory.
    fn save(&self) -> Result<(), String> {
        let dir = parent(&self.path);
        let mut temp = crate::files::new_version_builder()
            .prefix(".oapkg-tokens")
            .tempfile_in(dir)
            .map_err(|e| e.to_string())?;
        temp.write_all(render(&self.entries).as_bytes())
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| e.to_string())?;
        temp.persist(&self.path).map_err(|e| e.error.to_string())?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("the directory was not synced: {e}"))?;
        Ok(())
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn valid_for_margin(entry: &Entry, now: jiff::Timestamp) -> bool {
    let margin = jiff::SignedDuration::try_from(EXPIRY_MARGIN).unwrap_or_default();
    match (&entry.access_token, entry.expires_at) {
        (Some(_), Some(at)) => now.checked_add(margin).is_ok_and(|soon| soon < at),
        // No expiry written: used until Zalo refuses it.
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), TokenError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let _ = (path, meta);
    Ok(())
}

fn parse(path: &Path, text: &str) -> Result<BTreeMap<Oaid, Entry>, TokenError> {
    let invalid = |reason: String| TokenError::Invalid {
        path: path.to_owned(),
        reason,
    };
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let raw: BTreeMap<DigitsOrText, Entry> = serde_saphyr::from_str(text).map_err(|e| {
        invalid(format!(
            "{e}; expected a mapping from OAID to {{access_token, expires_at}} or \
             {{refresh_token, app_id}}"
        ))
    })?;
    let mut entries = BTreeMap::new();
    for (key, entry) in raw {
        let oaid = Oaid::parse(&key.0).map_err(|e| {
            invalid(format!(
                "{:?} is not an OAID: {e}",
                crate::text::cut(&key.0, Some(40))
            ))
        })?;
        let usable = entry
            .access_token
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty())
            || (entry
                .refresh_token
                .as_deref()
                .is_some_and(|t| !t.trim().is_empty())
                && entry.app_id.is_some());
        if !usable {
            return Err(invalid(format!(
                "OA {oaid}: expected `access_token` (with `expires_at` if known), or \
                 `refresh_token` with `app_id`"
            )));
        }
        if entry.refresh_token.is_some() && entry.app_id.is_none() {
            return Err(invalid(format!(
                "OA {oaid}: a `refresh_token` needs the `app_id` of the Zalo app it was issued to"
            )));
        }
        entries.insert(oaid, entry);
    }
    Ok(entries)
}

/// The file as oapkg writes it back: every value a JSON string (a valid
/// YAML double-quoted scalar). Comments in the file are not kept.
fn render(entries: &BTreeMap<Oaid, Entry>) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    let mut out = String::from(
        "# Zalo OA tokens for oapkg (rewritten by `oapkg refresh` when it exchanges a refresh\n\
         # token). Keep it private: chmod 600.\n",
    );
    for (oaid, entry) in entries {
        out.push_str(&format!("{}:\n", quote(oaid.as_str())));
        if let Some(token) = &entry.access_token {
            out.push_str(&format!("  access_token: {}\n", quote(token)));
        }
        if let Some(at) = entry.expires_at {
            out.push_str(&format!("  expires_at: {}\n", quote(&at.to_string())));
        }
        if let Some(token) = &entry.refresh_token {
            out.push_str(&format!("  refresh_token: {}\n", quote(token)));
        }
        if let Some(app_id) = &entry.app_id {
            out.push_str(&format!("  app_id: {}\n", quote(&app_id.0)));
        }
    }
    out
}

/// `--zalo-token-command CMD`: a program and its first arguments.
#[derive(Clone, Debug)]
pub struct TokenCommand {
    program: String,
    args: Vec<String>,
}

/// What a token command prints.
#[derive(Deserialize)]
struct CommandAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    expires_at: Option<jiff::Timestamp>,
}

impl TokenCommand {
    /// Splits `text` into words as a shell would for plain words, quotes
    /// (`'…'`, `"…"`) and backslashes; runs no shell.
    pub fn parse(text: &str) -> Result<TokenCommand, TokenError> {
        let words = split_words(text).map_err(TokenError::BadCommand)?;
        let mut words = words.into_iter();
        let program = words
            .next()
            .ok_or_else(|| TokenError::BadCommand("empty command".to_owned()))?;
        Ok(TokenCommand {
            program,
            args: words.collect(),
        })
    }

    /// Runs `CMD OAID`: `Ok(None)` when it has no token for the OA.
    pub fn access_token(&self, oaid: &Oaid) -> Result<Option<AccessToken>, String> {
        let mut child = std::process::Command::new(&self.program)
            .args(&self.args)
            .arg(oaid.as_str())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("the token command could not be started: {e}"))?;
        let mut stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = std::io::Read::read_to_end(
                &mut std::io::Read::take(&mut stdout, 1024 * 1024),
                &mut out,
            );
            out
        });
        let started = std::time::Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > COMMAND_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the token command did not finish within {COMMAND_TIMEOUT:?}"
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("the token command could not be waited for: {e}")),
            }
        };
        let out = reader.join().unwrap_or_default();
        if !status.success() {
            // Its stderr is not shown: it could hold a token.
            return Err(format!("the token command failed ({status})"));
        }
        if out.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let answer: CommandAnswer = serde_json::from_slice(&out).map_err(|_| {
            "the token command did not print a JSON object {\"access_token\": …, \"expires_at\": …}"
                .to_owned()
        })?;
        Ok(answer
            .access_token
            .filter(|t| !t.trim().is_empty())
            .map(|t| AccessToken(t.trim().to_owned())))
    }
}

fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("an unclosed ' quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("a \\ at the end".to_owned()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("an unclosed \" quote".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("a \\ at the end".to_owned()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Where the access tokens come from for a run.
#[derive(Debug)]
pub enum TokenSource {
    File(TokenFile),
    Command(TokenCommand),
}

impl TokenSource {
    /// The source the flags name, if any (the file wins when both are
    /// given: the CLI refuses that).
    pub fn open(
        file: Option<&Path>,
        command: Option<&str>,
    ) -> Result<Option<TokenSource>, TokenError> {
        if let Some(path) = file {
            return TokenFile::open(path).map(|f| Some(TokenSource::File(f)));
        }
        match command {
            Some(text) => TokenCommand::parse(text).map(|c| Some(TokenSource::Command(c))),
            None => Ok(None),
        }
    }

    /// Every secret the source holds now.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            TokenSource::File(file) => file.secrets(),
            TokenSource::Command(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell_without_one() {
        assert_eq!(
            split_words(r#"vault read "a b" 'c d' e\ f"#).unwrap(),
            vec!["vault", "read", "a b", "c d", "e f"]
        );
        assert!(split_words("x 'y").is_err());
    }

    #[test]
    fn the_file_takes_either_shape_and_refuses_others() {
        let path = Path::new("t.yaml");
        let entries = parse(
            path,
            "4097311281936189049:\n  access_token: a1\n  expires_at: 2026-12-07T00:00:00Z\n\
             \"745830328927467685\":\n  refresh_token: r1\n  app_id: 12345\n",
        )
        .unwrap();
        assert_eq!(entries.len(), 2);
        let back = parse(path, &render(&entries)).unwrap();
        assert_eq!(render(&back), render(&entries));
        assert!(parse(path, "1:\n  app_id: 3\n").is_err());
        assert!(parse(path, "1:\n  refresh_token: r\n").is_err());
        assert!(parse(path, "1:\n  access_token: a\n  acess: b\n").is_err());
        assert!(parse(path, "1.5:\n  access_token: a\n").is_err());
    }
}
