"""The one error line escapes what it quotes: a crafted file name cannot clear the screen, set the window
title or forge a second line."""

from __future__ import annotations

from tests.security.harness import assert_refused, run_cli


def test_a_crafted_file_name_in_an_error_is_escaped(tmp_path):
    name = "leaf\x1b]0;owned\x07\nerror: forged.onnx"
    line = assert_refused(run_cli(["predict", name, "x.jpg"], tmp_path), "model file not found")
    assert "\x1b" not in line and "\x07" not in line
    assert "leaf\\x1b]0;owned\\x07\\x0aerror: forged.onnx" in line
