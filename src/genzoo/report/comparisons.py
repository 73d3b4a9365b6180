"""Pictures that compare runs of one dataset, for the report: the likelihood / sample-quality
trade-off (test bits/dim against FID, one point a run) and the test curves of every run against
training wall clock; and a strip of each sample beside its nearest training image."""

from __future__ import annotations

import torch

from .. import runs
from ..grids import pyplot


def latest_quality(run: runs.Run) -> dict | None:
    """The newest sample-quality record (`genzoo eval --fid N`) on the run's own test set, if any."""
    kept = [e for e in runs.read_evals(run.folder) if "quality" in e and e.get("data") == run.spec.get("name")]
    return kept[-1]["quality"] if kept else None


def trade_off_figure(group: list, likelihood_of):
    """Test bits/dim (y) against FID (x), one labelled point per run that has both; None if none has.
    likelihood_of(run) -> the shown figure dict (test_bpd) of a run."""
    points = [(r, likelihood_of(r).get("test_bpd"), latest_quality(r)) for r in group]
    points = [(r, bpd, q) for r, bpd, q in points if bpd is not None and q is not None]
    if not points:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r, bpd, q in points:
        ax.scatter(q["fid"], bpd, marker="o" if r.kind == "exact" else "v")
        ax.annotate(r.model.name, (q["fid"], bpd), fontsize=7, xytext=(3, 3), textcoords="offset points")
    floor = min(q["floor"]["fid"] for _, _, q in points)
    ax.axvline(floor, color="grey", ls=":", lw=1, label=f"held-out real images: FID {floor:.2f}")
    ax.set_xlabel("FID in the dataset's feature network (lower: samples look more like test images)")
    ax.set_ylabel("test bits/dim (lower: more likely)")
    ax.set_title("likelihood against sample quality (o exact, v bound)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def curves_against_time_figure(group: list):
    """Every run's per-epoch test figure (bits/dim, or the loss) against its training wall clock; None if none."""
    plotted = [r for r in group if r.metrics and "elapsed_s" in r.metrics[-1]]
    if not plotted:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    key = "test_bpd" if all("test_bpd" in r.metrics[-1] for r in plotted) else "test_loss"
    for r in plotted:
        points = [(m["elapsed_s"] / 60, m[key]) for m in r.metrics if key in m and "elapsed_s" in m]
        ax.plot(*zip(*points), marker="o", ms=3, label=f"{r.model.name} ({r.name})")
    ax.set_xlabel("training wall clock (minutes)")
    ax.set_ylabel("test bits/dim" if key == "test_bpd" else "test loss")
    ax.set_title("test curves against training time", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    return fig


def nearest_training_images(samples: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """[n, C, H, W] samples -> [2n, C, H, W]: the n samples, then each one's nearest training image
    in pixel space (Euclidean, on the levels), for a grid of n columns: a sample that copies its
    training data shows it here."""
    s, t = samples.flatten(1).float(), train.flatten(1).float()
    nearest = torch.cat([torch.cdist(c, t).argmin(1) for c in s.split(64)])
    return torch.cat([samples, train[nearest]])  # (2n, C, H, W): the samples' row, then the nearest row
