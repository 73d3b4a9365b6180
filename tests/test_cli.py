"""The command line end to end on digits, and its error paths."""

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

import genzoo
from genzoo.cli import build_parser, main
from conftest import TINY_ARGS, tiny_flags



def run_cli(*args):
    """The real entry point in a fresh process: (returncode, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "genzoo", *map(str, args)], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "pcnn"
    rc = main(["train", "pixelcnn", "--data", "digits", "--out", str(out), "--epochs", "1", "--batch-size", "100",
               "--warmup-steps", "2", "--eval-limit", "100", *TINY_ARGS])
    assert rc == 0
    return out


def test_train_writes_a_run_folder(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"run.json", "config.json", "model.safetensors", "checkpoint.json", "metrics.jsonl", "ckpt"} <= names
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["epoch"] == 1 and rec["step"] == 15 and rec["test_count"] == 100
    assert rec["test_bpd"] == pytest.approx(rec["test_nll"] / (64 * 0.6931471805599453))
    model = genzoo.load(trained_run)
    assert model.name == "pixelcnn" and model.levels == 17
    assert str(model.config.hidden_channels) == TINY_ARGS[TINY_ARGS.index("--hidden-channels") + 1]


def test_eval_prints_nats_bits_and_count(trained_run, capsys):
    assert main(["eval", str(trained_run), "--json", "--threads", "1"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["count"] == 297 and s["likelihood_kind"] == "exact" and s["dims"] == 64
    assert 0 < s["bits_per_dim"] < 4.1  # 17 levels: uniform would be log2(17) = 4.09
    assert main(["eval", str(trained_run), "--limit", "100"]) == 0
    assert "100 images" in capsys.readouterr().out


def test_sample_writes_a_png_grid(trained_run, tmp_path):
    out = tmp_path / "grid.png"
    assert main(["sample", str(trained_run), "-n", "9", "-o", str(out), "--seed", "3"]) == 0
    img = Image.open(out)
    assert img.mode == "L" and img.size == (3 * 68 + 4, 3 * 68 + 4)  # 3x3 of 8x8 upscaled x8, 4px gaps
    again = tmp_path / "again.png"
    main(["sample", str(trained_run), "-n", "9", "-o", str(again), "--seed", "3"])
    assert out.read_bytes() == again.read_bytes()


def test_complete_writes_a_png(trained_run, tmp_path):
    out = tmp_path / "c.png"
    assert main(["complete", str(trained_run), "-o", str(out), "-n", "2", "--samples", "2"]) == 0
    assert Image.open(out).size == (4 * 68 + 4, 2 * 68 + 4)


def test_list_names_models_and_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in genzoo.models.names() + genzoo.data.names())


@pytest.mark.parametrize("args,match", [
    (["train", "pixelcnnn", "--data", "digits", "--out", "X"], "unknown model"),
    (["train", "pixelcnn", "--data", "digitz", "--out", "X"], "unknown dataset"),
    (["train", "pixelcnn", "--data", "digits", "--out", "X", "--lr", "-1"], "--lr"),
    (["train", "pixelcnn", "--data", "digits", "--out", "X", "--epochs", "1.5"], "--epochs"),
    (["train", "pixelcnn", "--data", "digits", "--out", "X", "--kernel", "4"], "odd"),
    (["train", "pixelcnn", "--data", "digits", "--out", "X", "--lr", "nan"], "--lr"),
    (["train", "pixelcnn", "--data", "digits", "--out", "X", "--nonsense"], "unrecognized"),
    (["train", "pixelcnn", "--data", "digits", "--out", "X", "--conditional"], "conditional"),
    (["train", "pixelcnn", "--data", "digits"], "--out"),
    (["train", "--resume", "NOPE"], "not a run folder"),
    (["eval", "NOPE"], "no such run folder"),
    (["sample", "NOPE", "-o", "x.png"], "no such run folder"),
    (["bogus"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(args, match, tmp_path, capsys):
    os.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genzoo: error:") and match in err
    assert not (tmp_path / "X").exists()


def test_errors_never_damage_an_existing_run(trained_run, tmp_path, capsys):
    before = {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()}
    assert main(["train", "pixelcnn", "--data", "digits", "--out", str(trained_run)]) == 2
    assert "holds another run" in capsys.readouterr().err
    assert main(["sample", str(trained_run), "-n", "4", "-o", str(trained_run / "x.jpg")]) == 2
    assert main(["eval", str(trained_run), "--data", "binarized-mnist", "--data-dir", str(tmp_path)]) == 2
    assert {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()} == before


def test_a_corrupt_model_folder_is_one_clear_error(trained_run, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((trained_run / "config.json").read_text())
    (bad / "model.safetensors").write_bytes((trained_run / "model.safetensors").read_bytes()[:100])
    assert main(["eval", str(bad), "--data", "digits"]) == 2
    assert "safetensors" in capsys.readouterr().err
    (bad / "config.json").write_text("{not json")
    assert main(["eval", str(bad), "--data", "digits"]) == 2
    assert "JSON" in capsys.readouterr().err
    # a model folder from elsewhere (a diffusers UNet's config): named as foreign, not a traceback
    (bad / "config.json").write_text('{"_class_name": "UNet2DModel", "sample_size": 32}')
    assert main(["eval", str(bad), "--data", "digits"]) == 2
    assert "not a genzoo model config" in capsys.readouterr().err
    (bad / "config.json").write_text('{"format": 1, "model": "pixelcnn", "config": {"hidden_channels": "many"}}')
    assert main(["eval", str(bad), "--data", "digits"]) == 2
    assert "hidden_channels" in capsys.readouterr().err


def test_real_entry_point_reports_without_traceback(tmp_path):
    rc, out, err = run_cli("train", "pixelcnn", "--data", "digits", "--out", tmp_path / "r", "--batch-size", "0")
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1
    rc, out, err = run_cli("list")
    assert rc == 0 and "pixelcnn" in out


def test_bad_paths_exit_2_with_one_line(trained_run, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    if os.geteuid() == 0:
        read_only = "/sys/genzoo-run"  # sysfs refuses new folders even to root
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        read_only = tmp_path / "ro" / "run"
    train = ["train", "pixelcnn", "--data", "digits", "--epochs", "1", *TINY_ARGS]
    for args, match in [
        ([*train, "--out", a_file], "is a file"),
        ([*train, "--out", a_file / "run"], "is a file"),
        ([*train, "--out", read_only], "genzoo-run" if os.geteuid() == 0 else "not writable"),
        ([*train, "--out", tmp_path / "r", "--data-dir", tmp_path / "missing"], "not an existing folder"),
        ([*train, "--out", tmp_path / "r", "--data-dir", a_file], "not an existing folder"),
        (["eval", trained_run, "--data-dir", tmp_path / "missing"], "not an existing folder"),
        (["complete", trained_run, "-o", tmp_path / "c.png", "--data-dir", a_file], "not an existing folder"),
    ]:
        assert main([str(a) for a in args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("genzoo: error:") and match in err, (args, err)
    assert a_file.read_text() == "not a folder" and not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", genzoo.models.names())
def test_every_registered_model_trains_evaluates_and_draws_what_it_declares(name, tmp_path, capsys):
    """The command line round trip, over the registry: a model registered anywhere is covered by what it declares
    (class labels where its config has num_classes, samples where it can sample, completions where it completes,
    the cached sampler against the naive one where it has both)."""
    cls, run = genzoo.models.get(name), tmp_path / name
    conditional = ["--conditional"] if "num_classes" in genzoo.models.option_defaults(name) else []
    assert main(["train", name, "--data", "digits", "--out", str(run), "--epochs", "1", "--batch-size", "50",
                 "--train-limit", "100", "--eval-limit", "20", "--threads", "1", *conditional,
                 *tiny_flags(name)]) == 0
    assert genzoo.load(run).num_classes == (10 if conditional else 0)
    assert main(["eval", str(run), "--json", "--limit", "20"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["likelihood_kind"] == cls.likelihood_kind and s["count"] == 20
    if cls.likelihood_kind != "none":
        assert 0 < s["bits_per_dim"] < 16  # one short epoch: barely trained, but a finite figure on the one scale
    if not cls.can_sample:
        assert main(["sample", str(run), "-n", "2", "-o", str(tmp_path / "s.png")]) == 2
        return
    cached, naive = tmp_path / "cached.png", tmp_path / "naive.png"
    assert main(["sample", str(run), "-n", "4", "-o", str(cached)]) == 0
    if "naive" in cls.sample_options:
        assert main(["sample", str(run), "-n", "4", "-o", str(naive), "--naive"]) == 0
        assert cached.read_bytes() == naive.read_bytes()  # the cache changes the speed, never the images
    if cls.can_complete:
        assert main(["complete", str(run), "-o", str(tmp_path / "c.png"), "-n", "2", "--samples", "2"]) == 0
        assert Image.open(tmp_path / "c.png").size == (4 * 68 + 4, 2 * 68 + 4)


def test_ema_is_kept_beside_the_weights_and_eval_and_sample_use_it_unless_told(tmp_path, capsys):
    out = tmp_path / "ema"
    assert main(["train", "pixelcnn", "--data", "digits", "--out", str(out), "--epochs", "1", "--batch-size", "100",
                 "--warmup-steps", "2", "--eval-limit", "100", "--ema", "0.9", *TINY_ARGS]) == 0
    average, raw = genzoo.load(out), genzoo.load(out, ema=False)
    assert (average.weights, raw.weights) == ("ema", "raw")
    assert any(not torch.equal(a, b) for a, b in zip(average.state_dict().values(), raw.state_dict().values()))
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["weights"] == "ema"  # the epoch's test figure is the average's
    capsys.readouterr()
    assert main(["eval", str(out), "--json", "--limit", "100"]) == 0
    captured = capsys.readouterr()
    assert "the moving average of the weights" in captured.err
    assert json.loads(captured.out)["nll_nats"] == pytest.approx(record["test_nll"], rel=1e-5)
    assert main(["eval", str(out), "--json", "--limit", "100", "--no-ema"]) == 0
    captured = capsys.readouterr()
    assert "moving average" not in captured.err
    assert json.loads(captured.out)["nll_nats"] != pytest.approx(record["test_nll"], rel=1e-5)
    assert main(["sample", str(out), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    assert "the moving average of the weights" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "2", "--ema", "0.5"]) == 2  # it would change the result
    assert "cannot change --ema" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0
    assert genzoo.load(out).weights == "ema"


def test_model_options_are_taken_anywhere_after_train_and_a_model_name_as_a_value_is_no_model(tmp_path):
    out = tmp_path / "pixelcnn"  # the folder is named like a model: it is --out's value, not MODEL
    assert main(["train", "--data", "digits", "--out", str(out), "nade", "--epochs", "1", "--hidden-units", "7",
                 "--eval-limit", "20", "--threads", "1"]) == 0
    model = genzoo.load(out)
    assert model.name == "nade" and model.config.hidden_units == 7


@pytest.mark.parametrize("argv", [["diffusion", "--channels", "3"], ["made", "--hidden-units", "99999999"]])
def test_options_the_config_accepts_but_the_network_cannot_run_are_one_line_and_leave_no_folder(argv, tmp_path,
                                                                                                capsys):
    out = tmp_path / "run"
    assert main(["train", *argv, "--data", "digits", "--out", str(out), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genzoo: error:") and argv[0] in err
    assert not out.exists()
    assert main(["train", argv[0], "--data", "digits", "--out", str(out), "--epochs", "1", "--train-limit", "50",
                 "--threads", "1"]) == 0  # the same --out then works


def test_a_kept_eval_of_older_weights_is_not_shown_after_a_resume_trains_further(tmp_path, capsys):
    from genzoo.cli.listing import describe_run

    run = tmp_path / "r"
    assert main(["train", "nade", "--data", "digits", "--out", str(run), "--epochs", "1", "--hidden-units", "4",
                 "--threads", "1"]) == 0
    assert main(["eval", str(run)]) == 0
    assert "genzoo eval" in describe_run(run)["figure"]["source"]
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    shown = describe_run(run)["figure"]
    assert shown["source"].startswith("last epoch's test figure (epoch 2")  # the eval was of step 23's weights
    assert shown["value"] == pytest.approx(json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["test_nll"])


def test_a_subset_figure_carries_its_standard_error_and_the_full_one_does_not(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "nade", "--data", "digits", "--out", str(run), "--epochs", "1", "--hidden-units", "4",
                 "--threads", "1", "--train-limit", "300"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--limit", "50", "--json"]) == 0
    sub = json.loads(capsys.readouterr().out)
    assert sub["subset_of"] == 297 and 0 < sub["subset_standard_error"] < sub["nll_nats"]
    assert main(["eval", str(run), "--json"]) == 0
    assert "subset_standard_error" not in json.loads(capsys.readouterr().out)


def test_the_header_counts_the_images_trained_on_and_an_output_under_a_file_says_so(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "nade", "--data", "digits", "--out", str(run), "--epochs", "1", "--hidden-units", "4",
                 "--threads", "1", "--train-limit", "512", "--eval-limit", "100"]) == 0
    assert "x 512 of 1500 train, 100 of 297 test" in capsys.readouterr().out
    (tmp_path / "afile").write_text("x")
    assert main(["sample", str(run), "-o", str(tmp_path / "afile" / "x.png")]) == 2
    assert "afile: is a file, not a folder for the output" in capsys.readouterr().err
    parser = build_parser(["complete"])
    complete = parser._subparsers._group_actions[0].choices["complete"]
    assert "take the test images to complete from" in next(a.help for a in complete._actions if a.dest == "data")
