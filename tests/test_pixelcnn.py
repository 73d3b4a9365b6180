"""PixelCNN and Gated PixelCNN specifics: blind spots, class conditioning, sampling, errors.

What every autoregressive model must satisfy is in test_autoregressive.py."""

import pytest
import torch

import genzoo
from conftest import all_images, tiny
from test_autoregressive import dependency_map, earlier


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
