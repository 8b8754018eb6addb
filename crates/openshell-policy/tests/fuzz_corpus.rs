//! Replays the fuzz corpus (`fuzz/corpus/policy_yaml`) on stable Rust, so
//! every input that ever mattered stays a regression test in CI.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use openshell_policy::{CompiledPolicy, load_str};

#[test]
fn fuzz_corpus_never_panics_and_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/policy_yaml");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes)
            && let Ok(validated) = load_str(text)
        {
            let _ = CompiledPolicy::new(validated.policy);
        }
        seen += 1;
    }
    assert!(
        seen >= 7,
        "corpus went missing: {seen} files in {}",
        dir.display()
    );
    let example = std::fs::read_to_string(dir.join("example.yaml")).unwrap();
    assert!(load_str(&example).is_ok());
}
