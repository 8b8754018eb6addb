//! The engine side of the docker driver: which engine and socket, the
//! connection (API version negotiated), its errors, the labels that find a
//! gateway instance's containers, its network, and removing it all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

use openshell_driver::DriverError;

/// Label: the gateway that made the container (its name, for people).
pub const GATEWAY_LABEL: &str = "openshell.gateway";
/// Label: the gateway instance that made the container (what filters use).
pub const INSTANCE_LABEL: &str = "openshell.gateway-instance";
/// Label: the sandbox's id.
pub(super) const SANDBOX_LABEL: &str = "openshell.sandbox-id";
/// Label: the sandbox's name (for people reading `docker ps`).
pub(super) const NAME_LABEL: &str = "openshell.sandbox";

/// Which engine answers on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }

    /// The engine's socket ([`openshell_core::paths::docker_socket`],
    /// [`openshell_core::paths::podman_socket`]) as a `unix://` URL.
    pub fn default_socket(self) -> String {
        use openshell_core::paths::{ProcessEnv, docker_socket, podman_socket};
        let path = match self {
            Engine::Docker => docker_socket(&ProcessEnv),
            Engine::Podman => podman_socket(&ProcessEnv, nix::unistd::Uid::effective().as_raw()),
        };
        format!("unix://{}", path.display())
    }

    /// How to start the engine, for error hints.
    fn start_hint(self) -> &'static str {
        match self {
            Engine::Docker => "start it (`dockerd`, or `systemctl start docker`)",
            Engine::Podman => {
                "start its API service (`podman system service --time=0`, or `systemctl start podman.socket`)"
            }
        }
    }
}

pub(super) fn engine_error(
    engine: Engine,
    what: impl Into<String>,
) -> impl FnOnce(bollard::errors::Error) -> DriverError {
    let what = what.into();
    move |source| DriverError::Engine {
        engine: engine.name(),
        what,
        source: Box::new(source),
    }
}

/// True when the engine answered 404.
pub(super) fn not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The message an engine error carries, for users.
pub(super) fn engine_message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Connects to the engine named by `engine`/`socket` (API version
/// negotiated), or says how to start it.
pub async fn connect_engine(engine: Engine, socket: Option<&str>) -> Result<Docker, DriverError> {
    let socket = socket
        .map(str::to_owned)
        .unwrap_or_else(|| engine.default_socket());
    let refused = |detail: String| {
        DriverError::Refused(format!(
            "cannot reach the {} engine at {socket}: {detail}\nhint: {}, or start the gateway with --driver process",
            engine.name(),
            engine.start_hint()
        ))
    };
    let docker = Docker::connect_with_unix(&socket, 120, bollard::API_DEFAULT_VERSION)
        .map_err(|e| refused(engine_message(&e)))?;
    let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
        .await
        .map_err(|_| refused("no answer within 10s".to_owned()))?
        .map_err(|e| refused(engine_message(&e)))?;
    Ok(docker)
}

/// The gateway instance's id, made on first use and kept in `state`.
pub fn instance_id(state: &Path) -> std::io::Result<String> {
    let path = state.join("instance");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| std::io::Error::other("no randomness for the instance id"))?;
    let id = openshell_core::hex::encode(&bytes);
    std::fs::write(&path, format!("{id}\n"))?;
    Ok(id)
}

/// What selects the containers of one gateway instance.
pub(super) fn instance_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("{INSTANCE_LABEL}={instance}")],
    )])
}

/// The gateway's network name.
pub(super) fn network_name(gateway: &str, instance: &str) -> String {
    format!("openshell-{gateway}-{instance}")
}

/// Removes every container a gateway instance made, and its network
/// (`gateway destroy`); returns how many containers there were.
pub async fn destroy(
    engine: Engine,
    socket: Option<&str>,
    gateway: &str,
    instance: &str,
) -> Result<usize, DriverError> {
    let docker = connect_engine(engine, socket).await?;
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&instance_filter(instance))
                .build(),
        ))
        .await
        .map_err(engine_error(engine, "listing containers"))?;
    for container in &containers {
        if let Some(id) = &container.id {
            remove_container(&docker, engine, id).await?;
        }
    }
    match docker
        .remove_network(&network_name(gateway, instance))
        .await
    {
        Ok(()) => {}
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(engine_error(engine, "removing the network")(e)),
    }
    Ok(containers.len())
}

pub(super) async fn remove_container(
    docker: &Docker,
    engine: Engine,
    id: &str,
) -> Result<(), DriverError> {
    match docker
        .remove_container(
            id,
            Some(
                RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        // Already being removed (a concurrent delete).
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(engine_error(engine, format!("removing container {id}"))(e)),
    }
}

/// The gateway's address on its network: the bridge's gateway address.
pub(super) async fn ensure_network(
    docker: &Docker,
    engine: Engine,
    gateway: &str,
    instance: &str,
) -> Result<IpAddr, DriverError> {
    let name = network_name(gateway, instance);
    let inspect = match docker.inspect_network(&name, None).await {
        Ok(network) => network,
        Err(e) if not_found(&e) => {
            docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".to_owned()),
                    labels: Some(HashMap::from([
                        (GATEWAY_LABEL.to_owned(), gateway.to_owned()),
                        (INSTANCE_LABEL.to_owned(), instance.to_owned()),
                    ])),
                    ..Default::default()
                })
                .await
                .map_err(engine_error(engine, format!("creating the network {name}")))?;
            docker
                .inspect_network(&name, None)
                .await
                .map_err(engine_error(
                    engine,
                    format!("inspecting the network {name}"),
                ))?
        }
        Err(e) => {
            return Err(engine_error(
                engine,
                format!("inspecting the network {name}"),
            )(e));
        }
    };
    inspect
        .ipam
        .and_then(|ipam| ipam.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|config| config.gateway)
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| {
            DriverError::Refused(format!(
                "the network {name} has no IPv4 gateway address; remove it (`{} network rm {name}`) and restart the gateway",
                engine.name()
            ))
        })
}
