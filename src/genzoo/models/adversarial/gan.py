"""A generative adversarial network of the discrete image, with a likelihood by annealed importance sampling:
Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014 (the non-saturating generator loss); Radford, Metz &
Chintala, "Unsupervised Representation Learning with Deep Convolutional GANs", ICLR 2016 (DCGAN: strided
convolutions, batch normalisation in the generator, Adam with lr 2e-4 and beta1 0.5); Gulrajani et al., "Improved
Training of Wasserstein GANs", NeurIPS 2017 (WGAN-GP: a critic with a gradient penalty of weight 10, 5 critic
steps a generator step, Adam beta (0, 0.9)); Miyato & Koyama 2018 (the projection discriminator of a class-
conditional GAN); Wu et al., "On the Quantitative Analysis of Decoder-Based Generative Models", ICLR 2017 (its
likelihood: ``models/ais.py``).

Generator G: z ~ N(0, I) (``latent_dim``) -> a map of 2 ``width`` channels at a quarter of the image's size ->
two stride-2 transposed convolutions (batch norm, ReLU) -> tanh on [-1, 1], cropped to the image. The discriminator
(or WGAN critic) D: two stride-2 convolutions (leaky ReLU 0.2, no normalisation, so the gradient penalty is per
image) -> one number. D sees real images at their levels' values 2 x / (k - 1) - 1 and generated ones rounded to
the nearest level with a straight-through gradient (the value is a level, the gradient the identity), so it cannot
tell them apart by the grid alone.

A GAN defines no likelihood: training reports none, and its samples are G(z) at the nearest levels. ``genzoo eval
--ais-steps T`` gives it one on the one scale with a stated observation model: P(x | z) a discretized logistic per
sub-pixel centred at G(z) with one scale s (``likelihood.discretized_logistic_log_prob``), so that
P(x) = E_z[P(x | z)] is a proper distribution over the discrete images for any s, and its AIS estimate bounds
-log P(x) (in expectation). s is fitted on held-out images (the valid split, or training images; never the test
split) by the AIS bound over a grid, or given (``--observation-scale``); the figure says which.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...likelihood import discretized_logistic_log_prob
from ..ais import AISOptions, ais_log_likelihood, ais_summary, bdmc
from ..base import (GenerativeModel, ImageConfig, Options, from_signed, require, require_count, require_num_classes,
                    require_positive_ints, to_signed)
from ..registry import register

LOSSES = ("non-saturating", "wgan-gp")
SCALES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8)  # the observation scales tried when fitting one (on the [-1, 1] scale)


@dataclasses.dataclass
class GANConfig(ImageConfig):
    latent_dim: int = 64  # dimensions of z ~ N(0, I)
    width: int = 64  # channels of the generator's last hidden map and the discriminator's first (2x the others)
    # non-saturating (Goodfellow et al. 2014, DCGAN's) or wgan-gp (a Wasserstein critic with a gradient penalty)
    loss: str = "non-saturating"
    gradient_penalty: float = 10.0  # wgan-gp: the weight of (||grad D|| - 1)^2 at points between real and generated
    critic_steps: int = 1  # discriminator updates per generator update (WGAN-GP's paper: 5)
    num_classes: int = 0  # > 0: class-conditional (a class embedding in G, a projection discriminator)
    choices: ClassVar[dict] = {"loss": LOSSES}
    applies_when: ClassVar[dict] = {"gradient_penalty": ("loss", "wgan-gp")}

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "latent_dim", "width", "critic_steps")
        require(self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        require(self.gradient_penalty >= 0, "gradient_penalty must be >= 0")
        require_num_classes(self)


@dataclasses.dataclass
class GANSampling(Options):
    temperature: float = 1.0  # z ~ N(0, temperature^2 I); below 1: the truncation trick (safer, less varied)
    limits: ClassVar[dict] = {"temperature": (0, None)}
    exclusive: ClassVar[frozenset] = frozenset({"temperature"})


@dataclasses.dataclass
class GANEvaluation(AISOptions):
    ais_steps: int = 100  # annealed importance sampling with T steps from the prior to the posterior (Wu et al. 2017)
    # the observation model's scale s on the [-1, 1] scale (a discretized logistic at G(z)); 0: fitted on held-out
    # images by the AIS bound over a grid
    observation_scale: float = 0.0
    limits: ClassVar[dict] = {**AISOptions.limits, "observation_scale": (0, None)}


class Generator(nn.Module):
    """z [B, L] (and classes y [B]) -> images on [-1, 1], [B, C, H, W]."""

    def __init__(self, image_shape, latent_dim: int, width: int, num_classes: int):
        super().__init__()
        C, H, W = image_shape
        self.shape, self.h0, self.w0 = image_shape, math.ceil(H / 4), math.ceil(W / 4)
        self.classes = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.fc = nn.Linear(latent_dim, 2 * width * self.h0 * self.w0)
        self.norm0 = nn.BatchNorm2d(2 * width)
        self.up1, self.norm1 = nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width)
        self.up2 = nn.ConvTranspose2d(width, C, 4, 2, 1)

    def forward(self, z, y=None):
        if self.classes is not None:
            z = z + self.classes(y)
        h = F.relu(self.norm0(self.fc(z).view(len(z), -1, self.h0, self.w0)))  # (B, 2w, H/4, W/4)
        h = F.relu(self.norm1(self.up1(h)))  # (B, w, H/2, W/2)
        _, H, W = self.shape
        return torch.tanh(self.up2(h))[:, :, :H, :W]  # (B, C, H, W)


class Discriminator(nn.Module):
    """images on [-1, 1] [B, C, H, W] (and classes y [B]) -> one number each [B]."""

    def __init__(self, image_shape, width: int, num_classes: int):
        super().__init__()
        C, H, W = image_shape
        self.conv1, self.conv2 = nn.Conv2d(C, width, 4, 2, 1), nn.Conv2d(width, 2 * width, 4, 2, 1)
        features = 2 * width * (H // 2 // 2) * (W // 2 // 2)
        self.out = nn.Linear(features, 1)
        self.classes = nn.Embedding(num_classes, features) if num_classes else None

    def forward(self, x, y=None):
        h = F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(x), 0.2)), 0.2).flatten(1)  # (B, features)
        out = self.out(h)[:, 0]
        if self.classes is not None:  # the projection discriminator: + <embed(y), h>
            out = out + (self.classes(y) * h).sum(1)
        return out


@register
class GAN(GenerativeModel):
    """GAN (DCGAN; WGAN-GP): two networks, two optimizers; a likelihood only through AIS with an observation model."""

    name = "gan"
    Config = GANConfig
    likelihood_kind = "bound"  # only through genzoo eval --ais-steps (annealed importance sampling); training: none
    sample_options = frozenset({"temperature"})
    SampleOptions = GANSampling
    EvalOptions = GANEvaluation

    def __init__(self, config: GANConfig):
        super().__init__(config)
        C, H, W = config.image_shape
        require(H >= 4 and W >= 4, f"gan: images must be at least 4x4 (two stride-2 convolutions), got {H}x{W}")
        self.generator = Generator(config.image_shape, config.latent_dim, config.width, config.num_classes)
        self.discriminator = Discriminator(config.image_shape, config.width, config.num_classes)

    # -- the two networks on the level grid
    def generate(self, z, y=None):
        """G(z) on [-1, 1] (continuous), [B, C, H, W]."""
        return self.generator(z, y)

    def _on_levels(self, v):
        """v on [-1, 1] rounded to the nearest level's value, the gradient passed straight through."""
        k = self.levels
        rounded = torch.round((v + 1) * (k - 1) / 2) * (2 / (k - 1)) - 1
        return v + (rounded - v).detach()

    def _latents(self, n, device, generator=None):
        return torch.randn((n, self.config.latent_dim), generator=generator, dtype=self.dtype).to(device)

    def _labels(self, y, n: int, device, default: bool = False):
        if not self.num_classes:
            return None
        if y is None and default:
            y = torch.arange(n) % self.num_classes
        return self.check_labels(y, n).to(device)

    def generator_loss(self, fake, y=None):
        """The generator's loss on its images (on the level grid, with their graph): -log D(G(z)), the non-saturating
        loss, or -D(G(z)) for the WGAN critic."""
        d = self.discriminator(fake, y)
        return F.softplus(-d).mean() if self.config.loss == "non-saturating" else -d.mean()

    def losses(self, x, y=None, z=None, generator=None, with_generator: bool = True) -> dict:
        """The two players' losses on a batch: "discriminator" (scalar; with the gradient penalty for wgan-gp),
        "discriminator_per_image" [B], and "generator" (scalar; unless not ``with_generator``)."""
        real = to_signed(x, self.levels, self.dtype)
        z = self._latents(len(x), x.device, generator) if z is None else z
        fake = self._on_levels(self.generate(z, y))
        d_real, d_fake = self.discriminator(real, y), self.discriminator(fake.detach(), y)
        if self.config.loss == "non-saturating":
            per = F.softplus(-d_real) + F.softplus(d_fake)  # -log D(x) - log(1 - D(G(z)))
            d = per.mean()
        else:
            per = d_fake - d_real
            d = per.mean()
            if self.config.gradient_penalty and torch.is_grad_enabled():
                u = torch.rand((len(x), 1, 1, 1), generator=generator, dtype=real.dtype).to(x.device)
                between = (u * real + (1 - u) * fake.detach()).requires_grad_(True)
                (grad,) = torch.autograd.grad(self.discriminator(between, y).sum(), between, create_graph=True)
                d = d + self.config.gradient_penalty * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
        out = {"discriminator": d, "discriminator_per_image": per.detach()}
        if with_generator:
            out["generator"] = self.generator_loss(fake, y)
        return out

    def loss(self, x, y=None):
        """The discriminator's loss (the game's value; seeded in eval mode) and each image's share; no likelihood
        (genzoo eval --ais-steps T gives one)."""
        self.check_images(x)
        y = self._labels(y, len(x), x.device)
        g = None if self.training else torch.Generator().manual_seed(0)
        out = self.losses(x, y, generator=g)
        return {"loss": out["discriminator"], "generator_loss": out["generator"].detach().expand(len(x)),
                "discriminator_loss": out["discriminator_per_image"]}

    # -- training: two optimizers, the discriminator first (``critic_steps`` of its updates a generator update)
    def configure_optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """[Adam on the generator, Adam on the discriminator]: betas (0.5, 0.999) (DCGAN) or (0, 0.9) (WGAN-GP);
        no weight decay (it is a regulariser of neither paper)."""
        betas = (0.5, 0.999) if self.config.loss == "non-saturating" else (0.0, 0.9)
        return [torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas),
                torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)]

    def training_step(self, step, x, y=None) -> dict:
        """One discriminator update, and a generator update every ``critic_steps`` steps (the same z for both;
        "generator_loss" only where it was taken)."""
        self.check_images(x)
        y = self._labels(y, len(x), x.device)
        z = self._latents(len(x), x.device)
        with step.autocast():
            d = self.losses(x, y, z, with_generator=False)["discriminator"]
        step.update(d, optimizer=1)
        out = {"loss": d.detach()}
        if (step.index + 1) % self.config.critic_steps == 0:  # against the updated discriminator
            with step.autocast():
                g = self.generator_loss(self._on_levels(self.generate(z, y)), y)
            step.update(g, optimizer=0)
            out["generator_loss"] = g.detach()
        return out

    # -- sampling
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None, temperature: float = 1.0):
        """n images uint8 [n, C, H, W]: G(z) at the nearest levels, z ~ N(0, temperature^2 I); y: [n] classes of a
        conditional model (default 0, 1, 2, ...)."""
        require_count(n)
        require(temperature > 0, f"temperature must be > 0, got {temperature!r}")
        device = next(self.parameters()).device
        y = self._labels(y, n, device, default=True)
        return from_signed(self.generate(temperature * self._latents(n, device, generator), y), self.levels)

    # -- the likelihood: AIS over z with the observation model
    def observation_log_prob(self, x, z, scale: float, y=None) -> torch.Tensor:
        """log P(x | z) [B]: a discretized logistic per sub-pixel at G(z) with scale ``scale``, summed."""
        return self.observed(x, self.generate(z, y), scale)

    def observed(self, x, mean, scale: float) -> torch.Tensor:
        """log P(x | G(z) = mean) [B] under the observation model (mean [B, C, H, W] on [-1, 1])."""
        log_scale = torch.full_like(mean, math.log(scale), dtype=torch.float64)
        return discretized_logistic_log_prob(x, mean.double(), log_scale, self.levels).flatten(1).sum(1)

    def _ais(self, x, y, scale, steps, chains, leapfrog, generator):
        ys = None if y is None else y.repeat(chains)
        return ais_log_likelihood(lambda xs, z: self.observation_log_prob(xs, z, scale, ys), x,
                                  self.config.latent_dim, steps, chains, leapfrog, generator, self.dtype)

    def held_out_images(self, options: dict) -> int:
        o = GANEvaluation(**options)
        return 32 if not o.observation_scale else 0

    @torch.no_grad()
    def fit_estimator(self, images, options: dict, y=None) -> dict:
        """The observation scale of the grid ``SCALES`` whose AIS bound (a quarter of the steps, at least 20) is
        tightest on the held-out ``images``: {"observation_scale": s, "observation_fitted_on": count}."""
        o = GANEvaluation(**options)
        if o.observation_scale:
            return {}
        self.eval()
        y = self._labels(y, len(images), images.device)
        scores = [self._ais(images, y, s, max(20, o.ais_steps // 4), 1, o.ais_leapfrog,
                            torch.Generator().manual_seed(1)).mean().item() for s in SCALES]
        return {"observation_scale": SCALES[max(range(len(SCALES)), key=lambda i: scores[i])],
                "observation_fitted_on": len(images)}

    def eval_figures(self, x, y=None, generator=None, ais_steps: int = 100, ais_chains: int = 4, ais_leapfrog: int = 5,
                     bdmc: int = 0, observation_scale: float = 0.0, observation_fitted_on: int = 0):
        require(observation_scale > 0, "gan: the observation model's scale is unset (fit_estimator fits it on "
                                       "held-out images; or give observation_scale)")
        self.eval()
        y = self._labels(y, len(x), x.device)
        return {"nll": -self._ais(x, y, observation_scale, ais_steps, ais_chains, ais_leapfrog, generator)}

    def log_prob(self, x, y=None, ais_steps: int = 100, ais_chains: int = 4, observation_scale: float = 0.1,
                 generator=None):
        """AIS's stochastic lower bound on log P(x) [B] with the observation model at ``observation_scale``."""
        x = self.images(x)
        self.eval()
        y = self._labels(y, len(x), x.device)
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        return self._ais(x, y, observation_scale, ais_steps, ais_chains, 5, g)

    def eval_summary(self, options: dict, means: dict, count: int) -> tuple[dict, str]:
        o = options
        fitted = o.get("observation_fitted_on", 0)
        where = f"fitted on {fitted} held-out images" if fitted else "given"
        entries, text = ais_summary(o, lambda n: self.bidirectional(n, o["observation_scale"], o["ais_steps"],
                                                                    o["ais_chains"], o["ais_leapfrog"]),
                                    f"; observation model: a discretized logistic at G(z), scale "
                                    f"{o['observation_scale']:g} on [-1, 1] ({where})")
        entries["observation"] = {"kind": "discretized logistic at G(z)", "scale": o["observation_scale"],
                                  "fitted_on": fitted}
        return entries, text

    def estimator_words(self, options: dict) -> str:
        if not options.get("ais_steps"):
            return ""
        return (f": annealed importance sampling, {options['ais_steps']} steps, {options['ais_chains']} chains, a "
                f"discretized logistic observation of scale {options.get('observation_scale', 0):g}")

    @torch.no_grad()
    def bidirectional(self, n: int, scale: float, steps: int, chains: int, leapfrog: int = 5) -> dict:
        """BDMC (``ais.bdmc``) on n images simulated from this GAN with its observation model (seeded)."""
        self.eval()
        g = torch.Generator().manual_seed(2)
        device = next(self.parameters()).device
        y = self._labels(None, n, device, default=True)

        def simulate(z):
            mean = self.generate(z.to(device), y)  # x ~ P(x | z): a logistic draw around G(z), at its level
            u = torch.rand(mean.shape, generator=g, dtype=mean.dtype).clamp(1e-6, 1 - 1e-6).to(device)
            return from_signed((mean + scale * (u.log() - (-u).log1p())).clamp(-1, 1), self.levels)

        ys = None if y is None else y.repeat(chains)
        return bdmc(lambda xs, z: self.observation_log_prob(xs, z, scale, ys), simulate, n, self.config.latent_dim,
                    steps, chains, leapfrog, g, self.dtype)
