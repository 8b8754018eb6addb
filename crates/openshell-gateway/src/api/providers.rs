//! Providers (docs/providers.md): credential bundles the gateway keeps
//! sealed and hands only to the supervisors of the sandboxes they are
//! attached to, over the session. A sandbox's processes see placeholders
//! ([`openshell_core::providers::placeholder`]), never values.
//!
//! Secrets never appear in a response, a log line or an error message:
//! every message here names keys and providers, not values.

use std::collections::BTreeMap;

use tonic::Status;

use openshell_core::providers::{self as catalog, BindingEndpoint, ENDPOINTS_CONFIG};
use openshell_proto::v1 as pb;
use pb::gateway_message::Kind as ToSupervisor;

use super::{Api, new_id, status, validate_name};
use crate::store::{self, Provider, ProviderChange};

/// Longest credential value accepted.
const MAX_VALUE: usize = 16 * 1024;
/// Most credential revisions whose placeholders still resolve.
const REVISIONS_KEPT: i64 = 64;
/// Default and largest page of `ListProviders`.
const PAGE: u32 = 100;

fn to_proto(provider: Provider) -> pb::Provider {
    pb::Provider {
        id: provider.id,
        name: provider.name,
        r#type: provider.kind,
        credential_keys: provider.credential_keys,
        config: provider.config.into_iter().collect(),
        labels: provider.labels.into_iter().collect(),
        resource_version: provider.resource_version,
        created_at_ms: provider.created_at_ms,
        updated_at_ms: provider.updated_at_ms,
        credential_revision: provider.credential_revision,
        workspace: provider.workspace,
    }
}

/// Checks credential keys and values; the message never holds a value.
fn check_credentials(credentials: &BTreeMap<String, String>) -> Result<(), Status> {
    for (key, value) in credentials {
        if !catalog::valid_key(key) {
            return Err(Status::invalid_argument(format!(
                "invalid credential key '{key}': use [A-Za-z_][A-Za-z0-9_]* (OPENSHELL_* is reserved)"
            )));
        }
        if catalog::reserved_key(key) {
            return Err(Status::invalid_argument(format!(
                "credential key '{key}' is reserved: keys starting with v<digits>_ or s<64 hex>_ would read as placeholder scopes"
            )));
        }
        if value.is_empty() {
            return Err(Status::invalid_argument(format!(
                "credential '{key}' has an empty value"
            )));
        }
        if value.len() > MAX_VALUE {
            return Err(Status::invalid_argument(format!(
                "credential '{key}' is longer than {MAX_VALUE} bytes"
            )));
        }
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(Status::invalid_argument(format!(
                "credential '{key}' contains CR, LF or NUL, which could split a request it is injected into"
            )));
        }
    }
    Ok(())
}

fn check_config(config: &BTreeMap<String, String>) -> Result<(), Status> {
    for (key, value) in config {
        if key.is_empty() || key.len() > 128 {
            return Err(Status::invalid_argument(format!(
                "invalid config key '{key}'"
            )));
        }
        if key == ENDPOINTS_CONFIG {
            endpoints_from(value).map_err(Status::invalid_argument)?;
        }
    }
    Ok(())
}

fn endpoints_from(text: &str) -> Result<Vec<BindingEndpoint>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(BindingEndpoint::parse)
        .collect()
}

/// Where a provider's credentials may go: its `endpoints` config, else its
/// type's endpoints (empty: the policy's `credential_binding`).
pub(crate) fn binding(provider: &Provider) -> Vec<String> {
    if let Some((_, text)) = provider.config.iter().find(|(k, _)| k == ENDPOINTS_CONFIG) {
        return endpoints_from(text)
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
    }
    catalog::find_type(&provider.kind)
        .map(|t| t.endpoints.iter().map(|e| (*e).to_owned()).collect())
        .unwrap_or_default()
}

/// The shape of `key` for a provider's type, if it has one.
fn shape(provider: &Provider, key: &str) -> Option<catalog::Shape> {
    catalog::find_type(&provider.kind)
        .and_then(|t| t.key(key))
        .and_then(|k| k.shape)
}

fn seed(sandbox_id: &str, provider: &Provider) -> String {
    format!("{sandbox_id}/{}", provider.id)
}

/// The environment a sandbox's processes start with for its providers:
/// every credential key with its current placeholder.
pub(crate) fn placeholder_env(sandbox_id: &str, providers: &[Provider]) -> Vec<(String, String)> {
    let revision = |p: &Provider| u64::try_from(p.credential_revision).unwrap_or(1);
    providers
        .iter()
        .flat_map(|provider| {
            provider.credential_keys.iter().map(move |key| {
                (
                    key.clone(),
                    catalog::placeholder(
                        shape(provider, key),
                        key,
                        revision(provider),
                        &seed(sandbox_id, provider),
                    ),
                )
            })
        })
        .collect()
}

/// Refuses a set of providers two of which give the same key: the
/// sandbox's environment could hold only one of them.
fn check_distinct_keys(providers: &[Provider]) -> Result<(), Status> {
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for provider in providers {
        for key in &provider.credential_keys {
            if let Some(other) = owner.insert(key, &provider.name) {
                return Err(Status::failed_precondition(format!(
                    "providers '{other}' and '{}' both provide {key}; a sandbox can use only one of them",
                    provider.name
                )));
            }
        }
    }
    Ok(())
}

/// A policy's `credential_binding` entries against the providers attached
/// (docs/providers.md, "Bindings"): each must name an attached provider
/// whose type has no endpoints of its own, on an endpoint the proxy
/// inspects.
pub(crate) fn check_bindings(policy_yaml: &str, providers: &[Provider]) -> Result<(), Status> {
    if policy_yaml.trim().is_empty() {
        return Ok(());
    }
    let Ok(validated) = openshell_policy::load_str(policy_yaml) else {
        return Ok(()); // validate_policy reports it
    };
    for (key, rule) in &validated.policy.network {
        for endpoint in &rule.endpoints {
            let Some(name) = &endpoint.credential_provider else {
                continue;
            };
            let at = format!("network_policies.{key} ({})", endpoint.selector());
            let Some(provider) = providers.iter().find(|p| &p.name == name) else {
                return Err(Status::invalid_argument(format!(
                    "{at}: credential_binding names provider '{name}', which is not attached to the sandbox (attach it with: openshell sandbox provider attach <sandbox> {name})"
                )));
            };
            if !binding(provider).is_empty() {
                return Err(Status::invalid_argument(format!(
                    "{at}: credential_binding names provider '{name}', whose credentials are already bound to its type's endpoints; a policy cannot widen them"
                )));
            }
        }
    }
    Ok(())
}

impl Api {
    pub(super) async fn provider(&self, workspace: &str, name: &str) -> Result<Provider, Status> {
        self.store
            .get_provider(workspace, name)
            .await
            .map_err(status)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "provider '{name}' not found (list them with: openshell provider list)"
                ))
            })
    }

    /// The providers named, in a workspace (NOT_FOUND for the first
    /// missing one).
    pub(crate) async fn providers_named(
        &self,
        workspace: &str,
        names: &[String],
    ) -> Result<Vec<Provider>, Status> {
        let mut providers = Vec::new();
        for name in names {
            if providers.iter().any(|p: &Provider| &p.name == name) {
                continue;
            }
            providers.push(self.provider(workspace, name).await?);
        }
        check_distinct_keys(&providers)?;
        Ok(providers)
    }

    pub(super) fn open_credentials(
        &self,
        provider: &Provider,
    ) -> Result<BTreeMap<String, String>, Status> {
        let plain = self
            .keyring
            .open(&provider.id, &provider.sealed)
            .map_err(|error| {
                tracing::error!(provider = %provider.name, error = %super::chain(error), "opening a provider's credentials");
                Status::internal("the provider's credentials cannot be read; see the gateway log")
            })?;
        serde_json::from_slice(&plain).map_err(|_| {
            tracing::error!(provider = %provider.name, "a provider's credentials are not a JSON map");
            Status::internal("the provider's credentials cannot be read; see the gateway log")
        })
    }

    fn seal(&self, id: &str, credentials: &BTreeMap<String, String>) -> Result<String, Status> {
        let plain = serde_json::to_vec(credentials).map_err(|_| Status::internal("encoding"))?;
        self.keyring.seal(id, &plain).map_err(|error| {
            tracing::error!(error = %super::chain(error), "sealing credentials");
            Status::internal("the credentials could not be sealed; see the gateway log")
        })
    }

    pub(super) async fn create_provider_in(
        &self,
        workspace: &str,
        request: pb::CreateProviderRequest,
    ) -> Result<pb::Provider, Status> {
        validate_name("provider", &request.name)?;
        let Some(kind) = catalog::find_type(&request.r#type) else {
            return Err(Status::invalid_argument(format!(
                "unknown provider type '{}' (known: {})",
                request.r#type,
                catalog::type_names().join(", ")
            )));
        };
        let credentials: BTreeMap<String, String> = request.credentials.into_iter().collect();
        if credentials.is_empty() {
            return Err(Status::invalid_argument(
                "a provider needs at least one credential (--credential KEY[=VALUE] or --from-existing)",
            ));
        }
        check_credentials(&credentials)?;
        let config: BTreeMap<String, String> = request.config.into_iter().collect();
        check_config(&config)?;
        let id = new_id();
        let now = store::now_ms();
        let provider = Provider {
            sealed: self.seal(&id, &credentials)?,
            id,
            workspace: workspace.to_owned(),
            name: request.name,
            kind: kind.name.to_owned(),
            credential_keys: credentials.keys().cloned().collect(),
            config: config.into_iter().collect(),
            labels: request.labels.into_iter().collect(),
            resource_version: 1,
            credential_revision: 1,
            created_at_ms: now,
            updated_at_ms: now,
        };
        self.store
            .create_provider(&provider)
            .await
            .map_err(status)?;
        tracing::info!(provider = %provider.name, r#type = %provider.kind, %workspace, "provider created");
        Ok(to_proto(provider))
    }

    pub(super) async fn get_provider_in(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<pb::Provider, Status> {
        self.provider(workspace, name).await.map(to_proto)
    }

    pub(super) async fn list_providers_in(
        &self,
        workspaces: &[String],
        request: pb::ListProvidersRequest,
    ) -> Result<pb::ListProvidersResponse, Status> {
        let limit = match request.limit {
            0 => PAGE,
            n => n.min(PAGE),
        };
        // One page across the workspaces, in workspace then name order.
        let mut providers = Vec::new();
        for workspace in workspaces {
            providers.extend(
                self.store
                    .list_providers(workspace, request.offset.saturating_add(limit), 0)
                    .await
                    .map_err(status)?,
            );
        }
        Ok(pb::ListProvidersResponse {
            providers: providers
                .into_iter()
                .skip(request.offset as usize)
                .take(limit as usize)
                .map(to_proto)
                .collect(),
        })
    }

    pub(super) async fn update_provider_in(
        &self,
        workspace: &str,
        request: pb::UpdateProviderRequest,
    ) -> Result<pb::Provider, Status> {
        let current = self.provider(workspace, &request.name).await?;
        if request.credentials.is_empty() && request.config.is_empty() {
            return Err(Status::invalid_argument(
                "nothing to update: give --credential, --from-existing or --config",
            ));
        }
        let given: BTreeMap<String, String> = request.credentials.into_iter().collect();
        check_credentials(&given)?;
        let given_config: BTreeMap<String, String> = request.config.into_iter().collect();
        check_config(&given_config)?;
        let mut credentials = self.open_credentials(&current)?;
        let before = credentials.clone();
        credentials.extend(given);
        let mut config: BTreeMap<String, String> = current.config.iter().cloned().collect();
        for (key, value) in given_config {
            if value.is_empty() {
                config.remove(&key);
            } else {
                config.insert(key, value);
            }
        }
        let change = ProviderChange {
            credential_keys: credentials.keys().cloned().collect(),
            sealed: self.seal(&current.id, &credentials)?,
            config: config.into_iter().collect(),
            credentials_changed: credentials != before,
        };
        let updated = self
            .store
            .update_provider(&current, request.expected_resource_version, change)
            .await
            .map_err(status)?;
        tracing::info!(provider = %updated.name, revision = updated.credential_revision, "provider updated");
        for sandbox_id in self
            .store
            .sandboxes_using(&updated.id)
            .await
            .map_err(status)?
        {
            self.deliver_credentials(&sandbox_id).await;
        }
        self.provider_changed(&updated).await;
        Ok(to_proto(updated))
    }

    pub(super) async fn delete_provider_in(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<pb::DeleteProviderResponse, Status> {
        let deleted = self
            .store
            .delete_provider(workspace, name)
            .await
            .map_err(status)?;
        if deleted {
            tracing::info!(provider = %name, %workspace, "provider deleted");
        }
        Ok(pb::DeleteProviderResponse { deleted })
    }

    pub(super) async fn list_sandbox_providers_in(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<pb::ListProvidersResponse, Status> {
        let sandbox = self.existing(workspace, name).await?;
        let providers = self
            .store
            .sandbox_providers(&sandbox.id)
            .await
            .map_err(status)?;
        Ok(pb::ListProvidersResponse {
            providers: providers.into_iter().map(to_proto).collect(),
        })
    }

    pub(super) async fn set_sandbox_provider(
        &self,
        workspace: &str,
        request: pb::SandboxProviderRequest,
        attach: bool,
    ) -> Result<pb::SandboxProviderResponse, Status> {
        let sandbox = self.existing(workspace, &request.name).await?;
        let provider = self.provider(workspace, &request.provider).await?;
        let mut attached = self
            .store
            .sandbox_providers(&sandbox.id)
            .await
            .map_err(status)?;
        let latest = self.store.revision(&sandbox.id, 0).await.map_err(status)?;
        let policy = latest.map(|r| r.yaml).unwrap_or_default();
        if attach {
            if !attached.iter().any(|p| p.id == provider.id) {
                attached.push(provider.clone());
            }
            check_distinct_keys(&attached)?;
        } else {
            attached.retain(|p| p.id != provider.id);
            // Detaching what the policy binds would leave a binding to
            // nothing; the policy changes first.
            check_bindings(&policy, &attached).map_err(|e| {
                Status::failed_precondition(format!(
                    "{}; change the policy before detaching",
                    e.message()
                ))
            })?;
        }
        let (changed, resource_version) = self
            .store
            .set_attached(
                &sandbox.id,
                &sandbox.name,
                &provider,
                attach,
                request.expected_resource_version,
            )
            .await
            .map_err(status)?;
        if changed {
            tracing::info!(sandbox = %sandbox.name, provider = %provider.name, attach, "sandbox providers changed");
            self.deliver_credentials(&sandbox.id).await;
        }
        Ok(pb::SandboxProviderResponse {
            changed,
            resource_version,
        })
    }

    /// Everything a sandbox's supervisor needs to substitute its
    /// providers' credentials.
    pub(crate) async fn credentials_of(
        &self,
        sandbox_id: &str,
    ) -> Result<pb::SandboxCredentials, Status> {
        let providers = self
            .store
            .sandbox_providers(sandbox_id)
            .await
            .map_err(status)?;
        let mut credentials = Vec::new();
        for provider in &providers {
            let values = self.open_credentials(provider)?;
            let endpoints = binding(provider);
            let seed = seed(sandbox_id, provider);
            let newest = provider.credential_revision.max(1);
            for (key, value) in values {
                let shape = shape(provider, &key);
                let placeholders = (1.max(newest - REVISIONS_KEPT + 1)..=newest)
                    .rev()
                    .map(|r| {
                        catalog::placeholder(shape, &key, u64::try_from(r).unwrap_or(1), &seed)
                    })
                    .collect();
                credentials.push(pb::BoundCredential {
                    provider: provider.name.clone(),
                    key,
                    value,
                    placeholders,
                    endpoints: endpoints.clone(),
                });
            }
        }
        Ok(pb::SandboxCredentials { credentials })
    }

    /// Sends a sandbox's credentials to its supervisor if it is connected
    /// (otherwise it gets them when it connects).
    pub(crate) async fn deliver_credentials(&self, sandbox_id: &str) {
        match self.credentials_of(sandbox_id).await {
            Ok(credentials) => {
                let n = credentials.credentials.len();
                let sent = self
                    .sessions
                    .deliver(
                        sandbox_id,
                        pb::GatewayMessage {
                            kind: Some(ToSupervisor::Credentials(credentials)),
                        },
                    )
                    .await;
                tracing::debug!(
                    sandbox = sandbox_id,
                    credentials = n,
                    sent,
                    "credentials delivered"
                );
            }
            Err(error) => {
                tracing::error!(sandbox = sandbox_id, error = %error.message(), "credentials could not be delivered");
            }
        }
    }

    /// The sandbox as its driver launches it: its environment extended by
    /// its providers' placeholders.
    pub(crate) async fn launchable(
        &self,
        sandbox: &store::Sandbox,
    ) -> Result<store::Sandbox, Status> {
        let providers = self
            .store
            .sandbox_providers(&sandbox.id)
            .await
            .map_err(status)?;
        let mut launched = sandbox.clone();
        if !providers.is_empty() {
            let placeholders = placeholder_env(&sandbox.id, &providers);
            launched
                .spec
                .env
                .retain(|(k, _)| !placeholders.iter().any(|(p, _)| p == k));
            launched.spec.env.extend(placeholders);
            launched.spec.env.sort();
        }
        Ok(launched)
    }

    /// Re-seals every provider's credentials under a new key and retires
    /// the old ones (`openshell-gateway --rotate-secrets-key`); returns how
    /// many providers were re-sealed. Safe while a gateway serves: it seals
    /// under whatever key the file makes active, and a row it changes
    /// meanwhile is looked at again until every row is under the new key.
    pub async fn rotate_secrets_key(&self) -> Result<usize, anyhow::Error> {
        use anyhow::Context;
        self.keyring.add_active_key()?;
        let mut resealed = 0;
        loop {
            let stale: Vec<Provider> = self
                .store
                .all_providers()
                .await?
                .into_iter()
                .filter(|p| !self.keyring.is_current(&p.sealed))
                .collect();
            if stale.is_empty() {
                break;
            }
            for provider in stale {
                let plain = self
                    .keyring
                    .open(&provider.id, &provider.sealed)
                    .with_context(|| format!("opening provider '{}'", provider.name))?;
                let sealed = self.keyring.seal(&provider.id, &plain)?;
                if self
                    .store
                    .reseal_provider(&provider.id, &provider.sealed, &sealed)
                    .await?
                {
                    resealed += 1;
                }
            }
        }
        self.keyring.retire_old_keys()?;
        Ok(resealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, kind: &str, keys: &[&str], config: &[(&str, &str)]) -> Provider {
        Provider {
            id: format!("id-{name}"),
            workspace: "default".into(),
            name: name.into(),
            kind: kind.into(),
            credential_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            sealed: String::new(),
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            labels: vec![],
            resource_version: 1,
            credential_revision: 2,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn credential_values_are_checked_without_echoing_them() {
        let bad = BTreeMap::from([("TOKEN".to_owned(), "abc\r\nX-Evil: 1".to_owned())]);
        let error = check_credentials(&bad).unwrap_err();
        assert!(error.message().contains("CR, LF or NUL"));
        assert!(!error.message().contains("abc"));
        let reserved = BTreeMap::from([("v1_TOKEN".to_owned(), "x".to_owned())]);
        assert!(check_credentials(&reserved).is_err());
    }

    #[test]
    fn bindings_come_from_config_or_type_and_policy_may_bind_only_endpointless_providers() {
        let github = provider("gh", "github", &["GITHUB_TOKEN"], &[]);
        assert!(binding(&github).contains(&"api.github.com:443".to_owned()));
        let corp = provider(
            "corp",
            "gitlab",
            &["GITLAB_TOKEN"],
            &[("endpoints", "https://git.corp.test/api/")],
        );
        assert_eq!(binding(&corp), ["git.corp.test:443/api/**"]);
        let generic = provider("tok", "generic", &["API_TOKEN"], &[]);
        assert!(binding(&generic).is_empty());
        let policy = |name: &str| {
            format!(
                "version: 1\nnetwork_policies:\n  api:\n    endpoints:\n      - host: h.test\n        port: 443\n        protocol: rest\n        access: full\n        credential_binding:\n          provider: {name}\n    binaries:\n      - path: /usr/bin/curl\n"
            )
        };
        check_bindings(&policy("tok"), std::slice::from_ref(&generic)).unwrap();
        let unattached = check_bindings(&policy("tok"), &[]).unwrap_err();
        assert!(
            unattached.message().contains("not attached"),
            "{unattached:?}"
        );
        let widening = check_bindings(&policy("gh"), &[github]).unwrap_err();
        assert!(widening.message().contains("cannot widen"), "{widening:?}");
    }

    #[test]
    fn two_providers_of_one_key_are_refused_and_env_holds_placeholders() {
        let a = provider("a", "generic", &["API_TOKEN"], &[]);
        let b = provider("b", "generic", &["API_TOKEN"], &[]);
        assert!(check_distinct_keys(&[a.clone(), b]).is_err());
        let gh = provider("gh", "github", &["GITHUB_TOKEN"], &[]);
        let env = placeholder_env("sb", &[a, gh]);
        assert_eq!(
            env[0],
            (
                "API_TOKEN".into(),
                "openshell:resolve:env:v2_API_TOKEN".into()
            )
        );
        assert!(env[1].1.starts_with("ghp_0penShe11") && env[1].1.len() == 40);
    }
}
