"""The trainer knows nothing about models; its schedule; torch.compile gives the same losses."""

import json
import math

import pytest
import torch
from torch import nn

from genzoo.checkpoint import load_weights
from genzoo.errors import GenzooError
from genzoo.training.trainer import TrainConfig, Trainer, lr_at


class Tiny(nn.Module):
    """Not a genzoo model at all: anything with loss(x, y) trains."""

    def __init__(self, bad=False):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4))
        self.bad = bad

    def loss(self, x, y=None):
        logits = self.w.expand(x.shape[0], 4)
        nll = nn.functional.cross_entropy(logits, x.long().view(-1), reduction="none")
        if self.bad:
            nll = nll * float("nan")
        return {"loss": nll.mean(), "nll": nll}


def data(n):
    x = torch.tensor([0, 0, 0, 1] * (n // 4), dtype=torch.uint8).view(n, 1, 1, 1)
    return x, torch.zeros(n, dtype=torch.long)


def test_any_module_with_a_loss_trains(tmp_path):
    model = Tiny()
    cfg = TrainConfig(epochs=30, batch_size=16, lr=0.1, warmup_steps=0)
    records = Trainer(model, data(64), data(16), cfg, tmp_path).fit()
    # the maximum-likelihood answer is P = (3/4, 1/4, 0, 0): test nll -> its entropy
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert records[-1]["test_nll"] == pytest.approx(entropy, abs=0.02)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 30


def test_a_run_of_nan_losses_stops_training_with_a_clear_error(tmp_path):
    with pytest.raises(GenzooError, match="diverged: 5 steps in a row"):
        Trainer(Tiny(bad=True), data(16), data(4), TrainConfig(epochs=3, batch_size=4, max_bad_steps=5), tmp_path).fit()
    assert not (tmp_path / "checkpoint.json").exists() or all(
        torch.isfinite(t).all() for t in load_weights(tmp_path / "model.safetensors").values())


class PlantedNaN(Tiny):
    """NaN loss on any batch holding the planted value 3 (no real datum is 3)."""

    def loss(self, x, y=None):
        out = super().loss(x.clamp(max=2), y)
        if bool((x == 3).any()):
            out = {k: v * float("nan") for k, v in out.items()}
        return out


def test_a_planted_nan_batch_is_skipped_counted_and_never_written(tmp_path):
    x, y = data(64)
    x[5] = 3  # one poisoned image: each epoch exactly one batch of 16 holds it
    model = PlantedNaN()
    records = Trainer(model, (x, y), data(16), TrainConfig(epochs=3, batch_size=16, lr=0.1, warmup_steps=0),
                      tmp_path).fit()
    assert [r["skipped_steps"] for r in records] == [1, 1, 1]
    assert all(math.isfinite(r["test_nll"]) and math.isfinite(r["train_nll"]) for r in records)
    assert torch.isfinite(model.w).all()
    assert all(torch.isfinite(t).all() for t in load_weights(tmp_path / "model.safetensors").values())
    assert [json.loads(line)["skipped_steps"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1,
                                                                                                                     1,
                                                                                                                     1]


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [lr_at(s, 110, cfg) for s in range(111)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[60] == pytest.approx(0.55) and lrs[110] == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(lr=-1.0), dict(batch_size=0), dict(min_lr_ratio=2.0)])
def test_bad_train_config(bad):
    with pytest.raises(GenzooError):
        TrainConfig(**bad)


def test_compiled_training_matches_eager(tmp_path):
    from conftest import tiny

    x = torch.randint(0, 3, (100, 1, 4, 4), dtype=torch.uint8)
    y = torch.zeros(100, dtype=torch.long)
    results = []
    for compile_ in (False, True):
        model = tiny("pixelcnn", (1, 4, 4), 3)
        cfg = TrainConfig(epochs=2, batch_size=25, warmup_steps=2, compile=compile_)
        results.append(Trainer(model, (x, y), (x, y), cfg, tmp_path / str(compile_)).fit())
    eager, compiled = results
    for a, b in zip(eager, compiled):
        assert b["test_nll"] == pytest.approx(a["test_nll"], rel=1e-4)
    assert json.loads((tmp_path / "True" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 2


def _digits_run(tmp_path, name, precision, compile_=False, epochs=3):
    """A small PixelCNN on the 8x8 digits; returns (records, model)."""
    import genzoo

    torch.manual_seed(0)
    train, test = genzoo.data.load("digits", "train"), genzoo.data.load("digits", "test")
    model = genzoo.models.build("pixelcnn", image_shape=(1, 8, 8), levels=17, hidden_channels=16, num_layers=3,
                                head_channels=32)
    cfg = TrainConfig(epochs=epochs, batch_size=100, lr=3e-3, warmup_steps=5, precision=precision, compile=compile_)
    records = Trainer(model, (train.images, train.labels), (test.images, test.labels), cfg, tmp_path / name).fit()
    return records, model


# bf16 keeps 8 bits of mantissa: after 45 steps from the same seed its test NLL is within
# 1% of fp32's (measured: 0.03%), and it is a different run (autocast really was on).
BF16_TOLERANCE = 0.01


def test_bf16_training_matches_fp32_likelihood_and_is_scored_in_fp32(tmp_path):
    import genzoo
    from genzoo.likelihood import categorical_nll

    fp32, m32 = _digits_run(tmp_path, "fp32", "fp32")
    bf16, m16 = _digits_run(tmp_path, "bf16", "bf16")
    assert all(math.isfinite(r["test_nll"]) and math.isfinite(r["train_nll"]) for r in fp32 + bf16)
    assert bf16[-1]["test_nll"] == pytest.approx(fp32[-1]["test_nll"], rel=BF16_TOLERANCE)
    assert bf16[-1]["train_nll"] != fp32[-1]["train_nll"]
    # the per-epoch test figure is an fp32 evaluation: a reloaded model scores exactly the same
    test = genzoo.data.load("digits", "test")
    m16.save(tmp_path / "saved")
    loaded = genzoo.load(tmp_path / "saved")
    with torch.no_grad():
        nll = loaded.loss(test.images)["nll"]
    assert nll.dtype == torch.float32
    assert nll.double().mean().item() == pytest.approx(bf16[-1]["test_nll"], rel=1e-6)
    # under autocast the logits are bf16 but the likelihood reduction stays fp32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = loaded.logits(loaded.scale(test.images[:8]))
        assert logits.dtype == torch.bfloat16
        assert categorical_nll(logits, test.images[:8]).dtype == torch.float32


def test_bf16_with_torch_compile(tmp_path):
    eager, _ = _digits_run(tmp_path, "eager", "bf16", epochs=1)
    compiled, _ = _digits_run(tmp_path, "compiled", "bf16", compile_=True, epochs=1)
    assert compiled[-1]["test_nll"] == pytest.approx(eager[-1]["test_nll"], rel=BF16_TOLERANCE)


def test_precision_is_validated():
    with pytest.raises(GenzooError, match="precision"):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize("native", ["0", "1"])
def test_precision_auto_is_the_default_never_picks_the_slower_and_its_choice_is_recorded(tmp_path, monkeypatch,
                                                                                         capsys, native):
    import json
    import re

    from genzoo.cli import main
    from genzoo.training.precision import native_bf16

    monkeypatch.setenv("GENZOO_NATIVE_BF16", native)
    assert TrainConfig().precision == "auto" and native_bf16(torch.device("cpu")) == (native == "1")
    run = tmp_path / "run"
    assert main(["train", "pixelcnn", "--data", "digits", "--out", str(run), "--epochs", "1", "--batch-size", "500",
                 "--warmup-steps", "1", "--hidden-channels", "4", "--num-layers", "1", "--head-channels", "4",
                 "--threads", "1"]) == 0
    said = capsys.readouterr().out
    if native == "0":
        expected = "fp32"
        assert "fp32 (auto: no native bf16 on this CPU)" in said
    else:  # bf16 counts as native here: auto times both on this model and takes the faster (an AVX2 box emulates
        # bf16, so fp32 wins there; an AMX Xeon may find either)
        expected, speed = re.search(r"(fp32|bf16) \(auto: native bf16 here, measured ([0-9.]+)x fp32's", said).groups()
        assert (expected == "bf16") == (float(speed) > 1.0)
    assert json.loads((run / "run.json").read_text())["train"]["precision"] == expected  # what ran, not "auto"
    assert main(["train", "pixelcnn", "--data", "digits", "--out", str(tmp_path / "f"), "--epochs", "1",
                 "--batch-size", "500", "--precision", "fp32", "--hidden-channels", "4", "--num-layers", "1",
                 "--head-channels", "4", "--threads", "1"]) == 0
    assert json.loads((tmp_path / "f" / "run.json").read_text())["train"]["precision"] == "fp32"


def test_the_gpu_reproduction_script_runs_on_the_cpu_with_a_tiny_budget(tmp_path):
    """A smoke test of bench/gpu_reproduce.sh (not timed): both models train, the full test set is
    scored, and one JSON line per model comes out, naming the device."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    shared = repo.parent / "shared" / "data" / "binarized_mnist"
    if not shared.is_dir():
        pytest.skip("the shared binarized MNIST is not beside the checkout")
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "DATA_DIR": str(shared)}
    p = subprocess.run(["bash", str(repo / "bench" / "gpu_reproduce.sh"), str(tmp_path / "out")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["model"] for r in lines] == ["pixelcnn", "row-lstm"]
    for r in lines:
        assert r["test_count"] == 10000 and r["likelihood_kind"] == "exact" and r["device"] == "cpu"
        assert 0 < r["test_bits_per_dim"] < 1.5 and r["precision"] == "fp32"


class TwoOptimizers(nn.Module):
    """A model that owns its step: two parameter sets, each with its own Adam (at half the rate for the
    second, through lr_scale), updated one after the other on every batch, as a GAN's two players are."""

    def __init__(self, die_at=None):
        super().__init__()
        self.a, self.b = nn.Parameter(torch.zeros(4)), nn.Parameter(torch.zeros(4))
        self.die_at = die_at  # the step at which the process "is killed" (an exception mid-step)

    def loss(self, x, y=None):
        nll = nn.functional.cross_entropy((self.a + self.b).expand(x.shape[0], 4), x.long().view(-1), reduction="none")
        return {"loss": nll.mean(), "nll": nll}

    def configure_optimizers(self, lr, weight_decay):
        return [torch.optim.Adam([self.a], lr=lr),
                torch.optim.Adam([{"params": [self.b], "lr_scale": 0.5}], lr=lr)]

    def training_step(self, step, x, y=None):
        first = step.loss(x, y)
        step.update(first["loss"], optimizer=0)
        if step.index == self.die_at:
            raise KeyboardInterrupt
        second = step.loss(x, y)
        step.update(second["loss"], optimizer=1)
        return second


def test_a_model_with_its_own_step_and_two_optimizers_trains_and_resumes_both_bitwise(tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.1, warmup_steps=0, checkpoint_every=3)
    whole = TwoOptimizers()
    Trainer(whole, data(64), data(16), cfg, tmp_path / "whole").fit()
    with pytest.raises(KeyboardInterrupt):  # killed between the two updates of step 10; last commit: step 9
        Trainer(TwoOptimizers(die_at=10), data(64), data(16), cfg, tmp_path / "part").fit()
    again = TwoOptimizers()  # fresh weights and optimizers: everything comes from the checkpoint
    Trainer(again, data(64), data(16), cfg, tmp_path / "part").fit(resume=True)
    assert torch.equal(whole.a, again.a) and torch.equal(whole.b, again.b)
    assert not torch.equal(whole.a, whole.b)  # the second player moved at its own (half) rate


def test_every_registered_models_optimizers_cover_each_parameter_once_and_decay_matrices_only():
    """The default (one Adam) decays matrices and kernels only; a model with its own optimizers (the GAN: one per
    player, no decay) still hands every trainable parameter to exactly one of them."""
    import genzoo
    from conftest import TINY
    from genzoo.models.base import GenerativeModel

    for name in genzoo.models.names():
        model = genzoo.models.build(name, image_shape=(1, 4, 4), levels=2, **TINY.get(name, {}))
        optimizers = model.configure_optimizers(1e-3, 0.1)
        seen = [p for opt in optimizers for g in opt.param_groups for p in g["params"]]
        assert sorted(map(id, seen)) == sorted(id(p) for p in model.parameters() if p.requires_grad), name
        own = type(model).configure_optimizers is not GenerativeModel.configure_optimizers
        assert own or len(optimizers) == 1, name
        for g in (g for opt in optimizers for g in opt.param_groups):
            if own:
                assert g["weight_decay"] in (0.0, 0.1), name
            else:
                assert all((p.dim() >= 2) == (g["weight_decay"] == 0.1) for p in g["params"]), name


def test_an_optimizer_state_saved_with_one_group_is_renumbered_for_the_new_groups():
    from genzoo.models.base import adam_with_decay
    from genzoo.training.steps import _regrouped

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    old = torch.optim.Adam(model.parameters(), lr=0.1)  # what genzoo wrote before models owned their optimizers
    for _ in range(3):
        old.zero_grad()
        model(torch.randn(5, 3)).square().sum().backward()
        old.step()
    new = adam_with_decay(model, 0.1, 0.01)
    new.load_state_dict(_regrouped(old.state_dict(), new, list(model.parameters())))
    for p in model.parameters():
        assert torch.equal(new.state[p]["exp_avg"], old.state[p]["exp_avg"])
        assert torch.equal(new.state[p]["exp_avg_sq"], old.state[p]["exp_avg_sq"])


def test_the_weight_average_is_the_warmed_up_exponential_average():
    from genzoo.training.ema import WeightAverage

    model = nn.Linear(1, 1, bias=False)
    model.register_buffer("counter", torch.zeros(()))
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, 0.5)
    expected, values = 0.0, [4.0, -2.0, 8.0, 1.0]
    for n, v in enumerate(values):
        with torch.no_grad():
            model.weight.fill_(v)
            model.counter.fill_(n + 1)
        average.update(model)
        d = min(0.5, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * v
    assert average.state["weight"].item() == pytest.approx(expected, rel=1e-6)
    assert average.state["counter"].item() == len(values)  # buffers are copied, not averaged
    with average.swapped_into(model):
        assert model.weight.item() == pytest.approx(expected, rel=1e-6)
    assert model.weight.item() == values[-1]


def test_measuring_the_precision_changes_neither_the_model_nor_the_random_state():
    from conftest import tiny
    from genzoo.training.precision import measured

    model = tiny("pixelcnn", image_shape=(1, 4, 4), levels=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randint(0, 2, (8, 1, 4, 4), dtype=torch.uint8)
    state = torch.get_rng_state()
    chosen, seconds = measured(model, x, None, torch.device("cpu"))
    assert chosen == min(seconds, key=seconds.get) and set(seconds) == {"fp32", "bf16"}
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
