"""docs/ stays consistent with itself, the README and the CLI: every page is reachable from the
README, every relative link and anchor resolves, and every command and option the pages show
exists in `clca-deploy`."""

import re
from pathlib import Path

import pytest

from .test_readme import DOCS, README, ROOT, _LINK, cli_options, code_segments, doc_files, mentioned_options

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_COMMAND = re.compile(r"(?<![\w-])clca-deploy\s+([a-z][\w-]*)")


def cli_commands() -> set[str]:
    import typer

    from clca_deploy.cli import app

    return set(typer.main.get_command(app).commands)


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `# comment` in a bash block is no heading)."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if line.strip().startswith(("```", "~~~")):
            in_fence = not in_fence
        elif not in_fence:
            lines.append(line)
    return lines


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text()):
        match = _HEADING.match(line)
        if not match:
            continue
        anchor = github_anchor(match.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def test_readme_links_every_docs_page():
    linked = {(ROOT / target.split("#", 1)[0]).resolve() for target in _LINK.findall(README.read_text())}
    pages = sorted(DOCS.glob("*.md"))
    assert pages, "docs/ has no pages"
    unlinked = [page.name for page in pages if page.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_relative_links_and_anchors_resolve():
    broken = []
    for path in doc_files():
        for target in _LINK.findall("\n".join(prose_lines(path.read_text()))):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT).as_posix()} -> {target}"
            if not linked.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{where} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_command_the_docs_show_exists():
    real = cli_commands()
    unknown = {}
    for path in doc_files():
        named = {match.group(1) for segment in code_segments(path.read_text()) for match in _COMMAND.finditer(segment)}
        if named - real:
            unknown[path.relative_to(ROOT).as_posix()] = sorted(named - real)
    assert not unknown, f"commands named in the docs but missing from `clca-deploy --help`: {unknown}"


@pytest.mark.parametrize("command", sorted(cli_commands()))
def test_options_the_docs_show_exist(command):
    real = cli_options(command)
    unknown = {}
    for path in doc_files():
        extra = mentioned_options(path.read_text(), command, bare=(command == "build-trt")) - real
        if extra:
            unknown[path.relative_to(ROOT).as_posix()] = sorted(extra)
    assert not unknown, f"`clca-deploy {command}` options named in the docs but missing from its --help: {unknown}"


def test_github_anchor_rules():
    assert github_anchor("Triton load test (`clca-deploy serve`, CPU, loopback)") == (
        "triton-load-test-clca-deploy-serve-cpu-loopback"
    )
    assert github_anchor("`clca-deploy doctor`") == "clca-deploy-doctor"
    assert github_anchor("GPUs, TensorRT and CUDA bindings") == "gpus-tensorrt-and-cuda-bindings"
