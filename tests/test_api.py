"""The Python API takes what users hold and says what it does: images as uint8, int, float in [0, 1], bool,
numpy arrays, PIL images or one image; log_prob without gradients unless asked; sample(n) checks n; complete();
save never silently replaces another model; a shipped model's folder is never written by eval."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo
from genzoo.cli import main
from conftest import TINY, tiny


def test_every_form_of_the_same_images_gets_the_same_log_prob():
    model = tiny("pixelcnn", image_shape=(1, 4, 4), levels=2).eval()
    x = torch.randint(0, 2, (3, 1, 4, 4), dtype=torch.uint8)
    want = model.log_prob(x)
    forms = [x.long(), x.bool(), x.float(), x.double(), x.numpy(), x.float().numpy(), x.bool().numpy()]
    for form in forms:
        assert torch.equal(model.log_prob(form), want), type(form)
    one = model.log_prob(x[:1])  # (a batch of one: convolutions may round otherwise than in a batch of three)
    assert torch.equal(model.log_prob(x[0]), one)  # a single image [C, H, W]
    assert torch.equal(model.log_prob(x[0, 0]), one)  # one channel as [H, W]
    picture = Image.fromarray((x[0, 0].numpy() * 255).astype(np.uint8))  # 0 and 255: thresholded at 128
    assert torch.equal(model.log_prob(picture), one)


def test_floats_are_quantized_to_the_levels_and_out_of_range_is_one_error():
    model = tiny("nade", image_shape=(1, 2, 2), levels=5)
    got = model.images(torch.tensor([[0.0, 0.26], [0.5, 1.0]]))
    assert got.tolist() == [[[[0, 1], [2, 4]]]]  # round(x (k - 1))
    for bad in (torch.tensor([[1.5, 0.0], [0.0, 0.0]]), torch.full((2, 2), float("nan")), "pixels", [[0, 1]]):
        with pytest.raises(genzoo.GenzooError):
            model.log_prob(bad)


def test_log_prob_is_off_the_graph_unless_asked():
    model = tiny("nade", image_shape=(1, 2, 2))
    x = torch.randint(0, 2, (2, 1, 2, 2), dtype=torch.uint8)
    assert not model.log_prob(x).requires_grad
    lp = model.log_prob(x, grad=True)
    assert lp.requires_grad
    lp.sum().backward()
    assert any(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", [n for n in genzoo.models.names() if genzoo.models.get(n).can_sample])
def test_sample_checks_how_many(name):
    model = genzoo.models.build(name, image_shape=(1, 4, 4), levels=2, **TINY.get(name, {}))
    for n in (0, -1, 2.0, True):
        with pytest.raises(genzoo.GenzooError, match="n must be a positive integer"):
            model.sample(n)


def test_complete_keeps_what_is_known_and_draws_the_rest():
    model = tiny("pixelcnn", image_shape=(1, 4, 4), levels=2).eval()
    x = torch.randint(0, 2, (5, 1, 4, 4), dtype=torch.uint8)
    known = torch.zeros(1, 4, 4, dtype=torch.bool)
    known[:, :2] = True
    out = model.complete(x.float(), known, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out[:, :, :2], x[:, :, :2])
    again = model.complete(x, known, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(genzoo.GenzooError, match="known must be"):
        model.complete(x, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(genzoo.GenzooError, match="does not complete"):
        genzoo.models.build("vae", image_shape=(1, 4, 4), levels=2).complete(x, known)


def test_save_refuses_to_replace_another_model_unless_asked(tmp_path):
    a, b = tiny("nade", image_shape=(1, 2, 2)), tiny("pixelcnn", image_shape=(1, 2, 2))
    a.save(tmp_path / "m")
    with pytest.raises(genzoo.GenzooError, match="holds a saved model already"):
        b.save(tmp_path / "m")
    assert genzoo.load(tmp_path / "m").name == "nade"  # untouched
    b.save(tmp_path / "m", overwrite=True)
    assert genzoo.load(tmp_path / "m").name == "pixelcnn"


def test_eval_of_a_shipped_model_keeps_nothing_in_its_folder(tmp_path, monkeypatch, capsys):
    root = tmp_path / "shipped"
    run = root / "tiny-digits"
    assert main(["train", "nade", "--data", "digits", "--out", str(run), "--epochs", "1", "--hidden-units", "4",
                 "--threads", "1"]) == 0
    monkeypatch.setenv("GENZOO_PRETRAINED", str(root))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir())
    capsys.readouterr()
    assert main(["eval", "tiny-digits", "--limit", "20", "--json"]) == 0
    out = capsys.readouterr()
    assert "is a shipped model: this figure is not kept" in out.err and json.loads(out.out)["count"] == 20
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir()) == before
