"""PixelCNN and Gated PixelCNN: causality, normalisation, sampling, I/O."""

import pytest
import torch

import genzoo
from conftest import AUTOREGRESSIVE, all_images, tiny


def dependency_map(model, image_shape, levels):
    """deps[c, i, j] = |d logits(c, i, j) / d x| summed over 3 random inputs: float [C,H,W, C,H,W]."""
    C, H, W = image_shape
    deps = torch.zeros(C, H, W, C, H, W)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x = model.scale(torch.randint(0, levels, (1, C, H, W), generator=g)).requires_grad_(True)
        logits = model.logits(x)  # (1, k, C, H, W)
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    (grad,) = torch.autograd.grad(logits[0, :, c, i, j].sum(), x, retain_graph=True)
                    deps[c, i, j] += grad[0].abs()
    return deps


def earlier(c, i, j, C, H, W):
    """bool [C, H, W]: sub-pixels before (c, i, j) in raster order, channels last."""
    before = torch.zeros(C, H, W, dtype=torch.bool)
    before.view(C, -1)[:, : i * W + j] = True
    before[:c, i, j] = True
    return before


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("image_shape", [(1, 5, 5), (3, 3, 4)])
def test_no_output_depends_on_itself_or_a_later_subpixel(name, image_shape):
    levels = 4
    model = tiny(name, image_shape, levels, hidden_channels=6)
    deps = dependency_map(model, image_shape, levels)
    C, H, W = image_shape
    for c in range(C):
        for i in range(H):
            for j in range(W):
                later = ~earlier(c, i, j, C, H, W)
                assert torch.all(deps[c, i, j][later] == 0), f"logits of {(c, i, j)} see a later sub-pixel"


def test_gated_pixelcnn_has_no_blind_spot():
    # With enough layers to cover a 5x5 image, every logit depends on *every* earlier pixel,
    # including those above and to the right that plain PixelCNN's stacked masks miss.
    model = tiny("gated-pixelcnn", (1, 5, 5), 2, num_layers=5, hidden_channels=8, kernel=3, first_kernel=3)
    deps = dependency_map(model, (1, 5, 5), 2)
    for i in range(5):
        for j in range(5):
            assert torch.all(deps[0, i, j][earlier(0, i, j, 1, 5, 5)] > 0), f"blind spot at {(i, j)}"
    assert deps[0, 2, 0][0, 1, 4] > 0  # the far upper-right pixel of the row above


def test_plain_pixelcnn_has_the_blind_spot():
    # The classic defect (van den Oord et al. 2016b, Fig. 1): with 3x3 masks, pixel (i, j)
    # never sees (i-1, j+2..) however deep the stack, once beyond the first layer's reach.
    model = tiny("pixelcnn", (1, 3, 9), 2, num_layers=6, first_kernel=3, kernel=3)
    deps = dependency_map(model, (1, 3, 9), 2)
    assert deps[0, 2, 0][0, 1, 1] > 0
    assert deps[0, 2, 0][0, 1, 5] == 0 and deps[0, 2, 0][0, 0, 8] == 0


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("image_shape,levels", [((1, 2, 2), 2), ((1, 1, 3), 3), ((2, 1, 2), 3)])
def test_probabilities_sum_to_one(name, image_shape, levels):
    model = tiny(name, image_shape, levels)
    with torch.no_grad():
        total = model.log_prob(all_images(image_shape, levels)).double().exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_conditional_model_is_normalised_for_every_class():
    model = tiny("gated-pixelcnn", (1, 2, 2), 2, num_classes=3)
    xs = all_images((1, 2, 2), 2)
    with torch.no_grad():
        totals = [model.log_prob(xs, torch.full((len(xs),), c)).double().exp().sum().item() for c in range(3)]
        p0, p1 = (model.log_prob(xs, torch.full((len(xs),), c)) for c in (0, 1))
    assert totals == pytest.approx([1.0] * 3, abs=1e-5)
    assert not torch.allclose(p0, p1)  # the label does change the distribution
    with pytest.raises(genzoo.GenzooError, match="labels"):
        model.log_prob(xs)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_logits_of_row_i_do_not_change_when_later_rows_are_cut(name):
    # What makes sampling row i on rows 0..i only (crop_rows_when_sampling) exact.
    model = tiny(name, (2, 5, 4), 3)
    x = model.scale(torch.randint(0, 3, (2, 2, 5, 4)))
    full = model.logits(x)
    for i in range(5):
        assert torch.allclose(model.logits(x[:, :, : i + 1])[:, :, :, i], full[:, :, :, i], atol=1e-6)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_loss_reports_nats_and_bits(name):
    model = tiny(name, (1, 4, 4), 2)
    x = torch.randint(0, 2, (3, 1, 4, 4), dtype=torch.uint8)
    out = model.loss(x)
    assert out["nll"].shape == (3,)
    assert torch.allclose(out["loss"], out["nll"].mean() / 16)
    assert torch.allclose(out["bits_per_dim"], out["nll"] / (16 * torch.log(torch.tensor(2.0))))
    assert model.likelihood_kind == "exact"


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_save_load_round_trip_gives_identical_log_prob(name, tmp_path):
    model = tiny(name, (1, 4, 4), 3)
    x = torch.randint(0, 3, (4, 1, 4, 4), dtype=torch.uint8)
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = genzoo.load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_fixed_seed_gives_the_same_samples(name):
    model = tiny(name, (1, 4, 4), 3)
    a = model.sample(5, generator=torch.Generator().manual_seed(7))
    b = model.sample(5, generator=torch.Generator().manual_seed(7))
    c = model.sample(5, generator=torch.Generator().manual_seed(8))
    assert a.dtype == torch.uint8 and a.shape == (5, 1, 4, 4) and int(a.max()) < 3
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_samples_follow_the_model_distribution():
    # 2x2 binary images: the empirical frequency of each of the 16 images matches exp(log_prob).
    model = tiny("gated-pixelcnn", (1, 2, 2), 2)
    xs = all_images((1, 2, 2), 2)
    with torch.no_grad():
        p = model.log_prob(xs).exp()
    n = 4000
    s = model.sample(n, generator=torch.Generator().manual_seed(0))
    codes = (s.view(n, 4).long() * torch.tensor([8, 4, 2, 1])).sum(1)
    freq = torch.bincount(codes, minlength=16).float() / n
    assert torch.all((freq - p).abs() < 4 * torch.sqrt(p * (1 - p) / n) + 1e-3)


def test_completion_keeps_the_known_pixels():
    model = tiny("pixelcnn", (1, 4, 4), 3)
    prefix = torch.randint(0, 3, (6, 1, 4, 4), dtype=torch.uint8)
    known = torch.zeros(1, 4, 4, dtype=torch.bool)
    known[:, :2] = True
    out = model.sample(6, generator=torch.Generator().manual_seed(0), prefix=prefix, known=known)
    assert torch.equal(out[:, :, :2], prefix[:, :, :2])
    assert not torch.equal(out[:, :, 2:], prefix[:, :, 2:])


@pytest.mark.parametrize("bad,match", [
    (torch.zeros(2, 1, 4, 4), "integer"),
    (torch.zeros(2, 1, 5, 4, dtype=torch.uint8), "shape"),
    (torch.full((2, 1, 4, 4), 3, dtype=torch.uint8), r"\[0, 3\)"),
    (torch.full((2, 1, 4, 4), float("nan")), "integer"),
])
def test_bad_images_give_a_clear_error(bad, match):
    with pytest.raises(genzoo.GenzooError, match=match):
        tiny("pixelcnn", (1, 4, 4), 3).loss(bad)


def test_registry_and_config_validation():
    assert {"pixelcnn", "gated-pixelcnn"} <= set(genzoo.models.names())
    with pytest.raises(genzoo.GenzooError, match="unknown model"):
        genzoo.models.build("pixelcnnn")
    with pytest.raises(genzoo.GenzooError, match="unknown option"):
        genzoo.models.build("pixelcnn", hidden=3)
    with pytest.raises(genzoo.GenzooError, match="odd"):
        genzoo.models.build("pixelcnn", kernel=4)
    with pytest.raises(genzoo.GenzooError, match="levels"):
        genzoo.models.build("pixelcnn", levels=1)
