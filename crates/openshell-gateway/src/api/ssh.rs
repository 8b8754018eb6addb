//! `CreateSshSession` and the ssh streams it grants: a short-lived random
//! token, bound to one sandbox and the caller's workspace, that a
//! `Forward` stream presents (`ssh_token`) to reach that sandbox's SSH
//! server through its supervisor's session. The token, not a name in the
//! stream, decides the sandbox, so a stream for sandbox A can never land in
//! sandbox B; tokens live in memory and die with their sandbox, their
//! expiry or a gateway restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Status;

use openshell_proto::v1 as pb;

use super::{Api, running, validate_name};
use crate::store;

/// How long a token can open streams.
const TOKEN_TTL: Duration = Duration::from_secs(300);
/// Live tokens kept at most (the oldest go first).
const MAX_TOKENS: usize = 10_000;

/// The live ssh session tokens.
#[derive(Debug, Clone, Default)]
pub struct SshTokens {
    inner: Arc<Mutex<HashMap<String, Grant>>>,
}

#[derive(Debug, Clone)]
struct Grant {
    sandbox_id: String,
    workspace: String,
    expires: Instant,
}

impl SshTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Grant>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new token for `sandbox_id`; returns it and its lifetime.
    fn issue(&self, sandbox_id: &str, workspace: &str) -> Result<String, Status> {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| Status::internal("no randomness for a token"))?;
        let token = openshell_core::hex::encode(&bytes);
        let now = Instant::now();
        let mut tokens = self.lock();
        tokens.retain(|_, g| g.expires > now);
        if tokens.len() >= MAX_TOKENS
            && let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, g)| g.expires)
                .map(|(t, _)| t.clone())
        {
            tokens.remove(&oldest);
        }
        tokens.insert(
            token.clone(),
            Grant {
                sandbox_id: sandbox_id.to_owned(),
                workspace: workspace.to_owned(),
                expires: now + TOKEN_TTL,
            },
        );
        Ok(token)
    }

    /// The sandbox a live token was issued for in `workspace`.
    fn redeem(&self, token: &str, workspace: &str) -> Option<String> {
        let tokens = self.lock();
        tokens
            .get(token)
            .filter(|g| g.expires > Instant::now() && g.workspace == workspace)
            .map(|g| g.sandbox_id.clone())
    }

    /// Forgets every token of a deleted sandbox.
    pub fn revoke_sandbox(&self, sandbox_id: &str) {
        self.lock().retain(|_, g| g.sandbox_id != sandbox_id);
    }
}

impl Api {
    pub(super) async fn create_ssh_session_in(
        &self,
        workspace: &str,
        request: pb::CreateSshSessionRequest,
    ) -> Result<pb::SshSession, Status> {
        validate_name("sandbox", &request.name)?;
        let sandbox = self.existing(workspace, &request.name).await?;
        running(&sandbox)?;
        let token = self.ssh_tokens.issue(&sandbox.id, workspace)?;
        let ttl_ms = i64::try_from(TOKEN_TTL.as_millis()).unwrap_or(i64::MAX);
        Ok(pb::SshSession {
            sandbox_id: sandbox.id,
            sandbox: sandbox.name,
            token,
            expires_at_ms: store::now_ms() + ttl_ms,
        })
    }

    /// The sandbox an ssh stream's token grants, still existing and running.
    pub(super) async fn ssh_target(
        &self,
        workspace: &str,
        token: &str,
    ) -> Result<store::Sandbox, Status> {
        let denied = || {
            Status::permission_denied(
                "the ssh session token is invalid or expired; run the command again for a new one",
            )
        };
        let id = self
            .ssh_tokens
            .redeem(token, workspace)
            .ok_or_else(denied)?;
        let sandbox = self
            .store
            .get_sandbox_by_id(&id)
            .await
            .map_err(super::status)?
            .ok_or_else(denied)?;
        running(&sandbox)?;
        Ok(sandbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_sandbox_only_in_its_workspace() {
        let tokens = SshTokens::default();
        let a = tokens.issue("id-a", "default").unwrap();
        let b = tokens.issue("id-b", "default").unwrap();
        assert_ne!(a, b);
        assert_eq!(tokens.redeem(&a, "default").as_deref(), Some("id-a"));
        assert_eq!(tokens.redeem(&b, "default").as_deref(), Some("id-b"));
        assert_eq!(tokens.redeem(&a, "other"), None);
        assert_eq!(tokens.redeem("not-a-token", "default"), None);
        tokens.revoke_sandbox("id-a");
        assert_eq!(tokens.redeem(&a, "default"), None);
        assert_eq!(tokens.redeem(&b, "default").as_deref(), Some("id-b"));
    }

    #[test]
    fn an_expired_token_grants_nothing() {
        let tokens = SshTokens::default();
        let a = tokens.issue("id-a", "default").unwrap();
        tokens.lock().get_mut(&a).unwrap().expires = Instant::now() - Duration::from_secs(1);
        assert_eq!(tokens.redeem(&a, "default"), None);
    }
}
