//! The command-line grammar (docs/cli.md; every flag in `--help`). Parsing only; no behaviour.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod providers;
mod sandbox;
mod workspaces;

pub use providers::{InferenceCommand, ProviderCommand, SandboxProviderCommand};
pub use sandbox::{CreateArgs, SandboxCommand};
pub use workspaces::{MemberCommand, WorkspaceCommand};

const EXAMPLE_POLICY: &str = "\
Example policy (policy.yaml):

  version: 1
  filesystem_policy:
    read_only:  [/usr, /lib, /etc]
    read_write: [/sandbox, /tmp]
  process:
    run_as_user: sandbox
    run_as_group: sandbox
  network_policies:
    github_api:                  # the key names the rule in logs and denials
      endpoints:
        - host: api.github.com   # exact, IP, *.example.com or **.example.com
          port: 443
          protocol: rest         # inspect each HTTP request
          access: read-only      # GET/HEAD/OPTIONS; or read-write, full, rules
      binaries:
        - path: /usr/bin/curl    # exact path or glob (/usr/bin/*, /**)

Try it:
  openshell policy validate policy.yaml
  openshell policy explain policy.yaml --host api.github.com --port 443 \\
      --binary /usr/bin/curl --method POST --path /repos/o/r/issues";

#[derive(Debug, Parser)]
#[command(
    name = "openshell",
    version,
    about = "OpenShell: a safe, private runtime for autonomous AI agents",
    long_about = "OpenShell runs agents inside sandboxes governed by a declarative YAML policy: \
which files the agent may touch, which binaries may reach which hosts (down to HTTP method \
and path), and which credentials it may use without ever seeing them.",
    after_help = "Start with `openshell policy --help` to write and check a policy."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted anywhere on the command line.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Registered gateway to talk to.
    #[arg(short = 'g', long, global = true, env = "OPENSHELL_GATEWAY")]
    pub gateway: Option<String>,
    /// Talk to this gateway URL directly.
    #[arg(long, global = true, env = "OPENSHELL_GATEWAY_ENDPOINT")]
    pub gateway_endpoint: Option<String>,
    /// Do not verify the gateway's TLS certificate (and send no client
    /// certificate); a warning says so on every use.
    #[arg(
        long,
        global = true,
        env = "OPENSHELL_GATEWAY_INSECURE",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub gateway_insecure: bool,
    /// Workspace scope for resource commands.
    #[arg(
        long,
        global = true,
        default_value = DEFAULT_WORKSPACE,
        env = "OPENSHELL_WORKSPACE"
    )]
    pub workspace: String,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The workspace when none is given.
pub const DEFAULT_WORKSPACE: &str = "default";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start, stop, register and select gateways.
    #[command(visible_alias = "gw")]
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
    /// List, inspect and delete sandboxes.
    #[command(visible_alias = "sb")]
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// Show a sandbox's logs: every egress decision (allow, audit, deny) and its lifecycle events.
    #[command(
        after_help = "Sources: `sandbox` (the supervisor's egress decisions; deny is warn, allow and audit info) and \
`gateway` (created, phases, policy revisions submitted, loaded or failed).\n\n\
Examples:\n  openshell logs dev\n  openshell logs dev -n 20 --tail\n  openshell logs dev --since 5m --level warn\n  \
openshell logs dev --source sandbox -o json | jq .reason"
    )]
    Logs {
        /// The sandbox [default: the last one created].
        name: Option<String>,
        /// Start with the last N lines (0: all).
        #[arg(short = 'n', long = "lines", default_value_t = 100)]
        lines: u32,
        /// Keep following new lines.
        #[arg(long)]
        tail: bool,
        /// Only lines from the last DURATION (30s, 5m, 2h, 1d).
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Only this source (repeatable).
        #[arg(long = "source", value_parser = ["sandbox", "gateway"])]
        sources: Vec<String>,
        /// Only lines at this level or above.
        #[arg(long, value_parser = ["error", "warn", "info", "debug"])]
        level: Option<String>,
        /// `json`: the events as JSON lines.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  openshell completions bash > /etc/bash_completion.d/openshell\n  \
openshell completions zsh > \"${fpath[1]}/_openshell\"\n  \
openshell completions fish > ~/.config/fish/completions/openshell.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Show whether the active gateway answers, and its version.
    #[command(
        after_help = "Exit status: 0 when connected or when no gateway is configured, 1 when unreachable."
    )]
    Status {
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Write, check and explain policies; change a live sandbox's policy.
    #[command(visible_alias = "pol", long_about = None, after_help = EXAMPLE_POLICY)]
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Credential bundles sandboxes use without seeing them; values are never printed.
    #[command(
        visible_alias = "prov",
        after_help = "A sandbox's processes see placeholders; the proxy puts the real value into requests \
to the endpoints the provider is bound to (its type's, or --config endpoints=HOST:PORT[/PATH/**],...).\n\n\
Types: anthropic, claude-code, openai, codex, github, gitlab, nvidia, generic.\n\n\
Examples:\n  openshell provider create --name gh --type github --from-existing\n  \
openshell provider create --name api --type generic --credential API_TOKEN\n  \
openshell sandbox create --provider gh -- gh repo list\n  \
openshell provider update gh --credential GITHUB_TOKEN   # rotation reaches running sandboxes"
    )]
    Provider {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// The model route behind `https://inference.local` (no network rule needed; the key stays outside).
    #[command(
        after_help = "Sandboxes reach the route at https://inference.local (OpenAI: /v1/chat/completions, \
/v1/completions, /v1/responses, /v1/embeddings, /v1/models; Anthropic: /v1/messages); the supervisor sends \
the request to the provider's base URL with the provider's key and the route's model. Changes reach running \
sandboxes at once.\n\nExamples:\n  openshell provider create --name oai --type openai --from-existing\n  \
openshell inference set --provider oai --model gpt-4o-mini\n  \
openshell provider create --name local --type generic --credential KEY=none --config base_url=http://10.0.0.5:8000/v1\n  \
openshell inference set --provider local --model llama-3 --no-verify\n  openshell inference get"
    )]
    Inference {
        #[command(subcommand)]
        command: InferenceCommand,
    },
    /// Runtime settings of a sandbox or of the whole gateway.
    Settings {
        #[command(subcommand)]
        command: SettingsCommand,
    },
    /// Forward local ports to ports inside a sandbox.
    #[command(visible_alias = "fwd")]
    Forward {
        #[command(subcommand)]
        command: ForwardCommand,
    },
    /// Show who the gateway takes you for: subject, role, workspaces.
    Whoami {
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Workspaces scope sandboxes, providers and inference routes; members may use them.
    #[command(
        visible_alias = "ws",
        after_help = "Every resource command acts in --workspace (env OPENSHELL_WORKSPACE, default `default`). \
A gateway admin may use every workspace and creates and deletes them; a user may use only the workspaces \
it is a member of; a member with the role admin manages that workspace's members.\n\n\
Examples:\n  openshell workspace create --name team-a\n  \
openshell workspace member add --workspace team-a --subject alice --role user\n  \
openshell --workspace team-a sandbox create -- echo hi\n  openshell sandbox list --all-workspaces"
    )]
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// A live dashboard of the gateway: sandboxes, egress decisions, policy, events.
    #[command(
        after_help = "Keys: ↑↓ select, Tab switch to the egress panel, c (or Enter) connect, e a shell (sandbox exec --tty), \
s stop/start, d delete (asks), a on a denied decision: propose the policy update that admits it (shown as a diff, \
applied with y), q quit.\n\nExample:\n  openshell term --theme light"
    )]
    Term {
        /// Colours for a dark or a light terminal [auto: from COLORFGBG, else dark].
        #[arg(long, env = "OPENSHELL_THEME", default_value = "auto", value_parser = ["auto", "dark", "light"])]
        theme: String,
    },
    /// Diagnose the host and the local gateway.
    #[command(visible_alias = "dr")]
    Doctor {
        #[command(subcommand)]
        command: DoctorCommand,
    },
    /// Pipe stdin and stdout to a sandbox's SSH server through the gateway (OpenSSH's ProxyCommand).
    #[command(hide = true)]
    SshProxy {
        /// The gateway (as -g).
        #[arg(long, value_name = "NAME")]
        gateway_name: Option<String>,
        /// The sandbox; a new ssh session token is requested for it.
        #[arg(long, required_unless_present = "token")]
        name: Option<String>,
        /// The sandbox's id (informational; the token decides the sandbox).
        #[arg(long, value_name = "ID")]
        sandbox_id: Option<String>,
        /// An ssh session token from the gateway (`sandbox connect` passes
        /// it in the environment, where `ps` does not show it)
        #[arg(
            long,
            env = "OPENSHELL_SSH_TOKEN",
            hide_env_values = true,
            conflicts_with = "name"
        )]
        token: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ForwardCommand {
    /// Listen on PORT here and forward each connection to PORT on the sandbox's loopback.
    #[command(
        after_help = "The connection is made inside the sandbox by its supervisor and relayed through the \
gateway; the sandbox need not be reachable from here. BIND defaults to 127.0.0.1.\n\nExamples:\n  \
openshell forward start 8000 dev          # foreground, Ctrl-C to stop\n  openshell forward start 8000 dev -d       # background\n  \
openshell forward stop 8000 dev"
    )]
    Start {
        /// PORT, or BIND:PORT to listen on another local address.
        spec: String,
        /// The sandbox [default: the last one created].
        name: Option<String>,
        /// Run in the background (recorded for `forward list` / `stop`).
        #[arg(short = 'd', long)]
        detach: bool,
    },
    /// Stop a background forward.
    Stop {
        port: u16,
        /// The sandbox [default: the last one created].
        name: Option<String>,
    },
    /// List background forwards.
    List,
}

#[derive(Debug, Subcommand)]
pub enum DoctorCommand {
    /// Check the host: root, Landlock ABI, seccomp, namespaces, container engine, port.
    #[command(after_help = "Exit status: 0 when every required check passes, 1 otherwise.")]
    Check {
        /// The gateway port to check.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Print the local gateway's log.
    Logs {
        /// Keep following it.
        #[arg(long)]
        tail: bool,
        /// How many of the last lines to start with.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
        /// The gateway [default: the active one].
        #[arg(long)]
        name: Option<String>,
    },
    /// Run a command in the gateway's environment (its host and state directory, for the process driver).
    Exec {
        #[arg(long)]
        name: Option<String>,
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Show a sandbox's settings (with the global ones it inherits) or the global ones.
    #[command(
        after_help = "Examples:\n  openshell settings get dev\n  openshell settings get --global --json"
    )]
    Get {
        /// The sandbox [default: the last one created].
        name: Option<String>,
        #[arg(long, conflicts_with = "name")]
        global: bool,
        /// JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Set a registered key (sandbox or --global).
    #[command(
        after_help = "Keys: providers_v2_enabled, ocsf_json_enabled, agent_policy_proposals_enabled (booleans: true,false,yes,no,1,0), proposal_approval_mode (manual|auto).\n\nExample:\n  openshell settings set dev --key ocsf_json_enabled --value true"
    )]
    Set {
        /// The sandbox [default: the last one created].
        name: Option<String>,
        #[arg(long)]
        key: String,
        #[arg(long)]
        value: String,
        #[arg(long, conflicts_with = "name")]
        global: bool,
        /// Do not ask for confirmation (required for --global when not on a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Remove a key (the sandbox then inherits the global value).
    Delete {
        /// The sandbox [default: the last one created].
        name: Option<String>,
        #[arg(long)]
        key: String,
        #[arg(long, conflicts_with = "name")]
        global: bool,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Start a local gateway in the background, create its PKI, register it and make it active.
    #[command(
        after_help = "Examples:\n  openshell gateway start\n  openshell gateway start --name dev --port 9090\n  \
openshell gateway start --driver docker    # sandboxes are containers (image: openshell/sandbox:latest)\n\n\
State (database, PKI, log, pid) lives in ${XDG_STATE_HOME:-~/.local/state}/openshell/gateways/<name>/.\n\
Idempotent: when the gateway already runs, it is made active again.\n\
The docker and podman drivers talk to the engine's API socket (DOCKER_HOST, else /var/run/docker.sock; \
CONTAINER_HOST, else /run/podman/podman.sock) and run sandboxes from OPENSHELL_SANDBOX_IMAGE \
(default openshell/sandbox:latest; build it offline with images/sandbox/build)."
    )]
    Start {
        /// Gateway name.
        #[arg(long, default_value = "openshell")]
        name: String,
        /// Port for gRPC and HTTP alike.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Where sandboxes run: `process` (supervisors on this host), `docker` or
        /// `podman` (containers) [default: the driver it ran with before; for a
        /// new gateway `docker` when a Docker socket answers, else `process`].
        #[arg(long, env = "OPENSHELL_DRIVER", value_parser = ["process", "docker", "podman"])]
        driver: Option<String>,
        /// Serve plain HTTP/2 (behind a TLS-terminating proxy).
        #[arg(long)]
        plaintext: bool,
        /// Keep TLS but do not require client certificates.
        #[arg(long)]
        disable_gateway_auth: bool,
        /// Wipe the gateway's state first.
        #[arg(long)]
        recreate: bool,
        /// Start it on another host over ssh (USER@HOST): the binaries are
        /// copied there, the gateway listens on that host's loopback, and
        /// an ssh tunnel from here carries mTLS to it (process driver).
        #[arg(long, value_name = "USER@HOST", conflicts_with_all = ["plaintext", "disable_gateway_auth", "recreate"])]
        remote: Option<String>,
        /// The ssh key for --remote [default: ssh's own choice].
        #[arg(long, value_name = "FILE", requires = "remote")]
        ssh_key: Option<PathBuf>,
        /// The ssh port for --remote [default: 22].
        #[arg(long, value_name = "PORT", requires = "remote")]
        ssh_port: Option<u16>,
    },
    /// Stop a gateway started by `gateway start`; its state is kept.
    Stop {
        #[arg(long)]
        name: Option<String>,
    },
    /// Stop a gateway, end its sandboxes, delete its state and registration.
    Destroy {
        #[arg(long)]
        name: Option<String>,
    },
    /// Register an existing gateway and make it active.
    #[command(
        after_help = "http:// registers a plaintext gateway. https:// with --local or --remote, or with a \
client bundle at hand, uses mTLS with the bundle in ~/.config/openshell/gateways/<name>/mtls/ (copied from \
$OPENSHELL_LOCAL_TLS_DIR or from a local gateway of that name when missing). Any other https:// gateway \
(one behind a reverse proxy) uses a bearer token: the browser login of `gateway login` runs at once.\n\n\
Examples:\n  openshell gateway add https://127.0.0.1:8080 --local\n  \
openshell gateway add http://gw.internal:8080 --name team\n  \
OPENSHELL_NO_BROWSER=1 openshell gateway add https://openshell.example.com"
    )]
    Add {
        /// The gateway's URL (https:// assumed without a scheme).
        endpoint: String,
        /// Registration name [default: openshell for loopback, else the host].
        #[arg(long)]
        name: Option<String>,
        /// The gateway runs on this machine.
        #[arg(long, conflicts_with = "remote")]
        local: bool,
        /// The gateway runs elsewhere.
        #[arg(long)]
        remote: bool,
    },
    /// Log in to a bearer gateway (behind a reverse proxy) in the browser; mTLS and plaintext gateways need none.
    #[command(
        after_help = "Opens <gateway>/auth/connect, where you give the user token an admin issued \
(openshell-gateway --issue-token SUBJECT); the page hands it back to this CLI on a loopback port. \
OPENSHELL_NO_BROWSER=1 prints the URL instead of opening a browser. The token is kept in \
~/.config/openshell/gateways/<name>/edge_token (0600)."
    )]
    Login {
        /// The gateway [default: the active one].
        name: Option<String>,
    },
    /// Forget the token of a bearer gateway.
    Logout {
        /// The gateway [default: the active one].
        name: Option<String>,
    },
    /// Show a gateway's endpoint, auth mode, port, status, version and compute drivers.
    Info {
        #[arg(long)]
        name: Option<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// List registered gateways (no network); `*` marks the active one.
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Make a registered gateway the active one.
    Select { name: Option<String> },
    /// Remove a registration (never touches the gateway itself).
    Remove { name: Option<String> },
}

/// `policy update` flags.
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    /// Allow an endpoint (repeatable).
    #[arg(long = "add-endpoint", value_name = "ENDPOINT")]
    pub add_endpoints: Vec<String>,
    /// A program the added endpoints admit (repeatable).
    #[arg(long = "binary", value_name = "PATH")]
    pub binaries: Vec<String>,
    /// Name of the rule for the one --add-endpoint [default: allow_HOST_PORT].
    #[arg(long, value_name = "NAME")]
    pub rule_name: Option<String>,
    /// Add an L7 allow rule host:port:METHOD:path_glob (repeatable).
    #[arg(long = "add-allow", value_name = "RULE")]
    pub add_allow: Vec<String>,
    /// Add an L7 deny rule host:port:METHOD:path_glob (repeatable).
    #[arg(long = "add-deny", value_name = "RULE")]
    pub add_deny: Vec<String>,
    /// Remove every endpoint on host:port (repeatable).
    #[arg(long = "remove-endpoint", value_name = "HOST:PORT")]
    pub remove_endpoints: Vec<String>,
    /// Remove a whole network rule (repeatable).
    #[arg(long = "remove-rule", value_name = "NAME")]
    pub remove_rules: Vec<String>,
    /// Print the resulting policy; change nothing.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    /// Wait until the sandbox has loaded (or rejected) the revision.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,
}

/// An editor `--editor` opens a sandbox in, over ssh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Editor {
    Vscode,
    Cursor,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable lines.
    #[default]
    Table,
    /// One JSON document on stdout, nothing else.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Replace a sandbox's policy; its supervisor reloads it live.
    ///
    /// The network section changes on the fly (new connections are decided by
    /// the new revision, open ones made under the old one are closed); the
    /// filesystem, process and landlock sections are fixed at creation, so a
    /// revision that changes them fails to load and the previous one stays.
    #[command(
        after_help = "Exit status with --wait: 0 loaded (or superseded), 1 failed to load, 124 timeout.\n\n\
Examples:\n  openshell policy set dev --policy policy.yaml --wait\n  openshell policy list dev"
    )]
    Set {
        /// The sandbox [default: the last one created].
        name: Option<String>,
        /// The policy YAML file.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Wait until the sandbox has loaded (or rejected) the revision.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Change a sandbox's network policy incrementally, as one new revision.
    #[command(
        after_help = "ENDPOINT is host:port[:access[:protocol[:enforcement[:options]]]]: access read-only|read-write|full, \
protocol tcp|rest|websocket|sql, enforcement enforce|audit (needs a protocol), options a comma list of \
allow-uninspected-credentials, websocket-credential-rewrite, request-body-credential-rewrite, allowed-ip=CIDR. \
Without --binary a new rule admits any program (/**). Removals apply first, then additions, then L7 rules.\n\n\
The change applies to the revision in force and is stored only if no other revision landed meanwhile \
(it is redone otherwise). Exit status with --wait: as for `policy set`.\n\n\
Examples:\n  openshell policy update dev --add-endpoint api.github.com:443:read-only:rest --binary /usr/bin/gh --wait\n  \
openshell policy update dev --add-deny api.github.com:443:DELETE:/repos/** --dry-run\n  \
openshell policy update dev --remove-endpoint pypi.org:443"
    )]
    Update {
        /// The sandbox [default: the last one created].
        name: Option<String>,
        #[command(flatten)]
        changes: UpdateArgs,
    },
    /// Show the policy revision a sandbox enforces, or revision --rev N.
    Get {
        /// The sandbox [default: the last one created].
        name: Option<String>,
        /// Revision number (0: the effective one).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Append the policy YAML.
        #[arg(long)]
        full: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// List a sandbox's policy revisions: VERSION HASH STATUS CREATED ERROR.
    List {
        /// The sandbox [default: the last one created].
        name: Option<String>,
        /// Newest N revisions (0: all).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Check a policy file offline; every error is shown with its line and column.
    #[command(
        after_help = "Exit status: 0 when valid, 1 when invalid or unreadable.\n\n\
Example:\n  openshell policy validate policy.yaml"
    )]
    Validate {
        /// The policy YAML file.
        file: PathBuf,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show what the policy decides for one connection (and request), offline.
    ///
    /// Uses the same compiled matcher as the sandbox proxy: the L4 decision for
    /// host, port and calling binary, then, with --method/--path, the L7 decision
    /// for that HTTP request.
    #[command(after_help = "Examples:\n  \
openshell policy explain p.yaml --host api.github.com --port 443 --binary /usr/bin/curl\n  \
openshell policy explain p.yaml --host api.github.com --port 443 --binary /usr/bin/git \\\n      \
--ancestor /usr/bin/bash --method GET --path '/repos/o/r/info/refs?service=git-upload-pack'\n  \
openshell policy explain p.yaml --host 10.0.0.5 --port 5432 -o json")]
    Explain {
        /// The policy YAML file.
        file: PathBuf,
        /// Destination host name or IP address.
        #[arg(long)]
        host: String,
        /// Destination port.
        #[arg(long)]
        port: u16,
        /// Executable making the connection; omit to match on endpoints only.
        #[arg(long)]
        binary: Option<String>,
        /// Executable of an ancestor process (repeatable, nearest first).
        #[arg(long = "ancestor", value_name = "PATH")]
        ancestors: Vec<String>,
        /// HTTP method of a request inside the connection.
        #[arg(long)]
        method: Option<String>,
        /// HTTP request target (path and optional query) inside the connection.
        #[arg(long, value_name = "TARGET")]
        path: Option<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}
