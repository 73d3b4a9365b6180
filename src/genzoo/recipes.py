"""The recipes of the shipped models, as data: what made each folder in ``pretrained/``.

One :class:`Recipe` per shipped model: the model and its options, the data recipe, the training
options and budget, how its figure is measured (the estimator and its K) and the figure itself,
with the tolerance ``genzoo verify`` allows a re-evaluation. ``genzoo reproduce NAME`` trains a
recipe into a run folder, the one-hour scripts in bench/ run it through that command (``genzoo
reproduce NAME --print`` prints its ``genzoo train`` line), and the suite runs every recipe for a few steps on a
tiny slice so that none can go stale. ``model_card`` writes the README.md shipped beside the
weights from the recipe and the run folder's own records.

This module sits at the bottom of the package (it imports only ``errors``), so that a
shipped model's *name* can stand for its folder everywhere, ``genzoo.load`` included.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path

from .errors import GenzooError

# The box every shipped figure was measured on (docs/RESULTS.md has the conditions of each run).
CPU_BOX = "2-core AMD EPYC (AVX2, no native bf16), torch 2.13.0+cpu, fp32"
ONE_CORE = CPU_BOX.replace("2-core", "1 core of the 2-core")  # a run with --threads 1
BINARIZED_MNIST = "static binarized MNIST (Larochelle & Murray 2011): 50,000 train, 10,000 test"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a shipped model was made and how its figure is measured.

    ``options`` are the model's config options and ``train`` the training options, both by their
    command-line names without dashes (``hidden_channels``, ``warmup_steps``); a True value is a
    bare flag. ``evaluate`` are the ``genzoo eval`` options that give ``figure`` (nats/image on
    the full test set); ``tolerance`` is how far a re-evaluation may land from it, in nats.
    """

    name: str
    model: str
    paper: str
    data: dict
    options: dict
    train: dict
    threads: int
    evaluate: dict
    figure: float
    tolerance: float
    training_minutes: float
    machine: str
    protocol: str  # the data and binarization protocol, in words

    def train_argv(self, out, **overrides) -> list[str]:
        """``genzoo train`` arguments (without the program name) that run this recipe into ``out``.
        ``overrides`` replace or add training options (``minutes=1``; ``compile=False`` drops a flag)."""
        argv = ["train", self.model, "--data", self.data["name"], "--out", str(out)]
        for key in ("binarize", "levels"):
            if self.data.get(key) not in (None, "none"):
                argv += [f"--{key}", str(self.data[key])]
        argv += flags(self.options) + flags({**self.train, **overrides}) + ["--threads", str(self.threads)]
        return argv

    def eval_argv(self, folder, **overrides) -> list[str]:
        """``genzoo eval`` arguments that measure this recipe's figure on ``folder``."""
        return ["eval", str(folder), "--json", *flags({**self.evaluate, **overrides}), "--threads", str(self.threads)]

    def command(self, out=None) -> str:
        """The recipe as one shell line (what RESULTS and the model card print)."""
        return shlex.join(["genzoo", *self.train_argv(out or f"runs/{self.name}")])


def flags(options: dict) -> list[str]:
    """Command-line flags of options by their names without dashes (a True value is a bare flag)."""
    out = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False and value is not None:
            out += [flag, str(value)]
    return out


RECIPES = {r.name: r for r in (
    Recipe(
        name="row-lstm-binarized-mnist", model="row-lstm",
        paper="van den Oord et al. 2016, Pixel Recurrent Neural Networks, section 3.1 (Row LSTM, 7 layers: 80.54 nats)",
        data={"name": "binarized-mnist"},
        options={"hidden_channels": 24, "num_layers": 3, "head_channels": 64},
        train={"precision": "fp32",  # as trained: the card says fp32, and auto may pick bf16 elsewhere
               "batch_size": 64, "lr": 2e-3, "warmup_steps": 200, "epochs": 8, "minutes": 56, "eval_limit": 2000,
               "compile": True},
        threads=2, evaluate={}, figure=84.06796070442199, tolerance=0.01, training_minutes=49.1, machine=CPU_BOX,
        protocol=BINARIZED_MNIST + "; exact -log P(x)"),
    Recipe(
        name="nade-binarized-mnist", model="nade",
        paper="Larochelle & Murray 2011, The Neural Autoregressive Distribution Estimator (500 hidden units: 88.86 "
              "nats, as pytorch-generative cites it); Uria et al. 2016 (fixed-order NADE: 88.33)",
        data={"name": "binarized-mnist"},
        options={"hidden_units": 500},
        train={"precision": "fp32",  # as trained: the card says fp32, and auto may pick bf16 elsewhere
               "batch_size": 100, "lr": 1e-2, "warmup_steps": 200, "epochs": 8, "minutes": 58, "eval_limit": 1000,
               "checkpoint_minutes": 10, "compile": True},
        threads=1, evaluate={}, figure=87.90364095497131, tolerance=0.01, training_minutes=42.5,
        machine=ONE_CORE + " (a MADE run used the other core)",
        protocol=BINARIZED_MNIST + "; exact -log P(x)"),
    Recipe(
        name="made-binarized-mnist", model="made",
        paper="Germain et al. 2015, MADE: Masked Autoencoder for Distribution Estimation (one hidden layer, one mask: "
              "88.40 nats as recalled from its Table 6, not re-checked; pytorch-generative cites 88.04). This MADE has "
              "1,000 hidden units, twice the paper's MNIST width, and the authors' direct input-output connections",
        data={"name": "binarized-mnist"},
        options={"hidden_units": 1000, "direct": True},
        train={"precision": "fp32",  # as trained: the card says fp32, and auto may pick bf16 elsewhere
               "batch_size": 100, "lr": 5e-3, "warmup_steps": 200, "epochs": 8, "minutes": 30, "eval_limit": 1000,
               "checkpoint_minutes": 10},
        threads=1, evaluate={}, figure=89.66534979419708, tolerance=0.01, training_minutes=4.1,
        machine=ONE_CORE + " (another MADE run used the other core)",
        protocol=BINARIZED_MNIST + "; exact -log P(x); "
                 "the recipe picked among 5 one-core runs by the validation split (90.42 nats)"),
    Recipe(
        name="vae-binarized-mnist", model="vae",
        paper="Kingma & Welling 2014; Burda et al. 2016 (VAE, 1 stochastic layer: <= 86.76 nats, IWAE k = 5000, "
              "dynamic binarization)",
        data={"name": "binarized-mnist"},
        options={"latent_dim": 50, "width": 300, "train_samples": 10},
        train={"precision": "fp32",  # as trained: the card says fp32, and auto may pick bf16 elsewhere
               "batch_size": 100, "lr": 1e-3, "warmup_steps": 200, "epochs": 120, "minutes": 58, "eval_limit": 2000,
               "checkpoint_minutes": 10},
        threads=1, evaluate={"iwae_k": 1000}, figure=88.95337440376282, tolerance=0.05, training_minutes=53.8,
        machine=ONE_CORE,
        protocol=BINARIZED_MNIST + "; "
                 "-log P(x) <= the importance-weighted bound with K = 1000 samples (seeded)"),
    Recipe(
        name="realnvp-fashion-mnist", model="realnvp",
        paper="Dinh et al. 2017, Density estimation using Real NVP (multi-scale affine couplings)",
        data={"name": "fashion-mnist"},
        options={"num_scales": 2, "hidden_channels": 32, "num_blocks": 2, "space_to_depth": True},
        train={"precision": "fp32",  # as trained: the card says fp32, and auto may pick bf16 elsewhere
               "batch_size": 64, "lr": 1e-3, "warmup_steps": 200, "epochs": 11, "minutes": 58, "eval_limit": 2000},
        threads=2, evaluate={}, figure=1770.606865991211, tolerance=0.2, training_minutes=53.4, machine=CPU_BOX,
        protocol="Fashion-MNIST, 8-bit (256 levels): 60,000 train, 10,000 test; -log P(x) <= the uniform-"
                 "dequantization bound, one seeded noise draw per image"),
    Recipe(
        name="diffusion-fashion-mnist", model="diffusion",
        paper="Kingma et al. 2021, Variational Diffusion Models (continuous-time bound on the discrete image, "
              "learned schedule, Fourier features: 2.65 bits/dim on CIFAR-10)",
        data={"name": "fashion-mnist"},
        options={"channels": 32, "fourier_features": True},
        # the thirteenth session's hour, alone: twice the width of the first model (16), the moving average that
        # every diffusion codebase samples from, and the cosine fitted to the budget (issue 38)
        train={"precision": "fp32",  # as trained: this box has no native bf16 (measured 0.9 GFLOP/s emulated)
               "batch_size": 64, "lr": 2e-3, "warmup_steps": 200, "epochs": 6, "minutes": 56, "fit_cosine": True,
               "ema": 0.999, "eval_limit": 1000, "compile": True},
        threads=2, evaluate={"t_samples": 4}, figure=1593.9238919647216, tolerance=0.05, training_minutes=51.7,
        machine=CPU_BOX + " (alone but for about 2 minutes of short tests beside it)",
        protocol="Fashion-MNIST, 8-bit (256 levels): 60,000 train, 10,000 test; -log P(x) <= the variational "
                 "diffusion bound (prior + exact reconstruction over the levels + continuous-time diffusion "
                 "term), 4 seeded times per image"),
    Recipe(
        name="masked-diffusion-binarized-mnist", model="masked-diffusion",
        paper="Shi et al. 2024, Simplified and Generalized Masked Diffusion for Discrete Data (MD4); Sahoo et al. "
              "2024 (MDLM); Austin et al. 2021 (D3PM, absorbing): the bound is the any-order autoregressive NLL",
        data={"name": "binarized-mnist"},
        options={"channels": 32},
        train={"precision": "fp32", "batch_size": 64, "lr": 1e-3, "warmup_steps": 100, "epochs": 3, "minutes": 58,
               "eval_limit": 2000, "ema": 0.999},
        threads=1, evaluate={"t_samples": 4}, figure=83.93797642803192, tolerance=0.05, training_minutes=45.4,
        machine=ONE_CORE + " (the test suite and genzoo verify ran on the other core)",
        protocol=BINARIZED_MNIST + "; -log P(x) <= the masked-diffusion bound (4 seeded times per image, Monte-Carlo "
                                   "standard error 0.226 nats; the moving average of the weights)"),
)}


# ----------------------------------------------------------------------------- budget recipes
# What ``genzoo train MODEL --minutes M`` (and so ``genzoo race``) trains with where the command line says nothing
# else: every option given wins, key by key; ``--no-recipe`` trains with the plain defaults.

# Every model's, under a budget: the cosine ends when the budget does (``--fit-cosine``; the defaults' 10-epoch
# cosine is still at a high rate when a short budget cuts it), and the per-epoch figure is on 1,000 seeded test
# images (a full test set each epoch is budget not spent training; the final figure is genzoo eval's).
# The --epochs cap is lifted (100): the budget, not the defaults' 10 epochs, decides how long a fast model trains
# (the VAE's 10 epochs took 0.9 of its 4 minutes in the first published race); a recipe that overfits caps its own.
BUDGET_TRAIN = {"fit_cosine": True, "eval_limit": 1000, "epochs": 100}


@dataclasses.dataclass(frozen=True)
class BudgetRecipe:
    """A model's own recipe under a wall-clock budget, found by measurement (``evidence`` says where).

    ``options``: the model's config options, ``train``: training options (command-line names without dashes), on
    top of :data:`BUDGET_TRAIN`; ``levels``: the data it was measured on and applies to (None: any)."""

    model: str
    options: dict
    train: dict
    levels: tuple | None
    evidence: str


# bench/autoregressive.py --minutes 4 (docs/RESULTS.md, "The autoregressive family: PixelCNN against PixelRNN"):
# at about 75k parameters and lr 2e-3 after 200 warm-up steps, 2 threads, static binarized MNIST, 4 minutes:
# PixelCNN 92.47 nats, Gated PixelCNN 93.37, Row LSTM 88.49, Diagonal BiLSTM 94.70, the Transformer 101.83 (lr
# 5e-3 after 50), PixelCNN++ 95.78, PixelSNAIL 172.98; the default PixelCNN (414k parameters) reached 98.61 in the
# same 4 minutes (the eleventh session's first race attempt): at a short budget a narrow network's extra steps win.
_SMALL_AR = "bench/autoregressive.py at 4 minutes on binarized MNIST (about 75k parameters)"
# The fifteenth session's probes, one 4-minute run each, alone, 2 threads, AMD EPYC, Fashion-MNIST (256 levels),
# each against the same model at its defaults in the Fashion-MNIST race (docs/races/fashion-mnist-4min), on the same
# 1,000 seeded test images (the trainer's --eval-limit figure; docs/RESULTS.md, "Budget recipes for 256-level data").
_PROBE_256 = "the fifteenth session's 4-minute probes on Fashion-MNIST, against the race's defaults: "
_AR_TRAIN = {"lr": 2e-3, "warmup_steps": 200}


def _small(model: str, nats_256: str, **options) -> "BudgetRecipe":
    """The narrow network of bench/autoregressive.py: measured on 2 levels, and on 256 where ``nats_256`` says."""
    return BudgetRecipe(model=model, options=options, train=dict(_AR_TRAIN), levels=(2, 256),
                        evidence=f"{_SMALL_AR}; {_PROBE_256}{nats_256}")


_BUDGET_LIST = (
    _small("pixelcnn", "1857.5 nats against 2011.5", hidden_channels=32, num_layers=5, head_channels=64),
    _small("gated-pixelcnn", "1882.3 nats against 2247.7", hidden_channels=28, num_layers=5, head_channels=64,
           kernel=3),
    _small("row-lstm", "1902.8 nats against 1945.3", hidden_channels=24, num_layers=3, head_channels=64),
    _small("diagonal-bilstm", "2102.0 nats against 2241.6", hidden_channels=24, num_layers=3, head_channels=64),
    BudgetRecipe(model="pixel-transformer", options=dict(embed_dim=52, num_layers=3, num_heads=1, mlp_ratio=2,
                                                         attention_rows=1, relative_bias=True),
                 train={"lr": 5e-3, "warmup_steps": 50}, levels=(2, 256),
                 evidence=f"{_SMALL_AR}; {_PROBE_256}1974.0 nats against 2418.8"),
    BudgetRecipe(model="pixelcnn-pp", options=dict(hidden_channels=12, num_resnet=1, output="softmax"),
                 train=dict(_AR_TRAIN), levels=(2,), evidence=_SMALL_AR),
    BudgetRecipe(model="pixelcnn-pp", options=dict(hidden_channels=12, num_resnet=1), train=dict(_AR_TRAIN),
                 levels=(256,), evidence=f"{_PROBE_256}1857.9 nats against 2027.3 (its mixture output kept)"),
    # none on 256 levels: the narrow PixelSNAIL (mixture output) lost to the default there, 2093.8 against 2024.2
    BudgetRecipe(model="pixelsnail", options=dict(hidden_channels=24, num_blocks=2, num_resnet=1, output="softmax"),
                 train=dict(_AR_TRAIN), levels=(2,), evidence=_SMALL_AR),
    BudgetRecipe(model="realnvp", options={"num_scales": 2, "hidden_channels": 32, "num_blocks": 2,
                                           "space_to_depth": True}, levels=(256,), train={"warmup_steps": 200},
                 evidence=f"the shipped realnvp-fashion-mnist's network; {_PROBE_256}2225.1 nats against 3017.1 "
                          f"(273 images/s against 18)"),
    BudgetRecipe(model="diffusion", options={"fourier_features": True}, levels=(256,),
                 train={"lr": 2e-3, "warmup_steps": 200, "compile": True},
                 evidence=f"the shipped diffusion-fashion-mnist's recipe less its hour's moving average; {_PROBE_256}"
                          f"80 images/s against 64 and 2190.6 nats against 2271.4 (one time per image: within "
                          f"the bound's Monte-Carlo noise)"),
    # NADE and MADE on 256 levels: the mixture of 10 discretized logistics per sub-pixel (30 outputs, not 256 logits:
    # the default softmax's output layer alone is 100.9M parameters, 29 images/s)
    BudgetRecipe(model="nade", options={"output": "mixture"}, levels=(256,),
                 train={"lr": 5e-3, "batch_size": 100, "warmup_steps": 200},
                 evidence=f"{_PROBE_256}2056.9 nats against 2485.9 (124 images/s against 29)"),
    BudgetRecipe(model="made", options={"output": "mixture", "hidden_units": 1000}, levels=(256,),
                 train={"lr": 5e-3, "batch_size": 100, "warmup_steps": 200},
                 evidence=f"{_PROBE_256}1990.9 nats against 3074.1 (197 images/s against 28)"),
    BudgetRecipe(
        model="nade", options={}, levels=(2,),
        train={"lr": 1e-2, "batch_size": 100, "warmup_steps": 200, "compile": True},
        evidence="docs/RESULTS.md, the second GPU lease: on binarized MNIST the learning rate is what matters "
                 "(10 epochs at lr 1e-2: 87.74 nats; at 1e-3: 96.11); the eleventh session's 4-minute runs, 2 "
                 "threads, AMD EPYC: torch.compile 0.159 s a step against eager's 0.45, and 91.40 nats at 4 minutes"),
    BudgetRecipe(
        model="made", options={"hidden_units": 2000, "direct": True}, levels=(2,),
        train={"lr": 5e-3, "batch_size": 100, "warmup_steps": 200, "epochs": 8},
        evidence="the shipped made-binarized-mnist (1,000 units, direct connections, lr 5e-3, 8 epochs in 4.1 "
                 "min on one core: 89.67 nats) and the second GPU lease (longer cosines overfit); the eleventh "
                 "session's 4-minute runs, 2 threads, AMD EPYC: 1,000 units 89.67 nats in 1.5 min, 2,000 units "
                 "89.03 in 2.5 min"),
)
# a model's budget recipes, one per kind of data (levels): budget_recipe picks the one measured on the data
BUDGETS: dict[str, tuple[BudgetRecipe, ...]] = {}
for _recipe in _BUDGET_LIST:
    BUDGETS[_recipe.model] = (*BUDGETS.get(_recipe.model, ()), _recipe)


def budget_recipe(model: str, levels: int) -> tuple[dict, dict, str]:
    """(model options, training options, where they come from) of ``model`` under a budget on data of ``levels``."""
    own = next((b for b in BUDGETS.get(model, ()) if b.levels is None or levels in b.levels), None)
    if own is None:
        return {}, dict(BUDGET_TRAIN), "every model's"
    where = f"{model}'s own" + (f", measured on {'/'.join(map(str, own.levels))}-level data" if own.levels else "")
    return dict(own.options), {**BUDGET_TRAIN, **own.train}, where


def names() -> list[str]:
    return list(RECIPES)


def get(name: str) -> Recipe:
    if name not in RECIPES:
        raise GenzooError(f"no recipe named {name!r}; the shipped models are: {', '.join(RECIPES)}")
    return RECIPES[name]


def pretrained_root() -> Path:
    """Where the trained models that ship with genzoo are: $GENZOO_PRETRAINED, else the checkout's pretrained/."""
    return Path(os.environ.get("GENZOO_PRETRAINED", Path(__file__).resolve().parents[2] / "pretrained"))


def resolve(path) -> Path:
    """A run folder's path, or a shipped model's name (``row-lstm-binarized-mnist``) -> its folder.
    An existing path always wins; a bare name that is not a folder here is looked up in pretrained/."""
    path = Path(path)
    if path.exists() or len(path.parts) != 1:
        return path
    shipped = pretrained_root() / path
    return shipped if shipped.is_dir() else path

