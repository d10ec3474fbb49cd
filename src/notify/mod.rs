//! `--notify URL`: one webhook POST per event that people should hear
//! about (a purchase bought, failed or unconfirmed, a change held, a cycle
//! refused, an OA expiring, a low balance, an error, a Git commit applied
//! or refused), for `watch` and `apply`; `--notify-events` chooses which
//! ([`Events`]).
//!
//! Pacing (watch): a cycle that bought, held or failed anything sends one
//! `cycle` summary with every package and the estimated total; the posts
//! for each package of the cycle are sent too only while it buys at most
//! [`SINGLE_POSTS_MAX`] packages, so a renewal day of 200 OAs is one post,
//! not 200. (Without `cycle` in `--notify-events`, every package is
//! posted on its own.)
//!
//! Signature: with `OAPKG_NOTIFY_SECRET` set, every POST carries
//! `X-Oapkg-Timestamp: T` (Unix seconds, at the attempt) and
//! `X-Oapkg-Signature-256: sha256=HEX`, HEX being the HMAC-SHA256 keyed by
//! the secret of `T.BODY` (the timestamp, a dot, the exact body bytes), as
//! Stripe and GitHub sign their webhooks ([`signature`]). The secret is
//! scrubbed from every body like the other secrets.
//!
//! - [`payload`]: what a notification says (pure; built from the events).
//! - this module: delivery. Each URL has its own bounded queue and
//!   background task, so a slow or dead receiver never holds up a cycle, a
//!   purchase or another receiver: [`Notifier::send`] only queues (and
//!   drops, with a warning, when a queue is full). Each POST is retried
//!   with exponential backoff on a connection failure, a timeout, HTTP 429
//!   or 5xx, up to [`Delivery::attempts`]; other answers are final.
//!   Every body is scrubbed of the account keys, and of the values of the
//!   secret environment variables ([`crate::secrets`]: the eSMS keys, an
//!   S3 state's AWS credentials) whether or not this run uses them, before
//!   it is queued; a URL is only logged as its scheme, host and port (a
//!   webhook's path is often its secret).
//!
//! URLs: `https://`, or plain `http://` only to a loopback host, as for
//! the eSMS endpoint.

pub mod payload;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeSet;

use hmac::{Hmac, KeyInit as _, Mac as _};
use reqwest::Url;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use payload::{EVENTS, Notification};

use crate::apply::ApplyEvent;
use crate::secrets::Scrubber;
use crate::watch::{Observer, WatchEvent};

/// A checked webhook URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Target(Url);

/// Why a `--notify` URL is refused. The URL is never echoed whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("--notify: not a valid absolute URL: {reason}")]
    Invalid { reason: String },
    #[error("--notify must use https:// (or http:// to this machine), not {scheme}://")]
    UnsupportedScheme { scheme: String },
    #[error(
        "--notify: plain http:// to {host} would send the notifications unencrypted; use https://, or http:// only to a loopback host (127.0.0.0/8, ::1, localhost)"
    )]
    InsecureRemote { host: String },
    #[error("--notify: the URL must not contain a user name or password")]
    HasUserInfo,
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, TargetError> {
        let url = Url::parse(text.trim()).map_err(|err| TargetError::Invalid {
            reason: err.to_string(),
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::HasUserInfo);
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        match url.scheme() {
            "https" => {}
            "http" if crate::esms::endpoint::is_loopback_host(&url) => {}
            "http" => return Err(TargetError::InsecureRemote { host }),
            other => {
                return Err(TargetError::UnsupportedScheme {
                    scheme: other.to_owned(),
                });
            }
        }
        if host.is_empty() {
            return Err(TargetError::Invalid {
                reason: "no host".to_owned(),
            });
        }
        Ok(Target(url))
    }

    fn is_loopback(&self) -> bool {
        crate::esms::endpoint::is_loopback_host(&self.0)
    }
}

/// `scheme://host:port` only: the path and query may hold a token.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            self.0.scheme(),
            self.0.host_str().unwrap_or_default()
        )?;
        if let Some(port) = self.0.port() {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

impl std::str::FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::parse(s)
    }
}

/// How notifications are delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// POSTs per notification, the first included.
    pub attempts: u32,
    /// The wait before the second attempt; doubled for each later one.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Each POST's time limit.
    pub timeout: Duration,
    /// Notifications waiting per URL; more are dropped (logged).
    pub queue: usize,
}

impl Default for Delivery {
    /// 5 attempts over about 15 s (1, 2, 4, 8 s apart), 10 s per POST,
    /// 1,000 waiting.
    fn default() -> Self {
        Delivery {
            attempts: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            queue: 1000,
        }
    }
}

/// The shortest value of a secret variable ([`crate::secrets`]) that is
/// scrubbed from a body: a shorter one is no secret worth the name, and
/// replacing it would mangle the JSON.
const SECRET_MIN_CHARS: usize = 8;

/// The variable holding the webhook signing secret.
pub const SECRET_VAR: &str = crate::secrets::NOTIFY_VARS[0];

/// `--notify URL...` with `--notify-events`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Webhooks {
    pub targets: Vec<Target>,
    pub events: Events,
}

/// Which events are sent (`--notify-events`): all of them by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Events(Option<BTreeSet<&'static str>>);

/// An unknown name in `--notify-events`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--notify-events: unknown event {name:?}; the events are {}", EVENTS.join(", "))]
pub struct UnknownEvent {
    pub name: String,
}

impl Events {
    /// Every event.
    pub fn all() -> Events {
        Events(None)
    }

    /// `purchased,cycle,error`: the comma-separated names of [`EVENTS`]
    /// (spaces around them allowed).
    pub fn parse(list: &str) -> Result<Events, UnknownEvent> {
        let mut chosen = BTreeSet::new();
        for name in list.split(',').map(str::trim) {
            let Some(known) = EVENTS.iter().find(|e| **e == name) else {
                return Err(UnknownEvent {
                    name: crate::text::escape_controls(name).into_owned(),
                });
            };
            chosen.insert(*known);
        }
        Ok(Events(Some(chosen)))
    }

    pub fn allows(&self, event: &str) -> bool {
        self.0.as_ref().is_none_or(|chosen| chosen.contains(event))
    }
}

/// `sha256=HEX`: the value of `X-Oapkg-Signature-256` for `body` sent at
/// `timestamp` (Unix seconds): HMAC-SHA256 keyed by `secret` of
/// `TIMESTAMP.BODY`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The secret variables set in this process's environment.
fn env_secrets() -> Scrubber {
    let values = crate::secrets::from_env(
        crate::secrets::ESMS_VARS
            .into_iter()
            .chain(crate::secrets::AWS_VARS)
            .chain(crate::secrets::NOTIFY_VARS),
    )
    .into_iter()
    .filter(|value| value.chars().count() >= SECRET_MIN_CHARS);
    Scrubber::new(values)
}

/// Queues notifications and delivers them in the background. Must be
/// created inside a tokio runtime.
pub struct Notifier {
    /// Emptied by [`Notifier::drain`].
    queues: std::sync::Mutex<Vec<Queue>>,
    /// Every secret this process knows: the account keys it was given and
    /// the secret variables ([`crate::secrets`]), read at start.
    scrubber: Scrubber,
    /// `--notify-events`.
    events: Events,
}

struct Queue {
    target: Target,
    tx: mpsc::Sender<Arc<str>>,
    task: JoinHandle<()>,
}

impl Notifier {
    /// Starts one delivery task per target. `scrubber` (with the secret
    /// variables added) removes every secret from every body.
    /// A target whose HTTP client cannot be set up is logged and left out.
    pub fn start(targets: &[Target], delivery: Delivery, scrubber: &Scrubber) -> Notifier {
        let delivery = Delivery {
            first_delay: test_delay().unwrap_or(delivery.first_delay),
            ..delivery
        };
        // Read once: every delivery task signs with it.
        let secret: Option<Arc<[u8]>> = match std::env::var(SECRET_VAR) {
            Ok(value) if !value.trim().is_empty() => Some(value.trim().as_bytes().into()),
            Ok(_) => {
                tracing::warn!(
                    target: "oapkg::notify",
                    "{SECRET_VAR} is set but empty: notifications are sent unsigned"
                );
                None
            }
            Err(_) => None,
        };
        let mut queues = Vec::new();
        for target in targets {
            let mut builder = reqwest::Client::builder()
                .user_agent(concat!("oapkg/", env!("CARGO_PKG_VERSION")))
                .timeout(delivery.timeout)
                .connect_timeout(delivery.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .https_only(!target.is_loopback());
            if target.is_loopback() {
                builder = builder.no_proxy();
            }
            let client = match builder.build() {
                Ok(client) => client,
                Err(error) => {
                    tracing::warn!(target: "oapkg::notify", url = %target, %error, "cannot set up notifications to {target}");
                    continue;
                }
            };
            let (tx, rx) = mpsc::channel(delivery.queue.max(1));
            let task = tokio::spawn(deliver_all(
                client,
                target.clone(),
                rx,
                delivery,
                secret.clone(),
            ));
            queues.push(Queue {
                target: target.clone(),
                tx,
                task,
            });
        }
        Notifier {
            queues: std::sync::Mutex::new(queues),
            scrubber: scrubber.and(&env_secrets()),
            events: Events::all(),
        }
    }

    /// Sends only `events` (`--notify-events`).
    pub fn only(mut self, events: Events) -> Notifier {
        self.events = events;
        self
    }

    /// Whether there is anywhere to send to.
    pub fn is_empty(&self) -> bool {
        self.queues().is_empty()
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Vec<Queue>> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `notification` for every target; never waits.
    pub fn send(&self, notification: &Notification) {
        if !self.events.allows(notification.event) {
            return;
        }
        let queues = self.queues();
        if queues.is_empty() {
            return;
        }
        let body = match serde_json::to_string(notification) {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, "cannot encode a notification");
                return;
            }
        };
        let body: Arc<str> = self.scrubber.scrub(&body).into();
        for queue in queues.iter() {
            if queue.tx.try_send(body.clone()).is_err() {
                tracing::warn!(
                    target: "oapkg::notify",
                    url = %queue.target,
                    event = notification.event,
                    "notification dropped: the queue for {} is full (the receiver is slow or down)",
                    queue.target
                );
            }
        }
    }

    /// Queues the notification for an apply run's event, if it has one;
    /// `cost` is what the change it is about costs by the price list.
    pub fn apply_event(&self, event: &ApplyEvent<'_>, cost: Option<&crate::prices::Money>) {
        if let Some(n) = payload::from_apply(event, cost, jiff::Timestamp::now()) {
            self.send(&n);
        }
    }

    /// Queues a notification built by the caller (e.g. `apply` refused).
    pub fn event(&self, event: &'static str, message: String) {
        if let Some(n) = payload::simple(event, jiff::Timestamp::now(), message) {
            self.send(&n);
        }
    }

    /// Stops taking notifications and waits at most `deadline` for the
    /// queued ones to be delivered; what is left is logged and dropped.
    pub async fn drain(&self, deadline: Duration) {
        let queues = std::mem::take(&mut *self.queues());
        let waits = queues.into_iter().map(|queue| {
            let Queue { target, tx, task } = queue;
            drop(tx);
            async move {
                let abort = task.abort_handle();
                if tokio::time::timeout(deadline, task).await.is_err() {
                    abort.abort();
                    tracing::warn!(
                        target: "oapkg::notify",
                        url = %target,
                        "notifications to {target} not delivered within {:.1}s of exiting: dropped",
                        deadline.as_secs_f64()
                    );
                }
            }
        });
        futures_util::future::join_all(waits).await;
    }
}

/// `OAPKG_TEST_NOTIFY_DELAY_MS`: the first retry delay, for the tests.
fn test_delay() -> Option<Duration> {
    std::env::var("OAPKG_TEST_NOTIFY_DELAY_MS")
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

/// Delivers each queued body in turn until the queue closes.
async fn deliver_all(
    client: reqwest::Client,
    target: Target,
    mut rx: mpsc::Receiver<Arc<str>>,
    delivery: Delivery,
    secret: Option<Arc<[u8]>>,
) {
    while let Some(body) = rx.recv().await {
        deliver(&client, &target, &body, delivery, secret.as_deref()).await;
    }
}

async fn deliver(
    client: &reqwest::Client,
    target: &Target,
    body: &Arc<str>,
    delivery: Delivery,
    secret: Option<&[u8]>,
) {
    let mut delay = delivery.first_delay;
    let attempts = delivery.attempts.max(1);
    for attempt in 1..=attempts {
        let mut request = client
            .post(target.0.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        // Signed at each attempt: a receiver may refuse old timestamps.
        if let Some(secret) = secret {
            let now = jiff::Timestamp::now().as_second();
            request = request.header("X-Oapkg-Timestamp", now.to_string()).header(
                "X-Oapkg-Signature-256",
                signature(secret, now, body.as_bytes()),
            );
        }
        let sent = request.body(body.to_string()).send().await;
        let (why, retryable) = match sent {
            Ok(answer) if answer.status().is_success() => {
                tracing::debug!(target: "oapkg::notify", url = %target, attempt, "notification delivered");
                return;
            }
            Ok(answer) => {
                let status = answer.status();
                let retry = status.is_server_error() || status.as_u16() == 429;
                (format!("HTTP {}", status.as_u16()), retry)
            }
            // Without the URL: its path may be a secret.
            Err(error) => (transport(&error), true),
        };
        if !retryable || attempt == attempts {
            tracing::warn!(
                target: "oapkg::notify",
                url = %target,
                attempt,
                "notification to {target} dropped after {attempt} attempt(s): {why}"
            );
            return;
        }
        tracing::debug!(target: "oapkg::notify", url = %target, attempt, "notification not delivered ({why}); retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(delivery.max_delay.max(delivery.first_delay));
    }
}

fn transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "no answer in time".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the connection failed".to_owned()
    }
}

/// The most packages a cycle may buy for each of them to be posted on its
/// own as well as in the `cycle` summary.
pub const SINGLE_POSTS_MAX: usize = 10;

/// Watch's notifications: an [`Observer`] that queues one notification
/// per event people hear about, paced per cycle (see the module docs).
pub struct NotifyObserver {
    notifier: Arc<Notifier>,
    cycle: std::sync::Mutex<CycleNotes>,
}

/// What the cycle running has to summarise.
#[derive(Default)]
struct CycleNotes {
    /// Post each package on its own too (a small cycle).
    singles: bool,
    items: Vec<payload::SummaryItem>,
    /// The Git commit the files come from.
    commit: Option<String>,
}

impl NotifyObserver {
    pub fn new(notifier: Arc<Notifier>) -> NotifyObserver {
        NotifyObserver {
            notifier,
            cycle: std::sync::Mutex::new(CycleNotes {
                singles: true,
                ..CycleNotes::default()
            }),
        }
    }
}

impl Observer for NotifyObserver {
    fn event(&self, event: &WatchEvent<'_>) {
        let now = jiff::Timestamp::now();
        let mut notes = self
            .cycle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *event {
            WatchEvent::CycleStarted { .. } => {
                notes.items.clear();
                notes.singles = true;
            }
            WatchEvent::ApplyStarted { plan, .. } => {
                let summary = plan.summary();
                // Without the summary (`--notify-events` leaves `cycle`
                // out) each package is told on its own, however many.
                notes.singles = summary.purchase + summary.replace <= SINGLE_POSTS_MAX
                    || !self.notifier.events.allows("cycle");
            }
            WatchEvent::Git {
                event: crate::watch::GitEvent::Applied { commit, .. },
            } => notes.commit = Some((*commit).to_owned()),
            WatchEvent::CycleFinished { cycle } if !notes.items.is_empty() => {
                let items = std::mem::take(&mut notes.items);
                let n = payload::summary(cycle, notes.commit.as_deref(), items, now);
                self.notifier.send(&n);
                return;
            }
            _ => {}
        }
        if let Some(item) = payload::summary_item(event) {
            notes.items.push(item);
            if !notes.singles {
                return;
            }
        }
        drop(notes);
        if let Some(n) = payload::from_watch(event, now) {
            self.notifier.send(&n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // The HMAC itself: RFC 4231 test case 2. Then the signed bytes:
        // the timestamp, a dot, the body.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let signed = signature(b"Jefe", 1_700_000_000, b"{\"a\":1}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        assert_eq!(
            signed,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
    }

    #[test]
    fn notify_events_are_checked_names() {
        let events = Events::parse("cycle, error").unwrap();
        assert!(events.allows("cycle") && events.allows("error"));
        assert!(!events.allows("purchased"));
        assert!(Events::all().allows("purchased"));
        let error = Events::parse("cycle,bought").unwrap_err();
        assert!(error.to_string().contains("\"bought\""), "{error}");
        assert!(error.to_string().contains("purchased, failed"), "{error}");
    }

    #[test]
    fn urls_are_https_or_loopback_http_and_shown_without_their_path() {
        let t = Target::parse("https://hooks.example.com/services/T000/B000/XXXX").unwrap();
        assert_eq!(t.to_string(), "https://hooks.example.com");
        assert!(Target::parse("http://127.0.0.1:9000/hook").is_ok());
        assert!(Target::parse("http://localhost/hook").is_ok());
        assert!(matches!(
            Target::parse("http://example.com/hook"),
            Err(TargetError::InsecureRemote { .. })
        ));
        assert!(matches!(
            Target::parse("ftp://example.com/"),
            Err(TargetError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Target::parse("https://user:pw@example.com/"),
            Err(TargetError::HasUserInfo)
        ));
    }
}
