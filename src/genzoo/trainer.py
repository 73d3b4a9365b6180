"""The trainer: knows nothing about any model. A model is anything with ``loss(x, y) -> dict``
holding ``loss`` (a scalar to minimise) and, optionally, ``nll`` ([B] nats).

What a run folder holds, and the order it is written in (a kill at any point leaves the
last *committed* checkpoint whole; see docs/architecture.md):

    run.json            how the run was launched (written once, by the CLI)
    config.json         the model's constructor arguments     } a saved model: genzoo.load(run)
    model.safetensors   the latest committed weights          }
    checkpoint.json     the commit record: step, epoch, batch and the two files below
    ckpt/step-N.safetensors, ckpt/step-N.pt   weights; optimizer + RNG + counters
    metrics.jsonl       one JSON object per evaluation

A checkpoint is committed by the atomic rename of checkpoint.json; files of older
checkpoints are deleted only after that. Resuming reads checkpoint.json, restores
everything, drops metrics lines written after that step, and replays the data order,
which is a pure function of (seed, epoch), so a resumed run ends bitwise equal to an
uninterrupted one on CPU.

Distributed: run under ``torchrun``; each rank takes the DistributedSampler's share of
every global batch (``batch_size`` is global), gradients are averaged by
DistributedDataParallel, evaluation sums are all-reduced, and only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DistributedSampler
from tqdm import tqdm

from . import checkpoint as ckpt
from .errors import GenzooError
from .likelihood import bits_per_dim

CHECKPOINT_RECORD = "checkpoint.json"
METRICS_FILE = "metrics.jsonl"
PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str):
    """The forward pass's precision context: bf16 autocast, or nothing for fp32.

    Under bf16 the convolutions and matrix products run in bfloat16 while the weights,
    gradients and Adam moments stay fp32 (autocast casts copies); likelihood reductions
    opt out (``likelihood.full_precision``), so reported nats stay fp32 figures.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 10
    minutes: float = 0.0  # wall-clock budget over all sessions of the run; 0 = none
    batch_size: int = 64  # global: split evenly across distributed ranks
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0  # the cosine ends at lr * min_lr_ratio
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    weight_decay: float = 0.0
    seed: int = 0
    eval_batch_size: int = 256
    eval_limit: int = 0  # evaluate on the first N test images each epoch; 0 = all
    checkpoint_every: int = 0  # also checkpoint every N steps; 0 = at epoch ends only
    checkpoint_minutes: float = 10.0  # also checkpoint after this much training time; 0 = off
    compile: bool = False  # torch.compile the training step's loss
    precision: str = "fp32"  # "bf16": autocast the forward pass and loss (fp32 weights, Adam state, nats)
    max_bad_steps: int = 20  # a step with a non-finite loss or gradient is skipped; this many in a row stop the run

    def __post_init__(self):
        checks = {
            "epochs": self.epochs >= 1, "minutes": self.minutes >= 0, "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0 and math.isfinite(self.lr), "warmup_steps": self.warmup_steps >= 0,
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1, "grad_clip": self.grad_clip >= 0,
            "weight_decay": self.weight_decay >= 0, "eval_batch_size": self.eval_batch_size >= 1,
            "eval_limit": self.eval_limit >= 0, "checkpoint_every": self.checkpoint_every >= 0,
            "checkpoint_minutes": self.checkpoint_minutes >= 0 and math.isfinite(self.checkpoint_minutes),
            "precision": self.precision in PRECISIONS, "max_bad_steps": self.max_bad_steps >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise GenzooError(f"bad training option {bad[0]}={getattr(self, bad[0])!r}")


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr over warmup_steps, then cosine decay to lr * min_lr_ratio at ``total``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _seed_for(*parts: int) -> int:
    s = 0
    for p in parts:
        s = (s * 1_000_003 + p) % (2**63 - 1)
    return s


class _LossOf(nn.Module):
    """Makes ``model.loss`` the forward of a module, so DDP and torch.compile can wrap it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y):
        return self.model.loss(x, y)


class Trainer:
    """Train ``model`` on (train_images, train_labels), evaluating on the test split each epoch.

    images: uint8 [N, C, H, W]; labels: int64 [N]. ``batch_transform(x, generator)``, if
    given, maps each training batch (e.g. dynamic binarization) with a generator seeded
    by (seed, epoch, batch, rank).
    """

    def __init__(self, model, train, test, config: TrainConfig, out_dir, batch_transform=None,
                 device="cpu", log=print, on_epoch=None):
        self.model, self.cfg, self.out = model, config, Path(out_dir)
        self.on_epoch = on_epoch  # called on rank 0 with each metrics record once it is committed (e.g. TensorBoard)
        self.device = torch.device(device)
        self.train_images, self.train_labels = (t.to(self.device) for t in train)
        self.test_images, self.test_labels = (t.to(self.device) for t in test)
        if config.eval_limit:
            self.test_images, self.test_labels = self.test_images[: config.eval_limit], self.test_labels[: config.eval_limit]
        self.batch_transform = batch_transform
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if config.batch_size % self.world:
            raise GenzooError(f"batch_size {config.batch_size} must be divisible by the {self.world} distributed processes")
        self.local_batch = config.batch_size // self.world
        self.steps_per_epoch = (len(self.train_images) // self.world) // self.local_batch
        if self.steps_per_epoch < 1:
            raise GenzooError(f"batch_size {config.batch_size} is larger than the {len(self.train_images)} training images")
        self.total_steps = config.epochs * self.steps_per_epoch
        self.log = log if self.rank == 0 else (lambda *a, **k: None)
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        step_fn = _LossOf(model)
        if self.distributed:
            step_fn = nn.parallel.DistributedDataParallel(step_fn, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step_fn = torch.compile(step_fn) if config.compile else step_fn
        self.dims = int(np.prod(self.train_images.shape[1:]))

    # ------------------------------------------------------------------ state
    def _fresh_state(self) -> dict:
        return {"step": 0, "epoch": 0, "batch": 0, "train_nll_sum": 0.0, "train_loss_sum": 0.0,
                "train_count": 0, "elapsed_s": 0.0, "skipped": 0, "bad_in_a_row": 0}

    def _rng_state(self) -> dict:
        np_state = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "numpy_key": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]),
            "python": list(random.getstate()[1]),
        }

    def _set_rng_state(self, s: dict) -> None:
        torch.set_rng_state(s["torch"])
        np.random.set_state(("MT19937", s["numpy_key"].numpy().astype(np.uint32), s["numpy_pos"], 0, 0.0))
        random.setstate((3, tuple(s["python"]), None))

    def save_checkpoint(self, state: dict) -> None:
        """Commit a checkpoint (rank 0 writes; every rank waits for it)."""
        bad = [name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:  # cannot happen while bad steps are skipped; never write such a checkpoint regardless
            raise GenzooError(f"weight {bad[0]} is not finite at step {state['step']}: checkpoint not written; "
                              f"the last committed one is kept")
        if self.rank == 0:
            folder = self.out / "ckpt"
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"step-{state['step']:09d}"
            ckpt.save_weights(folder / f"{stem}.safetensors", self.model.state_dict())
            ckpt.save_trainer_state(folder / f"{stem}.pt", {**state, "optimizer": self.optimizer.state_dict(), "rng": self._rng_state()})
            ckpt.atomic_write_json(self.out / CHECKPOINT_RECORD, {
                **{k: state[k] for k in ("step", "epoch", "batch")},
                "weights": f"ckpt/{stem}.safetensors", "trainer": f"ckpt/{stem}.pt"})
            # The committed weights double as the run's saved model (genzoo.load(run)).
            ckpt.save_weights(self.out / ckpt.WEIGHTS_FILE, self.model.state_dict())
            for old in folder.iterdir():
                if not old.name.startswith(stem):
                    old.unlink(missing_ok=True)
        if self.distributed:
            dist.barrier()

    def load_checkpoint(self) -> dict:
        record = ckpt.read_json(self.out / CHECKPOINT_RECORD)
        try:
            weights, trainer = self.out / record["weights"], self.out / record["trainer"]
            int(record["step"])
        except (KeyError, TypeError, ValueError):
            raise GenzooError(f"{self.out / CHECKPOINT_RECORD}: not a genzoo checkpoint record") from None
        ckpt.load_state_into(self.model, ckpt.load_weights(weights), weights)
        state = {**self._fresh_state(), **ckpt.load_trainer_state(trainer)}  # counters newer than the file start at 0
        try:
            self.optimizer.load_state_dict(state.pop("optimizer"))
            self._set_rng_state(state.pop("rng"))
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise GenzooError(f"{trainer}: trainer state does not fit this model ({e})") from None
        if state["step"] != record["step"]:
            raise GenzooError(f"{trainer}: step {state['step']} disagrees with {CHECKPOINT_RECORD} ({record['step']})")
        if self.rank == 0:
            self._truncate_metrics(state["step"])
            ckpt.sweep_temp_files(self.out)
            ckpt.sweep_temp_files(self.out / "ckpt")
        return state

    def _truncate_metrics(self, step: int) -> None:
        """Keep only metrics lines of committed steps: none lost, none duplicated by the replay."""
        path = self.out / METRICS_FILE
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by the kill
            if isinstance(rec, dict) and rec.get("step", math.inf) <= step:
                kept.append(line)
        ckpt.atomic_write_bytes(path, "".join(k + "\n" for k in kept).encode())

    def _append_metrics(self, record: dict) -> None:
        if self.rank == 0:
            ckpt.append_line(self.out / METRICS_FILE, json.dumps(record))  # a torn line is dropped on resume

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict:
        """Means over the test split, summed across ranks: test_loss, and for every per-image entry
        of ``loss`` ([B], e.g. nll in nats, or a reconstruction error) test_<name>; test_bpd from nll."""
        self.model.eval()
        idx = torch.arange(self.rank, len(self.test_images), self.world)
        names, sums = None, None
        for chunk in idx.split(self.cfg.eval_batch_size):
            out = self.model.loss(self.test_images[chunk], self.test_labels[chunk])
            if names is None:
                names = sorted(k for k, v in out.items()  # bits_per_dim: derived from nll below
                               if k not in ("loss", "bits_per_dim") and v.dim() == 1 and len(v) == len(chunk))
                sums = torch.zeros(2 + len(names), dtype=torch.float64, device=self.device)  # n, loss*n, per-image sums
            sums[0] += len(chunk)
            sums[1] += out["loss"].double() * len(chunk)
            for i, k in enumerate(names):
                sums[2 + i] += out[k].double().sum()
        if self.distributed:
            dist.all_reduce(sums)
        self.model.train()
        n = sums[0].item()
        record = {"test_loss": sums[1].item() / n, "test_count": int(n)}
        record.update({f"test_{k}": sums[2 + i].item() / n for i, k in enumerate(names)})
        if "test_nll" in record:
            record["test_bpd"] = float(bits_per_dim(record["test_nll"], self.dims))
        return record

    # ------------------------------------------------------------------ training
    def _bad_step(self, loss, grad_norm) -> bool:
        """Is the loss or the gradient norm non-finite (on any rank: every rank must skip together)?"""
        bad = (~torch.isfinite(loss.detach().float()) | ~torch.isfinite(grad_norm.float())).float()
        if self.distributed:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        return bool(bad)

    def _clock(self, state, started, last_checkpoint) -> tuple[bool, bool]:
        """(out of the --minutes budget, a --checkpoint-minutes checkpoint is due), as rank 0 sees it."""
        cfg = self.cfg
        if not cfg.minutes and not cfg.checkpoint_minutes:
            return False, False
        now = time.monotonic()
        flags = torch.tensor([
            float(bool(cfg.minutes) and state["elapsed_s"] + now - started >= 60 * cfg.minutes),
            float(bool(cfg.checkpoint_minutes) and now - last_checkpoint >= 60 * cfg.checkpoint_minutes)])
        if self.distributed:  # every rank must stop, or checkpoint, at the same step
            dist.broadcast(flags, 0)
        return bool(flags[0]), bool(flags[1])

    def fit(self, resume: bool = False) -> list[dict]:
        """Train to the end (or the --minutes budget). ``resume``: continue from the last
        committed checkpoint, or from step 0 if the run died before its first one; either
        way the result is bitwise that of an uninterrupted run (same threads, CPU)."""
        cfg = self.cfg
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        if resume and (self.out / CHECKPOINT_RECORD).exists():
            state = self.load_checkpoint()
        else:
            state = self._fresh_state()
            torch.manual_seed(_seed_for(cfg.seed, 1))
            if resume and self.rank == 0:  # killed before its first checkpoint: drop what it left
                self._truncate_metrics(0)
                ckpt.sweep_temp_files(self.out)
                for stale in (self.out / "ckpt").glob("step-*"):
                    stale.unlink()
        records = []
        sampler = DistributedSampler(range(len(self.train_images)), num_replicas=self.world, rank=self.rank,
                                     shuffle=True, seed=cfg.seed, drop_last=True)
        self.model.train()
        started = last_checkpoint = time.monotonic()
        stopped = False
        while not stopped and state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            sampler.set_epoch(epoch)  # the order is a pure function of (seed, epoch)
            batches = list(BatchSampler(sampler, self.local_batch, drop_last=True))
            bar = tqdm(total=len(batches), initial=state["batch"], desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       disable=self.rank != 0 or None, file=sys.stderr, leave=False)
            t0, seen = time.monotonic(), 0
            for b in range(state["batch"], len(batches)):
                idx = torch.tensor(batches[b], device=self.device)
                x, y = self.train_images[idx], self.train_labels[idx]
                if self.batch_transform is not None:
                    g = torch.Generator().manual_seed(_seed_for(cfg.seed, epoch, b, self.rank))
                    x = self.batch_transform(x.cpu(), g).to(self.device)
                lr = lr_at(state["step"], self.total_steps, cfg)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                with autocast(self.device, cfg.precision):
                    out = self.step_fn(x, y)
                loss = out["loss"]
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or math.inf)
                if self._bad_step(loss, grad_norm):
                    # A non-finite loss or gradient: no update (the batch and the schedule move on),
                    # counted in metrics.jsonl; a run of them means the run has diverged.
                    state["skipped"] += 1
                    state["bad_in_a_row"] += 1
                    if state["bad_in_a_row"] >= cfg.max_bad_steps:
                        raise GenzooError(f"training diverged: {state['bad_in_a_row']} steps in a row with a non-finite "
                                          f"loss or gradient, up to step {state['step']} (lower --lr or raise "
                                          f"--warmup-steps); the last checkpoint is kept")
                    self.optimizer.zero_grad(set_to_none=True)
                else:
                    self.optimizer.step()
                    state["bad_in_a_row"] = 0
                    loss_value = loss.item()  # one device sync a step
                    state["train_loss_sum"] += loss_value * len(x)
                    if "nll" in out:
                        state["train_nll_sum"] += out["nll"].detach().sum().item()
                    state["train_count"] += len(x)
                state["step"] += 1
                state["batch"] = b + 1
                seen += len(x)
                bar.update(1)
                bar.set_postfix(loss=f"{state['train_loss_sum'] / max(1, state['train_count']):.4f}",
                                bpd=f"{bits_per_dim(state['train_nll_sum'] / max(1, state['train_count']), self.dims):.4f}")
                out_of_time, checkpoint_due = self._clock(state, started, last_checkpoint)
                if out_of_time:
                    stopped = True
                    break
                checkpoint_due |= bool(cfg.checkpoint_every) and state["step"] % cfg.checkpoint_every == 0
                if checkpoint_due and state["batch"] < len(batches):  # the epoch's end checkpoints anyway
                    state["elapsed_s"] += time.monotonic() - started
                    started = last_checkpoint = time.monotonic()
                    self.save_checkpoint(state)
            bar.close()
            train_time = time.monotonic() - t0
            finished_epoch = state["batch"] >= len(batches)
            record = {"epoch": epoch + 1, "step": state["step"], "partial": not finished_epoch,
                      "lr": lr_at(max(0, state["step"] - 1), self.total_steps, cfg),
                      "train_loss": state["train_loss_sum"] / max(1, state["train_count"]),
                      "train_nll": state["train_nll_sum"] / max(1, state["train_count"]),
                      "images_per_s": seen * self.world / max(train_time, 1e-9), "skipped_steps": state["skipped"]}
            record["train_bpd"] = float(bits_per_dim(record["train_nll"], self.dims))
            record.update(self.evaluate())
            if "test_nll" not in record:  # the model reports no likelihood: no nats to show
                del record["train_nll"], record["train_bpd"]
            state["elapsed_s"] += time.monotonic() - started
            started = time.monotonic()
            record["elapsed_s"] = state["elapsed_s"]
            if finished_epoch:
                state.update(epoch=epoch + 1, batch=0, train_nll_sum=0.0, train_loss_sum=0.0, train_count=0, skipped=0)
            self._append_metrics(record)
            self.save_checkpoint(state)
            if self.on_epoch is not None and self.rank == 0:
                t_hook = time.monotonic()
                self.on_epoch(record)  # it must not touch the global RNG (resumes stay bitwise)
                started += time.monotonic() - t_hook  # and its time is not training time
            last_checkpoint = time.monotonic()
            records.append(record)
            if "test_nll" in record:
                scores = (f"train {record['train_bpd']:.4f} bpd, test {record['test_nll']:.3f} nats "
                          f"= {record['test_bpd']:.4f} bpd")
            else:  # a model without a likelihood: its loss and per-image figures
                scores = f"test loss {record['test_loss']:.5f}" + "".join(
                    f", {k[5:]} {v:.5f}" for k, v in record.items() if k.startswith("test_") and k not in (
                        "test_loss", "test_count"))
            self.log(f"epoch {record['epoch']}{' (stopped early: time budget)' if not finished_epoch else ''} "
                     f"step {record['step']}: {scores} ({record['test_count']} images), {record['images_per_s']:.0f} img/s")
        return records
