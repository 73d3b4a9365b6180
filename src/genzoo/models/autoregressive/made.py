"""MADE: Germain, Gregor, Murray & Larochelle, "MADE: Masked Autoencoder for Distribution
Estimation", ICML 2015 (arXiv:1502.03509).

An MLP on the raster sequence of the D sub-pixels (``autoregressive.raster``) whose weights are
masked so that output d sees only inputs before d (section 4): input d has degree m(d) = d + 1,
each hidden unit k of layer l a degree m^l(k) drawn uniformly from [min m^{l-1}, D - 1] (eq. 12),
a hidden unit sees the units of the layer below with m^{l-1}(k') <= m^l(k) (eq. 13) and output d
the last hidden layer's units with m^L(k) < m(d) = d + 1 (eq. 14). ReLU hidden units; a Bernoulli
(binary images) or k-way categorical output per sub-pixel.

``direct``: the authors' direct connections from the inputs to the outputs (a strictly lower-triangular
[D, D] weight added to the output layer; the running inputs in the cached sampler).

Connectivity-agnostic training (section 4.2) with ``num_masks`` M > 1: M sets of hidden degrees
(seeded by the mask's index, so a saved model rebuilds them), one drawn per training step; at
evaluation the model is the ensemble, p(x) = (1/M) sum_m p_m(x), as in the paper's tables. The
ensemble is still an exact raster-order autoregressive model: its conditional is

    p(x_d | x_<d) = sum_m p_m(x_<d) p_m(x_d | x_<d) / sum_m p_m(x_<d),

with p_m(x_<d) the product of mask m's own conditionals over the prefix, so ``logits`` returns it
and the exact likelihood, both samplers and completion work unchanged. The input order stays the
raster order (order-agnostic training would make the ensemble's raster conditionals intractable).
On static binarized MNIST the paper's table 6 gives about 88.4 nats with one mask and 86.6 with
32 (quoted from the table as remembered; no copy of the paper is on this machine to re-check the
exact entries), and the authors' command for their best MNIST model (github.com/mgermain/MADE)
uses two hidden layers of 8000 units and 32 masks, which is not a CPU-hour model; all of the authors'
commands use the direct connections (``direct``). In raster order, without them, 500 units stop near 100
nats; with them, 90.9 (docs/RESULTS.md, "MADE again"); 1,000 units with them reach 89.67 in 4 CPU minutes
(the recipe ``made-binarized-mnist`` in ``genzoo/recipes.py``, shipped in ``pretrained/``).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ...likelihood import num_dims
from ...likelihood import categorical_nll
from .ar_base import (AutoregressiveConfig, AutoregressiveModel, SequenceSampler, bernoulli, draw_levels,
                      expand_bernoulli, level_inputs, raster, unraster)
from ..base import from_unit, require, require_positive_ints, to_unit
from ..registry import register


@dataclasses.dataclass
class MADEConfig(AutoregressiveConfig):
    hidden_units: int = 500  # per hidden layer
    num_layers: int = 1  # hidden layers
    num_masks: int = 1  # M connectivity masks: one drawn per training step, the M-model ensemble at evaluation
    # direct input-to-output connections: output d also sees the inputs d' < d through a strictly lower-
    # triangular [D, D] weight (the authors' commands for the paper's results use them: direct_input_connect
    # "Output" in github.com/mgermain/MADE's README). In raster order they matter: through the hidden layer an
    # output reaches its left neighbour only by the units of degree exactly d - 1, about H / D of them.
    # Off by default, so that a folder saved before the option loads as it was trained.
    direct: bool = False

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "hidden_units", "num_layers", "num_masks")
        require(isinstance(self.direct, bool), f"direct must be true or false, got {self.direct!r}")


def hidden_degrees(D: int, H: int, layers: int, mask: int) -> torch.Tensor:
    """The hidden units' degrees of one mask: [layers, H] in [1, D - 1], each layer's drawn from
    [min of the layer below, D - 1] (eq. 12), seeded by the mask's index."""
    g = torch.Generator().manual_seed(mask)
    low, out = 1, []
    for _ in range(layers):
        m = torch.randint(low, max(D - 1, low) + 1, (H,), generator=g)
        low = int(m.min())
        out.append(m)
    return torch.stack(out)


@register
class MADE(AutoregressiveModel):
    """MADE (Germain et al. 2015): a masked MLP, exact likelihood; an ensemble of M masks."""

    name = "made"
    Config = MADEConfig

    def __init__(self, config: MADEConfig):
        super().__init__(config)
        D, H, L = num_dims(config.image_shape), config.hidden_units, config.num_layers
        self.out_per = 1 if bernoulli(self) else self.output_size  # outputs per sub-pixel
        self.hidden = nn.ModuleList([nn.Linear(D if l == 0 else H, H) for l in range(L)])
        self.out = nn.Linear(H, D * self.out_per)
        degrees = torch.stack([hidden_degrees(D, H, L, m) for m in range(config.num_masks)])  # (M, L, H)
        self.register_buffer("degrees", degrees, persistent=False)
        # starts at zero: the model starts as the one without direct connections
        self.direct = nn.Parameter(torch.zeros(D * self.out_per, D)) if config.direct else None
        if config.direct:  # [D, 1, D]: output d sees the inputs d' < d (the same for every mask and output number)
            self.register_buffer("direct_mask", torch.ones(D, D).tril(-1)[:, None], persistent=False)

    def scale(self, x):
        """uint8 levels -> [0, 1] (binary images: 0 and 1, as in the paper)."""
        return to_unit(x, self.levels, self.dtype)

    def levels_of(self, x):
        return from_unit(x, self.levels).long()

    @property
    def ensemble(self) -> bool:
        """Evaluating with M > 1 masks: the model is their ensemble."""
        return self.config.num_masks > 1 and not self.training

    def masks(self, m: int, D: int) -> list[torch.Tensor]:
        """Mask m's weight masks for the first D sub-pixels: [H, D], [H, H] .., [D * k', H] (float)."""
        deg = self.degrees[m]  # (L, H)
        inputs = torch.arange(1, D + 1, device=deg.device)
        out = [(deg[0][:, None] >= inputs[None, :])]  # eq. 13 for the first layer
        out += [(deg[l][:, None] >= deg[l - 1][None, :]) for l in range(1, len(deg))]
        out.append((deg[-1][None, :] < inputs[:, None]).repeat_interleave(self.out_per, dim=0))  # eq. 14
        return [o.to(self.dtype) for o in out]

    def direct_term(self, v: torch.Tensor) -> torch.Tensor:
        """The direct connections' part of the output layer (the same for every mask): inputs v [B, D'] (the
        first D' sub-pixels) -> [B, D' P'], output d reading the inputs d' < d only."""
        Dfull, D, rows = self.direct.shape[1], v.shape[1], v.shape[1] * self.out_per
        w = self.direct.view(Dfull, self.out_per, Dfull)[:D, :, :D] * self.direct_mask[:D, :, :D]  # (D', P', D')
        return F.linear(v, w.reshape(rows, D))

    def outputs_of_mask(self, x: torch.Tensor, m: int, direct: torch.Tensor | None = None) -> torch.Tensor:
        """Mask m's output layer: x [B, C, H', W] (the first rows) -> [B, P, C, H', W]. direct: direct_term(x's
        sub-pixels), when the caller computed it once for several masks."""
        v = raster(x)  # (B, D')
        D = v.shape[1]
        masks = self.masks(m, D)
        h = v
        for l, (layer, mask) in enumerate(zip(self.hidden, masks)):
            weight = layer.weight[:, :D] if l == 0 else layer.weight  # the first rows: the first D' inputs only
            h = F.relu(F.linear(h, weight * mask, layer.bias))  # (B, H)
        rows = D * self.out_per
        out = F.linear(h, self.out.weight[:rows] * masks[-1], self.out.bias[:rows])  # (B, D' P')
        if self.direct is not None:
            out = out + (self.direct_term(v) if direct is None else direct)  # (B, D' P')
        return unraster(expand_bernoulli(self, out.view(len(v), D, self.out_per)).transpose(1, 2), self.image_shape)

    def log_probs_of_mask(self, x, m: int, direct: torch.Tensor | None = None) -> torch.Tensor:
        """Mask m's model: log-probabilities [B, k, C, H', W] over the levels at inputs x [B, C, H', W]."""
        return F.log_softmax(self.logits_from_outputs(self.outputs_of_mask(x, m, direct), x), dim=1)

    def outputs(self, x, y=None):
        """One mask's output layer [B, P, C, H', W]: drawn per training step (mask 0 if M = 1)."""
        M = self.config.num_masks
        return self.outputs_of_mask(x, int(torch.randint(M, ())) if M > 1 else 0)

    def logits(self, x, y=None):
        """x: float [B, C, H', W] (H' <= H: the first rows) -> [B, k, C, H', W]: the drawn mask's (training),
        the ensemble's conditionals (evaluation with M > 1)."""
        if not self.ensemble:
            return super().logits(x, y)
        M = self.config.num_masks
        direct = None if self.direct is None else self.direct_term(raster(x))  # once for the M masks
        lp = torch.stack([raster(self.log_probs_of_mask(x, m, direct).movedim(1,
                                                                              -1)) for m in range(M)])  # (M, B, D', k)
        levels = raster(self.levels_of(x))  # (B, D'): the drawn levels
        seen = lp.gather(-1, levels.expand(M, -1, -1)[..., None])[..., 0]  # (M, B, D'): log p_m(x_d | x_<d)
        # log p_m(x_<d) sums up to D terms (thousands of nats on colour images): in float64, as the cached
        # sampler keeps it, or float32's rounding of the two sums alone moves the weights by ~1e-4
        prefix = F.pad(torch.cumsum(seen[..., :-1].double(), dim=-1), (1, 0))  # (M, B, D')
        mixed = torch.logsumexp(prefix[..., None] + lp, 0) - torch.logsumexp(prefix, 0)[..., None]  # (B, D', k)
        return unraster(mixed.transpose(1, 2).to(lp.dtype), self.image_shape)

    def nll(self, x, y=None):
        return categorical_nll(self.logits(self.scale(x), y), x) if self.ensemble else super().nll(x, y)

    def sub_pixel_logits(self, x, y, c, i, j):
        return self.logits(x, y)[:, :, c, i, j] if self.ensemble else super().sub_pixel_logits(x, y, c, i, j)

    def cached_sampler(self, n, y=None):
        return _MADESampler(self, n)

    def sample_whole(self, noise, y, temperature, progress=None):
        """One mask's whole images by :func:`fused_sample` (one hidden layer, the softmax output, no ensemble)."""
        if self.ensemble or self.config.output != "softmax" or self.config.num_layers != 1:
            return None
        M = self.config.num_masks  # drawn after the noise, as the generic loop's cached_sampler draws it
        return fused_sample(self, noise, int(torch.randint(M, ())) if M > 1 else 0, temperature, progress)


def fused_sample(model: MADE, u: torch.Tensor, mask: int, temperature: float = 1.0, progress=None,
                 trace=None) -> torch.Tensor:
    """Mask ``mask``'s images, uint8 [n, C, H, W], one a uniform [n, C, H, W] of ``u`` (``ar_base.uniforms``), for a
    MADE of one hidden layer, drawn sub-pixel by sub-pixel in the order the masks allow (eq. 13-14): a hidden unit
    of degree m reads the inputs before m and is read by the outputs from m on, so at step d the units of degree d
    are final. Their activations are computed once then (from the inputs drawn so far) and their part of every later
    output's logit added at once; a drawn input adds its direct connections to the later outputs. A step is a few
    small products instead of a pass over all H units, and no mask is applied: each slice is what its mask keeps.

    Each level is the inverse-CDF draw of its uniform (``draw_levels``), as in every sampler of the family; for a
    Bernoulli (one logit o, level 0's fixed at 0) that draw is level 1 iff softmax([0, o] / T)[0] < u, that is
    o > T log((1 - u) / u): one comparison against thresholds computed before the first step.
    ``trace(d, logits [n, k])``: called at each step (a test reads the logits mid-sampling)."""
    if model.config.num_layers != 1:  # sample() takes the generic cached sampler for deeper ones
        raise ValueError("fused_sample draws from a MADE of one hidden layer")
    C, _, W = model.image_shape
    D, k1, n = num_dims(model.image_shape), model.out_per, len(u)
    degrees = model.degrees[mask, 0]  # (H,)
    order = torch.argsort(degrees, stable=True)  # the units of degree d are [start[d], start[d + 1]) in this order
    start = torch.searchsorted(degrees[order], torch.arange(D + 1, device=degrees.device)).tolist()
    w1, b1 = model.hidden[0].weight[order], model.hidden[0].bias[order]  # (H, D), (H,): units by degree
    wout = model.out.weight.T[order]  # (H, D k'): row k, what unit k adds to each output
    direct = None if model.direct is None else model.direct.T.contiguous()  # (D, D k'): row d, what input d adds
    logits_so_far = model.out.bias.expand(n, -1).clone()  # (n, D k'): the outputs' logits, gathered
    u = raster(u)  # (n, D)
    bernoulli_draw = k1 < model.output_size  # one logit a sub-pixel
    if bernoulli_draw:
        threshold = temperature * (torch.log1p(-u) - torch.log(u))  # (n, D): level 1 iff o > it
    values = level_inputs(model, u.device)[:, 0]  # (k,): the network's input for each level
    inputs = logits_so_far.new_zeros(n, D)
    levels = torch.zeros(n, D, dtype=torch.long, device=u.device)
    for d in range(D):
        a, b = start[d], start[d + 1]
        if b > a:  # the units of degree d: final now, read by the outputs from d on
            h = F.relu(F.linear(inputs[:, :d], w1[a:b, :d], b1[a:b]))  # (n, |B|)
            logits_so_far[:, d * k1:].addmm_(h, wout[a:b, d * k1:])
        logits = logits_so_far[:, d * k1:(d + 1) * k1]  # (n, k')
        if bernoulli_draw:
            if trace is not None:
                trace(d, torch.cat([torch.zeros_like(logits), logits], 1))
            inputs[:, d] = logits[:, 0] > threshold[:, d]  # the level, 0 or 1, is the binary image's input
        else:
            if trace is not None:
                trace(d, logits)
            levels[:, d] = draw_levels(logits, u[:, d], temperature)
            inputs[:, d] = values[levels[:, d]]
        if direct is not None and d + 1 < D:
            logits_so_far[:, (d + 1) * k1:].addr_(inputs[:, d], direct[d, (d + 1) * k1:])
        if progress is not None and (d + 1) % (W * C) == 0:
            progress((d + 1) // (W * C))
    if bernoulli_draw:
        levels = inputs.long()
    return unraster(levels[:, None], model.image_shape)[:, 0].to(torch.uint8)


class _MADESampler(SequenceSampler):
    """Per mask: the first layer's running pre-activation [n, H] (one masked column added per sub-pixel
    drawn) and, for the ensemble, log p_m(x_<d) [n]; the layers above and the output row d are computed
    at each step (a full pass per step would cost D times more in the first and last layers)."""

    def __init__(self, model: MADE, n: int):
        super().__init__(model)
        D, M = num_dims(model.image_shape), model.config.num_masks
        self.ensemble = model.ensemble
        masks = [model.masks(m, D) for m in (range(M) if self.ensemble else [self._mask()])]
        self.first = [model.hidden[0].weight * ms[0] for ms in masks]  # each (H, D)
        self.above = [[layer.weight * mk for layer, mk in zip(model.hidden[1:], ms[1:-1])] for ms in masks]
        self.outw = [model.out.weight * ms[-1] for ms in masks]  # each (D k', H)
        self.a = [model.hidden[0].bias.expand(n, -1).clone() for _ in masks]  # (n, H) each
        self.prefix = torch.zeros(len(masks), n, dtype=torch.float64)  # log p_m(x_<d), in float64 as in MADE.logits
        self.inputs = model.out.weight.new_zeros(n, D)  # the inputs absorbed so far, for the direct connections
        self.cached = None  # (d, log-probabilities [len(masks), n, k]) of the last output

    def _mask(self) -> int:
        M = self.model.config.num_masks
        return int(torch.randint(M, ())) if M > 1 else 0

    def _log_probs(self, d):
        if self.cached is not None and self.cached[0] == d:
            return self.cached[1]
        m, k = self.model, self.model.out_per
        pixel, out = self.pixel_input(d), []
        direct = 0 if m.direct is None else self.inputs[:, :d] @ m.direct[d * k:(d + 1) * k, :d].T  # (n, P')
        for a, above, outw in zip(self.a, self.above, self.outw):
            h = F.relu(a)
            for layer, w in zip(m.hidden[1:], above):
                h = F.relu(F.linear(h, w, layer.bias))
            o = expand_bernoulli(m, F.linear(h, outw[d * k:(d + 1) * k],
                                             m.out.bias[d * k:(d + 1) * k]) + direct)  # (n, P)
            lp = m.pixel_log_probs(o, pixel, d % self.C)  # (n, k): normalised below for the ensemble's weights
            out.append(F.log_softmax(lp, dim=-1) if self.ensemble else lp)
        self.cached = (d, torch.stack(out))  # (masks, n, k)
        return self.cached[1]

    def absorb(self, d, v):
        if self.ensemble:
            lp = self._log_probs(d)
            self.prefix += lp.gather(-1, self.model.levels_of(v).expand(len(lp), -1)[..., None])[..., 0]
        self.inputs[:, d] = v
        for a, w in zip(self.a, self.first):
            a += v[:, None] * w[:, d]

    def output(self, d):
        lp = self._log_probs(d)  # (masks, n, k)
        if not self.ensemble:
            return lp[0]
        mixed = torch.logsumexp(self.prefix[..., None] + lp, 0) - torch.logsumexp(self.prefix, 0)[..., None]
        return mixed.to(lp.dtype)

