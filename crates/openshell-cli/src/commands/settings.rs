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
    print(target, &settings, json_output);
    Ok(Exit::Success)
}

/// Sets (`value` given) or deletes a key.
pub fn change(
    scope: &Scope,
    target: &Target,
    key: &str,
    value: Option<&str>,
) -> anyhow::Result<Exit> {
    let runtime = client::runtime()?;
    let mut client = runtime.block_on(async { client::connect(scope.target()?).await })?;
    match value {
        Some(value) => {
            let value = normalize(key, value).map_err(anyhow::Error::msg)?;
            let request = scope.request(pb::SetSettingRequest {
                name: target.name(),
                key: key.to_owned(),
                value: value.clone(),
            })?;
            runtime
                .block_on(client.set_setting(request))
                .map_err(status)?;
            output::success(&format!("Setting {key} = {value}"));
        }
        None => {
            registered(key).map_err(anyhow::Error::msg)?;
            let request = scope.request(pb::DeleteSettingRequest {
                name: target.name(),
                key: key.to_owned(),
            })?;
            runtime
                .block_on(client.delete_setting(request))
                .map_err(status)?;
            output::success(&format!("Setting {key} deleted"));
        }
    }
    Ok(Exit::Success)
}

fn print(target: &Target, settings: &pb::Settings, json_output: bool) {
    let value_of = |key: &str| settings.settings.iter().find(|s| s.key == key);
    if json_output {
        let items: serde_json::Map<String, serde_json::Value> = KEYS
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
            .collect();
        let scope = match target {
            Target::Sandbox(_) => "sandbox",
            Target::Global => "global",
        };
        output::json(&json!({
            "scope": scope,
            "sandbox": (!settings.sandbox.is_empty()).then_some(&settings.sandbox),
            "settings": items,
        }));
        return;
    }
    match target {
        Target::Sandbox(name) => output::line(&format!("Sandbox:       {name}")),
        Target::Global => output::line("Scope:         global"),
    }
    output::line("Settings:");
    for (key, _) in KEYS {
        match value_of(key) {
            Some(setting) => {
                output::line(&format!("  {key} = {} ({})", setting.value, setting.scope))
            }
            None => output::line(&format!("  {key} = - (unset)")),
        }
    }
}
