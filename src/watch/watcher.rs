//! File events: notify (inotify, FSEvents, … or polling) behind
//! notify-debouncer-full, filtered down to changes that can change the
//! manifests, delivered to the watch loop as [`FileChange`]s.
//!
//! The debouncer is used for what it is good at — stitching the two halves
//! of a rename together, folding repeated events per path — with a short
//! window of its own ([`debouncer_window`]); the `--debounce` trailing edge
//! is the scheduler's, measured from when each event happened. (The
//! debouncer delays each event by its window rather than waiting for a
//! quiet period, so its window alone would cut a long burst in two.)
//!
//! Dropped events are harmless by design: a cycle re-reads every manifest,
//! and a content hash tells whether anything changed. What must not happen
//! is a change that starts no cycle; so a watcher error or an overflow of
//! the kernel's event queue counts as a change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::event::{CreateKind, ModifyKind, RemoveKind};
use notify_debouncer_full::notify::{
    self, EventKind, PollWatcher, RecommendedWatcher, RecursiveMode,
};
use notify_debouncer_full::{
    DebounceEventResult, DebouncedEvent, Debouncer, NoCache, RecommendedCache, new_debouncer_opt,
};
use tokio::sync::mpsc::UnboundedSender;

use super::events::{Observer, WatchEvent};
use super::paths::{Relevance, Roots, WatchDir};

/// Something that can change the manifests happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChange {
    /// When it happened (the latest event of the batch).
    pub at: Instant,
    /// The manifest paths concerned, for the log (relative to the working
    /// directory when under it); empty after a watcher error.
    pub paths: Vec<PathBuf>,
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    #[error("cannot start the file watcher")]
    Start(#[source] notify::Error),
    #[error("cannot watch {}{}", path.display(), limit_hint(source))]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

fn limit_hint(error: &notify::Error) -> &'static str {
    match error.kind {
        notify::ErrorKind::MaxFilesWatch => {
            " (the inotify watch limit is reached: raise fs.inotify.max_user_watches, or use --poll)"
        }
        _ => "",
    }
}

/// The debouncer's own window for a `--debounce` of `debounce`: short
/// enough that its delay stays inside the trailing-edge window, long enough
/// to pair renames and to wake its thread rarely (it ticks once per window).
pub fn debouncer_window(debounce: Duration) -> Duration {
    (debounce / 4).clamp(Duration::from_millis(10), Duration::from_millis(100))
}

enum Backend {
    Native(Debouncer<RecommendedWatcher, RecommendedCache>),
    // Polling reports no renames to stitch: no file-id cache needed.
    Poll(Debouncer<PollWatcher, NoCache>),
}

impl Backend {
    fn watch(&mut self, path: &Path, mode: RecursiveMode) -> notify::Result<()> {
        match self {
            Backend::Native(d) => d.watch(path, mode),
            Backend::Poll(d) => d.watch(path, mode),
        }
    }

    fn unwatch(&mut self, path: &Path) -> notify::Result<()> {
        match self {
            Backend::Native(d) => d.unwatch(path),
            Backend::Poll(d) => d.unwatch(path),
        }
    }
}

/// A watched directory and the identity it had when the watch was set up,
/// to notice when it is replaced (deleted and created again, renamed over).
struct Watched {
    dir: WatchDir,
    identity: Option<(u64, u64)>,
}

/// The running file watcher. Dropping it stops watching.
pub struct FileWatcher {
    backend: Backend,
    watched: Vec<Watched>,
    observer: Arc<dyn Observer>,
}

impl FileWatcher {
    /// Starts watching the directories of `roots`; relevant changes go to
    /// `changes`, and each one bumps `counter`; watcher errors, lost events
    /// and replaced directories are reported to `observer`.
    ///
    /// `poll`: use notify's polling watcher with this period instead of the
    /// platform's events (for network filesystems, where inotify and
    /// friends see only local changes). The polling watcher compares file
    /// contents as well as modification times, whose one-second resolution
    /// would miss a second save within the same second.
    pub fn start(
        roots: Roots,
        debounce: Duration,
        poll: Option<Duration>,
        changes: UnboundedSender<FileChange>,
        counter: Arc<AtomicU64>,
        observer: Arc<dyn Observer>,
    ) -> Result<FileWatcher, WatcherError> {
        let window = debouncer_window(debounce);
        let base = std::env::current_dir()
            .ok()
            .and_then(|dir| std::fs::canonicalize(dir).ok());
        let dirs = roots.watch_dirs();
        let mut filter = Filter {
            roots,
            base,
            changes,
            counter,
            observer: observer.clone(),
            seen_errors: Vec::new(),
        };
        let handler = move |result: DebounceEventResult| filter.handle(result);
        let mut backend = match poll {
            None => Backend::Native(
                new_debouncer_opt(
                    window,
                    Some(window),
                    handler,
                    RecommendedCache::new(),
                    notify::Config::default(),
                )
                .map_err(WatcherError::Start)?,
            ),
            Some(period) => Backend::Poll(
                new_debouncer_opt(
                    window,
                    Some(window),
                    handler,
                    NoCache,
                    notify::Config::default()
                        .with_poll_interval(period)
                        .with_compare_contents(true),
                )
                .map_err(WatcherError::Start)?,
            ),
        };
        let mut watched = Vec::new();
        for dir in dirs {
            backend
                .watch(&dir.path, mode(&dir))
                .map_err(|source| WatcherError::Watch {
                    path: dir.path.clone(),
                    source,
                })?;
            watched.push(Watched {
                identity: identity(&dir.path),
                dir,
            });
        }
        Ok(FileWatcher {
            backend,
            watched,
            observer,
        })
    }

    /// The directories watched.
    pub fn dirs(&self) -> impl Iterator<Item = &WatchDir> {
        self.watched.iter().map(|w| &w.dir)
    }

    /// Watches again any directory that was replaced since it was watched
    /// (a watch follows the directory, not its name). Called before each
    /// cycle; a stat per directory.
    pub fn refresh(&mut self) {
        for watched in &mut self.watched {
            let now = identity(&watched.dir.path);
            if now == watched.identity {
                continue;
            }
            let path = &watched.dir.path;
            let _ = self.backend.unwatch(path);
            match now {
                None => self.observer.event(&WatchEvent::DirGone { dir: path }),
                Some(_) => match self.backend.watch(path, mode(&watched.dir)) {
                    Ok(()) => self.observer.event(&WatchEvent::DirRewatched { dir: path }),
                    Err(error) => self.observer.event(&WatchEvent::DirRewatchFailed {
                        dir: path,
                        error: &error.to_string(),
                    }),
                },
            }
            watched.identity = now;
        }
    }
}

fn mode(dir: &WatchDir) -> RecursiveMode {
    if dir.recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    }
}

#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

/// Runs on the debouncer's thread: turns its batches into [`FileChange`]s.
struct Filter {
    roots: Roots,
    base: Option<PathBuf>,
    changes: UnboundedSender<FileChange>,
    counter: Arc<AtomicU64>,
    observer: Arc<dyn Observer>,
    /// Errors already reported: the polling watcher repeats an error (an
    /// unreadable directory) on every poll, which must not mean a warning
    /// and a cycle every few seconds for months.
    seen_errors: Vec<String>,
}

/// How many distinct watcher errors are remembered.
const MAX_SEEN_ERRORS: usize = 64;

impl Filter {
    fn handle(&mut self, result: DebounceEventResult) {
        match result {
            Ok(events) => {
                let mut latest = None;
                let mut paths = Vec::new();
                for event in &events {
                    if self.relevant(event, &mut paths) {
                        latest = latest.max(Some(event.time));
                    }
                }
                if let Some(at) = latest {
                    self.send(FileChange { at, paths });
                }
            }
            Err(errors) => {
                let mut new = false;
                for error in &errors {
                    let text = error.to_string();
                    if self.seen_errors.contains(&text) {
                        tracing::debug!(error = %text, "file watcher error (again)");
                        continue;
                    }
                    self.observer
                        .event(&WatchEvent::WatcherError { error: &text });
                    if self.seen_errors.len() == MAX_SEEN_ERRORS {
                        self.seen_errors.remove(0);
                    }
                    self.seen_errors.push(text);
                    new = true;
                }
                if new {
                    self.send(FileChange {
                        at: Instant::now(),
                        paths: Vec::new(),
                    });
                }
            }
        }
    }

    /// Whether `event` can change the manifests; collects its relevant paths.
    fn relevant(&self, event: &DebouncedEvent, paths: &mut Vec<PathBuf>) -> bool {
        let kind = &event.kind;
        if event.need_rescan() {
            self.observer.event(&WatchEvent::EventsLost);
            return true;
        }
        // Reads (ours included: every cycle opens the manifests) and
        // notify's meta events change nothing.
        if matches!(kind, EventKind::Access(_) | EventKind::Other) {
            return false;
        }
        let mut relevant = false;
        for path in &event.paths {
            let is_dir = match kind {
                EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder) => {
                    true
                }
                EventKind::Modify(ModifyKind::Name(_)) | EventKind::Create(_) => path.is_dir(),
                _ => false,
            };
            let relevance = self.roots.classify(path, is_dir);
            tracing::trace!(path = %path.display(), ?kind, relevance = relevance.as_str(), "file event");
            if relevance == Relevance::Relevant {
                relevant = true;
                let shown = self.shown(path);
                if !paths.contains(&shown) {
                    paths.push(shown);
                }
            }
        }
        relevant
    }

    fn shown(&self, path: &Path) -> PathBuf {
        self.base
            .as_deref()
            .and_then(|base| path.strip_prefix(base).ok())
            .filter(|rest| !rest.as_os_str().is_empty())
            .map_or_else(|| path.to_owned(), Path::to_owned)
    }

    fn send(&self, change: FileChange) {
        self.counter.fetch_add(1, Ordering::SeqCst);
        // The loop is gone only while shutting down.
        let _ = self.changes.send(change);
    }
}

#[cfg(test)]
mod tests {
    use notify_debouncer_full::notify::Event;
    use notify_debouncer_full::notify::event::{AccessKind, DataChange};
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    use super::*;

    fn filter() -> (Filter, UnboundedReceiver<FileChange>) {
        let (tx, rx) = unbounded_channel();
        let filter = Filter {
            roots: Roots::from_parts(vec![PathBuf::from("/w/packages")], Vec::new()),
            base: Some(PathBuf::from("/w")),
            changes: tx,
            counter: Arc::new(AtomicU64::new(0)),
            observer: Arc::new(|_: &WatchEvent<'_>| {}),
            seen_errors: Vec::new(),
        };
        (filter, rx)
    }

    fn event(kind: EventKind, path: &str, at: Instant) -> DebouncedEvent {
        DebouncedEvent::new(Event::new(kind).add_path(PathBuf::from(path)), at)
    }

    #[test]
    fn batches_become_one_change_with_the_latest_time_and_relevant_paths() {
        let (mut filter, mut rx) = filter();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(30);
        let modify = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        filter.handle(Ok(vec![
            event(modify, "/w/packages/a.yaml", t0),
            event(
                modify,
                "/w/packages/.a.yaml.swp",
                t1 + Duration::from_secs(1),
            ),
            event(
                EventKind::Access(AccessKind::Any),
                "/w/packages/b.yaml",
                t1 + Duration::from_secs(1),
            ),
            event(
                EventKind::Create(CreateKind::File),
                "/w/packages/b.yaml",
                t1,
            ),
        ]));
        let change = rx.try_recv().unwrap();
        assert_eq!(change.at, t1, "ignored events do not count");
        assert_eq!(
            change.paths,
            [
                PathBuf::from("packages/a.yaml"),
                PathBuf::from("packages/b.yaml")
            ]
        );
        assert_eq!(filter.counter.load(Ordering::SeqCst), 1);
        // Only reads and temp files: nothing.
        filter.handle(Ok(vec![
            event(EventKind::Access(AccessKind::Any), "/w/packages/a.yaml", t1),
            event(modify, "/w/packages/a.yaml~", t1),
        ]));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_repeated_watcher_error_starts_one_cycle() {
        let (mut filter, mut rx) = filter();
        for _ in 0..3 {
            filter.handle(Err(vec![notify::Error::generic("permission denied")]));
        }
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "the same error again is not news");
        filter.handle(Err(vec![notify::Error::generic("another")]));
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn debouncer_window_stays_inside_the_trailing_edge() {
        let ms = Duration::from_millis;
        assert_eq!(debouncer_window(ms(500)), ms(100));
        assert_eq!(
            debouncer_window(ms(50)),
            ms(12) + Duration::from_micros(500)
        );
        assert_eq!(debouncer_window(ms(0)), ms(10));
        assert_eq!(debouncer_window(ms(60_000)), ms(100));
        // Events reach the scheduler within two windows (window + one
        // tick): inside the debounce for any --debounce of 40 ms or more.
        for d in [40, 50, 100, 500, 2000] {
            assert!(debouncer_window(ms(d)) * 2 <= ms(d), "{d}");
        }
    }
}
