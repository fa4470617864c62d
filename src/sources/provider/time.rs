//! The date and time of day that providers' timestamps start with,
//! `YYYY-MM-DD?HH:MM:SS[.fraction]`, read from bytes without allocating; each
//! provider reads its own zone after it (`Z`, `+02:00`, ` +0000 UTC`).

use chrono::NaiveDate;

/// The date and time at the start of `b`, with one of `separators` between them,
/// as Unix nanoseconds counted as if it were UTC, and the bytes after it. A
/// fraction has at least one digit; digits past the ninth are ignored. `None` if
/// `b` does not start with such a time, or it lies outside the years 1678–2261
/// (Unix nanoseconds in an `i64`).
pub fn date_time_prefix<'a>(b: &'a [u8], separators: &[u8]) -> Option<(i64, &'a [u8])> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !separators.contains(&b[10])
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if count == 0 {
            return None;
        }
        let kept = count.min(9);
        nanos = digits(&fraction[..kept])? * 10u32.pow(9 - kept as u32);
        rest = &fraction[count..];
    }
    let time = NaiveDate::from_ymd_opt(
        digits(&b[0..4])? as i32,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )?
    .and_hms_nano_opt(
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
        nanos,
    )?
    .and_utc()
    .timestamp_nanos_opt()?;
    Some((time, rest))
}

/// A zone offset of `sign` (`+` or `-`), two digits of hours (at most 23) and two
/// of minutes (at most 59), in seconds east of UTC.
pub fn zone_offset_seconds(sign: u8, hours: &[u8], minutes: &[u8]) -> Option<i64> {
    let (hours, minutes) = (digits(hours)?, digits(minutes)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let offset = i64::from(hours * 3600 + minutes * 60);
    match sign {
        b'+' => Some(offset),
        b'-' => Some(-offset),
        _ => None,
    }
}

/// A local time (as [`date_time_prefix`] gives it) at `offset_seconds` east of
/// UTC, as Unix nanoseconds.
pub fn to_utc(local: i64, offset_seconds: i64) -> Option<i64> {
    local.checked_sub(offset_seconds.checked_mul(1_000_000_000)?)
}

/// ASCII digits as a number.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_fractions_are_read_and_the_rest_is_left() {
        let (time, rest) = date_time_prefix(b"2025-06-24T16:19:02.5Z", b"T").unwrap();
        assert_eq!(time, 1_750_781_942_500_000_000);
        assert_eq!(rest, b"Z");
        let (time, rest) = date_time_prefix(b"2025-06-24 16:19:02.1234567891 +0000", b" ").unwrap();
        assert_eq!(time, 1_750_781_942_123_456_789);
        assert_eq!(rest, b" +0000");
        for bad in [
            &b"2025-06-24T16:19:02."[..],
            b"2025-02-30T16:19:02Z",
            b"2025-06-24 16:19:02Z",
            b"2025-06-24T24:00:00Z",
            b"2025-06-24T16:19:6xZ",
            b"2025-06-24T16:19",
        ] {
            assert!(date_time_prefix(bad, b"T").is_none(), "{bad:?}");
        }
        assert_eq!(zone_offset_seconds(b'-', b"02", b"30"), Some(-9000));
        assert_eq!(zone_offset_seconds(b'+', b"24", b"00"), None);
        assert_eq!(zone_offset_seconds(b'~', b"01", b"00"), None);
        assert_eq!(to_utc(9_000_000_000_000, -9000), Some(18_000_000_000_000));
    }
}
