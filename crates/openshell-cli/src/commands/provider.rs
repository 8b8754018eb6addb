//! `openshell provider …` and `openshell sandbox provider …`: credential
//! bundles a sandbox uses without seeing them (docs/providers.md). Values
//! go to the gateway once and are never printed; discovery
//! (`--from-existing`) reads this user's environment and tool configs.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use openshell_core::providers::{self as catalog, ProviderType};
use openshell_proto::v1 as pb;

use crate::client;
use crate::commands::Exit;
use crate::commands::scope::{Scope, status};
use crate::output;

type Client = crate::client::Client;

/// Where a command's credentials come from.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub from_existing: bool,
    /// `KEY=VALUE`, or `KEY` (the value read from this environment).
    pub credentials: Vec<String>,
}

/// What `provider create` and `update` send.
#[derive(Debug, Clone, Default)]
pub struct Definition {
    pub source: Source,
    /// `KEY=VALUE`; an empty value removes the key (update).
    pub config: Vec<String>,
    pub labels: Vec<String>,
}

/// `--credential` items as key → value, reading bare keys from the
/// environment. Errors name keys, never values.
fn given_credentials(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut credentials = BTreeMap::new();
    for item in items {
        let (key, value) = match item.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => {
                let value = std::env::var(item).map_err(|_| {
                    anyhow::anyhow!(
                        "--credential {item}: {item} is not set in this environment\nhint: export it, or pass --credential {item}=VALUE"
                    )
                })?;
                (item.clone(), value)
            }
        };
        if key.is_empty() {
            bail!("invalid --credential: the key is empty");
        }
        credentials.insert(key, value);
    }
    Ok(credentials)
}

/// The token `gh auth login` stored for github.com, if any
/// (`$GH_CONFIG_DIR/hosts.yml`, else `~/.config/gh/hosts.yml`).
fn gh_config_token() -> Option<String> {
    let dir = std::env::var_os("GH_CONFIG_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .map(|d| std::path::PathBuf::from(d).join("gh"))
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config/gh"))
                })
        })?;
    hosts_token(&std::fs::read_to_string(dir.join("hosts.yml")).ok()?)
}

/// github.com's `oauth_token` in gh's `hosts.yml` (a top-level host key,
/// its settings indented below it).
fn hosts_token(text: &str) -> Option<String> {
    let mut in_github = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_github = line.trim_end() == "github.com:";
            continue;
        }
        if in_github && let Some(token) = line.trim().strip_prefix("oauth_token:") {
            let token = token.trim().trim_matches(['"', '\'']);
            if !token.is_empty() {
                return Some(token.to_owned());
            }
        }
    }
    None
}

/// Discovers a type's credentials from this user's environment (and, for
/// GitHub, `gh`'s config); an error names what was looked for.
pub fn discover(kind: &ProviderType) -> anyhow::Result<BTreeMap<String, String>> {
    if kind.keys.is_empty() {
        bail!(
            "provider type '{}' has no known credentials to discover\nhint: pass --credential KEY[=VALUE]",
            kind.name
        );
    }
    let mut found = BTreeMap::new();
    for spec in kind.keys {
        let value = spec
            .discover
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
            .or_else(|| (kind.name == "github").then(gh_config_token).flatten());
        if let Some(value) = value {
            found.insert(spec.key.to_owned(), value);
        }
    }
    if found.is_empty() {
        let looked: Vec<&str> = kind.keys.iter().flat_map(|k| k.discover).copied().collect();
        let extra = if kind.name == "github" {
            " or a gh login (gh auth login)"
        } else {
            ""
        };
        bail!(
            "no local credentials for provider type '{}': none of {} is set{extra}\nhint: export one, or pass --credential KEY=VALUE",
            kind.name,
            looked.join(", ")
        );
    }
    Ok(found)
}

fn credentials_of(
    kind: &ProviderType,
    source: &Source,
) -> anyhow::Result<BTreeMap<String, String>> {
    if source.from_existing {
        discover(kind)
    } else {
        given_credentials(&source.credentials)
    }
}

fn to_json(provider: &pb::Provider) -> Value {
    let mut config_keys: Vec<&String> = provider.config.keys().collect();
    config_keys.sort();
    json!({
        "id": provider.id,
        "name": provider.name,
        "workspace": provider.workspace,
        "type": provider.r#type,
        "credential_keys": provider.credential_keys,
        "config_keys": config_keys,
        "config": provider.config.iter().collect::<BTreeMap<_, _>>(),
        "labels": provider.labels.iter().collect::<BTreeMap<_, _>>(),
        "resource_version": provider.resource_version,
        "credential_revision": provider.credential_revision,
        "created_at": openshell_core::time::Utc::from_unix(provider.created_at_ms.div_euclid(1000)).date_time(),
    })
}

fn kind_of(name: &str) -> anyhow::Result<&'static ProviderType> {
    catalog::find_type(name).with_context(|| {
        format!(
            "unknown provider type '{name}' (known: {})",
            catalog::type_names().join(", ")
        )
    })
}

async fn create_in(
    client: &mut Client,
    scope: &Scope,
    name: &str,
    kind: &ProviderType,
    credentials: BTreeMap<String, String>,
    definition: &Definition,
) -> anyhow::Result<pb::Provider> {
    let request = scope.request(pb::CreateProviderRequest {
        name: name.to_owned(),
        r#type: kind.name.to_owned(),
        credentials: credentials.into_iter().collect(),
        config: super::pairs("--config", &definition.config)?,
        labels: super::pairs("--label", &definition.labels)?,
    })?;
    Ok(client
        .create_provider(request)
        .await
        .map_err(status)?
        .into_inner())
}

pub fn create(
    scope: &Scope,
    name: &str,
    kind: &str,
    definition: &Definition,
    json_output: bool,
) -> anyhow::Result<Exit> {
    let kind = kind_of(kind)?;
    let credentials = credentials_of(kind, &definition.source)?;
    let provider = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        create_in(&mut client, scope, name, kind, credentials, definition).await
    })?;
    if json_output {
        output::json(&to_json(&provider));
    } else {
        output::success(&format!("Created provider {name}"));
    }
    Ok(Exit::Success)
}

pub fn get(scope: &Scope, name: &str, json_output: bool) -> anyhow::Result<Exit> {
    let request = scope.request(pb::GetProviderRequest {
        name: name.to_owned(),
    })?;
    let provider = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        anyhow::Ok(
            client
                .get_provider(request)
                .await
                .map_err(status)?
                .into_inner(),
        )
    })?;
    if json_output {
        output::json(&to_json(&provider));
        return Ok(Exit::Success);
    }
    let mut config: Vec<String> = provider.config.keys().cloned().collect();
    config.sort();
    let none = |items: &[String]| {
        if items.is_empty() {
            "<none>".to_owned()
        } else {
            items.join(", ")
        }
    };
    output::line("Provider:");
    output::line(&format!("  Id:               {}", provider.id));
    output::line(&format!("  Name:             {}", provider.name));
    output::line(&format!("  Type:             {}", provider.r#type));
    output::line(&format!(
        "  Resource version: {}",
        provider.resource_version
    ));
    output::line(&format!(
        "  Credential keys:  {}",
        none(&provider.credential_keys)
    ));
    output::line(&format!("  Config keys:      {}", none(&config)));
    Ok(Exit::Success)
}

/// How `provider list` prints.
#[derive(Debug, Clone, Copy)]
pub enum ListStyle {
    Table,
    Json,
    Names,
}

fn print_list(providers: &[pb::Provider], all_workspaces: bool, style: ListStyle) {
    match style {
        ListStyle::Json => output::json(&Value::Array(providers.iter().map(to_json).collect())),
        ListStyle::Names => {
            for provider in providers {
                match all_workspaces {
                    true => output::line(&format!("{}/{}", provider.workspace, provider.name)),
                    false => output::line(&provider.name),
                }
            }
        }
        ListStyle::Table => {
            let rows: Vec<Vec<String>> = providers
                .iter()
                .map(|p| {
                    let row = vec![
                        p.name.clone(),
                        p.r#type.clone(),
                        p.credential_keys.len().to_string(),
                        p.config.len().to_string(),
                    ];
                    output::with_workspace(all_workspaces, p.workspace.clone(), row)
                })
                .collect();
            output::table(
                &output::with_workspace(
                    all_workspaces,
                    "WORKSPACE",
                    vec!["NAME", "TYPE", "CREDENTIAL_KEYS", "CONFIG_KEYS"],
                ),
                &rows,
            );
        }
    }
}

pub fn list(
    scope: &Scope,
    limit: u32,
    offset: u32,
    all_workspaces: bool,
    style: ListStyle,
) -> anyhow::Result<Exit> {
    let request = scope.request(pb::ListProvidersRequest {
        limit,
        offset,
        all_workspaces,
    })?;
    let providers = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        anyhow::Ok(
            client
                .list_providers(request)
                .await
                .map_err(status)?
                .into_inner()
                .providers,
        )
    })?;
    if providers.is_empty() && matches!(style, ListStyle::Table) {
        output::line("No providers found.");
        return Ok(Exit::Success);
    }
    print_list(&providers, all_workspaces, style);
    Ok(Exit::Success)
}

pub fn update(scope: &Scope, name: &str, definition: &Definition) -> anyhow::Result<Exit> {
    let runtime = client::runtime()?;
    runtime.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let current = client
            .get_provider(scope.request(pb::GetProviderRequest {
                name: name.to_owned(),
            })?)
            .await
            .map_err(status)?
            .into_inner();
        let credentials =
            if definition.source.from_existing || !definition.source.credentials.is_empty() {
                credentials_of(kind_of(&current.r#type)?, &definition.source)?
            } else {
                BTreeMap::new()
            };
        let request = scope.request(pb::UpdateProviderRequest {
            name: name.to_owned(),
            credentials: credentials.into_iter().collect(),
            config: super::pairs("--config", &definition.config)?,
            expected_resource_version: Some(current.resource_version),
        })?;
        client.update_provider(request).await.map_err(status)?;
        anyhow::Ok(())
    })?;
    output::success(&format!("Updated provider {name}"));
    Ok(Exit::Success)
}

pub fn delete(scope: &Scope, names: &[String]) -> anyhow::Result<Exit> {
    let runtime = client::runtime()?;
    let mut client = runtime.block_on(async { client::connect(scope.target()?).await })?;
    for name in names {
        let request = scope.request(pb::DeleteProviderRequest { name: name.clone() })?;
        let deleted = runtime
            .block_on(client.delete_provider(request))
            .map_err(status)?
            .into_inner()
            .deleted;
        if deleted {
            output::success(&format!("Deleted provider {name}"));
        } else {
            output::warning(&format!("Provider {name} not found"));
        }
    }
    Ok(Exit::Success)
}

/// `sandbox provider list [NAME]`.
pub fn sandbox_list(scope: &Scope, name: &str, json_output: bool) -> anyhow::Result<Exit> {
    let request = scope.request(pb::ListSandboxProvidersRequest {
        name: name.to_owned(),
    })?;
    let providers = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        anyhow::Ok(
            client
                .list_sandbox_providers(request)
                .await
                .map_err(status)?
                .into_inner()
                .providers,
        )
    })?;
    if providers.is_empty() && !json_output {
        output::line(&format!("No providers attached to sandbox {name}."));
        return Ok(Exit::Success);
    }
    let style = if json_output {
        ListStyle::Json
    } else {
        ListStyle::Table
    };
    print_list(&providers, false, style);
    Ok(Exit::Success)
}

/// `sandbox provider attach|detach NAME PROVIDER`, guarded by the
/// sandbox's resource version.
pub fn sandbox_set(
    scope: &Scope,
    name: &str,
    provider: &str,
    attach: bool,
) -> anyhow::Result<Exit> {
    let changed = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let sandbox = client
            .get_sandbox(scope.request(pb::GetSandboxRequest {
                name: name.to_owned(),
            })?)
            .await
            .map_err(status)?
            .into_inner();
        let request = scope.request(pb::SandboxProviderRequest {
            name: name.to_owned(),
            provider: provider.to_owned(),
            expected_resource_version: Some(sandbox.resource_version),
        })?;
        let response = if attach {
            client.attach_sandbox_provider(request).await
        } else {
            client.detach_sandbox_provider(request).await
        };
        anyhow::Ok(response.map_err(status)?.into_inner().changed)
    })?;
    match (attach, changed) {
        (true, true) => output::success(&format!("Attached provider {provider} to sandbox {name}")),
        (true, false) => output::line(&format!(
            "Provider {provider} is already attached to sandbox {name}."
        )),
        (false, true) => {
            output::success(&format!("Detached provider {provider} from sandbox {name}"));
        }
        (false, false) => output::line(&format!(
            "Provider {provider} was not attached to sandbox {name}."
        )),
    }
    Ok(Exit::Success)
}

/// What `sandbox create` does about a provider its command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auto {
    /// `--auto-providers`: create it from local credentials.
    Create,
    /// `--no-auto-providers`: go without.
    Skip,
    /// Neither: ask on a terminal, refuse otherwise.
    Ask,
}

/// The providers `sandbox create` attaches: those given (a name that is no
/// provider but a type is created from local credentials), plus the one
/// the command needs (`-- claude` → `claude-code`) when none given is of
/// its type.
pub async fn for_create(
    client: &mut Client,
    scope: &Scope,
    given: &[String],
    command: &[String],
    auto: Auto,
) -> anyhow::Result<Vec<String>> {
    let existing = client
        .list_providers(scope.request(pb::ListProvidersRequest::default())?)
        .await
        .map_err(status)?
        .into_inner()
        .providers;
    let mut names = Vec::new();
    let mut types = Vec::new();
    for name in given {
        if let Some(provider) = existing.iter().find(|p| &p.name == name) {
            names.push(name.clone());
            types.push(provider.r#type.clone());
        } else if let Some(kind) = catalog::find_type(name) {
            let credentials = discover(kind).with_context(|| {
                format!("--provider {name}: no provider of that name; creating one of type '{}' from local credentials failed", kind.name)
            })?;
            create_in(
                client,
                scope,
                name,
                kind,
                credentials,
                &Definition::default(),
            )
            .await?;
            output::success_stderr(&format!("Created provider {name} from local credentials"));
            names.push(name.clone());
            types.push(kind.name.to_owned());
        } else {
            bail!(
                "provider '{name}' not found (list them with: openshell provider list; create one with: openshell provider create --name {name} --type TYPE --from-existing)"
            );
        }
    }
    let Some(needed) = catalog::type_for_command(command) else {
        return Ok(names);
    };
    if types.iter().any(|t| t == needed.name) || auto == Auto::Skip {
        return Ok(names);
    }
    if let Some(provider) = existing.iter().find(|p| p.r#type == needed.name) {
        output::arrow(&format!(
            "Using provider '{}' for '{}' (type {})",
            provider.name, command[0], needed.name
        ));
        names.push(provider.name.clone());
        return Ok(names);
    }
    let keys: Vec<&str> = needed.keys.iter().map(|k| k.key).collect();
    if auto == Auto::Ask {
        if !std::io::stdin().is_terminal() {
            bail!(
                "missing required provider '{}' for command '{}'\nhint: pass --auto-providers to create it from your local credentials ({}), --provider NAME to use one you made, or --no-auto-providers to run without",
                needed.name,
                command[0],
                keys.join(", ")
            );
        }
        let answer = output::ask(&format!(
            "'{}' needs a '{}' provider. Create from local credentials? [Y/n]",
            command[0], needed.name
        ))?;
        if answer.eq_ignore_ascii_case("n") || answer.eq_ignore_ascii_case("no") {
            return Ok(names);
        }
    }
    let credentials = discover(needed)?;
    let name = std::iter::once(needed.name.to_owned())
        .chain((1..=4).map(|i| format!("{}-{i}", needed.name)))
        .find(|candidate| !existing.iter().any(|p| &p.name == candidate))
        .with_context(|| {
            format!(
                "provider names {0} and {0}-1…{0}-4 are all taken",
                needed.name
            )
        })?;
    create_in(
        client,
        scope,
        &name,
        needed,
        credentials,
        &Definition::default(),
    )
    .await?;
    output::success_stderr(&format!("Created provider {name} from local credentials"));
    names.push(name);
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gh_token_is_github_coms_and_nobody_elses() {
        let hosts = "ghe.corp.test:\n    oauth_token: gho_corp\n    user: me\ngithub.com:\n    git_protocol: https\n    oauth_token: \"gho_public\"\n    user: me\n";
        assert_eq!(hosts_token(hosts).as_deref(), Some("gho_public"));
        assert_eq!(
            hosts_token("ghe.corp.test:\n    oauth_token: gho_corp\n"),
            None
        );
        assert_eq!(hosts_token("github.com:\n    user: me\n"), None);
    }

    #[test]
    fn given_credentials_read_bare_keys_from_the_environment_and_never_echo_values() {
        let given = given_credentials(&["A=1=2".to_owned(), "PATH".to_owned()]).unwrap();
        assert_eq!(given["A"], "1=2");
        assert_eq!(given["PATH"], std::env::var("PATH").unwrap());
        let missing = given_credentials(&["OPENSHELL_TEST_UNSET_KEY_42".to_owned()]).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("is not set in this environment")
        );
        assert!(given_credentials(&["=x".to_owned()]).is_err());
    }
}
