"""The peers' INT8 files for `cpu_runtimes.py`: OpenVINO's NNCF and onnxruntime's `quantize_static` defaults,
calibrated on exactly the images our calibration uses."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def has_nncf() -> bool:
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def calibration_batches(fp32: Path, data: Path, num_images: int) -> list[np.ndarray]:
    """The images our calibration uses (the same spread over the classes, from the same cache), one per batch:
    the peers calibrate on exactly our set."""
    from clca_deploy.calibration.batches import calibration_images
    from clca_deploy.metadata import read_onnx_metadata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = calibration_images(data, read_onnx_metadata(fp32).preprocess, num_images).images
    return [image[None] for image in images]


def nncf_quantize(fp32: Path, data: Path, output: Path, num_images: int) -> Path:
    """OpenVINO's own INT8: NNCF post-training quantization of the FP32 file, saved as OpenVINO IR."""
    import nncf
    import openvino as ov

    if output.exists():
        return output
    images = calibration_batches(fp32, data, num_images)
    model = ov.Core().read_model(str(fp32))
    quantized = nncf.quantize(model, nncf.Dataset(images), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(images))
    ov.save_model(quantized, str(output))
    return output


def ort_default_quantize(fp32: Path, data: Path, output: Path, num_images: int) -> Path:
    """onnxruntime's ``quantize_static`` with every default (QDQ, uint8 activations, all op types, MinMax), with
    the export's metadata copied so that `bench` opens it like our files."""
    import onnx
    from onnxruntime.quantization import quantize_static

    from clca_deploy.metadata import metadata_props, write_metadata

    if output.exists():
        return output
    images = calibration_batches(fp32, data, num_images)

    class Reader:
        def get_next(self):
            return {"images": images.pop(0)} if images else None

    quantize_static(str(fp32), str(output), Reader())
    model, props = onnx.load(str(output)), metadata_props(onnx.load(str(fp32), load_external_data=False))
    props["precision"] = "int8"
    write_metadata(model, props)
    onnx.save(model, str(output))
    return output
