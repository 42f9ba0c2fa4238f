"""How large a timed batch may be: what the model accepts and what this machine's memory holds.

A batch of 100000 images used to be allocated and run until the kernel killed the process. The
bound is worked out before any work, from the input size and the memory the system reports free.
"""

from __future__ import annotations

from pathlib import Path

# Any runtime's activations for one image of a ViT are a small multiple of the input: at 448 px a
# ViT-B/16 holds ~785 tokens x 768 floats per tensor plus 12 x 785^2 attention scores (~30 MB),
# about 13x the 2.4 MB input. 64x leaves room for the runtime's workspaces and the output copies.
ACTIVATION_FACTOR = 64
# Beyond this no CPU or GPU benchmark of these models is meaningful; refused without looking at memory.
MAX_BATCH = 4096


def bytes_per_image(img_size: int) -> int:
    """Estimated peak memory one image of a batch needs: float32 input and its activations."""
    return 3 * img_size * img_size * 4 * ACTIVATION_FACTOR


def available_memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable from the kernel (Linux, Jetson included); None where it is not reported."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def batch_too_large(batch: int, img_size: int, available: int | None) -> str | None:
    """Why ``batch`` cannot be timed here (one line), or None if it fits."""
    if batch > MAX_BATCH:
        return f"batch {batch} is above the largest this benchmark runs ({MAX_BATCH})"
    if available is None:
        return None
    needed = batch * bytes_per_image(img_size)
    if needed > available:
        largest = max(1, available // bytes_per_image(img_size))
        return (
            f"batch {batch} at {img_size} px needs about {needed / 2**30:.1f} GiB, "
            f"{available / 2**30:.1f} GiB is free; at most about {largest} fits"
        )
    return None
