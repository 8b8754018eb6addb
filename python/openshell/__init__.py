"""OpenShell's Python SDK: drive sandboxes from code.

    from openshell import Gateway

    gw = Gateway.from_config()                 # the CLI's active gateway and credentials
    with gw.sandboxes.create(policy=yaml) as sb:
        result = sb.exec(["python3", "-c", "print(6 * 7)"])
        assert result.stdout == b"42\\n"

``openshell.aio.AsyncGateway`` is the same API for asyncio. Every failure
the gateway reports is an ``OpenShellError`` with its message.
"""

from .aio import AsyncGateway, AsyncSandbox
from .client import Gateway, Sandbox
from .errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OpenShellError,
    PermissionDenied,
    PolicyLoadError,
    SandboxError,
    Timeout,
    Unauthenticated,
    Unavailable,
)
from .types import ExecChunk, LogEntry, PolicyRevision, Result, SandboxInfo, User

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "AsyncGateway",
    "AsyncSandbox",
    "ExecChunk",
    "FailedPrecondition",
    "Gateway",
    "InvalidArgument",
    "LogEntry",
    "NotFound",
    "OpenShellError",
    "PermissionDenied",
    "PolicyLoadError",
    "PolicyRevision",
    "Result",
    "Sandbox",
    "SandboxError",
    "SandboxInfo",
    "Timeout",
    "Unauthenticated",
    "Unavailable",
    "User",
]
