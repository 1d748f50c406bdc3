//! The windows limits count in: fixed windows of a second, a minute or an hour (aligned to the
//! Unix epoch, as Envoy's and most gateways' rate limits are), and calendar days, weeks (ISO:
//! Monday first) and months in UTC moved by a fixed offset. A window is a number: counters hold
//! the window they count in, and a counter of another window counts nothing in this one.

/// A window kind and, for calendar windows, the offset of local time from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Second,
    Minute,
    Hour,
    /// Calendar windows: `offset_secs` east of UTC (`+02:00` is 7200).
    Day {
        offset_secs: i64,
    },
    Week {
        offset_secs: i64,
    },
    Month {
        offset_secs: i64,
    },
}

const DAY: i64 = 86_400;

impl Window {
    /// Parses `second`, `minute`, `hour`, `day`, `week`, `month`; calendar windows take
    /// `utc_offset` (`+05:30`, `-08:00`), the others refuse one.
    pub fn parse(name: &str, utc_offset: Option<&str>) -> Result<Window, String> {
        let offset = match utc_offset {
            Some(text) => Some(parse_offset(text)?),
            None => None,
        };
        let fixed = |window: Window| match offset {
            Some(_) => Err(format!("a {name} window has no utc_offset (it counts in UTC seconds since 1970)")),
            None => Ok(window),
        };
        let offset_secs = offset.unwrap_or(0);
        match name {
            "second" => fixed(Window::Second),
            "minute" => fixed(Window::Minute),
            "hour" => fixed(Window::Hour),
            "day" => Ok(Window::Day { offset_secs }),
            "week" => Ok(Window::Week { offset_secs }),
            "month" => Ok(Window::Month { offset_secs }),
            other => Err(format!("unknown window {other:?}: expected second, minute, hour, day, week or month")),
        }
    }

    /// The window `unix_secs` falls in.
    pub fn id(self, unix_secs: i64) -> i64 {
        match self {
            Window::Second => unix_secs,
            Window::Minute => unix_secs.div_euclid(60),
            Window::Hour => unix_secs.div_euclid(3_600),
            Window::Day { offset_secs } => (unix_secs + offset_secs).div_euclid(DAY),
            // 1970-01-01 was a Thursday: day 0 is three days into the ISO week of day -3.
            Window::Week { offset_secs } => ((unix_secs + offset_secs).div_euclid(DAY) + 3).div_euclid(7),
            Window::Month { offset_secs } => {
                let (year, month, _) = civil_from_days((unix_secs + offset_secs).div_euclid(DAY));
                year * 12 + (month - 1)
            }
        }
    }

    /// Unix seconds at which window `id` ends (the next one starts).
    pub fn end(self, id: i64) -> i64 {
        match self {
            Window::Second => id + 1,
            Window::Minute => (id + 1) * 60,
            Window::Hour => (id + 1) * 3_600,
            Window::Day { offset_secs } => (id + 1) * DAY - offset_secs,
            Window::Week { offset_secs } => ((id + 1) * 7 - 3) * DAY - offset_secs,
            Window::Month { offset_secs } => {
                let next = id + 1;
                days_from_civil(next.div_euclid(12), next.rem_euclid(12) + 1, 1) * DAY - offset_secs
            }
        }
    }

    /// Seconds from `unix_secs` until its window ends (at least 1).
    pub fn seconds_left(self, unix_secs: i64) -> i64 {
        (self.end(self.id(unix_secs)) - unix_secs).max(1)
    }

    /// The longest a window of this kind lasts, in seconds (a Redis key's time to live).
    pub fn longest(self) -> i64 {
        match self {
            Window::Second => 1,
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day { .. } => DAY,
            Window::Week { .. } => 7 * DAY,
            Window::Month { .. } => 31 * DAY,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day { .. } => "day",
            Window::Week { .. } => "week",
            Window::Month { .. } => "month",
        }
    }
}

/// `+HH:MM` or `-HH:MM` (also `Z`), at most 14 hours either way, as seconds east of UTC.
pub(super) fn parse_offset(text: &str) -> Result<i64, String> {
    if text == "Z" {
        return Ok(0);
    }
    let bad = || format!("utc_offset {text:?} is not +HH:MM or -HH:MM");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, text.get(1..).ok_or_else(bad)?),
        Some(b'-') => (-1, text.get(1..).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hours) || !digits(minutes) {
        return Err(bad());
    }
    let (hours, minutes): (i64, i64) = (hours.parse().map_err(|_| bad())?, minutes.parse().map_err(|_| bad())?);
    if minutes >= 60 || hours * 60 + minutes > 14 * 60 {
        return Err(bad());
    }
    Ok(sign * (hours * 3_600 + minutes * 60))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian), after Howard Hinnant's
/// `days_from_civil`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date (year, month 1–12, day 1–31) of a day since 1970-01-01 (`civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time, from the proleptic calendar the test writes out.
    fn at(year: i64, month: i64, day: i64, hour: i64, minute: i64) -> i64 {
        days_from_civil(year, month, day) * DAY + hour * 3_600 + minute * 60
    }

    #[test]
    fn civil_dates_round_trip_and_match_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // 2026-12-07 is 20,794 days after 1970-01-01 (date -d 2026-12-07 +%s / 86400).
        assert_eq!(days_from_civil(2026, 12, 7), 20_794);
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn calendar_windows_roll_over_at_local_midnight_mondays_and_firsts() {
        let utc = Window::Day { offset_secs: 0 };
        assert_eq!(utc.id(at(2026, 12, 7, 23, 59)) + 1, utc.id(at(2026, 12, 8, 0, 0)));
        assert_eq!(utc.end(utc.id(at(2026, 12, 7, 12, 0))), at(2026, 12, 8, 0, 0));
        // +02:00: local midnight is 22:00 UTC.
        let east = Window::Day { offset_secs: 7_200 };
        assert_eq!(east.id(at(2026, 12, 7, 21, 59)) + 1, east.id(at(2026, 12, 7, 22, 0)));
        assert_eq!(east.end(east.id(at(2026, 12, 7, 12, 0))), at(2026, 12, 7, 22, 0));
        // ISO weeks start on Monday: 2026-12-07 is a Monday.
        let week = Window::Week { offset_secs: 0 };
        assert_eq!(week.id(at(2026, 12, 6, 23, 59)) + 1, week.id(at(2026, 12, 7, 0, 0)));
        assert_eq!(week.end(week.id(at(2026, 12, 9, 0, 0))), at(2026, 12, 14, 0, 0));
        // Months, leap February and year ends included; -08:00 rolls over 8 hours after UTC.
        let month = Window::Month { offset_secs: 0 };
        assert_eq!(month.end(month.id(at(2028, 2, 10, 0, 0))), at(2028, 3, 1, 0, 0));
        assert_eq!(month.end(month.id(at(2026, 12, 31, 23, 0))), at(2027, 1, 1, 0, 0));
        let west = Window::Month { offset_secs: -8 * 3_600 };
        assert_eq!(west.id(at(2027, 1, 1, 7, 59)), month.id(at(2026, 12, 15, 0, 0)));
        assert_eq!(west.end(west.id(at(2026, 12, 15, 0, 0))), at(2027, 1, 1, 8, 0));
    }

    #[test]
    fn fixed_windows_and_time_left() {
        assert_eq!(Window::Minute.id(119), 1);
        assert_eq!(Window::Minute.seconds_left(119), 1);
        assert_eq!(Window::Hour.seconds_left(3_600), 3_600);
        assert_eq!(Window::Second.end(Window::Second.id(5)), 6);
    }

    #[test]
    fn offsets_and_names_are_checked() {
        assert_eq!(Window::parse("day", Some("+05:30")), Ok(Window::Day { offset_secs: 19_800 }));
        assert_eq!(Window::parse("month", Some("-08:00")), Ok(Window::Month { offset_secs: -28_800 }));
        assert!(Window::parse("minute", Some("+01:00")).unwrap_err().contains("no utc_offset"));
        assert!(Window::parse("day", Some("+15:00")).is_err());
        assert!(Window::parse("day", Some("0200")).is_err());
        assert!(Window::parse("fortnight", None).unwrap_err().contains("expected second"));
    }
}
