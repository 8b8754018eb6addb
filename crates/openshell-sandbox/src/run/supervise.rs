//! The running sandbox: the proxy, the gateway session or the policy
//! file's watcher, forwarded signals, until the command ends (see
//! [`super`]).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use nix::sys::signal::{SigSet, kill};
use nix::unistd::Pid;

use openshell_policy::Policy;

use crate::EXIT_LAUNCH_FAILED;
use crate::events::Events;
use crate::exec::Spawner;
use crate::isolation;
use crate::isolation::init::FORWARDED;
use crate::isolation::launch::{self, Running};
use crate::isolation::report::{LandlockReport, Report};
use crate::main_process::MainProcess;
use crate::proxy::generation::{self, Reloader, Updater};
use crate::proxy::{self, caller::Identifier};
use crate::session::{self, Connection};
use crate::tls::Authority;

use super::policy::enrich;

/// The launch was refused or aborted before the command ran.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LaunchFailed {
    pub code: i32,
    pub message: String,
}

/// What the egress proxy needs from the launch.
pub(super) struct Egress {
    pub(super) ready_file: Option<PathBuf>,
    pub(super) policy: Policy,
    pub(super) policy_path: Option<PathBuf>,
    pub(super) events: Events,
    pub(super) authority: Arc<Authority>,
    pub(super) gateway: Option<Connected>,
    /// The paths the agent can write (for [`Identifier::with_writable`]).
    pub(super) writable: Vec<String>,
}

/// What connected mode needs besides the proxy's parts.
pub(super) struct Connected {
    pub(super) connection: Connection,
    pub(super) events: tokio::sync::mpsc::Receiver<String>,
    pub(super) policy_version: i64,
    pub(super) plan: isolation::Plan,
    pub(super) scratch: PathBuf,
}

pub(super) fn supervise(
    mut running: Running,
    signals: SigSet,
    egress: Egress,
    main: Option<Arc<MainProcess>>,
) -> anyhow::Result<i32> {
    if let Some(Report::Failed {
        stage,
        message,
        exit_code,
    }) = running.failure().cloned()
    {
        let _ = running.wait();
        return Err(LaunchFailed {
            code: exit_code,
            message: format!("{stage}: {message}"),
        }
        .into());
    }
    let enforced = running.reports.iter().find_map(|r| match r {
        Report::Enforced(enforced) => Some(enforced.clone()),
        Report::Failed { .. } => None,
    });
    let Some(enforced) = enforced else {
        let code = running.wait().unwrap_or(EXIT_LAUNCH_FAILED);
        return Err(LaunchFailed {
            code: EXIT_LAUNCH_FAILED,
            message: format!("the sandbox exited (status {code}) before reporting its isolation"),
        }
        .into());
    };
    log_landlock(&enforced.landlock);
    if let Some(path) = &egress.ready_file {
        std::fs::write(path, "ready\n")
            .with_context(|| format!("writing the ready file {}", path.display()))?;
    }
    tracing::info!(
        uid = enforced.uid,
        gid = enforced.gid,
        no_new_privs = enforced.no_new_privs,
        seccomp = enforced.seccomp,
        "agent child isolated"
    );

    // The proxy's threads inherit the blocked signal mask of this thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("proxy")
        .enable_all()
        .build()
        .context("starting the proxy runtime")?;
    let (generations_tx, generations) = generation::channel(egress.policy);
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
    let pid = running.pid;
    // Connected, policy comes from the gateway; SIGHUP goes to the agent.
    let watch_file = egress
        .gateway
        .is_none()
        .then_some(egress.policy_path.clone())
        .flatten();
    let reload_on_hup = watch_file.is_some().then_some(reload_tx);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || forward_signals(&signals, pid, reload_on_hup.as_ref()))
        .context("starting the signal forwarder")?;
    let launch::ProxyEnds { listener, sockets } = running
        .take_proxy()
        .context("the proxy listener was already taken")?;
    listener
        .set_nonblocking(true)
        .context("preparing the proxy listener")?;
    // Placeholders in the agent's environment: the gateway delivers their
    // values over the session.
    let credentials = proxy::credentials::Credentials::new(
        egress
            .gateway
            .as_ref()
            .is_some_and(|c| proxy::credentials::expects_credentials(&c.plan.env)),
    );
    let inference = proxy::inference::Routes::new(egress.gateway.is_some());
    let shared = Arc::new(proxy::Shared {
        credentials: credentials.clone(),
        inference: inference.clone(),
        generations,
        identifier: Arc::new(
            Identifier::new(pid.as_raw() as u32, sockets).with_writable(egress.writable),
        ),
        events: egress.events,
        ignore_binary: relaxed_identity(),
        authority: egress.authority,
        resolver: proxy::Resolver::default(),
    });
    let identifier = shared.identifier.clone();
    // Who connects to the proxy is recorded at connect(2) (the agent sent
    // its filter's listener before exec); a connection without a record is
    // refused.
    let channel = running
        .connects
        .take()
        .context("the connect filter channel was already taken")?;
    let filter = proxy::connects::receive_listener(&channel, false)
        .context("receiving the connect filter")?
        .context("the sandbox started without its connect filter")?;
    let serving = identifier.clone();
    std::thread::Builder::new()
        .name("connect-filter".into())
        .spawn(move || proxy::connects::serve(filter, serving))
        .context("starting the connect filter thread")?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let _guard = runtime.enter();
    let listener =
        tokio::net::TcpListener::from_std(listener).context("registering the proxy listener")?;
    runtime.spawn(proxy::run(listener, shared, shutdown_rx.clone()));
    // The updater holds the generations' sender, which must outlive the
    // run: a dropped sender ends every tunnel.
    let updater = Updater::new(generations_tx, enrich);
    if let Some(path) = &watch_file {
        runtime.spawn(Reloader::new(path, updater.clone()).watch(reload_rx));
    }
    let session = if let Some(connected) = egress.gateway {
        let sandbox = session::Sandbox {
            updater: updater.clone(),
            policy_version: connected.policy_version,
            spawner: Spawner {
                plan: connected.plan,
                init_pid: pid.as_raw(),
                identifier,
                scratch: connected.scratch,
                credentials: credentials.clone(),
            },
            main: main.clone(),
            credentials,
            inference,
        };
        Some(runtime.spawn(session::run(
            connected.connection,
            sandbox,
            connected.events,
            shutdown_rx.clone(),
        )))
    } else {
        None
    };
    let code = runtime
        .block_on(tokio::task::spawn_blocking(move || running.wait()))
        .context("waiting for the sandbox")?
        .context("waiting for the sandbox")?;
    if let Some(main) = &main {
        // The output's last bytes reach the log before the process ends.
        main.wait_output_end(std::time::Duration::from_secs(1));
        main.exited(code);
        // Attachments following the main process get its last output and
        // exit status through the session before it goes.
        if main.wait_detached(std::time::Duration::from_secs(1)) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let _ = shutdown_tx.send(true);
    if let Some(session) = session {
        // The last decision events reach the gateway; a gateway that is
        // away (or still being dialed) is not waited for long.
        let _ = runtime.block_on(tokio::time::timeout(
            std::time::Duration::from_secs(3),
            session,
        ));
    }
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(code)
}

/// `OPENSHELL_NETWORK_BINARY_IDENTITY=relaxed|disabled|endpoint-only|false|0`
/// turns binary matching off (docs/policy.md, "Binaries"); the default is required.
fn relaxed_identity() -> bool {
    std::env::var("OPENSHELL_NETWORK_BINARY_IDENTITY")
        .is_ok_and(|v| ["relaxed", "disabled", "endpoint-only", "false", "0"].contains(&v.trim()))
}

fn log_landlock(report: &LandlockReport) {
    for skipped in &report.skipped {
        tracing::warn!(path = %skipped.path, reason = %skipped.reason, "landlock: path skipped");
    }
    match &report.unavailable {
        Some(why) => tracing::error!(
            finding = "landlock-unavailable",
            reason = %why,
            "landlock is NOT enforced (best_effort): the child has no filesystem restrictions"
        ),
        None if !report.enforced => tracing::warn!(
            abi = report.abi,
            "landlock only partially enforced (best_effort)"
        ),
        None => tracing::info!(abi = report.abi, rules = report.rules, "landlock enforced"),
    }
}

pub(super) fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set
}

fn forward_signals(
    signals: &SigSet,
    pid: Pid,
    reload: Option<&tokio::sync::mpsc::UnboundedSender<()>>,
) {
    while let Ok(signal) = signals.wait() {
        if signal == nix::sys::signal::Signal::SIGHUP
            && let Some(reload) = reload
        {
            tracing::info!("SIGHUP: reloading the policy");
            let _ = reload.send(());
            continue;
        }
        tracing::debug!(?signal, "forwarding signal to the sandbox");
        let _ = kill(pid, signal);
    }
}
