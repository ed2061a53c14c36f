// vkp_vit.h — Hugging Face-compatible ViTForImageClassification on the vkpeft layer API.
#ifndef VKP_VIT_H
#define VKP_VIT_H

#include "vkp_model.h"
#include "vkp_nn.h"

#define VKP_VIT_MAX_LAYERS 48

typedef struct vkp_vit_config {
  int image_size, patch_size, num_channels;
  int hidden_size, num_hidden_layers, num_attention_heads, intermediate_size;
  float layer_norm_eps;
  bool qkv_bias;
  int num_labels;
  bool gelu_tanh;            // hidden_act "gelu_new"/"gelu_pytorch_tanh" (else exact "gelu")
  char labels[256][48];      // id2label (num_labels entries)
} vkp_vit_config;

typedef struct vkp_vit_layer {
  vkp_module *block, *attention;                 // PEFT sites: adapters / prompts, prefix
  vkp_module *ln_before, *query, *key, *value, *attn_out, *ln_after, *fc1, *fc2;
} vkp_vit_layer;

typedef struct vkp_vit {
  vkp_vit_config cfg;
  vkp_model *model;          // owned
  vkp_module *patch, *final_ln, *classifier;
  vkp_param *cls_token, *pos_embed;
  vkp_vit_layer layers[VKP_VIT_MAX_LAYERS];
} vkp_vit;

// Defaults of transformers' ViTConfig (224/16, 768, 12 layers...).
void vkp_vit_config_default(vkp_vit_config *c);
// Reads an HF config.json (unknown keys are fine: HF configs carry many); wrong types and
// impossible values (hidden not divisible by heads, image not divisible by patch) are errors.
vkp_status vkp_vit_config_load(const char *path, vkp_vit_config *c, vkp_error *err);
vkp_status vkp_vit_config_save(const vkp_vit_config *c, const char *path, vkp_error *err);

// Creates the model with its modules registered under HF names (randomly initialised as
// transformers does: normal(0, 0.02) weights, zero biases, unit LayerNorms).
vkp_status vkp_vit_new(vkp_ctx *ctx, const vkp_vit_config *cfg, uint64_t seed, vkp_vit **out);
// Loads an HF checkpoint folder: config.json + model.safetensors. Position embeddings of another
// grid size are interpolated (bicubic, as transformers' interpolate_pos_encoding) to `image_size`
// if image_size > 0 and differs from the checkpoint's.
vkp_status vkp_vit_load(vkp_ctx *ctx, const char *dir, int image_size, vkp_vit **out, vkp_error *err);
// Same, with a classifier for `num_labels` classes (0 = the checkpoint's): when it differs, the
// head is newly initialised (the usual start of fine-tuning on a new label set).
vkp_status vkp_vit_load_labels(vkp_ctx *ctx, const char *dir, int image_size, int num_labels, vkp_vit **out,
                               vkp_error *err);
// Saves config.json + model.safetensors (base parameters only).
vkp_status vkp_vit_save(vkp_vit *v, const char *dir, vkp_error *err);
void vkp_vit_free(vkp_vit *v);

typedef struct vkp_vit_outputs {
  vkp_tensor *logits;                             // (B, num_labels)
  vkp_tensor *hidden[VKP_VIT_MAX_LAYERS + 1];     // embeddings, then each layer's output (B, T, C)
} vkp_vit_outputs;

// Builds the forward pass into g (vkp_model_begin_graph is called here).
vkp_status vkp_vit_forward(vkp_vit *v, vkp_graph *g, vkp_tensor *pixel_values, vkp_vit_outputs *out);

#endif
