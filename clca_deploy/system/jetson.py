"""Jetson facts read from the files JetPack writes: model, L4T release, JetPack version, power mode.

Parsers take text and return values (unit-tested on recorded contents); readers return None where a
file is absent, so every function is safe to call off a Jetson.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path("/")  # tests point this at a folder holding recorded files
MODEL_FILE = "proc/device-tree/model"
RELEASE_FILE = "etc/nv_tegra_release"
NVPMODEL_STATUS_FILE = "var/lib/nvpmodel/status"
NVPMODEL_CONF_FILE = "etc/nvpmodel.conf"

# L4T (Jetson Linux) release -> JetPack release, after NVIDIA's JetPack archive as recorded by
# jetson-containers and jetson-stats. Exact releases only: an unlisted one maps to None, never to
# a neighbour (36.4.3 is JetPack 6.2 while 36.4.0 is 6.1).
JETPACK_FOR_L4T = {
    "38.2.2": "7.0",
    "38.2.1": "7.0",
    "38.2.0": "7.0",
    "36.4.7": "6.2.1",
    "36.4.4": "6.2.1",
    "36.4.3": "6.2",
    "36.4.0": "6.1",
    "36.3.0": "6.0",
    "35.6.2": "5.1.5",
    "35.6.1": "5.1.5",
    "35.6.0": "5.1.4",
    "35.5.0": "5.1.3",
    "35.4.1": "5.1.2",
    "35.3.1": "5.1.1",
    "35.2.1": "5.1",
}

# The TensorRT each L4T branch's JetPack ships, keyed by L4T major.minor: every JetPack on R36.4
# (6.1, 6.2, 6.2.1) has 10.3, JetPack 6.0 (R36.3) has 8.6, JetPack 5.1.x (R35) has 8.5.2.
# Branches not listed (R38, JetPack 7) are unknown here.
TENSORRT_FOR_L4T = {"36.4": "10.3.0", "36.3": "8.6.2", "35.6": "8.5.2", "35.5": "8.5.2", "35.4": "8.5.2",
                    "35.3": "8.5.2", "35.2": "8.5.2"}

NVPMODEL_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class JetsonInfo:
    model: str | None  # "NVIDIA Jetson AGX Orin Developer Kit"
    l4t: str | None  # "36.4.3"
    jetpack: str | None  # "6.2", None when the L4T release is not in the table
    power_mode: str | None  # "MAXN", or "mode 2" when only the id is known

    @property
    def tensorrt(self) -> str | None:
        """The TensorRT version this JetPack ships (what `apt install nvidia-jetpack` gives), if known."""
        return jetpack_tensorrt(self.l4t)

    def to_dict(self) -> dict:
        return {**asdict(self), "tensorrt": self.tensorrt}


# ---- parsers -------------------------------------------------------------------------------------


def parse_model(text: str | bytes) -> str | None:
    """The device-tree model string, without its NUL terminator."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    model = text.replace("\x00", "").strip()
    return model or None


_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)")


def parse_l4t_release(text: str) -> str | None:
    """"# R36 (release), REVISION: 4.3, GCID: ..." -> "36.4.3"."""
    match = _RELEASE.search(text)
    return ".".join(match.groups()) if match else None


def jetpack_for_l4t(l4t: str | None) -> str | None:
    """The JetPack release of an L4T release ("36.4.3" -> "6.2"), None when not in the table."""
    return JETPACK_FOR_L4T.get(l4t) if l4t else None


def jetpack_tensorrt(l4t: str | None) -> str | None:
    """The TensorRT version JetPack ships with this L4T release ("36.4.3" -> "10.3.0"), None if unknown."""
    if not l4t:
        return None
    return TENSORRT_FOR_L4T.get(".".join(l4t.split(".")[:2]))


def parse_nvpmodel_query(text: str) -> str | None:
    """The mode name from ``nvpmodel -q``: "NV Power Mode: MAXN\\n0\\n" -> "MAXN"."""
    match = re.search(r"NV Power Mode:\s*(\S+)", text)
    return match.group(1) if match else None


def parse_nvpmodel_status(text: str) -> int | None:
    """The mode id nvpmodel saved: "pmode:0002 fmode:quiet" -> 2."""
    match = re.search(r"pmode:\s*(\d+)", text)
    return int(match.group(1)) if match else None


def parse_nvpmodel_names(conf: str) -> dict[int, str]:
    """Mode id -> name from /etc/nvpmodel.conf's "< POWER_MODEL ID=0 NAME=MAXN >" lines (comments skipped)."""
    names = {}
    for line in conf.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = re.search(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)", line)
        if match:
            names[int(match.group(1))] = match.group(2)
    return names


# ---- readers -------------------------------------------------------------------------------------


def _read(relative: str) -> str | None:
    try:
        return (ROOT / relative).read_bytes().decode(errors="replace")
    except OSError:  # absent, or unreadable for this user
        return None


def read_model() -> str | None:
    text = _read(MODEL_FILE)
    return parse_model(text) if text is not None else None


def read_l4t() -> str | None:
    text = _read(RELEASE_FILE)
    return parse_l4t_release(text) if text is not None else None


def _run_nvpmodel_query() -> str | None:
    """``nvpmodel -q`` output, or None when the binary is absent, fails or hangs."""
    binary = shutil.which("nvpmodel")
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, "-q"], capture_output=True, text=True, timeout=NVPMODEL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def read_power_mode() -> str | None:
    """The nvpmodel power mode ("MAXN", "15W"...), "mode N" when only its id is known, None off Jetson."""
    # The files first: reading them needs no root and no subprocess. nvpmodel writes the status
    # file when a mode is set; the names come from the board's nvpmodel.conf.
    status = _read(NVPMODEL_STATUS_FILE)
    mode = parse_nvpmodel_status(status) if status is not None else None
    if mode is not None:
        conf = _read(NVPMODEL_CONF_FILE)
        name = parse_nvpmodel_names(conf).get(mode) if conf is not None else None
        return name or f"mode {mode}"
    output = _run_nvpmodel_query()
    return parse_nvpmodel_query(output) if output is not None else None


def is_jetson() -> bool:
    """Whether this is a Jetson: the L4T release file JetPack writes, a device-tree model naming a Jetson,
    or tegrastats on PATH (a container may mount the tool without the release file)."""
    if _read(RELEASE_FILE) is not None:
        return True
    model = read_model()
    return (model is not None and "jetson" in model.lower()) or shutil.which("tegrastats") is not None


def jetson_info() -> JetsonInfo | None:
    """Model, L4T, JetPack and power mode of this Jetson; None when this is not a Jetson."""
    if not is_jetson():
        return None
    l4t = read_l4t()
    return JetsonInfo(model=read_model(), l4t=l4t, jetpack=jetpack_for_l4t(l4t), power_mode=read_power_mode())
