"""Pixel Transformer: a decoder-only causal Transformer over the raster sequence of sub-pixels.

In the line of Parmar et al., "Image Transformer", ICML 2018 (arXiv:1802.05751) and Chen et
al., "Generative Pretraining from Pixels", ICML 2020 (iGPT), here with global (not local)
attention. The image is read as D = C H W tokens in raster order, channel c of pixel (i, j)
after channels < c (position t = (i W + j) C + c). The input at position t is the embedding of
the level of sub-pixel t - 1 (a learned start vector at t = 0), plus learned row, column and
channel embeddings of sub-pixel t, plus a class embedding for a conditional model. Pre-norm
blocks (x + attn(LN x), x + MLP(LN x)) with ``scaled_dot_product_attention`` under a causal
mask, a final LayerNorm and a linear head to k logits: the output at t is P(x_t | x_<t).

Its network input (``scale``) is the one-hot image [B, C, H, W, k], so the level embedding is a
matrix product and the causality tests can differentiate with respect to the input.

Sampling keeps a key/value cache per layer: each new sub-pixel costs one query against the
cached keys instead of a pass over the whole sequence.

Recipe toward the binarized-MNIST figures of the PixelCNN family (needs a GPU; NOT yet run
to the end here; docs/RESULTS.md has what the CPU measured):
    genzoo train pixel-transformer --data binarized-mnist --out runs/transformer \\
        --embed-dim 128 --num-layers 8 --num-heads 8 --epochs 50 --batch-size 64 --lr 5e-4 --warmup-steps 2000
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .autoregressive import AutoregressiveModel
from .base import ImageConfig, require, require_num_classes, require_positive_ints
from .registry import register


@dataclasses.dataclass
class PixelTransformerConfig(ImageConfig):
    embed_dim: int = 64  # d
    num_layers: int = 4
    num_heads: int = 4  # nh; d must divide by it
    mlp_ratio: int = 4  # the MLP's hidden width is mlp_ratio * d
    num_classes: int = 0  # > 0: class-conditional, a class embedding added at every position

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "embed_dim", "num_layers", "num_heads", "mlp_ratio")
        require(self.embed_dim % self.num_heads == 0, "embed_dim must be a multiple of num_heads")
        require_num_classes(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, nh: int):
        super().__init__()
        self.nh = nh
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def heads(self, x):
        """[B, T, d] -> q, k, v, each [B, nh, T, hs]."""
        B, T, d = x.shape
        return (t.view(B, T, self.nh, d // self.nh).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=2))

    def merge(self, y):
        B, nh, T, hs = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, nh * hs))  # (B, T, d)

    def forward(self, x):
        q, k, v = self.heads(x)
        return self.merge(F.scaled_dot_product_attention(q, k, v, is_causal=True))

    def step(self, x, cache: dict, start: int):
        """Positions start .. start+T-1 of x [B, T, d] against the key/value cache (updated in place)."""
        q, k, v = self.heads(x)  # (B, nh, T, hs)
        T, end = x.shape[1], start + x.shape[1]
        cache["k"][:, :, start:end], cache["v"][:, :, start:end] = k, v
        # query a (absolute position start + a) sees keys 0 .. start + a
        mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(start)
        y = F.scaled_dot_product_attention(q, cache["k"][:, :, :end], cache["v"][:, :, :end], attn_mask=mask)
        return self.merge(y)


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(LN x), then x + MLP(LN x). [B, T, d] -> same."""

    def __init__(self, d: int, nh: int, mlp_ratio: int):
        super().__init__()
        self.ln1, self.attn, self.ln2 = nn.LayerNorm(d), CausalSelfAttention(d, nh), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d))

    def forward(self, x, cache=None, start=0):
        a = self.ln1(x)
        x = x + (self.attn(a) if cache is None else self.attn.step(a, cache, start))
        return x + self.mlp(self.ln2(x))


@register
class PixelTransformer(AutoregressiveModel):
    """Pixel Transformer: causal self-attention over the raster sequence of sub-pixels, exact likelihood."""

    name = "pixel-transformer"
    Config = PixelTransformerConfig

    def __init__(self, config: PixelTransformerConfig):
        super().__init__(config)
        C, H, W = config.image_shape
        d, k = config.embed_dim, config.levels
        self.level_embedding = nn.Linear(k, d, bias=False)  # a one-hot level times this = its embedding
        self.start = nn.Parameter(torch.zeros(d))
        self.row, self.col, self.channel = nn.Embedding(H, d), nn.Embedding(W, d), nn.Embedding(C, d)
        self.class_embedding = nn.Embedding(config.num_classes, d) if config.num_classes else None
        self.blocks = nn.ModuleList([Block(d, config.num_heads, config.mlp_ratio) for _ in range(config.num_layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, k)
        nn.init.normal_(self.start, std=0.02)

    def scale(self, x):
        """uint8 levels [B, C, H, W] -> one-hot float [B, C, H, W, k]."""
        return F.one_hot(x.long(), self.levels).to(self.dtype)

    def position_embedding(self, rows: int, y=None) -> torch.Tensor:
        """[1 or B, rows*W*C, d]: row + column + channel (+ class) embedding of each target sub-pixel."""
        C, _, W = self.image_shape
        pos = (self.row.weight[:rows, None, None] + self.col.weight[None, :W, None]
               + self.channel.weight[None, None, :C])  # (rows, W, C, d)
        pos = pos.flatten(0, 2)[None]  # (1, rows*W*C, d): raster order, channels innermost
        if self.class_embedding is not None:
            pos = pos + self.class_embedding(y)[:, None]
        return pos

    def logits(self, x, y=None):
        """x: one-hot [B, C, H, W, k] (H may be cropped) -> logits [B, k, C, H, W]."""
        B, C, H, W, k = x.shape
        tokens = self.level_embedding(x.permute(0, 2, 3, 1, 4).reshape(B, H * W * C, k))  # (B, T, d), raster order
        h = torch.cat([self.start.expand(B, 1, -1), tokens[:, :-1]], dim=1)  # input t = sub-pixel t - 1
        h = h + self.position_embedding(H, y)
        for block in self.blocks:
            h = block(h)
        out = self.head(self.ln_f(h))  # (B, T, k)
        return out.view(B, H, W, C, k).permute(0, 4, 3, 1, 2)  # (B, k, C, H, W)

    def cached_sampler(self, n, y=None):
        return _KVCacheSampler(self, n, y)


class _KVCacheSampler:
    """Sub-pixel t costs one query per layer against the cached keys and values of 0 .. t-1.

    Sub-pixels skipped since the last call (known, in completion) are fed in one chunk.
    """

    def __init__(self, model: PixelTransformer, n: int, y):
        C, H, W = model.image_shape
        self.model, self.C, self.W, self.fed = model, C, W, 0  # fed: positions already in the cache
        ref = model.head.weight
        nh, d = model.config.num_heads, model.config.embed_dim
        shape = (n, nh, C * H * W, d // nh)
        self.caches = [{"k": ref.new_zeros(shape), "v": ref.new_zeros(shape)} for _ in model.blocks]
        self.pos = model.position_embedding(H, y).expand(n, -1, -1)  # (n, D, d)

    def logits(self, x, c, i, j):
        """x: one-hot [n, C, H, W, k] with every sub-pixel before (c, i, j) final -> logits [n, k]."""
        m, t = self.model, (i * self.W + j) * self.C + c
        n = x.shape[0]
        seq = x.permute(0, 2, 3, 1, 4).reshape(n, -1, x.shape[-1])  # (n, D, k), raster order
        inputs = [m.start.expand(n, 1, -1)] if self.fed == 0 else []
        prev = m.level_embedding(seq[:, max(self.fed - 1, 0):t])  # the levels of sub-pixels fed-1 .. t-1
        h = torch.cat(inputs + [prev], dim=1) + self.pos[:, self.fed:t + 1]  # (n, t+1-fed, d)
        for block, cache in zip(m.blocks, self.caches):
            h = block(h, cache, self.fed)
        self.fed = t + 1
        return m.head(m.ln_f(h[:, -1]))  # (n, k)
