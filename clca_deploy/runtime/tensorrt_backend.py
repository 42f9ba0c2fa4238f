"""TensorRT engine backend (.engine + sidecar JSON). Written with the precision issue (#5)."""

from __future__ import annotations

from pathlib import Path

from clca_deploy.errors import UnsupportedError


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, path: str | Path, **options: object):
        raise UnsupportedError(
            f"cannot run {path}: the TensorRT backend is not part of this version yet "
            "(it comes with engine building); run the ONNX file with onnxruntime meanwhile."
        )
