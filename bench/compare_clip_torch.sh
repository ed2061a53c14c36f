#!/usr/bin/env bash
# Training throughput and peak memory of a CLIP contrastive LoRA step: vkpeft (lavapipe) against
# plain PyTorch CPU (bench/torch_clip_lora.py) on the same model: the demo's small CLIP
# (configs/clip_demo_pretrain.json: 32 px / patch 8 vision tower, 24-token text tower, width 64,
# 2 layers, 2 heads, MLP 256, projection 64, CLIP's 49,408-token vocabulary), random initial
# weights, LoRA r 8 / alpha 16 on q_proj and v_proj of both towers, batch 64, AdamW, grad clip 1.
# vkpeft runs `vkpeft train` (real Noto emoji batches from its threaded loader, no validation) and
# its speed is the median images/s of its metrics windows after the first; PyTorch uses random
# pixels and captions (the model's cost does not depend on the values). Peak memory: vkpeft's
# device memory in use (metrics device_mb; on lavapipe that is host RAM) and the process's max RSS
# (/usr/bin/time); PyTorch's max RSS (resource.getrusage).
# The two sides run back to back, REPEATS times interleaved (the machine is shared; its load changes).
# Usage: bench/compare_clip_torch.sh [STEPS] [THREADS] [REPEATS]   (default 30 steps, 2 threads, 2 repeats)
# Environment: VKPEFT (binary; default $VKPEFT_BUILD_DIR/vkpeft or build/vkpeft), PYTHON (python3 with torch).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
steps=${1:-30} threads=${2:-2} repeats=${3:-2}
vkpeft=${VKPEFT:-${VKPEFT_BUILD_DIR:-$root/build}/vkpeft}
source "$root/bench/torch_python.sh" compare_clip_torch.sh
[ -x "$vkpeft" ] || { echo "compare_clip_torch.sh: $vkpeft not found: build first or set VKPEFT" >&2; exit 2; }
export LP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) CPUs, $(uptime | sed 's/.*load average/load average/')"
echo "vkpeft: $vkpeft (LP_NUM_THREADS=$threads); torch $("$py" -c 'import torch; print(torch.__version__)') (set_num_threads($threads), OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS)"
for ((rep = 1; rep <= repeats; rep++)); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -f '%M' -o "$tmp/rss-$rep" "$vkpeft" train "$root/configs/clip_demo_pretrain.json" \
    --set output_dir="$tmp/vk-$rep" --set data.train=emoji-noto --set data.val_fraction=0 \
    --set train.max_steps="$steps" --set train.log_every=5 --set train.eval_every=0 \
    --set 'peft=[{"method":"lora","r":8,"lora_alpha":16,"target_modules":["q_proj","v_proj"]}]' >"$tmp/vk-$rep.log" 2>&1 \
    || { tail -5 "$tmp/vk-$rep.log" >&2; exit 1; }
  th=$("$py" "$root/bench/torch_clip_lora.py" --steps "$steps" --threads "$threads")
  echo "{\"rep\": $rep, \"load\": $load, \"vk_rss_kb\": $(cat "$tmp/rss-$rep"), \"torch\": $th}" >"$tmp/run-$rep.json"
  grep -o '[0-9]* trainable of [0-9]* parameters' "$tmp/vk-$rep.log" | head -1 >"$tmp/vk-$rep.params"
done
"$py" - "$tmp" "$repeats" "$steps" "$threads" <<'PY'
import json, statistics, sys
tmp, repeats, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = []
for rep in range(1, repeats + 1):
    run = json.load(open(f"{tmp}/run-{rep}.json"))
    ms = [json.loads(l) for l in open(f"{tmp}/vk-{rep}/metrics.jsonl") if '"images_per_s"' in l]
    vk_ips = statistics.median(m["images_per_s"] for m in ms[1:]) if len(ms) > 1 else ms[0]["images_per_s"]
    dev = max(m["device_mb"] for m in ms)
    t = run["torch"]
    r = {"rep": rep, "load": run["load"], "vkpeft_steps_per_s": round(vk_ips / 64, 3), "torch_steps_per_s": t["steps_per_s"],
         "ratio": round(vk_ips / 64 / t["steps_per_s"], 3), "vkpeft_device_mb": round(dev, 1),
         "vkpeft_max_rss_mb": round(run["vk_rss_kb"] / 1024, 1), "torch_max_rss_mb": t["max_rss_mb"],
         "vkpeft_params": open(f"{tmp}/vk-{rep}.params").read().strip(), "torch_trainable": t["trainable_params"]}
    out.append(r)
    print(f"  run {rep} (load {r['load']}): vkpeft {r['vkpeft_steps_per_s']:.3f} steps/s (device {r['vkpeft_device_mb']} MiB, "
          f"RSS {r['vkpeft_max_rss_mb']} MiB), PyTorch {r['torch_steps_per_s']:.3f} steps/s (RSS {r['torch_max_rss_mb']} MiB), "
          f"ratio {r['ratio']:.3f}; vkpeft {r['vkpeft_params']}, torch {r['torch_trainable']} trainable")
print(json.dumps({"bench": "compare_clip_torch", "steps": steps, "threads": threads, "batch": 64, "runs": out}))
PY
echo "after: $(uptime | sed 's/.*load average/load average/')"
