"""What a listing shows of the registered models and the datasets without importing them (and torch, about 1.3 s
of every command's start on a 2-core machine): each model's name, kind of likelihood, summary and config options
(defaults and meaning), in the registry's order, and each dataset's name, splits and summary, kept in
``catalog.json`` beside this file.

The registry is the truth and the catalog its copy: ``make catalog`` (``python -m genzoo.catalog``) writes it and
tests/test_catalog.py fails when the two differ, so it cannot go stale unseen. A name the catalog does not hold (a
model registered by a plugin or a test) is looked up in the registry itself.

    >>> likelihood_kind("pixelcnn"), is_model("wavenet")
    ('exact', False)
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

CATALOG_FILE = Path(__file__).with_name("catalog.json")


@functools.cache
def _catalog() -> dict:
    return json.loads(CATALOG_FILE.read_text())


@functools.cache
def _entries() -> dict[str, dict]:
    return {e["name"]: e for e in _catalog()["models"]}


def _registry_entry(name: str) -> dict:
    """A model's catalog entry as the registry says it is now (imports every model)."""
    from . import models

    return {"name": name, "likelihood_kind": models.get(name).likelihood_kind, "summary": models.summary(name),
            "options": json.loads(json.dumps(models.option_defaults(name))),  # a tuple as JSON's list
            "option_help": models.option_help(name)}


def from_registry() -> dict:
    """The catalog as the registry says it is now (imports every model)."""
    from . import data, models

    return {"models": [_registry_entry(n) for n in models.names()],
            "datasets": [{"name": n, "splits": list(splits), "summary": summary}
                         for n, (splits, summary) in data.DATASETS.items()]}


def datasets() -> list[dict]:
    """{"name", "splits", "summary"} of every dataset genzoo knows by name (``genzoo.data.DATASETS``)."""
    return _catalog()["datasets"]


def model(name: str) -> dict:
    """{"name", "likelihood_kind", "summary", "options" (each config option's default), "option_help"} of a
    registered model (``genzoo list --json``)."""
    if name in _entries():
        return _entries()[name]
    return _registry_entry(name)


def summary(name: str) -> str:
    """A model's line for ``genzoo list`` (the registry's ``summary``)."""
    if name in _entries():
        return _entries()[name]["summary"]
    from . import models

    return models.summary(name)


def names() -> list[str]:
    """The registered models, in the registry's order: the catalog's, or the registry's own where it was imported
    already (then with any model registered since, e.g. by a plugin)."""
    loaded = sys.modules.get(f"{__package__}.models")
    return loaded.names() if loaded is not None else list(_entries())


def _registered(name) -> bool:
    from . import models

    return name in models.names()


def is_model(name) -> bool:
    """Is ``name`` a registered model (genzoo's, or one registered since by a plugin)?"""
    return isinstance(name, str) and (name in _entries() or _registered(name))


def likelihood_kind(name: str) -> str | None:
    """"exact", "bound", "none"...: the kind of -log P(x) the model states; None for no registered model."""
    if not isinstance(name, str):  # a record's "model" may be anything
        return None
    if name in _entries():
        return _entries()[name]["likelihood_kind"]
    if not is_model(name):
        return None
    from . import models

    return models.get(name).likelihood_kind


if __name__ == "__main__":
    now = from_registry()
    CATALOG_FILE.write_text(json.dumps(now, indent=1) + "\n")
    print(f"wrote {CATALOG_FILE} ({len(now['models'])} models)")
