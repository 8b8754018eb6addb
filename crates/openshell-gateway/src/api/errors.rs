//! How internal errors become gRPC statuses: the store's and the
//! drivers', each mapped in one place; details go to the log, not to the
//! caller.

use tonic::Status;

use crate::drivers::DriverError;
use crate::store::StoreError;

/// Maps a store error to a status; internals are logged, not leaked.
pub fn status(error: StoreError) -> Status {
    match error {
        StoreError::Duplicate(name) => {
            Status::already_exists(format!("sandbox '{name}' already exists"))
        }
        StoreError::Conflict { expected, current } => Status::aborted(format!(
            "the policy changed meanwhile: it is at version {current}, not {expected}"
        )),
        StoreError::DuplicateProvider(name) => Status::already_exists(format!(
            "provider '{name}' already exists (change it with: openshell provider update {name})"
        )),
        StoreError::VersionConflict {
            what,
            expected,
            current,
        } => Status::aborted(format!(
            "{what} changed meanwhile: it is at version {current}, not {expected}; read it again and retry"
        )),
        StoreError::ServesRoute { provider, route } => {
            let flag = if route.is_empty() { "" } else { " --system" };
            Status::failed_precondition(format!(
                "provider '{provider}' serves the inference route; delete the route first with: openshell inference delete{flag}"
            ))
        }
        StoreError::DuplicateWorkspace(name) => {
            Status::already_exists(format!("workspace '{name}' already exists"))
        }
        StoreError::WorkspaceInUse {
            workspace,
            sandboxes,
            providers,
        } => Status::failed_precondition(format!(
            "workspace '{workspace}' still holds {sandboxes} sandbox(es) and {providers} provider(s); delete them first (openshell sandbox delete --all --workspace {workspace})"
        )),
        StoreError::InUse {
            provider,
            sandboxes,
        } => Status::failed_precondition(format!(
            "provider '{provider}' is attached to sandbox(es) {}; detach it first with: openshell sandbox provider detach <sandbox> {provider}",
            sandboxes.join(", ")
        )),
        other => {
            tracing::error!(error = %chain(other), "store failure");
            Status::internal("internal error; see the gateway log")
        }
    }
}

/// A driver's failure as the API answers it, the one place they map: a
/// refusal is the user's to fix (FAILED_PRECONDITION with the driver's
/// words); anything else is logged with its causes and reported as the
/// driver being unavailable.
pub(crate) fn driver_status(error: DriverError) -> Status {
    match error {
        DriverError::Refused(message) => Status::failed_precondition(message),
        other => {
            tracing::error!(error = %chain(other), "compute driver failure");
            Status::unavailable("the gateway's compute driver failed; see the gateway log")
        }
    }
}

/// An error with its causes, `a: b: c`, for the log.
pub(crate) fn chain(error: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(error))
}
