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

from clca_deploy.data.images import decode_image  # noqa: E402
from clca_deploy.data.preprocess import PreprocessConfig, preprocess_into  # noqa: E402
from clca_deploy.errors import ClcaDeployError  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.preprocess = PreprocessConfig.from_dict(json.loads(parameters["preprocess"]))
        self.max_pixels = int(parameters["max_pixels"])
        output = pb_utils.get_output_config_by_name(config, "PIXELS")
        self.output_dtype = pb_utils.triton_string_to_numpy(output["data_type"])

    def execute(self, requests):
        # One answer per request: a bad image fails its own request, never the others in the batch.
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        encoded = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
        size = self.preprocess.img_size
        pixels = np.empty((encoded.shape[0], 3, size, size), dtype=np.float32)
        try:
            for row, data in enumerate(encoded.reshape(encoded.shape[0], -1)[:, 0]):
                image = decode_image(data, source=f"<request image {row}>", max_pixels=self.max_pixels)
                preprocess_into(image, self.preprocess, pixels[row])
        except ClcaDeployError as exc:
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc)))
        tensor = pb_utils.Tensor("PIXELS", pixels.astype(self.output_dtype, copy=False))
        return pb_utils.InferenceResponse(output_tensors=[tensor])
