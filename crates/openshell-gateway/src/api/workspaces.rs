//! Who may do what (docs/cli.md, "Workspaces and who may use them"): every
//! resource call is scoped to a workspace the caller may use ([`Api::scope`]);
//! workspaces, their members and `whoami` are served here.
//!
//! - A gateway admin may use every workspace and create or delete them.
//! - A user may use only the workspaces it is a member of; a member with
//!   the workspace role `admin` manages that workspace's members.
//! - Gateway-wide state (global settings, gateway info) takes an admin.

use tonic::{Request, Status};

use openshell_proto::v1 as pb;

use super::{Api, status, validate_name};
use crate::auth::{Caller, Role};
use crate::store::{Member, Workspace};

/// Longest workspace name a new workspace may have.
const MAX_WORKSPACE_NAME: usize = 19;

/// The caller the user-API interceptor recorded; a request without one
/// never got past it, so it is refused.
pub(crate) fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no caller identity"))
}

fn denied(caller: &Caller, what: &str) -> Status {
    Status::permission_denied(format!(
        "'{}' may not {what}: it takes a gateway admin",
        caller.subject
    ))
}

fn not_found(name: &str) -> Status {
    Status::not_found(format!(
        "workspace '{name}' not found\nhint: list them with: openshell workspace list"
    ))
}

fn to_proto(workspace: Workspace) -> pb::Workspace {
    pb::Workspace {
        name: workspace.name,
        labels: workspace.labels.into_iter().collect(),
        created_at_ms: workspace.created_at_ms,
        status: "active".to_owned(),
    }
}

fn member_proto(member: Member) -> pb::WorkspaceMember {
    pb::WorkspaceMember {
        workspace: member.workspace,
        subject: member.subject,
        role: member.role,
    }
}

impl Api {
    /// The workspace a resource call addresses (the request's
    /// `x-openshell-workspace`, else `default`), once the caller may use it.
    pub(super) async fn scope<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let workspace = super::workspace(request)?;
        self.member_of(&caller(request)?, &workspace).await?;
        Ok(workspace)
    }

    /// The caller's role in an existing `workspace` (`admin` for a gateway
    /// admin); PERMISSION_DENIED for a user who is no member, with the
    /// same words whether or not the workspace exists.
    async fn member_of(&self, caller: &Caller, workspace: &str) -> Result<String, Status> {
        if caller.role == Role::Admin {
            return match self.store.workspace(workspace).await.map_err(status)? {
                Some(_) => Ok(Role::Admin.as_str().to_owned()),
                None => Err(Status::not_found(format!(
                    "workspace '{workspace}' not found\nhint: create it with: openshell workspace create --name {workspace}"
                ))),
            };
        }
        self.store
            .member_role(workspace, &caller.subject)
            .await
            .map_err(status)?
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "'{}' is not a member of workspace '{workspace}'\nhint: a workspace admin adds members with: openshell workspace member add --workspace {workspace} --subject {} --role user",
                    caller.subject, caller.subject
                ))
            })
    }

    /// The workspace of a settings call: the request's for a sandbox's
    /// settings (`name` set); none for the global ones, which anyone may
    /// read and only an admin may `change`.
    pub(super) async fn settings_scope<T>(
        &self,
        request: &Request<T>,
        name: &str,
        change: bool,
    ) -> Result<String, Status> {
        if !name.is_empty() {
            return self.scope(request).await;
        }
        if change {
            self.require_admin(request, "change global settings")?;
        }
        Ok(super::DEFAULT_WORKSPACE.to_owned())
    }

    /// Refuses a caller that is not a gateway admin.
    pub(super) fn require_admin<T>(&self, request: &Request<T>, what: &str) -> Result<(), Status> {
        let caller = caller(request)?;
        match caller.role {
            Role::Admin => Ok(()),
            Role::User => Err(denied(&caller, what)),
        }
    }

    /// The workspaces a listing "across workspaces" covers: all for an
    /// admin, the caller's memberships otherwise.
    pub(super) async fn visible_workspaces(&self, caller: &Caller) -> Result<Vec<String>, Status> {
        Ok(match caller.role {
            Role::Admin => self
                .store
                .workspaces()
                .await
                .map_err(status)?
                .into_iter()
                .map(|w| w.name)
                .collect(),
            Role::User => self
                .store
                .memberships(&caller.subject)
                .await
                .map_err(status)?
                .into_iter()
                .map(|m| m.workspace)
                .collect(),
        })
    }

    /// The workspaces a listing covers: the request's, or with `all` every
    /// one the caller may see.
    pub(super) async fn listed_workspaces<T>(
        &self,
        request: &Request<T>,
        all: bool,
    ) -> Result<Vec<String>, Status> {
        if all {
            self.visible_workspaces(&caller(request)?).await
        } else {
            Ok(vec![self.scope(request).await?])
        }
    }

    pub(super) async fn current_user(
        &self,
        request: &Request<pb::GetCurrentUserRequest>,
    ) -> Result<pb::CurrentUser, Status> {
        let caller = caller(request)?;
        let memberships = self
            .store
            .memberships(&caller.subject)
            .await
            .map_err(status)?;
        Ok(pb::CurrentUser {
            subject: caller.subject,
            roles: vec![caller.role.as_str().to_owned()],
            identity_provider: caller.proof.as_str().to_owned(),
            memberships: memberships.into_iter().map(member_proto).collect(),
        })
    }

    pub(super) async fn create_workspace_as(
        &self,
        request: Request<pb::CreateWorkspaceRequest>,
    ) -> Result<pb::Workspace, Status> {
        self.require_admin(&request, "create workspaces")?;
        let request = request.into_inner();
        validate_name("workspace", &request.name)?;
        if request.name.len() > MAX_WORKSPACE_NAME {
            return Err(Status::invalid_argument(format!(
                "workspace name '{}' is longer than {MAX_WORKSPACE_NAME} characters",
                request.name
            )));
        }
        let mut labels: Vec<(String, String)> = request.labels.into_iter().collect();
        labels.sort();
        let created = self
            .store
            .create_workspace(&request.name, &labels)
            .await
            .map_err(status)?;
        tracing::info!(workspace = %created.name, "workspace created");
        Ok(to_proto(created))
    }

    pub(super) async fn get_workspace_as(
        &self,
        request: Request<pb::GetWorkspaceRequest>,
    ) -> Result<pb::Workspace, Status> {
        let caller = caller(&request)?;
        let name = request.into_inner().name;
        self.member_of(&caller, &name).await?;
        let found = self.store.workspace(&name).await.map_err(status)?;
        found.map(to_proto).ok_or_else(|| not_found(&name))
    }

    pub(super) async fn list_workspaces_as(
        &self,
        request: Request<pb::ListWorkspacesRequest>,
    ) -> Result<pb::ListWorkspacesResponse, Status> {
        let visible = self.visible_workspaces(&caller(&request)?).await?;
        let workspaces = self
            .store
            .workspaces()
            .await
            .map_err(status)?
            .into_iter()
            .filter(|w| visible.contains(&w.name))
            .map(to_proto)
            .collect();
        Ok(pb::ListWorkspacesResponse { workspaces })
    }

    pub(super) async fn delete_workspace_as(
        &self,
        request: Request<pb::GetWorkspaceRequest>,
    ) -> Result<pb::DeleteWorkspaceResponse, Status> {
        self.require_admin(&request, "delete workspaces")?;
        let name = request.into_inner().name;
        if name == super::DEFAULT_WORKSPACE {
            return Err(Status::failed_precondition(
                "the default workspace cannot be deleted",
            ));
        }
        let deleted = self.store.delete_workspace(&name).await.map_err(status)?;
        if deleted {
            tracing::info!(workspace = %name, "workspace deleted");
        }
        Ok(pb::DeleteWorkspaceResponse { deleted })
    }

    /// Refuses a caller that may not manage `workspace`'s members: neither
    /// a gateway admin nor an admin member of it.
    async fn manages_members(&self, caller: &Caller, workspace: &str) -> Result<(), Status> {
        let role = self.member_of(caller, workspace).await?;
        if role == Role::Admin.as_str() {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "'{}' may not manage the members of workspace '{workspace}': it takes an admin of the workspace",
                caller.subject
            )))
        }
    }

    pub(super) async fn add_member_as(
        &self,
        request: Request<pb::WorkspaceMember>,
    ) -> Result<pb::WorkspaceMember, Status> {
        let caller = caller(&request)?;
        let member = request.into_inner();
        self.manages_members(&caller, &member.workspace).await?;
        if !crate::auth::valid_subject(&member.subject) {
            return Err(Status::invalid_argument(format!(
                "invalid subject '{}': 1-128 of A-Z a-z 0-9 @ . _ -",
                member.subject
            )));
        }
        if Role::parse(&member.role).is_none() {
            return Err(Status::invalid_argument(format!(
                "invalid role '{}': user or admin",
                member.role
            )));
        }
        let stored = Member {
            workspace: member.workspace,
            subject: member.subject,
            role: member.role,
        };
        self.store.put_member(&stored).await.map_err(status)?;
        tracing::info!(workspace = %stored.workspace, subject = %stored.subject, role = %stored.role, by = %caller.subject, "workspace member set");
        Ok(member_proto(stored))
    }

    pub(super) async fn remove_member_as(
        &self,
        request: Request<pb::WorkspaceMember>,
    ) -> Result<pb::DeleteWorkspaceResponse, Status> {
        let caller = caller(&request)?;
        let member = request.into_inner();
        self.manages_members(&caller, &member.workspace).await?;
        let deleted = self
            .store
            .remove_member(&member.workspace, &member.subject)
            .await
            .map_err(status)?;
        Ok(pb::DeleteWorkspaceResponse { deleted })
    }

    pub(super) async fn list_members_as(
        &self,
        request: Request<pb::GetWorkspaceRequest>,
    ) -> Result<pb::ListWorkspaceMembersResponse, Status> {
        let caller = caller(&request)?;
        let name = request.into_inner().name;
        self.member_of(&caller, &name).await?;
        let members = self.store.members(&name).await.map_err(status)?;
        Ok(pb::ListWorkspaceMembersResponse {
            members: members.into_iter().map(member_proto).collect(),
        })
    }
}
