"""Every `pip install` line of README.md and docs/: none fetches clca-deploy from a package index (it is not
on PyPI: a name there would install whatever someone else published under it), each installs this checkout
(`.`, `".[cpu]"`) or a wheel built from it with extras that exist, and what a line takes from an index exists
there (`pip install --dry-run --no-deps`, online: CLCA_DEPLOY_NETWORK_TESTS=1, about 45 s; .ci/run runs it).
The CUDA recipes' whole resolutions are tests/test_install_matrix.py's."""

from __future__ import annotations

import os
import re
import shlex
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.test_install_matrix import _LOCAL, DOCS, REPO_ROOT, _index, _reachable, _run, extras
from tests.test_readme import code_segments

PAGES = (REPO_ROOT / "README.md", *sorted(DOCS.glob("*.md")))
_PLACEHOLDER = re.compile(r"\.\.\.|\[[A-Z]+\]")  # "clca-deploy[...]", "[EXTRA]": a pattern, not a command
_TOOL_OUTPUT = ("error:", "warning:")  # the tool's own messages quoted in a page (it runs installed, see install.md)
_VALUED_OPTIONS = {"-i", "--index-url", "--extra-index-url", "-c", "--constraint", "-r", "--requirement", "-f",
                   "--find-links", "--platform", "--python-version", "-w", "-t", "--target"}
_PIP_INSTALL = re.compile(r"(?<![\w-])(?:python3? -m )?pip3? install\s+")


@dataclass(frozen=True)
class InstallLine:
    """One `pip install` command a page shows (in a code block or inline code), up to `&&`, `;` or a comment."""

    page: str
    text: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text)[2:]

    def option(self, name: str) -> str | None:
        words = self.words
        return words[words.index(name) + 1] if name in words[:-1] else None

    @property
    def requirements(self) -> list[str]:
        """The requirement words: options and their values dropped (`-e X` keeps X)."""
        found, words = [], iter(self.words)
        for word in words:
            if word in _VALUED_OPTIONS:
                next(words, None)
            elif not word.startswith("-"):
                found.append(word)
        return found

    @property
    def local(self) -> list[re.Match]:
        return [match for word in self.requirements if (match := _LOCAL.fullmatch(word))]

    @property
    def from_index(self) -> list[str]:
        return [word for word in self.requirements if not _LOCAL.fullmatch(word)]


def install_lines(pages=PAGES) -> list[InstallLine]:
    lines = []
    for path in pages:
        for segment in code_segments(path.read_text()):
            segment = segment.removeprefix("$ ")
            if segment.startswith(_TOOL_OUTPUT):
                continue
            for match in _PIP_INSTALL.finditer(segment):
                rest = re.split(r"&&|;|\s#|\|", segment[match.end():])[0].strip()
                if rest.count('"') % 2:  # the end of a quoted `bash -c "pip install ..."`
                    rest = rest.rstrip('"').strip()
                if rest.count(")") > rest.count("("):  # the end of a parenthesis: `(pip install ".[cpu]")`
                    rest = rest.rstrip(")").strip()
                line = InstallLine(path.name, "pip install " + rest)
                if not any(_PLACEHOLDER.search(word) for word in line.requirements):
                    lines.append(line)
    return lines


def test_the_scanner_reads_install_lines_the_way_pages_write_them(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Run `pip install \".[cpu]\"` or\n```bash\n$ pip install -q -e \".[dev]\" && clca-deploy demo\n"
        "pip install onnxruntime-gpu --index-url https://x.example/simple   # a comment\n"
        "docker run img bash -c \"pip install numpy pillow && tritonserver\"\n"
        "error: ... then pip install \"clca-deploy[trt-cu12]\"\n```\n"
        "Adds `pip install \"clca-deploy[EXTRA]\"`; `python -m pip install ./dist/clca_deploy-0.1.0-py3-none-any.whl[gpu]`.\n"
    )
    lines = install_lines([page])
    assert [line.text for line in lines] == [
        'pip install -q -e ".[dev]"', "pip install onnxruntime-gpu --index-url https://x.example/simple",
        "pip install numpy pillow", 'pip install ".[cpu]"', "pip install ./dist/clca_deploy-0.1.0-py3-none-any.whl[gpu]",
    ]
    assert [line.from_index for line in lines] == [[], ["onnxruntime-gpu"], ["numpy", "pillow"], [], []]
    assert [[m.group("extras") for m in line.local] for line in lines] == [["[dev]"], [], [], ["[cpu]"], ["[gpu]"]]
    assert lines[1].option("--index-url") == "https://x.example/simple"


def test_the_pages_show_install_lines():
    texts = [line.text for line in install_lines()]
    assert 'pip install -q -e ".[dev]"' in texts and 'pip install ".[gpu-cu13,trt-cu13]"' in texts, texts


def test_no_install_line_fetches_clca_deploy_from_a_package_index():
    """clca-deploy is not on PyPI: a name there would install whatever someone else published under it."""
    by_name = [f"{line.page}: {line.text}" for line in install_lines()
               if any(re.match(r"clca[-_.]deploy", word, re.I) for word in line.from_index)]
    assert by_name == [], "install from the checkout (.) or a built wheel instead"


def test_every_extra_an_install_line_names_exists():
    defined = set(extras())
    unknown = [f"{line.page}: {line.text}" for line in install_lines() for match in line.local
               if not set(filter(None, (match.group("extras") or "[]")[1:-1].split(","))) <= defined]
    assert unknown == []


def _dry_run(index: str, requirements: tuple[str, ...]) -> str | None:
    """None when ``requirements`` resolve on ``index`` (no dependencies), "unreachable", or pip's complaint."""
    project = re.split(r"[<>=!~; \[]", requirements[0])[0]
    if not _reachable(f"{index}/{project}/"):
        return "unreachable"
    # --no-build-isolation: an sdist (pycuda) reads its metadata with this venv's setuptools, in half the time
    done = _run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "--quiet",
                 "--no-build-isolation", "--index-url", index, *requirements], timeout=120)
    return None if done.returncode == 0 else done.stderr.strip()[-500:]


@pytest.mark.slow
def test_each_index_install_line_resolves():
    """What each line takes from a package index exists there (`pip install --dry-run --no-deps`: the names and
    version ranges; what the extras pull in is the matrix's business). Lines whose index is unreachable skip."""
    if os.environ.get("CLCA_DEPLOY_NETWORK_TESTS") != "1":
        pytest.skip("resolution against the real index: set CLCA_DEPLOY_NETWORK_TESTS=1 to run it")
    wanted: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for line in install_lines():
        if line.from_index:
            index = (line.option("--index-url") or line.option("-i") or _index()).rstrip("/")
            wanted.setdefault((index, tuple(line.from_index)), []).append(f"{line.page}: {line.text}")
    with ThreadPoolExecutor(6) as pool:  # pycuda alone builds its sdist's metadata for about 15 s
        answers = dict(zip(wanted, pool.map(lambda key: _dry_run(*key), wanted)))
    failed = [f"{wanted[key]}: {answer}" for key, answer in answers.items() if answer not in (None, "unreachable")]
    assert failed == [], "\n".join(failed)
    unreachable = sorted({index for (index, _), answer in answers.items() if answer == "unreachable"})
    if unreachable:  # the others were checked: a warning, not a skip that would hide them
        warnings.warn(f"not reachable, their lines unchecked: {unreachable}", stacklevel=1)
