//! Cron expressions: 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds
//! first), names such as `MON` and `JAN`, and `@daily`-style nicknames. Occurrences are
//! computed in the configured time zone with its daylight-saving rules, one at a time.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::ScheduleError;

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct CronSpec {
    text: String,
    cron: std::sync::Arc<Cron>,
}

impl CronSpec {
    /// Parses `text`; the error names the `cron` field and says what is accepted.
    pub fn parse(text: &str) -> Result<CronSpec, ScheduleError> {
        let fields = text.split_whitespace().count();
        let nickname = text.trim_start().starts_with('@');
        let bad = |why: &str| {
            ScheduleError::Invalid(format!(
                "cron {text:?} is invalid ({why}): give 5 fields (minute hour day-of-month month day-of-week, e.g. \"0 18 * * FRI\") or 6 with seconds first (e.g. \"*/10 * * * * *\")"
            ))
        };
        if !(nickname || fields == 5 || fields == 6) {
            return Err(bad(&format!("{fields} fields")));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| bad(&e.to_string()))?;
        Ok(CronSpec {
            text: text.trim().to_owned(),
            cron: std::sync::Arc::new(cron),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first occurrence strictly after Unix second `after`, in time zone `tz`.
    pub fn next_after(&self, after: i64, tz: Tz) -> Option<i64> {
        let start: DateTime<Tz> = Utc.timestamp_opt(after, 0).single()?.with_timezone(&tz);
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn five_and_six_fields() {
        let five = CronSpec::parse("0 18 * * FRI").unwrap();
        // 2026-11-20 is a Friday.
        let from = utc("2026-11-18T12:00:00Z");
        assert_eq!(
            five.next_after(from, chrono_tz::UTC),
            Some(utc("2026-11-20T18:00:00Z"))
        );
        for ok in [
            "@daily",
            "@hourly",
            "0 9 * * MON-FRI",
            "0 0 1,15 JAN *",
            "0 0 * * 7",
        ] {
            assert!(CronSpec::parse(ok).is_ok(), "{ok}");
        }
        let six = CronSpec::parse("*/3 * * * * *").unwrap();
        let from = utc("2026-11-18T12:00:01Z");
        assert_eq!(
            six.next_after(from, chrono_tz::UTC),
            Some(utc("2026-11-18T12:00:03Z"))
        );
        // Strictly after: an occurrence at `after` itself is not returned.
        assert_eq!(
            six.next_after(utc("2026-11-18T12:00:03Z"), chrono_tz::UTC),
            Some(utc("2026-11-18T12:00:06Z"))
        );
    }

    #[test]
    fn local_time_across_daylight_saving() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let spec = CronSpec::parse("0 18 * * *").unwrap();
        // Winter (UTC+1), then summer (UTC+2) after the change on 2026-03-29.
        assert_eq!(
            spec.next_after(utc("2026-03-28T12:00:00Z"), berlin),
            Some(utc("2026-03-28T17:00:00Z"))
        );
        assert_eq!(
            spec.next_after(utc("2026-03-28T18:00:00Z"), berlin),
            Some(utc("2026-03-29T16:00:00Z"))
        );
    }

    #[test]
    fn skipped_local_time_fires_after_the_gap_repeated_one_fires_once() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let spec = CronSpec::parse("30 2 * * *").unwrap();
        let local = |t: i64| {
            Utc.timestamp_opt(t, 0)
                .unwrap()
                .with_timezone(&berlin)
                .to_rfc3339()
        };
        // 02:30 does not exist on 2026-03-29: it fires at 03:00 that day.
        let t = spec
            .next_after(utc("2026-03-28T12:00:00Z"), berlin)
            .unwrap();
        assert_eq!(local(t), "2026-03-29T03:00:00+02:00");
        let t = spec.next_after(t, berlin).unwrap();
        assert_eq!(local(t), "2026-03-30T02:30:00+02:00");
        // 02:30 happens twice on 2026-10-25: it fires once.
        let t = spec
            .next_after(utc("2026-10-24T12:00:00Z"), berlin)
            .unwrap();
        assert_eq!(local(t), "2026-10-25T02:30:00+02:00");
        let t = spec.next_after(t, berlin).unwrap();
        assert_eq!(local(t), "2026-10-26T02:30:00+01:00");
    }

    #[test]
    fn invalid_expressions_name_the_field() {
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "61 * * * *",
            "0 25 * * *",
            "hello",
            "0 0 * * FOO",
        ] {
            let e = CronSpec::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("cron "), "{bad}: {e}");
        }
    }
}
