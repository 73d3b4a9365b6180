"""``--ema DECAY``: an exponential moving average of a model's weights, kept by the trainer.

After every optimisation step that was taken, each floating-point parameter's average moves toward it,

    theta_ema <- d theta_ema + (1 - d) theta,      d = min(DECAY, (1 + n) / (10 + n)),

n being the number of updates so far: the warm-up of TensorFlow's ``ExponentialMovingAverage`` (num_updates),
so that the average of a short run is not dominated by the initial weights. Buffers (batch-norm statistics, a
VQ-VAE's moving-average codebook, ActNorm's "initialised" flag) are copied, not averaged, as ``ema_pytorch`` does.
The average is saved beside the weights (a run's ``ema.safetensors``, and in every checkpoint, so a resume is
bitwise); ``genzoo eval``/``sample`` use it by default where present. Diffusion models' samples need it
(Ho et al. 2020 use 0.9999; Song et al. 2021, Karras et al. 2022 likewise).
"""

from __future__ import annotations

import contextlib

import torch


class WeightAverage:
    """The moving average of ``model``'s state: a dict name -> tensor of the state_dict's own names and shapes.

    Example: the first update's decay is min(0.999, 1/10), so the average moves 90% of the way.
        >>> model = torch.nn.Linear(1, 1, bias=False)
        >>> _ = model.weight.data.fill_(0.0)
        >>> average = WeightAverage(model, 0.999)
        >>> _ = model.weight.data.fill_(1.0)
        >>> average.update(model)
        >>> round(average.state["weight"].item(), 6)
        0.9
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.parameters = {name for name, _ in model.named_parameters()}
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One step of the average toward ``model``'s weights now."""
        d = self.current_decay()
        for name, value in model.state_dict().items():
            kept = self.state[name]
            if name in self.parameters and value.is_floating_point():
                kept.lerp_(value.detach(), 1 - d)  # kept + (1 - d) (value - kept) = d kept + (1 - d) value
            else:
                kept.copy_(value)
        self.updates += 1

    def load(self, state: dict, updates: int) -> None:
        """Restore a saved average (names and shapes as the model's; checked by the caller's loader)."""
        missing = sorted(set(self.state) - set(state))
        if missing:
            raise KeyError(f"the saved moving average lacks {missing[0]}")
        for name, kept in self.state.items():
            kept.copy_(state[name])
        self.updates = int(updates)

    @contextlib.contextmanager
    def swapped_into(self, model: torch.nn.Module):
        """Within the block, ``model`` holds the averaged weights; its own come back after."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield model
        finally:
            model.load_state_dict(own)
