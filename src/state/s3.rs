//! The state on S3-compatible object storage (`--state s3://BUCKET/PREFIX`).
//!
//! This module owns the objects under `PREFIX/` and the protocol over them;
//! the state's byte format, checksum, journal lines, replay and fold are the
//! same code as for a local file ([`file`](super::file),
//! [`journal`](super::journal), [`store::fold`](super::store)). The layout
//! and protocol are described for users in `docs/shared-state.md`.
//!
//! - `PREFIX/head.json`: the only object that changes, always by
//!   compare-and-swap (`If-Match` on the ETag read, the first write
//!   `If-None-Match: *`). It names the current snapshot (serial, checksum),
//!   holds the lease (who writes, until when), the journal recorded since
//!   that snapshot — the names of its sealed segments and the live tail of
//!   lines — and a fresh random `write_id` per write.
//! - `PREFIX/snapshots/SERIAL-CHECKSUM.json`: the state in the state file
//!   format, immutable, written once with `If-None-Match: *`.
//! - `PREFIX/journal/SERIAL-SEQ-SHA256.jsonl`: a sealed segment, immutable
//!   and content addressed: journal lines that were durable in the head's
//!   tail, moved out so that the head (re-uploaded on every write) stays
//!   small however long a run is. A segment is written (`If-None-Match: *`)
//!   before the head that names it, by the same compare-and-swap that
//!   appends the next lines, so a crash in between leaves only an orphan
//!   object that nothing reads.
//!
//! Why two writers never both buy one package: an intent is one conditional
//! write of the head, against a head whose lease is ours; the store applies
//! conditional writes to one key one at a time, so a writer whose lease was
//! taken over has its next write refused and sends nothing more. A request
//! is sent only after its intent's write succeeded, and only while a third
//! of the lease is left after the last write that succeeded (a retry writes
//! the head afresh first): the [`Fence`] of [`S3Journal`], the argument in
//! `docs/exactly-once.md` ("Fencing").
//!
//! The store is trusted to apply conditional writes only after it showed
//! it does (`Inner::probe`): in `init`, in every process before its first
//! purchase ([`S3Store::lock_to_buy`]) and before `state migrate` writes
//! here. A `404` for the head is told apart from a missing bucket by
//! listing the prefix. Segments are deleted once a fold no longer names
//! them.
//!
//! The client retries a 5xx answer even on a conditional PUT, so a write
//! that had succeeded can come back refused: after any refused or failed
//! write the head is read again, and if its `write_id` is ours, the write
//! happened.
//!
//! The operations are async (the client's); callers are synchronous and
//! may run inside the process's runtime (a blocking thread of it, or one
//! of its workers) or outside it, so [`S3Store::run`] drives each request
//! on the process's one runtime, whose handle the store is given, and
//! waits for it in the way each place allows.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use serde::{Deserialize, Serialize};

use super::file::{self, DiskState};
use super::journal::{self, Generation, JournalEntry};
use super::lock::{Fence, LeaseWindow, LockHolder, Proof, SendPermit, UnlockOutcome};
use super::store::{self, Loaded};
use super::{State, StateError, StateId};

/// The head object's format; another number is refused.
const HEAD_FORMAT: u32 = 1;

/// How long a lease lasts without renewal, unless `OAPKG_LEASE_SECONDS`
/// says otherwise. A holder renews it every third of that while it runs.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// How often a writer waiting for a live lease (`--lock-timeout`) looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The head's live tail is sealed into a segment once it holds this many
/// lines (`OAPKG_S3_SEGMENT_LINES`, for tests, says otherwise)…
const SEAL_LINES: usize = 256;

/// …or this many bytes (`OAPKG_S3_SEGMENT_BYTES`), whichever comes first.
const SEAL_BYTES: usize = 64 * 1024;

/// How many segments a reader fetches (or a fold deletes) at once.
const SEGMENT_READS: usize = 8;

/// How many times a reader starts over when the head changed under it.
const READ_RETRIES: u32 = 5;

/// `s3://BUCKET/PREFIX`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without a leading or trailing `/`; may be empty (the bucket's root).
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://BUCKET/PREFIX`; `None` when `text` does not start with `s3://`.
    pub fn parse(text: &str) -> Option<Result<S3Location, StateError>> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let bad = |problem: &str| {
            Some(Err(StateError::RemoteLocation {
                location: text.to_owned(),
                problem: problem.to_owned(),
            }))
        };
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return bad(
                "the bucket name must be 3 to 63 lower-case letters, digits, `-` or `.` (s3://BUCKET/PREFIX)",
            );
        }
        if prefix.split('/').any(|part| part == "." || part == "..")
            || prefix.contains("//")
            || prefix.chars().any(char::is_control)
        {
            return bad(
                "the prefix must be plain path segments (no `.`, `..`, `//` or control characters)",
            );
        }
        Some(Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }))
    }

    /// `s3://BUCKET/PREFIX`, as users wrote it (normalised).
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn object(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }
}

/// The head object, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    format: u32,
    lineage: String,
    serial: u64,
    /// The snapshot's object name under the prefix.
    snapshot: String,
    /// The snapshot's checksum (its `checksum` field).
    checksum: String,
    lease: Option<Lease>,
    /// Sealed journal segments (object names under the prefix), oldest
    /// first: their lines come before `journal`'s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    segments: Vec<String>,
    /// The live tail of the journal: lines (the journal file's format,
    /// without the newline) recorded on top of the snapshot and the
    /// segments.
    journal: Vec<String>,
    /// Random, fresh on every write: tells a retried write of ours that had
    /// succeeded from someone else's.
    write_id: String,
}

/// Who writes the state, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lease {
    id: String,
    holder: LockHolder,
    expires: Timestamp,
}

impl Lease {
    fn live(&self, now: Timestamp) -> bool {
        self.expires > now
    }
}

/// A head as read, with the ETag to write the next version against.
#[derive(Clone, Debug)]
struct Current {
    head: Head,
    e_tag: Option<String>,
}

/// The state under one `s3://` location.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    location: S3Location,
    /// `s3://…/head.json`, as errors name it.
    head_name: PathBuf,
    /// `s3://BUCKET/PREFIX`, as messages name the state.
    display: PathBuf,
    client: Result<Arc<AmazonS3>, String>,
    /// The S3 credentials, removed from any message that could carry them.
    scrubber: crate::secrets::Scrubber,
    /// The process's runtime.
    runtime: tokio::runtime::Handle,
    lease_duration: Duration,
    /// When the head's tail is sealed into a segment.
    seal: SealAt,
    /// The store passed the conditional-write check in this process
    /// ([`S3Store::check_conditional_writes`]).
    probed: AtomicBool,
    /// Hidden, for tests (`OAPKG_S3_PAUSE_AFTER_INTENT_MS`): how long a
    /// writer stalls after an intent's write returned, before the request
    /// is sent — the "between intent and send" pause the fencing must
    /// survive.
    pause_after_intent: Option<Duration>,
}

/// The size at which the head's live tail is sealed into a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SealAt {
    lines: usize,
    bytes: usize,
}

impl SealAt {
    /// Whether `tail` is due to be sealed.
    fn due(self, tail: &[String]) -> bool {
        tail.len() >= self.lines || tail.iter().map(|l| l.len() + 1).sum::<usize>() >= self.bytes
    }
}

// The client holds the credentials: never print it.
impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.inner.location.url())
            .finish_non_exhaustive()
    }
}

impl PartialEq for S3Store {
    fn eq(&self, other: &Self) -> bool {
        self.inner.location == other.inner.location
    }
}

impl Eq for S3Store {}

impl S3Store {
    /// The store at `location`, with credentials, region and endpoint from
    /// the `AWS_*` variables. A bad endpoint is reported by the first
    /// operation, so that building a command's context cannot fail.
    pub fn new(location: S3Location, runtime: tokio::runtime::Handle) -> S3Store {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let scrubber =
            crate::secrets::Scrubber::new(crate::secrets::from_env(crate::secrets::AWS_VARS));
        let client = build_client(&location, &env).map(Arc::new);
        let lease_duration = env("OAPKG_LEASE_SECONDS")
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(DEFAULT_LEASE, Duration::from_secs_f64);
        // Hidden, for tests and benchmarks: a small segment, or none.
        let size = |name: &str, default: usize| {
            env(name)
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        let seal = SealAt {
            lines: size("OAPKG_S3_SEGMENT_LINES", SEAL_LINES),
            bytes: size("OAPKG_S3_SEGMENT_BYTES", SEAL_BYTES),
        };
        let url = location.url();
        S3Store {
            inner: Arc::new(Inner {
                head_name: PathBuf::from(format!("{url}/head.json")),
                display: PathBuf::from(url),
                location,
                client,
                scrubber,
                runtime,
                lease_duration,
                seal,
                probed: AtomicBool::new(false),
                pause_after_intent: env("OAPKG_S3_PAUSE_AFTER_INTENT_MS")
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(Duration::from_millis),
            }),
        }
    }

    /// `s3://BUCKET/PREFIX`, for messages.
    pub fn path(&self) -> &Path {
        &self.inner.display
    }

    /// `s3://BUCKET/PREFIX/head.json`: where the journal lines are.
    pub fn journal_path(&self) -> PathBuf {
        self.inner.head_name.clone()
    }

    /// Runs `work` on the process's runtime and waits for it: from a
    /// worker of that runtime by letting the worker block
    /// (`block_in_place`), from any other thread by driving it there.
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StateError>> + Send + 'static,
    ) -> Result<T, StateError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let runtime = &self.inner.runtime;
        match Handle::try_current().map(|current| current.runtime_flavor()) {
            Ok(RuntimeFlavor::CurrentThread) => {
                // Another runtime's only thread: it must not block on
                // `work`, so the process's runtime runs it.
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                runtime.spawn(async move {
                    let _ = tx.send(work.await);
                });
                rx.recv().unwrap_or_else(|_| {
                    Err(StateError::Remote {
                        action: "reach",
                        location: self.inner.display.display().to_string(),
                        message: "the S3 request was interrupted".to_owned(),
                    })
                })
            }
            Ok(_) => tokio::task::block_in_place(|| runtime.block_on(work)),
            Err(_) => runtime.block_on(work),
        }
    }

    /// Reads the state: the snapshot the head names, with the head's
    /// journal lines replayed. Takes no lease.
    ///
    /// A writer may fold the journal (and delete the segments it folded)
    /// between the head read here and the segments read after it: when
    /// reading fails and the head has changed meanwhile, the read starts
    /// over from the new head.
    pub fn load(&self) -> Result<Loaded, StateError> {
        let inner = self.inner.clone();
        self.run(async move {
            let mut tries = 0;
            loop {
                let Some(current) = inner.read_head().await? else {
                    return Ok(Loaded {
                        state: State::default(),
                        id: StateId::default(),
                    });
                };
                let error = match inner.loaded(&current.head).await {
                    Ok(loaded) => return Ok(loaded),
                    Err(error) => error,
                };
                tries += 1;
                let moved = match inner.read_head().await {
                    Ok(Some(now)) => now.head.write_id != current.head.write_id,
                    _ => false,
                };
                if !moved || tries >= READ_RETRIES {
                    return Err(error);
                }
            }
        })
    }

    /// For `in flight` (read-only, takes no lease): the holder of a live
    /// lease and the journal lines of the head it holds (segments, then
    /// the tail); `None` when no lease is live or there is no state.
    pub(crate) fn live_lease(
        &self,
    ) -> Result<Option<(LockHolder, Vec<journal::Line>)>, StateError> {
        let inner = self.inner.clone();
        self.run(async move {
            let Some(current) = inner.read_head().await? else {
                return Ok(None);
            };
            let Some(lease) = current.head.lease.clone() else {
                return Ok(None);
            };
            if !lease.live(Timestamp::now()) {
                return Ok(None);
            }
            let lines = inner
                .journal_contents(&current.head)
                .await?
                .map(|contents| contents.lines)
                .unwrap_or_default();
            Ok(Some((lease.holder, lines)))
        })
    }

    /// `oapkg init`: checks that the store refuses conflicting conditional
    /// writes, then creates an empty state (snapshot 0 and the head);
    /// refuses if a head exists.
    pub fn init(&self) -> Result<StateId, StateError> {
        let inner = self.inner.clone();
        self.run(async move {
            inner.probe("nothing was created").await?;
            if let Some(current) = inner.read_head().await? {
                return Err(inner.already_exists(&current.head).await);
            }
            let lineage = uuid::Uuid::new_v4().to_string();
            inner.create(lineage, &State::default()).await
        })
    }

    /// Takes the lease, waiting up to `timeout` for a live one to end or
    /// expire, and renews it in the background while the [`S3Lease`] lives.
    /// A missing state is refused (`oapkg init` creates one).
    pub fn lock(&self, command: &str, timeout: Duration) -> Result<S3Lease, StateError> {
        let inner = self.inner.clone();
        let holder = LockHolder::current(command);
        let id = uuid::Uuid::new_v4().to_string();
        let deadline = Instant::now().checked_add(timeout);
        let (current, window) =
            self.run(async move { inner.take_lease(id, holder, deadline).await })?;
        let shared = Arc::new(LeaseShared {
            store: self.clone(),
            current: tokio::sync::Mutex::new(LeaseState {
                current,
                pending: Default::default(),
            }),
            fence: StdMutex::new(FenceState {
                window,
                lost: None,
                ran_out: None,
            }),
            renewal: StdMutex::new(None),
        });
        shared.start_renewal();
        Ok(S3Lease { shared })
    }

    /// [`lock`](Self::lock) for a run that sends purchase requests: the
    /// store is first checked to refuse conflicting conditional writes
    /// (once per process, [`check_conditional_writes`](Self::check_conditional_writes)),
    /// before the lease is taken, so that a store (or a proxy in front of
    /// it) that ignores them is refused before it is written to.
    pub fn lock_to_buy(&self, command: &str, timeout: Duration) -> Result<S3Lease, StateError> {
        self.check_conditional_writes("nothing was bought")?;
        self.lock(command, timeout)
    }

    /// `init`'s check, for every process that buys (and `state migrate`
    /// to here): the store must refuse a second create of one object and a
    /// write against a wrong ETag. A state made elsewhere, or a store
    /// swapped or proxied since `init`, is checked again. Passing is kept
    /// for the life of the process (the probe costs four requests).
    /// `outcome` ends the refusal: what was not done.
    pub fn check_conditional_writes(&self, outcome: &'static str) -> Result<(), StateError> {
        if self.inner.probed.load(Ordering::Acquire) {
            return Ok(());
        }
        let inner = self.inner.clone();
        self.run(async move { inner.probe(outcome).await })?;
        self.inner.probed.store(true, Ordering::Release);
        Ok(())
    }

    /// Clears the lease, whoever holds it (`oapkg state unlock`): a holder
    /// still running finds its next write refused and stops recording.
    pub fn unlock(&self) -> Result<UnlockOutcome, StateError> {
        let inner = self.inner.clone();
        self.run(async move {
            loop {
                let Some(current) = inner.read_head().await? else {
                    return Ok(UnlockOutcome::NotLocked);
                };
                let Some(lease) = current.head.lease.clone() else {
                    return Ok(UnlockOutcome::NotLocked);
                };
                let mut next = current.head.clone();
                next.lease = None;
                match inner.swap(Some(&current), next).await {
                    Ok(_) => {
                        return Ok(UnlockOutcome::Cleared {
                            previous_holder: lease.holder,
                        });
                    }
                    Err(Swap::Conflict(_)) => continue,
                    Err(Swap::Failed(e)) => return Err(e),
                }
            }
        })
    }

    /// `oapkg state migrate` to here: writes `state` as it is (lineage and
    /// serial kept) where no state exists yet, after checking that the
    /// store enforces conditional writes.
    pub fn create_copy(&self, state: &State) -> Result<StateId, StateError> {
        self.check_conditional_writes("nothing was copied")?;
        let inner = self.inner.clone();
        let state = state.clone();
        self.run(async move {
            if let Some(current) = inner.read_head().await? {
                return Err(inner.already_exists(&current.head).await);
            }
            let lineage = state
                .lineage
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            inner.create(lineage, &state).await
        })
    }
}

/// Checks the endpoint (plain http only to loopback) and builds the client.
fn build_client(
    location: &S3Location,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AmazonS3, String> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&location.bucket)
        .with_region(
            env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".to_owned()),
        )
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        });
    if let Some(key) = env("AWS_ACCESS_KEY_ID") {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = env("AWS_SECRET_ACCESS_KEY") {
        builder = builder.with_secret_access_key(secret);
    }
    if let Some(token) = env("AWS_SESSION_TOKEN") {
        builder = builder.with_token(token);
    }
    // Role-based credentials where no key pair is given: web identity
    // (EKS, CI OpenID Connect) and container credentials (ECS).
    for name in IDENTITY_VARIABLES {
        if let Some(value) = env(name)
            && let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
        {
            builder = builder.with_config(key, value);
        }
    }
    if let Some(endpoint) = env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")) {
        let url = reqwest::Url::parse(endpoint.trim())
            .map_err(|e| format!("AWS_ENDPOINT_URL is not a valid URL: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("AWS_ENDPOINT_URL must not contain a user name or password".to_owned());
        }
        match url.scheme() {
            "https" => {}
            "http" if crate::esms::endpoint::is_loopback_host(&url) => {
                builder = builder.with_allow_http(true);
            }
            "http" => {
                return Err(format!(
                    "plain http:// would send the S3 requests unencrypted to {}; use https://, \
                     or http:// only to a loopback host (127.0.0.0/8, ::1, localhost)",
                    url.host_str().unwrap_or("?")
                ));
            }
            other => {
                return Err(format!(
                    "AWS_ENDPOINT_URL must use https://, not {other}://"
                ));
            }
        }
        builder = builder.with_endpoint(endpoint.trim().trim_end_matches('/'));
    }
    builder
        .build()
        .map_err(|e| format!("could not set up the S3 client: {e}"))
}

/// The variables of role-based credentials passed on to the client.
const IDENTITY_VARIABLES: [&str; 6] = [
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// Why a compare-and-swap of the head did not happen.
enum Swap {
    /// Someone else wrote the head: here it is now.
    Conflict(Current),
    Failed(StateError),
}

impl Inner {
    fn client(&self) -> Result<&AmazonS3, StateError> {
        self.client
            .as_deref()
            .map_err(|message| StateError::Remote {
                action: "use",
                location: self.display.display().to_string(),
                message: message.clone(),
            })
    }

    /// A store error as a [`StateError`], with the credentials scrubbed.
    fn remote(&self, action: &'static str, error: &object_store::Error) -> StateError {
        let message = self.scrubber.scrub(&error.to_string());
        StateError::Remote {
            action,
            location: self.display.display().to_string(),
            message,
        }
    }

    fn corrupt(&self, problem: String) -> StateError {
        StateError::RemoteCorrupt {
            path: self.head_name.clone(),
            problem,
        }
    }

    async fn read_head(&self) -> Result<Option<Current>, StateError> {
        let client = self.client()?;
        let path = self.location.object("head.json");
        let result = match client.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                self.check_bucket().await?;
                return Ok(None);
            }
            Err(e) => return Err(self.remote("read", &e)),
        };
        let e_tag = result.meta.e_tag.clone();
        let bytes = result.bytes().await.map_err(|e| self.remote("read", &e))?;
        let head: Head = serde_json::from_slice(&bytes)
            .map_err(|e| self.corrupt(format!("not an oapkg head object: {e}")))?;
        if head.format != HEAD_FORMAT {
            return Err(self.corrupt(format!(
                "format {}, but this oapkg reads only format {HEAD_FORMAT}",
                head.format
            )));
        }
        Ok(Some(Current { head, e_tag }))
    }

    /// After a `404` for `head.json`: no state there yet, or no bucket at
    /// all (S3 answers `404` for both)? Listing the prefix tells: it
    /// fails when the bucket is not there. A missing bucket (or one these
    /// credentials cannot list) is an error, never an empty state.
    async fn check_bucket(&self) -> Result<(), StateError> {
        let client = self.client()?;
        let prefix = (!self.location.prefix.is_empty())
            .then(|| ObjectPath::from(self.location.prefix.as_str()));
        match client.list_with_delimiter(prefix.as_ref()).await {
            Ok(_) => Ok(()),
            Err(error) => {
                let text = error.to_string();
                let message = if text.contains("NoSuchBucket") {
                    format!(
                        "the bucket {} does not exist (create it, or fix the bucket name in --state / OAPKG_STATE)",
                        self.location.bucket
                    )
                } else {
                    format!(
                        "no head.json there, and listing the prefix to tell a new state from a missing bucket failed: {}",
                        self.scrubber.scrub(&text)
                    )
                };
                Err(StateError::Remote {
                    action: "find",
                    location: self.display.display().to_string(),
                    message,
                })
            }
        }
    }

    /// The state `head` describes: its snapshot, checked against it, with
    /// its journal lines replayed.
    async fn loaded(&self, head: &Head) -> Result<Loaded, StateError> {
        let disk = self.read_snapshot(head).await?;
        let contents = self.journal_contents(head).await?;
        store::assemble(&self.display, &self.head_name, Some(disk), contents)
    }

    async fn read_snapshot(&self, head: &Head) -> Result<DiskState, StateError> {
        use futures_util::StreamExt as _;
        let client = self.client()?;
        let name = PathBuf::from(format!("{}/{}", self.display.display(), head.snapshot));
        let object = self.location.object(&head.snapshot);
        let failed = |e: object_store::Error| self.remote("read the snapshot of", &e);
        // Decoded as its body arrives, as a local file is as it is read
        // (`file::stream`), on a thread of its own that this task feeds.
        let mut body = client.get(&object).await.map_err(failed)?.into_stream();
        let (chunks, received) = tokio::sync::mpsc::channel(8);
        let decoding = tokio::task::spawn_blocking({
            let name = name.clone();
            move || file::stream(&name, BodyReader::new(received), false)
        });
        while let Some(chunk) = body.next().await {
            let end = chunk.is_err();
            if chunks
                .send(chunk.map_err(std::io::Error::other))
                .await
                .is_err()
                || end
            {
                break;
            }
        }
        drop(chunks);
        let streamed = match decoding.await {
            Ok(streamed) => streamed,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        };
        let disk = match streamed {
            Some(decoded) => decoded?.0,
            // Not in the canonical encoding, or the body broke off: read it
            // whole (a failure to is reported as such).
            None => {
                let bytes = client
                    .get(&object)
                    .await
                    .map_err(failed)?
                    .bytes()
                    .await
                    .map_err(failed)?;
                file::decode_whole(&name, &bytes)?
            }
        };
        if disk.lineage != head.lineage
            || disk.serial != head.serial
            || disk.checksum != head.checksum
        {
            return Err(self.corrupt(format!(
                "it names snapshot {} (lineage {}, serial {}), which holds lineage {}, serial {}",
                head.snapshot, head.lineage, head.serial, disk.lineage, disk.serial
            )));
        }
        Ok(disk)
    }

    /// The journal `head` describes: its sealed segments in order (each
    /// checked against the digest in its name), then its live tail.
    async fn journal_contents(&self, head: &Head) -> Result<Option<journal::Contents>, StateError> {
        if head.segments.is_empty() && head.journal.is_empty() {
            return Ok(None);
        }
        let mut contents = journal::Contents::default();
        for names in head.segments.chunks(SEGMENT_READS) {
            let reads: Vec<_> = names.iter().map(|name| self.read_segment(name)).collect();
            for segment in futures_util::future::try_join_all(reads).await? {
                contents.lines.extend(segment.lines);
            }
        }
        let tail = self.parse_lines(&self.head_name, &segment_bytes(&head.journal))?;
        contents.lines.extend(tail.lines);
        Ok(Some(contents))
    }

    /// A sealed segment's lines, checked against the digest in its name.
    async fn read_segment(&self, name: &str) -> Result<journal::Contents, StateError> {
        let path = PathBuf::from(format!("{}/{name}", self.display.display()));
        let bytes = self
            .client()?
            .get(&self.location.object(name))
            .await
            .map_err(|e| self.remote("read a journal segment of", &e))?
            .bytes()
            .await
            .map_err(|e| self.remote("read a journal segment of", &e))?;
        check_segment(name, &bytes).map_err(|problem| StateError::RemoteCorrupt {
            path: path.clone(),
            problem,
        })?;
        self.parse_lines(&path, &bytes)
    }

    /// Journal lines written whole (a head or a segment): none can be torn.
    fn parse_lines(&self, path: &Path, bytes: &[u8]) -> Result<journal::Contents, StateError> {
        let contents = journal::parse(path, bytes)?;
        if contents.torn {
            return Err(StateError::RemoteCorrupt {
                path: path.to_owned(),
                problem: "a journal line in it is damaged".to_owned(),
            });
        }
        Ok(contents)
    }

    /// Seals `head`'s live tail (durable lines) into a segment object and
    /// returns the head naming it instead. Nothing refers to the segment
    /// until that head is written.
    async fn seal(&self, head: &Head) -> Result<Head, StateError> {
        let bytes = segment_bytes(&head.journal);
        let name = segment_name(head.serial, head.segments.len(), &bytes);
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .client()?
            .put_opts(
                &self.location.object(&name),
                PutPayload::from(bytes),
                options,
            )
            .await
        {
            // Content addressed: one already there holds the same lines.
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(self.remote("write a journal segment to", &e)),
        }
        let mut next = head.clone();
        next.segments.push(name);
        next.journal.clear();
        Ok(next)
    }

    /// After a fold to `serial` succeeded (the head no longer names them):
    /// deletes the segments `named` by the folded head, and any other
    /// segment under the prefix recorded on top of an older snapshot (a
    /// dead holder's leftovers, or one sealed by a head write that never
    /// landed). Best effort: a segment not deleted is never read again.
    async fn delete_folded(&self, named: &[String], serial: u64) {
        use futures_util::StreamExt as _;
        let Ok(client) = self.client() else { return };
        let mut names: std::collections::BTreeSet<String> = named.iter().cloned().collect();
        let under = self.location.object("journal");
        let mut listing = client.list(Some(&under));
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                Err(error) => {
                    tracing::debug!(error = %self.remote("list the journal segments of", &error), "old segments not listed");
                    break;
                }
            };
            let full = meta.location.as_ref();
            let name = match self.location.prefix.as_str() {
                "" => full,
                prefix => full
                    .strip_prefix(prefix)
                    .and_then(|n| n.strip_prefix('/'))
                    .unwrap_or(full),
            };
            if segment_serial(name).is_some_and(|s| s < serial) {
                names.insert(name.to_owned());
            }
        }
        drop(listing);
        let names: Vec<String> = names.into_iter().collect();
        for chunk in names.chunks(SEGMENT_READS) {
            let deletes = chunk.iter().map(|name| async move {
                if let Err(error) = client.delete(&self.location.object(name)).await {
                    tracing::debug!(segment = %name, error = %self.remote("delete a folded journal segment of", &error), "segment left behind");
                }
            });
            futures_util::future::join_all(deletes).await;
        }
        tracing::debug!(deleted = names.len(), "folded journal segments deleted");
    }

    /// Writes `state` under `lineage` where no state exists: its snapshot,
    /// then the first head (`If-None-Match: *`); a head that appeared
    /// meanwhile is refused as an existing state (`init`, `state migrate`).
    async fn create(&self, lineage: String, state: &State) -> Result<StateId, StateError> {
        let (bytes, checksum) = file::encode(
            &self.display,
            &lineage,
            state.serial,
            &state.packages,
            &state.failed_attempts,
            &state.observations,
        )?;
        let snapshot = self.put_snapshot(state.serial, &checksum, bytes).await?;
        let head = Head {
            format: HEAD_FORMAT,
            lineage: lineage.clone(),
            serial: state.serial,
            snapshot,
            checksum: checksum.clone(),
            lease: None,
            segments: Vec::new(),
            journal: Vec::new(),
            write_id: String::new(),
        };
        match self.swap(None, head).await {
            Ok(_) => Ok(StateId {
                lineage: Some(lineage),
                serial: state.serial,
                checksum: Some(checksum),
            }),
            Err(Swap::Conflict(current)) => Err(self.already_exists(&current.head).await),
            Err(Swap::Failed(e)) => Err(e),
        }
    }

    async fn already_exists(&self, head: &Head) -> StateError {
        let packages = match self.read_snapshot(head).await {
            Ok(disk) => disk.packages.len(),
            Err(_) => 0,
        };
        StateError::AlreadyExists {
            path: self.display.clone(),
            lineage: head.lineage.clone(),
            serial: head.serial,
            packages,
        }
    }

    /// Writes an immutable snapshot; its name holds its serial and checksum,
    /// so one already there with that name holds the same bytes.
    async fn put_snapshot(
        &self,
        serial: u64,
        checksum: &str,
        bytes: Vec<u8>,
    ) -> Result<String, StateError> {
        let client = self.client()?;
        let digest = checksum.strip_prefix("sha256:").unwrap_or(checksum);
        let name = format!("snapshots/{serial:020}-{digest}.json");
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match client
            .put_opts(
                &self.location.object(&name),
                PutPayload::from(bytes),
                options,
            )
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(name),
            Err(e) => Err(self.remote("write a snapshot to", &e)),
        }
    }

    /// Writes `next` as the head if the head is still `current` (`None`:
    /// if there is none). On success returns what is now stored.
    async fn swap(&self, current: Option<&Current>, mut next: Head) -> Result<Current, Swap> {
        let client = self.client().map_err(Swap::Failed)?;
        next.write_id = uuid::Uuid::new_v4().to_string();
        let bytes = serde_json::to_vec_pretty(&next).map_err(|source| {
            Swap::Failed(StateError::Encode {
                path: self.head_name.clone(),
                source,
            })
        })?;
        let mode = match current {
            None => PutMode::Create,
            Some(current) => PutMode::Update(UpdateVersion {
                e_tag: current.e_tag.clone(),
                version: None,
            }),
        };
        let options = PutOptions {
            mode,
            ..Default::default()
        };
        let path = self.location.object("head.json");
        let error = match client
            .put_opts(&path, PutPayload::from(bytes), options)
            .await
        {
            Ok(result) => {
                return Ok(Current {
                    head: next,
                    e_tag: result.e_tag,
                });
            }
            Err(error) => error,
        };
        // Refused, or no answer: it may have been our own retried write that
        // had succeeded. The head tells.
        let now = self.read_head().await.map_err(Swap::Failed)?;
        match now {
            Some(now) if now.head.write_id == next.write_id => Ok(now),
            Some(now)
                if matches!(
                    error,
                    object_store::Error::Precondition { .. }
                        | object_store::Error::AlreadyExists { .. }
                ) =>
            {
                Err(Swap::Conflict(now))
            }
            _ => Err(Swap::Failed(self.remote("write the head of", &error))),
        }
    }

    /// Waits for no live lease (or `deadline`), then takes it.
    async fn take_lease(
        &self,
        id: String,
        holder: LockHolder,
        deadline: Option<Instant>,
    ) -> Result<(Current, LeaseWindow), StateError> {
        loop {
            let Some(current) = self.read_head().await? else {
                return Err(StateError::Missing {
                    path: self.display.clone(),
                });
            };
            let now = Timestamp::now();
            match &current.head.lease {
                Some(lease) if lease.live(now) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(StateError::Locked {
                            path: self.display.clone(),
                            holder: Some(lease.holder.clone()),
                        });
                    }
                    let wait = deadline.map_or(POLL_INTERVAL, |d| {
                        d.saturating_duration_since(Instant::now())
                            .min(POLL_INTERVAL)
                    });
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Some(lease) => {
                    tracing::warn!(
                        state = %self.display.display(),
                        holder = ?lease.holder,
                        expired = %lease.expires,
                        "taking over an expired lease: its holder stopped renewing it; what it recorded and did not finish reads as unconfirmed"
                    );
                }
                None => {}
            }
            let mut next = current.head.clone();
            next.lease = Some(Lease {
                id: id.clone(),
                holder: holder.clone(),
                expires: now,
            });
            let window = self.stamp_lease(&mut next);
            match self.swap(Some(&current), next).await {
                Ok(taken) => return Ok((taken, window)),
                Err(Swap::Conflict(_)) => continue,
                Err(Swap::Failed(e)) => return Err(e),
            }
        }
    }

    /// Sets the expiry of `head`'s lease (if it has one) to a full lease
    /// from now, and returns the window that write gives its holder to
    /// send in: measured from *before* the write is issued (the expiry is
    /// computed from the same instant), so never longer than what other
    /// writers will grant it.
    fn stamp_lease(&self, head: &mut Head) -> LeaseWindow {
        let window = LeaseWindow {
            issued: Instant::now(),
            wall: Timestamp::now(),
            lease: self.lease_duration,
        };
        if let Some(lease) = head.lease.as_mut() {
            lease.expires = expiry(window.wall, self.lease_duration);
        }
        window
    }

    /// `oapkg init`'s check: the store must refuse a second create of one
    /// object and a write against a wrong ETag. A store that ignores the
    /// headers gives no mutual exclusion at all.
    async fn probe(&self, outcome: &'static str) -> Result<(), StateError> {
        let client = self.client()?;
        let path = self
            .location
            .object(&format!("probes/{}", uuid::Uuid::new_v4()));
        let put = |mode: PutMode| {
            let options = PutOptions {
                mode,
                ..Default::default()
            };
            client.put_opts(&path, PutPayload::from_static(b"oapkg probe\n"), options)
        };
        let result = async {
            put(PutMode::Create)
                .await
                .map_err(|e| self.remote("write a probe object to", &e))?;
            match put(PutMode::Create).await {
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Ok(_) => {
                    return Err(StateError::ConditionalWritesIgnored {
                        location: self.display.display().to_string(),
                        header: "If-None-Match: *",
                        outcome,
                    });
                }
                Err(e) => return Err(self.remote("write a probe object to", &e)),
            }
            let wrong = UpdateVersion {
                e_tag: Some("\"00000000000000000000000000000000\"".to_owned()),
                version: None,
            };
            match put(PutMode::Update(wrong)).await {
                Err(object_store::Error::Precondition { .. }) => Ok(()),
                Ok(_) => Err(StateError::ConditionalWritesIgnored {
                    location: self.display.display().to_string(),
                    header: "If-Match",
                    outcome,
                }),
                Err(e) => Err(self.remote("write a probe object to", &e)),
            }
        }
        .await;
        if let Err(e) = client.delete(&path).await {
            tracing::debug!(error = %self.remote("remove the probe object from", &e), "probe object left behind");
        }
        result
    }
}

/// Journal lines as stored in a segment (and parsed): one per line.
fn segment_bytes(lines: &[String]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    bytes
}

/// `journal/SERIAL-SEQ-SHA256.jsonl`: the `SEQ`th segment (from 0) on top
/// of snapshot `SERIAL`, named by the digest of its bytes.
fn segment_name(serial: u64, seq: usize, bytes: &[u8]) -> String {
    let checksum = crate::spec::sha256_tagged(bytes);
    let digest = checksum.strip_prefix("sha256:").unwrap_or(&checksum);
    format!("journal/{serial:020}-{seq:06}-{digest}.jsonl")
}

/// The snapshot serial a segment's name (`journal/SERIAL-SEQ-SHA256.jsonl`)
/// says its lines apply on top of.
fn segment_serial(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("journal/")?.strip_suffix(".jsonl")?;
    let serial = rest.split('-').next()?;
    (serial.len() == 20).then(|| serial.parse().ok()).flatten()
}

/// Checks a segment's bytes against the digest in its name.
fn check_segment(name: &str, bytes: &[u8]) -> Result<(), String> {
    let Some(expected) = name
        .strip_prefix("journal/")
        .and_then(|n| n.strip_suffix(".jsonl"))
        .and_then(|n| n.rsplit('-').next())
    else {
        return Err(format!("{name} is not a journal segment's name"));
    };
    let checksum = crate::spec::sha256_tagged(bytes);
    let actual = checksum.strip_prefix("sha256:").unwrap_or(&checksum);
    if actual == expected {
        Ok(())
    } else {
        Err(format!(
            "its content does not match the digest in its name (sha256 {actual}): \
             it was changed after oapkg wrote it"
        ))
    }
}

fn expiry(now: Timestamp, lease: Duration) -> Timestamp {
    let lease =
        jiff::SignedDuration::try_from(lease).unwrap_or(jiff::SignedDuration::from_secs(60));
    now.checked_add(lease).unwrap_or(now)
}

/// The lease on an S3 state: held (and renewed) while this or any
/// [`S3Journal`] of it lives; released when the last one goes.
#[derive(Debug)]
pub struct S3Lease {
    shared: Arc<LeaseShared>,
}

struct LeaseShared {
    store: S3Store,
    current: tokio::sync::Mutex<LeaseState>,
    /// What the fence stands on; a plain mutex, so that a permit is
    /// checked at once even while a write of the head is under way.
    fence: StdMutex<FenceState>,
    renewal: StdMutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for LeaseShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseShared")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

struct LeaseState {
    current: Current,
    /// Keys with an intent and no outcome yet, under this lease.
    pending: std::collections::BTreeSet<crate::spec::Key>,
}

impl LeaseState {
    fn lease_id(&self) -> Option<&str> {
        self.current.head.lease.as_ref().map(|l| l.id.as_str())
    }
}

/// Whether this process may still send under its lease.
struct FenceState {
    /// The window the last successful write of the head gave.
    window: LeaseWindow,
    /// Someone else wrote the head (took the lease over, or unlocked it):
    /// nothing more is recorded or sent under this lease. Who holds it
    /// now, if anyone.
    lost: Option<Option<Box<LockHolder>>>,
    /// A permit was refused because the window had run out (how long
    /// after the write it was asked for): nothing more is sent, though
    /// outcomes may still be recorded while the head is ours.
    ran_out: Option<Duration>,
}

impl LeaseShared {
    fn start_renewal(self: &Arc<Self>) {
        let runtime = &self.store.inner.runtime;
        let weak = Arc::downgrade(self);
        let every = self.store.inner.lease_duration / 3;
        let handle = runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(shared) = weak.upgrade() else { return };
                if let Err(error) = shared.update(|_| Ok(())).await {
                    if shared.is_lost() {
                        // The run says so where it stops sending.
                        tracing::debug!(%error, "the lease was lost; no more renewals");
                        return;
                    }
                    tracing::warn!(%error, "could not renew the lease on the state");
                }
            }
        });
        if let Ok(mut slot) = self.renewal.lock() {
            *slot = Some(handle);
        }
    }

    fn fence(&self) -> std::sync::MutexGuard<'_, FenceState> {
        self.fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_lost(&self) -> bool {
        self.fence().lost.is_some()
    }

    /// The error for a lease someone else wrote over, if it was.
    fn lost_error(&self) -> Option<StateError> {
        let holder = self.fence().lost.clone()?;
        Some(self.lost(holder))
    }

    /// A write of ours succeeded: the window it gives replaces the last.
    fn confirmed(&self, window: LeaseWindow) {
        let mut fence = self.fence();
        if window.issued >= fence.window.issued {
            fence.window = window;
        }
    }

    /// Someone else wrote the head.
    fn mark_lost(&self, holder: Option<Box<LockHolder>>) -> StateError {
        let mut fence = self.fence();
        let holder = fence.lost.get_or_insert(holder).clone();
        drop(fence);
        self.lost(holder)
    }

    /// The one rule of [`Fence::permit`], once the proof is written.
    fn check_permit(&self) -> Result<SendPermit, StateError> {
        let mut fence = self.fence();
        if let Some(holder) = fence.lost.clone() {
            drop(fence);
            return Err(self.lost(holder));
        }
        let now = Instant::now();
        if fence.ran_out.is_none() && !fence.window.allows(now, Timestamp::now()) {
            fence.ran_out = Some(now.saturating_duration_since(fence.window.issued));
        }
        match fence.ran_out {
            Some(elapsed) => Err(StateError::LeaseRanOut {
                path: self.store.inner.display.clone(),
                elapsed,
                lease: self.store.inner.lease_duration,
            }),
            None => Ok(SendPermit::within(fence.window)),
        }
    }

    /// Writes the head changed by `change`, with the lease renewed, if the
    /// lease is still ours.
    async fn update(
        &self,
        change: impl FnOnce(&mut Head) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let inner = &self.store.inner;
        let mut state = self.current.lock().await;
        if let Some(error) = self.lost_error() {
            return Err(error);
        }
        let mut next = state.current.head.clone();
        if inner.seal.due(&next.journal) {
            // The tail's lines are durable already; moving them into a
            // segment is only an optimisation: if it fails, the head just
            // keeps them a while longer.
            match inner.seal(&next).await {
                Ok(sealed) => next = sealed,
                Err(error) => tracing::warn!(%error, "could not seal the journal into a segment"),
            }
        }
        change(&mut next)?;
        let window = inner.stamp_lease(&mut next);
        match inner.swap(Some(&state.current), next).await {
            Ok(now) => {
                state.current = now;
                self.confirmed(window);
                Ok(())
            }
            Err(Swap::Conflict(now)) => {
                let ours = now.head.lease.as_ref().map(|l| l.id.as_str()) == state.lease_id();
                if ours {
                    // Only we write under our lease: this cannot be, but the
                    // safe answer is the same.
                    tracing::warn!("the head changed under our lease");
                }
                Err(self.mark_lost(now.head.lease.map(|l| Box::new(l.holder))))
            }
            Err(Swap::Failed(e)) => Err(e),
        }
    }

    fn lost(&self, holder: Option<Box<LockHolder>>) -> StateError {
        StateError::LeaseLost {
            path: self.store.inner.display.clone(),
            holder,
        }
    }

    fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(
            Arc<Self>,
        )
            -> std::pin::Pin<Box<dyn Future<Output = Result<T, StateError>> + Send>>,
    ) -> Result<T, StateError> {
        let future = work(self.clone());
        self.store.run(future)
    }
}

impl Drop for LeaseShared {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.renewal.lock()
            && let Some(handle) = slot.take()
        {
            handle.abort();
        }
        // Release the lease (keeping the journal): best effort; if it fails
        // the lease expires.
        if self.is_lost() {
            return;
        }
        let current = self.current.get_mut().current.clone();
        let inner = self.store.inner.clone();
        let released = self.store.run(async move {
            let mut next = current.head.clone();
            next.lease = None;
            match inner.swap(Some(&current), next).await {
                Ok(_) => Ok(()),
                Err(Swap::Conflict(_)) => Ok(()),
                Err(Swap::Failed(e)) => Err(e),
            }
        });
        if let Err(error) = released {
            tracing::warn!(%error, "could not release the lease on the state; it expires by itself");
        }
    }
}

impl S3Lease {
    /// Who holds it (this process).
    pub fn holder(&self) -> LockHolder {
        self.shared
            .current
            .try_lock()
            .ok()
            .and_then(|s| s.current.head.lease.as_ref().map(|l| l.holder.clone()))
            .unwrap_or_else(|| LockHolder::current("oapkg"))
    }

    /// The state as of the lease (the head just taken).
    pub fn load(&self) -> Result<Loaded, StateError> {
        self.shared.run(|shared| {
            Box::pin(async move {
                let head = shared.current.lock().await.current.head.clone();
                shared.store.inner.loaded(&head).await
            })
        })
    }

    /// The journal `apply` records purchases in, under this lease.
    pub fn journal(&self) -> S3Journal {
        S3Journal {
            shared: self.shared.clone(),
        }
    }

    /// Writes `state` as the next snapshot (the head's journal folded in)
    /// and points the head at it, keeping the lease. See
    /// [`StateStore::write`](super::StateStore::write) for the contract.
    ///
    /// Once the head that no longer names them is written, the journal
    /// segments it folded are deleted (best effort), with any others left
    /// under the prefix for an older serial: a dead holder's, or one
    /// sealed by a write that never landed.
    pub fn write(&self, state: &mut State) -> Result<StateId, StateError> {
        let given = state.clone();
        let (folded, id) = self.shared.run(move |shared| {
            Box::pin(async move {
                let inner = shared.store.inner.clone();
                let mut guard = shared.current.lock().await;
                if let Some(error) = shared.lost_error() {
                    return Err(error);
                }
                let head = guard.current.head.clone();
                store::check_version(&inner.display, &given, &head.lineage, head.serial)?;
                let current = inner
                    .journal_contents(&head)
                    .await?
                    .map(|c| c.lines)
                    .unwrap_or_default();
                let folded = store::fold(&inner.display, &inner.head_name, &given, &current)?;
                let snapshot = inner
                    .put_snapshot(folded.serial, &folded.checksum, folded.bytes.clone())
                    .await?;
                let mut next = head.clone();
                next.serial = folded.serial;
                next.lineage = folded.lineage.clone();
                next.snapshot = snapshot;
                next.checksum = folded.checksum.clone();
                next.segments.clear();
                next.journal.clear();
                let window = inner.stamp_lease(&mut next);
                match inner.swap(Some(&guard.current), next).await {
                    Ok(now) => {
                        guard.current = now;
                        shared.confirmed(window);
                    }
                    Err(Swap::Conflict(now)) => {
                        return Err(shared.mark_lost(now.head.lease.map(|l| Box::new(l.holder))));
                    }
                    Err(Swap::Failed(e)) => return Err(e),
                }
                guard.pending.clear();
                drop(guard);
                inner.delete_folded(&head.segments, folded.serial).await;
                let id = StateId {
                    lineage: Some(folded.lineage.clone()),
                    serial: folded.serial,
                    checksum: Some(folded.checksum.clone()),
                };
                Ok((folded, id))
            })
        })?;
        state.lineage = Some(folded.lineage);
        state.serial = folded.serial;
        state.packages = folded.packages;
        state.failed_attempts = folded.failed_attempts;
        state.observations = folded.observations;
        Ok(id)
    }
}

/// Records purchase events in the head, under an [`S3Lease`]: each batch
/// is one conditional write (group commit), durable when it returns `Ok`.
#[derive(Debug)]
pub struct S3Journal {
    shared: Arc<LeaseShared>,
}

impl S3Journal {
    /// `s3://…/head.json`.
    pub fn path(&self) -> PathBuf {
        self.shared.store.journal_path()
    }

    /// The fence of this lease, for the sender (a handle of its own: the
    /// journal itself is busy writing while a permit is asked for).
    pub fn fence(&self) -> Arc<dyn Fence> {
        Arc::new(S3Journal {
            shared: self.shared.clone(),
        })
    }

    /// See [`Journal::record_batch`](super::Journal::record_batch): the
    /// same checks and the same promise; a batch holding an intent is
    /// refused once the lease is lost or has run out (nothing more is
    /// sent, so no intent is needed).
    pub fn record_batch(&mut self, entries: &[JournalEntry]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        let intents = entries
            .iter()
            .any(|e| matches!(e, JournalEntry::Intent { .. }));
        if intents {
            self.shared.check_permit()?;
        }
        let entries = entries.to_vec();
        self.shared.run(move |shared| {
            Box::pin(async move {
                let inner = shared.store.inner.clone();
                let mut pending = shared.current.lock().await.pending.clone();
                let events =
                    journal::events_of(&inner.display, &inner.head_name, &mut pending, &entries)?;
                let mut lines = Vec::with_capacity(events.len());
                let mut generation = None;
                shared
                    .update(|head| {
                        let g = generation.get_or_insert_with(|| Generation {
                            lineage: Some(head.lineage.clone()),
                            serial: head.serial,
                        });
                        for (key, event) in &events {
                            let mut line = journal::encode_line(&inner.head_name, g, key, event)?;
                            line.pop();
                            lines.push(String::from_utf8(line).unwrap_or_default());
                        }
                        head.journal.append(&mut lines);
                        Ok(())
                    })
                    .await?;
                shared.current.lock().await.pending = pending;
                Ok(())
            })
        })?;
        if intents && let Some(pause) = self.shared.store.inner.pause_after_intent {
            std::thread::sleep(pause);
        }
        Ok(())
    }
}

/// An S3 lease can be lost: a permit stands on the last successful
/// conditional write of the head under it (the intent's, or for
/// [`Proof::Renewed`] one made now) and holds while a third of the lease
/// is left after the instant that write was issued.
impl Fence for S3Journal {
    fn permit(&self, proof: Proof) -> Result<SendPermit, StateError> {
        if proof == Proof::Renewed {
            // Refused at once if already lost or run out: no write then.
            self.shared.check_permit()?;
            self.shared
                .run(|shared| Box::pin(async move { shared.update(|_| Ok(())).await }))?;
        }
        self.shared.check_permit()
    }
}

/// The chunks of an S3 object's body, as they arrive, read as one stream
/// by a blocking reader; an error in the body is a read error.
struct BodyReader<B> {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<B>>,
    chunk: Option<B>,
    at: usize,
}

impl<B> BodyReader<B> {
    fn new(chunks: tokio::sync::mpsc::Receiver<std::io::Result<B>>) -> Self {
        BodyReader {
            chunks,
            chunk: None,
            at: 0,
        }
    }
}

impl<B: AsRef<[u8]>> std::io::Read for BodyReader<B> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(chunk) = &self.chunk {
                let rest = &chunk.as_ref()[self.at..];
                if !rest.is_empty() {
                    let n = rest.len().min(out.len());
                    out[..n].copy_from_slice(&rest[..n]);
                    self.at += n;
                    return Ok(n);
                }
            }
            match self.chunks.blocking_recv() {
                Some(chunk) => {
                    self.chunk = Some(chunk?);
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_reads_as_its_chunks_in_order_and_a_broken_one_as_an_error() {
        use std::io::Read as _;
        let body = |chunks: Vec<std::io::Result<Vec<u8>>>| {
            let (sender, received) = tokio::sync::mpsc::channel(chunks.len().max(1));
            for chunk in chunks {
                sender.try_send(chunk).unwrap();
            }
            BodyReader::new(received)
        };
        let mut whole = Vec::new();
        body(vec![
            Ok(b"ab".to_vec()),
            Ok(Vec::new()),
            Ok(b"cde".to_vec()),
        ])
        .read_to_end(&mut whole)
        .unwrap();
        assert_eq!(whole, b"abcde");
        // Read a byte at a time, as a small block would.
        let mut reader = body(vec![Ok(b"xy".to_vec()), Ok(b"z".to_vec())]);
        let mut one = [0_u8; 1];
        let bytes: Vec<u8> =
            std::iter::from_fn(|| (reader.read(&mut one).unwrap() == 1).then_some(one[0]))
                .collect();
        assert_eq!(bytes, b"xyz");
        let mut partial = Vec::new();
        let broken = body(vec![
            Ok(b"ab".to_vec()),
            Err(std::io::Error::other("connection reset")),
        ])
        .read_to_end(&mut partial);
        assert_eq!(broken.unwrap_err().to_string(), "connection reset");
    }

    #[test]
    fn a_location_is_a_bucket_and_a_plain_prefix() {
        let parsed = S3Location::parse("s3://team-state/oapkg/prod/")
            .unwrap()
            .unwrap();
        assert_eq!(parsed.bucket, "team-state");
        assert_eq!(parsed.prefix, "oapkg/prod");
        assert_eq!(parsed.url(), "s3://team-state/oapkg/prod");
        assert_eq!(parsed.object("head.json").as_ref(), "oapkg/prod/head.json");
        let root = S3Location::parse("s3://team-state").unwrap().unwrap();
        assert_eq!(root.object("head.json").as_ref(), "head.json");
        assert!(S3Location::parse("state/oapkg.state.json").is_none());
        for bad in [
            "s3://",
            "s3://Upper/x",
            "s3://ok-bucket/../x",
            "s3://ok-bucket/a//b",
            "s3://b/x",
        ] {
            assert!(
                matches!(
                    S3Location::parse(bad),
                    Some(Err(StateError::RemoteLocation { .. }))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn plain_http_goes_only_to_this_machine() {
        let location = S3Location::parse("s3://bucket/x").unwrap().unwrap();
        let with = |url: &'static str| {
            build_client(&location, &move |name: &str| {
                (name == "AWS_ENDPOINT_URL").then(|| url.to_owned())
            })
        };
        assert!(with("http://127.0.0.1:9000").is_ok());
        assert!(with("http://localhost:9000").is_ok());
        assert!(with("https://s3.example.com").is_ok());
        let refused = with("http://s3.example.com").unwrap_err();
        assert!(
            refused.contains("unencrypted to s3.example.com"),
            "{refused}"
        );
        assert!(with("http://user:pw@127.0.0.1:9000").is_err());
        assert!(with("ftp://127.0.0.1").is_err());
    }

    #[test]
    fn the_store_prints_no_credential() {
        let location = S3Location::parse("s3://bucket/x").unwrap().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = S3Store::new(location, runtime.handle().clone());
        let shown = format!("{store:?}");
        assert_eq!(shown, "S3Store { location: \"s3://bucket/x\", .. }");
    }

    /// Journal lines of `n` purchases (intent, then outcome) on an empty
    /// state, as the head's tail holds them.
    fn purchase_lines(n: u64) -> Vec<String> {
        use crate::spec::{Oaid, Spec, Tier};
        let generation = Generation::default();
        let mut lines = Vec::new();
        for i in 0..n {
            let spec = Spec {
                oaid: Oaid::parse(&(4_000_000 + i).to_string()).unwrap(),
                tier: Tier::Advanced,
                start: jiff::civil::date(2026, 12, 1),
                duration_months: 6,
            };
            let key = spec.key();
            let intent = journal::Event::Intent {
                spec,
                name: None,
                at: Timestamp::UNIX_EPOCH,
                by_policy: false,
            };
            let outcome = journal::Event::Outcome(journal::JournalOutcome::Submitted {
                service_preview_id: Some(i.to_string()),
                result_code: "100".into(),
                result_message: "ok".into(),
            });
            for event in [intent, outcome] {
                let mut line =
                    journal::encode_line(Path::new("head"), &generation, &key, &event).unwrap();
                line.pop();
                lines.push(String::from_utf8(line).unwrap());
            }
        }
        lines
    }

    #[test]
    fn a_segment_is_named_by_serial_sequence_and_digest_and_checked_by_it() {
        let lines = purchase_lines(2);
        let bytes = segment_bytes(&lines);
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 4);
        let name = segment_name(7, 3, &bytes);
        assert!(
            name.starts_with("journal/00000000000000000007-000003-"),
            "{name}"
        );
        assert!(name.ends_with(".jsonl"), "{name}");
        assert_eq!(
            name.len(),
            "journal/".len() + 20 + 1 + 6 + 1 + 64 + ".jsonl".len()
        );
        assert_eq!(check_segment(&name, &bytes), Ok(()));
        // Same lines, same name (a retried write finds the same object).
        assert_eq!(segment_name(7, 3, &segment_bytes(&lines)), name);
        assert_ne!(segment_name(7, 3, &segment_bytes(&lines[..3])), name);
        let mut changed = bytes.clone();
        changed[10] ^= 1;
        let refused = check_segment(&name, &changed).unwrap_err();
        assert!(refused.contains("does not match the digest"), "{refused}");
        assert!(check_segment("snapshots/x.json", &bytes).is_err());
    }

    #[test]
    fn a_segment_names_the_serial_it_applies_on_top_of() {
        let bytes = segment_bytes(&purchase_lines(1));
        assert_eq!(segment_serial(&segment_name(7, 3, &bytes)), Some(7));
        assert_eq!(
            segment_serial(&segment_name(u64::MAX, 0, &bytes)),
            Some(u64::MAX)
        );
        for other in [
            "journal/7-000000-ab.jsonl",
            "snapshots/00000000000000000007-ab.json",
            "journal/0000000000000000000x-000000-ab.jsonl",
            "journal/00000000000000000007-000000-ab.json",
        ] {
            assert_eq!(segment_serial(other), None, "{other}");
        }
    }

    #[test]
    fn the_tail_is_due_for_sealing_by_lines_or_by_bytes() {
        let lines = purchase_lines(3);
        let at = SealAt {
            lines: 4,
            bytes: 1 << 20,
        };
        assert!(!at.due(&[]));
        assert!(!at.due(&lines[..3]));
        assert!(at.due(&lines[..4]));
        let small = SealAt {
            lines: 1000,
            bytes: lines[0].len() + lines[1].len() + 2,
        };
        assert!(!small.due(&lines[..1]));
        assert!(small.due(&lines[..2]));
    }

    /// Segments then the tail replay exactly like one journal, with an
    /// intent sealed away from its outcome.
    #[test]
    fn segments_then_the_tail_replay_like_one_journal() {
        let lines = purchase_lines(5);
        let whole = journal::parse(Path::new("head"), &segment_bytes(&lines)).unwrap();
        let (first, rest) = lines.split_at(3);
        let (second, tail) = rest.split_at(4);
        let mut pieced = journal::Contents::default();
        for piece in [first, second, tail] {
            let bytes = segment_bytes(piece);
            let name = segment_name(0, 0, &bytes);
            check_segment(&name, &bytes).unwrap();
            pieced
                .lines
                .extend(journal::parse(Path::new(&name), &bytes).unwrap().lines);
        }
        let state = Path::new("s3://b/x");
        let head = Path::new("s3://b/x/head.json");
        let one = store::assemble(state, head, None, Some(whole)).unwrap();
        let split = store::assemble(state, head, None, Some(pieced)).unwrap();
        assert_eq!(one.state.packages.len(), 5);
        assert_eq!(split.state.packages, one.state.packages);
        assert!(
            split
                .state
                .packages
                .values()
                .all(|r| r.status == crate::state::Status::Submitted)
        );
    }

    #[test]
    fn a_lease_is_live_until_it_expires() {
        let now = Timestamp::now();
        let lease = Lease {
            id: "a".into(),
            holder: LockHolder::current("oapkg apply"),
            expires: expiry(now, Duration::from_secs(60)),
        };
        assert!(lease.live(now));
        assert!(!lease.live(lease.expires));
    }
}
