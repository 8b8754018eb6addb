"""Generates the gRPC stubs (openshell/v1/gateway_pb2*.py) from the
repository's proto at build time; everything else is in pyproject.toml."""

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# In the repository, beside this directory; in an sdist, copied in.
PROTO_ROOTS = [HERE.parent / "crates" / "openshell-proto" / "proto", HERE / "proto"]
PROTO = "openshell/v1/gateway.proto"


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        root = next((r for r in PROTO_ROOTS if (r / PROTO).is_file()), None)
        if root is None:
            raise RuntimeError(f"{PROTO} not found in any of {PROTO_ROOTS}")
        from grpc_tools import protoc  # build requirement

        out = Path(self.build_lib)
        (out / "openshell" / "v1").mkdir(parents=True, exist_ok=True)
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{root}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                str(root / PROTO),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed on {PROTO} ({code})")
        init = out / "openshell" / "v1" / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated gRPC stubs of openshell.v1 (do not edit)."""\n')


setup(cmdclass={"build_py": BuildWithStubs})
