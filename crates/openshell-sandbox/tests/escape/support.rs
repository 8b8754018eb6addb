//! The escape suite's own fixtures (the hostile probe binary) beside the
//! shared ones of `openshell-test-support`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use openshell_test_support::sandbox::*;

/// The compiled `hostile.c`, in a directory of its own (mounted as the
/// workspace by the probes).
pub fn hostile_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("escape-hostile");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        compile_hostile(&dir.join("hostile"));
        dir
    })
}

pub fn compile_hostile(out: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/escape/hostile.c");
    let status = Command::new("cc")
        .args(["-O1", "-Wall", "-o"])
        .arg(out)
        .arg(&source)
        .status()
        .expect("a C compiler (cc) is needed for the escape suite");
    assert!(status.success(), "compiling {}", source.display());
}

/// Runs one probe of `hostile.c` in a default-policy sandbox; returns its line.
pub fn probe(name: &str) -> String {
    let outcome = sandbox()
        .workdir(hostile_dir())
        .run(&["/sandbox/hostile", name]);
    assert_eq!(outcome.code, 0, "probe {name} crashed: {outcome:#?}");
    outcome.stdout.trim().to_owned()
}
