"""Board power and energy during bench's timed calls: one sampler per module, picked by ``picker``.

``meter`` holds what every sampler shares (the sampling thread, the energy arithmetic, ``Detection``);
``nvml`` (NVIDIA GPU servers), ``tegrastats`` and ``jtop`` (Jetson, over the rail rules of ``rails``)
are the samplers; ``picker`` walks their registry for the first that applies here; ``window`` turns
a sampler into the power fields of a latency row.
"""
