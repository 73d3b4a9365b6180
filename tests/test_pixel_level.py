"""PixelCNN++ and PixelSNAIL beyond what every autoregressive model is checked for (tests/test_autoregressive.py,
tests/test_mixture.py): the joint (R, G, B) mixture of the paper written as exact sub-pixel conditionals, the
receptive fields (no blind spot), the softmax option, dropout, and the command line on grey and colour data."""

import itertools
import json

import pytest
import torch

import genzoo
from conftest import TINY, all_images
from genzoo.cli import main
from genzoo.likelihood import discretized_logistic_log_prob
from test_autoregressive import dependency_map, earlier
from test_colour import picture_folder

PIXEL_LEVEL = ["pixelcnn-pp", "pixelsnail"]


def build(name, image_shape, levels, seed=0, **kw):
    torch.manual_seed(seed)
    return genzoo.models.build(name, image_shape=image_shape, levels=levels, **{**TINY[name], **kw})


def paper_joint_log_prob(params, x, levels, K):
    """log P(x) of PixelCNN++'s per-pixel mixture written independently of the model's code (Salimans et al. 2017,
    section 2.2): P(pixel) = sum_k pi_k prod_c L(x_c; mu_ck + sum_{c'<c} tanh(a_{c'ck}) x_c', s_ck), summed over
    pixels. params: [B, Q, H, W] (pi | means | log-scales | coefficients), x: uint8 [B, C, H, W]."""
    B, C = x.shape[:2]
    value = x.double() * 2 / (levels - 1) - 1
    pi = torch.log_softmax(params[:, :K], dim=1)  # (B, K, H, W)
    mu = params[:, K:K + C * K].unflatten(1, (C, K))
    log_s = params[:, K + C * K:K + 2 * C * K].unflatten(1, (C, K)).clamp(min=-7)
    coeff = torch.tanh(params[:, K + 2 * C * K:]).unflatten(1, (-1, K))
    total, pairs = pi, itertools.count()
    for c in range(C):
        mean = mu[:, c] + sum((coeff[:, next(pairs)] * value[:, cp:cp + 1] for cp in range(c)), torch.zeros_like(pi))
        total = total + discretized_logistic_log_prob(x[:, c:c + 1].long(), mean, log_s[:, c], levels)
    return torch.logsumexp(total, dim=1).flatten(1).sum(1)  # (B,)


@pytest.mark.parametrize("name", PIXEL_LEVEL)
@pytest.mark.parametrize("image_shape", [(3, 2, 2), (2, 1, 3), (1, 2, 2)])
def test_the_sub_pixel_conditionals_are_the_papers_joint_mixture_of_each_pixel(name, image_shape):
    levels, K = 5, 3
    model = build(name, image_shape, levels, mixtures=K).double().eval()
    x = torch.randint(0, levels, (6, *image_shape), dtype=torch.uint8)
    with torch.no_grad():
        params = model.pixel_params(model.scale(x))  # a pixel's params never see the pixel (checked below)
        assert torch.allclose(model.log_prob(x), paper_joint_log_prob(params, x, levels, K), atol=1e-9)


@pytest.mark.parametrize("name", PIXEL_LEVEL)
def test_a_pixels_parameters_see_every_earlier_pixel_and_nothing_of_itself(name):
    image_shape, levels = (2, 5, 5), 4
    model = build(name, image_shape, levels, **({"num_scales": 3} if name == "pixelcnn-pp" else {})).double()
    C, H, W = image_shape
    for seed in range(2):
        x = model.scale(torch.randint(0, levels, (1, *image_shape), generator=torch.Generator().manual_seed(seed)))
        x.requires_grad_(True)
        params = model.pixel_params(x)  # (1, Q, H, W)
        for i, j in itertools.product(range(H), range(W)):
            (grad,) = torch.autograd.grad(params[0, :, i, j].sum(), x, retain_graph=True)
            seen = grad[0].abs().sum(0) > 0  # (H, W)
            assert torch.equal(seen, earlier(0, i, j, 1, H, W)[0]), f"receptive field of {(i, j)}"


@pytest.mark.parametrize("image_shape,scales", [((2, 7, 5), 3), ((1, 9, 8), 3), ((3, 9, 10), 4), ((1, 5, 4), 1),
                                                ((1, 1, 6), 2), ((1, 6, 1), 3)])
def test_pixelcnn_pp_per_pixel_cache_is_the_full_pass_at_every_pixel_and_scale(image_shape, scales):
    # Each layer's value at a position is computed once, at the pixel that completes it (scale s where i and j are
    # multiples of 2^s); odd sizes round up at each scale (7 -> 4 -> 2, 5 -> 3 -> 2), 9 x 8 reaches a third row of
    # the coarsest scale; then four scales, one, and images of one row or one column. Known pixels anywhere
    # (completion) are fed through the same steps.
    model = build("pixelcnn-pp", image_shape, 4, num_scales=scales).double().eval()
    C, H, W = image_shape
    x = model.scale(torch.randint(0, 4, (3, *image_shape), dtype=torch.uint8,
                                  generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        full = model.logits(x)  # (3, k, C, H, W)
        sampler, worst = model.cached_sampler(3), 0.0
        for i, j, c in itertools.product(range(H), range(W), range(C)):
            if (i * W + j) % 5 == 2:  # a pixel known in completion: never asked about, caught up on
                continue
            worst = max(worst, (sampler.logits(x, c, i, j) - full[:, :, c, i, j]).abs().max().item())
    assert worst < 1e-9, worst


@pytest.mark.parametrize("name", PIXEL_LEVEL)
@pytest.mark.parametrize("image_shape,levels", [((3, 1, 1), 3), ((1, 2, 2), 3)])
def test_the_softmax_option_is_causal_and_normalised(name, image_shape, levels):
    model = build(name, image_shape, levels, output="softmax").double()
    with torch.no_grad():
        assert model.log_prob(all_images(image_shape, levels)).exp().sum().item() == pytest.approx(1.0, abs=1e-10)
    if image_shape[0] == 3:  # on a bigger colour image: nothing at or after the sub-pixel
        deps = dependency_map(build(name, (3, 2, 2), levels, output="softmax"), (3, 2, 2), levels)
        for c, i, j in itertools.product(range(3), range(2), range(2)):
            assert torch.all(deps[c, i, j][~earlier(c, i, j, 3, 2, 2)] == 0)


@pytest.mark.parametrize("name", PIXEL_LEVEL)
def test_dropout_acts_in_training_only_and_is_validated(name):
    model = build(name, (1, 4, 4), 4, dropout=0.5)
    x = torch.randint(0, 4, (3, 1, 4, 4), dtype=torch.uint8)
    model.train()
    assert not torch.equal(model.loss(x)["nll"], model.loss(x)["nll"])
    model.eval()
    assert torch.equal(model.log_prob(x), model.log_prob(x))
    with pytest.raises(genzoo.GenzooError, match="dropout"):
        build(name, (1, 4, 4), 4, dropout=1.0)


SMALL = {"pixelcnn-pp": ["--hidden-channels", "6", "--num-resnet", "1", "--num-scales", "2", "--mixtures", "3"],
         "pixelsnail": ["--hidden-channels", "6", "--num-blocks", "1", "--num-resnet", "1", "--mixtures", "3"]}


@pytest.mark.parametrize("name", PIXEL_LEVEL)
@pytest.mark.parametrize("colour", [False, True])
def test_each_trains_evaluates_samples_completes_and_reports(name, colour, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # colour: 8 x 8 RGB pictures (a folder dataset), small enough for the naive sampler in a test
    data = (["--data", str(picture_folder(tmp_path / "pictures", 16)), "--image-size", "8"] if colour
            else ["--data", "digits", "--train-limit", "320"])
    run = tmp_path / name
    assert main(["train", name, *data, "--out", str(run), "--epochs", "1", "--batch-size", "32", "--eval-limit", "20",
                 "--threads", "1", *SMALL[name]]) == 0
    assert main(["eval", str(run), "--json", "--limit", "20"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["likelihood_kind"] == "exact" and 0 < s["count"] <= 20 and s["nll_nats"] > 0
    cached, naive = tmp_path / "cached.png", tmp_path / "naive.png"
    assert main(["sample", str(run), "-n", "2", "-o", str(cached)]) == 0
    assert main(["sample", str(run), "-n", "2", "-o", str(naive), "--naive"]) == 0
    assert cached.read_bytes() == naive.read_bytes()
    assert main(["complete", str(run), "-o", str(tmp_path / "c.png"), "-n", "2", "--samples", "2"]) == 0
    assert main(["report", str(run), "-o", str(tmp_path / "r.html"), "--samples", "2"]) == 0
