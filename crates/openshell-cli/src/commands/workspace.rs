//! `openshell workspace …` and `openshell whoami`: who may use which
//! workspace (docs/cli.md, "Workspaces and who may use them").

use serde_json::{Value, json};
use tonic::Code;

use openshell_core::time::Utc;
use openshell_proto::v1 as pb;

use crate::cli::OutputFormat;
use crate::client;
use crate::commands::scope::{Scope, status};
use crate::commands::{Exit, pairs};
use crate::output;

fn created(workspace: &pb::Workspace) -> String {
    Utc::from_unix(workspace.created_at_ms.div_euclid(1000)).date_time()
}

fn labels(workspace: &pb::Workspace) -> String {
    let mut labels: Vec<String> = workspace
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    labels.join(",")
}

fn to_json(workspace: &pb::Workspace) -> Value {
    json!({
        "name": workspace.name,
        "status": workspace.status,
        "labels": workspace.labels,
        "created_at_ms": workspace.created_at_ms,
    })
}

fn print(workspace: &pb::Workspace, format: OutputFormat) {
    match format {
        OutputFormat::Json => output::json(&to_json(workspace)),
        OutputFormat::Table => {
            output::line("Workspace:");
            output::line(&format!("  Name:     {}", workspace.name));
            output::line(&format!("  Status:   {}", workspace.status));
            output::line(&format!("  Created:  {}", created(workspace)));
            output::line(&format!("  Labels:   {}", labels(workspace)));
        }
    }
}

pub fn create(
    scope: &Scope,
    name: &str,
    label_items: &[String],
    format: OutputFormat,
) -> anyhow::Result<Exit> {
    let labels = pairs("--label", label_items)?;
    let created = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let request = scope.request(pb::CreateWorkspaceRequest {
            name: name.to_owned(),
            labels,
        })?;
        anyhow::Ok(
            client
                .create_workspace(request)
                .await
                .map_err(status)?
                .into_inner(),
        )
    })?;
    match format {
        OutputFormat::Json => output::json(&to_json(&created)),
        OutputFormat::Table => output::success(&format!("Created workspace {}", created.name)),
    }
    Ok(Exit::Success)
}

pub fn get(scope: &Scope, name: &str, format: OutputFormat) -> anyhow::Result<Exit> {
    let found = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let request = scope.request(pb::GetWorkspaceRequest {
            name: name.to_owned(),
        })?;
        anyhow::Ok(
            client
                .get_workspace(request)
                .await
                .map_err(status)?
                .into_inner(),
        )
    })?;
    print(&found, format);
    Ok(Exit::Success)
}

pub fn list(scope: &Scope, format: OutputFormat) -> anyhow::Result<Exit> {
    let workspaces = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let request = scope.request(pb::ListWorkspacesRequest {})?;
        anyhow::Ok(
            client
                .list_workspaces(request)
                .await
                .map_err(status)?
                .into_inner()
                .workspaces,
        )
    })?;
    match format {
        OutputFormat::Json => output::json(&Value::Array(workspaces.iter().map(to_json).collect())),
        OutputFormat::Table if workspaces.is_empty() => output::line("No workspaces found."),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = workspaces
                .iter()
                .map(|w| vec![w.name.clone(), w.status.clone(), created(w), labels(w)])
                .collect();
            output::table(&["NAME", "STATUS", "CREATED", "LABELS"], &rows);
        }
    }
    Ok(Exit::Success)
}

/// Deletes each workspace; a missing one is reported, not an error.
pub fn delete(scope: &Scope, names: &[String]) -> anyhow::Result<Exit> {
    client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        for name in names {
            let request = scope.request(pb::GetWorkspaceRequest { name: name.clone() })?;
            let deleted = client
                .delete_workspace(request)
                .await
                .map_err(status)?
                .into_inner()
                .deleted;
            if deleted {
                output::success(&format!("Deleted workspace {name}"));
            } else {
                output::warning(&format!("Workspace {name} not found"));
            }
        }
        anyhow::Ok(Exit::Success)
    })
}

/// Adds a member (`role` set) or removes one.
pub fn member_set(scope: &Scope, subject: &str, role: Option<&str>) -> anyhow::Result<Exit> {
    let workspace = &scope.workspace;
    client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let member = pb::WorkspaceMember {
            workspace: workspace.clone(),
            subject: subject.to_owned(),
            role: role.unwrap_or_default().to_owned(),
        };
        match role {
            Some(role) => {
                client
                    .add_workspace_member(scope.request(member)?)
                    .await
                    .map_err(status)?;
                output::success(&format!(
                    "Added {subject} to workspace {workspace} as {role}"
                ));
            }
            None => {
                let removed = client
                    .remove_workspace_member(scope.request(member)?)
                    .await
                    .map_err(status)?
                    .into_inner()
                    .deleted;
                if removed {
                    output::success(&format!("Removed {subject} from workspace {workspace}"));
                } else {
                    output::warning(&format!(
                        "{subject} is not a member of workspace {workspace}"
                    ));
                }
            }
        }
        anyhow::Ok(Exit::Success)
    })
}

pub fn member_list(scope: &Scope, format: OutputFormat) -> anyhow::Result<Exit> {
    let members = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let request = scope.request(pb::GetWorkspaceRequest {
            name: scope.workspace.clone(),
        })?;
        anyhow::Ok(
            client
                .list_workspace_members(request)
                .await
                .map_err(status)?
                .into_inner()
                .members,
        )
    })?;
    match format {
        OutputFormat::Json => output::json(&Value::Array(
            members
                .iter()
                .map(|m| json!({"subject": m.subject, "role": m.role}))
                .collect(),
        )),
        OutputFormat::Table if members.is_empty() => {
            output::line(&format!("No members in workspace {}.", scope.workspace));
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = members
                .iter()
                .map(|m| vec![m.subject.clone(), m.role.clone()])
                .collect();
            output::table(&["SUBJECT", "ROLE"], &rows);
        }
    }
    Ok(Exit::Success)
}

pub fn whoami(scope: &Scope, format: OutputFormat) -> anyhow::Result<Exit> {
    let user = client::runtime()?.block_on(async {
        let mut client = client::connect(scope.target()?).await?;
        let request = scope.request(pb::GetCurrentUserRequest {})?;
        match client.get_current_user(request).await {
            Ok(user) => anyhow::Ok(user.into_inner()),
            Err(error) if error.code() == Code::Unimplemented => {
                anyhow::bail!("whoami is not supported by this gateway version")
            }
            Err(error) => Err(status(error)),
        }
    })?;
    let workspaces: Vec<String> = user
        .memberships
        .iter()
        .map(|m| format!("{} ({})", m.workspace, m.role))
        .collect();
    match format {
        OutputFormat::Json => output::json(&json!({
            "subject": user.subject,
            "display_name": Value::Null,
            "roles": user.roles,
            "scopes": [],
            "identity_provider": user.identity_provider,
            "workspaces": user
                .memberships
                .iter()
                .map(|m| json!({"workspace": m.workspace, "role": m.role}))
                .collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            output::line("Current User");
            output::line(&format!("  Subject:     {}", user.subject));
            output::line(&format!("  Provider:    {}", user.identity_provider));
            output::line(&format!("  Roles:       {}", user.roles.join(", ")));
            output::line(&format!("  Workspaces:  {}", workspaces.join(", ")));
        }
    }
    Ok(Exit::Success)
}
