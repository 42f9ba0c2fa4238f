"""The Triton server process behind `serve`: whether it still runs, and why it stopped or never started, in one line.

PyTriton (0.7) starts ``tritonserver`` as a child process and notices its end only through a callback;
nothing in it tells the program that started it. A server killed by a request (the bundled server
aborts on an HTTP body that inflates past 2 GiB) or from outside (``kill -9``, the out-of-memory
killer) would leave `serve` running with nothing listening, so a supervisor would never restart it.
``ServerWatch`` is how `serve` notices and exits instead.

PyTriton keeps the server's console (stdout and stderr: crash reports, the gRPC library's errors) in
``TritonServer.logs()`` and, by default, echoes every line of it to our stdout, internal paths and
backtraces included. ``quiet_triton`` keeps it recorded but unprinted unless asked; the lines that
explain a failure are picked from it here.
"""

from __future__ import annotations

import logging
import re
import signal
import time
from pathlib import Path

from clca_deploy.errors import ClcaDeployError

# glog's prefix on every server log line: severity, date, time, thread, file:line.
_GLOG = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w.-]+:\d+\]\s?(.*)$")
# Errors a server on a machine without a GPU logs at every start; they never explain a failure.
_NOISE = re.compile(r"CudaDriverHelper|CUDA driver version is insufficient|unable to create stream|cudaGetDevice|pinned memory")
# The server's own verdicts: when present, they are the cause and everything else is context.
_DECISIVE = re.compile(r"failed to (start|load)", re.IGNORECASE)
_TAKEN = re.compile(r"Socket '([^']+)' already in use|Address already in use", re.IGNORECASE)
_TERMINATE = re.compile(r"terminate called after throwing an instance of '([^']+)'")
_WHAT = re.compile(r"^\s*what\(\):\s*(.+)$")


class ServerStopped(ClcaDeployError):
    """The Triton server process ended on its own while `serve` was serving (a crash, a kill)."""

    # Not 2 (bad input): the input was fine and the service failed; a supervisor restarts on any non-zero code.
    exit_code = 1


def error_lines(text: str) -> list[str]:
    """The messages of the error (E) and fatal (F) lines of a server log or console, without glog's prefix."""
    found = []
    for line in text.splitlines():
        match = _GLOG.match(line.strip())
        if match and match[1] in "EF":
            found.append(" ".join(match[2].strip().strip('"').split()))
    return found


def start_failure(log_text: str, console: str, fallback: str) -> str:
    """Why the server did not start, in one line: its own verdict (a port taken, a model that failed to
    load) first, without the CUDA errors every start on a machine without a GPU logs; else ``fallback``."""
    errors = [line for line in error_lines(log_text) + error_lines(console) if not _NOISE.search(line)]
    decisive = [line for line in errors if _DECISIVE.search(line)]
    chosen = list(dict.fromkeys(decisive or errors))[-3:]
    if not chosen:
        return fallback
    text = "; ".join(chosen)
    if any(_TAKEN.search(line) for line in chosen):
        text += "; another program took that port while this server started: choose another with --port"
    return text


def describe_exit(exit_code: int | None, console: str) -> str:
    """How the server process ended, in words: its exit code or signal, and the C++ exception that aborted it."""
    if exit_code is None:
        how = "its process is gone"
    elif exit_code < 0:
        how = f"killed by {_signal_name(-exit_code)}"
        if -exit_code == signal.SIGKILL:
            how += ", sent from outside or by the kernel's out-of-memory killer"
    else:
        how = f"exited with code {exit_code}"
    lines = console.splitlines()
    for index, line in enumerate(lines):
        aborted = _TERMINATE.search(line)
        if aborted:
            what = next((m[1] for m in map(_WHAT.match, lines[index + 1 : index + 3]) if m), "")
            how += f", after an uncaught {aborted[1]}" + (f" ({' '.join(what.split())})" if what else "")
    errors = [line for line in error_lines(console) if not _NOISE.search(line)]
    if errors:
        how += f"; last error: {errors[-1]}"
    return how


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _server_process(triton):
    # PyTriton keeps its TritonServer (the process wrapper, with register_on_exit and logs) in a private
    # attribute; without it (another PyTriton) the watch still works from Triton.is_alive, with less to say.
    return getattr(triton, "_triton_server", None)


def server_console(triton) -> str:
    """What the server process has printed so far (PyTriton records it), or "" where it cannot say."""
    process = _server_process(triton)
    try:
        return str(process.logs()) if process is not None else ""
    except Exception:  # noqa: BLE001 - the console is a courtesy; a failure report must not fail on it
        return ""


def server_exit_code(triton) -> int | None:
    """The server process's exit code (negative: the signal that killed it), None while it runs or where
    PyTriton does not say. PyTriton's exit callbacks cannot tell: its own callback unregisters itself while
    they are being called, so the one after it is skipped."""
    command = getattr(_server_process(triton), "_tritonserver_running_cmd", None)
    code = getattr(getattr(command, "process", None), "exit_code", None)
    return code if isinstance(code, int) else None


class ServerWatch:
    """Whether the server process a running ``pytriton.triton.Triton`` started is still alive, and how it ended."""

    def __init__(self, triton) -> None:
        self._triton = triton

    def alive(self) -> bool:
        return bool(self._triton.is_alive())

    def wait(self, poll_s: float = 0.5) -> str:
        """Block while the server runs; once it has stopped on its own, say how (one line)."""
        while self.alive():
            time.sleep(poll_s)
        return describe_exit(server_exit_code(self._triton), server_console(self._triton))


def quiet_triton(triton_class: type) -> type:
    """``pytriton.triton.Triton`` whose server keeps its console to itself: recorded (``logs()``), not
    echoed to our stdout, where CUDA warnings, 'Signal (2) received.' and crash backtraces naming the
    server's files would bury `serve`'s own lines."""

    class QuietTriton(triton_class):
        def _initialize_server(self) -> None:
            super()._initialize_server()
            process = _server_process(self)
            if process is not None and hasattr(process, "_verbose"):
                process._verbose = False

    return QuietTriton


def silence_pytriton_warnings() -> None:
    """PyTriton's warnings ('Triton Inference Server exited with failure. Please wait.') otherwise reach
    stderr through Python's last-resort handler, beside the one line a failure is reported with."""
    logger = logging.getLogger("pytriton")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
