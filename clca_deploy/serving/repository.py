"""`clca-deploy triton-repo`: a Triton model repository for an exported model, written atomically.

The repository is complete on its own: the Python models carry a copy of the few clca-deploy
modules they run (image decoding, eval preprocessing, scoring), so a stock Triton container
serves it with numpy and pillow and nothing of this project installed.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from clca_deploy import __version__
from clca_deploy.artifacts import atomic_folder
from clca_deploy.errors import ClcaDeployError
from clca_deploy.tensorrt.sidecar import sidecar_path
from clca_deploy.serving.pbtxt import to_pbtxt
from clca_deploy.serving.spec import ClassifierSpec, read_classifier_spec
from clca_deploy.serving.triton_config import (
    LABELS_FILE,
    ModelNames,
    TritonRepoConfig,
    classifier_config,
    ensemble_config,
    postprocess_config,
    preprocess_config,
    resolve_max_batch,
    top_k_for,
)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# The clca_deploy modules each Python model runs, copied beside its model.py (package-relative paths).
PREPROCESS_MODULES = ("errors.py", "data/images.py", "data/preprocess.py")
POSTPROCESS_MODULES = ("runtime/scores.py",)


@dataclass(frozen=True)
class TritonRepository:
    """What was written: the repository, the model clients call, and how it batches."""

    path: str
    model: str  # the ensemble: encoded image in, top-k classes out
    models: tuple[str, ...]
    classifier_format: str  # onnx, plan, or runtime (the Python-backend classifier of `serve`)
    max_batch: int
    top_k: int
    input_size: int
    classes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_triton_repository(
    model_path: str | Path, output: str | Path, config: TritonRepoConfig = TritonRepoConfig(),
    overwrite: bool = False, runtime_classifier: bool = False,
) -> TritonRepository:
    """Write ``output`` as a Triton model repository serving ``model_path`` (.onnx or .engine).

    ``runtime_classifier`` makes the classifier a Python-backend model that runs the file with this
    tool's runtime, in place (what `serve` uses where Triton has no onnxruntime/tensorrt backend).
    """
    spec = read_classifier_spec(model_path)
    output = Path(output)
    _check_destination(output, overwrite)
    max_batch = resolve_max_batch(spec, config.max_batch)
    names = ModelNames.for_name(config.name)
    with atomic_folder(output) as staging:
        _write_models(staging, spec, names, config, max_batch, runtime_classifier)
    return TritonRepository(
        path=str(output),
        model=names.ensemble,
        models=(names.ensemble, names.preprocess, names.classifier, names.postprocess),
        classifier_format="runtime" if runtime_classifier else spec.format,
        max_batch=max_batch,
        top_k=top_k_for(spec, config),
        input_size=spec.info.img_size,
        classes=spec.num_classes,
    )


def _write_models(root: Path, spec: ClassifierSpec, names: ModelNames, config: TritonRepoConfig, max_batch: int,
                  runtime_classifier: bool) -> None:
    write = _writer(root)
    write(f"{names.ensemble}/config.pbtxt", to_pbtxt(ensemble_config(spec, names, config, max_batch)))
    (root / names.ensemble / "1").mkdir()  # Triton wants a version folder even for an ensemble

    write(f"{names.preprocess}/config.pbtxt", to_pbtxt(preprocess_config(spec, names, config, max_batch)))
    write(f"{names.preprocess}/1/model.py", _model_source("preprocess.py"))
    _copy_modules(root / names.preprocess / "1", PREPROCESS_MODULES)

    runtime_model = str(spec.path.resolve()) if runtime_classifier else None
    write(f"{names.classifier}/config.pbtxt", to_pbtxt(classifier_config(spec, names, config, max_batch, runtime_model)))
    write(f"{names.classifier}/{LABELS_FILE}", "".join(f"{name}\n" for name in _label_lines(spec)))
    if runtime_classifier:
        write(f"{names.classifier}/1/model.py", _model_source("classifier.py"))
    else:
        target = root / names.classifier / "1" / ("model.onnx" if spec.format == "onnx" else "model.plan")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(spec.path, target)
        if spec.format == "plan":  # kept for people: which TensorRT and GPU the plan needs
            shutil.copyfile(sidecar_path(spec.path), root / names.classifier / "model.plan.json")

    write(f"{names.postprocess}/config.pbtxt", to_pbtxt(postprocess_config(spec, names, config, max_batch)))
    write(f"{names.postprocess}/1/model.py", _model_source("postprocess.py"))
    _copy_modules(root / names.postprocess / "1", POSTPROCESS_MODULES)


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


def _check_destination(output: Path, overwrite: bool) -> None:
    if not output.parent.is_dir():
        raise ClcaDeployError(f"folder {output.parent} does not exist; create it first (mkdir -p {output.parent}).")
    if output.exists() and not output.is_dir():
        raise ClcaDeployError(f"{output} is a file; give a folder for the model repository.")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ClcaDeployError(f"{output} is not empty; choose a new folder, or pass --overwrite to replace it.")
