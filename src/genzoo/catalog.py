"""What a listing shows of the registered models without importing them (and torch, about 1.3 s of every command's
start on a 2-core machine): each model's name and kind of likelihood, in the registry's order, kept in
``catalog.json`` beside this file.

The registry is the truth and the catalog its copy: ``python -m genzoo.catalog`` writes it from the registry and
tests/test_catalog.py fails when the two differ, so it cannot go stale unseen. A name the catalog does not hold (a
model registered by a plugin or a test) is looked up in the registry itself.

    >>> likelihood_kind("pixelcnn"), is_model("wavenet")
    ('exact', False)
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

CATALOG_FILE = Path(__file__).with_name("catalog.json")


@functools.cache
def _entries() -> dict[str, dict]:
    return {e["name"]: e for e in json.loads(CATALOG_FILE.read_text())["models"]}


def from_registry() -> dict:
    """The catalog as the registry says it is now (imports every model)."""
    from . import models

    return {"models": [{"name": n, "likelihood_kind": models.get(n).likelihood_kind} for n in models.names()]}


def names() -> list[str]:
    """The registered models of genzoo itself, in the registry's order."""
    return list(_entries())


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
    CATALOG_FILE.write_text(json.dumps(from_registry(), indent=1) + "\n")
    print(f"wrote {CATALOG_FILE} ({len(from_registry()['models'])} models)")
