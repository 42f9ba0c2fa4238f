"""Jetson board power from ``tegrastats --interval N``, the tool every JetPack ships (see ``rails`` for the rails)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Callable, Sequence

from clca_deploy.bench.power.meter import Detection
from clca_deploy.bench.power.rails import RailSampler, parse_rails
from clca_deploy.system.jetson import is_jetson


def tegrastats_command(interval_ms: int, executable: str = "tegrastats") -> list[str]:
    """The command line that prints one reading every ``interval_ms``, a line at a time."""
    command = [executable, "--interval", str(int(interval_ms))]
    # Through a pipe, C stdio buffers output in blocks unless the program flushes itself; readings
    # would then arrive in bursts and be stamped with the wrong times. stdbuf forces line buffering.
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL", *command] if stdbuf else command


class TegrastatsSampler(RailSampler):
    """Runs ``tegrastats --interval N`` while sampling; ``lines`` replaces the subprocess (tests)."""

    def __init__(self, interval_ms: int = 50, command: Sequence[str] | None = None, lines=None):
        super().__init__()
        self.interval_ms = interval_ms
        self._command = list(command) if command else None
        self._lines_factory = lines  # callable returning an iterable of lines, instead of a process
        self._process: subprocess.Popen | None = None

    def _open(self) -> None:
        self._start_reading()
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


def detect(device_index: int | None) -> Detection:
    """tegrastats applies on a Jetson with the tool on PATH (a container must mount it)."""
    if not is_jetson():
        return Detection.absent("not a Jetson")
    if shutil.which("tegrastats") is None:
        return Detection.absent("a Jetson, but tegrastats is not on PATH (in a container, mount /usr/bin/tegrastats)")
    return Detection.found(TegrastatsSampler())
