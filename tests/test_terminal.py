"""The terminal: what a crafted file could hide in a name cannot reach it as a control sequence (printable);
how wide text views are; progress bars only where a person watches; counts in the right number."""

import io
import subprocess
import sys
from pathlib import Path

import pytest

from clca_deploy import progress
from clca_deploy.terminal import output_width, plural, printable


@pytest.mark.parametrize("raw, shown", [
    ("ash\x1b]0;pwned\x07", "ash\\x1b]0;pwned\\x07"),  # OSC: sets the window title even when piped
    ("line\nforged: 100%", "line\\x0aforged: 100%"),
    ("\x9b2J", "\\x9b2J"),  # C1 CSI: clears the screen on some terminals
    ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
    ("x\u2028y\x7f", "x\\u2028y\\x7f"),
    ("Prunus avium «Kordia» 桜", "Prunus avium «Kordia» 桜"),  # ordinary text is left alone
])
def test_printable_escapes_controls_and_bidi_only(raw, shown):
    assert printable(raw) == shown


# ---------------------------------------------------------------- widths, progress bars, wording (issue 26)


class FakeTerminal(io.StringIO):
    """A standard error that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_output_width_is_columns_else_the_terminal_else_none(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert output_width(io.StringIO()) == 80  # a pipe honours COLUMNS
    monkeypatch.setenv("COLUMNS", "wide")
    assert output_width(io.StringIO()) is None  # not a number: as if unset
    monkeypatch.delenv("COLUMNS")
    assert output_width(io.StringIO()) is None  # a pipe: each view at its natural width


@pytest.mark.parametrize("environment, shown", [
    ({}, True),
    ({"CI": "true"}, False),  # GitHub Actions, GitLab CI: no bars even where a terminal is faked
    ({"CI": "false"}, True),
    ({"TERM": "dumb"}, False),
])
def test_bars_only_on_a_terminal_outside_ci(monkeypatch, environment, shown):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    assert progress.bars_shown() is shown
    assert (progress.progress_bar(3, "decoding", "img") is not None) is shown
    assert progress.progress_bar(3, "decoding", "img", enabled=False) is None  # the caller may always say no


def test_no_bar_into_a_pipe(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    assert progress.progress_bar(3, "decoding", "img") is None  # pytest's captured stderr is no terminal
    assert list(progress.track(range(3), 3, "logits", "batch")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_a_bar_draws_on_the_terminal_and_leaves_stdout_alone(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress.progress_bar(4, "leaves", "img") as bar:
        bar.update(2)
        bar.set_postfix(skipped=1)
        print('{"json": "on stdout"}')  # a --json report printed meanwhile goes where it was sent
    assert "leaves" in terminal.getvalue() and "img" in terminal.getvalue()
    assert capsys.readouterr().out == '{"json": "on stdout"}\n'


def test_rich_draws_every_bar_and_tqdm_is_gone():
    root = Path(__file__).resolve().parents[1]
    sources = [path for path in (root / "clca_deploy").rglob("*.py") if "tqdm" in path.read_text()]
    users = [path.name for path in sources if "import tqdm" in path.read_text() or "from tqdm" in path.read_text()]
    assert users == []
    assert "tqdm" not in (root / "pyproject.toml").read_text()


def test_counts_take_the_right_number():
    assert plural(1, "epoch") == "1 epoch" and plural(30, "epoch") == "30 epochs" and plural(0, "image") == "0 images"
    assert plural(2, "class", "classes") == "2 classes"


def test_demo_announces_one_epoch_in_the_singular():
    from clca_deploy.pipeline.demo import DemoConfig, training_line

    assert "1 epoch..." in training_line(DemoConfig(workdir=Path("w"), epochs=1))
    assert "1 epochs" not in training_line(DemoConfig(workdir=Path("w"), epochs=1))
    assert "30 epochs (about a minute on 2 cores)" in training_line(DemoConfig(workdir=Path("w")))


def test_a_warning_is_one_line_without_its_source_line():
    """The calibrate warning ("calibrating on only N images") as the command line prints it."""
    script = (
        "import warnings; from clca_deploy import cli\n"
        "cli.app = lambda: warnings.warn('calibrating on only 8 images; activation ranges from fewer than 64 are "
        "unreliable (a few hundred are better).', stacklevel=2)\n"
        "cli.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "warning: calibrating on only 8 images; activation ranges from fewer than 64 are unreliable "
        "(a few hundred are better).\n"
    )
