"""Pictures from a run: ``sample``, ``complete``, ``interpolate``, ``reconstruct`` (one PNG grid each)."""

from __future__ import annotations

import contextlib
import sys

import torch
from tqdm import tqdm

from .. import grids
from ..evaluation import scoring
from ..report import views
from ..errors import GenzooError
from .common import (able, add_data_options, add_device_options, add_model_options, add_output, add_run_dir, add_seed,
                     apply_device_options, checked_split, latent_run, number, open_run, renamed, sampling_options)
from . import COMMANDS

SAMPLING = "sampling options (the model's own; a model refuses one it does not take)"


def add_parsers(sub, argv) -> None:
    s = sub.add_parser("sample", help=COMMANDS["sample"][1])
    add_run_dir(s)
    s.add_argument("-n", type=number(int, 1, 4096), default=64, help="images to draw")
    add_output(s)
    add_seed(s, "the samples (the same seed draws the same images)")
    s.add_argument("--label", type=number(int, 0), help="class for a conditional model (default: cycle through the "
                                                        "classes)")
    s.add_argument("--scale", type=number(int, 1, 32),
                   help="upscaling of each image in the PNG (default: by image size, 8x for 8x8)")
    add_model_options(s, "SampleOptions", SAMPLING)
    add_device_options(s)
    s.set_defaults(run=run_sample)

    c = sub.add_parser("complete", help=COMMANDS["complete"][1])
    add_run_dir(c)
    add_output(c)
    c.add_argument("-n", type=number(int, 1, 64), default=8, help="test images to complete")
    c.add_argument("--samples", type=number(int, 1, 16), default=4, help="completions per image")
    c.add_argument("--rows", type=number(int, 1), help="rows kept from each image (default: half)")
    add_data_options(c, "take the test images to complete from")
    add_seed(c, "the completions")
    add_model_options(c, "SampleOptions", SAMPLING)
    add_device_options(c)
    c.set_defaults(run=run_complete)

    i = sub.add_parser("interpolate", help=COMMANDS["interpolate"][1])
    add_run_dir(i)
    add_output(i)
    i.add_argument("--pairs", type=number(int, 1, 32), default=None, help="rows: pairs of test images; default 4")
    i.add_argument("--columns", type=number(int, 2, 32), default=8, help="points from one image to the other")
    i.add_argument("--steps", type=number(int, 2, 32), action=renamed("--columns"), dest="columns",
                   help="the old name of --columns")
    add_data_options(i, "take the test images to interpolate between from")
    add_device_options(i)
    i.set_defaults(run=run_interpolate)

    r = sub.add_parser("reconstruct", help=COMMANDS["reconstruct"][1])
    add_run_dir(r)
    add_output(r)
    r.add_argument("-n", type=number(int, 1, 256), default=16, help="test images")
    add_data_options(r, "take the test images to reconstruct from")
    add_seed(r, "the corruption, for a denoising model")
    add_device_options(r)
    r.set_defaults(run=run_reconstruct)


@contextlib.contextmanager
def _row_progress(model, kwargs: dict, what: str):
    """A progress bar over image rows (on a terminal only) for models whose sampler reports rows."""
    if "progress" not in model.sample_options:
        yield
        return
    with tqdm(total=model.image_shape[1], desc=what, unit="row", disable=None, file=sys.stderr, leave=False) as bar:
        kwargs["progress"] = lambda rows: bar.update(rows - bar.n)
        yield


def _save_grid(x, model, path, nrow=None, scale=None) -> None:
    grids.save_png(grids.grid(x, model.levels, nrow=nrow, scale=scale or grids.default_scale(model.image_shape[1])),
                    path)


@torch.no_grad()
def run_sample(args) -> int:
    grids.check_png_path(args.output)
    device = apply_device_options(args)
    run = open_run(args, args.dir)
    if "data_fingerprint" in run.record:  # sampling reads no data, but says when the run's data has changed since
        with contextlib.suppress(GenzooError):  # data that is not here (or moved) stops no sampling
            checked_split(run, args)
    model = run.model.to(device)
    g = torch.Generator().manual_seed(args.seed)
    kwargs = {}
    if args.label is not None:
        if not model.num_classes or args.label >= model.num_classes:
            raise GenzooError(f"--label: this model has {model.num_classes or 'no'} classes")
        kwargs["y"] = torch.full((args.n,), args.label)
    kwargs.update(sampling_options(model, args))
    with _row_progress(model, kwargs, "sampling"):
        x = model.sample(args.n, generator=g, **kwargs)
    _save_grid(x, model, args.output, scale=args.scale)
    print(f"wrote {args.n} samples to {args.output}")
    return 0


@torch.no_grad()
def run_complete(args) -> int:
    grids.check_png_path(args.output)
    device = apply_device_options(args)
    run = open_run(args, args.dir)
    model = run.model
    if not model.can_complete:
        raise GenzooError(f"{model.name} does not complete images (these models do: {able('can_complete')})")
    ds = checked_split(run, args)
    model.to(device)
    H = model.image_shape[1]
    rows = args.rows if args.rows is not None else H // 2
    if rows >= H:
        raise GenzooError(f"--rows must be below the image height {H}")
    if rows == 0 and args.rows is None:  # a 1-row image has no top half to keep: that is sampling, not completion
        raise GenzooError(f"complete: the images are {H} row(s) high, so no top rows can be kept (genzoo sample draws "
                          f"whole images)")
    pick = scoring.subset(ds.labels, args.n)  # seeded and stratified: a sorted test file shows every class
    originals = ds.images[pick]
    labels = ds.labels[pick] if model.num_classes else None
    g = torch.Generator().manual_seed(args.seed)
    kwargs = sampling_options(model, args)
    with _row_progress(model, kwargs, "completing"):
        out, ncol = views.completions(model, originals, rows, args.samples, labels=labels, generator=g, **kwargs)
    _save_grid(out, model, args.output, nrow=ncol)
    print(f"wrote {len(originals)} images x {args.samples} completions (top {rows} rows kept) to {args.output}; "
          f"columns: original, the visible top {rows} rows, completions 1-{args.samples}")
    return 0


def _latent_run_and_test_split(args, what: str):
    """The run's model (one with a code) and the test split it was trained on, checked to fit."""
    run = latent_run(args, what)
    return run.model, checked_split(run, args)


@torch.no_grad()
def run_interpolate(args) -> int:
    grids.check_png_path(args.output)
    device = apply_device_options(args)
    model, ds = _latent_run_and_test_split(args, "interpolate in")
    given, args.pairs = args.pairs is not None, args.pairs or 4
    if len(ds) < 2 * args.pairs:  # without --pairs, the message used to blame a "--pairs 4" nobody gave
        fits = f"; --pairs {len(ds) // 2} fits" if len(ds) >= 2 else ""
        raise GenzooError(f"{'--pairs ' + str(args.pairs) if given else 'interpolate'}: {args.pairs} pair(s) need "
                          f"{2 * args.pairs} test images and the test split has {len(ds)}{fits}")
    model.to(device)
    pairs = ds.images[scoring.subset(ds.labels, 2 * args.pairs)].to(device)
    out, ncol = views.interpolations(model, pairs, args.columns)
    _save_grid(out, model, args.output, nrow=ncol)
    print(f"wrote {args.pairs} interpolations x {args.columns} columns to {args.output}; each row: from a test image "
          f"(left) to another (right) along the model's path between their codes (code_path: a straight line, or "
          f"the sphere for codes of Gaussian noise)")
    return 0


@torch.no_grad()
def run_reconstruct(args) -> int:
    grids.check_png_path(args.output)
    device = apply_device_options(args)
    model, ds = _latent_run_and_test_split(args, "reconstruct from")
    model.to(device)
    x = ds.images[scoring.subset(ds.labels, args.n)].to(device)
    pic, names = views.reconstructions(model, x, torch.Generator().manual_seed(args.seed))
    _save_grid(pic, model, args.output, nrow=len(names))
    print(f"wrote {len(x)} test images x ({', '.join(names)}) to {args.output}; columns: {', '.join(names)}")
    return 0
