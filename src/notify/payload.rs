//! What one notification says: the JSON body of a webhook POST, built from
//! a [`WatchEvent`] or an [`ApplyEvent`]. Pure: the time comes in as an
//! argument, nothing is sent from here.
//!
//! Fields: `event`, `at` (RFC 3339, UTC), `message`, `key` / `oaid` /
//! `name` when the event is about one package or OA, and `text`, a
//! one-line `oapkg: …` summary a Slack-compatible incoming webhook shows
//! as it is. Text that came from a file or the server is printed with its
//! control characters escaped; the account keys are scrubbed by the
//! sender ([`super::Notifier`]) from the whole body.

use jiff::Timestamp;
use serde::Serialize;

use crate::apply::{ApplyEvent, HoldReason, PackageResult};
use crate::plan::Change;
use crate::prices::thousands;
use crate::spec::Key;
use crate::text::escape_controls;
use crate::watch::{Reconciled, Unreadable, WatchEvent};

/// The body of one webhook POST.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    /// `purchased`, `failed`, `unconfirmed`, `held`, `refused`,
    /// `expiring`, `low_balance`, `error`, `suspended` or `resumed`.
    pub event: &'static str,
    pub at: Timestamp,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oaid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `oapkg: <event> <key>: <message>`, for chat webhooks.
    pub text: String,
}

impl Notification {
    fn new(event: &'static str, at: Timestamp, message: String) -> Notification {
        Notification {
            event,
            at,
            message,
            key: None,
            oaid: None,
            name: None,
            text: String::new(),
        }
    }

    fn about(mut self, key: &str, oaid: &str, name: Option<&str>) -> Notification {
        self.key = Some(escape_controls(key).into_owned());
        self.oaid = Some(escape_controls(oaid).into_owned());
        self.name = name.map(|n| escape_controls(n).into_owned());
        self
    }

    /// Fills `text` from the other fields.
    fn finish(mut self) -> Notification {
        let subject = match (&self.key, &self.oaid) {
            (Some(key), _) => format!(" {key}"),
            (None, Some(oaid)) => format!(" OA {oaid}"),
            _ => String::new(),
        };
        let name = self
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        // One line: a message never breaks the chat line.
        let message = self.message.replace(['\n', '\r'], " ");
        self.text = format!("oapkg: {}{subject}{name}: {message}", self.event);
        self
    }
}

/// The notification for a package's final result in an apply run, if the
/// result is one people hear about (bought, failed, unconfirmed).
pub fn from_apply(event: &ApplyEvent<'_>, at: Timestamp) -> Option<Notification> {
    let (change, key, notification) = match *event {
        ApplyEvent::PurchaseDone {
            change,
            key,
            result,
        } => {
            let message = match result {
                PackageResult::Submitted {
                    service_preview_id,
                    code,
                    ..
                } => match service_preview_id {
                    Some(id) => format!(
                        "bought (code {}, ServicePreviewId {})",
                        escape_controls(code),
                        escape_controls(id)
                    ),
                    None => format!("bought (code {})", escape_controls(code)),
                },
                PackageResult::Failed { code, message, .. } => match code {
                    Some(code) => format!(
                        "not bought: eSMS answered code {}: {}",
                        escape_controls(code),
                        escape_controls(message)
                    ),
                    None => format!("not bought: {}", escape_controls(message)),
                },
                PackageResult::Unconfirmed { reason, .. } => format!(
                    "unknown whether eSMS received the purchase ({}); never resent by oapkg: check the eSMS portal, then `oapkg state confirm KEY` or `oapkg apply --retry-unconfirmed`",
                    escape_controls(reason)
                ),
                PackageResult::NotAttempted { .. } | PackageResult::LeftUnconfirmed => {
                    return None;
                }
            };
            (
                change,
                key,
                Notification::new(result.outcome(), at, message),
            )
        }
        ApplyEvent::Held { change, reason, .. } => return Some(held(change, reason, at)),
        _ => return None,
    };
    Some(about_change(notification, change, key).finish())
}

fn about_change(notification: Notification, change: &Change, key: &Key) -> Notification {
    let oaid = change
        .desired()
        .as_ref()
        .map(|d| &d.spec.oaid)
        .or(change.before().map(|r| &r.spec.oaid));
    notification.about(key.as_str(), oaid.map_or("", |o| o.as_str()), change.name())
}

fn held(change: &Change, reason: &HoldReason, at: Timestamp) -> Notification {
    let notification = Notification::new("held", at, format!("held, not bought: {reason}"));
    about_change(notification, change, &change.key).finish()
}

/// A notification that is only an event and a message (e.g. `apply`
/// refused or failed).
pub fn simple(event: &'static str, at: Timestamp, message: String) -> Option<Notification> {
    Some(Notification::new(event, at, escape_controls(&message).into_owned()).finish())
}

/// The notification for a watch event, if it is one people hear about.
pub fn from_watch(event: &WatchEvent<'_>, at: Timestamp) -> Option<Notification> {
    let notification = match *event {
        // Watch reports a change held once, as `ChangeHeld`.
        WatchEvent::Apply {
            event: ApplyEvent::Held { .. },
            ..
        } => return None,
        WatchEvent::Apply { event, .. } => return from_apply(event, at),
        WatchEvent::ChangeHeld { change, reason, .. } => return Some(held(change, reason, at)),
        WatchEvent::Applied { reconciled, .. } => match reconciled {
            Reconciled::Refused { reason } => Notification::new(
                "refused",
                at,
                format!(
                    "the cycle was refused, nothing bought: {}",
                    escape_controls(reason)
                ),
            ),
            Reconciled::Failed { reason } => Notification::new(
                "error",
                at,
                format!(
                    "the apply step did not complete: {}",
                    escape_controls(reason)
                ),
            ),
            Reconciled::Done { .. } | Reconciled::Cancelled { .. } => return None,
        },
        WatchEvent::Invalid { error, .. } => {
            let first = error.errors.first().map(|d| {
                format!(
                    "{}:{}:{}: {}",
                    escape_controls(&d.source.file.to_string()),
                    d.source.line,
                    d.source.column,
                    escape_controls(&d.message)
                )
            });
            Notification::new(
                "error",
                at,
                format!(
                    "the manifests are invalid ({} error(s)), nothing is bought until they are fixed{}",
                    error.errors.len(),
                    first.map(|f| format!(": {f}")).unwrap_or_default()
                ),
            )
        }
        WatchEvent::Unreadable { cause, .. } => Notification::new(
            "error",
            at,
            match cause {
                Unreadable::Today(why) => {
                    format!("today's date cannot be read: {}", escape_controls(why))
                }
                Unreadable::State(error) => format!(
                    "the state cannot be read: {}",
                    escape_controls(&error.to_string())
                ),
            },
        ),
        WatchEvent::LowBalance { balance, cost, .. } => Notification::new(
            "low_balance",
            at,
            format!(
                "the eSMS balance ({}) is below what this cycle's purchases cost ({cost}); nothing was bought",
                thousands(balance.max(0.0) as u64)
            ),
        ),
        WatchEvent::Expiring { oa, .. } => Notification::new(
            "expiring",
            at,
            format!(
                "coverage ends {} ({} day(s) left) with nothing declared after it",
                oa.end, oa.days_left
            ),
        )
        .about(oa.key.as_str(), oa.oaid.as_str(), oa.name.as_deref()),
        WatchEvent::Suspended { path } => Notification::new(
            "suspended",
            at,
            format!(
                "suspended: {} exists; cycles plan but buy nothing",
                escape_controls(&path.display().to_string())
            ),
        ),
        WatchEvent::Resumed { path } => Notification::new(
            "resumed",
            at,
            format!(
                "resumed: {} is gone; buying again",
                escape_controls(&path.display().to_string())
            ),
        ),
        _ => return None,
    };
    Some(notification.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_one_line_naming_the_event_and_the_subject() {
        let at: Timestamp = "2026-11-26T01:02:03Z".parse().unwrap();
        let n = Notification::new("failed", at, "not bought:\ncode 204".into())
            .about("1001@2027-01-01", "1001", Some("Shop\u{1b}[31m"))
            .finish();
        assert_eq!(
            n.text,
            "oapkg: failed 1001@2027-01-01 (Shop\\u{1b}[31m): not bought: code 204"
        );
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["event"], "failed");
        assert_eq!(json["at"], "2026-11-26T01:02:03Z");
        assert_eq!(json["oaid"], "1001");
        let bare = Notification::new("error", at, "x".into()).finish();
        let json = serde_json::to_value(&bare).unwrap();
        assert!(json.get("key").is_none(), "{json}");
    }
}
