"""What the SDK returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class Result:
    """A finished command: its exit code (128+N when signal N ended it;
    124 when ``timeout`` did) and its whole output."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class ExecChunk:
    """One piece of a streaming command: output, or its end (``exit_code``)."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: Optional[int] = None


@dataclass(frozen=True)
class LogEntry:
    """One log line: ``source`` is ``sandbox`` (an egress decision) or
    ``gateway`` (a lifecycle or policy event); ``fields`` the JSON object."""

    source: str
    level: str
    fields: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyRevision:
    version: int
    hash: str
    # pending | loaded | failed | superseded
    status: str
    error: str
    active_version: int
    unchanged: bool


@dataclass(frozen=True)
class SandboxInfo:
    id: str
    name: str
    workspace: str
    # Provisioning | Ready | Error | Deleting | Stopped
    phase: str
    exit_code: Optional[int]
    policy_version: int
    labels: Dict[str, str]
    created_at_ms: int


@dataclass(frozen=True)
class User:
    subject: str
    roles: tuple
    identity_provider: str
    workspaces: Dict[str, str]
