//! Workspaces, identities and the ways into a gateway, as users meet them:
//! `workspace …`, `whoami`, `--workspace`/`--all-workspaces`, a second
//! user with a certificate the gateway issued, a user behind a "reverse
//! proxy" who logs in in the browser (driven by curl), the system registry,
//! `--gateway-insecure`, and the settings' precedence.

use std::path::{Path, PathBuf};

use openshell_test_support::home::{Home, openshell_bin, start, text};

fn gateway_bin() -> PathBuf {
    Path::new(openshell_bin())
        .parent()
        .unwrap()
        .join("openshell-gateway")
}

/// Runs `openshell-gateway --state-dir STATE ARGS…` (issuing identities).
fn issue(state: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(gateway_bin())
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn ok(out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn refused(out: &std::process::Output, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains(needle),
        "{needle}: {}",
        text(&out.stderr)
    );
}

#[test]
fn workspaces_scope_everything_and_a_second_user_reaches_only_its_own() {
    let admin = Home::new();
    let port = start(&admin);
    let endpoint = format!("https://127.0.0.1:{port}");

    // Workspaces: create, get, list, JSON; names are short DNS labels.
    let out = admin.openshell(&[
        "workspace",
        "create",
        "--name",
        "team",
        "--label",
        "tier=gold",
    ]);
    assert_eq!(ok(&out), "✓ Created workspace team\n");
    refused(
        &admin.openshell(&["workspace", "create", "--name", "team"]),
        "workspace 'team' already exists",
    );
    refused(
        &admin.openshell(&["ws", "create", "--name", "much-too-long-for-a-workspace"]),
        "longer than 19 characters",
    );
    let listed = ok(&admin.openshell(&["workspace", "list"]));
    assert!(listed.starts_with("NAME"), "{listed}");
    assert!(listed.contains("team     active"), "{listed}");
    assert!(listed.contains("tier=gold"), "{listed}");
    let json: serde_json::Value = serde_json::from_str(&ok(&admin.openshell(&[
        "workspace",
        "get",
        "team",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(json["name"], "team");
    assert_eq!(json["status"], "active");
    assert_eq!(json["labels"]["tier"], "gold");
    refused(
        &admin.openshell(&["--workspace", "nope", "sandbox", "list"]),
        "workspace 'nope' not found",
    );

    // --workspace (and OPENSHELL_WORKSPACE) scope sandboxes; --all-workspaces lists across.
    ok(&admin.openshell(&["sandbox", "create", "--name", "d1", "--detach"]));
    let mut in_team = admin.command(openshell_bin());
    in_team
        .env("OPENSHELL_WORKSPACE", "team")
        .args(["sandbox", "create", "--name", "t1", "--detach"]);
    ok(&in_team.output().unwrap());
    assert_eq!(
        ok(&admin.openshell(&["sandbox", "list", "--names"])),
        "d1\n"
    );
    assert_eq!(
        ok(&admin.openshell(&["--workspace", "team", "sandbox", "list", "--names"])),
        "t1\n"
    );
    assert_eq!(
        ok(&admin.openshell(&["sandbox", "list", "--all-workspaces", "--names"])),
        "default/d1\nteam/t1\n"
    );
    let table = ok(&admin.openshell(&["sandbox", "list", "--all-workspaces"]));
    assert!(table.starts_with("WORKSPACE"), "{table}");
    let all: serde_json::Value = serde_json::from_str(&ok(&admin.openshell(&[
        "sandbox",
        "list",
        "--all-workspaces",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(all[1]["workspace"], "team");

    let me: serde_json::Value =
        serde_json::from_str(&ok(&admin.openshell(&["whoami", "-o", "json"]))).unwrap();
    assert_eq!(me["subject"], "openshell-cli");
    assert_eq!(me["roles"][0], "admin");
    assert_eq!(me["identity_provider"], "mtls");

    // A second user: a certificate the gateway's CA issues to alice.
    let bundle = admin.dir.path().join("alice-bundle");
    let said = issue(
        &admin.gateway_state("openshell"),
        &[
            "--issue-client",
            "alice",
            "--role",
            "user",
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    assert!(
        said.contains("issued a client certificate for 'alice' (user)"),
        "{said}"
    );
    let alice = Home::new();
    let mut add = alice.command(openshell_bin());
    add.env("OPENSHELL_LOCAL_TLS_DIR", &bundle)
        .args(["gateway", "add", &endpoint, "--local"]);
    ok(&add.output().unwrap());
    let whoami = ok(&alice.openshell(&["whoami"]));
    assert!(whoami.contains("  Subject:     alice\n"), "{whoami}");
    assert!(whoami.contains("  Roles:       user\n"), "{whoami}");

    // Not a member anywhere yet: refused, whether the workspace exists or not.
    refused(
        &alice.openshell(&["sandbox", "list"]),
        "'alice' is not a member of workspace 'default'",
    );
    refused(
        &alice.openshell(&["sandbox", "get", "d1"]),
        "'alice' is not a member of workspace 'default'",
    );
    refused(
        &alice.openshell(&["workspace", "create", "--name", "mine"]),
        "may not create workspaces",
    );
    refused(
        &alice.openshell(&["gateway", "info"]),
        "may not read the gateway's info",
    );

    // An admin makes her a member of team: there, and only there, she works.
    let out = admin.openshell(&[
        "workspace",
        "member",
        "add",
        "--workspace",
        "team",
        "--subject",
        "alice",
        "--role",
        "user",
    ]);
    assert_eq!(ok(&out), "✓ Added alice to workspace team as user\n");
    assert_eq!(
        ok(&alice.openshell(&["--workspace", "team", "sandbox", "list", "--names"])),
        "t1\n"
    );
    assert_eq!(
        ok(&alice.openshell(&["sandbox", "list", "--all-workspaces", "--names"])),
        "team/t1\n"
    );
    let out = alice.openshell(&[
        "--workspace",
        "team",
        "sandbox",
        "exec",
        "-n",
        "t1",
        "--",
        "echo",
        "hi",
    ]);
    assert_eq!(ok(&out), "hi\n");
    // d1 lives in another workspace: from team it does not exist.
    let out = alice.openshell(&["--workspace", "team", "sandbox", "delete", "d1"]);
    assert!(
        text(&out.stderr).contains("Sandbox d1 not found"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        ok(&admin.openshell(&["sandbox", "list", "--names"])),
        "d1\n",
        "untouched"
    );
    refused(
        &alice.openshell(&[
            "workspace",
            "member",
            "add",
            "--workspace",
            "team",
            "--subject",
            "mallory",
        ]),
        "may not manage the members of workspace 'team'",
    );
    refused(
        &alice.openshell(&[
            "settings",
            "set",
            "--global",
            "--key",
            "ocsf_json_enabled",
            "--value",
            "true",
            "--yes",
        ]),
        "may not change global settings",
    );
    let members = ok(&admin.openshell(&["--workspace", "team", "workspace", "member", "list"]));
    assert_eq!(members, "SUBJECT  ROLE\nalice    user\n");

    // A workspace still holding sandboxes stays; emptied, it goes.
    refused(
        &admin.openshell(&["workspace", "delete", "team"]),
        "workspace 'team' still holds 1 sandbox(es)",
    );
    ok(&admin.openshell(&["--workspace", "team", "sandbox", "delete", "t1"]));
    assert_eq!(
        ok(&admin.openshell(&["workspace", "delete", "team"])),
        "✓ Deleted workspace team\n"
    );
    let out = admin.openshell(&["workspace", "delete", "team"]);
    assert!(
        text(&out.stderr).contains("! Workspace team not found"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    refused(
        &alice.openshell(&["--workspace", "team", "sandbox", "list"]),
        "'alice' is not a member of workspace 'team'",
    );
}
