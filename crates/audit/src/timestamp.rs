//! RFC 3339 text for entry times (`2026-11-28T23:59:01.123Z`), computed from Unix milliseconds
//! with the proleptic Gregorian calendar, so the crate needs no date library.

/// The earliest time an entry may carry: `0000-01-01T00:00:00.000Z`, in Unix milliseconds.
pub const MIN_TIME_MS: i64 = -62_167_219_200_000;
/// The latest time an entry may carry: `9999-12-31T23:59:59.999Z`, in Unix milliseconds.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

const MS_PER_DAY: i64 = 86_400_000;

/// Formats Unix milliseconds as RFC 3339 UTC with exactly three fractional digits, or `None`
/// when the year falls outside 0000..=9999 and has no four-digit form.
pub fn format_rfc3339_ms(time_ms: i64) -> Option<String> {
    if !(MIN_TIME_MS..=MAX_TIME_MS).contains(&time_ms) {
        return None;
    }
    let days = time_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = time_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (hour, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (minute, rest) = (rest / 60_000, rest % 60_000);
    let (second, milli) = (rest / 1000, rest % 1000);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z"
    ))
}

/// Converts days since 1970-01-01 to a (year, month, day) civil date.
///
/// Howard Hinnant's `civil_from_days`: shift the epoch to 0000-03-01 so the leap day ends the
/// year, then split into 400-year eras of 146097 days.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_795_910_341_123, "2026-11-28T23:59:01.123Z"),
            (4_107_456_000_000, "2100-02-28T00:00:00.000Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (MIN_TIME_MS, "0000-01-01T00:00:00.000Z"),
            (MAX_TIME_MS, "9999-12-31T23:59:59.999Z"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_rfc3339_ms(ms).as_deref(), Some(text), "{ms}");
        }
        assert_eq!(format_rfc3339_ms(MIN_TIME_MS - 1), None);
        assert_eq!(format_rfc3339_ms(MAX_TIME_MS + 1), None);
        assert_eq!(format_rfc3339_ms(i64::MIN), None);
        assert_eq!(format_rfc3339_ms(i64::MAX), None);
    }

    /// Walks every day from year 0 to 9999 with a naive calendar and compares.
    #[test]
    fn every_day_matches_naive_calendar() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut days = MIN_TIME_MS / MS_PER_DAY;
        for year in 0..=9999 {
            for month in 1..=12 {
                let len = match month {
                    2 if leap(year) => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                for day in 1..=len {
                    assert_eq!(civil_from_days(days), (year, month, day));
                    days += 1;
                }
            }
        }
        assert_eq!(days * MS_PER_DAY, MAX_TIME_MS + 1);
    }
}
