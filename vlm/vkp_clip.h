// vkp_clip.h — Hugging Face-compatible CLIP (transformers' CLIPModel, CLIPTextModel[WithProjection],
// CLIPVisionModel[WithProjection]) on the vkpeft layer API.
//
// One vkp_clip holds the towers a folder provides (or the one asked for): a CLIPModel folder can be
// loaded whole, text-only (Stable Diffusion's use) or vision-only. Modules are registered under the
// checkpoint names (`text_model.encoder.layers.N.self_attn.q_proj`, `vision_model.pre_layrnorm`,
// `text_projection`, ...), so HF PEFT adapters load as they are, and every PEFT method of vkp_peft.h
// applies: weight-level methods on the linear/conv modules, block-level adapters and prompts on
// the `...encoder.layers.N` blocks, prefixes on the `...layers.N.self_attn` attention modules.
#ifndef VKP_CLIP_H
#define VKP_CLIP_H

#include "vkp_model.h"
#include "vkp_nn.h"

#define VKP_CLIP_MAX_LAYERS 48
#define VKP_CLIP_LOGIT_SCALE_MAX 4.6051702f   // ln(100): CLIP training clamps logit_scale to [0, this]

typedef enum vkp_clip_act {
  VKP_CLIP_ACT_QUICK_GELU = 0,   // "quick_gelu": x * sigmoid(1.702 x) (CLIP's default)
  VKP_CLIP_ACT_GELU,             // "gelu": erf form
  VKP_CLIP_ACT_GELU_TANH,        // "gelu_new", "gelu_pytorch_tanh"
  VKP_CLIP_ACT_RELU,             // "relu"
} vkp_clip_act;

typedef struct vkp_clip_text_config {
  int vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
  int max_position_embeddings;
  int projection_dim;            // CLIPTextModelWithProjection's (CLIPModel uses vkp_clip_config's)
  float layer_norm_eps, initializer_range, initializer_factor;
  float attention_dropout;       // only 0 is supported
  vkp_clip_act hidden_act;
  int bos_token_id, eos_token_id, pad_token_id;   // eos_token_id 2: legacy pooling at argmax(input_ids)
} vkp_clip_text_config;

typedef struct vkp_clip_vision_config {
  int image_size, patch_size, num_channels;
  int hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
  int projection_dim;            // CLIPVisionModelWithProjection's
  float layer_norm_eps, initializer_range, initializer_factor;
  float attention_dropout;       // only 0 is supported
  vkp_clip_act hidden_act;
} vkp_clip_vision_config;

typedef struct vkp_clip_config {
  bool has_text, has_vision;                        // towers present
  bool has_text_projection, has_visual_projection;  // projection layers present (no bias)
  bool has_logit_scale;                             // CLIPModel's learned temperature
  int projection_dim;                       // output size of the projections
  float logit_scale_init_value;             // ln(1/0.07) = 2.6592 by default
  float initializer_factor;
  vkp_clip_text_config text;
  vkp_clip_vision_config vision;
} vkp_clip_config;

// transformers' defaults: CLIPModel (both towers and projections, ViT-B/32-sized), and the towers'.
void vkp_clip_config_default(vkp_clip_config *c);
void vkp_clip_text_config_default(vkp_clip_text_config *t);
void vkp_clip_vision_config_default(vkp_clip_vision_config *v);
// Reads an HF config.json of model_type "clip" (text_config + vision_config, with the legacy
// text_config_dict / vision_config_dict overriding them as transformers does), "clip_text_model"
// or "clip_vision_model" (projection when `architectures` names the ...WithProjection class).
// Unknown keys are fine; a wrong type or an impossible value is VKP_ERR_INVALID and an unsupported
// one (hidden_act, attention_dropout > 0, a head dim over 160) VKP_ERR_UNSUPPORTED, each naming the
// file, the sub-config and the key ("config.json: text_config: key 'hidden_size' ...").
vkp_status vkp_clip_config_load(const char *path, vkp_clip_config *c, vkp_error *err);
// Checks a config built in code (the same rules as loading; `where` names it in messages).
vkp_status vkp_clip_config_check(const vkp_clip_config *c, const char *where, vkp_error *err);
// Writes the config as transformers would read it back: a CLIPModel config when both towers are
// present, else the tower's own (CLIPTextModel[WithProjection] / CLIPVisionModel[WithProjection]).
vkp_status vkp_clip_config_save(const vkp_clip_config *c, const char *path, vkp_error *err);
// "quick_gelu", "gelu", ... (the config spelling).
const char *vkp_clip_act_name(vkp_clip_act a);

// One pre-LN encoder layer; the same module set in both towers.
typedef struct vkp_clip_layer {
  vkp_module *block, *attention;                 // PEFT sites: adapters / prompts, prefix
  vkp_module *ln1, *q, *k, *v, *out, *ln2, *fc1, *fc2;
} vkp_clip_layer;

typedef struct vkp_clip_text {
  vkp_module *token_embedding, *position_embedding, *final_ln;
  vkp_clip_layer layers[VKP_CLIP_MAX_LAYERS];
} vkp_clip_text;

typedef struct vkp_clip_vision {
  vkp_module *patch, *position_embedding, *pre_ln, *post_ln;   // patch: conv, no bias
  vkp_param *class_embedding;                                  // (C)
  vkp_clip_layer layers[VKP_CLIP_MAX_LAYERS];
} vkp_clip_vision;

typedef struct vkp_clip {
  vkp_clip_config cfg;
  vkp_model *model;                              // owned
  vkp_clip_text text;                            // valid when cfg.has_text
  vkp_clip_vision vision;                        // valid when cfg.has_vision
  vkp_module *text_projection, *visual_projection;   // NULL when absent
  vkp_module *logit_scale;                       // kind OTHER, weight (1) = the scalar; NULL when absent
} vkp_clip;

// Creates the model with its modules registered under HF names, randomly initialised as
// transformers' CLIPPreTrainedModel._init_weights does (normal(0, std) with CLIP's per-module
// std, zero biases, unit LayerNorms, logit_scale = logit_scale_init_value).
vkp_status vkp_clip_new(vkp_ctx *ctx, const vkp_clip_config *cfg, uint64_t seed, vkp_clip **out, vkp_error *err);
// The same with every parameter zero, for a loader that writes every weight itself (single files).
vkp_status vkp_clip_new_empty(vkp_ctx *ctx, const vkp_clip_config *cfg, vkp_clip **out, vkp_error *err);

typedef enum vkp_clip_towers {
  VKP_CLIP_TOWERS_ALL = 0,   // what the folder holds
  VKP_CLIP_TEXT_ONLY,        // the text tower (+ text_projection if present) of any CLIP folder
  VKP_CLIP_VISION_ONLY,      // the vision tower (+ visual_projection if present)
} vkp_clip_towers;

typedef struct vkp_clip_load_opts {
  vkp_clip_towers towers;
  bool f32;   // store every weight as f32 (for full fine-tuning of a 16-bit checkpoint)
} vkp_clip_load_opts;

// Loads an HF folder: config.json + model.safetensors (or model.fp16.safetensors). Matrices
// (linear/conv weights, embedding tables) that the file holds in f16/bf16 stay in that dtype on
// the device unless opts->f32; vectors (biases, norms, class embedding, logit_scale) are f32.
// A projection is loaded when the file has it. Tensors of a tower not asked for, and the old
// `position_ids` buffers, are skipped silently; other unused tensors are reported on stderr;
// missing ones are an error. opts may be NULL (all towers, keep 16-bit).
vkp_status vkp_clip_load(vkp_ctx *ctx, const char *dir, const vkp_clip_load_opts *opts, vkp_clip **out,
                         vkp_error *err);
// Saves config.json + model.safetensors (base parameters in their storage dtype; logit_scale as
// a scalar, as transformers stores it).
vkp_status vkp_clip_save(vkp_clip *c, const char *dir, vkp_error *err);
void vkp_clip_free(vkp_clip *c);

// Clamps logit_scale to [0, max] in place (max <= 0: ln 100), as CLIP / open_clip training does
// after every optimizer step. No-op without a logit_scale.
vkp_status vkp_clip_clamp_logit_scale(vkp_clip *c, float max);

// ---- forward ----------------------------------------------------------------------------------

typedef struct vkp_clip_inputs {
  vkp_tensor *pixel_values;     // (Bi, C, H, W) f32, or NULL: no image side
  vkp_tensor *input_ids;        // (Bt, T) i32, or NULL: no text side
  vkp_tensor *attention_mask;   // (Bt, T) f32, 1 token / 0 padding, or NULL (causal mask only)
  vkp_tensor *pool_onehot;      // (Bt, T) f32: 1 at each row's pooled (EOS) position (vkp_clip_pool_onehot)
} vkp_clip_inputs;

// Creates the input tensors ("pixel_values", "input_ids", "attention_mask", "pool_onehot") in g
// for the towers the model has (image_batch / text_batch 0: that side is left NULL).
vkp_status vkp_clip_inputs_new(vkp_clip *c, vkp_graph *g, int64_t image_batch, int64_t text_batch, int64_t seq_len,
                               bool with_attention_mask, vkp_clip_inputs *in);
// Uploads a batch into a compiled graph: pixels (Bi*C*H*W), ids (Bt*T) and mask (Bt*T, may be
// NULL when the graph has none); the pooling one-hot is computed from ids here.
vkp_status vkp_clip_inputs_set(vkp_clip *c, vkp_graph *g, const vkp_clip_inputs *in, const float *pixels,
                               const int32_t *ids, const float *mask);
// The pooled position of one row of ids, as transformers picks it: the first position whose id
// is eos_token_id (0 when none), or, when eos_token_id == 2 (configs from before transformers
// PR #24773), the position of the largest id (the first one on ties).
int64_t vkp_clip_pool_index(const vkp_clip_text_config *t, const int32_t *ids, int64_t T);
// onehot (B*T): 1 at vkp_clip_pool_index of each row, 0 elsewhere.
void vkp_clip_pool_onehot(const vkp_clip_text_config *t, const int32_t *ids, int64_t B, int64_t T, float *onehot);

typedef struct vkp_clip_outputs {
  // text tower (NULL without input_ids)
  vkp_tensor *text_hidden[VKP_CLIP_MAX_LAYERS + 1];   // embeddings, then each layer's output (Bt, T, C);
                                                      // [num_hidden_layers - 1] is "clip skip 2"
  vkp_tensor *text_last_hidden;   // (Bt, T, C) after final_layer_norm (HF last_hidden_state)
  vkp_tensor *text_pooled;        // (Bt, C) last hidden at the pooled position (HF pooler_output)
  vkp_tensor *text_features;      // (Bt, P) text_projection(pooled) (HF get_text_features), if projected
  vkp_tensor *text_embeds;        // (Bt, P) text_features / ||text_features|| (CLIPModel's text_embeds)
  // vision tower (NULL without pixel_values)
  vkp_tensor *vision_hidden[VKP_CLIP_MAX_LAYERS + 1]; // encoder input (after pre_layrnorm), then each
                                                      // layer's output (Bi, 1 + N, C)
  vkp_tensor *vision_last_hidden; // (Bi, 1 + N, C) last layer output (HF last_hidden_state)
  vkp_tensor *vision_pooled;      // (Bi, C) post_layernorm(CLS) (HF pooler_output)
  vkp_tensor *image_features;     // (Bi, P) visual_projection(pooled), if projected
  vkp_tensor *image_embeds;       // (Bi, P) normalised
  // both towers and a logit_scale
  vkp_tensor *logits_per_text;    // (Bt, Bi) exp(logit_scale) * text_embeds . image_embeds^T (not clamped)
  vkp_tensor *logits_per_image;   // (Bi, Bt) its transpose
  vkp_tensor *loss;               // [1] symmetric contrastive loss (Bt == Bi: pair i is text i, image i)
} vkp_clip_outputs;

// Builds the forward pass into g (vkp_model_begin_graph is called here). Only the towers whose
// inputs are given are built. Text: token + position embeddings, pre-LN blocks with the causal
// mask and the padding mask, final LN, pooling as pool_onehot . last_hidden (differentiable).
vkp_status vkp_clip_forward(vkp_clip *c, vkp_graph *g, const vkp_clip_inputs *in, vkp_clip_outputs *out);
// final_layer_norm applied to any text hidden state (SD's "clip skip": the penultimate layer's
// output through the final norm). Call after vkp_clip_forward, in the same graph.
vkp_tensor *vkp_clip_text_final_norm(vkp_clip *c, vkp_tensor *hidden);

#endif
