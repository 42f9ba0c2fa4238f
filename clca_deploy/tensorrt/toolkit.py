"""Whether TensorRT can run here, checked once per command: the GPU, TensorRT itself, the CUDA major its
libraries are built for against the driver's, a CUDA binding; and the one guard around creating TensorRT's
Builder and Runtime, which is where a TensorRT the driver cannot run finally fails."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clca_deploy.errors import UnsupportedError
from clca_deploy.extras import (
    CUDA_MAJORS, cuda_major_for_driver, driver_requirement, has_module, install_command, install_line,
)
from clca_deploy.system import checks
from clca_deploy.system.gpu import GpuInfo, gpu_info, gpu_unavailable_reason
from clca_deploy.system.jetson import is_jetson
from clca_deploy.tensorrt.cuda import installed_bindings
from clca_deploy.tensorrt.plan import check_tensorrt_version, parse_trt_version

# On a Jetson, TensorRT comes with JetPack (its Python bindings are built for the system Python),
# never from pip; a CUDA binding comes from pip.
JETSON_TENSORRT_HINT = (
    "use JetPack's TensorRT: create the venv with --system-site-packages "
    "(sudo apt install nvidia-jetpack if missing); see docs/jetson.md"
)
CUDA_BINDING_HINT = f'pip install "{CUDA_MAJORS[12].bindings}"'  # JetPack 6 is CUDA 12.6
JETSON_CUDA_BINDING_HINT = f"{CUDA_BINDING_HINT} (or pycuda built with nvcc)"

# NVIDIA's TensorRT wheels, for each CUDA major they publish. The bare `tensorrt` is a metapackage over
# one tensorrt-cuNN (cu12 up to 10.13.0, cu13 from 10.13.2 on Linux); a -cuNN wheel's libraries link
# libcudart.so.NN, so the driver must support CUDA NN or TensorRT cannot start.
TENSORRT_DISTRIBUTIONS = ("tensorrt",) + tuple(
    f"tensorrt-cu{major}{part}" for major in (11, 12, 13) for part in ("", "-libs", "-bindings")
)
_CUDA_SUFFIX = re.compile(r"-cu(\d+)(?:-|$)")


@dataclass(frozen=True)
class TensorRTWheels:
    """The TensorRT pip distributions installed here, (name, version) pairs; none for JetPack's or a system TensorRT."""

    versions: tuple[tuple[str, str], ...]

    @property
    def majors(self) -> tuple[int, ...]:
        """The CUDA majors these wheels are built for: one when the install is sound, () when not from pip."""
        suffixes = (_CUDA_SUFFIX.search(name) for name, _ in self.versions)
        return tuple(sorted({int(match.group(1)) for match in suffixes if match}))

    def describe(self) -> str:
        """"tensorrt-cu13 10.13.3.9.post1": the first wheel of each CUDA major (its -cuNN package when there)."""
        first: dict[str, str] = {}
        for name, version in self.versions:
            match = _CUDA_SUFFIX.search(name)
            if match:
                first.setdefault(match.group(1), f"{name} {version}")
        return " and ".join(first.values())

    def uninstall_command(self) -> str:
        return "pip uninstall -y " + " ".join(name for name, _ in self.versions)


def installed_tensorrt_wheels() -> TensorRTWheels:
    """Which of NVIDIA's TensorRT wheels pip has installed here."""
    found = ((name, checks.dist_version(name)) for name in TENSORRT_DISTRIBUTIONS)
    return TensorRTWheels(tuple((name, version) for name, version in found if version))


def driver_major(driver_version: str | None) -> int | None:
    """12 for the driver's "12.4"; None when unknown."""
    head = (driver_version or "").split(".")[0]
    return int(head) if head.isdigit() else None


def trt_extra(driver_version: str | None) -> str | None:
    """The extra with TensorRT for this driver's CUDA ("trt-cu12"): "trt" while the driver is unknown, None
    when the driver is older than every CUDA the wheels are built for."""
    major = driver_major(driver_version)
    if major is None:
        return "trt"
    fitting = cuda_major_for_driver(major)
    return CUDA_MAJORS[fitting].trt if fitting else None


def _reinstall(wheels: TensorRTWheels, driver_version: str | None, built_for: int | None = None) -> str:
    """The fix: remove every TensorRT wheel (a -cu12 and a -cu13 wheel install the same `tensorrt` module,
    so one cannot go over the other), then install the build this driver runs."""
    remove = wheels.uninstall_command()
    if is_jetson():
        return f"{remove}, then {JETSON_TENSORRT_HINT}"
    extra = trt_extra(driver_version)
    if extra is None:
        return f"{remove}, and update the NVIDIA driver ({driver_requirement()})"
    newer = CUDA_MAJORS.get(built_for) if built_for is not None else None
    update = f" (or update the NVIDIA driver to {newer.driver} or newer)" if newer else ""
    return f"{remove}, then {install_command(extra)}{update}"


def cuda_problem(wheels: TensorRTWheels, driver_version: str | None) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) when the TensorRT wheels installed here cannot run on a driver of
    ``driver_version`` ("12.4"), else None. A newer driver runs an older CUDA, never the reverse."""
    majors, driver = wheels.majors, driver_major(driver_version)
    if len(majors) > 1:
        cudas = " and ".join(f"CUDA {major}" for major in majors)
        return (f"TensorRT wheels for {cudas} are both installed ({wheels.describe()}) and overwrite each other's "
                "tensorrt module"), _reinstall(wheels, driver_version)
    if not majors or driver is None or majors[0] <= driver:
        return None
    return (f"TensorRT from {wheels.describe()} is built for CUDA {majors[0]}, but this NVIDIA driver supports "
            f"CUDA {driver_version} at most"), _reinstall(wheels, driver_version, majors[0])


def install_hint(driver_version: str | None = None) -> str:
    """Where TensorRT and a CUDA binding come from on this machine: JetPack on a Jetson, else the pip extra
    built for this driver's CUDA."""
    if is_jetson():
        return f"{JETSON_TENSORRT_HINT}; CUDA binding: {JETSON_CUDA_BINDING_HINT}"
    extra = trt_extra(driver_version)
    return install_line("tensorrt", extra) if extra else f"update the NVIDIA driver ({driver_requirement()})"


def _has_tensorrt() -> bool:
    return has_module("tensorrt")


def _driver_version(device: int) -> str | None:
    try:
        return gpu_info(device).driver_version
    except UnsupportedError:
        return None


def _unavailable(device: int) -> tuple[str, str] | None:
    """(why TensorRT cannot run on GPU ``device``, what to do about it), or None when it can."""
    reason = gpu_unavailable_reason(device)
    if reason:
        return reason, install_hint()
    driver = _driver_version(device)
    if not _has_tensorrt():
        return "TensorRT is not installed", install_hint(driver)
    problem = cuda_problem(installed_tensorrt_wheels(), driver)
    if problem:  # before importing: the import works, TensorRT then fails on its first CUDA call
        return problem
    if not installed_bindings():
        return "no CUDA Python binding is installed (cuda-python or pycuda)", install_hint(driver)
    return None


def tensorrt_unavailable_reason(device: int = 0) -> str | None:
    """None when TensorRT, a CUDA binding and GPU ``device`` are all usable, else the first reason why not."""
    problem = _unavailable(device)
    return problem[0] if problem else None


@dataclass(frozen=True)
class TensorRTToolkit:
    """The imported tensorrt module, its parsed version and the GPU it builds for and runs on."""

    trt: Any
    version: tuple[int, int, int]
    gpu: GpuInfo

    @property
    def version_string(self) -> str:
        return str(self.trt.__version__)

    def create(self, factory: str, logger: Any) -> Any:
        """``trt.Builder(logger)`` or ``trt.Runtime(logger)``, or UnsupportedError in one line saying why not.

        TensorRT answers a CUDA it cannot start (a driver older than its CUDA, above all) with a null object,
        which its pybind11 bindings raise as TypeError "factory function returned nullptr".
        """
        try:
            made = getattr(self.trt, factory)(logger)
        except TypeError as exc:
            if "nullptr" not in str(exc):
                raise
            made = None
        if made is None:
            raise UnsupportedError(self._startup_failure(factory))
        return made

    def _startup_failure(self, factory: str) -> str:
        gpu, wheels = self.gpu, installed_tensorrt_wheels()
        head = (f"TensorRT {self.version_string} could not create its {factory} on {gpu.name} "
                f"(CUDA driver {gpu.driver_version or 'version unknown'})")
        problem = cuda_problem(wheels, gpu.driver_version)
        if problem:
            return f"{head}: {problem[0]}; {problem[1]}."
        built = f"built for CUDA {wheels.majors[0]}" if wheels.majors else "not a pip wheel, so its CUDA is unknown here"
        return (f"{head}: it could not start CUDA (this TensorRT is {built}); its messages above say why, "
                "and `clca-deploy doctor` checks the install.")


def load_toolkit(device: int = 0) -> TensorRTToolkit:
    """Import TensorRT for GPU ``device``, or raise UnsupportedError saying what is missing and how to get it."""
    problem = _unavailable(device)
    if problem:
        raise UnsupportedError(f"TensorRT cannot run here: {problem[0]}; {problem[1]}.")
    try:
        import tensorrt as trt
    except Exception as exc:  # a wheel without its NVIDIA libraries fails with OSError/ImportError
        raise UnsupportedError(f"TensorRT is installed but does not import ({exc}); {install_hint()}.") from exc
    version = parse_trt_version(trt.__version__)
    check_tensorrt_version(version)
    return TensorRTToolkit(trt=trt, version=version, gpu=gpu_info(device))
