"""The asyncio client; the blocking one (``openshell.Gateway``) runs it on
a loop of its own.

    async with AsyncGateway.from_config() as gw:
        async with await gw.sandboxes.create(policy=yaml) as sb:
            result = await sb.exec(["python3", "-c", "print(6 * 7)"])
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, List, Mapping, Optional, Sequence, Union

import grpc

from . import _transfer, config
from .errors import (
    OpenShellError,
    PolicyLoadError,
    SandboxError,
    Timeout,
    from_rpc_error,
)
from .types import ExecChunk, LogEntry, PolicyRevision, Result, SandboxInfo, User
from .v1 import gateway_pb2 as pb
from .v1 import gateway_pb2_grpc as rpc

WORKSPACE_HEADER = "x-openshell-workspace"
# Stdin travels in pieces this big (the gateway takes messages up to 4 MiB).
CHUNK = 256 * 1024
MAX_MESSAGE = 4 * 1024 * 1024

PolicySource = Union[str, os.PathLike]


def _policy_text(policy: Optional[PolicySource]) -> str:
    """A policy given as YAML text, or as a path to a YAML file."""
    if policy is None:
        return ""
    if isinstance(policy, os.PathLike):
        return Path(policy).read_text()
    return policy


def _info(sandbox: "pb.Sandbox") -> SandboxInfo:
    return SandboxInfo(
        id=sandbox.id,
        name=sandbox.name,
        workspace=sandbox.workspace,
        phase=sandbox.phase,
        exit_code=sandbox.exit_code if sandbox.HasField("exit_code") else None,
        policy_version=sandbox.policy_version,
        labels=dict(sandbox.spec.labels),
        created_at_ms=sandbox.created_at_ms,
    )


def _revision(revision: "pb.PolicyRevision") -> PolicyRevision:
    return PolicyRevision(
        version=revision.version,
        hash=revision.hash,
        status=revision.status,
        error=revision.error,
        active_version=revision.active_version,
        unchanged=revision.unchanged,
    )


class AsyncGateway:
    """A connection to one gateway, acting in one workspace."""

    def __init__(
        self,
        endpoint: str,
        *,
        ca_cert: Optional[bytes] = None,
        client_cert: Optional[bytes] = None,
        client_key: Optional[bytes] = None,
        token: Optional[str] = None,
        workspace: str = config.DEFAULT_WORKSPACE,
        name: Optional[str] = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.name = name or self.endpoint
        self.workspace = workspace
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
        if self.endpoint.startswith("https://"):
            target = self.endpoint[len("https://"):]
            credentials = grpc.ssl_channel_credentials(
                root_certificates=ca_cert,
                private_key=client_key,
                certificate_chain=client_cert,
            )
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        elif self.endpoint.startswith("http://"):
            self._channel = grpc.aio.insecure_channel(self.endpoint[len("http://"):], options=options)
        else:
            raise ValueError(f"the gateway endpoint must be http:// or https://, got {endpoint!r}")
        self._stub = rpc.GatewayStub(self._channel)
        self._metadata = [(WORKSPACE_HEADER, workspace)]
        if token:
            self._metadata.append(("authorization", f"Bearer {token}"))
        self.sandboxes = AsyncSandboxes(self)

    @classmethod
    def from_config(cls, name: Optional[str] = None, *, workspace: Optional[str] = None) -> "AsyncGateway":
        """The gateway the CLI would use (``-g NAME``, else
        ``OPENSHELL_GATEWAY_ENDPOINT``, ``OPENSHELL_GATEWAY``, the active
        one), with the CLI's client bundle or token, in ``workspace`` (else
        ``OPENSHELL_WORKSPACE``, else ``default``)."""
        return cls(**config.connection(name, workspace))

    def in_workspace(self, workspace: str) -> "AsyncGateway":
        """The same connection, acting in another workspace."""
        other = object.__new__(AsyncGateway)
        other.__dict__.update(self.__dict__)
        other.workspace = workspace
        other._metadata = [(k, v) for k, v in self._metadata if k != WORKSPACE_HEADER]
        other._metadata.append((WORKSPACE_HEADER, workspace))
        other.sandboxes = AsyncSandboxes(other)
        return other

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncGateway":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, request: object) -> Any:
        try:
            return await getattr(self._stub, method)(request, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def health(self) -> str:
        """The gateway's version."""
        reply = await self._call("Health", pb.HealthRequest())
        return reply.version

    async def whoami(self) -> User:
        user = await self._call("GetCurrentUser", pb.GetCurrentUserRequest())
        return User(
            subject=user.subject,
            roles=tuple(user.roles),
            identity_provider=user.identity_provider,
            workspaces={m.workspace: m.role for m in user.memberships},
        )


class AsyncSandboxes:
    """The workspace's sandboxes."""

    def __init__(self, gateway: AsyncGateway) -> None:
        self._gw = gateway

    async def create(
        self,
        *,
        name: str = "",
        command: Sequence[str] = (),
        policy: Optional[PolicySource] = None,
        providers: Iterable[str] = (),
        env: Optional[Mapping[str, str]] = None,
        labels: Optional[Mapping[str, str]] = None,
        image: str = "",
        cpu_millis: int = 0,
        memory_bytes: int = 0,
        tty: bool = False,
        wait: bool = True,
        timeout: float = 300.0,
    ) -> "AsyncSandbox":
        """Creates a sandbox and, with ``wait``, returns once it is Ready.
        Without ``command`` it is idle (for ``exec``); with one, that is its
        main process. ``policy`` is YAML text or a path to a YAML file."""
        spec = pb.SandboxSpec(
            command=list(command),
            policy_yaml=_policy_text(policy),
            env=dict(env or {}),
            labels=dict(labels or {}),
            image=image,
            cpu_millis=cpu_millis,
            memory_bytes=memory_bytes,
            providers=list(providers),
            tty=tty,
        )
        created = await self._gw._call("CreateSandbox", pb.CreateSandboxRequest(name=name, spec=spec))
        sandbox = AsyncSandbox(self._gw, created.name, created.id)
        if wait:
            try:
                await sandbox.wait_ready(timeout)
            except BaseException:
                # Nothing half-made is left behind.
                try:
                    await sandbox.delete()
                except OpenShellError:
                    pass
                raise
        return sandbox

    async def get(self, name: str) -> "AsyncSandbox":
        found = await self._gw._call("GetSandbox", pb.GetSandboxRequest(name=name))
        return AsyncSandbox(self._gw, found.name, found.id)

    async def list(self, *, labels: Optional[Mapping[str, str]] = None) -> List[SandboxInfo]:
        reply = await self._gw._call("ListSandboxes", pb.ListSandboxesRequest(selector=dict(labels or {})))
        return [_info(s) for s in reply.sandboxes]

    async def delete(self, name: str) -> bool:
        """False when there was no such sandbox."""
        reply = await self._gw._call("DeleteSandbox", pb.DeleteSandboxRequest(name=name))
        return reply.deleted


class AsyncPolicy:
    """A sandbox's policy revisions."""

    def __init__(self, sandbox: "AsyncSandbox") -> None:
        self._sb = sandbox

    async def get(self, version: int = 0) -> PolicyRevision:
        """Revision ``version`` (0: the one in force)."""
        revision = await self._sb._gw._call(
            "GetPolicy", pb.GetPolicyRequest(name=self._sb.name, version=version)
        )
        return _revision(revision)

    async def yaml(self, version: int = 0) -> str:
        revision = await self._sb._gw._call(
            "GetPolicy", pb.GetPolicyRequest(name=self._sb.name, version=version)
        )
        return revision.policy_yaml

    async def set(self, policy: PolicySource, *, wait: bool = False, timeout: float = 60.0) -> PolicyRevision:
        """Stores a new revision; with ``wait``, returns once the sandbox
        has loaded it (raises PolicyLoadError when it refused it, Timeout
        after ``timeout`` seconds). A revision equal to the latest one
        stores nothing (``unchanged``)."""
        revision = _revision(
            await self._sb._gw._call(
                "SetPolicy", pb.SetPolicyRequest(name=self._sb.name, policy_yaml=_policy_text(policy))
            )
        )
        if not wait or revision.unchanged and revision.status == "loaded":
            return revision
        deadline = time.monotonic() + timeout
        while True:
            current = await self.get(revision.version)
            if current.status in ("loaded", "superseded"):
                return current
            if current.status == "failed":
                raise PolicyLoadError(
                    f"Policy version {current.version} failed to load: {current.error}"
                )
            if time.monotonic() > deadline:
                raise Timeout(f"Timeout waiting for policy version {revision.version} to load")
            await asyncio.sleep(0.2)


class AsyncSandbox:
    """One sandbox; ``async with`` deletes it at the end."""

    def __init__(self, gateway: AsyncGateway, name: str, id: str) -> None:
        self._gw = gateway
        self.name = name
        self.id = id
        self.policy = AsyncPolicy(self)

    def __repr__(self) -> str:
        return f"AsyncSandbox(name={self.name!r}, id={self.id!r})"

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.delete()

    async def info(self) -> SandboxInfo:
        return _info(await self._gw._call("GetSandbox", pb.GetSandboxRequest(name=self.name)))

    async def wait_ready(self, timeout: float = 300.0) -> SandboxInfo:
        deadline = time.monotonic() + timeout
        while True:
            info = await self.info()
            if info.phase in ("Ready", "Stopped"):
                return info
            if info.phase == "Error":
                raise SandboxError(
                    f"sandbox {self.name} failed to start; see `openshell sandbox get {self.name}`"
                )
            if time.monotonic() > deadline:
                raise Timeout(f"sandbox {self.name} is not ready after {timeout:.0f}s (phase {info.phase})")
            await asyncio.sleep(0.05)

    async def stop(self) -> SandboxInfo:
        return _info(await self._gw._call("StopSandbox", pb.StopSandboxRequest(name=self.name)))

    async def start(self, *, wait: bool = True, timeout: float = 300.0) -> SandboxInfo:
        started = _info(await self._gw._call("StartSandbox", pb.StartSandboxRequest(name=self.name)))
        return await self.wait_ready(timeout) if wait else started

    async def delete(self) -> bool:
        return await self._gw.sandboxes.delete(self.name)

    async def exec_stream(
        self,
        command: Sequence[str],
        *,
        stdin: Union[bytes, str, None] = None,
        env: Optional[Mapping[str, str]] = None,
        workdir: str = "",
        timeout: int = 0,
    ) -> AsyncIterator[ExecChunk]:
        """Runs ``command`` under the agent's restrictions, yielding its
        output as it comes; the last chunk carries ``exit_code``."""
        if isinstance(stdin, str):
            stdin = stdin.encode()
        start = pb.ExecInput(
            start=pb.ExecStart(
                name=self.name,
                command=list(command),
                env=dict(env or {}),
                workdir=workdir,
                timeout_seconds=timeout,
            )
        )

        async def inputs() -> AsyncIterator["pb.ExecInput"]:
            yield start
            data = stdin or b""
            for offset in range(0, len(data), CHUNK):
                yield pb.ExecInput(stdin=data[offset : offset + CHUNK])
            yield pb.ExecInput(close_stdin=True)

        call = self._gw._stub.Exec(inputs(), metadata=self._gw._metadata)
        try:
            async for output in call:
                kind = output.WhichOneof("kind")
                if kind == "stdout":
                    yield ExecChunk(stdout=output.stdout)
                elif kind == "stderr":
                    yield ExecChunk(stderr=output.stderr)
                elif kind == "exit_code":
                    yield ExecChunk(exit_code=output.exit_code)
                    return
                elif kind == "error":
                    raise OpenShellError(output.error)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()
        raise OpenShellError(f"the output of the command in sandbox {self.name} ended without an exit code")

    async def exec(
        self,
        command: Sequence[str],
        *,
        stdin: Union[bytes, str, None] = None,
        env: Optional[Mapping[str, str]] = None,
        workdir: str = "",
        timeout: int = 0,
    ) -> Result:
        """Runs ``command`` and returns its exit code and whole output
        (``timeout``: killed after that many seconds, exit code 124)."""
        stdout, stderr, code = bytearray(), bytearray(), None
        async for chunk in self.exec_stream(command, stdin=stdin, env=env, workdir=workdir, timeout=timeout):
            stdout += chunk.stdout
            stderr += chunk.stderr
            if chunk.exit_code is not None:
                code = chunk.exit_code
        assert code is not None
        return Result(code, bytes(stdout), bytes(stderr))

    async def _checked(self, command: Sequence[str], stdin: bytes = b"") -> bytes:
        result = await self.exec(command, stdin=stdin)
        if result.exit_code != 0:
            raise OpenShellError(
                f"{command[0]} in sandbox {self.name} exited with {result.exit_code}: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return result.stdout

    async def upload(self, local: Union[str, os.PathLike], dest: str = "/sandbox") -> None:
        """Copies a local file or tree in: a directory lands as
        ``DEST/<name>/…``; a file goes to DEST exactly, unless DEST ends
        with ``/`` or is a directory."""
        path = Path(local)
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(f"{path}: no such file or directory")
        data = _transfer.pack(path)
        await self._checked(_transfer.upload_command(path, dest), stdin=data)

    async def download(self, src: str, dest: Union[str, os.PathLike] = ".") -> Path:
        """Copies a file or tree out of the sandbox's workspace: a file as
        ``cp`` would place it, a directory's contents into DEST. Anything
        outside the workspace (also through a link) is refused. Returns
        where it landed."""
        probe = (await self._checked(["sh", "-c", _transfer.PROBE, "sh", src])).decode()
        lines = probe.splitlines()
        if not lines or lines[0] == "missing":
            raise OpenShellError(f"sandbox:{src} does not exist")
        if lines[0].startswith("outside "):
            root = lines[0][len("outside "):]
            if len(lines) >= 3 and lines[1] != lines[2]:
                raise OpenShellError(
                    f"{src} resolves to {lines[1]}, which is outside the sandbox workspace ({root})"
                )
            raise OpenShellError(f"{src} is outside the sandbox workspace ({root})")
        kind, real = lines[0], lines[1]
        ends_with_slash = os.fspath(dest).endswith("/")
        dest = Path(dest)
        if kind == "dir":
            data = await self._checked(["tar", "cf", "-", "-C", real, "."])
            dest.mkdir(parents=True, exist_ok=True)
            _transfer.extract(data, dest)
            return dest
        parent, base = os.path.split(real)
        data = await self._checked(["tar", "cf", "-", "-C", parent or "/", "--", base])
        into_dir = dest.is_dir() or ends_with_slash
        final = dest / base if into_dir else dest
        final.parent.mkdir(parents=True, exist_ok=True)
        # Staged beside the destination: a failed transfer leaves nothing
        # that looks complete.
        with tempfile.TemporaryDirectory(dir=final.parent, prefix=".openshell-download.") as staging:
            _transfer.extract(data, Path(staging))
            os.replace(os.path.join(staging, base), final)
        return final

    async def logs(
        self,
        *,
        follow: bool = False,
        lines: int = 0,
        sources: Iterable[str] = (),
        level: str = "",
        since_ms: int = 0,
    ) -> AsyncIterator[LogEntry]:
        """The sandbox's log: its egress decisions (source ``sandbox``) and
        lifecycle and policy events (``gateway``); with ``follow``, new
        ones as they come until the caller stops iterating."""
        request = pb.SandboxLogsRequest(
            name=self.name,
            lines=lines,
            follow=follow,
            since_ms=since_ms,
            sources=list(sources),
            min_level=level,
        )
        call = self._gw._stub.SandboxLogs(request, metadata=self._gw._metadata)
        try:
            async for line in call:
                try:
                    fields = json.loads(line.json)
                except ValueError:
                    fields = {"message": line.json}
                yield LogEntry(source=line.source, level=line.level, fields=fields)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                raise from_rpc_error(error) from None
        finally:
            call.cancel()


__all__ = ["AsyncGateway", "AsyncSandboxes", "AsyncSandbox", "AsyncPolicy"]
