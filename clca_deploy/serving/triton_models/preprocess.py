"""Triton Python-backend model: encoded image bytes (JPEG, PNG, ...) -> the classifier's input.

Written into ``<name>_preprocess/1/model.py`` by clca-deploy beside a copy of clca-deploy's own
image decoding and eval preprocessing (the ``clca_deploy`` folder next to this file), so that
the answers equal `clca-deploy predict` and a stock Triton container needs only numpy and pillow.
"""

import json
import os
import sys

# The copy beside this file, not whichever clca_deploy the server's Python may also have.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from clca_deploy.data.images import declared_size, decode_image  # noqa: E402
from clca_deploy.data.preprocess import PreprocessConfig, preprocess_into  # noqa: E402
from clca_deploy.errors import ClcaDeployError  # noqa: E402
from clca_deploy.serving.replies import log_error, triton_error  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.preprocess = PreprocessConfig.from_dict(json.loads(parameters["preprocess"]))
        self.max_pixels = int(parameters["max_pixels"])
        self.max_request_pixels = int(parameters["max_request_pixels"])
        output = pb_utils.get_output_config_by_name(config, "PIXELS")
        self.output_dtype = pb_utils.triton_string_to_numpy(output["data_type"])

    def execute(self, requests):
        # One answer per request: a bad image fails its own request, never the others in the batch.
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        try:
            encoded = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            rows = encoded.reshape(encoded.shape[0], -1)[:, 0]
            self._check_pixels(rows)
            pixels = self._pixels(rows)
        except ClcaDeployError as exc:  # the request's own fault: HTTP 400
            return pb_utils.InferenceResponse(output_tensors=[], error=triton_error(pb_utils, exc, client_fault=True))
        except Exception as exc:  # noqa: BLE001 - the server's fault: logged here, never a stack for the client
            log_error(pb_utils, f"preprocessing failed: {type(exc).__name__}: {exc}")
            error = triton_error(pb_utils, f"the server failed to preprocess this request ({type(exc).__name__})", client_fault=False)
            return pb_utils.InferenceResponse(output_tensors=[], error=error)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("PIXELS", pixels)])

    def _check_pixels(self, rows):
        """Refuse a request whose images declare more pixels than allowed, from their headers, before
        decoding any: decoding costs time in proportion to the pixels an image declares, not to its bytes."""
        total = 0
        for row, data in enumerate(rows):
            width, height = declared_size(data, source=f"<request image {row}>")
            if width * height > self.max_pixels:
                raise ClcaDeployError(
                    f"request image {row} is {width}x{height} = {width * height / 1e6:.1f} megapixels; this server "
                    f"decodes at most {self.max_pixels / 1e6:.1f} per image: send it scaled down."
                )
            total += width * height
        if total > self.max_request_pixels:
            raise ClcaDeployError(
                f"the {len(rows)} images of this request hold {total / 1e6:.1f} megapixels; this server decodes at "
                f"most {self.max_request_pixels / 1e6:.1f} per request: send fewer images per request."
            )

    def _pixels(self, rows):
        size = self.preprocess.img_size
        pixels = np.empty((len(rows), 3, size, size), dtype=np.float32)
        for row, data in enumerate(rows):
            image = decode_image(data, source=f"<request image {row}>", max_pixels=self.max_pixels)
            preprocess_into(image, self.preprocess, pixels[row])
        return pixels.astype(self.output_dtype, copy=False)
