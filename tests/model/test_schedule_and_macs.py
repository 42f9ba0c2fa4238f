"""Token schedules and MAC counts against the official measurements (clca_reference.md 2.6)."""

from __future__ import annotations

from dataclasses import replace

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


# clca_reference.md section 3, official runs at 448, kr 0.1: block input lengths of blocks
# 3, 6, 9, 10, 11 (ToMe: in->out at 3, 6, 9); GMACs at kr 0.1 and 0.7.
OFFICIAL_OTHERS = {
    "tome": ((786, 394), (400, 329), (335, 328), 334, 336, 46.27, 50.87),
    "dpcknn": (80, 15, 15, 21, 23, 22.65, 48.79),
    "dyvit": (79, 9, 2, 8, 10, 23.07, 50.16),
    "sit": (79, 8, 1, 7, 9, 22.51, 49.65),
    "patchmerger": (79, 8, 1, 7, 9, 22.27, 49.43),
}


@pytest.mark.parametrize("method", sorted(OFFICIAL_OTHERS))
def test_other_methods_schedule_matches_official_counts(method):
    b3, b6, b9, b10, b11, _, _ = OFFICIAL_OTHERS[method]
    s = token_schedule(readme_config(method, 0.1))
    if method == "tome":  # merges inside the block: attention sees the arriving tokens
        assert [(s[i].tokens_in, s[i].tokens_out) for i in (3, 6, 9)] == [b3, b6, b9]
    else:  # reduces before the block
        assert [s[i].tokens_in for i in (3, 6, 9)] == [b3, b6, b9]
        assert all(step.tokens_in == step.tokens_out for step in s)
    assert (s[10].tokens_in, s[11].tokens_in) == (b10, b11)
    assert [step.reinserted for step in s] == [0, 0, 0, 6, 0, 0, 6, 0, 0, 6, 2, 0]


@pytest.mark.parametrize("method,keep", [(m, k) for m in sorted(OFFICIAL_OTHERS) for k in (0.1, 0.7)])
def test_other_methods_macs_match_official_measurements(method, keep):
    official = OFFICIAL_OTHERS[method][5 if keep == 0.1 else 6]
    assert count_macs(readme_config(method, keep)).gmacs == pytest.approx(official, rel=5e-4)


def test_compounded_counts_and_their_quirks():
    # ToMe: r = previous target - target, capped at half the non-CLS tokens (0.1 keeps ~50% at block 3).
    s = token_schedule(readme_config("tome", 0.1))
    assert [s[i].tokens_in - s[i].tokens_out for i in (3, 6, 9)] == [392, 71, 7]
    # DPC-KNN: at least 5 clusters before the last location, at least 1 at the last; the
    # CLR and every re-inserted cached token stay out of the clustering.
    s = token_schedule(readme_config("dpcknn", 0.1))
    assert [s[i].keep for i in (3, 6, 9)] == [78, 7, 1]
    assert [s[i].site.suffix_tokens for i in (3, 6, 9)] == [1, 7, 13]
    # DynamicViT with the cache: int((N - 2) * kr) of the current length, the first rate only.
    s = token_schedule(readme_config("dyvit", 0.1))
    assert [s[i].keep for i in (3, 6, 9)] == [78, 8, 1]
    # ... and without it: int((N0 - 1) * kr^(j+1)) of the initial tokens (CLR included).
    plain = ClcaConfig(model="dyvit_vit_base_patch16_224", img_size=448, num_classes=3, keep_rate=(0.5,), num_clr=1)
    assert [token_schedule(plain)[i].keep for i in (3, 6, 9)] == [392, 196, 98]
    # SiT / PatchMerger: int(784 * 0.1^3) = 0 slots at the third location, CLS alone.
    s = token_schedule(readme_config("sit", 0.1))
    assert (s[9].keep, s[9].tokens_in) == (0, 1)


def test_empty_gap_window_is_flagged():
    """SiT/PatchMerger at 0.1 leave the CLS alone at block 9; the GAP carrier cached after it
    then averages nothing (NaN in the official code)."""
    config = readme_config("sit", 0.1)
    assert [step.index for step in token_schedule(config) if step.pools_nothing(config)] == [9]
    assert not any(step.pools_nothing(config) for step in token_schedule(readme_config("sit", 0.25)))
    with_cls = replace(config, clc_pool_cls=True)  # the window then holds the CLS
    assert not any(step.pools_nothing(with_cls) for step in token_schedule(with_cls))
