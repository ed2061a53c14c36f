#!/usr/bin/env bash
# vkpeft against PyTorch on the same Stable Diffusion UNet, same random weights, same machine:
#   1. `vkpeft bench unet --cfg --save DIR`: a sampling step with classifier-free guidance (UNet
#      batch 2); it also writes the weights (DIR/unet, a diffusers folder) and its inputs and
#      noise_pred (DIR/unet_io.safetensors)
#   2. parity: bench/torch_unet.py recomputes noise_pred from those weights and inputs in float64;
#      max |vkpeft - torch| / max |torch| (and the RMS ratio)
#   3. the same sampling step in PyTorch (torch_unet.py --mode sample --cfg), once per thread
#      setting (torch.set_num_threads x OPENBLAS_NUM_THREADS, see COMBOS); the best one is compared
#   4. a LoRA training step (r 4 on to_q/to_k/to_v/to_out.0, MSE, backward, AdamW, clip 1) in both,
#      the same thread settings for PyTorch
# Ratios are PyTorch seconds / vkpeft seconds (> 1: vkpeft is faster). Memory: vkpeft's allocated
# device memory and both processes' peak resident memory (on lavapipe device memory is host memory,
# so the resident peaks compare like with like; PyTorch's peak is restarted after loading, since
# its weights file is memory-mapped).
#
# Usage: bench/compare_unet.sh [CONFIG] [LATENT] [STEPS]   (default sd15 64 2: median of 2 timed runs
#        after a warm-up run, per process)
# Environment: VKPEFT (the vkpeft binary; default $VKPEFT_BUILD_DIR/vkpeft or build/vkpeft), PYTHON
#              (a python3 with torch), THREADS (lavapipe's LP_NUM_THREADS, default 2), COMBOS (PyTorch
#              settings "torch_threads:openblas_threads ...", default "1:1 2:1 1:2 2:2"), OUT (folder
#              for the weights and the JSON of every run; default a temporary folder, removed).
# Needs PyTorch: apt-get install -y python3-torch (Debian 12 ships 1.13) — benchmark only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
config=${1:-sd15}
latent=${2:-64}
steps=${3:-2}
threads=${THREADS:-2}
combos=${COMBOS:-"1:1 2:1 1:2 2:2"}
vkpeft=${VKPEFT:-${VKPEFT_BUILD_DIR:-$root/build}/vkpeft}

source "$root/bench/torch_python.sh" compare_unet.sh
if ! "$vkpeft" bench unet --help >/dev/null 2>&1; then
  echo "compare_unet.sh: $vkpeft has no 'bench unet': build first (scripts/build) or set VKPEFT" >&2
  exit 2
fi
if [ -n "${OUT:-}" ]; then
  work=$OUT
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

export LP_NUM_THREADS=$threads
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uptime | sed 's/.*load average/load average/')"
echo "vkpeft: $vkpeft (LP_NUM_THREADS=$threads); torch $("$py" -c 'import torch; print(torch.__version__)') via $py"
echo "model: $config UNet, random weights, latents ${latent}x${latent}, 77 text tokens; median of $steps runs after a warm-up"

run_torch() {   # mode, extra args...: one JSON line per thread setting into $work/torch_<mode>_<tt>_<ob>.json
  local mode=$1
  shift
  for c in $combos; do
    local tt=${c%%:*} ob=${c##*:}
    OPENBLAS_NUM_THREADS=$ob "$py" "$root/bench/torch_unet.py" --model "$work/unet" --mode "$mode" --latent "$latent" \
      --steps "$steps" --threads "$tt" "$@" | sed "s/}\$/, \"openblas_threads\": $ob, \"load\": $(cut -d' ' -f1 /proc/loadavg)}/" \
      >"$work/torch_${mode}_${tt}_${ob}.json"
    echo "  torch $mode threads $tt, OPENBLAS $ob: $(grep -o '"step_s": [0-9.]*' "$work/torch_${mode}_${tt}_${ob}.json")"
  done
}

echo "[1/4] vkpeft sampling step (--cfg), saving weights and io to $work"
"$vkpeft" bench unet --config "$config" --latent "$latent" --steps "$steps" --cfg --save "$work" 2>"$work/vk_sample.log" \
  | tr -d '\n' >"$work/vk_sample.json"
echo "  vkpeft sample: $(grep -o '"step_s": [0-9.]*' "$work/vk_sample.json")"
echo "[2/4] parity (torch float64 on the same weights and inputs)"
OPENBLAS_NUM_THREADS=1 "$py" "$root/bench/torch_unet.py" --model "$work/unet" --mode parity \
  --io "$work/unet_io.safetensors" --threads "$threads" >"$work/parity.json"
echo "[3/4] torch sampling step"
run_torch sample --cfg
echo "[4/4] LoRA training step"
"$vkpeft" bench unet --config "$config" --latent "$latent" --steps "$steps" --train 2>"$work/vk_train.log" \
  | tr -d '\n' >"$work/vk_train.json"
echo "  vkpeft train: $(grep -o '"step_s": [0-9.]*' "$work/vk_train.json")"
run_torch train

"$py" - "$work" "$config" "$latent" <<'PY'
import glob, json, sys
work, config, latent = sys.argv[1], sys.argv[2], int(sys.argv[3])
mib = lambda b: b / 1048576
par = json.load(open(f"{work}/parity.json"))
res = {"bench": "compare_unet", "config": config, "latent": latent, "parity": par}
print(f"\nparity ({config}, noise_pred {par['shape']}): max |vkpeft - torch| / max |torch| = {par['max_rel_err']:.2e}, "
      f"RMS ratio {par['rms_rel_err']:.2e}")
for mode, vkname in (("sample", "vk_sample"), ("train", "vk_train")):
    vk = json.load(open(f"{work}/{vkname}.json"))
    runs = [json.load(open(p)) for p in sorted(glob.glob(f"{work}/torch_{mode}_*.json"))]
    best = min(runs, key=lambda r: r["step_s"])
    ratio = best["step_s"] / vk["step_s"]
    res[mode] = {"vkpeft": vk, "torch_best": best, "torch_all": runs, "ratio_torch_over_vkpeft": round(ratio, 3)}
    what = "sampling step (CFG, UNet batch 2)" if mode == "sample" else "LoRA training step (batch 1)"
    print(f"{what}: vkpeft {vk['step_s']:.2f} s | PyTorch {best['step_s']:.2f} s (threads {best['threads']}, "
          f"OPENBLAS {best['openblas_threads']}) | PyTorch / vkpeft time = {ratio:.3f}")
    print(f"  memory: vkpeft device {mib(vk['peak_device_bytes']):.0f} MiB, resident {mib(vk['peak_rss_bytes']):.0f} MiB | "
          f"PyTorch resident {mib(best['peak_rss_bytes']):.0f} MiB")
    if mode == "train" and vk.get("trainable_params") != best.get("trainable_params"):
        print(f"  warning: trainable parameters differ: vkpeft {vk.get('trainable_params')}, torch {best.get('trainable_params')}")
print(json.dumps(res))
PY
echo "after: $(uptime | sed 's/.*load average/load average/')"
