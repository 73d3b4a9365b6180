"""Autoencoders: bottleneck (and overcomplete), denoising, sparse.

Four ways to make an autoencoder learn structure rather than the identity (Goodfellow,
Bengio & Courville, "Deep Learning", ch. 14): a narrow code (``latent_dim`` < C H W), noise
to undo (denoising: Vincent et al. 2008, "Extracting and composing robust features with
denoising autoencoders"), a sparsity penalty on the code (lambda sum_j |h_j|, ch. 14.2.1), or
a prior (the VAE, :mod:`genzoo.models.latent.vae`). An overcomplete code (``latent_dim`` > C H W)
with none of these can learn the identity.

These define no likelihood (``likelihood_kind = "none"``): they are scored by reconstruction
error, the per-pixel MSE on the [0, 1] scale and PSNR = 10 log10(1 / MSE), never in nats.
The three registry names are one model with different defaults: ``denoising-autoencoder``
corrupts its input (``corruption``, ``noise_level``), ``sparse-autoencoder`` penalises the
code (``l1``); any of them may set the other's options.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from ...errors import GenzooError
from ..base import GenerativeModel, ImageConfig, Options, from_unit, require, to_unit
from .coders import ARCHITECTURES, check_coder_config, decoder, encoder
from ..registry import register, register_preset

CORRUPTIONS = ("none", "gaussian", "masking", "salt-pepper")
NEAR_ZERO = 0.01  # a code unit with |h_j| below this counts as off (the sparsity statistic)


def corrupt(u: torch.Tensor, kind: str, level: float, generator=None) -> torch.Tensor:
    """Corrupt images u in [0, 1] ([B, C, H, W]): gaussian (std ``level``, clipped), masking (a
    fraction ``level`` of pixels set to 0) or salt-pepper (a fraction set to 0 or 1)."""
    if kind == "none" or level == 0:
        return u
    r = torch.rand(u.shape, generator=generator, dtype=u.dtype).to(u.device)
    if kind == "gaussian":
        return (u + level * torch.randn(u.shape, generator=generator, dtype=u.dtype).to(u.device)).clamp(0, 1)
    if kind == "masking":
        return torch.where(r < level, torch.zeros_like(u), u)
    salt = torch.rand(u.shape, generator=generator, dtype=u.dtype).to(u.device) < 0.5
    return torch.where(r < level, salt.to(u.dtype), u)


@dataclasses.dataclass
class AutoencoderConfig(ImageConfig):
    latent_dim: int = 32  # larger than C*H*W: the overcomplete case
    choices: ClassVar[dict] = {"architecture": ARCHITECTURES, "corruption": CORRUPTIONS}
    architecture: str = "mlp"  # mlp or conv
    width: int = 256  # hidden units (mlp) or channels of the first convolution (conv)
    corruption: str = "none"  # none, gaussian, masking, salt-pepper: the denoising autoencoder's noise
    noise_level: float = 0.0  # gaussian: std on the [0, 1] scale; masking, salt-pepper: fraction of pixels
    l1: float = 0.0  # lambda of the sparsity penalty lambda * sum_j |h_j|

    def __post_init__(self):
        super().__post_init__()
        check_coder_config(self)
        require(self.corruption in CORRUPTIONS, f"corruption must be one of {', '.join(CORRUPTIONS)}")
        require(isinstance(self.noise_level, (int, float)) and 0 <= self.noise_level <= 1, "noise_level must be in [0, "
                                                                                           "1]")
        require(isinstance(self.l1, (int, float)) and self.l1 >= 0, "l1 must be >= 0")


@dataclasses.dataclass
class ReconstructionEvaluation(Options):
    # reconstruct test images corrupted this way (the error is against the clean ones)
    corruption: str = "none"
    # with a corruption: gaussian std or fraction of pixels (default 0.3)
    noise_level: float | None = None
    choices: ClassVar[dict] = {"corruption": CORRUPTIONS}
    limits: ClassVar[dict] = {"noise_level": (0, 1)}

    def __post_init__(self):
        if self.noise_level is not None and self.corruption == "none":
            raise GenzooError("--noise-level needs --corruption gaussian|masking|salt-pepper (it sets that "
                              "corruption's strength); without --corruption the clean images are scored")
        self.noise_level = 0.3 if self.noise_level is None else self.noise_level


@register
class Autoencoder(GenerativeModel):
    """Bottleneck autoencoder (overcomplete when latent_dim > C*H*W); scored by reconstruction error."""

    name = "autoencoder"
    Config = AutoencoderConfig
    likelihood_kind = "none"
    can_sample = False
    has_code = True
    scored_by_reconstruction = True
    EvalOptions = ReconstructionEvaluation

    def __init__(self, config: AutoencoderConfig):
        super().__init__(config)
        shape, cfg = config.image_shape, config
        self.encoder = encoder(shape, cfg.latent_dim, cfg.architecture, cfg.width)
        self.decoder = decoder(cfg.latent_dim, shape, shape[0], cfg.architecture, cfg.width)

    def unit(self, x):
        """uint8 levels -> [0, 1] floats in the weights' dtype."""
        return to_unit(x, self.levels, self.dtype)

    def encode(self, x):
        """uint8 images [B, C, H, W] -> codes [B, latent_dim] (of the clean image)."""
        self.check_images(x)
        return self.encoder(self.unit(x))

    def decode(self, z):
        """codes [B, latent_dim] -> uint8 images: the decoder's output rounded to the nearest level."""
        return from_unit(torch.sigmoid(self.decoder(z)), self.levels)

    def corrupted(self, x, generator=None):
        """The model's own corruption of uint8 images, as [0, 1] floats (clean for a plain autoencoder)."""
        return corrupt(self.unit(x), self.config.corruption, self.config.noise_level, generator)

    def reconstruction(self, u):
        """[0, 1] images -> (reconstruction in [0, 1], code)."""
        h = self.encoder(u)
        return torch.sigmoid(self.decoder(h)), h

    def loss(self, x, y=None):
        """mean over the batch of [sum of squared errors + l1 sum_j |h_j|] / D, the clean image the target."""
        self.check_images(x)
        u = self.unit(x)
        inp = self.corrupted(x) if self.training else u
        r, h = self.reconstruction(inp)
        sse = ((r - u) ** 2).flatten(1).sum(1)  # (B,)
        loss = (sse + self.config.l1 * h.abs().sum(1)).mean() / self.dims
        return {"loss": loss, "mse": sse.detach() / self.dims,
                "near_zero": (h.detach().abs() < NEAR_ZERO).float().mean(1)}

    def eval_figures(self, x, y=None, generator=None, corruption: str = "none", noise_level: float = 0.3):
        """mse [B] of reconstructing x from x corrupted as asked, and the fraction of code units near zero."""
        return {"mse": self.reconstruction_error(x, corruption, noise_level, generator=generator),
                "near_zero": self.loss(x)["near_zero"]}

    @torch.no_grad()
    def reconstruction_error(self, x, corruption: str = "none", noise_level: float = 0.0, generator=None):
        """Per-image MSE [B] (the [0, 1] scale) of reconstructing x from x corrupted as asked."""
        self.check_images(x)
        u = self.unit(x)
        r, _ = self.reconstruction(corrupt(u, corruption, noise_level, generator))
        return ((r - u) ** 2).flatten(1).mean(1)

    @torch.no_grad()
    def sample(self, n, generator=None, **kwargs):
        raise GenzooError(f"{self.name} defines no distribution to sample from (the VAE and the other models do); "
                          "try genzoo reconstruct or interpolate")


# The other two registry names: the same model with other defaults.
register_preset("denoising-autoencoder", Autoencoder,
                "Denoising autoencoder (Vincent et al. 2008): reconstructs the clean image from a corrupted one.",
                corruption="gaussian", noise_level=0.3)
register_preset("sparse-autoencoder", Autoencoder, "Sparse autoencoder: an L1 penalty lambda * sum_j |h_j| on the "
                                                   "code.",
                l1=0.1)
