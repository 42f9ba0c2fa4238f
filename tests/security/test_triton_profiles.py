"""Issue 24 item 11 through the CLI: an engine whose batch profile starts above 1 is refused by `triton-repo` and
`serve` alike (exit 2, one line naming the rebuild, nothing written), since Triton batches requests from 1."""

from __future__ import annotations

import pytest

from clca_deploy.serving.server import free_port
from tests.security.test_serving import crafted_engine, refused_cleanly
from tests.serving.conftest import require_module

PROFILE = [{"min": 4, "opt": 8, "max": 32}]
FRAGMENTS = ("model.engine was built for batches of 4..32", "no minimum batch size", "`clca-deploy build-trt --batch 1,8,32`")


@pytest.mark.parametrize("extra", [[], ["--max-batch", "8"]])
def test_triton_repo_refuses_an_engine_whose_batches_start_above_one(tmp_path, extra):
    engine = crafted_engine(tmp_path, profiles=PROFILE)
    refused_cleanly(tmp_path, ["triton-repo", engine, "-o", tmp_path / "repo", *extra], *FRAGMENTS)


def test_serve_refuses_it_too_before_any_server_starts(tmp_path):
    require_module("pytriton")
    engine = crafted_engine(tmp_path, profiles=PROFILE)  # never deserialized: refused from its sidecar alone
    refused_cleanly(tmp_path, ["serve", engine, "--port", free_port()], *FRAGMENTS)
