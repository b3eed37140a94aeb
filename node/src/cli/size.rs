//! Volume sizes on the command line: bytes, or with a K/M/G/T suffix (powers of 1024).

use super::client::CliError;

pub fn parse_size(text: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::usage(
            "invalid-size",
            format!("\"{text}\" is not a size: give bytes or a number with K, M, G or T (powers of 1024), e.g. 10G"),
        )
    };
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
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("64K").unwrap(), 65536);
        assert_eq!(parse_size("10g").unwrap(), 10 << 30);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        assert_eq!(parse_size("2MB").unwrap(), 2 << 20);
        for bad in ["", "G", "1.5G", "10X", "-1", "99999999999999T"] {
            assert_eq!(parse_size(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }
}
