"""sweep: one export per keep rate, benched against the checkpoint; a second run reuses the exports."""

from __future__ import annotations

from clca_deploy.bench.run import BenchConfig
from clca_deploy.pipeline.sweep import SweepConfig, run_sweep
from tests.conftest import LEAVES_DIR, load_golden, require_shared


def test_sweep_exports_each_keep_rate_and_reuses_them(tmp_path):
    checkpoint, _, _ = load_golden("evit_deit_tiny_plain_k0.5_224")
    data = require_shared(LEAVES_DIR / "test")
    bench = BenchConfig(models=(), data=data, batch_sizes=(1,), warmup=0, iters=2, limit=15, progress=False)
    config = SweepConfig(checkpoint, (0.25, 1.0), tmp_path / "sweep", bench)
    report = run_sweep(config, log=lambda _: None)
    keeps = [r.keep_rate for r in report.results]
    assert keeps == [(0.5,), (0.25,), (1.0,)]  # the reference at its trained rate, then the sweep
    assert all(r.status == "ok" for r in report.results)
    lines = []
    run_sweep(config, log=lines.append)
    assert sum("reusing" in line for line in lines) == 2
