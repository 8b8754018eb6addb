//! `openshell policy validate|explain` driven as a user would: the real
//! binary, real files, asserting whole outputs and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policy.yaml")
}

fn openshell(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_openshell"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn write_temp(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("openshell-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn validate_accepts_the_example_policy() {
    let out = openshell(&["policy", "validate", example().to_str().unwrap()]);
    assert_eq!(text(&out.stdout), "✓ Policy is valid\n");
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn validate_reports_every_error_with_line_and_column_and_exits_1() {
    let file = write_temp(
        "bad.yaml",
        "version: 1\nprocess:\n  run_as_user: root\nnetwork_policies:\n  p:\n    endpoints:\n      - host: \"*\"\n        port: 443\n    binaries: [{path: /x}]\n",
    );
    let name = file.display().to_string();
    let out = openshell(&["policy", "validate", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        format!(
            "✗ {name}:3:16: process.run_as_user: run_as_user must be 'sandbox' or a numeric UID/GID in range [1, 4294967294], got 'root'\n\
             ✗ {name}:7:15: network_policies.p.endpoints[0].host: host wildcard '*' matches all hosts; use specific patterns like '*.example.com'\n\
             ✗ Policy is invalid (2 errors)\n"
        )
    );
}

#[test]
fn validate_reports_unknown_keys_as_parse_errors() {
    let file = write_temp(
        "unknown.yaml",
        "version: 1\nfilesystem_policy:\n  read_olny: [/usr]\n",
    );
    let name = file.display().to_string();
    let out = openshell(&["policy", "validate", &name]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("✗ failed to parse sandbox policy YAML\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "✗ {name}:3:3: filesystem_policy.read_olny: unknown field `read_olny`"
        )),
        "{stderr}"
    );
}

#[test]
fn validate_json_is_the_only_stdout() {
    let file = write_temp("json.yaml", "version: 3\n");
    let out = openshell(&["policy", "validate", file.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "valid": false,
            "errors": [{"line": 1, "column": 10, "path": "version", "message": "unsupported policy version 3 (expected 1)"}],
            "warnings": [],
        })
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = openshell(&["policy", "validate", "/nonexistent/policy.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "✗ failed to read policy file /nonexistent/policy.yaml\n  hint: No such file or directory (os error 2)\n"
    );
}

#[test]
fn explain_l7_denial_in_table_form() {
    let out = openshell(&[
        "policy",
        "explain",
        example().to_str().unwrap(),
        "--host",
        "API.github.com",
        "--port",
        "443",
        "--binary",
        "/usr/bin/curl",
        "--method",
        "post",
        "--path",
        "/repos/o/r/./issues?state=open",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "Decision:  deny\n\
         Layer:     l7\n\
         Policy:    github_api\n\
         Endpoint:  github_api[0] api.github.com:443 (rest, enforce)\n\
         Request:   POST /repos/o/r/issues\n\
         Reason:    POST /repos/o/r/issues not permitted by policy\n\
         Note:      exact host: private addresses allowed, loopback/link-local/metadata never\n"
    );
}

#[test]
fn explain_json_for_allow_and_l4_denials() {
    let example = example();
    let run = |args: &[&str]| -> serde_json::Value {
        let mut full = vec!["policy", "explain", example.to_str().unwrap()];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let out = openshell(&full);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let allowed = run(&[
        "--host",
        "api.github.com",
        "--port",
        "443",
        "--binary",
        "/usr/bin/git",
        "--method",
        "GET",
        "--path",
        "/repos",
    ]);
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["layer"], "l7");
    assert_eq!(allowed["policy"], "github_api");
    let via_ancestor = run(&[
        "--host",
        "files.pythonhosted.org",
        "--port",
        "443",
        "--binary",
        "/bin/sh",
        "--ancestor",
        "/usr/bin/python3.11",
    ]);
    assert_eq!(via_ancestor["decision"], "allow");
    assert_eq!(via_ancestor["policy"], "pypi");
    let wrong_binary = run(&[
        "--host",
        "pypi.org",
        "--port",
        "443",
        "--binary",
        "/usr/bin/wget",
    ]);
    assert_eq!(wrong_binary["decision"], "deny");
    assert!(
        wrong_binary["reason"]
            .as_str()
            .unwrap()
            .starts_with("binary '/usr/bin/wget' not allowed in policy 'pypi'")
    );
    let unknown = run(&[
        "--host",
        "example.com",
        "--port",
        "80",
        "--binary",
        "/usr/bin/curl",
    ]);
    assert_eq!(
        unknown["reason"],
        "endpoint example.com:80 is not allowed by any policy"
    );
}

#[test]
fn explain_flags_ssrf_for_ip_literals() {
    let file = write_temp(
        "ssrf.yaml",
        "version: 1\nnetwork_policies:\n  lan:\n    endpoints: [{port: 80, allowed_ips: [10.0.0.0/24]}]\n    binaries: [{path: /usr/bin/curl}]\n",
    );
    let run = |host: &str| -> serde_json::Value {
        let out = openshell(&[
            "policy",
            "explain",
            file.to_str().unwrap(),
            "--host",
            host,
            "--port",
            "80",
            "--binary",
            "/usr/bin/curl",
            "-o",
            "json",
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(run("10.0.0.7")["decision"], "allow");
    let outside = run("10.0.1.7");
    assert_eq!(
        (outside["decision"].as_str(), outside["layer"].as_str()),
        (Some("deny"), Some("ssrf"))
    );
    let loopback = run("127.0.0.1");
    assert!(
        loopback["reason"]
            .as_str()
            .unwrap()
            .contains("always-blocked address 127.0.0.1"),
        "{loopback}"
    );
    let mapped = run("::ffff:127.0.0.1");
    assert_eq!(mapped["layer"], "ssrf");
}

#[test]
fn explain_rejects_escaping_paths() {
    let out = openshell(&[
        "policy",
        "explain",
        example().to_str().unwrap(),
        "--host",
        "api.github.com",
        "--port",
        "443",
        "--binary",
        "/usr/bin/curl",
        "--path",
        "/../etc/passwd",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "✗ invalid --path: request path uses '..' to escape the root\n"
    );
}

#[test]
fn usage_errors_exit_2_and_help_teaches() {
    assert_eq!(openshell(&["policy", "frobnicate"]).status.code(), Some(2));
    assert_eq!(
        openshell(&["policy", "explain", "x.yaml"]).status.code(),
        Some(2)
    );
    let help = text(&openshell(&["policy", "--help"]).stdout);
    assert!(help.contains("Example policy (policy.yaml):"), "{help}");
    assert!(
        help.contains("openshell policy explain policy.yaml --host api.github.com"),
        "{help}"
    );
    let version = text(&openshell(&["--version"]).stdout);
    assert_eq!(
        version,
        format!("openshell {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_cover_every_command_group() {
    let out = openshell(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let script = text(&out.stdout);
    for word in ["gateway", "sandbox", "policy", "status", "completions"] {
        assert!(
            script.contains(word),
            "{word} missing from the bash completion"
        );
    }
    assert_eq!(openshell(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn sparse_network_entries_load_with_a_warning_and_the_reference_meaning() {
    // Policy files written for the reference CLI leave out `binaries`
    // (or `endpoints`): they load, each with a located warning.
    let file = write_temp(
        "sparse.yaml",
        "version: 1\nnetwork_policies:\n  api:\n    endpoints:\n      - host: api.example.com\n        port: 443\n  tools:\n    binaries: [{path: /usr/bin/curl}]\n",
    );
    let out = openshell(&["policy", "validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "✓ Policy is valid\n");
    let warnings = text(&out.stderr);
    assert!(
        warnings.contains("sparse.yaml:4:5: network_policies.api.binaries: network policy 'api' lists no binaries, so no program may use it"),
        "{warnings}"
    );
    assert!(
        warnings.contains("sparse.yaml:8:5: network_policies.tools.endpoints: network policy 'tools' lists no endpoints, so it matches nothing"),
        "{warnings}"
    );
    // An entry without binaries admits no program.
    let out = openshell(&[
        "policy",
        "explain",
        file.to_str().unwrap(),
        "--host",
        "api.example.com",
        "--port",
        "443",
        "--binary",
        "/usr/bin/curl",
    ]);
    assert!(text(&out.stdout).contains("deny"), "{}", text(&out.stdout));
}
