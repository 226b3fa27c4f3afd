//! Dates: SEARCH dates and APPEND date-times (RFC 9051 §9 `date`, `date-time`).

use super::lexer::fixed_number;
use super::{Parsed, Parser};

/// An APPEND date-time: the instant as Unix seconds, and the zone the client
/// wrote, in minutes east of UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub unix: i64,
    pub offset_minutes: i16,
}

/// A SEARCH date (no time or zone, RFC 9051 §6.4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    pub fn days_since_epoch(&self) -> i64 {
        // Civil-to-days on a calendar whose years start in March, so the
        // leap day falls at the end of the year.
        let year = i64::from(self.year) - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let month_from_march = (i64::from(self.month) + 9) % 12;
        let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }
}
impl Parser {
    pub(super) fn date(&mut self) -> Parsed<Date> {
        let text = match self.quoted()? {
            Some(text) => text,
            None => self
                .take_while(|b| b.is_ascii_alphanumeric() || b == b'-')
                .to_vec(),
        };
        parse_date(&text).ok_or_else(|| {
            format!(
                "invalid date \"{}\": expected d-Mon-yyyy, as in 1-Feb-1994",
                String::from_utf8_lossy(&text).escape_default()
            )
        })
    }
}

/// `d-Mon-yyyy` (day of one or two digits), checked against the calendar.
pub(super) fn parse_date(text: &[u8]) -> Option<Date> {
    let mut fields = text.split(|&b| b == b'-');
    let (day, month, year) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() {
        return None;
    }
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u8 + 1;
    let year = fixed_number(year, 4)? as u16;
    let day = fixed_number(day, day.len().clamp(1, 2))? as u8;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days_in_month)
        .contains(&day)
        .then_some(Date { year, month, day })
}

/// `dd-Mon-yyyy hh:mm:ss +zzzz`, the day also as ` d` (date-day-fixed) or `d`.
pub(super) fn parse_date_time(text: &[u8]) -> Option<DateTime> {
    let text = text.strip_prefix(b" ").unwrap_or(text);
    let mut fields = text.split(|&b| b == b' ');
    let (date, time, zone) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some()
        || time.len() != 8
        || time[2] != b':'
        || time[5] != b':'
        || zone.len() != 5
    {
        return None;
    }
    let date = parse_date(date)?;
    let (hour, minute, second) = (
        fixed_number(&time[0..2], 2)?,
        fixed_number(&time[3..5], 2)?,
        fixed_number(&time[6..8], 2)?,
    );
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let sign = match zone[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (zone_hours, zone_minutes) = (fixed_number(&zone[1..3], 2)?, fixed_number(&zone[3..5], 2)?);
    if zone_minutes > 59 {
        return None;
    }
    let offset_minutes = sign * (zone_hours * 60 + zone_minutes) as i16;
    let local = date.days_since_epoch() * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(DateTime {
        unix: local - i64::from(offset_minutes) * 60,
        offset_minutes,
    })
}
