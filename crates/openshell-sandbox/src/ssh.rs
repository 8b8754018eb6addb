//! The sandbox's SSH server (russh), reachable only through the gateway's
//! relay: each relayed ssh stream is served in memory
//! ([`Server::serve`]); nothing listens on any port.
//!
//! The relay has already authenticated the user (mTLS plus a per-session
//! token at the gateway), so the server accepts the `none` and `publickey`
//! methods and checks no password. Every command, shell and sftp server
//! runs through an `__exec` helper ([`crate::exec::Spawner`]): the same
//! namespaces, Landlock, seccomp and user as the agent. The host key is a
//! fresh Ed25519 key per sandbox.
//!
//! Session channels support `exec`, `shell`, `pty-req`, `window-change`,
//! `env` and the subsystems `sftp` (the host's OpenSSH sftp-server, run
//! inside the sandbox: what `scp` and `sftp` use) and `openshell-main`
//! (attach to the main process: [`crate::main_process`]).
//! `direct-tcpip` channels (`ssh -L`) reach ports on the sandbox's
//! loopback, as `forward start` does.

mod channel;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::server::{Auth, ChannelOpenHandle, Config, Msg, Session};
use russh::{Channel, ChannelOpenFailure, MethodKind, MethodSet, SshId};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::exec::Spawner;
use crate::forward::Dialer;
use crate::main_process::MainProcess;

/// Where OpenSSH's sftp server lives on common distributions.
const SFTP_SERVERS: [&str; 3] = [
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
];

/// The sandbox's SSH server.
#[derive(Debug)]
pub struct Server {
    config: Arc<Config>,
    spawner: Spawner,
    dialer: Option<Dialer>,
    main: Option<Arc<MainProcess>>,
}

impl Server {
    /// A server with a new host key.
    pub fn new(
        spawner: Spawner,
        dialer: Option<Dialer>,
        main: Option<Arc<MainProcess>>,
    ) -> anyhow::Result<Server> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| anyhow::anyhow!("no randomness for the host key"))?;
        let key = PrivateKey::new(
            KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)),
            "openshell sandbox host key",
        )
        .context("creating the ssh host key")?;
        let config = Config {
            server_id: SshId::Standard(
                format!("SSH-2.0-OpenShell_{}", env!("CARGO_PKG_VERSION")).into(),
            ),
            methods: MethodSet::from(&[MethodKind::None, MethodKind::PublicKey][..]),
            auth_rejection_time: Duration::ZERO,
            keys: vec![key],
            // The relay's own keepalives and the client's ServerAlive
            // messages decide when a session is dead.
            inactivity_timeout: None,
            nodelay: true,
            ..Config::default()
        };
        Ok(Server {
            config: Arc::new(config),
            spawner,
            dialer,
            main,
        })
    }

    /// Serves one ssh connection carried by `stream` until it ends.
    pub async fn serve<S>(self: Arc<Self>, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handler = Handler {
            server: self.clone(),
        };
        match russh::server::run_stream(self.config.clone(), stream, handler).await {
            Ok(session) => {
                if let Err(error) = session.await {
                    tracing::debug!(%error, "ssh session ended");
                }
            }
            Err(error) => tracing::debug!(%error, "ssh handshake failed"),
        }
    }

    /// The sftp server binary, if the host has one.
    fn sftp_server() -> Option<&'static str> {
        SFTP_SERVERS
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
    }
}

/// One ssh connection.
struct Handler {
    server: Arc<Server>,
}

/// Loopback names a `direct-tcpip` channel may ask for.
fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]")
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _key: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        tokio::spawn(channel::serve(
            self.server.clone(),
            channel,
            session.handle(),
        ));
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(dialer), true, Ok(port)) = (
            self.server.dialer.clone(),
            is_loopback(host_to_connect),
            u16::try_from(port_to_connect),
        ) else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        tokio::spawn(async move {
            match dialer.connect(port).await {
                Ok(mut socket) => {
                    reply.accept().await;
                    let mut channel = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut channel, &mut socket).await;
                }
                Err(error) => {
                    tracing::debug!(port, error = %format!("{error:#}"), "ssh -L refused");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                }
            }
        });
        Ok(())
    }
}
