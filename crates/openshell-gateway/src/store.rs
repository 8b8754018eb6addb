//! Durable state in SQLite: sandboxes with their
//! spec, phase and events, per-sandbox policy revisions, and providers
//! (credentials sealed, [`crate::secrets`]). WAL mode,
//! foreign keys on, every multi-row write in one transaction, schema from
//! the migrations in `migrations/`.

use std::path::Path;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Row;
mod inference;
mod providers;
mod revisions;
mod workspaces;

pub use workspaces::{Member, Workspace};

pub use inference::Route;
pub use providers::{Provider, ProviderChange};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};

pub use openshell_driver::{Phase, Sandbox, Spec};

pub use revisions::{Revision, RevisionStatus, policy_hash};

/// The store is where drivers record what their workloads do.
#[async_trait::async_trait]
impl openshell_driver::Lifecycle for Store {
    async fn get_sandbox_by_id(
        &self,
        id: &str,
    ) -> Result<Option<Sandbox>, openshell_driver::LifecycleError> {
        Ok(Store::get_sandbox_by_id(self, id).await?)
    }

    async fn mark_ready(&self, id: &str) -> Result<bool, openshell_driver::LifecycleError> {
        Ok(Store::mark_ready(self, id).await?)
    }

    async fn set_phase(
        &self,
        id: &str,
        phase: Phase,
        exit_code: Option<i32>,
    ) -> Result<(), openshell_driver::LifecycleError> {
        Ok(Store::set_phase(self, id, phase, exit_code).await?)
    }

    async fn add_event(
        &self,
        id: &str,
        message: &str,
    ) -> Result<(), openshell_driver::LifecycleError> {
        Ok(Store::add_event(self, id, message).await?)
    }
}

/// The settings scope of everything gateway-wide.
pub const GLOBAL_SCOPE: &str = "global";

/// The settings scope of one sandbox.
pub fn sandbox_scope(id: &str) -> String {
    format!("sandbox:{id}")
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sandbox '{0}' already exists")]
    Duplicate(String),
    #[error("the policy is at version {current}, not {expected}")]
    Conflict { expected: i64, current: i64 },
    #[error("provider '{0}' already exists")]
    DuplicateProvider(String),
    #[error("{what} is at version {current}, not {expected}")]
    VersionConflict {
        what: String,
        expected: i64,
        current: i64,
    },
    #[error("provider '{provider}' serves the inference route '{route}'")]
    ServesRoute { provider: String, route: String },
    #[error("provider '{provider}' is attached to {}", sandboxes.join(", "))]
    InUse {
        provider: String,
        sandboxes: Vec<String>,
    },
    #[error("workspace '{0}' already exists")]
    DuplicateWorkspace(String),
    #[error(
        "workspace '{workspace}' still holds {sandboxes} sandbox(es) and {providers} provider(s)"
    )]
    WorkspaceInUse {
        workspace: String,
        sandboxes: i64,
        providers: i64,
    },
    #[error("opening the database")]
    Open(#[source] sqlx::Error),
    #[error("migrating the database schema")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database query")]
    Query(#[source] sqlx::Error),
    #[error("stored sandbox spec is unreadable")]
    Corrupt(#[source] serde_json::Error),
}

/// The columns every sandbox query reads (a macro so that queries stay
/// static strings, as sqlx requires).
macro_rules! select_sandbox {
    () => {
        "SELECT s.id, s.workspace, s.name, s.phase, s.spec_json, s.created_at_ms, s.exit_code,
                s.resource_version,
                (SELECT COALESCE(MAX(version), 0) FROM policy_revisions p WHERE p.sandbox_id = s.id)
                    AS policy_version,
                (SELECT group_concat(pr.name, char(10)) FROM sandbox_providers sp
                    JOIN providers pr ON pr.id = sp.provider_id WHERE sp.sandbox_id = s.id)
                    AS providers
         FROM sandboxes s"
    };
}

/// Appends to a sandbox's event log inside `tx`.
async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    at_ms: i64,
    message: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO sandbox_events (sandbox_id, at_ms, message) VALUES (?, ?, ?)")
        .bind(id)
        .bind(at_ms)
        .bind(message)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::Query)?;
    Ok(())
}

async fn bump_settings_revision(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    scope: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO settings_revisions (scope, revision) VALUES (?, 1)
         ON CONFLICT (scope) DO UPDATE SET revision = revision + 1",
    )
    .bind(scope)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::Query)?;
    Ok(())
}

/// The gateway's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if missing) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(StoreError::Open)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(StoreError::Open)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(StoreError::Migrate)?;
        Ok(Store { pool })
    }

    /// Inserts a sandbox, its first policy revision (when it has a policy)
    /// and a creation event, in one transaction.
    pub async fn create_sandbox(
        &self,
        id: &str,
        workspace: &str,
        name: &str,
        spec: &Spec,
    ) -> Result<Sandbox, StoreError> {
        self.create_sandbox_with(id, workspace, name, spec, &[])
            .await
    }

    /// [`create_sandbox`](Self::create_sandbox) with providers attached in
    /// the same transaction.
    pub async fn create_sandbox_with(
        &self,
        id: &str,
        workspace: &str,
        name: &str,
        spec: &Spec,
        providers: &[Provider],
    ) -> Result<Sandbox, StoreError> {
        let policy_hash = (!spec.policy_yaml.is_empty()).then(|| policy_hash(&spec.policy_yaml));
        let now = now_ms();
        let spec_json = serde_json::to_string(spec).map_err(StoreError::Corrupt)?;
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        let inserted = sqlx::query(
            "INSERT INTO sandboxes (id, workspace, name, phase, spec_json, created_at_ms, updated_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(workspace)
        .bind(name)
        .bind(Phase::Provisioning.as_str())
        .bind(&spec_json)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Duplicate(name.to_owned()));
            }
            Err(e) => return Err(StoreError::Query(e)),
        }
        if let Some(hash) = &policy_hash {
            sqlx::query(
                "INSERT INTO policy_revisions (sandbox_id, version, hash, yaml, status, created_at_ms)
                 VALUES (?, 1, ?, ?, 'pending', ?)",
            )
            .bind(id)
            .bind(hash)
            .bind(&spec.policy_yaml)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Query)?;
        }
        for provider in providers {
            sqlx::query(
                "INSERT INTO sandbox_providers (sandbox_id, provider_id, attached_at_ms) VALUES (?, ?, ?)",
            )
            .bind(id)
            .bind(&provider.id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Query)?;
        }
        insert_event(&mut tx, id, now, "created").await?;
        tx.commit().await.map_err(StoreError::Query)?;
        let mut names: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();
        names.sort();
        Ok(Sandbox {
            id: id.to_owned(),
            workspace: workspace.to_owned(),
            name: name.to_owned(),
            phase: Phase::Provisioning,
            spec: spec.clone(),
            created_at_ms: now,
            exit_code: None,
            policy_version: i64::from(policy_hash.is_some()),
            resource_version: 1,
            providers: names,
        })
    }

    fn row(row: &SqliteRow) -> Result<Sandbox, StoreError> {
        let spec_json: String = row.get("spec_json");
        Ok(Sandbox {
            id: row.get("id"),
            workspace: row.get("workspace"),
            name: row.get("name"),
            phase: Phase::parse(row.get::<String, _>("phase").as_str()),
            spec: serde_json::from_str(&spec_json).map_err(StoreError::Corrupt)?,
            created_at_ms: row.get("created_at_ms"),
            exit_code: row.get("exit_code"),
            policy_version: row.get("policy_version"),
            resource_version: row.get("resource_version"),
            providers: {
                let names: Option<String> = row.get("providers");
                let mut names: Vec<String> = names
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect();
                names.sort();
                names
            },
        })
    }

    pub async fn get_sandbox(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<Option<Sandbox>, StoreError> {
        let row = sqlx::query(concat!(
            select_sandbox!(),
            " WHERE s.workspace = ? AND s.name = ?"
        ))
        .bind(workspace)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        row.as_ref().map(Self::row).transpose()
    }

    pub async fn get_sandbox_by_id(&self, id: &str) -> Result<Option<Sandbox>, StoreError> {
        let row = sqlx::query(concat!(select_sandbox!(), " WHERE s.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        row.as_ref().map(Self::row).transpose()
    }

    /// Every sandbox of a workspace, oldest first.
    pub async fn list_sandboxes(&self, workspace: &str) -> Result<Vec<Sandbox>, StoreError> {
        let rows = sqlx::query(concat!(
            select_sandbox!(),
            " WHERE s.workspace = ? ORDER BY s.created_at_ms, s.name"
        ))
        .bind(workspace)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        rows.iter().map(Self::row).collect()
    }

    /// Every sandbox of every workspace (for reconciliation at start).
    pub async fn list_all(&self) -> Result<Vec<Sandbox>, StoreError> {
        let rows = sqlx::query(concat!(select_sandbox!(), " ORDER BY s.created_at_ms"))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        rows.iter().map(Self::row).collect()
    }

    /// How many sandboxes are in each phase (every workspace); one
    /// aggregate query, cheap enough for every readiness probe.
    pub async fn phase_counts(&self) -> Result<Vec<(Phase, i64)>, StoreError> {
        let rows = sqlx::query("SELECT phase, COUNT(*) AS n FROM sandboxes GROUP BY phase")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    Phase::parse(r.get::<String, _>("phase").as_str()),
                    r.get("n"),
                )
            })
            .collect())
    }

    /// Deletes a sandbox and (by cascade) its events and revisions.
    pub async fn delete_sandbox(&self, workspace: &str, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sandboxes WHERE workspace = ? AND name = ?")
            .bind(workspace)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        Ok(done.rows_affected() > 0)
    }

    /// Back to Provisioning with no exit code, for a restart.
    pub async fn reset_for_start(&self, id: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        sqlx::query(
            "UPDATE sandboxes SET phase = ?, exit_code = NULL, updated_at_ms = ? WHERE id = ?",
        )
        .bind(Phase::Provisioning.as_str())
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Query)?;
        insert_event(&mut tx, id, now, "restarted").await?;
        tx.commit().await.map_err(StoreError::Query)
    }

    /// A sandbox's lifecycle events after event `after` (an id) and at or
    /// after `since_ms`, oldest first: (id, at_ms, message).
    pub async fn events(
        &self,
        sandbox_id: &str,
        after: i64,
        since_ms: i64,
    ) -> Result<Vec<(i64, i64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, message FROM sandbox_events
             WHERE sandbox_id = ? AND id > ? AND at_ms >= ? ORDER BY id",
        )
        .bind(sandbox_id)
        .bind(after)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        Ok(rows
            .iter()
            .map(|r| (r.get("id"), r.get("at_ms"), r.get("message")))
            .collect())
    }

    /// The settings of one scope, by key.
    pub async fn settings(&self, scope: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT key, value FROM settings WHERE scope = ? ORDER BY key")
            .bind(scope)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        Ok(rows
            .iter()
            .map(|r| (r.get("key"), r.get("value")))
            .collect())
    }

    /// A settings scope's revision (0: never changed).
    pub async fn settings_revision(&self, scope: &str) -> Result<i64, StoreError> {
        let revision: Option<i64> =
            sqlx::query_scalar("SELECT revision FROM settings_revisions WHERE scope = ?")
                .bind(scope)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::Query)?;
        Ok(revision.unwrap_or(0))
    }

    /// Sets a key and moves the scope's revision on, in one transaction.
    pub async fn set_setting(&self, scope: &str, key: &str, value: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        sqlx::query(
            "INSERT INTO settings (scope, key, value) VALUES (?, ?, ?)
             ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
        )
        .bind(scope)
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Query)?;
        bump_settings_revision(&mut tx, scope).await?;
        tx.commit().await.map_err(StoreError::Query)
    }

    /// Deletes a key (moving the scope's revision on); false when it was
    /// not set.
    pub async fn delete_setting(&self, scope: &str, key: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        let done = sqlx::query("DELETE FROM settings WHERE scope = ? AND key = ?")
            .bind(scope)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Query)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        bump_settings_revision(&mut tx, scope).await?;
        tx.commit().await.map_err(StoreError::Query)?;
        Ok(true)
    }

    /// Records a phase change and its event, in one transaction.
    /// Provisioning → Ready, once (the supervisor's session or the
    /// driver's ready marker, whichever comes first); false when the
    /// sandbox was not provisioning.
    pub async fn mark_ready(&self, id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        let changed = sqlx::query(
            "UPDATE sandboxes SET phase = 'Ready', updated_at_ms = ? WHERE id = ? AND phase = 'Provisioning'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Query)?
        .rows_affected()
            == 1;
        if changed {
            insert_event(&mut tx, id, now, "phase Ready").await?;
        }
        tx.commit().await.map_err(StoreError::Query)?;
        Ok(changed)
    }

    /// Records a message in the sandbox's event history.
    pub async fn add_event(&self, id: &str, message: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        insert_event(&mut tx, id, now_ms(), message).await?;
        tx.commit().await.map_err(StoreError::Query)
    }

    pub async fn set_phase(
        &self,
        id: &str,
        phase: Phase,
        exit_code: Option<i32>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        sqlx::query(
            "UPDATE sandboxes SET phase = ?, exit_code = COALESCE(?, exit_code), updated_at_ms = ? WHERE id = ?",
        )
        .bind(phase.as_str())
        .bind(exit_code)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Query)?;
        insert_event(&mut tx, id, now, &format!("phase {}", phase.as_str())).await?;
        tx.commit().await.map_err(StoreError::Query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            command: vec!["sh".into(), "-c".into(), "true".into()],
            policy_yaml: "version: 1\n".into(),
            env: vec![("A".into(), "1".into())],
            labels: vec![("team".into(), "x".into())],
            ..Spec::default()
        }
    }

    #[tokio::test]
    async fn sandboxes_survive_reopening_and_names_are_unique_per_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.db");
        {
            let store = Store::open(&path).await.unwrap();
            let created = store
                .create_sandbox("id-1", "default", "alpha", &spec())
                .await
                .unwrap();
            assert_eq!(created.policy_version, 1);
            assert!(matches!(
                store
                    .create_sandbox("id-2", "default", "alpha", &spec())
                    .await,
                Err(StoreError::Duplicate(name)) if name == "alpha"
            ));
            store
                .create_sandbox("id-3", "other", "alpha", &spec())
                .await
                .unwrap();
            store.set_phase("id-1", Phase::Ready, None).await.unwrap();
        }
        let store = Store::open(&path).await.unwrap();
        let alpha = store
            .get_sandbox("default", "alpha")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alpha.phase, Phase::Ready);
        assert_eq!(alpha.spec, spec());
        assert_eq!(alpha.policy_version, 1);
        assert_eq!(store.list_sandboxes("default").await.unwrap().len(), 1);
        assert!(store.delete_sandbox("default", "alpha").await.unwrap());
        assert!(!store.delete_sandbox("default", "alpha").await.unwrap());
        assert!(
            store
                .get_sandbox("default", "alpha")
                .await
                .unwrap()
                .is_none()
        );
        let events: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sandbox_events WHERE sandbox_id = 'id-1'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(events, 0, "events are deleted with their sandbox");
    }
}
