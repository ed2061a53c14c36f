#!/usr/bin/env bash
# Training throughput of vkpeft against PyTorch on the same model: the demo ViT (image 28, patch 7,
# hidden 64, 4 layers, 4 heads, MLP 128, 10 labels, batch 64), random inputs, AdamW with gradient
# clipping. Two methods, each measured back to back in both frameworks:
#   lora_all  LoRA r 8 / alpha 16 on query, key, value, attention output, fc1, fc2; classifier trains
#   full      full fine-tuning
# Prints both images/s numbers and the ratio vkpeft / PyTorch for each, then one JSON line.
#
# Usage: bench/compare_torch.sh [STEPS] [THREADS]     (default 20 timed steps, 2 threads)
# Environment: VKPEFT (the vkpeft binary; default $VKPEFT_BUILD_DIR/vkpeft or build/vkpeft),
#              PYTHON (a python3 with torch). Both frameworks get the same CPU thread count:
#              torch.set_num_threads(THREADS) and, for lavapipe, LP_NUM_THREADS=THREADS.
# Needs PyTorch: apt-get install -y python3-torch (Debian 12 ships 1.13) — an optional benchmark
# dependency, not installed by scripts/setup.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
steps=${1:-20}
threads=${2:-2}
vkpeft=${VKPEFT:-${VKPEFT_BUILD_DIR:-$root/build}/vkpeft}

py=""
for cand in ${PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' >/dev/null 2>&1; then
    py=$cand
    break
  fi
done
if [ -z "$py" ]; then
  echo "compare_torch.sh: PyTorch not found. Install it with: apt-get install -y python3-torch" >&2
  echo "  (Debian 12's 1.13; or pip install torch; or point PYTHON at a python3 that has torch)" >&2
  exit 2
fi
if [ ! -x "$vkpeft" ]; then
  echo "compare_torch.sh: $vkpeft not found: build first (scripts/build) or set VKPEFT" >&2
  exit 2
fi
if ! "$vkpeft" bench peft --help >/dev/null 2>&1; then
  echo "compare_torch.sh: $vkpeft has no 'bench peft' benchmark" >&2
  exit 2
fi

export LP_NUM_THREADS=$threads
echo "machine: $(nproc) CPUs, $(uptime | sed 's/.*load average/load average/')"
echo "vkpeft: $vkpeft (LP_NUM_THREADS=$threads); torch: $("$py" -c 'import torch; print(torch.__version__)') via $py (set_num_threads($threads))"
echo "model: demo ViT 28/7, hidden 64, 4 layers, 4 heads, MLP 128, batch 64, random data; $steps timed steps after warm-up"

results=()
for method in lora_all full; do
  vk=$("$vkpeft" bench peft --config demo --methods "$method" --steps "$steps" --json 2>/dev/null)
  th=$("$py" "$root/bench/torch_vit_lora.py" --method "$method" --steps "$steps" --threads "$threads")
  line=$("$py" - "$method" "$vk" "$th" <<'EOF'
import json, sys
method, vk, th = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
row = vk["methods"][0]
if not row.get("ok") or row.get("images_per_s") is None:
    sys.exit(f"vkpeft bench peft failed for {method}: {row.get('error', 'no timing')}")
v, t = row["images_per_s"], th["images_per_s"]
print(json.dumps({"method": method, "vkpeft_images_per_s": round(v, 1), "vkpeft_step_ms": round(row["step_ms"], 2),
                  "vkpeft_trainable": row["trainable_params"], "vkpeft_dispatches": row["dispatches"],
                  "torch_images_per_s": round(t, 1), "torch_step_ms": round(th["step_ms"], 2),
                  "torch_trainable": th["trainable_params"], "torch_threads": th["threads"],
                  "ratio": round(v / t, 3)}))
EOF
)
  results+=("$line")
  "$py" - "$line" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
print(f"{r['method']:>9}: vkpeft {r['vkpeft_images_per_s']:8.1f} images/s ({r['vkpeft_step_ms']:.1f} ms/step, "
      f"{r['vkpeft_dispatches']} dispatches) | PyTorch {r['torch_images_per_s']:8.1f} images/s "
      f"({r['torch_step_ms']:.1f} ms/step) | vkpeft / PyTorch = {r['ratio']:.2f}")
if r["vkpeft_trainable"] != r["torch_trainable"]:
    print(f"  warning: trainable parameters differ: vkpeft {r['vkpeft_trainable']}, torch {r['torch_trainable']}")
EOF
done
echo "after: $(uptime | sed 's/.*load average/load average/')"
printf '{"bench": "compare_torch", "threads": %s, "steps": %s, "results": [%s]}\n' "$threads" "$steps" \
  "$(IFS=,; echo "${results[*]}")"
