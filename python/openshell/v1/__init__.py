"""Generated gRPC stubs of openshell.v1, made at build time by setup.py."""
