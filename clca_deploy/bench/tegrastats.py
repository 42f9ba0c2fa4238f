"""Jetson board power: parsing ``tegrastats`` lines, and samplers over tegrastats or jtop.

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

import importlib
import re
import shutil
import subprocess
from typing import Callable, Mapping, Sequence

from clca_deploy.bench.power_meter import ThreadedPowerSampler

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


def tegrastats_command(interval_ms: int, executable: str = "tegrastats") -> list[str]:
    """The command line that prints one reading every ``interval_ms``, a line at a time."""
    command = [executable, "--interval", str(int(interval_ms))]
    # Through a pipe, C stdio buffers output in blocks unless the program flushes itself; readings
    # would then arrive in bursts and be stamped with the wrong times. stdbuf forces line buffering.
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL", *command] if stdbuf else command


class _RailSampler(ThreadedPowerSampler):
    """Board power from rail readings; remembers what it saw, to say why when no reading fits."""

    tool = "tegrastats"

    def __init__(self) -> None:
        super().__init__()
        self.source = self.tool
        self._rails_seen: set[str] = set()
        self._last_line = ""

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


class TegrastatsSampler(_RailSampler):
    """Runs ``tegrastats --interval N`` while sampling; ``lines`` replaces the subprocess (tests)."""

    def __init__(self, interval_ms: int = 50, command: Sequence[str] | None = None, lines=None):
        super().__init__()
        self.interval_ms = interval_ms
        self._command = list(command) if command else None
        self._lines_factory = lines  # callable returning an iterable of lines, instead of a process
        self._process: subprocess.Popen | None = None

    def _open(self) -> None:
        self.power_mode = jetson_power_mode()
        self._rails_seen, self._last_line = set(), ""
        if self._lines_factory is not None:
            return
        command = self._command or tegrastats_command(self.interval_ms, shutil.which("tegrastats") or "tegrastats")
        # stderr joins stdout so that an error message ("permission denied"...) becomes the reason.
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace", bufsize=1,
        )  # fmt: skip

    def _run(self, emit: Callable[[float], None]) -> None:
        lines = self._lines_factory() if self._lines_factory is not None else self._process.stdout
        for line in lines:
            if self._stopping.is_set():
                break
            if line.strip():
                self._last_line = line.strip()
            self._reading(parse_rails(line), emit)

    def _close(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()  # its stdout then ends, and so does _run
            try:
                process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _release(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.stdout is not None:
            process.stdout.close()


def jtop_rails(power: Mapping) -> dict[str, float]:
    """Rail name -> mW from jetson-stats 4's ``jtop.power`` ({"rail": {...}, "tot": {...}})."""
    rails = {name: float(value["power"]) for name, value in power.get("rail", {}).items() if "power" in value}
    total = power.get("tot", {})
    if total.get("name") and "power" in total:  # jtop moves VDD_IN out of "rail" into "tot"
        rails[total["name"]] = float(total["power"])
    return rails


class JtopSampler(_RailSampler):
    """Board power through the jtop service (jetson-stats), for containers without tegrastats.

    The same rail rule as for tegrastats is applied to jtop's rails, not jtop's own total, which on
    AGX Orin adds the VDDQ_VDD2_1V8AO rail too.
    """

    tool = "jtop"

    def __init__(self, interval_s: float = 0.1, module=None):
        super().__init__()
        self.interval_s = interval_s
        self._module = module
        self._jetson = None

    def _open(self) -> None:
        self.power_mode = jetson_power_mode()
        self._rails_seen = set()
        module = self._module or importlib.import_module("jtop")
        self._jetson = module.jtop(interval=self.interval_s)
        self._jetson.start()

    def _run(self, emit: Callable[[float], None]) -> None:
        jetson = self._jetson
        while not self._stopping.is_set() and jetson.ok():
            power = jetson.power
            if not isinstance(power, Mapping):
                raise RuntimeError("jetson-stats before 4.0 (jtop.power is not a dict); pip install -U jetson-stats")
            self._reading(jtop_rails(power), emit)

    def _close(self) -> None:
        if self._jetson is not None:
            self._jetson.close()

    def _release(self) -> None:
        self._jetson = None
