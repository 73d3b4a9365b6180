"""The learning-rate schedule: a linear warm-up, then a cosine; under a wall-clock budget (--fit-cosine) the
cosine's length is fitted so that it ends when the budget does.

A budget cuts a cosine laid over --epochs wherever the clock says, often while the rate is still high; a cosine
that ends with the budget anneals fully. Its length is measured, not guessed: steps of the warm-up are timed
(their rate does not depend on the cosine's length, so the run is the one it would have been had the length been
known from the start), and once more at the first epoch's end, from the epoch's own seconds a step and the
evaluation's seconds. The length is kept in every checkpoint, so a resumed run follows it exactly.
"""

from __future__ import annotations

import math
import time

import torch
import torch.distributed as dist

from .config import TrainConfig


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr over warmup_steps, then cosine decay to lr * min_lr_ratio at ``total``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def fitted_schedule(step: int, step_s: float, remaining_s: float, eval_s: float, steps_per_epoch: int,
                    cap: int, margin: float = 0.97) -> int:
    """The step at which a cosine must end so that training ends with the --minutes budget (--fit-cosine).

    step: steps taken; step_s: measured seconds a step; remaining_s: budget left; eval_s: seconds of one
    evaluation (one at each epoch end, inside the budget); cap: --epochs whole epochs, the longest schedule.
    ``margin`` leaves a few per cent for the machine's noise: a cosine cut by the clock while its rate is still
    high loses more than one that ends a few seconds early. Returns a step in [step + 1, cap]."""
    def cost(total: int) -> float:  # seconds from now to step ``total``, with an evaluation at each epoch end
        return (total - step) * step_s + (total // steps_per_epoch - step // steps_per_epoch) * eval_s

    low, high = step + 1, max(step + 1, cap)  # cost rises with total: the longest that fits, by bisection
    if cost(high) <= margin * remaining_s:
        return high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if cost(mid) <= margin * remaining_s else (low, mid)
    return low


class BudgetFit:
    """--fit-cosine for one Trainer: times warm-up steps, then sets ``trainer.total_steps`` and
    ``state["schedule_steps"]``; fits again once, at the first epoch's end. Does nothing without --fit-cosine."""

    TIMED = 20  # warm-up steps timed (after the session's first two: allocation, compilation)

    def __init__(self, trainer):
        self.trainer = trainer
        self.cap = trainer.cfg.epochs * trainer.steps_per_epoch  # --epochs whole epochs: the longest schedule
        self.window = None  # (steps after this one are timed, up to this one, seconds so far)

    def start(self, state: dict) -> None:
        """A resumed run keeps the length its checkpoint holds; a new one starts timing."""
        t, cfg = self.trainer, self.trainer.cfg
        if state["schedule_steps"]:
            t.total_steps = state["schedule_steps"]
        elif cfg.fit_cosine:
            first = state["step"] + 2
            self.window = (first, max(first + 1, min(first + self.TIMED, cfg.warmup_steps)), 0.0)

    def after_step(self, state: dict, seconds: float) -> None:
        """Count the seconds of a timed step (its batch and update, not evaluations between steps); fit after
        the last."""
        if self.window is None:
            return
        first, last, timed = self.window
        timed += seconds if state["step"] > first else 0.0
        self.window = (first, last, timed)
        if state["step"] < last:
            return
        self.window = None
        t = self.trainer
        step_s = timed / (last - first)
        # an evaluation is a forward pass over the test images: about half a training step's work per image
        eval_s = 0.5 * step_s * len(t.test_images) / (t.world * t.local_batch)
        spent = state["elapsed_s"] + time.monotonic() - t._started
        total = self._set(state, step_s, 60 * t.cfg.minutes - spent, eval_s)
        t.log(f"cosine fitted to the --minutes {t.cfg.minutes:g} budget: {total} steps "
              f"({total / t.steps_per_epoch:.2f} epochs{', the --epochs cap' if total == self.cap else ''}; "
              f"{step_s:.3f} s a step over steps {first}-{last})")

    def after_epoch(self, state: dict, step_s: float, eval_s: float) -> None:
        """At the first epoch's end (its time banked): fit again from the epoch's measured seconds a step and its
        evaluation's seconds (a few warm-up steps can miss what a whole epoch costs); the rate moves from one
        cosine to the other there, once."""
        t = self.trainer
        if not (t.cfg.fit_cosine and state["schedule_steps"]) or state["refitted"]:
            return
        state["refitted"] = True
        if state["step"] >= state["schedule_steps"]:
            return
        before = state["schedule_steps"]
        total = self._set(state, step_s, 60 * t.cfg.minutes - state["elapsed_s"], eval_s)
        if total != before:
            t.log(f"cosine fitted again at the end of epoch {state['epoch'] + 1} ({step_s:.3f} s a step, "
                  f"{eval_s:.1f} s an evaluation): {total} steps instead of {before}")

    def _set(self, state: dict, step_s: float, remaining_s: float, eval_s: float) -> int:
        t = self.trainer
        total = fitted_schedule(state["step"], step_s, remaining_s, eval_s, t.steps_per_epoch, self.cap)
        if t.distributed:  # every rank follows rank 0's length
            n = torch.tensor([total], device=t.device)
            dist.broadcast(n, 0)
            total = int(n.item())
        state["schedule_steps"] = t.total_steps = total
        return total
