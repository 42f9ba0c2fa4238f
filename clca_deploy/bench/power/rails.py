"""Jetson board power from rail readings: parsing ``tegrastats`` lines, which rails are the board, and the
sampler base that tegrastats and jtop share.

What the formats and rails are based on (no Jetson was at hand; the tests replay recorded lines):

- tegrastats prints one line per interval; each INA3221 rail reads ``NAME now/avg``: plain milliwatts
  up to JetPack 4 (``POM_5V_IN 2361/2361``), ``NAME 5103mW/5103mW`` from JetPack 5, and the JetPack 6
  line recorded on an AGX Orin for this project starts with a ``MM-DD-YYYY HH:MM:SS`` timestamp. We
  take ``now``: ``avg`` is tegrastats' running average since it started, not the timed window's.
  (NVIDIA's tegrastats documentation; jetson-stats, jtop/core/tegra_parse.py ``VOLTS``; lines posted in
  NVIDIA forum threads and GitHub projects that parse tegrastats.)
- Which rail is the board's power (jetson-stats jtop/core/power.py ``total_power``, its issues #51 and
  #344; the energymon project's jetson/JetsonPowerRails.md; NVIDIA's answer in the forum thread
  "Interpretation of Jetson NX power rail": VDD_IN is the module's total, the other rails are inside
  it): Nano, TX1/TX2, Xavier NX, Orin Nano and Orin NX have one input rail, ``VDD_IN`` (``POM_5V_IN``
  on the JetPack 4 Nano), and the other rails are parts of it, never to be added. The AGX boards have no input-rail sensor: AGX Xavier's
  six channels (GPU, CPU, SOC, CV, VDDRQ, SYS5V) all branch from the main supply and are summed.
  AGX Orin's first INA3221 watches the module's three supply inputs, VDD_GPU_SOC, VDD_CPU_CV and
  VIN_SYS_5V0; we sum those three and leave out VDDQ_VDD2_1V8AO (second INA3221), a memory rail we
  take to be fed inside the module from the 5 V input, so adding it would count it twice. That sum
  is module power; the carrier board is not measured, so it reads below a meter at the wall.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

from clca_deploy.bench.power.meter import ThreadedPowerSampler

# A rail is an upper-case name, then "now/avg" in mW, with or without the unit. The lookahead keeps
# "RAM 5402/30536MB" and "SWAP 0/15268MB" out: a rail's numbers end at a space or the line's end.
_RAIL = re.compile(r"(?:^|\s)([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # one sensor on the module's input: the board's power
SUM_RAILS = (  # boards with no input sensor: rails that together feed the module, none inside another
    ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"),  # AGX Orin
    ("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"),  # AGX Xavier (JetPack 4)
)
_NOTES = {
    "VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0": (
        " (AGX Orin module rails summed: no VDD_IN sensor; carrier board not included)"
    ),
    "GPU+CPU+SOC+CV+VDDRQ+SYS5V": " (AGX Xavier module rails summed: no VDD_IN sensor)",
}


def parse_rails(line: str) -> dict[str, int]:
    """Instantaneous power in mW of every rail on one tegrastats line (the number before the slash)."""
    return {name: int(now) for name, now, _average in _RAIL.findall(line)}


def board_power_mw(rails: Mapping[str, float]) -> tuple[float, str] | None:
    """(board power in mW, the rail or ``+``-joined rails it came from), or None when a line lacks them."""
    for name in TOTAL_RAILS:
        if name in rails:
            return float(rails[name]), name
    for group in SUM_RAILS:
        if all(name in rails for name in group):
            return float(sum(rails[name] for name in group)), "+".join(group)
    return None


def describe_rails(label: str, tool: str = "tegrastats") -> str:
    """The ``power_source`` text for board power read from ``label``'s rails."""
    return f"{tool} {label}{_NOTES.get(label, '')}"


def jetson_power_mode() -> str | None:
    """The nvpmodel mode (e.g. "MAXN", "15W"), or None where it cannot be read."""
    try:
        from clca_deploy.system.jetson import read_power_mode
    except ImportError:
        return None
    try:
        return read_power_mode()
    except Exception:  # the mode labels the number; failing to read it must not lose the number
        return None


class RailSampler(ThreadedPowerSampler):
    """Board power from rail readings; remembers what it saw, to say why when no reading fits."""

    tool = "tegrastats"

    def __init__(self) -> None:
        super().__init__()
        self.source = self.tool
        self._rails_seen: set[str] = set()
        self._last_line = ""

    def _start_reading(self) -> None:
        """At each start: the power mode that labels the readings, and nothing seen yet."""
        self.power_mode = jetson_power_mode()
        self._rails_seen, self._last_line = set(), ""

    def _reading(self, rails: Mapping[str, float], emit: Callable[[float], None]) -> None:
        found = board_power_mw(rails)
        if found is None:
            self._rails_seen.update(rails)
            return
        milliwatts, label = found
        self.source = describe_rails(label, self.tool)
        emit(milliwatts / 1000.0)

    def _failure_detail(self) -> str | None:
        if self._rails_seen:
            return (
                f"no board-power rail ({' or '.join(TOTAL_RAILS)}) and no known set of module rails; "
                f"rails seen: {', '.join(sorted(self._rails_seen))}"
            )
        if self._last_line:
            return f"no power rails in its output; last line: {self._last_line[:200]!r}"
        return super()._failure_detail()
