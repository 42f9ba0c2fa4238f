"""The command line's shared vocabulary against docs/cli.md: every command's --help, its options, and the
old spellings (accepted, hidden)."""

from __future__ import annotations

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from clca_deploy.cli import app
from clca_deploy.cli_vocabulary import normalize_json_flag, parse_device
from clca_deploy.runtime.options import parse_cuda_device
from clca_deploy.errors import ClcaDeployError
from tests.conftest import REPO_ROOT

RUNNER = CliRunner()
COLUMNS = ("output", "json", "device", "batch", "verbosity")


def _matrix() -> dict[str, dict[str, str]]:
    """docs/cli.md's command table (the one headed ``| Command |``): command -> {idea: spelling or '-'}."""
    rows, in_table = {}, False
    for line in (REPO_ROOT / "docs" / "cli.md").read_text().splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if cells[0] == "Command":
            in_table = True
        elif in_table and not line.startswith("|"):
            break
        elif in_table and cells[0] != "---":
            rows[cells[0]] = dict(zip(COLUMNS, cells[1:]))
    return rows


MATRIX = _matrix()
COMMAND = typer.main.get_command(app)


def _flags(command_name: str, hidden: bool = False) -> dict[str, object]:
    """Every flag spelling of a command -> its parameter (only the shown ones unless ``hidden``)."""
    command = COMMAND.commands[command_name]
    return {flag: param for param in command.params if param.param_type_name == "option" and param.hidden == hidden
            for flag in (*param.opts, *param.secondary_opts)}


def test_the_table_names_every_command():
    assert set(MATRIX) == set(COMMAND.commands), "docs/cli.md's table and the app's commands differ"


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_every_command_speaks_the_vocabulary(name):
    done = RUNNER.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    flags = _flags(name)
    for idea, spelled in MATRIX[name].items():
        if spelled == "-":
            absent = {"output": ["-o", "--output"], "json": ["--json"], "device": ["--device"]}.get(idea, [])
            assert not set(absent) & set(flags), f"{name} offers {idea} but docs/cli.md says it does not"
            continue
        for flag in spelled.split("/"):
            assert flag in flags, f"{name} lacks {flag} ({idea})"
            assert flag in done.output
    if "--json" in flags:
        assert flags["--json"].metavar == "PATH|-"
    if "--device" in flags:
        assert "cuda" in flags["--device"].metavar


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_no_shown_option_is_a_free_string_where_it_is_a_choice(name):
    choices = {"--method", "--provider", "--inference-precision", "--performance-hint", "--augment", "--precision", "--runtime"}
    shown = RUNNER.invoke(app, [name, "--help"], env={"COLUMNS": "200"}).output.splitlines()
    for flag in choices & set(_flags(name)):
        if _flags(name)[flag].multiple:
            continue
        line = next(line for line in shown if re.search(rf"\s{re.escape(flag)}\s", line))
        assert "<str>" not in line and "|" in line.split(flag, 1)[1], f"{name} {flag} does not list its choices: {line}"


@pytest.mark.parametrize("name, old", [("sweep", "--workdir"), ("demo", "--workdir"), ("bench", "--out"),
                                       ("train", "--batch-size")])
def test_old_spellings_are_hidden_but_kept(name, old):
    assert old in _flags(name, hidden=True) and old not in _flags(name)
    assert old not in RUNNER.invoke(app, [name, "--help"], env={"COLUMNS": "200"}).output


def test_the_old_and_new_spelling_together_are_one_line_of_refusal(tmp_path):
    done = RUNNER.invoke(app, ["demo", "-o", str(tmp_path / "a"), "--workdir", str(tmp_path / "b")])
    assert isinstance(done.exception, ClcaDeployError) and "--workdir is the old spelling of --output" in str(done.exception)


def test_a_bare_json_flag_means_standard_output():
    assert normalize_json_flag(["m.onnx", "--json"]) == ["m.onnx", "--json", "-"]
    assert normalize_json_flag(["--json", "--top-k", "3"]) == ["--json", "-", "--top-k", "3"]
    assert normalize_json_flag(["--json", "report.json", "-q"]) == ["--json", "report.json", "-q"]
    assert normalize_json_flag(["--json", "-"]) == ["--json", "-"]
    assert normalize_json_flag(["--", "--json"]) == ["--", "--json"]


def test_doctor_json_to_standard_output_and_to_a_file(tmp_path):
    bare = RUNNER.invoke(app, ["doctor", "--json"])
    assert bare.exit_code == 0 and json.loads(bare.stdout)["format"]
    target = tmp_path / "doctor.json"
    to_file = RUNNER.invoke(app, ["doctor", "--json", str(target)])
    assert to_file.exit_code == 0 and json.loads(target.read_text())["format"] == json.loads(bare.stdout)["format"]
    assert "runtime" in to_file.stdout.lower()  # the text view as well


@pytest.mark.parametrize("text, index", [("cuda", 0), ("cuda:1", 1), ("2", 2), (" CUDA:3 ", 3)])
def test_a_gpu_is_spelled_as_torch_spells_it(text, index):
    assert parse_cuda_device(text) == index


@pytest.mark.parametrize("text", ["gpu1", "cuda:-1", "cuda:x", "-1", "cpu", "1.5"])
def test_other_gpu_spellings_are_refused(text):
    with pytest.raises(ClcaDeployError, match=re.escape("--device must be cuda, cuda:N or a GPU index N")):
        parse_cuda_device(text)


@pytest.mark.parametrize("text, device", [("cpu", "cpu"), ("gpu", "cuda"), ("cuda", "cuda"), ("cuda:2", "cuda:2"),
                                          ("1", "cuda:1")])
def test_triton_devices(text, device):
    assert parse_device(text) == device


def test_quiet_and_verbose_contradict(tmp_path):
    done = RUNNER.invoke(app, ["doctor", "-q", "-v"])
    assert isinstance(done.exception, ClcaDeployError) and "contradict" in str(done.exception)
