"""Triton Python-backend model: logits -> top-k class ids, class names and scores.

Written into ``<name>_postprocess/1/model.py`` by clca-deploy beside a copy of clca-deploy's
scoring (softmax, then the top classes with ties to the lower index), so the answers equal
`clca-deploy predict`.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from clca_deploy.runtime.scores import softmax, top_classes  # noqa: E402
from clca_deploy.serving.replies import log_error, triton_error  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.top_k = int(parameters["top_k"])
        self.class_names = np.array([name.encode("utf-8") for name in json.loads(parameters["class_names"])], dtype=object)

    def execute(self, requests):
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        try:
            logits = pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy().astype(np.float32)
            indices, scores = top_classes(softmax(logits), self.top_k)
            names = self.class_names[indices]
        except Exception as exc:  # noqa: BLE001 - logged here; the client gets one line, never a stack
            log_error(pb_utils, f"postprocessing failed: {type(exc).__name__}: {exc}")
            error = triton_error(pb_utils, f"the server failed to score this request ({type(exc).__name__})", client_fault=False)
            return pb_utils.InferenceResponse(output_tensors=[], error=error)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("CLASS_ID", indices),
            pb_utils.Tensor("CLASS_NAME", names),
            pb_utils.Tensor("SCORE", scores),
        ])
