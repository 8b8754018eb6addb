//! Runtime settings (docs/cli.md, "Policy and settings"): registered keys only, per
//! sandbox or global. A global value is managed: it wins over a sandbox's,
//! and a sandbox cannot set a key the gateway sets globally.

use tonic::Status;

use openshell_proto::v1 as pb;

use openshell_core::settings::{normalize, registered};

use super::{Api, status};
use crate::store::{GLOBAL_SCOPE, sandbox_scope};

fn invalid(message: String) -> Status {
    Status::invalid_argument(message)
}

impl Api {
    /// The effective settings of a sandbox (`name` set) or the global ones.
    pub(super) async fn read_settings(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<pb::Settings, Status> {
        let global = self.store.settings(GLOBAL_SCOPE).await.map_err(status)?;
        let mut settings: Vec<pb::Setting> = global
            .into_iter()
            .map(|(key, value)| pb::Setting {
                key,
                value,
                scope: "global".to_owned(),
            })
            .collect();
        let scope = if name.is_empty() {
            GLOBAL_SCOPE.to_owned()
        } else {
            let scope = sandbox_scope(&self.existing(workspace, name).await?.id);
            let own = self.store.settings(&scope).await.map_err(status)?;
            for (key, value) in own {
                // A key set before the gateway managed it stays stored, but
                // the global value is the one in force.
                if !settings.iter().any(|s| s.key == key) {
                    settings.push(pb::Setting {
                        key,
                        value,
                        scope: "sandbox".to_owned(),
                    });
                }
            }
            settings.sort_by(|a, b| a.key.cmp(&b.key));
            scope
        };
        Ok(pb::Settings {
            sandbox: name.to_owned(),
            settings,
            revision: self.store.settings_revision(&scope).await.map_err(status)?,
            deleted: false,
        })
    }

    /// Sets (`value` given) or deletes a setting, then returns the scope's
    /// effective settings.
    pub(super) async fn write_setting(
        &self,
        workspace: &str,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<pb::Settings, Status> {
        let scope = if name.is_empty() {
            GLOBAL_SCOPE.to_owned()
        } else {
            sandbox_scope(&self.existing(workspace, name).await?.id)
        };
        let mut deleted = false;
        match value {
            Some(value) => {
                let value = normalize(key, value).map_err(invalid)?;
                if scope != GLOBAL_SCOPE {
                    let global = self.store.settings(GLOBAL_SCOPE).await.map_err(status)?;
                    if let Some((_, managed)) = global.iter().find(|(k, _)| k == key) {
                        return Err(Status::failed_precondition(format!(
                            "setting '{key}' is managed globally (value {managed}); a sandbox cannot override it\nhint: an admin removes the global value with: openshell settings delete --global --key {key} --yes"
                        )));
                    }
                }
                self.store
                    .set_setting(&scope, key, &value)
                    .await
                    .map_err(status)?;
            }
            None => {
                registered(key).map_err(invalid)?;
                deleted = self
                    .store
                    .delete_setting(&scope, key)
                    .await
                    .map_err(status)?;
            }
        }
        let mut settings = self.read_settings(workspace, name).await?;
        settings.deleted = deleted;
        Ok(settings)
    }
}
