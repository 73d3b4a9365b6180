"""The code grids of a trained VQ-VAE as a dataset: what ``genzoo train MODEL --data codes:RUN`` trains a
prior on (van den Oord et al. 2017, section 3.3: the prior is fitted to z(x) of the training images).

A codes recipe is ``{"name": "codes:/abs/RUN", "codes_of": the VQ-VAE run's own data recipe}``: the
split of the VQ-VAE's images (the training split as the VQ-VAE saw it, one fixed draw where it was
dynamically binarized) encoded by the VQ-VAE into uint8 [N, 1, h, w] images of K levels, labels kept.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from ..models.folder import load_model
from ..models.latent.vqvae import VQVAE
from . import datasets

PREFIX = "codes:"


def is_codes_name(name) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def source(spec: dict) -> Path:
    """The VQ-VAE run a codes recipe names."""
    return Path(spec["name"][len(PREFIX):])


def check_coder(model, where: str) -> None:
    """Codes come from a VQ-VAE: one clear error for any other model."""
    if not isinstance(model, VQVAE):
        raise DataError(f"{where} is a {model.name} run; codes come from a vq-vae run")


@torch.no_grad()
def code_split(spec: dict, split: str, batch: int = 256):
    """(the split's code grids as a Dataset, K levels, None: no batch transform), as ``prepare`` returns."""
    if not isinstance(spec.get("codes_of"), dict):
        raise DataError(f"{spec['name']}: a codes recipe needs the VQ-VAE's own data recipe (codes_of)")
    vq = load_model(source(spec), plain=True)
    if not isinstance(vq, VQVAE):
        raise DataError(f"--data {spec['name']}: {source(spec)} holds a {vq.name}, not a vq-vae; codes come from a "
                        f"VQ-VAE's run folder")
    images = (datasets.seen_training_split(spec["codes_of"]) if split == "train"
              else datasets.prepare(spec["codes_of"], split)[0])
    datasets.check_fits(vq, images, images.levels, str(source(spec)))
    codes = torch.cat([vq.codes(x) for x in images.images.split(batch)]) if len(images) else \
        torch.zeros(0, *vq.code_shape, dtype=torch.long)
    K = vq.config.codebook_size
    return datasets.Dataset(spec["name"], split, codes[:, None].to(torch.uint8), images.labels, K,
                            images.num_classes), K, None


def prepare(spec: dict, split: str):
    """A run's data recipe applied to one split (:func:`genzoo.data.datasets.prepare`), or the code grids of
    a VQ-VAE for a codes recipe: (dataset, levels, batch transform or None)."""
    return code_split(spec, split) if is_codes_name(spec["name"]) else datasets.prepare(spec, split)
