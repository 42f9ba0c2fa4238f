"""Triton Python-backend model: the classifier run by clca-deploy's own runtime.

`clca-deploy serve` uses it where Triton's onnxruntime and tensorrt backends are absent (the
server PyTriton ships has only the Python backend): the model file named in the config's
``model_path`` parameter runs on the ``runtime`` parameter's runtime (onnxruntime, OpenVINO or TensorRT)
exactly as `clca-deploy predict` runs it.
Needs clca-deploy installed in the server's Python.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from clca_deploy.runtime import RuntimeOptions, backend_for_path, open_backend
from clca_deploy.runtime.predictor import infer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        model_path = parameters["model_path"]
        # Triton places each instance on a GPU; an engine must run on that one.
        device = int(args.get("model_instance_device_id", 0)) if args.get("model_instance_kind") == "GPU" else 0
        runtime = backend_for_path(model_path, parameters.get("runtime") or None)
        options = RuntimeOptions(device=device, **json.loads(parameters.get("runtime_options", "{}")))
        self.backend = open_backend(model_path, runtime, **options.for_backend(runtime))
        self.backend.__enter__()

    def execute(self, requests):
        # Dynamic batching hands over several requests at once: one runtime call for all of them.
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        try:
            logits = infer(self.backend, np.concatenate(batches))
        except Exception as exc:  # noqa: BLE001 - every request must get an answer, even a failed one
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        bounds = np.cumsum([len(batch) for batch in batches])[:-1]
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, part)])
                for part in np.split(logits, bounds)]

    def finalize(self):
        self.backend.__exit__(None, None, None)
