//! When a certificate expires: `notAfter` read from its DER (RFC 5280 §4.1), for the
//! expiry metric operators alert on. Only the few fields before it are walked.

/// One DER element: its tag, its contents, and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The certificate's `notAfter` in Unix seconds; `None` if the DER is not one.
pub fn of(cert: &[u8]) -> Option<i64> {
    let (SEQUENCE, cert, _) = element(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = element(tbs)?;
    if tag == VERSION {
        rest = element(rest)?.2; // serialNumber
    }
    let rest = element(rest)?.2; // signature
    let rest = element(rest)?.2; // issuer
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (_, _, validity) = element(validity)?; // notBefore
    let (tag, time, _) = element(validity)?;
    let text = std::str::from_utf8(time).ok()?;
    let full = match tag {
        // YYMMDDHHMMSSZ: 50–99 are 19xx, 00–49 are 20xx (RFC 5280 §4.1.2.5.1).
        UTC_TIME => {
            let yy: u32 = text.get(..2)?.parse().ok()?;
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{text}")
        }
        GENERALIZED_TIME => text.to_owned(),
        _ => return None,
    };
    unix_seconds(&full)
}

/// `YYYYMMDDHHMMSSZ` to Unix seconds.
fn unix_seconds(text: &str) -> Option<i64> {
    if text.len() != 15 || !text.ends_with('Z') {
        return None;
    }
    let n = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(8..10)?, n(10..12)?, n(12..14)?);
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(unix_seconds("19700101000000Z"), Some(0));
        assert_eq!(unix_seconds("20000301000000Z"), Some(951_868_800));
        assert_eq!(unix_seconds("20380119031408Z"), Some(2_147_483_648));
        assert_eq!(unix_seconds("2038011903140Z"), None);
    }

    #[test]
    fn not_a_certificate() {
        assert_eq!(of(b""), None);
        assert_eq!(of(&[0x30, 0x03, 0x02, 0x01]), None);
    }
}
