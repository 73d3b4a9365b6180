"""NADE: Larochelle & Murray, "The Neural Autoregressive Distribution Estimator", AISTATS 2011;
Uria, Cote, Gregor, Murray & Larochelle, "Neural Autoregressive Distribution Estimation", JMLR 2016
(arXiv:1605.02226), section 3.

The image is the raster sequence of its D sub-pixels (``autoregressive.raster``), and

    h_d = sigmoid(c + W_{<d} x_{<d})          (eq. 4 of the JMLR paper: one hidden layer of H units)
    p(x_d = 1 | x_{<d}) = sigmoid(b_d + V_d h_d)                 binary images (2 levels)
    p(x_d = v | x_{<d}) = softmax_v(b_{d,v} + V_{d,v} h_d)       k levels, a categorical
    (or ``--output mixture``: V_d h_d + b_d are the P numbers of a discretized logistic mixture)

with the input weights W shared across the D conditionals: a_{d+1} = a_d + W_d x_d, so the whole
likelihood costs O(D H) (an exclusive cumulative sum here,
                         by blocks of one image row) and so does sampling, where the running
pre-activation a is the natural cache. x_d is the level scaled to [0, 1] (0 and 1 for binary
images, as in the paper). On static binarized MNIST the literature quotes about 88.3-88.9 nats
for a fixed-order NADE of 500 hidden units (Larochelle & Murray 2011; Uria et al. 2016); the recipe
``nade-binarized-mnist`` (``genzoo/recipes.py``: Adam at lr 1e-2, 8 epochs, one CPU core, 42.5 min) reaches
87.90 and ships in ``pretrained/``. The learning rate is what matters: at Adam's usual 1e-3 NADE is ~8
nats behind after the same epochs (docs/RESULTS.md, the second GPU lease).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .ar_base import (AutoregressiveConfig, AutoregressiveModel, SequenceSampler, bernoulli, expand_bernoulli, raster,
                      unraster)
from ...likelihood import num_dims
from ..base import from_unit, require_positive_ints, to_unit
from ..registry import register


@dataclasses.dataclass
class NADEConfig(AutoregressiveConfig):
    hidden_units: int = 500  # H, shared by the D conditionals (the papers' MNIST models: 500)

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "hidden_units")


@register
class NADE(AutoregressiveModel):
    """NADE (Larochelle & Murray 2011): shared input weights, O(DH) exact likelihood and sampling."""

    name = "nade"
    Config = NADEConfig

    def __init__(self, config: NADEConfig):
        super().__init__(config)
        D, H = num_dims(config.image_shape), config.hidden_units
        out = 1 if bernoulli(self) else self.output_size
        self.W = nn.Parameter(torch.randn(D, H) * 0.01)  # row d: x_d's weights into the hidden units
        self.c = nn.Parameter(torch.zeros(H))
        self.V = nn.Parameter(torch.randn(D, out, H) * H ** -0.5)
        self.b = nn.Parameter(torch.zeros(D, out))

    def scale(self, x):
        """uint8 levels -> [0, 1] (the paper's binary inputs are 0 and 1)."""
        return to_unit(x, self.levels, self.dtype)

    def levels_of(self, x):
        return from_unit(x, self.levels).long()

    def outputs(self, x, y=None):
        """x: float [B, C, H', W] (H' <= H: the first rows) -> outputs [B, P, C, H', W].

        a_d = c + sum_{d' < d} W_d' x_d' by blocks of one image row (L = C W sub-pixels): the row sums as one
        contraction and their exclusive cumulative sum over the rows, plus a strictly lower-triangular [L, L]
        product inside each row; laid out [D', B, H] so that the output layer is one batched product over d.
        2.3x faster per training step here than a cumulative sum of the [B, D', H] contributions (memory-bound)."""
        v = raster(x)  # (B, D')
        B, D = v.shape
        L = self.image_shape[0] * self.image_shape[2]
        rows, Wr = v.view(B, D // L, L), self.W[:D].view(D // L, L, -1)  # (B, K, L), (K, L, H)
        sums = torch.einsum("bkl,klh->kbh", rows, Wr)  # (K, B, H): each row's W x
        before = torch.cumsum(sums, 0) - sums + self.c  # (K, B, H): c + the rows above
        strictly = torch.ones(L, L, dtype=v.dtype, device=v.device).tril(-1)
        within = torch.einsum("bks,ts,ksh->ktbh", rows, strictly, Wr)  # (K, L, B, H): the row's earlier ones
        a = (within + before[:, None]).reshape(D, B, -1)  # (D', B, H)
        out = torch.baddbmm(self.b[:D, None, :], torch.sigmoid(a), self.V[:D].transpose(1, 2))  # (D', B, P')
        return unraster(expand_bernoulli(self, out).permute(1, 2, 0),
                        self.image_shape)  # (B, P, D') -> [B, P, C, H', W]

    def cached_sampler(self, n, y=None):
        return _NADESampler(self, n)


class _NADESampler(SequenceSampler):
    """The running pre-activation a = c + W_{<d} x_{<d} [n, H]: one row of W added per sub-pixel drawn."""

    def __init__(self, model: NADE, n: int):
        super().__init__(model)
        self.model = model
        self.a = model.c.expand(n, -1).clone()  # (n, H)

    def absorb(self, d, v):
        self.a += v[:, None] * self.model.W[d]

    def output(self, d):
        m = self.model
        out = expand_bernoulli(m, F.linear(torch.sigmoid(self.a), m.V[d], m.b[d]))  # (n, P)
        return m.pixel_log_probs(out, self.pixel_input(d), d % self.C)  # (n, k)
