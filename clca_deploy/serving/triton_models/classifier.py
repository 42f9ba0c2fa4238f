"""Triton Python-backend model: the classifier run by clca-deploy's own runtime.

`clca-deploy serve` uses it where Triton's onnxruntime and tensorrt backends are absent (the
server PyTriton ships has only the Python backend): the model file named in the config's
``model_path`` parameter runs on the ``runtime`` parameter's runtime, with the ``runtime_options``
parameter's options, exactly as `clca-deploy predict` runs it.
Needs clca-deploy installed in the server's Python.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime import open_backend
from clca_deploy.runtime.predictor import infer
from clca_deploy.serving.replies import log_error, triton_error


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        # The runtime's own options as `serve` took them: they name the device (Triton does not move a Python
        # model's work there), and `serve` placed this instance where they put the model.
        settings = json.loads(parameters.get("runtime_options", "{}"))
        self.backend = open_backend(parameters["model_path"], parameters.get("runtime") or None, **settings)
        self.backend.__enter__()
        try:
            kind, device = args.get("model_instance_kind", "CPU"), args.get("model_instance_device_id", "0")
            check_placement(self.backend.device_index, kind, device)
        except Exception:
            self.backend.__exit__(None, None, None)
            raise

    def execute(self, requests):
        # Dynamic batching hands over several requests at once: one runtime call for all of them.
        try:
            batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
            logits = infer(self.backend, np.concatenate(batches))
        except Exception as exc:  # noqa: BLE001 - every request must get an answer, even a failed one
            # Runtimes' messages can span lines and name files: the log keeps them whole, the client
            # gets one line without server paths.
            log_error(pb_utils, f"the classifier failed: {type(exc).__name__}: {exc}")
            error = triton_error(pb_utils, f"the classifier failed on this batch ({type(exc).__name__}: {exc})", client_fault=False)
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        bounds = np.cumsum([len(batch) for batch in batches])[:-1]
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, part)])
                for part in np.split(logits, bounds)]

    def finalize(self):
        self.backend.__exit__(None, None, None)


def check_placement(device_index, kind, instance_device):
    """Refuse an instance whose runtime runs the model elsewhere than Triton placed it (a config edited by hand,
    or an onnxruntime that fell back to the CPU in the server): its GPU metrics, memory and scheduling would lie."""
    placed = int(instance_device) if kind == "GPU" else None
    if device_index != placed:
        where = lambda device: "the CPU" if device is None else f"CUDA device {device}"  # noqa: E731
        raise ClcaDeployError(
            f"this classifier instance is placed on {where(placed)} but its runtime runs the model on {where(device_index)}; "
            "start it with `clca-deploy serve`, which places it where the runtime runs."
        )
