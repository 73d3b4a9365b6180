"""Training under a wall-clock budget: the cosine fitted to --minutes, and the budget recipes of recipes.py."""

import dataclasses
import json
import types

import pytest
import torch
from torch import nn

from genzoo import models, recipes
from genzoo.cli import main
from genzoo.checkpoint import load_weights
from genzoo.training import schedule, trainer as trainer_module
from genzoo.training.config import TrainConfig
from genzoo.training.trainer import Trainer, fitted_schedule, lr_at


@pytest.mark.parametrize("step,step_s,remaining_s,eval_s,per_epoch,cap", [
    (22, 0.1, 60.0, 0.0, 100, 10_000),  # no evaluations: 97% of the 600 steps the budget holds
    (22, 0.1, 60.0, 2.0, 100, 10_000),  # an evaluation at every epoch end eats into it
    (22, 0.1, 60.0, 0.0, 100, 300),  # the --epochs cap is shorter than the budget
    (22, 0.5, 0.2, 0.0, 100, 10_000),  # nothing left: one more step
    (5, 0.01, 100.0, 30.0, 1000, 10**6),  # evaluations longer than an epoch's steps
])
def test_the_fitted_cosine_ends_inside_the_budget_and_the_cap(step, step_s, remaining_s, eval_s, per_epoch, cap):
    total = fitted_schedule(step, step_s, remaining_s, eval_s, per_epoch, cap)
    assert step + 1 <= total <= cap
    evals = total // per_epoch - step // per_epoch
    if total > step + 1:  # what it schedules fits the time left, evaluations included
        assert (total - step) * step_s + evals * eval_s <= remaining_s
    if total < cap:  # and one step more would not fit in it, less its 3% margin
        more = total + 1 - step
        assert more * step_s + ((total + 1) // per_epoch - step // per_epoch) * eval_s > 0.97 * remaining_s


class FakeClock:
    """A clock that only the model's work moves (``tick`` seconds a loss): the timed steps, the evaluations, the
    budget and so the fitted schedule become a function of the work done, the same on every machine."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def monotonic(self) -> float:
        return self.now


class Tiny(nn.Module):
    """Four logits; each loss moves ``clock``; ``crash_at``: the loss raises at that call (a run that dies)."""

    def __init__(self, clock, crash_at=None):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4))
        self.clock, self.calls, self.crash_at = clock, 0, crash_at

    def loss(self, x, y=None):
        self.clock.now += self.clock.tick
        self.calls += 1
        if self.calls == self.crash_at:
            raise KeyboardInterrupt("killed")
        nll = nn.functional.cross_entropy(self.w.expand(x.shape[0], 4), x.long().view(-1), reduction="none")
        return {"loss": nll.mean(), "nll": nll}


def _data(n):
    x = torch.tensor([0, 0, 1, 2] * (n // 4), dtype=torch.uint8).view(n, 1, 1, 1)
    return x, torch.zeros(n, dtype=torch.long)


def _fitted_run(tmp_path, monkeypatch, crash_at=None, resume_minutes=None):
    clock = FakeClock(0.01)
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    monkeypatch.setattr(schedule, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    cfg = TrainConfig(epochs=100, batch_size=4, lr=0.05, warmup_steps=30, minutes=0.1, fit_cosine=True,
                      checkpoint_every=40, checkpoint_minutes=0)
    torch.manual_seed(0)
    model = Tiny(clock, crash_at)
    crashed = False
    try:
        Trainer(model, _data(64), _data(16), cfg, tmp_path).fit()
    except KeyboardInterrupt:
        crashed = True
        # the resumed session may be given a new budget: the fitted length is the checkpoint's, kept
        cfg = dataclasses.replace(cfg, minutes=resume_minutes)
        torch.manual_seed(0)
        Trainer(Tiny(clock), _data(64), _data(16), cfg, tmp_path).fit(resume=True)
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()], crashed


def test_the_cosine_fitted_to_the_budget_ends_it_at_the_floor_and_a_resume_keeps_its_length(tmp_path, monkeypatch):
    records, _ = _fitted_run(tmp_path / "a", monkeypatch)
    total = records[-1]["schedule_steps"]
    assert 30 < total < 100 * 16  # fitted: past the timed warm-up, far short of the 100 epochs
    assert records[-1]["step"] == total and records[-1].get("stop") == "cosine"  # the cosine, not the clock, ended it
    cfg = TrainConfig(lr=0.05, warmup_steps=30)
    assert records[-1]["lr"] == pytest.approx(lr_at(total - 1, total, cfg)) and records[-1]["lr"] < 1e-3 * cfg.lr
    # killed after its first checkpoint past the fit, resumed with a larger budget: the same schedule, bitwise
    resumed, crashed = _fitted_run(tmp_path / "b", monkeypatch, crash_at=60, resume_minutes=5)
    assert crashed and resumed[-1]["schedule_steps"] == total and resumed[-1]["step"] == total
    a, b = load_weights(tmp_path / "a" / "model.safetensors"), load_weights(tmp_path / "b" / "model.safetensors")
    assert torch.equal(a["w"], b["w"])


def test_fit_cosine_needs_a_budget_and_a_warm_up_to_time():
    with pytest.raises(Exception, match="needs --minutes"):
        TrainConfig(fit_cosine=True)
    with pytest.raises(Exception, match="warmup-steps >= 10"):
        TrainConfig(fit_cosine=True, minutes=1, warmup_steps=5)


def test_every_budget_recipe_names_a_model_and_its_own_options():
    for name, own in recipes.BUDGETS.items():
        kinds = [level for recipe in own for level in (recipe.levels or ("any",))]
        assert len(kinds) == len(set(kinds)), f"{name}: two budget recipes for one kind of data"
        for recipe in own:
            assert recipe.model == name and name in models.names()
            fields = {f.name for f in models.config_fields(name)}
            assert set(recipe.options) <= fields, name
            assert set(recipe.train) <= {f.name for f in dataclasses.fields(TrainConfig)}, name
            TrainConfig(minutes=4, **{**recipes.BUDGET_TRAIN, **recipe.train})  # valid as a whole
            for levels in recipe.levels or (2, 256):
                models.build(name, image_shape=(1, 4, 4), levels=levels, **recipe.options)
                assert recipes.budget_recipe(name, levels)[0] == recipe.options  # the one for its data is taken


def _train(tmp_path, capsys, name, *extra):
    out = tmp_path / name
    assert main(["train", "made", "--data", "digits", "--binarize", "threshold", "--out", str(out), "--train-limit",
                 "200", "--threads", "1", *extra]) == 0
    run = json.loads((out / "run.json").read_text())
    return run["train"], json.loads((out / "config.json").read_text())["config"], capsys.readouterr().out


def test_minutes_take_the_models_budget_recipe_where_no_option_is_given(tmp_path, capsys):
    own = next(b for b in recipes.BUDGETS["made"] if 2 in b.levels)  # digits thresholded: 2 levels
    train, config, said = _train(tmp_path, capsys, "recipe", "--minutes", "0.05", "--eval-limit", "50",
                                 "--hidden-units", "64")
    assert "budget recipe (made's own, measured on 2-level data" in said
    assert train["eval_limit"] == 50 and config["hidden_units"] == 64  # given: they win
    assert train["batch_size"] == own.train["batch_size"] and train["lr"] == own.train["lr"] and train["fit_cosine"]
    assert config["direct"] is own.options["direct"]
    # the plain defaults: without --minutes, with --no-recipe, or with a schedule option of the user's own
    for name, extra in (("plain", ("--epochs", "1")), ("no-recipe", ("--minutes", "0.05", "--no-recipe")),
                        ("own-schedule", ("--minutes", "0.05", "--lr", "0.003"))):
        train, config, said = _train(tmp_path, capsys, name, *extra)
        assert "budget recipe" not in said and train["batch_size"] == TrainConfig().batch_size
        assert not train["fit_cosine"] and config["hidden_units"] == models.option_defaults("made")["hidden_units"]
