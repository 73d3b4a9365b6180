"""``TrainConfig``: the training options of a run, checked; the fields are the ``genzoo train``
flags and what run.json keeps under "train"."""

from __future__ import annotations

import dataclasses
import math

from ..errors import GenzooError
from .precision import TRAIN_PRECISIONS


FIT_MIN_WARMUP = 10  # --fit-cosine times steps of the warm-up: at least this many


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
    eval_limit: int = 0  # evaluate on a fixed, seeded random subset of N test images (stratified); 0 = all
    train_limit: int = 0  # train on a fixed, seeded random subset of N training images (stratified); 0 = all
    checkpoint_every: int = 0  # also checkpoint every N steps; 0 = at epoch ends only
    checkpoint_minutes: float = 10.0  # also checkpoint after this much training time; 0 = off
    compile: bool = False  # torch.compile the training step's loss
    precision: str = "auto"  # bf16 autocast of forward pass and loss (fp32 weights, Adam state, nats), or fp32;
    # auto: bf16 where the device runs it natively (precision.resolve), else fp32
    max_bad_steps: int = 20  # a step with a non-finite loss or gradient is skipped; this many in a row stop the run
    ema: float = 0.0  # decay of a moving average of the weights (eval and sample use it); 0 = none
    fit_cosine: bool = False  # with --minutes: time warm-up steps, then end the cosine when the budget ends

    def __post_init__(self):
        checks = {
            "epochs": self.epochs >= 1, "minutes": self.minutes >= 0, "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0 and math.isfinite(self.lr), "warmup_steps": self.warmup_steps >= 0,
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1, "grad_clip": self.grad_clip >= 0,
            "weight_decay": self.weight_decay >= 0, "eval_batch_size": self.eval_batch_size >= 1,
            "eval_limit": self.eval_limit >= 0, "train_limit": self.train_limit >= 0,
                  "checkpoint_every": self.checkpoint_every >= 0,
            "checkpoint_minutes": self.checkpoint_minutes >= 0 and math.isfinite(self.checkpoint_minutes),
            "precision": self.precision in TRAIN_PRECISIONS, "max_bad_steps": self.max_bad_steps >= 1,
            "ema": 0 <= self.ema < 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise GenzooError(f"bad training option {bad[0]}={getattr(self, bad[0])!r}")
        if self.fit_cosine and not (self.minutes and self.warmup_steps >= FIT_MIN_WARMUP):
            raise GenzooError(f"--fit-cosine ends the cosine when the --minutes budget ends, timing steps of the "
                              f"warm-up (whose learning rate does not depend on the schedule's length): it needs "
                              f"--minutes and --warmup-steps >= {FIT_MIN_WARMUP} (this run: --minutes "
                              f"{self.minutes:g}, --warmup-steps {self.warmup_steps})")
