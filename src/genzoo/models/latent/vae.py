"""The variational autoencoder, with a likelihood on the one scale.

Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (arXiv:1312.6114), and the
importance-weighted bound of Burda, Grosse & Salakhutdinov, "Importance Weighted
Autoencoders", ICLR 2016 (arXiv:1509.00519).

* q(z|x) = N(mu(x), diag sigma^2(x)), z = mu + sigma * eps, eps ~ N(0, I) (the
  reparameterization: a gradient through a sample; bench/estimators.py measures why);
* p(z) = N(0, I); p(x|z) a proper distribution over the *discrete* image: Bernoulli for
  k = 2, and for larger k a per-pixel categorical (k logits) or a discretized logistic
  (Salimans et al. 2017, one component), so the figure is in nats of P(x) like every other
  model's;
* ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log P(x), with the analytic
  KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2) (Kingma & Welling, appendix B);
  ``beta`` weights the KL in the training loss (beta-VAE) but the reported nll is always the
  beta = 1 bound, so it stays a bound;
* IWAE_K(x) = E[log 1/K sum_k p(x, z_k) / q(z_k|x)], z_k ~ q: ELBO = IWAE_1 <= IWAE_K <=
  IWAE_{K+1} <= log P(x) (Burda et al., theorem 1). ``log_prob(x, k=K)`` computes it in chunks
  of samples, so memory stays bounded for K = 5000;
* ``train_samples`` K > 1 trains on IWAE_K instead of the ELBO (the importance-weighted
  autoencoder): the same model, K decoder passes per image, a tighter bound to climb.

``likelihood_kind = "bound"``. Published (static binarized MNIST, nats): VAE <= 86.76 (Burda
et al., 2 stochastic layers, IWAE K = 5000); pytorch-generative 86.77. On the 2-core CPU
(docs/RESULTS.md, "Trained models toward the papers"): an importance-weighted autoencoder,
MLP 300 wide, latent 50, trained on IWAE_10 for 120 epochs (54 min on one core) reached
<= 88.95 nats (IWAE K = 1000, full test set; pretrained/vae-binarized-mnist); 500 wide it
overfits the static binarization more (89.64). The recipe is code, in ``genzoo/recipes.py``:
``genzoo reproduce vae-binarized-mnist`` trains it and scores it with K = 1000.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar
import math

import torch

from ...likelihood import at_least_fp32, bits_per_dim
from ..base import (GenerativeModel, ImageConfig, Options, from_unit, require, require_count, require_positive_ints,
                    to_signed)
from ..ais import AISOptions, ais_log_likelihood, ais_summary, bdmc
from .coders import (ARCHITECTURES, DECODERS, DiscreteImageLikelihood, check_coder_config, decoder, encoder)
from ..registry import register

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu, logvar):
    """KL(N(mu, diag e^logvar) || N(0, I)) per example [B], analytic."""
    return 0.5 * at_least_fp32(mu**2 + logvar.exp() - 1 - logvar).sum(1)


def gaussian_log_density(z, mu, logvar):
    """log N(z; mu, diag e^logvar) per example [B]."""
    return -0.5 * at_least_fp32((z - mu) ** 2 / logvar.exp() + logvar + LOG_2PI).sum(1)


@dataclasses.dataclass
class VAEConfig(ImageConfig):
    latent_dim: int = 32  # dimensions of z (Gaussian prior N(0, I))
    choices: ClassVar[dict] = {"architecture": ARCHITECTURES, "decoder_likelihood": DECODERS}
    architecture: str = "mlp"  # mlp or conv
    width: int = 256  # hidden units (mlp) or channels of the first convolution (conv) of encoder and decoder
    # auto: bernoulli for k = 2, categorical for k <= 32, discretized logistic above (a k-way softmax per
    # sub-pixel of 8-bit data is huge and slow: 51.9M parameters on Fashion-MNIST at width 256)
    decoder_likelihood: str = "auto"
    beta: float = 1.0  # weight of the KL term in the training loss (the reported bound always uses 1)
    # importance samples per image in the training objective: 1 trains the ELBO (a VAE), K > 1 the
    # IWAE bound IWAE_K (an importance-weighted autoencoder, Burda et al. 2016, eq. 8): K decoder
    # passes per image, a tighter bound to climb and more active latent units
    train_samples: int = 1

    def __post_init__(self):
        super().__post_init__()
        check_coder_config(self)
        require(self.decoder_likelihood in DECODERS, f"decoder_likelihood must be one of {', '.join(DECODERS)}")
        require(self.decoder_likelihood != "bernoulli" or self.levels == 2, "a bernoulli decoder needs levels = 2")
        require(isinstance(self.beta, (int, float)) and self.beta > 0, "beta must be > 0")
        require_positive_ints(self, "train_samples")
        require(self.train_samples == 1 or self.beta == 1, "beta weights the ELBO's KL term: with train_samples > 1 "
                                                           "(the IWAE bound) it must be 1")


@dataclasses.dataclass
class VAESampling(Options):
    temperature: float = 1.0  # z ~ N(0, temperature^2 I); below 1: safer, less varied samples
    mean: bool = False  # the decoder's mean E[x | z] instead of a true sample of p(x | z)
    limits: ClassVar[dict] = {"temperature": (0, None)}
    exclusive: ClassVar[frozenset] = frozenset({"temperature"})


@dataclasses.dataclass
class VAEEvaluation(AISOptions):
    # the importance-weighted bound with K samples per image (Burda et al. 2016; tighter as K grows); 0: the bound
    # the model trains on (the ELBO, or IWAE with its --train-samples)
    iwae_k: int = 0
    limits: ClassVar[dict] = {**AISOptions.limits, "iwae_k": (1, 1_000_000)}

    def __post_init__(self):
        require(not (self.iwae_k and self.ais_steps), "--iwae-k and --ais-steps are two estimators: choose one")
        require(not self.bdmc or self.ais_steps, "--bdmc runs AIS both ways: it needs --ais-steps T")


@register
class VAE(GenerativeModel):
    """VAE (Kingma & Welling 2014): Gaussian q(z|x), discrete decoder, ELBO and IWAE bounds."""

    name = "vae"
    Config = VAEConfig
    likelihood_kind = "bound"
    has_code = True
    importance_weighted = True
    sample_options = frozenset({"mean", "temperature"})
    SampleOptions = VAESampling
    EvalOptions = VAEEvaluation

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        C = config.image_shape[0]
        self.likelihood = DiscreteImageLikelihood(config.decoder_likelihood, config.levels)
        self.decoder_kind = self.likelihood.kind
        out_channels = self.likelihood.channels(C)
        self.encoder = encoder(config.image_shape, 2 * config.latent_dim, config.architecture, config.width)
        self.decoder = decoder(config.latent_dim, config.image_shape, out_channels, config.architecture, config.width)

    # -- the two distributions
    def posterior(self, x):
        """uint8 images -> (mu, logvar) of q(z|x), each [B, latent_dim]."""
        mu, logvar = self.encoder(to_signed(x, self.levels, self.dtype)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)  # sigma in [e^-6, e^4]: no overflow early in training

    def log_likelihood(self, x, z):
        """log p(x|z) [B] for integer images x [B, C, H, W] and codes z [B, latent_dim]."""
        return self.likelihood.log_prob(self.decoder(z), x)

    def elbo(self, x, generator=None, kl: str = "analytic"):
        """(elbo, log p(x|z), KL) per example [B], one z per image; kl "analytic" or "mc"
        (log q(z|x) - log p(z) at the same z: then elbo is exactly the K = 1 importance weight)."""
        mu, logvar = self.posterior(x)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps  # the reparameterization: dz/dmu = 1, dz/dsigma = eps
        rec = self.log_likelihood(x, z)
        if kl == "analytic":
            kl_term = gaussian_kl(mu, logvar)
        else:
            kl_term = gaussian_log_density(z, mu, logvar) - gaussian_log_density(z, torch.zeros_like(z),
                                                                                 torch.zeros_like(z))
        return rec - kl_term, rec, kl_term

    @property
    def loss_k(self) -> int:
        """The K of the bound ``loss`` reports as nll: IWAE_K with K = ``train_samples`` (1: the ELBO,
        analytic KL). ``genzoo eval`` names the figure by it."""
        return self.config.train_samples

    # -- the contract
    def loss(self, x, y=None):
        """Training objective and test figure: the ELBO, or IWAE_K with K = ``train_samples`` (both bounds)."""
        self.check_images(x)
        g = None if self.training else torch.Generator().manual_seed(0)  # a reproducible test figure
        if self.config.train_samples > 1:
            bound, rec, kl = self.importance_weighted_bound(x, self.config.train_samples, generator=g)
            loss = -bound.mean() / self.dims
        else:
            bound, rec, kl = self.elbo(x, g)
            loss = (-(rec - self.config.beta * kl)).mean() / self.dims
        nll = -bound  # the beta = 1 bound, in nats
        return {"loss": loss, "nll": nll, "bits_per_dim": bits_per_dim(nll.detach(), self.dims),
                "kl": kl.detach(), "reconstruction": -rec.detach()}

    def importance_weighted_bound(self, x, k: int, chunk: int = 500, generator=None):
        """(IWAE_k, mean log p(x|z_k), mean log q(z_k|x) - log p(z_k)) per example [B], differentiable.

        IWAE_k(x) = log 1/k sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x) (Burda et al. eq. 8),
        the k samples drawn in chunks of ``chunk`` so memory stays bounded for k = 5000.
        """
        mu, logvar = self.posterior(x)
        B, L = mu.shape
        log_w, rec, kl = [], [], []
        for start in range(0, k, chunk):
            m = min(chunk, k - start)
            eps = torch.randn((m, B, L), generator=generator, dtype=mu.dtype).to(mu.device)
            z = mu + torch.exp(0.5 * logvar) * eps  # (m, B, L)
            zf = z.flatten(0, 1)  # (m*B, L)
            xs = x.expand(m, *x.shape).flatten(0, 1)  # (m*B, C, H, W)
            r = self.log_likelihood(xs, zf).view(m, B)
            q = (gaussian_log_density(zf, mu.repeat(m, 1), logvar.repeat(m, 1))
                 - gaussian_log_density(zf, torch.zeros_like(zf), torch.zeros_like(zf))).view(m, B)
            log_w.append(r - q)
            rec.append(r)
            kl.append(q)
        bound = torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)
        return bound, torch.cat(rec).mean(0), torch.cat(kl).mean(0)

    @torch.no_grad()
    def log_prob(self, x, y=None, k: int = 1, chunk: int = 500, generator=None):
        """The importance-weighted bound IWAE_k [B] in nats (k = 1: a one-sample ELBO), chunked over samples; x:
        anything ``images`` takes. Random: each call draws its own z ~ q(z | x) unless ``generator`` is given
        (genzoo eval seeds one), so two calls differ by the Monte-Carlo error, smaller as k grows."""
        x = self.images(x)
        require(isinstance(k, int) and k >= 1, f"k must be a positive integer, got {k!r}")
        return self.importance_weighted_bound(x, k, chunk, generator)[0]

    def eval_figures(self, x, y=None, generator=None, iwae_k: int = 0, ais_steps: int = 0, ais_chains: int = 4,
                     ais_leapfrog: int = 5, bdmc: int = 0):
        """nll [B]: IWAE_K with ``iwae_k`` samples (16 images at a time: K samples each are in memory), AIS with
        ``ais_steps`` (``models/ais.py``: HMC from the prior N(0, I) to the posterior, ``ais_chains`` chains per
        image), else the training bound."""
        if ais_steps:
            return {"nll": -self.ais(x, ais_steps, ais_chains, ais_leapfrog, generator)}
        if not iwae_k:
            return super().eval_figures(x, y)
        return {"nll": torch.cat([-self.log_prob(part, k=iwae_k, generator=generator) for part in x.split(16)])}

    @torch.no_grad()
    def ais(self, x, steps: int, chains: int = 4, leapfrog: int = 5, generator=None) -> torch.Tensor:
        """AIS's stochastic lower bound on log P(x) [B] in nats (Wu et al. 2017), the chains started from the encoder's
        q(z | x) and annealed to the true posterior: one step is IWAE with K = chains, each step more tightens it
        (exact as steps grow)."""
        self.check_images(x)
        return ais_log_likelihood(self.log_likelihood, x, self.config.latent_dim, steps, chains, leapfrog, generator,
                                  self.dtype, posterior=self.posterior(x))

    def eval_summary(self, options: dict, means: dict, count: int) -> tuple[dict, str]:
        if options.get("ais_steps"):
            return ais_summary(options, lambda n: self.bidirectional(n, options["ais_steps"], options["ais_chains"],
                                                                     options["ais_leapfrog"]))
        if options.get("iwae_k"):
            return {"iwae_k": options["iwae_k"]}, f", IWAE bound with K = {options['iwae_k']}"
        if self.loss_k > 1:  # the bound it trained on: IWAE_K, not the ELBO
            return ({"iwae_k": self.loss_k},
                    f", IWAE bound with K = {self.loss_k} (its training objective; --iwae-k K for a tighter one)")
        return {}, ", the ELBO (analytic KL; --iwae-k K for the tighter bound)"

    def estimator_words(self, options: dict) -> str:
        if options.get("ais_steps"):
            return f": annealed importance sampling, {options['ais_steps']} steps, {options['ais_chains']} chains"
        return f": the importance-weighted bound, K = {options['iwae_k']}" if options.get("iwae_k") else ""

    @torch.no_grad()
    def bidirectional(self, n: int, steps: int, chains: int = 4, leapfrog: int = 5) -> dict:
        """BDMC (``ais.bdmc``) on n images simulated from this VAE, (z, x) ~ p(z) p(x | z) (seeded)."""
        g = torch.Generator().manual_seed(2)
        device = next(self.parameters()).device
        return bdmc(self.log_likelihood, lambda z: self.likelihood.sample(self.decoder(z.to(device)), g), n,
                    self.config.latent_dim, steps, chains, leapfrog, g, self.dtype, posterior_of=self.posterior)

    @torch.no_grad()
    def encode(self, x):
        """uint8 images -> the posterior means [B, latent_dim]."""
        self.check_images(x)
        return self.posterior(x)[0]

    @torch.no_grad()
    def decoder_mean(self, z):
        """E[x | z] on the [0, 1] scale, float [B, C, H, W]: what a 'VAE sample' often shows."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def decode(self, z):
        """codes -> uint8 images: the decoder's mean rounded to the nearest level."""
        return from_unit(self.decoder_mean(z), self.levels)

    @torch.no_grad()
    def sample(self, n, generator=None, mean: bool = False, temperature: float = 1.0, y=None):
        """z ~ N(0, temperature^2 I), then x ~ p(x|z) (a true sample), or the decoder's mean if ``mean``."""
        require_count(n)
        device = next(self.parameters()).device
        z = temperature * torch.randn((n, self.config.latent_dim), generator=generator, dtype=self.dtype).to(device)
        if mean:
            return self.decode(z)
        return self.likelihood.sample(self.decoder(z), generator)
