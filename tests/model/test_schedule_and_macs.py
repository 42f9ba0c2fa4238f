"""Token schedules and MAC counts against the official measurements (clca_reference.md 2.6)."""

from __future__ import annotations

import pytest

from clca_deploy.model import ClcaConfig, token_schedule
from clca_deploy.model.flops import count_macs

README_SETTINGS = dict(
    img_size=448, num_classes=1110, reduction_loc=(3, 6, 9), clc=True, num_clr=1, ifa_head=True
)

# Official runs, ViT-B/16 CLIP at 448, 1 CLR, gap on, recovery [3,6,9,10]:
# (block-3 in->MLP, 4-5, block-6 in->MLP, 7-8, block-9 in->MLP, 10, 11, GMACs)
OFFICIAL = {
    ("evit", 0.1): (81, 87, 11, 17, 4, 10, 12, 25.18),
    ("evit", 0.25): (199, 205, 53, 59, 17, 23, 25, 28.99),
    ("evit", 0.5): (395, 401, 202, 208, 106, 112, 114, 38.77),
    ("evit", 0.7): (552, 558, 392, 398, 280, 286, 288, 50.86),
    ("topk", 0.1): (80, 86, 10, 16, 3, 9, 11, 25.11),
    ("topk", 0.25): (198, 204, 52, 58, 16, 22, 24, 28.93),
    ("topk", 0.5): (394, 400, 201, 207, 104, 110, 112, 38.68),
    ("topk", 0.7): (551, 557, 391, 397, 279, 285, 287, 50.79),
}


def readme_config(method: str, keep: float) -> ClcaConfig:
    return ClcaConfig(model=f"{method}_vit_base_patch16_clip_224.laion2b", keep_rate=(keep,), **README_SETTINGS)


@pytest.mark.parametrize("method,keep", sorted(OFFICIAL))
def test_schedule_matches_official_counts(method, keep):
    b3, b45, b6, b78, b9, b10, b11, _ = OFFICIAL[method, keep]
    s = token_schedule(readme_config(method, keep))
    assert [step.tokens_in for step in s[:4]] == [786] * 4
    assert (s[3].tokens_out, s[4].tokens_in, s[5].tokens_in) == (b3, b45, b45)
    assert (s[6].tokens_in, s[6].tokens_out) == (b45, b6)
    assert (s[7].tokens_in, s[8].tokens_in, s[9].tokens_in, s[9].tokens_out) == (b78, b78, b78, b9)
    assert (s[10].tokens_in, s[11].tokens_in) == (b10, b11)
    # The cache re-inserts 3 layers x [gap, clr] at blocks 3, 6, 9 and block 9's carriers at 10.
    assert [step.reinserted for step in s] == [0, 0, 0, 6, 0, 0, 6, 0, 0, 6, 2, 0]


@pytest.mark.parametrize("method,keep", sorted(OFFICIAL))
def test_macs_match_official_measurements(method, keep):
    # torchprofile's figures, rounded to 2 decimals; our count lands within 0.05%.
    assert count_macs(readme_config(method, keep)).gmacs == pytest.approx(OFFICIAL[method, keep][-1], rel=5e-4)


def test_paper_gflops_figures():
    # Table I: 25.2 (CLCA 10%), 50.9 (CLCA 70%), 78.5 (full ViT); paper "GFLOPs" are MACs.
    assert count_macs(readme_config("evit", 0.1)).gmacs == pytest.approx(25.2, rel=0.01)
    assert count_macs(readme_config("evit", 0.7)).gmacs == pytest.approx(50.9, rel=0.01)
    full = ClcaConfig(model="vit_base_patch16_clip_224", img_size=448, num_classes=1110)
    assert count_macs(full).gmacs == pytest.approx(78.5, rel=0.01)
    assert count_macs(full).gmacs == pytest.approx(78.52, rel=5e-4)


def test_evit_without_cache_counts():
    config = ClcaConfig(model="evit_vit_base_patch16_clip_224", img_size=448, num_classes=10, keep_rate=(0.1,))
    s = token_schedule(config)
    assert [(s[i].tokens_in, s[i].tokens_out) for i in (3, 6, 9)] == [(785, 81), (81, 10), (10, 3)]
    assert all(step.reinserted == 0 and step.cached == 0 for step in s)


def test_keep_rate_one_means_no_reduction():
    config = readme_config("evit", 1.0)
    assert all(step.keep is None for step in token_schedule(config))


def test_per_location_keep_rates():
    config = ClcaConfig(
        model="topk_vit_tiny_patch16_224", img_size=224, num_classes=3, keep_rate=(0.5, 0.5, 0.25)
    )
    s = token_schedule(config)
    assert (s[3].tokens_out, s[6].tokens_out, s[9].tokens_out) == (99, 50, 14)  # ceil(.5*196)+1, ceil(.5*98)+1, ceil(.25*49)+1
