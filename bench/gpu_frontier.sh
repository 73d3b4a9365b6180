#!/usr/bin/env bash
# NADE and MADE recipes swept on a lent GPU, all runs at once (one process each), to choose the recipe that the
# one-CPU-hour runs then use (docs/RESULTS.md, "NADE and MADE"). Static binarized MNIST, batch 100 (the papers'),
# fp32 (as on the CPU box, so that a recipe carries over), cosine after 200 warm-up steps, each run capped at
# MINUTES (default 3.2) and then scored exactly on the full validation and test splits; the validation figure is
# the one that picks, as the papers' early stopping did.
#
#   MINUTES=3.2 DATA_DIR=data/binarized_mnist bash bench/gpu_frontier.sh OUT [RUNS]
#   SMOKE=1 bash bench/gpu_frontier.sh /tmp/frontier   (tiny models; about 4 minutes on the 2-core CPU box, mostly
#                                                        process start-up and the full-split evaluations)
#
# OUT receives frontier.jsonl (one JSON line per run: recipe, steps, epochs done, valid and test NLL),
# curves.jsonl (every run's per-epoch metrics, tagged) and logs.txt; the run folders go to RUNS (default
# /tmp/gpu-frontier-runs) and the validation-picked best of each family to OUT/best.tar.gz.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu-frontier}
RUNS=${2:-/tmp/gpu-frontier-runs}
MINUTES=${MINUTES:-3.2}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
DATA_OPT=()
[ -n "${DATA_DIR:-}" ] && DATA_OPT=(--data-dir "$DATA_DIR")
COMMON=(--data binarized-mnist --batch-size 100 --warmup-steps 200 --eval-limit 1000 --checkpoint-minutes 0
        --precision fp32 --minutes "$MINUTES")
MADE=(--direct --hidden-units 500)
NADE=(--hidden-units 500)
if [ -n "${SMOKE:-}" ]; then
    MINUTES=0.05
    COMMON=(--data binarized-mnist --batch-size 100 --warmup-steps 2 --eval-limit 100 --checkpoint-minutes 0
            --precision fp32 --minutes "$MINUTES" --train-limit 500 --threads 1)
    MADE=(--direct --hidden-units 8)
    NADE=(--hidden-units 8)
fi
rm -rf "$RUNS" && mkdir -p "$RUNS" "$OUT"

# name | model | options beyond COMMON and the family's
RECIPES=(
    "made-1m-20|made|--lr 2e-3 --epochs 20"
    "made-1m-40-wd1e-4|made|--lr 2e-3 --epochs 40 --weight-decay 1e-4"
    "made-1m-40-wd1e-3|made|--lr 2e-3 --epochs 40 --weight-decay 1e-3"
    "made-8m-60|made|--lr 2e-3 --epochs 60 --num-masks 8"
    "made-32m-60|made|--lr 2e-3 --epochs 60 --num-masks 32"
    "nade-10-lr1e-3|nade|--lr 1e-3 --epochs 10"
    "nade-10-lr3e-3|nade|--lr 3e-3 --epochs 10"
    "nade-40-lr1e-3|nade|--lr 1e-3 --epochs 40"
)

# RECIPES_OVERRIDE: the same "name|model|options" lines, one per line, instead of the list above
[ -n "${RECIPES_OVERRIDE:-}" ] && mapfile -t RECIPES <<< "$RECIPES_OVERRIDE"

one() {  # NAME MODEL OPTIONS...
    local name=$1 model=$2; shift 2
    local family=("${MADE[@]}")
    [ "$model" = nade ] && family=("${NADE[@]}")
    local start=$(date +%s)
    $PY -m genzoo train "$model" "${COMMON[@]}" "${DATA_OPT[@]}" "${family[@]}" "$@" --out "$RUNS/$name" \
        > "$RUNS/$name.log" 2>&1 || { echo "$name: training failed" >> "$RUNS/$name.log"; return 0; }
    echo $(( $(date +%s) - start )) > "$RUNS/$name.wall"
    for split in valid test; do
        $PY -m genzoo eval "$RUNS/$name" --split $split --json "${DATA_OPT[@]}" > "$RUNS/$name.$split.json" \
            2>> "$RUNS/$name.log" || echo "$name: eval $split failed" >> "$RUNS/$name.log"
    done
}

for recipe in "${RECIPES[@]}"; do
    IFS='|' read -r name model opts <<< "$recipe"
    # shellcheck disable=SC2086
    one "$name" "$model" $opts &
done
wait

$PY - "$RUNS" "$OUT" "$MINUTES" "${RECIPES[@]}" <<'PY'
import json, os, sys, tarfile
runs, out, minutes, recipes = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
rows, best = [], {}
with open(f"{out}/curves.jsonl", "w") as curves, open(f"{out}/logs.txt", "w") as logs:
    for recipe in recipes:
        name, model, opts = recipe.split("|")
        logs.write(f"== {name}\n" + "".join(open(f"{runs}/{name}.log").readlines()[-8:]))
        row = {"run": name, "model": model, "options": opts, "minutes_cap": minutes}
        if os.path.exists(f"{runs}/{name}/metrics.jsonl"):
            metrics = [json.loads(l) for l in open(f"{runs}/{name}/metrics.jsonl")]
            for m in metrics:
                curves.write(json.dumps({"run": name, **m}) + "\n")
            last = metrics[-1] if metrics else {}
            row.update(steps=last.get("step"), epochs_done=last.get("epoch"), partial=last.get("partial"),
                       train_nll=last.get("train_nll"), images_per_s=last.get("images_per_s"))
        if os.path.exists(f"{runs}/{name}.wall"):
            row["wall_s"] = int(open(f"{runs}/{name}.wall").read())
        for split in ("valid", "test"):
            try:
                ev = json.loads(open(f"{runs}/{name}.{split}.json").read())
                row[f"{split}_nll"] = ev["nll_nats"]
            except (OSError, ValueError, KeyError):
                row[f"{split}_nll"] = None
        rows.append(row)
        family = "made-1m" if name.startswith("made-1m") else model if model == "nade" else "made-ensemble"
        if row["valid_nll"] is not None and (family not in best or row["valid_nll"] < best[family]["valid_nll"]):
            best[family] = row
with open(f"{out}/frontier.jsonl", "w") as f:
    for row in rows:
        print(json.dumps(row))
        f.write(json.dumps(row) + "\n")
with tarfile.open(f"{out}/best.tar.gz", "w:gz") as tar:
    for row in best.values():
        for item in ("config.json", "run.json", "metrics.jsonl", "model.safetensors"):
            if os.path.exists(f"{runs}/{row['run']}/{item}"):
                tar.add(f"{runs}/{row['run']}/{item}", arcname=f"{row['run']}/{item}")
PY
