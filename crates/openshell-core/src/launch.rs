//! The contract between a driver and the supervisor it starts: the
//! arguments of `openshell-sandbox run`, as one type. The supervisor's
//! parser is derived from it (`Run(SupervisorLaunch)`), and the gateway's
//! drivers fill it and call [`SupervisorLaunch::to_args`], so the two
//! sides cannot disagree about a flag's name, its form or which flags go
//! together; a round-trip test holds them to that.

use std::ffi::OsString;
use std::path::PathBuf;

/// `openshell-sandbox run [FLAGS] -- CMD...`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct SupervisorLaunch {
    /// Policy YAML; without it, the built-in default policy (no network egress)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Host directory mounted read-write at /sandbox [default: a fresh
    /// directory under the state dir, removed on exit]
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Set a variable in the child (KEY=VALUE), or copy ours (KEY); repeatable
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Variables for the child from FILE: KEY=VALUE entries, each ended
    /// by a NUL byte (how drivers pass secrets: never on the command line)
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub env_file: Option<PathBuf>,
    /// Write the number of processes killed at the memory limit to FILE
    /// when there were any (for drivers)
    #[arg(long, value_name = "FILE", hide = true)]
    pub oom_file: Option<PathBuf>,
    /// When stdout is a file (appended to), keep it under BYTES: copied to
    /// `<file>.1` and truncated once it grows past (for drivers)
    #[arg(long, value_name = "BYTES", hide = true)]
    pub rotate_output: Option<u64>,
    /// CPU limit: 500m, 2, 1.5 [default: none]
    #[arg(long, value_name = "CPUS", value_parser = crate::resources::parse_cpu)]
    pub cpu: Option<u64>,
    /// Memory limit (swap included): 512Mi, 4Gi, 1G [default: half of the host's]
    #[arg(long, value_name = "SIZE", value_parser = crate::resources::parse_memory)]
    pub memory: Option<u64>,
    /// Most processes at once [default: 4096]
    #[arg(long, value_name = "N", value_parser = crate::resources::parse_pids)]
    pub pids: Option<u64>,
    /// Append one JSON line per egress decision (allow, audit, deny) to FILE
    /// (`-`: stdout, mixed with the command's own output)
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Write `ready` to FILE once the command runs isolated (for drivers)
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub ready_file: Option<PathBuf>,
    /// Write the exit status to FILE at the end, whatever it is (for drivers)
    #[arg(long, value_name = "FILE", hide_short_help = true)]
    pub exit_code_file: Option<PathBuf>,
    /// Connected mode: keep a session with this gateway (policy updates,
    /// event push, exec) — set by the gateway's driver
    #[arg(long, value_name = "URL", hide_short_help = true, requires_all = ["sandbox_id", "token_file"])]
    pub gateway: Option<String>,
    /// The CA certificate (PEM) of an https gateway
    #[arg(
        long,
        value_name = "FILE",
        hide_short_help = true,
        requires = "gateway"
    )]
    pub gateway_ca: Option<PathBuf>,
    /// This sandbox's id at the gateway
    #[arg(long, value_name = "ID", hide_short_help = true, requires = "gateway")]
    pub sandbox_id: Option<String>,
    /// File holding this sandbox's gateway token
    #[arg(
        long,
        value_name = "FILE",
        hide_short_help = true,
        requires = "gateway"
    )]
    pub token_file: Option<PathBuf>,
    /// The gateway's revision number of --policy
    #[arg(
        long,
        value_name = "N",
        hide_short_help = true,
        requires_all = ["gateway", "policy"]
    )]
    pub policy_version: Option<i64>,
    /// A file holding the revision number of --policy, read at start (a
    /// container's arguments are fixed when it is created, its policy may
    /// change while it is stopped). When the file does not exist the
    /// sandbox has no revision and runs the built-in default policy.
    #[arg(
        long,
        value_name = "FILE",
        hide = true,
        requires_all = ["gateway", "policy"],
        conflicts_with = "policy_version"
    )]
    pub policy_version_file: Option<PathBuf>,
    /// The command only keeps the sandbox alive: `connect` opens a
    /// shell instead of attaching to it (connected mode)
    #[arg(long, hide_short_help = true, requires = "gateway")]
    pub idle: bool,
    /// The main process runs on a pseudo-terminal (connected mode), as
    /// `sandbox create --tty` asks; `connect` then passes keys and window
    /// sizes through to it
    #[arg(
        long,
        hide_short_help = true,
        requires = "gateway",
        conflicts_with = "idle"
    )]
    pub tty: bool,
    /// Running as a container's entrypoint (set by the docker driver):
    /// the image's accounts are used as they are (no useradd) and the
    /// --workdir is created when missing
    #[arg(long, hide = true)]
    pub in_container: bool,
    /// --workdir is created when missing and handed to the agent when
    /// root owns it (the process driver's workspace, kept across
    /// stop/start); implied by --in-container
    #[arg(long, hide = true, requires = "workdir")]
    pub create_workdir: bool,
    /// The image's configured user (in a container without a `sandbox`
    /// account, the agent runs as it unless it is root)
    #[arg(
        long,
        value_name = "USER[:GROUP]",
        hide = true,
        requires = "in_container"
    )]
    pub image_user: Option<String>,
    /// The command and its arguments
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl SupervisorLaunch {
    /// The arguments after `openshell-sandbox run`, exactly as the parser
    /// reads them back.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut flag = |name: &str, value: Option<OsString>| {
            if let Some(value) = value {
                args.push(format!("--{name}").into());
                args.push(value);
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.clone().into_os_string());
        let text = |t: &Option<String>| t.as_ref().map(OsString::from);
        let number = |n: Option<u64>| n.map(|n| OsString::from(n.to_string()));
        flag("policy", path(&self.policy));
        flag("workdir", path(&self.workdir));
        for entry in &self.env {
            flag("env", Some(entry.into()));
        }
        flag("env-file", path(&self.env_file));
        flag("oom-file", path(&self.oom_file));
        flag("rotate-output", number(self.rotate_output));
        flag(
            "cpu",
            self.cpu.map(|m| crate::resources::format_cpu(m).into()),
        );
        flag("memory", number(self.memory));
        flag("pids", number(self.pids));
        flag("events", path(&self.events));
        flag("ready-file", path(&self.ready_file));
        flag("exit-code-file", path(&self.exit_code_file));
        flag("gateway", text(&self.gateway));
        flag("gateway-ca", path(&self.gateway_ca));
        flag("sandbox-id", text(&self.sandbox_id));
        flag("token-file", path(&self.token_file));
        flag(
            "policy-version",
            self.policy_version.map(|n| OsString::from(n.to_string())),
        );
        flag("policy-version-file", path(&self.policy_version_file));
        flag("image-user", text(&self.image_user));
        for (set, name) in [
            (self.idle, "--idle"),
            (self.tty, "--tty"),
            (self.in_container, "--in-container"),
            (self.create_workdir, "--create-workdir"),
        ] {
            if set {
                args.push(name.into());
            }
        }
        args.push("--".into());
        args.extend(self.command.iter().map(OsString::from));
        args
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Run {
        #[command(flatten)]
        launch: SupervisorLaunch,
    }

    fn parse(launch: &SupervisorLaunch) -> Result<SupervisorLaunch, clap::Error> {
        let args = std::iter::once(OsString::from("run")).chain(launch.to_args());
        Run::try_parse_from(args).map(|run| run.launch)
    }

    #[test]
    fn what_a_driver_writes_the_supervisor_reads_back() {
        let connected = SupervisorLaunch {
            policy: Some("/state/s1/policy.yaml".into()),
            workdir: Some("/state/s1/workspace".into()),
            env: vec!["A=1".into(), "B=two words".into()],
            env_file: Some("/state/s1/env".into()),
            oom_file: Some("/state/s1/oom_kills".into()),
            rotate_output: Some(64 << 20),
            cpu: Some(1500),
            memory: Some(512 << 20),
            pids: Some(256),
            events: Some("/state/s1/events.jsonl".into()),
            ready_file: Some("/state/s1/ready".into()),
            exit_code_file: Some("/state/s1/exit_code".into()),
            gateway: Some("https://127.0.0.1:8080".into()),
            gateway_ca: Some("/state/ca.crt".into()),
            sandbox_id: Some("s1".into()),
            token_file: Some("/state/s1/token".into()),
            policy_version: Some(3),
            policy_version_file: None,
            idle: true,
            tty: false,
            in_container: false,
            create_workdir: true,
            image_user: None,
            command: vec!["sh".into(), "-c".into(), "echo --not-a-flag".into()],
        };
        assert_eq!(parse(&connected).unwrap(), connected);
        let container = SupervisorLaunch {
            policy: Some("/gateway/policy.yaml".into()),
            workdir: Some("/sandbox".into()),
            gateway: Some("http://host.openshell.internal:8080".into()),
            sandbox_id: Some("s2".into()),
            token_file: Some("/gateway/token".into()),
            policy_version_file: Some("/gateway/policy-version".into()),
            in_container: true,
            tty: true,
            image_user: Some("node:node".into()),
            command: vec!["python3".into()],
            ..SupervisorLaunch::default()
        };
        assert_eq!(parse(&container).unwrap(), container);
    }

    #[test]
    fn flags_that_need_each_other_are_refused_alone() {
        let base = SupervisorLaunch {
            command: vec!["true".into()],
            ..SupervisorLaunch::default()
        };
        // A revision number names a policy from a gateway.
        let version_alone = SupervisorLaunch {
            policy_version: Some(2),
            ..base.clone()
        };
        assert!(parse(&version_alone).is_err());
        // Connected mode needs the sandbox's id and token.
        let gateway_alone = SupervisorLaunch {
            gateway: Some("http://127.0.0.1:1".into()),
            ..base.clone()
        };
        assert!(parse(&gateway_alone).is_err());
        // No command, no sandbox.
        assert!(parse(&SupervisorLaunch::default()).is_err());
        assert_eq!(parse(&base).unwrap(), base);
    }
}
