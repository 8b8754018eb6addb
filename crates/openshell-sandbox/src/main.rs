//! `openshell-sandbox`: the supervisor binary.
//!
//! Exit codes of `run`: the command's own, 128+signal when it was killed,
//! 125 when the sandbox could not be set up, 126 when the command cannot be
//! executed, 127 when it was not found (docker's conventions).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use openshell_sandbox::isolation::identity;
use openshell_sandbox::session::Connection;
use openshell_sandbox::standalone::{self, LaunchFailed, RunOptions};
use openshell_sandbox::{EXIT_LAUNCH_FAILED, check, exec, init};

const RUN_EXAMPLES: &str = "\
Examples:
  # The default policy: read-only system, read-write /sandbox and /tmp, no network
  sudo openshell-sandbox run -- sh -c 'id; touch /sandbox/ok'

  # Your own policy and workspace, with an audit trail of every egress decision
  sudo openshell-sandbox run --policy p.yaml --workdir . --events egress.jsonl -- python3 app.py

The command runs as the policy's user (default: a dedicated 'sandbox' account,
created on first use), never as root, in new mount, PID, IPC, UTS and network
namespaces, under Landlock and seccomp. Its only network is loopback, where the
supervisor's egress proxy listens on 127.0.0.1:3128 (HTTP_PROXY and friends
point there) and decides every connection by the policy's network section:
denials are HTTP 403 with a JSON body that says why. Edit the policy file (or
send SIGHUP) to reload the network section without restarting.

Exit status: the command's own; 128+N when killed by signal N; 125 when the
sandbox could not be set up; 126 not executable; 127 not found.";

#[derive(Debug, Parser)]
#[command(name = "openshell-sandbox", version = openshell_core::VERSION, about = "The OpenShell supervisor: runs an agent inside an isolated, policy-enforced sandbox")]
struct Cli {
    /// More logs on stderr (-v: what was enforced, -vv: debug). OPENSHELL_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Command {
    /// Run one command in a sandbox and exit with its status
    #[command(after_help = RUN_EXAMPLES)]
    Run {
        /// Policy YAML; without it, the built-in default policy (no network egress)
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Host directory mounted read-write at /sandbox [default: a fresh
        /// directory under the state dir, removed on exit]
        #[arg(long, value_name = "DIR")]
        workdir: Option<PathBuf>,
        /// Set a variable in the child (KEY=VALUE), or copy ours (KEY); repeatable
        #[arg(short, long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Variables for the child from FILE: KEY=VALUE entries, each ended
        /// by a NUL byte (how drivers pass secrets: never on the command line)
        #[arg(long, value_name = "FILE", hide_short_help = true)]
        env_file: Option<PathBuf>,
        /// Write the number of processes killed at the memory limit to FILE
        /// when there were any (for drivers)
        #[arg(long, value_name = "FILE", hide = true)]
        oom_file: Option<PathBuf>,
        /// When stdout is a file (appended to), keep it under BYTES: copied to
        /// `<file>.1` and truncated once it grows past (for drivers)
        #[arg(long, value_name = "BYTES", hide = true)]
        rotate_output: Option<u64>,
        /// CPU limit: 500m, 2, 1.5 [default: none]
        #[arg(long, value_name = "CPUS", value_parser = openshell_core::resources::parse_cpu)]
        cpu: Option<u64>,
        /// Memory limit (swap included): 512Mi, 4Gi, 1G [default: half of the host's]
        #[arg(long, value_name = "SIZE", value_parser = openshell_core::resources::parse_memory)]
        memory: Option<u64>,
        /// Most processes at once [default: 4096]
        #[arg(long, value_name = "N", value_parser = openshell_core::resources::parse_pids)]
        pids: Option<u64>,
        /// Append one JSON line per egress decision (allow, audit, deny) to FILE
        /// (`-`: stdout, mixed with the command's own output)
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// Write `ready` to FILE once the command runs isolated (for drivers)
        #[arg(long, value_name = "FILE", hide_short_help = true)]
        ready_file: Option<PathBuf>,
        /// Write the exit status to FILE at the end, whatever it is (for drivers)
        #[arg(long, value_name = "FILE", hide_short_help = true)]
        exit_code_file: Option<PathBuf>,
        /// Connected mode: keep a session with this gateway (policy updates,
        /// event push, exec) — set by the gateway's driver
        #[arg(long, value_name = "URL", hide_short_help = true, requires_all = ["sandbox_id", "token_file"])]
        gateway: Option<String>,
        /// The CA certificate (PEM) of an https gateway
        #[arg(
            long,
            value_name = "FILE",
            hide_short_help = true,
            requires = "gateway"
        )]
        gateway_ca: Option<PathBuf>,
        /// This sandbox's id at the gateway
        #[arg(long, value_name = "ID", hide_short_help = true, requires = "gateway")]
        sandbox_id: Option<String>,
        /// File holding this sandbox's gateway token
        #[arg(
            long,
            value_name = "FILE",
            hide_short_help = true,
            requires = "gateway"
        )]
        token_file: Option<PathBuf>,
        /// The gateway's revision number of --policy
        #[arg(
            long,
            value_name = "N",
            default_value_t = 0,
            hide_short_help = true,
            requires = "gateway"
        )]
        policy_version: i64,
        /// A file holding --policy-version; 0 there means the built-in
        /// default and --policy is not read (a container's arguments are
        /// fixed at creation, while its policy may change when stopped)
        #[arg(
            long,
            value_name = "FILE",
            hide = true,
            requires = "gateway",
            conflicts_with = "policy_version"
        )]
        policy_version_file: Option<PathBuf>,
        /// The command only keeps the sandbox alive: `connect` opens a
        /// shell instead of attaching to it (connected mode)
        #[arg(long, hide_short_help = true, requires = "gateway")]
        idle: bool,
        /// Running as a container's entrypoint (set by the docker driver):
        /// the image's accounts are used as they are (no useradd) and the
        /// --workdir is created when missing
        #[arg(long, hide = true)]
        in_container: bool,
        /// --workdir is created when missing and handed to the agent when
        /// root owns it (the process driver's workspace, kept across
        /// stop/start); implied by --in-container
        #[arg(long, hide = true, requires = "workdir")]
        create_workdir: bool,
        /// The image's configured user (in a container without a `sandbox`
        /// account, the agent runs as it unless it is root)
        #[arg(
            long,
            value_name = "USER[:GROUP]",
            hide = true,
            requires = "in_container"
        )]
        image_user: Option<String>,
        /// The command and its arguments
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Check what this host offers sandboxes (root, Landlock, seccomp, namespaces)
    #[command(
        after_help = "Prints one JSON array of {name, ok, detail, required}; exit 1 when a required check fails."
    )]
    Check,
    /// Internal: a command run in a live sandbox (started by the session)
    #[command(name = "__exec", hide = true)]
    Exec {
        #[arg(long)]
        target: i32,
        #[arg(long)]
        plan_file: PathBuf,
        #[arg(long)]
        connects_fd: Option<i32>,
    },
    /// Internal: the sandbox's init process (started by `run`)
    #[command(name = "__init", hide = true)]
    Init {
        #[arg(long)]
        plan_fd: i32,
        #[arg(long)]
        report_fd: i32,
        #[arg(long)]
        connects_fd: Option<i32>,
    },
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_env("OPENSHELL_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .without_time()
        .init();
}

/// Connected mode's settings, read from the files the driver wrote.
fn connection(
    gateway: Option<String>,
    ca: Option<PathBuf>,
    sandbox_id: Option<String>,
    token_file: Option<PathBuf>,
) -> anyhow::Result<Option<Connection>> {
    use anyhow::Context;
    let (Some(endpoint), Some(sandbox_id), Some(token_file)) = (gateway, sandbox_id, token_file)
    else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading the token {}", token_file.display()))?
        .trim()
        .to_owned();
    let ca_pem = ca
        .map(|path| {
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading the gateway CA {}", path.display()))
        })
        .transpose()?;
    Ok(Some(Connection {
        endpoint,
        ca_pem,
        sandbox_id,
        token,
    }))
}

/// The policy to start with and its gateway revision. With a version
/// file, the file decides: revision 0 is the built-in default, whatever
/// `--policy` names.
fn revision(
    policy: Option<PathBuf>,
    version: i64,
    version_file: Option<PathBuf>,
) -> anyhow::Result<(Option<PathBuf>, i64)> {
    use anyhow::Context;
    let Some(path) = version_file else {
        return Ok((policy, version));
    };
    let version: i64 = std::fs::read_to_string(&path)
        .with_context(|| format!("reading --policy-version-file {}", path.display()))?
        .trim()
        .parse()
        .with_context(|| format!("--policy-version-file {}", path.display()))?;
    Ok((policy.filter(|_| version > 0), version))
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

/// `--env-file`: NUL-ended `KEY=VALUE` entries.
fn read_env_file(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    let raw = std::fs::read(path).with_context(|| format!("--env-file {}", path.display()))?;
    raw.split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let entry = String::from_utf8(entry.to_vec())
                .with_context(|| format!("--env-file {}: an entry is not UTF-8", path.display()))?;
            anyhow::ensure!(
                entry.split_once('=').is_some_and(|(k, _)| !k.is_empty()),
                "--env-file {}: an entry is not KEY=VALUE",
                path.display()
            );
            Ok(entry)
        })
        .collect()
}

#[allow(clippy::print_stderr, clippy::print_stdout)] // the binary's one place for user-facing output
fn main() -> ExitCode {
    let cli = Cli::parse();
    // The conventional mask for what the supervisor writes (the agent's
    // trust store, its workspace) and for the agent, whatever the starter's
    // (the gateway keeps its own files private with 077).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    init_logging(cli.verbose);
    match cli.command {
        Command::Init {
            plan_fd,
            report_fd,
            connects_fd,
        } => exit(init::run(plan_fd, report_fd, connects_fd)),
        Command::Exec {
            target,
            plan_file,
            connects_fd,
        } => exit(exec::run(target, &plan_file, connects_fd)),
        Command::Check => {
            let checks = check::run();
            match serde_json::to_string_pretty(&checks) {
                Ok(json) => println!("{json}"),
                Err(error) => eprintln!("openshell-sandbox: error: {error}"),
            }
            exit(i32::from(checks.iter().any(|c| c.required && !c.ok)))
        }
        Command::Run {
            policy,
            workdir,
            mut env,
            env_file,
            rotate_output,
            oom_file,
            cpu,
            memory,
            pids,
            events,
            ready_file,
            exit_code_file,
            gateway,
            gateway_ca,
            sandbox_id,
            token_file,
            policy_version,
            policy_version_file,
            idle,
            in_container,
            create_workdir,
            image_user,
            command,
        } => {
            if let Some(path) = &env_file {
                match read_env_file(path) {
                    Ok(entries) => env.extend(entries),
                    Err(error) => {
                        eprintln!("openshell-sandbox: error: {error:#}");
                        return exit(EXIT_LAUNCH_FAILED);
                    }
                }
            }
            if let Some(max) = rotate_output {
                openshell_sandbox::output_log::rotate_stdout(max);
            }
            let connection = match connection(gateway, gateway_ca, sandbox_id, token_file) {
                Ok(connection) => connection,
                Err(error) => {
                    eprintln!("openshell-sandbox: error: {error:#}");
                    return exit(EXIT_LAUNCH_FAILED);
                }
            };
            let (policy, policy_version) =
                match revision(policy, policy_version, policy_version_file) {
                    Ok(revision) => revision,
                    Err(error) => {
                        eprintln!("openshell-sandbox: error: {error:#}");
                        return exit(EXIT_LAUNCH_FAILED);
                    }
                };
            let code = match standalone::run(RunOptions {
                policy,
                workdir,
                env,
                events,
                ready_file,
                gateway: connection,
                policy_version,
                idle,
                create_workdir: create_workdir || in_container,
                limits: (cpu, memory, pids),
                oom_file,
                accounts: if in_container {
                    identity::Accounts::Container { image_user }
                } else {
                    identity::Accounts::Create
                },
                argv: command,
            }) {
                Ok(code) => code,
                Err(error) => {
                    eprintln!("openshell-sandbox: error: {error:#}");
                    error
                        .downcast_ref::<LaunchFailed>()
                        .map_or(EXIT_LAUNCH_FAILED, |f| f.code)
                }
            };
            if let Some(path) = exit_code_file
                && let Err(error) = std::fs::write(&path, format!("{code}\n"))
            {
                eprintln!(
                    "openshell-sandbox: error: writing the exit status to {}: {error}",
                    path.display()
                );
            }
            exit(code)
        }
    }
}
