//! `openshell inference set|update|get|delete`: the route behind
//! `https://inference.local` in the workspace (docs/inference.md).

use serde_json::{Value, json};

use openshell_proto::v1 as pb;

use crate::client;
use crate::commands::Exit;
use crate::commands::scope::{Scope, status};
use crate::output;

/// The route a command addresses: agents' (`""`) or, with `--system`,
/// the sandbox's own components'.
pub fn route_name(system: bool) -> String {
    if system {
        "sandbox-system".to_owned()
    } else {
        String::new()
    }
}

fn shown_name(route: &str) -> &str {
    if route.is_empty() { "default" } else { route }
}

fn to_json(route: &pb::InferenceRoute) -> Value {
    json!({
        "workspace": route.workspace,
        "route": shown_name(&route.route),
        "provider": route.provider,
        "provider_type": route.provider_type,
        "model": route.model,
        "endpoint": route.endpoint,
        "timeout_seconds": if route.timeout_seconds == 0 { 60 } else { route.timeout_seconds },
        "version": route.version,
        "validated_endpoints": route.validated_endpoints,
    })
}

fn print(title: &str, route: &pb::InferenceRoute) {
    output::line(title);
    output::line(&format!("  Workspace: {}", route.workspace));
    output::line(&format!("  Route: {}", shown_name(&route.route)));
    output::line(&format!(
        "  Provider: {} ({})",
        route.provider, route.provider_type
    ));
    output::line(&format!("  Model: {}", route.model));
    output::line(&format!("  Endpoint: {}", route.endpoint));
    let timeout = if route.timeout_seconds == 0 {
        60
    } else {
        route.timeout_seconds
    };
    output::line(&format!("  Timeout: {timeout}s"));
    output::line(&format!("  Version: {}", route.version));
    let validated = if route.validated_endpoints.is_empty() {
        "<not verified>".to_owned()
    } else {
        route.validated_endpoints.join(", ")
    };
    output::line(&format!("  Validated Endpoints: {validated}"));
}

/// `set` (all fields) or `update` (the given ones).
pub fn write(scope: &Scope, request: Change, json_output: bool) -> anyhow::Result<Exit> {
    let (title, route) = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        anyhow::Ok(match request {
            Change::Set(set) => (
                "Inference configured:",
                client
                    .set_inference_route(scope.request(set)?)
                    .await
                    .map_err(status)?
                    .into_inner(),
            ),
            Change::Update(update) => (
                "Inference updated:",
                client
                    .update_inference_route(scope.request(update)?)
                    .await
                    .map_err(status)?
                    .into_inner(),
            ),
        })
    })?;
    if json_output {
        output::json(&to_json(&route));
    } else {
        print(title, &route);
    }
    Ok(Exit::Success)
}

/// What `write` sends.
#[derive(Debug, Clone)]
pub enum Change {
    Set(pb::SetInferenceRouteRequest),
    Update(pb::UpdateInferenceRouteRequest),
}

/// `get [--system]`: one route, or both when neither is named.
pub fn get(scope: &Scope, routes: &[String], json_output: bool) -> anyhow::Result<Exit> {
    let found = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let mut found = Vec::new();
        for route in routes {
            let request = scope.request(pb::GetInferenceRouteRequest {
                route: route.clone(),
            })?;
            match client.get_inference_route(request).await {
                Ok(route) => found.push((route.get_ref().route.clone(), Some(route.into_inner()))),
                Err(e) if e.code() == tonic::Code::NotFound => found.push((route.clone(), None)),
                Err(e) => return Err(status(e)),
            }
        }
        anyhow::Ok(found)
    })?;
    if json_output {
        let items: Vec<Value> = found
            .iter()
            .map(|(name, route)| match route {
                Some(route) => to_json(route),
                None => json!({"route": shown_name(name), "configured": false}),
            })
            .collect();
        output::json(&Value::Array(items));
        return Ok(Exit::Success);
    }
    for (name, route) in &found {
        match route {
            Some(route) => print("Inference:", route),
            None => output::line(&format!("Route {}: Not configured", shown_name(name))),
        }
    }
    Ok(Exit::Success)
}

pub fn delete(scope: &Scope, route: &str) -> anyhow::Result<Exit> {
    let request = scope.request(pb::GetInferenceRouteRequest {
        route: route.to_owned(),
    })?;
    let deleted = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        anyhow::Ok(
            client
                .delete_inference_route(request)
                .await
                .map_err(status)?
                .into_inner()
                .deleted,
        )
    })?;
    if deleted {
        output::line("Inference route deleted.");
    } else {
        output::line(&format!(
            "Inference route {} not found (already deleted).",
            shown_name(route)
        ));
    }
    Ok(Exit::Success)
}
