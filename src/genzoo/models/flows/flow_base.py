"""The image flow every flow model shares (NICE, RealNVP, Glow): uniform dequantization, the bound

    -log P(x) <= E_noise[-log p(u)] + D log k,      log p(u) = log p_Z(f(u)) + log |det df/du|

(docs/CONTRACT.md, docs/flows.md), sampling through the inverse, and the code z = f(u) both ways."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from ...likelihood import bits_per_dim, dequantized_nll_bound
from ..base import GenerativeModel, Options, dequantize, require_count


@dataclasses.dataclass
class FlowSampling(Options):
    temperature: float = 1.0  # the prior's noise scaled by it; below 1: safer, less varied samples (Glow section 5)
    limits: ClassVar[dict] = {"temperature": (0, None)}
    exclusive: ClassVar[frozenset] = frozenset({"temperature"})


class Flow(GenerativeModel):
    """What NICE and RealNVP share: dequantization, the bound, sampling through the inverse.

    A subclass sets ``self.transform`` (u -> z, on [B, C, H, W], or on [B, D] when ``flat``) and
    ``self.prior`` (``log_prob(z) -> [B]``, ``sample(shape)``).
    """

    likelihood_kind = "bound"
    has_code = True
    sample_options = frozenset({"temperature"})
    SampleOptions = FlowSampling
    flat = False  # the transform works on the flattened image [B, D]

    def forward(self, u, y=None):
        """u: float [B, C, H, W] in [0, 1) -> (z [B, C, H, W], log |det dz/du| [B]). y: classes of a
        class-conditional flow (Glow's), else ignored."""
        z, logdet = self.transform(u.flatten(1) if self.flat else u)
        return z.view_as(u), logdet

    def inverse(self, z, y=None):
        """z: [B, C, H, W] -> u [B, C, H, W]."""
        u, _ = self.transform.inverse(z.flatten(1) if self.flat else z)
        return u.view_as(z)

    def log_density(self, u, y=None):
        """log p(u) [B], nats: the change of variables, log p_Z(f(u)) + log |det df/du|."""
        z, logdet = self.forward(u, y)
        return self.prior.log_prob(z) + logdet

    def dequantize(self, x, generator=None):
        """uint8 levels -> u = (x + U[0, 1)) / k, in the weights' dtype."""
        return dequantize(x, self.levels, generator, self.dtype)

    def loss(self, x, y=None):
        self.check_images(x)
        y = self.check_labels(y, x.shape[0])
        y = y.to(x.device) if y is not None else None
        # Evaluation draws its noise from a fixed seed, so a figure is reproducible.
        u = self.dequantize(x, None if self.training else torch.Generator().manual_seed(0))
        nll = dequantized_nll_bound(-self.log_density(u, y), self.dims, self.levels)  # (B,) nats, a bound
        return {"loss": nll.mean() / self.dims, "nll": nll, "bits_per_dim": bits_per_dim(nll.detach(), self.dims)}

    def quantize(self, u):
        return (u * self.levels).floor().clamp(0, self.levels - 1).to(torch.uint8)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0, y=None):
        """uint8 [n, C, H, W]: z ~ prior (scaled by temperature), u = f^-1(z), x = floor(k u).
        A class-conditional flow draws classes y ([n] ints), by default 0, 1, 2, ..."""
        require_count(n)
        device = next(self.parameters()).device
        if self.num_classes and y is None:
            y = torch.arange(n) % self.num_classes
        y = self.check_labels(y, n)
        z = self.prior.sample((n, *self.image_shape), generator=generator, dtype=self.dtype, device=device)
        return self.quantize(self.inverse(z * temperature, None if y is None else y.to(device)))

    @torch.no_grad()
    def encode(self, x, y=None):
        """uint8 images -> z [B, C, H, W] of the cell centres u = (x + 1/2) / k (y: classes of a
        class-conditional flow, or None: its classless prior)."""
        self.check_images(x)
        return self.forward((x.to(self.dtype) + 0.5) / self.levels, y)[0]

    @torch.no_grad()
    def decode(self, z, y=None):
        """z [B, C, H, W] -> uint8 images."""
        return self.quantize(self.inverse(z, y))
