"""What every genzoo model is: config dataclass in, integer images in, nats out.

A model subclass sets ``name``, ``Config`` (a dataclass whose fields are exactly the
constructor's keyword arguments, including ``image_shape`` and ``levels``) and
``likelihood_kind``, and implements ``loss(x, y=None) -> dict`` with keys ``loss``
(scalar to minimise) and ``nll`` ([B] nats, exact or the bound the kind states).

A model owns its training: ``configure_optimizers(lr, weight_decay)`` (default: one Adam, weight
decay on matrices and kernels only) and ``training_step(step, x, y)`` (default: one loss, one
update); the trainer drives any model through the two and knows none.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn

from ..errors import GenzooError
from ..likelihood import check_kind, num_dims
from .folder import save_model


@dataclasses.dataclass
class ImageConfig:
    """Fields every model config has. Subclass configs add their own (with defaults)."""

    image_shape: tuple = (1, 28, 28)
    levels: int = 256
    # {option: allowed values} of the string options (the CLI lists them in --help and checks them)
    choices: ClassVar[dict] = {}
    # {option: (other option, its value)}: an option that takes effect only when another has that value (the CLI
    # refuses it given otherwise, rather than ignore it in silence)
    applies_when: ClassVar[dict] = {}

    def __post_init__(self):
        shape = tuple(int(s) for s in self.image_shape) if isinstance(self.image_shape, (list, tuple)) else None
        if shape is None or len(shape) != 3 or min(shape) < 1:
            raise GenzooError(f"image_shape must be (C, H, W) with positive sizes, got {self.image_shape!r}")
        self.image_shape = shape
        require(isinstance(self.levels, int) and 2 <= self.levels <= 256, f"levels must be an integer in [2, 256], got "
                                                                          f"{self.levels!r}")


@dataclasses.dataclass
class Options:
    """Run-time options of a model, declared as its Config declares build options: one field per option (its
    default; its meaning in the comment beside or above it, which --help prints), ``limits`` {field: (low, high)}
    for numbers (either may be None; ``exclusive``: fields whose low limit is refused), ``choices`` {field: values}
    for strings. A model's ``SampleOptions`` are
    keyword arguments of its ``sample`` (sample, complete, eval --fid), its ``EvalOptions`` of its
    ``eval_figures`` (eval); the command line makes its flags from every registered model's and refuses an option
    the model at hand lacks, naming the models that have it. This one, with no field: a model with none."""

    limits: ClassVar[dict] = {}
    choices: ClassVar[dict] = {}
    exclusive: ClassVar[frozenset] = frozenset()  # fields whose low limit is itself refused
    # EvalOptions of a Monte-Carlo estimate whose defaults give it no standard error: the fewest that do (genzoo race
    # scores with them, so that every estimated figure of a race carries its standard error)
    with_standard_error: ClassVar[dict] = {}


def require(ok: bool, message: str) -> None:
    """Config validation: a clear GenzooError instead of a failure deep inside torch."""
    if not ok:
        raise GenzooError(message)


def require_positive_ints(cfg, *fields: str) -> None:
    for f in fields:
        v = getattr(cfg, f)
        require(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"{f} must be a positive integer, got {v!r}")


def require_num_classes(cfg) -> None:
    """num_classes: 0 (unconditional) or the number of classes of a class-conditional model."""
    v = cfg.num_classes
    require(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f"num_classes must be an integer >= 0, got "
                                                                       f"{v!r}")


def require_odd_kernels(cfg, *fields: str, minimum: int = 1) -> None:
    for f in fields:
        v = getattr(cfg, f)
        require(isinstance(v, int) and v >= minimum and v % 2 == 1, f"{f} must be an odd integer >= {minimum}, got "
                                                                    f"{v!r}")


# ----------------------------------------------------------------------------- levels <-> numbers
# The one home of the conversions between integer levels {0, .., k-1} and floats, so that
# every model, view and data transform maps the same level to the same number.

def to_unit(x: torch.Tensor, levels: int, dtype=torch.float32) -> torch.Tensor:
    """Levels -> [0, 1]: x / (k - 1), in ``dtype``. Any shape."""
    return x.to(dtype) / (levels - 1)


def to_signed(x: torch.Tensor, levels: int, dtype=torch.float32) -> torch.Tensor:
    """Levels -> [-1, 1]: 2 x / (k - 1) - 1, in ``dtype`` (the autoregressive networks' and VAE encoder's input)."""
    return x.to(dtype) * (2.0 / (levels - 1)) - 1.0


def from_unit(u: torch.Tensor, levels: int) -> torch.Tensor:
    """[0, 1] -> the nearest level, uint8 (the inverse of :func:`to_unit`)."""
    return (u * (levels - 1)).round().clamp(0, levels - 1).to(torch.uint8)


def from_signed(v: torch.Tensor, levels: int) -> torch.Tensor:
    """[-1, 1] -> the nearest level, uint8 (the inverse of :func:`to_signed`)."""
    return ((v + 1) * (levels - 1) / 2).round().clamp(0, levels - 1).to(torch.uint8)


def dequantize(x: torch.Tensor, levels: int, generator: torch.Generator | None = None,
               dtype=torch.float32) -> torch.Tensor:
    """Uniform dequantization u = (x + U[0, 1)) / k in [0, 1)^D, in ``dtype``, on x's device.

    A density p(u) then bounds the discrete likelihood (``likelihood.dequantized_nll_bound``).
    The noise is drawn on the CPU from ``generator``, so a seed gives the same u on any device.
    """
    noise = torch.rand(x.shape, generator=generator, dtype=dtype).to(x.device)
    return (x.to(dtype) + noise) / levels


class GenerativeModel(nn.Module):
    name: ClassVar[str]
    Config: ClassVar[type]
    likelihood_kind: ClassVar[str]

    # -- what the model can do, declared (the CLI, the report and the views read these)
    can_sample: ClassVar[bool] = True  # sample() draws images (autoencoders define no distribution)
    can_complete: ClassVar[bool] = False  # sample(prefix=, known=) completes images (autoregressive models, diffusion)
    has_code: ClassVar[bool] = False  # encode(x) -> z and decode(z) -> images (latent models, flows, diffusion)
    importance_weighted: ClassVar[bool] = False  # log_prob(x, k=K): the IWAE bound (the VAE)
    scored_by_reconstruction: ClassVar[bool] = False  # reconstruction_error() instead of nats (autoencoders)
    monte_carlo_bound: ClassVar[bool] = False  # estimate(x, t_samples=K): a bound sampled over K times (diffusion)
    bound_terms: ClassVar[tuple] = ()  # per-image entries of loss() that sum to its nll (eval --json reports them)
    raster_order: ClassVar[bool] = False  # an exact product of conditionals in raster order (autoregressive models)
    # keyword options sample() takes beyond n, generator and y, e.g. "naive", "temperature", "mean", "progress"
    sample_options: ClassVar[frozenset] = frozenset()
    # the run-time options a user sets (``Options`` subclasses): how sample() draws, how eval estimates the figure
    SampleOptions: ClassVar[type] = Options
    EvalOptions: ClassVar[type] = Options

    def __init__(self, config):
        super().__init__()
        check_kind(self.likelihood_kind)
        self.config = config

    # -- description
    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.image_shape

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the weights (float32, or float64 after ``.double()``)."""
        p = next(self.parameters(), None)
        return p.dtype if p is not None else torch.get_default_dtype()

    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def dims(self) -> int:
        return num_dims(self.image_shape)

    @property
    def num_classes(self) -> int:
        return getattr(self.config, "num_classes", 0)

    def config_dict(self) -> dict:
        d = dataclasses.asdict(self.config)
        d["image_shape"] = list(d["image_shape"])
        return d

    # -- what users hold, as the model's images
    def images(self, x) -> torch.Tensor:
        """Images as this model takes them, uint8 levels [B, C, H, W], from what a user holds: integer (uint8,
        int64) levels; float tensors or arrays in [0, 1], quantized to the nearest of the k levels
        (round(x (k - 1))); bool (0 and 1); numpy arrays; PIL images (their 256 levels requantized to k:
        floor(v k / 256), so a binary model thresholds at 128); a single image [C, H, W] (or [H, W] for one
        channel). Anything else, or a float outside [0, 1], is one clear error.

        Example:
            >>> import genzoo
            >>> m = genzoo.models.build("nade", image_shape=(1, 2, 2), levels=2, hidden_units=3)
            >>> m.images(torch.tensor([[0.1, 0.9], [0.6, 0.2]])).tolist()
            [[[[0, 1], [1, 0]]]]
        """
        if type(x).__module__.startswith("PIL."):
            x = _pil_levels(x, self.image_shape[0], self.levels)
        x = torch.from_numpy(x.copy()) if type(x).__module__ == "numpy" else x
        if not isinstance(x, torch.Tensor):
            raise GenzooError(f"{self.name}: images must be a tensor, a numpy array or a PIL image, got "
                              f"{type(x).__name__}")
        if x.dtype == torch.bool:
            x = x.to(torch.uint8)
        elif x.is_floating_point():
            if x.numel() and not (torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
                raise GenzooError(f"{self.name}: float images must lie in [0, 1] (they are quantized to the "
                                  f"{self.levels} levels), got [{x.min().item():g}, {x.max().item():g}]")
            x = (x * (self.levels - 1)).round().to(torch.uint8)
        x = x.view(1, 1, *x.shape) if x.dim() == 2 and self.image_shape[0] == 1 else x
        x = x.unsqueeze(0) if x.dim() == 3 else x
        self.check_images(x)
        return x

    # -- input checking: one clear error for a batch this model cannot score
    def check_images(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise GenzooError(f"{self.name}: images must be a tensor, got {type(x).__name__}")
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise GenzooError(f"{self.name}: images must be an integer tensor (uint8 levels), got {x.dtype}; "
                              "scaling and dequantization happen inside the model")
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise GenzooError(f"{self.name}: images must have shape [B, {', '.join(map(str, self.image_shape))}], got "
                              f"{list(x.shape)}")
        # The range check reads tensor values, which would break a torch.compile graph; under
        # compilation (the trainer's --compile) the batch comes from a Dataset, which checked it.
        if x.numel() and not torch.compiler.is_compiling() and (int(x.min()) < 0 or int(x.max()) >= self.levels):
            raise GenzooError(f"{self.name}: pixel values must lie in [0, {self.levels}), got [{int(x.min())}, "
                              f"{int(x.max())}]")

    def check_labels(self, y, batch: int):
        """Labels for a conditional model ([B] ints in [0, num_classes)); ignored otherwise."""
        if not self.num_classes:
            return None
        if y is None:
            raise GenzooError(f"{self.name}: this model is class-conditional ({self.num_classes} classes); pass labels")
        y = torch.as_tensor(y)
        out_of_range = y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes)
        if y.shape != (batch,) or y.is_floating_point() or out_of_range:
            raise GenzooError(f"{self.name}: labels must be {batch} integers in [0, {self.num_classes})")
        return y.long()

    # -- the contract
    def loss(self, x: torch.Tensor, y=None) -> dict:
        raise NotImplementedError

    def log_prob(self, x, y=None, grad: bool = False) -> torch.Tensor:
        """[B] log-probability in nats: exact, or the bound ``likelihood_kind`` states. x: anything ``images``
        takes. Computed without gradients unless ``grad``."""
        if self.likelihood_kind == "none":
            raise GenzooError(f"{self.name} defines no likelihood (likelihood_kind = 'none'): it is scored by "
                              "reconstruction error, not log_prob")
        with torch.set_grad_enabled(grad):
            return -self.loss(self.images(x), y)["nll"]

    def complete(self, images, known, generator: torch.Generator | None = None, **options) -> torch.Tensor:
        """Complete images (anything ``images`` takes) where ``known`` (bool [C, H, W] or [B, C, H, W]) is False:
        one draw per image, uint8 [B, C, H, W], known sub-pixels kept; ``options``: the model's SampleOptions."""
        if not self.can_complete:
            raise GenzooError(f"{self.name} does not complete images (can_complete is False)")
        x = self.images(images)
        known = torch.as_tensor(known, dtype=torch.bool)
        if tuple(known.shape[-3:]) != tuple(self.image_shape) or known.dim() not in (3, 4):
            raise GenzooError(f"{self.name}: known must be a bool mask [C, H, W] or [B, C, H, W] of the images' shape, "
                              f"got {list(known.shape)}")
        return self.sample(len(x), generator=generator, prefix=x, known=known, **options)

    def sample(self, n: int, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    # -- evaluation (genzoo eval averages these over the test set; the options are the model's EvalOptions)
    def eval_figures(self, x: torch.Tensor, y=None, generator=None, **options) -> dict:
        """Per-image figures [B] of a batch: ``nll`` in nats (and the ``bound_terms``), or a model's own."""
        out = self.loss(x, y)
        return {"nll": out["nll"], **{t: out[t] for t in self.bound_terms}}

    def eval_summary(self, options: dict, means: dict, count: int) -> tuple[dict, str]:
        """What ``genzoo eval`` adds beside the figure: JSON entries and the words that say how it was estimated
        (means: the test-set means of ``eval_figures``; count: the images)."""
        return {}, ""

    def estimator_words(self, options: dict) -> str:
        """How a figure measured with these EvalOptions was estimated, for a model card ('' for the default)."""
        return ""

    def held_out_images(self, options: dict) -> int:
        """How many held-out images (never the test split) ``fit_estimator`` needs before eval scores with these
        EvalOptions (0: none; e.g. a GAN's observation scale for AIS)."""
        return 0

    def fit_estimator(self, images: torch.Tensor, options: dict, y=None) -> dict:
        """EvalOptions fitted on held-out images (uint8 [N, C, H, W], labels y [N]), added to the options eval
        scores with; {} for none."""
        return {}

    # -- training (the trainer calls these; it knows no model)
    def configure_optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """The optimizers ``training_step`` updates, in its order (default: one Adam, ``adam_with_decay``)."""
        return [adam_with_decay(self, lr, weight_decay)]

    def training_step(self, step, x: torch.Tensor, y=None) -> dict:
        """One optimisation step on a batch (x uint8 [B, C, H, W], y [B] or None); returns ``loss``'s dict.
        ``step.loss(x, y)`` is ``self.loss`` as the trainer runs it (autocast, compiled, distributed);
        ``step.update(loss, optimizer=i)`` backpropagates, clips the global norm of optimizer i's parameters
        and steps it, or skips a non-finite step. The default: one loss, one update."""
        out = step.loss(x, y)
        step.update(out["loss"])
        return out

    @staticmethod
    def code_path(z0, z1, t):
        """Points between the codes of a model with ``has_code``: z0, z1 [P, ...], t [S] in [0, 1] ->
        [P, S, ...]. A straight line; a model whose codes are Gaussian noise walks the sphere instead."""
        t = t.view(1, -1, *[1] * (z0.dim() - 1))
        return (1 - t) * z0[:, None] + t * z1[:, None]

    def save(self, path, overwrite: bool = False) -> None:
        """Write this model as a folder: config.json + model.safetensors (``genzoo.load`` reads it); a folder holding
        a saved model already is refused unless ``overwrite``."""
        save_model(self, path, overwrite)


def _pil_levels(picture, channels: int, levels: int) -> torch.Tensor:
    """A PIL image as uint8 levels [C, H, W] of ``channels`` (L or RGB) requantized from 256 to ``levels``."""
    import numpy as np

    array = np.asarray(picture.convert("L" if channels == 1 else "RGB"), dtype=np.int64)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(array * levels // 256).to(torch.uint8)


def require_count(n) -> None:
    """How many images to draw: a positive integer (a bool, a float, 0 or fewer is one clear error)."""
    require(isinstance(n, int) and not isinstance(n, bool) and n >= 1, f"n must be a positive integer, got {n!r}")


def adam_with_decay(module: nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam whose weight decay (its L2 term) applies to matrices and kernels only (parameters of >= 2
    dimensions), never to biases, gains or normalisations: nanoGPT's ``configure_optimizers``. A group that
    would be empty is left out, so a model without biases has one group.

    Example: a linear layer's matrix decays, its bias does not.
        >>> opt = adam_with_decay(nn.Linear(3, 2), lr=1e-3, weight_decay=0.1)
        >>> [(g["weight_decay"], [tuple(p.shape) for p in g["params"]]) for g in opt.param_groups]
        [(0.1, [(2, 3)]), (0.0, [(2,)])]
    """
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.Adam([g for g in groups if g["params"]], lr=lr)
