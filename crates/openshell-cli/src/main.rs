//! `openshell`: the command line users and scripts touch first.
//!
//! Exit codes (docs/cli.md, "Exit codes and output"): 0 success, 1 error or negative outcome (with a
//! readable diagnostic on stderr), 2 usage error (clap).

mod cli;
mod client;
mod commands;
mod output;
mod pid;
mod registry;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{
    Cli, Command, DoctorCommand, ForwardCommand, GatewayCommand, InferenceCommand, MemberCommand,
    OutputFormat, PolicyCommand, ProviderCommand, SandboxCommand, SandboxProviderCommand,
    SettingsCommand, WorkspaceCommand,
};
use crate::commands::remote::Verb;
use crate::commands::scope::Scope;
use crate::commands::{
    Exit, doctor, editor, exec, files, forward, gateway, inference, login, policy, provider,
    registration, revisions, sandbox, settings, ssh, workspace,
};

/// The gateway the global flags, environment and registry name, if any.
fn target(global: &cli::GlobalArgs) -> anyhow::Result<Option<registry::Target>> {
    let registry = registry::Registry::for_user()?;
    let mut target = registry.resolve(
        global.gateway.as_deref(),
        global.gateway_endpoint.as_deref(),
    )?;
    if let Some(target) = &mut target {
        target.insecure = global.gateway_insecure;
        // A remote gateway's tunnel is reopened when it has gone.
        if let Ok(Some(remote)) = commands::remote::load(&registry, &target.name)
            && let Err(error) = commands::remote::ensure_tunnel(&registry, &target.name, &remote)
        {
            output::warning(&format!("{error:#}"));
        }
    }
    Ok(target)
}

/// The gateway a `gateway` subcommand names: NAME, else the resolved one.
fn gateway_name(global: &cli::GlobalArgs, name: Option<String>) -> anyhow::Result<String> {
    match name {
        Some(name) => Ok(name),
        None => Ok(target(global)?
            .context(
                "No active gateway.\nSet one with: openshell gateway select <name>\nOr register one with: openshell gateway add <endpoint>",
            )?
            .name),
    }
}

/// Where a command that needs an existing gateway goes (no bootstrap).
fn scope(global: &cli::GlobalArgs) -> anyhow::Result<Scope> {
    Ok(Scope {
        target: target(global)?,
        workspace: global.workspace.clone(),
    })
}

fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Gateway { command } => match command {
            GatewayCommand::Start {
                name,
                port,
                remote: Some(host),
                ssh_key,
                ssh_port,
                ..
            } => commands::remote::start(&commands::remote::StartRemote {
                name,
                host,
                ssh_key,
                ssh_port,
                port,
            }),
            GatewayCommand::Start {
                name,
                port,
                driver,
                plaintext,
                disable_gateway_auth,
                recreate,
                ..
            } => gateway::start(&gateway::StartOptions {
                name,
                port,
                driver,
                plaintext,
                disable_gateway_auth,
                recreate,
            }),
            GatewayCommand::Stop { name } => {
                match commands::remote::act(Verb::Stop, &gateway::local_name(name.as_deref())?)? {
                    Some(exit) => Ok(exit),
                    None => gateway::stop(name.as_deref()),
                }
            }
            GatewayCommand::Destroy { name } => {
                match commands::remote::act(Verb::Destroy, &gateway::local_name(name.as_deref())?)?
                {
                    Some(exit) => Ok(exit),
                    None => gateway::destroy(name.as_deref()),
                }
            }
            GatewayCommand::Login { name } => login::login(
                &gateway_name(&cli.global, name)?,
                cli.global.gateway_insecure,
            ),
            GatewayCommand::Logout { name } => login::logout(&gateway_name(&cli.global, name)?),
            GatewayCommand::Add {
                endpoint,
                name,
                local,
                remote,
            } => registration::add(&registration::AddOptions {
                endpoint,
                name,
                local,
                remote,
                insecure: cli.global.gateway_insecure,
            }),
            GatewayCommand::Info { name, output } => {
                let registry = registry::Registry::for_user()?;
                let resolved = match name {
                    Some(name) => registry.resolve(Some(&name), None)?.map(|mut t| {
                        t.insecure = cli.global.gateway_insecure;
                        t
                    }),
                    None => target(&cli.global)?,
                };
                gateway::info(resolved, output)
            }
            GatewayCommand::List { output } => registration::list(output),
            GatewayCommand::Select { name } => registration::select(name.as_deref()),
            GatewayCommand::Remove { name } => {
                if let Some(name) = name
                    .as_deref()
                    .or(registry::Registry::for_user()?.active().as_deref())
                {
                    commands::remote::act(Verb::Remove, name)?;
                }
                registration::remove(name.as_deref())
            }
        },
        Command::Sandbox { command } => {
            let explicit = cli.global.gateway.is_some() || cli.global.gateway_endpoint.is_some();
            let mut resolved = target(&cli.global)?;
            if resolved.is_none() && !explicit {
                // Auto-bootstrap (docs/cli.md, "Which gateway"): a local gateway with the default driver.
                output::warning("No gateway found — starting one automatically.");
                gateway::start(&gateway::StartOptions {
                    name: "openshell".to_owned(),
                    port: 8080,
                    driver: std::env::var("OPENSHELL_DRIVER").ok(),
                    plaintext: false,
                    disable_gateway_auth: false,
                    recreate: false,
                })?;
                resolved = registry::Registry::for_user()?.resolve(None, None)?;
            }
            let scope = Scope {
                target: resolved,
                workspace: cli.global.workspace.clone(),
            };
            match command {
                SandboxCommand::List {
                    selector,
                    names,
                    ids,
                    all_workspaces,
                    output,
                } => {
                    let style = match (names, ids, output) {
                        (true, _, _) => sandbox::ListStyle::Names,
                        (_, true, _) => sandbox::ListStyle::Ids,
                        (_, _, Some(OutputFormat::Json)) => sandbox::ListStyle::Json,
                        _ => sandbox::ListStyle::Table,
                    };
                    sandbox::list(&scope, &selector, all_workspaces, style)
                }
                SandboxCommand::Get { name, output } => {
                    sandbox::get(&scope, &scope.sandbox(name)?, output)
                }
                SandboxCommand::Stop { name } => sandbox::stop(&scope, &scope.sandbox(name)?),
                SandboxCommand::Start { name } => sandbox::start(&scope, &scope.sandbox(name)?),
                SandboxCommand::Create(args) => sandbox::create(&scope, &args),
                SandboxCommand::Delete { names, all } => sandbox::delete(&scope, &names, all),
                SandboxCommand::Provider { command } => match command {
                    SandboxProviderCommand::List { name, output } => provider::sandbox_list(
                        &scope,
                        &scope.sandbox(name)?,
                        matches!(output, OutputFormat::Json),
                    ),
                    SandboxProviderCommand::Attach { name, provider: p } => {
                        provider::sandbox_set(&scope, &name, &p, true)
                    }
                    SandboxProviderCommand::Detach { name, provider: p } => {
                        provider::sandbox_set(&scope, &name, &p, false)
                    }
                },
                SandboxCommand::Upload {
                    name,
                    local,
                    dest,
                    no_git_ignore,
                } => files::upload(&scope, &name, &local, dest.as_deref(), !no_git_ignore),
                SandboxCommand::Connect { name, editor } => {
                    let name = scope.sandbox(name)?;
                    match editor {
                        Some(editor) => editor::open(&scope, &name, editor),
                        None => ssh::connect(&scope, &name),
                    }
                }
                SandboxCommand::SshConfig { name } => {
                    ssh::ssh_config(&scope, &scope.sandbox(name)?)
                }
                SandboxCommand::Download { name, src, dest } => {
                    files::download(&scope, &name, &src, &dest)
                }
                SandboxCommand::Exec {
                    name,
                    workdir,
                    timeout,
                    env,
                    tty: true,
                    command,
                    ..
                } if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                    let mut env: Vec<(String, String)> =
                        commands::pairs("--env", &env)?.into_iter().collect();
                    env.sort();
                    ssh::exec_tty(
                        &scope,
                        &scope.sandbox(name)?,
                        &ssh::TtyExec {
                            argv: &command,
                            env: &env,
                            workdir: workdir.as_deref(),
                            timeout,
                        },
                    )
                }
                SandboxCommand::Exec {
                    name,
                    workdir,
                    timeout,
                    env,
                    command,
                    ..
                } => exec::exec(
                    &scope,
                    exec::ExecOptions {
                        name: scope.sandbox(name)?,
                        command,
                        env: commands::pairs("--env", &env)?,
                        workdir,
                        timeout_seconds: timeout,
                    },
                ),
            }
        }
        Command::Logs {
            name,
            lines,
            tail,
            since,
            sources,
            level,
            output,
        } => {
            let scope = scope(&cli.global)?;
            let options = sandbox::LogsOptions {
                name: scope.sandbox(name)?,
                lines,
                follow: tail,
                since: since.as_deref().map(sandbox::parse_duration).transpose()?,
                sources,
                level,
            };
            sandbox::logs(&scope, &options, output)
        }
        Command::Provider { command } => {
            let scope = scope(&cli.global)?;
            match command {
                ProviderCommand::Create {
                    name,
                    kind,
                    source,
                    config,
                    labels,
                    output,
                } => provider::create(
                    &scope,
                    &name,
                    &kind,
                    &provider::Definition {
                        source: provider::Source {
                            from_existing: source.from_existing,
                            credentials: source.credentials,
                        },
                        config,
                        labels,
                    },
                    matches!(output, OutputFormat::Json),
                ),
                ProviderCommand::Get { name, output } => {
                    provider::get(&scope, &name, matches!(output, OutputFormat::Json))
                }
                ProviderCommand::List {
                    limit,
                    offset,
                    names,
                    all_workspaces,
                    output,
                } => {
                    let style = match (names, output) {
                        (true, _) => provider::ListStyle::Names,
                        (_, Some(OutputFormat::Json)) => provider::ListStyle::Json,
                        _ => provider::ListStyle::Table,
                    };
                    provider::list(&scope, limit, offset, all_workspaces, style)
                }
                ProviderCommand::Update {
                    name,
                    source,
                    config,
                } => provider::update(
                    &scope,
                    &name,
                    &provider::Definition {
                        source: provider::Source {
                            from_existing: source.from_existing,
                            credentials: source.credentials,
                        },
                        config,
                        labels: Vec::new(),
                    },
                ),
                ProviderCommand::Delete { names } => provider::delete(&scope, &names),
            }
        }
        Command::Inference { command } => {
            use openshell_proto::v1 as pb;
            let scope = scope(&cli.global)?;
            let json_output = |output: OutputFormat| matches!(output, OutputFormat::Json);
            match command {
                InferenceCommand::Set {
                    provider,
                    model,
                    system,
                    no_verify,
                    timeout,
                    output,
                } => inference::write(
                    &scope,
                    inference::Change::Set(pb::SetInferenceRouteRequest {
                        route: inference::route_name(system),
                        provider,
                        model,
                        timeout_seconds: timeout,
                        no_verify,
                    }),
                    json_output(output),
                ),
                InferenceCommand::Update {
                    provider,
                    model,
                    timeout,
                    system,
                    no_verify,
                    output,
                } => inference::write(
                    &scope,
                    inference::Change::Update(pb::UpdateInferenceRouteRequest {
                        route: inference::route_name(system),
                        provider,
                        model,
                        timeout_seconds: timeout,
                        no_verify,
                    }),
                    json_output(output),
                ),
                InferenceCommand::Get { system, output } => {
                    let routes = if system {
                        vec![inference::route_name(true)]
                    } else {
                        vec![inference::route_name(false), inference::route_name(true)]
                    };
                    inference::get(&scope, &routes, json_output(output))
                }
                InferenceCommand::Delete { system } => {
                    inference::delete(&scope, &inference::route_name(system))
                }
            }
        }
        Command::Settings { command } => {
            let scope = scope(&cli.global)?;
            let which = |name: Option<String>, global: bool| -> anyhow::Result<settings::Target> {
                Ok(if global {
                    settings::Target::Global
                } else {
                    settings::Target::Sandbox(scope.sandbox(name)?)
                })
            };
            // A global change affects every sandbox: asked on a terminal,
            // refused without --yes otherwise (as the reference CLI does).
            let confirmed = |global: bool, yes: bool| {
                if !global || yes {
                    return Ok(());
                }
                use std::io::IsTerminal;
                if !std::io::stdin().is_terminal() {
                    anyhow::bail!(
                        "global setting updates require confirmation; pass --yes in non-interactive mode"
                    );
                }
                let answer = output::ask(
                    "This changes the setting for every sandbox of the gateway. Continue? [y/N]",
                )?;
                if !matches!(answer.as_str(), "y" | "Y" | "yes") {
                    anyhow::bail!("cancelled");
                }
                Ok(())
            };
            match command {
                SettingsCommand::Get { name, global, json } => {
                    settings::get(&scope, &which(name, global)?, json)
                }
                SettingsCommand::Set {
                    name,
                    key,
                    value,
                    global,
                    yes,
                } => {
                    confirmed(global, yes)?;
                    settings::change(&scope, &which(name, global)?, &key, Some(&value))
                }
                SettingsCommand::Delete {
                    name,
                    key,
                    global,
                    yes,
                } => {
                    confirmed(global, yes)?;
                    settings::change(&scope, &which(name, global)?, &key, None)
                }
            }
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "openshell", &mut script);
            output::raw(&script)?;
            Ok(Exit::Success)
        }
        Command::Status { output } => gateway::status(target(&cli.global)?, output),
        Command::Term { theme } => commands::term::run(&scope(&cli.global)?, &theme),
        Command::Whoami { output } => workspace::whoami(&scope(&cli.global)?, output),
        Command::Workspace { command } => {
            let scope = scope(&cli.global)?;
            match command {
                WorkspaceCommand::Create {
                    name,
                    labels,
                    output,
                } => workspace::create(&scope, &name, &labels, output),
                WorkspaceCommand::Get { name, output } => workspace::get(&scope, &name, output),
                WorkspaceCommand::List { output } => workspace::list(&scope, output),
                WorkspaceCommand::Delete { names } => workspace::delete(&scope, &names),
                WorkspaceCommand::Member { command } => match command {
                    MemberCommand::Add { subject, role } => {
                        workspace::member_set(&scope, &subject, Some(&role))
                    }
                    MemberCommand::Remove { subject } => {
                        workspace::member_set(&scope, &subject, None)
                    }
                    MemberCommand::List { output } => workspace::member_list(&scope, output),
                },
            }
        }
        Command::Forward { command } => {
            let scope = scope(&cli.global)?;
            match command {
                ForwardCommand::Start { spec, name, detach } => {
                    forward::start(&scope, &spec, &scope.sandbox(name)?, detach)
                }
                ForwardCommand::Stop { port, name } => forward::stop(port, &scope.sandbox(name)?),
                ForwardCommand::List => forward::list(),
            }
        }
        Command::SshProxy {
            gateway_name,
            name,
            sandbox_id: _,
            token,
        } => {
            let mut global = cli.global.clone();
            if gateway_name.is_some() {
                global.gateway = gateway_name;
            }
            ssh::proxy(&scope(&global)?, name.as_deref(), token.as_deref())
        }
        Command::Doctor { command } => {
            // The local gateway: --name, else -g, else the active one.
            let local = |name: Option<String>| {
                gateway::local_name(name.or_else(|| cli.global.gateway.clone()).as_deref())
            };
            match command {
                DoctorCommand::Check { port } => doctor::check(port),
                DoctorCommand::Logs { tail, lines, name } => {
                    doctor::logs(&local(name)?, lines, tail)
                }
                DoctorCommand::Exec { name, command } => doctor::exec(&local(name)?, &command),
            }
        }
        Command::Policy { command } => match command {
            PolicyCommand::Set {
                name,
                policy,
                wait,
                timeout,
            } => {
                let scope = scope(&cli.global)?;
                revisions::set(
                    &scope,
                    &scope.sandbox(name)?,
                    &policy,
                    wait,
                    std::time::Duration::from_secs(timeout),
                )
            }
            PolicyCommand::Update { name, changes } => {
                let scope = scope(&cli.global)?;
                revisions::update(&scope, &scope.sandbox(name)?, &changes)
            }
            PolicyCommand::Get {
                name,
                rev,
                full,
                output,
            } => {
                let scope = scope(&cli.global)?;
                revisions::get(&scope, &scope.sandbox(name)?, rev, full, output)
            }
            PolicyCommand::List {
                name,
                limit,
                output,
            } => {
                let scope = scope(&cli.global)?;
                revisions::list(&scope, &scope.sandbox(name)?, limit, output)
            }
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
