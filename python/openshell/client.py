"""The blocking client: the asyncio one (``openshell.aio``) run on an
event loop of its own, in a thread of its own, so it works the same from
scripts, notebooks and threads.

    from openshell import Gateway

    gw = Gateway.from_config()
    with gw.sandboxes.create(policy=open("policy.yaml").read()) as sb:
        print(sb.exec(["python3", "-c", "print(6 * 7)"]).stdout)
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Coroutine, Iterable, Iterator, List, Mapping, Optional, Sequence, TypeVar, Union

from . import aio
from .types import ExecChunk, LogEntry, PolicyRevision, Result, SandboxInfo, User

T = TypeVar("T")


class _Loop:
    """An event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="openshell-sdk", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """An async iterator, pulled item by item from this thread; closed
        (its call cancelled) when the caller stops early."""

        async def step() -> T:
            return await iterator.__anext__()

        try:
            while True:
                try:
                    yield self.run(step())
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                try:
                    self.run(close())
                except Exception:
                    pass

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class Gateway:
    """A connection to one gateway, acting in one workspace (blocking)."""

    def __init__(self, endpoint: str, **options: Any) -> None:
        self._loop = _Loop()
        self._inner = self._loop.run(self._make(endpoint, options))
        self.sandboxes = Sandboxes(self)

    @staticmethod
    async def _make(endpoint: str, options: Mapping[str, Any]) -> aio.AsyncGateway:
        # The channel belongs to the loop it is made on.
        return aio.AsyncGateway(endpoint, **options)

    @classmethod
    def from_config(cls, name: Optional[str] = None, *, workspace: Optional[str] = None) -> "Gateway":
        """The gateway the CLI would use, with its credentials (see
        ``AsyncGateway.from_config``)."""
        from . import config

        options = config.connection(name, workspace)
        return cls(options.pop("endpoint"), **options)

    @property
    def workspace(self) -> str:
        return self._inner.workspace

    @property
    def name(self) -> str:
        return self._inner.name

    def in_workspace(self, workspace: str) -> "Gateway":
        other = object.__new__(Gateway)
        other._loop = self._loop
        other._inner = self._inner.in_workspace(workspace)
        other.sandboxes = Sandboxes(other)
        return other

    def health(self) -> str:
        return self._loop.run(self._inner.health())

    def whoami(self) -> User:
        return self._loop.run(self._inner.whoami())

    def close(self) -> None:
        self._loop.run(self._inner.close())
        self._loop.stop()

    def __enter__(self) -> "Gateway":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sandboxes:
    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    def create(self, **options: Any) -> "Sandbox":
        """Creates a sandbox (see ``AsyncSandboxes.create`` for the
        options: name, command, policy, providers, env, labels, image,
        cpu_millis, memory_bytes, tty, wait, timeout)."""
        inner = self._gw._loop.run(self._gw._inner.sandboxes.create(**options))
        return Sandbox(self._gw, inner)

    def get(self, name: str) -> "Sandbox":
        return Sandbox(self._gw, self._gw._loop.run(self._gw._inner.sandboxes.get(name)))

    def list(self, *, labels: Optional[Mapping[str, str]] = None) -> List[SandboxInfo]:
        return self._gw._loop.run(self._gw._inner.sandboxes.list(labels=labels))

    def delete(self, name: str) -> bool:
        return self._gw._loop.run(self._gw._inner.sandboxes.delete(name))


class Policy:
    def __init__(self, sandbox: "Sandbox") -> None:
        self._sb = sandbox

    def get(self, version: int = 0) -> PolicyRevision:
        return self._sb._run(self._sb._inner.policy.get(version))

    def yaml(self, version: int = 0) -> str:
        return self._sb._run(self._sb._inner.policy.yaml(version))

    def set(self, policy: aio.PolicySource, *, wait: bool = False, timeout: float = 60.0) -> PolicyRevision:
        return self._sb._run(self._sb._inner.policy.set(policy, wait=wait, timeout=timeout))


class Sandbox:
    """One sandbox; ``with`` deletes it at the end."""

    def __init__(self, gateway: Gateway, inner: aio.AsyncSandbox) -> None:
        self._gw = gateway
        self._inner = inner
        self.name = inner.name
        self.id = inner.id
        self.policy = Policy(self)

    def __repr__(self) -> str:
        return f"Sandbox(name={self.name!r}, id={self.id!r})"

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._gw._loop.run(coroutine)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def info(self) -> SandboxInfo:
        return self._run(self._inner.info())

    def wait_ready(self, timeout: float = 300.0) -> SandboxInfo:
        return self._run(self._inner.wait_ready(timeout))

    def stop(self) -> SandboxInfo:
        return self._run(self._inner.stop())

    def start(self, *, wait: bool = True, timeout: float = 300.0) -> SandboxInfo:
        return self._run(self._inner.start(wait=wait, timeout=timeout))

    def delete(self) -> bool:
        return self._run(self._inner.delete())

    def exec(
        self,
        command: Sequence[str],
        *,
        stdin: Union[bytes, str, None] = None,
        env: Optional[Mapping[str, str]] = None,
        workdir: str = "",
        timeout: int = 0,
    ) -> Result:
        return self._run(self._inner.exec(command, stdin=stdin, env=env, workdir=workdir, timeout=timeout))

    def exec_stream(
        self,
        command: Sequence[str],
        *,
        stdin: Union[bytes, str, None] = None,
        env: Optional[Mapping[str, str]] = None,
        workdir: str = "",
        timeout: int = 0,
    ) -> Iterator[ExecChunk]:
        return self._gw._loop.iterate(
            self._inner.exec_stream(command, stdin=stdin, env=env, workdir=workdir, timeout=timeout)
        )

    def upload(self, local: Union[str, os.PathLike], dest: str = "/sandbox") -> None:
        self._run(self._inner.upload(local, dest))

    def download(self, src: str, dest: Union[str, os.PathLike] = ".") -> Path:
        return self._run(self._inner.download(src, dest))

    def logs(
        self,
        *,
        follow: bool = False,
        lines: int = 0,
        sources: Iterable[str] = (),
        level: str = "",
        since_ms: int = 0,
    ) -> Iterator[LogEntry]:
        return self._gw._loop.iterate(
            self._inner.logs(follow=follow, lines=lines, sources=sources, level=level, since_ms=since_ms)
        )
