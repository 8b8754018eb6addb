//! The docker driver on real engines: Docker (`dockerd`) and Podman (its
//! Docker-compatible API service), with the default image built offline
//! (`images/sandbox/build`). Every scenario runs on both engines.
//!
//! When an engine does not answer, `.ci/engines` brings both up (and
//! builds the image) first: these tests need root and the packages
//! `.ci/run` installs; they are never skipped.

use std::process::Command;
use std::sync::OnceLock;

use crate::gateway::{Home, free_port, text};
use crate::live::{UPSTREAM_PORT, allowing, assert_exec_streams, exec, set_policy};
use crate::netns::{ECHO_SERVER, TestNetwork};

/// One test per engine running `scenario`.
macro_rules! on_both_engines {
    ($scenario:ident: $docker:ident, $podman:ident) => {
        #[test]
        fn $docker() {
            $scenario("docker");
        }

        #[test]
        fn $podman() {
            $scenario("podman");
        }
    };
}

/// Both engines answer and have the default image, or this panics with
/// what went wrong.
fn engines_ready() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/engines");
        let out = Command::new(script)
            .output()
            .map_err(|e| format!("running {script}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{script} failed ({}):\n{}{}",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            ))
        }
    });
    if let Err(error) = ready {
        panic!("the container engines are not ready: {error}");
    }
}

/// `engine` with its arguments (for checks behind the gateway's back).
fn engine_cmd(engine: &str, args: &[&str]) -> String {
    let out = Command::new(engine).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{engine} {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A gateway on `engine` for `home`, under a name no other test uses;
/// returns (port, gateway name, instance id).
fn start_on(home: &Home, engine: &str) -> (String, String, String) {
    engines_ready();
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("t{}-{n}", std::process::id());
    let port = free_port().to_string();
    let out = home.openshell(&[
        "gateway", "start", "--name", &name, "--port", &port, "--driver", engine,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("({engine} driver)")),
        "{}",
        text(&out.stderr)
    );
    let instance = std::fs::read_to_string(
        home.dir
            .path()
            .join(format!("state/openshell/gateways/{name}/instance")),
    )
    .unwrap()
    .trim()
    .to_owned();
    (port, name, instance)
}

/// The names of the containers a gateway instance made (all states).
fn containers_of(engine: &str, instance: &str) -> Vec<String> {
    engine_cmd(
        engine,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label=openshell.gateway-instance={instance}"),
            "--format",
            "{{.Names}}",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// A sandbox's id from `sandbox get -o json`.
fn sandbox_id(home: &Home, name: &str) -> String {
    let out = home.openshell(&["sandbox", "get", name, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    got["id"].as_str().unwrap().to_owned()
}

fn create_detached(home: &Home, name: &str, extra: &[&str]) {
    let mut args = vec!["sandbox", "create", "--name", name, "--detach"];
    args.extend_from_slice(extra);
    let out = home.openshell(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

fn run_exec_and_delete(engine: &str) {
    let home = Home::new();
    let (_, gateway, instance) = start_on(&home, engine);

    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "once",
        "-e",
        "API_KEY=container-sekrit",
        "--",
        "sh",
        "-c",
        "echo hi; id -un; echo $API_KEY; echo oops >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("Created sandbox: once\n"), "{stdout}");
    // The container's output (stdout and stderr) streams to stdout, as on
    // the process driver; `-e` reaches it by file, not by its arguments.
    assert!(
        stdout.contains("hi\nsandbox\ncontainer-sekrit\n"),
        "{stdout}"
    );
    let args = engine_cmd(
        engine,
        &[
            "inspect",
            "--format",
            "{{json .Args}}",
            &format!("openshell-{gateway}-{}", sandbox_id(&home, "once")),
        ],
    );
    assert!(!args.contains("container-sekrit"), "{args}");
    assert!(stdout.contains("oops\n"), "{stdout}");
    let out = home.openshell(&["sandbox", "get", "once", "-o", "json"]);
    let got: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(got["phase"], "Stopped", "{got}");
    assert_eq!(got["exit_code"], 3, "{got}");

    // Resource limits are the container's: a memory hog dies at its limit.
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "tiny",
        "--memory",
        "64Mi",
        "--pids",
        "64",
        "--",
        "python3",
        "-c",
        "x = bytearray(512 * 1024 * 1024)",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let limits = engine_cmd(
        engine,
        &[
            "inspect",
            "--format",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
            &format!("openshell-{gateway}-{}", sandbox_id(&home, "tiny")),
        ],
    );
    assert_eq!(limits.trim(), "67108864 64");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = home.openshell(&["logs", "tiny", "--source", "gateway"]);
        if text(&out.stdout).contains("killed: out of memory") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the OOM kill is a sandbox event: {}",
            text(&out.stdout)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    create_detached(&home, "box", &[]);
    assert_exec_streams(&home, "box");
    // The agent's isolation inside the container: the image's `sandbox`
    // user, no capability, no_new_privs, seccomp, loopback only, Landlock.
    let out = exec(
        &home,
        "box",
        &[
            "sh",
            "-c",
            "id -un; grep -E '^(NoNewPrivs|Seccomp|CapEff|CapBnd):' /proc/self/status; \
             grep ':' /proc/net/dev | cut -d: -f1 | tr -d ' '",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "sandbox\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nlo\n"
    );
    let out = exec(&home, "box", &["sh", "-c", "echo x > /usr/evil"]);
    assert_ne!(out.status.code(), Some(0), "wrote outside the policy");
    let out = exec(
        &home,
        "box",
        &["sh", "-c", "echo kept > /sandbox/f; cat /sandbox/f"],
    );
    assert_eq!(text(&out.stdout), "kept\n");

    // stop and start map to the container's: files in /sandbox stay.
    let out = home.openshell(&["sandbox", "stop", "box"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = home.openshell(&["sandbox", "start", "box"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = exec(&home, "box", &["cat", "/sandbox/f"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "kept\n");

    // A container that dies before its sandbox is ready: Error, with the
    // exit code, and the last output lines among the sandbox's events.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("hard.yaml");
    std::fs::write(
        &policy,
        "version: 1\nlandlock:\n  compatibility: hard_requirement\nfilesystem_policy:\n  read_only: [/usr, /nonexistent-dir]\n",
    )
    .unwrap();
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "broken",
        "--policy",
        policy.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = home.openshell(&["sandbox", "get", "broken", "-o", "json"]);
    let got: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(got["phase"], "Error", "{got}");
    assert_eq!(got["exit_code"], 125, "{got}");
    let out = home.openshell(&["logs", "broken", "--source", "gateway"]);
    let events = text(&out.stdout);
    assert!(
        events.contains("container exited (125) before ready: openshell-sandbox: error: isolation: cannot open /nonexistent-dir"),
        "{events}"
    );

    assert_eq!(containers_of(engine, &instance).len(), 4);
    for name in ["once", "tiny", "box", "broken"] {
        let out = home.openshell(&["sandbox", "delete", name]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    assert_eq!(containers_of(engine, &instance), Vec::<String>::new());
}

on_both_engines!(run_exec_and_delete: docker_runs_commands_exec_stop_start_and_delete, podman_runs_commands_exec_stop_start_and_delete);

fn policy_changes_egress(engine: &str) {
    let home = Home::new();
    start_on(&home, engine);
    let mut network = TestNetwork::new();
    network.serve(UPSTREAM_PORT, ECHO_SERVER);
    let dir = tempfile::tempdir().unwrap();
    let python_only = dir.path().join("v1.yaml");
    std::fs::write(&python_only, allowing(&network, "/usr/bin/python3")).unwrap();
    let curl_too = dir.path().join("v2.yaml");
    std::fs::write(&curl_too, allowing(&network, "/usr/bin/curl")).unwrap();
    create_detached(&home, "live", &["--policy", python_only.to_str().unwrap()]);
    let url = format!("http://{}:{UPSTREAM_PORT}/probe", network.peer);
    let curl = ["curl", "-sS", "-f", "-m", "10", url.as_str()];

    let out = exec(&home, "live", &curl);
    assert_eq!(
        out.status.code(),
        Some(22),
        "curl got through: {}",
        text(&out.stdout)
    );
    let out = set_policy(&home, "live", &curl_too, true);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("✓ Policy version 2 loaded"), "{stderr}");
    let out = exec(&home, "live", &curl);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "GET /probe 0\n");
    // The proxy is the only way out: straight to the upstream fails.
    let out = exec(
        &home,
        "live",
        &["curl", "-sS", "-m", "5", "--noproxy", "*", url.as_str()],
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "reached the upstream around the proxy"
    );

    // A policy set while stopped applies on start (the container keeps its
    // arguments; the revision comes from its runtime material).
    let out = home.openshell(&["sandbox", "stop", "live"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = set_policy(&home, "live", &python_only, false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = home.openshell(&["sandbox", "start", "live"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = exec(&home, "live", &curl);
    assert_eq!(
        out.status.code(),
        Some(22),
        "the revision set while stopped was lost"
    );
    let out = home.openshell(&["sandbox", "get", "live", "-o", "json"]);
    let got: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(got["revision"], 3, "{got}");

    // Likewise for a container created with the default policy: its first
    // revision, set while stopped, is the policy it starts with.
    create_detached(&home, "plain", &[]);
    let out = exec(&home, "plain", &curl);
    assert_eq!(out.status.code(), Some(22), "the default let curl through");
    for step in [
        vec!["sandbox", "stop", "plain"],
        vec![
            "policy",
            "set",
            "plain",
            "--policy",
            curl_too.to_str().unwrap(),
        ],
        vec!["sandbox", "start", "plain"],
    ] {
        let out = home.openshell(&step);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{step:?}: {}",
            text(&out.stderr)
        );
    }
    let out = exec(&home, "plain", &curl);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the first revision, set while stopped, was not enforced: {}",
        text(&out.stderr)
    );
}

on_both_engines!(policy_changes_egress: docker_policy_set_wait_changes_egress, podman_policy_set_wait_changes_egress);

fn escapes_fail(engine: &str) {
    let home = Home::new();
    let (port, _, _) = start_on(&home, engine);
    // A policy that opens /run and names the runtime material outright.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [/usr, /lib, /lib64, /bin, /etc, /run, /run/openshell/gateway]\n  read_write: [/sandbox, /tmp]\n",
    )
    .unwrap();
    create_detached(&home, "jail", &["--policy", policy.to_str().unwrap()]);
    let id = sandbox_id(&home, "jail");

    // The runtime material is in the container, for the supervisor only.
    let container = format!("openshell-{}-{id}", home_gateway(&home));
    let listing = engine_cmd(
        engine,
        &["exec", &container, "ls", "/run/openshell/gateway"],
    );
    assert_eq!(
        listing, "ca.crt\nenv\npolicy-version\npolicy.yaml\ntoken\n",
        "no CA key, ever"
    );
    let out = exec(
        &home,
        "jail",
        &[
            "sh",
            "-c",
            "ls -A /run/openshell/gateway /run/openshell/status 2>&1; cat /run/openshell/gateway/token 2>&1; exit 0",
        ],
    );
    let seen = text(&out.stdout);
    assert!(
        !seen.contains("token\n"),
        "the agent sees the token file: {seen}"
    );
    assert!(seen.contains("No such file or directory"), "{seen}");

    // No capability, no way back to root.
    let out = exec(&home, "jail", &["python3", "-c", "import os; os.setuid(0)"]);
    assert_ne!(out.status.code(), Some(0), "setuid(0) worked");

    // The gateway's API: not directly (no route but loopback), and not
    // through the proxy (the policy names no endpoint).
    let api = format!("https://host.openshell.internal:{port}/healthz");
    let out = exec(
        &home,
        "jail",
        &["curl", "-sk", "-m", "5", "--noproxy", "*", api.as_str()],
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "reached the gateway directly: {}",
        text(&out.stdout)
    );
    let out = exec(&home, "jail", &["curl", "-sk", "-m", "5", api.as_str()]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "reached the gateway through the proxy"
    );
    // Nor with the bridge's address, nor the sandbox's own supervisor session.
    let out = exec(
        &home,
        "jail",
        &[
            "python3",
            "-c",
            "import socket,sys\n\
             addr = socket.gethostbyname('host.openshell.internal')\n\
             s = socket.socket(); s.settimeout(3)\n\
             try:\n    s.connect((addr, int(sys.argv[1]))); print('connected')\n\
             except OSError as e: print('refused', e.errno)\n",
            &port,
        ],
    );
    let said = text(&out.stdout);
    assert!(said.starts_with("refused"), "{said}{}", text(&out.stderr));
}

/// The one gateway a test home started.
fn home_gateway(home: &Home) -> String {
    std::fs::read_dir(home.dir.path().join("state/openshell/gateways"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .unwrap()
}

on_both_engines!(escapes_fail: docker_agent_cannot_reach_the_token_the_gateway_or_root, podman_agent_cannot_reach_the_token_the_gateway_or_root);

fn restart_and_destroy(engine: &str) {
    let home = Home::new();
    let (port, name, instance) = start_on(&home, engine);
    create_detached(&home, "kept", &[]);
    let out = exec(&home, "kept", &["sh", "-c", "echo 1 > /sandbox/n"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        home.openshell(&["gateway", "stop", "--name", &name])
            .status
            .code(),
        Some(0)
    );
    // A container this gateway would have made, whose sandbox it does not
    // know (deleted while it was away): an orphan, removed at start.
    let image = "openshell/sandbox:latest";
    let orphan = format!("openshell-{name}-orphan");
    engine_cmd(
        engine,
        &[
            "run",
            "-d",
            "--name",
            &orphan,
            "--label",
            &format!("openshell.gateway-instance={instance}"),
            "--label",
            "openshell.sandbox-id=0000000000000000",
            image,
            "sleep",
            "300",
        ],
    );
    // As a user would restart it: no --driver, no OPENSHELL_DRIVER.
    let mut restart = home.command(env!("CARGO_BIN_EXE_openshell"));
    restart
        .args(["gateway", "start", "--name", &name, "--port", &port])
        .env_remove("OPENSHELL_DRIVER");
    let out = crate::gateway::run_with_stdin(restart, b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("({engine} driver)")),
        "the driver was not kept"
    );
    let out = exec(&home, "kept", &["cat", "/sandbox/n"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\n");
    // Running: another driver is refused, not silently ignored.
    let out = home.openshell(&[
        "gateway", "start", "--name", &name, "--port", &port, "--driver", "process",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "gateway '{name}' is already running with the {engine} driver"
        )),
        "{}",
        text(&out.stderr)
    );
    let left = containers_of(engine, &instance);
    assert!(
        !left.contains(&orphan),
        "the orphan is still there: {left:?}"
    );
    assert_eq!(left.len(), 1, "{left:?}");

    let networks = |engine: &str| engine_cmd(engine, &["network", "ls", "--format", "{{.Name}}"]);
    let volumes = |engine: &str| engine_cmd(engine, &["volume", "ls", "-q"]);
    let volumes_before = volumes(engine);
    assert!(networks(engine).contains(&format!("openshell-{name}-{instance}")));
    let out = home.openshell(&["gateway", "destroy", "--name", &name]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("Gateway '{name}' destroyed (1 sandbox ended)")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(containers_of(engine, &instance), Vec::<String>::new());
    assert!(
        !networks(engine).contains(&instance),
        "{}",
        networks(engine)
    );
    assert_eq!(volumes(engine), volumes_before);
}

on_both_engines!(restart_and_destroy: docker_gateway_restart_keeps_sandboxes_and_destroy_leaves_nothing, podman_gateway_restart_keeps_sandboxes_and_destroy_leaves_nothing);

fn from_dir_and_accounts(engine: &str) {
    let home = Home::new();
    start_on(&home, engine);
    let dir = tempfile::tempdir().unwrap();
    // An image whose user is not `sandbox` and not root: the agent runs as it.
    let named = dir.path().join("named");
    std::fs::create_dir(&named).unwrap();
    std::fs::write(
        named.join("Dockerfile"),
        "FROM openshell/sandbox:latest\nRUN userdel -r sandbox && useradd -u 4321 -m agent && echo built > /etc/marker\nUSER agent\n",
    )
    .unwrap();
    // An image that runs as root and has no `sandbox` user, nor /sandbox.
    let rooted = dir.path().join("rooted.Dockerfile");
    std::fs::write(
        &rooted,
        "FROM openshell/sandbox:latest\nRUN userdel -r sandbox && rm -rf /sandbox\n",
    )
    .unwrap();

    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "named",
        "--from",
        named.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "id -u; cat /etc/marker; touch /sandbox/w && echo writable",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("✓ Built image openshell/sandbox-from:"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).ends_with("4321\nbuilt\nwritable\n"),
        "{}",
        text(&out.stdout)
    );

    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "rooted",
        "--from",
        rooted.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "id -u; id -g; stat -c %u /sandbox; touch /sandbox/w && echo writable",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with("10000\n10000\n10000\nwritable\n"),
        "{}",
        text(&out.stdout)
    );
}

on_both_engines!(from_dir_and_accounts: docker_builds_from_a_directory_and_runs_as_the_images_user, podman_builds_from_a_directory_and_runs_as_the_images_user);

fn refusals(engine: &str) {
    let home = Home::new();
    let (_, _, instance) = start_on(&home, engine);
    // An image the engine does not have and cannot pull (a registry on a
    // closed loopback port): refused before anything is recorded.
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "nope",
        "--from",
        "127.0.0.1:9/openshell/none:latest",
        "--",
        "true",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the image '127.0.0.1:9/openshell/none:latest' is not in the")
            && stderr.contains("pulling it failed"),
        "{stderr}"
    );
    // An image without glibc (busybox) cannot host the host's supervisor
    // binary: refused with why, nothing left (no sandbox, no container).
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::create_dir(rootfs.path().join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.path().join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.path().join("bin/sh")).unwrap();
    let image = format!("openshell/test-busybox:{}", std::process::id());
    let imported = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c . | {engine} import - {image}",
            rootfs.path().display()
        ))
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let out = home.openshell(&[
        "sandbox", "create", "--name", "bb", "--from", &image, "--", "id",
    ]);
    let stderr = text(&out.stderr);
    let _ = Command::new(engine).args(["rmi", "-f", &image]).output();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the image '{image}' cannot host the sandbox supervisor: it has no glibc"
        )) && stderr.contains(
            "hint: the supervisor is the gateway host's binary and needs glibc 2.34 or newer"
        ),
        "{stderr}"
    );
    assert_eq!(containers_of(engine, &instance), Vec::<String>::new());
    // No GPU support on this host: a clear refusal.
    let out = home.openshell(&["sandbox", "create", "--name", "gpu", "--gpu", "--", "true"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot pass NVIDIA GPUs through"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: install the NVIDIA Container Toolkit"),
        "{stderr}"
    );
    let out = home.openshell(&["sandbox", "list", "--names"]);
    assert_eq!(text(&out.stdout), "", "a refused create left a sandbox");
}

on_both_engines!(refusals: docker_refuses_images_it_cannot_get_and_gpus_it_cannot_pass, podman_refuses_images_it_cannot_get_and_gpus_it_cannot_pass);

#[test]
fn the_bridge_address_serves_supervisors_but_not_the_user_api() {
    // Plaintext, the gateway's weakest mode: containers on the host reach
    // its bridge address, and find nothing there but the supervisors' service.
    engines_ready();
    let home = Home::new();
    let port = free_port().to_string();
    let out = home.openshell(&[
        "gateway",
        "start",
        "--name",
        "plain",
        "--plaintext",
        "--port",
        &port,
        "--driver",
        "docker",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = home.openshell(&[
        "sandbox",
        "create",
        "--name",
        "s",
        "--",
        "echo",
        "connected",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with("connected\n"),
        "{}",
        text(&out.stdout)
    );
    let instance = std::fs::read_to_string(
        home.dir
            .path()
            .join("state/openshell/gateways/plain/instance"),
    )
    .unwrap();
    let bridge = engine_cmd(
        "docker",
        &[
            "network",
            "inspect",
            &format!("openshell-plain-{}", instance.trim()),
            "--format",
            "{{(index .IPAM.Config 0).Gateway}}",
        ],
    );
    let out = home.openshell(&[
        "--gateway-endpoint",
        &format!("http://{}:{port}", bridge.trim()),
        "sandbox",
        "list",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("this address serves sandbox supervisors only"),
        "{}",
        text(&out.stderr)
    );
    let out = home.openshell(&[
        "--gateway-endpoint",
        &format!("http://127.0.0.1:{port}"),
        "sandbox",
        "list",
        "--names",
    ]);
    assert_eq!(text(&out.stdout), "s\n");
}

#[test]
fn a_missing_default_image_is_refused_with_how_to_build_it() {
    engines_ready();
    let home = Home::new();
    let port = free_port().to_string();
    let mut start = home.command(env!("CARGO_BIN_EXE_openshell"));
    start
        .args(["gateway", "start", "--port", &port, "--driver", "docker"])
        .env("OPENSHELL_SANDBOX_IMAGE", "openshell/absent:never");
    let out = crate::gateway::run_with_stdin(start, b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = home.openshell(&["sandbox", "create", "--name", "x", "--", "true"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the default sandbox image 'openshell/absent:never' is not in the docker engine"
        ) && stderr.contains("hint: build it offline with `images/sandbox/build --engine docker`"),
        "{stderr}"
    );
    let out = home.openshell(&["sandbox", "list", "--names"]);
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn the_process_driver_refuses_images_and_gpus_and_builds() {
    let home = Home::new();
    crate::gateway::start(&home);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    for (args, expected) in [
        (
            vec!["--from", "openshell/sandbox:latest"],
            "the process driver runs sandboxes on the gateway's host and cannot use the image",
        ),
        (
            vec!["--gpu", "2"],
            "the process driver cannot pass GPUs through",
        ),
        (
            vec!["--from", dir.path().to_str().unwrap()],
            "--from DIR needs a gateway that runs containers",
        ),
    ] {
        let mut all = vec!["sandbox", "create"];
        all.extend(args);
        all.extend(["--", "true"]);
        let out = home.openshell(&all);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn a_new_gateway_picks_docker_when_its_socket_answers_else_the_process_driver() {
    engines_ready();
    let driver_of = |docker_host: &str| {
        let home = Home::new();
        let port = free_port().to_string();
        let mut command = home.command(env!("CARGO_BIN_EXE_openshell"));
        command
            .args(["gateway", "start", "--port", &port])
            .env_remove("OPENSHELL_DRIVER")
            .env("DOCKER_HOST", docker_host);
        let out = crate::gateway::run_with_stdin(command, b"");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let out = home.openshell(&["gateway", "info", "-o", "json"]);
        let info: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
        let driver = info["compute_drivers"][0]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        let _ = home.openshell(&["gateway", "destroy"]);
        driver
    };
    assert_eq!(driver_of("unix:///var/run/docker.sock"), "docker");
    assert_eq!(driver_of("unix:///nonexistent/docker.sock"), "process");
}
