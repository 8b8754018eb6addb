//! Arbitrary bytes through the YAML parser, the validator and the compiler:
//! must never panic, whatever the input.
//!
//! Run: `cargo +nightly fuzz run policy_yaml fuzz/corpus/policy_yaml`
#![no_main]

use libfuzzer_sys::fuzz_target;
use openshell_policy::{CompiledPolicy, load_str};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(validated) = load_str(text)
    {
        let _ = CompiledPolicy::new(validated.policy);
    }
});
