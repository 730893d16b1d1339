//! Go duration strings (`time.ParseDuration`), the text form of Kubernetes `metav1.Duration`.

use std::time::Duration;

/// Error of [`parse_go_duration`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason}; expected a Go duration such as 30s, 1m30s, 1.5h or \
     300ms (units ns, us, µs, ms, s, m, h)"
)]
pub struct InvalidDuration {
    /// The text that failed to parse.
    pub input: String,
    /// Reason the text is invalid.
    pub reason: &'static str,
}

const NANOS_PER_UNIT: &[(&str, u64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µ, MICRO SIGN
    ("\u{3bc}s", 1_000), // μ, GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's limit: a `time.Duration` is an `int64` count of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Fraction digits kept. Later digits add less than a nanosecond and are ignored, as Go does.
const MAX_FRACTION_DIGITS: u32 = 20;

/// Parses a Go duration string with Go's grammar. That is an optional sign, then one or more
/// decimal numbers, each with an optional fraction and a required unit (`1h2m0.5s`). A bare `0`
/// needs no unit.
///
/// Negative durations are rejected, because `Duration` cannot hold them (`-0s` is zero). The
/// fraction is converted with integer arithmetic and truncated to whole nanoseconds, while Go
/// multiplies in floating point, so a fraction with many digits may differ by 1 ns from Go.
pub fn parse_go_duration(input: &str) -> Result<Duration, InvalidDuration> {
    let invalid = |reason| InvalidDuration {
        input: input.to_owned(),
        reason,
    };

    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid("empty duration"));
    }

    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (nanos, after) = parse_component(rest).map_err(invalid)?;
        total += nanos;
        if total > MAX_NANOS {
            return Err(invalid(
                "longer than Go's maximum duration of about 292 years",
            ));
        }
        rest = after;
    }

    if negative && total > 0 {
        return Err(invalid("negative durations are not allowed"));
    }
    let nanos = u64::try_from(total).map_err(|_| invalid("too long"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Parses one `<number>[.<fraction>]<unit>` component and returns its nanoseconds and the
/// remaining text.
fn parse_component(text: &str) -> Result<(u128, &str), &'static str> {
    let integer_digits = count_digits(text);
    let (integer_text, rest) = text.split_at(integer_digits);

    let (fraction_text, rest) = match rest.strip_prefix('.') {
        Some(after_dot) => after_dot.split_at(count_digits(after_dot)),
        None => ("", rest),
    };
    if integer_text.is_empty() && fraction_text.is_empty() {
        return Err("expected a number");
    }

    let unit_length = rest
        .find(|c: char| c == '.' || c.is_ascii_digit())
        .unwrap_or(rest.len());
    if unit_length == 0 {
        return Err("missing unit");
    }
    let (unit_text, rest) = rest.split_at(unit_length);
    let unit = NANOS_PER_UNIT
        .iter()
        .find(|(name, _)| *name == unit_text)
        .map(|(_, nanos)| u128::from(*nanos))
        .ok_or("unknown unit")?;

    let mut integer: u128 = 0;
    for digit in integer_text.bytes() {
        integer = integer * 10 + u128::from(digit - b'0');
        if integer * unit > MAX_NANOS {
            return Err("longer than Go's maximum duration of about 292 years");
        }
    }

    let mut fraction: u128 = 0;
    let mut scale: u128 = 1;
    for digit in fraction_text.bytes().take(MAX_FRACTION_DIGITS as usize) {
        fraction = fraction * 10 + u128::from(digit - b'0');
        scale *= 10;
    }

    Ok((integer * unit + fraction * unit / scale, rest))
}

fn count_digits(text: &str) -> usize {
    text.bytes().take_while(u8::is_ascii_digit).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Duration {
        match parse_go_duration(text) {
            Ok(duration) => duration,
            Err(error) => panic!("{text:?} should parse: {error}"),
        }
    }

    #[test]
    fn parses_go_examples() {
        assert_eq!(parsed("30s"), Duration::from_secs(30));
        assert_eq!(parsed("1m30s"), Duration::from_secs(90));
        assert_eq!(parsed("1.5h"), Duration::from_secs(5400));
        assert_eq!(parsed("300ms"), Duration::from_millis(300));
        assert_eq!(parsed("2h45m"), Duration::from_secs(9900));
        assert_eq!(parsed("1h2m0.5s"), Duration::from_millis(3_720_500));
    }

    #[test]
    fn parses_every_unit() {
        assert_eq!(parsed("7ns"), Duration::from_nanos(7));
        assert_eq!(parsed("7us"), Duration::from_micros(7));
        assert_eq!(parsed("7\u{b5}s"), Duration::from_micros(7));
        assert_eq!(parsed("7\u{3bc}s"), Duration::from_micros(7));
        assert_eq!(parsed("7ms"), Duration::from_millis(7));
        assert_eq!(parsed("7s"), Duration::from_secs(7));
        assert_eq!(parsed("7m"), Duration::from_secs(420));
        assert_eq!(parsed("7h"), Duration::from_secs(25_200));
    }

    #[test]
    fn parses_signs_zero_and_bare_fractions() {
        assert_eq!(parsed("0"), Duration::ZERO);
        assert_eq!(parsed("-0"), Duration::ZERO);
        assert_eq!(parsed("-0s"), Duration::ZERO);
        assert_eq!(parsed("+5s"), Duration::from_secs(5));
        assert_eq!(parsed(".5s"), Duration::from_millis(500));
        assert_eq!(parsed("1.s"), Duration::from_secs(1));
        assert_eq!(
            parsed("1.000000000000000000000009s"),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn parses_go_maximum() {
        assert_eq!(
            parsed("2562047h47m16.854775807s"),
            Duration::from_nanos(i64::MAX as u64)
        );
    }

    #[test]
    fn rejects_malformed_durations() {
        let cases = [
            ("", "empty duration"),
            ("-", "empty duration"),
            ("30", "missing unit"),
            ("1m30", "missing unit"),
            ("s", "expected a number"),
            (".s", "expected a number"),
            ("30x", "unknown unit"),
            ("30S", "unknown unit"),
            ("1 s", "unknown unit"),
            ("-30s", "negative durations are not allowed"),
            (
                "2562047h47m16.854775808s",
                "longer than Go's maximum duration of about 292 years",
            ),
            (
                "9999999999999999999999h",
                "longer than Go's maximum duration of about 292 years",
            ),
        ];
        for (input, reason) in cases {
            let error = parse_go_duration(input).expect_err(input);
            assert_eq!(error.reason, reason, "input {input:?}");
        }
    }

    #[test]
    fn error_names_input_and_expected_form() {
        let error = parse_go_duration("30x").expect_err("30x has an unknown unit");
        assert_eq!(
            error.to_string(),
            "invalid duration \"30x\": unknown unit; expected a Go duration such as 30s, 1m30s, \
             1.5h or 300ms (units ns, us, µs, ms, s, m, h)"
        );
    }
}
