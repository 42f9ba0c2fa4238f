"""One prepared GPU check: what a GPU machine can run, measured, into one JSON file written after every step.

    python benchmarks/gpu_check.py --out DIR_OR_FILE [--budget-s 480] [--device N] [--shared ../shared]

Modules: ``machine`` (the profile the plan reads: doctor's probes, the runtime registry, the sensors),
``plan`` (the steps, their order, cost and needs; ``Settings``), ``runner`` (statuses, budget, SIGTERM),
``report`` (the JSON document, written atomically after every change, and the printed summary), ``work``
(what steps share, and the one way they time and compare), ``steps/`` (probes, the ViT-B on PyTorch and
onnxruntime, TensorRT), ``cli`` (the command).
"""
