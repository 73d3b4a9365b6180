"""VQ-VAE: van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS
2017 (arXiv:1711.00937), and its learned prior: any genzoo autoregressive model trained on the codes.

A convolutional encoder maps the image to an (h, w) grid of D-dimensional vectors, each replaced by
its nearest of K codebook vectors (z(x) [h, w] in {0..K-1}); the decoder maps the quantized grid to a
distribution over the *discrete* image (Bernoulli, categorical or discretized logistic, chosen as
the VAE chooses). Training (eq. 3 with the codebook term replaced by moving averages, appendix A.1):

    loss = -log p(x | z_q(x)) + beta ||z_e(x) - sg[z_q(x)]||^2,

the gradient reaching the encoder straight through the quantizer (z_e + sg[z_q - z_e]); the codebook
follows exponential moving averages of the encoder outputs assigned to each code, and a code that
falls out of use (its average count below ``dead_code_threshold``) restarts at a random encoder
output of the batch.

The bound. With a deterministic encoder, for any prior p(z) over code grids,

    P(x) = sum_z p(z) p(x | z) >= p(z(x)) p(x | z(x)),   so   -log P(x) <= -log p(z(x)) - log p(x | z(x)).

Alone, the VQ-VAE's prior is uniform (-log p(z) = h w log K: what the paper trains against); the
:class:`CodePrior` pairs it with an autoregressive model of the code grids, trained with
``genzoo train MODEL --data codes:RUN``: the same bound, a learned first term. Both are
``likelihood_kind = "bound"``; sum_x exp(-bound(x)) <= 1 holds exactly (tests/test_vqvae.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn

from ...errors import GenzooError
from ...likelihood import bits_per_dim
from ..base import (GenerativeModel, ImageConfig, Options, from_unit, require, require_count, require_positive_ints,
                    to_signed)
from .coders import DECODERS, DiscreteImageLikelihood
from ..registry import PAIRS, register


@dataclasses.dataclass
class VQVAEConfig(ImageConfig):
    codebook_size: int = 64  # K codes (at most 256: a code grid is an image of K levels for the prior)
    code_dim: int = 16  # D, the dimension of a codebook vector
    hidden_channels: int = 64  # width of encoder and decoder
    num_downsamples: int = 2  # stride-2 convolutions: each halves H and W (28 x 28 -> 7 x 7 codes)
    num_res_blocks: int = 2  # residual blocks (ReLU, 3x3, ReLU, 1x1) after the encoder's and before the decoder's
    choices: ClassVar[dict] = {"decoder_likelihood": DECODERS}
    decoder_likelihood: str = "auto"  # as the VAE's: bernoulli (k = 2), categorical (k <= 32), logistic above
    commitment: float = 0.25  # beta of eq. 3
    ema_decay: float = 0.99  # gamma of the codebook's moving averages (appendix A.1)
    dead_code_threshold: float = 1.0  # a code whose average count per batch falls below this restarts

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "codebook_size", "code_dim", "hidden_channels", "num_downsamples")
        require(isinstance(self.num_res_blocks, int) and self.num_res_blocks >= 0, "num_res_blocks must be >= 0")
        require(2 <= self.codebook_size <= 256, f"codebook_size must be in [2, 256], got {self.codebook_size}")
        require(self.decoder_likelihood in DECODERS, f"decoder_likelihood must be one of {', '.join(DECODERS)}")
        require(self.decoder_likelihood != "bernoulli" or self.levels == 2, "a bernoulli decoder needs levels = 2")
        require(isinstance(self.commitment, (int, float)) and self.commitment >= 0, "commitment must be >= 0")
        require(isinstance(self.ema_decay, (int, float)) and 0 < self.ema_decay < 1, "ema_decay must be in (0, 1)")
        require(isinstance(self.dead_code_threshold, (int, float)) and self.dead_code_threshold >= 0,
                "dead_code_threshold must be >= 0")
        f = 2 ** self.num_downsamples
        _, H, W = self.image_shape
        require(H % f == 0 and W % f == 0, f"num_downsamples {self.num_downsamples} needs H and W divisible by {f}, "
                                           f"got {H} x {W}")


class ResBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))) (section 4.1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        return x + self.net(x)


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantization with a moving-average codebook (appendix A.1) and dead-code restarts.

    forward(z_e [B, D, h, w]) -> (z_q [B, D, h, w] with the straight-through gradient, codes [B, h, w] long,
    ||z_e - sg[z_q]||^2 per image [B]). In training mode it also moves the codebook (no gradient).
    """

    def __init__(self, K: int, D: int, decay: float, threshold: float):
        super().__init__()
        self.decay, self.threshold = decay, threshold
        self.register_buffer("codebook", torch.randn(K, D))
        self.register_buffer("ema_count", torch.zeros(K))  # 0: every code restarts from the first batch
        self.register_buffer("ema_sum", torch.zeros(K, D))

    def nearest(self, flat):
        """flat [N, D] -> the index of the nearest code [N] (squared distance, in fp32 at least)."""
        with torch.autocast(flat.device.type, enabled=False):
            flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
            cb = self.codebook.to(flat.dtype)
            d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ cb.T + cb.pow(2).sum(1)  # (N, K)
            return d.argmin(1)

    def nearest_grid(self, z):
        """vectors [B, D, h, w] -> the index of each one's nearest code [B, h, w]."""
        B, D, h, w = z.shape
        return self.nearest(z.permute(0, 2, 3, 1).reshape(-1, D)).view(B, h, w)  # (B h w, D) in between

    def lookup(self, codes):
        """codes [B, h, w] -> z_q [B, D, h, w]."""
        return self.codebook[codes].permute(0, 3, 1, 2)

    def forward(self, z_e):
        B, D, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)  # (B h w, D)
        codes = self.nearest(flat.detach())
        if self.training:
            self._move(flat.detach().float(), codes)
        z_q = self.lookup(codes.view(B, h, w)).to(z_e.dtype)
        commit = (z_e - z_q.detach()).pow(2).flatten(1).sum(1)
        return z_e + (z_q - z_e).detach(), codes.view(B, h, w), commit

    @torch.no_grad()
    def _move(self, flat, codes):
        """The moving averages of counts and sums (eqs. 6-8), Laplace-smoothed, then dead codes restarted."""
        K = self.codebook.shape[0]
        count = torch.bincount(codes, minlength=K).to(self.ema_count.dtype)
        total = torch.zeros_like(self.ema_sum).index_add_(0, codes, flat.to(self.ema_sum.dtype))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # several processes (torchrun): the averages see the global batch, as one process would (DDP then
            # broadcasts rank 0's buffers, restarted codes included, before the next forward pass)
            torch.distributed.all_reduce(count)
            torch.distributed.all_reduce(total)
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(total, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + K * 1e-5) * n
        self.codebook.copy_(self.ema_sum / smoothed.clamp(min=1e-12)[:, None])
        dead = self.ema_count < self.threshold
        if dead.any():  # restart at encoder outputs of this batch (the global generator: resumes bitwise)
            pick = flat[torch.randint(0, len(flat), (int(dead.sum()),)).to(flat.device)].to(self.codebook.dtype)
            self.codebook[dead] = pick
            self.ema_sum[dead] = pick * self.threshold
            self.ema_count[dead] = self.threshold

    def usage(self, codes) -> tuple[float, float]:
        """(perplexity of the codes' histogram, codes in use by the moving average): how much of the codebook works."""
        p = torch.bincount(codes.flatten(), minlength=self.codebook.shape[0]).float()
        p = p / p.sum()
        perplexity = math.exp(-(p[p > 0] * p[p > 0].log()).sum().item())
        return perplexity, float((self.ema_count >= self.threshold).sum())


@dataclasses.dataclass
class VQVAESampling(Options):
    mean: bool = False  # the decoder's mean given the codes instead of a true sample of p(x | z)


@dataclasses.dataclass
class CodePriorSampling(VQVAESampling):
    temperature: float = 1.0  # the prior's logits divided by it; below 1: safer, less varied code grids
    naive: bool = False  # the prior's naive sampler, one full pass per code (the same images)
    limits: ClassVar[dict] = {"temperature": (0, None)}
    exclusive: ClassVar[frozenset] = frozenset({"temperature"})


@register
class VQVAE(GenerativeModel):
    """VQ-VAE (van den Oord et al. 2017): a grid of codes from a K-vector codebook; a bound with any code prior."""

    name = "vq-vae"
    Config = VQVAEConfig
    likelihood_kind = "bound"
    has_code = True
    sample_options = frozenset({"mean"})
    SampleOptions = VQVAESampling
    bound_terms = ("prior_nll", "decoder_nll")

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        C, h = config.image_shape[0], config.hidden_channels
        self.likelihood = DiscreteImageLikelihood(config.decoder_likelihood, config.levels)
        down = [nn.Conv2d(C, h, 4, 2, 1)] + [m for _ in range(config.num_downsamples - 1)
                                             for m in (nn.ReLU(), nn.Conv2d(h, h, 4, 2, 1))]
        blocks = lambda: [ResBlock(h) for _ in range(config.num_res_blocks)]  # noqa: E731
        self.encoder = nn.Sequential(*down, *blocks(), nn.ReLU(), nn.Conv2d(h, config.code_dim, 1))
        up = [m for _ in range(config.num_downsamples - 1) for m in (nn.ReLU(), nn.ConvTranspose2d(h, h, 4, 2, 1))]
        self.decoder = nn.Sequential(nn.Conv2d(config.code_dim, h, 3, padding=1), *blocks(), *up, nn.ReLU(),
                                     nn.ConvTranspose2d(h, self.likelihood.channels(C), 4, 2, 1))
        self.quantizer = VectorQuantizer(config.codebook_size, config.code_dim, config.ema_decay,
                                         config.dead_code_threshold)

    @property
    def code_shape(self) -> tuple[int, int]:
        f = 2 ** self.config.num_downsamples
        return self.image_shape[1] // f, self.image_shape[2] // f

    @property
    def uniform_prior_nats(self) -> float:
        """-log p(z) of the uniform prior over code grids: h w log K."""
        h, w = self.code_shape
        return h * w * math.log(self.config.codebook_size)

    # -- the two halves
    def codes(self, x):
        """uint8 images [B, C, H, W] -> their code grids z(x) [B, h, w] (long)."""
        self.check_images(x)
        return self.quantizer.nearest_grid(self.encoder(to_signed(x, self.levels, self.dtype)))

    def check_codes(self, codes):
        K, (h, w) = self.config.codebook_size, self.code_shape
        if codes.dim() != 3 or tuple(codes.shape[1:]) != (h, w) or codes.is_floating_point():
            raise GenzooError(f"{self.name}: code grids must be integers of shape [B, {h}, {w}], got "
                              f"{list(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= K):
            raise GenzooError(f"{self.name}: codes must lie in [0, {K})")

    def decoder_output(self, codes):
        """code grids [B, h, w] -> the decoder's output (the parameters of p(x | z))."""
        self.check_codes(codes)
        return self.decoder(self.quantizer.lookup(codes.long()).to(self.dtype))

    def log_likelihood(self, x, codes):
        """log p(x | z = codes) [B], nats."""
        return self.likelihood.log_prob(self.decoder_output(codes), x)

    @torch.no_grad()
    def decode_codes(self, codes, mean: bool = True, generator=None):
        """code grids [B, h, w] -> uint8 images: the decoder's mean rounded to a level, or a draw of p(x | z)."""
        out = self.decoder_output(codes)
        return from_unit(self.likelihood.mean(out), self.levels) if mean else self.likelihood.sample(out, generator)

    # -- the contract
    def loss(self, x, y=None):
        """Eq. 3 with the EMA codebook; the figure is the uniform-prior bound h w log K - log p(x | z(x))."""
        self.check_images(x)
        z_q, codes, commit = self.quantizer(self.encoder(to_signed(x, self.levels, self.dtype)))
        rec = self.likelihood.log_prob(self.decoder(z_q), x)  # (B,)
        prior_nll = torch.full_like(rec, self.uniform_prior_nats).detach()
        nll = prior_nll - rec.detach()
        perplexity, used = self.quantizer.usage(codes)
        return {"loss": (-rec + self.config.commitment * commit).mean() / self.dims, "nll": nll,
                "bits_per_dim": bits_per_dim(nll, self.dims), "prior_nll": prior_nll, "decoder_nll": -rec.detach(),
                "code_perplexity": torch.full_like(nll, perplexity), "codes_in_use": torch.full_like(nll, used)}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = False, y=None):
        """Codes from the uniform prior (the VQ-VAE alone has no other), decoded: x ~ p(x | z), or its mean."""
        require_count(n)
        h, w = self.code_shape
        codes = torch.randint(0, self.config.codebook_size, (n, h, w), generator=generator)
        return self.decode_codes(codes.to(next(self.parameters()).device), mean, generator)

    @torch.no_grad()
    def encode(self, x):
        """uint8 images -> their quantized code vectors z_q [B, D, h, w]."""
        return self.quantizer.lookup(self.codes(x))

    @torch.no_grad()
    def decode(self, z):
        """vectors [B, D, h, w] -> uint8 images, each vector first snapped to its nearest code."""
        return self.decode_codes(self.quantizer.nearest_grid(z))


class CodePrior(GenerativeModel):
    """A VQ-VAE and an autoregressive prior on its code grids, as one model of images (what ``genzoo.load``
    gives for a prior trained with ``--data codes:RUN``): log_prob(x) = log p_prior(z(x)) + log p(x | z(x)),
    a lower bound on log P(x) (module docstring); sample draws a code grid with the prior's sampler and
    decodes it; completion keeps every code whose image patch is wholly known, draws the rest with the
    prior's completion, decodes, and puts the known sub-pixels back."""

    name = "vq-vae+prior"
    likelihood_kind = "bound"
    can_complete = True
    sample_options = frozenset({"naive", "temperature", "mean", "progress"})
    SampleOptions = CodePriorSampling
    bound_terms = ("prior_nll", "decoder_nll")

    def __init__(self, vqvae: VQVAE, prior: GenerativeModel):
        if not isinstance(vqvae, VQVAE):
            raise GenzooError(f"codes come from a vq-vae, not from {vqvae.name}")
        super().__init__(vqvae.config)
        h, w = vqvae.code_shape
        if not getattr(prior, "can_complete", False) or prior.image_shape != (1, h, w) \
                or prior.levels != vqvae.config.codebook_size:
            raise GenzooError(f"{prior.name} is not a prior of this VQ-VAE's codes: it must be autoregressive, of "
                              f"shape [1, {h}, {w}] and {vqvae.config.codebook_size} levels")
        self.vqvae, self.prior = vqvae, prior

    @property
    def num_classes(self) -> int:
        return self.prior.num_classes  # labels condition the prior

    def code_images(self, x):
        """uint8 images -> their code grids as one-channel images of K levels [B, 1, h, w] (the prior's data)."""
        return self.vqvae.codes(x)[:, None].to(torch.uint8)

    def loss(self, x, y=None):
        self.check_images(x)
        y = self.check_labels(y, x.shape[0])
        codes = self.code_images(x)
        prior_nll = -self.prior.log_prob(codes, None if y is None else y.to(x.device))
        decoder_nll = -self.vqvae.log_likelihood(x, codes[:, 0].long())
        nll = prior_nll + decoder_nll  # (B,) nats: the bound
        return {"loss": nll.mean() / self.dims, "nll": nll, "bits_per_dim": bits_per_dim(nll.detach(), self.dims),
                "prior_nll": prior_nll.detach(), "decoder_nll": decoder_nll.detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None, prefix=None, known=None,
               temperature: float = 1.0, naive: bool = False, mean: bool = False, progress=None) -> torch.Tensor:
        """uint8 [n, C, H, W]: z ~ the prior (cached sampler unless ``naive``), then x ~ p(x | z) or its
        mean. prefix (uint8 [n, C, H, W]) with known (bool [C, H, W] or [n, C, H, W]): completion."""
        require_count(n)
        code_prefix = code_known = keep = None
        if prefix is not None:
            self.check_images(prefix)
            if prefix.shape[0] != n or known is None:
                raise ValueError("completion needs prefix of n images and a known mask")
            C, H, W = self.image_shape
            (h, w), device = self.vqvae.code_shape, next(self.parameters()).device
            keep = torch.as_tensor(known, dtype=torch.bool, device=device).expand(n, C, H, W)
            code_prefix = self.code_images(prefix.to(device))
            code_known = keep.all(1).view(n, h, H // h, w, W // w).all(4).all(2)[:, None]  # (n, 1, h, w)
        codes = self.prior.sample(n, generator, y=y, prefix=code_prefix, known=code_known, temperature=temperature,
                                  naive=naive, progress=progress)
        x = self.vqvae.decode_codes(codes[:, 0].long(), mean, generator)
        return x if keep is None else torch.where(keep, prefix.to(x.device), x)

    def save(self, path) -> None:
        raise GenzooError("a VQ-VAE with its prior is two folders: save each (the prior's run remembers its VQ-VAE)")


PAIRS["codes"] = CodePrior  # a prior's folder with codes_of.json loads as this (models/folder.py)
