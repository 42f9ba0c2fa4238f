"""The fgir_vit family of the official ILA and GLSim repositories, loaded exactly from their checkpoints."""

from clca_deploy.model.fgir.checkpoint import build_model, config_from_args, is_fgir_state_dict, model_from_official
from clca_deploy.model.fgir.config import GLSIM, ILA, FgirBlockTokens, FgirConfig, GlsimSettings, IlaSettings, VitSpec
from clca_deploy.model.fgir.flops import count_fgir_macs
from clca_deploy.model.fgir.glsim import GlsimModel
from clca_deploy.model.fgir.ila import IlaModel

__all__ = [
    "GLSIM",
    "ILA",
    "FgirBlockTokens",
    "FgirConfig",
    "GlsimModel",
    "GlsimSettings",
    "IlaModel",
    "IlaSettings",
    "VitSpec",
    "build_model",
    "config_from_args",
    "count_fgir_macs",
    "is_fgir_state_dict",
    "model_from_official",
]
