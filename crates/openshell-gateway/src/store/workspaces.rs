//! Workspaces and their members (docs/cli.md, "Workspaces and who may use
//! them"). A workspace scopes sandboxes, providers and inference routes; a
//! member is a subject with a role in it.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, now_ms};

/// A stored workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub created_at_ms: i64,
}

/// A subject's role in a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub workspace: String,
    pub subject: String,
    /// `user` or `admin` (an admin of the workspace manages its members).
    pub role: String,
}

fn workspace(row: &SqliteRow) -> Result<Workspace, StoreError> {
    Ok(Workspace {
        name: row.get("name"),
        labels: serde_json::from_str(&row.get::<String, _>("labels_json"))
            .map_err(StoreError::Corrupt)?,
        created_at_ms: row.get("created_at_ms"),
    })
}

fn member(row: &SqliteRow) -> Member {
    Member {
        workspace: row.get("workspace"),
        subject: row.get("subject"),
        role: row.get("role"),
    }
}

impl Store {
    /// Creates a workspace; [`StoreError::DuplicateWorkspace`] when it exists.
    pub async fn create_workspace(
        &self,
        name: &str,
        labels: &[(String, String)],
    ) -> Result<Workspace, StoreError> {
        let created = Workspace {
            name: name.to_owned(),
            labels: labels.to_vec(),
            created_at_ms: now_ms(),
        };
        let inserted = sqlx::query(
            "INSERT INTO workspaces (name, labels_json, created_at_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(serde_json::to_string(labels).map_err(StoreError::Corrupt)?)
        .bind(created.created_at_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::DuplicateWorkspace(name.to_owned()));
        }
        Ok(created)
    }

    pub async fn workspace(&self, name: &str) -> Result<Option<Workspace>, StoreError> {
        let found = sqlx::query("SELECT * FROM workspaces WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        found.as_ref().map(workspace).transpose()
    }

    /// Every workspace, by name.
    pub async fn workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        let rows = sqlx::query("SELECT * FROM workspaces ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::Query)?;
        rows.iter().map(workspace).collect()
    }

    /// Deletes an empty workspace (and its members); false when there was
    /// none. [`StoreError::WorkspaceInUse`] while sandboxes or providers
    /// remain in it.
    pub async fn delete_workspace(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::Query)?;
        let sandboxes: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sandboxes WHERE workspace = ?")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::Query)?;
        let providers: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM providers WHERE workspace = ?")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::Query)?;
        if sandboxes > 0 || providers > 0 {
            return Err(StoreError::WorkspaceInUse {
                workspace: name.to_owned(),
                sandboxes,
                providers,
            });
        }
        sqlx::query("DELETE FROM inference_routes WHERE workspace = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Query)?;
        let deleted = sqlx::query("DELETE FROM workspaces WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::Query)?;
        tx.commit().await.map_err(StoreError::Query)?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Adds a member or changes its role.
    pub async fn put_member(&self, member: &Member) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workspace_members (workspace, subject, role, added_at_ms) VALUES (?, ?, ?, ?)
             ON CONFLICT (workspace, subject) DO UPDATE SET role = excluded.role",
        )
        .bind(&member.workspace)
        .bind(&member.subject)
        .bind(&member.role)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        Ok(())
    }

    /// Removes a member; false when it was none.
    pub async fn remove_member(&self, workspace: &str, subject: &str) -> Result<bool, StoreError> {
        let removed =
            sqlx::query("DELETE FROM workspace_members WHERE workspace = ? AND subject = ?")
                .bind(workspace)
                .bind(subject)
                .execute(&self.pool)
                .await
                .map_err(StoreError::Query)?;
        Ok(removed.rows_affected() > 0)
    }

    /// A workspace's members, by subject.
    pub async fn members(&self, workspace: &str) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT workspace, subject, role FROM workspace_members WHERE workspace = ? ORDER BY subject",
        )
        .bind(workspace)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        Ok(rows.iter().map(member).collect())
    }

    /// The workspaces `subject` is a member of, by name.
    pub async fn memberships(&self, subject: &str) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT workspace, subject, role FROM workspace_members WHERE subject = ? ORDER BY workspace",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::Query)?;
        Ok(rows.iter().map(member).collect())
    }

    /// `subject`'s role in `workspace`, if it is a member.
    pub async fn member_role(
        &self,
        workspace: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT role FROM workspace_members WHERE workspace = ? AND subject = ?")
            .bind(workspace)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::Query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workspaces_hold_members_and_are_deleted_only_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).await.unwrap();
        assert!(store.workspace("default").await.unwrap().is_some());
        store
            .create_workspace("team", &[("tier".into(), "gold".into())])
            .await
            .unwrap();
        assert!(matches!(
            store.create_workspace("team", &[]).await,
            Err(StoreError::DuplicateWorkspace(_))
        ));
        let alice = Member {
            workspace: "team".into(),
            subject: "alice".into(),
            role: "user".into(),
        };
        store.put_member(&alice).await.unwrap();
        store
            .put_member(&Member {
                role: "admin".into(),
                ..alice.clone()
            })
            .await
            .unwrap();
        assert_eq!(
            store.member_role("team", "alice").await.unwrap().as_deref(),
            Some("admin")
        );
        assert_eq!(store.memberships("alice").await.unwrap().len(), 1);
        assert_eq!(store.member_role("default", "alice").await.unwrap(), None);

        let spec = crate::store::Spec::default();
        store
            .create_sandbox("id1", "team", "sb", &spec)
            .await
            .unwrap();
        assert!(matches!(
            store.delete_workspace("team").await,
            Err(StoreError::WorkspaceInUse { sandboxes: 1, .. })
        ));
        assert!(store.workspace("team").await.unwrap().is_some(), "intact");
        store.delete_sandbox("team", "sb").await.unwrap();
        assert!(store.delete_workspace("team").await.unwrap());
        assert!(!store.delete_workspace("team").await.unwrap());
        assert_eq!(store.memberships("alice").await.unwrap(), vec![]);
    }
}
