"""The one likelihood scale every model reports on (docs/CONTRACT.md, "One likelihood scale").

* ``nll`` is -log P(x) in nats per image for the *discrete* image x.
* bits/dim = nll / (D ln 2) with D = C*H*W.
* A continuous density p on dequantized data u = (x + noise) / k gives the bound
  -log P(x) <= E_noise[-log p(u)] + D log k, because P(x) = int_{cell(x)} p(u) du
  over a cell of volume k^-D, and Jensen's inequality moves the log inside.
* Every model states ``likelihood_kind``: "exact", "bound" or "none".
"""

import math

import torch
import torch.nn.functional as F

LIKELIHOOD_KINDS = ("exact", "bound", "none")


def num_dims(image_shape) -> int:
    """D = C*H*W for an image shape (C, H, W).

    Example:
        >>> num_dims((3, 32, 32))
        3072
    """
    c, h, w = image_shape
    return int(c) * int(h) * int(w)


def bits_per_dim(nll_nats, dims: int):
    """Convert nats per image (float or tensor) to bits per dimension: nats / (D ln 2).

    Example: 784 binary pixels, each a fair coin, are 784 ln 2 nats, one bit per dimension.
        >>> round(bits_per_dim(784 * math.log(2), 784), 12)
        1.0
    """
    return nll_nats / (dims * math.log(2.0))


def dequantization_offset(dims: int, levels: int) -> float:
    """D log k: the term turning -log p(u) on [0,1)^D into a bound on -log P(x).

    Example: the uniform density on [0, 1)^D (log p = 0) bounds 8-bit images by exactly 8 bits/dim.
        >>> bits_per_dim(dequantized_nll_bound(0.0, 3072, 256), 3072)
        8.0
    """
    return dims * math.log(levels)


def dequantized_nll_bound(neg_log_density, dims: int, levels: int):
    """Upper bound on -log P(x) in nats from -log p(u), u = (x + U[0,1)) / k in [0,1)^D."""
    return neg_log_density + dequantization_offset(dims, levels)


def categorical_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Exact -log P(x) of a factorized (given its inputs) k-way categorical per sub-pixel.

    logits: float [B, k, C, H, W]; x: integer [B, C, H, W] in [0, k). Returns [B] nats, fp32 at least.
    The log-softmax and the sum over sub-pixels run in fp32 even under bf16 autocast, so a
    model trained in mixed precision still reports honest nats.

    Example: equal logits over k = 4 levels give every image of D = 6 sub-pixels 6 log 4 nats.
        >>> nll = categorical_nll(torch.zeros(2, 4, 1, 2, 3), torch.zeros(2, 1, 2, 3, dtype=torch.long))
        >>> torch.allclose(nll, torch.full((2,), 6 * math.log(4)))
        True
    """
    with full_precision(logits):
        nll = F.cross_entropy(at_least_fp32(logits), x.long(), reduction="none")  # (B, C, H, W)
        return nll.flatten(1).sum(1)


def discretized_logistic_log_prob(x, mean, log_scale, levels: int):
    """log P(x) per pixel for a logistic(mean, e^log_scale) on [-1, 1] cut into ``levels`` bins.

    x: integer [..]; mean, log_scale: [..] on the scale where level l sits at 2l/(k-1) - 1.
    P(x) = F(a) - F(b), a, b = (c +- d - mean) / s with c the level's centre and d = 1/(k-1) the
    bin's half width, the two edge bins taking the tails (Salimans et al. 2017, eq. 2). Written as
    log F(a) + log F(-b) + log(1 - e^(b - a)) (F(a) - F(b) = F(a) F(-b) (1 - e^(b - a))), exact for
    every bin, however far in a tail: the k probabilities sum to 1 to rounding (~1e-15 in float64).
    """
    c = x.to(mean.dtype) * (2.0 / (levels - 1)) - 1
    inv_s = torch.exp(-log_scale)
    a, b = (c + 1.0 / (levels - 1) - mean) * inv_s, (c - 1.0 / (levels - 1) - mean) * inv_s
    width = torch.log(-torch.expm1(-(2.0 / (levels - 1)) * inv_s))  # log(1 - e^(b - a)), the same for every bin
    log_a, log_b = F.logsigmoid(a), F.logsigmoid(-b)  # log F(a), log F(-b): each once, for the middle and the edges
    return torch.where(x == 0, log_a, torch.where(x == levels - 1, log_b, log_a + log_b + width))


def coupled_mean(mean, coefficients, earlier):
    """A channel's logistic means made linear in the pixel's earlier channels (Salimans et al. 2017, PixelCNN++,
    section 2.2): mean_c = mu_c + sum_{c' < c} tanh(a_{c'}) x_{c'}. mean: mu_c [..]; coefficients: the c raw a_{c'}
    (before the tanh), each [..]; earlier: the c earlier channels' values x_{c'} on [-1, 1], each broadcastable to
    [..]. The one place the coupling is written: the per-sub-pixel mixture of every autoregressive model and the
    pixel-level mixture of PixelCNN++ and PixelSNAIL both read it."""
    for a, value in zip(coefficients, earlier, strict=True):
        mean = mean + torch.tanh(a) * value
    return mean


def logistic_mixture_log_prob(x, logit_weights, means, log_scales, levels: int):
    """log P(x) per sub-pixel under a mixture of K discretized logistics (Salimans et al. 2017, PixelCNN++,
    section 2.1): log sum_j pi_j P_j(x), each P_j as in :func:`discretized_logistic_log_prob`.
    x: integer [..]; logit_weights, means, log_scales: [.., K]. Sums to 1 over the k levels."""
    per = discretized_logistic_log_prob(x[..., None], means, log_scales, levels)  # (.., K)
    return torch.logsumexp(F.log_softmax(logit_weights, dim=-1) + per, dim=-1)


def logistic_mixture_level_log_probs(logit_weights, means, log_scales, levels: int):
    """log P(l) for every level l = 0 .. k - 1 at once: [k, ..] from logit_weights, means, log_scales [.., K].

    :func:`logistic_mixture_log_prob` at each level, written for a sampler's step (with 256 levels it was most of
    PixelCNN++'s step): each of the k - 1 bin edges e is evaluated once (level l's upper edge is level l + 1's
    lower edge), log F(e) once and log F(-e) = log F(e) - e from it, the level-independent terms (the weights
    and the bin width) added once per component.
    """
    k = levels
    inv_s = torch.exp(-log_scales)
    edges = torch.arange(1, 2 * k - 2, 2, device=means.device, dtype=means.dtype) / (k - 1) - 1  # (2m + 1)/(k-1) - 1
    e = torch.addcmul(-means * inv_s, edges.view(-1, *[1] * means.dim()), inv_s)  # (k - 1, .., K): edge m's (e - mu)/s
    up = F.logsigmoid(e)  # log F(e)
    down = up - e  # log(1 - F(e)) = log F(-e)
    log_w = F.log_softmax(logit_weights, dim=-1)
    width = torch.log(-torch.expm1(-(2.0 / (k - 1)) * inv_s))  # log(1 - e^(b - a)), as in the per-level form
    per = torch.cat([up[:1] + log_w, up[1:] + down[:-1] + (log_w + width), down[-1:] + log_w])  # (k, .., K)
    return torch.logsumexp(per, dim=-1)  # (k, ..): the edge bins above took the tails


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 -> fp32; fp32 and fp64 stay as they are (a model run in float64 is scored in float64)."""
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t


def full_precision(t: torch.Tensor):
    """A context in which autocast is off on ``t``'s device: for likelihood reductions
    (log-softmax, sums over pixels, log-determinants) that must stay fp32 under bf16 training."""
    return torch.autocast(t.device.type, enabled=False)


def check_kind(kind: str) -> str:
    if kind not in LIKELIHOOD_KINDS:
        raise ValueError(f"likelihood_kind must be one of {LIKELIHOOD_KINDS}, got {kind!r}")
    return kind


def summary(nll_nats: float, dims: int, kind: str, count: int, conditional: bool = False) -> dict:
    """The one record every evaluation prints: nats, bits/dim, the kind of number, and N.
    ``conditional``: the figure is -log P(x | y) of a class-conditional model, not -log P(x)."""
    check_kind(kind)
    out = {
        "nll_nats": float(nll_nats),
        "bits_per_dim": float(bits_per_dim(nll_nats, dims)),
        "likelihood_kind": kind,
        "count": int(count),
        "dims": int(dims),
    }
    if conditional:
        out["conditional"] = True
    return out


def describe(s: dict) -> str:
    """One human line for a :func:`summary` record; a bound says it is one."""
    rel = {"exact": "=", "bound": "<=", "none": "n/a"}[s["likelihood_kind"]]
    if s["likelihood_kind"] == "none":
        return f"no likelihood (this model defines none); {s['count']} images"
    return (
        f"-log P(x{' | y' if s.get('conditional') else ''}) {rel} {s['nll_nats']:.3f} nats/image = "
        f"{s['bits_per_dim']:.4f} bits/dim "
        f"({s['likelihood_kind']}, {s['count']} images, D={s['dims']})"
    )
