//! Policy revisions: `SetPolicy` stores a validated revision and delivers it
//! to the supervisor, which reports whether it loaded it.

use tonic::Status;

use openshell_proto::v1 as pb;

use super::{Api, status, validate_policy};
use crate::store::Revision;

fn to_proto(
    sandbox: &str,
    revision: Revision,
    active_version: i64,
    unchanged: bool,
) -> pb::PolicyRevision {
    pb::PolicyRevision {
        sandbox: sandbox.to_owned(),
        version: revision.version,
        hash: revision.hash,
        status: revision.status.as_str().to_owned(),
        error: revision.error.unwrap_or_default(),
        created_at_ms: revision.created_at_ms,
        loaded_at_ms: revision.loaded_at_ms.unwrap_or(0),
        policy_yaml: revision.yaml,
        active_version,
        unchanged,
    }
}

impl Api {
    /// The newest revision the supervisor loaded (0: none).
    async fn active(&self, sandbox_id: &str) -> Result<i64, Status> {
        self.store.active_version(sandbox_id).await.map_err(status)
    }

    pub(super) async fn store_policy(
        &self,
        workspace: &str,
        request: pb::SetPolicyRequest,
    ) -> Result<pb::PolicyRevision, Status> {
        let sandbox = self.existing(workspace, &request.name).await?;
        if request.policy_yaml.trim().is_empty() {
            return Err(Status::invalid_argument("the policy is empty"));
        }
        validate_policy(&request.policy_yaml)?;
        let attached = self
            .store
            .sandbox_providers(&sandbox.id)
            .await
            .map_err(status)?;
        super::providers::check_bindings(&request.policy_yaml, &attached)?;
        let (revision, stored) = self
            .store
            .add_revision(&sandbox.id, &request.policy_yaml, request.expected_version)
            .await
            .map_err(status)?;
        if stored {
            tracing::info!(sandbox = %sandbox.name, version = revision.version, "policy revision submitted");
            // Not connected: the supervisor gets it when it connects.
            self.sessions
                .send_policy(&sandbox.id, revision.version, &revision.yaml);
        }
        let active = self.active(&sandbox.id).await?;
        Ok(to_proto(&sandbox.name, revision, active, !stored))
    }

    pub(super) async fn read_policy(
        &self,
        workspace: &str,
        request: pb::GetPolicyRequest,
    ) -> Result<pb::PolicyRevision, Status> {
        let sandbox = self.existing(workspace, &request.name).await?;
        // Version 0 is the effective revision: the one loaded, else the latest.
        let version = match request.version {
            0 => self.active(&sandbox.id).await?,
            n => n,
        };
        let revision = self
            .store
            .revision(&sandbox.id, version)
            .await
            .map_err(status)?
            .ok_or_else(|| match request.version {
                0 => Status::not_found(format!(
                    "sandbox '{}' has no policy revisions (it runs the built-in default policy)",
                    sandbox.name
                )),
                n => Status::not_found(format!(
                    "sandbox '{}' has no policy version {n}",
                    sandbox.name
                )),
            })?;
        // Read after the revision: a revision seen loaded is never newer
        // than the active version reported with it.
        let active = self.active(&sandbox.id).await?;
        Ok(to_proto(&sandbox.name, revision, active, false))
    }

    pub(super) async fn read_policies(
        &self,
        workspace: &str,
        request: pb::ListPoliciesRequest,
    ) -> Result<pb::ListPoliciesResponse, Status> {
        let sandbox = self.existing(workspace, &request.name).await?;
        let active = self.active(&sandbox.id).await?;
        let revisions = self
            .store
            .revisions(&sandbox.id, request.limit)
            .await
            .map_err(status)?
            .into_iter()
            .map(|r| to_proto(&sandbox.name, r, active, false))
            .collect();
        Ok(pb::ListPoliciesResponse { revisions })
    }
}
