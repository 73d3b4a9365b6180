"""Flow matching on the dequantized image: Lipman, Chen, Ben-Hamu, Nickel & Le, "Flow Matching for Generative
Modeling", ICLR 2023 (arXiv:2210.02747; 2.99 bits/dim on CIFAR-10); Liu, Gong & Liu, "Flow Straight and Fast",
ICLR 2023 (rectified flow); its likelihood by the instantaneous change of variables of Chen, Rubanova, Bettencourt
& Duvenaud, "Neural Ordinary Differential Equations", NeurIPS 2018 (eq. 4) with Hutchinson's estimator as in
Grathwohl et al., "FFJORD", ICLR 2019 (0.99 bits/dim on MNIST, 3.40 on CIFAR-10).

The image x (levels) is dequantized, u = (x + U[0, 1)) / k, and scaled to s = 2u - 1 in [-1, 1)^D. A probability
path joins s (t = 0) to noise eps ~ N(0, I) (t = 1), the same direction of time as genzoo's diffusion:

* ``ot``: z_t = (1 - t) s + t eps, straight lines (rectified flow; the optimal-transport conditional path of
  Lipman et al. with sigma_min = 0), velocity eps - s;
* ``vp``: z_t = cos(pi t / 2) s + sin(pi t / 2) eps (variance preserving), velocity
  (pi / 2) (cos(pi t / 2) eps - sin(pi t / 2) s).

Training regresses the network v(z_t, t) onto the conditional velocity (conditional flow matching, Lipman et al.
eq. 9): the loss is the mean squared error per dimension, with one uniform t per image (low-discrepancy over the
batch, as VDM's). That loss is no likelihood, so training reports none; ``genzoo eval`` computes one.

Sampling solves dz/dt = v(z, t) from eps at t = 1 to t = 0 with any ``steps`` of Euler or Heun, or the adaptive
Dormand-Prince pair within ``tolerance`` (``ode.py``), and takes s's level: floor(u k).

The likelihood: along the same ODE from z_0 = s to t = 1, d log p_t(z_t) / dt = -tr(dv/dz), so
log p(s) = log N(z_1; 0, I) + int_0^1 tr(dv/dz)(z_t, t) dt; the trace is exact (D backward passes) for small D and
otherwise Hutchinson's e^T (dv/dz) e with one Rademacher probe e per solve (unbiased for the trace, so the
estimate's mean is the ODE's log-density). Then, with log p_u(u) = log p(s) + D log 2,

    -log P(x) <= E_u[-log p_u(u)] + D log k                       (likelihood.dequantized_nll_bound)

is reported as a bound with its Monte-Carlo standard error over ``draws`` (dequantization noise and probe) per
image. It is a bound on the density the numerical ODE defines as far as the solver is exact: the solver's steps
and tolerance are printed beside it (FFJORD's caveat too). Completion is refused: no honest conditional of a flow's
ODE is at hand (replacement would not sample p(x_unknown | x_known)).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from ...likelihood import dequantization_offset
from ..base import GenerativeModel, Options, dequantize, require, require_count, require_num_classes
from ..registry import register
from .ode import ODE_SOLVERS, exact_divergence, hutchinson_divergence, integrate, rademacher
from .samplers import spherical_path
from .unet import UNetConfig
from .vdm import standard_error

PATHS = ("ot", "vp")
DIVERGENCES = ("auto", "exact", "hutchinson")
EXACT_UP_TO = 16  # divergence "auto": exact for images of at most this many sub-pixels, Hutchinson's above
LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass
class FlowMatchingConfig(UNetConfig):
    # the probability path from the dequantized image (t = 0) to noise (t = 1): ot, z_t = (1 - t) s + t eps (rectified
    # flow, straight lines) or vp, z_t = cos(pi t / 2) s + sin(pi t / 2) eps (variance preserving)
    path: str = "ot"
    num_classes: int = 0  # > 0: class-conditional (a class embedding in the U-Net)
    choices = {"path": PATHS}

    def __post_init__(self):
        super().__post_init__()
        require(self.path in PATHS, f"path must be one of {', '.join(PATHS)}, got {self.path!r}")
        require_num_classes(self)


def _check_solver(solver: str, steps: int, tolerance: float) -> None:
    require(solver in ODE_SOLVERS, f"solver must be one of {', '.join(ODE_SOLVERS)}, got {solver!r}")
    require(isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1,
            f"steps must be a positive integer, got {steps!r}")
    require(tolerance > 0, f"tolerance must be > 0, got {tolerance!r}")


@dataclasses.dataclass
class FlowSampling(Options):
    steps: int = 32  # ODE steps from noise (t = 1) to the image (t = 0) of a fixed-step solver
    # euler (one network pass a step), heun (two, second order) or adaptive (Dormand-Prince 5(4), its steps chosen
    # by --tolerance)
    solver: str = "heun"
    tolerance: float = 1e-3  # the adaptive solver's local error tolerance (relative and absolute)
    limits: ClassVar[dict] = {"steps": (1, 100_000), "tolerance": (0, 1)}
    exclusive: ClassVar[frozenset] = frozenset({"tolerance"})
    choices: ClassVar[dict] = {"solver": ODE_SOLVERS}

    def __post_init__(self):
        _check_solver(self.solver, self.steps, self.tolerance)


@dataclasses.dataclass
class ODELikelihood(Options):
    # dequantization noises (each with its own Hutchinson probe) per image, averaged; more than 1 gives the
    # bound's Monte-Carlo standard error
    draws: int = 1
    # steps of the fixed-step solver along the likelihood's ODE (data to noise); 64 crowded steps were within 6 nats of
    # the converged figure on the one-hour Fashion-MNIST model, where 512 equal steps were still 5 away (RESULTS)
    ode_steps: int = 64
    ode_solver: str = "heun"  # euler, heun or adaptive (Dormand-Prince 5(4) within --ode-tolerance)
    ode_tolerance: float = 1e-5  # the adaptive solver's local error tolerance on the likelihood's ODE
    # the trace of dv/dz: exact (D backward passes), hutchinson (one, unbiased) or auto (exact up to 16 sub-pixels)
    divergence: str = "auto"
    # the fixed-step solvers' time grid: node i at (i / N) ** this from the data (t = 0); 1 = equal steps, above 1
    # the steps crowd near the data, where the field changes fastest (the adaptive solver places its own steps)
    ode_spacing: float = 3.0
    limits: ClassVar[dict] = {"draws": (1, 100_000), "ode_steps": (1, 100_000), "ode_tolerance": (0, 1),
                              "ode_spacing": (1, 10)}
    exclusive: ClassVar[frozenset] = frozenset({"ode_tolerance"})
    choices: ClassVar[dict] = {"ode_solver": ODE_SOLVERS, "divergence": DIVERGENCES}

    def __post_init__(self):
        _check_solver(self.ode_solver, self.ode_steps, self.ode_tolerance)
        require(self.divergence in DIVERGENCES, f"divergence must be one of {', '.join(DIVERGENCES)}")


def _spacing(o: ODELikelihood) -> str:
    return f" crowded near the data (spacing {o.ode_spacing:g})" if o.ode_spacing != 1 else ""


def ode_log_density(velocity, s: torch.Tensor, solver: str = "heun", steps: int = 32, tolerance: float = 1e-5,
                    exact: bool = False, generator: torch.Generator | None = None,
                    power: float = 1.0) -> tuple[torch.Tensor, int]:
    """log p(s) [B] of the density a velocity field carries from N(0, I) at t = 1 to t = 0: the ODE dz/dt = v(z, t)
    solved from z_0 = s to t = 1 with the trace of dv/dz integrated beside it (instantaneous change of variables:
    log p(s) = log N(z_1; 0, I) + int_0^1 tr(dv/dz) dt). velocity: (z [N, ...], t float) -> [N, ...], acting on
    each example alone (N may be a multiple of B for the exact trace); s: [B, ...]. The trace is exact, or
    Hutchinson's with one Rademacher probe for the whole solve (drawn from ``generator``); ``power``: the fixed-step
    grid (``ode.time_grid``). Returns (log p(s), the evaluations of the field)."""
    probe = None if exact else rademacher(s.shape, generator, s.dtype).to(s.device)

    def f(t, state):
        z = state[0].detach()
        with torch.enable_grad():
            if exact:
                div = exact_divergence(lambda zz: velocity(zz, t), z)
                v = velocity(z, t)
            else:
                z = z.requires_grad_(True)
                v = velocity(z, t)
                div = hutchinson_divergence(v, z, probe)
        return v.detach(), div.detach()

    (z1, trace), evaluations = integrate(f, (s, torch.zeros(len(s), dtype=s.dtype, device=s.device)), 0.0, 1.0,
                                         solver, steps, tolerance, power=power)
    D = s[0].numel()
    log_normal = -0.5 * (z1.flatten(1).pow(2).sum(1) + D * LOG_2PI)
    return log_normal + trace, evaluations


@register
class FlowMatching(GenerativeModel):
    """Flow matching (Lipman et al. 2023): an ODE's velocity field; samples in a few steps, an ODE likelihood bound."""

    name = "flow-matching"
    Config = FlowMatchingConfig
    likelihood_kind = "bound"
    monte_carlo_bound = True  # log_prob(x, draws=K): the bound averaged over K dequantization noises and probes
    has_code = True  # encode / decode: the ODE's noise z_1 (interpolate, reconstruct, probe)
    sample_options = frozenset({"steps", "solver", "tolerance", "progress"})
    SampleOptions = FlowSampling
    EvalOptions = ODELikelihood

    def __init__(self, config: FlowMatchingConfig):
        super().__init__(config)
        self.net = config.unet(config.image_shape[0], config.image_shape[0])

    # -- the path and the field
    def path(self, s, eps, t):
        """(z_t, the conditional velocity dz_t/dt) for images s, noise eps [B, C, H, W] and times t [B]."""
        t = t.view(-1, 1, 1, 1)
        if self.config.path == "ot":
            return (1 - t) * s + t * eps, eps - s
        a, b = torch.cos(math.pi * t / 2), torch.sin(math.pi * t / 2)
        return a * s + b * eps, (math.pi / 2) * (a * eps - b * s)

    def velocity(self, z, t, y=None):
        """v(z, t) [N, C, H, W] at z [N, C, H, W], one time t (float) or times [N]; y: [B] classes, N a multiple
        of B (copies of the batch, in blocks) or None."""
        N = len(z)
        t = torch.full((N,), float(t), dtype=z.dtype, device=z.device) if not torch.is_tensor(t) else t
        if y is not None and len(y) != N:
            y = y.repeat(N // len(y))
        return self.net(z, t, y)

    def _scaled(self, x, generator=None):
        """Dequantized images on [-1, 1): s = 2 (x + U[0, 1)) / k - 1, [B, C, H, W]."""
        return 2 * dequantize(x, self.levels, generator, self.dtype) - 1

    def _labels(self, y, n: int, device, default=False):
        if not self.num_classes:
            return None
        if y is None and default:
            y = torch.arange(n) % self.num_classes
        return self.check_labels(y, n).to(device)

    # -- training
    def loss(self, x, y=None):
        """Conditional flow matching: mean over the batch of ||v(z_t, t) - dz_t/dt||^2 / D (seeded in eval mode);
        "velocity_mse" [B] per image. No nll: the regression is no likelihood (eval solves the ODE for one)."""
        self.check_images(x)
        y = self._labels(y, len(x), x.device)
        g = None if self.training else torch.Generator().manual_seed(0)
        B, dt = len(x), self.dtype
        s = self._scaled(x, g)
        eps = torch.randn(s.shape, generator=g, dtype=dt).to(x.device)
        u = torch.rand((), generator=g, dtype=dt)
        t = ((u + torch.arange(B, dtype=dt) / B) % 1).to(x.device)  # low-discrepancy times in [0, 1)
        z, target = self.path(s, eps, t)
        mse = (self.net(z, t, y) - target).float().pow(2).flatten(1).mean(1)
        return {"loss": mse.mean(), "velocity_mse": mse.detach()}

    # -- the likelihood
    @torch.no_grad()
    def estimate(self, x, y=None, draws: int = 1, ode_steps: int = ODELikelihood.ode_steps,
                 ode_solver: str = ODELikelihood.ode_solver, ode_tolerance: float = ODELikelihood.ode_tolerance,
                 divergence: str = ODELikelihood.divergence, generator=None,
                 ode_spacing: float = ODELikelihood.ode_spacing) -> dict:
        """The bound per image [B] in nats averaged over ``draws`` dequantization noises (each with its probe),
        "nll_var" its sample variance over them (0 for one) and "evaluations" [B] the field's evaluations a solve."""
        self.check_images(x)
        ODELikelihood(draws, ode_steps, ode_solver, ode_tolerance, divergence, ode_spacing)
        y = self._labels(y, len(x), x.device)
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        exact = divergence == "exact" or (divergence == "auto" and self.dims <= EXACT_UP_TO)
        offset = dequantization_offset(self.dims, self.levels) - self.dims * math.log(2)  # + D log k - D log 2
        rows, evaluations = [], 0
        for _ in range(draws):
            logp, n = ode_log_density(lambda z, t: self.velocity(z, t, y), self._scaled(x, g), ode_solver, ode_steps,
                                      ode_tolerance, exact, g, ode_spacing)
            rows.append(-logp.double() + offset)
            evaluations += n
        draws_ = torch.stack(rows)  # (K, B)
        return {"nll": draws_.mean(0), "nll_var": draws_.var(0) if draws > 1 else torch.zeros_like(draws_[0]),
                "evaluations": torch.full((len(x),), evaluations / draws, dtype=torch.float64)}

    def log_prob(self, x, y=None, generator=None, **options):
        """-(the bound) [B] in nats (x: anything ``images`` takes; ``options``: the EvalOptions, e.g. draws=K).
        Random over the noises and probes drawn, but seeded (seed 0) unless ``generator`` is given."""
        return -self.estimate(self.images(x), y, generator=generator, **options)["nll"].to(self.dtype)

    def eval_figures(self, x, y=None, generator=None, draws: int = 1, ode_steps: int = ODELikelihood.ode_steps,
                     ode_solver: str = ODELikelihood.ode_solver, ode_tolerance: float = ODELikelihood.ode_tolerance,
                     divergence: str = ODELikelihood.divergence, ode_spacing: float = ODELikelihood.ode_spacing):
        return self.estimate(x, y, draws, ode_steps, ode_solver, ode_tolerance, divergence, generator, ode_spacing)

    def eval_summary(self, options: dict, means: dict, count: int) -> tuple[dict, str]:
        o = ODELikelihood(**options)
        exact = o.divergence == "exact" or (o.divergence == "auto" and self.dims <= EXACT_UP_TO)
        how = (f"{o.ode_solver} ODE solver, " + (f"tolerance {o.ode_tolerance:g}" if o.ode_solver == "adaptive"
                                                 else f"{o.ode_steps} steps" + _spacing(o))
               + f", {means['evaluations']:.0f} field evaluations a solve, "
               + ("exact divergence" if exact else "Hutchinson divergence (one probe a draw)"))
        se, words = standard_error(o.draws, means, count)
        check = "--ode-tolerance shrinks" if o.ode_solver == "adaptive" else "--ode-steps doubles"
        return ({"draws": o.draws, "ode_solver": o.ode_solver, "ode_steps": o.ode_steps, "ode_spacing": o.ode_spacing,
                 "ode_tolerance": o.ode_tolerance, "divergence": "exact" if exact else "hutchinson",
                 "field_evaluations": means["evaluations"], **se},
                f", {o.draws} draw(s) per image; {how}{words} (a bound only once the solver has converged: the figure "
                f"must not move as {check})")

    def estimator_words(self, options: dict) -> str:
        if not options:
            return ""
        o = ODELikelihood(**options)
        how = f"tolerance {o.ode_tolerance:g}" if o.ode_solver == "adaptive" else f"{o.ode_steps} steps{_spacing(o)}"
        return (f": the ODE likelihood bound ({o.ode_solver}, {how}, {o.divergence} divergence) averaged over "
                f"{o.draws} seeded draws per image")

    # -- sampling and the code
    def _solve(self, z, t0: float, t1: float, y, steps: int, solver: str, tolerance: float, progress=None):
        (z,), _ = integrate(lambda t, state: (self.velocity(state[0], t, y),), (z,), t0, t1, solver, steps,
                            tolerance, progress=progress)
        return z

    def _levels(self, s):
        """s on [-1, 1) -> the level whose dequantization cell holds it: floor(u k), u = (s + 1) / 2; uint8."""
        return torch.floor((s + 1) / 2 * self.levels).clamp(0, self.levels - 1).to(torch.uint8)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None, steps: int = 32, solver: str = "heun",
               tolerance: float = 1e-3, progress=None) -> torch.Tensor:
        """Draw n images uint8 [n, C, H, W]: eps ~ N(0, I) carried from t = 1 to 0 by the ODE (``solver`` with
        ``steps`` or within ``tolerance``), then each sub-pixel's level. y: [n] classes of a conditional model
        (default 0, 1, 2, ...). ``progress``: called with the share done, in image rows."""
        require_count(n)
        _check_solver(solver, steps, tolerance)
        (C, H, W), device = self.image_shape, next(self.parameters()).device
        y = self._labels(y, n, device, default=True)
        eps = torch.randn((n, C, H, W), generator=generator, dtype=self.dtype).to(device)
        report = None if progress is None else (lambda share: progress(round(H * share)))
        return self._levels(self._solve(eps, 1.0, 0.0, y, steps, solver, tolerance, report))

    @torch.no_grad()
    def encode(self, x, y=None, steps: int = 32):
        """uint8 images [B, C, H, W] -> their noise z_1 [B, C, H, W]: the ODE (heun, ``steps``) from the centre of
        each image's dequantization cell, s = 2 (x + 1/2) / k - 1 (deterministic)."""
        self.check_images(x)
        s = 2 * (x.to(self.dtype) + 0.5) / self.levels - 1
        return self._solve(s, 0.0, 1.0, self._labels(y, len(x), x.device, default=True), steps, "heun", 1e-3)

    @torch.no_grad()
    def decode(self, z, y=None, steps: int = 32):
        """Noise z_1 [B, C, H, W] -> uint8 images: the ODE (heun, ``steps``) back to t = 0."""
        require(isinstance(steps, int) and steps >= 1, f"steps must be a positive integer, got {steps!r}")
        return self._levels(self._solve(z, 1.0, 0.0, self._labels(y, len(z), z.device, default=True), steps, "heun",
                                        1e-3))

    code_path = staticmethod(spherical_path)  # noise codes walk the sphere (a straight line leaves the shell)
