"""A variational diffusion model of the discrete image: Kingma, Salimans, Poole & Ho, "Variational
Diffusion Models", NeurIPS 2021 (arXiv:2107.00630). Its figure is an upper bound on -log P(x) in
nats per image, on the same scale as every other genzoo model (2.65 bits/dim on CIFAR-10 in the
paper; DDPM, Ho et al. 2020: <= 3.70).

The image's levels are scaled to x in [-1, 1]. The variance-preserving forward process is
z_t = alpha_t x + sigma_t eps, alpha_t^2 = sigmoid(-gamma_t), sigma_t^2 = sigmoid(gamma_t), with
gamma_t = -log SNR(t) increasing on t in [0, 1] (``schedule``: learned, cosine or linear). The
bound (VDM eq. 4 with the terms below) is

    -log P(x) <= KL(q(z_1 | x) || N(0, I))                                  prior
               + E_{q(z_0 | x)} [-log p(x | z_0)]                            reconstruction
               + L_diffusion                                                 diffusion

* prior: the Gaussian KL, summed over the D sub-pixels;
* reconstruction: p(x_i | z_0) is a categorical over the k levels, proportional to
  q(z_0,i | x_i = level) (VDM appendix C): it sums to one exactly over the levels, so the
  bound is on the discrete image, with no Gaussian approximation of the last step;
* diffusion, continuous time (``timesteps`` = 0, VDM eq. 17):
  L_inf = 1/2 E_{t ~ U(0, 1), eps} [gamma'(t) ||eps - eps_hat(z_t, t)||^2];
  T steps (eq. 13): L_T = T/2 E_{i, eps} [(exp(gamma_t - gamma_s) - 1) ||eps - eps_hat||^2],
  s = (i - 1)/T, t = i/T.

Training minimises the bound itself, with the variance-reducing choices of VDM: one uniform
offset per batch and t_b = (u + b/B) mod 1 (low-discrepancy times); for the learned schedule,
the endpoints gamma_0, gamma_1 follow the bound while the shape between them follows the
variance of the diffusion term (the continuous-time bound does not depend on the shape, only its
estimator's variance does; VDM section 5.2): its gradient is 2 (L - mean L) dL/dshape, scaled by
1/mean L.

Sampling (``samplers.py``, any ``steps`` N): ancestral, DDIM or DPM-Solver++(2M); classifier-free guidance
(Ho & Salimans 2022) of a model trained with ``class_dropout``: eps = (1 + w) eps(z, y) - w eps(z, none).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...likelihood import bits_per_dim
from ..base import GenerativeModel, Options, require, require_count, require_num_classes, to_signed
from ..registry import register
from .samplers import DiffusionSampling, alpha_sigma, log_snr_uniform_times, posterior_step, solve, spherical_path
from .unet import UNetConfig

SCHEDULES = ("learned", "cosine", "linear")


@dataclasses.dataclass
class DiffusionConfig(UNetConfig):
    schedule: str = "learned"  # learned (VDM's monotone network), cosine (Nichol & Dhariwal) or linear in log SNR
    gamma_min: float = -13.3  # -log SNR at t = 0 (VDM's initial value; learned: trained from here)
    gamma_max: float = 5.0  # -log SNR at t = 1
    timesteps: int = 0  # T of the discrete-time bound; 0: continuous time (VDM's L_inf)
    fourier_features: bool = False  # also feed sin/cos(2^n pi z), n = 7, 8 (VDM appendix: fine detail of 8-bit data)
    num_classes: int = 0  # > 0: class-conditional (a class embedding added to the time embedding)
    class_dropout: float = 0.1  # conditional: the share of training labels replaced by "none" (for --guidance)
    choices = {"schedule": SCHEDULES}

    def __post_init__(self):
        super().__post_init__()
        require(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        require(self.gamma_min < self.gamma_max, "gamma_min must be below gamma_max")
        require(isinstance(self.timesteps, int) and self.timesteps >= 0, "timesteps must be an integer >= 0")
        require(0 <= self.class_dropout < 1, "class_dropout must be in [0, 1)")
        require_num_classes(self)


class _ScaledShapeGradient(torch.autograd.Function):
    """Identity forward; backward scales the gradient reaching the schedule's shape per example by
    2 (L - mean L) / mean L, L the diffusion term (held in ``holder`` once computed): the gradient of
    the estimator's variance instead of its mean (VDM section 5.2)."""

    @staticmethod
    def forward(ctx, s, holder):
        ctx.holder = holder
        return s.view_as(s)

    @staticmethod
    def backward(ctx, grad):
        L = ctx.holder["L"]
        scale = 2 * (L - L.mean()) / L.mean().clamp_min(1e-8)
        return grad * scale.view(-1, *[1] * (grad.dim() - 1)), None


class NoiseSchedule(nn.Module):
    """gamma(t) = -log SNR(t) on t in [0, 1] and its derivative, [B] -> ([B], [B]).

    learned: gamma_0 + (gamma_1 - gamma_0) s(t), s the normalised monotone network of VDM
    (l1(t) + l3(sigmoid(l2(l1(t)))) with positive weights, 1024 sigmoids); cosine: alpha_t =
    cos(pi t' / 2) for t' spanning [gamma_min, gamma_max]; linear: linear in gamma."""

    def __init__(self, kind: str, gamma_min: float, gamma_max: float, width: int = 1024):
        super().__init__()
        self.kind = kind
        self.register_buffer("ends", torch.tensor([gamma_min, gamma_max]), persistent=False)
        if kind == "learned":
            self.gamma_0, self.gamma_1 = nn.Parameter(torch.tensor(gamma_min)), nn.Parameter(torch.tensor(gamma_max))
            self.w1, self.b1 = nn.Parameter(torch.tensor(1.0)), nn.Parameter(torch.tensor(0.0))
            self.w2, self.b2 = nn.Parameter(torch.randn(width)), nn.Parameter(torch.randn(width))
            self.w3 = nn.Parameter(torch.randn(width) * 0.01)

    def _shape(self, t):
        """The unnormalised monotone function and its derivative: (t [B] -> [B], [B])."""
        w1, w2, w3 = F.softplus(self.w1), F.softplus(self.w2), F.softplus(self.w3)
        a = torch.sigmoid(w2 * t[:, None] + self.b2)  # (B, width)
        value = w1 * t + self.b1 + (a * w3).sum(1)
        return value, w1 + (a * (1 - a) * w2 * w3).sum(1)

    def forward(self, t, holder: dict | None = None):
        g0, g1 = self.ends
        if self.kind == "linear":
            return g0 + (g1 - g0) * t, (g1 - g0).expand_as(t)
        if self.kind == "cosine":  # gamma = 2 log tan(pi t'/2), t' between the times where gamma = g0 and g1
            lo, hi = (2 / math.pi) * torch.atan(torch.exp(self.ends / 2))
            u = lo + (hi - lo) * t
            return 2 * torch.log(torch.tan(math.pi * u / 2)), (hi - lo) * 2 * math.pi / torch.sin(math.pi * u)
        ends, _ = self._shape(torch.stack([t.new_zeros(()), t.new_ones(())]))
        value, slope = self._shape(t)
        s, ds = (value - ends[0]) / (ends[1] - ends[0]), slope / (ends[1] - ends[0])  # s(0) = 0, s(1) = 1
        if holder is not None:  # training in continuous time: the shape follows the variance
            s, ds = _ScaledShapeGradient.apply(s, holder), _ScaledShapeGradient.apply(ds, holder)
        return self.gamma_0 + (self.gamma_1 - self.gamma_0) * s, (self.gamma_1 - self.gamma_0) * ds

    def endpoints(self):
        """(gamma_0, gamma_1): -log SNR at t = 0 and t = 1."""
        return (self.gamma_0, self.gamma_1) if self.kind == "learned" else (self.ends[0], self.ends[1])


@dataclasses.dataclass
class TimeSampledEvaluation(Options):
    # average the bound over K stratified times per image, with the Monte-Carlo standard error (1: one time per
    # image, the training estimate)
    t_samples: int = 1
    limits: ClassVar[dict] = {"t_samples": (1, 100_000)}
    with_standard_error: ClassVar[dict] = {"t_samples": 2}  # two times per image: the per-image variance is seen


def standard_error(k: int, means: dict, count: int) -> tuple[dict, str]:
    """The Monte-Carlo standard error of a bound averaged over k times per image, over ``count`` images (the images
    themselves are fixed): sqrt(mean per-image variance / k / count); none for one time."""
    if k <= 1:
        return {}, ""
    se = math.sqrt(means["nll_var"] / k / count)
    return {"standard_error": se}, f", Monte-Carlo standard error {se:.3f}"


@register
class Diffusion(GenerativeModel):
    """Variational diffusion model (Kingma et al. 2021) on the discrete image: a bound in nats."""

    name = "diffusion"
    Config = DiffusionConfig
    likelihood_kind = "bound"
    monte_carlo_bound = True  # log_prob(x, t_samples=K) / estimate(): the bound averaged over K times per image
    has_code = True  # encode / decode: the deterministic sampler's noise z_1 (interpolate, reconstruct, probe)
    can_complete = True  # by replacement: the known sub-pixels are re-noised from q(z_s | x) at every step
    sample_options = frozenset({"steps", "solver", "ddim", "guidance", "progress"})
    SampleOptions = DiffusionSampling
    EvalOptions = TimeSampledEvaluation

    def __init__(self, config: DiffusionConfig):
        super().__init__(config)
        C = config.image_shape[0]
        extra = 4 * C if config.fourier_features else 0  # sin and cos at 2 frequencies per channel
        self.schedule = NoiseSchedule(config.schedule, config.gamma_min, config.gamma_max)
        self.net = config.unet(C + extra, C)
        # the level values in [-1, 1]: the reconstruction's k categories
        self.register_buffer("values", to_signed(torch.arange(config.levels), config.levels), persistent=False)

    def eps_hat(self, z, t, y):
        """The predicted noise [B, C, H, W] at z [B, C, H, W], times t [B], classes y [B] (or None)."""
        if self.config.fourier_features:
            f = torch.cat([z * (2 ** n * math.pi) for n in (7, 8)], dim=1)  # (B, 2C, H, W)
            z = torch.cat([z, f.sin(), f.cos()], dim=1)
        return self.net(z, t, y)

    def _labels(self, y, n: int):
        """Class ids for the network: the labels (training drops some to "none"), or none at all."""
        if not self.num_classes:
            return None
        y = self.check_labels(y, n)
        if self.training and self.config.class_dropout:
            drop = torch.rand(n, device=y.device) < self.config.class_dropout
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        return y

    def terms(self, x, y=None, generator=None, t=None) -> dict:
        """The bound's three terms per image [B], in nats, with one t (and noise) per image.
        x: uint8 [B, C, H, W]; t: [B] times to use (default: low-discrepancy uniform ones)."""
        B, dt = x.shape[0], self.dtype
        xs = to_signed(x, self.levels, dt)  # (B, C, H, W) in [-1, 1]

        def draw(*shape):
            return torch.randn(shape, generator=generator, dtype=dt).to(x.device)

        if t is None:  # one uniform offset, then evenly spaced: t_b = (u + b/B) mod 1 (VDM's variance reduction)
            u = torch.rand((), generator=generator, dtype=dt)
            t = ((u + torch.arange(B, dtype=dt) / B) % 1).to(x.device)
        g0, g1 = self.schedule.endpoints()
        a1, s1 = alpha_sigma(g1)
        # KL(N(a1 x, s1^2) || N(0, 1))
        prior = 0.5 * (s1 ** 2 + (a1 * xs) ** 2 - 1 - torch.log(s1 ** 2)).flatten(1).sum(1)
        a0, s0 = alpha_sigma(g0)
        z0 = a0 * xs + s0 * draw(*xs.shape)
        recon = -self.level_log_probs(z0).gather(-1, x.long()[..., None]).flatten(1).sum(1)
        diffusion = self._diffusion_term(xs, t, self._labels(y, B), draw(*xs.shape))
        return {"prior": prior, "reconstruction": recon, "diffusion": diffusion}

    def level_log_probs(self, z0):
        """log p(x_i = level | z_0) [..., k] for z_0 [...]: proportional to q(z_0 | level), normalised over the
        k levels (VDM appendix C), so the reconstruction term is an exact discrete likelihood."""
        a0, s0 = alpha_sigma(self.schedule.endpoints()[0])
        return torch.log_softmax(-0.5 * ((z0[..., None] - a0 * self.values) / s0) ** 2, dim=-1)

    def _diffusion_term(self, xs, t, y, eps):
        """L_inf or L_T per image [B] (module docstring) at times t [B] with noise eps."""
        T = self.config.timesteps
        holder = {} if self.training and T == 0 and self.config.schedule == "learned" else None
        if T:
            t = torch.ceil(t * T).clamp(min=1) / T  # t_i = i / T, i in 1..T
            (g_t, _), (g_s, _) = self.schedule(t), self.schedule(t - 1 / T)
        else:
            g_t, slope = self.schedule(t, holder)
        a, s = alpha_sigma(g_t[:, None, None, None])
        mse = (eps - self.eps_hat(a * xs + s * eps, t, y)).pow(2).flatten(1).sum(1)  # (B,)
        L = 0.5 * T * torch.expm1(g_t - g_s) * mse if T else 0.5 * slope * mse
        if holder is not None:
            holder["L"] = L.detach()  # read by the schedule's backward (the variance gradient)
        return L

    def loss(self, x, y=None):
        """Training objective and test figure: the bound, one t per image (seeded in eval mode)."""
        self.check_images(x)
        g = None if self.training else torch.Generator().manual_seed(0)
        parts = self.terms(x, y, g)
        nll = parts["prior"] + parts["reconstruction"] + parts["diffusion"]
        return {"loss": nll.mean() / self.dims, "nll": nll, "bits_per_dim": bits_per_dim(nll.detach(), self.dims),
                **{k: v.detach() for k, v in parts.items()}}

    @torch.no_grad()
    def estimate(self, x, y=None, t_samples: int = 1, generator=None) -> dict:
        """The bound and its terms per image [B] in nats, each averaged over ``t_samples`` stratified times
        (and noises), with "nll_var": the sample variance of the total over those draws (0 for one), from
        which ``genzoo eval --t-samples K`` states the Monte-Carlo standard error."""
        self.check_images(x)
        require(isinstance(t_samples, int) and t_samples >= 1, f"t_samples must be a positive integer, got "
                                                               f"{t_samples!r}")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        draws = [self.terms(x, y, g, t=self._stratified(len(x), i, t_samples, g, x.device)) for i in range(t_samples)]
        out = {k: torch.stack([d[k] for d in draws]).mean(0) for k in draws[0]}
        totals = torch.stack([d["prior"] + d["reconstruction"] + d["diffusion"] for d in draws])  # (K, B)
        out["nll"] = totals.mean(0)
        out["nll_var"] = totals.var(0) if t_samples > 1 else torch.zeros_like(out["nll"])
        return out

    def eval_figures(self, x, y=None, generator=None, t_samples: int = 1):
        """The bound with its terms, and each image's Monte-Carlo variance over its ``t_samples`` times."""
        return self.estimate(x, y, t_samples, generator=generator)

    def eval_summary(self, options: dict, means: dict, count: int) -> tuple[dict, str]:
        k = options.get("t_samples", 1)
        entries = {"t_samples": k, "terms": {t: means[t] for t in ("prior", "reconstruction", "diffusion")}}
        text = (f", {k} time(s) per image: prior {means['prior']:.3f} + reconstruction "
                f"{means['reconstruction']:.3f} + diffusion {means['diffusion']:.3f}")
        se, words = standard_error(k, means, count)
        return {**entries, **se}, text + words

    def estimator_words(self, options: dict) -> str:
        if "t_samples" not in options:
            return ""
        k = options["t_samples"]
        return (f": the variational diffusion bound averaged over {k} seeded times per image "
                f"(`genzoo eval --t-samples {k}`)")

    def log_prob(self, x, y=None, t_samples: int = 1, generator=None):
        """-(the bound) [B] in nats, averaged over ``t_samples`` stratified times per image (x: anything ``images``
        takes). Random over the times and noises drawn, but seeded (seed 0) unless ``generator`` is given."""
        x = self.images(x)
        return -self.estimate(x, y, t_samples, generator)["nll"]

    def _stratified(self, n, i, k, g, device):
        """The i-th of k strata of [0, 1), a uniform time in it per image: [n]."""
        return ((i + torch.rand(n, generator=g, dtype=self.dtype)) / k).to(device)

    # -- sampling
    def _guided_eps(self, z, t, y, guidance: float):
        tt = torch.full((len(z),), t, dtype=z.dtype, device=z.device)
        eps = self.eps_hat(z, tt, y)
        if guidance:  # classifier-free guidance: (1 + w) eps(z, y) - w eps(z, none)
            eps = (1 + guidance) * eps - guidance * self.eps_hat(z, tt, torch.full_like(y, self.num_classes))
        return eps

    def _sampling_labels(self, y, n: int, device):
        """A conditional model's classes for n draws (default 0, 1, 2, ...), on device; None if unconditional."""
        if self.num_classes and y is None:
            y = torch.arange(n) % self.num_classes
        y = self.check_labels(y, n)
        return y.to(device) if y is not None else None

    def _code_labels(self, y, n: int, device):
        """Classes for encode / decode: the given ones, else the "none" class (the code of an image whose
        class is not given: the unconditional network a model trained with class_dropout also is)."""
        if self.num_classes and y is None:
            y = torch.full((n,), self.num_classes)
            return y.to(device)
        return self._sampling_labels(y, n, device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None, prefix=None, known=None,
               steps: int = 100, solver: str = "ancestral", ddim: bool = False, guidance: float = 0.0,
               progress=None) -> torch.Tensor:
        """Draw n images uint8 [n, C, H, W] in ``steps`` steps from t = 1 to 0 with ``solver`` (samplers.py:
        ancestral; ddim, the same as ``ddim=True``; dpm++), a deterministic solver's last step taking the most
        likely level. ``guidance`` w: classifier-free guidance of a conditional model (y: [n] classes, default
        0, 1, 2, ...). ``prefix`` with ``known`` (bool [C, H, W] or [n, C, H, W]): completion by replacement, the
        known sub-pixels' z_s drawn from q(z_s | x) at every step (Lugmayr et al. 2022, RePaint, without
        resampling). ``progress``: called with the share of the work done, in image rows."""
        require_count(n)
        require(isinstance(steps, int) and steps >= 1, f"steps must be a positive integer, got {steps!r}")
        require(not guidance or self.num_classes, "guidance needs a class-conditional model")
        DiffusionSampling(steps=steps, solver=solver, ddim=ddim, guidance=guidance)  # the solver's name, checked
        solver = "ddim" if ddim else solver
        C, H, W = self.image_shape
        dt, device = self.dtype, next(self.parameters()).device
        y = self._sampling_labels(y, n, device)

        def draw():
            return torch.randn((n, C, H, W), generator=generator, dtype=dt).to(device)

        keep = after = None
        if prefix is not None:
            self.check_images(prefix)
            require(prefix.shape[0] == n and known is not None, "completion needs prefix of n images and a known mask")
            keep = torch.as_tensor(known, dtype=torch.bool, device=device).expand(n, C, H, W)
            x_known = to_signed(prefix.to(device), self.levels, dt)

            def after(z, g_s):
                a_s, s_s = alpha_sigma(g_s)
                return torch.where(keep, a_s * x_known + s_s * draw(), z)
        z1 = draw()
        times = log_snr_uniform_times(lambda t: self.schedule(t)[0], steps, z1) if solver == "dpm++" else None
        z = solve(z1, steps, solver, lambda z, t: self._guided_eps(z, t, y, guidance), lambda t: self._gamma(t, z1),
                  draw, after, None if progress is None else lambda share: progress(round(H * share)), times)
        return self._decode(z, solver != "ancestral", generator, prefix if keep is not None else None, keep)

    def _gamma(self, t: float, like):
        """gamma at one time t, a 1-element tensor of like's dtype and device."""
        return self.schedule(torch.full((1,), t, dtype=like.dtype, device=like.device))[0]

    # -- the code: the deterministic sampler's noise (Song et al. 2021, DDIM section 5: z_1 <-> x is an ODE's flow)
    @torch.no_grad()
    def encode(self, x, y=None, steps: int = 50):
        """uint8 images [B, C, H, W] -> their noise z_1 [B, C, H, W]: the DDIM update run from t = 0 to 1
        (deterministic; ``decode`` runs it back, exactly so only as steps -> infinity)."""
        self.check_images(x)
        require(isinstance(steps, int) and steps >= 1, f"steps must be a positive integer, got {steps!r}")
        z = alpha_sigma(self.schedule.endpoints()[0])[0] * to_signed(x, self.levels, self.dtype)  # z_0 = alpha_0 x
        y = self._code_labels(y, len(x), z.device)
        for i in range(steps):
            eps = self._guided_eps(z, i / steps, y, 0.0)
            g_t, g_s = self._gamma(i / steps, z), self._gamma((i + 1) / steps, z)
            z = posterior_step(z, eps, g_t, g_s, True, None, clip=False)
        return z

    @torch.no_grad()
    def decode(self, z, y=None, steps: int = 50):
        """Noise z_1 [B, C, H, W] -> uint8 images: the DDIM sampler started from z."""
        require(isinstance(steps, int) and steps >= 1, f"steps must be a positive integer, got {steps!r}")
        y = self._code_labels(y, len(z), z.device)
        z = solve(z, steps, "ddim", lambda z_, t: self._guided_eps(z_, t, y, 0.0), lambda t: self._gamma(t, z),
                  lambda: None)
        return self._decode(z, True, None, None, None)

    code_path = staticmethod(spherical_path)  # noise codes walk the sphere (DDIM section 5.3)

    def _decode(self, z0, most_likely: bool, generator, prefix, keep):
        """z_0 -> levels: a draw from p(x | z_0) over the k levels (or its most likely level)."""
        logits = self.level_log_probs(z0)  # (n, C, H, W, k)
        if most_likely:
            x = logits.argmax(-1)
        else:
            probs = torch.softmax(logits.float(), dim=-1).flatten(0, 3).cpu()
            x = torch.multinomial(probs, 1, generator=generator).view(z0.shape).to(z0.device)
        x = x.to(torch.uint8)
        return torch.where(keep, prefix.to(x.device), x) if keep is not None else x
