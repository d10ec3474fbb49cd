//! The wall clock of a watch, in Asia/Ho_Chi_Minh: today's date and when
//! the next day starts (a new calendar day is an input, like a file
//! change: coverage policies renew on time and `expiring` is told).
//!
//! `OAPKG_TEST_NOW` (an RFC 3339 instant, hidden, for tests) starts this
//! process's clock at that instant; it then runs at the real pace, so a
//! test can cross a midnight within seconds.

use std::time::{Duration, Instant};

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

/// The service's time zone (eSMS and the packages' dates).
pub const TIME_ZONE: &str = "Asia/Ho_Chi_Minh";

/// The hidden test variable, see the module docs.
pub const TEST_NOW_VAR: &str = "OAPKG_TEST_NOW";

/// A wall clock, possibly shifted by a fixed offset (tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Clock {
    offset: SignedDuration,
}

impl Clock {
    /// The system clock, or the one `OAPKG_TEST_NOW` starts.
    pub fn from_env() -> Result<Clock, String> {
        match std::env::var(TEST_NOW_VAR) {
            Ok(text) => {
                let start: Timestamp = text
                    .parse()
                    .map_err(|e| format!("{TEST_NOW_VAR}={text:?}: {e}"))?;
                Ok(Clock {
                    offset: start.duration_since(Timestamp::now()),
                })
            }
            Err(_) => Ok(Clock::default()),
        }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::now()
            .checked_add(self.offset)
            .unwrap_or_else(|_| Timestamp::now())
    }

    /// Today's date in [`TIME_ZONE`].
    pub fn today(&self) -> Result<Date, String> {
        let tz = jiff::tz::TimeZone::get(TIME_ZONE).map_err(|e| e.to_string())?;
        Ok(tz.to_datetime(self.now()).date())
    }

    /// The instant the next calendar day starts in [`TIME_ZONE`] (a
    /// little after, so the date has surely turned), as a monotonic
    /// instant; `None` if the time zone cannot be read.
    pub fn next_day(&self) -> Option<Instant> {
        let tz = jiff::tz::TimeZone::get(TIME_ZONE).ok()?;
        let now = self.now();
        let tomorrow = tz.to_datetime(now).date().tomorrow().ok()?;
        let midnight = tz
            .to_ambiguous_zoned_datetime(tomorrow.to_datetime(jiff::civil::Time::midnight()))
            .compatible()
            .ok()?
            .timestamp();
        let wait = Duration::try_from(midnight.duration_since(now)).unwrap_or(Duration::ZERO);
        Some(Instant::now() + wait + Duration::from_millis(50))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_day_starts_at_local_midnight() {
        let start: Timestamp = "2026-11-26T23:59:58+07:00".parse().unwrap();
        let clock = Clock {
            offset: start.duration_since(Timestamp::now()),
        };
        assert_eq!(clock.today().unwrap(), jiff::civil::date(2026, 11, 26));
        let wait = clock.next_day().unwrap() - Instant::now();
        assert!(
            wait > Duration::from_millis(1500) && wait < Duration::from_millis(2200),
            "{wait:?}"
        );
    }
}
