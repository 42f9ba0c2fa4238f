"""Serving tests need the `serve` extra (PyTriton, tritonclient): skipped without it, failed in CI."""

from __future__ import annotations

import importlib
import socket
from pathlib import Path

import pytest

from tests.conftest import IN_CI


def require_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        message = f"{name} is not installed ({exc}); pip install -e '.[dev]' installs the serving extra"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def parse_model_config(path: Path):
    """A config.pbtxt read with Triton's own ModelConfig schema (the protobuf tritonclient ships)."""
    model_config_pb2 = require_module("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def free_port_triple(host: str = "127.0.0.1") -> int:
    """A port P with P, P+1 and P+2 free (HTTP, gRPC, metrics)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port > 65533:
            continue
        try:
            for offset in (1, 2):
                with socket.socket() as other:
                    other.bind((host, port + offset))
            return port
        except OSError:
            continue
    raise RuntimeError("no three consecutive free ports")
