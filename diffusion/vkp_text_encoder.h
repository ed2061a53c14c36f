// vkp_text_encoder.h — the frozen CLIP text encoder of a Stable-Diffusion pipeline: prompt ->
// token ids (vlm/'s CLIP tokenizer) -> the text tower's hidden states (tokens × hidden_size), the
// `encoder_hidden_states` the UNet cross-attends to.
//
// clip_skip as A1111 counts it: 1 = the last layer's output (after the final LayerNorm), N = the
// output of layer (layers + 1 − N), passed through the final LayerNorm as A1111 and diffusers do.
// The graph is built at the first encode, so adapters attached to the tower before that (a LoRA
// file's `lora_te_*` part) take part.
#ifndef VKP_TEXT_ENCODER_H
#define VKP_TEXT_ENCODER_H

#include "vkp_clip.h"
#include "vkp_clip_tokenizer.h"
#include "vkp_status.h"

typedef struct vkp_text_encoder vkp_text_encoder;

typedef struct vkp_text_encoder_opts {
  int clip_skip;   // >= 1; 0 means 1
} vkp_text_encoder_opts;

// Loads DIR/text_encoder (CLIPTextModel[WithProjection]) and DIR/tokenizer of a pipeline folder.
// Errors name the folder: VKP_ERR_NOT_FOUND when either is missing, the loaders' errors otherwise,
// VKP_ERR_INVALID for a clip_skip beyond the tower's layers.
vkp_status vkp_text_encoder_load(vkp_ctx *ctx, const char *pipeline_dir, const vkp_text_encoder_opts *opts,
                                 vkp_text_encoder **out, vkp_error *err);
// Wraps a text tower and tokenizer built elsewhere (a single-file checkpoint, a trainer); takes
// ownership of both, also on failure. `where` names them in messages.
vkp_status vkp_text_encoder_from_clip(vkp_ctx *ctx, vkp_clip *clip, vkp_clip_tokenizer *tok, const char *where,
                                      const vkp_text_encoder_opts *opts, vkp_text_encoder **out, vkp_error *err);
void vkp_text_encoder_free(vkp_text_encoder *t);

// Tokens per prompt (max_position_embeddings) and the width of the states (hidden_size).
void vkp_text_encoder_shape(const vkp_text_encoder *t, int *tokens, int *dim);
vkp_clip *vkp_text_encoder_clip(vkp_text_encoder *t);
vkp_clip_tokenizer *vkp_text_encoder_tokenizer(vkp_text_encoder *t);

// Drops the compiled graph: the next encode builds it again (after adapters were attached to the
// tower, or their scales changed).
void vkp_text_encoder_invalidate(vkp_text_encoder *t);

// The states of `batch` prompts in graph g (clip skip applied): the tower's input tensors are
// created in *in (upload token ids with vkp_clip_inputs_set), the (batch, tokens, dim) states in
// *states. For training graphs: adapters attached to the tower get gradients through it.
// Returns the graph's error (vkp_graph_error) on failure.
vkp_status vkp_text_encoder_forward(vkp_text_encoder *t, vkp_graph *g, int batch, vkp_clip_inputs *in, vkp_tensor **states);
// Token ids of one prompt (tokens ints, padded as the tokenizer does), as encode uses them.
vkp_status vkp_text_encoder_tokenize(vkp_text_encoder *t, const char *prompt, int32_t *ids, vkp_error *err);

// Encodes one prompt into states (tokens·dim floats). Prompts longer than the context are
// truncated as the tokenizer does (the end-of-text token kept).
vkp_status vkp_text_encoder_encode(vkp_text_encoder *t, const char *prompt, float *states, vkp_error *err);

#endif
