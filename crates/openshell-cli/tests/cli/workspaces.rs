//! Workspaces, identities and the ways into a gateway, as users meet them:
//! `workspace …`, `whoami`, `--workspace`/`--all-workspaces`, a second
//! user with a certificate the gateway issued, a user behind a "reverse
//! proxy" who logs in in the browser (driven by curl), the system registry,
//! `--gateway-insecure`, and the settings' precedence.

use std::path::{Path, PathBuf};

use openshell_test_support::home::{Home, ok, openshell_bin, start, text};

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

/// The URL `gateway add`/`login` prints under OPENSHELL_NO_BROWSER, read
/// from its stderr as it runs; the child keeps waiting for the callback.
fn login_url(child: &mut std::process::Child) -> (String, String) {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut code = String::new();
    loop {
        let line = lines
            .next()
            .expect("the CLI ended before printing the URL")
            .unwrap();
        if let Some(c) = line.strip_prefix("Confirmation code: ") {
            code = c.to_owned();
        }
        if let Some(url) = line.trim().strip_prefix("https://") {
            // Keep draining stderr so the CLI never blocks on it.
            std::thread::spawn(move || lines.for_each(drop));
            return (format!("https://{url}"), code);
        }
    }
}

/// What a browser does on the login page: submit the token; curl follows
/// the gateway's redirect (307: the form is posted again) to the CLI's
/// loopback callback.
fn submit_login(ca: &Path, url: &str, token: &str) -> String {
    let (base, query) = url.split_once("?").unwrap();
    let mut form: Vec<String> = query.split('&').map(str::to_owned).collect();
    form.push(format!("token={token}"));
    let out = std::process::Command::new("curl")
        .args(["-sS", "-L", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code} %{url_effective}"])
        .args(
            form.iter()
                .flat_map(|f| ["--data-urlencode".to_owned(), f.clone()]),
        )
        .arg(base)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn a_gateway_behind_a_reverse_proxy_is_logged_in_to_in_the_browser_with_a_user_token() {
    let admin = Home::new();
    let port = start(&admin);
    let state = admin.gateway_state("openshell");
    let ca = state.join("pki/ca.crt");
    let endpoint = format!("https://127.0.0.1:{port}");
    ok(&admin.openshell(&["workspace", "create", "--name", "team"]));
    ok(&admin.openshell(&[
        "workspace",
        "member",
        "add",
        "--workspace",
        "team",
        "--subject",
        "bob@example.com",
    ]));
    let token = issue(&state, &["--issue-token", "bob@example.com"]);
    let token = token.trim();
    assert!(token.starts_with("u1."), "{token}");

    // The login page shows the code and refuses a token it did not mint.
    let bob = Home::new();
    let mut add = bob.command(openshell_bin());
    add.env("SSL_CERT_FILE", &ca)
        .args(["gateway", "add", &endpoint, "--name", "team"]);
    let mut child = add.spawn().unwrap();
    let (url, code) = login_url(&mut child);
    assert!(
        url.starts_with(&format!("{endpoint}/auth/connect?callback_port=")),
        "{url}"
    );
    assert!(url.ends_with(&format!("&code={code}")), "{url}");
    let page = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .arg(&url)
        .output()
        .unwrap();
    assert!(text(&page.stdout).contains(&code), "{}", text(&page.stdout));
    let bad = submit_login(&ca, &url, "u1.626f62.admin.99999999999.00");
    assert!(
        bad.ends_with(&format!("401 {endpoint}/auth/connect")),
        "{bad}"
    );

    // The real token goes back to the CLI on loopback, and it is in.
    let good = submit_login(&ca, &url, token);
    assert!(good.contains("Logged in."), "{good}");
    assert!(good.ends_with("/callback"), "{good}");
    assert!(good.contains(" http://127.0.0.1:"), "{good}");
    assert!(!good.contains(token), "the token went into a URL: {good}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let said = text(&out.stdout);
    assert!(
        said.contains("✓ Gateway 'team' added and set as active"),
        "{said}"
    );
    assert!(said.contains("  Auth: bearer"), "{said}");
    let stored = bob.config().join("gateways/team/edge_token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let mut whoami = bob.command(openshell_bin());
    whoami
        .env("SSL_CERT_FILE", &ca)
        .args(["whoami", "-o", "json"]);
    let me: serde_json::Value = serde_json::from_str(&ok(&whoami.output().unwrap())).unwrap();
    assert_eq!(me["subject"], "bob@example.com");
    assert_eq!(me["identity_provider"], "bearer");
    let mut listed = bob.command(openshell_bin());
    listed
        .env("SSL_CERT_FILE", &ca)
        .env("OPENSHELL_WORKSPACE", "team")
        .args(["sandbox", "list"]);
    assert_eq!(ok(&listed.output().unwrap()), "No sandboxes found.\n");
    let list = ok(&bob.openshell(&["gateway", "list"]));
    assert!(list.contains("bearer"), "{list}");

    // Without the gateway's CA the certificate does not verify; with
    // --gateway-insecure it is not checked (and a warning says so).
    refused(&bob.openshell(&["whoami"]), "cannot reach gateway 'team'");
    let out = bob.openshell(&["--gateway-insecure", "whoami"]);
    assert!(ok(&out).contains("bob@example.com"));
    assert!(
        text(&out.stderr).contains("is not verified"),
        "{}",
        text(&out.stderr)
    );

    // Logged out, nothing is sent: refused with the way back in.
    assert_eq!(
        ok(&bob.openshell(&["gateway", "logout"])),
        "✓ Logged out of gateway 'team'\n"
    );
    assert!(!stored.exists());
    refused(
        &bob.openshell(&["whoami"]),
        "hint: openshell gateway login team",
    );
    // mTLS gateways have nothing to log in or out of.
    refused(
        &admin.openshell(&["gateway", "logout"]),
        "authenticates with mTLS certificates",
    );
}

#[test]
fn system_gateways_are_listed_used_and_never_removed() {
    let admin = Home::new();
    let port = start(&admin);
    // A package-installed registration under OPENSHELL_SYSTEM_GATEWAY_DIR:
    // metadata, the client bundle and the system's active gateway.
    let user = Home::new();
    let system = user.system().join("gateways/corp");
    std::fs::create_dir_all(system.join("mtls")).unwrap();
    std::fs::write(
        system.join("metadata.json"),
        format!(
            r#"{{"name":"corp","gateway_endpoint":"https://127.0.0.1:{port}","is_remote":false,"gateway_port":{port}}}"#
        ),
    )
    .unwrap();
    let pki = admin.gateway_state("openshell").join("pki");
    std::fs::copy(pki.join("ca.crt"), system.join("mtls/ca.crt")).unwrap();
    std::fs::copy(pki.join("client/tls.crt"), system.join("mtls/tls.crt")).unwrap();
    std::fs::copy(pki.join("client/tls.key"), system.join("mtls/tls.key")).unwrap();
    std::fs::write(user.system().join("active_gateway"), "corp\n").unwrap();

    let list = ok(&user.openshell(&["gateway", "list"]));
    assert!(list.contains("SOURCE"), "{list}");
    assert!(list.contains("* corp"), "{list}");
    assert!(list.contains("system"), "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&user.openshell(&["gateway", "list", "-o", "json"]))).unwrap();
    assert_eq!(json[0]["source"], "system");
    assert!(ok(&user.openshell(&["status"])).contains("  Status: Connected"));
    refused(
        &user.openshell(&["gateway", "remove", "corp"]),
        "installed by the system and cannot be removed from user config",
    );
    assert!(system.join("metadata.json").exists());
    // A user registration of the same name shadows it.
    ok(&user.openshell(&["gateway", "add", "http://127.0.0.1:9", "--name", "corp"]));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&user.openshell(&["gateway", "list", "-o", "json"]))).unwrap();
    assert_eq!(json[0]["source"], "user");
    assert_eq!(json[0]["endpoint"], "http://127.0.0.1:9");
}

#[test]
fn global_settings_are_managed_and_every_change_says_its_revision() {
    let home = Home::new();
    start(&home);
    ok(&home.openshell(&["sandbox", "create", "--name", "s", "--detach"]));
    let shown = ok(&home.openshell(&["settings", "get", "s"]));
    assert!(
        shown.contains("  ocsf_json_enabled = <unset> (unset)\n"),
        "{shown}"
    );
    assert_eq!(
        ok(&home.openshell(&[
            "settings",
            "set",
            "s",
            "--key",
            "ocsf_json_enabled",
            "--value",
            "yes"
        ])),
        "✓ Set sandbox setting ocsf_json_enabled=true for s (revision 1)\n"
    );
    let out = home.openshell(&[
        "settings",
        "set",
        "--global",
        "--key",
        "ocsf_json_enabled",
        "--value",
        "false",
    ]);
    refused(&out, "pass --yes");
    assert_eq!(
        ok(&home.openshell(&[
            "settings",
            "set",
            "--global",
            "--key",
            "ocsf_json_enabled",
            "--value",
            "false",
            "--yes",
        ])),
        "✓ Set global setting ocsf_json_enabled=false (revision 1)\n"
    );
    // The global value wins, and the sandbox may not override it.
    let shown = ok(&home.openshell(&["settings", "get", "s"]));
    assert!(
        shown.contains("  ocsf_json_enabled = false (global)\n"),
        "{shown}"
    );
    refused(
        &home.openshell(&[
            "settings",
            "set",
            "s",
            "--key",
            "ocsf_json_enabled",
            "--value",
            "true",
        ]),
        "setting 'ocsf_json_enabled' is managed globally (value false)",
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        &home.openshell(&["settings", "get", "--global", "--json"])
    ))
    .unwrap();
    assert_eq!(json["scope"], "global");
    assert_eq!(json["settings_revision"], 1);
    assert_eq!(json["settings"]["ocsf_json_enabled"], "false");
    assert_eq!(
        ok(&home.openshell(&[
            "settings",
            "delete",
            "--global",
            "--key",
            "ocsf_json_enabled",
            "--yes"
        ])),
        "✓ Deleted global setting ocsf_json_enabled (revision 2)\n"
    );
    let out = home.openshell(&[
        "settings",
        "delete",
        "--global",
        "--key",
        "ocsf_json_enabled",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("! global setting ocsf_json_enabled not found"),
        "{}",
        text(&out.stderr)
    );
    // The sandbox's own value is in force again.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&home.openshell(&["settings", "get", "s", "--json"]))).unwrap();
    assert_eq!(json["settings"]["ocsf_json_enabled"]["scope"], "sandbox");
    assert_eq!(json["settings"]["ocsf_json_enabled"]["value"], "true");
    assert_eq!(json["workspace"], "default");
}
