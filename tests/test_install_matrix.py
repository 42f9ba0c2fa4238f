"""The install matrix: the extras per CUDA major, and every pip recipe the docs give.

The -cu12 and -cu13 builds of NVIDIA's wheels install the same files (cuDNN 9 for either CUDA is
nvidia/cudnn/lib/libcudnn.so.9; cuda-python before 12.8 ships the cuda/bindings that cuda-bindings 13
installs), and pip overwrites such files without a word. So each recipe must resolve to one CUDA major
with no file written by two distributions, and extras of two majors must not resolve together at all.

Offline (CI included): pyproject.toml's extras against clca_deploy.extras.CUDA_MAJORS, and each recipe
against the docs that give it. Online: `pip install --dry-run --report` of each recipe against the
package index ($CLCA_DEPLOY_TEST_INDEX_URL, else $PIP_INDEX_URL, else PyPI), from a throwaway venv with the
newest pip; no local pip configuration applies. Each installed wheel's file list is read from its zip
directory with HTTP range requests (a few kB per wheel). They run when CLCA_DEPLOY_NETWORK_TESTS=1 (about
three minutes; a new release on the index can change their answer, so the default suite stays
deterministic without them) and skip when the index is unreachable.

TensorRT's libraries are wheels on pypi.nvidia.com; PyPI holds stub sdists for them that download the
real wheel to learn its metadata. Where pypi.nvidia.com is unreachable, each stub is replaced by a local
metadata-only wheel carrying the dependencies its PyPI sdist states (the newest release whose sdist states
them, STAND_IN, to which TensorRT is then pinned); their own files are then not checked, only everything
else's.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest

from clca_deploy.extras import CUDA_MAJORS
from tests.conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
PYPI = "https://pypi.org/simple"
NVIDIA_INDEX = "https://pypi.nvidia.com"
JETSON_INDEX = "https://pypi.jetson-ai-lab.io/jp6/cu126"
STAND_IN = "10.14.1.48.post1"
# This checkout (`.`), or a wheel built from it, with or without extras: what every line installs clca-deploy from.
_LOCAL = re.compile(r"(?:\.|(?:\S*/)?clca_deploy-[^/\s\[]+\.whl)(?P<extras>\[[^\]]*\])?")
# The wheels JetPack 6 (Ubuntu 22.04, glibc 2.35, aarch64) takes; pip does not widen one manylinux tag to
# the older ones, and NVIDIA's Jetson wheels are plain linux_aarch64.
JETPACK_6_TAGS = tuple(
    option for tag in ("linux", "manylinux2014", "manylinux_2_28", "manylinux_2_34", "manylinux_2_35")
    for option in ("--platform", f"{tag}_aarch64")
)


@dataclass(frozen=True)
class Recipe:
    """One documented install: its `pip install` lines as the docs print them, the pages that print them,
    the CUDA major it must come to, and where it can be resolved."""

    name: str
    lines: tuple[str, ...]
    pages: tuple[str, ...]
    major: int
    python: tuple[int, int] = (3, 10)  # the oldest Python the recipe's wheels exist for
    index: str | None = None  # an index the recipe names (NVIDIA's Jetson wheels)
    platform: tuple[str, ...] = ()  # pip's options for another machine's wheels


RECIPES = (
    Recipe("cuda13", ('pip install ".[gpu-cu13,trt-cu13]"',), ("install.md", "gpu-server.md"), 13, (3, 11)),
    Recipe("cuda13-export", ('pip install ".[gpu-cu13,trt-cu13,export]" "torch>=2.11"',), ("gpu-server.md",), 13,
           (3, 11)),
    Recipe("cuda12", ('pip install ".[gpu-cu12,trt-cu12]"',), ("install.md", "gpu-server.md"), 12),
    Recipe("cuda12-export", ('pip install ".[gpu-cu12,trt-cu12,export]" "torch>=2.7,<2.11"',),
           ("gpu-server.md",), 12),
    Recipe(
        "jetson",
        (f"pip install onnxruntime-gpu --index-url {JETSON_INDEX}", 'pip install ".[gpu]" "numpy<2"',
         f'pip install "{CUDA_MAJORS[12].bindings}"'),
        ("jetson.md",), 12, index=JETSON_INDEX,
        platform=(*JETPACK_6_TAGS, "--python-version", "3.10", "--only-binary", ":all:"),
    ),
)


def extras() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


# ---------------------------------------------------------------- offline: the extras and the docs


@pytest.mark.parametrize("major", sorted(CUDA_MAJORS))
def test_each_cuda_extra_is_what_extras_py_says(major):
    cuda, defined = CUDA_MAJORS[major], extras()
    assert defined[cuda.gpu] == [cuda.onnxruntime, cuda.bindings]
    assert defined[cuda.trt] == [cuda.tensorrt, cuda.bindings, "nvidia-ml-py>=12"]
    assert f"cu{major}" in cuda.gpu and f"cu{major}" in cuda.trt and f"-cu{major}" in cuda.tensorrt


def test_trt_is_the_cuda_13_extra_as_pypis_bare_tensorrt_is():
    assert extras()["trt"] == [f"clca-deploy[{CUDA_MAJORS[13].trt}]"]


def test_extras_of_two_cuda_majors_cannot_be_installed_together():
    """Each major's cuda-bindings pin admits that major's releases only, so pip finds no common version."""
    from packaging.specifiers import SpecifierSet

    releases = ("11.8.7", "12.8.0", "12.9.10", "13.0.0", "13.5.0", "14.0.0")
    admitted = {
        major: {release for release in releases if SpecifierSet(cuda.bindings.split("cuda-bindings", 1)[1]).contains(release)}
        for major, cuda in CUDA_MAJORS.items()
    }
    assert admitted == {12: {"12.8.0", "12.9.10"}, 13: {"13.0.0", "13.5.0"}}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda recipe: recipe.name)
def test_each_recipe_is_in_the_docs_that_give_it(recipe):
    for page in recipe.pages:
        text = (DOCS / page).read_text()
        missing = [line for line in recipe.lines if line not in text]
        assert not missing, f"docs/{page} no longer gives {missing}: update RECIPES with the page"


def test_install_md_describes_every_extra():
    text = (DOCS / "install.md").read_text()
    assert [extra for extra in extras() if f"| `{extra}` |" not in text] == []


# ---------------------------------------------------------------- online: what pip would install


def _index() -> str:
    return (os.environ.get("CLCA_DEPLOY_TEST_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or PYPI).rstrip("/")


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except (OSError, ValueError):
        return False


def _pip_env() -> dict[str, str]:
    """No PIP_* setting and no pip configuration file of this machine (local wheels, caps, extra indexes)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_") or key == "PIP_CERT"}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=_pip_env(), timeout=timeout)


def _stand_in_wheel(index: str, major: int, folder: Path) -> None:
    """A metadata-only wheel of tensorrt_cu<major>_libs==STAND_IN with the dependencies its sdist states."""
    name = f"tensorrt_cu{major}_libs"
    page_url = f"{index}/tensorrt-cu{major}-libs/"
    page = urllib.request.urlopen(page_url, timeout=30).read().decode()
    link = re.search(rf'href="([^"#]*{name}-{re.escape(STAND_IN)}\.tar\.gz)', page)
    assert link, f"the index has no {name}-{STAND_IN}.tar.gz"
    data = urllib.request.urlopen(urllib.parse.urljoin(page_url, link.group(1)), timeout=60).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as sdist:
        info = min((m for m in sdist.getmembers() if m.name.rsplit("/", 1)[-1] == "PKG-INFO"), key=lambda m: len(m.name))
        requires = Parser().parsestr(sdist.extractfile(info).read().decode()).get_all("Requires-Dist") or []
    assert requires, f"{name} {STAND_IN}'s sdist states no dependencies: choose another STAND_IN"
    dist_info = f"{name}-{STAND_IN}.dist-info"
    files = {
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {STAND_IN}\n"
        + "".join(f"Requires-Dist: {line}\n" for line in requires),
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: clca-deploy tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/RECORD": "",
    }
    with zipfile.ZipFile(folder / f"{name}-{STAND_IN}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


@dataclass
class Resolver:
    """pip --dry-run --report from a throwaway venv, against one index, for the project's own wheel."""

    pip: Path
    index: str
    project_wheel: Path
    trt_args: tuple[str, ...]  # pypi.nvidia.com, or the stand-ins and the pins to them
    folder: Path

    def requirements(self, line: str) -> list[str]:
        """The requirements of one documented `pip install` line, the checkout (`.[extras]`) as its wheel."""
        words = shlex.split(line)[2:]
        words = words[: words.index("--index-url")] if "--index-url" in words else words
        return [f"clca-deploy{local.group('extras') or ''} @ {self.project_wheel.as_uri()}"
                if (local := _LOCAL.fullmatch(word)) else word for word in words]

    def resolve(self, requirements: list[str], *options: str) -> tuple[subprocess.CompletedProcess, dict | None]:
        report = self.folder / "report.json"
        report.unlink(missing_ok=True)
        args = [str(self.pip), "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
                "--use-feature=fast-deps", "--index-url", self.index, *self.trt_args, *options, *requirements]
        done = _run(args)
        return done, (json.loads(report.read_text()) if done.returncode == 0 else None)


def _project_wheel(pip: Path, index: str, folder: Path) -> Path:
    """clca-deploy's wheel from this checkout's pyproject.toml alone: its metadata is all a resolution reads,
    and nothing is built inside the checkout."""
    source = folder / "project"
    (source / "clca_deploy").mkdir(parents=True)
    (source / "clca_deploy" / "__init__.py").write_text("")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    done = _run([str(pip), "wheel", "--quiet", "--no-deps", "--index-url", index, "-w", str(folder), str(source)])
    assert done.returncode == 0, done.stderr[-3000:]
    return next(folder.glob("clca_deploy-*.whl"))


@pytest.fixture(scope="module")
def resolver(tmp_path_factory) -> Resolver:
    if os.environ.get("CLCA_DEPLOY_NETWORK_TESTS") != "1":
        pytest.skip("resolution against the real index: set CLCA_DEPLOY_NETWORK_TESTS=1 to run it")
    index = _index()
    if not _reachable(f"{index}/pip/"):
        pytest.skip(f"the package index {index} is not reachable (offline)")
    folder = tmp_path_factory.mktemp("install_matrix")
    subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
    pip = folder / "venv" / "bin" / "pip"
    upgrade = _run([str(pip), "install", "--quiet", "--upgrade", "--index-url", index, "pip"])
    assert upgrade.returncode == 0, upgrade.stderr[-3000:]  # lazy wheel metadata needs a recent pip
    if _reachable(f"{NVIDIA_INDEX}/tensorrt-cu13-libs/"):
        trt_args: tuple[str, ...] = ("--extra-index-url", NVIDIA_INDEX)
    else:
        stand_ins = folder / "stand_ins"
        stand_ins.mkdir()
        pins = folder / "pins.txt"
        pins.write_text("".join(f"tensorrt-cu{major}=={STAND_IN}\n" for major in CUDA_MAJORS))
        for major in CUDA_MAJORS:
            _stand_in_wheel(index, major, stand_ins)
        trt_args = ("--find-links", str(stand_ins), "--constraint", str(pins))
    return Resolver(pip, index, _project_wheel(pip, index, folder), trt_args, folder)


def _wheel_files(url: str) -> dict[str, tuple[int, int]] | None:
    """{path: (crc32, size)} of the files a wheel installs (its .dist-info aside), from the zip's central
    directory read with HTTP range requests; None for an sdist or a local file."""
    if not url.startswith("http") or not urllib.parse.urlparse(url).path.endswith(".whl"):
        return None
    with zipfile.ZipFile(io.BufferedReader(_RangeReader(url), 1 << 16)) as wheel:
        return {info.filename: (info.CRC, info.file_size) for info in wheel.infolist()
                if not info.is_dir() and ".dist-info/" not in info.filename}


class _RangeReader(io.RawIOBase):
    """A remote file read in pieces with HTTP Range requests."""

    def __init__(self, url: str):
        self.url, self.position = url, 0
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60) as response:
            self.size = int(response.headers["Content-Length"])

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = (0, self.position, self.size)[whence] + offset
        return self.position

    def readinto(self, buffer) -> int:
        end = min(self.size, self.position + len(buffer)) - 1
        if end < self.position:
            return 0
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.position}-{end}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            if response.status != 206:
                pytest.skip(f"{urllib.parse.urlparse(self.url).netloc} does not serve byte ranges")
            data = response.read()
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


@dataclass(frozen=True)
class Installed:
    """What one resolution would install, and what it implies."""

    versions: dict[str, str]  # normalized name -> version
    clashes: dict[str, list[str]]  # a path two distributions write with different contents -> them
    unlisted: list[str]  # distributions whose files are not known (sdists, local stand-ins)

    @property
    def cuda_majors(self) -> set[int]:
        """The CUDA majors the installed NVIDIA CUDA distributions are built for."""
        majors = set()
        for name, version in self.versions.items():
            suffix = re.search(r"-cu(\d+)(?:-|$)", name)
            if suffix:
                majors.add(int(suffix.group(1)))
            elif name in ("cuda-toolkit", "cuda-bindings", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc"):
                majors.add(int(version.split(".")[0]))  # these carry the CUDA version itself
        return majors


def installed(report: dict) -> Installed:
    items = [(re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(), item["metadata"]["version"],
              item["download_info"]["url"]) for item in report["install"]]
    with ThreadPoolExecutor(8) as pool:
        listings = list(pool.map(lambda item: _wheel_files(item[2]), items))
    owners: dict[str, dict[str, tuple[int, int]]] = {}
    for (name, _, _), files in zip(items, listings):
        for path, content in (files or {}).items():
            owners.setdefault(path, {})[name] = content
    clashes = {path: sorted(by) for path, by in owners.items() if len(set(by.values())) > 1}
    unlisted = [name for (name, _, _), files in zip(items, listings) if files is None]
    return Installed({name: version for name, version, _ in items}, clashes, unlisted)


def _describe(found: Installed) -> str:
    pairs = sorted({" + ".join(owners) for owners in found.clashes.values()})
    return f"clashing distributions {pairs}; CUDA majors {sorted(found.cuda_majors)}; files unknown for {found.unlisted}"


def _require_python(recipe: Recipe) -> None:
    if not recipe.platform and sys.version_info[:2] < recipe.python:
        pytest.skip(f"{recipe.name} installs wheels for Python {'.'.join(map(str, recipe.python))} or newer")


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda recipe: recipe.name)
def test_each_recipe_resolves_to_one_cuda_major_and_writes_no_file_twice(resolver, recipe):
    _require_python(recipe)
    options = recipe.platform
    if recipe.index:
        if not _reachable(f"{recipe.index}/onnxruntime-gpu/"):  # [gpu] needs the wheel only that index has
            pytest.skip(f"{recipe.index} is not reachable")
        options += ("--extra-index-url", recipe.index)
    done, report = resolver.resolve([req for line in recipe.lines for req in resolver.requirements(line)], *options)
    assert done.returncode == 0, done.stderr[-4000:]
    found = installed(report)
    assert found.clashes == {} and found.cuda_majors == {recipe.major}, _describe(found)
    legacy = found.versions.get("cuda-python", "99")
    assert "cuda-bindings" not in found.versions or tuple(map(int, legacy.split(".")[:2])) >= (12, 8), found.versions


@pytest.mark.slow
def test_the_old_pins_beside_a_cuda_13_torch_overwrite_files_and_the_check_sees_it(resolver):
    """The specs this matrix replaces, beside torch 2.11 (CUDA 13 on PyPI): pip resolves cuda-python
    12.6.2.post1 over cuda-bindings 13 and cuDNN for CUDA 12 over cuDNN for CUDA 13, and reports nothing."""
    old = ["cuda-python>=12.6.2,<13", "onnxruntime-gpu[cuda,cudnn]>=1.21,<1.27", "torch==2.11.0"]
    done, report = resolver.resolve(old)
    assert done.returncode == 0, done.stderr[-4000:]
    found = installed(report)
    pairs = {tuple(owners) for owners in found.clashes.values()}
    assert ("cuda-bindings", "cuda-python") in pairs and ("nvidia-cudnn-cu12", "nvidia-cudnn-cu13") in pairs, _describe(found)
    assert found.versions["cuda-python"] == "12.6.2.post1" and found.cuda_majors == {12, 13}


@pytest.mark.slow
@pytest.mark.parametrize("requirements", [
    [".[trt-cu12]", "torch==2.11.0"],
    [".[gpu-cu12]", "torch==2.11.0"],
    [".[gpu-cu12,trt-cu13]"],
    [".[trt,trt-cu12]"],
], ids=" ".join)
def test_two_cuda_majors_do_not_resolve_together(resolver, requirements):
    done, _ = resolver.resolve(resolver.requirements("pip install " + shlex.join(requirements)))
    assert done.returncode != 0 and "ResolutionImpossible" in done.stderr, done.stderr[-4000:]
