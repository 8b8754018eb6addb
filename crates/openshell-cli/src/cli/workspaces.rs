//! The grammar of `openshell workspace …` (docs/cli.md, "Workspaces and
//! who may use them").

use clap::Subcommand;

use super::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace (a gateway admin only).
    Create {
        /// A DNS label of at most 19 characters.
        #[arg(long)]
        name: String,
        /// Label (repeatable).
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show a workspace.
    Get {
        name: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// List the workspaces you may use: NAME  STATUS  CREATED  LABELS.
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Delete empty workspaces (a gateway admin only).
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Who may use a workspace (the global --workspace names it).
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a member, or change its role.
    Add {
        /// The member's subject: a client certificate's CN or a user token's subject.
        #[arg(long)]
        subject: String,
        #[arg(long, default_value = "user", value_parser = ["user", "admin"])]
        role: String,
    },
    /// Remove a member.
    Remove {
        #[arg(long)]
        subject: String,
    },
    /// List the members: SUBJECT  ROLE.
    List {
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}
