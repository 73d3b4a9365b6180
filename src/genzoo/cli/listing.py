"""``genzoo list``: the models (with the kind of likelihood each states) and the datasets."""

from __future__ import annotations

from .. import data, models


def add_parsers(sub, argv) -> None:
    sub.add_parser("list", help="models and datasets").set_defaults(run=run)


def run(args) -> int:
    print("models:")
    for name in models.names():
        print(f"  {name:22s} likelihood: {models.get(name).likelihood_kind:5s}  {models.summary(name)}")
    print("datasets:")
    for name, (splits, desc) in data.DATASETS.items():
        print(f"  {name:22s} {'/'.join(splits):16s} {desc}")
    return 0
