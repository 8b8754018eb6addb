//! Policy revisions of a sandbox: numbered, deduplicated by hash, and
//! moved through pending → loaded | failed → superseded by what its
//! supervisor reports.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, insert_event, now_ms};

/// One stored policy revision of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub sandbox_id: String,
    pub version: i64,
    /// SHA-256 of the YAML, hex.
    pub hash: String,
    pub yaml: String,
    pub status: RevisionStatus,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub loaded_at_ms: Option<i64>,
}

/// Where a revision stands with the sandbox's supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionStatus {
    /// Stored, not yet confirmed by the supervisor.
    Pending,
    /// The supervisor enforces it.
    Loaded,
    /// The supervisor rejected it; it keeps the previous one.
    Failed,
    /// A newer revision was loaded after it.
    Superseded,
}

impl RevisionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionStatus::Pending => "pending",
            RevisionStatus::Loaded => "loaded",
            RevisionStatus::Failed => "failed",
            RevisionStatus::Superseded => "superseded",
        }
    }

    fn parse(text: &str) -> RevisionStatus {
        match text {
            "loaded" => RevisionStatus::Loaded,
            "failed" => RevisionStatus::Failed,
            "superseded" => RevisionStatus::Superseded,
            _ => RevisionStatus::Pending,
        }
    }
}

/// SHA-256 of a policy's YAML, hex: how revisions are compared and shown.
pub fn policy_hash(yaml: &str) -> String {
    use sha2::{Digest, Sha256};
    openshell_core::hex::encode(&Sha256::digest(yaml.as_bytes()))
}

/// The columns every revision query reads.
macro_rules! select_revision {
    () => {
        "SELECT sandbox_id, version, hash, yaml, status, error, created_at_ms, loaded_at_ms
         FROM policy_revisions"
    };
}

fn revision_row(row: &SqliteRow) -> Revision {
    Revision {
        sandbox_id: row.get("sandbox_id"),
        version: row.get("version"),
        hash: row.get("hash"),
        yaml: row.get("yaml"),
        status: RevisionStatus::parse(row.get::<String, _>("status").as_str()),
        error: row.get("error"),
        created_at_ms: row.get("created_at_ms"),
        loaded_at_ms: row.get("loaded_at_ms"),
    }
}

impl Store {
    /// Stores `yaml` as the sandbox's next revision (pending), unless it
    /// equals the latest one: then that one is returned with `false`.
    ///
    /// With `expected`, the latest version must be that one (checked in the
    /// same transaction), else [`StoreError::Conflict`].
    pub async fn add_revision(
        &self,
        sandbox_id: &str,
        yaml: &str,
        expected: Option<i64>,
    ) -> Result<(Revision, bool), StoreError> {
        let hash = policy_hash(yaml);
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        let latest = sqlx::query(concat!(
            select_revision!(),
            " WHERE sandbox_id = ? ORDER BY version DESC LIMIT 1"
        ))
        .bind(sandbox_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::Query)?
        .as_ref()
        .map(revision_row);
        let current = latest.as_ref().map_or(0, |r| r.version);
        if let Some(expected) = expected
            && expected != current
        {
            return Err(StoreError::Conflict { expected, current });
        }
        if let Some(latest) = latest
            && latest.hash == hash
        {
            return Ok((latest, false));
        }
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM policy_revisions WHERE sandbox_id = ?",
        )
        .bind(sandbox_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::Query)?;
        sqlx::query(
            "INSERT INTO policy_revisions (sandbox_id, version, hash, yaml, status, created_at_ms)
             VALUES (?, ?, ?, ?, 'pending', ?)",
        )
        .bind(sandbox_id)
        .bind(version)
        .bind(&hash)
        .bind(yaml)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Query)?;
        insert_event(
            &mut tx,
            sandbox_id,
            now,
            &format!("policy version {version} submitted"),
        )
        .await?;
        tx.commit().await.map_err(StoreError::Query)?;
        let revision = Revision {
            sandbox_id: sandbox_id.to_owned(),
            version,
            hash,
            yaml: yaml.to_owned(),
            status: RevisionStatus::Pending,
            error: None,
            created_at_ms: now,
            loaded_at_ms: None,
        };
        Ok((revision, true))
    }

    /// One revision; version 0 is the latest.
    pub async fn revision(
        &self,
        sandbox_id: &str,
        version: i64,
    ) -> Result<Option<Revision>, StoreError> {
        let row = if version == 0 {
            sqlx::query(concat!(
                select_revision!(),
                " WHERE sandbox_id = ? ORDER BY version DESC LIMIT 1"
            ))
            .bind(sandbox_id)
            .fetch_optional(&self.pool)
            .await
        } else {
            sqlx::query(concat!(
                select_revision!(),
                " WHERE sandbox_id = ? AND version = ?"
            ))
            .bind(sandbox_id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
        }
        .map_err(StoreError::Query)?;
        Ok(row.as_ref().map(revision_row))
    }

    /// Revisions, newest first (`limit` 0: all).
    pub async fn revisions(
        &self,
        sandbox_id: &str,
        limit: u32,
    ) -> Result<Vec<Revision>, StoreError> {
        let limit = if limit == 0 { -1 } else { i64::from(limit) };
        let rows = sqlx::query(concat!(
            select_revision!(),
            " WHERE sandbox_id = ? ORDER BY version DESC LIMIT ?"
        ))
        .bind(sandbox_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        Ok(rows.iter().map(revision_row).collect())
    }

    /// The newest revision the supervisor loaded (0: none).
    pub async fn active_version(&self, sandbox_id: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM policy_revisions
             WHERE sandbox_id = ? AND status = 'loaded'",
        )
        .bind(sandbox_id)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::Query)
    }

    /// Records what the supervisor did with a revision. A loaded revision
    /// supersedes every older pending or loaded one; a report about a
    /// revision that was superseded meanwhile changes nothing, and neither
    /// does a repeated failure.
    pub async fn set_revision_status(
        &self,
        sandbox_id: &str,
        version: i64,
        loaded: bool,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        let (status, event) = if loaded {
            (
                RevisionStatus::Loaded,
                format!("policy version {version} loaded"),
            )
        } else {
            (
                RevisionStatus::Failed,
                format!("policy version {version} failed to load"),
            )
        };
        // Loaded wins over an earlier failure (a restarted sandbox starts
        // with the latest revision); failed only replaces pending.
        let updated = sqlx::query(
            "UPDATE policy_revisions SET status = ?, error = ?, loaded_at_ms = ?
             WHERE sandbox_id = ? AND version = ?
               AND (status = 'pending' OR (? AND status IN ('loaded', 'failed')))",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(loaded.then_some(now))
        .bind(sandbox_id)
        .bind(version)
        .bind(loaded)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::Query)?;
        if updated.rows_affected() == 0 {
            return Ok(());
        }
        if loaded {
            sqlx::query(
                "UPDATE policy_revisions SET status = 'superseded'
                 WHERE sandbox_id = ? AND version < ? AND status IN ('pending', 'loaded')",
            )
            .bind(sandbox_id)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Query)?;
        }
        insert_event(&mut tx, sandbox_id, now, &event).await?;
        tx.commit().await.map_err(StoreError::Query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Spec;

    fn spec() -> Spec {
        Spec {
            command: vec!["true".into()],
            policy_yaml: "version: 1\n".into(),
            env: vec![],
            labels: vec![],
            ..Spec::default()
        }
    }

    #[tokio::test]
    async fn revisions_are_numbered_deduplicated_and_follow_the_supervisor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("gateway.db")).await.unwrap();
        store
            .create_sandbox("id-1", "default", "alpha", &spec())
            .await
            .unwrap();
        let status = |store: &Store, version| {
            let store = store.clone();
            async move {
                let revision = store.revision("id-1", version).await.unwrap().unwrap();
                (revision.status, revision.error)
            }
        };
        let (two, stored) = store
            .add_revision("id-1", "version: 1\n# two\n", None)
            .await
            .unwrap();
        assert!(stored);
        assert_eq!(two.version, 2);
        let (same, stored) = store
            .add_revision("id-1", "version: 1\n# two\n", None)
            .await
            .unwrap();
        assert!(!stored, "the same YAML is not stored twice");
        assert_eq!(same.version, 2);
        assert!(matches!(
            store
                .add_revision("id-1", "version: 1\n# stale\n", Some(1))
                .await,
            Err(StoreError::Conflict {
                expected: 1,
                current: 2
            })
        ));

        store
            .set_revision_status("id-1", 2, true, None)
            .await
            .unwrap();
        assert_eq!(status(&store, 1).await.0, RevisionStatus::Superseded);
        assert_eq!(store.active_version("id-1").await.unwrap(), 2);
        // A late report about a superseded revision changes nothing.
        store
            .set_revision_status("id-1", 1, true, None)
            .await
            .unwrap();
        assert_eq!(status(&store, 1).await.0, RevisionStatus::Superseded);

        let (three, _) = store
            .add_revision("id-1", "version: 1\n# three\n", Some(2))
            .await
            .unwrap();
        store
            .set_revision_status("id-1", three.version, false, Some("static section changed"))
            .await
            .unwrap();
        assert_eq!(
            status(&store, 3).await,
            (
                RevisionStatus::Failed,
                Some("static section changed".to_owned())
            )
        );
        assert_eq!(store.active_version("id-1").await.unwrap(), 2);
        // A restarted sandbox starts with revision 3 and loads it.
        store
            .set_revision_status("id-1", 3, true, None)
            .await
            .unwrap();
        assert_eq!(status(&store, 3).await, (RevisionStatus::Loaded, None));
        assert_eq!(status(&store, 2).await.0, RevisionStatus::Superseded);
        let listed: Vec<i64> = store
            .revisions("id-1", 2)
            .await
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(listed, [3, 2]);
    }
}
