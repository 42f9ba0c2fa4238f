"""What this machine is and can run: GPUs through the CUDA driver API, Jetson facts, `clca-deploy doctor`.

Nothing here imports torch: a Jetson or GPU server with only the runtime extras installed must be
able to describe itself.
"""
