"""Interrupted training resumes to the same result; checkpoints are safe to read.

A run is killed with SIGKILL (no cleanup, as the kernel's OOM killer or a preempted job
would) at a chosen moment: in the middle of an epoch, or in the middle of writing a
checkpoint. `genzoo train --resume` then finishes it, and its final weights must equal,
bit for bit, those of a run that was never interrupted.
"""

import json
import shutil
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

import genzoo
from genzoo import checkpoint as ckpt
from genzoo.cli import main
from conftest import metrics, weights
from genzoo.errors import CheckpointError

TRAIN = ["train", "gated-pixelcnn", "--data", "digits", "--epochs", "3", "--batch-size", "250", "--warmup-steps", "3",
         "--eval-limit", "60", "--hidden-channels", "8", "--num-layers", "2", "--head-channels", "8", "--threads", "1",
         "--binarize", "dynamic"]

# Runs the CLI in a child process, SIGKILLing itself at the N-th call of a chosen function.
KILLER = textwrap.dedent("""
    import os, signal, sys
    import torch
    from genzoo import checkpoint
    from genzoo.cli import main
    target, n = sys.argv[1], int(sys.argv[2])
    calls = [0]
    def killing(original):
        def wrapper(*a, **k):
            calls[0] += 1
            if calls[0] == n:
                if target == "replace":  # die with the temp file written but not yet renamed
                    os.kill(os.getpid(), signal.SIGKILL)
                result = original(*a, **k)
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*a, **k)
        return wrapper
    if target == "step":
        torch.optim.Adam.step = killing(torch.optim.Adam.step)
    elif target == "write":
        checkpoint.atomic_write_bytes = killing(checkpoint.atomic_write_bytes)
    elif target == "replace":
        os.replace = killing(os.replace)
    sys.exit(main(sys.argv[3:]))
""")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


def kill_and_resume(tmp_path, target, n, extra=(), train=TRAIN):
    out = tmp_path / "run"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    p = subprocess.run([sys.executable, str(script), target, str(n), *train, *extra, "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -9, p.stderr[-2000:]  # it really was killed
    assert main(["train", "--resume", str(out)]) == 0
    return out


@pytest.mark.parametrize("target,n", [
    ("step", 8),  # in the middle of epoch 2 (6 steps an epoch)
    # atomic writes: run.json, config.json, then 4 per checkpoint (weights, trainer state, commit record, model)
    ("write", 5),  # after epoch 1's commit record, before the run's model.safetensors is refreshed
    ("write", 7),  # after epoch 2's weights file, before its trainer state and commit record
    ("replace", 6),  # epoch 1's model.safetensors written to a temp file, never renamed
])
def test_killed_run_resumes_to_identical_weights(reference, tmp_path, target, n):
    out = kill_and_resume(tmp_path, target, n)
    ref, got = weights(reference), weights(out)
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    got_metrics, ref_metrics = metrics(out), metrics(reference)
    assert [m["epoch"] for m in got_metrics] == [1, 2, 3]  # none lost, none duplicated
    assert [m["test_nll"] for m in got_metrics] == [m["test_nll"] for m in ref_metrics]
    assert not list(out.glob("**/.*.tmp"))  # temp files of the killed write are swept on resume
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["step-000000018.pt", "step-000000018.safetensors"]


def test_mid_epoch_checkpoints_resume_too(tmp_path):
    ref = tmp_path / "ref"
    assert main([*TRAIN, "--checkpoint-every", "4", "--out", str(ref)]) == 0
    out = kill_and_resume(tmp_path, "step", 11, extra=("--checkpoint-every", "4"))  # last commit: step 8
    assert all(torch.equal(weights(ref)[k], weights(out)[k]) for k in weights(ref))
    assert [m["epoch"] for m in metrics(out)] == [1, 2, 3]


def test_a_killed_diffusion_run_resumes_bitwise_with_its_moving_average(tmp_path):
    # the model draws its times, noises and dropped labels from the global generator at every step, and the
    # learned schedule's shape follows the variance through a custom backward: all of it must resume exactly,
    # and so must the moving average of the weights (--ema) and its count of updates (its warm-up)
    train = ["train", "diffusion", "--data", "digits", "--epochs", "2", "--batch-size", "250", "--warmup-steps", "2",
             "--eval-limit", "40", "--channels", "8", "--resolutions", "2", "--conditional", "--threads", "1",
             "--checkpoint-every", "4", "--ema", "0.9"]
    ref = tmp_path / "ref"
    assert main([*train, "--out", str(ref)]) == 0
    out = kill_and_resume(tmp_path, "step", 7, train=train)  # mid epoch 2 (6 steps an epoch); last commit: step 4
    assert all(torch.equal(weights(ref)[k], weights(out)[k]) for k in weights(ref))
    ref_ema, out_ema = ckpt.load_weights(ref / "ema.safetensors"), ckpt.load_weights(out / "ema.safetensors")
    assert ref_ema.keys() == out_ema.keys() and all(torch.equal(ref_ema[k], out_ema[k]) for k in ref_ema)
    assert any(not torch.equal(ref_ema[k], weights(ref)[k]) for k in ref_ema)
    assert [m["test_nll"] for m in metrics(out)] == [m["test_nll"] for m in metrics(ref)]


@pytest.mark.parametrize("name,options", [
    ("nade", ["--hidden-units", "8"]),
    ("made", ["--hidden-units", "16", "--num-masks", "3"]),  # a mask drawn at every step
    ("pixelcnn-pp", ["--hidden-channels", "4", "--num-resnet", "1", "--num-scales", "2", "--dropout", "0.5"]),
    ("pixelsnail", ["--hidden-channels", "4", "--num-blocks", "1", "--num-resnet", "1", "--dropout", "0.5"]),
    ("glow", ["--hidden-channels", "4", "--steps-per-scale", "1", "--conditional"]),  # ActNorm's init, class prior
    ("vq-vae", ["--hidden-channels", "4", "--codebook-size", "16", "--num-res-blocks", "1"]),  # EMA codebook, restarts
])
def test_models_that_draw_at_every_step_resume_bitwise_after_a_kill(name, options, tmp_path):
    # MADE's masks and the dropout of PixelCNN++ / PixelSNAIL are drawn from the global generator at every step
    train = ["train", name, "--data", "digits", "--epochs", "2", "--batch-size", "250", "--warmup-steps", "2",
             "--eval-limit", "40", "--threads", "1", "--checkpoint-every", "4", *options]
    ref = tmp_path / "ref"
    assert main([*train, "--out", str(ref)]) == 0
    out = kill_and_resume(tmp_path, "step", 7, train=train)  # mid epoch 2 (6 steps an epoch); last commit: step 4
    assert all(torch.equal(weights(ref)[k], weights(out)[k]) for k in weights(ref))
    assert [m["test_nll"] for m in metrics(out)] == [m["test_nll"] for m in metrics(ref)]


def test_resume_of_a_finished_run_changes_nothing(reference, capsys):
    before = weights(reference)
    assert main(["train", "--resume", str(reference)]) == 0
    assert all(torch.equal(before[k], weights(reference)[k]) for k in before)
    assert len(metrics(reference)) == 3


class Exploit:
    """Unpickling this would call os.system: a checkpoint must never be unpickled freely."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_a_malicious_pickle_is_refused_and_runs_nothing(reference, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(reference), str(run)], check=True)
    record = json.loads((run / "checkpoint.json").read_text())
    (run / record["trainer"]).write_bytes(pickle.dumps({"step": Exploit()}))
    with pytest.raises(CheckpointError, match="refused"):
        ckpt.load_trainer_state(run / record["trainer"])
    assert main(["train", "--resume", str(run)]) == 2
    assert "refused" in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()
    # The same payload in place of the weights: safetensors never unpickles, so it is just "not valid".
    (run / "model.safetensors").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError, match="safetensors"):
        genzoo.load(run)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("cut", [0, 7, 100, -1])
def test_truncated_safetensors_is_a_clear_error(reference, tmp_path, cut):
    data = (reference / "model.safetensors").read_bytes()
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(data[:cut] if cut >= 0 else data[:-1])
    with pytest.raises(CheckpointError, match="safetensors"):
        ckpt.load_weights(bad)


def test_weights_from_another_model_are_refused(reference, tmp_path):
    other = genzoo.models.build("pixelcnn", image_shape=(1, 8, 8), levels=2, hidden_channels=4, num_layers=1,
                                head_channels=4)
    other.save(tmp_path / "o")
    (tmp_path / "o" / "config.json").write_text((reference / "config.json").read_text())
    with pytest.raises(CheckpointError, match="do not match"):
        genzoo.load(tmp_path / "o")


def test_nan_weights_are_refused(reference, tmp_path):
    subprocess.run(["cp", "-r", str(reference), str(tmp_path / "n")], check=True)
    w = weights(reference)
    k = next(iter(w))
    w[k] = torch.full_like(w[k], float("nan"))
    ckpt.save_weights(tmp_path / "n" / "model.safetensors", w)
    with pytest.raises(CheckpointError, match="NaN"):
        genzoo.load(tmp_path / "n")


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    ckpt.atomic_write_bytes(path, b"old")

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    with pytest.raises(CheckpointError, match="No space left"):
        ckpt.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]


def test_a_full_disk_mid_run_is_one_error_and_the_run_resumes(reference, tmp_path, monkeypatch, capsys):
    import os

    real_fsync, calls = os.fsync, [0]

    def fills_up(fd):
        calls[0] += 1
        # 2 fsyncs an atomic write (file, folder): run.json, config.json (4), the new run folder's
        # rename (5), epoch 1's metrics line (6) and checkpoint (14), epoch 2's metrics line (15);
        # then its weights hit a full disk.
        if calls[0] >= 16:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    out = tmp_path / "run"
    monkeypatch.setattr("os.fsync", fills_up)
    assert main([*TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    monkeypatch.setattr("os.fsync", real_fsync)
    assert main(["train", "--resume", str(out)]) == 0
    assert all(torch.equal(weights(reference)[k], weights(out)[k]) for k in weights(reference))
    assert [m["epoch"] for m in metrics(out)] == [1, 2, 3]


def test_resume_refuses_options_that_would_change_the_result(reference, capsys):
    for extra in (["--lr", "0.1"], ["--seed", "5"], ["--binarize", "threshold"], ["--levels", "4"]):
        assert main(["train", "--resume", str(reference), *extra]) == 2
        assert "cannot change" in capsys.readouterr().err


def test_resuming_a_finished_run_says_so_and_more_epochs_extend_it(reference, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    before = (run / "model.safetensors").read_bytes()
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "already finished: 3 of 3 epochs" in out and "--epochs N" in out
    assert (run / "model.safetensors").read_bytes() == before and len(metrics(run)) == 3
    assert main(["train", "--resume", str(run), "--epochs", "4"]) == 0
    assert [m["epoch"] for m in metrics(run)] == [1, 2, 3, 4]
    assert json.loads((run / "run.json").read_text())["train"]["epochs"] == 4
    assert (run / "model.safetensors").read_bytes() != before


def test_a_time_budget_stops_mid_epoch_and_a_new_budget_continues(reference, tmp_path, capsys):
    out = tmp_path / "run"
    # A budget this small stops after the first step: a partial epoch, evaluated and checkpointed.
    assert main([*TRAIN, "--minutes", "0.00001", "--out", str(out)]) == 0
    assert "stopped: the --minutes 1e-05 budget is spent" in capsys.readouterr().out  # said, not left to guess
    m = metrics(out)
    assert len(m) == 1 and m[0]["partial"] and m[0]["step"] == 1
    assert json.loads((out / "checkpoint.json").read_text())["batch"] == 1
    # Lifting the budget on resume finishes the run exactly as the uninterrupted one.
    assert main(["train", "--resume", str(out), "--minutes", "0"]) == 0
    assert all(torch.equal(weights(reference)[k], weights(out)[k]) for k in weights(reference))
    assert [(r["epoch"], r["partial"]) for r in metrics(out)] == [(1, True), (1, False), (2, False), (3, False)]


def test_saved_files_honour_the_umask(reference):
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((reference / "model.safetensors").stat().st_mode) == 0o666 & ~mask


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(reference, tmp_path, capsys):
    out = kill_and_resume(tmp_path, "step", 3)  # the first checkpoint would be at step 6
    assert "restarting from step 0" in capsys.readouterr().out
    assert all(torch.equal(weights(reference)[k], weights(out)[k]) for k in weights(reference))
    assert [m["epoch"] for m in metrics(out)] == [1, 2, 3]


def test_time_based_checkpoints_lose_little_and_change_nothing(reference, tmp_path):
    out = tmp_path / "run"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    # A checkpoint after every step's worth of time; killed in the middle of epoch 2's step 9.
    p = subprocess.run([sys.executable, str(script), "step", "9", *TRAIN, "--checkpoint-minutes", "1e-9", "--out",
                        str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -9, p.stderr[-2000:]
    record = json.loads((out / "checkpoint.json").read_text())
    assert (record["step"], record["epoch"], record["batch"]) == (8, 1, 2)  # only the killed step is lost
    assert main(["train", "--resume", str(out)]) == 0
    assert all(torch.equal(weights(reference)[k], weights(out)[k]) for k in weights(reference))
    assert [m["epoch"] for m in metrics(out)] == [1, 2, 3]
    assert json.loads((out / "run.json").read_text())["train"]["checkpoint_minutes"] == 1e-9


def test_failed_validation_leaves_nothing_and_the_same_out_then_works(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "run"
    assert main([*TRAIN, "--data-dir", str(tmp_path / "nowhere"), "--out", str(out)]) == 2  # a data error
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # not even the parents it would have made
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*TRAIN, "--kernel", "4", "--out", str(empty)]) == 2  # the model's own config check
    assert "odd" in capsys.readouterr().err
    assert list(empty.iterdir()) == []
    assert main([*TRAIN, "--epochs", "1", "--out", str(out)]) == 0
    assert [m["epoch"] for m in metrics(out)] == [1]
