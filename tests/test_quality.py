"""Sample quality beside likelihood: the metrics on known cases, and through genzoo eval --fid."""

import json

import pytest
import torch

from genzoo import data
from genzoo.evaluation import quality
from genzoo.cli import main


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def digits_net(tmp_path_factory):
    train, test = data.load("digits", "train"), data.load("digits", "test")
    cache = tmp_path_factory.mktemp("features")
    net, record = quality.feature_network({"name": "digits"}, train, test, 17, cache)
    return net, record, train, test, cache


def test_the_feature_network_knows_the_digits_and_is_cached(digits_net):
    net, record, train, test, cache = digits_net
    assert record["kind"] == "classifier" and record["test_accuracy"] > 0.9
    again, cached = quality.feature_network({"name": "digits"}, train, test, 17, cache)  # loaded, not retrained
    assert cached == record and torch.equal(again(test.images[:5]), net(test.images[:5]))
    features = net(train.images[:1000])  # standardised on the training images
    assert features.mean(0).abs().max() < 0.2 and (features.std(0) - 1).abs().max() < 0.2


def test_identical_sets_are_at_distance_zero_and_a_shifted_set_is_farther(digits_net):
    net, _, train, test, _ = digits_net
    x = test.images[:200]
    same = quality.frechet_and_kernel(net, x, x.clone())
    brighter = (x.long() + 6).clamp(max=16).to(torch.uint8)  # the same digits, washed out
    other_digits = train.images[:200]
    shifted, fresh = quality.frechet_and_kernel(net, x, brighter), quality.frechet_and_kernel(net, x, other_digits)
    assert abs(same["fid"]) < 1e-2  # KID's unbiased estimate of identical sets is slightly negative, near 0:
    assert abs(same["kid"]) < 0.05 * shifted["kid"]
    assert shifted["fid"] > fresh["fid"] > same["fid"] and shifted["kid"] > fresh["kid"]


def test_precision_and_recall_on_known_sets():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 4, generator=g, dtype=torch.float64)
    assert quality.precision_recall(real, real.clone()) == (1.0, 1.0)
    far = real + 100
    assert quality.precision_recall(real, far) == (0.0, 0.0)
    collapsed = real[:5].repeat(60, 1)  # every sample one of five real points: precise, but no recall
    precision, recall = quality.precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.2


def test_eval_fid_is_lower_after_30_epochs_than_after_1(tmp_path, capsys):
    figures = {}
    for epochs in (1, 30):
        run = tmp_path / f"e{epochs}"
        assert main(["train", "gated-pixelcnn", "--data", "digits", "--out", str(run), "--epochs", str(epochs),
                     "--batch-size", "100", "--hidden-channels", "8", "--num-layers", "2", "--head-channels", "16",
                     "--kernel", "3", "--first-kernel", "3", "--warmup-steps", "10", "--lr", "5e-3", "--eval-limit",
                     "20",
                     "--threads", "2"]) == 0
        capsys.readouterr()
        assert main(["eval", str(run), "--fid", "300", "--json"]) == 0
        figures[epochs] = json.loads(capsys.readouterr().out)["quality"]
    for q in figures.values():
        assert all(map(lambda v: v == v and abs(v) < float("inf"), (q["fid"], q["kid"], q["precision"], q["recall"])))
        assert q["fid_n"] == 300 and q["reference_n"] == 148 and q["floor"]["fid"] < q["fid"]
    assert figures[30]["fid"] < figures[1]["fid"]


def test_a_model_without_a_sampler_says_so(tmp_path, capsys):
    run = tmp_path / "ae"
    assert main(["train", "autoencoder", "--data", "digits", "--out", str(run), "--epochs", "1", "--width", "16",
                 "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--fid", "50"]) == 2
    assert "no sampler" in capsys.readouterr().err
