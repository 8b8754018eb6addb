//! Inference routes (docs/inference.md): per workspace, the provider and
//! model behind `https://inference.local`. A route is resolved here (base
//! URL, auth, key) and delivered to every connected supervisor of the
//! workspace; the key never enters a sandbox.

use std::collections::BTreeMap;

use tonic::Status;

use openshell_core::providers::{self as catalog, BaseUrl};
use openshell_proto::v1 as pb;
use pb::gateway_message::Kind as ToSupervisor;

use super::{Api, status};
use crate::store::{Provider, Route};

/// The route agents use.
pub const AGENT_ROUTE: &str = "";
/// The route the sandbox's own components use.
pub const SYSTEM_ROUTE: &str = "sandbox-system";
/// A route's timeout when none is given.
pub const DEFAULT_TIMEOUT: u32 = 60;
/// The longest timeout accepted.
const MAX_TIMEOUT: u32 = 3600;

fn check_route_name(name: &str) -> Result<(), Status> {
    if name == AGENT_ROUTE || name == SYSTEM_ROUTE {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "unknown inference route '{name}' (known: \"\" and \"{SYSTEM_ROUTE}\")"
        )))
    }
}

/// What a provider's inference API looks like, from its type and config.
fn api_of(provider: &Provider) -> Result<(catalog::InferenceApi, BaseUrl), Status> {
    let kind = catalog::find_type(&provider.kind)
        .and_then(|t| t.inference())
        .ok_or_else(|| {
            Status::failed_precondition(format!(
                "provider '{}' (type {}) cannot serve inference; use a provider of type openai, anthropic, nvidia, or generic with --config base_url=URL",
                provider.name, provider.kind
            ))
        })?;
    let configured = kind
        .base_url_keys
        .iter()
        .find_map(|key| provider.config.iter().find(|(k, _)| k == key))
        .map(|(_, v)| v.as_str());
    let text = configured.or(kind.default_base_url).ok_or_else(|| {
        Status::failed_precondition(format!(
            "provider '{}' names no base URL; set one with: openshell provider update {} --config base_url=http://HOST:PORT/v1",
            provider.name, provider.name
        ))
    })?;
    let base = BaseUrl::parse(text).map_err(Status::failed_precondition)?;
    Ok((kind, base))
}

impl Api {
    /// A route with its provider's key, as supervisors get it.
    fn resolve(&self, route: &Route, provider: &Provider) -> Result<pb::ResolvedRoute, Status> {
        let (kind, base) = api_of(provider)?;
        let credentials: BTreeMap<String, String> = self.open_credentials(provider)?;
        let api_key = kind
            .key
            .and_then(|k| credentials.get(k))
            .or_else(|| credentials.values().next())
            .cloned()
            .unwrap_or_default();
        Ok(pb::ResolvedRoute {
            name: route.name.clone(),
            endpoint: base.to_string(),
            model: route.model.clone(),
            api_key,
            auth: kind.auth.as_str().to_owned(),
            default_headers: kind
                .default_headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            passthrough_headers: kind.passthrough.iter().map(|h| (*h).to_owned()).collect(),
            timeout_seconds: match route.timeout_seconds {
                0 => DEFAULT_TIMEOUT,
                n => n,
            },
            provider: provider.name.clone(),
            provider_type: provider.kind.clone(),
            version: route.version,
        })
    }

    async fn provider_by_id(&self, workspace: &str, id: &str) -> Result<Provider, Status> {
        self.store
            .get_provider_by_id(id)
            .await
            .map_err(status)?
            .filter(|p| p.workspace == workspace)
            .ok_or_else(|| Status::internal("an inference route names a provider that is gone"))
    }

    fn to_proto(&self, route: Route, provider: &Provider) -> pb::InferenceRoute {
        pb::InferenceRoute {
            endpoint: api_of(provider)
                .map(|(_, base)| base.to_string())
                .unwrap_or_default(),
            route: route.name,
            provider: provider.name.clone(),
            model: route.model,
            timeout_seconds: route.timeout_seconds,
            version: route.version,
            provider_type: provider.kind.clone(),
            validated_endpoints: route.validated,
            workspace: route.workspace,
            updated_at_ms: route.updated_at_ms,
        }
    }

    /// Verifies (unless `no_verify`) and stores a route, then delivers the
    /// workspace's routes.
    async fn write_route(
        &self,
        workspace: &str,
        name: &str,
        provider: &Provider,
        model: String,
        timeout_seconds: u32,
        no_verify: bool,
    ) -> Result<pb::InferenceRoute, Status> {
        if model.trim().is_empty() {
            return Err(Status::invalid_argument("the model must not be empty"));
        }
        if timeout_seconds > MAX_TIMEOUT {
            return Err(Status::invalid_argument(format!(
                "the timeout must be at most {MAX_TIMEOUT} seconds"
            )));
        }
        let mut route = Route {
            workspace: workspace.to_owned(),
            name: name.to_owned(),
            provider_id: provider.id.clone(),
            model,
            timeout_seconds,
            version: 0,
            validated: Vec::new(),
            updated_at_ms: 0,
        };
        if !no_verify {
            let resolved = self.resolve(&route, provider)?;
            let base = BaseUrl::parse(&resolved.endpoint).map_err(Status::internal)?;
            let mut headers: Vec<(String, String)> = resolved.default_headers.into_iter().collect();
            headers.push(match resolved.auth.as_str() {
                "x-api-key" => ("x-api-key".to_owned(), resolved.api_key.clone()),
                _ => (
                    "authorization".to_owned(),
                    format!("Bearer {}", resolved.api_key),
                ),
            });
            let (url, code) = crate::probe::models(&base, &headers).await.map_err(|why| {
                Status::failed_precondition(format!(
                    "the inference endpoint {base} did not answer the probe: {why}\nhint: check the provider's base URL, or skip the probe with --no-verify"
                ))
            })?;
            if code == 401 || code == 403 {
                return Err(Status::failed_precondition(format!(
                    "the inference endpoint refused the provider's key (GET {url}: {code})\nhint: update it with: openshell provider update {} --credential KEY",
                    provider.name
                )));
            }
            if code >= 500 {
                return Err(Status::failed_precondition(format!(
                    "the inference endpoint failed the probe (GET {url}: {code}); skip the probe with --no-verify"
                )));
            }
            route.validated = vec![url];
        }
        let stored = self.store.put_route(&route).await.map_err(status)?;
        tracing::info!(%workspace, route = %name, provider = %provider.name, version = stored.version, "inference route set");
        self.deliver_inference(workspace).await;
        Ok(self.to_proto(stored, provider))
    }

    pub(super) async fn set_route(
        &self,
        workspace: &str,
        request: pb::SetInferenceRouteRequest,
    ) -> Result<pb::InferenceRoute, Status> {
        check_route_name(&request.route)?;
        let provider = self.provider(workspace, &request.provider).await?;
        api_of(&provider)?;
        self.write_route(
            workspace,
            &request.route,
            &provider,
            request.model,
            request.timeout_seconds,
            request.no_verify,
        )
        .await
    }

    pub(super) async fn update_route(
        &self,
        workspace: &str,
        request: pb::UpdateInferenceRouteRequest,
    ) -> Result<pb::InferenceRoute, Status> {
        check_route_name(&request.route)?;
        if request.provider.is_none()
            && request.model.is_none()
            && request.timeout_seconds.is_none()
        {
            return Err(Status::invalid_argument(
                "nothing to update: give --provider, --model or --timeout",
            ));
        }
        let current = self.existing_route(workspace, &request.route).await?;
        let provider = match &request.provider {
            Some(name) => self.provider(workspace, name).await?,
            None => self.provider_by_id(workspace, &current.provider_id).await?,
        };
        api_of(&provider)?;
        self.write_route(
            workspace,
            &request.route,
            &provider,
            request.model.unwrap_or(current.model),
            request.timeout_seconds.unwrap_or(current.timeout_seconds),
            request.no_verify,
        )
        .await
    }

    async fn existing_route(&self, workspace: &str, name: &str) -> Result<Route, Status> {
        self.store
            .route(workspace, name)
            .await
            .map_err(status)?
            .ok_or_else(|| {
                let flag = if name.is_empty() { "" } else { " --system" };
                Status::not_found(format!(
                    "inference route{} is not configured (set it with: openshell inference set{flag} --provider P --model M)",
                    if name.is_empty() {
                        String::new()
                    } else {
                        format!(" '{name}'")
                    }
                ))
            })
    }

    pub(super) async fn get_route(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<pb::InferenceRoute, Status> {
        check_route_name(name)?;
        let route = self.existing_route(workspace, name).await?;
        let provider = self.provider_by_id(workspace, &route.provider_id).await?;
        Ok(self.to_proto(route, &provider))
    }

    pub(super) async fn delete_route(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<pb::DeleteInferenceRouteResponse, Status> {
        check_route_name(name)?;
        let deleted = self
            .store
            .delete_route(workspace, name)
            .await
            .map_err(status)?;
        if deleted {
            tracing::info!(%workspace, route = %name, "inference route deleted");
            self.deliver_inference(workspace).await;
        }
        Ok(pb::DeleteInferenceRouteResponse { deleted })
    }

    /// A workspace's routes, resolved (a route whose provider cannot serve
    /// is left out and logged).
    pub(crate) async fn inference_of(
        &self,
        workspace: &str,
    ) -> Result<pb::InferenceRoutes, Status> {
        let mut routes = Vec::new();
        for route in self.store.routes(workspace).await.map_err(status)? {
            let provider = self.provider_by_id(workspace, &route.provider_id).await?;
            match self.resolve(&route, &provider) {
                Ok(resolved) => routes.push(resolved),
                Err(error) => {
                    tracing::error!(%workspace, route = %route.name, error = %error.message(), "an inference route cannot be resolved");
                }
            }
        }
        Ok(pb::InferenceRoutes { routes })
    }

    /// Sends a workspace's routes to each of its connected supervisors.
    pub(crate) async fn deliver_inference(&self, workspace: &str) {
        let routes = match self.inference_of(workspace).await {
            Ok(routes) => routes,
            Err(error) => {
                tracing::error!(%workspace, error = %error.message(), "inference routes could not be delivered");
                return;
            }
        };
        let sandboxes = match self.store.list_sandboxes(workspace).await {
            Ok(sandboxes) => sandboxes,
            Err(error) => {
                status(error);
                return;
            }
        };
        for sandbox in sandboxes {
            self.sessions
                .deliver(
                    &sandbox.id,
                    pb::GatewayMessage {
                        kind: Some(ToSupervisor::Inference(routes.clone())),
                    },
                )
                .await;
        }
    }

    /// After a provider's credentials or config changed: the routes it
    /// serves go out again.
    pub(crate) async fn provider_changed(&self, provider: &Provider) {
        let workspaces: std::collections::BTreeSet<String> =
            match self.store.routes_of_provider(&provider.id).await {
                Ok(routes) => routes.into_iter().map(|r| r.workspace).collect(),
                Err(error) => {
                    status(error);
                    return;
                }
            };
        for workspace in workspaces {
            self.deliver_inference(&workspace).await;
        }
    }
}
