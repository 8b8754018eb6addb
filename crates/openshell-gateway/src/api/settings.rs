//! Runtime settings (docs/cli.md, "Policy and settings"): registered keys only, per
//! sandbox or global; a sandbox sees the global value unless it sets its own.

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
        if !name.is_empty() {
            let sandbox = self.existing(workspace, name).await?;
            let own = self
                .store
                .settings(&sandbox_scope(&sandbox.id))
                .await
                .map_err(status)?;
            for (key, value) in own {
                settings.retain(|s| s.key != key);
                settings.push(pb::Setting {
                    key,
                    value,
                    scope: "sandbox".to_owned(),
                });
            }
            settings.sort_by(|a, b| a.key.cmp(&b.key));
        }
        Ok(pb::Settings {
            sandbox: name.to_owned(),
            settings,
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
        match value {
            Some(value) => {
                let value = normalize(key, value).map_err(invalid)?;
                self.store
                    .set_setting(&scope, key, &value)
                    .await
                    .map_err(status)?;
            }
            None => {
                registered(key).map_err(invalid)?;
                self.store
                    .delete_setting(&scope, key)
                    .await
                    .map_err(status)?;
            }
        }
        self.read_settings(workspace, name).await
    }
}
