//! Sizes as people write and read them: bytes, or a number with K/M/G/T (powers of 1024), and
//! back ("1.5 GiB"). Used by the command line and by `serve`'s options.

/// Parses bytes, or a number with a K, M, G or T suffix (powers of 1024; `KiB`, `KB` also).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad =
        || format!("\"{text}\" is not a size: give bytes or a number with K, M, G or T (powers of 1024), e.g. 10G");
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let too_large = || format!("\"{text}\" is too large: the largest size is {}T", u64::MAX >> 40);
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    n.checked_mul(1 << shift).ok_or_else(too_large)
}

/// Bytes in the largest unit that keeps at least one whole unit: "0 B", "512 KiB", "1.5 GiB".
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >= 1 << (10 * (unit + 1)) {
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let value = bytes as f64 / (1u64 << (10 * unit)) as f64;
    if value.fract() == 0.0 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::{format_bytes, parse_size};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("64K").unwrap(), 65536);
        assert_eq!(parse_size("10g").unwrap(), 10 << 30);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        assert_eq!(parse_size("2MB").unwrap(), 2 << 20);
        for bad in ["", "G", "1.5G", "10X", "-1"] {
            assert!(parse_size(bad).unwrap_err().contains("is not a size"), "{bad}");
        }
        for large in ["99999999T", "99999999999999999999999"] {
            assert!(parse_size(large).unwrap_err().contains("is too large"), "{large}");
        }
        assert_eq!(parse_size("16777215T").unwrap(), 16777215 << 40);
    }

    #[test]
    fn sizes_read_back_in_the_largest_whole_unit() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(64 << 10), "64 KiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
        assert_eq!(format_bytes(1 << 40), "1 TiB");
        assert_eq!(format_bytes(700 << 20), "700 MiB");
    }
}
