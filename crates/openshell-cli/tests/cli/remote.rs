//! `gateway start --remote` against a real sshd serving a "remote host" in
//! a network namespace this test makes (the same files, another network):
//! the gateway is copied there and runs in that namespace, the CLI reaches
//! it only through its ssh tunnel, and destroy leaves nothing there.

use std::path::Path;
use std::process::Command;

use openshell_test_support::home::{Home, ok, text};
use openshell_test_support::netns::TestNetwork;

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (Debian: openssh-client)");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The namespace of the process a pid file names.
fn netns_of(pid_file: &Path) -> Option<std::path::PathBuf> {
    let pid = std::fs::read_to_string(pid_file).ok()?;
    std::fs::read_link(format!("/proc/{}/ns/net", pid.trim())).ok()
}

#[test]
fn a_gateway_started_over_ssh_serves_through_its_tunnel_and_destroy_leaves_nothing() {
    assert!(
        Path::new("/usr/sbin/sshd").exists(),
        "sshd is missing (Debian: apt-get install openssh-server; .ci/run installs it)"
    );
    let home = Home::new();
    let mut net = TestNetwork::new();
    let dir = home.dir.path().join("sshd");
    std::fs::create_dir_all(&dir).unwrap();
    keygen(&dir.join("host_key"));
    keygen(&dir.join("client_key"));
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress {peer}\nPort 22\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nPidFile {d}/sshd.pid\nAllowTcpForwarding yes\n",
            peer = net.peer,
            d = dir.display()
        ),
    )
    .unwrap();
    net.serve_program(
        22,
        "/usr/sbin/sshd",
        &["-D", "-e", "-f", config.to_str().unwrap()],
    );

    let name = format!("far-{}", std::process::id());
    let key = dir.join("client_key");
    let host = format!("root@{}", net.peer);
    let start_remote = || {
        home.openshell(&[
            "gateway",
            "start",
            "--remote",
            &host,
            "--ssh-key",
            key.to_str().unwrap(),
            "--name",
            &name,
        ])
    };
    let out = start_remote();
    let said = ok(&out);
    assert!(
        said.contains(&format!(
            "✓ Gateway '{name}' started on {host} and set as active"
        )),
        "{said}"
    );
    // It runs over there: in the namespace, not here.
    let remote_dir = Path::new("/root/.local/state/openshell/remote").join(&name);
    let gateway_ns = netns_of(&remote_dir.join("gateway.pid")).expect("the remote gateway runs");
    let their_ns = std::fs::metadata(net.netns_path()).unwrap();
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(gateway_ns, ours, "the gateway runs in this namespace");
    assert_eq!(
        gateway_ns.to_string_lossy(),
        format!("net:[{}]", std::os::unix::fs::MetadataExt::ino(&their_ns))
    );
    let list = ok(&home.openshell(&["gateway", "list"]));
    assert!(list.lines().next().unwrap().ends_with("REMOTE"), "{list}");
    assert!(list.contains(&host), "{list}");
    let info = ok(&home.openshell(&["gateway", "info"]));
    assert!(
        info.contains(&format!("  Remote: {host} (over ssh)")),
        "{info}"
    );
    assert!(ok(&home.openshell(&["status"])).contains("  Status: Connected"));

    // Sandboxes there, through the tunnel.
    ok(&home.openshell(&["sandbox", "create", "--name", "r1", "--detach"]));
    let out = home.openshell(&[
        "sandbox",
        "exec",
        "-n",
        "r1",
        "--",
        "sh",
        "-c",
        "echo hi from $(id -un)",
    ]);
    assert_eq!(ok(&out), "hi from sandbox\n");

    // A tunnel that died is reopened by the next command.
    let tunnel = std::fs::read_to_string(
        home.config()
            .join("gateways")
            .join(&name)
            .join("tunnel.pid"),
    )
    .unwrap();
    let tunnel = nix::unistd::Pid::from_raw(tunnel.trim().parse().unwrap());
    nix::sys::signal::kill(tunnel, nix::sys::signal::Signal::SIGKILL).unwrap();
    let out = home.openshell(&["sandbox", "exec", "-n", "r1", "--", "echo", "again"]);
    assert_eq!(ok(&out), "again\n");

    // Stop stops it there; start again brings it back, its sandbox kept.
    let out = home.openshell(&["gateway", "stop", "--name", &name]);
    assert!(ok(&out).contains(&format!("✓ Gateway '{name}' stopped on {host}")));
    assert_eq!(home.openshell(&["status"]).status.code(), Some(1));
    let out = start_remote();
    ok(&out);
    assert_eq!(ok(&home.openshell(&["sandbox", "list", "--names"])), "r1\n");

    // Removing the registration ends its tunnel, not the gateway there; a
    // start registers the running gateway again.
    let tunnel = std::fs::read_to_string(
        home.config()
            .join("gateways")
            .join(&name)
            .join("tunnel.pid"),
    )
    .unwrap();
    let tunnel_cmdline = format!("/proc/{}/cmdline", tunnel.trim());
    ok(&home.openshell(&["gateway", "remove", &name]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read(&tunnel_cmdline)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the tunnel outlived its registration"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        netns_of(&remote_dir.join("gateway.pid")).is_some(),
        "the gateway there stopped"
    );
    let out = start_remote();
    ok(&out);
    assert_eq!(ok(&home.openshell(&["sandbox", "list", "--names"])), "r1\n");

    // Destroy: sandboxes, gateway, files there, tunnel and registration.
    let out = home.openshell(&["gateway", "destroy", "--name", &name]);
    let said = ok(&out);
    assert!(
        said.contains(&format!("destroyed on {host} (1 sandbox ended)")),
        "{said}"
    );
    assert!(!remote_dir.exists(), "files left on the remote host");
    assert!(!home.config().join("gateways").join(&name).exists());
    let leftovers: Vec<String> = openshell_test_support::home::cmdlines()
        .filter(|(_, cmdline)| {
            let line = String::from_utf8_lossy(cmdline);
            line.contains(remote_dir.to_str().unwrap()) || line.contains(&format!("{host}\0"))
        })
        .map(|(pid, cmdline)| format!("{pid}: {}", String::from_utf8_lossy(&cmdline)))
        .collect();
    assert!(leftovers.is_empty(), "left running: {leftovers:?}");
}
