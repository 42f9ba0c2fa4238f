"""Token reduction methods, one module each, behind one interface (``TokenReducer``)."""

from __future__ import annotations

from clca_deploy.errors import UnsupportedError
from clca_deploy.model.reduction.base import AFTER_ATTENTION, BEFORE_BLOCK, ReductionSite, TokenReducer
from clca_deploy.model.reduction.dpcknn import DpcKnnReducer
from clca_deploy.model.reduction.dyvit import DynamicViTReducer
from clca_deploy.model.reduction.patchmerger import PatchMergerReducer
from clca_deploy.model.reduction.sit import SiTReducer
from clca_deploy.model.reduction.tome import ToMeReducer
from clca_deploy.model.reduction.topk import EViTReducer, TopKReducer

# Method name (the official model-string prefix) -> reducer class. The plain ViT has none.
REDUCERS: dict[str, type[TokenReducer]] = {
    "evit": EViTReducer,
    "topk": TopKReducer,
    "tome": ToMeReducer,
    "dpcknn": DpcKnnReducer,
    "dyvit": DynamicViTReducer,
    "sit": SiTReducer,
    "patchmerger": PatchMergerReducer,
}

# ATS keeps a different number of tokens for every image (per-sample torch.unique and
# padding): there is no static-shape graph for it. ClcaConfig refuses it with that reason.
NO_STATIC_FORM = ("ats",)

# Every official model-string prefix (clca_reference.md section 1.1): the methods above, and those
# refused for having no static form. No prefix: the plain ViT.
METHOD_PREFIXES = (*REDUCERS, *NO_STATIC_FORM)


def reducer_class(method: str) -> type[TokenReducer]:
    try:
        return REDUCERS[method]
    except KeyError:
        raise UnsupportedError(
            f"unknown token reduction method '{method}' (supported: {', '.join(sorted(REDUCERS))}, and the plain ViT)."
        ) from None


__all__ = [
    "AFTER_ATTENTION", "BEFORE_BLOCK", "METHOD_PREFIXES", "NO_STATIC_FORM", "REDUCERS", "ReductionSite", "TokenReducer",
    "reducer_class",
]
