//! Port forwarding into the sandbox: TCP connections to its loopback,
//! made for the gateway's `Forward` streams.
//!
//! The sandbox's loopback lives in its network namespace, which only the
//! init process and its descendants are in. A [`Dialer`] thread joins that
//! namespace once (network namespaces are per thread) and makes every
//! connection there; a socket keeps its namespace, so the supervisor's
//! runtime then uses it like any other. The agent cannot reach this path:
//! it only ever answers connections the gateway's authenticated user asked
//! for, and never to the egress proxy's own port.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;

use crate::isolation::PROXY_ADDR;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Request = (u16, oneshot::Sender<std::io::Result<TcpStream>>);

/// Connects to ports on the sandbox's loopback.
#[derive(Debug, Clone)]
pub struct Dialer {
    requests: std::sync::mpsc::Sender<Request>,
}

impl Dialer {
    /// Starts the dialing thread in the network namespace of `init_pid`.
    pub fn start(init_pid: i32) -> anyhow::Result<Dialer> {
        let path = format!("/proc/{init_pid}/ns/net");
        let namespace = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        let (requests, incoming) = std::sync::mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("forward-dialer".into())
            .spawn(move || {
                let joined =
                    nix::sched::setns(namespace.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
                let _ = ready_tx.send(joined.map_err(std::io::Error::from));
                if joined.is_err() {
                    return;
                }
                while let Ok((port, reply)) = incoming.recv() {
                    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                    let _ = reply.send(TcpStream::connect_timeout(&address, CONNECT_TIMEOUT));
                }
            })
            .context("starting the forward dialer")?;
        ready_rx
            .recv()
            .context("the forward dialer did not start")?
            .context("joining the sandbox's network namespace")?;
        Ok(Dialer { requests })
    }

    /// A connection to `port` on the sandbox's loopback.
    pub async fn connect(&self, port: u16) -> anyhow::Result<tokio::net::TcpStream> {
        if port == PROXY_ADDR.port() {
            anyhow::bail!("port {port} is the sandbox's egress proxy; it cannot be forwarded");
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((port, reply))
            .map_err(|_| anyhow::anyhow!("the forward dialer stopped"))?;
        let stream = answer
            .await
            .map_err(|_| anyhow::anyhow!("the forward dialer stopped"))?
            .with_context(|| format!("nothing answers on port {port} in the sandbox"))?;
        stream.set_nonblocking(true)?;
        Ok(tokio::net::TcpStream::from_std(stream)?)
    }
}
