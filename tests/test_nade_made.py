"""NADE and MADE beyond what every autoregressive model is checked for (tests/test_autoregressive.py):
NADE's shared weights, MADE's masks (the degrees of the paper's eq. 12-14), the M-mask ensemble (exactly
the mean of its members' probabilities, still normalised, cached exactly), and the command line on grey
and colour data."""

import json

import pytest
import torch

import genzoo
from conftest import all_images
from genzoo.cli import main
from genzoo.models.autoregressive.made import hidden_degrees


def made(image_shape=(1, 2, 3), levels=2, seed=0, **kw):
    torch.manual_seed(seed)
    return genzoo.models.build("made", image_shape=image_shape, levels=levels, **{"hidden_units": 10, **kw})


def test_the_degrees_are_drawn_as_the_paper_says():
    deg = hidden_degrees(D=12, H=200, layers=3, mask=4)
    assert deg.shape == (3, 200) and int(deg.min()) >= 1 and int(deg.max()) <= 11
    assert all(int(deg[l].min()) >= int(deg[l - 1].min()) for l in range(1, 3))  # eq. 12: from the layer below's min
    assert torch.equal(deg, hidden_degrees(12, 200, 3, 4)) and not torch.equal(deg, hidden_degrees(12, 200, 3, 5))


@pytest.mark.parametrize("image_shape,levels", [((1, 2, 3), 2), ((2, 1, 2), 3)])
def test_the_ensemble_is_the_mean_of_its_masks_probabilities_and_sums_to_one(image_shape, levels):
    model = made(image_shape, levels, num_masks=4, num_layers=2).eval()
    x = all_images(image_shape, levels)
    with torch.no_grad():
        ensemble = model.log_prob(x).double()
        members = torch.stack([model.log_probs_of_mask(model.scale(x), m).gather(1, x.long()[:, None])
                               .flatten(1).sum(1) for m in range(4)]).double()  # (4, images): log p_m(x)
    assert torch.allclose(ensemble, torch.logsumexp(members, 0) - torch.log(torch.tensor(4.0)), atol=1e-5)
    assert ensemble.exp().sum().item() == pytest.approx(1.0, abs=1e-6)
    assert not torch.allclose(members[0], members[1])  # the masks do differ


def test_the_ensembles_cache_matches_the_full_pass_while_sampling_and_draws_the_naive_images():
    from test_autoregressive import _sample_checking_the_cache

    model = made((3, 2, 3), 3, num_masks=3, num_layers=2).eval()
    with torch.no_grad():
        x, worst = _sample_checking_the_cache(model, 16, torch.Generator().manual_seed(0))
        assert worst < 1e-4
        assert torch.equal(x, model.sample(16, generator=torch.Generator().manual_seed(0)))
        assert torch.equal(x, model.sample(16, generator=torch.Generator().manual_seed(0), naive=True))


@pytest.mark.parametrize("image_shape,levels,masks", [((1, 3, 3), 2, 1), ((3, 2, 2), 3, 2)])
def test_the_direct_connections_are_causal_normalised_and_cached_exactly(image_shape, levels, masks):
    from test_autoregressive import _sample_checking_the_cache, dependency_map, earlier

    model = made(image_shape, levels, num_masks=masks, hidden_units=3, direct=True).eval()
    with torch.no_grad():
        model.direct.normal_()  # they start at zero; random, they carry most of the dependence here
    C, H, W = image_shape
    deps = dependency_map(model, image_shape, levels)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                seen = deps[c, i, j] > 0
                assert not seen[~earlier(c, i, j, C, H, W)].any()
                assert seen[earlier(c, i, j, C, H, W)].all(), "a direct connection to an earlier sub-pixel is missing"
    small = made((1, 2, 2), levels, num_masks=masks, hidden_units=3, direct=True).eval()
    with torch.no_grad():
        small.direct.normal_()
        assert small.log_prob(all_images((1, 2, 2), levels)).double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)
        x, worst = _sample_checking_the_cache(model, 8, torch.Generator().manual_seed(0))
        assert worst < 1e-5
        assert torch.equal(x, model.sample(8, generator=torch.Generator().manual_seed(0), naive=True))
    assert made().direct is None  # off by default: folders saved before the option load as they were


def test_training_draws_one_mask_a_step():
    model = made(num_masks=5).train()
    x = model.scale(torch.randint(0, 2, (4, 1, 2, 3)))
    torch.manual_seed(0)
    draws = {tuple(model.logits(x).flatten().tolist()) for _ in range(12)}
    assert len(draws) > 1  # different masks, different conditionals
    model.eval()
    assert torch.equal(model.logits(x), model.logits(x))  # evaluation: the ensemble, every time


def test_nade_shares_its_input_weights_across_the_conditionals():
    # a_{d+1} = a_d + W_d x_d: one row of W per sub-pixel whatever d, so the parameters grow as D H
    torch.manual_seed(0)
    m = genzoo.models.build("nade", image_shape=(1, 4, 4), levels=2, hidden_units=5)
    assert m.W.shape == (16, 5) and m.V.shape == (16, 1, 5)  # binary: one Bernoulli logit per sub-pixel
    c = genzoo.models.build("nade", image_shape=(3, 2, 2), levels=4, hidden_units=5)
    assert c.W.shape == (12, 5) and c.V.shape == (12, 4, 5)


@pytest.mark.parametrize("name,options", [("nade", ["--hidden-units", "16"]),
                                          ("made", ["--hidden-units", "32", "--num-masks", "2"])])
@pytest.mark.parametrize("data", [["--data", "digits"], ["--data", "colour-mnist", "--train-limit", "64"]])
def test_each_trains_evaluates_samples_completes_and_reports(name, options, data, tmp_path, capsys):
    run = tmp_path / name
    assert main(["train", name, *data, "--out", str(run), "--epochs", "1", "--batch-size", "64", "--eval-limit", "30",
                 "--threads", "1", *options]) == 0
    assert main(["eval", str(run), "--json", "--limit", "30"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["likelihood_kind"] == "exact" and s["count"] == 30
    cached, naive = tmp_path / "cached.png", tmp_path / "naive.png"
    assert main(["sample", str(run), "-n", "3", "-o", str(cached)]) == 0
    assert main(["sample", str(run), "-n", "3", "-o", str(naive), "--naive"]) == 0
    assert cached.read_bytes() == naive.read_bytes()
    assert main(["complete", str(run), "-o", str(tmp_path / "c.png"), "-n", "2", "--samples", "2"]) == 0
    assert main(["report", str(run), "-o", str(tmp_path / "r.html"), "--samples", "2"]) == 0


@pytest.mark.parametrize("image_shape,levels,options", [
    ((1, 28, 28), 2, {}),  # the defaults, on binarized MNIST's shape
    ((1, 28, 28), 2, {"hidden_units": 64, "direct": True}),  # the budget recipe's kind (2,000 units there)
    ((3, 2, 3), 3, {"hidden_units": 40, "direct": True}),  # colour, k levels
])
def test_the_fused_sampler_matches_the_full_pass_while_sampling_and_draws_the_cached_images(image_shape, levels,
                                                                                            options):
    from genzoo.models.autoregressive.ar_base import raster, uniforms
    from genzoo.models.autoregressive.made import fused_sample

    model = genzoo.models.build("made", image_shape=image_shape, levels=levels, **options).eval()
    with torch.no_grad():
        if model.direct is not None:
            model.direct.normal_(std=0.3)  # they start at zero; random, they carry part of the dependence
        steps = []
        u = uniforms(6, image_shape, torch.Generator().manual_seed(3), "cpu")
        x = fused_sample(model, u, 0, trace=lambda d, logits: steps.append(logits.clone()))
        # each step's logits, taken mid-sampling, against one full pass on the finished images: output d reads
        # the inputs before d only (causality, tested above), which are final when d is drawn
        full = raster(model.log_probs_of_mask(model.scale(x), 0).movedim(1, -1))  # (6, D, k), raster order
        fused = torch.log_softmax(torch.stack(steps, 1), -1)  # (6, D, k)
        assert (fused - full).abs().max().item() < 1e-4
        assert torch.equal(x, model.sample_whole(u, None, 1.0))  # the hook sample() calls for whole images
        assert torch.equal(x, model.sample(6, generator=torch.Generator().manual_seed(3)))
        nothing = dict(prefix=torch.zeros(6, *image_shape, dtype=torch.uint8), known=torch.zeros(image_shape,
                                                                                                 dtype=torch.bool))
        generic = model.sample(6, generator=torch.Generator().manual_seed(3), **nothing)  # a completion: the loop
        assert torch.equal(x, generic)  # the generic cached sampler draws the same images
        assert x.dtype == torch.uint8 and int(x.max()) < levels
    with pytest.raises(ValueError, match="one hidden layer"):
        fused_sample(made(num_layers=2), uniforms(1, (1, 2, 3), None, "cpu"), 0)
