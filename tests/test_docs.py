"""docs/ stays consistent with itself, the README and the CLI: every page is reachable from the
README, every relative link and anchor resolves, and every command and option the pages show
exists in `clca-deploy`: after `clca-deploy COMMAND`, after a bare `COMMAND` at the start of a code
span, in a comment after a command, before the command (the root's), and as an option alone
(`--threads N` in prose), which must be some command's or a listed option of another program."""

import re
from pathlib import Path

import pytest

from .test_readme import DOCS, README, ROOT, _LINK, cli_options, code_segments, doc_files, mentioned_options

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_COMMAND = re.compile(r"(?<![\w-])clca-deploy\s+([a-z][\w-]*)")
# An option as a command line gives it: --long or -x (not the -cu12 of a package name).
_ANY_OPTION = re.compile(r"(?:^|(?<=[\s\[(|{]))(--[A-Za-z][\w-]*|-[A-Za-z](?![\w-]))")
_PROGRAM = re.compile(r"^(?:[A-Z_]+=\S*\s+)*(?:clca-deploy|python3? -m clca_deploy)(?=\s|$)")
# Options of other programs that pages name in prose (inline code with no program in front): option -> whose.
FOREIGN_OPTIONS = {
    "--system-site-packages": "python -m venv",
    "--index-url": "pip",
    "--extra-index-url": "pip",
    "--no-deps": "pip",
    "-n": "pytest-xdist",
    "--adapter": "the official ILA train.py",
    "--ila": "the official ILA train.py",
    "--ila_locs": "the official ILA train.py",
    "--freeze_backbone": "the official ILA / GLSim train.py",
    "--ls": "the official train.py",
    "--http-max-input-size": "tritonserver",
    "--best": "trtexec",
    "--inputIOFormats": "trtexec",
    "--budget-s": "benchmarks/gpu_check.py",
    "--cache": "tools/package_index.py",
    "--flag": "docs/cli.md's stand-in for any list option",
}


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


def cli_root_options() -> set[str]:
    import typer

    from clca_deploy.cli import app

    group = typer.main.get_command(app)
    return {"--help"} | {name for param in group.params for name in (*param.opts, *param.secondary_opts)}


def attributed_options(segment: str, commands: set[str]) -> list[tuple[str, str]]:
    """(whose, option) for every option a code segment gives clca-deploy: whose is a command, "" for the root
    (options before the command), or "*" for options in a span with no program in front (any command's)."""
    found = []
    for part in re.split(r"&&|\|\||;|\|", segment):
        part = part.strip().removeprefix("$ ").strip()
        program = _PROGRAM.match(part)
        words = part[program.end():].split() if program else part.split()
        if program:
            command = next((word for word in words if not word.startswith("-")), "")
            before = words[: words.index(command)] if command else words
            after = " ".join(words[words.index(command) + 1:]) if command else ""
            found += [("", option) for option in _ANY_OPTION.findall(" ".join(before))]
            found += [(command, option) for option in _ANY_OPTION.findall(after) if command in commands]
        elif words and words[0] in commands:  # `calibrate --target-agreement 99.5` in prose
            found += [(words[0], option) for option in _ANY_OPTION.findall(" ".join(words[1:]))]
        elif words and words[0].startswith("-"):
            found += [("*", option) for option in _ANY_OPTION.findall(part)]
    return found


def test_every_option_any_page_names_exists():
    commands = cli_commands()
    accepted = {command: cli_options(command) for command in commands}
    accepted[""] = cli_root_options()
    accepted["*"] = set().union(*accepted.values()) | set(FOREIGN_OPTIONS)
    unknown = {}
    for path in doc_files():
        for segment in code_segments(path.read_text()):
            for whose, option in attributed_options(segment, commands):
                if option not in accepted[whose]:
                    unknown.setdefault(path.relative_to(ROOT).as_posix(), set()).add(f"{whose or 'clca-deploy'} {option}")
    assert not unknown, f"options named in the docs that no command (or listed program) accepts: {unknown}"


def test_the_foreign_options_are_still_named_somewhere():
    """An entry no page needs any more goes, so that the list cannot hide a clca-deploy option that was removed."""
    commands = cli_commands()
    named = {option for path in doc_files() for segment in code_segments(path.read_text())
             for whose, option in attributed_options(segment, commands) if whose == "*"}
    assert sorted(set(FOREIGN_OPTIONS) - named) == []


def test_option_attribution_reads_spans_the_way_pages_write_them():
    commands = {"calibrate", "doctor", "predict"}
    assert attributed_options("$ clca-deploy doctor   # --json for the same as JSON", commands) == [("doctor", "--json")]
    assert attributed_options("clca-deploy --version && clca-deploy predict m.onnx -o x --top-k 3", commands) == [
        ("", "--version"), ("predict", "-o"), ("predict", "--top-k")]
    assert attributed_options("python -m clca_deploy calibrate m.onnx --fp16", commands) == [("calibrate", "--fp16")]
    assert attributed_options("calibrate --target-agreement 99.5 --held-out-data VAL", commands) == [
        ("calibrate", "--target-agreement"), ("calibrate", "--held-out-data")]
    assert attributed_options("--threads N", commands) == [("*", "--threads")]
    assert attributed_options("--performance-hint latency|throughput", commands) == [("*", "--performance-hint")]
    assert attributed_options("pip install -e .", commands) == []  # another program's
    assert attributed_options("-cu12", commands) == []  # a package name's suffix, not an option


def test_github_anchor_rules():
    assert github_anchor("Triton load test (`clca-deploy serve`, CPU, loopback)") == (
        "triton-load-test-clca-deploy-serve-cpu-loopback"
    )
    assert github_anchor("`clca-deploy doctor`") == "clca-deploy-doctor"
    assert github_anchor("GPUs, TensorRT and CUDA bindings") == "gpus-tensorrt-and-cuda-bindings"
