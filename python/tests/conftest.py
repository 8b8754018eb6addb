"""A real gateway for the SDK's tests: started by the `openshell` CLI of
this build (OPENSHELL_BIN, else target/debug/openshell) in a private XDG
home, on the process driver, destroyed afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bin(env: str, name: str) -> str:
    path = os.environ.get(env) or str(REPO / "target" / "debug" / name)
    if not os.path.isfile(path):
        pytest.fail(f"{path} is missing: build the workspace first (cargo build --workspace)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def openshell_home(tmp_path_factory):
    """The environment of a user whose CLI started a gateway."""
    home = tmp_path_factory.mktemp("home")
    env = {
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
        "OPENSHELL_SYSTEM_GATEWAY_DIR": str(home / "system"),
        "OPENSHELL_DRIVER": "process",
        "OPENSHELL_GATEWAY_BIN": _bin("OPENSHELL_GATEWAY_BIN", "openshell-gateway"),
        "NO_COLOR": "1",
    }
    saved = {k: os.environ.get(k) for k in list(env) + ["OPENSHELL_GATEWAY", "OPENSHELL_GATEWAY_ENDPOINT", "OPENSHELL_WORKSPACE"]}
    os.environ.update(env)
    for k in ("OPENSHELL_GATEWAY", "OPENSHELL_GATEWAY_ENDPOINT", "OPENSHELL_WORKSPACE"):
        os.environ.pop(k, None)
    cli = _bin("OPENSHELL_BIN", "openshell")
    port = _free_port()
    subprocess.run([cli, "gateway", "start", "--port", str(port)], check=True, capture_output=True)
    yield {"cli": cli, "port": port, "home": home}
    subprocess.run([cli, "sandbox", "delete", "--all"], capture_output=True)
    subprocess.run([cli, "gateway", "destroy"], capture_output=True)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def gateway(openshell_home):
    from openshell import Gateway

    gw = Gateway.from_config()
    yield gw
    gw.close()
