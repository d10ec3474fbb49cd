//! What one notification says: the JSON body of a webhook POST, built from
//! a [`WatchEvent`] or an [`ApplyEvent`]. Pure: the time comes in as an
//! argument, nothing is sent from here.
//!
//! Fields: `event`, `at` (RFC 3339, UTC), `message`, `key` / `oaid` /
//! `name` when the event is about one package or OA, `cost` (a package's,
//! with a price list) and, for the `cycle` summary, `cycle`, `counts`,
//! `spent` and `packages`; and `text`, a one-line `oapkg: …` summary a
//! Slack-compatible incoming webhook shows as it is. Every amount is an
//! estimate from the manifests' price list (`"estimated": true`, and
//! "estimated" in the words): eSMS charges its own prices. The message
//! never repeats the event's name (`text` starts with it). Text that came from a file or the server is printed with its
//! control characters escaped; the account keys are scrubbed by the
//! sender ([`super::Notifier`]) from the whole body.

use jiff::Timestamp;
use serde::Serialize;

use crate::apply::{ApplyEvent, HoldReason, PackageResult};
use crate::plan::Change;
use crate::prices::{Money, thousands};
use crate::spec::Key;
use crate::text::escape_controls;
use crate::watch::git::short_commit;
use crate::watch::{AccountCheck, GitEvent, Reconciled, Unreadable, WatchEvent};

/// Every event a notification can be, for `--notify-events`.
pub const EVENTS: [&str; 14] = [
    "purchased",
    "failed",
    "unconfirmed",
    "held",
    "refused",
    "expiring",
    "low_balance",
    "error",
    "suspended",
    "resumed",
    "cycle",
    "git",
    "drift",
    "settled",
];

/// An amount from the price list: always an estimate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Estimate {
    pub amount: u64,
    pub currency: String,
    /// Always `true`: the price list's figure, not what eSMS charged.
    pub estimated: bool,
}

impl From<&Money> for Estimate {
    fn from(money: &Money) -> Estimate {
        Estimate {
            amount: money.amount,
            currency: money.currency.clone(),
            estimated: true,
        }
    }
}

/// `about 708,000 VND (estimated from the price list)`.
fn estimated(money: &Money) -> String {
    format!("about {money} (estimated from the price list)")
}

/// What one cycle bought, failed, left unconfirmed or held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub purchased: usize,
    pub failed: usize,
    pub unconfirmed: usize,
    pub held: usize,
}

/// One package of a `cycle` summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SummaryItem {
    pub key: String,
    pub oaid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `purchased`, `failed`, `unconfirmed` or `held`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Estimate>,
    /// Why it failed or is held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of one webhook POST.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    /// One of [`EVENTS`].
    pub event: &'static str,
    pub at: Timestamp,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oaid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the package costs by the price list (estimated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Estimate>,
    /// The Git commit (`git` events, and a `cycle` planned from one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The `cycle` summary's cycle number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cycle: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    /// What the packages bought cost by the price list (estimated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spent: Option<Estimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<SummaryItem>>,
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
            cost: None,
            commit: None,
            cycle: None,
            counts: None,
            spent: None,
            packages: None,
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
        let subject = match (&self.key, &self.oaid, self.cycle) {
            (Some(key), _, _) => format!(" {key}"),
            (None, Some(oaid), _) => format!(" OA {oaid}"),
            (None, None, Some(cycle)) => format!(" {cycle}"),
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
/// result is one people hear about (bought, failed, unconfirmed); `cost`
/// is what the package costs by the plan's price list.
pub fn from_apply(
    event: &ApplyEvent<'_>,
    cost: Option<&Money>,
    at: Timestamp,
) -> Option<Notification> {
    let (change, key, notification) = match *event {
        ApplyEvent::PurchaseDone {
            change,
            key,
            result,
        } => {
            let message = result_message(result)?;
            let message = match (result, cost) {
                (PackageResult::Submitted { .. }, Some(cost)) => {
                    format!("{message}; {}", estimated(cost))
                }
                _ => message,
            };
            let mut notification = Notification::new(result.outcome(), at, message);
            notification.cost = cost.map(Estimate::from);
            (change, key, notification)
        }
        ApplyEvent::Held { change, reason, .. } => return Some(held(change, reason, cost, at)),
        _ => return None,
    };
    Some(about_change(notification, change, key).finish())
}

/// What a final result says, without the event's own word; `None` for
/// results nobody is told about one by one.
fn result_message(result: &PackageResult) -> Option<String> {
    Some(match result {
        PackageResult::Submitted {
            service_preview_id,
            code,
            ..
        } => match service_preview_id {
            Some(id) => format!(
                "eSMS accepted it (code {}, ServicePreviewId {})",
                escape_controls(code),
                escape_controls(id)
            ),
            None => format!("eSMS accepted it (code {})", escape_controls(code)),
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
        PackageResult::NotAttempted { .. } | PackageResult::LeftUnconfirmed => return None,
    })
}

fn about_change(notification: Notification, change: &Change, key: &Key) -> Notification {
    let oaid = change
        .desired()
        .as_ref()
        .map(|d| &d.spec.oaid)
        .or(change.before().map(|r| &r.spec.oaid));
    notification.about(key.as_str(), oaid.map_or("", |o| o.as_str()), change.name())
}

fn held(change: &Change, reason: &HoldReason, cost: Option<&Money>, at: Timestamp) -> Notification {
    let mut notification = Notification::new("held", at, format!("not bought: {reason}"));
    notification.cost = cost.map(Estimate::from);
    about_change(notification, change, &change.key).finish()
}

/// A notification that is only an event and a message (e.g. `apply`
/// refused or failed).
pub fn simple(event: &'static str, at: Timestamp, message: String) -> Option<Notification> {
    Some(Notification::new(event, at, escape_controls(&message).into_owned()).finish())
}

/// The notification for a watch event, if it is one people hear about.
/// (The per-package ones — bought, failed, unconfirmed, held — and the
/// `cycle` summary are [`super::NotifyObserver`]'s to pace.)
pub fn from_watch(event: &WatchEvent<'_>, at: Timestamp) -> Option<Notification> {
    let notification = match *event {
        // Watch reports a change held once, as `ChangeHeld`.
        WatchEvent::Apply {
            event: ApplyEvent::Held { .. },
            ..
        } => return None,
        WatchEvent::Apply { event, cost, .. } => return from_apply(event, cost, at),
        WatchEvent::ChangeHeld { change, reason, .. } => {
            return Some(held(change, reason, None, at));
        }
        WatchEvent::Applied { reconciled, .. } => match reconciled {
            Reconciled::Refused { reason } => Notification::new(
                "refused",
                at,
                format!(
                    "the whole cycle, nothing bought: {}",
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
                "{} exists; cycles plan but buy nothing until it is removed",
                escape_controls(&path.display().to_string())
            ),
        ),
        WatchEvent::Resumed { path } => Notification::new(
            "resumed",
            at,
            format!(
                "{} is gone; buying again",
                escape_controls(&path.display().to_string())
            ),
        ),
        WatchEvent::AccountChecked {
            check: AccountCheck::Rejected { reason },
            changed: true,
            ..
        } => Notification::new(
            "error",
            at,
            format!(
                "eSMS rejected the credentials, nothing can be bought until they are fixed: {}",
                escape_controls(reason)
            ),
        ),
        WatchEvent::Git { event } => return git(event, at),
        _ => return None,
    };
    Some(notification.finish())
}

/// The `git` notification: a commit applied (moved to) or refused.
fn git(event: &GitEvent<'_>, at: Timestamp) -> Option<Notification> {
    let commit = match *event {
        GitEvent::Applied { commit, .. } | GitEvent::Refused { commit, .. } => commit,
        GitEvent::Checkout { .. } | GitEvent::Cleared { .. } | GitEvent::FetchFailed { .. } => {
            return None;
        }
    };
    let mut notification = Notification::new("git", at, event.describe()?);
    notification.commit = Some(commit.to_owned());
    Some(notification.finish())
}

/// The `cycle` summary: what cycle `cycle` bought, failed, left
/// unconfirmed and held, with the estimated total of what it bought.
pub fn summary(
    cycle: u64,
    commit: Option<&str>,
    items: Vec<SummaryItem>,
    at: Timestamp,
) -> Notification {
    let mut counts = Counts::default();
    let mut spent: Option<Estimate> = None;
    for item in &items {
        match item.result {
            "purchased" => counts.purchased += 1,
            "failed" => counts.failed += 1,
            "unconfirmed" => counts.unconfirmed += 1,
            _ => counts.held += 1,
        }
        if let ("purchased", Some(cost)) = (item.result, &item.cost) {
            let total = spent.get_or_insert_with(|| Estimate {
                amount: 0,
                currency: cost.currency.clone(),
                estimated: true,
            });
            total.amount = total.amount.saturating_add(cost.amount);
        }
    }
    let mut message = format!(
        "{} purchased, {} failed, {} unconfirmed, {} held",
        counts.purchased, counts.failed, counts.unconfirmed, counts.held
    );
    if let Some(spent) = &spent {
        message.push_str(&format!(
            "; spent {}",
            estimated(&Money {
                amount: spent.amount,
                currency: spent.currency.clone(),
            })
        ));
    }
    if let Some(commit) = commit {
        message.push_str(&format!(" (commit {})", short_commit(commit)));
    }
    let mut notification = Notification::new("cycle", at, message);
    notification.cycle = Some(cycle);
    notification.commit = commit.map(str::to_owned);
    notification.counts = Some(counts);
    notification.spent = spent;
    notification.packages = Some(items);
    notification.finish()
}

/// A package's line in the `cycle` summary, from a watch event about it.
pub fn summary_item(event: &WatchEvent<'_>) -> Option<SummaryItem> {
    let (change, key, result, cost, reason) = match *event {
        WatchEvent::Apply {
            event:
                &ApplyEvent::PurchaseDone {
                    change,
                    key,
                    result,
                },
            cost,
            ..
        } => {
            let reason = match result {
                PackageResult::Submitted { .. } => None,
                PackageResult::NotAttempted { .. } | PackageResult::LeftUnconfirmed => {
                    return None;
                }
                other => result_message(other),
            };
            (change, key, result.outcome(), cost, reason)
        }
        WatchEvent::ChangeHeld { change, reason, .. } => {
            (change, &change.key, "held", None, Some(reason.to_string()))
        }
        _ => return None,
    };
    let oaid = change
        .desired()
        .map(|d| &d.spec.oaid)
        .or(change.before().map(|r| &r.spec.oaid));
    Some(SummaryItem {
        key: escape_controls(key.as_str()).into_owned(),
        oaid: oaid.map_or(String::new(), |o| escape_controls(o.as_str()).into_owned()),
        name: change.name().map(|n| escape_controls(n).into_owned()),
        result,
        cost: cost.map(Estimate::from),
        reason,
    })
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

    fn item(result: &'static str, cost: Option<u64>) -> SummaryItem {
        SummaryItem {
            key: format!("1001@2027-01-0{}", if result == "held" { 2 } else { 1 }),
            oaid: "1001".into(),
            name: None,
            result,
            cost: cost.map(|amount| Estimate {
                amount,
                currency: "VND".into(),
                estimated: true,
            }),
            reason: None,
        }
    }

    #[test]
    fn the_cycle_summary_counts_and_totals_what_was_bought_as_an_estimate() {
        let at: Timestamp = "2026-11-26T01:02:03Z".parse().unwrap();
        let n = summary(
            7,
            Some("0123456789abcdef0123"),
            vec![
                item("purchased", Some(59_000)),
                item("purchased", Some(708_000)),
                // Not bought: not in the total.
                item("failed", Some(59_000)),
                item("held", None),
            ],
            at,
        );
        assert_eq!(n.event, "cycle");
        assert_eq!(
            n.counts,
            Some(Counts {
                purchased: 2,
                failed: 1,
                unconfirmed: 0,
                held: 1
            })
        );
        assert_eq!(n.spent.as_ref().map(|s| s.amount), Some(767_000));
        assert_eq!(
            n.text,
            "oapkg: cycle 7: 2 purchased, 1 failed, 0 unconfirmed, 1 held; spent about 767,000 VND (estimated from the price list) (commit 0123456789ab)"
        );
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["spent"]["estimated"], true);
        assert_eq!(json["packages"].as_array().unwrap().len(), 4);
    }
}
