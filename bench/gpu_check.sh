#!/usr/bin/env bash
# bench/gpu_check.sh — the GPU checks of issue 12 as one call of the device tool, run from the kit
# that scripts/device_kit builds (carry [".devkit"]; nothing is built or installed there):
#   1. `vkpeft devices` (the family each device gets, its limits);
#   2. correctness on the GPU's own driver, validation layer on: the matmul suite (every layout,
#      batch, split K, 16-bit weight and each matmul_gpu tile against float64), LoRA linears,
#      training (AdamW against torch's arithmetic, checkpointing, folds);
#   3. throughput: `bench matmul` of both families at 1024^2 and of the GPU family at 4096^2 and on
#      ViT-B/16 shapes; the ViT-B/16 LoRA step of the issue's anchor (224^2, batch 64, r 16 on
#      query/value; PyTorch on an H200: 504 images/s f32, 1,937 with bf16 autocast, 3.79 GiB), with
#      the base in f32 and in bf16; an SD 1.5 UNet sampling step at 64x64 latents with CFG in f16
#      (PyTorch's anchor: 0.57 s per image for 20 steps, CFG, f16, decode included) and the VAE
#      decode.
# Every step has its own time limit and its output goes to $OUT/<step>.txt (the device tool brings
# $OUT back); a summary line per step goes to stdout. The device tool allows 600 s per call: the
# argument picks a part (`tests`: 1-2; `bench`: 1 and 3; none: all, for a fast device).
# QUICK=1 shrinks the products and models so the script itself can be tried on lavapipe.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
KIT=${KIT:-.devkit}
[ -x "$KIT/bin/vkpeft" ] || { echo "gpu_check: $KIT/bin/vkpeft missing: run scripts/device_kit first" >&2; exit 2; }
export PATH="$PWD/$KIT/bin:$PATH" LD_LIBRARY_PATH="$PWD/$KIT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -f "$KIT/layers/VkLayer_khronos_validation.json" ] && export VK_LAYER_PATH="$PWD/$KIT/layers"
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$nv_icd" ] && [ -z "${VK_DRIVER_FILES:-}" ] && export VK_DRIVER_FILES=$nv_icd
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/gpu_check_cache}

step() {   # step NAME SECONDS COMMAND...
  local name=$1 limit=$2 t0 rc
  shift 2
  t0=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  rc=$?
  # The figures that matter from a bench's JSON, else the output's last line.
  local summary
  summary=$(grep -Eo '"(shader_gflops|dispatches|step_ms|step_s|images_per_s|peak_device_bytes|kernels)":[[:space:]]*("[a-z]+"|[0-9.e+-]+)' \
    "$OUT/$name.txt" | tr -s '\n\t' '  ')
  [ -n "$summary" ] || summary=$(grep -v '^\s*$' "$OUT/$name.txt" | tail -1)
  printf '%-22s rc %-3s %4ss  %s\n' "$name" "$rc" "$(($(date +%s) - t0))" "${summary:0:200}"
}

part=${1:-all}
case $part in tests | bench | all) ;; *) echo "usage: bench/gpu_check.sh [tests|bench|all]" >&2; exit 2 ;; esac
if [ "${QUICK:-0}" = 1 ]; then
  big=256 vitb="--config demo --batch 64" sd="--config tiny --latent 16" vae=8 tests_limit=300
else
  big=4096 vitb="--config vit-b" sd="--config sd15 --latent 64" vae=64 tests_limit=150
fi

step devices 30 vkpeft devices
if [ "$part" != bench ]; then
  for t in core_test_matmul core_test_matmul_lora core_test_training; do
    step "$t" "$tests_limit" env VKPEFT_VALIDATION=1 CMOCKA_MESSAGE_OUTPUT=stdout "$t"
  done
fi
[ "$part" = tests ] && exit 0
step matmul_1024 40 vkpeft bench matmul --size 1024 --iters 10
step matmul_1024_cpu_family 40 env VKPEFT_KERNELS=cpu vkpeft bench matmul --size 1024 --iters 10
step matmul_big 40 vkpeft bench matmul --size "$big" --iters 10
step matmul_vitb_qkv 40 vkpeft bench matmul --m 12608 --n 2304 --k 768 --layout nt --iters 10
step matmul_vitb_fc2_dx 40 vkpeft bench matmul --m 12608 --n 768 --k 3072 --layout nn --iters 10
# shellcheck disable=SC2086
step vitb_lora_f32 90 vkpeft bench peft $vitb --methods lora --rank 16 --steps 5 --json
# shellcheck disable=SC2086
step vitb_lora_bf16 90 vkpeft bench peft $vitb --methods lora --rank 16 --steps 5 --base-dtype bf16 --json
# shellcheck disable=SC2086
step sd15_sample_f16 100 vkpeft bench unet $sd --cfg --base-dtype f16 --steps 3
step vae_decode 40 vkpeft bench vae --latent "$vae" --steps 3
