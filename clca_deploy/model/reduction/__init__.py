"""Token reduction methods, one module each, behind one interface (``TokenReducer``)."""

from __future__ import annotations

from clca_deploy.errors import UnsupportedError
from clca_deploy.model.reduction.base import AFTER_ATTENTION, BEFORE_BLOCK, TokenReducer
from clca_deploy.model.reduction.topk import EViTReducer, TopKReducer

# Method name (the official model-string prefix) -> reducer class. The plain ViT has none.
REDUCERS: dict[str, type[TokenReducer]] = {
    "evit": EViTReducer,
    "topk": TopKReducer,
}

# Methods of the paper whose static-shape forms are not written yet.
PLANNED_METHODS = ("tome", "dpcknn", "dyvit", "sit", "patchmerger")


def reducer_class(method: str) -> type[TokenReducer]:
    try:
        return REDUCERS[method]
    except KeyError:
        if method in PLANNED_METHODS:
            raise UnsupportedError(
                f"token reduction method '{method}' is not supported yet (supported: "
                f"{', '.join(sorted(REDUCERS))}, and the plain ViT)."
            ) from None
        raise UnsupportedError(f"unknown token reduction method '{method}'.") from None


__all__ = ["AFTER_ATTENTION", "BEFORE_BLOCK", "REDUCERS", "TokenReducer", "reducer_class"]
