#!/usr/bin/env bash
# Training throughput of vkpeft against PyTorch on the same model: the demo ViT (image 28, patch 7,
# hidden 64, 4 layers, 4 heads, MLP 128, 10 labels, batch 64), random inputs, AdamW with gradient
# clipping. Two methods, each measured back to back in both frameworks:
#   lora_all  LoRA r 8 / alpha 16 on query, key, value, attention output, fc1, fc2; classifier trains
#   full      full fine-tuning
# The pair is run REPEATS times, interleaved (a shared machine's load changes from minute to
# minute, and PyTorch's OpenMP threads slow down badly when another process takes a core); each
# run's images/s comes from the median of STEPS steps. Prints every run, then per method the best
# and the median run of each framework and their ratios (vkpeft / PyTorch), then one JSON line.
#
# Usage: bench/compare_torch.sh [STEPS] [THREADS] [REPEATS]   (default 20 steps, 2 threads, 3 repeats)
# Environment: VKPEFT (the vkpeft binary; default $VKPEFT_BUILD_DIR/vkpeft or build/vkpeft),
#              PYTHON (a python3 with torch). Both frameworks get the same CPU thread count:
#              torch.set_num_threads(THREADS) and, for lavapipe, LP_NUM_THREADS=THREADS.
#              OPENBLAS_NUM_THREADS defaults to 1: Debian's torch does its matrix products in
#              OpenBLAS, whose own thread pool (one per core by default) comes on top of torch's
#              OpenMP threads; the oversubscribed pools spin-wait, and a step can get 10-100x
#              slower whenever another process wants a core. With 1, torch is both faster and
#              steady here (set OPENBLAS_NUM_THREADS to measure the other way).
# Needs PyTorch: apt-get install -y python3-torch (Debian 12 ships 1.13) — an optional benchmark
# dependency, not installed by scripts/setup.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
steps=${1:-20}
threads=${2:-2}
repeats=${3:-3}
vkpeft=${VKPEFT:-${VKPEFT_BUILD_DIR:-$root/build}/vkpeft}

source "$root/bench/torch_python.sh" compare_torch.sh
if [ ! -x "$vkpeft" ]; then
  echo "compare_torch.sh: $vkpeft not found: build first (scripts/build) or set VKPEFT" >&2
  exit 2
fi
if ! "$vkpeft" bench peft --help >/dev/null 2>&1; then
  echo "compare_torch.sh: $vkpeft has no 'bench peft' benchmark" >&2
  exit 2
fi

export LP_NUM_THREADS=$threads
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
echo "machine: $(nproc) CPUs, $(uptime | sed 's/.*load average/load average/')"
echo "vkpeft: $vkpeft (LP_NUM_THREADS=$threads); torch $("$py" -c 'import torch; print(torch.__version__)') via $py (set_num_threads($threads), OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS)"
echo "model: demo ViT 28/7, hidden 64, 4 layers, 4 heads, MLP 128, batch 64, random data; $steps timed steps per run, $repeats runs"

runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
for ((rep = 1; rep <= repeats; rep++)); do
  for method in lora_all full; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    vk=$("$vkpeft" bench peft --config demo --methods "$method" --steps "$steps" --json 2>/dev/null | tr -d '\n\t')
    th=$("$py" "$root/bench/torch_vit_lora.py" --method "$method" --steps "$steps" --threads "$threads")
    printf '{"rep": %d, "method": "%s", "load": %s, "vkpeft": %s, "torch": %s}\n' "$rep" "$method" "$load" "$vk" "$th" >>"$runs"
  done
done

"$py" - "$runs" "$threads" "$steps" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
out = []
for method in ("lora_all", "full"):
    rs = [r for r in runs if r["method"] == method]
    rows = [r["vkpeft"]["methods"][0] for r in rs]
    for row in rows:
        if not row.get("ok") or row.get("images_per_s") is None:
            sys.exit(f"vkpeft bench peft failed for {method}: {row.get('error', 'no timing')}")
    v = [row["images_per_s"] for row in rows]
    t = [r["torch"]["images_per_s"] for r in rs]
    for r, a, b in zip(rs, v, t):
        print(f"  run {r['rep']} {method:>8} (load {r['load']:.2f}): vkpeft {a:7.1f} images/s, "
              f"PyTorch {b:7.1f} images/s, ratio {a / b:.3f}")
    res = {"method": method,
           "vkpeft_images_per_s_best": round(max(v), 1), "vkpeft_images_per_s_median": round(statistics.median(v), 1),
           "vkpeft_dispatches": rows[0]["dispatches"], "vkpeft_trainable": rows[0]["trainable_params"],
           "torch_images_per_s_best": round(max(t), 1), "torch_images_per_s_median": round(statistics.median(t), 1),
           "torch_trainable": rs[0]["torch"]["trainable_params"], "torch_threads": rs[0]["torch"]["threads"],
           "ratio_best": round(max(v) / max(t), 3), "ratio_median": round(statistics.median(v) / statistics.median(t), 3),
           "loads": [r["load"] for r in rs]}
    out.append(res)
    print(f"{method:>9}: vkpeft {res['vkpeft_images_per_s_best']:8.1f} images/s | PyTorch "
          f"{res['torch_images_per_s_best']:8.1f} images/s | vkpeft / PyTorch = {res['ratio_best']:.3f} "
          f"(best of {len(rs)} runs each; medians {res['vkpeft_images_per_s_median']:.1f} vs "
          f"{res['torch_images_per_s_median']:.1f}: {res['ratio_median']:.3f})")
    if res["vkpeft_trainable"] != res["torch_trainable"]:
        print(f"  warning: trainable parameters differ: vkpeft {res['vkpeft_trainable']}, torch {res['torch_trainable']}")
print(json.dumps({"bench": "compare_torch", "threads": int(sys.argv[2]), "steps": int(sys.argv[3]), "results": out}))
PY
echo "after: $(uptime | sed 's/.*load average/load average/')"
