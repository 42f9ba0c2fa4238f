"""`clca-deploy triton-repo`: a Triton model repository for an exported model, written atomically.

The repository is complete on its own: the Python models carry a copy of the few clca-deploy
modules they run (image decoding, eval preprocessing, scoring), so a stock Triton container
serves it with numpy and pillow and nothing of this project installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from clca_deploy import __version__
from clca_deploy.artifacts import atomic_folder, check_writable_folder, refuse_unsafe_output
from clca_deploy.errors import ClcaDeployError
from clca_deploy.serving.pbtxt import to_pbtxt
from clca_deploy.serving.spec import ClassifierSpec, read_classifier_spec
from clca_deploy.serving.triton_config import (
    LABELS_FILE,
    ModelNames,
    ServedRuntime,
    TritonRepoConfig,
    classifier_config,
    ensemble_config,
    postprocess_config,
    preprocess_config,
    resolve_max_batch,
    served_runtime,
    top_k_for,
)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# The clca_deploy modules each Python model runs, copied beside its model.py (package-relative paths).
PREPROCESS_MODULES = ("errors.py", "data/images.py", "data/preprocess.py", "serving/replies.py")
POSTPROCESS_MODULES = ("runtime/scores.py", "serving/replies.py")
# In every repository this tool writes: `--overwrite` replaces only folders holding it. Triton reads
# only the model subfolders of a repository, so a file at its top is ignored there.
REPOSITORY_MARKER = ".clca-deploy-triton-repo"


@dataclass(frozen=True)
class TritonRepository:
    """What was written: the repository, the model clients call, and how it batches."""

    path: str
    model: str  # the ensemble: encoded image in, top-k classes out
    models: tuple[str, ...]
    classifier_format: str  # what Triton loads (onnx, plan: TritonClassifier.format), or runtime (`serve`'s Python model)
    max_batch: int
    top_k: int
    input_size: int
    classes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RepositoryPlan:
    """What a repository is written from, read and checked before any work: the model file's spec, the runtime
    that runs it and where, the batch Triton may form, the models' names."""

    spec: ClassifierSpec
    served: ServedRuntime
    config: TritonRepoConfig
    max_batch: int
    names: ModelNames

    def placed(self, gpu: int | None) -> "RepositoryPlan":
        """The same plan with the classifier's instances on CUDA device ``gpu`` (None: the CPU)."""
        return replace(self, served=self.served.placed(gpu))


def plan_triton_repository(model_path: str | Path, config: TritonRepoConfig = TritonRepoConfig(),
                           runtime_classifier: bool = False) -> RepositoryPlan:
    """Read ``model_path`` once and refuse, before anything is written or loaded, what Triton could not serve."""
    spec = read_classifier_spec(model_path)  # a checkpoint or a damaged file is refused here
    served = served_runtime(model_path, config, stock_triton=not runtime_classifier)
    spec.info.refuse_other_runtime(served.spec.name, str(model_path))
    if served.triton is not None:
        _check_packable(spec)
    max_batch = resolve_max_batch(spec, config.max_batch)  # an engine whose batches start above 1 is refused here
    return RepositoryPlan(spec, served, config, max_batch, ModelNames.for_name(config.name))


def write_triton_repository(
    model_path: str | Path, output: str | Path, config: TritonRepoConfig = TritonRepoConfig(),
    overwrite: bool = False, runtime_classifier: bool = False,
) -> TritonRepository:
    """Write ``output`` as a Triton model repository serving ``model_path`` (.onnx or .engine).

    ``runtime_classifier`` makes the classifier a Python-backend model that runs the file with this
    tool's runtime, in place (what `serve` uses where Triton has no onnxruntime/tensorrt backend).
    """
    return write_planned_repository(plan_triton_repository(model_path, config, runtime_classifier), output, overwrite)


def write_planned_repository(plan: RepositoryPlan, output: str | Path, overwrite: bool = False) -> TritonRepository:
    """Write ``output`` as the repository ``plan`` describes, atomically."""
    spec, served, config = plan.spec, plan.served, plan.config
    output = Path(output)
    _check_destination(output, overwrite, spec.path)
    with atomic_folder(output) as staging:
        _write_models(staging, spec, plan.names, served, config, plan.max_batch)
        (staging / REPOSITORY_MARKER).write_text(
            f"A Triton model repository written by clca-deploy {__version__} from {spec.path.name}.\n"
            "`clca-deploy triton-repo --overwrite` replaces only folders holding this file.\n",
            encoding="utf-8",
        )
    names = plan.names
    return TritonRepository(
        path=str(output),
        model=names.ensemble,
        models=(names.ensemble, names.preprocess, names.classifier, names.postprocess),
        classifier_format=served.triton.format if served.triton else "runtime",
        max_batch=plan.max_batch,
        top_k=top_k_for(spec, config),
        input_size=spec.info.img_size,
        classes=spec.num_classes,
    )


def _write_models(root: Path, spec: ClassifierSpec, names: ModelNames, served: ServedRuntime, config: TritonRepoConfig,
                  max_batch: int) -> None:
    write = _writer(root)
    write(f"{names.ensemble}/config.pbtxt", to_pbtxt(ensemble_config(spec, names, config, max_batch)))
    (root / names.ensemble / "1").mkdir()  # Triton wants a version folder even for an ensemble

    write(f"{names.preprocess}/config.pbtxt", to_pbtxt(preprocess_config(spec, names, config, max_batch)))
    write(f"{names.preprocess}/1/model.py", _model_source("preprocess.py"))
    _copy_modules(root / names.preprocess / "1", PREPROCESS_MODULES)

    classifier = classifier_config(spec, names, served, config, max_batch)
    write(f"{names.classifier}/config.pbtxt", to_pbtxt(classifier))
    write(f"{names.classifier}/{LABELS_FILE}", "".join(f"{name}\n" for name in _label_lines(spec)))
    if served.triton is None:
        write(f"{names.classifier}/1/model.py", _model_source("classifier.py"))
    else:
        target = root / names.classifier / "1" / served.triton.model_file
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_model_file(spec, target)
        companions = served.triton.companions(spec.path) if served.triton.companions else {}
        for name, source in companions.items():
            shutil.copyfile(source, root / names.classifier / name)

    write(f"{names.postprocess}/config.pbtxt", to_pbtxt(postprocess_config(spec, names, config, max_batch)))
    write(f"{names.postprocess}/1/model.py", _model_source("postprocess.py"))
    _copy_modules(root / names.postprocess / "1", POSTPROCESS_MODULES)


def _check_packable(spec: ClassifierSpec) -> None:
    """Refuse, before any file is written, a model the repository could not hold whole."""
    if spec.external_data:
        shown = ", ".join(repr(location) for location in spec.external_data[:3])
        raise ClcaDeployError(
            f"{spec.path.name} keeps weights in external data files ({shown}{', ...' if len(spec.external_data) > 3 else ''}), "
            "which a repository of the model file alone could not load; export it again (`clca-deploy export` "
            "writes self-contained files)."
        )


def _copy_model_file(spec: ClassifierSpec, target: Path) -> None:
    """Copy the model file into the repository; an engine's bytes must have the hash its sidecar records.

    The hash is taken from the very bytes written, so what the repository holds is what was checked, even
    if the file changes meanwhile; a mismatch fails the write and the staging folder goes with it."""
    if spec.sha256 is None:
        shutil.copyfile(spec.path, target)
        return
    digest = hashlib.sha256()
    with open(spec.path, "rb") as source, open(target, "wb") as copy:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            copy.write(chunk)
    if digest.hexdigest() != spec.sha256:
        raise ClcaDeployError(
            f"{spec.path.name} does not match its sidecar (its SHA-256 differs from the engine_sha256 recorded: another "
            "build, or an interrupted copy); rebuild the engine with `clca-deploy build-trt`."
        )


def _writer(root: Path) -> Callable[[str, str], None]:
    def write(relative: str, text: str) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    return write


def _label_lines(spec: ClassifierSpec) -> list[str]:
    # One name per line is Triton's label-file format, so a name may not span lines.
    return [" ".join(name.split()) for name in spec.class_names]


def _model_source(name: str) -> str:
    return resources.files("clca_deploy.serving.triton_models").joinpath(name).read_text(encoding="utf-8")


def _copy_modules(version_dir: Path, modules: tuple[str, ...]) -> None:
    """Copy clca_deploy modules beside a model.py, under package files that import nothing."""
    package = version_dir / "clca_deploy"
    note = f'"""Modules of clca-deploy {__version__} copied for this Triton model."""\n'
    for module in modules:
        target = package / module
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGE_ROOT / module, target)
        folder = target.parent
        while True:
            init = folder / "__init__.py"
            if not init.exists():
                init.write_text(note + (f'__version__ = "{__version__}"\n' if folder == package else ""))
            if folder == package:
                break
            folder = folder.parent


def _check_destination(output: Path, overwrite: bool, model_path: Path) -> None:
    """Everything refused before a file is written: replacing a folder deletes all it holds, so only a
    repository this tool wrote (it holds REPOSITORY_MARKER) is ever replaced, and never one holding the
    model or the current folder."""
    refuse_unsafe_output(output, folder=True)  # a file, FIFO or link there is refused, never replaced
    absolute = Path(os.path.abspath(output))
    target = absolute.resolve()
    if Path.cwd().resolve().is_relative_to(target):
        raise ClcaDeployError(f"{output} is the current folder or holds it; give a new folder for the model repository.")
    if model_path.resolve().is_relative_to(target):
        raise ClcaDeployError(
            f"{output} holds the input model {model_path}; replacing it would delete that model. Give a new folder."
        )
    check_writable_folder(absolute.parent, "folder")  # the new repository is staged there
    if not output.is_dir() or not any(output.iterdir()):
        return
    if not (output / REPOSITORY_MARKER).is_file():
        raise ClcaDeployError(
            f"{output} is not empty and has no {REPOSITORY_MARKER} file, so it is not a repository clca-deploy "
            "wrote; --overwrite replaces only those. Choose a new folder (or empty this one yourself)."
        )
    if not overwrite:
        raise ClcaDeployError(f"{output} is not empty; choose a new folder, or pass --overwrite to replace it.")
