"""Where the gateway is and how to prove who we are: read from the CLI's
registry (docs/cli.md, "Files"), exactly as ``openshell`` resolves it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DEFAULT_WORKSPACE = "default"
SYSTEM_GATEWAY_DIR = "/etc/openshell"


@dataclass(frozen=True)
class Target:
    """One gateway: its endpoint and credentials."""

    name: str
    endpoint: str
    auth: str = "mtls"
    ca_cert: Optional[bytes] = None
    client_cert: Optional[bytes] = None
    client_key: Optional[bytes] = None
    token: Optional[str] = None

    def __repr__(self) -> str:  # never the key or token
        return f"Target(name={self.name!r}, endpoint={self.endpoint!r}, auth={self.auth!r})"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME")
    if base and os.path.isabs(base):
        return Path(base) / "openshell"
    return Path.home() / ".config" / "openshell"


def system_dir() -> Path:
    given = os.environ.get("OPENSHELL_SYSTEM_GATEWAY_DIR", "")
    return Path(given) if given and os.path.isabs(given) else Path(SYSTEM_GATEWAY_DIR)


def _read(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"invalid gateway name {name!r}: it must be a single path component")


def _active(roots: list) -> Optional[str]:
    for root in roots:
        text = _read(root / "active_gateway")
        if text and text.decode().strip():
            return text.decode().strip()
    return None


def resolve(name: Optional[str] = None) -> Target:
    """The gateway ``name`` names, else ``OPENSHELL_GATEWAY_ENDPOINT``,
    ``OPENSHELL_GATEWAY``, the user's ``active_gateway``, the system's."""
    user, system = config_dir(), system_dir()
    roots = [user, system]
    endpoint = None if name else os.environ.get("OPENSHELL_GATEWAY_ENDPOINT") or None
    name = name or os.environ.get("OPENSHELL_GATEWAY") or None
    metadata = None
    root = user
    if endpoint is not None:
        if "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        for candidate in roots:
            gateways = candidate / "gateways"
            for entry in sorted(gateways.iterdir()) if gateways.is_dir() else []:
                meta = _read(entry / "metadata.json")
                if meta and json.loads(meta).get("gateway_endpoint", "").rstrip("/") == endpoint.rstrip("/"):
                    name, metadata, root = entry.name, json.loads(meta), candidate
                    break
            if metadata:
                break
        if metadata is None:
            auth = "plaintext" if endpoint.startswith("http://") else "mtls"
            return Target(name=name or endpoint, endpoint=endpoint, auth=auth)
    else:
        name = name or _active(roots)
        if name is None:
            raise LookupError(
                "No active gateway.\nSet one with: openshell gateway select <name>\n"
                "Or register one with: openshell gateway add <endpoint>"
            )
        _check_name(name)
        for candidate in roots:
            meta = _read(candidate / "gateways" / name / "metadata.json")
            if meta is not None:
                metadata, root = json.loads(meta), candidate
                break
        if metadata is None:
            raise LookupError(
                f"Unknown gateway '{name}'.\nRegister it first: openshell gateway add <endpoint> --name {name}"
            )
    assert name is not None and metadata is not None
    endpoint = metadata["gateway_endpoint"]
    auth = metadata.get("auth_mode") or ("plaintext" if endpoint.startswith("http://") else "mtls")
    bundle = root / "gateways" / name / "mtls"
    token = _read(user / "gateways" / name / "edge_token")
    return Target(
        name=name,
        endpoint=endpoint,
        auth=auth,
        ca_cert=_read(bundle / "ca.crt"),
        client_cert=_read(bundle / "tls.crt") if auth == "mtls" else None,
        client_key=_read(bundle / "tls.key") if auth == "mtls" else None,
        token=token.decode().strip() if token else None,
    )


def workspace() -> str:
    return os.environ.get("OPENSHELL_WORKSPACE") or DEFAULT_WORKSPACE


def connection(name: Optional[str] = None, workspace_name: Optional[str] = None) -> dict:
    """The endpoint and options a client connects with, as the CLI resolves them."""
    target = resolve(name)
    return {
        "endpoint": target.endpoint,
        "ca_cert": target.ca_cert,
        "client_cert": target.client_cert,
        "client_key": target.client_key,
        "token": target.token,
        "workspace": workspace_name or workspace(),
        "name": target.name,
    }
