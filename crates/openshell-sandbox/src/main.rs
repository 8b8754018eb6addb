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

use openshell_core::launch::SupervisorLaunch;
use openshell_sandbox::isolation::identity;
use openshell_sandbox::isolation::{init, join};
use openshell_sandbox::run::{self, LaunchFailed, RunOptions};
use openshell_sandbox::session::Connection;
use openshell_sandbox::{EXIT_LAUNCH_FAILED, check};

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
    Run(SupervisorLaunch),
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
/// file, the file decides: when it exists it holds the revision of
/// `--policy`; when it does not, the sandbox has no revision yet and runs
/// the built-in default.
fn revision(
    policy: Option<PathBuf>,
    version: Option<i64>,
    version_file: Option<PathBuf>,
) -> anyhow::Result<(Option<PathBuf>, i64)> {
    use anyhow::Context;
    let Some(path) = version_file else {
        return Ok((policy, version.unwrap_or(0)));
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((None, 0)),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("reading --policy-version-file {}", path.display()));
        }
    };
    let version: i64 = text
        .trim()
        .parse()
        .with_context(|| format!("--policy-version-file {}", path.display()))?;
    Ok((policy, version))
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

/// No core dumps, not dumpable (docs/providers.md, "At rest").
fn private_memory() -> anyhow::Result<()> {
    use anyhow::Context;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .context("setting RLIMIT_CORE to 0")?;
    nix::sys::prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE, 0)")?;
    Ok(())
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
        } => exit(join::run(target, &plan_file, connects_fd)),
        Command::Check => {
            let checks = check::run();
            match serde_json::to_string_pretty(&checks) {
                Ok(json) => println!("{json}"),
                Err(error) => eprintln!("openshell-sandbox: error: {error}"),
            }
            exit(i32::from(checks.iter().any(|c| c.required && !c.ok)))
        }
        Command::Run(SupervisorLaunch {
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
            tty,
            in_container,
            create_workdir,
            image_user,
            command,
        }) => {
            // The supervisor holds its sandbox token and, connected, its
            // providers' secrets: no core dump may carry them, and no
            // process of the same uid may read its memory.
            if let Err(error) = private_memory() {
                eprintln!("openshell-sandbox: error: {error:#}");
                return exit(EXIT_LAUNCH_FAILED);
            }
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
            let code = match run::run(RunOptions {
                policy,
                workdir,
                env,
                events,
                ready_file,
                gateway: connection,
                policy_version,
                idle,
                tty,
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
