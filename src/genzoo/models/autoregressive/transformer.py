"""Pixel Transformer: a decoder-only causal Transformer over the raster sequence of sub-pixels.

In the line of Parmar et al., "Image Transformer", ICML 2018 (arXiv:1802.05751) and Chen et
al., "Generative Pretraining from Pixels", ICML 2020 (iGPT). Attention is local by default,
``attention_rows`` R = 1 (the Image Transformer's local 1D attention with query blocks of one
image row: the sub-pixel's own row and the R rows above, D (R + 1) W C scores), or global with
R = 0 (every earlier sub-pixel, D^2 scores a layer, as iGPT), with a learned bias per head and
relative offset on every score (``relative_bias``, on by default).

The image is read as D = C H W tokens in raster order, channel c of pixel (i, j) after
channels < c (position t = (i W + j) C + c). The input at position t is the embedding of the
level of sub-pixel t - 1 (a learned start vector at t = 0), plus learned row, column and
channel embeddings of sub-pixel t, plus a class embedding for a conditional model. Pre-norm
blocks (x + attn(LN x), x + MLP(LN x)) with ``scaled_dot_product_attention`` under a causal
mask (the window and the bias added as a mask), a final LayerNorm and a linear head to k
logits: the output at t is P(x_t | x_<t).

Its network input (``scale``) is the one-hot image [B, C, H, W, k], so the level embedding is a
matrix product and the causality tests can differentiate with respect to the input.

Sampling keeps a key/value cache per layer: each new sub-pixel costs one query against the
cached keys instead of a pass over the whole sequence.

The CPU recipe that was run is the 4-minute family bench's (bench/autoregressive.py, with its
figure in docs/RESULTS.md: local attention over one row above, the relative bias, one head, a 2x
MLP, lr 5e-3 after 50 warm-up steps). No Transformer has been trained here toward the papers'
figures.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .ar_base import AutoregressiveConfig, AutoregressiveModel, raster
from ..base import require, require_num_classes, require_positive_ints
from ..registry import register


@dataclasses.dataclass
class PixelTransformerConfig(AutoregressiveConfig):
    embed_dim: int = 64  # d
    num_layers: int = 4  # Transformer blocks (attention + MLP, pre-norm)
    num_heads: int = 4  # nh; d must divide by it
    mlp_ratio: int = 4  # the MLP's hidden width is mlp_ratio * d
    num_classes: int = 0  # > 0: class-conditional, a class embedding added at every position
    # 0: global attention over every earlier sub-pixel (D^2 pairs a layer); R >= 1: local
    # attention, a sub-pixel sees the earlier ones of its own row and of the R rows above
    # (Parmar et al. 2018, section 3.2: query blocks of one image row, memory of R rows before
    # it), D (R + 1) W C pairs a layer; stacked layers still reach every earlier row. Default 1:
    # the Image Transformer's choice, and the CPU's (docs/RESULTS.md: 1.8x the training speed and
    # 44 nats better than global after 4 minutes; the cached sampler reads 2 rows, not the image)
    attention_rows: int = 1
    # a learned bias per head on each attention score, by relative offset (rows up, columns,
    # channels) between query and key (as in T5 / Swin): local image structure from step one
    relative_bias: bool = True

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "embed_dim", "num_layers", "num_heads", "mlp_ratio")
        require(self.embed_dim % self.num_heads == 0, "embed_dim must be a multiple of num_heads")
        require(isinstance(self.attention_rows, int) and not isinstance(self.attention_rows, bool)
                and self.attention_rows >= 0, f"attention_rows must be an integer >= 0, got {self.attention_rows!r}")
        require(isinstance(self.relative_bias, bool), f"relative_bias must be true or false, got "
                                                      f"{self.relative_bias!r}")
        require_num_classes(self)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention over raster positions t = (i W + j) C + c of a C x H x W image.

    Global (``rows`` = 0) or local (``rows`` = R: keys in the query's row and the R rows above),
    with an optional learned bias per head and relative offset (di, dj, dc) on every score.
    """

    def __init__(self, d: int, nh: int, image_shape, rows: int = 0, relative_bias: bool = False):
        super().__init__()
        C, H, W = image_shape
        self.nh, self.C, self.H, self.W, self.rows = nh, C, H, W, rows
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        # bias[h, di, dj + W - 1, dc + C - 1] for a key di rows up, dj columns left, dc channels before
        span = rows + 1 if rows else H
        self.bias = nn.Parameter(torch.zeros(nh, span, 2 * W - 1, 2 * C - 1)) if relative_bias else None

    def heads(self, x):
        """[B, T, d] -> q, k, v, each [B, nh, T, hs]."""
        B, T, d = x.shape
        return (t.view(B, T, self.nh, d // self.nh).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=2))

    def merge(self, y):
        B, nh, T, hs = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, nh * hs))  # (B, T, d)

    def scores_bias(self, q_pos, k_pos):
        """Additive attention mask [nh or 1, Tq, Tk] for absolute positions q_pos [Tq], k_pos [Tk]:
        the relative bias where the key is visible (not later, within the window), -inf elsewhere."""
        L = self.W * self.C  # sub-pixels per image row
        qi, qj, qc = q_pos[:, None] // L, q_pos[:, None] % L // self.C, q_pos[:, None] % self.C
        ki, kj, kc = k_pos[None] // L, k_pos[None] % L // self.C, k_pos[None] % self.C
        visible = (k_pos[None] <= q_pos[:, None]) & ((qi - ki <= self.rows) if self.rows else True)
        mask = torch.zeros(visible.shape, device=q_pos.device).masked_fill(~visible, float("-inf"))[None]
        if self.bias is None:
            return mask
        di = (qi - ki).clamp(0, self.bias.shape[1] - 1)  # invisible pairs are clamped, then masked
        return mask + self.bias[:, di, qj - kj + self.W - 1, qc - kc + self.C - 1]  # (nh, Tq, Tk)

    def forward(self, x):
        return self.attend(*self.heads(x))

    def attend(self, q, k, v):
        """The attention's output [B, T, d] from its heads q, k, v [B, nh, T, hs]."""
        T = q.shape[2]
        if not self.rows and self.bias is None:
            return self.merge(F.scaled_dot_product_attention(q, k, v, is_causal=True))
        pos = torch.arange(T, device=q.device)
        if not self.rows:
            return self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=self.scores_bias(pos, pos).to(q.dtype)))
        return self.merge(self.local(q, k, v))

    def local(self, q, k, v):
        """Local attention in blocks of one image row: q, k, v [B, nh, T, hs] -> [B, nh, T, hs].

        Row b's queries attend to rows b - R .. b only, so the scores cost T (R + 1) L, not T^2.
        """
        B, nh, T, hs = q.shape
        L, R = self.W * self.C, self.rows
        H = T // L
        pad = q.new_zeros(B, nh, R * L, hs)  # R empty rows above the image

        def windows(t):  # [B, nh, T, hs] -> the memory of each row b, rows b - R .. b oldest first
            t = torch.cat([pad, t], dim=2)  # (B, nh, (R + H) L, hs)
            return torch.cat([t[:, :, r * L:(r + H) * L].view(B, nh, H, L, hs) for r in range(R + 1)], dim=3)

        kw, vw = windows(k), windows(v)  # (B, nh, H, (R + 1) L, hs)
        # the bias of a full window (row R of a tall image), then the padding rows of the first R rows masked
        pos = torch.arange((R + 1) * L, device=q.device)
        mask = self.scores_bias(pos[R * L:], pos)  # (nh or 1, L, (R + 1) L)
        slot_row = torch.arange(H, device=q.device)[:, None] - R + torch.arange(R + 1,
                                                                                device=q.device).repeat_interleave(L)
        pad_mask = torch.zeros(H, (R + 1) * L, device=q.device).masked_fill(slot_row < 0, float("-inf"))
        mask = mask[:, None] + pad_mask[None, :, None]  # (nh or 1, H, L, (R + 1) L)
        y = F.scaled_dot_product_attention(q.view(B, nh, H, L, hs), kw, vw, attn_mask=mask.to(q.dtype))
        return y.reshape(B, nh, T, hs)

    def window_rows(self) -> int:
        """Rows above the query's own that a key may be in: R, or every row (H - 1) for global attention."""
        return self.rows or self.H - 1

    def step_table(self, device, dtype) -> torch.Tensor | None:
        """What one sampling step adds to its scores, for every query position q of a row at once:
        [nh, L, (R' + 1) L] over the keys of the R' = window_rows() rows above and the query's row
        (the relative bias; -inf on the keys after q, which a step never reads), or None without a bias.
        Built once per sampler, sliced at each step."""
        if self.bias is None:
            return None
        L, R = self.W * self.C, self.window_rows()
        pos = torch.arange((R + 1) * L, device=device)
        return self.scores_bias(pos[R * L:], pos).to(dtype)  # (nh, L, (R + 1) L)


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(LN x), then x + MLP(LN x). [B, T, d] -> same."""

    def __init__(self, d: int, nh: int, mlp_ratio: int, attention: CausalSelfAttention):
        super().__init__()
        self.ln1, self.attn, self.ln2 = nn.LayerNorm(d), attention, nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
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
        self.blocks = nn.ModuleList([
            Block(d, config.num_heads, config.mlp_ratio,
                  CausalSelfAttention(d, config.num_heads, config.image_shape, config.attention_rows,
                                      config.relative_bias))
            for _ in range(config.num_layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, self.output_size)
        nn.init.normal_(self.start, std=0.02)

    def scale(self, x):
        """uint8 levels [B, C, H, W] -> one-hot float [B, C, H, W, k]."""
        return F.one_hot(x.long(), self.levels).to(self.dtype)

    def levels_of(self, x):
        """one-hot [B, C, .., k] -> levels [B, C, ..]."""
        return x.argmax(-1)

    def position_embedding(self, rows: int, y=None) -> torch.Tensor:
        """[1 or B, rows*W*C, d]: row + column + channel (+ class) embedding of each target sub-pixel."""
        C, _, W = self.image_shape
        pos = (self.row.weight[:rows, None, None] + self.col.weight[None, :W, None]
               + self.channel.weight[None, None, :C])  # (rows, W, C, d)
        pos = pos.flatten(0, 2)[None]  # (1, rows*W*C, d): raster order, channels innermost
        if self.class_embedding is not None:
            pos = pos + self.class_embedding(y)[:, None]
        return pos

    def sequence_input(self, x, y=None):
        """x: one-hot [B, C, H, W, k] (H may be cropped) -> the blocks' input [B, T, d], T = H W C: at position t the
        embedding of sub-pixel t - 1's level (the start vector at t = 0) plus sub-pixel t's position (and class)."""
        B, H = x.shape[0], x.shape[2]
        tokens = self.level_embedding(raster(x))  # (B, T, d), raster order
        h = torch.cat([self.start.expand(B, 1, -1), tokens[:, :-1]], dim=1)  # input t = sub-pixel t - 1
        return h + self.position_embedding(H, y)

    def outputs(self, x, y=None):
        """x: one-hot [B, C, H, W, k] (H may be cropped) -> outputs [B, P, C, H, W]."""
        B, C, H, W, k = x.shape
        h = self.sequence_input(x, y)  # (B, T, d)
        for block in self.blocks:
            h = block(h)
        out = self.head(self.ln_f(h))  # (B, T, P)
        return out.view(B, H, W, C, -1).permute(0, 4, 3, 1, 2)  # (B, P, C, H, W)

    def cached_sampler(self, n, y=None):
        return _KVCacheSampler(self, n, y)


def _fold_layer_norm(norm: nn.LayerNorm, linear: nn.Linear):
    """(weight, bias) of linear(norm(x)) as a linear layer of the un-scaled normalised x:
    W (g * x_hat + b) + c = (W diag g) x_hat + (W b + c)."""
    return linear.weight * norm.weight, linear.bias + linear.weight @ norm.bias


class _KVCacheSampler:
    """Sub-pixel t costs one query per layer against the cached keys and values of its window.

    Written for the step as it runs (one token of n images: an eager step is a count of small
    operations, docs/RESULTS.md): each LayerNorm's affine is folded into the linear layer after it and
    1/sqrt(hs) into the queries' rows, and the linear layers act on [n, d]. Each layer keeps the keys
    and values of its window's rows (R' = window_rows() rows above the query's, and its own) in
    S = (R' + 1) L slots: slot s holds position base + s, base = max(0, i - R') L for query row i; when
    a row past R' starts, the buffer moves up one row (L slots). The keys a query may see are then
    exactly the slots 0 .. s, its own last: every product reads a prefix, no mask is needed, and the
    relative bias is the step table's columns of those slots. Known sub-pixels skipped since the last
    call (completion) go through the same step, one at a time, except known rows at the top of the image:
    one full pass over them fills the buffers (``_prefill``).
    """

    def __init__(self, model: PixelTransformer, n: int, y):
        C, H, W = model.image_shape
        d, nh = model.config.embed_dim, model.config.num_heads
        self.model, self.C, self.W, self.L, self.n, self.nh, self.fed, self.y = model, C, W, W * C, n, nh, 0, y
        self.R = model.blocks[0].attn.window_rows()
        S, hs = (self.R + 1) * self.L, d // nh
        ref = model.head.weight
        with torch.no_grad():
            self.layers = []
            for block in model.blocks:
                w_qkv, b_qkv = _fold_layer_norm(block.ln1, block.attn.qkv)
                scale = torch.ones(3 * d, dtype=ref.dtype, device=ref.device)
                scale[:d] = hs ** -0.5  # the queries' rows: scores = (q / sqrt(hs)) . k
                w1, b1 = _fold_layer_norm(block.ln2, block.mlp[0])
                self.layers.append(dict(
                    qkv=(w_qkv * scale[:, None], b_qkv * scale), proj=(block.attn.proj.weight, block.attn.proj.bias),
                    mlp1=(w1, b1), mlp2=(block.mlp[2].weight, block.mlp[2].bias),
                    k=ref.new_zeros(n, nh, S, hs), v=ref.new_zeros(n, nh, S, hs),  # the window's keys, values
                    table=block.attn.step_table(ref.device, ref.dtype)))  # (nh, L, S) or None
            self.head = _fold_layer_norm(model.ln_f, model.head)
            self.embed = model.level_embedding.weight.t()  # (k, d): a one-hot level times this
            self.pos = model.position_embedding(H, y).expand(n, -1, -1)  # (n, D, d)
        self.h = None  # the last fed position's output of the blocks, (n, d)

    def logits(self, x, c, i, j):
        """x: one-hot [n, C, H, W, k] with every sub-pixel before (c, i, j) final -> logits [n, k]."""
        m, t = self.model, (i * self.W + j) * self.C + c
        if self.fed == 0 and t >= self.L:  # completion: the known rows above in one pass, not a step each
            self._prefill(x, t // self.L)
        while self.fed <= t:  # the known sub-pixels skipped since the last call, then t itself
            self.h = self._step(x, self.fed)
            self.fed += 1
        out = F.linear(F.layer_norm(self.h, self.h.shape[1:]), *self.head)  # (n, P)
        return m.pixel_log_probs(out, x[:, :, i, j], c)  # (n, k)

    def _prefill(self, x, rows: int):
        """Feed positions 0 .. rows L - 1 (known rows, in completion) through the network's full pass, keeping each
        layer's keys and values as the steps of row rows - 1 would have left them."""
        m, L = self.model, self.L
        T, base = rows * L, max(0, rows - 1 - self.R) * L  # base: the first position in row rows - 1's window
        h = m.sequence_input(x[:, :, :rows], self.y)  # (n, T, d)
        for block, P in zip(m.blocks, self.layers):
            q, k, v = block.attn.heads(block.ln1(h))  # (n, nh, T, hs) each
            P["k"][:, :, :T - base], P["v"][:, :, :T - base] = k[:, :, base:], v[:, :, base:]
            h = h + block.attn.attend(q, k, v)  # Block.forward, its attention's heads computed once
            h = h + block.mlp(block.ln2(h))  # (n, T, d)
        self.fed = T

    def _step(self, x, t: int) -> torch.Tensor:
        """Feed position t (its input: the level of sub-pixel t - 1) through every layer -> (n, d)."""
        n, L, nh, R = self.n, self.L, self.nh, self.R
        if t == 0:
            h = self.model.start + self.pos[:, 0]  # (n, d)
        else:
            (pi, pj), pc = divmod((t - 1) // self.C, self.W), (t - 1) % self.C
            h = torch.addmm(self.pos[:, t], x[:, pc, pi, pj], self.embed)  # (n, d)
        i, q = divmod(t, L)  # the query's row and its place in the row
        s = min(i, R) * L + q  # its slot: the keys it sees are slots 0 .. s
        first = (R - min(i, R)) * L  # the step table's column of slot 0
        for P in self.layers:
            if q == 0 and i > R:  # a new row past the window: every row moves up one slot row
                P["k"][:, :, :-L] = P["k"][:, :, L:].clone()
                P["v"][:, :, :-L] = P["v"][:, :, L:].clone()
            qkv = F.linear(F.layer_norm(h, h.shape[1:]), *P["qkv"])  # (n, 3d)
            qh, k, v = qkv.view(n, 3, nh, -1).unbind(1)  # (n, nh, hs) each
            P["k"][:, :, s], P["v"][:, :, s] = k, v
            scores = qh.unsqueeze(2) @ P["k"][:, :, :s + 1].transpose(-1, -2)  # (n, nh, 1, s + 1)
            if P["table"] is not None:
                scores += P["table"][:, q, None, first:first + s + 1]  # the relative bias
            y = torch.softmax(scores, dim=-1) @ P["v"][:, :, :s + 1]  # (n, nh, 1, hs)
            h = h + F.linear(y.view(n, -1), *P["proj"])
            h = h + F.linear(F.gelu(F.linear(F.layer_norm(h, h.shape[1:]), *P["mlp1"])), *P["mlp2"])
        return h
