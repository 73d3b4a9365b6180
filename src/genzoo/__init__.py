"""genzoo: the classic deep generative models of images on one likelihood scale."""

from __future__ import annotations

import importlib

from .errors import GenzooError

__version__ = "0.1.0"

# genzoo.data, genzoo.likelihood and genzoo.models import torch (1.3 s on 2 cores): each is imported on first use
# (PEP 562), so that a command that needs no model (genzoo --help, genzoo runs) starts without it.
_SUBMODULES = ("data", "likelihood", "models")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "load":  # genzoo.load(folder or shipped name) = genzoo.models.load_model
        return importlib.import_module(f"{__name__}.models").load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES, "load"])


__all__ = ["data", "likelihood", "models", "load", "GenzooError", "__version__"]
