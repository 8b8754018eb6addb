"""Errors: every failure the gateway reports becomes an OpenShellError
carrying the gateway's own message (what the CLI would print)."""

from __future__ import annotations

from typing import Optional

import grpc


class OpenShellError(Exception):
    """A gateway refused or failed a call; ``message`` is its words."""

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class NotFound(OpenShellError):
    """No such sandbox, provider, workspace or revision."""


class AlreadyExists(OpenShellError):
    """A sandbox, provider or workspace of that name exists."""


class InvalidArgument(OpenShellError):
    """The request was refused as given (an invalid policy, name, value)."""


class FailedPrecondition(OpenShellError):
    """The request does not fit the current state (e.g. the sandbox is not running)."""


class PermissionDenied(OpenShellError):
    """The caller may not do this (e.g. not a member of the workspace)."""


class Unauthenticated(OpenShellError):
    """The gateway does not know who calls (no or a bad certificate or token)."""


class Unavailable(OpenShellError):
    """The gateway, or the sandbox's supervisor, cannot be reached."""


class SandboxError(OpenShellError):
    """A sandbox ended in phase Error, or did not become ready."""


class PolicyLoadError(OpenShellError):
    """The sandbox rejected a policy revision (``policy.set(..., wait=True)``)."""


class Timeout(OpenShellError, TimeoutError):
    """Waiting (for Ready, for a policy to load) took longer than allowed."""


_BY_CODE = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def from_rpc_error(error: grpc.RpcError) -> OpenShellError:
    """The exception for a failed call, with the gateway's message."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else None
    message = details or str(error)
    return _BY_CODE.get(code, OpenShellError)(message, code)
