"""Glow: the class-conditional prior, ActNorm's data-dependent start, the 1x1 convolution's two forms,
sampling temperature, and the configuration's errors. (Inverse and log-det of every transform and of
the whole model against the float64 autograd Jacobian: tests/test_flows.py, which runs Glow with NICE
and RealNVP.)"""

import pytest
import torch

import genzoo
from genzoo.cli import main
from genzoo.models.flows import transforms as T
from test_flows import jacobian_logdet, perturbed
import conftest

TINY = conftest.TINY["glow"]


def trained_start(image_shape=(1, 4, 4), seed=0, **kw):
    """A tiny Glow after its first (ActNorm-initialising) batch, with random nonzero weights, float64, eval."""
    torch.manual_seed(seed)
    model = genzoo.models.build("glow", image_shape=image_shape, levels=256, **{**TINY, **kw})
    model.train()
    y = torch.arange(8) % model.num_classes if model.num_classes else None
    model.loss(torch.randint(0, 256, (8, *image_shape), dtype=torch.uint8), y)
    return perturbed(model, seed, scale=0.1).double().eval()


@pytest.mark.parametrize("image_shape", [(1, 4, 4), (3, 8, 8)])
def test_the_class_conditional_model_inverts_with_the_jacobians_logdet_for_each_class(image_shape):
    model = trained_start(image_shape, num_classes=3)
    u = torch.rand(2, *image_shape, dtype=torch.float64)
    for label in range(3):
        y = torch.full((2,), label)
        z, logdet = model(u, y)
        assert torch.allclose(model.inverse(z, y), u, atol=1e-10)
        expected = jacobian_logdet(lambda v: model(v, y[:1])[0], u[0])
        assert logdet[0].item() == pytest.approx(expected.item(), abs=1e-8)
    x = torch.randint(0, 256, (4, *image_shape), dtype=torch.uint8)
    by_class = [model.log_prob(x, torch.full((4,), c)) for c in range(3)]
    assert not torch.allclose(by_class[0], by_class[1])  # the class moves the top prior
    with pytest.raises(genzoo.GenzooError, match="class-conditional"):
        model.log_prob(x)


def test_the_logit_preprocessing_option_counts_its_logdet_and_inverts():
    model = trained_start((1, 4, 4), logit_alpha=0.05)
    u = torch.rand(2, 1, 4, 4, dtype=torch.float64) * 0.98 + 0.01
    z, logdet = model(u)
    assert torch.allclose(model.inverse(z), u, atol=1e-10)
    assert logdet[0].item() == pytest.approx(jacobian_logdet(lambda v: model(v)[0], u[0]).item(), abs=1e-8)
    centred = trained_start((1, 4, 4))
    assert not torch.allclose(centred(u)[1], logdet)  # the option changes the map, not just its name


def test_actnorm_makes_the_first_batch_zero_mean_unit_variance_inside_the_model():
    torch.manual_seed(0)
    model = genzoo.models.build("glow", image_shape=(1, 8, 8), levels=17, **TINY)
    seen = []
    norms = [m for m in model.modules() if isinstance(m, T.ActNorm)]
    hooks = [a.register_forward_hook(lambda mod, inp, out: seen.append(out[0].detach())) for a in norms]
    x = genzoo.data.load("digits", "train").images[:200]
    model.train()
    model.loss(x)
    for h in hooks:
        h.remove()
    assert len(seen) == len(norms) == 6  # 8x8 -> 4x4 -> 2x2 -> 1x1: 3 scales x 2 steps
    for out in seen:
        assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(out.shape[1]), atol=1e-4)
        assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(out.shape[1]), atol=1e-3)
    assert all(bool(a.initialized) for a in norms)
    before = [a.bias.clone() for a in norms]
    model.loss(x[:50].flip(0))  # later batches train the parameters; they do not re-initialise them
    assert all(torch.equal(a.bias, b) for a, b in zip(norms, before))


def test_the_1x1_convolution_starts_as_a_rotation_in_both_forms():
    for lu in (True, False):
        torch.manual_seed(0)
        conv = T.InvertibleConv1x1(6, lu=lu).double()
        W, logdet = conv._weight("cpu")
        assert torch.allclose(W @ W.T, torch.eye(6, dtype=torch.float64), atol=1e-6)  # orthogonal
        assert abs(logdet.item()) < 1e-6
        x = torch.randn(2, 6, 3, 3, dtype=torch.float64)
        y, ld = conv(x)
        assert torch.allclose(y, torch.einsum("ij,bjhw->bihw", W, x)) and torch.allclose(ld, 9 * logdet.expand(2))
    torch.manual_seed(0)
    lu = T.InvertibleConv1x1(6, lu=True)
    assert {n for n, _ in lu.named_parameters()} == {"lower", "upper", "log_s"}  # P and the signs stay fixed


def test_temperature_zero_draws_the_mode_and_conditional_samples_follow_their_labels():
    model = trained_start((1, 4, 4), num_classes=2).float()
    zeros = torch.zeros(3, dtype=torch.long)
    cold = [model.sample(3, generator=torch.Generator().manual_seed(s), temperature=1e-9, y=zeros)
            for s in (0, 1)]
    assert torch.equal(cold[0], cold[1]) and torch.equal(cold[0][0], cold[0][1])  # the same image whatever the noise
    other = model.sample(3, generator=torch.Generator().manual_seed(0), temperature=1e-9, y=zeros + 1)
    assert not torch.equal(other, cold[0])
    x = torch.randint(0, 256, (3, 1, 4, 4), dtype=torch.uint8)
    for y in (None, torch.tensor([0, 1, 1])):  # None: the classless prior
        assert torch.equal(model.decode(model.encode(x, y), y), x)


def test_configuration_errors_are_clear():
    for bad, match in [(dict(image_shape=(1, 7, 7)), "must be even"), (dict(coupling="spline"), "coupling"),
                       (dict(lu=1), "lu"), (dict(steps_per_scale=0), "steps_per_scale"), (dict(num_classes=-1),
                                                                                          "num_classes"),
                       (dict(logit_alpha=0.5), "logit_alpha")]:
        with pytest.raises(genzoo.GenzooError, match=match):
            genzoo.models.build("glow", **{"image_shape": (1, 4, 4), **bad})


def test_cli_trains_a_class_conditional_glow_and_samples_each_label(tmp_path, capsys):
    run = tmp_path / "glow"
    assert main(["train", "glow", "--data", "digits", "--out", str(run), "--epochs", "1", "--batch-size", "250",
                 "--eval-limit", "50", "--threads", "1", "--hidden-channels", "8", "--steps-per-scale", "1",
                 "--conditional", "--coupling", "additive", "--no-lu"]) == 0
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png"), "--label", "3"]) == 0
    assert main(["eval", str(run), "--json"]) == 0
    assert '"likelihood_kind": "bound"' in capsys.readouterr().out
