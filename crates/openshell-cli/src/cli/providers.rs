//! The grammar of `openshell provider …`, `openshell inference …` and
//! `openshell sandbox provider …`: credentials and the model route
//! (docs/providers.md, docs/inference.md).

use clap::{Args, Subcommand};

use super::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Create a provider from local credentials or given ones.
    Create {
        #[arg(long)]
        name: String,
        /// anthropic, claude-code, openai, codex, github, gitlab, nvidia, generic
        #[arg(long = "type", value_name = "TYPE")]
        kind: String,
        #[command(flatten)]
        source: CredentialSource,
        /// Non-secret setting (repeatable); `endpoints=HOST:PORT[/PATH/**],…`
        /// replaces the type's endpoints.
        #[arg(long = "config", value_name = "K=V")]
        config: Vec<String>,
        /// Label (repeatable).
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show a provider: its type and key names, never values.
    Get {
        name: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// List providers: NAME  TYPE  CREDENTIAL_KEYS  CONFIG_KEYS (counts).
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// One name per line (for scripts).
        #[arg(long, conflicts_with = "output")]
        names: bool,
        /// Every workspace you may use (a WORKSPACE column; --names prints WORKSPACE/NAME).
        #[arg(long)]
        all_workspaces: bool,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Change credentials (rotation reaches running sandboxes) or config.
    Update {
        name: String,
        #[command(flatten)]
        source: UpdateSource,
        /// Non-secret setting (repeatable); `K=` removes K.
        #[arg(long = "config", value_name = "K=V")]
        config: Vec<String>,
    },
    /// Delete providers (refused while attached to a sandbox).
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Where `provider create` takes credentials from: exactly one source.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct CredentialSource {
    /// Discover them from this environment (and tool configs such as gh's).
    #[arg(long)]
    pub from_existing: bool,
    /// KEY=VALUE, or KEY to read its value from this environment (repeatable).
    #[arg(long = "credential", value_name = "KEY[=VALUE]")]
    pub credentials: Vec<String>,
}

/// Where `provider update` takes new credentials from, if anywhere.
#[derive(Debug, Clone, Args)]
#[group(required = false, multiple = false)]
pub struct UpdateSource {
    /// Discover them again from this environment.
    #[arg(long)]
    pub from_existing: bool,
    /// KEY=VALUE, or KEY to read its value from this environment (repeatable).
    #[arg(long = "credential", value_name = "KEY[=VALUE]")]
    pub credentials: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum InferenceCommand {
    /// Set the route: a provider (openai, anthropic, nvidia, or generic with base_url) and a model.
    Set {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        model: String,
        /// The sandbox-system route instead of the agents' one.
        #[arg(long)]
        system: bool,
        /// Store it without probing the endpoint.
        #[arg(long)]
        no_verify: bool,
        /// Seconds per request (0: 60).
        #[arg(long, default_value_t = 0)]
        timeout: u32,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Change some of the route's fields.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["provider", "model", "timeout"])))]
    Update {
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        timeout: Option<u32>,
        #[arg(long)]
        system: bool,
        #[arg(long)]
        no_verify: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show the route (both routes unless --system).
    Get {
        #[arg(long)]
        system: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Delete the route: inference.local answers 503 until one is set.
    Delete {
        #[arg(long)]
        system: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SandboxProviderCommand {
    /// The providers attached to a sandbox.
    List {
        /// The sandbox [default: the last one created].
        name: Option<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Attach a provider: new connections can use its credentials at once.
    Attach { name: String, provider: String },
    /// Detach a provider: its placeholders stop resolving.
    Detach { name: String, provider: String },
}
