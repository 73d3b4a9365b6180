"""PixelRNN: Row LSTM and Diagonal BiLSTM.

van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016
(arXiv:1601.06759). Both models are: a 7x7 type-A masked convolution (2h features), LSTM
layers with residual connections (Fig. 4: each layer's h-feature state is mapped back to 2h
by a 1x1 convolution and added to the layer's input), then ReLU, 1x1, ReLU, 1x1 and a k-way
softmax per sub-pixel, as in :mod:`genzoo.models.autoregressive.pixelcnn`. Every LSTM step is

    [o, f, i, g] = sigma(K_ss * h_prev + K_is * x),  c = f . c_prev + i . g,  h = o . tanh(c)   (eq. 3)

with sigma the sigmoid for o, f, i and tanh for g.

* Row LSTM (section 3.1): one step per row. K_is is a 1 x k type-B masked convolution along
  the row; K_ss a 1 x k convolution over the previous row's state, so the receptive field is
  the triangle above the pixel (plus the row to its left). H sequential steps a layer.
* Diagonal BiLSTM (section 3.2): the input map is skewed (row i shifted right by i), so a
  diagonal becomes a column; K_is is 1x1 (type B), K_ss a 2x1 convolution over the previous
  column: the state at (i, j) comes from (i, j-1) and (i-1, j), and sees everything above
  and to the left. A second direction runs right to left on the mirrored map; its output is
  shifted down one row so that no pixel sees its own row's right side. H + W - 1 sequential
  steps a direction and layer. States at the skewed map's padding are held at zero, so
  the state at (i, j) is exactly a function of those two neighbours (what the cached sampler
  computes pixel by pixel). One layer sees every earlier pixel but one: x(i-1, W-1), the last
  pixel of the row above, reaches (i, j) only through the first 7x7 kernel (every feature at
  (i-1, W-1) excludes that pixel, and the right-to-left scan of row i-1 starts there), so
  pixels more than 3 columns left of the right edge are blind to it (tested).

Published (static binarized MNIST, nats): Row LSTM 80.54; Diagonal BiLSTM 79.20 with 7 layers
of h = 16 (Table 4). Shipped: a 3-layer Row LSTM trained for one hour on the 2-core CPU, 84.07
nats on the full test set (``pretrained/row-lstm-binarized-mnist``). Its recipe is code, in
``genzoo/recipes.py``: ``genzoo reproduce row-lstm-binarized-mnist`` runs it, ``genzoo verify``
re-scores the shipped weights; docs/RESULTS.md has the curve and the 4-minute family bench.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .ar_base import AutoregressiveConfig, AutoregressiveModel, IncrementalSampler
from ..base import (require_num_classes, require_odd_kernels,
                   require_positive_ints)
from .layers import (MaskedConv2d, WindowConv, effective_weight, output_head, pointwise, sampling_store, shift_down,
                     skew, to_logits, unskew)
from ..registry import register


@dataclasses.dataclass
class PixelRNNConfig(AutoregressiveConfig):
    hidden_channels: int = 16  # h: LSTM state features; the residual stream carries 2h
    num_layers: int = 7  # LSTM layers after the 7x7 type-A convolution
    first_kernel: int = 7  # size of the first, type-A masked convolution (7x7 in the paper)
    input_kernel: int = 3  # Row LSTM: width of the 1 x k input-to-state convolution (the BiLSTM's is 1x1)
    state_kernel: int = 3  # Row LSTM: width of the 1 x k state-to-state convolution (the BiLSTM's is 2x1)
    head_channels: int = 64  # channels of the two 1x1 layers before the per-pixel softmax
    num_classes: int = 0  # > 0: class-conditional, a learned per-class bias on every gate

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "hidden_channels", "num_layers", "head_channels")
        require_odd_kernels(self, "first_kernel", "input_kernel", "state_kernel")
        require_num_classes(self)


def lstm_update(gates: torch.Tensor, c_prev) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: gates [n, 4h, ...] as (o, f, i, g) chunks, c_prev [n, h, ...] (or 0) -> (h, c)."""
    o, f, i, g = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class RowLSTMLayer(nn.Module):
    """x [B, 2h, H, W] -> x + up(h) [B, 2h, H, W], h computed one row at a time (section 3.1)."""

    def __init__(self, h: int, cfg: PixelRNNConfig, C: int):
        super().__init__()
        self.input_to_state = MaskedConv2d(2 * h, 4 * h, (1, cfg.input_kernel), "B", C, out_splits=4)
        self.state_to_state = nn.Conv1d(h, 4 * h, cfg.state_kernel, padding=cfg.state_kernel // 2)
        self.up = MaskedConv2d(h, 2 * h, 1, "B", C)
        self.cond = nn.Linear(cfg.num_classes, 4 * h, bias=False) if cfg.num_classes else None

    def forward(self, x, cond=None):
        B, _, H, W = x.shape
        gates_in = self.input_to_state(x)  # (B, 4h, H, W): every row's input part at once
        if self.cond is not None:
            gates_in = gates_in + self.cond(cond)[:, :, None, None]
        h = c = x.new_zeros(B, self.state_to_state.in_channels, W)  # (B, h, W): the row above row 0
        rows = []
        for row in gates_in.unbind(2):  # (B, 4h, W) each; unbind's backward is one stack
            h, c = lstm_update(row + self.state_to_state(h), c)
            rows.append(h)
        return x + self.up(torch.stack(rows, dim=2))  # (B, 2h, H, W)


class DiagonalBiLSTMLayer(nn.Module):
    """x [B, 2h, H, W] -> x + up_l(h_left) + shift_down(up_r(h_right)) (section 3.2)."""

    def __init__(self, h: int, cfg: PixelRNNConfig, C: int):
        super().__init__()
        self.input_to_state = nn.ModuleList([MaskedConv2d(2 * h, 4 * h, 1, "B", C, out_splits=4) for _ in range(2)])
        self.state_to_state = nn.ModuleList([nn.Conv1d(h, 4 * h, 2, padding=1) for _ in range(2)])  # over (i-1, i)
        self.up_left = MaskedConv2d(h, 2 * h, 1, "B", C)
        self.up_right = nn.Conv2d(h, 2 * h, 1)  # unmasked: it reaches a pixel only from the row above
        self.cond = nn.Linear(cfg.num_classes, 8 * h, bias=False) if cfg.num_classes else None

    def gates_in(self, x, cond, direction: int):
        g = self.input_to_state[direction](x)  # (B, 4h, H, W)
        if self.cond is not None:
            g = g + self.cond(cond).chunk(2, dim=1)[direction][:, :, None, None]
        return g

    def scan(self, gates_in, direction: int):
        """The diagonal LSTM over skewed columns, left to right: gates_in [B, 4h, H, W] -> h [B, h, H, W]."""
        B, _, H, W = gates_in.shape
        ss = self.state_to_state[direction]
        # unbind: one view per skewed column, whose backward is a single stack (slicing column t
        # out of the map in the loop would materialise a full-size gradient per step)
        columns = skew(gates_in).unbind(3)  # H + W - 1 tensors (B, 4h, H)
        offset = (torch.arange(H + W - 1, device=gates_in.device)[None, :]
                  - torch.arange(H, device=gates_in.device)[:, None])  # (H, H+W-1): the column j of (i, t)
        valid = ((offset >= 0) & (offset < W)).to(gates_in.dtype).unbind(1)
        h = c = gates_in.new_zeros(B, ss.in_channels, H)
        out = []
        for t, column in enumerate(columns):
            h, c = lstm_update(column + ss(h)[:, :, :H], c)  # ss(h)[r] = K0 h[r-1] + K1 h[r]
            h, c = h * valid[t], c * valid[t]  # the padding outside the image stays zero
            out.append(h)
        return unskew(torch.stack(out, dim=3), W)

    def forward(self, x, cond=None):
        left = self.scan(self.gates_in(x, cond, 0), 0)
        right = self.scan(self.gates_in(x, cond, 1).flip(3), 1).flip(3)  # right to left: sees (i, j+1), (i-1, j)
        return x + self.up_left(left) + shift_down(self.up_right(right))


class PixelRNN(AutoregressiveModel):
    """The shared skeleton: 7x7 type-A convolution, ``Layer`` x num_layers, the softmax head."""

    Config = PixelRNNConfig
    Layer: type

    def __init__(self, config: PixelRNNConfig):
        super().__init__(config)
        C, h, k = config.image_shape[0], config.hidden_channels, self.output_size
        self.first = MaskedConv2d(C, 2 * h, config.first_kernel, "A", C)
        self.layers = nn.ModuleList([self.Layer(h, config, C) for _ in range(config.num_layers)])
        self.head = output_head(2 * h, config.head_channels, C, k)

    def outputs(self, x, y=None):
        """x: float [B, C, H, W] in [-1, 1], y: [B] labels or None -> outputs [B, P, C, H, W]."""
        cond = F.one_hot(y, self.num_classes).float() if self.num_classes else None
        v = self.first(x)  # (B, 2h, H, W)
        for layer in self.layers:
            v = layer(v, cond)
        return to_logits(self.head(v), self.image_shape[0], self.output_size)



@register
class RowLSTM(PixelRNN):
    """Row LSTM (van den Oord et al. 2016): a row at a time, triangular receptive field, exact likelihood."""

    name = "row-lstm"
    Layer = RowLSTMLayer

    def cached_sampler(self, n, y=None):
        return _RowLSTMSampler(self, n, y)


@register
class DiagonalBiLSTM(PixelRNN):
    """Diagonal BiLSTM (van den Oord et al. 2016): skewed diagonal scans both ways, full receptive field."""

    name = "diagonal-bilstm"
    Layer = DiagonalBiLSTMLayer

    def cached_sampler(self, n, y=None):
        return _DiagonalBiLSTMSampler(self, n, y)


class _PixelRNNSampler(IncrementalSampler):
    """What both PixelRNN samplers store: per layer, its input and its (left-to-right) LSTM
    state (h, c) at every pixel so far, the first layer's weights and the class bias.

    Per pixel and layer a subclass computes the input-to-state at the pixel, one LSTM step
    from the stored states of the neighbours that pixel depends on, the residual, and the head.
    """

    def __init__(self, model: PixelRNN, n: int, y):
        super().__init__(model)
        self.model, h, ref = model, model.config.hidden_channels, model.first.weight
        self.zeros = lambda ch: [sampling_store(ref, n, ch, self.H, self.W) for _ in model.layers]  # noqa: E731
        self.inp, self.h, self.c = self.zeros(2 * h), self.zeros(h), self.zeros(h)
        p = model.config.first_kernel // 2
        self.first = WindowConv(effective_weight(model.first), model.first.bias, p, p)
        cond = F.one_hot(y, model.num_classes).to(ref.dtype) if model.num_classes else None
        self.cond = [layer.cond(cond) if cond is not None else 0 for layer in model.layers]

    def compute_pixel(self, x, i, j):
        v = self.first(x, i, j)  # (n, 2h): the first layer's output at (i, j)
        for L in range(len(self.model.layers)):
            self.inp[L][:, :, i, j] = v
            hn, cn, v = self.layer_at(L, v, i, j)
            self.h[L][:, :, i, j], self.c[L][:, :, i, j] = hn, cn
        return self.head_outputs(v)  # (n, P, C)

    def layer_at(self, L: int, v, i: int, j: int):
        """Layer L at pixel (i, j) from its input v [n, 2h]: (h, c) [n, h] each, and its output [n, 2h]."""
        raise NotImplementedError


class _RowLSTMSampler(_PixelRNNSampler):
    """The Row LSTM pixel by pixel: the 1 x k input-to-state over the stored row so far, plus the
    state-to-state part of the row above, computed once per row (``finish_row``)."""

    def __init__(self, model: PixelRNN, n: int, y):
        super().__init__(model, n, y)
        h = model.config.hidden_channels
        self.w = [(WindowConv(effective_weight(layer.input_to_state), layer.input_to_state.bias, 0,
                              layer.input_to_state.weight.shape[-1] // 2),
                   pointwise(layer.up)) for layer in model.layers]
        # the state-to-state part of the current row, from the row above (zeros above row 0)
        self.from_above = [layer.state_to_state(self.inp[0].new_zeros(n, h, self.W)) for layer in model.layers]

    def layer_at(self, L, v, i, j):
        input_to_state, (w_up, b_up) = self.w[L]
        gates = input_to_state(self.inp[L], i, j) + self.cond[L] \
            + self.from_above[L][:, :, j]
        hn, cn = lstm_update(gates, self.c[L][:, :, i - 1, j] if i > 0 else 0)
        return hn, cn, v + F.linear(hn, w_up, b_up)

    def finish_row(self, x, i):
        for L, layer in enumerate(self.model.layers):
            self.from_above[L] = layer.state_to_state(self.h[L][:, :, i])  # (n, 4h, W) for row i + 1


class _DiagonalBiLSTMSampler(_PixelRNNSampler):
    """The Diagonal BiLSTM pixel by pixel: the left-to-right state at (i, j) is one LSTM step from
    the stored states at (i, j-1) and (i-1, j). The right-to-left direction needs a whole row, so
    it runs when the row is final (``finish_row``), right to left, for the next row to use."""

    def __init__(self, model: PixelRNN, n: int, y):
        super().__init__(model, n, y)
        h = model.config.hidden_channels
        # per layer: the left direction's input-to-state, state-to-state taps and up_l
        self.w = [(pointwise(layer.input_to_state[0]), layer.state_to_state[0].weight.unbind(2),
                   layer.state_to_state[0].bias, pointwise(layer.up_left)) for layer in model.layers]
        self.h_right, self.c_right = self.zeros(h), self.zeros(h)
        self.up_right = [self.inp[0].new_zeros(n, 2 * h, self.W) for _ in model.layers]  # up_r(h_right), row above
        self.cond = [cnd.chunk(2, dim=1) if torch.is_tensor(cnd) else (0, 0) for cnd in self.cond]

    def layer_at(self, L, v, i, j):
        (w_in, b_in), (k_up, k_left), b_ss, (w_up, b_up) = self.w[L]
        gates = F.linear(v, w_in, b_in) + self.cond[L][0] + b_ss
        if i > 0:  # the 2x1 state-to-state: (i-1, j) and (i, j-1) in image coordinates
            gates = gates + F.linear(self.h[L][:, :, i - 1, j], k_up)
        if j > 0:
            gates = gates + F.linear(self.h[L][:, :, i, j - 1], k_left)
        hn, cn = lstm_update(gates, self.c[L][:, :, i, j - 1] if j > 0 else 0)
        return hn, cn, v + F.linear(hn, w_up, b_up) + (self.up_right[L][:, :, j] if i > 0 else 0)

    def finish_row(self, x, i):
        for L, layer in enumerate(self.model.layers):
            ss = layer.state_to_state[1]
            gates_in = F.conv2d(self.inp[L][:, :, i:i + 1], effective_weight(layer.input_to_state[1]),
                                layer.input_to_state[1].bias)[:, :, 0]  # (n, 4h, W)
            if i > 0:  # the (i-1, j) tap for the whole row at once
                gates_in = gates_in + torch.einsum("oc,ncw->now", ss.weight[:, :, 0], self.h_right[L][:, :, i - 1])
            for j in reversed(range(self.W)):  # right to left: (i, j) from (i, j+1) and (i-1, j)
                gates = gates_in[:, :, j] + self.cond[L][1] + ss.bias
                last = j + 1 == self.W
                if not last:
                    gates = gates + F.linear(self.h_right[L][:, :, i, j + 1], ss.weight[:, :, 1])
                hn, cn = lstm_update(gates, 0 if last else self.c_right[L][:, :, i, j + 1])
                self.h_right[L][:, :, i, j], self.c_right[L][:, :, i, j] = hn, cn
            self.up_right[L] = F.conv2d(self.h_right[L][:, :, i:i + 1], layer.up_right.weight,
                                        layer.up_right.bias)[:, :, 0]  # (n, 2h, W), used by row i + 1
