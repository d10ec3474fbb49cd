//! systemd `Type=notify`: `READY=1` once the file watcher is set up (the
//! first cycle follows), `STOPPING=1` when watching ends, and, when the
//! unit sets `WatchdogSec=`, `WATCHDOG=1` every half of that period from
//! the watch's runtime, starting once it is ready (a runtime that stops
//! running tasks stops the pings, and systemd restarts the service; a
//! start that never gets ready is `TimeoutStartSec=`'s to judge). Without
//! `NOTIFY_SOCKET` nothing is sent.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::watch::{Observer, WatchEvent};

/// Tells systemd when the watch is ready and when it stops; the watchdog
/// pings wait for `ready`.
pub(super) struct Readiness {
    pub(super) ready: Arc<tokio::sync::Notify>,
}

impl Observer for Readiness {
    fn event(&self, event: &WatchEvent<'_>) {
        let state = match event {
            WatchEvent::Watching { .. } => NotifyState::Ready,
            WatchEvent::Stopped => NotifyState::Stopping,
            _ => return,
        };
        if let Err(error) = sd_notify::notify(&[state]) {
            tracing::warn!(%error, "cannot notify systemd (NOTIFY_SOCKET)");
        }
        if matches!(event, WatchEvent::Watching { .. }) {
            self.ready.notify_one();
        }
    }
}

/// Whether `NOTIFY_SOCKET` is set.
pub(super) fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Pings the watchdog every half of `WATCHDOG_USEC`, if systemd asks for
/// it, from the moment `ready` is notified; inside a runtime.
pub(super) fn watchdog(ready: Arc<tokio::sync::Notify>) -> Option<tokio::task::JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let every = (period / 2).max(Duration::from_millis(10));
    Some(tokio::spawn(async move {
        ready.notified().await;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = sd_notify::notify(&[NotifyState::Watchdog]) {
                tracing::warn!(%error, "cannot ping the systemd watchdog");
            }
        }
    }))
}
