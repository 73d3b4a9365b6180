"""Multi-process training on torch.distributed (gloo on CPU), launched by torchrun."""

import json
import math
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from genzoo.cli import main
from conftest import metrics, tiny_flags, weights

TRAIN = ["train", "pixelcnn", "--data", "digits", "--epochs", "2", "--batch-size", "100", "--warmup-steps", "3",
         "--eval-limit", "90", "--hidden-channels", "8", "--num-layers", "2", "--head-channels", "8", "--threads", "1"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc, *args, script=None):
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
                "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--max-restarts=0"]
    target = [str(script)] if script else ["-m", "genzoo"]
    return subprocess.run([*launcher, *target, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    out = tmp_path_factory.mktemp("double") / "run"
    p = torchrun(2, *TRAIN, "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p


def test_two_processes_match_one_with_the_same_global_batch(single, double):
    out, p = double
    assert "2 process(es)" in p.stdout
    a, b = weights(single), weights(out)
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=0) for k in a)
    # evaluation is summed across ranks: the same test NLL over the same 90 images
    for m1, m2 in zip(metrics(single), metrics(out)):
        assert m2["test_count"] == 90 and m1["test_nll"] == pytest.approx(m2["test_nll"], abs=1e-4)


def test_only_rank_zero_writes(double):
    out, p = double
    assert len(metrics(out)) == 2  # one line an epoch, not one a rank
    assert p.stdout.count("epoch 1 ") == 1


def test_a_killed_distributed_run_resumes(double, tmp_path):
    from test_resume import KILLER

    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    out = tmp_path / "run"
    p = torchrun(2, "step", 20, *TRAIN, "--out", out, script=script)  # 15 steps an epoch: dies in epoch 2
    assert p.returncode != 0
    assert [m["epoch"] for m in metrics(out)] == [1]
    p = torchrun(2, "train", "--resume", out)
    assert p.returncode == 0, p.stderr[-3000:]
    ref = weights(double[0])
    assert all(torch.equal(ref[k], weights(out)[k]) for k in ref)
    assert [m["epoch"] for m in metrics(out)] == [1, 2]


def test_global_batch_must_split_evenly(tmp_path):
    p = torchrun(2, *TRAIN[:-2], "--batch-size", "99", "--out", tmp_path / "r")
    assert p.returncode != 0 and "divisible" in p.stderr


def test_bf16_runs_under_torchrun(tmp_path):
    bf16 = [*TRAIN[:TRAIN.index("--epochs")], "--epochs", "1", *TRAIN[TRAIN.index("--epochs") + 2:], "--precision",
            "bf16"]
    assert main([*bf16, "--out", str(tmp_path / "one")]) == 0
    p = torchrun(2, *bf16, "--out", tmp_path / "two")
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "run.json").read_text())["train"]["precision"] == "bf16"
    one, two = metrics(tmp_path / "one")[-1], metrics(tmp_path / "two")[-1]
    assert math.isfinite(two["test_nll"]) and two["test_nll"] == pytest.approx(one["test_nll"], rel=1e-2)


def test_the_vq_vae_codebook_sees_the_global_batch_under_two_processes(tmp_path):
    # the codebook's moving averages sum every rank's counts: two processes give one process's codebook
    # (no restarts here: they draw from each rank's own batch)
    train = ["train", "vq-vae", "--data", "digits", "--epochs", "1", "--batch-size", "100", "--warmup-steps", "3",
             "--eval-limit", "90", "--hidden-channels", "8", "--codebook-size", "8", "--num-res-blocks", "1",
             "--dead-code-threshold", "0", "--threads", "1"]
    assert main([*train, "--out", str(tmp_path / "one")]) == 0
    p = torchrun(2, *train, "--out", tmp_path / "two")
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert torch.allclose(a["quantizer.ema_count"], b["quantizer.ema_count"], atol=1e-4)
    assert all(torch.allclose(a[k], b[k], atol=1e-4, rtol=0) for k in a)


GAN = ["train", "gan", "--data", "digits", "--epochs", "2", "--batch-size", "100", "--warmup-steps", "3",
       "--eval-limit", "90", *tiny_flags("gan"), "--threads", "1"]

EVERY_RANK = textwrap.dedent("""
    import sys
    from safetensors.torch import save_file
    from genzoo.cli import main
    from genzoo.training import trainer
    saved = trainer.Trainer.save_checkpoint
    def save_checkpoint(self, state):  # each rank's weights and buffers at each checkpoint, beside the run
        saved(self, state)
        tensors = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        save_file(tensors, str(self.out.parent / f"rank{self.rank}-step{state['step']}.safetensors"))
    trainer.Trainer.save_checkpoint = save_checkpoint
    sys.exit(main(sys.argv[1:]))
""")


def test_a_models_own_training_step_keeps_the_ranks_equal_under_two_processes_and_resumes_bitwise(tmp_path):
    # The GAN's two updates do not go through DDP: the step averages their gradients (and takes rank 0's
    # BatchNorm statistics) itself, so every rank holds the same weights at every checkpoint; each rank draws its
    # own z, and a resumed run restores every rank's random state: it ends bitwise equal to an uninterrupted one.
    from safetensors.torch import load_file
    from test_resume import KILLER

    (tmp_path / "every_rank.py").write_text(EVERY_RANK)
    (tmp_path / "killer.py").write_text(KILLER)
    whole = tmp_path / "whole" / "run"
    p = torchrun(2, *GAN, "--out", whole, script=tmp_path / "every_rank.py")
    assert p.returncode == 0, p.stderr[-3000:]
    for step in (15, 30):  # the end of each epoch
        a, b = (load_file(whole.parent / f"rank{r}-step{step}.safetensors") for r in (0, 1))
        assert all(torch.equal(a[k], b[k]) for k in a), step
    first = load_file(whole.parent / "rank0-step15.safetensors")
    assert any(not torch.equal(first[k], a[k]) for k in a)  # and it did train
    killed = tmp_path / "killed"
    p = torchrun(2, "step", 40, *GAN, "--out", killed, script=tmp_path / "killer.py")  # 2 updates a step: step 20
    assert p.returncode != 0 and [m["epoch"] for m in metrics(killed)] == [1]
    p = torchrun(2, "train", "--resume", killed)
    assert p.returncode == 0, p.stderr[-3000:]
    ref, resumed = weights(whole), weights(killed)
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)
