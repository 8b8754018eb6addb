//! Inference routes: per workspace, the provider and model behind
//! `inference.local` (route "" for agents, "sandbox-system" for the
//! sandbox's own components). Each write bumps the route's version.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, now_ms};

/// A stored route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub workspace: String,
    pub name: String,
    pub provider_id: String,
    pub model: String,
    pub timeout_seconds: u32,
    pub version: i64,
    /// What the probe reached when the route was last verified.
    pub validated: Vec<String>,
    pub updated_at_ms: i64,
}

fn row(row: &SqliteRow) -> Result<Route, StoreError> {
    Ok(Route {
        workspace: row.get("workspace"),
        name: row.get("name"),
        provider_id: row.get("provider_id"),
        model: row.get("model"),
        timeout_seconds: u32::try_from(row.get::<i64, _>("timeout_seconds")).unwrap_or(0),
        version: row.get("version"),
        validated: serde_json::from_str(&row.get::<String, _>("validated_json"))
            .map_err(StoreError::Corrupt)?,
        updated_at_ms: row.get("updated_at_ms"),
    })
}

impl Store {
    /// Creates or replaces a route; its version moves on by one.
    pub async fn put_route(&self, route: &Route) -> Result<Route, StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO inference_routes (workspace, name, provider_id, model, timeout_seconds, version, validated_json, updated_at_ms)
             VALUES (?, ?, ?, ?, ?, 1, ?, ?)
             ON CONFLICT (workspace, name) DO UPDATE SET provider_id = excluded.provider_id,
                 model = excluded.model, timeout_seconds = excluded.timeout_seconds,
                 version = inference_routes.version + 1, validated_json = excluded.validated_json,
                 updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&route.workspace)
        .bind(&route.name)
        .bind(&route.provider_id)
        .bind(&route.model)
        .bind(i64::from(route.timeout_seconds))
        .bind(serde_json::to_string(&route.validated).map_err(StoreError::Corrupt)?)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        self.route(&route.workspace, &route.name)
            .await?
            .ok_or_else(|| StoreError::Query(sqlx::Error::RowNotFound))
    }

    pub async fn route(&self, workspace: &str, name: &str) -> Result<Option<Route>, StoreError> {
        let found = sqlx::query("SELECT * FROM inference_routes WHERE workspace = ? AND name = ?")
            .bind(workspace)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        found.as_ref().map(row).transpose()
    }

    /// A workspace's routes, by name.
    pub async fn routes(&self, workspace: &str) -> Result<Vec<Route>, StoreError> {
        let rows = sqlx::query("SELECT * FROM inference_routes WHERE workspace = ? ORDER BY name")
            .bind(workspace)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        rows.iter().map(row).collect()
    }

    /// The routes a provider serves.
    pub async fn routes_of_provider(&self, provider_id: &str) -> Result<Vec<Route>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM inference_routes WHERE provider_id = ? ORDER BY workspace, name",
        )
        .bind(provider_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        rows.iter().map(row).collect()
    }

    /// False when there was no such route.
    pub async fn delete_route(&self, workspace: &str, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM inference_routes WHERE workspace = ? AND name = ?")
            .bind(workspace)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        Ok(done.rows_affected() > 0)
    }
}
