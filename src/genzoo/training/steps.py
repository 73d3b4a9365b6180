"""What a model's ``training_step`` is handed (:class:`Step`), and the optimizers' and random generators' states
saved and loaded."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn

from .distributed import average_gradients, broadcast_buffers
from .precision import autocast


class Step:
    """What a model's ``training_step`` is handed for one batch: ``loss(x, y)`` (the model's loss as the trainer
    runs it) and ``update(loss, optimizer=i)``; ``index`` is the global step (e.g. a GAN's critic schedule)."""

    def __init__(self, trainer, index: int):
        self.trainer, self.index = trainer, index
        self.taken = self.skipped = 0
        self.synchronised = False  # the next update's loss came through ``loss`` (DDP averages its gradients)
        self.ran_loss = False  # ``loss`` ran in this step (what --compile compiles)

    def autocast(self):
        """The run's precision for a forward pass (bf16 autocast or nothing); backward runs outside it."""
        return autocast(self.trainer.device, self.trainer.precision)

    def loss(self, x, y=None) -> dict:
        self.synchronised, self.ran_loss = self.trainer.distributed, True
        with self.autocast():
            return self.trainer.step_fn(x, y)

    def update(self, loss: torch.Tensor, optimizer: int = 0) -> bool:
        """Backpropagate ``loss``, clip the global norm of optimizer ``optimizer``'s parameters and step it;
        a non-finite loss or gradient (on any rank) skips the update. Returns whether it was taken. Under torchrun
        the gradients are averaged over the ranks: by DDP for a loss from ``loss`` (update it before computing
        another), here for one the model computed itself."""
        trainer = self.trainer
        opt = trainer.optimizers[optimizer]
        params = [p for g in opt.param_groups for p in g["params"]]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if trainer.cfg.compile and not self.ran_loss and not trainer.said_uncompiled:
            trainer.said_uncompiled = True  # said, not silently ignored
            trainer.log("--compile compiles the loss the trainer runs; this model's training step computes its own "
                        "losses, which run uncompiled")
        if trainer.distributed and not self.synchronised:  # what DDP does for a loss computed through it
            average_gradients(params, trainer.world)
            broadcast_buffers(trainer.model, trainer.world)
        self.synchronised = False
        grad_norm = nn.utils.clip_grad_norm_(params, trainer.cfg.grad_clip or math.inf)
        if trainer._bad_step(loss, grad_norm):
            opt.zero_grad(set_to_none=True)
            self.skipped += 1
            return False
        opt.step()
        self.taken += 1
        return True


def _regrouped(saved: dict, optimizer: torch.optim.Optimizer, params: list) -> dict:
    """An optimizer state saved with one parameter group over ``params`` (genzoo before models owned their
    optimizers), renumbered for ``optimizer``'s groups: the moments of each parameter follow it."""
    old_index = {id(p): i for i, p in enumerate(params)}
    new_order = [p for g in optimizer.param_groups for p in g["params"]]
    state = {k: saved["state"][old_index[id(p)]] for k, p in enumerate(new_order) if old_index[id(p)] in saved["state"]}
    groups, k = [], 0
    for g in optimizer.state_dict()["param_groups"]:
        groups.append({**g, "params": list(range(k, k + len(g["params"])))})
        k += len(g["params"])
    return {"state": state, "param_groups": groups}


def load_optimizers(optimizers: list, saved: list, model: nn.Module) -> None:
    """Restore each optimizer's state, in ``configure_optimizers``'s order (a count that differs is a ValueError)."""
    if len(saved) != len(optimizers):
        raise ValueError(f"{len(saved)} optimizers saved, the model has {len(optimizers)}")
    for opt, sd in zip(optimizers, saved):
        if len(sd["param_groups"]) == 1 < len(opt.param_groups):
            sd = _regrouped(sd, opt, [p for p in model.parameters() if p.requires_grad])
        opt.load_state_dict(sd)


def rng_state() -> dict:
    """The global random generators' states (torch, numpy, Python) as a checkpoint keeps them."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy_key": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": list(random.getstate()[1]),
    }


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(("MT19937", s["numpy_key"].numpy().astype(np.uint32), s["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(s["python"]), None))
