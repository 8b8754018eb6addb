//! Where a sandbox command goes ([`Scope`]: the gateway and the
//! workspace) and how the gateway's refusals read ([`status`]); shared by
//! every command group that talks to sandboxes.

use anyhow::{Context, bail};
use tonic::{Code, Request};

use crate::output;
use crate::registry::Target;

/// The metadata key naming the workspace (the gateway's `WORKSPACE_HEADER`).
const WORKSPACE_HEADER: &str = "x-openshell-workspace";

/// Where a sandbox command goes.
#[derive(Debug, Clone)]
pub struct Scope {
    pub target: Option<Target>,
    pub workspace: String,
}

impl Scope {
    pub fn target(&self) -> anyhow::Result<&Target> {
        self.target.as_ref().context(
            "No active gateway.\nSet one with: openshell gateway select <name>\nOr register one with: openshell gateway add <endpoint>",
        )
    }

    /// The sandbox a command addresses: `given`, else the last one created
    /// through this gateway in this workspace (announced on stderr).
    pub fn sandbox(&self, given: Option<String>) -> anyhow::Result<String> {
        if let Some(name) = given {
            return Ok(name);
        }
        let target = self.target()?;
        let last =
            crate::registry::Registry::for_user()?.last_sandbox(&target.name, &self.workspace);
        match last {
            Some(name) => {
                output::arrow(&format!("Using sandbox '{name}' (last used)"));
                Ok(name)
            }
            None => bail!(
                "no sandbox named, and none was created through gateway '{}' in workspace '{}'\nName one, or list them with: openshell sandbox list",
                target.name,
                self.workspace
            ),
        }
    }

    pub fn remember(&self, name: &str) {
        if let Some(target) = &self.target
            && let Ok(registry) = crate::registry::Registry::for_user()
            && let Err(error) = registry.set_last_sandbox(&target.name, &self.workspace, name)
        {
            output::warning(&format!("cannot remember the last sandbox: {error:#}"));
        }
    }

    pub fn request<T>(&self, message: T) -> anyhow::Result<Request<T>> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            WORKSPACE_HEADER,
            self.workspace
                .parse()
                .with_context(|| format!("invalid workspace name '{}'", self.workspace))?,
        );
        Ok(request)
    }
}

/// A gRPC error as the user should read it: the gateway's message, with
/// the code only when it adds something.
pub fn status(error: tonic::Status) -> anyhow::Error {
    match error.code() {
        Code::NotFound
        | Code::InvalidArgument
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated => {
            anyhow::anyhow!("{}", error.message())
        }
        // Sent by the gateway (a sandbox's supervisor is away): its message
        // says what to do. Made by the transport: the gateway itself is away.
        Code::Unavailable if std::error::Error::source(&error).is_none() => {
            anyhow::anyhow!("{}", error.message())
        }
        Code::Unavailable => anyhow::anyhow!("the gateway is unavailable: {}", error.message()),
        code => anyhow::anyhow!("{}: {code:?}", error.message()),
    }
}
