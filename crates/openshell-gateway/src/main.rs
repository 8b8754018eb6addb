//! `openshell-gateway`: serves the API on one port until SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use openshell_gateway::auth::Tokens;
use openshell_gateway::drivers::docker::{self, DEFAULT_IMAGE};
use openshell_gateway::drivers::{Connect, DockerDriver, Driver, Engine, ProcessDriver};
use openshell_gateway::{api::Api, pki, secrets::Keyring, server, store::Store};

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
    /// Keep TLS but do not require client certificates (callers without
    /// one act as the admin `anonymous`)
    #[arg(long)]
    disable_gateway_auth: bool,
    /// Require a user token (`--issue-token`) or a client certificate on
    /// the user API, also with --plaintext: for a gateway behind a
    /// TLS-terminating reverse proxy
    #[arg(long)]
    bearer_auth: bool,
    /// Write a client bundle (ca.crt, client/tls.crt, client/tls.key) for
    /// SUBJECT into --out, then exit
    #[arg(
        long,
        value_name = "SUBJECT",
        requires = "out",
        conflicts_with = "issue_token"
    )]
    issue_client: Option<String>,
    /// Print a user token for SUBJECT (for `openshell gateway login`), then exit
    #[arg(long, value_name = "SUBJECT")]
    issue_token: Option<String>,
    /// The role of --issue-client or --issue-token: user (only the
    /// workspaces it is a member of) or admin (everything)
    #[arg(long, default_value = "user", value_parser = ["user", "admin"])]
    role: String,
    /// Where --issue-client writes the bundle
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// How long an --issue-token token is valid, in days
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    token_days: u64,
    /// Extra name for the server certificate (repeatable)
    #[arg(long = "server-name", value_name = "NAME")]
    server_names: Vec<String>,
    /// The supervisor binary (run by the process driver, bind-mounted into
    /// containers) [default: beside this binary, else PATH]
    #[arg(long, env = "OPENSHELL_SANDBOX_BIN", value_name = "PATH")]
    sandbox_bin: Option<PathBuf>,
    /// Where sandboxes run: supervisors on this host (process) or
    /// containers (docker, podman: through the engine's API socket)
    #[arg(long, default_value = "process", value_parser = ["process", "docker", "podman"])]
    driver: String,
    /// The gateway's name: labels its containers and names their network
    #[arg(long, default_value = "openshell")]
    name: String,
    /// The container engine's socket [default: DOCKER_HOST or
    /// /var/run/docker.sock; podman: CONTAINER_HOST or /run/podman/podman.sock]
    #[arg(long, value_name = "unix://PATH")]
    engine_socket: Option<String>,
    /// The image for sandboxes created without --from (container drivers)
    #[arg(long, env = "OPENSHELL_SANDBOX_IMAGE", default_value = DEFAULT_IMAGE)]
    image: String,
    /// Remove every container and the network this gateway made, then exit
    /// (`openshell gateway destroy`)
    #[arg(long)]
    destroy: bool,
    /// Re-seal every provider's credentials under a new key in
    /// STATE_DIR/secrets.key, retire the old key, then exit (safe while a
    /// gateway serves: it picks up the new key by itself)
    #[arg(long)]
    rotate_secrets_key: bool,
}

/// The container engine a driver name means.
fn engine(driver: &str) -> Option<Engine> {
    match driver {
        "docker" => Some(Engine::Docker),
        "podman" => Some(Engine::Podman),
        _ => None,
    }
}

/// A listener on an address that may not exist yet (a bridge the engine
/// creates with its first container): IP_FREEBIND lets the bind succeed,
/// connections arrive once the address does.
fn bind_free(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, listen, setsockopt,
        socket, sockopt,
    };
    let family = if address.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::IpFreebind, &true)?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    match address {
        SocketAddr::V4(v4) => bind(raw, &SockaddrIn::from(v4))?,
        SocketAddr::V6(v6) => bind(raw, &SockaddrIn6::from(v6))?,
    }
    listen(&fd, nix::sys::socket::Backlog::new(1024)?)?;
    let listener = std::net::TcpListener::from(fd);
    Ok(tokio::net::TcpListener::from_std(listener)?)
}

/// `--issue-client` and `--issue-token`: identities for users of this
/// gateway (docs/cli.md, "Workspaces and who may use them"). True when one
/// was issued (and the gateway should exit).
fn issue(args: &Args, tokens: &Tokens) -> anyhow::Result<bool> {
    use openshell_gateway::auth::{Role, valid_subject};
    let role = Role::parse(&args.role).context("--role is user or admin")?;
    let subject = match (&args.issue_client, &args.issue_token) {
        (Some(subject), _) | (_, Some(subject)) => subject,
        (None, None) => return Ok(false),
    };
    anyhow::ensure!(
        valid_subject(subject),
        "invalid subject '{subject}': 1-128 of A-Z a-z 0-9 @ . _ -"
    );
    if let (Some(_), Some(out)) = (&args.issue_client, &args.out) {
        let dir = args.state_dir.join("pki");
        anyhow::ensure!(
            dir.join(pki::CA_CERT).exists(),
            "{} holds no PKI: start the gateway once (with TLS) first",
            dir.display()
        );
        let pki = pki::Pki::load_or_create(&dir, &[])?;
        pki.issue_client(subject, role, out)
            .with_context(|| format!("writing the bundle to {}", out.display()))?;
        #[allow(clippy::print_stdout)]
        {
            println!(
                "issued a client certificate for '{subject}' ({}) in {}\nregister it with: OPENSHELL_LOCAL_TLS_DIR={} openshell gateway add https://HOST:PORT --local --name NAME",
                role.as_str(),
                out.display(),
                out.display()
            );
        }
        return Ok(true);
    }
    let expires_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + args.token_days * 86_400;
    // The one line a script reads: the token.
    #[allow(clippy::print_stdout)]
    {
        println!("{}", tokens.mint_user(subject, role, expires_at));
    }
    Ok(true)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.destroy {
        let removed = match engine(&args.driver) {
            Some(engine) => {
                let instance = docker::instance_id(&args.state_dir)
                    .with_context(|| format!("the instance id in {}", args.state_dir.display()))?;
                docker::destroy(engine, args.engine_socket.as_deref(), &args.name, &instance)
                    .await?
            }
            None => 0,
        };
        // The one line `openshell gateway destroy` reads.
        #[allow(clippy::print_stdout)]
        {
            println!("{removed}");
        }
        return Ok(());
    }
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    secure_state_dir(&args.state_dir)?;
    let store = Store::open(&args.state_dir.join("gateway.db"))
        .await
        .context("opening the gateway database")?;
    let keyring = Keyring::load_or_create(&args.state_dir)
        .context("setting up the key that seals provider credentials")?;
    if args.rotate_secrets_key {
        let resealed = Api::new(store, keyring.clone())
            .rotate_secrets_key()
            .await
            .context("rotating the secrets key")?;
        // The one line an operator's script reads.
        #[allow(clippy::print_stdout)]
        {
            println!(
                "re-sealed {resealed} provider(s) under key {}",
                keyring.active_id()
            );
        }
        return Ok(());
    }
    let tokens =
        Tokens::load_or_create(&args.state_dir).context("setting up the sandbox token secret")?;
    if issue(&args, &tokens)? {
        return Ok(());
    }
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
        tokens: {
            let tokens = tokens.clone();
            openshell_gateway::drivers::TokenMinter::new(move |id| tokens.mint(id))
        },
    };
    let supervisor = args
        .sandbox_bin
        .unwrap_or_else(|| openshell_core::paths::companion_binary("openshell-sandbox"));
    let root = args.state_dir.join("sandboxes");
    let address = SocketAddr::new(args.bind, args.port);
    // (address, listener, whether it serves the user API)
    let mut listeners = vec![(
        address,
        tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?,
        true,
    )];
    let sandboxes = store.list_all().await.context("reading sandboxes")?;
    let api = match engine(&args.driver) {
        None => {
            let driver = ProcessDriver::new(
                &root,
                &supervisor,
                std::sync::Arc::new(store.clone()),
                connect,
            );
            driver.reconcile(sandboxes).await;
            Api::with_driver(store, keyring.clone(), driver)
        }
        Some(engine) => {
            let supervisor = supervisor
                .canonicalize()
                .with_context(|| format!("the supervisor binary {}", supervisor.display()))?;
            let driver = DockerDriver::connect(
                docker::Options {
                    engine,
                    socket: args.engine_socket.clone(),
                    gateway: args.name.clone(),
                    instance: docker::instance_id(&args.state_dir).with_context(|| {
                        format!("the instance id in {}", args.state_dir.display())
                    })?,
                    image: args.image.clone(),
                    supervisor,
                    root,
                    connect,
                    port: args.port,
                },
                std::sync::Arc::new(store.clone()),
            )
            .await?;
            // Containers reach the gateway on their network's bridge, where
            // only the supervisors' service is served.
            let bridge = SocketAddr::new(driver.gateway_ip(), args.port);
            if !args.bind.is_unspecified() && bridge != address {
                listeners.push((
                    bridge,
                    bind_free(bridge).with_context(|| format!("binding {bridge}"))?,
                    false,
                ));
            }
            driver.reconcile(sandboxes).await;
            Api::with_driver(store, keyring.clone(), driver)
        }
    };
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let config = server::Config {
        require_identity: (tls.is_some() && !args.disable_gateway_auth) || args.bearer_auth,
        tls,
        tokens,
        user_api: true,
    };
    let mut serving = Vec::new();
    for (address, listener, user_api) in listeners {
        tracing::info!(%address, tls = config.tls.is_some(), user_api, driver = %args.driver, "gateway listening");
        serving.push(tokio::spawn(server::run(
            listener,
            server::Config {
                user_api,
                ..config.clone()
            },
            api.clone(),
            shutdown.clone(),
        )));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    for serve in serving {
        let _ = serve.await;
    }
    Ok(())
}

/// The state directory mode 0700 and the files an earlier version left
/// readable to others 0600 (the database held `-e` values in its WAL).
fn secure_state_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("securing {}", dir.display()))?;
    for name in [
        openshell_gateway::secrets::KEY_FILE,
        "gateway.db",
        "gateway.db-wal",
        "gateway.db-shm",
        "gateway.log",
    ] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("securing {}", path.display()))?;
        }
    }
    Ok(())
}

#[allow(clippy::print_stderr)] // the binary's one place for user-facing errors
fn main() -> ExitCode {
    let args = Args::parse();
    // Everything the gateway writes (its database and WAL, logs, tokens,
    // sandboxes' output and events) is root's alone; the supervisors it
    // starts set their own.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
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
