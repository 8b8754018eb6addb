//! Providers and their attachment to sandboxes. Credentials are stored
//! only sealed ([`crate::secrets`]); this module never sees them in the
//! clear. Every change bumps the record's resource version, and a caller
//! that names the version it read gets [`StoreError::VersionConflict`] when
//! someone changed the record meanwhile.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, now_ms};

/// A stored provider (credentials sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub kind: String,
    /// The credential keys, sorted (their values are in `sealed`).
    pub credential_keys: Vec<String>,
    /// The sealed JSON map of credential key to value.
    pub sealed: String,
    pub config: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub resource_version: i64,
    pub credential_revision: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What a provider update changes.
#[derive(Debug, Clone)]
pub struct ProviderChange {
    pub credential_keys: Vec<String>,
    pub sealed: String,
    pub config: Vec<(String, String)>,
    /// Whether a credential value changed (placeholders move on a revision).
    pub credentials_changed: bool,
}

fn json_pairs(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(text).map_err(StoreError::Corrupt)
}

fn row(row: &SqliteRow) -> Result<Provider, StoreError> {
    Ok(Provider {
        id: row.get("id"),
        workspace: row.get("workspace"),
        name: row.get("name"),
        kind: row.get("type"),
        credential_keys: serde_json::from_str(&row.get::<String, _>("credential_keys"))
            .map_err(StoreError::Corrupt)?,
        sealed: row.get("credentials_sealed"),
        config: json_pairs(&row.get::<String, _>("config_json"))?,
        labels: json_pairs(&row.get::<String, _>("labels_json"))?,
        resource_version: row.get("resource_version"),
        credential_revision: row.get("credential_revision"),
        created_at_ms: row.get("created_at_ms"),
        updated_at_ms: row.get("updated_at_ms"),
    })
}

/// The columns every provider query reads (a macro so that queries stay
/// static strings, as sqlx requires).
macro_rules! select_provider {
    () => {
        "SELECT id, workspace, name, type, credential_keys, credentials_sealed, config_json, labels_json, resource_version, credential_revision, created_at_ms, updated_at_ms FROM providers"
    };
}

impl Store {
    /// Inserts a provider; [`StoreError::DuplicateProvider`] when the name
    /// is taken in the workspace.
    pub async fn create_provider(&self, provider: &Provider) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO providers (id, workspace, name, type, credential_keys, credentials_sealed, config_json, labels_json, resource_version, credential_revision, created_at_ms, updated_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&provider.id)
        .bind(&provider.workspace)
        .bind(&provider.name)
        .bind(&provider.kind)
        .bind(serde_json::to_string(&provider.credential_keys).map_err(StoreError::Corrupt)?)
        .bind(&provider.sealed)
        .bind(serde_json::to_string(&provider.config).map_err(StoreError::Corrupt)?)
        .bind(serde_json::to_string(&provider.labels).map_err(StoreError::Corrupt)?)
        .bind(provider.resource_version)
        .bind(provider.credential_revision)
        .bind(provider.created_at_ms)
        .bind(provider.updated_at_ms)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::DuplicateProvider(provider.name.clone()))
            }
            Err(e) => Err(StoreError::Query(e)),
        }
    }

    pub async fn get_provider(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<Option<Provider>, StoreError> {
        let found = sqlx::query(concat!(
            select_provider!(),
            " WHERE workspace = ? AND name = ?"
        ))
        .bind(workspace)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        found.as_ref().map(row).transpose()
    }

    pub async fn get_provider_by_id(&self, id: &str) -> Result<Option<Provider>, StoreError> {
        let found = sqlx::query(concat!(select_provider!(), " WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        found.as_ref().map(row).transpose()
    }

    /// A workspace's providers by name.
    pub async fn list_providers(
        &self,
        workspace: &str,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Provider>, StoreError> {
        let rows = sqlx::query(concat!(
            select_provider!(),
            " WHERE workspace = ? ORDER BY name LIMIT ? OFFSET ?"
        ))
        .bind(workspace)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        rows.iter().map(row).collect()
    }

    /// Every provider of every workspace (a key rotation re-seals them).
    pub async fn all_providers(&self) -> Result<Vec<Provider>, StoreError> {
        let rows = sqlx::query(select_provider!())
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        rows.iter().map(row).collect()
    }

    /// Replaces a provider's sealed credentials if they are still `old`
    /// (a rotation racing an update leaves the update's); false if not.
    pub async fn reseal_provider(
        &self,
        id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE providers SET credentials_sealed = ? WHERE id = ? AND credentials_sealed = ?",
        )
        .bind(new)
        .bind(id)
        .bind(old)
        .execute(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        Ok(done.rows_affected() == 1)
    }

    /// Applies `change` when the provider is still at `expected` (or any
    /// version when none is given); returns the updated record.
    pub async fn update_provider(
        &self,
        current: &Provider,
        expected: Option<i64>,
        change: ProviderChange,
    ) -> Result<Provider, StoreError> {
        let expected = expected.unwrap_or(current.resource_version);
        let revision = current.credential_revision + i64::from(change.credentials_changed);
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE providers SET credential_keys = ?, credentials_sealed = ?, config_json = ?,
                 resource_version = resource_version + 1, credential_revision = ?, updated_at_ms = ?
             WHERE id = ? AND resource_version = ?",
        )
        .bind(serde_json::to_string(&change.credential_keys).map_err(StoreError::Corrupt)?)
        .bind(&change.sealed)
        .bind(serde_json::to_string(&change.config).map_err(StoreError::Corrupt)?)
        .bind(revision)
        .bind(now)
        .bind(&current.id)
        .bind(expected)
        .execute(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        let Some(stored) = self.get_provider(&current.workspace, &current.name).await? else {
            return Err(StoreError::VersionConflict {
                what: format!("provider '{}'", current.name),
                expected,
                current: 0,
            });
        };
        if updated.rows_affected() == 0 {
            return Err(StoreError::VersionConflict {
                what: format!("provider '{}'", current.name),
                expected,
                current: stored.resource_version,
            });
        }
        Ok(stored)
    }

    /// Deletes a provider no sandbox uses; [`StoreError::InUse`] names the
    /// sandboxes that still do. False when there was none.
    pub async fn delete_provider(&self, workspace: &str, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT s.name FROM sandbox_providers sp
             JOIN providers p ON p.id = sp.provider_id
             JOIN sandboxes s ON s.id = sp.sandbox_id
             WHERE p.workspace = ? AND p.name = ? ORDER BY s.name",
        )
        .bind(workspace)
        .bind(name)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::Query)?;
        if !users.is_empty() {
            return Err(StoreError::InUse {
                provider: name.to_owned(),
                sandboxes: users,
            });
        }
        let route: Option<String> = sqlx::query_scalar(
            "SELECT r.name FROM inference_routes r JOIN providers p ON p.id = r.provider_id
             WHERE p.workspace = ? AND p.name = ? LIMIT 1",
        )
        .bind(workspace)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::Query)?;
        if let Some(route) = route {
            return Err(StoreError::ServesRoute {
                provider: name.to_owned(),
                route,
            });
        }
        let done = sqlx::query("DELETE FROM providers WHERE workspace = ? AND name = ?")
            .bind(workspace)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Query)?;
        tx.commit().await.map_err(StoreError::Query)?;
        Ok(done.rows_affected() > 0)
    }

    /// The providers attached to a sandbox, by name.
    pub async fn sandbox_providers(&self, sandbox_id: &str) -> Result<Vec<Provider>, StoreError> {
        let rows = sqlx::query(concat!(
            select_provider!(),
            " WHERE id IN (SELECT provider_id FROM sandbox_providers WHERE sandbox_id = ?) ORDER BY name"
        ))
        .bind(sandbox_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        rows.iter().map(row).collect()
    }

    /// The ids of the sandboxes a provider is attached to.
    pub async fn sandboxes_using(&self, provider_id: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT sandbox_id FROM sandbox_providers WHERE provider_id = ?")
            .bind(provider_id)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Query)
    }

    /// Attaches (or detaches) a provider when the sandbox is still at
    /// `expected` (any version when none); bumps the sandbox's version when
    /// something changed. Returns (changed, the sandbox's version now).
    pub async fn set_attached(
        &self,
        sandbox_id: &str,
        sandbox_name: &str,
        provider: &Provider,
        attached: bool,
        expected: Option<i64>,
    ) -> Result<(bool, i64), StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        let current: i64 =
            sqlx::query_scalar("SELECT resource_version FROM sandboxes WHERE id = ?")
                .bind(sandbox_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::Query)?;
        if let Some(expected) = expected
            && expected != current
        {
            return Err(StoreError::VersionConflict {
                what: format!("sandbox '{sandbox_name}'"),
                expected,
                current,
            });
        }
        let changed = if attached {
            sqlx::query(
                "INSERT OR IGNORE INTO sandbox_providers (sandbox_id, provider_id, attached_at_ms) VALUES (?, ?, ?)",
            )
            .bind(sandbox_id)
            .bind(&provider.id)
            .bind(now_ms())
        } else {
            sqlx::query("DELETE FROM sandbox_providers WHERE sandbox_id = ? AND provider_id = ?")
                .bind(sandbox_id)
                .bind(&provider.id)
        }
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Query)?
        .rows_affected()
            > 0;
        let version = if changed {
            sqlx::query(
                "UPDATE sandboxes SET resource_version = resource_version + 1 WHERE id = ?",
            )
            .bind(sandbox_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Query)?;
            let verb = if attached { "attached" } else { "detached" };
            super::insert_event(
                &mut tx,
                sandbox_id,
                now_ms(),
                &format!("provider {verb}: {}", provider.name),
            )
            .await?;
            current + 1
        } else {
            current
        };
        tx.commit().await.map_err(StoreError::Query)?;
        Ok((changed, version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Spec;

    fn provider(id: &str, name: &str) -> Provider {
        Provider {
            id: id.into(),
            workspace: "default".into(),
            name: name.into(),
            kind: "generic".into(),
            credential_keys: vec!["API_TOKEN".into()],
            sealed: "v1.k.00".into(),
            config: vec![],
            labels: vec![],
            resource_version: 1,
            credential_revision: 1,
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn versions_guard_updates_and_attachments_and_attached_providers_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).await.unwrap();
        store.create_provider(&provider("p1", "tok")).await.unwrap();
        assert!(matches!(
            store.create_provider(&provider("p2", "tok")).await,
            Err(StoreError::DuplicateProvider(n)) if n == "tok"
        ));
        let current = store.get_provider("default", "tok").await.unwrap().unwrap();
        let change = ProviderChange {
            credential_keys: vec!["API_TOKEN".into()],
            sealed: "v1.k.11".into(),
            config: vec![],
            credentials_changed: true,
        };
        let updated = store
            .update_provider(&current, Some(1), change.clone())
            .await
            .unwrap();
        assert_eq!(
            (updated.resource_version, updated.credential_revision),
            (2, 2)
        );
        assert!(matches!(
            store.update_provider(&current, Some(1), change).await,
            Err(StoreError::VersionConflict {
                expected: 1,
                current: 2,
                ..
            })
        ));

        let sandbox = store
            .create_sandbox("s1", "default", "box", &Spec::default())
            .await
            .unwrap();
        assert_eq!(
            store
                .set_attached(&sandbox.id, "box", &updated, true, Some(1))
                .await
                .unwrap(),
            (true, 2)
        );
        assert_eq!(
            store
                .set_attached(&sandbox.id, "box", &updated, true, None)
                .await
                .unwrap(),
            (false, 2)
        );
        assert!(matches!(
            store
                .set_attached(&sandbox.id, "box", &updated, false, Some(1))
                .await,
            Err(StoreError::VersionConflict { current: 2, .. })
        ));
        assert!(matches!(
            store.delete_provider("default", "tok").await,
            Err(StoreError::InUse { sandboxes, .. }) if sandboxes == ["box"]
        ));
        assert_eq!(store.sandbox_providers("s1").await.unwrap().len(), 1);
        assert_eq!(store.sandboxes_using("p1").await.unwrap(), ["s1"]);
        store.delete_sandbox("default", "box").await.unwrap();
        assert!(store.delete_provider("default", "tok").await.unwrap());
        assert!(!store.delete_provider("default", "tok").await.unwrap());
    }
}
