//! Reading RFC 3339 times (`2024-05-01T10:00:00Z`), without a date library: the cache
//! repository's `created` annotations and zstd:chunked tables of contents carry them. Writing
//! them is [`crate::image::time::rfc3339`]'s.

/// Seconds since the epoch of an RFC 3339 time: `Z` or a `±HH:MM` offset, a fraction of a
/// second dropped (as extraction drops a PAX mtime's); `None` for anything else.
pub fn parse(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let rest = s.get(19..)?;
    let zone = match rest.strip_prefix('.') {
        Some(frac) => frac.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = match zone.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = zone[1..].split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// (year, month, day) → days since 1970-01-01, Howard Hinnant's algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formatter is kiln's own, written without this parser.
    fn written(t: i64) -> String {
        crate::image::time::rfc3339(t)
    }

    #[test]
    fn parses_what_kiln_writes_and_other_offsets() {
        for t in [
            0,
            1,
            86_399,
            951_782_400,
            1_700_000_000,
            4_102_444_800,
            -1,
            -86_400,
        ] {
            assert_eq!(parse(&written(t)), Some(t), "{}", written(t));
        }
        assert_eq!(parse("0001-01-01T00:00:00Z"), Some(-62_135_596_800));
        assert_eq!(parse("2023-11-14T22:13:20.999999999Z"), Some(1_700_000_000));
        assert_eq!(parse("2023-11-14T23:13:20+01:00"), Some(1_700_000_000));
        assert_eq!(parse("2023-11-14T21:13:20.5-01:00"), Some(1_700_000_000));
        assert_eq!(parse("2023-13-01T00:00:00Z"), None);
        assert_eq!(parse("2023-11-14T22:13:20"), None);
        assert_eq!(parse("2023-11-14T22:13:20+1:00"), None);
        assert_eq!(parse("yesterday"), None);
    }
}
