#!/usr/bin/env bash
# The diffusion demo (`bash scripts/demo diffusion [OUTPUT_DIR]`, default runs/demo): there are no
# pretrained Stable Diffusion weights offline, so it does what a user does with hub weights on a
# scale this machine runs. From random weights it pretrains a small latent-diffusion pipeline on the
# Noto emoji with their names as captions — the CLIP demo's text tower (reused when present), a
# VAE, a UNet — then trains an EmojiOne style LoRA on the EmojiOne drawings of the training split
# of names, and generates the held-out names (never trained on, in either style) with and without
# the LoRA. A ViT style classifier, trained here on real Noto vs EmojiOne images of the training
# names, scores the generated images: the fraction it judges EmojiOne, without vs with the LoRA.
# Writes OUTPUT_DIR/diffusion-{vae,unet,lora}/ (report.html, plots, samples), the generated images
# and grids in OUTPUT_DIR/diffusion-gen-{base,lora}/, the classifier in
# OUTPUT_DIR/diffusion-style-classifier/, and OUTPUT_DIR/diffusion-results.{md,json}.
# A stage whose result is already there is reused (delete its folder to redo it).
# Called by scripts/demo, which builds vkpeft first; needs python3 (lists and the table).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
vkpeft=$2
n_gen=${VKPEFT_DEMO_GENERATE:-64}   # held-out names generated (4 seeds each) and scored per condition
cd "$root"
start=$(date +%s)
stage_start=$start
declare -A seconds
stage() {   # stage NAME: prints the time the previous stage took and remembers it
  local now; now=$(date +%s)
  [ -n "${cur_stage:-}" ] && seconds[$cur_stage]=$(( now - stage_start ))
  cur_stage=$1 stage_start=$now
}
"$vkpeft" devices | head -n 3

stage text_encoder
clip=$out/clip-pretrain
if [ -f "$clip/model/model.safetensors" ]; then
  echo "== 1/7 text encoder: reusing the CLIP demo's pretrained text tower ($clip/model)"
else
  echo "== 1/7 text encoder: pretraining the CLIP demo's small CLIP on Noto emoji + Paper icons"
  "$vkpeft" train configs/clip_demo_pretrain.json --set output_dir="$clip"
fi
# The pipeline's tokenizer/ folder: the built-in OpenAI BPE (what the CLIP tower trained with)
# written as Hugging Face's vocab.json + merges.txt.
tok=$out/diffusion-tokenizer
mkdir -p "$tok" "$out/diffusion-skeleton/scheduler"
python3 - vlm/data/bpe_simple_vocab_16e6.txt.gz "$tok" <<'PY'
import gzip, json, sys
src, out = sys.argv[1], sys.argv[2]
merges = gzip.open(src).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
v = [chr(c) for c in cs]
v += [x + "</w>" for x in v] + ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
json.dump({t: i for i, t in enumerate(v)}, open(f"{out}/vocab.json", "w"))
open(f"{out}/merges.txt", "w").write("#version: 0.2\n" + "\n".join(merges) + "\n")
PY
# Stable Diffusion 1.x's noise schedule (the only part of the pipeline not trained here).
cat >"$out/diffusion-skeleton/scheduler/scheduler_config.json" <<'JSON'
{"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
 "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "clip_sample": false, "set_alpha_to_one": false,
 "steps_offset": 1, "timestep_spacing": "leading"}
JSON

stage vae
if [ -f "$out/diffusion-vae/vae/config.json" ]; then echo "== 2/7 VAE: reusing $out/diffusion-vae/vae"
else
  echo "== 2/7 VAE: an AutoencoderKL from random weights on Noto emoji (32x32 -> 4x8x8 latents)"
  "$vkpeft" train configs/diffusion_demo_vae.json --set output_dir="$out/diffusion-vae"
fi

stage unet
if [ -f "$out/diffusion-unet/pipeline/model_index.json" ]; then echo "== 3/7 UNet: reusing $out/diffusion-unet/pipeline"
else
  echo "== 3/7 UNet: a text-conditioned UNet from random weights on the Noto emoji's latents, names as captions"
  "$vkpeft" train configs/diffusion_demo_unet.json --set output_dir="$out/diffusion-unet" \
    --set model.pretrained="$out/diffusion-skeleton" --set model.vae="$out/diffusion-vae/vae" \
    --set model.text_encoder="$clip/model" --set model.tokenizer="$tok"
fi
pipe=$out/diffusion-unet/pipeline

stage lora
lora=$out/diffusion-lora/emojione_style.safetensors
if [ -f "$lora" ]; then echo "== 4/7 style LoRA: reusing $lora"
else
  echo "== 4/7 style LoRA on the EmojiOne drawings of the training names (the held-out names stay out)"
  "$vkpeft" train configs/diffusion_demo_lora.json --set output_dir="$out/diffusion-lora" --set model.pretrained="$pipe"
fi

stage classifier
# The held-out names: split 0.1 / seed 0 of the content keys, the split every stage above used.
heldout=$out/diffusion-heldout.jsonl prompts=$out/diffusion-heldout-prompts.txt
"$vkpeft" embed --model "$clip/model" --images emoji-emojione:val:0.1:0 --output "$out/diffusion-heldout-emojione.safetensors" >/dev/null
"$vkpeft" embed --model "$clip/model" --images emoji-noto:val:0.1:0 --output "$out/diffusion-heldout-noto.safetensors" >/dev/null
python3 scripts/emoji_heldout.py "$out/diffusion-heldout-emojione.safetensors" "$heldout"
# The style classifier's data: every Noto and EmojiOne PNG, label = style; the held-out emoji are
# its test set (it never sees them in training either).
python3 - "$out" "$n_gen" <<'PY'
import glob, json, sys
sys.path.insert(0, "scripts")
from emoji_heldout import embedded_files as files
out, n_gen = sys.argv[1], int(sys.argv[2])
gems = "/usr/share/rubygems-integration/all/gems"
sets = {"noto": glob.glob(f"{gems}/tanuki_emoji-*/app/assets/images/tanuki_emoji/*.png"),
        "emojione": glob.glob(f"{gems}/gemojione-*/assets/png/*.png")}
held = {s: set(files(f"{out}/diffusion-heldout-{s}.safetensors")) for s in sets}
with open(f"{out}/style-train.csv", "w") as tr, open(f"{out}/style-test.csv", "w") as te:
    tr.write("path,label\n"); te.write("path,label\n")
    for s, paths in sets.items():
        for p in sorted(paths):
            (te if p in held[s] else tr).write(f"{p},{s}\n")
names = [json.loads(l)["name"] for l in open(f"{out}/diffusion-heldout.jsonl")]
names = [names[i * len(names) // n_gen] for i in range(n_gen)] if len(names) > n_gen else names   # spread over the list
open(f"{out}/diffusion-heldout-prompts.txt", "w").write("\n".join(names) + "\n")
print(f"style classifier: {sum(len(v) for v in sets.values()) - sum(len(v) for v in held.values())} training images, "
      f"{sum(len(v) for v in held.values())} held-out test images; generating {len(names)} held-out names")
PY
if [ -f "$out/diffusion-style-classifier/model/model.safetensors" ]; then
  echo "== 5/7 style classifier: reusing $out/diffusion-style-classifier"
else
  echo "== 5/7 a ViT style classifier (Noto vs EmojiOne) on real images of the training names"
  "$vkpeft" train configs/diffusion_demo_style.json --set output_dir="$out/diffusion-style-classifier" \
    --set data.train="$out/style-train.csv" --set data.test="$out/style-test.csv"
fi

stage generate
# Every prompt of one `generate --prompts` call starts from the same noises (seeds SEED .. SEED+batch-1), and
# this small model's images follow the noise more than the name: one seed for all 64 names measured 12.5%
# judged EmojiOne, another 45% (same pipeline). So the names go in groups of 8, each group with its own 4
# seeds (group g: 4g .. 4g+3): 256 images from 32 noises per condition, the same seeds with and without the LoRA.
echo "== 6/7 generating the held-out names (4 seeds each) without and with the style LoRA (same seeds)"
gen() {   # gen CONDITION [generate options]: every group of 8 names into OUT/diffusion-gen-CONDITION/group-G
  local c=$1 g=0; shift
  rm -rf "$out/diffusion-gen-$c"
  while [ $(( g * 8 )) -lt "$(wc -l <"$prompts")" ]; do
    mkdir -p "$out/diffusion-gen-$c/group-$g"
    sed -n "$(( g * 8 + 1 )),$(( g * 8 + 8 ))p" "$prompts" >"$out/diffusion-gen-$c/group-$g/prompts.txt"
    "$vkpeft" generate --model "$pipe" --prompts "$out/diffusion-gen-$c/group-$g/prompts.txt" --sampler ddim --steps 20 \
      --cfg 3 --seed $(( g * 4 )) --batch 4 "$@" --output "$out/diffusion-gen-$c/group-$g" | tail -n 1
    g=$(( g + 1 ))
  done
}
gen base
gen lora --lora "$lora"

stage score
echo "== 7/7 scoring: the fraction of generated images the classifier judges EmojiOne"
for c in base lora; do
  { echo "path,label"; for f in "$out/diffusion-gen-$c"/group-*/[0-9]*[0-9].png; do echo "$f,emojione"; done; } >"$out/diffusion-gen-$c.csv"
  "$vkpeft" eval --model "$out/diffusion-style-classifier/model" --data "$out/diffusion-gen-$c.csv" --json \
    >"$out/diffusion-score-$c.json"
done
"$vkpeft" eval --model "$out/diffusion-style-classifier/model" --data "$out/style-test.csv" --json \
  >"$out/diffusion-score-real.json"
stage done
python3 - "$out" "$(( $(date +%s) - start ))" "$(declare -p seconds)" <<'PY'
import json, re, sys
out, secs = sys.argv[1], int(sys.argv[2])
stages = dict(re.findall(r'\[(\w+)\]="?(\d+)"?', sys.argv[3]))
acc = {c: json.load(open(f"{out}/diffusion-score-{c}.json")) for c in ("base", "lora", "real")}
n = {c: acc[c]["images"] for c in acc}
frac = {c: acc[c]["accuracy"] for c in ("base", "lora")}
res = {"seconds": secs, "stage_seconds": {k: int(v) for k, v in stages.items()},
       "emojione_fraction": frac, "images": n, "classifier_test_accuracy": acc["real"]["accuracy"]}
json.dump(res, open(f"{out}/diffusion-results.json", "w"), indent=1)
names = n["base"] // 4   # 4 seeds a name; groups of 8 names, 4 seeds a group
md = (f"Held-out emoji names (never trained on in either style): {n['base']} images per condition ({names} names with 4 "
      f"seeds each, {4 * -(-names // 8)} different seeds in all, the same with and without the LoRA), 20 DDIM steps, CFG 3.\n"
      f"Style classifier (ViT, real images of the training names): {100 * acc['real']['accuracy']:.1f}% on the "
      f"{n['real']} real held-out images (Noto and EmojiOne).\n\n"
      "| generated with | judged EmojiOne |\n|---|---:|\n"
      f"| the pretrained (Noto) pipeline | {100 * frac['base']:.1f}% |\n"
      f"| + EmojiOne style LoRA | {100 * frac['lora']:.1f}% |\n\n"
      f"Grids: diffusion-gen-base/group-*/*-grid.png, diffusion-gen-lora/group-*/*-grid.png. Demo wall time: {secs} s ("
      + ", ".join(f"{k} {v} s" for k, v in stages.items()) + ")\n")
open(f"{out}/diffusion-results.md", "w").write(md)
print(md)
PY
echo "reports: $out/diffusion-{vae,unet,lora}/report.html"
