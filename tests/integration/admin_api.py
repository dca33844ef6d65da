"""The broker's admin gRPC API from Python: stubs generated from broker/proto/admin.proto
at import time by grpcio-tools (its bundled protoc), into a temporary directory."""

from __future__ import annotations

import atexit
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parents[2] / "broker" / "proto"


def _generate():
    out = tempfile.mkdtemp(prefix="tideway-admin-pb-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    code = protoc.main(
        ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", "admin.proto"]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed ({code}) on {PROTO_DIR / 'admin.proto'}")
    sys.path.insert(0, out)
    return importlib.import_module("admin_pb2"), importlib.import_module("admin_pb2_grpc")


pb, pb_grpc = _generate()


def admin_stub(address: str):
    """An Admin client for host:port (the broker's --admin-listen)."""
    return pb_grpc.AdminStub(grpc.insecure_channel(address))
