//! `openshell settings get|set|delete`: runtime settings of a sandbox
//! (inheriting the global ones) or of the whole gateway.

use serde_json::json;

use openshell_core::settings::{KEYS, normalize, registered};
use openshell_proto::v1 as pb;

use crate::client;
use crate::commands::Exit;
use crate::commands::scope::{Scope, status};
use crate::output;

/// Which settings a command addresses.
#[derive(Debug, Clone)]
pub enum Target {
    Sandbox(String),
    Global,
}

impl Target {
    fn name(&self) -> String {
        match self {
            Target::Sandbox(name) => name.clone(),
            Target::Global => String::new(),
        }
    }
}

pub fn get(scope: &Scope, target: &Target, json_output: bool) -> anyhow::Result<Exit> {
    let request = scope.request(pb::GetSettingsRequest {
        name: target.name(),
    })?;
    let settings = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        anyhow::Ok(
            client
                .get_settings(request)
                .await
                .map_err(status)?
                .into_inner(),
        )
    })?;
    print(scope, target, &settings, json_output);
    Ok(Exit::Success)
}

/// Sets (`value` given) or deletes a key, saying so as the reference CLI
/// does (`✓ Set global setting K=V (revision R)`, `! … not found`).
pub fn change(
    scope: &Scope,
    target: &Target,
    key: &str,
    value: Option<&str>,
) -> anyhow::Result<Exit> {
    let runtime = client::runtime()?;
    let mut client = runtime.block_on(async { client::connect(scope.target()?).await })?;
    let whose = match target {
        Target::Sandbox(name) => format!("sandbox setting {{}} for {name}"),
        Target::Global => "global setting {}".to_owned(),
    };
    match value {
        Some(value) => {
            let value = normalize(key, value).map_err(anyhow::Error::msg)?;
            let request = scope.request(pb::SetSettingRequest {
                name: target.name(),
                key: key.to_owned(),
                value: value.clone(),
            })?;
            let settings = runtime
                .block_on(client.set_setting(request))
                .map_err(status)?
                .into_inner();
            output::success(&format!(
                "Set {} (revision {})",
                whose.replace("{}", &format!("{key}={value}")),
                settings.revision
            ));
        }
        None => {
            registered(key).map_err(anyhow::Error::msg)?;
            let request = scope.request(pb::DeleteSettingRequest {
                name: target.name(),
                key: key.to_owned(),
            })?;
            let settings = runtime
                .block_on(client.delete_setting(request))
                .map_err(status)?
                .into_inner();
            if settings.deleted {
                output::success(&format!(
                    "Deleted {} (revision {})",
                    whose.replace("{}", key),
                    settings.revision
                ));
            } else {
                output::warning(&format!("{} not found", whose.replace("{}", key)));
            }
        }
    }
    Ok(Exit::Success)
}

fn print(scope: &Scope, target: &Target, settings: &pb::Settings, json_output: bool) {
    let value_of = |key: &str| settings.settings.iter().find(|s| s.key == key);
    if json_output {
        let document = match target {
            Target::Sandbox(name) => json!({
                "sandbox": name,
                "workspace": scope.workspace,
                "settings_revision": settings.revision,
                "settings": KEYS
                    .iter()
                    .map(|(key, _)| {
                        let entry = value_of(key);
                        (
                            (*key).to_owned(),
                            json!({
                                "value": entry.map(|s| s.value.clone()),
                                "scope": entry.map_or("unset", |s| s.scope.as_str()),
                            }),
                        )
                    })
                    .collect::<serde_json::Map<_, _>>(),
            }),
            Target::Global => json!({
                "scope": "global",
                "settings_revision": settings.revision,
                "settings": settings
                    .settings
                    .iter()
                    .map(|s| (s.key.clone(), json!(s.value)))
                    .collect::<serde_json::Map<_, _>>(),
            }),
        };
        output::json(&document);
        return;
    }
    match target {
        Target::Sandbox(name) => output::line(&format!("Sandbox:       {name}")),
        Target::Global => output::line("Scope:         global"),
    }
    output::line(&format!("Settings Rev:  {}", settings.revision));
    output::line("Settings:");
    for (key, _) in KEYS {
        match value_of(key) {
            Some(setting) => {
                output::line(&format!("  {key} = {} ({})", setting.value, setting.scope))
            }
            None => output::line(&format!("  {key} = <unset> (unset)")),
        }
    }
}
