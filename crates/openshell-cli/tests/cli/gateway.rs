//! `gateway start|stop|list|select|remove` and `status` against a real
//! `openshell-gateway`, with fresh config and state directories.

pub use openshell_test_support::home::{
    Home, cmdlines, free_port, pids_of, pids_running, run_with_stdin, start, text,
};

#[test]
fn status_without_a_gateway_says_so_and_succeeds() {
    let home = Home::new();
    let out = home.openshell(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "Gateway Status\n  Status: No gateway configured.\nRegister a gateway with: openshell gateway add <endpoint>\n"
    );
    let out = home.openshell(&["status", "-o", "json"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "{\n  \"status\": \"not_configured\"\n}"
    );
}

#[test]
fn start_registers_an_mtls_gateway_that_status_reaches_and_stop_stops() {
    let home = Home::new();
    let port = free_port().to_string();
    let out = home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let endpoint = format!("https://127.0.0.1:{port}");
    assert_eq!(
        text(&out.stdout),
        format!("✓ Gateway 'openshell' started\n  Endpoint: {endpoint}\n")
    );
    assert!(
        text(&out.stderr).contains("] Gateway ready"),
        "{}",
        text(&out.stderr)
    );

    // The registration is exactly the documented layout.
    let metadata: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(home.config().join("gateways/openshell/metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metadata["gateway_endpoint"], endpoint.as_str());
    assert_eq!(metadata["auth_mode"], "mtls");
    assert_eq!(
        std::fs::read_to_string(home.config().join("active_gateway"))
            .unwrap()
            .trim(),
        "openshell"
    );
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::metadata(home.config().join("gateways/openshell/mtls/tls.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);

    let out = home.openshell(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!(
            "Server Status\n  Gateway: openshell\n  Server: {endpoint}\n  Status: Connected\n  Authentication: Authenticated (mTLS transport)\n  Version: {}\n",
            env!("CARGO_PKG_VERSION")
        )
    );

    let again = home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(again.status.code(), Some(0));
    assert!(text(&again.stdout).starts_with("✓ Gateway 'openshell' is already running (pid "));

    let list = home.openshell(&["gateway", "list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&text(&list.stdout)).unwrap();
    assert_eq!(list[0]["name"], "openshell");
    assert_eq!(list[0]["active"], true);
    assert_eq!(list[0]["auth"], "mtls");

    let out = home.openshell(&["gateway", "stop"]);
    assert_eq!(text(&out.stdout), "✓ Gateway 'openshell' stopped\n");
    let out = home.openshell(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("  Status: Disconnected\n"));

    // Restart: the same PKI, so the stored client bundle still works.
    let out = home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(home.openshell(&["status"]).status.code(), Some(0));
}

#[test]
fn a_hand_written_plaintext_registration_works_like_a_started_one() {
    let home = Home::new();
    let port = free_port().to_string();
    let out = home.openshell(&[
        "gateway",
        "start",
        "--name",
        "plain",
        "--port",
        &port,
        "--plaintext",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Replace the registration with a hand-written one under another name.
    let dir = home.config().join("gateways/byhand");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("metadata.json"),
        format!(r#"{{"name":"byhand","gateway_endpoint":"http://127.0.0.1:{port}","is_remote":false,"gateway_port":{port}}}"#),
    )
    .unwrap();
    let out = home.openshell(&["gateway", "select", "byhand"]);
    assert_eq!(text(&out.stdout), "✓ Active gateway set to 'byhand'\n");
    let out = home.openshell(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("  Authentication: Not required (gateway)\n"));
    let out = home.openshell(&["gateway", "remove", "byhand"]);
    assert_eq!(
        text(&out.stdout),
        "✓ Gateway registration 'byhand' removed.\n"
    );
    assert!(!home.config().join("active_gateway").exists());
    let out = home.openshell(&["-g", "nope", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Unknown gateway 'nope'."),
        "{}",
        text(&out.stderr)
    );
    let _ = home.openshell(&["gateway", "stop", "--name", "plain"]);
}

/// Creates sandboxes straight through the API, with labels the CLI's
/// `sandbox create` also sets, to test the listing side on its own.
fn create_via_api(home: &Home, port: &str, names: &[(&str, &[(&str, &str)])]) {
    use openshell_proto::v1 as pb;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let mtls = home.config().join("gateways/openshell/mtls");
    let read = |f: &str| std::fs::read_to_string(mtls.join(f)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.crt")))
            .identity(Identity::from_pem(read("tls.crt"), read("tls.key")));
        let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = pb::gateway_client::GatewayClient::new(channel);
        for (name, labels) in names {
            client
                .create_sandbox(pb::CreateSandboxRequest {
                    name: (*name).to_owned(),
                    spec: Some(pb::SandboxSpec {
                        command: vec!["sleep".into(), "60".into()],
                        policy_yaml: "version: 1\n".into(),
                        env: Default::default(),
                        labels: labels
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
        }
    });
}

#[test]
fn sandbox_list_get_and_delete_speak_the_documented_formats() {
    let home = Home::new();
    let port = free_port().to_string();
    assert_eq!(
        home.openshell(&["gateway", "start", "--port", &port])
            .status
            .code(),
        Some(0)
    );
    let out = home.openshell(&["sandbox", "list"]);
    assert_eq!(text(&out.stdout), "No sandboxes found.\n");
    create_via_api(
        &home,
        &port,
        &[("alpha", &[("team", "red")]), ("beta", &[])],
    );

    let out = home.openshell(&["sandbox", "list"]);
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("NAME   CREATED") && lines[0].ends_with("PHASE"),
        "{lines:?}"
    );
    // The phase of a sandbox just created: its supervisor may be up already.
    assert!(
        lines[1].starts_with("alpha  20")
            && (lines[1].ends_with("  Provisioning") || lines[1].ends_with("  Ready")),
        "{lines:?}"
    );
    let out = home.openshell(&["sandbox", "list", "--names", "--selector", "team=red"]);
    assert_eq!(text(&out.stdout), "alpha\n");

    let out = home.openshell(&["sandbox", "get", "alpha", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert!(["Provisioning", "Ready"].contains(&value["phase"].as_str().unwrap()));
    assert_eq!(value["name"], "alpha");
    assert_eq!(value["labels"]["team"], "red");
    assert_eq!(value["revision"], 1);
    let out = home.openshell(&["sandbox", "get", "alpha"]);
    assert!(
        text(&out.stdout).starts_with("Sandbox:\n  Id: "),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains(
        "\n  Labels:\n    team: red\n  Policy source: sandbox\n  Revision: 1\nPolicy:\n  version: 1\n"
    ));

    let out = home.openshell(&["sandbox", "get", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("sandbox 'nope' not found"),
        "{}",
        text(&out.stderr)
    );

    let out = home.openshell(&["sandbox", "delete", "alpha", "ghost"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "✓ Deleted sandbox alpha\n");
    assert_eq!(text(&out.stderr), "! Sandbox ghost not found\n");
    let out = home.openshell(&["--workspace", "other", "sandbox", "list", "--names"]);
    assert_eq!(text(&out.stdout), "", "workspaces are separate");
    let out = home.openshell(&["sandbox", "delete", "--all"]);
    assert_eq!(text(&out.stdout), "✓ Deleted sandbox beta\n");
}

#[test]
fn info_destroy_and_doctor_describe_and_clean_up_a_local_gateway() {
    let home = Home::new();
    let port = free_port().to_string();
    let out = home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let seconds = (40_000 + std::process::id() % 9000).to_string();
    let out = home.openshell(&[
        "sandbox", "create", "--name", "doomed", "--detach", "--", "sleep", &seconds,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = home.openshell(&["gateway", "info", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let info: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(info["status"], "healthy");
    assert_eq!(info["auth"], "mtls");
    assert_eq!(info["port"].to_string(), port);
    assert_eq!(info["compute_drivers"][0]["name"], "process");
    assert_eq!(info["sandboxes"], 1);
    let out = home.openshell(&["doctor", "logs", "-n", "50"]);
    assert!(
        text(&out.stdout).contains("gateway listening"),
        "{}",
        text(&out.stdout)
    );
    let out = home.openshell(&["doctor", "check", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(
        report.starts_with("Checking system prerequisites...\n"),
        "{report}"
    );
    assert!(
        report.contains("  landlock .......... ok (ABI "),
        "{report}"
    );
    // This host (and CI's) has cgroup v1 pids and memory controllers.
    assert!(report.contains("  limits "), "{report}");
    assert!(
        report.contains("ok (cgroup v1: pids, memory, cpu)") || report.contains("ok (cgroup v2"),
        "{report}"
    );
    assert!(report.contains(&format!("  port {port} ")), "{report}");
    assert!(report.contains("in use"), "{report}");
    assert!(report.ends_with("All checks passed.\n"), "{report}");

    let out = home.openshell(&["gateway", "destroy"]);
    assert_eq!(
        text(&out.stdout),
        "✓ Gateway 'openshell' destroyed (1 sandbox ended)\n",
        "{}",
        text(&out.stderr)
    );
    assert!(
        !home
            .dir
            .path()
            .join("state/openshell/gateways/openshell")
            .exists()
    );
    assert!(!home.config().join("gateways/openshell").exists());
    assert!(
        pids_of(&format!("sleep\u{0}{seconds}")).is_empty(),
        "a sandbox outlived gateway destroy"
    );
    let out = home.openshell(&["gateway", "info"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("No gateway configured."));
}

#[test]
fn add_registers_a_running_gateway_with_its_bundle_or_as_plaintext() {
    let home = Home::new();
    let port = free_port().to_string();
    let out = home.openshell(&["gateway", "start", "--port", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    home.openshell(&["gateway", "remove", "openshell"]);
    let endpoint = format!("https://127.0.0.1:{port}");

    let out = home.openshell(&["gateway", "add", &endpoint, "--local"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "✓ TLS certificates present\n✓ Gateway 'openshell' added and set as active\n  Endpoint: {endpoint}\n  Type: local\n  Auth: mtls\n"
        )
    );
    let out = home.openshell(&["status"]);
    assert!(
        text(&out.stdout).contains("  Status: Connected"),
        "{}",
        text(&out.stdout)
    );

    let out = home.openshell(&["gateway", "add", &endpoint]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Gateway 'openshell' already exists."));
    let out = home.openshell(&["gateway", "login"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("authenticates with mTLS certificates"));

    // http:// is plaintext; this gateway speaks TLS, so it is registered
    // with a warning.
    let out = home.openshell(&[
        "gateway",
        "add",
        &format!("http://127.0.0.1:{port}"),
        "--name",
        "plain",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("  Auth: plaintext"));
    assert!(text(&out.stderr).contains("Gateway is not reachable at http://127.0.0.1:"));

    // https:// --remote (mTLS) to a gateway whose bundle is nowhere:
    // refused, nothing saved, nothing dialled.
    let out = home.openshell(&["gateway", "add", "https://gw.example.test:9443", "--remote"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("mTLS certificates for gateway 'gw.example.test' were not found.")
    );
    assert!(
        !home
            .config()
            .join("gateways/gw.example.test/metadata.json")
            .exists()
    );
}

#[test]
fn output_into_a_pipe_closed_early_ends_quietly() {
    // 120+ KiB of completions into a pipe whose reader takes one line and
    // goes: 141 (as SIGPIPE would), no panic; the CLI keeps SIGPIPE ignored.
    let home = Home::new();
    let mut child = home
        .command(env!("CARGO_BIN_EXE_openshell"))
        .args(["completions", "bash"])
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first, "_openshell() {\n");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(text(&out.stderr), "");
}
