//! `openshell term`: a live terminal dashboard of the active gateway
//! (docs/cli.md, "term"). Sandboxes with their phase and age; the selected
//! one's egress decisions as they happen, its policy revision and its
//! lifecycle events; keys to connect or open a shell (the terminal is
//! handed to `openshell sandbox connect|exec` meanwhile), stop/start,
//! delete, and to turn a denied decision into a `policy update`, shown as
//! a diff and applied on confirmation.
//!
//! The gateway is read by background tasks ([`feed`]) that send
//! [`app::Update`]s; the loop draws, reads keys and carries out the
//! [`app::Action`]s [`app::App`] answers them with.

mod app;
mod view;

use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{self, Event, KeyEventKind};
use tokio::sync::watch;

use openshell_proto::v1 as pb;

use crate::commands::Exit;
use crate::commands::revisions::{Proposal, propose, submit_proposal};
use crate::commands::scope::{Scope, status};

use app::{Action, App, Update};

/// How often the sandbox list and the policy status are read again.
const REFRESH: Duration = Duration::from_secs(1);

pub fn run(scope: &Scope, theme: &str) -> anyhow::Result<Exit> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "openshell term needs a terminal\nhint: for scripts, use openshell sandbox list -o json and openshell logs NAME --tail"
        );
    }
    let target = scope.target()?.clone();
    let colours = view::palette(theme);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Fail before taking the terminal when the gateway does not answer.
    let mut client = runtime.block_on(crate::client::connect(&target))?;
    let (updates, inbox) = mpsc::channel();
    let (selection, selected) = watch::channel(None::<String>);
    runtime.spawn(feed(client.clone(), scope.clone(), updates, selected));

    let mut app = App::new(&target.name, &scope.workspace);
    let mut proposal: Option<Proposal> = None;
    let mut terminal = ratatui::try_init().context("taking the terminal")?;
    let outcome = loop {
        while let Ok(update) = inbox.try_recv() {
            app.update(update);
        }
        selection.send_if_modified(|current| {
            let now = app.current_name();
            (*current != now).then(|| *current = now).is_some()
        });
        if let Err(error) = terminal.draw(|frame| view::draw(frame, &app, &colours)) {
            break Err(anyhow::Error::from(error).context("drawing the dashboard"));
        }
        match event::poll(Duration::from_millis(150)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(error) => break Err(anyhow::Error::from(error).context("reading the terminal")),
        }
        let key = match event::read() {
            Ok(Event::Key(key)) if key.kind != KeyEventKind::Release => key,
            Ok(_) => continue,
            Err(error) => break Err(anyhow::Error::from(error).context("reading the terminal")),
        };
        let action = app.on_key(key);
        let hands_over = matches!(action, Action::Connect(_) | Action::Shell(_));
        let result = match action {
            Action::None => Ok(()),
            Action::Quit => break Ok(Exit::Success),
            Action::Connect(name) => hand_over(scope, &["sandbox", "connect", &name]),
            Action::Shell(name) => hand_over(
                scope,
                &["sandbox", "exec", "-n", &name, "--tty", "--", "sh", "-l"],
            ),
            Action::Delete(name) => runtime.block_on(async {
                let request = scope.request(pb::DeleteSandboxRequest { name: name.clone() })?;
                client.delete_sandbox(request).await.map_err(status)?;
                app.status = format!("✓ Deleted sandbox {name}");
                anyhow::Ok(())
            }),
            Action::Stop(name) => runtime.block_on(async {
                let request = scope.request(pb::StopSandboxRequest { name: name.clone() })?;
                client.stop_sandbox(request).await.map_err(status)?;
                app.status = format!("✓ Stopped sandbox {name}");
                anyhow::Ok(())
            }),
            Action::Start(name) => runtime.block_on(async {
                let request = scope.request(pb::StartSandboxRequest { name: name.clone() })?;
                client.start_sandbox(request).await.map_err(status)?;
                app.status = format!("✓ Started sandbox {name}");
                anyhow::Ok(())
            }),
            Action::Propose { sandbox, decision } => runtime.block_on(async {
                let operation = decision.operation().map_err(anyhow::Error::msg)?;
                let computed = propose(&mut client, scope, &sandbox, &[operation]).await?;
                app.propose(&sandbox, &decision, &computed.base, &computed.yaml);
                proposal = Some(computed);
                anyhow::Ok(())
            }),
            Action::Apply(sandbox) => match proposal.take() {
                Some(computed) => runtime.block_on(async {
                    let revision = submit_proposal(&mut client, scope, &sandbox, &computed).await?;
                    app.status = format!(
                        "✓ Policy version {} submitted to {sandbox} (hash: {})",
                        revision.version,
                        revision.hash.get(..12).unwrap_or(&revision.hash)
                    );
                    anyhow::Ok(())
                }),
                None => Ok(()),
            },
        };
        if let Err(error) = result {
            app.status = format!("✗ {error:#}");
        }
        if hands_over {
            // The terminal comes back in the state the command left it.
            terminal = match ratatui::try_init() {
                Ok(terminal) => terminal,
                Err(error) => {
                    break Err(anyhow::Error::from(error).context("taking the terminal back"));
                }
            };
        }
    };
    ratatui::restore();
    runtime.shutdown_background();
    outcome
}

/// Runs `openshell ARGS` (this gateway and workspace) on the terminal,
/// the dashboard suspended meanwhile.
fn hand_over(scope: &Scope, args: &[&str]) -> anyhow::Result<()> {
    let target = scope.target()?;
    ratatui::restore();
    let mut command = std::process::Command::new(
        std::env::current_exe().context("locating the openshell binary")?,
    );
    if target.insecure {
        command.arg("--gateway-insecure");
    }
    let status = command
        .arg("--gateway-endpoint")
        .arg(&target.endpoint)
        .arg("-g")
        .arg(&target.name)
        .arg("--workspace")
        .arg(&scope.workspace)
        .args(args)
        .status()
        .context("running openshell")?;
    anyhow::ensure!(
        status.success() || status.code().is_some(),
        "openshell ended by a signal"
    );
    Ok(())
}

/// Reads the gateway for the dashboard until the receiver goes: the
/// sandbox list and the selected sandbox's policy every [`REFRESH`], and
/// the selected sandbox's log as it grows.
async fn feed(
    mut client: crate::client::Client,
    scope: Scope,
    updates: mpsc::Sender<Update>,
    mut selected: watch::Receiver<Option<String>>,
) {
    let mut follower: Option<tokio::task::JoinHandle<()>> = None;
    let mut following: Option<String> = None;
    loop {
        let current = selected.borrow_and_update().clone();
        if current != following {
            if let Some(task) = follower.take() {
                task.abort();
            }
            if let Some(name) = &current {
                follower = Some(tokio::spawn(follow_logs(
                    client.clone(),
                    scope.clone(),
                    name.clone(),
                    updates.clone(),
                )));
            }
            following = current.clone();
        }
        let listed = match scope.request(pb::ListSandboxesRequest::default()) {
            Ok(request) => client.list_sandboxes(request).await,
            Err(_) => return,
        };
        let sent = match listed {
            Ok(reply) => updates.send(Update::Sandboxes(reply.into_inner().sandboxes)),
            Err(error) => updates.send(Update::Error(format!("{:#}", status(error)))),
        };
        if sent.is_err() {
            return;
        }
        if let Some(name) = &current
            && let Ok(request) = scope.request(pb::GetPolicyRequest {
                name: name.clone(),
                version: 0,
            })
        {
            let revision = client
                .get_policy(request)
                .await
                .ok()
                .map(|r| r.into_inner());
            let _ = updates.send(Update::Policy {
                sandbox: name.clone(),
                revision,
            });
        }
        tokio::select! {
            () = tokio::time::sleep(REFRESH) => {}
            changed = selected.changed() => if changed.is_err() { return },
        }
    }
}

/// Follows one sandbox's log (its last 200 lines first).
async fn follow_logs(
    mut client: crate::client::Client,
    scope: Scope,
    name: String,
    updates: mpsc::Sender<Update>,
) {
    let Ok(request) = scope.request(pb::SandboxLogsRequest {
        name: name.clone(),
        lines: 200,
        follow: true,
        ..Default::default()
    }) else {
        return;
    };
    let mut stream = match client.sandbox_logs(request).await {
        Ok(stream) => stream.into_inner(),
        Err(error) => {
            let _ = updates.send(Update::Error(format!("{:#}", status(error))));
            return;
        }
    };
    while let Ok(Some(line)) = stream.message().await {
        let update = Update::Log {
            sandbox: name.clone(),
            source: line.source,
            json: line.json,
        };
        if updates.send(update).is_err() {
            return;
        }
    }
}
