//! When to run a cycle: a pure state machine fed with instants, so every
//! rule is tested with a made-up clock.
//!
//! - **Trailing-edge debounce.** Each change pushes the deadline to
//!   `time of the change + debounce`; a cycle starts only once that deadline
//!   has passed, i.e. after the burst has been quiet for the whole window.
//!   The time of a change is when it happened (the watcher reports it a
//!   little later), so a batch that arrives late does not stretch the wait.
//! - **One cycle at a time, one more queued.** Changes that arrive while a
//!   cycle runs set the deadline again; when the cycle ends, exactly one more
//!   cycle runs (once that deadline has passed), however many changes came.
//! - **An unsettled change postpones everything.** While a change waits for
//!   its debounce window, a due interval or retry waits too, and the change's
//!   cycle serves for them: no cycle reads files in the middle of a save.
//! - **`--interval`**: a cycle when no cycle has run for that long.
//! - **A new day**: a cycle when the calendar day turns (the watch loop
//!   tells the instant, [`Scheduler::next_day`]); any cycle starting after
//!   it serves it.
//! - **Retries**: the cycle runner says when a backed-off cycle may be tried
//!   again ([`Scheduler::finish`]); the scheduler wakes up for it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Why a cycle runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The first cycle after start-up.
    Startup,
    /// Manifest files changed and settled.
    Change,
    /// A backed-off cycle may be tried again.
    Retry,
    /// `--interval` passed without a cycle.
    Interval,
    /// A new calendar day began (Asia/Ho_Chi_Minh).
    Day,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Change => "change",
            Trigger::Retry => "retry",
            Trigger::Interval => "interval",
            Trigger::Day => "day",
        }
    }
}

/// A cycle the scheduler has started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    /// 1 for the start-up cycle, then one more per cycle.
    pub id: u64,
    pub trigger: Trigger,
    /// Changed paths since the previous cycle started (the first
    /// [`MAX_PATHS`] in name order), and how many there were in all.
    pub paths: Vec<PathBuf>,
    pub path_count: usize,
}

/// How many changed paths a cycle remembers for its log line.
pub const MAX_PATHS: usize = 5;

#[derive(Debug)]
pub struct Scheduler {
    debounce: Duration,
    interval: Option<Duration>,
    /// The start-up cycle, due at once.
    startup: Option<Instant>,
    /// Trailing edge of the changes not yet served by a cycle.
    change_deadline: Option<Instant>,
    next_interval: Option<Instant>,
    retry_at: Option<Instant>,
    /// When the next calendar day begins.
    day_at: Option<Instant>,
    running: bool,
    last_id: u64,
    /// Every changed path since the last cycle started (distinct).
    paths: BTreeSet<PathBuf>,
}

impl Scheduler {
    pub fn new(debounce: Duration, interval: Option<Duration>, now: Instant) -> Scheduler {
        Scheduler {
            debounce,
            interval: interval.filter(|i| !i.is_zero()),
            startup: Some(now),
            change_deadline: None,
            next_interval: None,
            retry_at: None,
            day_at: None,
            running: false,
            last_id: 0,
            paths: BTreeSet::new(),
        }
    }

    /// A relevant change happened at `at` (reported at `now`).
    pub fn on_change(&mut self, at: Instant, now: Instant, paths: &[PathBuf]) {
        let deadline = at.min(now) + self.debounce;
        self.change_deadline = Some(match self.change_deadline {
            Some(current) => current.max(deadline),
            None => deadline,
        });
        self.paths.extend(paths.iter().cloned());
    }

    /// Whether changes are waiting for a cycle (arrived since the current
    /// cycle started, or not yet settled).
    pub fn change_pending(&self) -> bool {
        self.change_deadline.is_some()
    }

    pub fn running(&self) -> bool {
        self.running
    }

    /// Starts a cycle if one is due at `now`.
    pub fn start(&mut self, now: Instant) -> Option<Start> {
        if self.running {
            return None;
        }
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        let trigger = match self.change_deadline {
            Some(deadline) if deadline > now => return None,
            Some(_) if self.startup.is_some() => Trigger::Startup,
            Some(_) => Trigger::Change,
            None if due(self.startup) => Trigger::Startup,
            None if due(self.retry_at) => Trigger::Retry,
            None if due(self.next_interval) => Trigger::Interval,
            None if due(self.day_at) => Trigger::Day,
            None => return None,
        };
        // Any cycle that starts after midnight serves the new day.
        if due(self.day_at) {
            self.day_at = None;
        }
        self.startup = None;
        self.change_deadline = None;
        self.retry_at = None;
        self.next_interval = None;
        self.running = true;
        self.last_id += 1;
        let paths = std::mem::take(&mut self.paths);
        let start = Start {
            id: self.last_id,
            trigger,
            path_count: paths.len(),
            paths: paths.into_iter().take(MAX_PATHS).collect(),
        };
        Some(start)
    }

    /// The cycle ended at `now`. `retry_at`: when the runner wants a
    /// backed-off cycle tried again, if it does.
    pub fn finish(&mut self, now: Instant, retry_at: Option<Instant>) {
        self.running = false;
        self.next_interval = self.interval.map(|interval| now + interval);
        self.retry_at = retry_at;
    }

    /// The next calendar day begins at `at`: a cycle then, unless another
    /// one starts after it first.
    pub fn next_day(&mut self, at: Option<Instant>) {
        self.day_at = at;
    }

    /// When [`start`](Self::start) should be called next: `None` while a
    /// cycle runs or when nothing is scheduled (only a change can start the
    /// next cycle).
    pub fn next_wake(&self) -> Option<Instant> {
        if self.running {
            return None;
        }
        if let Some(deadline) = self.change_deadline {
            return Some(deadline);
        }
        [self.startup, self.retry_at, self.next_interval, self.day_at]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A scheduler whose start-up cycle has run, at instant `t0`.
    fn settled(interval: Option<Duration>) -> (Scheduler, Instant) {
        let t0 = Instant::now();
        let mut s = Scheduler::new(D, interval, t0);
        assert_eq!(s.start(t0).unwrap().trigger, Trigger::Startup);
        s.finish(t0, None);
        (s, t0)
    }

    fn change(s: &mut Scheduler, at: Instant) {
        s.on_change(at, at, &[PathBuf::from("a.yaml")]);
    }

    #[test]
    fn startup_cycle_is_due_at_once_and_numbered_one() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(D, None, t0);
        assert_eq!(s.next_wake(), Some(t0));
        let start = s.start(t0).unwrap();
        assert_eq!((start.id, start.trigger), (1, Trigger::Startup));
        assert!(s.start(t0).is_none(), "one cycle at a time");
        s.finish(t0, None);
        assert_eq!(s.next_wake(), None, "nothing scheduled without interval");
        assert!(s.start(t0 + ms(10_000)).is_none());
    }

    #[test]
    fn trailing_edge_waits_for_the_window_after_the_last_change() {
        let (mut s, t0) = settled(None);
        change(&mut s, t0 + ms(100));
        assert_eq!(s.next_wake(), Some(t0 + ms(600)));
        assert!(s.start(t0 + ms(599)).is_none());
        // Another change inside the window moves the edge.
        change(&mut s, t0 + ms(400));
        assert!(s.start(t0 + ms(600)).is_none());
        assert_eq!(s.next_wake(), Some(t0 + ms(900)));
        let start = s.start(t0 + ms(900)).unwrap();
        assert_eq!((start.id, start.trigger), (2, Trigger::Change));
        assert_eq!(start.paths, vec![PathBuf::from("a.yaml")]);
    }

    #[test]
    fn a_burst_of_fifty_changes_gives_one_cycle() {
        let (mut s, t0) = settled(None);
        let mut started = 0;
        let mut now = t0;
        for i in 0..50 {
            now = t0 + ms(i * 8); // 50 writes over 400 ms, inside the window
            change(&mut s, now);
            started += usize::from(s.start(now).is_some());
        }
        // Poll every 10 ms for two seconds.
        for _ in 0..200 {
            now += ms(10);
            if s.start(now).is_some() {
                started += 1;
                s.finish(now, None);
            }
        }
        assert_eq!(started, 1);
    }

    #[test]
    fn a_late_report_does_not_stretch_the_window() {
        let (mut s, t0) = settled(None);
        // Happened at t0+100, reported by the watcher 300 ms later.
        s.on_change(t0 + ms(100), t0 + ms(400), &[]);
        assert_eq!(s.next_wake(), Some(t0 + ms(600)));
        // Reported after the window: due at once.
        let (mut s, t0) = settled(None);
        s.on_change(t0, t0 + ms(700), &[]);
        assert!(s.start(t0 + ms(700)).is_some());
    }

    #[test]
    fn changes_during_a_cycle_queue_exactly_one_more() {
        let (mut s, t0) = settled(None);
        change(&mut s, t0);
        let first = s.start(t0 + D).unwrap();
        assert_eq!(first.id, 2);
        for i in 0..20 {
            change(&mut s, t0 + D + ms(i * 10));
            assert!(s.start(t0 + D + ms(i * 10)).is_none(), "still running");
        }
        assert!(s.change_pending());
        // The cycle ends after the queued changes settled: one more, at once.
        let end = t0 + ms(3000);
        s.finish(end, None);
        let second = s.start(end).unwrap();
        assert_eq!((second.id, second.trigger), (3, Trigger::Change));
        s.finish(end, None);
        assert!(s.start(end + ms(10_000)).is_none(), "and only one");
    }

    #[test]
    fn changed_paths_are_collected_and_capped() {
        let (mut s, t0) = settled(None);
        for i in 0..8 {
            s.on_change(t0, t0, &[PathBuf::from(format!("{i}.yaml"))]);
            s.on_change(t0, t0, &[PathBuf::from(format!("{i}.yaml"))]);
        }
        let start = s.start(t0 + D).unwrap();
        assert_eq!(start.paths.len(), MAX_PATHS);
        assert_eq!(start.path_count, 8);
        s.finish(t0 + D, None);
        change(&mut s, t0 + D);
        assert_eq!(s.start(t0 + D + D).unwrap().path_count, 1, "reset");
    }

    #[test]
    fn interval_runs_when_no_cycle_ran_for_that_long() {
        let interval = Duration::from_secs(60);
        let (mut s, t0) = settled(Some(interval));
        assert_eq!(s.next_wake(), Some(t0 + interval));
        assert!(s.start(t0 + ms(59_999)).is_none());
        let start = s.start(t0 + interval).unwrap();
        assert_eq!(start.trigger, Trigger::Interval);
        // A change cycle pushes the next interval cycle back.
        s.finish(t0 + interval, None);
        change(&mut s, t0 + ms(90_000));
        assert!(s.start(t0 + ms(90_500)).is_some());
        s.finish(t0 + ms(90_500), None);
        assert_eq!(s.next_wake(), Some(t0 + ms(150_500)));
    }

    #[test]
    fn an_unsettled_change_postpones_interval_and_retry() {
        let interval = Duration::from_secs(10);
        let (mut s, t0) = settled(Some(interval));
        s.finish(t0, Some(t0 + Duration::from_secs(5)));
        // A change in progress when both are due.
        change(&mut s, t0 + ms(9_900));
        assert!(s.start(t0 + ms(10_000)).is_none());
        assert_eq!(s.next_wake(), Some(t0 + ms(10_400)));
        assert_eq!(s.start(t0 + ms(10_400)).unwrap().trigger, Trigger::Change);
        // The change cycle served for both.
        s.finish(t0 + ms(10_400), None);
        assert_eq!(s.next_wake(), Some(t0 + ms(20_400)));
    }

    #[test]
    fn retry_wakes_the_scheduler() {
        let (mut s, t0) = settled(None);
        s.finish(t0, Some(t0 + Duration::from_secs(5)));
        assert_eq!(s.next_wake(), Some(t0 + Duration::from_secs(5)));
        assert!(s.start(t0 + ms(4_999)).is_none());
        assert_eq!(
            s.start(t0 + Duration::from_secs(5)).unwrap().trigger,
            Trigger::Retry
        );
        s.finish(t0 + Duration::from_secs(5), None);
        assert_eq!(s.next_wake(), None);
    }

    #[test]
    fn zero_debounce_starts_at_once() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(Duration::ZERO, Some(Duration::ZERO), t0);
        s.start(t0).unwrap();
        s.finish(t0, None);
        assert_eq!(s.next_wake(), None, "a zero interval is no interval");
        s.on_change(t0, t0, &[]);
        assert_eq!(s.start(t0).unwrap().trigger, Trigger::Change);
    }
}
