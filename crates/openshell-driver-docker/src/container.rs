//! What one sandbox's container is: its runtime material on the host,
//! its definition (entrypoint, arguments, capabilities, seccomp, mounts,
//! network, limits, GPUs), and the seccomp profile.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, DeviceRequest, HostConfig, HostConfigLogConfig,
    ResourcesUlimits,
};

use crate::engine::{Engine, GATEWAY_LABEL, INSTANCE_LABEL, NAME_LABEL, SANDBOX_LABEL};
use crate::{DockerDriver, HOST_ALIAS};
use openshell_core::launch::SupervisorLaunch;

use openshell_driver::{DriverError, PolicyRevision, Sandbox, io, remove_stale, write_private};

/// Where the supervisor binary is mounted.
const SUPERVISOR: &str = "/opt/openshell/bin/openshell-sandbox";
/// Token, CA and policy, read-only.
const GATEWAY_DIR: &str = "/run/openshell/gateway";
/// The supervisor's `ready` marker.
const STATUS_DIR: &str = "/run/openshell/status";
/// The supervisor's own state (TLS trust files, scratch).
const STATE_DIR: &str = "/run/openshell/state";
/// The agent's working directory.
const WORKDIR: &str = "/sandbox";
/// What the supervisor needs: namespaces and mounts (SYS_ADMIN; with
/// SYS_CHROOT to join the sandbox's mount namespace for exec), the
/// sandbox's network (NET_ADMIN), the drop to the agent's user (SETUID,
/// SETGID, SETPCAP for the bounding set), naming the binary behind each
/// connection from `/proc` (SYS_PTRACE, DAC_READ_SEARCH), handing the
/// workdir to the agent (CHOWN) and signalling it (KILL). The agent child
/// keeps none of them.
pub const CAPABILITIES: [&str; 10] = [
    "SYS_ADMIN",
    "SYS_CHROOT",
    "NET_ADMIN",
    "SETUID",
    "SETGID",
    "SETPCAP",
    "SYS_PTRACE",
    "DAC_READ_SEARCH",
    "CHOWN",
    "KILL",
];

impl DockerDriver {
    /// Writes the runtime material the container mounts.
    pub(super) fn write_material(
        &self,
        sandbox: &Sandbox,
        policy: Option<PolicyRevision<'_>>,
    ) -> Result<(), DriverError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir(&sandbox.id);
        let gateway = dir.join("gateway");
        let status = dir.join("status");
        for sub in [&gateway, &status] {
            std::fs::create_dir_all(sub).map_err(io("creating", sub))?;
            std::fs::set_permissions(sub, std::fs::Permissions::from_mode(0o700))
                .map_err(io("securing", sub))?;
        }
        remove_stale(&status.join("ready"))?;
        let connect = &self.inner.options.connect;
        write_private(&gateway.join("token"), &connect.tokens.mint(&sandbox.id))?;
        if let Some(ca) = &connect.ca_cert {
            let target = gateway.join("ca.crt");
            std::fs::copy(ca, &target).map_err(io("copying the CA to", &target))?;
        }
        // The revision in force, or none at all: then the supervisor finds
        // no version file and takes its built-in default.
        match policy {
            Some(PolicyRevision { version, yaml }) => {
                write_private(&gateway.join("policy.yaml"), yaml)?;
                write_private(&gateway.join("policy-version"), &version.to_string())?;
            }
            None => {
                remove_stale(&gateway.join("policy-version"))?;
                remove_stale(&gateway.join("policy.yaml"))?;
            }
        }
        write_private(
            &gateway.join("env"),
            &openshell_driver::env_file(&sandbox.spec.env),
        )?;
        Ok(())
    }

    /// The container's definition.
    pub(super) fn container_body(
        &self,
        sandbox: &Sandbox,
        image: &str,
        image_user: Option<String>,
    ) -> ContainerCreateBody {
        let options = &self.inner.options;
        let connect = &options.connect;
        let scheme = if connect.ca_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let idle = sandbox.spec.command.is_empty();
        let launch = SupervisorLaunch {
            in_container: true,
            workdir: Some(WORKDIR.into()),
            gateway: Some(format!("{scheme}://{HOST_ALIAS}:{}", options.port)),
            sandbox_id: Some(sandbox.id.clone()),
            token_file: Some(format!("{GATEWAY_DIR}/token").into()),
            gateway_ca: connect
                .ca_cert
                .is_some()
                .then(|| format!("{GATEWAY_DIR}/ca.crt").into()),
            // Always named: a revision set while the container is stopped
            // applies on its next start (no version file: the default).
            policy: Some(format!("{GATEWAY_DIR}/policy.yaml").into()),
            policy_version_file: Some(format!("{GATEWAY_DIR}/policy-version").into()),
            ready_file: Some(format!("{STATUS_DIR}/ready").into()),
            oom_file: Some(format!("{STATUS_DIR}/oom_kills").into()),
            image_user: image_user.filter(|u| !u.is_empty()),
            // By file, never the container's arguments (`docker inspect`, `ps`).
            env_file: Some(format!("{GATEWAY_DIR}/env").into()),
            idle,
            tty: sandbox.spec.tty && !idle,
            command: if idle {
                vec!["sleep".into(), "infinity".into()]
            } else {
                sandbox.spec.command.clone()
            },
            ..SupervisorLaunch::default()
        };
        let mut cmd: Vec<String> = vec!["run".into()];
        cmd.extend(
            launch
                .to_args()
                .into_iter()
                .map(|arg| arg.to_string_lossy().into_owned()),
        );
        let dir = self.dir(&sandbox.id);
        let engine = options.engine;
        let ulimits = match engine {
            Engine::Docker => None,
            // Podman raises nofile and nproc far beyond the host's limits by
            // default, which fails where root lacks CAP_SYS_RESOURCE.
            Engine::Podman => Some(podman_ulimits()),
        };
        let gpu = i64::from(sandbox.spec.gpu);
        let (device_requests, devices) = match (gpu, engine) {
            (0, _) => (None, None),
            (n, Engine::Docker) => (
                Some(vec![DeviceRequest {
                    driver: Some("nvidia".into()),
                    count: Some(n),
                    capabilities: Some(vec![vec!["gpu".into()]]),
                    ..Default::default()
                }]),
                None,
            ),
            (_, Engine::Podman) => (
                None,
                Some(vec![DeviceMapping {
                    path_on_host: Some("nvidia.com/gpu=all".into()),
                    path_in_container: Some("nvidia.com/gpu=all".into()),
                    cgroup_permissions: Some("rwm".into()),
                }]),
            ),
        };
        let resources = |given: u64, default: u64| if given > 0 { given } else { default };
        let memory = i64::try_from(resources(
            sandbox.spec.memory_bytes,
            openshell_core::resources::default_memory(),
        ))
        .unwrap_or(i64::MAX);
        let pids = resources(sandbox.spec.pids, openshell_core::resources::DEFAULT_PIDS);
        ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(vec![SUPERVISOR.to_owned()]),
            cmd: Some(cmd),
            user: Some("0:0".into()),
            working_dir: Some(WORKDIR.into()),
            env: Some(vec![format!("XDG_STATE_HOME={STATE_DIR}")]),
            labels: Some(HashMap::from([
                (GATEWAY_LABEL.to_owned(), options.gateway.clone()),
                (INSTANCE_LABEL.to_owned(), options.instance.clone()),
                (SANDBOX_LABEL.to_owned(), sandbox.id.clone()),
                (NAME_LABEL.to_owned(), sandbox.name.clone()),
            ])),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    format!("{}:{SUPERVISOR}:ro", options.supervisor.display()),
                    format!("{}:{GATEWAY_DIR}:ro", dir.join("gateway").display()),
                    format!("{}:{STATUS_DIR}:rw", dir.join("status").display()),
                ]),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
                security_opt: Some(vec![self.inner.seccomp_option.clone()]),
                network_mode: Some(self.inner.network.clone()),
                extra_hosts: Some(vec![format!("{HOST_ALIAS}:{}", self.inner.gateway_ip)]),
                log_config: Some(HostConfigLogConfig {
                    typ: Some(
                        match engine {
                            Engine::Docker => "json-file",
                            Engine::Podman => "k8s-file",
                        }
                        .into(),
                    ),
                    config: None,
                }),
                ulimits,
                device_requests,
                devices,
                // The sandbox's limits are the container's (as on a host:
                // 4096 processes and half of the host's memory unless given).
                nano_cpus: (sandbox.spec.cpu_millis > 0).then(|| {
                    i64::try_from(sandbox.spec.cpu_millis * 1_000_000).unwrap_or(i64::MAX)
                }),
                memory: Some(memory),
                memory_swap: Some(memory),
                pids_limit: Some(i64::try_from(pids).unwrap_or(i64::MAX)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A seccomp profile for the container (the supervisor's layer; the agent
/// child installs its own, stricter one): everything is allowed but
/// kernel-wide or escape-prone calls the supervisor never makes. Docker's
/// default profile cannot be used: it refuses `pivot_root`, which builds
/// the agent's root, and Landlock's calls on older engines.
pub fn seccomp_profile() -> serde_json::Value {
    const REFUSED: [&str; 50] = [
        "acct",
        "add_key",
        "adjtimex",
        "bpf",
        "clock_adjtime",
        "clock_settime",
        "create_module",
        "delete_module",
        "finit_module",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "get_kernel_syms",
        "init_module",
        "ioperm",
        "iopl",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mount_setattr",
        "move_mount",
        "name_to_handle_at",
        "nfsservctl",
        "open_by_handle_at",
        "open_tree",
        "perf_event_open",
        "personality",
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
        "query_module",
        "quotactl",
        "quotactl_fd",
        "reboot",
        "request_key",
        "settimeofday",
        "stime",
        "swapoff",
        "swapon",
        "_sysctl",
        "sysfs",
        "syslog",
        "userfaultfd",
        "uselib",
        "vhangup",
        "vm86",
        "vm86old",
    ];
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": REFUSED.to_vec(), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    })
}

/// This process's own limits for open files and processes (at most 32768
/// processes), so that the engine never has to raise them.
fn podman_ulimits() -> Vec<ResourcesUlimits> {
    use nix::sys::resource::{Resource, getrlimit};
    let limit = |name: &str, resource, cap: u64| {
        let (_, hard) = getrlimit(resource).unwrap_or((1024, 1024));
        let value = i64::try_from(hard.min(cap)).unwrap_or(i64::MAX);
        ResourcesUlimits {
            name: Some(name.to_owned()),
            soft: Some(value),
            hard: Some(value),
        }
    };
    vec![
        limit("nofile", Resource::RLIMIT_NOFILE, 1 << 20),
        limit("nproc", Resource::RLIMIT_NPROC, 32768),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seccomp_profile_refuses_what_the_supervisor_never_needs() {
        let profile = seccomp_profile();
        let refused = profile["syscalls"][0]["names"].as_array().unwrap();
        for name in [
            "kexec_load",
            "init_module",
            "bpf",
            "ptrace",
            "keyctl",
            "open_by_handle_at",
        ] {
            assert!(refused.iter().any(|n| n == name), "{name}");
        }
        for needed in [
            "pivot_root",
            "mount",
            "unshare",
            "setns",
            "landlock_create_ruleset",
        ] {
            assert!(!refused.iter().any(|n| n == needed), "{needed}");
        }
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ALLOW");
    }
}
