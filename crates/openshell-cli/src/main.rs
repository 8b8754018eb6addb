//! `openshell`: the command line users and scripts touch first.
//!
//! Exit codes (spec/cli.md): 0 success, 1 error or negative outcome (with a
//! readable diagnostic on stderr), 2 usage error (clap).

mod cli;
mod client;
mod commands;
mod output;
mod registry;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, GatewayCommand, OutputFormat, PolicyCommand, SandboxCommand};
use crate::commands::{Exit, gateway, policy, sandbox};

/// The gateway the global flags, environment and registry name, if any.
fn target(global: &cli::GlobalArgs) -> anyhow::Result<Option<registry::Target>> {
    registry::Registry::for_user()?.resolve(
        global.gateway.as_deref(),
        global.gateway_endpoint.as_deref(),
    )
}

fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Gateway { command } => match command {
            GatewayCommand::Start {
                name,
                port,
                driver: _,
                plaintext,
                disable_gateway_auth,
                recreate,
            } => gateway::start(&gateway::StartOptions {
                name,
                port,
                plaintext,
                disable_gateway_auth,
                recreate,
            }),
            GatewayCommand::Stop { name } => gateway::stop(name.as_deref()),
            GatewayCommand::List { output } => gateway::list(output),
            GatewayCommand::Select { name } => gateway::select(name.as_deref()),
            GatewayCommand::Remove { name } => gateway::remove(name.as_deref()),
        },
        Command::Sandbox { command } => {
            let explicit = cli.global.gateway.is_some() || cli.global.gateway_endpoint.is_some();
            let mut resolved = target(&cli.global)?;
            if resolved.is_none() && !explicit {
                // Auto-bootstrap (cli.md): a local gateway with the process driver.
                output::warning("No gateway found — starting one automatically.");
                gateway::start(&gateway::StartOptions {
                    name: "openshell".to_owned(),
                    port: 8080,
                    plaintext: false,
                    disable_gateway_auth: false,
                    recreate: false,
                })?;
                resolved = registry::Registry::for_user()?.resolve(None, None)?;
            }
            let scope = sandbox::Scope {
                target: resolved,
                workspace: cli.global.workspace.clone(),
            };
            match command {
                SandboxCommand::List {
                    selector,
                    names,
                    ids,
                    output,
                } => {
                    let style = match (names, ids, output) {
                        (true, _, _) => sandbox::ListStyle::Names,
                        (_, true, _) => sandbox::ListStyle::Ids,
                        (_, _, Some(OutputFormat::Json)) => sandbox::ListStyle::Json,
                        _ => sandbox::ListStyle::Table,
                    };
                    sandbox::list(&scope, &selector, style)
                }
                SandboxCommand::Get { name, output } => sandbox::get(&scope, &name, output),
                SandboxCommand::Stop { name } => sandbox::stop(&scope, &name),
                SandboxCommand::Start { name } => sandbox::start(&scope, &name),
                SandboxCommand::Create(args) => sandbox::create(&scope, &args),
                SandboxCommand::Delete { names, all } => sandbox::delete(&scope, &names, all),
            }
        }
        Command::Logs {
            name,
            lines,
            tail,
            output,
        } => {
            let scope = sandbox::Scope {
                target: target(&cli.global)?,
                workspace: cli.global.workspace.clone(),
            };
            sandbox::logs(&scope, &name, lines, tail, output)
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "openshell", &mut std::io::stdout());
            Ok(Exit::Success)
        }
        Command::Status { output } => gateway::status(target(&cli.global)?, output),
        Command::Policy { command } => match command {
            PolicyCommand::Validate { file, output } => policy::validate(&file, output),
            PolicyCommand::Explain {
                file,
                host,
                port,
                binary,
                ancestors,
                method,
                path,
                output,
            } => policy::explain(
                &file,
                &policy::ExplainQuery {
                    host: &host,
                    port,
                    binary: binary.as_deref(),
                    ancestors: &ancestors,
                    method: method.as_deref(),
                    target: path.as_deref(),
                },
                output,
            ),
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::Failure) => ExitCode::from(1),
        Ok(Exit::Code(code)) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
            output::failure(&error.to_string());
            for cause in causes {
                output::hint(&cause);
            }
            ExitCode::from(1)
        }
    }
}
