"""Per-image figures of a model over a set of images, in batches: the one loop behind
``genzoo eval``, the trainer's per-epoch test figure and the report's per-image bits/dim."""

from __future__ import annotations

import contextlib
import sys

import torch
from tqdm import tqdm


def subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices (increasing) of a fixed, seeded random subset of ``n`` of the ``len(labels)`` images.

    Stratified by label: each class keeps its share (largest remainders round), so a split
    stored sorted by class (static binarized MNIST's test file: all zeros first) is not
    scored on its first classes only; unlabelled images (label -1) are one class, so the
    subset is a plain random one. ``n`` of 0 or at least the split's size: every image.
    The same (labels, n, seed) always give the same subset.
    """
    N = len(labels)
    if not n or n >= N:
        return torch.arange(N)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
    classes, counts = labels.cpu().unique(return_counts=True)
    share = counts.double() * n / N
    take = share.floor().long()
    leftover = n - int(take.sum())
    take[torch.argsort(share - take, descending=True, stable=True)[:leftover]] += 1
    shuffled = labels.cpu()[perm]
    return torch.cat([perm[shuffled == c][:k] for c, k in zip(classes, take)]).sort().values


def loss_figures(model, x, y) -> dict:
    """The per-image entries of ``model.loss(x, y)`` ([B] each: nll in nats, a reconstruction error, ...)
    and the batch's ``loss`` repeated per image (so that its sum over images is loss * B).
    bits_per_dim is left out: it is derived from the mean nll, never averaged."""
    out = model.loss(x, y)
    figures = {k: v for k, v in out.items() if k not in ("loss", "bits_per_dim") and v.dim() == 1 and len(v) == len(x)}
    figures["loss"] = out["loss"].expand(len(x))
    return figures


def nll_figures(model, x, y) -> dict:
    """-log_prob per image ([B] nats, exact or the bound the model states)."""
    return {"nll": -model.log_prob(x, y)}


@torch.no_grad()
def per_image(model, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 256, figures=loss_figures,
              device=None, context=None, progress: str | None = None) -> dict[str, torch.Tensor]:
    """{name: [N] float64} of ``figures(model, x_batch, y_batch)`` over images x [N, C, H, W] (labels y [N]).

    Batches are moved to ``device`` (default: where x is) and scored under ``context()`` if given
    (e.g. autocast); the figures come back on x's device. ``progress``: a bar label (terminal only).
    """
    device = device or x.device
    chunks = torch.arange(len(x), device=x.device).split(batch_size)
    parts: dict[str, list] = {}
    for chunk in tqdm(chunks, desc=progress, disable=None if progress else True, file=sys.stderr, leave=False):
        xb = x[chunk].to(device)
        yb = y[chunk].to(device) if y is not None else None
        with context() if context is not None else contextlib.nullcontext():
            out = figures(model, xb, yb)
        for k, v in out.items():
            parts.setdefault(k, []).append(v.detach().double().to(x.device))
    return {k: torch.cat(v) for k, v in parts.items()}
