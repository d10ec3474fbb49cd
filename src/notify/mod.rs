//! `--notify URL`: one webhook POST per event that people should hear
//! about (a purchase bought, failed or unconfirmed, a change held, a cycle
//! refused, an OA expiring, a low balance, an error), for `watch` and
//! `apply`.
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

use reqwest::Url;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use payload::Notification;

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

/// The secret variables set in this process's environment.
fn env_secrets() -> Scrubber {
    let values = crate::secrets::from_env(
        crate::secrets::ESMS_VARS
            .into_iter()
            .chain(crate::secrets::AWS_VARS),
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
            let task = tokio::spawn(deliver_all(client, target.clone(), rx, delivery));
            queues.push(Queue {
                target: target.clone(),
                tx,
                task,
            });
        }
        Notifier {
            queues: std::sync::Mutex::new(queues),
            scrubber: scrubber.and(&env_secrets()),
        }
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

    /// Queues the notification for an apply run's event, if it has one.
    pub fn apply_event(&self, event: &ApplyEvent<'_>) {
        if let Some(n) = payload::from_apply(event, jiff::Timestamp::now()) {
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
) {
    while let Some(body) = rx.recv().await {
        deliver(&client, &target, &body, delivery).await;
    }
}

async fn deliver(client: &reqwest::Client, target: &Target, body: &Arc<str>, delivery: Delivery) {
    let mut delay = delivery.first_delay;
    let attempts = delivery.attempts.max(1);
    for attempt in 1..=attempts {
        let sent = client
            .post(target.0.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
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

/// Watch's notifications: an [`Observer`] that queues one notification
/// per event people hear about.
pub struct NotifyObserver(pub Arc<Notifier>);

impl Observer for NotifyObserver {
    fn event(&self, event: &WatchEvent<'_>) {
        if let Some(n) = payload::from_watch(event, jiff::Timestamp::now()) {
            self.0.send(&n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
