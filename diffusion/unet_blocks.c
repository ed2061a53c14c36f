// unet_blocks.c — ResnetBlock2D, Transformer2DModel (BasicTransformerBlock with GEGLU), the conv
// down/upsamplers and the VAE's spatial attention, as diffusers defines them (see unet_blocks.h).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "unet_blocks.h"
#include "vkp_json.h"
#include "vkp_safetensors.h"

// ---- registration -------------------------------------------------------------------------------

vkp_module *vkp_sd_conv_add(vkp_model *m, const char *name, int cout, int cin, int k) {
  int64_t shape[4] = {cout, cin, k, k};
  return vkp_model_add_module(m, name, NULL, VKP_MODULE_CONV2D, -1, 4, shape, cout);
}

vkp_module *vkp_sd_linear_add(vkp_model *m, const char *name, int out, int in, bool bias) {
  int64_t shape[2] = {out, in};
  return vkp_model_add_module(m, name, NULL, VKP_MODULE_LINEAR, -1, 2, shape, bias ? out : 0);
}

vkp_module *vkp_sd_group_norm_add(vkp_model *m, const char *name, int channels) {
  int64_t c = channels;
  return vkp_model_add_module(m, name, NULL, VKP_MODULE_GROUP_NORM, -1, 1, &c, c);
}

static vkp_module *layer_norm_add(vkp_model *m, const char *name, int channels) {
  int64_t c = channels;
  return vkp_model_add_module(m, name, NULL, VKP_MODULE_LAYER_NORM, -1, 1, &c, c);
}

#define NAME(...) (snprintf(n, sizeof n, __VA_ARGS__), n)

vkp_status vkp_sd_resnet_add(vkp_model *m, const char *prefix, int in, int out, int temb_channels, vkp_sd_resnet *r) {
  char n[512];
  memset(r, 0, sizeof *r);
  r->in = in, r->out = out;
  r->block = vkp_model_add_module(m, prefix, NULL, VKP_MODULE_BLOCK, -1, 0, NULL, 0);
  r->norm1 = vkp_sd_group_norm_add(m, NAME("%s.norm1", prefix), in);
  r->conv1 = vkp_sd_conv_add(m, NAME("%s.conv1", prefix), out, in, 3);
  if (temb_channels > 0) r->time_emb_proj = vkp_sd_linear_add(m, NAME("%s.time_emb_proj", prefix), out, temb_channels, true);
  r->norm2 = vkp_sd_group_norm_add(m, NAME("%s.norm2", prefix), out);
  r->conv2 = vkp_sd_conv_add(m, NAME("%s.conv2", prefix), out, out, 3);
  if (in != out) r->conv_shortcut = vkp_sd_conv_add(m, NAME("%s.conv_shortcut", prefix), out, in, 1);
  if (!r->block || !r->norm1 || !r->conv1 || (temb_channels > 0 && !r->time_emb_proj) || !r->norm2 || !r->conv2 ||
      (in != out && !r->conv_shortcut))
    return VKP_ERR_OOM;
  r->block->sites = VKP_NN_AFTER_BLOCK;
  r->block->in = r->block->out = out;
  return VKP_OK;
}

static vkp_status tblock_add(vkp_model *m, const char *prefix, int C, int cross_dim, vkp_sd_tblock *b) {
  char n[512];
  int I = 4 * C;   // FeedForward(mult=4)
  b->block = vkp_model_add_module(m, prefix, NULL, VKP_MODULE_BLOCK, -1, 0, NULL, 0);
  b->attn1 = vkp_model_add_module(m, NAME("%s.attn1", prefix), NULL, VKP_MODULE_ATTENTION, -1, 0, NULL, 0);
  b->attn2 = vkp_model_add_module(m, NAME("%s.attn2", prefix), NULL, VKP_MODULE_ATTENTION, -1, 0, NULL, 0);
  b->norm1 = layer_norm_add(m, NAME("%s.norm1", prefix), C);
  b->q1 = vkp_sd_linear_add(m, NAME("%s.attn1.to_q", prefix), C, C, false);
  b->k1 = vkp_sd_linear_add(m, NAME("%s.attn1.to_k", prefix), C, C, false);
  b->v1 = vkp_sd_linear_add(m, NAME("%s.attn1.to_v", prefix), C, C, false);
  b->o1 = vkp_sd_linear_add(m, NAME("%s.attn1.to_out.0", prefix), C, C, true);
  b->norm2 = layer_norm_add(m, NAME("%s.norm2", prefix), C);
  b->q2 = vkp_sd_linear_add(m, NAME("%s.attn2.to_q", prefix), C, C, false);
  b->k2 = vkp_sd_linear_add(m, NAME("%s.attn2.to_k", prefix), C, cross_dim, false);
  b->v2 = vkp_sd_linear_add(m, NAME("%s.attn2.to_v", prefix), C, cross_dim, false);
  b->o2 = vkp_sd_linear_add(m, NAME("%s.attn2.to_out.0", prefix), C, C, true);
  b->norm3 = layer_norm_add(m, NAME("%s.norm3", prefix), C);
  b->ff_in = vkp_sd_linear_add(m, NAME("%s.ff.net.0.proj", prefix), 2 * I, C, true);
  b->ff_out = vkp_sd_linear_add(m, NAME("%s.ff.net.2", prefix), C, I, true);
  if (!b->block || !b->attn1 || !b->attn2 || !b->norm1 || !b->q1 || !b->k1 || !b->v1 || !b->o1 || !b->norm2 || !b->q2 ||
      !b->k2 || !b->v2 || !b->o2 || !b->norm3 || !b->ff_in || !b->ff_out)
    return VKP_ERR_OOM;
  b->block->sites = VKP_NN_AFTER_ATTN | VKP_NN_AFTER_CROSS_ATTN | VKP_NN_AFTER_MLP;
  b->block->in = b->block->out = C;
  b->attn1->in = b->attn1->out = C;
  b->attn2->in = b->attn2->out = C;   // keys/values are projected to C before the heads split
  b->attn2->cross = true;
  return VKP_OK;
}

vkp_status vkp_sd_transformer_add(vkp_model *m, const char *prefix, int channels, int heads, int n_layers,
                                  int cross_dim, bool linear_projection, vkp_sd_transformer *t) {
  char n[512];
  memset(t, 0, sizeof *t);
  if (n_layers < 1 || n_layers > VKP_SD_MAX_TLAYERS) return VKP_ERR_INVALID;
  t->channels = channels, t->heads = heads, t->n_layers = n_layers, t->linear_projection = linear_projection;
  t->norm = vkp_sd_group_norm_add(m, NAME("%s.norm", prefix), channels);
  if (linear_projection) {
    t->proj_in = vkp_sd_linear_add(m, NAME("%s.proj_in", prefix), channels, channels, true);
  } else {
    t->proj_in = vkp_sd_conv_add(m, NAME("%s.proj_in", prefix), channels, channels, 1);
  }
  if (!t->norm || !t->proj_in) return VKP_ERR_OOM;
  for (int l = 0; l < n_layers; l++) {
    char block[256];
    snprintf(block, sizeof block, "%s.transformer_blocks.%d", prefix, l);
    VKP_TRY(tblock_add(m, block, channels, cross_dim, &t->layers[l]));
  }
  if (linear_projection) t->proj_out = vkp_sd_linear_add(m, NAME("%s.proj_out", prefix), channels, channels, true);
  else t->proj_out = vkp_sd_conv_add(m, NAME("%s.proj_out", prefix), channels, channels, 1);
  return t->proj_out ? VKP_OK : VKP_ERR_OOM;
}

vkp_status vkp_sd_spatial_attention_add(vkp_model *m, const char *prefix, int channels, vkp_sd_spatial_attention *a) {
  char n[512];
  a->channels = channels;
  a->group_norm = vkp_sd_group_norm_add(m, NAME("%s.group_norm", prefix), channels);
  a->q = vkp_sd_linear_add(m, NAME("%s.to_q", prefix), channels, channels, true);
  a->k = vkp_sd_linear_add(m, NAME("%s.to_k", prefix), channels, channels, true);
  a->v = vkp_sd_linear_add(m, NAME("%s.to_v", prefix), channels, channels, true);
  a->o = vkp_sd_linear_add(m, NAME("%s.to_out.0", prefix), channels, channels, true);
  return a->group_norm && a->q && a->k && a->v && a->o ? VKP_OK : VKP_ERR_OOM;
}

#undef NAME

vkp_status vkp_sd_init_default(vkp_model *m, uint64_t seed) {
  for (int i = 0; i < m->nparams; i++) {
    vkp_param *p = m->params[i];
    const vkp_module *mod = p->module;
    if (!mod) continue;
    if (mod->kind == VKP_MODULE_GROUP_NORM || mod->kind == VKP_MODULE_LAYER_NORM) {
      VKP_TRY(vkp_param_fill(m, p, p == mod->weight ? 1.0f : 0.0f));
    } else if (mod->kind == VKP_MODULE_LINEAR || mod->kind == VKP_MODULE_CONV2D) {
      // kaiming_uniform_(a=sqrt(5)) and the bias rule of nn.Linear / nn.Conv2d: both ±1/sqrt(fan_in).
      const vkp_param *w = mod->weight;
      int64_t fan_in = 1;
      for (int d = 1; d < w->ndim; d++) fan_in *= w->shape[d];
      VKP_TRY(vkp_param_init_uniform(m, p, (float)(1.0 / sqrt((double)fan_in)), seed));
    }
  }
  return VKP_OK;
}

// ---- config -------------------------------------------------------------------------------------

vkp_status vkp_sd_block_types(const cJSON *j, const char *where, const char *key, int n, const char *const *kinds, int nkinds,
                              bool optional, int *out, vkp_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!v) return optional ? VKP_OK : vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' is missing (block_out_channels has %d entries)", where, key, n);
  if (!cJSON_IsArray(v)) return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' must be a list of block types, not %s", where, key, vkp_json_kind(v));
  if (cJSON_GetArraySize(v) != n)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' has %d entries; block_out_channels has %d", where, key,
                         cJSON_GetArraySize(v), n);
  int i = 0;
  for (const cJSON *e = v->child; e; e = e->next, i++) {
    if (!cJSON_IsString(e))
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key '%s' entry %d must be a string, not %s", where, key, i, vkp_json_kind(e));
    const char *s = e->valuestring;
    if (!strncmp(s, "UNetRes", 7)) s += 7;
    int k = 0;
    while (k < nkinds && strcmp(s, kinds[k])) k++;
    if (k == nkinds) {
      char list[256];
      size_t len = 0;
      for (int q = 0; q < nkinds && len < sizeof list; q++) len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", q ? ", " : "", kinds[q]);
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key '%s': block type \"%s\" is not supported (%s)", where, key,
                           e->valuestring, list);
    }
    out[i] = k;
  }
  return VKP_OK;
}

// ---- checkpoints --------------------------------------------------------------------------------

static bool is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

vkp_status vkp_sd_weights_path(const char *dir, char *path, size_t cap, vkp_error *err) {
  snprintf(path, cap, "%s/diffusion_pytorch_model.safetensors", dir);
  if (is_file(path)) return VKP_OK;
  snprintf(path, cap, "%s/diffusion_pytorch_model.fp16.safetensors", dir);
  if (is_file(path)) return VKP_OK;
  snprintf(path, cap, "%s/diffusion_pytorch_model.safetensors.index.json", dir);
  if (is_file(path)) return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: sharded checkpoints are not supported", path);
  return vkp_error_set(err, VKP_ERR_IO, "%s: no diffusion_pytorch_model.safetensors (or .fp16.safetensors)", dir);
}

typedef struct load_names {
  int unused, missing;
  char first_unused[256], first_missing[256];
} load_names;

static void on_name(void *user, const char *kind, const char *name) {
  load_names *ln = user;
  bool missing = !strcmp(kind, "missing");
  int *count = missing ? &ln->missing : &ln->unused;
  char *first = missing ? ln->first_missing : ln->first_unused;
  if (!(*count)++) snprintf(first, 256, "%s", name);
}

vkp_status vkp_sd_load_weights(vkp_model *m, const char *path, const vkp_load_options *opt, const char *what, vkp_error *err) {
  load_names names = {0};
  vkp_load_options o = *opt;
  o.on_name = on_name;
  o.user = &names;
  vkp_load_report rep = {0};
  vkp_status st = vkp_model_load_safetensors_opts(m, path, &o, &rep);
  if (st) return vkp_error_set(err, st, "%s", vkp_ctx_error(m->ctx));
  if (names.missing)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: %d %s parameters are missing from the checkpoint (the first: '%s')", path,
                         names.missing, what, names.first_missing);
  if (names.unused)
    fprintf(stderr, "vkpeft: %s: %d tensors in the checkpoint are not used by %s (the first: '%s')\n", path, names.unused,
            what, names.first_unused);
  return VKP_OK;
}

vkp_status vkp_sd_save_weights(vkp_model *m, const char *path, vkp_error *err) {
  vkp_safetensors_writer *w = NULL;
  VKP_TRY(vkp_safetensors_writer_new(&w, err));
  vkp_status st = vkp_safetensors_writer_set_metadata(w, "format", "pt", err);
  for (int i = 0; i < m->nparams && !st; i++) {
    vkp_param *p = m->params[i];
    if (p->adapter) continue;
    float *v = malloc((size_t)vkp_param_numel(p) * sizeof *v);
    if (!v) {
      st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
      break;
    }
    st = vkp_param_read_f32(m, p, v);
    if (st) vkp_error_set(err, st, "%s", vkp_ctx_error(m->ctx));
    else st = vkp_safetensors_writer_add_f32(w, p->name, p->dtype, p->ndim, p->shape, v, err);
    free(v);
  }
  if (!st) st = vkp_safetensors_writer_save(w, path, err);
  vkp_safetensors_writer_free(w);
  return st;
}

// ---- forward ------------------------------------------------------------------------------------

vkp_tensor *vkp_sd_resnet_forward(vkp_model *m, const vkp_sd_resnet *r, vkp_tensor *x, vkp_tensor *temb_act, int groups,
                                  float eps, float output_scale_factor) {
  vkp_graph *g = m->graph;
  if (!x) return NULL;
  vkp_tensor *h = vkp_nn_group_norm_silu(m, r->norm1, x, groups, eps);
  h = vkp_nn_conv2d(m, r->conv1, h, 1, 1);
  if (r->time_emb_proj && temb_act) {
    vkp_tensor *t = vkp_nn_linear(m, r->time_emb_proj, temb_act);   // (B, out)
    h = vkp_add(g, h, vkp_reshape(g, t, 4, (int64_t[]){temb_act->shape[0], r->out, 1, 1}));
  }
  h = vkp_nn_group_norm_silu(m, r->norm2, h, groups, eps);
  h = vkp_nn_conv2d(m, r->conv2, h, 1, 1);
  h = vkp_nn_block_adapter(m, r->block, VKP_NN_AFTER_BLOCK, h, NULL);
  vkp_tensor *sc = r->conv_shortcut ? vkp_nn_conv2d(m, r->conv_shortcut, x, 1, 0) : x;
  vkp_tensor *out = vkp_add(g, sc, h);
  return output_scale_factor == 1.0f ? out : vkp_scale(g, out, 1.0f / output_scale_factor);
}

// (B, T, C) -> (B, H, T, C/H)
static vkp_tensor *split_heads(vkp_graph *g, vkp_tensor *x, int64_t H) {
  if (!x) return NULL;
  int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2] / H;
  return vkp_permute(g, vkp_reshape(g, x, 4, (int64_t[]){B, T, H, D}), (int[]){0, 2, 1, 3});
}

// (B, H, T, D) -> (B, T, H*D)
static vkp_tensor *merge_heads(vkp_graph *g, vkp_tensor *x) {
  if (!x) return NULL;
  int64_t B = x->shape[0], H = x->shape[1], T = x->shape[2], D = x->shape[3];
  return vkp_reshape(g, vkp_permute(g, x, (int[]){0, 2, 1, 3}), 3, (int64_t[]){B, T, H * D});
}

vkp_tensor *vkp_sd_attention(vkp_model *m, vkp_module *mod, vkp_tensor *q, vkp_tensor *k, vkp_tensor *v) {
  if (!q || !k || !v) return NULL;
  return mod ? vkp_nn_attention(m, mod, q, k, v, NULL, false) : vkp_attention(m->graph, q, k, v, NULL, false, 0.0f);
}

// BasicTransformerBlock on h (B, T, C) with the text states ctx (B, S, Dc).
static vkp_tensor *tblock_forward(vkp_model *m, const vkp_sd_tblock *b, vkp_tensor *h, vkp_tensor *ctx, int64_t heads) {
  vkp_graph *g = m->graph;
  const float eps = 1e-5f;   // BasicTransformerBlock's norm_eps (not the UNet's)
  // Self-attention.
  vkp_tensor *n = vkp_nn_layer_norm(m, b->norm1, h, eps);
  vkp_tensor *a = vkp_sd_attention(m, b->attn1, split_heads(g, vkp_nn_linear(m, b->q1, n), heads),
                                   split_heads(g, vkp_nn_linear(m, b->k1, n), heads),
                                   split_heads(g, vkp_nn_linear(m, b->v1, n), heads));
  a = vkp_nn_block_adapter(m, b->block, VKP_NN_AFTER_ATTN, vkp_nn_linear(m, b->o1, merge_heads(g, a)), NULL);
  h = vkp_add(g, h, a);
  // Cross-attention: keys and values from the text states.
  n = vkp_nn_layer_norm(m, b->norm2, h, eps);
  a = vkp_sd_attention(m, b->attn2, split_heads(g, vkp_nn_linear(m, b->q2, n), heads),
                       split_heads(g, vkp_nn_linear(m, b->k2, ctx), heads),
                       split_heads(g, vkp_nn_linear(m, b->v2, ctx), heads));
  a = vkp_nn_block_adapter(m, b->block, VKP_NN_AFTER_CROSS_ATTN, vkp_nn_linear(m, b->o2, merge_heads(g, a)), NULL);
  h = vkp_add(g, h, a);
  // GEGLU feed-forward: proj -> (hidden, gate), hidden * gelu(gate) (erf form), then net.2.
  n = vkp_nn_layer_norm(m, b->norm3, h, eps);
  vkp_tensor *f = vkp_nn_linear(m, b->ff_in, n);
  if (!f) return NULL;
  int64_t I = f->shape[2] / 2;
  vkp_tensor *hidden = vkp_contiguous(g, vkp_slice(g, f, 2, 0, I));
  vkp_tensor *gate = vkp_contiguous(g, vkp_slice(g, f, 2, I, I));
  f = vkp_nn_linear(m, b->ff_out, vkp_mul(g, hidden, vkp_gelu(g, gate)));
  f = vkp_nn_block_adapter(m, b->block, VKP_NN_AFTER_MLP, f, n);
  return vkp_add(g, h, f);
}

vkp_tensor *vkp_sd_transformer_forward(vkp_model *m, const vkp_sd_transformer *t, vkp_tensor *x, vkp_tensor *context,
                                       int groups) {
  vkp_graph *g = m->graph;
  if (!x || !context) return NULL;
  int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  vkp_tensor *h = vkp_nn_group_norm(m, t->norm, x, groups, 1e-6f);   // Transformer2DModel's GroupNorm eps
  // (B, C, H, W) -> tokens (B, H*W, C), with proj_in before (1x1 conv) or after (linear).
  if (!t->linear_projection) h = vkp_nn_conv2d(m, t->proj_in, h, 1, 0);
  h = vkp_contiguous(g, vkp_transpose(g, vkp_reshape(g, h, 3, (int64_t[]){B, C, H * W}), 1, 2));
  if (t->linear_projection) h = vkp_nn_linear(m, t->proj_in, h);
  for (int l = 0; l < t->n_layers; l++) h = tblock_forward(m, &t->layers[l], h, context, t->heads);
  if (t->linear_projection) h = vkp_nn_linear(m, t->proj_out, h);
  h = vkp_reshape(g, vkp_contiguous(g, vkp_transpose(g, h, 1, 2)), 4, (int64_t[]){B, C, H, W});
  if (!t->linear_projection) h = vkp_nn_conv2d(m, t->proj_out, h, 1, 0);
  return vkp_add(g, h, x);
}

vkp_tensor *vkp_sd_spatial_attention_forward(vkp_model *m, const vkp_sd_spatial_attention *a, vkp_tensor *x, int groups,
                                             float eps) {
  vkp_graph *g = m->graph;
  if (!x) return NULL;
  int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  vkp_tensor *h = vkp_nn_group_norm(m, a->group_norm, x, groups, eps);
  h = vkp_contiguous(g, vkp_transpose(g, vkp_reshape(g, h, 3, (int64_t[]){B, C, H * W}), 1, 2));   // (B, HW, C)
  vkp_tensor *o = vkp_sd_attention(m, NULL, split_heads(g, vkp_nn_linear(m, a->q, h), 1),
                                   split_heads(g, vkp_nn_linear(m, a->k, h), 1), split_heads(g, vkp_nn_linear(m, a->v, h), 1));
  o = vkp_nn_linear(m, a->o, merge_heads(g, o));
  o = vkp_reshape(g, vkp_contiguous(g, vkp_transpose(g, o, 1, 2)), 4, (int64_t[]){B, C, H, W});
  return vkp_add(g, o, x);   // residual_connection; rescale_output_factor 1
}

vkp_tensor *vkp_sd_downsample(vkp_model *m, vkp_module *conv, vkp_tensor *x, int padding) {
  vkp_graph *g = m->graph;
  if (!x) return NULL;
  if (padding == 0) {
    // F.pad(x, (0, 1, 0, 1)): one zero column on the right, one zero row at the bottom.
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    x = vkp_concat(g, vkp_contiguous(g, x), vkp_fill(g, VKP_DTYPE_F32, 4, (int64_t[]){N, C, H, 1}, 0.0f), 3);
    x = vkp_concat(g, x, vkp_fill(g, VKP_DTYPE_F32, 4, (int64_t[]){N, C, 1, W + 1}, 0.0f), 2);
  }
  return vkp_nn_conv2d(m, conv, x, 2, padding);
}

vkp_tensor *vkp_sd_upsample(vkp_model *m, vkp_module *conv, vkp_tensor *x) {
  return vkp_nn_conv2d(m, conv, vkp_upsample_nearest2x(m->graph, x), 1, 1);
}
