//! The gRPC API (`openshell.v1.Gateway`). Requests are validated here;
//! [`status`] (in `errors`) is the one place internal errors become gRPC
//! statuses (the detail is logged, not sent). Requests for sandboxes are
//! answered in this file, their lifecycle in `lifecycle`; policy revisions,
//! providers, exec, forward, logs, settings and workspaces in the other
//! submodules.

mod errors;
mod exec;
mod forward;
mod inference;
mod lifecycle;
mod logs;
mod policy;
mod providers;
mod relay;
mod settings;
mod ssh;
pub mod supervisor;
mod workspaces;

pub use errors::status;
pub(crate) use errors::{chain, driver_status};
pub use ssh::SshTokens;

use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status, Streaming};

use openshell_proto::v1 as pb;
use openshell_proto::v1::gateway_server::Gateway;

use crate::drivers::Driver;
use crate::session::Sessions;
use crate::store::{self, Phase, Store, StoreError};

/// The metadata key naming the caller's workspace.
pub const WORKSPACE_HEADER: &str = "x-openshell-workspace";
/// The workspace when the caller names none.
pub const DEFAULT_WORKSPACE: &str = "default";
/// Longest sandbox name (a DNS label).
const MAX_NAME: usize = 63;

/// The API's state.
#[derive(Debug, Clone)]
pub struct Api {
    pub(crate) store: Store,
    driver: Option<std::sync::Arc<dyn Driver>>,
    pub(crate) sessions: Sessions,
    ssh_tokens: SshTokens,
    /// Seals and opens provider credentials.
    keyring: crate::secrets::Keyring,
}

impl Api {
    /// An API that records sandboxes but runs none (tests of the API alone).
    pub fn new(store: Store, keyring: crate::secrets::Keyring) -> Api {
        Api {
            store,
            driver: None,
            sessions: Sessions::default(),
            ssh_tokens: SshTokens::default(),
            keyring,
        }
    }

    /// An API whose sandboxes run on `driver`.
    pub fn with_driver(
        store: Store,
        keyring: crate::secrets::Keyring,
        driver: impl Driver + 'static,
    ) -> Api {
        Api {
            driver: Some(std::sync::Arc::new(driver)),
            ..Api::new(store, keyring)
        }
    }

    /// Where a sandbox's decision events are kept, when it runs here.
    pub fn events_log(&self, id: &str) -> Option<std::path::PathBuf> {
        self.driver.as_ref().map(|d| d.events_log(id))
    }

    /// The gateway's gauges in the Prometheus text format; fails when the
    /// database does not answer.
    pub async fn metrics(&self) -> Result<String, StoreError> {
        let counts = self.store.phase_counts().await?;
        let mut text = String::from(
            "# HELP openshell_sandboxes Sandboxes by phase.\n# TYPE openshell_sandboxes gauge\n",
        );
        for phase in [
            Phase::Provisioning,
            Phase::Ready,
            Phase::Error,
            Phase::Deleting,
            Phase::Stopped,
        ] {
            let n: i64 = counts
                .iter()
                .filter(|(p, _)| *p == phase)
                .map(|(_, n)| n)
                .sum();
            text.push_str(&format!(
                "openshell_sandboxes{{phase=\"{}\"}} {n}\n",
                phase.as_str()
            ));
        }
        text.push_str(&format!(
            "# HELP openshell_supervisor_sessions Supervisors connected now.\n\
             # TYPE openshell_supervisor_sessions gauge\n\
             openshell_supervisor_sessions {}\n\
             # HELP openshell_build_info The gateway's version.\n\
             # TYPE openshell_build_info gauge\n\
             openshell_build_info{{version=\"{}\"}} 1\n",
            self.sessions.count(),
            openshell_core::VERSION
        ));
        Ok(text)
    }

    /// The live supervisor sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The sandbox, or NOT_FOUND.
    async fn existing(&self, workspace: &str, name: &str) -> Result<store::Sandbox, Status> {
        self.store
            .get_sandbox(workspace, name)
            .await
            .map_err(status)?
            .ok_or_else(|| Status::not_found(format!("sandbox '{name}' not found")))
    }
}

/// FAILED_PRECONDITION unless the sandbox runs (or is starting): what
/// exec, forward and ssh streams need.
fn running(sandbox: &store::Sandbox) -> Result<(), Status> {
    if matches!(sandbox.phase, Phase::Ready | Phase::Provisioning) {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "sandbox '{}' is not running (phase {}); start it with: openshell sandbox start {}",
            sandbox.name,
            sandbox.phase.as_str(),
            sandbox.name
        )))
    }
}

/// How often `WatchSandbox` looks for more output.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(25);
/// Largest output chunk per message.
const WATCH_CHUNK: usize = 64 * 1024;

/// The workspace a request names (`default` when none); see [`Api::scope`]
/// for whether the caller may use it.
fn workspace<T>(request: &Request<T>) -> Result<String, Status> {
    let Some(value) = request.metadata().get(WORKSPACE_HEADER) else {
        return Ok(DEFAULT_WORKSPACE.to_owned());
    };
    let name = value
        .to_str()
        .map_err(|_| Status::invalid_argument("workspace must be ASCII"))?;
    validate_name("workspace", name)?;
    Ok(name.to_owned())
}

/// Names are DNS labels: 1–63 of `a-z 0-9 -`, starting and ending with an
/// alphanumeric.
pub fn validate_name(kind: &str, name: &str) -> Result<(), Status> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "invalid {kind} name '{name}': use 1-{MAX_NAME} lowercase letters, digits and '-', starting and ending with a letter or digit"
        )))
    }
}

/// INVALID_ARGUMENT with every validation message when `yaml` is not a
/// valid policy.
pub(crate) fn validate_policy(yaml: &str) -> Result<(), Status> {
    openshell_policy::load_str(yaml)
        .map(drop)
        .map_err(|e| Status::invalid_argument(format!("invalid policy: {}", e.problems())))
}

pub(crate) fn new_id() -> String {
    let mut hasher = Sha256::new();
    hasher.update(store::now_ms().to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    let mut random = [0u8; 16];
    if let Ok(mut file) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut file, &mut random);
    }
    hasher.update(random);
    openshell_core::hex::encode(&hasher.finalize()[..8])
}

fn to_proto(sandbox: store::Sandbox) -> pb::Sandbox {
    pb::Sandbox {
        id: sandbox.id,
        name: sandbox.name,
        phase: sandbox.phase.as_str().to_owned(),
        spec: Some(pb::SandboxSpec {
            command: sandbox.spec.command,
            policy_yaml: sandbox.spec.policy_yaml,
            env: sandbox.spec.env.into_iter().collect(),
            labels: sandbox.spec.labels.into_iter().collect(),
            image: sandbox.spec.image,
            gpu: sandbox.spec.gpu,
            cpu_millis: sandbox.spec.cpu_millis,
            memory_bytes: sandbox.spec.memory_bytes,
            pids: sandbox.spec.pids,
            tty: sandbox.spec.tty,
            providers: sandbox.providers,
        }),
        created_at_ms: sandbox.created_at_ms,
        exit_code: sandbox.exit_code,
        policy_version: sandbox.policy_version,
        resource_version: sandbox.resource_version,
        workspace: sandbox.workspace,
    }
}

#[tonic::async_trait]
impl Gateway for Api {
    async fn get_current_user(
        &self,
        request: Request<pb::GetCurrentUserRequest>,
    ) -> Result<Response<pb::CurrentUser>, Status> {
        self.current_user(&request).await.map(Response::new)
    }

    async fn create_workspace(
        &self,
        request: Request<pb::CreateWorkspaceRequest>,
    ) -> Result<Response<pb::Workspace>, Status> {
        self.create_workspace_as(request).await.map(Response::new)
    }

    async fn get_workspace(
        &self,
        request: Request<pb::GetWorkspaceRequest>,
    ) -> Result<Response<pb::Workspace>, Status> {
        self.get_workspace_as(request).await.map(Response::new)
    }

    async fn list_workspaces(
        &self,
        request: Request<pb::ListWorkspacesRequest>,
    ) -> Result<Response<pb::ListWorkspacesResponse>, Status> {
        self.list_workspaces_as(request).await.map(Response::new)
    }

    async fn delete_workspace(
        &self,
        request: Request<pb::GetWorkspaceRequest>,
    ) -> Result<Response<pb::DeleteWorkspaceResponse>, Status> {
        self.delete_workspace_as(request).await.map(Response::new)
    }

    async fn add_workspace_member(
        &self,
        request: Request<pb::WorkspaceMember>,
    ) -> Result<Response<pb::WorkspaceMember>, Status> {
        self.add_member_as(request).await.map(Response::new)
    }

    async fn remove_workspace_member(
        &self,
        request: Request<pb::WorkspaceMember>,
    ) -> Result<Response<pb::DeleteWorkspaceResponse>, Status> {
        self.remove_member_as(request).await.map(Response::new)
    }

    async fn list_workspace_members(
        &self,
        request: Request<pb::GetWorkspaceRequest>,
    ) -> Result<Response<pb::ListWorkspaceMembersResponse>, Status> {
        self.list_members_as(request).await.map(Response::new)
    }

    async fn health(
        &self,
        _: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        Ok(Response::new(pb::HealthResponse {
            status: "serving".to_owned(),
            version: openshell_core::VERSION.to_owned(),
        }))
    }

    async fn get_gateway_info(
        &self,
        request: Request<pb::GatewayInfoRequest>,
    ) -> Result<Response<pb::GatewayInfo>, Status> {
        self.require_admin(&request, "read the gateway's info")?;
        // Degraded when the database does not answer.
        let (status, sandboxes) = match self.store.phase_counts().await {
            Ok(counts) => ("healthy", counts.iter().map(|(_, n)| *n).sum::<i64>()),
            Err(error) => {
                tracing::error!(error = %chain(error), "gateway info: store failure");
                ("degraded", 0)
            }
        };
        let compute_drivers = self
            .driver
            .iter()
            .map(|driver| pb::ComputeDriver {
                name: driver.name().to_owned(),
                version: openshell_core::VERSION.to_owned(),
            })
            .collect();
        Ok(Response::new(pb::GatewayInfo {
            version: openshell_core::VERSION.to_owned(),
            status: status.to_owned(),
            compute_drivers,
            sandboxes: u32::try_from(sandboxes).unwrap_or(u32::MAX),
            connected_supervisors: u32::try_from(self.sessions.count()).unwrap_or(u32::MAX),
        }))
    }

    async fn create_sandbox(
        &self,
        request: Request<pb::CreateSandboxRequest>,
    ) -> Result<Response<pb::Sandbox>, Status> {
        let workspace = self.scope(&request).await?;
        self.create_sandbox_in(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_sandbox(
        &self,
        request: Request<pb::GetSandboxRequest>,
    ) -> Result<Response<pb::Sandbox>, Status> {
        let workspace = self.scope(&request).await?;
        let name = request.into_inner().name;
        match self
            .store
            .get_sandbox(&workspace, &name)
            .await
            .map_err(status)?
        {
            Some(sandbox) => Ok(Response::new(to_proto(sandbox))),
            None => Err(Status::not_found(format!("sandbox '{name}' not found"))),
        }
    }

    async fn list_sandboxes(
        &self,
        request: Request<pb::ListSandboxesRequest>,
    ) -> Result<Response<pb::ListSandboxesResponse>, Status> {
        let workspaces = self
            .listed_workspaces(&request, request.get_ref().all_workspaces)
            .await?;
        let selector = request.into_inner().selector;
        let mut listed = Vec::new();
        for workspace in &workspaces {
            listed.extend(self.store.list_sandboxes(workspace).await.map_err(status)?);
        }
        let sandboxes = listed
            .into_iter()
            .filter(|s| {
                selector
                    .iter()
                    .all(|(k, v)| s.spec.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(to_proto)
            .collect();
        Ok(Response::new(pb::ListSandboxesResponse { sandboxes }))
    }

    async fn delete_sandbox(
        &self,
        request: Request<pb::DeleteSandboxRequest>,
    ) -> Result<Response<pb::DeleteSandboxResponse>, Status> {
        let workspace = self.scope(&request).await?;
        let name = request.into_inner().name;
        let sandbox = self
            .store
            .get_sandbox(&workspace, &name)
            .await
            .map_err(status)?;
        if let Some(sandbox) = &sandbox {
            self.ssh_tokens.revoke_sandbox(&sandbox.id);
        }
        if let Some(driver) = &self.driver
            && let Some(sandbox) = &sandbox
            && let Err(error) = driver.delete(&sandbox.id).await
        {
            tracing::error!(sandbox = %name, "the sandbox could not be stopped for deletion");
            return Err(driver_status(error));
        }
        let deleted = self
            .store
            .delete_sandbox(&workspace, &name)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteSandboxResponse { deleted }))
    }

    async fn stop_sandbox(
        &self,
        request: Request<pb::StopSandboxRequest>,
    ) -> Result<Response<pb::Sandbox>, Status> {
        let workspace = self.scope(&request).await?;
        self.stop_sandbox_in(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn start_sandbox(
        &self,
        request: Request<pb::StartSandboxRequest>,
    ) -> Result<Response<pb::Sandbox>, Status> {
        let workspace = self.scope(&request).await?;
        self.start_sandbox_in(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    type SandboxLogsStream = logs::LogStream;

    async fn sandbox_logs(
        &self,
        request: Request<pb::SandboxLogsRequest>,
    ) -> Result<Response<Self::SandboxLogsStream>, Status> {
        let workspace = self.scope(&request).await?;
        self.stream_logs(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_policy(
        &self,
        request: Request<pb::SetPolicyRequest>,
    ) -> Result<Response<pb::PolicyRevision>, Status> {
        let workspace = self.scope(&request).await?;
        self.store_policy(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::PolicyRevision>, Status> {
        let workspace = self.scope(&request).await?;
        self.read_policy(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_policies(
        &self,
        request: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let workspace = self.scope(&request).await?;
        self.read_policies(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    type ExecStream = relay::Bridged<pb::ExecOutput>;

    async fn exec(
        &self,
        request: Request<Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let workspace = self.scope(&request).await?;
        self.start_exec(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    type ForwardStream = relay::Bridged<pb::ForwardFrame>;

    async fn forward(
        &self,
        request: Request<Streaming<pb::ForwardFrame>>,
    ) -> Result<Response<Self::ForwardStream>, Status> {
        let workspace = self.scope(&request).await?;
        self.start_forward(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn create_ssh_session(
        &self,
        request: Request<pb::CreateSshSessionRequest>,
    ) -> Result<Response<pb::SshSession>, Status> {
        let workspace = self.scope(&request).await?;
        self.create_ssh_session_in(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_settings(
        &self,
        request: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::Settings>, Status> {
        let workspace = self
            .settings_scope(&request, &request.get_ref().name, false)
            .await?;
        self.read_settings(&workspace, &request.into_inner().name)
            .await
            .map(Response::new)
    }

    async fn set_setting(
        &self,
        request: Request<pb::SetSettingRequest>,
    ) -> Result<Response<pb::Settings>, Status> {
        let workspace = self
            .settings_scope(&request, &request.get_ref().name, true)
            .await?;
        let request = request.into_inner();
        self.write_setting(
            &workspace,
            &request.name,
            &request.key,
            Some(&request.value),
        )
        .await
        .map(Response::new)
    }

    async fn delete_setting(
        &self,
        request: Request<pb::DeleteSettingRequest>,
    ) -> Result<Response<pb::Settings>, Status> {
        let workspace = self
            .settings_scope(&request, &request.get_ref().name, true)
            .await?;
        let request = request.into_inner();
        self.write_setting(&workspace, &request.name, &request.key, None)
            .await
            .map(Response::new)
    }

    async fn create_provider(
        &self,
        request: Request<pb::CreateProviderRequest>,
    ) -> Result<Response<pb::Provider>, Status> {
        let workspace = self.scope(&request).await?;
        self.create_provider_in(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_provider(
        &self,
        request: Request<pb::GetProviderRequest>,
    ) -> Result<Response<pb::Provider>, Status> {
        let workspace = self.scope(&request).await?;
        self.get_provider_in(&workspace, &request.into_inner().name)
            .await
            .map(Response::new)
    }

    async fn list_providers(
        &self,
        request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let workspaces = self
            .listed_workspaces(&request, request.get_ref().all_workspaces)
            .await?;
        self.list_providers_in(&workspaces, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_provider(
        &self,
        request: Request<pb::UpdateProviderRequest>,
    ) -> Result<Response<pb::Provider>, Status> {
        let workspace = self.scope(&request).await?;
        self.update_provider_in(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_provider(
        &self,
        request: Request<pb::DeleteProviderRequest>,
    ) -> Result<Response<pb::DeleteProviderResponse>, Status> {
        let workspace = self.scope(&request).await?;
        self.delete_provider_in(&workspace, &request.into_inner().name)
            .await
            .map(Response::new)
    }

    async fn list_sandbox_providers(
        &self,
        request: Request<pb::ListSandboxProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let workspace = self.scope(&request).await?;
        self.list_sandbox_providers_in(&workspace, &request.into_inner().name)
            .await
            .map(Response::new)
    }

    async fn attach_sandbox_provider(
        &self,
        request: Request<pb::SandboxProviderRequest>,
    ) -> Result<Response<pb::SandboxProviderResponse>, Status> {
        let workspace = self.scope(&request).await?;
        self.set_sandbox_provider(&workspace, request.into_inner(), true)
            .await
            .map(Response::new)
    }

    async fn detach_sandbox_provider(
        &self,
        request: Request<pb::SandboxProviderRequest>,
    ) -> Result<Response<pb::SandboxProviderResponse>, Status> {
        let workspace = self.scope(&request).await?;
        self.set_sandbox_provider(&workspace, request.into_inner(), false)
            .await
            .map(Response::new)
    }

    async fn set_inference_route(
        &self,
        request: Request<pb::SetInferenceRouteRequest>,
    ) -> Result<Response<pb::InferenceRoute>, Status> {
        let workspace = self.scope(&request).await?;
        self.set_route(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_inference_route(
        &self,
        request: Request<pb::UpdateInferenceRouteRequest>,
    ) -> Result<Response<pb::InferenceRoute>, Status> {
        let workspace = self.scope(&request).await?;
        self.update_route(&workspace, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_inference_route(
        &self,
        request: Request<pb::GetInferenceRouteRequest>,
    ) -> Result<Response<pb::InferenceRoute>, Status> {
        let workspace = self.scope(&request).await?;
        self.get_route(&workspace, &request.into_inner().route)
            .await
            .map(Response::new)
    }

    async fn delete_inference_route(
        &self,
        request: Request<pb::GetInferenceRouteRequest>,
    ) -> Result<Response<pb::DeleteInferenceRouteResponse>, Status> {
        let workspace = self.scope(&request).await?;
        self.delete_route(&workspace, &request.into_inner().route)
            .await
            .map(Response::new)
    }

    type WatchSandboxStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::SandboxOutput, Status>> + Send>,
    >;

    async fn watch_sandbox(
        &self,
        request: Request<pb::WatchSandboxRequest>,
    ) -> Result<Response<Self::WatchSandboxStream>, Status> {
        let workspace = self.scope(&request).await?;
        let name = request.into_inner().name;
        let Some(sandbox) = self
            .store
            .get_sandbox(&workspace, &name)
            .await
            .map_err(status)?
        else {
            return Err(Status::not_found(format!("sandbox '{name}' not found")));
        };
        let Some(driver) = &self.driver else {
            return Err(Status::failed_precondition(
                "this gateway runs no sandboxes",
            ));
        };
        let log = driver.output_log(&sandbox.id);
        let store = self.store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            let mut offset = 0u64;
            let mut buf = vec![0u8; WATCH_CHUNK];
            loop {
                // The phase first: output written before the exit is then
                // always sent before the final message.
                let current = store.get_sandbox(&workspace, &name).await;
                let finished = match &current {
                    Ok(Some(s)) => matches!(s.phase, Phase::Stopped | Phase::Error),
                    _ => true,
                };
                if let Ok(mut file) = tokio::fs::File::open(&log).await
                    // A rotated (or truncated) log starts again from its top.
                    && (file.metadata().await.is_ok_and(|m| m.len() >= offset) || {
                        offset = 0;
                        true
                    })
                    && file.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
                {
                    loop {
                        let n = file.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        offset += n as u64;
                        let chunk = pb::SandboxOutput {
                            data: buf[..n].to_vec(),
                            phase: String::new(),
                            exit_code: None,
                        };
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                }
                if finished {
                    let last = match current {
                        Ok(Some(s)) => pb::SandboxOutput {
                            data: Vec::new(),
                            phase: s.phase.as_str().to_owned(),
                            exit_code: s.exit_code,
                        },
                        _ => pb::SandboxOutput {
                            data: Vec::new(),
                            phase: "Deleted".to_owned(),
                            exit_code: None,
                        },
                    };
                    let _ = tx.send(Ok(last)).await;
                    return;
                }
                if tx.is_closed() {
                    return; // the client went away
                }
                tokio::time::sleep(WATCH_POLL).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
