"""The cache folder: its location rule, what `clca-deploy cache` counts, and what --trim / --clear remove
(the least recently used entries, never a file the tool did not write there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clca_deploy.cli import app
from clca_deploy.cli_cache import parse_size
from clca_deploy.errors import ClcaDeployError
from clca_deploy.system.cache_folder import cache_root
from tests.conftest import REPO_ROOT

runner = CliRunner()
DAY = 86400


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder chosen by $CLCA_DEPLOY_CACHE."""
    monkeypatch.setenv("CLCA_DEPLOY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entry(cache: Path, name: str, size: int, age_days: float) -> Path:
    path = cache / "calibration" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))
    return path


def cache_json(*args: str) -> dict:
    result = runner.invoke(app, ["cache", *args, "--json", "-"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


# ---------------------------------------------------------------- where the folder is


@pytest.mark.parametrize("environ, expected, chosen_by", [
    ({"CLCA_DEPLOY_CACHE": "/data/cc", "XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"}, "/data/cc", "CLCA_DEPLOY_CACHE"),
    ({"CLCA_DEPLOY_CACHE": "", "XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/clca-deploy", "XDG_CACHE_HOME"),
    ({"XDG_CACHE_HOME": "relative/xdg", "HOME": "/home/u"}, "/home/u/.cache/clca-deploy", "home"),  # XDG: ignored
    ({"HOME": "/home/u"}, "/home/u/.cache/clca-deploy", "home"),
    ({"CLCA_DEPLOY_CACHE": "~/cc", "HOME": "/home/u"}, os.path.expanduser("~/cc"), "CLCA_DEPLOY_CACHE"),
])
def test_the_location_rule(environ, expected, chosen_by):
    found = cache_root(environ)
    assert (str(found.path), found.chosen_by) == (expected, chosen_by)


def test_a_relative_setting_is_taken_from_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cache_root({"CLCA_DEPLOY_CACHE": "cc"}).path == tmp_path / "cc"


def test_no_home_and_no_setting_is_one_line_saying_what_to_set(monkeypatch):
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)  # no password database entry either
    with pytest.raises(ClcaDeployError, match="set CLCA_DEPLOY_CACHE to a folder"):
        cache_root({})


def test_calibration_keeps_its_sets_in_the_folder_the_rule_gives(tmp_path, monkeypatch):
    from clca_deploy.calibration.cache import cache_dir

    monkeypatch.delenv("CLCA_DEPLOY_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "clca-deploy" / "calibration"


def test_help_states_the_rule():
    result = runner.invoke(app, ["cache", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.stdout.split())
    assert "$CLCA_DEPLOY_CACHE if set, else $XDG_CACHE_HOME/clca-deploy, else ~/.cache/clca-deploy" in text


# ---------------------------------------------------------------- what it counts


def test_a_real_calibration_set_is_counted_and_marked_used_when_read(cache, tmp_path):
    from clca_deploy.calibration.batches import calibration_images
    from tests.train.conftest import write_image_folder

    images = write_image_folder(tmp_path / "images", classes=2, per_class=2, size=32)
    preprocess = {"img_size": 32, "resize_size": 32}
    first = calibration_images(images, preprocess, num_images=4, warn_below=0)
    assert not first.from_cache and first.cache_path.parent == cache / "calibration"
    found = cache_json()
    assert found["kinds"]["calibration"] == {"entries": 1, "bytes": first.cache_path.stat().st_size}
    assert found["other"] == {"entries": 0, "bytes": 0} and found["format"] == "clca_deploy.cache/1"
    long_ago = time.time() - 30 * DAY
    os.utime(first.cache_path, (long_ago, long_ago))
    again = calibration_images(images, preprocess, num_images=4, warn_below=0)
    assert again.from_cache and first.cache_path.stat().st_mtime > long_ago + 29 * DAY


def test_only_regular_files_with_the_entry_name_count_as_entries(cache, tmp_path):
    entry(cache, "a" * 32 + ".npz", 1000, 1)
    outside = tmp_path / "precious.npz"
    outside.write_bytes(b"\1" * 5000)
    (cache / "calibration" / ("b" * 32 + ".npz")).symlink_to(outside)
    (cache / "calibration" / "notes.txt").write_text("mine")
    (cache / "calibration" / ("c" * 31 + ".npz")).write_bytes(b"\0" * 10)
    (cache / "calibration" / ("d" * 32 + ".npz")).mkdir()
    (cache / "someone-else").mkdir()
    (cache / "someone-else" / "f").write_bytes(b"\0" * 300)
    found = cache_json()
    assert found["kinds"]["calibration"] == {"entries": 1, "bytes": 1000}
    assert found["other"]["entries"] == 5 and found["chosen_by"] == "CLCA_DEPLOY_CACHE"
    assert found["total_bytes"] == 1000 + found["other"]["bytes"] and found["other"]["bytes"] >= 300 + 4 + 10
    cleared = cache_json("--clear")
    assert [Path(item["path"]).name for item in cleared["removed"]] == ["a" * 32 + ".npz"]
    assert outside.read_bytes() == b"\1" * 5000 and (cache / "calibration" / ("b" * 32 + ".npz")).is_symlink()
    assert (cache / "calibration" / "notes.txt").read_text() == "mine" and (cache / "someone-else" / "f").exists()


def test_a_missing_folder_is_empty_not_an_error(cache):
    found = cache_json()
    assert found["exists"] is False and found["total_bytes"] == 0
    result = runner.invoke(app, ["cache", "--clear"])
    assert result.exit_code == 0 and "does not exist yet" in result.stdout and not cache.exists()


# ---------------------------------------------------------------- trimming


def test_trim_removes_the_least_recently_used_until_the_size_fits(cache):
    old = entry(cache, "1" * 32 + ".npz", 1000, age_days=3)
    middle = entry(cache, "2" * 32 + ".npz", 2000, age_days=2)
    new = entry(cache, "3" * 32 + ".npz", 3000, age_days=1)
    found = cache_json("--trim", "3500")
    assert [item["path"] for item in found["removed"]] == [str(old), str(middle)]
    assert not old.exists() and not middle.exists() and new.exists()
    assert found["kinds"]["calibration"] == {"entries": 1, "bytes": 3000}
    assert cache_json("--trim", "3000")["removed"] == []  # already fits


def test_clear_also_sweeps_the_half_written_files_of_killed_runs(cache):
    entry(cache, "1" * 32 + ".npz", 10, age_days=1)
    stale = entry(cache, "." + "2" * 32 + ".npz.clca-deploy-abcd1234.tmp", 500, age_days=1)
    fresh = entry(cache, "." + "3" * 32 + ".npz.clca-deploy-abcd5678.tmp", 500, age_days=0)  # maybe being written
    result = runner.invoke(app, ["cache", "--clear"])
    assert result.exit_code == 0, result.output
    assert "removed      1 entry (10 B)" in result.stdout and "1 half-written files" in result.stdout
    assert not stale.exists() and fresh.exists()


def test_an_entry_that_cannot_be_removed_is_named_and_the_run_fails(cache, monkeypatch):
    stuck = entry(cache, "1" * 32 + ".npz", 1000, age_days=2)
    gone = entry(cache, "2" * 32 + ".npz", 1000, age_days=1)
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if str(path) == str(stuck):
            raise PermissionError(13, "Permission denied")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    result = runner.invoke(app, ["cache", "--clear"])
    assert result.exit_code == 1 and f"could not remove {stuck} (Permission denied)" in result.stderr
    assert stuck.exists() and not gone.exists()


@pytest.mark.parametrize("args, fragment", [
    (["--trim", "lots"], "expected a size such as"),
    (["--trim=-5M"], "expected a size such as"),
    (["--trim", "1G", "--clear"], "give one"),
])
def test_bad_requests_remove_nothing_and_exit_2(cache, args, fragment):
    kept = entry(cache, "1" * 32 + ".npz", 10, age_days=1)
    done = subprocess.run([sys.executable, "-m", "clca_deploy", "cache", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2 and fragment in done.stderr, done.stderr
    assert kept.exists()


def test_a_cache_setting_that_is_a_file_is_refused_in_one_line(cache):
    cache.write_text("not a folder")
    done = subprocess.run([sys.executable, "-m", "clca_deploy", "cache"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is not a folder; set CLCA_DEPLOY_CACHE to a folder" in done.stderr


@pytest.mark.parametrize("text, size", [
    ("0", 0), ("7", 7), ("7B", 7), ("10kB", 10_000), ("500M", 500_000_000), ("2g", 2_000_000_000),
    ("1.5GiB", 1_610_612_736), ("64 MiB", 67_108_864),
])
def test_sizes(text, size):
    assert parse_size(text) == size
