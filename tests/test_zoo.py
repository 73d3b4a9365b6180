"""The zoo that verifies itself: the shipped models' recipes as code (each run for a few steps on
a tiny slice, so none can go stale), `genzoo verify`, the model cards, and a shipped model's name
standing for its folder everywhere."""

import dataclasses
import json
import shlex
from pathlib import Path

import pytest

import genzoo
from genzoo import recipes, runs
from genzoo.cli import main
from genzoo.cli.verify import CARD_FILE, model_card

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist"
HAVE = {"binarized-mnist": (SHARED / "binarized_mnist_test.amat.gz").exists(),
        "fashion-mnist": Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").exists()}


def test_every_recipe_is_a_valid_train_command_of_its_shipped_model():
    for recipe in recipes.RECIPES.values():
        argv = recipe.train_argv("runs/x")
        assert argv[:3] == ["train", recipe.model, "--data"] and "--threads" in argv
        shipped = recipes.pretrained_root() / recipe.name
        record, config = runs.read_record(shipped), runs.model_record(shipped)["config"]
        # the recipe says exactly what made the shipped folder: its model options and training options
        assert {k: config[k] for k in recipe.options} == recipe.options
        assert {k: record["train"][k] for k in recipe.train} == recipe.train
        assert record["model"] == recipe.model and record["data"]["name"] == recipe.data["name"]
        assert record["threads"] == recipe.threads
        assert shlex.split(recipe.command())[1:] == recipe.train_argv(f"runs/{recipe.name}")
    with pytest.raises(genzoo.GenzooError, match="shipped models are"):
        recipes.get("nope")


@pytest.mark.parametrize("name", recipes.names())
def test_every_recipe_runs_a_few_steps_on_a_tiny_slice(name, tmp_path, capsys):
    recipe = recipes.get(name)
    if not HAVE[recipe.data["name"]]:
        pytest.skip(f"{recipe.data['name']} is not on this machine")
    out = tmp_path / name
    assert main(["reproduce", name, "--out", str(out), "--epochs", "1", "--train-limit", "128", "--eval-limit", "64",
                 "--no-compile"]) == 0
    said = capsys.readouterr().out
    assert f"reproduce {name}: genzoo train {recipe.model}" in said and "the shipped figure is" in said
    record = runs.read_record(out)
    assert record["train"]["train_limit"] == 128 and record["train"]["epochs"] == 1 and not record["train"]["compile"]
    assert {k: v for k, v in runs.model_record(out)["config"].items() if k in recipe.options} == recipe.options
    (kept,) = runs.read_evals(out)  # the recipe's own evaluation (the IWAE bound with its K for the VAE)
    assert kept["count"] == 64 and kept.get("iwae_k") == recipe.evaluate.get("iwae_k")


def test_reproduce_print_and_a_bad_name(capsys):
    assert main(["reproduce", "row-lstm-binarized-mnist", "--print", "--minutes", "1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("genzoo train row-lstm --data binarized-mnist --out runs/row-lstm-binarized-mnist")
    assert "--minutes 1.0" in line and "--compile" in line
    assert main(["reproduce", "row-lstm-binarized-mnist", "--print", "--minutes", "0.3"]) == 0
    assert "--compile" not in capsys.readouterr().out  # compiling would take most of 18 s
    assert main(["reproduce", "glow-cifar10"]) == 2
    assert "shipped models are" in capsys.readouterr().err


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch):
    """A shipped 'zoo' of one tiny digits model with a recipe of its own: (recipe, folder)."""
    root = tmp_path / "pretrained"
    folder = root / "tiny-digits"
    assert main(["train", "gated-pixelcnn", "--data", "digits", "--out", str(folder), "--epochs", "1",
                 "--hidden-channels", "4", "--num-layers", "2", "--head-channels", "8", "--threads", "1"]) == 0
    assert main(["eval", str(folder), "--json"]) == 0
    figure = runs.read_evals(folder)[-1]["nll_nats"]
    recipe = recipes.Recipe(name="tiny-digits", model="gated-pixelcnn", paper="a test", data={"name": "digits"},
                            options={"hidden_channels": 4, "num_layers": 2, "head_channels": 8},
                            train={"epochs": 1}, threads=1, evaluate={}, figure=figure, tolerance=0.01,
                            training_minutes=0.1, machine="the test box", protocol="digits, 17 levels")
    monkeypatch.setenv("GENZOO_PRETRAINED", str(root))
    monkeypatch.setattr(recipes, "RECIPES", {recipe.name: recipe})
    return recipe, folder


def test_verify_passes_within_the_tolerance_and_fails_outside_it(fake_zoo, capsys, monkeypatch):
    recipe, folder = fake_zoo
    capsys.readouterr()
    evals_before = (folder / "evals.jsonl").read_bytes()
    assert main(["verify", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["verdict"] == "ok" and abs(row["nll_nats"] - recipe.figure) < 1e-4 and row["count"] == 297
    assert (folder / "evals.jsonl").read_bytes() == evals_before  # a shipped folder is never written by verify
    moved = dataclasses.replace(recipe, figure=recipe.figure - 0.5)  # as if the weights had drifted by 0.5 nats
    monkeypatch.setattr(recipes, "RECIPES", {moved.name: moved})
    assert main(["verify", "tiny-digits"]) == 1
    assert "MOVED" in capsys.readouterr().out
    assert main(["verify", "not-shipped"]) == 2


def test_the_card_is_written_once_verified_and_says_the_figure_and_the_reproduce_line(fake_zoo, capsys):
    recipe, folder = fake_zoo
    assert main(["verify", "--write-card"]) == 0
    card = (folder / CARD_FILE).read_text()
    assert card == model_card(recipe, folder)
    assert f"{recipe.figure:.3f} nats/image" in card and "genzoo reproduce tiny-digits" in card
    assert "exact -log P(x)" in card and f"{runs.open_run(folder).parameters:,}" in card


def test_every_shipped_model_has_its_generated_card():
    for name in recipes.names():
        folder = recipes.pretrained_root() / name
        assert (folder / CARD_FILE).read_text() == model_card(recipes.get(name), folder), \
            f"{name}: the card is stale; run genzoo verify {name} --write-card"


def test_a_shipped_models_name_stands_for_its_folder(tmp_path, capsys, monkeypatch):
    model = genzoo.load("row-lstm-binarized-mnist")
    assert model.name == "row-lstm" and model.image_shape == (1, 28, 28)
    out = tmp_path / "x.png"
    assert main(["sample", "row-lstm-binarized-mnist", "-n", "4", "-o", str(out)]) == 0 and out.stat().st_size > 0
    assert main(["runs", "vae-binarized-mnist"]) == 0
    assert "vae" in capsys.readouterr().out
    with pytest.raises(genzoo.errors.CheckpointError, match="no such model folder"):
        genzoo.load("no-such-model")
    genzoo.models.build("pixelcnn", image_shape=(1, 4, 4), levels=2).save(tmp_path / "row-lstm-binarized-mnist")
    monkeypatch.chdir(tmp_path)  # a folder of that name here wins over the shipped one
    assert genzoo.load("row-lstm-binarized-mnist").name == "pixelcnn"


def test_the_card_says_how_far_training_went_in_whole_epochs_and_the_share_of_the_schedule():
    from genzoo.cli.verify import training_words

    cut = [{"epoch": 1, "step": 937}, {"epoch": 2, "step": 1874}, {"epoch": 3, "step": 1981, "partial": True}]
    words = training_words(cut, {"epochs": 5})
    assert words.startswith("2 epochs + 107 steps of epoch 3 (1,981 steps;") and "4,685-step schedule at 42%" in words
    assert training_words(cut[:2], {"epochs": 2}) == "2 epochs (1,874 steps)"  # the whole schedule ran
    fitted = [{"epoch": 1, "step": 900, "schedule_steps": 1200}, {"epoch": 2, "step": 1200}]
    assert training_words(fitted, {"epochs": 100}) == "2 epochs (1,200 steps)"  # a cosine fitted to the budget
