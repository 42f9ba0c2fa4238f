"""`clca-deploy serve`: a local Triton Inference Server for one model, started through PyTriton.

The server is the repository `triton-repo` writes, with one change: the server PyTriton ships
has only Triton's Python backend, so the classifier runs as a Python-backend model calling this
tool's runtime (any registered runtime that opens the file) instead of Triton's own backends. The
preprocessing, postprocessing and ensemble are the very files a GPU deployment uses.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

from clca_deploy.data.images import DEFAULT_MAX_PIXELS
from clca_deploy.errors import ClcaDeployError, ConfigError
from clca_deploy.runtime.registry import RuntimeOptions, open_backend
from clca_deploy.serving.repository import RepositoryPlan, TritonRepository, plan_triton_repository, write_planned_repository
from clca_deploy.serving.triton_config import DEFAULT_MAX_REQUEST_PIXELS, TritonRepoConfig
from clca_deploy.serving.watch import (
    ServerStopped,
    ServerWatch,
    quiet_triton,
    read_log,
    server_console,
    silence_pytriton_warnings,
    start_failure,
)
from clca_deploy.serving.workdir import private_umask, private_workdir, remove_stale_workdirs, restrict_shared_memory
from clca_deploy.logs import log_info


INSTALL_HINT = 'install the serving extra: pip install "clca-deploy[serve]"'


@dataclass(frozen=True)
class ServeConfig:
    """Where the server listens and how it batches; gRPC and metrics take the next two ports."""

    port: int = 8000
    host: str = "127.0.0.1"
    max_batch: int | None = None
    instances: int = 1
    top_k: int = 5
    name: str = "clca"
    verbose: bool = False
    runtime: str | None = None  # the classifier's runtime; None: the file's own
    runtime_options: RuntimeOptions = RuntimeOptions()
    max_image_megapixels: float = DEFAULT_MAX_PIXELS / 1e6
    max_request_megapixels: float = DEFAULT_MAX_REQUEST_PIXELS / 1e6

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 1 <= self.port <= 65533:
            raise ConfigError(f"--port must be 1..65533 (gRPC and metrics use the next two), got {self.port!r}.")
        host = self.host
        if not isinstance(host, str) or not 0 < len(host) <= 253 or not host.isprintable() or any(c.isspace() for c in host):
            raise ConfigError(f"--host must be an address or a host name (127.0.0.1, 0.0.0.0 for every interface), got {host!r}.")
        self.repository_config()  # the repository's own settings are refused here, before any work

    def repository_config(self) -> TritonRepoConfig:
        """The repository `serve` writes. No device: the classifier runs where its runtime, given every one of
        the runtime's options, opens the model (see :func:`serving_plan`); the decoders run on the CPU."""
        return TritonRepoConfig(
            name=self.name, max_batch=self.max_batch, instances=self.instances, top_k=self.top_k,
            runtime=self.runtime, runtime_options=self.runtime_options,
            max_image_megapixels=self.max_image_megapixels, max_request_megapixels=self.max_request_megapixels,
        )

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.port, "grpc": self.port + 1, "metrics": self.port + 2}


@dataclass(frozen=True)
class RunningServer:
    http_url: str
    grpc_url: str
    metrics_url: str
    model: str  # the ensemble clients call
    repository: TritonRepository
    # PyTriton guards the statistics, logging, trace, shared-memory and repository APIs with a token
    # made per start; send it as the `triton-access-token` header to use them. PyTriton (0.7) hands
    # it to tritonserver on its command line (--http-restricted-api=...:triton-access-token=<token>),
    # the only way tritonserver takes it: local users can read it with `ps`. Nothing here can
    # change that; /proc mounted with hidepid=2 hides other users' command lines.
    access_token: str
    watch: ServerWatch  # whether the server process still runs, and how it ended


def stub_environment(environ: Mapping[str, str], python_libdir: str | None, shared_python: bool) -> dict[str, str]:
    """The environment variables Triton's Python-backend stub needs to match this interpreter.

    The stub links ``libpython3.X.so`` and takes the first one the loader finds, while it runs the
    standard library of the Python that started it. With a Python built apart from the system's
    (pyenv's 3.11.7 here) the loader finds the system's libpython (Debian's 3.11.2) first: the
    3.11.7 ``multiprocessing.resource_tracker`` then calls ``RLock._recursion_count``, which the
    3.11.2 C code lacks, and every Python model fails to load. Putting this interpreter's own
    library folder first makes the stub run the same Python it reads the library of.
    """
    if not shared_python or not python_libdir:
        return {}
    current = environ.get("LD_LIBRARY_PATH", "")
    if python_libdir in current.split(":"):
        return {}
    return {"LD_LIBRARY_PATH": f"{python_libdir}:{current}" if current else python_libdir}


def _this_python_stub_environment() -> dict[str, str]:
    shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))
    return stub_environment(os.environ, sysconfig.get_config_var("LIBDIR"), shared)


def _has_gpu() -> bool:
    # Without a GPU the server's GPU metrics only print an NVML error at start.
    from clca_deploy.system.gpu import gpu_unavailable_reason

    return gpu_unavailable_reason(0) is None


def free_port(host: str = "127.0.0.1") -> int:
    """A port P with P, P+1 and P+2 free on ``host`` (HTTP, gRPC, metrics), for servers started by programs."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port > 65533:
            continue
        try:
            for offset in (1, 2):
                with socket.socket() as other:
                    other.bind((host, port + offset))
        except OSError:
            continue
        return port
    raise ClcaDeployError(f"found no three consecutive free ports on {host}.")


def check_port_free(host: str, port: int) -> str:
    """Refuse, in one line saying what to do, a host this machine cannot listen on or a port already taken;
    returns the numeric address ``host`` resolves to (what the server is told to bind)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (OSError, UnicodeError, ValueError) as exc:  # gaierror is an OSError
        reason = getattr(exc, "strerror", None) or exc
        raise ClcaDeployError(
            f"--host {host!r} is not an address or a name this machine can resolve ({reason}); give 127.0.0.1, "
            "0.0.0.0 (every interface) or an address of this machine."
        ) from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ClcaDeployError(_bind_failure(host, port, exc)) from None
    return str(address[0])


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is taken ({exc.strerror}); choose another with --port."
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"--host {host} is not an address of this machine ({exc.strerror}); give 127.0.0.1, 0.0.0.0 "
                "(every interface) or the address of one of its network interfaces.")
    if exc.errno == errno.EACCES:
        return f"port {port} on {host} needs administrator rights (ports below 1024); choose one above 1023 with --port."
    return f"cannot listen on {host} port {port} ({exc.strerror or exc}); check --host and --port."


def _require_pytriton():
    try:
        from pytriton.triton import Triton, TritonConfig
    except ImportError as exc:
        raise ClcaDeployError(f"serving needs PyTriton and tritonclient ({exc}); {INSTALL_HINT}.") from exc
    if not sys.platform.startswith("linux"):
        raise ClcaDeployError("PyTriton's Triton server runs on Linux only.")
    return Triton, TritonConfig


@contextlib.contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    # PyTriton starts the server with a copy of os.environ; ours is restored once it runs.
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def running_server(model_path: str | Path, config: ServeConfig = ServeConfig(),
                   log: Callable[[str], None] = lambda _: None) -> Iterator[RunningServer]:
    """A Triton server for ``model_path`` (.onnx or .engine), ready for requests until the block ends."""
    Triton, TritonConfig = _require_pytriton()
    address = check_port_free(config.host, config.ports["http"])
    for port in (config.ports["grpc"], config.ports["metrics"]):
        check_port_free(config.host, port)
    plan = serving_plan(model_path, config)
    for stale in remove_stale_workdirs():
        log(f"removed      {stale} (left by a server that was killed)")
    silence_pytriton_warnings()
    with private_workdir() as workdir:
        repository = write_planned_repository(plan, Path(workdir) / "repository")
        log(f"repository   {repository.path} ({', '.join(repository.models)})")
        log(f"classifier   {plan.served.spec.name} on {_place(plan)}")
        log_file = Path(workdir) / "tritonserver.log"
        triton_config = TritonConfig(
            model_repository=Path(repository.path), http_address=address, grpc_address=address,
            metrics_address=address, http_port=config.ports["http"], grpc_port=config.ports["grpc"],
            metrics_port=config.ports["metrics"], log_verbose=1 if config.verbose else 0,
            # The server's own log goes to a file unless asked for: its startup tables would bury ours.
            log_file=None if config.verbose else log_file, exit_timeout_secs=10, allow_gpu_metrics=_has_gpu(),
        )
        started = time.perf_counter()
        triton = (Triton if config.verbose else quiet_triton(Triton))(config=triton_config, workspace=Path(workdir) / "pytriton")
        _start(triton, log_file)
        try:
            # Every model's stub has made its region by now (models load during run()).
            restrict_shared_memory(pytriton_shm_prefix())
            log(f"ready        in {time.perf_counter() - started:.1f} s")
            host = "localhost" if config.host in ("127.0.0.1", "0.0.0.0") else config.host
            yield RunningServer(
                http_url=f"{host}:{config.ports['http']}", grpc_url=f"{host}:{config.ports['grpc']}",
                metrics_url=f"http://{host}:{config.ports['metrics']}/metrics", model=repository.model,
                repository=repository, access_token=triton.get_access_token(), watch=ServerWatch(triton),
            )
        finally:
            triton.stop()


def _start(triton, log_file: Path) -> None:
    try:
        # Triton and its Python-backend stubs inherit the umask: what they create (the log...) is
        # this user's only. Not their /dev/shm regions: Boost sets those to 0644 (see running_server).
        with _environment(_this_python_stub_environment()), private_umask():
            triton.run()
    except Exception as exc:  # noqa: BLE001 - PyTriton reports a failed start with several types
        console = server_console(triton)
        triton.stop()
        reason = start_failure(read_log(log_file), console, fallback=f"{type(exc).__name__}: {exc}")
        raise ClcaDeployError(f"the Triton server did not start: {reason}") from exc
    except BaseException:  # Ctrl-C or SIGTERM while starting: no server may outlive us
        triton.stop()
        raise


def pytriton_shm_prefix(pid: int | None = None) -> str:
    """The name prefix of the /dev/shm regions of the servers PyTriton starts from process ``pid``
    (``Triton._shm_prefix``: 'pytrtion' as PyTriton spells it, the PID, '-', a random hex part)."""
    return f"pytrtion{os.getpid() if pid is None else pid}-"


def serving_plan(model_path: str | Path, config: ServeConfig) -> RepositoryPlan:
    """The repository `serve` writes for ``model_path``: refused before any work where Triton could not serve
    it, then placed where the runtime, given all its options, runs the model (KIND_GPU on that CUDA device,
    or the CPU). The backend says so itself (``device_index``), so no runtime is named here and an
    onnxruntime ``--provider auto`` is placed where it actually landed."""
    repo_config = config.repository_config()
    plan = plan_triton_repository(model_path, repo_config, runtime_classifier=True)
    return plan.placed(_check_model_loads(model_path, repo_config))


def _place(plan: RepositoryPlan) -> str:
    return "the CPU" if plan.served.gpu is None else f"CUDA device {plan.served.gpu}"


def _check_model_loads(model_path: str | Path, repo_config: TritonRepoConfig) -> int | None:
    """Open the model here first: a damaged file or an engine built for another GPU is then one
    clear error at once. Inside the server the same failure stops Triton, but PyTriton only
    notices when its 120 s start-up timeout runs out. Returns the CUDA device it ran on (None: the CPU)."""
    try:
        with open_backend(model_path, repo_config.runtime, repo_config.runtime_options) as backend:
            return backend.device_index
    except ClcaDeployError:
        raise
    except Exception as exc:  # noqa: BLE001 - runtimes raise their own types for unreadable models
        raise ClcaDeployError(f"cannot load {model_path} ({type(exc).__name__}: {exc}); export it again.") from exc


def serve(model_path: str | Path, config: ServeConfig = ServeConfig(), log: Callable[[str], None] = log_info) -> None:
    """Run the server until Ctrl-C or SIGTERM (how `docker stop` and Kubernetes end a process). If the server
    process ends on its own (a crash, a kill), raise ``ServerStopped`` (the CLI exits with code 1) so that a
    supervisor restarts `serve` instead of watching a process with nothing listening."""
    _stop_on_sigterm()
    with running_server(model_path, config, log) as server:
        # The lines are inside the try: a stop that arrives while they print (a supervisor
        # that sends SIGTERM as soon as it reads them) is a clean stop too, not an interrupted start.
        try:
            log(f"serving      model '{server.model}': HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url}")
            log(f"admin token  {server.access_token} (header triton-access-token, for statistics and logging)")
            log("stop with    Ctrl-C")
            ended = server.watch.wait()
        except KeyboardInterrupt:
            log("stopping")
            return
    raise ServerStopped(f"the Triton server stopped while serving ({ended}); nothing listens any more, so serve exits.")


def _stop_on_sigterm() -> None:
    # SIGTERM would end Python without unwinding, leaving the Triton server process running;
    # as a KeyboardInterrupt it stops the server and removes its files first.
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
