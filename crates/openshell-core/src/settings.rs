//! The registered runtime settings (docs/cli.md, "Policy and settings"): their keys and
//! the values each accepts. The CLI checks before sending; the gateway
//! checks again before storing.

/// What a setting accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true,false,yes,no,1,0` (any case), stored as `true`/`false`.
    Bool,
    /// One of these words (any case), stored in lower case.
    OneOf(&'static [&'static str]),
}

/// Every registered key.
pub const KEYS: &[(&str, Kind)] = &[
    ("providers_v2_enabled", Kind::Bool),
    ("ocsf_json_enabled", Kind::Bool),
    ("agent_policy_proposals_enabled", Kind::Bool),
    ("proposal_approval_mode", Kind::OneOf(&["manual", "auto"])),
];

/// What `key` accepts, or a message naming the known keys.
pub fn registered(key: &str) -> Result<Kind, String> {
    KEYS.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            format!("unknown setting '{key}' (known: {})", known.join(", "))
        })
}

/// The stored form of `value` for `key`, or why it is not acceptable.
pub fn normalize(key: &str, value: &str) -> Result<String, String> {
    let lower = value.trim().to_ascii_lowercase();
    match registered(key)? {
        Kind::Bool => match lower.as_str() {
            "true" | "yes" | "1" => Ok("true".to_owned()),
            "false" | "no" | "0" => Ok("false".to_owned()),
            _ => Err(format!(
                "setting '{key}' is a boolean: use true, false, yes, no, 1 or 0"
            )),
        },
        Kind::OneOf(allowed) if allowed.contains(&lower.as_str()) => Ok(lower),
        Kind::OneOf(allowed) => Err(format!(
            "setting '{key}' must be one of: {}",
            allowed.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_against_the_registered_keys() {
        assert_eq!(normalize("ocsf_json_enabled", "Yes").unwrap(), "true");
        assert_eq!(normalize("ocsf_json_enabled", "0").unwrap(), "false");
        assert!(normalize("ocsf_json_enabled", "maybe").is_err());
        assert_eq!(normalize("proposal_approval_mode", "AUTO").unwrap(), "auto");
        assert!(normalize("proposal_approval_mode", "sometimes").is_err());
        let unknown = normalize("colour", "red").unwrap_err();
        assert!(unknown.contains("unknown setting 'colour'"), "{unknown}");
    }
}
