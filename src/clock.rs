//! The one clock: the time, and the calendar date in Asia/Ho_Chi_Minh
//! (where eSMS is, and the packages' dates), made once per process by
//! [`Clock::from_env`] and handed to whatever needs "now" or "today".
//! Nothing else reads the system clock for a date or the variables below.
//!
//! - `OAPKG_TODAY=YYYY-MM-DD` (documented, for reports and tests): today
//!   is that date everywhere, for every command and every watch cycle.
//! - `OAPKG_TEST_NOW=RFC3339` (hidden, for tests): the clock starts at that
//!   instant and then runs at the real pace, so a test can cross a midnight
//!   within seconds.

use std::time::{Duration, Instant};

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

/// The service's time zone: whose calendar date is "today".
pub const TIME_ZONE: &str = "Asia/Ho_Chi_Minh";

/// Pins today's date (see the module docs).
pub const TODAY_VAR: &str = "OAPKG_TODAY";

/// Starts the clock at an instant, for tests (see the module docs).
pub const TEST_NOW_VAR: &str = "OAPKG_TEST_NOW";

/// The wall clock, perhaps shifted (tests), perhaps with a pinned date.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    offset: SignedDuration,
    today: Option<Date>,
}

/// Why the clock could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("{name}={value:?} is not {expected}")]
    BadVariable {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot find the {TIME_ZONE} time zone: {0}")]
    TimeZone(String),
}

impl Clock {
    /// The system clock, shifted by `OAPKG_TEST_NOW` and with the date
    /// `OAPKG_TODAY` pins, if they are set.
    pub fn from_env() -> Result<Clock, ClockError> {
        let var = |name| std::env::var(name).ok();
        Clock::from_vars(var(TODAY_VAR).as_deref(), var(TEST_NOW_VAR).as_deref())
    }

    fn from_vars(today: Option<&str>, test_now: Option<&str>) -> Result<Clock, ClockError> {
        let today = today
            .map(|text| {
                crate::spec::parse_date(text).ok_or_else(|| ClockError::BadVariable {
                    name: TODAY_VAR,
                    value: text.to_owned(),
                    expected: "a date; expected YYYY-MM-DD",
                })
            })
            .transpose()?;
        let offset = match test_now {
            Some(text) => {
                let start: Timestamp = text.parse().map_err(|_| ClockError::BadVariable {
                    name: TEST_NOW_VAR,
                    value: text.to_owned(),
                    expected: "an RFC 3339 instant",
                })?;
                start.duration_since(Timestamp::now())
            }
            None => SignedDuration::ZERO,
        };
        Ok(Clock { offset, today })
    }

    /// A clock whose today is `date` (tests and benchmarks).
    pub fn pinned(date: Date) -> Clock {
        Clock {
            today: Some(date),
            ..Clock::default()
        }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::now()
            .checked_add(self.offset)
            .unwrap_or_else(|_| Timestamp::now())
    }

    /// Today's date in [`TIME_ZONE`], or the pinned one.
    pub fn today(&self) -> Result<Date, ClockError> {
        if let Some(today) = self.today {
            return Ok(today);
        }
        let tz = time_zone()?;
        Ok(tz.to_datetime(self.now()).date())
    }

    /// The instant the next calendar day starts in [`TIME_ZONE`] (a little
    /// after, so the date has surely turned), as a monotonic instant;
    /// `None` if the time zone cannot be read.
    pub fn next_day(&self) -> Option<Instant> {
        let tz = time_zone().ok()?;
        let now = self.now();
        let midnight = day_ends(tz.to_datetime(now).date())?;
        let wait = Duration::try_from(midnight.duration_since(now)).unwrap_or(Duration::ZERO);
        Some(Instant::now() + wait + Duration::from_millis(50))
    }
}

/// The instant a period whose last day is `day` runs out: the next
/// midnight in [`TIME_ZONE`]. `None` past the calendar's end.
pub fn day_ends(day: Date) -> Option<Timestamp> {
    let next = day.tomorrow().ok()?;
    time_zone()
        .ok()?
        .to_ambiguous_zoned_datetime(next.to_datetime(jiff::civil::Time::midnight()))
        .compatible()
        .ok()
        .map(|z| z.timestamp())
}

fn time_zone() -> Result<jiff::tz::TimeZone, ClockError> {
    jiff::tz::TimeZone::get(TIME_ZONE).map_err(|e| ClockError::TimeZone(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_day_starts_at_local_midnight() {
        let clock = Clock::from_vars(None, Some("2026-11-26T23:59:58+07:00")).unwrap();
        assert_eq!(clock.today().unwrap(), jiff::civil::date(2026, 11, 26));
        let wait = clock.next_day().unwrap() - Instant::now();
        assert!(
            wait > Duration::from_millis(1500) && wait < Duration::from_millis(2200),
            "{wait:?}"
        );
    }

    #[test]
    fn a_pinned_date_wins_and_bad_variables_are_named() {
        let clock =
            Clock::from_vars(Some("2027-03-01"), Some("2026-11-26T23:59:58+07:00")).unwrap();
        assert_eq!(clock.today().unwrap(), jiff::civil::date(2027, 3, 1));
        let error = Clock::from_vars(Some("2027-3-1"), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "OAPKG_TODAY=\"2027-3-1\" is not a date; expected YYYY-MM-DD"
        );
        let error = Clock::from_vars(None, Some("noon")).unwrap_err();
        assert!(
            error.to_string().starts_with("OAPKG_TEST_NOW=\"noon\""),
            "{error}"
        );
    }

    #[test]
    fn a_day_ends_at_the_next_local_midnight() {
        let end = day_ends(jiff::civil::date(2026, 11, 30)).unwrap();
        assert_eq!(end.to_string(), "2026-11-30T17:00:00Z");
        assert_eq!(day_ends(Date::MAX), None);
    }
}
