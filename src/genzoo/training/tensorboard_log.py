"""``genzoo train --tensorboard``: per-epoch scalars and a sample grid, for TensorBoard.

Needs the optional ``tensorboard`` package (``pip install 'genzoo[tensorboard]'``). Events go
to ``RUN/tensorboard/``; view with ``tensorboard --logdir RUN/tensorboard``. On ``--resume``
the events after the resumed step are purged, so the curves show each step once.
"""

from __future__ import annotations

import torch

from .. import grids
from ..errors import GenzooError

SCALARS = {  # metrics.jsonl key -> TensorBoard tag
    "train_loss": "loss/train", "test_loss": "loss/test", "train_bpd": "bits_per_dim/train",
    "test_bpd": "bits_per_dim/test", "test_nll": "nats_per_image/test", "test_mse": "mse/test",
    "lr": "learning_rate", "images_per_s": "images_per_s", "skipped_steps": "skipped_steps",
}


def require_tensorboard() -> None:
    """One clear line where the package is missing (checked before a run folder is made)."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise GenzooError("--tensorboard needs the tensorboard package: pip install 'genzoo[tensorboard]'") from None


class TensorBoardLogger:
    """Trainer ``on_epoch`` hook: writes each record's scalars and ``samples`` images from the model."""

    def __init__(self, model, log_dir, resume_step: int | None = None, samples: int = 16, seed: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        self.model, self.samples, self.seed = model, samples, seed
        self.writer = SummaryWriter(str(log_dir), purge_step=resume_step)

    def __call__(self, record: dict) -> None:
        step = record["step"]
        for key, tag in SCALARS.items():
            if key in record:
                self.writer.add_scalar(tag, record[key], step)
        grid = self._sample_grid()
        if grid is not None:
            self.writer.add_image("samples", grid, step, dataformats="HW" if grid.ndim == 2 else "HWC")
        self.writer.flush()

    @torch.no_grad()
    def _sample_grid(self):
        if not self.model.can_sample:  # autoencoders define no distribution to sample
            return None
        was_training = self.model.training
        self.model.eval()
        try:  # a private generator: the training RNG stream is untouched
            # a conditional model cycles the classes: image i of class i mod K
            x = self.model.sample(self.samples, generator=torch.Generator().manual_seed(self.seed))
        finally:
            self.model.train(was_training)
        return grids.grid(x.cpu(), self.model.levels, nrow=4, scale=grids.default_scale(x.shape[2]))

    def close(self) -> None:
        self.writer.close()
