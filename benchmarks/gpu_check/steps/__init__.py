"""The check's steps, one module per kind: probes (doctor, GPU, CUDA bindings, power, images), the ViT-B/16
448 model on PyTorch and onnxruntime (``vit``), TensorRT (``trt``). Each step is ``f(work) -> dict``."""
