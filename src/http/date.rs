//! Calendar dates from the system clock, for the date forms requests and logs carry (HTTP's
//! `x-ms-date`, RFC 3339 in Kubernetes objects and the controller's log): one civil-date
//! computation, so the two forms cannot disagree.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC time of day on a calendar date.
pub(crate) struct Civil {
    pub(crate) year: i64,
    /// 1 to 12.
    pub(crate) month: i64,
    pub(crate) day: i64,
    /// Days since 1970-01-01 (a Thursday).
    pub(crate) days: i64,
    /// Seconds since midnight.
    pub(crate) secs: i64,
}

/// The UTC date and time of `at` (Howard Hinnant's days-to-civil); the epoch for times before it.
pub(crate) fn civil(at: SystemTime) -> Civil {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        days,
        secs: rem,
    }
}
