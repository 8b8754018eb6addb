//! A sandbox's lifecycle: create (validated, recorded, then run by the
//! driver; nothing half-made is left when the driver fails), stop and
//! start (which end the session of the supervisor that ran before).

use tonic::Status;

use openshell_proto::v1 as pb;

use super::{
    Api, chain, driver_status, new_id, providers, status, to_proto, validate_name, validate_policy,
};
use crate::drivers::{DriverError, PolicyRevision};
use crate::store::{Phase, Spec};

impl Api {
    pub(super) async fn create_sandbox_in(
        &self,
        workspace: &str,
        request: pb::CreateSandboxRequest,
    ) -> Result<pb::Sandbox, Status> {
        let id = new_id();
        let name = if request.name.is_empty() {
            format!("sandbox-{}", &id[..6])
        } else {
            request.name
        };
        validate_name("sandbox", &name)?;
        let spec = request.spec.unwrap_or_default();
        if !spec.policy_yaml.is_empty() {
            validate_policy(&spec.policy_yaml)?;
        }
        if spec.memory_bytes != 0 && spec.memory_bytes < openshell_core::resources::MIN_MEMORY
            || spec.pids != 0 && spec.pids < 16
        {
            return Err(Status::invalid_argument(
                "resource limits too small: memory at least 16 MiB, processes at least 16",
            ));
        }
        let providers = self.providers_named(workspace, &spec.providers).await?;
        providers::check_bindings(&spec.policy_yaml, &providers)?;
        let mut env: Vec<(String, String)> = spec.env.into_iter().collect();
        env.sort();
        let mut labels: Vec<(String, String)> = spec.labels.into_iter().collect();
        labels.sort();
        let spec = Spec {
            command: spec.command,
            policy_yaml: spec.policy_yaml,
            env,
            labels,
            image: spec.image,
            gpu: spec.gpu,
            cpu_millis: spec.cpu_millis,
            memory_bytes: spec.memory_bytes,
            pids: spec.pids,
            tty: spec.tty,
        };
        if let Some(driver) = &self.driver {
            driver.validate(&spec).await.map_err(|error| {
                tracing::warn!(sandbox = %name, "the driver refused or failed to check the spec");
                driver_status(error)
            })?;
        }
        let created = self
            .store
            .create_sandbox_with(&id, workspace, &name, &spec, &providers)
            .await
            .map_err(status)?;
        tracing::info!(sandbox = %created.name, id = %created.id, %workspace, "sandbox created");
        let mut created = created;
        let launched = self.launchable(&created).await?;
        if let Some(driver) = &self.driver
            && let Err(error) = driver
                .create(
                    &launched,
                    (!created.spec.policy_yaml.is_empty()).then_some(PolicyRevision {
                        version: 1,
                        yaml: &created.spec.policy_yaml,
                    }),
                )
                .await
        {
            if let DriverError::Refused(message) = error {
                // Refused as asked (the image cannot host a supervisor, the
                // engine would not start it): nothing stays behind.
                tracing::warn!(sandbox = %created.name, %message, "sandbox refused by the driver");
                if let Err(cleanup) = driver.delete(&created.id).await {
                    tracing::error!(error = %chain(cleanup), sandbox = %created.name, "removing a refused sandbox");
                }
                self.store
                    .delete_sandbox(workspace, &created.name)
                    .await
                    .map_err(status)?;
                return Err(Status::failed_precondition(message));
            }
            tracing::error!(error = %chain(error), sandbox = %created.name, "starting the sandbox");
            self.store
                .set_phase(&created.id, Phase::Error, None)
                .await
                .map_err(status)?;
            created.phase = Phase::Error;
        }
        Ok(to_proto(created))
    }

    pub(super) async fn stop_sandbox_in(
        &self,
        workspace: &str,
        request: pb::StopSandboxRequest,
    ) -> Result<pb::Sandbox, Status> {
        let name = request.name;
        let sandbox = self.existing(workspace, &name).await?;
        if let Some(driver) = &self.driver {
            driver.stop(&sandbox.id).await;
        }
        self.sessions.end(&sandbox.id, "the sandbox was stopped");
        if !matches!(sandbox.phase, Phase::Stopped | Phase::Error) {
            self.store
                .set_phase(&sandbox.id, Phase::Stopped, None)
                .await
                .map_err(status)?;
        }
        Ok(to_proto(self.existing(workspace, &name).await?))
    }

    pub(super) async fn start_sandbox_in(
        &self,
        workspace: &str,
        request: pb::StartSandboxRequest,
    ) -> Result<pb::Sandbox, Status> {
        let name = request.name;
        let sandbox = self.existing(workspace, &name).await?;
        let Some(driver) = &self.driver else {
            return Err(Status::failed_precondition(
                "this gateway runs no sandboxes",
            ));
        };
        if driver.running(&sandbox.id) {
            return Ok(to_proto(sandbox));
        }
        self.store
            .reset_for_start(&sandbox.id)
            .await
            .map_err(status)?;
        // The latest revision: policy set while stopped applies on start.
        let latest = self.store.revision(&sandbox.id, 0).await.map_err(status)?;
        let policy = latest.as_ref().map(|r| PolicyRevision {
            version: r.version,
            yaml: &r.yaml,
        });
        let launched = self.launchable(&sandbox).await?;
        // A session of the supervisor that ran before is stale by now.
        self.sessions.end(&sandbox.id, "the sandbox was restarted");
        if let Err(error) = driver.create(&launched, policy).await {
            tracing::error!(error = %chain(error), sandbox = %name, "restarting the sandbox");
            self.store
                .set_phase(&sandbox.id, Phase::Error, None)
                .await
                .map_err(status)?;
        }
        Ok(to_proto(self.existing(workspace, &name).await?))
    }
}
