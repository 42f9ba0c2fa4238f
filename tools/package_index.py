"""Downloads from a Python package index for tools/binding_names.py, cached on disk and checked by hash.

The index is ``--index-url`` or ``$CLCA_DEPLOY_TEST_INDEX_URL`` or ``$PIP_INDEX_URL`` or
https://pypi.org/simple (PEP 691 JSON or PEP 503 HTML); the cache is ``--cache`` or
``$CLCA_DEPLOY_TEST_WHEELS`` or ``~/.cache/clca-deploy-test-wheels`` (``$XDG_CACHE_HOME`` honoured).
A file is downloaded once per machine into ``<cache>/<project>/<version>/``, beside a ``SOURCE`` file
(its name on the index, its URL and sha256); a download whose sha256 differs from the index's is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import platform
import re
import socket
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

TIMEOUT_S = 60  # per HTTP request; a wheel is at most ~8 MB
_USER_AGENT = "clca-deploy-tools (binding name extraction)"
DEFAULT_INDEX_URL = "https://pypi.org/simple"


class RegistryUnreachable(Exception):
    """The package index or file host did not answer (network down, DNS, timeout, 5xx)."""


class NoMatchingFile(Exception):
    """The release exists but has no file this machine can use (other Python, other platform)."""


@dataclass(frozen=True)
class Index:
    """Where packages come from (``url``, a simple index) and where they are kept (``cache``)."""

    url: str
    cache: Path

    @classmethod
    def from_environment(cls, url: str | None = None, cache: str | os.PathLike | None = None) -> "Index":
        """The given values, else the environment's (see the module docstring)."""
        url = url or os.environ.get("CLCA_DEPLOY_TEST_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX_URL
        return cls(url.rstrip("/"), Path(cache).expanduser() if cache else default_cache_dir())


def default_cache_dir() -> Path:
    explicit = os.environ.get("CLCA_DEPLOY_TEST_WHEELS")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clca-deploy-test-wheels"


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------------
# the index


def http_get(url: str, accept: str | None = None) -> tuple[bytes, str]:
    headers = {"User-Agent": _USER_AGENT}
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        if error.code >= 500 or error.code in (407, 408, 429):
            raise RegistryUnreachable(f"{url}: HTTP {error.code}") from error
        raise
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as error:
        raise RegistryUnreachable(f"{url}: {error}") from error


def index_files(index: Index, project: str) -> list[dict]:
    """``[{filename, url, sha256}]`` of ``project`` on the index (PEP 691 JSON, else PEP 503 HTML)."""
    url = f"{index.url}/{project}/"
    body, content_type = http_get(url, accept="application/vnd.pypi.simple.v1+json, text/html;q=0.1")
    if "json" in content_type:
        return [
            {
                "filename": entry["filename"],
                "url": urllib.parse.urljoin(url, entry["url"]),
                "sha256": entry.get("hashes", {}).get("sha256"),
            }
            for entry in json.loads(body)["files"]
        ]
    files = []
    for href, text in re.findall(r'<a\s[^>]*href="([^"]+)"[^>]*>([^<]+)</a>', body.decode("utf-8", "replace")):
        target, _, fragment = html.unescape(href).partition("#")
        sha = fragment[len("sha256=") :] if fragment.startswith("sha256=") else None
        files.append({"filename": text.strip(), "url": urllib.parse.urljoin(url, target), "sha256": sha})
    return files


# --------------------------------------------------------------------------------------------------
# choosing the file


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def interpreter_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def wheel_cache_name() -> str:
    """The name a wheel is cached under: one per interpreter and machine, whatever its tags."""
    return f"{interpreter_tag()}-linux_{platform.machine().lower()}.whl"


def select_wheel(project: str, version: str, files: list[dict]) -> dict:
    """The Linux wheel of ``version`` that this interpreter can import."""
    prefix = f"{normalize(project)}-{version}-"
    release = [f for f in files if f["filename"].endswith(".whl") and _normalize_wheel(f["filename"]).startswith(prefix)]
    if not release:
        raise FileNotFoundError(f"{project}=={version} has no wheel on the index")
    machine = platform.machine().lower()
    wanted = interpreter_tag()
    for entry in release:
        parts = entry["filename"][: -len(".whl")].split("-")
        python_tags, abi_tags, platform_tags = parts[-3].split("."), parts[-2].split("."), parts[-1].split(".")
        if wanted not in python_tags or not ({wanted, "none", "abi3"} & set(abi_tags)):
            continue
        linux = [tag for tag in platform_tags if tag.startswith(("manylinux", "linux")) and tag.endswith(machine)]
        if linux:
            needed = min(_glibc_needed(tag) for tag in linux)
            if needed > _glibc():
                raise NoMatchingFile(f"{entry['filename']} needs glibc {needed[0]}.{needed[1]}; this system has {_glibc()}")
            return entry
    tags = sorted({f["filename"].split("-")[-3] + "/" + f["filename"].split("-")[-1][:-4] for f in release})
    raise NoMatchingFile(f"{project}=={version} has no wheel for {wanted} on linux_{machine} (it has: {', '.join(tags)})")


def select_sdist(project: str, version: str, files: list[dict]) -> dict:
    for entry in files:
        filename = entry["filename"]
        if filename.endswith(".tar.gz") and normalize(filename[: -len(".tar.gz")]) == normalize(f"{project}-{version}"):
            return entry
    raise FileNotFoundError(f"{project}=={version} has no source distribution on the index")


def _glibc_needed(tag: str) -> tuple[int, int]:
    match = re.match(r"manylinux_(\d+)_(\d+)_", tag)
    if match:
        return int(match.group(1)), int(match.group(2))
    return {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}.get(tag.rsplit("_", 2)[0], (2, 17))


def _glibc() -> tuple[int, int]:
    version = platform.libc_ver()[1] or "0.0"
    major, minor = (version.split(".") + ["0"])[:2]
    return int(major), int(re.match(r"\d+", minor).group(0))


def _normalize_wheel(filename: str) -> str:
    name, rest = filename.split("-", 1)
    return f"{normalize(name)}-{rest}"


def require_linux(what: str, x86_64: bool = False) -> None:
    """:class:`NoMatchingFile` unless this is Linux (on x86_64 where ``x86_64``)."""
    if not sys.platform.startswith("linux"):
        raise NoMatchingFile(f"{what}: the extraction loads Linux binaries; this is {sys.platform}")
    if x86_64 and platform.machine().lower() != "x86_64":
        raise NoMatchingFile(f"{what}: the index has this package only for x86_64 Linux")


# --------------------------------------------------------------------------------------------------
# download and cache


def cached_file(index: Index, project: str, version: str, cache_name: str) -> Path | None:
    """The cached file if it was downloaded before, else None (never downloads)."""
    target = index.cache / project / version / cache_name
    return target if target.is_file() else None


def download(
    index: Index, project: str, version: str, select: Callable[[str, str, list[dict]], dict], cache_name: str
) -> Path:
    """The cached file, downloading it first if needed.

    Raises :class:`RegistryUnreachable` (no answer, nothing cached), :class:`NoMatchingFile` (no file for
    this machine), ``FileNotFoundError`` (no such release) or ``RuntimeError`` (the sha256 differs).
    """
    target = index.cache / project / version / cache_name
    if target.is_file():
        return target
    entry = select(project, version, index_files(index, project))
    data, _ = http_get(entry["url"])
    if entry["sha256"] and hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise RuntimeError(f"{entry['filename']}: sha256 does not match the index")
    write_atomically(target, data)
    (target.parent / "SOURCE").write_text(f"{entry['filename']}\n{entry['url']}\nsha256={entry['sha256']}\n")
    return target


def source_of(path: Path) -> dict:
    """``{"file", "sha256"}`` of a downloaded file: its name on the index (from the ``SOURCE`` file
    written beside it) and the sha256 of the bytes cached."""
    lines = (path.parent / "SOURCE").read_text().splitlines() if (path.parent / "SOURCE").is_file() else []
    return {"file": lines[0] if lines else path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
