"""The gradient-estimator study (bench/estimators.py, beside its bench): both estimators unbiased,
reparameterization of lower variance, with the variances theory gives."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("estimators", Path(__file__).parents[1] / "bench" / "estimators.py")
estimators = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(estimators)
reparameterization_gradients = estimators.reparameterization_gradients
score_function_gradients = estimators.score_function_gradients
variance_table = estimators.variance_table


def test_both_gradient_estimators_are_unbiased_and_reparameterization_has_lower_variance():
    g = torch.Generator().manual_seed(0)
    for theta in (-1.0, 0.5, 2.0):
        rep, score = reparameterization_gradients(theta, 200_000, g), score_function_gradients(theta, 200_000, g)
        for est in (rep, score):
            assert abs(est.mean().item() - 2 * theta) < 3 * est.std().item() / math.sqrt(len(est))
        assert rep.var() < score.var()
        assert rep.var().item() == pytest.approx(4.0, rel=0.03)  # Var[2 (theta + eps)] = 4
        assert score.var().item() == pytest.approx(theta**4 + 14 * theta**2 + 15, rel=0.1)
    table = variance_table(theta=1.0, sample_counts=(1, 10), repeats=500)
    assert table[1]["reparameterization_var"] < table[0]["reparameterization_var"] / 5  # 1/n
