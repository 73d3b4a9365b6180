"""The command line as a newcomer meets it: every bad input one line and exit 2 (output paths,
huge seeds), the silent cases answered, help that documents itself, runs you can find."""

import argparse
import json
import shutil

import pytest
import torch

import genzoo
from genzoo import scoring
from genzoo.cli import build_parser, main

TINY = ["--hidden-channels", "8", "--num-layers", "2", "--head-channels", "16", "--threads", "1"]
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
                 "--batch-size", "100", "--warmup-steps", "2", "--conditional", "--kernel", "3", *TINY]) == 0
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
    assert rows[0]["steps"] == 15 and rows[0]["best"]["figure"] == "nll" and rows[0]["conditional"]
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
    top = build_parser(["x"])
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices
    yield "genzoo", top
    yield from commands.items()
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
            if action.default not in (None, False, argparse.SUPPRESS) and not isinstance(action.default, bool):
                assert "default" in shown, f"{name} {flags}: no default in {shown!r}"
            if action.choices or getattr(action.type, "choices", None):
                assert "one of" in shown, f"{name} {flags}: no choices in {shown!r}"
            if getattr(action.type, "limits", None):
                assert action.type.limits in shown, f"{name} {flags}: no limits in {shown!r}"
        assert "usage:" in text


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
        assert all(meaning.get(o) for o in options), f"{name}: undocumented {[o for o in options if not meaning.get(o)]}"
    assert genzoo.models.option_help("nice")["prior"] == "logistic (the paper's) or gaussian"
    assert genzoo.models.option_help("pixel-transformer")["attention_rows"].startswith("0: global attention")  # lines above
    with pytest.raises(SystemExit):
        main(["train", "realnvp", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--num-blocks INT residual blocks of each coupling's ResNet (8 in the paper); an integer; default 4" in out
    assert "same masks and determinants; default False" in out


def test_a_warm_up_longer_than_the_run_is_said(tmp_path, capsys):
    assert main(["train", "pixelcnn", "--data", "digits", "--out", str(tmp_path / "r"), "--epochs", "1",
                 "--batch-size", "500", "--warmup-steps", "100", *TINY]) == 0
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

    long = "Weights only load failed. " + "This file can still be loaded, " * 10 + "if you trust where your checkpoint file is from."
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


def test_every_shipped_model_loads_and_carries_its_figure():
    from genzoo import runs

    for folder in runs.find(runs.pretrained_root()):
        model = genzoo.load(folder)
        assert model.dims > 0 and not (folder / "ckpt").exists()  # no optimizer state or checkpoints ship
        assert runs.tightest_likelihood(runs.read_evals(folder), runs.read_record(folder)["data"]["name"])


def test_a_subset_evaluation_of_a_model_without_likelihood_logs_only_its_figures(tmp_path, capsys):
    assert main(["train", "autoencoder", "--data", "digits", "--out", str(tmp_path / "ae"), "--epochs", "1",
                 "--width", "16", "--eval-limit", "50", "--threads", "1"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch 1")][0]
    assert "mse" in line and "total" not in line and "(50 of 297 test images, a seeded random subset)" in line


def test_resuming_a_shipped_model_without_checkpoints_is_refused(tmp_path, capsys):
    from genzoo import runs

    for folder in runs.find(runs.pretrained_root()):
        copy = tmp_path / folder.name
        shutil.copytree(folder, copy)
        before = (copy / "model.safetensors").read_bytes()
        assert main(["train", "--resume", str(copy)]) == 2
        one_error_line(capsys, "no checkpoint")
        assert (copy / "model.safetensors").read_bytes() == before
