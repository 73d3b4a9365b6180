"""How long genzoo's commands take to start, for one or more checkouts, in one run (this machine is noisy).

Each command runs ``--repeat`` times in a fresh interpreter (``python -m genzoo ...``, PYTHONPATH the checkout's
src/), alternating between the checkouts; the median wall time is reported. Commands that need no model (genzoo,
--help, --version, runs, list) import no torch since the twelfth session; since the thirteenth neither do list --json
and the help of a command that runs models (rebuilt from help.json).

    .venv/bin/python bench/startup.py --src src --src /path/to/older/checkout/src [--repeat 7]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [[], ["--help"], ["--version"], ["runs", str(ROOT / "pretrained")], ["list"], ["list", "--json"],
            ["eval", "--help"], ["train", "--help"], ["train", "diffusion", "--help"], ["sample", "--help"]]

p = argparse.ArgumentParser()
p.add_argument("--src", action="append", help="a checkout's src/ folder (repeatable; default this checkout's)")
p.add_argument("--repeat", type=int, default=5)
args = p.parse_args()
sources = args.src or [str(ROOT / "src")]

times = {(s, i): [] for s in sources for i in range(len(COMMANDS))}
for _ in range(args.repeat):
    for i, command in enumerate(COMMANDS):
        for src in sources:
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "genzoo", *command], env=env, capture_output=True, cwd=ROOT)
            times[src, i].append(time.perf_counter() - t0)

print(f"# median of {args.repeat} starts, {sys.executable}")
print("| command | " + " | ".join(sources) + " |")
print("| --- | " + " | ".join("---" for _ in sources) + " |")
for i, command in enumerate(COMMANDS):
    shown = " ".join(["genzoo", *command]).replace(str(ROOT) + "/", "")
    print(f"| `{shown}` | " + " | ".join(f"{statistics.median(times[s, i]):.2f} s" for s in sources) + " |")
