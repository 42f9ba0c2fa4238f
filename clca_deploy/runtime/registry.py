"""The runtimes this tool runs models on: one ``RuntimeSpec`` each, and every lookup the commands make.

Everything that depends on which runtimes exist reads this registry: the file-suffix defaults,
``--runtime`` and the runtime options of the commands, `doctor`'s rows, report environments and
Triton's model configs. Adding a runtime is one backend module (with its ``RUNTIME``) and one line in
``BUILT_IN``; :func:`register_runtime` adds one at run time (a plugin, or a test's toy runtime).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata import check_regular_file
from clca_deploy.runtime import onnxruntime_backend, openvino_backend, tensorrt_backend, torch_backend
from clca_deploy.runtime.base import Backend, RuntimeSpec
from clca_deploy.runtime.options import CliOption, cli_options

# In this order: the first runtime that opens a suffix is its default (onnxruntime before openvino).
BUILT_IN = (torch_backend.RUNTIME, onnxruntime_backend.RUNTIME, openvino_backend.RUNTIME, tensorrt_backend.RUNTIME)

_RUNTIMES: dict[str, RuntimeSpec] = {}


def register_runtime(spec: RuntimeSpec) -> RuntimeSpec:
    """Add ``spec`` to the registry, after checking it fits beside the runtimes already there."""
    if spec.name in _RUNTIMES:
        raise ValueError(f"a runtime named {spec.name!r} is registered already")
    if not dataclasses.is_dataclass(spec.options) or not spec.options.__dataclass_params__.frozen:
        raise ValueError(f"{spec.name}: options must be a frozen dataclass")
    bad = [suffix for suffix in spec.suffixes if not suffix.startswith(".") or suffix != suffix.lower()]
    if bad or not spec.suffixes:
        raise ValueError(f"{spec.name}: suffixes must be lower-case and start with a dot, got {spec.suffixes}")
    _check_options_agree([*_RUNTIMES.values(), spec])
    _RUNTIMES[spec.name] = spec
    return spec


def unregister_runtime(name: str) -> None:
    """Remove a runtime added by :func:`register_runtime` (tests put the registry back this way)."""
    _RUNTIMES.pop(name, None)


def _check_options_agree(specs: list[RuntimeSpec]) -> None:
    """One flag is one option: two runtimes declaring it (or its field name) must agree on its field, flag,
    type, default and help, since a command passes one value to both."""
    seen: dict[str, tuple[str, CliOption]] = {}
    for spec in specs:
        for option in cli_options(spec.options):
            for key in (option.flag.flag, option.name):
                first = seen.setdefault(key, (spec.name, option))
                if first[1] != option:
                    raise ValueError(f"{spec.name} declares {key} unlike {first[0]} does")


for _spec in BUILT_IN:
    register_runtime(_spec)


def runtime_names() -> tuple[str, ...]:
    """Every registered runtime, in registry order."""
    return tuple(_RUNTIMES)


def runtime_specs() -> tuple[RuntimeSpec, ...]:
    """Every registered runtime's spec, in registry order."""
    return tuple(_RUNTIMES.values())


def runtime_spec(name: str) -> RuntimeSpec:
    """The spec of runtime ``name``, or an error listing the runtimes there are."""
    if name not in _RUNTIMES:
        raise ClcaDeployError(f"unknown runtime '{name}'; choose one of {', '.join(_RUNTIMES)}.")
    return _RUNTIMES[name]


def _expected_files() -> str:
    by_format: dict[str, list[str]] = {}
    for spec in _RUNTIMES.values():
        suffixes = by_format.setdefault(spec.file_format, [])
        suffixes.extend(suffix for suffix in spec.suffixes if suffix not in suffixes)
    kinds = [f"{'an' if kind[0] in 'aeiouAEIOU' else 'a'} {kind} ({', '.join(suffixes)})" for kind, suffixes in by_format.items()]
    return ", ".join(kinds[:-1]) + f" or {kinds[-1]}" if len(kinds) > 1 else kinds[0]


def runtimes_for_path(path: str | Path) -> tuple[str, ...]:
    """The runtimes that can open ``path``, its default first; an error for a file no runtime reads."""
    suffix = Path(path).suffix.lower()
    able = tuple(spec.name for spec in _RUNTIMES.values() if suffix in spec.suffixes)
    if not able:
        raise ClcaDeployError(f"cannot tell which runtime runs {path}: expected {_expected_files()}.")
    return able


def backend_for_path(path: str | Path, runtime: str | None = None) -> str:
    """The runtime that opens ``path``: ``runtime`` if given and able to, else the file type's default."""
    able = runtimes_for_path(path)
    if runtime is None:
        return able[0]
    runtime_spec(runtime)
    if runtime not in able:
        raise ClcaDeployError(
            f"{runtime} cannot open {Path(path).name}; {Path(path).suffix} files run on {' or '.join(able)}."
        )
    return runtime


def file_format(path: str | Path) -> str:
    """What kind of model file ``path`` is (a checkpoint, an ONNX file...), by the runtime that opens it."""
    return runtime_spec(runtimes_for_path(path)[0]).file_format


def parse_runtimes(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated runtime list such as "onnxruntime,openvino"; None (each file's default) if empty."""
    if not text:
        return None
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in _RUNTIMES]
    if unknown:
        raise ClcaDeployError(f"unknown runtime {', '.join(unknown)}; choose from {', '.join(_RUNTIMES)}.")
    return names or None


def command_line_options(triton_only: bool = False) -> list[CliOption]:
    """Every runtime's command-line options, one per flag (or only those a Triton model config carries)."""
    options: dict[str, CliOption] = {}
    for spec in _RUNTIMES.values():
        for option in cli_options(spec.options):
            if not triton_only or option.flag.triton:
                options.setdefault(option.flag.flag, option)
    return list(options.values())


@dataclass(frozen=True)
class RuntimeOptions:
    """The runtimes' command-line options as a command took them (by field name); ``of(runtime)`` is one
    runtime's options dataclass. (Options without a flag, such as a TensorRT test's ``cuda_binding``,
    go to ``open_backend`` directly.)

    Built with every value checked: each registered runtime makes its options from the values it
    declares, so a bad ``--threads`` or ``--inference-precision`` is an error before any model opens.
    """

    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = {option.name for option in command_line_options()}
        unknown = sorted(set(self.values) - known)
        if unknown:
            raise ClcaDeployError(f"no runtime takes the option(s) {', '.join(unknown)}.")
        for name in _RUNTIMES:
            self.of(name)

    @classmethod
    def from_values(cls, **values: Any) -> "RuntimeOptions":
        """``RuntimeOptions.from_values(threads=2, inference_precision="bf16")``."""
        return cls(values)

    def paths(self) -> list[Path]:
        """The files and folders the options name (a settings file, a cache): outputs must not replace them."""
        return [value for value in self.values.values() if isinstance(value, Path)]

    def of(self, runtime: str) -> Any:
        """Runtime ``runtime``'s options dataclass, made from the values it declares."""
        options_type = runtime_spec(runtime).options
        own = {option.name: self.values[option.name] for option in cli_options(options_type) if option.name in self.values}
        return options_type(**own)


def open_backend(
    path: str | Path, runtime: str | None = None, options: RuntimeOptions | None = None, **settings: Any
) -> Backend:
    """Open a model file on the runtime its type calls for (or ``runtime``), e.g. ``open_backend("m.onnx", threads=2)``.

    ``settings`` are that runtime's own options by field name; ``options`` carries a command's options
    for every runtime (``settings`` win over it).
    """
    path = check_regular_file(path)  # before any runtime opens it: a FIFO would block it, /dev/zero never ends
    spec = runtime_spec(backend_for_path(path, runtime))
    chosen = (options or RuntimeOptions()).of(spec.name)
    if settings:
        takes = {f.name for f in dataclasses.fields(chosen)}
        foreign = sorted(set(settings) - takes)
        if foreign:
            raise ClcaDeployError(f"{spec.name} takes no option {', '.join(foreign)}; it takes {', '.join(sorted(takes))}.")
        chosen = dataclasses.replace(chosen, **settings)
    return spec.backend(path, chosen)
