"""One self-contained HTML page comparing trained runs: leaderboards, curves and pictures.

Everything is read from the run folders (through :mod:`genzoo.runs`: the launch record, the
metrics, the saved model);
nothing is retrained. Pictures are drawn from the saved models with a fixed seed. Images and
plots are inlined as data URIs and the page carries its own CSS, so the file opens anywhere
with no network.

Ranking is honest: runs are grouped by dataset (name, levels, binarization) and never ranked
across groups; only ``exact`` likelihoods are ranked; a ``bound`` is shown as "<= x" (the
true NLL is at most x) and listed after them; ``none`` (autoencoders) shows reconstruction
error and no nats.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math

import numpy as np
import torch

from ..evaluation import figures
from .. import data, grids, runs
from ..evaluation import scoring
from . import comparisons, views
from ..errors import GenzooError
from ..evaluation.figures import bound_mark
from ..likelihood import bits_per_dim
from ..runs import Run

def load_run(folder) -> Run:
    """A run folder (run.json needed: the report groups runs by their data)."""
    return runs.open_run(folder, need_record=True)


# -- inline pictures
def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def figure_uri(fig) -> str:
    return png_uri(grids.figure_png_bytes(fig, dpi=80, bbox_inches="tight"))


def grid_uri(x: torch.Tensor, levels: int, nrow: int) -> str:
    return png_uri(grids.png_bytes(grids.grid(x, levels, nrow=nrow, scale=grids.default_scale(x.shape[2]))))


def curves_uri(run: Run) -> str | None:
    """Training and test curves against the step: bits/dim where the model has a likelihood, else the loss."""
    plt = grids.pyplot()
    m = run.metrics
    if not m:
        return None
    key = "bpd" if "test_bpd" in m[-1] else "loss"
    steps = [r["step"] for r in m]
    fig, ax = plt.subplots(figsize=(4.5, 3))
    for split in ("train", "test"):
        ys = [r.get(f"{split}_{key}") for r in m]
        if any(y is not None for y in ys):
            ax.plot(steps, ys, marker="o", ms=3, label=split)
    ax.set_xlabel("step")
    ax.set_ylabel("bits/dim" if key == "bpd" else "loss")
    ax.set_title(f"{run.model.name}: {'bits/dim' if key == 'bpd' else 'loss'} per epoch", fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    return figure_uri(fig)


# -- the per-run pictures
def run_pictures(run: Run, test: data.Dataset, n: int, seed: int, device, train=None) -> list[tuple[str, str]]:
    """[(caption, data URI)]: samples (beside their nearest training images, given ``train`` images),
    and completions / reconstructions / interpolations where the model has them."""
    model = run.model.to(device).eval()
    levels, out = model.levels, []

    def g():
        return torch.Generator().manual_seed(seed)

    if model.can_sample:  # autoencoders define no distribution to sample
        x = model.sample(n, generator=g()).cpu()  # a conditional model cycles the classes: image i of class i mod K
        caption = f"{n} samples (seed {seed})" + (", image i of class i mod K" if model.num_classes else "")
        out.append((caption, grid_uri(x, levels, nrow=min(n, 8))))
        if train is not None:
            strip = comparisons.nearest_training_images(x[:8], train)
            out.append((f"memorisation check: {len(strip) // 2} samples (top) and the nearest training image to each "
                        "(bottom, pixel distance)", grid_uri(strip, levels, nrow=len(strip) // 2)))
    k = min(4, len(test))
    shown = scoring.subset(test.labels, 8)  # seeded and stratified: a sorted test file shows every class
    originals = test.images[shown[:k]]
    if model.can_complete:
        rows = model.image_shape[1] // 2
        labels = test.labels[shown[:k]] if model.num_classes else None
        pic, ncol = views.completions(model, originals, rows, 4, labels=labels, generator=g())
        out.append((f"completions: original, the top {rows} rows kept, 4 completions", grid_uri(pic, levels, ncol)))
    if model.has_code:
        pic, names = views.reconstructions(model, test.images[shown].to(device), g())
        out.append(("reconstructions: " + ", ".join(names), grid_uri(pic, levels, len(names))))
        if len(test) >= 4:
            pic, ncol = views.interpolations(model, test.images[shown[:4]].to(device), 8)
            out.append(("interpolations: the straight line between two test images' codes", grid_uri(pic, levels,
                                                                                                     ncol)))
    return out


@torch.no_grad()
def per_image_bpd(model, x: torch.Tensor, device, batch: int = 256) -> torch.Tensor:
    """bits/dim [N] of each image under the model (its own figure: exact or a bound)."""
    nll = scoring.per_image(model, x, None, batch, scoring.nll_figures, device=device)["nll"]
    return bits_per_dim(nll, math.prod(model.image_shape))


def ood_section(run: Run, test: data.Dataset, other: data.Dataset, ood_name: str, limit: int, device) -> str:
    """Per-image bits/dim on the run's own test set and on another dataset, histograms and means."""
    if run.kind == "none":
        return "<p class=note>out-of-distribution: no likelihood (an autoencoder)</p>"
    plt = grids.pyplot()
    own = per_image_bpd(run.model, test.images[scoring.subset(test.labels, limit)], device)  # seeded, stratified
    far = per_image_bpd(run.model, other.images[scoring.subset(other.labels, limit)], device)
    fig, ax = plt.subplots(figsize=(4.5, 3))
    bins = np.linspace(float(min(own.min(), far.min())), float(max(own.max(), far.max())), 40)
    ax.hist(own.numpy(), bins=bins, alpha=0.6, label=f"{run.spec['name']} (own test set)")
    ax.hist(far.numpy(), bins=bins, alpha=0.6, label=ood_name)
    ax.set_xlabel("bits/dim (lower = more likely)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title(f"{run.model.name}: per-image bits/dim", fontsize=9)
    verdict = (f"the model rates {html.escape(ood_name)} <b>more</b> likely than its own test set"
               if far.mean() < own.mean() else f"{html.escape(ood_name)} is rated less likely, as it should be")
    return (f"<p>out-of-distribution, {len(own)} + {len(far)} images ({run.kind}): mean {own.mean():.4f} bits/dim on "
            f"its own test set, {far.mean():.4f} on {html.escape(ood_name)}: {verdict}.</p>"
            f"<img alt='ood histogram' src='{figure_uri(fig)}'>")


# -- the page
CSS = """
body { font-family: sans-serif; margin: 2em; max-width: 75em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
th { background: #eee; } td.l, th.l { text-align: left; }
section.run { border-top: 2px solid #ccc; margin-top: 2em; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; max-width: 40em; }
img { image-rendering: pixelated; }
.note { color: #555; font-size: 0.9em; }
"""


def _fmt(v, spec=".3f", prefix=""):
    return "&mdash;" if v is None else f"{prefix}{v:{spec}}"


def _shown_figures(r: Run) -> dict:
    return runs.shown_figures(r.folder, r.record, r.metrics)


def leaderboard(all_runs: list[Run], anchors: dict) -> str:
    """One table per dataset; exact figures ranked, bounds listed after them as '<= x', autoencoders last."""
    groups: dict[str, list[Run]] = {}
    for r in all_runs:
        groups.setdefault(r.dataset, []).append(r)
    out = []
    order = {"exact": 0, "bound": 1, "none": 2}
    for name, rs in groups.items():
        shown = {id(r): _shown_figures(r) for r in rs}
        rs = sorted(rs, key=lambda r: (order[r.kind], shown[id(r)].get("test_nll", shown[id(r)].get("test_mse",
                                                                                                    math.inf))))
        rows, rank = [], 0
        for r in rs:
            m = shown[id(r)]
            if r.kind == "exact":
                rank += 1
            shown_rank = str(rank) if r.kind == "exact" else ("bound" if r.kind == "bound" else "&mdash;")
            nll = _fmt(m.get("test_nll"), prefix=bound_mark(r.kind, "&le; "))
            bpd = _fmt(m.get("test_bpd"), ".4f", prefix=bound_mark(r.kind, "&le; "))
            extra = f"reconstruction MSE {m['test_mse']:.5f}" if "test_mse" in m else m.get("source", "")
            wall = m.get("elapsed_s")
            speed = np.mean([x["images_per_s"] for x in r.metrics]) if r.metrics else None
            rows.append(
                f"<tr class=leader><td>{shown_rank}</td><td class=l><a "
                f"href='#{anchors[id(r)]}'>{html.escape(r.name)}</a></td>"
                f"<td class=l>{html.escape(r.model.name)}</td><td>{r.parameters:,}</td><td class=l>{r.kind}</td>"
                f"<td>{nll}</td><td>{bpd}</td><td>{m.get('test_count', '&mdash;')}</td>"
                f"<td>{_fmt(wall, '.1f' if wall is not None and wall < 100 else '.0f')}"
                f"{' s' if wall is not None else ''}"
                f"</td><td>{_fmt(speed, '.0f')}</td>"
                f"<td class=l>{extra}</td></tr>")
        views_ = [(fig, what) for fig, what in ((comparisons.trade_off_figure(rs, _shown_figures),
                                                 "test bits/dim against FID (genzoo eval --fid N): the likelihood / "
                                                 "sample-quality trade-off"),
                                                (comparisons.curves_against_time_figure(rs),
                                                 "the test curves of every run against training wall clock"))
                  if fig is not None]
        pictures = "".join(f"<figure class=compare><img alt='{html.escape(what)}' src='{figure_uri(fig)}'>"
                           f"<figcaption>{html.escape(what)}</figcaption></figure>" for fig, what in views_)
        out.append(
            f"<h3>{html.escape(name)}</h3><table class=leaderboard><tr><th>rank</th><th class=l>run</th>"
            "<th class=l>model</th><th>parameters</th><th class=l>likelihood</th><th>test nats/image</th>"
            "<th>bits/dim</th><th>test images</th><th>training wall time</th><th>train images/s</th>"
            "<th class=l>other</th></tr>" + "".join(rows) + "</table>" + pictures)
    return "\n".join(out)


def _figure_line(r: Run) -> str:
    m = _shown_figures(r)
    if not m:
        return "no epoch finished yet"
    if "test_nll" in m:
        return f"{m['source']}: {m['test_nll']:.3f} nats/image = {m['test_bpd']:.4f} bits/dim ({r.kind})"
    return f"{m['source']}: " + ", ".join(f"{k} {v:.5f}" for k, v in figures.test_figures(m).items())


def run_section(r: Run, anchor: str, test: data.Dataset, pictures: dict, ood: dict | None = None) -> str:
    """One run's section: what it is, its curves and pictures, and the OOD comparison if asked.
    pictures: run_pictures' n, seed, device; ood: ood_section's other, ood_name, limit, device."""
    changed = figures.data_changed(r.record, "test", data.fingerprint(test)) if "data_fingerprint" in r.record else None
    notes = "".join(f"<p class=note>note: {html.escape(n)}</p>" for n in runs.problems(r.folder) + [changed] if n)
    parts = [f"<section class=run id='{anchor}'><h2>{html.escape(r.name)}: {html.escape(r.model.name)}</h2>{notes}",
             f"<p>{html.escape(r.dataset)}; {r.parameters:,} parameters; {html.escape(_figure_line(r))}; "
             f"{len(r.metrics)} evaluation(s).</p>",
             f"<p class=note>config: <code>{html.escape(json.dumps(dataclasses.asdict(r.model.config)))}</code></p>"]
    curves = curves_uri(r)
    if curves:
        parts.append(f"<figure><img alt='curves' src='{curves}'><figcaption>training and test "
                     f"curves</figcaption></figure>")
    for caption, uri in run_pictures(r, test, **pictures):
        parts.append(f"<figure><img alt='{html.escape(caption)}' src='{uri}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if ood is not None:
        parts.append(ood_section(r, test, **ood))
    return "\n".join(parts) + "</section>"


INTRO = ("<p class=note>One likelihood scale: -log P(x) of the discrete image in nats, bits/dim = nats / (D ln 2). "
         "Only <b>exact</b> figures are ranked; a <b>bound</b> (&le;) says the true NLL is at most that much; "
         "autoencoders have no likelihood. Runs on different data are never compared. A figure is the tightest "
         "that <code>genzoo eval</code> measured on the whole test set (kept in the run folder: e.g. the IWAE bound "
         "with the largest K), else the last per-epoch test evaluation; the column 'other' says which, and the "
         "image count is shown.</p>")


def build(folders, samples: int = 16, seed: int = 0, ood: str | None = None, ood_limit: int = 1000,
          device=torch.device("cpu"), log=lambda msg: None) -> str:
    """The report page as a string. Loads every run first: a broken run folder (bad config, missing or
    truncated weights) becomes a row saying what is wrong, and the others are shown; a bad request
    (an unknown --ood, data that does not fit) fails before any work."""
    if not folders:
        raise GenzooError("report: name at least one run folder")
    loaded, broken = [], []
    for f in folders:
        try:
            loaded.append(load_run(f))
        except GenzooError as e:
            broken.append((str(f), str(e)))
    if not loaded:
        raise GenzooError(broken[0][1] if len(broken) == 1 else f"report: none of the {len(broken)} runs can be read "
                                                                 f"(first: {broken[0][1]})")
    for f, why in broken:
        log(f"report: {f}: not shown ({why})")
    anchors = {id(r): f"run-{i}" for i, r in enumerate(loaded)}  # the id of each run's section in the page
    if ood is not None and ood not in data.names():
        raise GenzooError(f"--ood {ood}: unknown dataset (one of {', '.join(data.names())})")
    own = [r.name for r in loaded if r.spec.get("name") == ood]
    if own:
        raise GenzooError(f"--ood {ood}: {own[0]} was trained on {ood}; name another dataset (out-of-distribution "
                          f"data is data the model was not trained on)")
    # Every check before any work: a bad request is one error line and no half-done page.
    tests = [data.fitted_split(r.model, r.spec, "test", f"its own test data ({r.name})") for r in loaded]
    others = [data.fitted_split(r.model, {**r.spec, "name": ood}, "test", f"--ood {ood} ({r.name})") if ood is not None
              else None for r in loaded]
    sections = []
    for r, test, other in zip(loaded, tests, others):
        log(f"report: {r.name}")
        train = data.seen_training_split(r.spec).images if r.model.can_sample else None
        sections.append(run_section(r, anchors[id(r)], test, {"n": samples, "seed": seed, "device": device,
                                                              "train": train},
                                    None if ood is None else {"other": other, "ood_name": ood, "limit": ood_limit,
                                                              "device": device}))
    title = "genzoo report: " + ", ".join(r.name for r in loaded)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>genzoo report</h1>{INTRO}"
            f"<h2>Leaderboards</h2>{leaderboard(loaded, anchors)}{_broken_table(broken)}" + "\n".join(sections)
            + "</body></html>")


def _broken_table(broken: list) -> str:
    if not broken:
        return ""
    rows = "".join(f"<tr><td class=l>{html.escape(f)}</td><td class=l>{html.escape(why)}</td></tr>" for f,
                   why in broken)
    return (f"<h3>Runs not shown</h3><table class=broken><tr><th class=l>run</th><th class=l>what is wrong</th></tr>"
            f"{rows}</table>")
