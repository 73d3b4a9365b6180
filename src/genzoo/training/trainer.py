"""The trainer: knows nothing about any model. A model is anything with ``loss(x, y) -> dict``
holding ``loss`` (a scalar to minimise) and, optionally, ``nll`` ([B] nats). A model may own its
optimizers (``configure_optimizers(lr, weight_decay)``) and its step (``training_step(step, x, y)``,
given a :class:`Step`); without them it gets ``models.base``'s defaults (one Adam, one update).
The trainer keeps the schedule (every optimizer's rate), clipping, the skipping of non-finite steps,
``--ema`` (a moving average of the weights, :mod:`genzoo.training.ema`) and the checkpoints.

It writes the run folder's checkpoints and metrics through :mod:`genzoo.runs` (which names
the files and commits checkpoints atomically). Resuming restores the last committed
checkpoint and replays the data order, which is a pure function of (seed, epoch), so a
resumed run ends bitwise equal to an uninterrupted one on CPU.

Distributed: run under ``torchrun`` (:mod:`genzoo.distributed` joins the group); each rank
takes the DistributedSampler's share of every global batch (``batch_size`` is global) and its own
random stream (rank 0's is one process's), gradients are averaged (by DistributedDataParallel, or
by the step for a loss a model's ``training_step`` computed itself), evaluation sums are
all-reduced, and only rank 0 writes (every rank's random state kept in the checkpoint).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DistributedSampler
from tqdm import tqdm

from .. import checkpoint as ckpt
from .. import runs
from ..evaluation import figures, scoring
from ..errors import GenzooError
from ..likelihood import bits_per_dim
from ..models.base import GenerativeModel, adam_with_decay
from .config import TrainConfig  # noqa: F401  (genzoo.training.trainer.TrainConfig stays importable)
from .ema import WeightAverage
from .distributed import gather_objects
from .steps import Step, load_optimizers, rng_state, set_rng_state
from .precision import PRECISIONS, autocast, resolve
from .schedule import BudgetFit, fitted_schedule, lr_at

__all__ = ["PRECISIONS", "TrainConfig", "Trainer", "autocast", "fitted_schedule", "lr_at"]


def _seed_for(*parts: int) -> int:
    s = 0
    for p in parts:
        s = (s * 1_000_003 + p) % (2**63 - 1)
    return s


def _limited(images, labels, limit: int):
    if not limit:
        return images, labels
    keep = scoring.subset(labels, limit).to(images.device)
    return images[keep], labels[keep]


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
        self.on_start = None  # called on rank 0 once, when there is training to do (after the resume checks)
        self.device = torch.device(device)
        self.precision = resolve(config.precision, self.device)  # fp32 or bf16
        self.train_images, self.train_labels = (t.to(self.device) for t in train)
        self.test_images, self.test_labels = (t.to(self.device) for t in test)
        self.test_total = len(self.test_images)
        # --eval-limit / --train-limit: the same seeded, stratified subset every epoch and every resume (seed 0)
        self.test_images, self.test_labels = _limited(self.test_images, self.test_labels, config.eval_limit)
        self.train_images, self.train_labels = _limited(self.train_images, self.train_labels, config.train_limit)
        self.batch_transform = batch_transform
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if config.batch_size % self.world:
            raise GenzooError(f"batch_size {config.batch_size} must be divisible by the {self.world} distributed "
                              f"processes")
        self.local_batch = config.batch_size // self.world
        self.steps_per_epoch = (len(self.train_images) // self.world) // self.local_batch
        if self.steps_per_epoch < 1:
            raise GenzooError(f"batch_size {config.batch_size} is larger than the {len(self.train_images)} training "
                              f"images")
        self.budget_fit = BudgetFit(self)  # --fit-cosine
        self.total_steps = self.budget_fit.cap  # the cosine's length (--fit-cosine: fitted)
        self._stop_reason, self.said_uncompiled = None, False  # --compile's notice: said once a run
        self.log = log if self.rank == 0 else (lambda *a, **k: None)
        self.model.to(self.device)
        configure = getattr(model, "configure_optimizers", None)
        self.optimizers = configure(config.lr, config.weight_decay) if configure else [
            adam_with_decay(model, config.lr, config.weight_decay)]
        self.training_step = getattr(model, "training_step", None) or (
            lambda step, x, y: GenerativeModel.training_step(model, step, x, y))
        self.ema = WeightAverage(model, config.ema) if config.ema else None
        step_fn = _LossOf(model)
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            step_fn = nn.parallel.DistributedDataParallel(step_fn, device_ids=ids)
        self.step_fn = torch.compile(step_fn) if config.compile else step_fn
        self.dims = self.train_images[0].numel()

    # ------------------------------------------------------------------ state
    def _fresh_state(self) -> dict:
        return {"step": 0, "epoch": 0, "batch": 0, "train_nll_sum": 0.0, "train_loss_sum": 0.0,
                "train_count": 0, "elapsed_s": 0.0, "skipped": 0, "bad_in_a_row": 0,
                "schedule_steps": 0, "refitted": False}  # --fit-cosine: the cosine's fitted length, kept

    def save_checkpoint(self, state: dict) -> None:
        """Commit a checkpoint (rank 0 writes; every rank waits for it)."""
        bad = [name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:  # cannot happen while bad steps are skipped; never write such a checkpoint regardless
            raise GenzooError(f"weight {bad[0]} is not finite at step {state['step']}: checkpoint not written; "
                              f"the last committed one is kept")
        rngs = gather_objects(rng_state(), self.world)  # each rank's generators: its draws within a step are its own
        if self.rank == 0:
            extra = {"ema_updates": self.ema.updates} if self.ema else {}
            runs.commit_checkpoint(self.out, state, self.model.state_dict(),
                                   {**state, **extra, "optimizers": [o.state_dict() for o in self.optimizers],
                                    "rng": rngs[0], "rng_ranks": rngs[1:]}, ema=self.ema.state if self.ema else None)
        if self.distributed:
            dist.barrier()

    def load_checkpoint(self) -> dict:
        record, weights, trainer = runs.read_checkpoint(self.out)
        ckpt.load_state_into(self.model, ckpt.load_weights(weights), weights)
        state = {**self._fresh_state(), **ckpt.load_trainer_state(trainer)}  # counters newer than the file start at 0
        try:
            load_optimizers(self.optimizers, state.pop("optimizers", None) or [state.pop("optimizer")], self.model)
            ranks = [state.pop("rng"), *state.pop("rng_ranks", [])]  # one a rank (before: rank 0's alone)
            set_rng_state(ranks[self.rank] if self.rank < len(ranks) else ranks[0])
            if self.ema:
                # the run's checkpoints all keep their average (--resume cannot change --ema): none is foreign
                self.ema.load(ckpt.load_weights(runs.checkpoint_average(self.out, record)), state.pop("ema_updates"))
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise GenzooError(f"{trainer}: trainer state does not fit this model ({e})") from None
        if state["step"] != record["step"]:
            raise GenzooError(f"{trainer}: step {state['step']} disagrees with {runs.CHECKPOINT_RECORD} "
                              f"({record['step']})")
        if self.rank == 0:
            runs.truncate_metrics(self.out, state["step"])
            runs.sweep(self.out)
        return state

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict:
        """Means over the test split, summed across ranks: test_loss, and for every per-image entry
        of ``loss`` ([B], e.g. nll in nats, or a reconstruction error) test_<name>; test_bpd from nll.
        Under --ema, of the averaged weights (what eval and sample use)."""
        if self.ema is None:
            return self._evaluate()
        with self.ema.swapped_into(self.model):
            return {**self._evaluate(), "weights": "ema"}

    def _evaluate(self) -> dict:
        self.model.eval()
        idx = torch.arange(self.rank, len(self.test_images), self.world, device=self.device)
        figures = scoring.per_image(self.model, self.test_images[idx], self.test_labels[idx], self.cfg.eval_batch_size)
        names = sorted(k for k in figures if k != "loss")
        sums = torch.stack([torch.tensor(float(len(idx)), dtype=torch.float64, device=self.device),
                            figures["loss"].sum()]
                           + [figures[k].sum() for k in names])  # n, loss * n, per-image sums
        if self.distributed:
            dist.all_reduce(sums)
        self.model.train()
        n = sums[0].item()
        record = {"test_loss": sums[1].item() / n, "test_count": int(n)}
        if int(n) < self.test_total:
            record["test_total"] = self.test_total  # a seeded random subset of test_count of them
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

    def _clock(self, state) -> tuple[bool, bool]:
        """(out of the --minutes budget, a --checkpoint-minutes checkpoint is due), as rank 0 sees it."""
        cfg = self.cfg
        if not cfg.minutes and not cfg.checkpoint_minutes:
            return False, False
        now = time.monotonic()
        flags = torch.tensor([
            float(bool(cfg.minutes) and state["elapsed_s"] + now - self._started >= 60 * cfg.minutes),
            float(bool(cfg.checkpoint_minutes) and now - self._last_checkpoint >= 60 * cfg.checkpoint_minutes)])
        if self.distributed:  # every rank must stop, or checkpoint, at the same step
            dist.broadcast(flags, 0)
        return bool(flags[0]), bool(flags[1])

    def _bank_time(self, state) -> None:
        """Add the training time since the clock last started to the run's elapsed_s, and restart it."""
        state["elapsed_s"] += time.monotonic() - self._started
        self._started = time.monotonic()

    def fit(self, resume: bool = False) -> list[dict]:
        """Train to the end (or the --minutes budget). ``resume``: continue from the last
        committed checkpoint, or from step 0 if the run died before its first one; either
        way the result is bitwise that of an uninterrupted run (same threads, CPU)."""
        state = self._start(resume)
        if self._finished(state):
            return []
        if self.on_start is not None and self.rank == 0:
            self.on_start()  # training really goes on (a resume that has nothing to do writes nothing)
        if self.cfg.warmup_steps >= self.total_steps and state["step"] == 0:
            self.log(f"note: --warmup-steps {self.cfg.warmup_steps} is not shorter than the whole run "
                     f"({self.total_steps} steps): the learning rate never reaches --lr {self.cfg.lr:g}")
        sampler = DistributedSampler(range(len(self.train_images)), num_replicas=self.world, rank=self.rank,
                                     shuffle=True, seed=self.cfg.seed, drop_last=True)
        self.model.train()
        self._started = self._last_checkpoint = time.monotonic()
        self.budget_fit.start(state)
        records, stopped = [], False
        while not stopped and state["epoch"] < self.cfg.epochs:
            sampler.set_epoch(state["epoch"])  # the order is a pure function of (seed, epoch)
            batches = list(BatchSampler(sampler, self.local_batch, drop_last=True))
            stopped, seen, seconds = self._run_epoch(state, batches)
            records.append(self._end_epoch(state, state["batch"] >= len(batches), seen, seconds))
        if stopped and self._stop_reason == "cosine":
            self.log(f"finished: the cosine fitted to the --minutes {self.cfg.minutes:g} budget ended at step "
                     f"{state['step']} ({state['elapsed_s'] / 60:.1f} min)")
        elif stopped:
            self.log(f"stopped: the --minutes {self.cfg.minutes:g} budget is spent ({state['elapsed_s'] / 60:.1f} min; "
                     f"genzoo train --resume {self.out} --minutes M with a larger M trains further)")
        return records

    def _finished(self, state: dict) -> bool:
        """A resumed run with nothing left to train says so (and how to extend it)."""
        cfg = self.cfg
        if state["epoch"] >= cfg.epochs:
            self.log(f"{self.out}: already finished: {state['epoch']} of {cfg.epochs} epochs trained; nothing to do "
                     f"(genzoo train --resume {self.out} --epochs N, N > {state['epoch']}, trains further)")
            return True
        if state["schedule_steps"] and state["step"] >= state["schedule_steps"]:
            self.log(f"{self.out}: already finished: its cosine, fitted to --minutes {cfg.minutes:g}, ended at step "
                     f"{state['step']}; nothing to do (train a new run with a larger --minutes to train longer)")
            return True
        if cfg.minutes and state["elapsed_s"] >= 60 * cfg.minutes:
            self.log(f"{self.out}: already finished: its --minutes {cfg.minutes:g} budget is spent "
                     f"({state['elapsed_s'] / 60:.1f} min trained); nothing to do (--resume with a larger --minutes "
                     f"trains further)")
            return True
        return False

    def _start(self, resume: bool) -> dict:
        """The state training starts from: the last committed checkpoint, or step 0."""
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        if resume and (self.out / runs.CHECKPOINT_RECORD).exists():
            return self.load_checkpoint()
        torch.manual_seed(_seed_for(self.cfg.seed, 1, *([self.rank] if self.rank else [])))  # rank 0's: one process's
        if resume and self.rank == 0:  # killed before its first checkpoint: drop what it left
            runs.discard_uncommitted(self.out)
        return self._fresh_state()

    def _run_epoch(self, state: dict, batches: list) -> tuple[bool, int, float]:
        """Train from state["batch"] to the end of the epoch, or until the --minutes budget is spent.
        Returns (stopped by the budget, images seen, seconds)."""
        cfg, epoch = self.cfg, state["epoch"]
        bar = tqdm(total=len(batches), initial=state["batch"], desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=self.rank != 0 or None, file=sys.stderr, leave=False)
        t0, seen, stopped = time.monotonic(), 0, False
        for b in range(state["batch"], len(batches)):
            t_step = time.monotonic()
            x, y = self._batch(batches[b], epoch, b)
            self._step(x, y, state)
            state["batch"] = b + 1
            seen += len(x)
            self.budget_fit.after_step(state, time.monotonic() - t_step)
            bar.update(1)
            bar.set_postfix(loss=f"{state['train_loss_sum'] / max(1, state['train_count']):.4f}",
                            bpd=f"{bits_per_dim(state['train_nll_sum'] / max(1, state['train_count']), self.dims):.4f}")
            out_of_time, checkpoint_due = self._clock(state)
            if out_of_time or (state["schedule_steps"] and state["step"] >= state["schedule_steps"]):
                stopped, self._stop_reason = True, "time" if out_of_time else "cosine"
                break
            checkpoint_due |= bool(cfg.checkpoint_every) and state["step"] % cfg.checkpoint_every == 0
            if checkpoint_due and state["batch"] < len(batches):  # the epoch's end checkpoints anyway
                self._bank_time(state)
                self._last_checkpoint = self._started
                self.save_checkpoint(state)
        bar.close()
        return stopped, seen, time.monotonic() - t0

    def _batch(self, indices: list, epoch: int, b: int):
        """Batch b of the epoch: uint8 images [b, C, H, W] and labels [b], through batch_transform if any."""
        idx = torch.tensor(indices, device=self.device)
        x, y = self.train_images[idx], self.train_labels[idx]
        if self.batch_transform is not None:
            g = torch.Generator().manual_seed(_seed_for(self.cfg.seed, epoch, b, self.rank))
            x = self.batch_transform(x.cpu(), g).to(self.device)
        return x, y

    def _step(self, x, y, state: dict) -> None:
        """One optimisation step at the scheduled learning rate, through the model's ``training_step``;
        a non-finite loss or gradient skips its update (the batch and the schedule move on)."""
        cfg = self.cfg
        lr = lr_at(state["step"], self.total_steps, cfg)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        step = Step(self, state["step"])
        out = self.training_step(step, x, y)
        if step.skipped:
            # counted in metrics.jsonl; a run of them means the run has diverged
            state["skipped"] += 1
            state["bad_in_a_row"] += 1
            if state["bad_in_a_row"] >= cfg.max_bad_steps:
                raise GenzooError(f"training diverged: {state['bad_in_a_row']} steps in a row with a non-finite "
                                  f"loss or gradient, up to step {state['step']} (lower --lr or raise "
                                  f"--warmup-steps); the last checkpoint is kept")
        else:
            state["bad_in_a_row"] = 0
            state["train_loss_sum"] += out["loss"].item() * len(x)  # one device sync a step
            if "nll" in out:
                state["train_nll_sum"] += out["nll"].detach().sum().item()
            state["train_count"] += len(x)
        if step.taken and self.ema is not None:
            self.ema.update(self.model)
        state["step"] += 1

    def _end_epoch(self, state: dict, finished: bool, seen: int, seconds: float) -> dict:
        """Evaluate, append the metrics line, checkpoint, call on_epoch and log: the end of an
        epoch, or of the part of one the time budget allowed. Returns the metrics record."""
        record = {"epoch": state["epoch"] + 1, "step": state["step"], "partial": not finished,
                  "lr": lr_at(max(0, state["step"] - 1), self.total_steps, self.cfg),
                  "train_loss": state["train_loss_sum"] / max(1, state["train_count"]),
                  "train_nll": state["train_nll_sum"] / max(1, state["train_count"]),
                  "images_per_s": seen * self.world / max(seconds, 1e-9), "skipped_steps": state["skipped"],
                  "epoch_s": seconds}
        if state["schedule_steps"]:
            record["schedule_steps"] = state["schedule_steps"]
            if not finished and self._stop_reason == "cosine":
                record["stop"] = "cosine"
        record["train_bpd"] = float(bits_per_dim(record["train_nll"], self.dims))
        t_eval = time.monotonic()
        record.update(self.evaluate())
        eval_s = time.monotonic() - t_eval
        if "test_nll" not in record:  # the model reports no likelihood: no nats to show
            del record["train_nll"], record["train_bpd"]
        self._bank_time(state)
        if finished and seen:
            self.budget_fit.after_epoch(state, seconds / -(-seen // (self.local_batch * self.world)), eval_s)
        record["elapsed_s"] = state["elapsed_s"]
        if finished:
            state.update(epoch=state["epoch"] + 1, batch=0, train_nll_sum=0.0, train_loss_sum=0.0, train_count=0,
                         skipped=0)
        if self.rank == 0:
            runs.append_metrics(self.out, record)
        self.save_checkpoint(state)
        if self.on_epoch is not None and self.rank == 0:
            t_hook = time.monotonic()
            self.on_epoch(record)  # it must not touch the global RNG (resumes stay bitwise)
            self._started += time.monotonic() - t_hook  # and its time is not training time
        self._last_checkpoint = time.monotonic()
        self.log(self._log_line(record, finished))
        return record

    @staticmethod
    def _log_line(record: dict, finished: bool) -> str:
        if "test_nll" in record:
            scores = (f"train {record['train_bpd']:.4f} bpd, test {record['test_nll']:.3f} nats "
                      f"= {record['test_bpd']:.4f} bpd")
        else:  # a model without a likelihood: its loss and per-image figures
            scores = f"test loss {record['test_loss']:.5f}" + "".join(
                f", {k} {v:.5f}" for k, v in figures.test_figures(record).items())
        count = (f"{record['test_count']} of {record['test_total']} test images, a seeded random subset"
                 if "test_total" in record else f"{record['test_count']} images")
        early = " (stopped early: time budget)" if not finished and record.get("stop") != "cosine" else (
            " (the fitted cosine ended)" if not finished else "")
        return (f"epoch {record['epoch']}{early} "
                f"step {record['step']}: {scores} ({count}), {record['images_per_s']:.0f} img/s, "
                f"{record['epoch_s']:.1f} s ({record['elapsed_s'] / 60:.1f} min trained in all)")
