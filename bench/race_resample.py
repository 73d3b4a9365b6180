"""Time a finished race's samplers again, in place, after a sampler has changed (the figures stay as they were).

For each named entry: the race's trained model from its run folder, ``sample_64_s`` and ``forward_64_s`` measured as
``genzoo race`` measures them (``cli.race.sampling_times``: one cold ``sample(64)``, one warm full pass over 64 test
images), the old values kept under ``sampling_before`` and the date and a note under ``sampling_remeasured``; then
race.md is written again from race.json. README's tables follow with ``python bench/race_tables.py``. Not a test:
run it on a quiet machine, with the race's threads.

    .venv/bin/python bench/race_resample.py docs/races/binarized-mnist-4min RUNS/race-bmnist --models pixelcnn-pp \
        --note "the row-start cache (fourteenth session)"
"""

import argparse
import datetime
import json
from pathlib import Path

import torch

from genzoo import checkpoint as ckpt
from genzoo import runs
from genzoo.cli import evaluate
from genzoo.cli import race as race_command
from genzoo.cli.common import checked_split, parse_command

p = argparse.ArgumentParser()
p.add_argument("race", type=Path, help="the folder of race.json and race.md")
p.add_argument("runs", type=Path, help="the race's --out, holding one run folder a model")
p.add_argument("--models", required=True, help="comma-separated entries to time again")
p.add_argument("--note", required=True, help="why, said in the entry")
args = p.parse_args()

path = args.race / race_command.RACE_FILE
race = json.loads(path.read_text())
torch.set_num_threads(race["threads"])
for name in args.models.split(","):
    entry, folder = race["entries"][name], args.runs / name
    run = runs.open_run(folder, need_record=True)
    test = checked_split(run, parse_command(evaluate, ["eval", str(folder)]), "test")
    times = race_command.sampling_times(run.model.eval(), test.images[:64])
    entry.setdefault("sampling_before", {k: entry[k] for k in times if k in entry})
    entry.update(times)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entry["sampling_remeasured"] = f"{stamp} ({args.note})"
    floor = f", {times['sample_64_s'] / times['forward_64_s']:.1f}x its floor" if "forward_64_s" in times else ""
    print(f"{name}: sample 64 {times['sample_64_s']:.3f} s{floor} (was {entry['sampling_before']})", flush=True)
ckpt.atomic_write_bytes(path, (json.dumps(race, indent=1) + "\n").encode())
ckpt.atomic_write_bytes(args.race / race_command.TABLE_FILE, race_command.table(race).encode())
