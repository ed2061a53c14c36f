// fuzz_adapter.c — libFuzzer target: adapter files read onto a small model (core/peft/
// adapter_format.c, format_kohya.c, format_diffusers.c, format_peft.c): arbitrary tensor names,
// shapes, dtypes and metadata; kohya keys (lora_unet_*, lora_te_*: LoRA, LoCon with lora_mid, DoRA,
// LoHa, LoKr, alpha), diffusers keys (unet.*, text_encoder.*, the older layouts, attention
// processors, lora_adapter_metadata), key grouping, shape checks, the all-or-nothing binding.
//
// The input is one safetensors file, read with format detection and default options, then as kohya
// and as diffusers with options from the input's size (key prefix, skip_unmatched, alpha); or, when it holds
// "\n=====\n", an HF PEFT folder: adapter_config.json before the separator, adapter_model.safetensors
// after it. Whatever loads is checked (every slot has a finite scale) and discarded again.
//
// The model needs a Vulkan device for its parameters (lavapipe does: one context and one model for
// the whole run, made in LLVMFuzzerInitialize). Its modules, with the UNet's and the text encoder's
// names (spelled by each format):
//   down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q      linear 8 -> 8
//   down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0  linear 8 -> 8, bias
//   down_blocks.0.resnets.0.conv1                                   conv 4 -> 8, 3x3, bias
//   mid_block.attentions.0.proj_in                                  linear 8 -> 8, bias
//   text_model.encoder.layers.0.self_attn.q_proj                    linear 8 -> 8, bias
//   text_model.encoder.layers.0.mlp.fc1                             linear 8 -> 16, bias
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "vkp_adapter_format.h"
#include "vkp_device.h"

static vkp_ctx *ctx;
static vkp_model *model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  vkp_error err = {0};
  vkp_ctx_options o = {0};
  if (vkp_ctx_new(&o, &ctx, &err) != VKP_OK) {
    fprintf(stderr, "fuzz_adapter: no Vulkan device (lavapipe will do): %s\n", err.msg);
    exit(1);
  }
  if (vkp_model_new(ctx, &model) != VKP_OK) abort();
  static const struct {
    const char *name;
    vkp_module_kind kind;
    int ndim;
    int64_t shape[4], bias;
  } mods[] = {
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", VKP_MODULE_LINEAR, 2, {8, 8}, 0},
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0", VKP_MODULE_LINEAR, 2, {8, 8}, 8},
      {"down_blocks.0.resnets.0.conv1", VKP_MODULE_CONV2D, 4, {8, 4, 3, 3}, 8},
      {"mid_block.attentions.0.proj_in", VKP_MODULE_LINEAR, 2, {8, 8}, 8},
      {"text_model.encoder.layers.0.self_attn.q_proj", VKP_MODULE_LINEAR, 2, {8, 8}, 8},
      {"text_model.encoder.layers.0.mlp.fc1", VKP_MODULE_LINEAR, 2, {16, 8}, 16},
  };
  for (size_t i = 0; i < sizeof mods / sizeof *mods; i++)
    if (!vkp_model_add_module(model, mods[i].name, NULL, mods[i].kind, -1, mods[i].ndim, mods[i].shape, mods[i].bias)) abort();
  return 0;
}

static void read_one(const char *path, const char *format, const vkp_adapter_io *io) {
  int before = vkp_peft_count(model);
  vkp_adapter *a = NULL;
  vkp_status st = vkp_adapter_read(model, path, format, io, &a);
  if (getenv("FUZZ_VERBOSE"))   // for seeds: what each reading of an input gives
    fprintf(stderr, "fuzz_adapter: %s: %s\n", format ? format : "detected", st ? vkp_ctx_error(ctx) : "loaded");
  if (st != VKP_OK) {
    if (a || vkp_peft_count(model) != before) abort();   // a failed read leaves the model as it was
    return;
  }
  if (!a || vkp_adapter_slot_count(a) < 0) abort();
  for (int s = 0; s < vkp_adapter_slot_count(a); s++)
    if (!isfinite(vkp_adapter_slot_scaling(a, s))) abort();   // a scale of inf or NaN: silently wrong outputs
  vkp_adapter_discard(model, a);
  if (vkp_peft_count(model) != before) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_part parts[2];
  char path[600];
  if (fuzz_split(data, size, "\n=====\n", parts, 2) == 2) {   // an HF PEFT folder
    fuzz_dir_file("adapter_config.json", parts[0].p, parts[0].n, path, sizeof path);
    fuzz_dir_file("adapter_model.safetensors", parts[1].p, parts[1].n, path, sizeof path);
    read_one(fuzz_dir(), "peft", NULL);
    return 0;
  }
  const char *file = fuzz_memfile(0, data, size);
  if (!file) return 0;
  read_one(file, NULL, NULL);   // detected, default options
  static const char *const prefixes[] = {NULL, "lora_unet_", "lora_te_", "unet.", "text_encoder."};
  vkp_adapter_io io = {.key_prefix = prefixes[size % 5], .skip_unmatched = size / 5 % 2, .alpha = size / 10 % 2 ? 8.0f : 0.0f};
  read_one(file, "kohya", &io);
  read_one(file, "diffusers", &io);
  return 0;
}
