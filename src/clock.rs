//! Dates as mail needs them: the local UTC offset, RFC 5322 dates for the
//! Received header, and IMAP's INTERNALDATE form. No time-zone database is
//! needed: only "now, here" and fixed offsets are ever formatted.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Now, as seconds since the epoch and the local offset east of UTC in minutes.
pub fn now() -> (i64, i16) {
    let unix = crate::store::now_unix();
    (unix, local_offset_minutes(unix))
}

/// The local offset at `unix`, from the C library's view of the time zone
/// (TZ or /etc/localtime). Falls back to UTC.
// musl marks time_t deprecated while it moves to 64 bits everywhere; the
// value is only passed straight back to localtime_r.
#[allow(deprecated)]
pub fn local_offset_minutes(unix: i64) -> i16 {
    let t = unix as libc::time_t;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r only writes into the tm we own; a null return
    // (out-of-range time) is handled.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        (tm.tm_gmtoff / 60).clamp(-1439, 1439) as i16
    } else {
        0
    }
}

/// Calendar fields of a moment, in the given offset.
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub weekday: usize,
}

pub fn civil(unix: i64, offset_minutes: i16) -> Civil {
    let local = unix + i64::from(offset_minutes) * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    // Days to civil date, after Howard Hinnant's well-known algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (secs / 3600) as u32,
        minute: (secs / 60 % 60) as u32,
        second: (secs % 60) as u32,
        weekday: days.rem_euclid(7) as usize,
    }
}

/// The days since the epoch of a civil date (the inverse of [`civil`]'s date part).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn offset_text(offset_minutes: i16) -> String {
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let abs = offset_minutes.unsigned_abs();
    format!("{sign}{:02}{:02}", abs / 60, abs % 60)
}

/// "Thu, 26 Nov 2026 11:26:36 +0000" (RFC 5322 §3.3).
pub fn rfc5322(unix: i64, offset_minutes: i16) -> String {
    let c = civil(unix, offset_minutes);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} {}",
        WEEKDAYS[c.weekday],
        c.day,
        MONTHS[(c.month - 1) as usize],
        c.year,
        c.hour,
        c.minute,
        c.second,
        offset_text(offset_minutes)
    )
}

/// "26-Nov-2026 11:26:36 +0000", IMAP's date-time (RFC 9051 §9), unquoted.
pub fn imap_datetime(unix: i64, offset_minutes: i16) -> String {
    let c = civil(unix, offset_minutes);
    format!(
        "{:02}-{}-{} {:02}:{:02}:{:02} {}",
        c.day,
        MONTHS[(c.month - 1) as usize],
        c.year,
        c.hour,
        c.minute,
        c.second,
        offset_text(offset_minutes)
    )
}

/// The month number (1-12) of a three-letter English month name.
pub fn month_number(name: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(name))
        .map(|i| i as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_moments() {
        assert_eq!(rfc5322(0, 0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322(1_795_692_396, 60),
            "Thu, 26 Nov 2026 12:26:36 +0100"
        );
        assert_eq!(
            imap_datetime(837_596_665, -420),
            "17-Jul-1996 02:44:25 -0700"
        );
        assert_eq!(rfc5322(951_782_400, -90), "Mon, 28 Feb 2000 22:30:00 -0130");
    }

    #[test]
    fn civil_round_trips_days() {
        for days in [-800_000i64, -1, 0, 59, 365 * 30, 2_932_896] {
            let c = civil(days * 86_400, 0);
            assert_eq!(days_from_civil(c.year, c.month, c.day), days);
        }
        assert_eq!(month_number("nov"), Some(11));
        assert_eq!(month_number("xyz"), None);
    }
}
