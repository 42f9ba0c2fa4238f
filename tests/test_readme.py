"""The README stays a true quick start: CI runs its test command, it stays short, its links
resolve, and every `build-trt` option the README and docs/ name exists in the real CLI."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250

_FENCE = re.compile(r"^(```|~~~)")
_INLINE_CODE = re.compile(r"`([^`]+)`")
_OPTION = re.compile(r"(?:^|(?<=[\s\[(|]))(--?[A-Za-z][\w-]*)")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def code_segments(text: str) -> list[str]:
    """The code a Markdown text shows: each fenced-block command (with its indented
    continuation lines) and each inline code span (which may wrap), whitespace collapsed."""
    segments, prose, in_fence, command = [], [], False, None
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            in_fence = not in_fence
            if command is not None:
                segments.append(command)
            command = None
            continue
        if not in_fence:
            prose.append(line)
            continue
        if command is not None and line[:1].isspace() and line.strip():
            command += " " + line.strip()  # a wrapped command line
            continue
        if command is not None:
            segments.append(command)
        command = line.strip()
    if command is not None:
        segments.append(command)
    segments += [match.group(1) for match in _INLINE_CODE.finditer("\n".join(prose))]
    return [" ".join(segment.split()) for segment in segments]


def mentioned_options(text: str, command: str, bare: bool = False) -> set[str]:
    """Options written after `clca-deploy COMMAND` (or after a bare `COMMAND` when ``bare``) in
    the code of ``text``, up to the end of that command (`&&`, `;`, a comment, another command)."""
    prefix = r"(?:clca-deploy\s+)?" if bare else r"clca-deploy\s+"
    mention = re.compile(prefix + re.escape(command) + r"(?![\w-])")
    found = set()
    for segment in code_segments(text):
        for match in mention.finditer(segment):
            rest = re.split(r"&&|;|\s#|clca-deploy\s", segment[match.end():])[0]
            found.update(_OPTION.findall(rest))
    return found


def cli_options(command: str) -> set[str]:
    """Every option name the real typer command accepts (its --help lists the same)."""
    import typer

    from clca_deploy.cli import app

    click_command = typer.main.get_command(app).commands[command]
    names = {"--help"}
    for param in click_command.params:
        names.update(name for name in (*param.opts, *param.secondary_opts) if name.startswith("-"))
    return names


def test_ci_runs_the_readme_test_command():
    readme = README.read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```bash")[1:3]]
    assert len(blocks) == 2, "README must start with two bash commands"
    assert "python -m pytest" in blocks[1]
    assert blocks[1] in (ROOT / ".ci" / "run").read_text()


def test_readme_is_a_quick_start():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (limit {MAX_README_LINES}): move detail to a docs/ page and link it"
    )


def test_every_docs_page_the_readme_links_exists():
    links = [target.split("#", 1)[0] for target in _LINK.findall(README.read_text())]
    docs_links = [target for target in links if target.startswith("docs/")]
    assert docs_links, "README links no docs/ page"
    missing = sorted({target for target in docs_links if not (ROOT / target).is_file()})
    assert not missing, f"README links docs pages that do not exist: {missing}"


def test_build_trt_options_in_readme_and_docs_exist_in_the_cli():
    real = cli_options("build-trt")
    unknown = {}
    for path in doc_files():
        extra = mentioned_options(path.read_text(), "build-trt", bare=True) - real
        if extra:
            unknown[path.relative_to(ROOT).as_posix()] = sorted(extra)
    assert not unknown, f"build-trt options named in the docs but missing from `clca-deploy build-trt --help`: {unknown}"


def test_option_scanner_reads_commands_the_way_the_docs_write_them():
    text = (
        "```console\n$ clca-deploy build-trt m.onnx [--fp16 | --int8 --data DIR] -o e.engine && clca-deploy bench --x\n"
        "$ clca-deploy train DATA -o c.pth\n      [--epochs E | --minutes M]\n```\n"
        "Prose with `build-trt --weak-typing` and `clca-deploy bench --reference CKPT\n  --model A`.\n"
    )
    assert mentioned_options(text, "build-trt", bare=True) == {"--fp16", "--int8", "--data", "-o", "--weak-typing"}
    assert mentioned_options(text, "train") == {"-o", "--epochs", "--minutes"}
    assert mentioned_options(text, "bench") == {"--x", "--reference", "--model"}
