"""What every exact autoregressive image model shares: the likelihood of its output layer and sampling.

A subclass implements ``outputs(x, y) -> [B, P, C, H, W]`` from the network's float input
``x = self.scale(images)`` (by default the image scaled to [-1, 1], [B, C, H, W]) such that
the outputs of sub-pixel (c, i, j) depend only on sub-pixels before it in raster order
(pixels (i', j') < (i, j), then channels c' < c). P = ``output_size``, by ``output``:

* ``softmax``: P = k logits of a categorical over the k levels (van den Oord et al. 2016, eq. 1-2);
* ``mixture``: a mixture of K discretized logistics per sub-pixel (Salimans et al. 2017, PixelCNN++,
  section 2.1-2.2): P = (2 + C) K numbers, the K weights' logits, means and log-scales, and C - 1
  coefficients a_{c'} per component that couple the mean to the pixel's earlier channels,
  mean_c = mu_c + sum_{c' < c} tanh(a_{c'}) x_{c'} (the paper's linear dependence of G on R and of
  B on R, G). Unlike the paper, whose one set of weights serves the whole pixel, each sub-pixel has
  its own weights, computed from features that already see the pixel's earlier channels (the
  channel masks): the product over channels is still an exact, normalised raster-order model.
  A few dozen numbers per sub-pixel instead of k = 256 logits, and level 127 is near level 128.

``logits(x, y) -> [B, k, C, H, W]`` turns either into log-probabilities over the k levels; then
P(x) = prod_t P(x_t | x_<t) is exact and normalised, and -log P(x) sums over the sub-pixels.

Sampling draws the D sub-pixels one after another. The naive sampler runs the whole network
once per sub-pixel (on rows 0..i only: no model here looks below the current row). The
cached sampler (the default) asks the model for an incremental state, ``cached_sampler(n, y)``,
that computes only what each new sub-pixel changes: the new position of every layer for
convolutions (Ramachandran et al. 2017, "Fast generation for convolutional autoregressive
models"), one recurrent step for the PixelRNNs, one query against a key/value cache for the
Transformer, the running pre-activation for NADE and MADE (``SequenceSampler``). Both draw the
same images for the same generator.

Models of the flattened image (NADE, MADE) read it as the raster sequence of its D sub-pixels,
pixel by pixel and R, G, B within a pixel (``raster`` / ``unraster``): the same order.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F

from ...likelihood import (at_least_fp32, bits_per_dim, categorical_nll, coupled_mean, full_precision,
                           logistic_mixture_level_log_probs, logistic_mixture_log_prob)
from ..base import (GenerativeModel, ImageConfig, Options, from_signed, require, require_count, require_positive_ints,
                    to_signed)
from .layers import pointwise

OUTPUTS = ("softmax", "mixture")


@dataclasses.dataclass
class AutoregressiveSampling(Options):
    # below 1: safer, less varied samples (it divides the logits of an autoregressive model, scales the prior's
    # noise of a VAE or a flow)
    temperature: float = 1.0
    naive: bool = False  # one full pass of the network per sub-pixel instead of the cached sampler (the same images)
    limits: ClassVar[dict] = {"temperature": (0, None)}
    exclusive: ClassVar[frozenset] = frozenset({"temperature"})


@dataclasses.dataclass
class AutoregressiveConfig(ImageConfig):
    output: str = "softmax"  # per sub-pixel: softmax (k logits) or mixture (of discretized logistics, PixelCNN++)
    mixtures: int = 10  # K, the logistics of --output mixture (PixelCNN++: 10)
    choices = {"output": OUTPUTS}
    applies_when = {"mixtures": ("output", "mixture")}

    def __post_init__(self):
        super().__post_init__()
        require(self.output in OUTPUTS, f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        require_positive_ints(self, "mixtures")


class AutoregressiveModel(GenerativeModel):
    likelihood_kind = "exact"
    can_complete = True
    raster_order = True
    SampleOptions = AutoregressiveSampling
    sample_options = frozenset({"prefix", "known", "temperature", "naive", "progress"})
    # True when rows below i cannot change the logits of row i, so naive sampling of row i may
    # run the network on rows 0..i only (true of every model here; tested per model).
    crop_rows_when_sampling = True

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 levels [B, C, H, W] -> the network's float input: here [-1, 1], same shape, the weights' dtype."""
        return to_signed(x, self.levels, self.dtype)

    def levels_of(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input -> its levels (long [B, C, ..]): the inverse of ``scale``."""
        return from_signed(x, self.levels).long()

    @property
    def output_size(self) -> int:
        """P: the outputs per sub-pixel, k logits or (2 + C) K mixture numbers."""
        c = self.config
        return c.levels if c.output == "softmax" else (2 + self.image_shape[0]) * c.mixtures

    def outputs(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """The output layer [B, P, C, H, W] (module docstring)."""
        raise NotImplementedError

    def logits(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """log-probabilities (softmax: logits) over the k levels, [B, k, C, H', W], of the input x [B, C, H', W]."""
        return self.logits_from_outputs(self.outputs(x, y), x)

    def logits_from_outputs(self, out, x):
        """The output layer [B, P, C, ..] at inputs x -> [B, k, C, ..] over the levels."""
        if self.config.output == "softmax":
            return out
        levels = self.levels_of(x)
        return torch.stack([self.level_log_probs(out[:, :, c], levels, c) for c in range(out.shape[2])], dim=2)

    def sub_pixel_logits(self, x, y, c: int, i: int, j: int):
        """The naive sampler's step: one full pass on x [n, C, i+1.., W], then sub-pixel (c, i, j)'s [n, k]."""
        out = self.outputs(x, y)[:, :, c, i, j]  # (n, P): the output layer there only, then its k levels
        return self.pixel_log_probs(out, x[:, :, i, j], c)

    def pixel_log_probs(self, out_c, x_pixel, c: int):
        """A sampler's step: sub-pixel c's outputs [n, P] -> [n, k], x_pixel [n, C, ..] the network's input at its
        pixel. The softmax's logits pass through as they are (no work on the sampling path); the mixture reads the
        pixel's earlier levels."""
        return out_c if self.config.output == "softmax" else self.level_log_probs(out_c, self.levels_of(x_pixel), c)

    def _mixture(self, out_c, levels, c: int):
        """Channel c's mixture from its outputs [N, P, ..] and the pixel's levels [N, C, ..] (channels < c
        are read): (weight logits, means, log-scales), each [N, .., K]."""
        K = self.config.mixtures
        p = out_c.movedim(1, -1)  # (N, .., P)
        logit_w, mean, log_s, coeff = p[..., :K], p[..., K:2 * K], p[..., 2 * K:3 * K], p[..., 3 * K:]
        mean = coupled_mean(mean, [coeff[..., cp * K:(cp + 1) * K] for cp in range(c)],  # each (N, .., K)
                            [to_signed(levels[:, cp], self.levels, p.dtype)[..., None] for cp in range(c)])
        return logit_w, mean, log_s.clamp(min=-7.0)

    def level_log_probs(self, out_c, levels, c: int):
        """Channel c's log-probabilities over the k levels [N, k, ..] from its outputs [N, P, ..]."""
        if self.config.output == "softmax":
            return out_c
        lp = logistic_mixture_level_log_probs(*self._mixture(out_c, levels, c), self.levels)  # (k, N, ..)
        return lp.movedim(0, 1)

    def nll(self, x, y=None) -> torch.Tensor:
        """-log P(x) [B] in nats of images x; the mixture's only at the drawn levels (never all k)."""
        xs = self.scale(x)
        out = self.outputs(xs, y)
        if self.config.output == "softmax":
            return categorical_nll(out, x)
        with full_precision(out):
            out, levels = at_least_fp32(out), x.long()
            per = [logistic_mixture_log_prob(levels[:, c], *self._mixture(out[:, :, c], levels, c), self.levels)
                   for c in range(out.shape[2])]  # each (B, H, W)
            return -torch.stack(per, 1).flatten(1).sum(1)

    def cached_sampler(self, n: int, y=None) -> "IncrementalSampler":
        """The incremental state for sampling n images (labels y: [n] or None)."""
        raise NotImplementedError

    def sample_whole(self, noise: torch.Tensor, y, temperature: float, progress=None) -> torch.Tensor | None:
        """A model's own sampler of whole images (no completion, not naive), drawing sub-pixel (c, i, j) from
        noise[:, c, i, j] (``uniforms``) by ``draw_levels`` as the generic loop does, so that it draws the same
        images: uint8 [n, C, H, W]; or None, for the generic loop over ``cached_sampler`` (the default)."""
        return None

    def loss(self, x, y=None) -> dict:
        self.check_images(x)
        y = self.check_labels(y, x.shape[0])
        nll = self.nll(x, y)  # (B,)
        return {"loss": nll.mean() / self.dims, "nll": nll, "bits_per_dim": bits_per_dim(nll.detach(), self.dims)}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None, prefix=None, known=None,
               temperature: float = 1.0, naive: bool = False, progress=None) -> torch.Tensor:
        """Draw n images in raster order: uint8 [n, C, H, W].

        prefix (uint8 [n, C, H, W]) with known (bool [C, H, W] or [n, C, H, W]): completion,
        the known sub-pixels are kept and every other one is drawn from P(x_t | x_<t).
        For a class-conditional model, y ([n] ints) defaults to 0, 1, 2, ...
        naive: run the whole network once per sub-pixel instead of the cached sampler.
        progress: called with the number of finished rows after each row (e.g. a tqdm update).
        """
        require_count(n)
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
        noise = uniforms(n, self.image_shape, generator, device)  # (n, C, H, W): one per sub-pixel, up front
        whole = None if naive or prefix is not None else self.sample_whole(noise, y, temperature, progress)
        if whole is not None:
            return whole
        xs = self.scale(x)  # the network's input, updated in place as sub-pixels are drawn
        scaled = level_inputs(self, device)  # (k, C) + the input's trailing shape, looked up per draw
        all_known = keep.all(0).tolist()  # [C][H][W] bools, read without a tensor op per sub-pixel
        some_known = prefix is not None and keep.any().item()
        sampler = None if naive else self.cached_sampler(n, y)
        for i in range(H):
            rows = i + 1 if self.crop_rows_when_sampling else H
            for j in range(W):
                for c in range(C):
                    if all_known[c][i][j]:
                        continue
                    if sampler is None:
                        logits = self.sub_pixel_logits(xs[:, :, :rows], y, c, i, j)  # (n, k)
                    else:
                        logits = sampler.logits(xs, c, i, j)  # (n, k)
                    draw = draw_levels(logits, noise[:, c, i, j], temperature)  # (n,)
                    if some_known:  # a sub-pixel known in some images only keeps its value there
                        draw = torch.where(keep[:, c, i, j], x[:, c, i, j].long(), draw)
                    x[:, c, i, j] = draw
                    xs[:, c, i, j] = scaled[draw, c]
            if progress is not None:
                progress(i + 1)
        return x


class IncrementalSampler:
    """Pixel-by-pixel state of a network for the cached sampler.

    ``logits(x, c, i, j)`` returns the log-probabilities [n, k] of sub-pixel (c, i, j), given the
    network input ``x`` whose earlier sub-pixels are final. Calls come in raster order and
    may skip sub-pixels (known ones, in completion); the state catches up on what it skipped.

    Subclasses implement ``compute_pixel(x, i, j) -> [n, P, C]`` (the output layer there), which computes (and stores)
    every layer at pixel (i, j) only, reading their stored values at earlier pixels, and may
    implement ``finish_row(x, i)``, run once row i of x is final (for parts of a network that
    need a whole row, such as the vertical stack or a recurrence over the previous row).

    Why storing a pixel's activations once its last channel has been asked for is right: the
    features at pixel (i, j) never depend on the last channel of x at (i, j) (channel masks),
    so after that call they are final. A row's image is *not* final at that call: its last
    sub-pixel is drawn after it. So ``finish_row(x, i)``, which may read x's row i (the Gated
    PixelCNN's vertical stack does), runs at the next call, when the draw has been written.
    (Running it at once read the not-yet-drawn last sub-pixel of the row as 0: the Gated
    PixelCNN's cached logits then differed from the model's by up to 0.011 during sampling,
    while agreeing on finished images.)
    """

    def __init__(self, model: AutoregressiveModel):
        self.C, self.H, self.W = model.image_shape
        self.model, self.k = model, model.output_size
        self.done = 0  # pixels (raster index) whose stored activations are final
        self.unfinished_row = None  # a row whose last pixel was computed; finish_row once x's row is final
        # the model's layers.output_head (ReLU, 1x1, ReLU, 1x1) as two (weight, bias) pairs
        self.head = (pointwise(model.head[1]), pointwise(model.head[3]))

    def head_outputs(self, v: torch.Tensor) -> torch.Tensor:
        """The output head at one pixel: features [n, channels] -> outputs [n, P, C]."""
        (w1, b1), (w2, b2) = self.head
        out = F.linear(F.relu(F.linear(F.relu(v), w1, b1)), w2, b2)  # (n, C*k)
        return out.view(-1, self.C, self.k).transpose(1, 2)

    def compute_pixel(self, x, i, j) -> torch.Tensor:
        raise NotImplementedError

    def finish_row(self, x, i) -> None:
        pass

    def _finalize(self, p) -> None:
        i, j = divmod(p, self.W)
        if j == self.W - 1:
            self.unfinished_row = i
        self.done = p + 1

    def _finish_row_if_due(self, x) -> None:
        if self.unfinished_row is not None:
            self.finish_row(x, self.unfinished_row)
            self.unfinished_row = None

    def logits(self, x, c, i, j) -> torch.Tensor:
        p = i * self.W + j
        self._finish_row_if_due(x)  # every sub-pixel before (c, i, j) is drawn by now
        while self.done < p:  # pixels skipped since the last call (known in completion): make them final
            q = self.done
            self.compute_pixel(x, *divmod(q, self.W))
            self._finalize(q)
            self._finish_row_if_due(x)  # a skipped pixel is known: its row's image is final
        out = self.compute_pixel(x, i, j)  # (n, P, C)
        if c == self.C - 1:
            self._finalize(p)
        return self.model.pixel_log_probs(out[:, :, c], x[:, :, i, j], c)  # (n, k)


# ----------------------------------------------------------------------------- the image as a sequence

def uniforms(n: int, image_shape, generator, device) -> torch.Tensor:
    """The sampler's randomness, drawn before the first sub-pixel: uniform [n, C, H, W] in [0, 1) (on the CPU
    generator, then ``device``). Drawn up front, the noise of sub-pixel d does not depend on how the path before it
    spent random numbers: the naive pass, the cache and a fused sampler (MADE's) draw the same images from one seed."""
    return torch.rand(n, *image_shape, generator=generator).to(device)


def level_inputs(model: AutoregressiveModel, device) -> torch.Tensor:
    """The network's input for each level of each channel: [k, C] (+ the input's trailing shape), what a sampler
    writes for a drawn level."""
    C = model.image_shape[0]
    levels = torch.arange(model.levels, device=device, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, C, 1, 1)
    return model.scale(levels)[:, :, 0, 0]


def draw_levels(logits: torch.Tensor, u: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """One level a row by the inverse CDF: logits [n, k] (softmax(logits / temperature) the distribution), u [n]
    uniform in [0, 1) -> long [n], the number of cumulative probabilities below u."""
    cdf = torch.softmax(logits.float() / temperature, dim=1).cumsum(1)  # (n, k)
    return (cdf[:, :-1] < u[:, None]).sum(1)


def bernoulli(model) -> bool:
    """Binary images with a softmax output keep one logit per sub-pixel (a Bernoulli), as the papers."""
    return model.config.output == "softmax" and model.levels == 2


def expand_bernoulli(model, out: torch.Tensor) -> torch.Tensor:
    """[..., P'] -> [..., P]: a Bernoulli's one logit becomes two, level 0's fixed at 0."""
    return torch.cat([torch.zeros_like(out), out], dim=-1) if bernoulli(model) else out


def raster(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W, ..] -> [B, D, ..]: the sub-pixels in raster order, channels innermost (d = (i W + j) C + c).
    Cutting rows off the image cuts the end of the sequence (so a model of the sequence crops rows).

    Example: an RGB image of 1 x 2 pixels; R, G, B of pixel (0, 0), then of pixel (0, 1).
        >>> raster(torch.arange(6).view(1, 3, 1, 2)).tolist()
        [[0, 2, 4, 1, 3, 5]]
    """
    return x.permute(0, 2, 3, 1, *range(4, x.dim())).flatten(1, 3)  # (B, H, W, C, ..) -> (B, D, ..)


def unraster(v: torch.Tensor, image_shape) -> torch.Tensor:
    """[B, k, D'] logits over the first D' = C H' W sub-pixels -> [B, k, C, H', W]: ``raster``'s inverse.

    Example:
        >>> x = torch.arange(12).view(1, 3, 2, 2)
        >>> torch.equal(unraster(raster(x)[:, None], (3, 2, 2))[:, 0], x)
        True
    """
    C, _, W = image_shape
    B, k, D = v.shape
    return v.view(B, k, D // (C * W), W, C).permute(0, 1, 4, 2, 3)  # (B, k, C, H', W)


class SequenceSampler:
    """Cached sampling for a model of the raster sequence: ``absorb(d, v)`` folds the final value v [n]
    (the network's input) of sub-pixel d into the state, ``output(d)`` gives the log-probabilities [n, k]
    over the levels of sub-pixel d from it (``pixel_input(d)``: the network's input at d's pixel, for a mixture).
    ``logits(x, c, i, j)`` (what ``sample`` calls) first absorbs every sub-pixel before
    (c, i, j) not yet absorbed, read from x: drawn ones, and known ones that completion skips."""

    def __init__(self, model: AutoregressiveModel):
        self.C, self.H, self.W = model.image_shape
        self.model = model
        self.done = 0  # sub-pixels absorbed

    def absorb(self, d: int, v: torch.Tensor) -> None:
        raise NotImplementedError

    def output(self, d: int) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, x, c, i, j) -> torch.Tensor:
        d = (i * self.W + j) * self.C + c
        self.x = x
        for q in range(self.done, d):
            (qi, qj), qc = divmod(q // self.C, self.W), q % self.C
            self.absorb(q, x[:, qc, qi, qj])
        self.done = max(self.done, d)
        return self.output(d)  # (n, k)

    def pixel_input(self, d: int) -> torch.Tensor:
        """The network's input [n, C] at sub-pixel d's pixel as drawn so far (its channels before d are final)."""
        i, j = divmod(d // self.C, self.W)
        return self.x[:, :, i, j]
