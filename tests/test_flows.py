"""Normalizing flows: invertibility, log-determinants against the autograd Jacobian (float64),
normalisation, the bits/dim bookkeeping, training, I/O and the command line."""

import json
import math

import pytest
import torch
from PIL import Image
from torch.autograd.functional import jacobian

import genzoo
from genzoo.cli import main
from genzoo.models.flows import transforms as T
from genzoo.models.flows.flows2d import ToyFlow, density_grid
from genzoo.models.flows.glow import SplitPrior, TopPrior

FLOWS = {"nice": dict(hidden_features=16, num_hidden=2), "realnvp": dict(hidden_channels=8, num_blocks=1),
         "glow": dict(hidden_channels=8, steps_per_scale=2)}


def perturbed(module, seed=0, scale=0.3):
    """Random nonzero weights (the zero-initialised last layers would make every coupling the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def conv_net(C):
    return torch.nn.Sequential(torch.nn.Conv2d(C, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(8, 2 * C, 3,
                                                                                                     padding=1))


def transforms_under_test():
    """(name, transform, input [2, ...]) for every transform, float64."""
    shape = (2, 4, 4)
    mlp = lambda d_in, d_out: torch.nn.Sequential(torch.nn.Linear(d_in, 8), torch.nn.Tanh(), torch.nn.Linear(8, d_out))  # noqa: E731
    actnorm = T.ActNorm(2)
    actnorm.initialized.fill_(True)  # data-dependent init is tested on its own
    cases = [
        ("additive", T.AdditiveCoupling(T.alternating_mask(6, 0), mlp(6, 6)), torch.randn(2, 6)),
        ("affine-vector", T.AffineCoupling(T.alternating_mask(6, 1), mlp(6, 12), 6), torch.randn(2, 6)),
        ("affine-checkerboard", T.AffineCoupling(T.checkerboard_mask(shape, 0), conv_net(2), 2), torch.randn(2,
                                                                                                             *shape)),
        ("affine-channel", T.AffineCoupling(T.channel_mask(shape, 1), conv_net(2), 2), torch.randn(2, *shape)),
        ("scaling", T.DiagonalScaling(6), torch.randn(2, 6)),
        ("actnorm", actnorm, torch.randn(2, *shape)),
        ("squeeze", T.Squeeze(), torch.randn(2, *shape)),
        ("logit", T.Logit(0.05), torch.rand(2, *shape)),
        ("sequential", T.Sequential(T.Logit(0.05), T.Squeeze(), T.AffineCoupling(T.channel_mask((8, 2, 2), 0),
                                                                                 conv_net(8), 8)),
         torch.rand(2, *shape)),
        ("multiscale", T.MultiScale(
            T.AffineCoupling(T.checkerboard_mask(shape, 1), conv_net(2), 2),
            T.AffineCoupling(T.channel_mask((8, 2, 2), 0), conv_net(8), 8),
            T.MultiScale(T.AffineCoupling(T.checkerboard_mask((4, 2, 2), 0), conv_net(4), 4))), torch.randn(2, *shape)),
        ("glow-affine-coupling", T.ChannelCoupling(conv_net_out(1, 2), affine=True), torch.randn(2, *shape)),
        ("glow-additive-coupling", T.ChannelCoupling(conv_net_out(2, 2), affine=False), torch.randn(2, 3, 4, 4)),
        ("1x1-conv-lu", T.InvertibleConv1x1(3, lu=True), torch.randn(2, 3, 4, 4)),
        ("1x1-conv-plain", T.InvertibleConv1x1(3, lu=False), torch.randn(2, 3, 4, 4)),
        ("glow-split-prior", SplitPrior(3), torch.randn(2, 3, 4, 4)),
        ("glow-top-prior", TopPrior(2, 0), torch.randn(2, *shape)),
    ]
    return [(name, perturbed(t).double(), x.double()) for name, t, x in cases]


def conv_net_out(c_in, c_out):
    return torch.nn.Sequential(torch.nn.Conv2d(c_in, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(8, c_out, 3,
                                                                                                        padding=1))


def jacobian_logdet(fn, x):
    """log |det d fn(x) / dx| for one example x (any shape), by autograd and slogdet."""
    J = jacobian(lambda v: fn(v.view(1, *x.shape)).flatten(), x.flatten())
    sign, logabsdet = torch.linalg.slogdet(J)
    assert sign != 0
    return logabsdet


@pytest.mark.parametrize("name,t,x", transforms_under_test(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_transform_inverts_and_its_logdet_is_the_jacobians(name, t, x):
    y, logdet = t(x)
    back, inv_logdet = t.inverse(y)
    assert torch.allclose(back, x, atol=1e-6) and torch.allclose(inv_logdet, -logdet, atol=1e-6)
    for b in range(x.shape[0]):
        expected = jacobian_logdet(lambda v: t(v)[0], x[b])
        assert logdet[b].item() == pytest.approx(expected.item(), abs=1e-6), name


def small_flow(name, image_shape, seed=0):
    torch.manual_seed(seed)
    model = genzoo.models.build(name, image_shape=image_shape, levels=256, **FLOWS[name])
    model.train()
    model.loss(torch.randint(0, 256, (8, *image_shape), dtype=torch.uint8))  # ActNorm's data-dependent init
    return perturbed(model, seed, scale=0.1).double().eval()


@pytest.mark.parametrize("name", FLOWS)
@pytest.mark.parametrize("image_shape", [(1, 4, 4), (3, 4, 4)])
def test_whole_models_invert_and_their_logdet_is_the_jacobians(name, image_shape):
    model = small_flow(name, image_shape)
    u = torch.rand(2, *image_shape, dtype=torch.float64)
    z, logdet = model(u)
    assert z.shape == u.shape and logdet.shape == (2,)
    assert torch.allclose(model.inverse(z), u, atol=1e-6)
    for b in range(2):
        assert logdet[b].item() == pytest.approx(jacobian_logdet(lambda v: model(v)[0], u[b]).item(), abs=1e-6)


@pytest.mark.parametrize("image_shape", [(1, 4, 4), (2, 4, 4), (1, 6, 6)])
def test_space_to_depth_coupling_nets_keep_realnvp_invertible_with_the_jacobians_logdet(image_shape):
    # The checkerboard couplings' ResNets run on the squeezed image where H and W are even (at 6 x 6
    # the first scale's do, the last scale's at 3 x 3 cannot); the couplings stay exact.
    torch.manual_seed(0)
    model = genzoo.models.build("realnvp", image_shape=image_shape, levels=256, space_to_depth=True, **FLOWS["realnvp"])
    model.train()
    model.loss(torch.randint(0, 256, (8, *image_shape), dtype=torch.uint8))
    model = perturbed(model, scale=0.1).double().eval()
    nets = [m for m in model.modules() if isinstance(m, T.AffineCoupling)]
    squeezed = [c.net.space_to_depth for c in nets]
    assert any(squeezed)
    if image_shape[1] == 6:
        assert not all(squeezed)
    for c in nets:  # a squeezed net still returns (s, t) at its coupling's resolution
        if c.net.space_to_depth:
            assert c.mask.shape[1] % 2 == 0 and c.net.inp.in_channels == 4 * c.mask.shape[0]
    u = torch.rand(2, *image_shape, dtype=torch.float64)
    z, logdet = model(u)
    assert torch.allclose(model.inverse(z), u, atol=1e-6)
    for b in range(2):
        assert logdet[b].item() == pytest.approx(jacobian_logdet(lambda v: model(v)[0], u[b]).item(), abs=1e-6)
    with pytest.raises(genzoo.GenzooError, match="space_to_depth"):
        genzoo.models.build("realnvp", image_shape=image_shape, space_to_depth=1)


@pytest.mark.parametrize("name", FLOWS)
def test_models_build_with_their_defaults_on_tiny_shapes_and_run_in_float64(name):
    for shape in [(1, 4, 4), (3, 4, 4)]:
        model = genzoo.models.build(name, image_shape=shape, levels=256).double()
        x = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
        out = model.loss(x)
        assert out["nll"].dtype == torch.float64 and torch.isfinite(out["nll"]).all()
        assert model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, *shape)
        assert model.likelihood_kind == "bound"


def test_actnorm_initialises_from_the_first_batch():
    x = 3 + 2 * torch.randn(64, 2, 4, 4)
    a = T.ActNorm(2)
    y, _ = a(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3)), torch.ones(2), atol=1e-4)
    before = a.bias.clone()
    a(x + 10)  # only the first batch initialises
    assert torch.equal(a.bias, before)


def test_the_bits_per_dim_bookkeeping_on_a_known_case():
    # The identity flow with density 1 on [0, 1)^D is uniform dequantization noise itself:
    # -log P(x) = D log 256 nats, exactly 8 bits/dim, whatever the 8-bit image.
    model = genzoo.models.build("nice", image_shape=(1, 4, 4), levels=256)
    model.transform, model.prior = T.Sequential(), T.UniformUnitCube()
    out = model.loss(torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8))
    assert torch.equal(out["bits_per_dim"], torch.full((5,), 8.0))
    assert out["nll"][0].item() == pytest.approx(16 * math.log(256))


@pytest.mark.parametrize("kind", ["nice", "realnvp"])
def test_a_2d_flow_density_integrates_to_one(kind):
    flow = perturbed(ToyFlow(kind, num_couplings=4, hidden=16), scale=0.2)
    xs, _, density = density_grid(flow, lim=8.0, n=400)
    mass = (density.sum() * (xs[1] - xs[0]) ** 2).item()
    assert mass == pytest.approx(1.0, abs=1e-2)


@pytest.mark.parametrize("name", FLOWS)
def test_short_training_on_digits_stays_finite_and_improves(name, tmp_path):
    from genzoo.training.trainer import TrainConfig, Trainer

    train, test = genzoo.data.load("digits", "train"), genzoo.data.load("digits", "test")
    torch.manual_seed(0)
    model = genzoo.models.build(name, image_shape=(1, 8, 8), levels=17, **FLOWS[name])
    before = Trainer(model, (train.images, train.labels), (test.images, test.labels), TrainConfig(epochs=1),
                     tmp_path / "x").evaluate()["test_nll"]
    records = Trainer(model, (train.images, train.labels), (test.images, test.labels),
                      TrainConfig(epochs=2, batch_size=100, lr=2e-3, warmup_steps=5), tmp_path / "run").fit()
    assert all(math.isfinite(r["test_nll"]) and r["skipped_steps"] == 0 for r in records)
    assert records[-1]["test_nll"] < before


@pytest.mark.parametrize("name", FLOWS)
def test_save_load_round_trip(name, tmp_path):
    model = small_flow(name, (1, 4, 4)).float()
    x = torch.randint(0, 256, (4, 1, 4, 4), dtype=torch.uint8)
    model.save(tmp_path / "m")
    loaded = genzoo.load(tmp_path / "m")
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))  # eval: the same fixed dequantization noise
    z = torch.randn(3, 1, 4, 4)
    assert torch.equal(loaded.decode(z), model.decode(z))


def test_sampling_temperature_and_encode_decode():
    model = small_flow("realnvp", (1, 4, 4)).float()
    a = model.sample(4, generator=torch.Generator().manual_seed(0))
    b = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert a.dtype == torch.uint8 and torch.equal(a, b)
    x = torch.randint(0, 256, (3, 1, 4, 4), dtype=torch.uint8)
    assert torch.equal(model.decode(model.encode(x)), x)  # cell centres come back to their cells


@pytest.mark.parametrize("name", FLOWS)
def test_cli_train_eval_sample_interpolate(name, tmp_path, capsys):
    run = tmp_path / name
    opts = {"nice": ["--hidden-features", "16", "--num-hidden", "1"], "realnvp": ["--hidden-channels", "8",
                                                                                  "--num-blocks", "1"],
            "glow": ["--hidden-channels", "8", "--steps-per-scale", "1"]}
    assert main(["train", name, "--data", "digits", "--out", str(run), "--epochs", "1", "--batch-size", "250",
                 "--eval-limit", "50", "--threads", "1", *opts[name]]) == 0
    assert main(["eval", str(run), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["likelihood_kind"] == "bound" and s["count"] == 297 and math.isfinite(s["nll_nats"])
    assert main(["eval", str(run)]) == 0
    assert "<=" in capsys.readouterr().out  # a bound says it is one
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png"), "--temperature", "0.7"]) == 0
    assert main(["interpolate", str(run), "-o", str(tmp_path / "i.png"), "--pairs", "2", "--steps", "5"]) == 0
    assert Image.open(tmp_path / "i.png").size == (5 * 68 + 4, 2 * 68 + 4)
    capsys.readouterr()
    for bad in (["train", name, "--data", "digits", "--out", str(tmp_path / "b"), opts[name][0], "0"],
                ["interpolate", str(run), "-o", str(tmp_path / "i.jpg")],
                ["complete", str(run), "-o", str(tmp_path / "c.png")]):
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("genzoo: error:")
    assert not (tmp_path / "b").exists()


def test_cli_toy_writes_a_picture(tmp_path, capsys):
    out = tmp_path / "moons.png"
    assert main(["toy", "nice", "--data", "moons", "-o", str(out), "--steps", "50", "--threads", "1"]) == 0
    assert "density mass on the plotted grid" in capsys.readouterr().out
    assert Image.open(out).size[0] > 600
    assert main(["toy", "nice", "--data", "spirals", "-o", str(out)]) == 2
    assert main(["toy", "glow", "-o", str(out)]) == 2
