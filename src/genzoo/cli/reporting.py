"""``genzoo report DIR... -o FILE.html``: one self-contained page comparing run folders."""

from __future__ import annotations

import sys

import torch

from .. import checkpoint as ckpt
from .. import grids, runs
from ..report import page as report_page
from .common import add_device_options, add_output, add_seed, apply_device_options, number
from . import COMMANDS


def add_parsers(sub, argv) -> None:
    rp = sub.add_parser("report", help=COMMANDS["report"][1])
    rp.add_argument("dirs", nargs="+", metavar="DIR",
                    help="run folders, or folders holding run folders (every run below is included, each once)")
    add_output(rp, ".html")
    rp.add_argument("--samples", type=number(int, 1, 256), default=16, help="samples drawn per run")
    add_seed(rp, "the samples, completions and reconstructions shown")
    rp.add_argument("--ood", metavar="NAME", help="also score each run on dataset NAME's test split (same shape and "
                                                  "levels; not the runs' own dataset)")
    rp.add_argument("--ood-limit", type=number(int, 1), default=1000,
                    help="images per set for --ood (a seeded random subset of each test split)")
    add_device_options(rp)
    rp.set_defaults(run=run_report)


@torch.no_grad()
def run_report(args) -> int:
    out = grids.check_output_path(args.output, (".html", ".htm"))
    device = apply_device_options(args)
    folders, notes = runs.expand(args.dirs)
    for note in notes:
        print(f"report: {note}", file=sys.stderr, flush=True)
    page = report_page.build(folders, samples=args.samples, seed=args.seed, ood=args.ood, ood_limit=args.ood_limit,
                             device=device, log=lambda m: print(m, file=sys.stderr, flush=True))
    ckpt.atomic_write_bytes(out, page.encode())
    print(f"wrote {out} ({len(page) / 1e6:.1f} MB, {len(folders)} run(s))")
    return 0
