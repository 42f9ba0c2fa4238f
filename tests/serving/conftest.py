"""Serving tests need the `serve` extra (PyTriton, tritonclient): skipped without it, failed in CI."""

from __future__ import annotations

import importlib
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


def parse_config_text(text: str):
    """Model-config text read with Triton's own ModelConfig schema (the protobuf tritonclient ships)."""
    model_config_pb2 = require_module("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def parse_model_config(path: Path):
    return parse_config_text(path.read_text(encoding="utf-8"))
