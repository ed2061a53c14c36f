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
# LoRA methods are also run with --unfused-lora (the low-rank term as separate matmul, scale
# and add ops, as before the fused LoRA linear of core/ops/matmul.c), in the same loop, so the
# before/after ratio of vkpeft comes from one run on the same load.
#
# Usage: bench/compare_torch.sh [STEPS] [THREADS] [REPEATS]   (default 20 steps, 2 threads, 3 repeats)
#        CONFIG=vit-s: ViT-S/16 at batch 32 with method `lora` (r 8 on query/value + head) instead
#        of the demo model (METHODS overrides the method list, e.g. METHODS="lora full"; WARMUP sets
#        PyTorch's untimed steps, default 3: 1 is enough for ViT-S, whose steps take seconds).
#        COMBOS="T:B ...": PyTorch thread settings to try per run (torch.set_num_threads(T),
#        OPENBLAS_NUM_THREADS=B); default "THREADS:${OPENBLAS_NUM_THREADS:-1}". The best is compared.
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

config=${CONFIG:-demo}
case $config in
  demo) methods=${METHODS:-lora_all full}; model="demo ViT 28/7, hidden 64, 4 layers, 4 heads, MLP 128, batch 64" ;;
  vit-s) methods=${METHODS:-lora}; model="ViT-S/16 224, hidden 384, 12 layers, 6 heads, MLP 1536, batch 32" ;;
  *) echo "compare_torch.sh: CONFIG must be demo or vit-s" >&2; exit 2 ;;
esac
export LP_NUM_THREADS=$threads
blas_default=${OPENBLAS_NUM_THREADS:-1}
combos=${COMBOS:-$threads:$blas_default}
echo "machine: $(nproc) CPUs, $(uptime | sed 's/.*load average/load average/')"
echo "vkpeft: $vkpeft (LP_NUM_THREADS=$threads); torch $("$py" -c 'import torch; print(torch.__version__)') via $py (torch threads : OPENBLAS_NUM_THREADS = $combos)"
echo "model: $model, random data; $steps timed steps per run, $repeats runs"

runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
for ((rep = 1; rep <= repeats; rep++)); do
  for method in $methods; do
    variants="default"
    case $method in lora*) variants="fused unfused" ;; esac
    for variant in $variants; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      unfused=()
      [ "$variant" = unfused ] && unfused=(--unfused-lora)
      vk=$("$vkpeft" bench peft --config "$config" --methods "$method" --steps "$steps" "${unfused[@]}" --json 2>/dev/null | tr -d '\n\t')
      printf '{"rep": %d, "method": "%s", "side": "vkpeft", "variant": "%s", "load": %s, "result": %s}\n' \
        "$rep" "$method" "$variant" "$load" "$vk" >>"$runs"
    done
    for combo in $combos; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      th=$(OPENBLAS_NUM_THREADS=${combo#*:} "$py" "$root/bench/torch_vit_lora.py" --config "$config" --method "$method" \
        --steps "$steps" --warmup "${WARMUP:-3}" --threads "${combo%%:*}")
      printf '{"rep": %d, "method": "%s", "side": "torch", "variant": "%s", "load": %s, "result": %s}\n' \
        "$rep" "$method" "$combo" "$load" "$th" >>"$runs"
    done
  done
done

"$py" - "$runs" "$threads" "$steps" "$config" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
out = []
for method in dict.fromkeys(r["method"] for r in runs):
    rs = [r for r in runs if r["method"] == method]
    res = {"method": method, "loads": [r["load"] for r in rs]}
    best = {}
    for r in rs:
        if r["side"] == "vkpeft":
            row = r["result"]["methods"][0]
            if not row.get("ok") or row.get("images_per_s") is None:
                sys.exit(f"vkpeft bench peft failed for {method}: {row.get('error', 'no timing')}")
            ips, key = row["images_per_s"], "vkpeft_" + r["variant"]
            res[key + "_dispatches"] = row["dispatches"]
            res["vkpeft_trainable"] = row["trainable_params"]
        else:
            ips, key = r["result"]["images_per_s"], "torch_" + r["variant"]
            res["torch_trainable"] = r["result"]["trainable_params"]
        print(f"  run {r['rep']} {method:>8} {key:>16} (load {r['load']:.2f}): {ips:8.2f} images/s")
        best.setdefault(key, []).append(ips)
    for key, v in best.items():
        res[key + "_images_per_s_best"] = round(max(v), 2)
        res[key + "_images_per_s_median"] = round(statistics.median(v), 2)
    tkeys = [k for k in best if k.startswith("torch_")]
    tbest = max(tkeys, key=lambda k: max(best[k]))
    res["torch_best_setting"] = tbest[len("torch_"):]
    line = f"{method:>9}: PyTorch best {max(best[tbest]):.2f} images/s ({res['torch_best_setting']})"
    for variant in ("fused", "unfused", "default"):
        k = "vkpeft_" + variant
        if k in best:
            res[f"ratio_{variant}_best"] = round(max(best[k]) / max(best[tbest]), 3)
            line += (f" | vkpeft {variant} {max(best[k]):.2f} ({res[k + '_dispatches']} dispatches)"
                     f" = {res[f'ratio_{variant}_best']:.3f}x PyTorch")
    if "vkpeft_unfused" in best:
        res["fused_over_unfused_median"] = round(statistics.median(best["vkpeft_fused"]) /
                                                 statistics.median(best["vkpeft_unfused"]), 3)
        line += f" | fused / unfused (medians) {res['fused_over_unfused_median']:.3f}"
    print(line)
    if res.get("vkpeft_trainable") != res.get("torch_trainable"):
        print(f"  warning: trainable parameters differ: vkpeft {res.get('vkpeft_trainable')}, torch {res.get('torch_trainable')}")
    out.append(res)
print(json.dumps({"bench": "compare_torch", "config": sys.argv[4], "threads": int(sys.argv[2]),
                  "steps": int(sys.argv[3]), "results": out}))
PY
echo "after: $(uptime | sed 's/.*load average/load average/')"
