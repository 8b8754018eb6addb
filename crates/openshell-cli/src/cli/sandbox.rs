//! The grammar of `openshell sandbox …` (docs/cli.md, "Sandboxes").

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Editor, OutputFormat, SandboxProviderCommand};

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox; with `-- CMD`, run CMD in it, stream its output and exit with its code.
    #[command(
        after_help = "Examples:\n  openshell sandbox create -- sh -c 'echo hi; exit 3'   # prints hi, exits 3\n  \
openshell sandbox create --name dev --policy policy.yaml --detach -- python3 -m http.server\n  \
openshell sandbox create --from ./my-image-dir -- python3 app.py   # docker/podman gateways\n\n\
Without CMD and without --detach, on a terminal: opens a login shell in the new sandbox (as `sandbox connect`).\n\
Policy: --policy, else $OPENSHELL_SANDBOX_POLICY, else the built-in default (no network).\n\
With no gateway configured, a local one is started first."
    )]
    Create(CreateArgs),
    /// List the workspace's sandboxes: NAME  CREATED (UTC)  PHASE.
    List {
        /// Only sandboxes with these labels (k=v, comma-separated or repeated).
        #[arg(long)]
        selector: Vec<String>,
        /// One name per line (for scripts).
        #[arg(long, conflicts_with_all = ["ids", "output"])]
        names: bool,
        /// One id per line (for scripts).
        #[arg(long, conflicts_with = "output")]
        ids: bool,
        /// Every workspace you may use (a WORKSPACE column; --names prints WORKSPACE/NAME).
        #[arg(long)]
        all_workspaces: bool,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Show one sandbox and its policy.
    Get {
        /// The sandbox [default: the last one created].
        name: Option<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Stop a sandbox's main process; the sandbox stays (idempotent).
    Stop {
        /// The sandbox [default: the last one created].
        name: Option<String>,
    },
    /// Run a stopped sandbox's main process again and wait for Ready (idempotent).
    Start {
        /// The sandbox [default: the last one created].
        name: Option<String>,
    },
    /// Run a command in a running sandbox, under the same restrictions as its agent.
    #[command(
        after_help = "stdout and stderr stay separate, stdin is forwarded, and the exit status is the command's \
(124 when --timeout killed it).\n\nExamples:\n  openshell sandbox exec -n dev -- ls -la /sandbox\n  \
echo hello | openshell sandbox exec -n dev -- sh -c 'cat > /sandbox/in.txt'\n  \
openshell sandbox exec -n dev --timeout 30 --env DEBUG=1 -- python3 job.py"
    )]
    Exec {
        /// The sandbox [default: the last one created].
        #[arg(short = 'n', long = "name")]
        name: Option<String>,
        /// Working directory inside the sandbox [default: /sandbox].
        #[arg(long, value_name = "DIR")]
        workdir: Option<String>,
        /// Kill the command after this many seconds (exit 124).
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        timeout: u32,
        /// Variable for the command (repeatable).
        #[arg(long = "env", short = 'e', value_name = "K=V")]
        env: Vec<String>,
        /// Run the command on a terminal, interactively (raw mode, live
        /// keys, window size), when stdin is one; otherwise as --no-tty
        #[arg(long, conflicts_with = "no_tty")]
        tty: bool,
        /// Run without a terminal: stdin is read to its end and sent,
        /// stdout and stderr stay apart (the default)
        #[arg(long)]
        no_tty: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Attach to a sandbox's main process, or open a login shell in an idle sandbox (ssh through the gateway).
    ///
    /// With --editor, opens the sandbox in VS Code or Cursor instead.
    #[command(
        after_help = "Attaching first replays the main process's retained output (up to 1 MiB), then follows it \
until it exits; the exit status is the main process's. One attachment at a time owns its input; on a terminal, \
Ctrl-P Ctrl-Q detaches and leaves it running. Without a terminal the streams are plain pipes, so scripts can \
wait for a marker:\n  openshell sandbox connect job | grep -m1 READY\n\nNeeds the OpenSSH client (ssh)."
    )]
    Connect {
        /// The sandbox [default: the last one created].
        name: Option<String>,
        /// Open it in this editor (Remote-SSH) instead of attaching.
        #[arg(long, value_enum)]
        editor: Option<Editor>,
    },
    /// Print an OpenSSH Host block for a sandbox, for ssh, scp, rsync and editors.
    #[command(
        after_help = "Examples:\n  openshell sandbox ssh-config dev >> ~/.ssh/config\n  ssh openshell-dev\n  \
scp data.csv openshell-dev:/sandbox/\n  rsync -a src/ openshell-dev:/sandbox/src/\n  ssh -L 8000:127.0.0.1:8000 -N openshell-dev\n\n\
Each connection asks the gateway for a short-lived session token; nothing in the sandbox listens on a port."
    )]
    SshConfig {
        /// The sandbox [default: the last one created].
        name: Option<String>,
    },
    /// Copy a local file or directory into a sandbox (a tar stream over the gateway).
    #[command(
        after_help = "A directory lands as DEST/<name>/… (merged); a file goes to DEST exactly unless DEST ends with /. \
DEST defaults to the sandbox's home, /sandbox. Inside a git work tree only files git does not ignore are sent. \
Files are written as the sandbox's user, under its policy.\n\nExamples:\n  openshell sandbox upload dev ./src\n  \
openshell sandbox upload dev data.csv /sandbox/in/data.csv"
    )]
    Upload {
        name: String,
        local: PathBuf,
        dest: Option<String>,
        /// Send files .gitignore excludes too.
        #[arg(long)]
        no_git_ignore: bool,
    },
    /// Copy a file or directory out of a sandbox's workspace.
    #[command(
        after_help = "SRC is relative to, or absolute inside, /sandbox; anything resolving outside it is refused. \
A file is placed like cp (into DEST when DEST is a directory or ends with /); a directory's contents are extracted into DEST. \
Nothing is left in place when a transfer fails.\n\nExamples:\n  openshell sandbox download dev out ./out\n  \
openshell sandbox download dev /sandbox/report.txt ."
    )]
    Download {
        name: String,
        src: String,
        #[arg(default_value = ".")]
        dest: PathBuf,
    },
    /// List, attach and detach a sandbox's providers.
    Provider {
        #[command(subcommand)]
        command: SandboxProviderCommand,
    },
    /// Delete sandboxes; a missing one is reported, not an error.
    Delete {
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
        /// Every sandbox of the workspace.
        #[arg(long, conflicts_with = "names")]
        all: bool,
    },
}

/// `sandbox create` flags.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Sandbox name [default: generated]
    #[arg(long)]
    pub name: Option<String>,
    /// Policy YAML file
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Variable for the command (repeatable)
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Label for selection (repeatable)
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Attach a provider (repeatable); a provider type's name that is no
    /// provider yet creates one from local credentials
    #[arg(long = "provider", value_name = "NAME")]
    pub providers: Vec<String>,
    /// Create the provider CMD needs (claude → claude-code, codex, gh →
    /// github, glab → gitlab) from local credentials without asking
    #[arg(long, conflicts_with = "no_auto_providers")]
    pub auto_providers: bool,
    /// Never create or attach a provider CMD needs
    #[arg(long)]
    pub no_auto_providers: bool,
    /// Do not warn about credential-looking --env values
    #[arg(long)]
    pub no_credential_warnings: bool,
    /// The sandbox's image (docker/podman gateways): an image reference,
    /// a directory with a Dockerfile or a Dockerfile (built with the local
    /// engine), or a community name [default: the gateway's image]
    #[arg(long, value_name = "IMAGE|DIR|NAME")]
    pub from: Option<String>,
    /// Pass NVIDIA GPUs through (docker/podman gateways); bare --gpu means 1
    #[arg(
        long,
        value_name = "COUNT",
        num_args = 0..=1,
        default_missing_value = "1",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub gpu: Option<u32>,
    /// CPU limit: 500m, 2, 1.5 [default: none]
    #[arg(long, value_name = "CPUS", value_parser = openshell_core::resources::parse_cpu)]
    pub cpu: Option<u64>,
    /// Memory limit, swap included: 512Mi, 4Gi, 1G [default: half of the host's]
    #[arg(long, value_name = "SIZE", value_parser = openshell_core::resources::parse_memory)]
    pub memory: Option<u64>,
    /// Most processes at once [default: 4096]
    #[arg(long, value_name = "N", value_parser = openshell_core::resources::parse_pids)]
    pub pids: Option<u64>,
    /// Return once Ready; CMD keeps running as the sandbox's main process
    #[arg(long)]
    pub detach: bool,
    /// Delete the sandbox when CMD ends
    #[arg(long, conflicts_with = "detach")]
    pub no_keep: bool,
    /// Run the main process on a pseudo-terminal, and attach to it
    /// interactively [default: when stdin and stdout are terminals]
    #[arg(long, conflicts_with = "no_tty")]
    pub tty: bool,
    /// The main process gets pipes, not a terminal
    #[arg(long)]
    pub no_tty: bool,
    /// Once Ready, open the sandbox in VS Code or Cursor over ssh (writes
    /// ~/.config/openshell/ssh_config and includes it from ~/.ssh/config)
    #[arg(long, value_enum, conflicts_with_all = ["command", "no_keep", "detach", "output"])]
    pub editor: Option<Editor>,
    /// Once Ready, forward PORT (or BIND:PORT) here to PORT in the sandbox, in the
    /// background (as `forward start -d`); the port is checked first
    #[arg(long, value_name = "[BIND:]PORT", conflicts_with_all = ["no_keep", "output"])]
    pub forward: Option<String>,
    /// Upload LOCAL (to DEST, default /sandbox) once Ready, as `sandbox upload` does (repeatable)
    #[arg(
        long = "upload",
        value_name = "LOCAL[:DEST]",
        conflicts_with = "command"
    )]
    pub uploads: Vec<String>,
    /// With --upload: send files .gitignore excludes too
    #[arg(long, requires = "uploads")]
    pub no_git_ignore: bool,
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
    /// The command to run
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}
