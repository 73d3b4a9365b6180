import math

import pytest
import torch

from genzoo import likelihood as L


def test_bits_per_dim_converts_nats():
    assert L.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)


def test_dequantization_bound_is_exact_for_a_piecewise_constant_density():
    # p(u) constant on each cell with mass P(x): p = P(x) * k^D, so -log p(u) + D log k = -log P(x).
    D, k = 3, 4
    P = torch.tensor(0.01)
    neg_log_density = -torch.log(P * k**D)
    assert L.dequantized_nll_bound(neg_log_density, D, k).item() == pytest.approx(-math.log(0.01), rel=1e-6)


def test_categorical_nll_matches_manual_sum():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 1, 2, 3)
    x = torch.randint(0, 5, (2, 1, 2, 3), dtype=torch.uint8)
    logp = torch.log_softmax(logits, 1)
    manual = -torch.stack([sum(logp[b, int(x[b, 0, i, j]), 0, i,
                                    j] for i in range(2) for j in range(3)) for b in range(2)])
    assert torch.allclose(L.categorical_nll(logits, x), manual, atol=1e-6)


def test_summary_states_the_kind():
    s = L.summary(100.0, 784, "bound", 10)
    assert "<=" in L.describe(s) and s["bits_per_dim"] == pytest.approx(100 / (784 * math.log(2)))
    exact = L.describe(L.summary(1.0, 4, "exact", 1))
    assert exact.startswith("-log P(x) = 1.000 nats/image") and "<=" not in exact and "(exact, 1 images, D=4)" in exact
    assert L.describe(L.summary(1.0, 4, "bound", 1)).startswith("-log P(x) <= 1.000 nats/image")
    from genzoo.evaluation.figures import bound_mark

    assert (bound_mark("bound"), bound_mark("exact"), bound_mark("bound", "&le; ")) == ("<= ", "", "&le; ")
    with pytest.raises(ValueError):
        L.summary(1.0, 4, "approximately", 1)


@pytest.mark.parametrize("levels", [2, 4, 17, 256])
def test_level_conversions_round_trip_and_dequantize_stays_in_its_cell(levels):
    from genzoo.models.base import dequantize, from_signed, from_unit, to_signed, to_unit

    x = torch.arange(levels, dtype=torch.uint8).view(1, 1, 1, levels)
    u, v = to_unit(x, levels), to_signed(x, levels, torch.float64)
    assert u.dtype == torch.float32 and v.dtype == torch.float64
    assert u.min() == 0 and u.max() == 1 and v.min() == -1 and v.max() == 1
    assert torch.equal(from_unit(u, levels), x) and torch.equal(from_signed(v, levels), x)
    # a value between two levels goes to the nearer one, and nothing leaves [0, k)
    assert torch.equal(from_unit(u + 0.4 / (levels - 1), levels), x)
    assert from_unit(torch.tensor([-0.5, 1.5]), levels).tolist() == [0, levels - 1]
    d = dequantize(x, levels, torch.Generator().manual_seed(0))
    assert d.dtype == torch.float32 and torch.equal((d * levels).floor().to(torch.uint8), x)
