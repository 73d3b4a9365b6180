"""The discretized logistic mixture output (PixelCNN++, Salimans et al. 2017) as an option of every
autoregressive model: normalised over the k levels exactly (float64), for each sub-pixel and over every
tiny image; causal on colour (R, G, B) with the coupled means; the fast training path equal to the
reference; the cache equal to the full pass while sampling; cached == naive."""

import pytest
import torch

import genzoo
from conftest import AUTOREGRESSIVE, TINY, all_images
from genzoo.likelihood import logistic_mixture_level_log_probs, logistic_mixture_log_prob
from test_autoregressive import _sample_checking_the_cache, dependency_map, earlier


def mixture_model(name, image_shape, levels, seed=0, **kw):
    torch.manual_seed(seed)
    return genzoo.models.build(name, image_shape=image_shape, levels=levels,
                               **{**TINY[name], "output": "mixture", "mixtures": 3, **kw})


@pytest.mark.parametrize("levels", [2, 5, 256])
def test_every_sub_pixels_mixture_sums_to_one_over_the_levels_in_float64(levels):
    g = torch.Generator().manual_seed(0)
    w, mean, log_s = (torch.randn(50, 4, generator=g, dtype=torch.float64) * s for s in (2.0, 1.5, 1.0))
    log_s = log_s - 3  # narrow components too: their mass sits in one or two bins
    v = torch.arange(levels).view(-1, 1)
    total = logistic_mixture_log_prob(v, w, mean, log_s, levels).exp().sum(0)  # (50,)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-12, rtol=0)


@pytest.mark.parametrize("levels", [2, 3, 256])
def test_all_levels_at_once_equal_each_level_on_its_own(levels):
    # a sampler's step scores every level with each bin edge evaluated once; the likelihood, a level at a time
    g = torch.Generator().manual_seed(1)
    w, mean, log_s = (torch.randn(2, 7, 4, generator=g, dtype=torch.float64) * s for s in (2.0, 1.5, 1.0))
    log_s = log_s - 3
    v = torch.arange(levels).view(-1, 1, 1)
    each = logistic_mixture_log_prob(v, w, mean, log_s, levels)  # (k, 2, 7)
    at_once = logistic_mixture_level_log_probs(w, mean, log_s, levels)
    assert at_once.shape == (levels, 2, 7)
    assert torch.allclose(at_once, each, atol=1e-12, rtol=0)
    assert torch.allclose(at_once.exp().sum(0), torch.ones(2, 7, dtype=torch.float64), atol=1e-12, rtol=0)
    # a level scored as its neighbour fails: the check can tell the bins apart
    assert not torch.allclose(at_once[1:], each[:-1], atol=1e-3)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("image_shape,levels", [((1, 1, 3), 4), ((3, 1, 1), 5)])
def test_each_model_with_the_mixture_is_normalised_over_every_tiny_image(name, image_shape, levels):
    model = mixture_model(name, image_shape, levels).double().eval()
    with torch.no_grad():
        total = model.log_prob(all_images(image_shape, levels)).exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_the_training_path_equals_the_log_probabilities_over_all_levels(name):
    # loss() scores the mixture at the drawn levels only; the reference sums log-softmax over all k levels
    model = mixture_model(name, (3, 3, 2), 16).double().eval()
    x = torch.randint(0, 16, (4, 3, 3, 2), dtype=torch.uint8)
    with torch.no_grad():
        fast = model.loss(x)["nll"]
        lp = torch.log_softmax(model.logits(model.scale(x)), dim=1)  # (B, k, C, H, W)
        reference = -lp.gather(1, x.long()[:, None]).flatten(1).sum(1)
    assert torch.allclose(fast, reference, atol=1e-9)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_colour_with_the_mixture_is_causal_and_the_mean_follows_the_earlier_channels(name):
    model = mixture_model(name, (3, 2, 2), 8)
    deps = dependency_map(model, (3, 2, 2), 8)
    for c in range(3):
        for i in range(2):
            for j in range(2):
                assert not (deps[c, i, j][~earlier(c, i, j, 3, 2, 2)] > 0).any(), (c, i, j)
    # the coupling: B's distribution at a pixel moves with that pixel's R (through tanh(a) x_R), G's with R
    x = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    with torch.no_grad():
        before = model.logits(model.scale(x))[0, :, 2, 0, 0]
        x[0, 0, 0, 0] = 7
        after = model.logits(model.scale(x))[0, :, 2, 0, 0]
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_the_cache_matches_the_full_pass_while_sampling_and_equals_naive(name):
    model = mixture_model(name, (3, 3, 2), 8).eval()
    with torch.no_grad():
        x, worst = _sample_checking_the_cache(model, 8, torch.Generator().manual_seed(0))
        assert worst < 1e-4, worst
        assert torch.equal(x, model.sample(8, generator=torch.Generator().manual_seed(0)))
        assert torch.equal(x, model.sample(8, generator=torch.Generator().manual_seed(0), naive=True))


def test_the_mixture_is_a_few_numbers_per_sub_pixel_not_k():
    soft = genzoo.models.build("pixelcnn", image_shape=(3, 8, 8), levels=256)
    mix = genzoo.models.build("pixelcnn", image_shape=(3, 8, 8), levels=256, output="mixture")
    assert soft.output_size == 256 and mix.output_size == (2 + 3) * 10
    assert sum(p.numel() for p in mix.parameters()) < sum(p.numel() for p in soft.parameters())
    with pytest.raises(genzoo.GenzooError, match="output must be one of"):
        genzoo.models.build("pixelcnn", image_shape=(1, 4, 4), levels=4, output="gaussian")


def test_mixtures_without_the_mixture_output_is_refused_not_ignored(tmp_path, capsys):
    from genzoo.cli import main

    argv = ["train", "pixelcnn", "--data", "digits", "--epochs", "1", "--hidden-channels", "4", "--num-layers", "1",
            "--head-channels", "4", "--threads", "1"]
    assert main([*argv, "--mixtures", "3", "--out", str(tmp_path / "a")]) == 2
    assert "--mixtures takes effect only with --output mixture (this pixelcnn has output softmax)" in \
        capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main([*argv, "--mixtures", "3", "--output", "mixture", "--out", str(tmp_path / "b"), "--eval-limit",
                 "20"]) == 0
