//! Exact dollar amounts from configuration: `2.5` (USD per million tokens) becomes 2_500_000
//! micro-USD per million tokens without ever doing arithmetic in floating point.
//!
//! A JSON number reaches us as an `f64`. Rust prints an `f64` as the shortest decimal that reads
//! back as the same `f64`, and any decimal of at most 15 significant digits survives that round
//! trip unchanged, so printing the number gives back exactly the digits the operator wrote
//! (`0.1` stays `0.1`, never `0.1000000000000000055…`). Those digits are then scaled as text.
//! Strings (`"0.1"`) are accepted too and parsed the same way.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Digits after the decimal point a price may have: micro-USD per million tokens.
const DECIMALS: usize = 6;
/// Largest accepted price, USD per million tokens.
const MAX_USD: u64 = 1_000_000;

/// Decimal USD text (`"2.5"`, `"0.000001"`, `"3"`) → micro-USD. Plain decimal notation only.
pub fn parse_micro_usd(text: &str) -> Result<u64, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || (text.contains('.') && fraction.is_empty())
    {
        return Err(format!("{text:?} is not a decimal amount of USD (for example 2.5)"));
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > DECIMALS {
        return Err(format!(
            "{text} has more than {DECIMALS} decimal places: prices are whole micro-USD per million tokens"
        ));
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > 7 {
        return Err(format!("{text} is more than {MAX_USD} USD per million tokens"));
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| format!("{text} is not a number"))? };
    let mut micro = 0u64;
    for position in 0..DECIMALS {
        let digit = fraction.as_bytes().get(position).map_or(0, |b| u64::from(b - b'0'));
        micro = micro * 10 + digit;
    }
    if whole > MAX_USD || (whole == MAX_USD && micro > 0) {
        return Err(format!("{text} is more than {MAX_USD} USD per million tokens"));
    }
    Ok(whole * 1_000_000 + micro)
}

/// A price in USD per million tokens as written in configuration, held as micro-USD per
/// million tokens. Deserializes from a non-negative JSON number or a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsdPerMillion(pub u64);

impl<'de> Deserialize<'de> for UsdPerMillion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Amount;
        impl Visitor<'_> for Amount {
            type Value = UsdPerMillion;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a price in USD per million tokens (a non-negative number such as 2.5)")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<UsdPerMillion, E> {
                self.visit_str(&value.to_string())
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<UsdPerMillion, E> {
                if value < 0 {
                    return Err(E::custom(format!("{value} is negative: prices are 0 or more")));
                }
                self.visit_str(&value.to_string())
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<UsdPerMillion, E> {
                if !value.is_finite() {
                    return Err(E::custom("not a finite number"));
                }
                if value < 0.0 {
                    return Err(E::custom(format!("{value} is negative: prices are 0 or more")));
                }
                // Shortest round-trip text: exactly the digits written in the JSON.
                self.visit_str(&format!("{value}"))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<UsdPerMillion, E> {
                parse_micro_usd(value).map(UsdPerMillion).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json(text: &str) -> Result<u64, String> {
        serde_json::from_str::<UsdPerMillion>(text).map(|u| u.0).map_err(|e| e.to_string())
    }

    #[test]
    fn decimal_text_scales_exactly() {
        assert_eq!(parse_micro_usd("2.5"), Ok(2_500_000));
        assert_eq!(parse_micro_usd("0.000001"), Ok(1));
        assert_eq!(parse_micro_usd("3"), Ok(3_000_000));
        assert_eq!(parse_micro_usd("0"), Ok(0));
        assert_eq!(parse_micro_usd("0.150000"), Ok(150_000));
        assert_eq!(parse_micro_usd("007.25"), Ok(7_250_000));
        assert_eq!(parse_micro_usd("1000000"), Ok(1_000_000_000_000));
    }

    #[test]
    fn malformed_or_too_precise_text_is_rejected() {
        for bad in ["", ".5", "5.", "1e-6", "-1", "+1", "1,5", "abc", " 1", "0x10"] {
            assert!(parse_micro_usd(bad).is_err(), "{bad:?}");
        }
        assert!(parse_micro_usd("0.0000001").unwrap_err().contains("more than 6 decimal places"));
        assert!(parse_micro_usd("1000000.000001").unwrap_err().contains("more than 1000000"));
        assert!(parse_micro_usd("99999999999999999999999").is_err());
    }

    #[test]
    fn json_numbers_keep_the_digits_written() {
        // 0.1, 0.2 and 0.3 are not exact binary floats; the written digits are what count.
        assert_eq!(from_json("0.1"), Ok(100_000));
        assert_eq!(from_json("0.2"), Ok(200_000));
        assert_eq!(from_json("0.3"), Ok(300_000));
        assert_eq!(from_json("0.1").unwrap() + from_json("0.2").unwrap(), from_json("0.3").unwrap());
        assert_eq!(from_json("2.675"), Ok(2_675_000));
        assert_eq!(from_json("1.1"), Ok(1_100_000));
        assert_eq!(from_json("0.000001"), Ok(1));
        assert_eq!(from_json("1e-6"), Ok(1));
        assert_eq!(from_json("2.5e1"), Ok(25_000_000));
        assert_eq!(from_json("15"), Ok(15_000_000));
        assert_eq!(from_json("0"), Ok(0));
        assert_eq!(from_json("0.0"), Ok(0));
        assert_eq!(from_json("\"0.3\""), Ok(300_000));
        // Every amount with up to 6 decimals survives the f64 round trip.
        for micro in (0..3_000_000u64).step_by(7919).chain([999_999, 1_000_001, 123_456_789]) {
            let text = format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000);
            assert_eq!(from_json(&text), Ok(micro), "{text}");
        }
    }

    #[test]
    fn json_numbers_that_are_not_prices_are_rejected() {
        assert!(from_json("-1").unwrap_err().contains("negative"));
        assert!(from_json("-0.5").unwrap_err().contains("negative"));
        assert!(from_json("0.30000000000000004").unwrap_err().contains("decimal places"));
        assert!(from_json("1e300").is_err());
        assert!(from_json("true").unwrap_err().contains("USD per million tokens"));
        assert!(from_json("null").is_err());
    }
}
