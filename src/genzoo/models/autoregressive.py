"""What every exact autoregressive image model shares: the categorical likelihood and raster sampling.

A subclass implements ``logits(x, y) -> [B, k, C, H, W]`` from the scaled float image
x in [-1, 1] ([B, C, H, W]) such that the logits of sub-pixel (c, i, j) depend only on
sub-pixels before it in raster order (pixels (i', j') < (i, j), then channels c' < c).
Then P(x) = prod_{i,c} P(x_{c,i} | x_{<(c,i)}) is exact and normalised, and

    -log P(x) = sum_{c,i,j} CrossEntropy(logits[:, :, c, i, j], x[:, c, i, j])

(van den Oord et al. 2016, eq. 1-2).
"""

from __future__ import annotations

import torch

from ..likelihood import bits_per_dim, categorical_nll
from .base import GenerativeModel


class AutoregressiveModel(GenerativeModel):
    likelihood_kind = "exact"
    # True when rows below i cannot change the logits of row i, so sampling row i may
    # run the network on rows 0..i only (convolutions with causal masks: yes).
    crop_rows_when_sampling = True

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 levels [B, C, H, W] -> float in [-1, 1]."""
        return x.float() * (2.0 / (self.levels - 1)) - 1.0

    def logits(self, x: torch.Tensor, y=None) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x, y=None) -> dict:
        self.check_images(x)
        y = self.check_labels(y, x.shape[0])
        nll = categorical_nll(self.logits(self.scale(x), y), x)  # (B,)
        return {"loss": nll.mean() / self.dims, "nll": nll, "bits_per_dim": bits_per_dim(nll.detach(), self.dims)}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None, prefix=None, known=None,
               temperature: float = 1.0) -> torch.Tensor:
        """Draw n images in raster order: uint8 [n, C, H, W].

        prefix (uint8 [n, C, H, W]) with known (bool [C, H, W] or [n, C, H, W]): completion,
        the known sub-pixels are kept and every other one is drawn from
        P(x_i | x_<i). For a class-conditional model, y ([n] ints) defaults to 0, 1, 2, ...
        """
        C, H, W = self.image_shape
        device = next(self.parameters()).device
        if self.num_classes and y is None:
            y = torch.arange(n) % self.num_classes
        y = self.check_labels(y, n)
        y = y.to(device) if y is not None else None
        x = torch.zeros(n, C, H, W, dtype=torch.uint8, device=device)
        keep = torch.zeros(n, C, H, W, dtype=torch.bool, device=device)
        if prefix is not None:
            self.check_images(prefix)
            if prefix.shape[0] != n or known is None:
                raise ValueError("completion needs prefix of n images and a known mask")
            keep = torch.as_tensor(known, dtype=torch.bool, device=device).expand(n, C, H, W)
            x = torch.where(keep, prefix.to(device), x)
        for i in range(H):
            rows = i + 1 if self.crop_rows_when_sampling else H
            for j in range(W):
                for c in range(C):
                    if bool(keep[:, c, i, j].all()):
                        continue
                    logits = self.logits(self.scale(x[:, :, :rows]), y)[:, :, c, i, j] / temperature  # (n, k)
                    probs = torch.softmax(logits.float(), dim=1)
                    draw = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(device)
                    x[:, c, i, j] = torch.where(keep[:, c, i, j], x[:, c, i, j], draw.to(torch.uint8))
        return x
