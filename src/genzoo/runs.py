"""The run folder, once: its file names, how it is created, read, checkpointed and resumed.

What ``genzoo train`` writes, and the order it is written in (a kill at any point leaves the
last *committed* checkpoint whole):

    run.json            how the run was launched: model, data recipe, training options, threads
    config.json         the model's constructor arguments     } a saved model (models/folder.py):
    model.safetensors   the latest committed weights          } genzoo.load(run)
    ema.safetensors     with --ema: their moving average      } (the average by default, where present)
    checkpoint.json     the commit record: step, epoch, batch and the files below
    ckpt/step-N.safetensors, ckpt/step-N.pt   weights; every optimizer + RNG + counters
    ckpt/step-N.ema.safetensors               with --ema: the moving average
    metrics.jsonl       one JSON object per evaluation;  evals.jsonl: one per `genzoo eval` (kept)
    tensorboard/        with --tensorboard;  codes_of.json: a prior of a VQ-VAE's codes (models/folder.py)

The folder appears whole (run.json + config.json, renamed into place) or not at all. A
checkpoint is committed by the atomic rename of checkpoint.json; files of older checkpoints
are deleted only after that. A resume reads checkpoint.json, drops metrics lines written
after that step, and replays the data order. The CLI, the report and the trainer read and
write run folders only through this module.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

from . import catalog, recipes
from . import checkpoint as ckpt
from .errors import GenzooError
from .evaluation.figures import eval_label, tightest_likelihood
from .folder_files import CODES_OF_FILE, CONFIG_FILE, EMA_WEIGHTS_FILE, WEIGHTS_FILE
# genzoo.models (and torch) is imported where a model is built or saved: listing run folders reads records only

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
EVALS_FILE = "evals.jsonl"  # one record per `genzoo eval` (its kind of figure, K, N, precision, date)
CHECKPOINT_RECORD = "checkpoint.json"
CHECKPOINT_DIR = "ckpt"
TENSORBOARD_DIR = "tensorboard"

# Training options --resume may change: when the run stops or checkpoints (--epochs and --minutes
# extend a finished run; a larger --epochs also stretches the cosine schedule from that step on).
RESUMABLE_OPTIONS = ("epochs", "minutes", "checkpoint_minutes")
# Launch options that fix what the run computes: --resume refuses them.
LAUNCH_ONLY = ("levels", "binarize", "data_dir", "image_size", "grayscale", "conditional", "tensorboard")


# ----------------------------------------------------------------------------- creating

def check_new_folder(out: Path) -> None:
    """Refuse an --out that cannot become a new run folder, before anything is read or written."""
    if out.exists():
        if not out.is_dir():
            raise GenzooError(f"--out {out}: is a file, not a folder")
        if any(out.iterdir()):
            what = ("holds another run (continue it with --resume)" if (out / RUN_FILE).exists()
                    else "is not an empty folder")
            raise GenzooError(f"--out {out}: {what}")
    parent = next(p for p in out.absolute().parents if p.exists())  # the nearest existing ancestor
    if not parent.is_dir():
        raise GenzooError(f"--out {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise GenzooError(f"--out {out}: {parent} is not writable")
    try:  # tried for real: a read-only mount, /proc or /sys refuse even root
        ckpt.check_writable(parent / f"{out.name}.probe")
    except GenzooError as e:
        raise GenzooError(f"--out {out}: {e}") from None


def create(out: Path, record: dict, model) -> None:
    """The new run folder with its run.json (``record``) and the model's config.json, all or nothing."""
    from . import models
    ckpt.create_folder(out, {RUN_FILE: ckpt.json_bytes(record),
                             CONFIG_FILE: ckpt.json_bytes(models.model_config_record(model))})


def write_record(folder: Path, record: dict) -> None:
    ckpt.atomic_write_json(Path(folder) / RUN_FILE, record)


def tensorboard_dir(folder: Path) -> Path:
    return Path(folder) / TENSORBOARD_DIR


# ----------------------------------------------------------------------------- reading

def read_record(folder: Path) -> dict:
    """run.json, checked to be a genzoo run record."""
    folder = Path(folder)
    if not (folder / RUN_FILE).is_file():
        raise GenzooError(f"{folder}: not a run folder (no {RUN_FILE})")
    record = ckpt.read_json(folder / RUN_FILE)
    if not isinstance(record.get("data"), dict):
        raise GenzooError(f"{folder / RUN_FILE}: not a genzoo run record")
    return record


@dataclasses.dataclass
class Run:
    """A run folder (or a bare saved model) as every reader sees it."""

    name: str  # the folder's path as given
    folder: Path
    model: object  # the saved GenerativeModel, in eval mode (the moving average of its weights where one was kept)
    record: dict  # run.json ({} for a bare model folder)
    metrics: list  # metrics.jsonl records, oldest first

    @property
    def spec(self) -> dict:
        """The data recipe it was trained on (run.json's "data")."""
        return self.record.get("data", {})

    @property
    def kind(self) -> str:
        return self.model.likelihood_kind

    @property
    def last(self) -> dict:
        return self.metrics[-1] if self.metrics else {}

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def dataset(self) -> str:
        """The leaderboard group: runs of different data are never ranked together."""
        s = self.spec
        extra = f", binarize {s['binarize']}" if s.get("binarize", "none") != "none" else ""
        # -log P(x | y) of a class-conditional model is another quantity than -log P(x): its own group
        given = ", class-conditional: -log P(x | y)" if self.model.num_classes else ""
        return (f"{s.get('name', '?')}{extra} ({self.model.levels} levels, "
                f"{'x'.join(map(str, self.model.image_shape))}{given})")


def open_run(folder, need_record: bool = False, ema: bool = True) -> Run:
    """The saved model, run.json and metrics of ``folder``; a bare model folder (no run.json)
    opens with an empty record unless ``need_record``. A shipped model's name stands for its folder.
    ``ema``: the moving average of the weights where the run kept one (``model.weights`` says which)."""
    path = recipes.resolve(folder)
    if not path.is_dir():
        raise GenzooError(f"{path}: no such run folder")
    from . import models
    record = read_record(path) if need_record or (path / RUN_FILE).exists() else {}
    model = models.load_model(path, ema=ema)
    if "codes_of" in record.get("data", {}):  # a prior with its VQ-VAE: one model of the VQ-VAE's images
        record = {**record, "data": record["data"]["codes_of"], "data_fingerprint": {}}
    return Run(str(folder), path, model, record, read_metrics(path))


def is_shipped(folder) -> bool:
    """Is ``folder`` one of the shipped models (under pretrained/), which no command but verify --write-card writes?"""
    root, path = recipes.pretrained_root().resolve(), Path(folder).resolve()
    return path == root or root in path.parents


def find(root) -> list[Path]:
    """The run folders (holding run.json) at or below ``root``, sorted by path; nothing inside a run is searched."""
    root = Path(root)
    if (root / RUN_FILE).is_file():
        return [root]
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            found += find(child)
    return found


def expand(folders) -> tuple[list[str], list[str]]:
    """Folders as named, each parent of runs replaced by the runs below it, and each run once:
    (folders, notes). A folder that is neither stays, so that opening it gives its own error."""
    out, seen, notes = [], set(), []
    for f in folders:
        path = recipes.resolve(f)
        below = [] if (path / RUN_FILE).is_file() else find(path)
        for run in [str(p) for p in below] or [str(f)]:
            key = Path(run).resolve()
            if key in seen:
                notes.append(f"{run}: named more than once; shown once")
                continue
            seen.add(key)
            out.append(run)
    return out, notes


def data_spec(record: dict, data: str | None = None, data_dir: str | None = None) -> dict:
    """The data recipe a command applies: the run's, another dataset prepared the same way, or a new data_dir."""
    spec = dict(record.get("data", {}))
    if data:  # another dataset (or folder), prepared as the run's: the same binarization, levels and image size
        spec = {"name": data, "binarize": spec.get("binarize", "none"), "levels": spec.get("levels"),
                **{k: spec[k] for k in ("image_size", "grayscale") if k in spec}}
    if data_dir:
        spec["data_dir"] = data_dir
    if "name" not in spec:
        raise GenzooError("this model folder does not say what it was trained on: pass --data NAME")
    return spec


# ----------------------------------------------------------------------------- metrics.jsonl

def _json_lines(path: Path) -> list[tuple[str, dict]]:
    """(line, record) of every whole line of a .jsonl file; a line torn by a kill is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():  # a byte that is no UTF-8 spoils its line only
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append((line, rec))
    return out


def read_metrics(folder: Path) -> list[dict]:
    return [rec for _, rec in _json_lines(Path(folder) / METRICS_FILE)]


def problems(folder: Path) -> list[str]:
    """What is wrong with a run folder, read without loading its weights (for listings): run.json or
    config.json that is not a genzoo record, weights missing or truncated, metrics.jsonl that holds
    lines but no record. [] for a healthy run."""
    folder, found = Path(folder), []
    for check in (read_record, _checked_model_record, lambda f: ckpt.check_weights_file(f / WEIGHTS_FILE)):
        try:
            check(folder)
        except GenzooError as e:
            found.append(str(e))
    path = folder / METRICS_FILE
    if path.is_file():
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if lines and len(_json_lines(path)) < len(lines) - 1:  # a kill may tear the last line, no more
            found.append(f"{path}: {len(lines) - len(_json_lines(path))} of {len(lines)} lines are not records")
    return found


def truncate_metrics(folder: Path, step: int) -> None:
    """Keep only metrics lines of committed steps: none lost, none duplicated by the replay."""
    if not (Path(folder) / METRICS_FILE).exists():
        return
    kept = [line for line, rec in _json_lines(Path(folder) / METRICS_FILE) if rec.get("step", math.inf) <= step]
    ckpt.atomic_write_bytes(Path(folder) / METRICS_FILE, "".join(k + "\n" for k in kept).encode())


def append_metrics(folder: Path, record: dict) -> None:
    ckpt.append_line(Path(folder) / METRICS_FILE, json.dumps(record))  # a torn line is dropped on resume


# ----------------------------------------------------------------------------- evals.jsonl

def append_eval(folder: Path, record: dict) -> None:
    """Keep one `genzoo eval` result (the JSON it printed, with the date) in the run folder."""
    ckpt.append_line(Path(folder) / EVALS_FILE, json.dumps(record))


def read_evals(folder: Path) -> list[dict]:
    return [rec for _, rec in _json_lines(Path(folder) / EVALS_FILE)]


def shown_figures(folder: Path, record: dict, metrics: list) -> dict:
    """What every listing shows of a run (``genzoo runs``, the report): the tightest likelihood that
    `genzoo eval` kept for the whole test set, else the last epoch's test figures; "source" says
    which, and for a last epoch scored on a seeded subset, that it was one. {} before any epoch.
    Only figures of the weights that exist count: an eval kept at another step (before a resume trained further) is
    not shown. A prior of a VQ-VAE's codes scored the codes in its epochs: its figure is the pair's bound on the
    images, which only `genzoo eval` measures, or none."""
    last = metrics[-1] if metrics else {}
    spec = record.get("data", {})
    kept = [e for e in read_evals(folder) if e.get("step", last.get("step")) == last.get("step")]
    best = tightest_likelihood(kept, spec.get("codes_of", spec).get("name"))
    if best is not None:
        return {**last, "test_nll": best["nll_nats"], "test_bpd": best["bits_per_dim"], "test_count": best["count"],
                "source": eval_label(best)}
    if not last:
        return {}
    if (Path(folder) / CODES_OF_FILE).is_file():  # the epochs' figures are the code grids' NLL, not the images'
        return {**{k: v for k, v in last.items() if not k.startswith("test_")},
                "source": "not measured on the images yet (genzoo eval RUN: the VQ-VAE and prior's bound)"}
    subset = (f", a seeded subset of {last['test_count']} of {last['test_total']} test images"
              if "test_total" in last else "")
    return {**last, "source": f"last epoch's test figure (epoch {last.get('epoch', '?')}{subset})"}


# ----------------------------------------------------------------------------- checkpoints

def committed_step(folder: Path) -> int | None:
    """The step of the last committed checkpoint, or None before the first."""
    path = Path(folder) / CHECKPOINT_RECORD
    return read_checkpoint(folder)[0]["step"] if path.is_file() else None


def commit_checkpoint(folder: Path, counters: dict, weights: dict, trainer_state: dict,
                      ema: dict | None = None) -> None:
    """Write a checkpoint and commit it: its files, then checkpoint.json (the commit), then the run's
    model.safetensors (and ema.safetensors), then delete older checkpoints' files. counters: step, epoch, batch."""
    folder = Path(folder)
    ckdir = folder / CHECKPOINT_DIR
    ckdir.mkdir(parents=True, exist_ok=True)
    stem = f"step-{counters['step']:09d}"
    ckpt.save_weights(ckdir / f"{stem}.safetensors", weights)
    ckpt.save_trainer_state(ckdir / f"{stem}.pt", trainer_state)
    average = {"ema": f"{CHECKPOINT_DIR}/{stem}.ema.safetensors"} if ema is not None else {}
    if ema is not None:
        ckpt.save_weights(folder / average["ema"], ema)
    ckpt.atomic_write_json(folder / CHECKPOINT_RECORD, {
        **{k: counters[k] for k in ("step", "epoch", "batch")},
        "weights": f"{CHECKPOINT_DIR}/{stem}.safetensors", "trainer": f"{CHECKPOINT_DIR}/{stem}.pt", **average})
    # The committed weights double as the run's saved model (genzoo.load(run)).
    ckpt.save_weights(folder / WEIGHTS_FILE, weights)
    if ema is not None:
        ckpt.save_weights(folder / EMA_WEIGHTS_FILE, ema)
    else:  # resumed without --ema: an older average is not of these weights
        (folder / EMA_WEIGHTS_FILE).unlink(missing_ok=True)
    for old in ckdir.iterdir():
        if not old.name.startswith(stem):
            old.unlink(missing_ok=True)


def read_checkpoint(folder: Path) -> tuple[dict, Path, Path]:
    """(checkpoint.json, its weights file, its trainer-state file), checked to be a genzoo record."""
    folder = Path(folder)
    record = ckpt.read_json(folder / CHECKPOINT_RECORD)
    try:
        weights, trainer = folder / record["weights"], folder / record["trainer"]
        record["step"] = int(record["step"])
    except (KeyError, TypeError, ValueError):
        raise GenzooError(f"{folder / CHECKPOINT_RECORD}: not a genzoo checkpoint record") from None
    return record, weights, trainer


def checkpoint_average(folder: Path, record: dict) -> Path:
    """The moving average a committed checkpoint kept (--ema); a KeyError where it kept none."""
    if not isinstance(record.get("ema"), str):
        raise KeyError("the checkpoint keeps no moving average of the weights")
    return Path(folder) / record["ema"]


def sweep(folder: Path) -> None:
    """Delete what killed atomic writes left in the run folder and its checkpoint folder."""
    ckpt.sweep_temp_files(folder)
    ckpt.sweep_temp_files(Path(folder) / CHECKPOINT_DIR)


def discard_uncommitted(folder: Path) -> None:
    """A run killed before its first checkpoint restarts from step 0: drop what it left."""
    truncate_metrics(folder, 0)
    sweep(folder)
    for stale in (Path(folder) / CHECKPOINT_DIR).glob("step-*"):
        stale.unlink()


# ----------------------------------------------------------------------------- resuming

def resume_plan(folder: Path, given: dict, launch_only_given: list[str]) -> tuple[dict, dict, dict]:
    """What ``genzoo train --resume folder`` continues: (run.json, the training options with the
    resumable ones in ``given`` applied, the model's config.json record).

    ``given``: training options named on the command line; ``launch_only_given``: names of
    :data:`LAUNCH_ONLY` options given. Anything that would change the result is refused.
    """
    folder = Path(folder)
    record = read_record(folder)
    fixed = sorted(set(given) - set(RESUMABLE_OPTIONS)) + list(launch_only_given)
    if fixed:
        raise GenzooError(f"--resume continues the run as launched; it cannot change --{fixed[0].replace('_', '-')} "
                          f"(only {', '.join('--' + o.replace('_', '-') for o in RESUMABLE_OPTIONS)}, --threads, "
                          f"--device)")
    if not isinstance(record.get("train"), dict):
        raise GenzooError(f"{folder / RUN_FILE}: not a genzoo run record")
    if committed_step(folder) is None and len(read_metrics(folder)) > 1:
        # a run killed before its first checkpoint has at most one metrics line; this one trained
        # further and ships without checkpoints (pretrained/): resuming would retrain it from step 0
        raise GenzooError(f"{folder}: trained weights but no checkpoint (a shipped model?); --resume would start it "
                          f"again from step 0 over them: train a new run instead")
    return record, {**record["train"], **given}, ckpt.read_json(folder / CONFIG_FILE)


def config_path(folder: Path) -> Path:
    return Path(folder) / CONFIG_FILE


def model_record(folder: Path) -> dict:
    """The run's config.json record ({"format", "model", "config"}), without building the model."""
    return ckpt.read_json(config_path(folder))


def _checked_model_record(folder: Path) -> dict:
    record = model_record(folder)
    if not (isinstance(record, dict) and catalog.is_model(record.get("model")) and isinstance(record.get("config"),
                                                                                              dict)):
        raise GenzooError(f"{config_path(folder)}: not a genzoo model config")
    return record
