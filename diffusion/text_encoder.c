// text_encoder.c — the CLIP text encoder of a pipeline (vkp_text_encoder.h): frozen for prompts, or
// inside a training graph with text-encoder adapters (vkp_text_encoder_forward).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vkp_text_encoder.h"

struct vkp_text_encoder {
  vkp_ctx *ctx;
  char where[1100];
  vkp_clip *clip;
  vkp_clip_tokenizer *tok;
  int clip_skip;
  int tokens, dim;
  vkp_graph *g;   // built at the first encode
  vkp_clip_inputs in;
  vkp_tensor *out;
};

static bool is_dir(const char *p) {
  struct stat sb;
  return !stat(p, &sb) && S_ISDIR(sb.st_mode);
}

vkp_status vkp_text_encoder_from_clip(vkp_ctx *ctx, vkp_clip *clip, vkp_clip_tokenizer *tok, const char *where,
                                      const vkp_text_encoder_opts *opts, vkp_text_encoder **out, vkp_error *err) {
  *out = NULL;
  vkp_text_encoder *t = calloc(1, sizeof *t);
  if (!t) {
    vkp_clip_free(clip);
    vkp_clip_tokenizer_free(tok);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  t->ctx = ctx, t->clip = clip, t->tok = tok;
  snprintf(t->where, sizeof t->where, "%s", where ? where : "text encoder");
  const vkp_clip_text_config *tc = &clip->cfg.text;
  t->tokens = tc->max_position_embeddings;
  t->dim = tc->hidden_size;
  t->clip_skip = opts && opts->clip_skip > 0 ? opts->clip_skip : 1;
  if (t->clip_skip > tc->num_hidden_layers) {
    vkp_status st = vkp_error_set(err, VKP_ERR_INVALID, "clip skip %d: %s has %d layers", t->clip_skip, t->where,
                                  tc->num_hidden_layers);
    vkp_text_encoder_free(t);
    return st;
  }
  *out = t;
  return VKP_OK;
}

vkp_status vkp_text_encoder_load(vkp_ctx *ctx, const char *pipeline_dir, const vkp_text_encoder_opts *opts,
                                 vkp_text_encoder **out, vkp_error *err) {
  *out = NULL;
  char path[1200];
  snprintf(path, sizeof path, "%s/text_encoder", pipeline_dir);
  if (!is_dir(path)) return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: missing (a prompt needs the text encoder)", path);
  vkp_clip *clip = NULL;
  vkp_clip_tokenizer *tok = NULL;
  vkp_clip_load_opts co = {.towers = VKP_CLIP_TEXT_ONLY};
  vkp_status st = vkp_clip_load(ctx, path, &co, &clip, err);
  if (st) return st;
  snprintf(path, sizeof path, "%s/tokenizer", pipeline_dir);
  if (!is_dir(path)) st = vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: missing (a prompt needs the tokenizer)", path);
  else st = vkp_clip_tokenizer_load(path, &tok, err);
  if (st) {
    vkp_clip_free(clip);
    return st;
  }
  snprintf(path, sizeof path, "%s/text_encoder", pipeline_dir);
  return vkp_text_encoder_from_clip(ctx, clip, tok, path, opts, out, err);
}

void vkp_text_encoder_free(vkp_text_encoder *t) {
  if (!t) return;
  vkp_graph_free(t->g);
  vkp_clip_free(t->clip);
  vkp_clip_tokenizer_free(t->tok);
  free(t);
}

void vkp_text_encoder_shape(const vkp_text_encoder *t, int *tokens, int *dim) { *tokens = t->tokens, *dim = t->dim; }
vkp_clip *vkp_text_encoder_clip(vkp_text_encoder *t) { return t->clip; }
vkp_clip_tokenizer *vkp_text_encoder_tokenizer(vkp_text_encoder *t) { return t->tok; }

void vkp_text_encoder_invalidate(vkp_text_encoder *t) {
  vkp_graph_free(t->g);
  t->g = NULL;
}

vkp_status vkp_text_encoder_forward(vkp_text_encoder *t, vkp_graph *g, int batch, vkp_clip_inputs *in, vkp_tensor **states) {
  const vkp_clip_text_config *tc = &t->clip->cfg.text;
  *states = NULL;
  vkp_status st = vkp_clip_inputs_new(t->clip, g, 0, batch, t->tokens, false, in);
  vkp_clip_outputs o;
  memset(&o, 0, sizeof o);
  if (!st) st = vkp_clip_forward(t->clip, g, in, &o);
  if (st) return st;
  *states = t->clip_skip > 1 ? vkp_clip_text_final_norm(t->clip, o.text_hidden[tc->num_hidden_layers + 1 - t->clip_skip])
                             : o.text_last_hidden;
  return *states ? VKP_OK : vkp_graph_status(g) ? vkp_graph_status(g) : VKP_ERR_INVALID;
}

vkp_status vkp_text_encoder_tokenize(vkp_text_encoder *t, const char *prompt, int32_t *ids, vkp_error *err) {
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(t->tok, &info);
  vkp_status st = vkp_clip_tokenize(t->tok, prompt, t->tokens, info.default_pad, ids, NULL, NULL);
  return st ? vkp_error_set(err, st, "%s: cannot tokenize the prompt", t->where) : VKP_OK;
}

static vkp_status build_graph(vkp_text_encoder *t, vkp_error *err) {
  vkp_status st = vkp_graph_new(t->ctx, &t->g);
  if (st) return vkp_error_set(err, st, "%s: %s", t->where, vkp_ctx_error(t->ctx));
  if ((st = vkp_text_encoder_forward(t, t->g, 1, &t->in, &t->out))) return vkp_error_set(err, st, "%s: %s", t->where, vkp_graph_error(t->g));
  vkp_graph_output(t->g, t->out);
  if ((st = vkp_graph_compile(t->g))) return vkp_error_set(err, st, "%s: compile: %s", t->where, vkp_ctx_error(t->ctx));
  return VKP_OK;
}

vkp_status vkp_text_encoder_encode(vkp_text_encoder *t, const char *prompt, float *states, vkp_error *err) {
  vkp_status st;
  if (!t->g && (st = build_graph(t, err))) {
    vkp_graph_free(t->g);
    t->g = NULL;
    return st;
  }
  int32_t *ids = calloc((size_t)t->tokens, sizeof *ids);
  if (!ids) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if ((st = vkp_text_encoder_tokenize(t, prompt, ids, err))) {
    free(ids);
    return st;
  }
  st = vkp_clip_inputs_set(t->clip, t->g, &t->in, NULL, ids, NULL);
  free(ids);
  if (!st) st = vkp_graph_run(t->g);
  if (!st) st = vkp_graph_read(t->g, t->out, states, (size_t)t->tokens * t->dim * sizeof(float));
  if (st) return vkp_error_set(err, st, "%s: %s", t->where, vkp_ctx_error(t->ctx));
  return VKP_OK;
}
