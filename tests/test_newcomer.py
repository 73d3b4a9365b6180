"""The command line as a newcomer meets it: every bad input one line and exit 2 (output paths,
huge seeds), the silent cases answered, help that documents itself, runs you can find."""

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

import genzoo
from genzoo.evaluation import figures
from genzoo.evaluation import scoring
from genzoo.cli import build_parser, main

from conftest import TINY_ARGS

SHARED_BINARIZED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist"
HUGE = str(2**64)


def one_error_line(capsys, match=""):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("genzoo: error:") and match in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """A folder of two small runs on digits: a conditional Gated PixelCNN and a denoising autoencoder."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "gated-pixelcnn", "--data", "digits", "--out", str(root / "gated"), "--epochs", "1",
                 "--batch-size", "100", "--warmup-steps", "2", "--conditional", "--kernel", "3", *TINY_ARGS]) == 0
    assert main(["train", "denoising-autoencoder", "--data", "digits", "--out", str(root / "more" / "dae"),
                 "--epochs", "1", "--batch-size", "100", "--warmup-steps", "2", "--width", "32", "--threads", "1"]) == 0
    return root


OUTPUT_COMMANDS = [
    ["sample", "{gated}", "-n", "2"], ["complete", "{gated}", "-n", "1", "--samples", "1"],
    ["interpolate", "{dae}", "--pairs", "1"], ["reconstruct", "{dae}", "-n", "2"], ["report", "{gated}"],
    ["toy", "nice", "--steps", "2"],
]


@pytest.mark.parametrize("target", ["/proc/genzoo-x", "/sys/genzoo-x", "{file}/x"])
@pytest.mark.parametrize("command", OUTPUT_COMMANDS, ids=lambda c: c[0])
def test_an_unwritable_output_is_one_line_before_any_work(runs_root, tmp_path, capsys, command, target):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep")
    suffix = ".html" if command[0] == "report" else ".png"
    argv = [a.format(gated=runs_root / "gated", dae=runs_root / "more" / "dae") for a in command]
    assert main([*argv, "-o", target.format(file=a_file) + suffix, "--threads", "1"]) == 2
    one_error_line(capsys)
    assert a_file.read_text() == "keep"


@pytest.mark.parametrize("command", [
    ["sample", "{gated}", "-o", "{tmp}/s.png"], ["complete", "{gated}", "-o", "{tmp}/c.png"],
    ["reconstruct", "{dae}", "-o", "{tmp}/r.png"], ["report", "{gated}", "-o", "{tmp}/r.html"],
    ["toy", "nice", "-o", "{tmp}/t.png"], ["train", "pixelcnn", "--data", "digits", "--out", "{tmp}/run"],
], ids=lambda c: c[0])
def test_a_seed_beyond_2_to_the_63_is_one_line(runs_root, tmp_path, capsys, command):
    argv = [a.format(gated=runs_root / "gated", dae=runs_root / "more" / "dae", tmp=tmp_path) for a in command]
    assert main([*argv, "--seed", HUGE]) == 2
    one_error_line(capsys, "9223372036854775807")
    assert not list(tmp_path.iterdir())


def test_the_largest_seed_works(runs_root, tmp_path):
    assert main(["sample", str(runs_root / "gated"), "-n", "2", "-o", str(tmp_path / "s.png"),
                 "--seed", str(2**63 - 1)]) == 0


def test_noise_level_without_corruption_is_an_error_not_a_silent_clean_figure(runs_root, capsys):
    assert main(["eval", str(runs_root / "more" / "dae"), "--noise-level", "0.5"]) == 2
    one_error_line(capsys, "--corruption")
    assert main(["eval", str(runs_root / "more" / "dae"), "--corruption", "gaussian", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["noise_level"] == 0.3


def test_a_run_named_twice_is_reported_once_with_a_note(runs_root, tmp_path, capsys):
    out = tmp_path / "r.html"
    gated = str(runs_root / "gated")
    assert main(["report", gated, gated + "/", "-o", str(out), "--samples", "2", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "named more than once; shown once" in captured.err and "1 run(s)" in captured.out
    assert out.read_text().count("<section class=run") == 1


def test_ood_on_the_runs_own_data_is_an_error(runs_root, tmp_path, capsys):
    assert main(["report", str(runs_root / "gated"), "-o", str(tmp_path / "r.html"), "--ood", "digits"]) == 2
    one_error_line(capsys, "trained on digits")
    assert not (tmp_path / "r.html").exists()


def test_a_report_of_a_parent_folder_holds_every_run_below(runs_root, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(runs_root), "-o", str(out), "--samples", "2", "--threads", "1"]) == 0
    page = out.read_text()
    assert "2 run(s)" in capsys.readouterr().out and page.count("<section class=run") == 2
    assert "class-conditional: -log P(x | y)" in page  # the conditional run has its own leaderboard group


def test_genzoo_runs_lists_the_runs_below_a_folder(runs_root, capsys):
    assert main(["runs", str(runs_root)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["run", "model", "data"] and len(table) == 3
    assert "gated-pixelcnn" in table[1] and "nats" in table[1] and "of x given y" in table[1]
    assert "denoising-autoencoder" in table[2] and "mse" in table[2]
    assert main(["runs", str(runs_root), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["model"] for r in rows] == ["gated-pixelcnn", "denoising-autoencoder"]
    assert rows[0]["steps"] == 15 and rows[0]["figure"]["figure"] == "nll" and rows[0]["conditional"]
    (runs_root / "nothing-here").mkdir(exist_ok=True)
    assert main(["runs", str(runs_root / "nothing-here")]) == 2
    one_error_line(capsys, "no run folders")


def test_eval_takes_several_runs_and_a_conditional_model_says_given_y(runs_root, capsys):
    assert main(["eval", str(runs_root / "gated"), str(runs_root / "more" / "dae"), "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "-log P(x | y) =" in lines[0] and "reconstruction MSE" in lines[1]
    assert main(["eval", str(runs_root / "gated"), str(runs_root / "more" / "dae"), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0]["conditional"] is True and records[1]["likelihood_kind"] == "none"


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listing["models"]] == genzoo.models.names()
    dae = next(m for m in listing["models"] if m["name"] == "denoising-autoencoder")
    assert dae["options"]["corruption"] == "gaussian" and dae["likelihood_kind"] == "none"
    assert dae["option_help"]["noise_level"].startswith("gaussian: std on the [0, 1] scale")
    assert "digits" in [d["name"] for d in listing["datasets"]]


def test_bare_genzoo_prints_the_commands_and_an_example(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: genzoo" in out and "examples:" in out and "genzoo train" in out
    assert all(c in out for c in ("train", "eval", "sample", "report", "runs", "toy"))


def _every_parser():
    """(name, parser) of the top level, every command, and train with every model's options."""
    from genzoo.cli import COMMANDS

    yield "genzoo", build_parser(["x"])
    for command in COMMANDS:  # each command's whole parser is built when it is the command given
        yield command, next(a for a in build_parser([command])._actions
                            if isinstance(a, argparse._SubParsersAction)).choices[command]
    for model in genzoo.models.names():
        sub = next(a for a in build_parser(["train", model])._actions if isinstance(a, argparse._SubParsersAction))
        yield f"train {model}", sub.choices["train"]


def test_every_option_documents_itself():
    for name, parser in _every_parser():
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
            flags = action.option_strings
            shown = parser._get_formatter()._get_help_string(action)
            # the help must state the *true* default and every allowed value: the formatter adds them only
            # where the hand-written help does not already say "default" / "one of", so a stale hand-written
            # "default 5" for a default of 10 fails here
            if action.default not in (None, False, argparse.SUPPRESS) and not isinstance(action.default, bool):
                assert f"default {action.default}" in shown, (
                    f"{name} {flags}: default {action.default} not in {shown!r}")
            listed = isinstance(action, argparse._SubParsersAction)  # the commands, each on its own line below
            for allowed in () if listed else action.choices or getattr(action.type, "choices", None) or ():
                assert str(allowed) in shown, f"{name} {flags}: {allowed} not in {shown!r}"
            if getattr(action.type, "limits", None):
                assert action.type.limits in shown, f"{name} {flags}: no limits in {shown!r}"
        assert "usage:" in text


def test_model_and_training_options_whose_flag_default_is_none_state_their_true_default_by_hand():
    """The flags of model and training options default to None (so --resume can tell what was given); their help
    is written with the real default, read here from the Config and TrainConfig themselves, not the formatter."""
    from genzoo.training.config import TrainConfig

    checked = 0
    for model in genzoo.models.names():
        sub = next(a for a in build_parser(["train", model])._actions if isinstance(a, argparse._SubParsersAction))
        truth = genzoo.models.option_defaults(model)
        for action in sub.choices["train"]._actions:
            if action.dest.startswith("model_"):
                expected = truth[action.dest[len("model_"):]]
            elif action.dest in {f.name for f in dataclasses.fields(TrainConfig)}:
                expected = getattr(TrainConfig(), action.dest)
            else:
                continue
            assert action.default is None and f"default {expected}" in action.help, (model, action.dest)
            checked += 1
    assert checked > 20 * len(genzoo.models.names())


def test_limits_and_model_choices_appear_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "<= 4096" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "vae", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # help wraps lines
    assert "{mlp,conv}" in out and "one of auto, bernoulli, categorical, logistic" in out


def test_every_model_option_says_what_it_means_in_help(capsys):
    # The config's source comments are the options' documentation (models.option_help).
    for name in genzoo.models.names():
        meaning = genzoo.models.option_help(name)
        options = [o for o in genzoo.models.option_defaults(name) if o not in ("image_shape", "levels")]
        undocumented = [o for o in options if not meaning.get(o)]
        assert not undocumented, f"{name}: undocumented {undocumented}"
    assert genzoo.models.option_help("nice")["prior"] == "logistic (the paper's) or gaussian"
    assert genzoo.models.option_help("pixel-transformer")["attention_rows"].startswith("0: global "
                                                                                       "attention")  # lines above
    with pytest.raises(SystemExit):
        main(["train", "realnvp", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--num-blocks INT residual blocks of each coupling's ResNet (8 in the paper); an integer; default 4" in out
    assert "same masks and determinants; default False" in out


def test_a_warm_up_longer_than_the_run_is_said(tmp_path, capsys):
    assert main(["train", "pixelcnn", "--data", "digits", "--out", str(tmp_path / "r"), "--epochs", "1",
                 "--batch-size", "500", "--warmup-steps", "100", *TINY_ARGS]) == 0
    assert "never reaches --lr" in capsys.readouterr().out


def test_partial_evaluation_is_a_seeded_stratified_subset():
    labels = torch.arange(10).repeat_interleave(100)  # sorted by class, as static binarized MNIST's test file
    idx = scoring.subset(labels, 200)
    assert len(idx) == 200 and torch.equal(idx, scoring.subset(labels, 200)) and torch.equal(idx, idx.sort().values)
    assert torch.bincount(labels[idx]).tolist() == [20] * 10  # every class in its share, not the first two
    unlabelled = scoring.subset(torch.full((1000,), -1), 100)
    assert len(unlabelled) == 100 and unlabelled.max() > 500  # random, not the first hundred
    assert torch.equal(scoring.subset(labels, 0), torch.arange(1000))


def test_eval_limit_0_means_all_like_train_eval_limit(runs_root, capsys):
    assert main(["eval", str(runs_root / "gated"), "--limit", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 297
    assert main(["eval", str(runs_root / "gated"), "--limit", "100", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["count"] == 100 and s["subset_of"] == 297


def test_a_resumed_run_copied_elsewhere_still_works(runs_root, tmp_path, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(runs_root / "gated", moved)
    assert main(["train", "--resume", str(moved)]) == 0
    assert "already finished" in capsys.readouterr().out


def test_a_refused_checkpoint_message_is_never_cut_mid_sentence():
    from genzoo.checkpoint import _gist

    long = ("Weights only load failed. " + "This file can still be loaded, " * 10
            + "if you trust where your checkpoint file is from.")
    gist = _gist(RuntimeError(long))
    assert gist == "Weights only load failed" and len(gist) <= 200
    assert _gist(RuntimeError("short message.")) == "short message"
    words = _gist(RuntimeError("word " * 100))
    assert words.endswith(" ...") and len(words) <= 204


def test_eval_results_are_kept_and_the_report_shows_the_tightest(tmp_path, capsys):
    run = tmp_path / "vae"
    assert main(["train", "vae", "--data", "digits", "--out", str(run), "--epochs", "1", "--batch-size", "100",
                 "--latent-dim", "4", "--width", "32", "--threads", "1"]) == 0
    last_epoch = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["test_nll"]
    assert main(["eval", str(run), "--iwae-k", "50", "--json"]) == 0
    iwae = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert main(["eval", str(run), "--limit", "50"]) == 0  # a subset: kept, never shown as the test figure
    kept = [json.loads(line) for line in (run / "evals.jsonl").read_text().splitlines()]
    assert [e.get("iwae_k") for e in kept] == [50, None] and "date" in kept[0] and kept[1]["subset_of"] == 297
    assert iwae["nll_nats"] < last_epoch  # the IWAE bound is tighter than the ELBO
    out = tmp_path / "r.html"
    assert main(["report", str(run), "-o", str(out), "--samples", "2"]) == 0
    page = out.read_text()
    assert f"{iwae['nll_nats']:.3f}" in page and "IWAE bound, K = 50" in page


def test_list_shows_the_pretrained_models_with_their_measured_figure(runs_root, monkeypatch, capsys):
    monkeypatch.setenv("GENZOO_PRETRAINED", str(runs_root))
    assert main(["eval", str(runs_root / "gated"), "--json"]) == 0
    capsys.readouterr()
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "pretrained (in" in out and "gated-pixelcnn on digits" in out and "nats" in out
    assert "denoising-autoencoder on digits, not evaluated" in out


def test_every_shipped_model_loads_by_name_and_carries_its_recipes_figure():
    from genzoo import recipes, runs

    shipped = runs.find(recipes.pretrained_root())
    assert sorted(f.name for f in shipped) == sorted(recipes.names())  # a folder per recipe, a recipe per folder
    for folder in shipped:
        model = genzoo.load(folder.name)  # the name alone
        assert model.dims > 0 and not (folder / "ckpt").exists()  # no optimizer state or checkpoints ship
        best = figures.tightest_likelihood(runs.read_evals(folder), runs.read_record(folder)["data"]["name"])
        assert best["nll_nats"] == recipes.get(folder.name).figure and best["count"] == 10000


def test_a_subset_evaluation_of_a_model_without_likelihood_logs_only_its_figures(tmp_path, capsys):
    assert main(["train", "autoencoder", "--data", "digits", "--out", str(tmp_path / "ae"), "--epochs", "1",
                 "--width", "16", "--eval-limit", "50", "--threads", "1"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch 1")][0]
    assert "mse" in line and "total" not in line and "(50 of 297 test images, a seeded random subset)" in line


def test_resuming_a_shipped_model_without_checkpoints_is_refused(tmp_path, capsys):
    from genzoo import recipes

    for name in recipes.names():
        folder = recipes.pretrained_root() / name
        copy = tmp_path / folder.name
        shutil.copytree(folder, copy)
        before = (copy / "model.safetensors").read_bytes()
        assert main(["train", "--resume", str(copy)]) == 2
        one_error_line(capsys, "no checkpoint")
        assert (copy / "model.safetensors").read_bytes() == before


def test_runs_shows_the_tightest_kept_eval_and_marks_a_last_epoch_subset(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "pixelcnn", "--data", "digits", "--out", str(run), "--epochs", "1", "--eval-limit", "50",
                 *TINY_ARGS]) == 0
    capsys.readouterr()
    assert main(["runs", str(tmp_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["figure"]
    assert shown["count"] == 50 and "a seeded subset of 50 of 297 test images" in shown["source"]
    assert main(["eval", str(run), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert main(["runs", str(tmp_path)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert f"{whole['nll_nats']:.3f} nats (genzoo eval, full test set (297 images" in line


def test_eval_names_the_bound_the_vae_trained_on(tmp_path, capsys):
    run = tmp_path / "iwae"
    assert main(["train", "vae", "--data", "digits", "--out", str(run), "--epochs", "1", "--train-samples", "5",
                 "--width", "16", "--latent-dim", "2", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--limit", "20"]) == 0
    line = capsys.readouterr().out
    assert "IWAE bound with K = 5 (its training objective" in line and "ELBO" not in line
    assert main(["eval", str(run), "--limit", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["iwae_k"] == 5


def test_devices_and_threads_out_of_reach_are_one_line_not_a_traceback(tmp_path, capsys):
    out = str(tmp_path / "x.png")
    for argv, match in ((["sample", "row-lstm-binarized-mnist", "-n", "2", "-o", out, "--device", "meta"], "cpu or "
                                                                                                           "cuda"),
                        (["sample", "row-lstm-binarized-mnist", "-n", "2", "-o", out, "--device", "cuda:7"], "cuda"),
                        (["sample", "row-lstm-binarized-mnist", "-n", "2", "-o", out, "--threads", "100000"], "<="),
                        (["train", "pixelcnn", "--data", "digits", "--out", str(tmp_path / "r"), "--threads", "0"],
                         ">=")):
        assert main(argv) == 2, argv
        one_error_line(capsys, match)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "r").exists()


def test_a_probe_of_one_class_is_refused_in_one_line(tmp_path, capsys):
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(20):
        (tmp_path / "pics" / "cat").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "pics" / "cat" / f"{i}.png")
    run = tmp_path / "ae"
    assert main(["train", "autoencoder", "--data", str(tmp_path / "pics"), "--out", str(run), "--epochs", "1",
                 "--width", "8", "--latent-dim", "2", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["probe", str(run)]) == 2
    one_error_line(capsys, "one class only")


def test_nothing_written_is_harmed_by_a_no_op_resume_a_run_inside_its_data_or_a_read_only_output(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "pixelcnn", "--data", "digits", "--out", str(run), "--epochs", "2", *TINY_ARGS]) == 0
    before = (run / "run.json").read_bytes()
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 0  # nothing to do: 2 epochs are trained
    assert "already finished" in capsys.readouterr().out
    assert (run / "run.json").read_bytes() == before  # used to be rewritten with epochs 1
    # a run folder inside a folder of pictures would become one of its classes
    from PIL import Image
    import numpy as np

    pics = tmp_path / "pics" / "cat"
    pics.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(pics / f"{i}.png")
    assert main(["train", "pixelcnn", "--data", str(tmp_path / "pics"), "--out", str(tmp_path / "pics" / "run"),
                 *TINY_ARGS]) == 2
    one_error_line(capsys, "inside the --data folder")
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["cat"]
    # -o onto a file protected from writing is refused, the file kept
    png = tmp_path / "keep.png"
    png.write_bytes(b"mine")
    png.chmod(0o444)
    assert main(["sample", str(run), "-n", "2", "-o", str(png)]) == 2
    one_error_line(capsys, "read-only")
    assert png.read_bytes() == b"mine"


def test_runs_and_report_show_a_broken_run_as_a_row_and_go_on(tmp_path, capsys):
    good = tmp_path / "all" / "good"
    assert main(["train", "pixelcnn", "--data", "digits", "--out", str(good), "--epochs", "1", *TINY_ARGS]) == 0
    damage = {"bad-config": lambda f: (f / "config.json").write_text("{garbage"),
              "no-weights": lambda f: (f / "model.safetensors").unlink(),
              "cut-weights": lambda f: (f / "model.safetensors").write_bytes(
                  (f / "model.safetensors").read_bytes()[:500]),
              "bad-metrics": lambda f: (f / "metrics.jsonl").write_text("not json\nnor this\nnor this either\n")}
    for name, harm in damage.items():
        shutil.copytree(good, tmp_path / "all" / name)
        harm(tmp_path / "all" / name)
    capsys.readouterr()
    assert main(["runs", str(tmp_path / "all"), "--json"]) == 0
    rows = {r["run"].split("/")[-1]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert "problems" not in rows["good"] and rows["good"]["figure"]["figure"] == "nll"
    assert "not valid JSON" in rows["bad-config"]["problems"][0] or "config" in rows["bad-config"]["problems"][0]
    assert "missing" in rows["no-weights"]["problems"][0] and "truncated" in rows["cut-weights"]["problems"][0]
    assert "3 of 3 lines are not records" in rows["bad-metrics"]["problems"][0]
    assert main(["runs", str(tmp_path / "all")]) == 0
    assert capsys.readouterr().out.count("BROKEN") == 4
    page = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "all"), "-o", str(page), "--samples", "2"]) == 0
    html = page.read_text()
    assert "Runs not shown" in html and html.count("<section class=run") == 2  # good, and bad-metrics with a note
    assert "lines are not records" in html and "cut-weights" in html and "no-weights" in html
    assert capsys.readouterr().err.count("not shown") == 3  # said on the way, one line each
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    one_error_line(capsys, "no such folder")


def _pictures(root, names, size=4):
    from PIL import Image
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size, size), 30 * i % 256, np.uint8)).save(root / name)
    return root


def test_the_silent_and_misleading_cases_each_get_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = str(tmp_path / "never")
    cases = [
        (_pictures(tmp_path / "only-train", ["train/a/0.png", "train/a/1.png"]), [], "no test/ one"),
        (_pictures(tmp_path / "empty-class", ["a/0.png", "a/1.png"]), ["mkdir:b"], "empty class folder"),
        (_pictures(tmp_path / "half-labelled", ["train/0.png", "train/1.png", "test/a/0.png"]), [], "label both"),
        (_pictures(tmp_path / "one-class", ["a/0.png", "a/1.png", "a/2.png"]), ["--conditional"], "one class only"),
        (_pictures(tmp_path / "readme", []), ["write:readme.txt"], "readme.txt"),
        (_pictures(tmp_path / "link", ["a/0.png", "a/1.png"]), ["link:a/gone.png"], "does not exist"),
        ("colour-mnist", ["--levels", "8"], "invent levels"),
    ]
    for data, extra, match in cases:
        for e in extra:
            if e.startswith("mkdir:"):
                (data / e[6:]).mkdir()
            elif e.startswith("write:"):
                (data / e[6:]).write_text("not a picture")
            elif e.startswith("link:"):
                (data / e[5:]).symlink_to(tmp_path / "nothing-there.png")
        flags = [x for x in extra if x.startswith("--")] + (["8"] if "--levels" in extra else [])
        argv = ["train", "gated-pixelcnn", "--data", str(data), "--out", out, *flags, *TINY_ARGS]
        if data == "colour-mnist" and not SHARED_BINARIZED.is_dir():
            continue  # colour MNIST is built from the shared binarized MNIST
        assert main(argv) == 2, (data, argv)
        one_error_line(capsys, match)
    assert main(["train", "pixelcnn", "--data", str(tmp_path / "one-class"), "--data-dir", str(tmp_path / "nope"),
                 "--out", out, *TINY_ARGS]) == 2
    one_error_line(capsys, "applies to named datasets")
    monkeypatch.setenv("GENZOO_DATA", str(tmp_path / "nowhere"))
    assert main(["train", "pixelcnn", "--data", "mnist", "--out", out, *TINY_ARGS]) == 2
    one_error_line(capsys, "GENZOO_DATA")
    monkeypatch.delenv("GENZOO_DATA")
    monkeypatch.setenv("GENZOO_NATIVE_BF16", "yes")
    assert main(["train", "pixelcnn", "--data", "digits", "--out", out, *TINY_ARGS]) == 2
    one_error_line(capsys, "GENZOO_NATIVE_BF16")
    monkeypatch.setenv("GENZOO_NATIVE_BF16", "0")
    assert not (tmp_path / "never").exists()


def test_pictures_and_eval_say_what_they_did(runs_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    gated = runs_root / "gated"
    for name, size in (("twenty", 4), ("one-pixel", 1)):  # 20 pictures: 2 of them to test on
        folder = _pictures(tmp_path / name, [f"{i}.png" for i in range(20)], size=size)
        assert main(["train", "pixelcnn", "--data", str(folder), "--out", str(tmp_path / f"run-{name}"), "--epochs",
                     "1",
                     *TINY_ARGS]) == 0
    capsys.readouterr()
    assert main(["complete", str(tmp_path / "run-twenty"), "--samples", "2", "-o", str(tmp_path / "c.png")]) == 0
    assert "wrote 2 images x 2 completions" in capsys.readouterr().out  # the split has 2, not the default 8
    assert main(["complete", str(tmp_path / "run-one-pixel"), "-o", str(tmp_path / "c1.png")]) == 2
    one_error_line(capsys, "1 row(s) high")  # it used to keep "0 rows" and call that a completion
    assert main(["train", "autoencoder", "--data", str(tmp_path / "twenty"), "--out", str(tmp_path / "ae"), "--epochs",
                 "1", "--width", "8", "--latent-dim", "2", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["interpolate", str(tmp_path / "ae"), "-o", str(tmp_path / "i.png")]) == 2  # no --pairs was given
    said = one_error_line(capsys)
    assert "interpolate: 4 pair(s) need 8 test images and the test split has 2; --pairs 1 fits" in said
    assert main(["eval", str(gated), "--fid", "400", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert ("400 samples against 148 test images (the split holds 297: 148 are the reference, 148 others the floor)"
            in out)
    assert main(["eval", str(gated), str(runs_root / "more" / "dae"), "--fid", "20"]) == 2  # before any work
    one_error_line(capsys, "no distribution to sample from")


def test_a_probe_whose_limit_slice_holds_one_class_and_a_partial_cifar_copy_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = _pictures(tmp_path / "two", [f"{c}/{i}.png" for c in "ab" for i in range(12)])
    run = tmp_path / "ae"
    assert main(["train", "autoencoder", "--data", str(folder), "--out", str(run), "--epochs", "1", "--width", "8",
                 "--latent-dim", "2", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["probe", str(run), "--limit", "10"]) == 2  # the first 10 training images are all of class a
    one_error_line(capsys, "a larger --limit takes more")
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    for fn in ["data_batch_1.bin", "data_batch_2.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"]:
        (cifar / fn).write_bytes(bytes(3073))
    assert main(["train", "pixelcnn", "--data", "cifar10", "--data-dir", str(cifar), "--out", str(tmp_path / "c"),
                 *TINY_ARGS]) == 2
    line = one_error_line(capsys, "data_batch_3.bin not found beside the other batch files")
    assert "download" not in line
