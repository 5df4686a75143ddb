//! Cron schedules with their time zone, validated once when the mapping loads and used as a
//! value afterwards: when a rule fires next, and whether a fire was missed. Pure.

use std::fmt;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// What is wrong with a schedule: the cron expression or the time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    Cron(String),
    TimeZone(String),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cron(m) | Self::TimeZone(m) => f.write_str(m),
        }
    }
}

/// A crontab (5 fields, or 6 with seconds first) or a macro such as `@hourly`, read in an
/// IANA time zone.
#[derive(Clone)]
pub(crate) struct Schedule {
    text: String,
    zone: String,
    cron: Cron,
    tz: TimeZone,
}

impl Schedule {
    /// Parses `text` in the zone named `zone`.
    ///
    /// # Errors
    /// An invalid cron expression or an unknown time zone.
    pub(crate) fn new(text: &str, zone: &str) -> Result<Self, Invalid> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(text)
            .map_err(|e| Invalid::Cron(format!("invalid schedule {text:?}: {e}")))?;
        let tz = TimeZone::get(zone)
            .map_err(|e| Invalid::TimeZone(format!("unknown time zone {zone:?}: {e}")))?;
        Ok(Self {
            text: text.to_owned(),
            zone: zone.to_owned(),
            cron,
            tz,
        })
    }

    /// The schedule as written in the mapping.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The first fire time strictly after `after`.
    pub(crate) fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&after.to_zoned(self.tz.clone()), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// When the schedule fires next. A fire missed since `last_run` (the agent was down) is
    /// due at once, and only once however many ticks were missed; a schedule that never ran
    /// waits for its first tick.
    pub(crate) fn due(&self, now: Timestamp, last_run: Option<Timestamp>) -> Option<Timestamp> {
        match last_run {
            Some(last) => self.next_after(last).map(|next| next.max(now)),
            None => self.next_after(now),
        }
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.zone == other.zone
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.text, self.zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn utc(text: &str) -> Result<Schedule, Invalid> {
        Schedule::new(text, "UTC")
    }

    #[test]
    fn schedules_accept_five_or_six_fields_and_macros() {
        for s in ["*/15 * * * *", "*/2 * * * * *", "@hourly", "0 3 * * MON"] {
            assert!(utc(s).is_ok(), "{s}");
        }
        for s in ["every day", "* * *", "61 * * * *"] {
            assert!(matches!(utc(s), Err(Invalid::Cron(_))), "{s}");
        }
        assert!(matches!(
            Schedule::new("@hourly", "Mars/Base"),
            Err(Invalid::TimeZone(m)) if m.contains("unknown time zone")
        ));
    }

    #[test]
    fn missed_fires_run_once_at_start() {
        let hourly = utc("0 * * * *").expect("hourly");
        let now = ts("2026-11-25T12:30:00Z");
        // never ran: wait for the next tick
        assert_eq!(hourly.due(now, None), Some(ts("2026-11-25T13:00:00Z")));
        // last ran three hours ago: three ticks missed, one run now
        assert_eq!(hourly.due(now, Some(ts("2026-11-25T09:10:00Z"))), Some(now));
        // ran at the last tick: the next tick
        assert_eq!(
            hourly.due(now, Some(ts("2026-11-25T12:00:00Z"))),
            Some(ts("2026-11-25T13:00:00Z"))
        );
    }

    #[test]
    fn schedules_follow_the_time_zone() {
        let daily = Schedule::new("0 3 * * *", "Europe/Berlin").expect("daily at 3");
        let next = daily.next_after(ts("2026-11-25T12:00:00Z")).expect("next");
        assert_eq!(
            next,
            ts("2026-11-26T02:00:00Z"),
            "03:00 in Berlin is 02:00 UTC in winter"
        );
    }
}
