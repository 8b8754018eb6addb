//! The Python SDK (`python/`) against this build's gateway and sandboxes:
//! its pytest suite, run from here so that `cargo test --workspace` runs
//! it. The SDK is installed the way users install it (`pip install
//! ./python`, its gRPC stubs generated from the repository's proto at
//! build time) into a virtualenv under `target/`, made once with the
//! packages it needs from PyPI (grpcio, grpcio-tools, protobuf, pytest,
//! mypy); mypy checks its annotations first.

use std::path::{Path, PathBuf};
use std::process::Command;

use openshell_test_support::home::{openshell_bin, text};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The virtualenv with the SDK's build and test requirements (made once).
fn venv() -> PathBuf {
    let venv = repo().join("target/python-sdk/venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".requirements-installed");
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new("/usr/bin/python3")
                .args(["-m", "venv"])
                .arg(&venv),
            "python3 -m venv (Debian: apt-get install python3-venv)",
        );
        run(
            Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "setuptools>=68",
                "grpcio-tools>=1.62",
                "grpcio>=1.62",
                "protobuf>=5.26",
                "pytest>=7",
            ]),
            "installing the SDK's requirements from PyPI",
        );
        std::fs::write(&ready, b"").unwrap();
    }
    python
}

#[test]
fn the_python_sdk_suite_passes_against_a_real_gateway() {
    let python = venv();
    // As a user would, from the source tree (stubs generated now).
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-build-isolation",
                "--no-deps",
                "--force-reinstall",
            ])
            .arg(repo().join("python")),
        "pip install ./python",
    );
    let gateway = Path::new(openshell_bin())
        .parent()
        .unwrap()
        .join("openshell-gateway");
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp"])
        .arg(scratch.path().join("pytest"))
        .arg(repo().join("python/tests"))
        .env("OPENSHELL_BIN", openshell_bin())
        .env("OPENSHELL_GATEWAY_BIN", gateway)
        // The installed package, not the source tree, is under test.
        .current_dir(scratch.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pytest failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let summary = text(&out.stdout);
    assert!(summary.contains(" passed"), "{summary}");
    assert!(!summary.contains("skipped"), "{summary}");
}
