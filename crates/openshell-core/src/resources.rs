//! Sandbox resource limits as users write them: `--cpu 500m|2`,
//! `--memory 4Gi|512Mi|1G|1000000`, `--pids 4096`. Parsed once here for the
//! CLI and the supervisor.

/// Parses a CPU amount into thousandths of a CPU: `500m`, `2`, `1.5`.
pub fn parse_cpu(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid CPU amount '{text}': expected e.g. 500m, 2 or 1.5");
    let millis = if let Some(m) = text.strip_suffix('m') {
        m.parse::<u64>().map_err(|_| bad())?
    } else {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(bad());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let fraction: u64 = format!("{fraction:0<3}").parse().map_err(|_| bad())?;
        whole
            .checked_mul(1000)
            .and_then(|w| w.checked_add(fraction))
            .ok_or_else(bad)?
    };
    if millis == 0 {
        return Err(format!("invalid CPU amount '{text}': must be more than 0"));
    }
    Ok(millis)
}

/// Parses a memory size into bytes: a plain number, or one with a binary
/// (`Ki`, `Mi`, `Gi`, `Ti`) or decimal (`k`, `K`, `M`, `G`, `T`) suffix.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid memory size '{text}': expected e.g. 512Mi, 4Gi or 1G");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let factor: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let bytes = number.checked_mul(factor).ok_or_else(bad)?;
    if bytes < MIN_MEMORY {
        return Err(format!(
            "invalid memory size '{text}': at least {} MiB",
            MIN_MEMORY >> 20
        ));
    }
    Ok(bytes)
}

/// Processes a sandbox may have unless told otherwise.
pub const DEFAULT_PIDS: u64 = 4096;

/// The memory a sandbox may use unless told otherwise: half of the host's.
pub fn default_memory() -> u64 {
    host_memory() / 2
}

/// The host's memory (`MemTotal`), or 4 GiB when it cannot be read.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4 << 30, |kib| kib * 1024)
}

/// Below this a sandbox cannot start its tools.
pub const MIN_MEMORY: u64 = 16 << 20;

/// Parses a process limit (at least 16: the supervisor's own helpers need some).
pub fn parse_pids(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= 16 => Ok(n),
        _ => Err(format!(
            "invalid process limit '{text}': expected a number of at least 16"
        )),
    }
}

/// `1.5` for 1500, `500m` for 500.
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else if millis < 1000 {
        format!("{millis}m")
    } else {
        format!("{}.{:03}", millis / 1000, millis % 1000)
            .trim_end_matches('0')
            .to_owned()
    }
}

/// `4Gi`, `512Mi`, or bytes.
pub fn format_memory(bytes: u64) -> String {
    for (unit, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_amounts() {
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("1.5"), Ok(1500));
        assert_eq!(parse_cpu(".25"), Ok(250));
        for bad in ["", "0", "0m", "-1", "1.2345", "abc", "2x", "."] {
            assert!(parse_cpu(bad).is_err(), "{bad}");
        }
        assert_eq!(format_cpu(500), "500m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(1500), "1.5");
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("4Gi"), Ok(4 << 30));
        assert_eq!(parse_memory("512Mi"), Ok(512 << 20));
        assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory("100000000"), Ok(100_000_000));
        for bad in ["", "Gi", "4GB", "-1Gi", "1Ki", "99999999999999999999Ti"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        assert_eq!(format_memory(4 << 30), "4Gi");
        assert_eq!(format_memory(1_000_000_000), "1000000000");
    }

    #[test]
    fn process_limits() {
        assert_eq!(parse_pids("4096"), Ok(4096));
        assert!(parse_pids("3").is_err());
        assert!(parse_pids("x").is_err());
    }
}
