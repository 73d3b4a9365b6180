"""The model registry: ``register`` (a class decorator), ``names()``, ``get()``, ``build(name, **config)``."""

from __future__ import annotations

import dataclasses

from ..errors import GenzooError

_REGISTRY: dict[str, type] = {}


def register(cls):
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> type:
    if name not in _REGISTRY:
        raise GenzooError(f"unknown model {name!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def config_fields(name: str) -> list[dataclasses.Field]:
    return list(dataclasses.fields(get(name).Config))


def build(name: str, **config):
    """Construct a model from its registry name and its config's keyword arguments."""
    cls = get(name)
    valid = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(config) - valid)
    if unknown:
        raise GenzooError(f"{name}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    try:
        cfg = cls.Config(**config)
    except TypeError as e:
        raise GenzooError(f"{name}: bad config ({e})") from None
    except GenzooError as e:
        raise GenzooError(f"{name}: {e}") from None
    return cls(cfg)
