"""Everything TensorRT: the version-gated build plan (plan.py), the engine sidecar (sidecar.py), the CUDA
bindings (cuda.py) and the engine build (build.py). Nothing here imports torch; tensorrt and the CUDA
bindings are imported only inside the functions that need them."""
