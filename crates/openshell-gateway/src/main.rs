//! `openshell-gateway`: serves the API on one port until SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use openshell_gateway::auth::Tokens;
use openshell_gateway::drivers::{Connect, Driver, ProcessDriver};
use openshell_gateway::{api::Api, pki, server, store::Store};

#[derive(Debug, Parser)]
#[command(
    name = "openshell-gateway",
    version = openshell_core::VERSION,
    about = "The OpenShell gateway: API, durable state and PKI for sandboxes",
    after_help = "Usually started by `openshell gateway start`. On first start it creates its PKI \
                  (CA, server certificate, CLI client certificate) under STATE_DIR/pki and its \
                  database at STATE_DIR/gateway.db."
)]
struct Args {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port for gRPC and HTTP (health) alike
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Where the database and PKI live
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Serve plain HTTP/2 (behind a TLS-terminating proxy)
    #[arg(long)]
    plaintext: bool,
    /// Keep TLS but do not require client certificates
    #[arg(long)]
    disable_gateway_auth: bool,
    /// Extra name for the server certificate (repeatable)
    #[arg(long = "server-name", value_name = "NAME")]
    server_names: Vec<String>,
    /// The supervisor binary for the process driver [default: beside this binary, else PATH]
    #[arg(long, env = "OPENSHELL_SANDBOX_BIN", value_name = "PATH")]
    sandbox_bin: Option<PathBuf>,
}

async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let store = Store::open(&args.state_dir.join("gateway.db"))
        .await
        .context("opening the gateway database")?;
    let tokens =
        Tokens::load_or_create(&args.state_dir).context("setting up the sandbox token secret")?;
    let (tls, ca_cert) = if args.plaintext {
        tracing::warn!("serving plaintext: use only behind a TLS-terminating proxy");
        (None, None)
    } else {
        let dir = args.state_dir.join("pki");
        let pki = pki::Pki::load_or_create(&dir, &pki::server_names(&args.server_names))
            .context("setting up the gateway PKI")?;
        if args.disable_gateway_auth {
            tracing::warn!("client certificates are not required (--disable-gateway-auth)");
        }
        (Some(pki.server_config()?), Some(dir.join(pki::CA_CERT)))
    };
    // Supervisors on this host dial back over loopback when we listen on
    // every address.
    let dial = if args.bind.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        args.bind
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let connect = Connect {
        endpoint: format!("{scheme}://{}", SocketAddr::new(dial, args.port)),
        ca_cert,
        tokens: tokens.clone(),
    };
    let driver = ProcessDriver::new(
        &args.state_dir.join("sandboxes"),
        &args
            .sandbox_bin
            .unwrap_or_else(|| openshell_core::paths::companion_binary("openshell-sandbox")),
        store.clone(),
        connect,
    );
    driver
        .reconcile(store.list_all().await.context("reading sandboxes")?)
        .await;
    let address = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))?;
    tracing::info!(%address, tls = tls.is_some(), "gateway listening");
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let serve = tokio::spawn(server::run(
        listener,
        server::Config {
            require_client_cert: tls.is_some() && !args.disable_gateway_auth,
            tls,
            tokens,
        },
        Api::with_driver(store, driver),
        shutdown,
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let _ = serve.await;
    Ok(())
}

#[allow(clippy::print_stderr)] // the binary's one place for user-facing errors
fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("OPENSHELL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("openshell-gateway: error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("openshell-gateway: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
