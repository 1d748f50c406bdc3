//! Validation of detector candidates: a shape found by a regular expression is only a finding
//! when its content checks out (checksums, number ranges, known prefixes). Each validator gets
//! the candidate and the text around it (`before`, `after`), never more than it needs.

fn digits(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    s.iter().filter(|b| b.is_ascii_digit()).map(|b| b - b'0')
}

fn is_word(b: Option<&u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// Luhn checksum over the digits of `s`.
pub fn luhn(s: &[u8]) -> bool {
    let ds: Vec<u8> = digits(s).collect();
    let mut sum = 0u32;
    for (i, d) in ds.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !ds.is_empty() && sum % 10 == 0
}

/// A payment card number: separators consistent, issuer prefix and length known, Luhn valid,
/// not one repeated digit.
pub fn card(m: &[u8], before: &[u8], after: &[u8]) -> bool {
    // Part of a longer number or dotted/dashed identifier: `1234-5678-...-9` or `v4111...`.
    if before.last().is_some_and(|b| b.is_ascii_digit() || *b == b'.')
        || after.first().is_some_and(|b| b.is_ascii_digit())
        || (after.first() == Some(&b'.') && after.get(1).is_some_and(u8::is_ascii_digit))
    {
        return false;
    }
    // One separator style throughout (all spaces or all dashes or none).
    let seps: Vec<u8> = m.iter().copied().filter(|b| !b.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w.first() != w.get(1)) {
        return false;
    }
    let ds: Vec<u8> = digits(m).collect();
    let n = ds.len();
    if !(12..=19).contains(&n) || ds.iter().all(|d| Some(d) == ds.first()) {
        return false;
    }
    let prefix = |k: usize| ds.iter().take(k).fold(0u32, |acc, d| acc * 10 + u32::from(*d));
    let brand_ok = match ds.first() {
        Some(4) => matches!(n, 13 | 16 | 19),                     // Visa
        Some(5) => (51..=55).contains(&prefix(2)) && n == 16,     // Mastercard
        Some(2) => (2221..=2720).contains(&prefix(4)) && n == 16, // Mastercard 2-series
        Some(3) => match prefix(2) {
            34 | 37 => n == 15,                                                 // Amex
            36 | 38 | 39 | 30 => (14..=19).contains(&n),                        // Diners
            35 => (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&n), // JCB
            _ => false,
        },
        Some(6) => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)) || prefix(2) == 62)
                && (16..=19).contains(&n)
        } // Discover, UnionPay
        _ => false,
    };
    brand_ok && luhn(m)
}

/// Country code → IBAN length (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// An IBAN: known country, that country's length, mod-97 checksum equal to 1.
pub fn iban(m: &[u8], _before: &[u8], _after: &[u8]) -> bool {
    let compact: Vec<u8> = m.iter().copied().filter(|b| *b != b' ').collect();
    let (Some(country), Some(rest)) = (compact.get(..2), compact.get(4..)) else { return false };
    let Some(&(_, length)) = IBAN_LENGTHS.iter().find(|(c, _)| c.as_slice() == country) else { return false };
    if compact.len() != length {
        return false;
    }
    let mut remainder = 0u32;
    let rearranged = rest.iter().chain(compact.iter().take(4));
    for &b in rearranged {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

/// A US Social Security number: area not 000, 666 or 900–999, group not 00, serial not 0000,
/// and not one of the numbers famously printed in advertising.
pub fn ssn(m: &[u8], before: &[u8], after: &[u8]) -> bool {
    if before.last().is_some_and(|b| b.is_ascii_digit() || *b == b'-')
        || after.first().is_some_and(|b| b.is_ascii_digit())
        || (after.first() == Some(&b'-') && after.get(1).is_some_and(u8::is_ascii_digit))
    {
        return false;
    }
    let ds: Vec<u32> = digits(m).map(u32::from).collect();
    let [a1, a2, a3, g1, g2, s1, s2, s3, s4] = ds.as_slice() else { return false };
    let area = a1 * 100 + a2 * 10 + a3;
    let group = g1 * 10 + g2;
    let serial = s1 * 1000 + s2 * 100 + s3 * 10 + s4;
    let sep: Vec<u8> = m.iter().copied().filter(|b| !b.is_ascii_digit()).collect();
    if sep.first() != sep.get(1) {
        return false;
    }
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !(area == 78 && group == 5 && serial == 1120)
        && !(area == 219 && group == 9 && serial == 9999)
}

/// An IPv4 address: four octets 0–255 without leading zeros, not part of a longer dotted run
/// (`1.2.3.4.5` is a version or an OID, not an address).
pub fn ipv4(m: &[u8], before: &[u8], after: &[u8]) -> bool {
    let dotted_before = before.last() == Some(&b'.')
        && before.len() >= 2
        && before.get(before.len() - 2).is_some_and(u8::is_ascii_digit);
    let dotted_after = after.first() == Some(&b'.') && after.get(1).is_some_and(u8::is_ascii_digit);
    if dotted_before || dotted_after || is_word(before.last()) || is_word(after.first()) {
        return false;
    }
    let Ok(text) = std::str::from_utf8(m) else { return false };
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|v| v <= 255)
        })
}

/// An IPv6 address: parses as one, has at least two groups and a digit (so `a::b`, `dead::beef`
/// and C++ `std::` paths are not addresses), and is not a time (`12:30:00` never parses).
pub fn ipv6(m: &[u8], before: &[u8], after: &[u8]) -> bool {
    if is_word(before.last()) || before.last() == Some(&b':') || after.first() == Some(&b':') || is_word(after.first())
    {
        return false;
    }
    let Ok(text) = std::str::from_utf8(m) else { return false };
    if text.parse::<std::net::Ipv6Addr>().is_err() {
        return false;
    }
    if text == "::1" {
        return true;
    }
    let groups = text.split(':').filter(|g| !g.is_empty()).count();
    groups >= 2 && m.iter().any(u8::is_ascii_digit) && (groups >= 8 || text.contains("::") || groups >= 3)
}

/// File extensions that look like top-level domains in `icon@2x.png`.
const FILE_TLDS: &[&str] =
    &["png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "pdf", "js", "ts", "css", "map", "txt"];

/// An email address: RFC 5321 lengths, no leading, trailing or doubled dots, valid domain
/// labels, an alphabetic top-level domain that is not a file extension.
pub fn email(m: &[u8], before: &[u8], _after: &[u8]) -> bool {
    // Preceded by a local-part character: the address is longer than the match and invalid
    // (`a..b@example.com` must not yield `b@example.com`). Text run into the address is not
    // such a character (see `email_start`).
    if !address_starts_after(before, m) {
        return false;
    }
    let Ok(text) = std::str::from_utf8(m) else { return false };
    let Some((local, domain)) = text.rsplit_once('@') else { return false };
    if local.is_empty() || local.len() > 64 || text.len() > 254 {
        return false;
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let labels_ok = labels.iter().all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'));
    let tld = labels.last().copied().unwrap_or_default();
    labels_ok
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
        && !FILE_TLDS.contains(&tld.to_ascii_lowercase().as_str())
}

/// Where an address found in running text begins, in bytes from the start of the match. A
/// local part may be UTF-8 (RFC 6531: `jürgen@…`, `用户@…`), but text written without spaces runs
/// into it: punctuation, symbols and spaces outside ASCII (`：`, `、`, `—`, `«`, a no-break space,
/// a zero-width joiner) never belong to one, and an ASCII local part that follows letters of
/// another script than Latin (`連絡先taro@…`, `ל-dana@…`) begins at its first ASCII letter or
/// digit.
pub fn email_start(m: &[u8]) -> usize {
    let text = match std::str::from_utf8(m) {
        Ok(text) => text,
        Err(err) => std::str::from_utf8(m.get(..err.valid_up_to()).unwrap_or_default()).unwrap_or_default(),
    };
    let local = text.rfind('@').and_then(|at| text.get(..at)).unwrap_or_default();
    let mut start = 0;
    for (i, c) in local.char_indices() {
        if !c.is_ascii() && !c.is_alphanumeric() {
            start = i + c.len_utf8();
        }
    }
    let rest = local.get(start..).unwrap_or_default();
    if let Some((i, c)) = rest.char_indices().rfind(|(_, c)| foreign_letter(*c)) {
        let after = rest.get(i + c.len_utf8()..).unwrap_or_default();
        if let Some(skip) = after.bytes().position(|b| b.is_ascii_alphanumeric()) {
            start += i + c.len_utf8() + skip;
        }
    }
    start
}

/// A letter of another script than Latin (Cyrillic, Greek, CJK, Arabic, Hebrew, Devanagari…).
fn foreign_letter(c: char) -> bool {
    let latin = (c as u32) < 0x250 || ('\u{1e00}'..='\u{1eff}').contains(&c);
    !latin && c.is_alphanumeric()
}

/// Whether an address may begin right after `before`: not inside a longer local part, unless
/// what precedes is text run into it as `email_start` reads it.
fn address_starts_after(before: &[u8], value: &[u8]) -> bool {
    let Some(&last) = before.last() else { return true };
    if last < 0x80 && !(b"@.%+-_".contains(&last) || last.is_ascii_alphanumeric()) {
        return true;
    }
    // The character before the value, and before its run of ASCII joiners (`ל-dana`).
    let joiners = before.iter().rev().take_while(|b| b"-._+%".contains(b)).count();
    let head = before.get(..before.len() - joiners).unwrap_or_default();
    let Some(prev) = last_char(head) else { return false };
    let ascii_value = value.first().is_some_and(u8::is_ascii_alphanumeric);
    if joiners > 0 || last >= 0x80 {
        !prev.is_ascii() && (!prev.is_alphanumeric() || (foreign_letter(prev) && ascii_value))
    } else {
        false
    }
}

/// The last character of `bytes`, if they end with a whole one.
fn last_char(bytes: &[u8]) -> Option<char> {
    let from = bytes.len().saturating_sub(4);
    let tail = bytes.get(from..)?;
    (0..tail.len()).find_map(|i| std::str::from_utf8(tail.get(i..)?).ok()).and_then(|s| s.chars().last())
}

/// A phone number. International (`+` and a country code): 8 to 15 digits in all (E.164).
/// Without `+`: the North American plan, area and exchange codes starting 2–9, written with
/// separators or parentheses (a bare run of ten digits is far more often an order number).
pub fn phone(m: &[u8], before: &[u8], after: &[u8]) -> bool {
    if before.last().is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'/' | b'+' | b'_'))
        || after.first().is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        || (matches!(after.first(), Some(b'-' | b'.' | b'/' | b':')) && after.get(1).is_some_and(u8::is_ascii_digit))
    {
        return false;
    }
    let ds: Vec<u8> = digits(m).collect();
    if m.first() == Some(&b'+') {
        // Country code cannot start with 0; E.164 allows at most 15 digits.
        return (8..=15).contains(&ds.len()) && ds.first().is_some_and(|d| *d != 0) && has_groups(m);
    }
    // NANP: optional leading 1, then NPA-NXX-XXXX.
    let national = match ds.as_slice() {
        [1, rest @ ..] if rest.len() == 10 => rest,
        rest if rest.len() == 10 => rest,
        _ => return false,
    };
    let (Some(area), Some(exchange)) = (national.first(), national.get(3)) else { return false };
    // Separators must be consistent with NPA-NXX-XXXX grouping; dates like 2024-01-15 have 8 digits
    // and never get here. N11 area codes (211…911) are service codes, not numbers.
    let n11 = national.get(1) == Some(&1) && national.get(2) == Some(&1);
    *area >= 2 && *exchange >= 2 && !n11 && !m.iter().all(u8::is_ascii_digit)
}

/// Separators split an international number into groups (or it is written compactly).
fn has_groups(m: &[u8]) -> bool {
    let body = m.get(1..).unwrap_or_default();
    !body.is_empty()
}

/// Random-looking: at least one digit and one letter (keys are random base62; words are not).
pub fn mixed(m: &[u8]) -> bool {
    m.iter().any(u8::is_ascii_digit) && m.iter().any(u8::is_ascii_alphabetic)
}

/// An API key after a known prefix: long enough, random-looking, not a documentation example.
pub fn api_key(m: &[u8], before: &[u8], after: &[u8]) -> bool {
    if is_word(before.last()) || is_word(after.first()) {
        return false;
    }
    let upper = m.to_ascii_uppercase();
    let is_example = [&b"EXAMPLE"[..], b"XXXXXXXX", b"YOUR_", b"YOUR-", b"REDACTED", b"PLACEHOLDER"]
        .iter()
        .any(|w| upper.windows(w.len()).any(|x| x == *w));
    mixed(m) && !is_example
}

/// A key with a fixed, long format after a distinctive prefix (Google's `AIza` + 35): need not
/// contain a digit, must not be a documentation placeholder.
pub fn fixed_key(m: &[u8], before: &[u8], after: &[u8]) -> bool {
    if is_word(before.last()) || is_word(after.first()) || after.first() == Some(&b'-') {
        return false;
    }
    let upper = m.to_ascii_uppercase();
    ![&b"EXAMPLE"[..], b"XXXXXXXX", b"YOUR_", b"YOUR-", b"REDACTED"]
        .iter()
        .any(|w| upper.windows(w.len()).any(|x| x == *w))
}

/// A JSON Web Token: three base64url parts, the first decoding to a JSON header with `alg`.
pub fn jwt(m: &[u8], before: &[u8], after: &[u8]) -> bool {
    if is_word(before.last()) || is_word(after.first()) {
        return false;
    }
    let Some(header) = m.split(|b| *b == b'.').next() else { return false };
    let Some(decoded) = base64url_decode(header) else { return false };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&decoded) else { return false };
    value.get("alg").is_some() || value.get("typ").is_some()
}

fn base64url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in s {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A bearer credential (the token after `Bearer`): random-looking, not a placeholder word.
pub fn bearer(token: &[u8], _before: &[u8], after: &[u8]) -> bool {
    if is_word(after.first()) {
        return false;
    }
    token.len() >= 20 && (token.iter().any(u8::is_ascii_digit) || token.iter().any(u8::is_ascii_uppercase)) && {
        let upper = token.to_ascii_uppercase();
        ![&b"YOUR_"[..], b"YOUR-", b"<", b"XXXXXXXX", b"EXAMPLE", b"REDACTED"]
            .iter()
            .any(|w| upper.windows(w.len()).any(|x| x == *w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(f: fn(&[u8], &[u8], &[u8]) -> bool, s: &str) -> bool {
        f(s.as_bytes(), b" ", b" ")
    }

    #[test]
    fn cards() {
        assert!(ok(card, "4111 1111 1111 1111"));
        assert!(ok(card, "5555-5555-5555-4444"));
        assert!(ok(card, "378282246310005"));
        assert!(!ok(card, "4111 1111 1111 1112"), "Luhn");
        assert!(!ok(card, "4111-1111 1111 1111"), "mixed separators");
        assert!(!ok(card, "1234567812345670"), "no issuer starts with 1");
        assert!(!ok(card, "0000000000000000"));
    }

    #[test]
    fn ibans() {
        assert!(ok(iban, "DE89 3704 0044 0532 0130 00"));
        assert!(ok(iban, "GB29NWBK60161331926819"));
        assert!(!ok(iban, "DE89 3704 0044 0532 0130 01"));
        assert!(!ok(iban, "ZZ89370400440532013000"));
    }

    #[test]
    fn ssns() {
        assert!(ok(ssn, "123-45-6789"));
        assert!(!ok(ssn, "000-45-6789"));
        assert!(!ok(ssn, "666-45-6789"));
        assert!(!ok(ssn, "900-45-6789"));
        assert!(!ok(ssn, "123-00-6789"));
        assert!(!ok(ssn, "123-45-0000"));
        assert!(!ok(ssn, "078-05-1120"));
        assert!(!ok(ssn, "123-45 6789"));
    }

    #[test]
    fn ips() {
        assert!(ok(ipv4, "192.168.1.20"));
        assert!(!ok(ipv4, "256.1.1.1"));
        assert!(!ok(ipv4, "01.2.3.4"));
        assert!(!ipv4(b"1.2.3.4", b" ", b".5"));
        assert!(ok(ipv6, "2001:db8::8a2e:370:7334"));
        assert!(ok(ipv6, "::1"));
        assert!(!ok(ipv6, "dead::beef"));
        assert!(!ok(ipv6, "12:30:00"));
    }

    #[test]
    fn emails_and_phones() {
        assert!(ok(email, "jane.doe@example.co.uk"));
        assert!(!ok(email, "icon@2x.png"));
        assert!(!ok(email, "a..b@example.com"));
        assert!(ok(phone, "+44 20 7946 0958"));
        assert!(ok(phone, "(415) 555-0132"));
        assert!(!ok(phone, "4155550132"), "bare digits are not taken");
        assert!(!ok(phone, "(115) 555-0132"));
    }

    #[test]
    fn tokens() {
        let jwt_text = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert!(ok(jwt, jwt_text));
        assert!(!ok(jwt, "eyJub3QganNvbg.eyJzdWIiOiIxIn0.abc"));
        assert!(ok(api_key, "sk-proj-abc123DEF456ghi789JKL012"));
        assert!(!ok(api_key, "AKIAIOSFODNN7EXAMPLE"));
        assert!(ok(bearer, "abcDEF1234567890xyzUVW"));
        assert!(!ok(bearer, "your_token_goes_here_ok"));
    }
}
