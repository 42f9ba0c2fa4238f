"""MACs of ILA and GLSim models at batch 1, from their static token schedule.

Counted as ``clca_deploy.model.flops`` counts CLCA (torchprofile's conventions): Linear
layers, the two attention matmuls, convolutions (output elements x input channels per group
x kernel area), and one MAC per output element of every affine norm (LayerNorm, BatchNorm).
Element-wise ops, softmax, GELU, pooling, cosine similarity, top-k and the crop's
interpolation are not counted. The official ``encoder_norm`` norms every token, and so is
priced; GLSim pays for two encoder passes.
"""

from __future__ import annotations

from clca_deploy.model.fgir.config import ADAPTER_NORMS, FgirConfig, IlaSettings, VitSpec
from clca_deploy.model.flops import MacReport


def block_macs(tokens: int, dim: int, ff_dim: int) -> int:
    """One pre-norm block: q/k/v/proj, q.k^T and attn.v, the MLP, two LayerNorms."""
    return 4 * tokens * dim * dim + 2 * tokens * tokens * dim + 2 * tokens * dim * ff_dim + 2 * tokens * dim


def _bottleneck_macs(settings: IlaSettings, tokens: int, dim: int) -> int:
    """An in-block ``--adapter`` (down, up; convpass adds a 3x3 conv over the grid and the class token)."""
    a = settings.adapter_dim
    macs = 2 * tokens * dim * a
    if settings.adapter == "convpass":
        macs += tokens * a * a * settings.adapter_kernel_size**2
    return macs


def ila_adapter_macs(settings: IlaSettings, dim: int, grid_in: int, down_sampling: bool) -> int:
    """One ILAdapter: down, norm1, the conv stack (class token and grid), norm3, up, the residual conv."""
    geometry = settings.geometry(down_sampling)
    a, k, groups = settings.adapter_dim, geometry.kernel_size, settings.ila_dws_conv_groups
    grid_out = geometry.grid_out(grid_in)
    tokens_in, tokens_out = 1 + grid_in**2, 1 + grid_out**2
    norm1, norm2, norm3 = (int(kind in ADAPTER_NORMS) for kind in (settings.ila_norm1, settings.ila_norm2, settings.ila_norm3))
    macs = tokens_in * dim * a + norm1 * tokens_in * a
    if groups > 0:
        per_position = a * groups * k * k + norm2 * a * groups + a * groups * a
    else:
        per_position = a * a * k * k
    cls_position = a * a if settings.ila_cls_conv else per_position
    macs += grid_out**2 * per_position + cls_position
    macs += norm3 * tokens_out * a + tokens_out * a * dim
    if geometry.ds_conv == "dws":
        macs += grid_out**2 * dim * k * k
    elif geometry.ds_conv == "conv":
        macs += grid_out**2 * dim * dim * k * k
    return macs


def _embedding_macs(config: FgirConfig) -> int:
    spec: VitSpec = config.vit
    return config.num_patches * spec.hidden_size * 3 * spec.patch_size**2


def count_fgir_macs(config: FgirConfig) -> MacReport:
    """MACs at batch 1 of the model ``config`` describes."""
    spec = config.vit
    dim, schedule = spec.hidden_size, config.token_schedule()
    final_norm = spec.hidden_size if spec.encoder_norm else 0
    if config.glsim is not None:
        settings = config.glsim
        rep = settings.representation_size
        blocks = tuple(
            block_macs(step.tokens_in, rep, rep * 4) if step.stage == "aggregator"
            else block_macs(step.tokens_in, dim, spec.intermediate_size)
            for step in schedule
        )
        views = 2
        head = 2 * (1 + config.num_patches) * final_norm
        head += views * dim * rep if rep != dim else 0
        head += views * rep if settings.aggregator and settings.aggregator_norm else 0
        return MacReport(2 * _embedding_macs(config), blocks, head + rep * config.num_classes)
    settings = config.ila
    blocks = []
    for step in schedule:
        macs = block_macs(step.tokens_in, dim, spec.intermediate_size)
        if settings.adapter:
            uses = 2 if settings.attention_adapter else 1
            macs += uses * _bottleneck_macs(settings, step.tokens_in, dim)
        if step.adapter is not None:
            grid_in = round((step.tokens_in - 1) ** 0.5)
            macs += ila_adapter_macs(settings, dim, grid_in, step.adapter.startswith("ila_ds"))
        blocks.append(macs)
    head = schedule[-1].tokens_out * final_norm + dim * config.num_classes
    return MacReport(_embedding_macs(config), tuple(blocks), head)
