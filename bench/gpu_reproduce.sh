#!/usr/bin/env bash
# A ready GPU reproduction: trains the default PixelCNN and the one-CPU-hour record model (the
# shipped Row LSTM's recipe, genzoo/recipes.py, through `genzoo reproduce`) on static binarized MNIST with --precision auto (bf16 on a
# GPU) and --compile, MINUTES each (default 4: both, with their full-test-set evaluations, fit
# in 9 minutes on one H100), scores the full 10,000-image test set with `genzoo eval`, and writes
# one JSON line per model to OUT/results.jsonl (and stdout), with the device it ran on.
#
#   bash bench/gpu_reproduce.sh [OUT]                      (default runs/gpu)
#   MINUTES=4 DATA_DIR=data/binarized_mnist bash bench/gpu_reproduce.sh $OUT/runs
#   SMOKE=1 bash bench/gpu_reproduce.sh /tmp/smoke         (tiny models, seconds: what the test suite runs on the CPU)
#
# On the lent GPU machine (no network, its own python3 with torch): binarized MNIST must travel
# with the working tree, e.g. `mkdir -p data && cp -r ../shared/data/binarized_mnist data/` here,
# then carry "data" and pass DATA_DIR=data/binarized_mnist. Python: $PYTHON, else .venv/bin/python,
# else python3, with this checkout's src/ on PYTHONPATH (no install needed).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu}
MINUTES=${MINUTES:-4}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
DATA=(--data binarized-mnist)
[ -n "${DATA_DIR:-}" ] && DATA+=(--data-dir "$DATA_DIR")
if [ -n "${SMOKE:-}" ]; then
    MINUTES=${SMOKE_MINUTES:-0.02}
    PIXELCNN=(--hidden-channels 4 --num-layers 1 --head-channels 8 --batch-size 64)
    RECORD=(--hidden-channels 4 --num-layers 1 --head-channels 8 --batch-size 64)
    COMPILE=()
else
    PIXELCNN=(--batch-size 256 --lr 2e-3 --warmup-steps 200 --epochs 30)  # the default PixelCNN (414k parameters)
    COMPILE=(--compile)
fi
mkdir -p "$OUT"
DEVICE=$($PY -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')")
for spec in "pixelcnn:pixelcnn" "row-lstm:record"; do
    model=${spec%%:*}; name=${spec##*:}
    rm -rf "$OUT/$name"
    start=$(date +%s)
    if [ "$name" = record ] && [ -z "${SMOKE:-}" ]; then  # the recipe, with a cosine over 30 epochs
        $PY -m genzoo reproduce row-lstm-binarized-mnist --out "$OUT/$name" --minutes "$MINUTES" --epochs 30 --no-eval \
            ${DATA_DIR:+--data-dir "$DATA_DIR"} >&2
    else
        if [ "$name" = pixelcnn ]; then opts=("${PIXELCNN[@]}"); else opts=("${RECORD[@]}"); fi
        $PY -m genzoo train "$model" "${DATA[@]}" --out "$OUT/$name" --minutes "$MINUTES" --eval-limit 2000 \
            --checkpoint-minutes 0 "${COMPILE[@]}" "${opts[@]}" >&2
    fi
    train_s=$(( $(date +%s) - start ))
    $PY -m genzoo eval "$OUT/$name" --json "${DATA_DIR:+--data-dir}" ${DATA_DIR:+"$DATA_DIR"} > "$OUT/$name.eval.json"
    $PY - "$OUT/$name" "$OUT/$name.eval.json" "$DEVICE" "$MINUTES" "$train_s" "$model" <<'PY' | tee -a "$OUT/results.jsonl"
import json, sys
run, ev, device, minutes, train_s, model = sys.argv[1:]
record = json.loads(open(ev).read())
launch = json.loads(open(f"{run}/run.json").read())["train"]
last = [json.loads(l) for l in open(f"{run}/metrics.jsonl")][-1]
print(json.dumps({"model": model, "run": run, "device": device, "minutes_budget": float(minutes), "train_wall_s": int(train_s),
                  "precision": launch["precision"], "compile": launch["compile"], "steps": last["step"],
                  "images_per_s": last["images_per_s"], "test_nll_nats": record["nll_nats"],
                  "test_bits_per_dim": record["bits_per_dim"], "test_count": record["count"],
                  "likelihood_kind": record["likelihood_kind"]}))
PY
done
