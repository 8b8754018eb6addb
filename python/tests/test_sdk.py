"""The SDK against a real gateway and real sandboxes (process driver):
the same behaviour the CLI's suites check, reached from Python."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time

import pytest

import openshell
from openshell import Gateway
from openshell.aio import AsyncGateway

DENIED_URL = "http://upstream.invalid/probe"  # refused by the proxy before any lookup

# The built-in default policy, written out (a policy set later must keep
# its static sections).
BASE_POLICY = """version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib, /lib64, /bin, /sbin, /etc, /proc, /dev/urandom, /app]
  read_write: [/sandbox, /tmp, /dev/null]
landlock:
  compatibility: best_effort
process:
  run_as_user: sandbox
  run_as_group: sandbox
"""


def test_create_exec_and_cleanup_with_the_context_manager(gateway: Gateway):
    with gateway.sandboxes.create(name="py-basic", env={"GREETING": "hello"}) as sb:
        assert sb.info().phase == "Ready"
        result = sb.exec(["sh", "-c", 'echo "$GREETING"; echo oops >&2; cat; exit 3'], stdin=b"piped\n")
        assert result == openshell.Result(3, b"hello\npiped\n", b"oops\n")
        assert not result.ok
        assert sb.exec(["pwd"]).stdout == b"/sandbox\n"
        assert sb.exec(["pwd"], workdir="/tmp").stdout == b"/tmp\n"
        assert sb.exec(["sleep", "30"], timeout=1).exit_code == 124
        # The agent's restrictions hold for exec too.
        assert sb.exec(["id", "-un"]).stdout == b"sandbox\n"
        assert sb.exec(["cat", "/root/.profile"]).exit_code != 0
    names = [s.name for s in gateway.sandboxes.list()]
    assert "py-basic" not in names


def test_streaming_exec_yields_output_as_it_comes(gateway: Gateway):
    with gateway.sandboxes.create() as sb:
        arrivals = []
        started = time.monotonic()
        for chunk in sb.exec_stream(["sh", "-c", "echo one; sleep 1; echo two; exit 4"]):
            arrivals.append((time.monotonic() - started, chunk))
        outputs = [(t, c.stdout) for t, c in arrivals if c.stdout]
        assert [o for _, o in outputs] == [b"one\n", b"two\n"]
        assert outputs[1][0] - outputs[0][0] > 0.5, "the first line waited for the second"
        assert arrivals[-1][1].exit_code == 4


def test_upload_download_round_trip_and_refuse_to_leave_the_workspace(gateway: Gateway, tmp_path):
    tree = tmp_path / "proj"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("hello\n")
    (tree / "sub" / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    os.symlink("a.txt", tree / "link")
    with gateway.sandboxes.create() as sb:
        sb.upload(tree, "/sandbox/in")
        listing = sb.exec(["sh", "-c", "cd /sandbox/in/proj && find . | sort && readlink link"]).stdout
        assert listing == b".\n./a.txt\n./link\n./sub\n./sub/blob.bin\na.txt\n"
        sb.upload(tree / "a.txt", "/sandbox/renamed.txt")
        assert sb.exec(["cat", "/sandbox/renamed.txt"]).stdout == b"hello\n"

        back = sb.download("in/proj", tmp_path / "back")
        assert (back / "sub" / "blob.bin").read_bytes() == (tree / "sub" / "blob.bin").read_bytes()
        assert os.readlink(back / "link") == "a.txt"
        landed = sb.download("/sandbox/renamed.txt", f"{tmp_path}/into/")
        assert landed == tmp_path / "into" / "renamed.txt"
        assert landed.read_text() == "hello\n"

        # Out of the workspace, by path or through a link: refused.
        sb.exec(["ln", "-s", "/etc", "/sandbox/etc-link"])
        with pytest.raises(openshell.OpenShellError, match=r"is outside the sandbox workspace \(/sandbox\)"):
            sb.download("../etc/passwd", tmp_path / "x")
        with pytest.raises(openshell.OpenShellError, match="resolves to /etc/passwd, which is outside"):
            sb.download("etc-link/passwd", tmp_path / "x")
        with pytest.raises(openshell.OpenShellError, match="does not exist"):
            sb.download("nope", tmp_path / "x")
        # A tree whose link points out of it comes back as a link, and
        # nothing is written through it.
        sb.exec(["sh", "-c", "mkdir -p /sandbox/evil && ln -s / /sandbox/evil/root"])
        out = sb.download("evil", tmp_path / "evil")
        assert os.readlink(out / "root") == "/"
        assert not (tmp_path / "x").exists()


def test_logs_follow_sees_a_denied_request(gateway: Gateway):
    with gateway.sandboxes.create() as sb:
        seen = []

        def follow():
            for entry in sb.logs(follow=True, sources=["sandbox"]):
                seen.append(entry)
                if entry.fields.get("decision") == "deny":
                    return

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        time.sleep(0.5)
        result = sb.exec(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", DENIED_URL])
        assert result.stdout == b"403"
        watcher.join(timeout=30)
        assert not watcher.is_alive(), f"no deny event followed: {seen}"
        deny = seen[-1]
        assert deny.source == "sandbox"
        assert deny.level == "warn"
        assert deny.fields["host"] == "upstream.invalid"


def test_policy_set_waits_for_the_sandbox_and_reports_refusals(gateway: Gateway):
    with gateway.sandboxes.create(policy=BASE_POLICY) as sb:
        first = sb.policy.get()
        assert first.status == "loaded" or first.status == "pending"
        allowed = BASE_POLICY + (
            "network_policies:\n  api:\n    endpoints: [{host: api.example.com, port: 443}]\n"
            "    binaries: [{path: /usr/bin/curl}]\n"
        )
        revision = sb.policy.set(allowed, wait=True)
        assert revision.status == "loaded"
        assert sb.policy.get().version == revision.version
        assert "api.example.com" in sb.policy.yaml()
        again = sb.policy.set(allowed)
        assert again.unchanged
        # The gateway's words for an invalid policy; a revision the sandbox
        # cannot load (a static section changed) fails and changes nothing.
        with pytest.raises(openshell.InvalidArgument, match="invalid policy"):
            sb.policy.set("version: 1\nbogus: 1\n")
        with pytest.raises(openshell.PolicyLoadError, match="failed to load"):
            sb.policy.set("version: 1\n", wait=True, timeout=30)
        assert sb.policy.get().version == revision.version


def test_stop_start_keep_the_workspace(gateway: Gateway):
    with gateway.sandboxes.create() as sb:
        sb.exec(["sh", "-c", "echo kept > /sandbox/file"])
        assert sb.stop().phase in ("Stopped", "Deleting", "Ready")
        assert sb.info().phase == "Stopped"
        with pytest.raises(openshell.FailedPrecondition, match="is not running"):
            sb.exec(["true"])
        assert sb.start().phase == "Ready"
        assert sb.exec(["cat", "/sandbox/file"]).stdout == b"kept\n"


def test_errors_carry_the_gateways_message(gateway: Gateway):
    with pytest.raises(openshell.NotFound, match="sandbox 'nope' not found"):
        gateway.sandboxes.get("nope")
    with gateway.sandboxes.create(name="py-dup"):
        with pytest.raises(openshell.AlreadyExists, match="sandbox 'py-dup' already exists"):
            gateway.sandboxes.create(name="py-dup")
    with pytest.raises(openshell.InvalidArgument):
        gateway.sandboxes.create(name="Not_A_Name")
    with pytest.raises(openshell.NotFound, match="workspace 'elsewhere' not found"):
        gateway.in_workspace("elsewhere").sandboxes.list()
    assert gateway.whoami().roles == ("admin",)


def test_a_main_process_and_its_exit(gateway: Gateway):
    sb = gateway.sandboxes.create(command=["sh", "-c", "exit 7"], wait=False)
    try:
        deadline = time.monotonic() + 30
        while sb.info().phase != "Stopped":
            assert time.monotonic() < deadline, sb.info()
            time.sleep(0.1)
        assert sb.info().exit_code == 7
    finally:
        sb.delete()


def test_the_asyncio_client(openshell_home):
    async def scenario():
        async with AsyncGateway.from_config() as gw:
            async with await gw.sandboxes.create(name="py-async") as sb:
                results = await asyncio.gather(*(sb.exec(["sh", "-c", f"echo {i}"]) for i in range(10)))
                assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(10)]
                chunks = [c async for c in sb.exec_stream(["sh", "-c", "echo a; echo b >&2"])]
                assert b"".join(c.stdout for c in chunks) == b"a\n"
                assert b"".join(c.stderr for c in chunks) == b"b\n"
            names = [s.name for s in await gw.sandboxes.list()]
            assert "py-async" not in names

    asyncio.run(scenario())


def test_an_explicit_endpoint_without_the_registry(openshell_home):
    """Credentials given directly, as a program holding its own bundle would."""
    bundle = openshell_home["home"] / "config" / "openshell" / "gateways" / "openshell" / "mtls"
    gw = Gateway(
        f"https://127.0.0.1:{openshell_home['port']}",
        ca_cert=(bundle / "ca.crt").read_bytes(),
        client_cert=(bundle / "tls.crt").read_bytes(),
        client_key=(bundle / "tls.key").read_bytes(),
    )
    try:
        assert gw.health()
    finally:
        gw.close()
    # Without the client certificate the gateway refuses.
    bare = Gateway(
        f"https://127.0.0.1:{openshell_home['port']}",
        ca_cert=(bundle / "ca.crt").read_bytes(),
    )
    try:
        with pytest.raises(openshell.Unauthenticated):
            bare.sandboxes.list()
    finally:
        bare.close()
    # The CLI sees what the SDK made.
    gw = Gateway.from_config()
    try:
        with gw.sandboxes.create(name="py-seen"):
            listed = subprocess.run(
                [openshell_home["cli"], "sandbox", "list", "--names"], capture_output=True, text=True, check=True
            ).stdout
            assert "py-seen" in listed.split()
    finally:
        gw.close()


def test_providers_attach_and_the_sandbox_sees_only_a_placeholder(gateway: Gateway, openshell_home):
    secret = "ghp_" + "S3cr3t" * 6
    subprocess.run(
        [openshell_home["cli"], "provider", "create", "--name", "py-gh", "--type", "github",
         "--credential", f"GITHUB_TOKEN={secret}"],
        check=True,
        capture_output=True,
    )
    try:
        with gateway.sandboxes.create(providers=["py-gh"]) as sb:
            seen = sb.exec(["sh", "-c", 'printf %s "$GITHUB_TOKEN"']).stdout.decode()
            assert seen.startswith("ghp_") and len(seen) == 40, seen
            assert seen != secret
            assert secret.encode() not in sb.exec(["sh", "-c", "cat /proc/self/environ"]).stdout
        with pytest.raises(openshell.OpenShellError, match="py-none"):
            gateway.sandboxes.create(providers=["py-none"])
    finally:
        subprocess.run([openshell_home["cli"], "provider", "delete", "py-gh"], capture_output=True)
