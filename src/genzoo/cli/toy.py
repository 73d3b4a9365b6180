"""``genzoo toy nice|realnvp --data moons -o FILE.png``: a 2-D flow trained in seconds, and its picture
(data, learned density, samples) beside each other."""

from __future__ import annotations

import torch

from .. import grids
from ..models.flows import flows2d as toy
from .common import add_device_options, add_output, add_seed, apply_device_options, number
from . import COMMANDS


def add_parsers(sub, argv) -> None:
    y = sub.add_parser("toy", help=COMMANDS["toy"][1])
    y.add_argument("model", choices=toy.KINDS, help="the flow: nice (additive couplings) or realnvp (affine couplings)")
    y.add_argument("--data", choices=toy.DATASETS, default="moons", help="the 2-D density to fit")
    add_output(y)
    y.add_argument("--steps", type=number(int, 1, 100000), default=1500, help="training steps (batches of 256 points)")
    add_seed(y, "the data, the initial weights and the samples")
    add_device_options(y)
    y.set_defaults(run=run_toy)


def run_toy(args) -> int:
    grids.check_png_path(args.output)
    apply_device_options(args)
    flow, nll = toy.train_toy(args.model, args.data, steps=args.steps, seed=args.seed)
    mass = plot_toy(flow, args.data, args.output, seed=args.seed,
                     title=f"{args.model} on {args.data}: {args.steps} steps, train NLL {nll:.3f} nats")
    print(f"{args.model} on {args.data}: train NLL {nll:.3f} nats/point after {args.steps} steps; "
          f"density mass on the plotted grid {mass:.3f}; wrote {args.output}")
    return 0


def plot_toy(flow: toy.ToyFlow, data: str, path, seed: int = 0, title: str = "") -> float:
    """Data | learned density | samples, side by side; returns the density's mass on the plotted grid."""
    plt = grids.pyplot()
    g = torch.Generator().manual_seed(seed)
    real = toy.toy_data(data, 2000, g).numpy()
    fake = flow.sample(2000, generator=g).numpy()
    xs, ys, dens = toy.density_grid(flow)
    mass = float(dens.sum() * (xs[1] - xs[0]) ** 2)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    axes[0].scatter(real[:, 0], real[:, 1], s=2, alpha=0.5)
    axes[0].set_title(f"data: {data}")
    axes[1].imshow(dens.numpy(), origin="lower", extent=(-4, 4, -4, 4), cmap="viridis")
    axes[1].set_title(f"learned density (mass on grid {mass:.3f})")
    axes[2].scatter(fake[:, 0], fake[:, 1], s=2, alpha=0.5, color="tab:orange")
    axes[2].set_title("samples")
    for ax in axes:
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
        ax.set_aspect("equal")
    fig.suptitle(title)
    fig.tight_layout()
    try:
        grids.save_figure(fig, path)
    finally:
        plt.close(fig)
    return mass
